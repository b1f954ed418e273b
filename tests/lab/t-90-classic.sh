#!/bin/bash
# Lab test: the classic backend (issue: classic backend, application
# consistency, network settings - the classic part).  Disks stay in place on
# a block device and on an image file; points are persistent `snapshot`
# targets with their own COW stores; no pool exists at all.  Points hold
# their moment while the origin is written; failover runs on a writable
# view stacked on the point (which is never written), revert, test
# failover, commit (the view becomes a layer, its point pinned), a point
# whose COW store overflows is marked invalid and refused (32775), the
# per-VM cap (32778), an agent restart, a simulated reboot (every device
# and loop gone) and a crash in the middle of a commit.  The stack (issue
# 13): the stable device is `linear` over the disk's hidden origin device
# (snapshot-origin BASE or LAYER) or over a view, so failover, revert and
# commit swap linear tables (an older dmrep's devices: t-91).
set -u
. "$(dirname "$0")/lib/inittest.sh"

# snapdev POINT DISKINDEX: the point's dm device.
snapdev() {
	echo "/dev/mapper/dmrep-snap-$(dmrep --json point list "$VM" |
		jq -r --argjson p "$1" --argjson i "$2" '.[] | select(.id == $p) | .thin_ids[$i]')"
}
overlay() { jq -r --argjson i "$2" '.overlay_ids[$i]' "$STATE/vms/$1.json"; }
wait_job() { dmrep --json job wait "$(jq -r .job <<<"$1")" --timeout 120; }
# simulate_reboot: a reboot (lab_reboot), after which the host's own block
# device comes back under its name.
simulate_reboot() {
	lab_reboot
	losetup "$VDA" "$VDA_FILE"
}

agent_setup
VDA_FILE=$W/vda.base
truncate -s 32M "$VDA_FILE"
VDA=$(losetup -f --show "$VDA_FILE")
put "$VDA" a0                      # data already on the disk: used in place
truncate -s 16M "$W/vdb.img"
put "$W/vdb.img" b0

# --- vm add, in place, with no pool --------------------------------------------
out=$(dmrep --json vm add "$VM" --backend classic --disk vda="$VDA" --disk vdb="$W/vdb.img" --cow-size 4M)
expect_rc "vm add --backend classic without any pool" 0 "$out"
show=$(dmrep --json vm show "$VM")
check "vm show: backend classic, replicating" jq -e '.backend == "classic" and .state == "replicating"' <<<"$show"
check "/dev/dmrep/VM/vda is a block device" test -b "/dev/dmrep/$VM/vda"
check "the stable devices are linear over the origin devices, snapshot-origins over the disks" \
	eval 'on_origin "$VM" vda "$VDA" && on_origin "$VM" vdb "$(loop_of "$W/vdb.img")"'
is "the origin device's UUID" "DMREP-origin-$VM:vda" "$(uuid_of "dmrep-$VM:vda@origin")"
udevadm settle >/dev/null 2>&1
is "the origin devices are hidden: /dev/dmrep/$VM has the disks only" "vda vdb" "$(cd "/dev/dmrep/$VM" && echo *)"
check "udev does not scan an origin device" eval 'udevadm info --query=property "/dev/mapper/dmrep-$VM:vda@origin" | grep -qx DM_NOSCAN=1' 
check "the disks' own data shows through, in place" both a0 b0
out=$(dmrep --json vm add "${VM}x" --backend classic --disk vda="$VDA")
expect_rc "a disk in use by another VM is refused (32774)" 32774 "$out"
out=$(dmrep --json vm add "${VM}y" --disk vda="$W/y.img:8M" --cow-size 4M)
expect_rc "--cow-size with the thin backend: 32773" 32773 "$out"
out=$(dmrep --json vm add "${VM}y" --backend classic --disk vda="$W/y.img:8M" --disk vdb="$W/y.img:8M")
expect_rc "one path as two disks: 32773" 32773 "$out"
check "a refused vm add leaves no file behind" test ! -e "$W/y.img"

# --- points --------------------------------------------------------------------
put "/dev/dmrep/$VM/vda" a1
put "/dev/dmrep/$VM/vdb" b1
out=$(dmrep --json point create "$VM" --label one)
expect_rc "point 1" 0 "$out"
P1A=$(snapdev 1 0)
P1B=$(snapdev 1 1)
check "point 1's devices exist" test -b "$P1A" -a -b "$P1B"
is "a point is a snapshot target" snapshot "$(dm_type "${P1A#/dev/mapper/}")"
is "a point's device is read-only" r "$(dmsetup info -c --noheadings -o attr "${P1A#/dev/mapper/}" | cut -c4)"
check "a point's device has a DMREP-snap- UUID" test "$(dmsetup info -c --noheadings -o uuid "${P1A#/dev/mapper/}")" = "DMREP-snap-${P1A##*-}"
check "its COW store is a file in the state directory" test -f "$STATE/cow/${P1A##*-}.cow"
is "a point is a snapshot of the disk itself, not of the origin device" "$(blk_devno "$VDA")" \
	"$(dmsetup table "${P1A#/dev/mapper/}" | awk '{ print $4 }')"
put "/dev/dmrep/$VM/vda" a2
put "/dev/dmrep/$VM/vdb" b2
check "the origin has the new data" both a2 b2
check "point 1 keeps its moment (origin writes were copied out)" eval 'has "$P1A" a1 && has "$P1B" b1'
list=$(dmrep --json point list "$VM")
check "point list: valid, with the COW use" jq -e '.[0].valid == true and .[0].cow_used_percent >= 0' <<<"$list"

# --- failover, revert, failover again ----------------------------------------------
out=$(dmrep --json failover start "$VM" --guest resume --wait)
check "failover to the latest point completes" jq -e '.job_state == 7' <<<"$out"
steps() { jq -r '[.steps[] | "\(.name) \(.usec)"] | join(", ")' <<<"$1"; }
diag "failover steps (usec; the window swaps linear over linear): $(steps "$out")"
check "the disks show point 1" both a1 b1
check "the stable devices run on the views (linear over them)" \
	eval 'on_view "$VM" vda "$(overlay "$VM" 0)" && on_view "$VM" vdb "$(overlay "$VM" 1)"'
check "the origin devices stay up, over the disks" eval 'is_blockdev "/dev/mapper/dmrep-$VM:vda@origin" &&
	[ "$(dm_lower "dmrep-$VM:vda@origin")" = "$(blk_devno "$VDA")" ]' 
check "vm show: recovered, target point:1" jq -e '.state == "recovered" and .disks[0].target == "point:1"' \
	<<<"$(dmrep --json vm show "$VM")"
put "/dev/dmrep/$VM/vda" a9
check "writes go to the view" has "/dev/dmrep/$VM/vda" a9
check "the point itself is not written" has "$P1A" a1
out=$(dmrep --json failover revert "$VM" --wait)
check "revert completes" jq -e '.job_state == 7' <<<"$out"
diag "revert steps (usec): $(steps "$out")"
check "the disks are live again" both a2 b2
check "the stable devices are linear over the origin devices again" \
	eval 'on_origin "$VM" vda "$VDA" && on_origin "$VM" vdb "$(loop_of "$W/vdb.img")"' 
check "the views and their stores are gone" test "$(ls "$STATE/cow" | wc -l)" = 2
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover to point 1 again" jq -e '.job_state == 7' <<<"$out"
check "point 1 is as it was (the view's write is gone)" both a1 b1
out=$(dmrep --json failover revert "$VM" --wait)
check "revert again" jq -e '.job_state == 7' <<<"$out"

# --- test failover ---------------------------------------------------------------
out=$(dmrep --json failover start "$VM" --test --wait)
check "test failover completes" jq -e '.job_state == 7' <<<"$out"
check "the test view shows point 1" eval 'has "/dev/dmrep/$VM-test/vda" a1 && has "/dev/dmrep/$VM-test/vdb" b1'
check "the VM's own disks are untouched" both a2 b2
put "/dev/dmrep/$VM-test/vda" af
check "the test view is writable, the point is not touched" has "$P1A" a1
out=$(dmrep --json point create "$VM" --label during-test)
expect_rc "a point during a test failover" 0 "$out"
out=$(dmrep --json failover stop-test "$VM" --wait)
check "stop-test completes" jq -e '.job_state == 7' <<<"$out"
check "the test devices are gone" test ! -e "/dev/mapper/dmrep-$VM:test:vda"

# --- restart and reboot ------------------------------------------------------------
agent_restart
check "after a restart: the same points" test "$(dmrep --json point list "$VM" | jq length)" = 2
simulate_reboot
check "the reboot took every device" test ! -e "/dev/mapper/dmrep-$VM:vda"
agent_start || not_ok "agent starts after the reboot"
check "after a reboot: the stable devices are back with the live data" both a2 b2
check "after a reboot: point 1 is back with its moment" eval 'has "$P1A" a1 && has "$P1B" b1'
check "after a reboot: the stack again (linear over the origin devices)" \
	eval 'on_origin "$VM" vda "$VDA" && on_origin "$VM" vdb "$(loop_of "$W/vdb.img")"' 
check "the base image file is on a loop again" test -n "$(losetup -j "$W/vdb.img" -n -O NAME)"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover after the reboot" eval 'jq -e ".job_state == 7" <<<"$out" && both a1 b1'

# --- commit ------------------------------------------------------------------------
put "/dev/dmrep/$VM/vda" a3
put "/dev/dmrep/$VM/vdb" b3
L0=$(overlay "$VM" 0)
L1=$(overlay "$VM" 1)
O0=$(dm_devno "dmrep-$VM:vda@origin")
out=$(dmrep --json failover commit "$VM" --wait)
check "commit completes" jq -e '.job_state == 7' <<<"$out"
show=$(dmrep --json vm show "$VM")
check "vm show: committed, live" jq -e '.state == "committed" and .disks[0].target == "live"' <<<"$show"
check "the committed data is what the disks show" both a3 b3
check "the stable devices are linear over the origin devices, now over the views (the layer)" \
	eval 'on_origin "$VM" vda "/dev/mapper/dmrep-snap-$L0" && on_origin "$VM" vdb "/dev/mapper/dmrep-snap-$L1"'
is "the origin device was reloaded, not made anew" "$O0" "$(dm_devno "dmrep-$VM:vda@origin")"
check "point 2 (newer than the failover point) is gone" \
	jq -e 'map(.id) == [1]' <<<"$(dmrep --json point list "$VM")"
out=$(dmrep --json point remove "$VM" 1)
expect_rc "the committed layer's point cannot be removed (32774)" 32774 "$out"
out=$(dmrep --json point create "$VM" --label after-commit)
expect_rc "a point after the commit" 0 "$out"
put "/dev/dmrep/$VM/vda" a4
put "/dev/dmrep/$VM/vdb" b4
check "the new point keeps its moment on the layer" eval 'has "$(snapdev 3 0)" a3 && has "$(snapdev 3 1)" b3'
check "point 1 still holds its moment" eval 'has "$P1A" a1 && has "$P1B" b1'
simulate_reboot
agent_start || not_ok "agent starts after a reboot with a layer"
check "after a reboot the layered disks show the live data" both a4 b4
check "after a reboot the origin devices are over the layer" \
	eval 'on_origin "$VM" vda "/dev/mapper/dmrep-snap-$L0" && on_origin "$VM" vdb "/dev/mapper/dmrep-snap-$L1"' 
check "after a reboot point 3 is back" eval 'has "$(snapdev 3 0)" a3'
out=$(dmrep --json failover start "$VM" --point 3 --guest resume --wait)
check "failover to a point taken after the commit" eval 'jq -e ".job_state == 7" <<<"$out" && both a3 b3'
out=$(dmrep --json failover revert "$VM" --wait)
check "and back" eval 'jq -e ".job_state == 7" <<<"$out" && both a4 b4'

# --- a crash in the middle of a commit is finished at start --------------------------
out=$(dmrep --json failover start "$VM" --point 3 --guest resume --wait)
check "failover for the crash test" jq -e '.job_state == 7' <<<"$out"
L2=$(overlay "$VM" 0)
put "/dev/dmrep/$VM/vda" a5
agent_stop
DMREP_TEST_CRASH_AT=commit:layer agent_start || not_ok "agent starts with the crash hook"
out=$(dmrep --json failover commit "$VM")
check "the agent died at commit:layer" agent_exited 10
agent_start || not_ok "agent restarts after the crash"
check "recovery finished the commit" jq -e '.state == "committed"' <<<"$(dmrep --json vm show "$VM")"
check "the stable device is on the new layer (linear over the origin device over it)" \
	on_origin "$VM" vda "/dev/mapper/dmrep-snap-$L2"
check "the data of the view stands" has "/dev/dmrep/$VM/vda" a5
check "no DMREP- device is left suspended" eval '! dmsetup info -c --noheadings -o uuid,attr --separator " " | awk '"'"'$1 ~ /^DMREP-/ && substr($2, 3, 1) == "s" { bad = 1 } END { exit !bad }'"'"''

# --- overflow: a point whose COW store fills up is invalid ------------------------------
V2=${VM}o
out=$(dmrep --json vm add "$V2" --backend classic --disk vda="$W/o.img:16M" --cow-size 1M)
expect_rc "vm add with a 1 MiB COW store" 0 "$out"
out=$(dmrep --json point create "$V2")
expect_rc "point 1 of $V2" 0 "$out"
list=$(dmrep --json point list "$V2")
check "valid before the writes" jq -e '.[0].valid == true' <<<"$list"
head -c 4M /dev/urandom | dd of="/dev/dmrep/$V2/vda" bs=1M oflag=direct conv=notrunc status=none
list=$(dmrep --json point list "$V2")
check "after 4 MiB of origin writes the point is invalid" jq -e '.[0].valid == false and .[0].cow_used_percent == 100' <<<"$list"
check "the agent logged it" grep -q "point 1 is invalid" "$W/dmrepd.log"
out=$(dmrep --json failover start "$V2" --point 1 --guest resume)
expect_rc "failover to the overflowed point: 32775" 32775 "$out"
out=$(dmrep --json failover start "$V2" --guest resume)
expect_rc "failover to the latest valid point: none (32779)" 32779 "$out"
agent_restart
check "the invalid mark survives a restart" jq -e '.[0].valid == false' <<<"$(dmrep --json point list "$V2")"

# --- a crash after the snapshots, before the catalog: the point is kept ---------------
agent_stop
DMREP_TEST_CRASH_AT=point:made agent_start || not_ok "agent starts with the crash hook"
dmrep --json point create "$V2" >/dev/null 2>&1
check "the agent died at point:made" agent_exited 10
agent_start || not_ok "agent restarts after the crash"
list=$(dmrep --json point list "$V2")
check "the point made before the crash is kept, valid" jq -e 'length == 2 and .[1].id == 2 and .[1].valid' <<<"$list"
check "and its device exists" test -b "/dev/mapper/dmrep-snap-$(jq -r '.[1].thin_ids[0]' <<<"$list")"
# --- a snapshot step that fails leaves no point and no store ------------------------
stores=$(ls "$STATE/cow" | wc -l)
agent_stop
DMREP_TEST_FAIL_AT=point:snapshot agent_start || not_ok "agent starts with a failing snapshot"
out=$(dmrep --json point create "$V2")
expect_rc "a point whose snapshot step fails: 32768" 32768 "$out"
check "no point was recorded" test "$(dmrep --json point list "$V2" | jq length)" = 2
check "no COW store was left" test "$(ls "$STATE/cow" | wc -l)" = "$stores"
agent_restart

# --- the COW use warning ---------------------------------------------------------------
V4=${VM}w
out=$(dmrep --json vm add "$V4" --backend classic --disk vda="$W/w.img:16M" --cow-size 1M)
expect_rc "vm add for the warning" 0 "$out"
out=$(dmrep --json point create "$V4")
expect_rc "point 1 of $V4" 0 "$out"
head -c 860160 /dev/urandom | dd of="/dev/dmrep/$V4/vda" bs=4096 oflag=direct conv=notrunc status=none
list=$(dmrep --json point list "$V4")
check "210 of 254 chunks used: still valid, at least 80% used" jq -e '.[0].valid and .[0].cow_used_percent >= 80 and .[0].cow_used_percent < 100' <<<"$list"
check "the agent warned about it once" test "$(grep -c "VM $V4: point 1's COW store is" "$W/dmrepd.log")" = 1
dmrep --json point list "$V4" >/dev/null
check "and not again" test "$(grep -c "VM $V4: point 1's COW store is" "$W/dmrepd.log")" = 1
show=$(dmrep --json vm show "$V4")
check "vm show has the COW size and the cap" jq -e '.cow_size == 1048576 and .max_points == 8 and .layers == 0' <<<"$show"

# --- a COW store on a given block device -----------------------------------------------
truncate -s 8M "$W/cowdev.img"
COWDEV=$(losetup -f --show "$W/cowdev.img")
truncate -s 8M "$W/cowfs.img"
mkfs.ext4 -q -F "$W/cowfs.img" >/dev/null 2>&1
COWFS=$(losetup -f --show "$W/cowfs.img")
udevadm settle >/dev/null 2>&1
out=$(dmrep --json point create "$V4" --cow-dev vda="$COWFS")
expect_rc "a COW device with a filesystem is refused (32773)" 32773 "$out"
check "and the refusal names it" grep -q ext4 <<<"$out"
out=$(dmrep --json point create "$V4" --cow-dev vdz="$COWDEV")
expect_rc "a COW device for a disk the VM does not have: 32773" 32773 "$out"
out=$(dmrep --json point create "${V4}" --cow-dev vda="$W/cowdev.img")
expect_rc "a COW device that is a file: 32773" 32773 "$out"
stores=$(ls "$STATE/cow" | wc -l)
put "/dev/dmrep/$V4/vda" e1
out=$(dmrep --json point create "$V4" --cow-dev vda="$COWDEV")
expect_rc "a point with its COW store on a block device" 0 "$out"
P2W=$(dmrep --json point list "$V4" | jq -r '.[1].thin_ids[0]')
check "the store is recorded as a link to the device" test "$(readlink "$STATE/cow/$P2W.cow")" = "$COWDEV"
put "/dev/dmrep/$V4/vda" e2
check "the point keeps its moment in the device store" has "/dev/mapper/dmrep-snap-$P2W" e1
check "the origin has the new data" has "/dev/dmrep/$V4/vda" e2
out=$(dmrep --json point create "$V4" --cow-dev vda="$COWDEV")
expect_rc "the same device again, now in use: 32774" 32774 "$out"
out=$(dmrep --json point create "$V4" --cow-dev vda="$COWFS" --force)
expect_rc "--force takes the device with a filesystem" 0 "$out"
agent_restart
check "after a restart the device store's point is valid" jq -e '.[1].valid and .[2].valid' <<<"$(dmrep --json point list "$V4")"
out=$(dmrep --json point remove "$V4" 2)
expect_rc "remove the point on the device store" 0 "$out"
check "its link is gone, the device is not" eval 'test ! -e "$STATE/cow/$P2W.cow" -a -b "$COWDEV"'

# --- the cap on points --------------------------------------------------------------
V3=${VM}c
out=$(dmrep --json vm add "$V3" --backend classic --disk vda="$W/c.img:8M" --max-points 2)
expect_rc "vm add --max-points 2" 0 "$out"
for k in 1 2; do
	out=$(dmrep --json point create "$V3")
	expect_rc "point $k of 2" 0 "$out"
done
out=$(dmrep --json point create "$V3")
expect_rc "a third point past the cap: 32778" 32778 "$out"
out=$(dmrep --json point remove "$V3" 1)
expect_rc "remove a point" 0 "$out"
out=$(dmrep --json point create "$V3")
expect_rc "room again after a removal" 0 "$out"

# --- killed at every step of every operation: recovery leaves it whole ------------------
V5=${VM}k
stores_others=$(ls "$STATE/cow" | wc -l)
out=$(dmrep --json vm add "$V5" --backend classic --disk vda="$W/k1.img:8M" --disk vdb="$W/k2.img:8M" --cow-size 2M)
expect_rc "vm add for the crash loop" 0 "$out"
put "/dev/dmrep/$V5/vda" c1
put "/dev/dmrep/$V5/vdb" d1
out=$(dmrep --json point create "$V5")
expect_rc "point 1 of $V5" 0 "$out"
put "/dev/dmrep/$V5/vda" c2
put "/dev/dmrep/$V5/vdb" d2
P5A=$(dmrep --json point list "$V5" | jq -r '.[0].thin_ids[0]')
# k_ensure STATE: bring V5 to replicating or recovered (on point 1).
# k_state: "STATE LAYERS TEST_FAILOVER" of $V5 (one vm show, one jq).
k_state() { dmrep --json vm show "$V5" | jq -r '"\(.state) \(.layers) \(.test_failover)"'; }
# k_ensure STATE: bring V5 to it; $live_a is the state it is in then.
k_ensure() {
	local st tf
	read -r st _ tf < <(k_state)
	[ "$tf" = true ] && dmrep --json failover stop-test "$V5" --wait >/dev/null
	[ "$st" = committed ] && { dmrep --json point create "$V5" >/dev/null; st=replicating; }
	live_a=$st
	[ "$st" = "$1" ] && return 0
	case $1 in
	replicating) dmrep --json failover revert "$V5" --wait >/dev/null ;;
	recovered) dmrep --json failover start "$V5" --point 1 --guest resume --wait >/dev/null ;;
	esac
	read -r live_a _ < <(k_state)
	[ "$live_a" = "$1" ]
}
for step in initiate:intent initiate:overlays initiate:preload initiate:paused initiate:suspended \
	initiate:resumed initiate:swapped initiate:done revert:intent revert:preload revert:suspended \
	revert:resumed revert:swapped revert:deleted test:intent commit:intent commit:layer commit:deleted; do
	failover_step "$step" "$V5"
	k_ensure "$STEP_PRE" || { not_ok "$step: $V5 can be brought to $STEP_PRE"; continue; }
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	dmrep --json "${STEP_CMD[@]}" >/dev/null 2>&1
	if agent_exited 30; then ok "$step: the agent was killed at the step"; else
		not_ok "$step: the agent was killed at the step"
		agent_stop
	fi
	agent_start || { not_ok "$step: the agent restarts"; continue; }
	read -r st layers tf < <(k_state)
	case $st in replicating | recovered | committed) ok "$step: a settled state ($st)" ;;
	*) not_ok "$step: a settled state (got $st, was $live_a)" ;; esac
	check "$step: no DMREP- device is suspended or has a table loaded" eval '! dmsetup info -c --noheadings -o uuid,attr --separator " " |
		awk '"'"'$1 ~ /^DMREP-/ && (substr($2, 3, 1) == "s" || substr($2, 2, 1) == "I") { bad = 1 } END { exit !bad }'"'"''
	case $st in
	recovered) check "$step: the stable devices are linear over the views" \
		eval 'on_view "$V5" vda "$(overlay "$V5" 0)" && on_view "$V5" vdb "$(overlay "$V5" 1)"' ;;
	*) check "$step: the stable devices are linear over the origin devices" \
		eval 'on_origin "$V5" vda && on_origin "$V5" vdb' ;;
	esac
	# Both disks on one target: the point's moment, or the live data.
	if has "/dev/dmrep/$V5/vda" c1 && has "/dev/dmrep/$V5/vdb" d1; then on=point
	elif has "/dev/dmrep/$V5/vda" c2 && has "/dev/dmrep/$V5/vdb" d2; then on=live
	else on=mixed; fi
	case $st/$on in
	replicating/live | recovered/point | committed/point) ok "$step: every disk on the target of the state ($st, $on)" ;;
	*) not_ok "$step: every disk on the target of the state ($st, $on)" ;;
	esac
	check "$step: point 1 keeps its moment" has "/dev/mapper/dmrep-snap-$P5A" c1
	# Exactly the stores the catalog names: points, layers, a view per disk
	# while recovered or testing.
	want=$(( 2 * ( $(dmrep --json point list "$V5" | jq length) + layers ) ))
	[ "$st" = recovered ] && want=$((want + 2))
	[ "$tf" = true ] && want=$((want + 2))
	have=$(( $(ls "$STATE/cow" | wc -l) - stores_others ))
	is "$step: the COW stores are the catalog's" "$want" "$have"
	# Committed: put the data back to a known shape for the next steps.
	if [ "$st" = committed ]; then
		put "/dev/dmrep/$V5/vda" c2
		put "/dev/dmrep/$V5/vdb" d2
	fi
done

# --- removal --------------------------------------------------------------------------
# A committed VM's data lives in its layers: removal needs --force.
layered=0
for v in "$V5" "$V4" "$V3" "$V2" "$VM"; do
	n=$(dmrep --json vm show "$v" | jq .layers)
	if [ "$n" -gt 0 ]; then
		layered=$((layered + 1))
		out=$(dmrep --json vm remove "$v")
		expect_rc "vm remove $v with $n committed layer(s): refused" 32775 "$out"
		check "the refusal says why" jq -e '.error | test("layer") and test("--force")' <<<"$out"
		check "$v is still there, its devices too" sh -c \
			"dmrep --json vm show '$v' >/dev/null && test -b /dev/dmrep/$v/vda"
		out=$(dmrep --json vm remove "$v" --force)
	else
		out=$(dmrep --json vm remove "$v")
	fi
	expect_rc "vm remove $v" 0 "$out"
done
check "a committed VM was among them" test "$layered" -gt 0
check "no DMREP- device is left" test -z "$(dmsetup info -c --noheadings -o uuid 2>/dev/null | grep '^DMREP-')"
check "no COW store is left" test -z "$(ls "$STATE/cow")"
check "the base disks are still there" test -b "$VDA" -a -f "$W/vdb.img"
losetup -d "$VDA" "$COWDEV" "$COWFS"
[ "$T_FAIL" -gt 0 ] && tail -n 80 "$W/dmrepd.log" | sed 's/^/# dmrepd: /'
summary
