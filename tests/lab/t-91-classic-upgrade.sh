#!/bin/bash
# Lab test: the classic backend's stack (issue 13) over an older dmrep's
# devices.  An older dmrep's stable device carries the disk's
# snapshot-origin target itself (over the disk, or over a committed layer)
# and there is no origin device: a new agent, started while a guest holds
# the disk open and writes it, moves each one onto the stack (the origin
# device up over the same origin, then one table swap: linear over it),
# never removing it; the data, the writes over the move and the points'
# moments stay intact, and failover, revert, commit and a reboot work on
# the moved VM.  A VM an older dmrep left failed over (linear over its
# views already) only gains its origin devices.
set -u
. "$(dirname "$0")/lib/inittest.sh"

overlay() { jq -r --argjson i "$2" '.overlay_ids[$i]' "$STATE/vms/$1.json"; }
# old_style VM: what an older dmrep leaves running (the agent stopped):
# each stable device with its origin device's table (snapshot-origin
# ORIGIN), its UUID and the same state file, and no origin device.
old_style() {
	local d o
	for d in vda vdb; do
		o="dmrep-$1:$d@origin"
		{ dmsetup load "dmrep-$1:$d" --table "$(dmsetup table "$o")" &&
			dmsetup suspend "dmrep-$1:$d" && dmsetup resume "dmrep-$1:$d" && dm_remove "$o"; } || return 1
	done
	udevadm settle >/dev/null 2>&1
}

agent_setup
V6=$VM

# --- an older dmrep's stable devices: moved onto the stack, open, never removed --------
out=$(dmrep --json vm add "$V6" --backend classic --disk vda="$W/l1.img:8M" --disk vdb="$W/l2.img:8M" --cow-size 2M)
expect_rc "vm add for the upgrade" 0 "$out"
put "/dev/dmrep/$V6/vda" 51
put "/dev/dmrep/$V6/vdb" 61
out=$(dmrep --json point create "$V6")
expect_rc "a point before the upgrade" 0 "$out"
list=$(dmrep --json point list "$V6")
P6A=/dev/mapper/dmrep-snap-$(jq -r '.[0].thin_ids[0]' <<<"$list")
P6B=/dev/mapper/dmrep-snap-$(jq -r '.[0].thin_ids[1]' <<<"$list")
put "/dev/dmrep/$V6/vda" 52
put "/dev/dmrep/$V6/vdb" 62
agent_stop
check "the old-style devices made by hand" old_style "$V6"
check "the old-style devices are in place" eval '[ "$(dm_type "dmrep-$V6:vda")" = snapshot-origin ] &&
	[ "$(dm_type "dmrep-$V6:vdb")" = snapshot-origin ] && ! dmsetup info "dmrep-$V6:vda@origin" >/dev/null 2>&1'
check "the old-style device keeps the point's moment" eval 'put "/dev/dmrep/$V6/vda" 52 && has "$P6A" 51'
D6A=$(dm_devno "dmrep-$V6:vda")
D6B=$(dm_devno "dmrep-$V6:vdb")
exec 3<"/dev/dmrep/$V6/vda"   # a guest holds the disk open meanwhile
# and another writes vdb all the while (1 MiB in, away from the checked
# blocks), over the move.
head -c 262144 /dev/urandom >"$W/w6"
rm -f "$W/w6.stop"
(
	n=0
	while [ ! -e "$W/w6.stop" ] || [ "$n" -lt 3 ]; do
		dd if="$W/w6" of="/dev/dmrep/$V6/vdb" bs=64K seek=16 oflag=direct conv=notrunc status=none || exit 1
		n=$((n + 1))
	done
) &
WPID=$!
agent_start || not_ok "the agent starts over the old-style devices"
touch "$W/w6.stop"
check "the writer saw no I/O error over the move" wait "$WPID"
check "both disks moved onto the stack" \
	eval 'on_origin "$V6" vda "$(loop_of "$W/l1.img")" && on_origin "$V6" vdb "$(loop_of "$W/l2.img")"'
is "the open device was never removed (the same device)" "$D6A $D6B" "$(dm_devno "dmrep-$V6:vda") $(dm_devno "dmrep-$V6:vdb")"
check "and is still open" test "$(dmsetup info -c --noheadings -o open "dmrep-$V6:vda" | tr -d ' ')" -ge 1
check "the agent says it moved them" grep -q "VM $V6: dmrep-$V6:vda moved onto its origin device" "$W/dmrepd.log"
check "the data is intact" eval 'has "/dev/dmrep/$V6/vda" 52 && has "/dev/dmrep/$V6/vdb" 62'
check "the writes over the move landed" \
	cmp -s "$W/w6" <(dd if="/dev/dmrep/$V6/vdb" bs=64K skip=16 count=4 iflag=direct status=none)
check "the point kept its moment through the move" eval 'has "$P6A" 51 && has "$P6B" 61'
check "and the point's blocks the writer overwrote were copied out (zeros there)" \
	cmp -s <(head -c 262144 /dev/zero) <(dd if="$P6B" bs=64K skip=16 count=4 iflag=direct status=none)
check "the point is valid" jq -e '.[0].valid' <<<"$(dmrep --json point list "$V6")"
put "/dev/dmrep/$V6/vda" 53
check "writes after the move copy out through the origin device" eval 'has "$P6A" 51 && has "/dev/dmrep/$V6/vda" 53'
out=$(dmrep --json point create "$V6")
expect_rc "a point after the move" 0 "$out"
out=$(dmrep --json failover start "$V6" --point 1 --guest resume --wait)
check "failover of the moved VM to the point from before" eval 'jq -e ".job_state == 7" <<<"$out" &&
	has "/dev/dmrep/$V6/vda" 51 && has "/dev/dmrep/$V6/vdb" 61'
exec 3<&-
# A VM an older dmrep failed over: its stable devices are linear over the
# views already (the stack); only the origin devices are missing.
agent_stop
dm_remove "dmrep-$V6:vda@origin"
dm_remove "dmrep-$V6:vdb@origin"
agent_start || not_ok "the agent starts on an old-style failed-over VM"
check "the origin devices are back, the stable devices left on the views" \
	eval 'is_blockdev "/dev/mapper/dmrep-$V6:vda@origin" && on_view "$V6" vda "$(overlay "$V6" 0)" &&
	on_view "$V6" vdb "$(overlay "$V6" 1)"'
out=$(dmrep --json failover revert "$V6" --wait)
check "revert onto the origin devices" eval 'jq -e ".job_state == 7" <<<"$out" &&
	on_origin "$V6" vda && on_origin "$V6" vdb && has "/dev/dmrep/$V6/vda" 53 && has "/dev/dmrep/$V6/vdb" 62'

# --- an older dmrep's committed VM: the origin over the layer -------------------------------
out=$(dmrep --json failover start "$V6" --point 1 --guest resume --wait)
check "failover for the commit" eval 'jq -e ".job_state == 7" <<<"$out" && has "/dev/dmrep/$V6/vda" 51'
put "/dev/dmrep/$V6/vda" 54
L0=$(overlay "$V6" 0)
L1=$(overlay "$V6" 1)
out=$(dmrep --json failover commit "$V6" --wait)
check "commit" eval 'jq -e ".job_state == 7" <<<"$out" &&
	on_origin "$V6" vda "/dev/mapper/dmrep-snap-$L0" && on_origin "$V6" vdb "/dev/mapper/dmrep-snap-$L1"'
agent_stop
check "the old-style devices over the layer made by hand" old_style "$V6"
is "the old-style device is a snapshot-origin over the layer" "$(dm_devno "dmrep-snap-$L0")" "$(dm_lower "dmrep-$V6:vda")"
D6A=$(dm_devno "dmrep-$V6:vda")
exec 3<"/dev/dmrep/$V6/vda"
agent_start || not_ok "the agent starts over the old-style layered devices"
check "moved onto the stack: the origin devices over the layer" \
	eval 'on_origin "$V6" vda "/dev/mapper/dmrep-snap-$L0" && on_origin "$V6" vdb "/dev/mapper/dmrep-snap-$L1"'
is "the open device was never removed" "$D6A" "$(dm_devno "dmrep-$V6:vda")"
check "the committed data is intact" eval 'has "/dev/dmrep/$V6/vda" 54 && has "/dev/dmrep/$V6/vdb" 61'
out=$(dmrep --json point create "$V6")
expect_rc "a point of the moved layered VM" 0 "$out"
P=$(jq -r .point <<<"$out")
put "/dev/dmrep/$V6/vda" 55
out=$(dmrep --json failover start "$V6" --point "$P" --guest resume --wait)
check "failover to it" eval 'jq -e ".job_state == 7" <<<"$out" && has "/dev/dmrep/$V6/vda" 54'
out=$(dmrep --json failover revert "$V6" --wait)
check "and back" eval 'jq -e ".job_state == 7" <<<"$out" && has "/dev/dmrep/$V6/vda" 55 &&
	on_origin "$V6" vda "/dev/mapper/dmrep-snap-$L0"'
exec 3<&-

# --- a reboot brings the stack back ------------------------------------------------------
lab_reboot
agent_start || not_ok "the agent starts after a reboot"
check "after a reboot: the stack over the layer" \
	eval 'on_origin "$V6" vda "/dev/mapper/dmrep-snap-$L0" && on_origin "$V6" vdb "/dev/mapper/dmrep-snap-$L1"'
check "after a reboot: the data" eval 'has "/dev/dmrep/$V6/vda" 55 && has "/dev/dmrep/$V6/vdb" 61'
check "after a reboot: the point keeps its moment" \
	has "/dev/mapper/dmrep-snap-$(dmrep --json point list "$V6" | jq -r --argjson p "$P" '.[] | select(.id == $p) | .thin_ids[0]')" 54

# --- removal -------------------------------------------------------------------------------
out=$(dmrep --json vm remove "$V6" --force)
expect_rc "vm remove --force" 0 "$out"
check "no DMREP- device is left" test -z "$(dmsetup info -c --noheadings -o uuid 2>/dev/null | grep '^DMREP-')"
check "no COW store is left" test -z "$(ls "$STATE/cow")"
[ "$T_FAIL" -gt 0 ] && tail -n 80 "$W/dmrepd.log" | sed 's/^/# dmrepd: /'
summary
