#!/bin/bash
# Lab test: crash safety of failover (issue: failover).  For every step of
# InitiateFailover, RevertFailover, TestReplicaSystem and CommitFailover,
# the agent is killed with SIGKILL at that step (test builds: the
# DMREP_TEST_CRASH_AT hook), restarted, and must have recovered: no DMREP-
# device suspended or holding an inactive table, every disk of the VM on
# the same target, that target's data on the disks, a state that matches
# the kernel's tables, the guest running, point 1 intact, and no thin volume
# in the pool that the catalog does not account for.
set -u
. "$(dirname "$0")/agent-lib.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LAB_QMP=${LAB_QMP:-$(command -v lab_qmp || echo "$ROOT/${BUILD:-build}/bin/lab_qmp")}
DISKS="vda vdb"
QEMU_PID=

bytes() { head -c 16384 /dev/zero | tr '\000' "\\$(printf '%03o' "0x$1")"; }
put() { bytes "$2" | dd of="$1" bs=4096 seek=8 oflag=direct conv=notrunc status=none; }
has() { cmp -s <(bytes "$2") <(dd if="$1" bs=4096 skip=8 count=4 iflag=direct status=none); }
all_have() {
	local k=0 d
	for d in $DISKS; do
		has "/dev/dmrep/$VM/$d" "$1$k" || return 1
		k=$((k + 1))
	done
}
put_all() {
	local k=0 d
	for d in $DISKS; do
		put "/dev/dmrep/$VM/$d" "$1$k"
		k=$((k + 1))
	done
}
no_suspended_or_inactive() {
	! dmsetup info -c --noheadings -o uuid,attr --separator ' ' 2>/dev/null |
		awk '$1 ~ /^DMREP-/ && (substr($2, 3, 1) == "s" || substr($2, 5, 1) == "i") { bad = 1 } END { exit !bad }'
}
thin_count() {
	local meta n
	meta=$(losetup -j "$W/pool.meta" -O NAME -n | head -n1)
	dmsetup message dmrep-pool 0 reserve_metadata_snap || return 1
	n=$(thin_ls --metadata-snap --no-headers -o DEV "$meta" | wc -l)
	dmsetup message dmrep-pool 0 release_metadata_snap
	echo "$n"
}
guest_running() { "$LAB_QMP" "$QMP" status 2>/dev/null | grep -q '^running'; }

start_qemu() {
	QMP=$W/qmp.sock
	qemu-system-x86_64 -accel tcg -machine q35 -m 128 -nodefaults -display none \
		-qmp "unix:$QMP,server=on,wait=off" \
		-drive "file=/dev/dmrep/$VM/vda,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0 \
		-drive "file=/dev/dmrep/$VM/vdb,format=raw,if=none,id=d1,cache=none" \
		-device virtio-blk-pci,drive=d1 2>"$W/qemu.err" &
	QEMU_PID=$!
	for _ in $(seq 600); do
		[ -S "$QMP" ] && guest_running && return 0
		sleep 0.1
	done
	return 1
}
teardown() {
	[ -n "$QEMU_PID" ] && kill -KILL "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
	agent_teardown
}

# The state the VM must be in before an operation of each kind.
ensure() {
	local want=$1 st
	st=$(dmrep --json vm show "$VM" | jq -r .state)
	if [ "$st" = committed ]; then
		put_all b
		dmrep --json point create "$VM" >/dev/null
		st=replicating
	fi
	if [ "$want" = recovered ] && [ "$st" != recovered ]; then
		dmrep --json failover start "$VM" --point 1 --guest resume --wait >/dev/null
	elif [ "$want" = replicating ] && [ "$st" = recovered ]; then
		dmrep --json failover revert "$VM" --wait >/dev/null
	fi
	if [ "$(dmrep --json vm show "$VM" | jq -r '.test_failover')" = true ]; then
		dmrep --json failover stop-test "$VM" --wait >/dev/null
	fi
	test "$(dmrep --json vm show "$VM" | jq -r .state)" = "$want"
}

# invariants STEP: everything the recovery must guarantee.
invariants() {
	local step=$1 show st targets npts want tc
	check "$step: no DMREP- device suspended or with an inactive table" no_suspended_or_inactive
	show=$(dmrep --json vm show "$VM")
	st=$(jq -r .state <<<"$show")
	targets=$(jq -c '[.disks[].target] | unique' <<<"$show")
	case "$st/$targets" in
	'replicating/["live"]') check "$step: replicating, and the disks hold the live data" all_have b ;;
	'recovered/["point:1"]') check "$step: recovered, and the disks hold point 1" all_have a ;;
	'committed/["live"]') check "$step: committed, and the disks hold point 1's data" all_have a ;;
	*) not_ok "$step: state and targets agree (got $st $targets)" ;;
	esac
	check "$step: the guest runs" guest_running
	npts=$(dmrep --json point list "$VM" | jq 'length')
	check "$step: point 1 is listed and valid" sh -c "dmrep --json point list '$VM' | jq -e 'map(select(.id == 1 and .valid)) | length == 1'"
	want=$((2 * (1 + npts)))
	[ "$st" = recovered ] && want=$((want + 2))
	[ "$(jq -r .test_failover <<<"$show")" = true ] && want=$((want + 2))
	tc=$(thin_count)
	if [ "$tc" = "$want" ]; then ok "$step: the pool holds exactly the catalog's $want thin volumes"; else
		not_ok "$step: the pool holds exactly the catalog's thin volumes (want $want, got $tc)"
	fi
}

agent_setup
trap teardown EXIT
out=$(dmrep --json pool create --data "$W/pool.data" --data-size 512M --meta "$W/pool.meta" --meta-size 8M)
expect_rc "pool create" 0 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:16M" --qmp "$W/qmp.sock")
expect_rc "vm add" 0 "$out"
put_all a
out=$(dmrep --json point create "$VM")
expect_rc "point 1 (pattern a)" 0 "$out"
put_all b
if start_qemu; then ok "a nested QEMU runs with the VM's disks"; else
	not_ok "a nested QEMU runs with the VM's disks"
	sed 's/^/# qemu: /' "$W/qemu.err"
	exit 1
fi

STEPS="initiate:intent initiate:overlays initiate:preload initiate:paused initiate:suspended
initiate:resumed initiate:swapped initiate:done
revert:intent revert:preload revert:paused revert:suspended revert:resumed revert:swapped revert:deleted
test:intent commit:intent commit:deleted"
for step in $STEPS; do
	case $step in
	initiate:* | test:*) pre=replicating ;;
	*) pre=recovered ;;
	esac
	case $step in
	initiate:*) cmd=(failover start "$VM" --point 1 --guest resume) ;;
	revert:*) cmd=(failover revert "$VM") ;;
	test:*) cmd=(failover start "$VM" --test --point 1) ;;
	commit:*) cmd=(failover commit "$VM") ;;
	esac
	if ! ensure "$pre"; then
		not_ok "$step: the VM can be brought to $pre first"
		continue
	fi
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	# The job's thread may reach the hook before the reply is written:
	# then the client sees the agent vanish (32777), which is right too.
	out=$(dmrep --json "${cmd[@]}")
	case $(jq -r .return <<<"$out") in
	4096 | 32777) ok "$step: the operation starts" ;;
	*) not_ok "$step: the operation starts (${out:0:200})" ;;
	esac
	# The hook kills the agent with SIGKILL: wait for that (bounded).
	for _ in $(seq 600); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$AGENT_PID" 2>/dev/null; then
		not_ok "$step: the agent was killed at the step"
		agent_stop
	else
		wait "$AGENT_PID" 2>/dev/null
		rc=$?
		AGENT_PID=
		if [ "$rc" = 137 ]; then ok "$step: the agent was killed at the step (SIGKILL)"; else
			not_ok "$step: the agent was killed at the step (exit $rc)"
		fi
	fi
	agent_start || { not_ok "$step: the agent restarts after the crash"; continue; }
	invariants "$step"
	check "$step: the interrupted job is reported finished" \
		sh -c "dmrep --json job list | jq -e 'max_by(.id) | .job_state >= 7'"
done

# A guest the operator had paused was not paused by the failover: a crash
# and the recovery leave it paused.
if ensure replicating && "$LAB_QMP" "$QMP" pause >/dev/null 2>&1; then
	agent_stop
	DMREP_TEST_CRASH_AT=initiate:suspended agent_start || not_ok "agent starts with the hook"
	dmrep --json failover start "$VM" --point 1 --guest resume >/dev/null 2>&1
	for _ in $(seq 600); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	agent_start || not_ok "the agent restarts"
	check "an operator-paused guest stays paused through a crash and recovery" \
		sh -c "'$LAB_QMP' '$QMP' status | grep -q '^paused'"
	if all_have b; then ok "and its disks are back on the live data"; else
		not_ok "and its disks are back on the live data"
		dmrep --json vm show "$VM" | sed 's/^/# /'
		for d in $DISKS; do
			echo "# $d: $(dd if="/dev/dmrep/$VM/$d" bs=4096 skip=8 count=1 iflag=direct status=none | od -An -tx1 | head -1)"
		done
		grep -v ' debug: ' "$W/dmrepd.log" | tail -25 | sed 's/^/# log: /'
	fi
	check "with nothing suspended" no_suspended_or_inactive
	"$LAB_QMP" "$QMP" resume >/dev/null 2>&1
else
	not_ok "the guest can be paused by the operator"
fi

# After all that, the VM still works end to end.
ensure replicating && ok "the VM is replicating after the crash loop" || not_ok "the VM is replicating after the crash loop"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "a failover after the crash loop completes" jq -e '.job_state == 7' <<<"$out"
check "and the disks hold point 1" all_have a

agent_stop
summary
