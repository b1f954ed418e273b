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
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb"


# The state the VM must be in before an operation of each kind.
# vm_state: "STATE TEST_FAILOVER" of $VM (one vm show, one jq).
vm_state() { dmrep --json vm show "$VM" | jq -r '"\(.state) \(.test_failover)"'; }
ensure() {
	local want=$1 st tf changed=0
	read -r st tf < <(vm_state)
	if [ "$st" = committed ]; then
		put_all b
		dmrep --json point create "$VM" >/dev/null
		st=replicating changed=1
	fi
	if [ "$want" = recovered ] && [ "$st" != recovered ]; then
		dmrep --json failover start "$VM" --point 1 --guest resume --wait >/dev/null
		changed=1
	elif [ "$want" = replicating ] && [ "$st" = recovered ]; then
		dmrep --json failover revert "$VM" --wait >/dev/null
		changed=1
	fi
	# Asked again only when something ran since.
	[ "$changed" = 0 ] || read -r st tf < <(vm_state)
	if [ "$tf" = true ]; then
		dmrep --json failover stop-test "$VM" --wait >/dev/null
		read -r st tf < <(vm_state)
	fi
	test "$st" = "$want"
}

# invariants STEP: everything the recovery must guarantee.
invariants() {
	local step=$1 show st targets tf pts npts want tc
	check "$step: no DMREP- device suspended or with an inactive table" no_suspended_or_inactive
	show=$(dmrep --json vm show "$VM")
	read -r st targets tf < <(jq -r '"\(.state) \([.disks[].target] | unique | tojson) \(.test_failover)"' <<<"$show")
	case "$st/$targets" in
	'replicating/["live"]') check "$step: replicating, and the disks hold the live data" all_have b ;;
	'recovered/["point:1"]') check "$step: recovered, and the disks hold point 1" all_have a ;;
	'committed/["live"]') check "$step: committed, and the disks hold point 1's data" all_have a ;;
	*) not_ok "$step: state and targets agree (got $st $targets)" ;;
	esac
	check "$step: the guest runs" guest_running
	pts=$(dmrep --json point list "$VM")
	npts=$(jq 'length' <<<"$pts")
	check "$step: point 1 is listed and valid" jq -e 'map(select(.id == 1 and .valid)) | length == 1' <<<"$pts"
	want=$((2 * (1 + npts)))
	[ "$st" = recovered ] && want=$((want + 2))
	[ "$tf" = true ] && want=$((want + 2))
	tc=$(thin_count)
	if [ "$tc" = "$want" ]; then ok "$step: the pool holds exactly the catalog's $want thin volumes"; else
		not_ok "$step: the pool holds exactly the catalog's thin volumes (want $want, got $tc)"
	fi
}

lab_need qemu-system-x86_64 thin_ls
lab_need_qmp
agent_setup
prepare_pool 512M 8M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:16M" --qmp "$W/qmp.sock")
expect_rc "vm add" 0 "$out"
put_all a
out=$(dmrep --json point create "$VM")
expect_rc "point 1 (pattern a)" 0 "$out"
put_all b
if start_qemu "/dev/dmrep/$VM/vda" "/dev/dmrep/$VM/vdb,cache=none"; then ok "a nested QEMU runs with the VM's disks"; else
	not_ok "a nested QEMU runs with the VM's disks"
	exit 1
fi

STEPS="initiate:intent initiate:overlays initiate:preload initiate:paused initiate:suspended
initiate:resumed initiate:swapped initiate:done
revert:intent revert:preload revert:paused revert:suspended revert:resumed revert:swapped revert:deleted
test:intent commit:intent commit:deleted"
for step in $STEPS; do
	failover_step "$step" "$VM"
	if ! ensure "$STEP_PRE"; then
		not_ok "$step: the VM can be brought to $STEP_PRE first"
		continue
	fi
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	# The job's thread may reach the hook before the reply is written:
	# then the client sees the agent vanish (32777), which is right too.
	out=$(dmrep --json "${STEP_CMD[@]}")
	case $(jq -r .return <<<"$out") in
	4096 | 32777) ok "$step: the operation starts" ;;
	*) not_ok "$step: the operation starts (${out:0:200})" ;;
	esac
	# The hook kills the agent with SIGKILL: wait for that (bounded).
	agent_killed_at "$step"
	agent_start || { not_ok "$step: the agent restarts after the crash"; continue; }
	invariants "$step"
	check "$step: the interrupted job is reported finished" \
		eval "dmrep --json job list | jq -e 'max_by(.id) | .job_state >= 7'"
done

# A guest the operator had paused was not paused by the failover: a crash
# and the recovery leave it paused.
if ensure replicating && qmp pause >/dev/null 2>&1; then
	agent_stop
	DMREP_TEST_CRASH_AT=initiate:suspended agent_start || not_ok "agent starts with the hook"
	dmrep --json failover start "$VM" --point 1 --guest resume >/dev/null 2>&1
	agent_exited 60 || agent_stop
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
	qmp resume >/dev/null 2>&1
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
