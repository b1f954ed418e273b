#!/bin/bash
# Lab test: failover on a replica VM, its revert and commit, and `vm
# demote` (issue 15, items 5 and 7), on one host.  A 2-disk replica made
# of streams of known data (build/bin/lab_mkstream): `failover start`
# without --test works with no hypervisor: /dev/dmrep/R/DISK appear and
# read the point, writable, the point itself unchanged (a test failover of
# it beside); the replica's own failover hooks run with its `vm network`
# settings; a receive meanwhile is refused (32774); revert takes the
# devices away (refused while one is open: 32774) and the replica takes
# streams again.  A test failover while a point arrives.  The agent killed
# at every step of a replica's failover and revert, and a failure when the
# devices are made: all disks or none, no volume left.  Commit (killed at
# its intent, finished by recovery): the VM is a primary here, the newer
# received point gone, the failover point acknowledged; streams refused
# (32775, the reason says what to do); points taken.  Demote: refused
# without --force with the count of newer points, refused while the
# hypervisor says the guest runs; killed at each step (before the switch:
# still the primary it was, devices back; after: a replica, no volume
# left); then the incremental from the common point is received.
set -u
. "$(dirname "$0")/lib/inittest.sh"

R=${VM}r
VMU=6d1c0b5e-0b5e-4a2b-9c3d-0000000000bb
pu() { printf '6d1c0b5e-0b5e-4a2b-9c3d-%012d' "$1"; }
DISKARGS=(--disk vda:16777216 --disk vdb:16777216)
HOOKS=/tmp/dmrep-hooks$$
OUT=/tmp/dmrep-hooks$$.out
mkdir -p "$HOOKS"
chmod 0755 "$HOOKS"
export DMREPD_ARGS="--hook-dir $HOOKS"
# shellcheck disable=SC2016 # expanded by the teardown
lab_cleanup 'rm -rf "$HOOKS" "$OUT".*'

# mk FILE K BASE A B: the stream of point K (base BASE, 0: full) of $R,
# patterns A on vda and B on vdb at blocks 8..11.
mk() {
	local b=()
	[ "$3" = 0 ] || b=(--base "$(pu "$3")")
	lab_mkstream --vm "$R" --vm-uuid "$VMU" --point "$(pu "$2")" "${b[@]}" --label "p$2" \
		"${DISKARGS[@]}" --data 0:32768:16384:"$4" --data 1:32768:16384:"$5" >"$S/$1"
}
recv() { dmrep --json point receive "$R" <"$S/$1"; }
uuids() { dmrep --json point list "$R" | jq -c '[.[].uuid]'; }
thin_devs() { dmsetup ls 2>/dev/null | awk '$1 ~ /^dmrep-thin-/ { print $1 }' | sort | tr '\n' ' '; }
no_devices() { [ -z "$(thin_devs)" ] && [ ! -e "/dev/dmrep/$R/vda" ] && [ ! -e "/dev/dmrep/$R/vdb" ] &&
	! dmsetup info "dmrep-$R:vda" >/dev/null 2>&1; }
both_devices() { [ -b "/dev/dmrep/$R/vda" ] && [ -b "/dev/dmrep/$R/vdb" ]; }
show() { dmrep --json vm show "$R" | jq -r "$1"; }
has_line() { grep -qxF "$2" "$1"; }
reads() { has "/dev/dmrep/$R/vda" "$1" && has "/dev/dmrep/$R/vdb" "$2"; }
reads_test() { has "/dev/dmrep/$R-test/vda" "$1" && has "/dev/dmrep/$R-test/vdb" "$2"; }
# point_has K A B: point K reads A, B through a test failover.
point_has() {
	local out rc=0
	out=$(dmrep --json failover start "$R" --test --point "$1" --wait)
	job_ok "$out" || { diag "test failover of point $1: ${out:0:300}"; return 1; }
	has "/dev/dmrep/$R-test/vda" "$2" || rc=1
	has "/dev/dmrep/$R-test/vdb" "$3" || rc=1
	job_ok "$(dmrep --json failover stop-test "$R" --wait)" || rc=1
	return $rc
}
# at_rest DESC: a replica with no failover, no device, the pool's volumes
# as they were ($THIN).
at_rest() {
	local st tc
	st=$(show '.role + " " + .state + " " + ([.disks[].target] | unique | join(","))')
	tc=$(thin_count)
	if [ "$st" = "replica replicating none" ] && no_devices && [ "$tc" = "$THIN" ] &&
		no_suspended_or_inactive; then
		ok "$1: a replica at rest (no device, $tc volumes)"
	else
		not_ok "$1: a replica at rest (got '$st', volumes $tc want $THIN, devices '$(thin_devs)')"
	fi
}
crash_restart() { # STEP CMD...: the agent with the crash hook at STEP, CMD, restarted
	local step=$1
	shift
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; return 1; }
	"$@" >/dev/null 2>&1
	agent_killed_at "$step"
	agent_start || { not_ok "$step: the agent restarts"; return 1; }
}

lab_need thin_ls
agent_setup
S=$W/streams
mkdir -p "$S"
prepare_pool 256M 16M "a pool"
mk s1 1 0 a0 a1
mk s2 2 1 b0 b1
mk s3 3 2 c0 c1
mk s4 4 3 d0 d1
mk s5 5 4 e0 e1
check "five streams of known data" test -s "$S/s5"
expect_rc "the full stream makes replica $R" 0 "$(recv s1)"
expect_rc "and an incremental" 0 "$(recv s2)"
expect_rc "vm network on the replica (per host)" 0 \
	"$(dmrep --json vm network "$R" --mac 52:54:00:aa:bb:01 --address 10.9.8.7/24 --gateway 10.9.8.1)"
cat >"$HOOKS/10-record" <<HOOK
#!/bin/sh
env | grep '^DMREP_' | sort >"$OUT.\${DMREP_OPERATION}"
HOOK
chmod 0755 "$HOOKS/10-record"
THIN=$(thin_count)
at_rest "two points received"

# --- a replica's failover, no hypervisor ------------------------------------
out=$(dmrep --json failover start "$R" --point 1 --wait)
check "failover start on the replica, to point 1 (no hypervisor)" job_ok "$out"
diag "its steps: $(jq -c '[.steps[].name]' <<<"$out")"
check "/dev/dmrep/$R/vda and vdb appear" both_devices
check "they read point 1 (a0, a1)" reads a0 a1
is "vm show: a replica, recovered, its disks on point 1" "replica recovered point:1" \
	"$(show '.role + " " + .state + " " + ([.disks[].target] | unique | join(","))')"
F=$OUT.failover
check "the replica's hook ran (DMREP_OPERATION=failover)" test -s "$F"
check "the hook saw the VM" has_line "$F" "DMREP_VM=$R"
check "the hook saw DMREP_POINT=1" has_line "$F" "DMREP_POINT=1"
check "the hook saw DMREP_TEST=0" has_line "$F" "DMREP_TEST=0"
check "the hook saw the replica's own network settings" has_line "$F" "DMREP_NIC0_ADDRESSES=10.9.8.7/24"
check "the job lists the hook" jq -e '.hooks | map(.name) == ["10-record"]' <<<"$out"
put "/dev/dmrep/$R/vda" f0
check "the disk is writable (f0 written, read back)" has "/dev/dmrep/$R/vda" f0
check "point 1 itself is unchanged (test failover beside: a0 a1)" point_has 1 a0 a1
out=$(recv s3)
expect_rc "a stream meanwhile is refused (a real failover runs here)" 32774 "$out"
exec 7<"/dev/dmrep/$R/vda"
out=$(dmrep --json failover revert "$R" --wait)
check "revert while a disk is held open: refused (32774)" jq -e '.error_code == 32774' <<<"$out"
diag "it said: $(jq -r .error_description <<<"$out")"
check "and the failover stands (devices, recovered)" eval "test -b /dev/dmrep/$R/vda && test -b /dev/dmrep/$R/vdb && dmrep --json vm show $R | jq -e '.state == \"recovered\"'"
exec 7<&-
out=$(dmrep --json failover revert "$R" --wait)
check "failover revert" job_ok "$out"
at_rest "after the revert"
expect_rc "the replica takes streams again" 0 "$(recv s3)"
THIN=$(thin_count)

# --- a test failover while a point arrives ---------------------------------
out=$(dmrep --json failover start "$R" --test --wait)
check "a test failover of the latest point (3)" job_ok "$out"
expect_rc "a point arrives meanwhile" 0 "$(recv s4)"
check "the test views still show point 3 (c0 c1)" reads_test c0 c1
check "stop-test" job_ok "$(dmrep --json failover stop-test "$R" --wait)"
THIN=$(thin_count)
check "point 4 reads d0 d1" point_has 4 d0 d1
at_rest "after the test failover"

# --- crashes: all disks or none ------------------------------------------------
for step in initiate:intent initiate:overlays; do
	crash_restart "$step" dmrep --json failover start "$R" --wait
	at_rest "$step: rolled back"
done
for step in initiate:devices initiate:done; do
	crash_restart "$step" dmrep --json failover start "$R" --wait
	is "$step: finished (recovered on point 4)" "recovered point:4" \
		"$(show '.state + " " + ([.disks[].target] | unique | join(","))')"
	check "$step: both devices, reading point 4" reads d0 d1
	check "$step: revert" job_ok "$(dmrep --json failover revert "$R" --wait)"
	at_rest "$step: after the revert"
done
agent_stop
DMREP_TEST_FAIL_AT=initiate:devices agent_start || not_ok "the agent starts with a failure injected"
out=$(dmrep --json failover start "$R" --wait)
check "the devices cannot be made: the failover fails" jq -e '.job_state == 10' <<<"$out"
at_rest "a failed failover leaves nothing"
agent_restart
for step in revert:intent revert:devices revert:deleted; do
	check "$step: failover start" job_ok "$(dmrep --json failover start "$R" --wait)"
	crash_restart "$step" dmrep --json failover revert "$R" --wait
	at_rest "$step: the revert finished"
done

# --- commit: the replica is the primary now -----------------------------------
check "failover start to point 3 (point 4 is newer)" job_ok "$(dmrep --json failover start "$R" --point 3 --wait)"
put "/dev/dmrep/$R/vdb" f1
crash_restart commit:intent dmrep --json failover commit "$R" --wait
show=$(dmrep --json vm show "$R")
check "commit:intent: finished: a primary, committed, on its live disks" \
	jq -e '.role == "primary" and .state == "committed" and ([.disks[].target] | unique) == ["live"]' <<<"$show"
is "the newer received point is gone" "[\"$(pu 1)\",\"$(pu 2)\",\"$(pu 3)\"]" "$(uuids)"
is "the failover point is the acknowledged base (replication.acknowledged)" "$(pu 3)" \
	"$(jq -r .replication.acknowledged <<<"$show")"
check "its disks read point 3 and what was written (c0, f1)" reads c0 f1
out=$(recv s5)
expect_rc "a stream for it is refused now (a primary here)" 32775 "$out"
diag "it said: $(jq -r '.error // .error_description' <<<"$out")"
check "the reason says what to do" jq -e '(.error // .error_description // "") | test("primary here.*vm demote")' <<<"$out"
mk s4b 6 3 9a 9b
expect_rc "so is one from its failover point" 32775 "$(recv s4b)"
expect_rc "point create on the promoted VM" 0 "$(dmrep --json point create "$R")"
put "/dev/dmrep/$R/vda" 90
expect_rc "and another" 0 "$(dmrep --json point create "$R")"
check "still writable on its live disks (90)" has "/dev/dmrep/$R/vda" 90

# --- demote -------------------------------------------------------------------
out=$(dmrep --json vm demote "$R")
expect_rc "demote with two points newer than the acknowledged base: refused 32775" 32775 "$out"
check "the reason gives the count" jq -e '.error | test("has 2 point")' <<<"$out"
diag "it said: $(jq -r '.error // .error_description' <<<"$out")"
expect_rc "demote --point 99: no such point (32779)" 32779 "$(dmrep --json vm demote "$R" --point 99 --force)"
# shellcheck disable=SC2016 # the shim's own $1
printf '#!/bin/sh\n[ "$1" = status ] && cat %s\nexit 0\n' "$W/guest" >"$W/shim"
chmod 0755 "$W/shim"
echo running >"$W/guest"
expect_rc "a primary with a hypervisor shim" 0 "$(dmrep --json vm add "${VM}g" --disk vda="$W/g.img:8M" --exec-shim "$W/shim")"
out=$(dmrep --json vm demote "${VM}g")
expect_rc "demote while its hypervisor says the guest runs: 32775" 32775 "$out"
diag "it said: $(jq -r '.error // .error_description' <<<"$out")"
echo shutoff >"$W/guest"
out=$(dmrep --json vm demote "${VM}g")
expect_rc "once the guest is shut off: demoted (no point: the next stream is a full one)" 0 "$out"
check "it is a replica with no device" eval "dmrep --json vm show ${VM}g | jq -e '.role == \"replica\"' && test ! -e /dev/dmrep/${VM}g/vda"
expect_rc "removed" 0 "$(dmrep --json vm remove "${VM}g")"

P=$(uuids)
for step in demote:intent demote:down; do
	crash_restart "$step" dmrep --json vm demote "$R" --force
	show=$(dmrep --json vm show "$R")
	check "$step: undone: still a primary on its live disks" jq -e '.role == "primary" and ([.disks[].target] | unique) == ["live"]' <<<"$show"
	is "$step: its points unchanged" "$P" "$(uuids)"
	check "$step: its devices back, with its data (90, f1)" reads 90 f1
done
crash_restart demote:saved dmrep --json vm demote "$R" --force
is "demote:saved: a replica now, at rest" "replica replicating none" \
	"$(show '.role + " " + .state + " " + ([.disks[].target] | unique | join(","))')"
is "its points are up to the common point" "[\"$(pu 1)\",\"$(pu 2)\",\"$(pu 3)\"]" "$(uuids)"
THIN=6
at_rest "demote:saved: the live volumes and the dropped points' are gone"
check "replication settings off" eval "dmrep --json vm show $R | jq -e '.replication.state == \"off\" and .replication.to == \"\"'"
mk s6 6 3 e0 e1
out=$(recv s6)
expect_rc "the incremental from the common point is received" 0 "$out"
check "point 6 reads e0 e1" point_has "$(dmrep --json point list "$R" | jq -r ".[-1].id")" e0 e1
expect_rc "demote on a replica: 32775" 32775 "$(dmrep --json vm demote "$R")"
expect_rc "the replica is removed" 0 "$(dmrep --json vm remove "$R")"
is "and the pool is empty" 0 "$(thin_count)"
summary
