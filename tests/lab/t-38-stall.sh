#!/bin/bash
# Lab test: a point's I/O stall (issue 13, items 3 and 4).  Thin VMs of 1, 8
# and 32 disks each take points: the point job reports `suspended_usec` (an
# integer > 0, the same as its volumes-suspended step), every volume is
# resumed afterwards (no DMREP- device left suspended, every disk written
# and read back), and the point holds what the disks held.  The stall for
# each size is printed as a diagnostic, never asserted on (TCG's timing is
# no measure).  Then faults: a thin point that fails with every volume
# suspended (DMREP_TEST_FAIL_AT=thin-group:suspended) resumes them all and
# leaves no snapshot; a classic point whose group create of snapshot
# devices fails at the K-th device (create-group:K) leaves no snapshot
# device and no origin suspended; and classic points with udev sync off
# (DM_DISABLE_UDEV=1: libdevmapper makes the nodes in the group's one wait).
set -u
. "$(dirname "$0")/lib/inittest.sh"

# LAB_STALL_SIZES, LAB_STALL_REPS: disks per VM, points per VM.  Two
# points a VM: a first and one on a VM that has points already (a third
# repeated the second; the stall is printed, not asserted, and make bench
# measures it properly).
SIZES=${LAB_STALL_SIZES:-1 8 32}
REPS=${LAB_STALL_REPS:-2}

# point_job VM: the VM's latest CreateReplicationPoint job.
point_job() {
	dmrep --json job list |
		jq -c --arg vm "$1" '[.[] | select(.method == "CreateReplicationPoint" and .vm == $vm)] | last'
}
# suspended DMREP- devices, one a line.
suspended_devs() {
	dmsetup info -c --noheadings -o name,uuid,attr --separator ' ' 2>/dev/null |
		awk '$2 ~ /^DMREP-/ && substr($3, 3, 1) == "s" { print $1 }'
}
none_suspended() { [ -z "$(suspended_devs)" ]; }
# disks_rw VM N PHASE: the first, a middle and the last disk of VM get
# PHASE's byte pattern and read it back (live, not suspended).  A sample:
# every process costs a tenth of a second under TCG, and none_suspended
# already looks at every device.
disks_rw() {
	local i
	for i in $(printf '%s\n' 1 $(($2 / 2 + 1)) "$2" | sort -nu); do
		put "/dev/dmrep/$1/d$i" "$3" && has "/dev/dmrep/$1/d$i" "$3" || return 1
	done
}
# point_has THIN_ID HEX: the thin volume, activated read-only beside the
# agent's devices, holds HEX's pattern (as put wrote it).
point_has() {
	local rc
	thin_view "p$1" "$1" $((8 * 2048)) || return 1
	has "/dev/mapper/${T}p$1" "$2"
	rc=$?
	dm_remove "${T}p$1"
	return $rc
}
# The agent removes its VMs' devices in-process; the teardown would spawn
# dmsetup for each of the 41 (minutes under TCG).
remove_thin_vms() {
	local n out
	for n in $SIZES; do
		out=$(dmrep --json vm remove "${VM}n$n")
		expect_rc "vm remove ${VM}n$n" 0 "$out"
	done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
snap_devs() { dm_names | grep '^dmrep-snap-' || true; }

agent_setup
prepare_pool 512M 16M

# --- thin: 1, 8, 32 disks -------------------------------------------------------
stalls=()
for n in $SIZES; do
	vm=${VM}n$n
	disks=()
	for i in $(seq "$n"); do disks+=(--disk "d$i=$W/$vm-d$i.img:8M"); done
	out=$(dmrep --json vm add "$vm" "${disks[@]}")
	expect_rc "vm add $vm: $n disks of 8 MiB" 0 "$out"
	check "$vm: the disks take writes before the points" disks_rw "$vm" "$n" a0
	us=()
	good=1
	for rep in $(seq "$REPS"); do
		out=$(dmrep --json point create "$vm")
		[ "$(jq -r '.return' <<<"$out")" = 0 ] || { good=0; diag "point create $vm: $out"; break; }
		job=$(point_job "$vm")
		if ! jq -e '(.suspended_usec | type) == "number" and .suspended_usec > 0 and
			.suspended_usec == ([.steps[] | select(.name == "volumes-suspended") | .usec] | last)' \
			<<<"$job" >/dev/null; then
			good=0
			diag "job of point $rep: ${job:0:400}"
		fi
		us+=("$(jq '.suspended_usec // ([.steps[] | select(.name == "volumes-suspended") | .usec] | last) // 0' <<<"$job")")
		none_suspended || { good=0; diag "suspended after point $rep: $(suspended_devs | tr '\n' ' ')"; }
	done
	is "$vm: $REPS points, each job with suspended_usec > 0 (its volumes-suspended step)" 1 "$good"
	check "$vm: no DMREP- device is left suspended" none_suspended
	check "$vm: the disks are live after the points (written, read back)" disks_rw "$vm" "$n" b0
	# The last point holds what the disks held before it (first and last disk).
	ids=$(dmrep --json point list "$vm" | jq -r 'last | .volume_ids | "\(.[0]) \(.[-1])"')
	check "$vm: the last point holds the disks' data from before it" point_has "${ids% *}" a0
	check "$vm: on its last disk too" point_has "${ids#* }" a0
	stall=$(printf '%s\n' "${us[@]}" | median)
	stalls+=("$n:$stall")
	diag "point stall, $n disk(s): median $stall us of ${us[*]}"
done
diag "point stall (suspended_usec, median of $REPS): ${stalls[*]}"
# LAB_STALL_FAULTS=0: the measurement alone (to compare builds).
[ "${LAB_STALL_FAULTS:-1}" = 1 ] || { remove_thin_vms; summary; }

# --- thin: a point that fails with every volume suspended ----------------------------
vm=${VM}n8
[[ " $SIZES " == *" 8 "* ]] || vm=${VM}n${SIZES%% *}
nd=$(dmrep --json vm show "$vm" | jq '.disks | length')
agent_stop
DMREP_TEST_FAIL_AT=thin-group:suspended agent_start || not_ok "agent starts with a fault at thin-group:suspended"
points0=$(dmrep --json point list "$vm" | jq length)
command -v thin_ls >/dev/null && thin0=$(thin_count)
out=$(dmrep --json point create "$vm")
check "a point failing with all $nd volumes suspended fails" jq -e '.return != 0' <<<"$out"
job=$(point_job "$vm")
check "its job failed and still reports the stall" \
	jq -e '.job_state == 10 and (.suspended_usec | type) == "number" and .suspended_usec > 0' <<<"$job"
check "every volume is resumed after the failure" none_suspended
check "the disks are live after the failure" disks_rw "$vm" "$nd" c0
is "no point was added" "$points0" "$(dmrep --json point list "$vm" | jq length)"
command -v thin_ls >/dev/null && is "no snapshot is left in the pool" "$thin0" "$(thin_count)"
agent_restart

# --- classic: group create of the snapshot devices -----------------------------------
cvm=${VM}c
cn=4
disks=()
for i in $(seq "$cn"); do
	truncate -s 8M "$W/$cvm-d$i.img"
	disks+=(--disk "d$i=$W/$cvm-d$i.img")
done
out=$(dmrep --json vm add "$cvm" --backend classic "${disks[@]}" --cow-size 1M)
expect_rc "vm add $cvm: classic, $cn disks" 0 "$out"
out=$(dmrep --json point create "$cvm")
expect_rc "classic point: $cn snapshot devices made as one group" 0 "$out"
check "its job reports suspended_usec > 0" jq -e '.suspended_usec > 0' <<<"$(point_job "$cvm")"
is "the point's $cn snapshot devices exist" "$cn" "$(snap_devs | grep -c .)"
check "no DMREP- device is left suspended" none_suspended
for k in 0 2 $((cn - 1)); do
	agent_stop
	DMREP_TEST_FAIL_AT=create-group:$k agent_start || not_ok "agent starts with a fault at create-group:$k"
	before=$(snap_devs)
	out=$(dmrep --json point create "$cvm")
	check "create-group:$k: the classic point fails" jq -e '.return != 0' <<<"$out"
	is "create-group:$k: no snapshot device of it is left" "$before" "$(snap_devs)"
	check "create-group:$k: no origin is left suspended" none_suspended
	check "create-group:$k: the disks are live" disks_rw "$cvm" "$cn" d$k
	is "create-group:$k: still one point" 1 "$(dmrep --json point list "$cvm" | jq length)"
done

# --- classic with udev sync off: libdevmapper makes the nodes ----------------------
agent_stop
DM_DISABLE_UDEV=1 agent_start || not_ok "agent starts with DM_DISABLE_UDEV=1"
out=$(dmrep --json point create "$cvm")
expect_rc "DM_DISABLE_UDEV=1: a classic point (one group create, no udev)" 0 "$out"
ids=$(dmrep --json point list "$cvm" | jq -r 'last | .volume_ids | map(tostring) | join(" ")')
good=1
for id in $ids; do [ -b "/dev/mapper/dmrep-snap-$id" ] || good=0; done
is "DM_DISABLE_UDEV=1: every snapshot device has its node" 1 "$good"
agent_stop
DM_DISABLE_UDEV=1 DMREP_TEST_FAIL_AT=create-group:1 agent_start || not_ok "agent starts (DM_DISABLE_UDEV=1, create-group:1)"
before=$(snap_devs)
out=$(dmrep --json point create "$cvm")
check "DM_DISABLE_UDEV=1, create-group:1: the point fails" jq -e '.return != 0' <<<"$out"
is "DM_DISABLE_UDEV=1, create-group:1: no snapshot device is left" "$before" "$(snap_devs)"
check "DM_DISABLE_UDEV=1, create-group:1: nor a node of one" \
	test "$(find /dev/mapper -name 'dmrep-snap-*' | wc -l)" = "$(grep -c . <<<"$before")"
agent_stop
DM_DISABLE_UDEV=1 agent_start || not_ok "agent starts with DM_DISABLE_UDEV=1"
out=$(dmrep --json vm remove "$cvm")
expect_rc "DM_DISABLE_UDEV=1: the classic VM goes, points and all" 0 "$out"
is "no snapshot device is left" "" "$(snap_devs)"
agent_restart
check "no DMREP- device is left suspended at the end" none_suspended
remove_thin_vms

summary
