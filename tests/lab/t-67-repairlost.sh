#!/bin/bash
# Lab test: a pool repair that loses the pool's last transactions (issue
# 16, item 2; the bug README named after t-65).  thin_repair rebuilds the
# metadata from its last commit: a batch the kernel accepted whose commit
# never reached the device is not in it.  Made deterministic here with the
# metadata device dropping writes (flakey drop_writes: the commits are
# "done", nothing is written) while a point is taken, then failing, so the
# pool fails and is repaired on the commit from before the point.
#
# Without the fix the catalog kept the lost point and its transaction id:
# every later batch's set_transaction_id failed (EINVAL), so no point could
# be taken and not even `vm remove --force` worked.  With it the repair (and
# a restart after a crash at its last steps) brings the catalog in step:
# the pool's transaction id, the lost point gone, the disk's data as of the
# last commit, points, failover and removal working again.
set -u
. "$(dirname "$0")/lib/inittest.sh"
. "$(dirname "$0")/lib/fault.sh"

fault_setup 128M 8M 32M
check "data written to the VM's disk" dd if=/dev/urandom of="$D" bs=1M count=8 oflag=direct status=none
expect_rc "point 1" 0 "$(dmrep --json point create "$VM")"
H=$(head -c 16M "$D" | sha256sum)

dump() {
	diag "dm devices:"; dmsetup info -c -o name,attr,open 2>&1 | sed 's/^/#   /'
	diag "agent log:"; tail -n 25 "$W/dmrepd.log" | sed 's/^/#   /'
}
# A point the kernel accepts and the metadata device never gets; then the
# device fails, and the pool with it; then the device works again.
lose_a_point() {
	local out
	fault_table "${T}pmeta" dropwrites || return 1
	out=$(dmrep --json point create "$VM")
	expect_rc "$1: a point taken while the metadata's writes are dropped is accepted" 0 "$out"
	LOST=$(dmrep --json point list "$VM" | jq '[.[].id] | max')
	diag "$1: point $LOST; pool: $(dmrep --json pool status | jq -c '{transaction_id, catalog_transaction_id}')"
	fault_table "${T}pmeta" error || return 1
	dd if=/dev/urandom of="$D" bs=1M count=2 seek=20 oflag=direct status=none 2>/dev/null
	check "$1: with its metadata device failing, the pool fails" wait_until 30 fault_pool_sick
	fault_table "${T}pmeta" linear
}
# After the repair (or the restart that finished it): everything in step.
in_step() {
	local out
	check "$1: the pool is healthy" fault_pool_healthy
	out=$(dmrep --json pool status)
	check "$1: the catalog's transaction id is the pool's" \
		jq -e '.transaction_id == .catalog_transaction_id' <<<"$out"
	jq -e '.transaction_id == .catalog_transaction_id' <<<"$out" >/dev/null ||
		diag "$(jq -c '{transaction_id, catalog_transaction_id}' <<<"$out")"
	out=$(dmrep --json point list "$VM")
	check "$1: the lost point $LOST is not listed" jq -e --argjson p "$LOST" '[.[].id] | index($p) == null' <<<"$out"
	check "$1: point 1 is listed and valid" jq -e '[.[] | select(.valid) | .id] | index(1) != null' <<<"$out"
	check "$1: no DMREP- device suspended or with a table loaded" no_suspended_or_inactive
	is "$1: the disk holds its data as of the last commit" "$H" "$(head -c 16M "$D" | sha256sum)"
	out=$(dmrep --json point create "$VM")
	expect_rc "$1: point create works again" 0 "$out"
	[ "$(jq -r .return <<<"$out")" = 0 ] || dump
}

# ---- the repair, run to its end ------------------------------------------
lose_a_point "repair"
out=$(timeout 300 dmrep --json pool repair --wait)
check "pool repair --wait completes" job_ok "$out"
job_ok "$out" >/dev/null || { diag "$out"; dump; }
check "its steps end with reconciled" jq -e '[.steps[].name] | .[-1] == "reconciled"' <<<"$out"
check "it names the transaction id the pool came back at" jq -e '.transaction_id | type == "number"' <<<"$out"
in_step "repair"
check "the agent's log names the dropped point" grep -q "point $LOST is not in the repaired pool metadata" "$W/dmrepd.log"

# ---- a crash after the volumes are back, before the catalog follows --------
lose_a_point "crash"
agent_stop
DMREP_TEST_CRASH_AT=repair:volumes-back agent_start || not_ok "the agent starts with the hook"
expect_rc "crash: the repair starts" 4096 "$(dmrep --json pool repair)"
if agent_exited 120 && [ "$AGENT_RC" = 137 ]; then
	ok "crash: the agent was killed at repair:volumes-back"
else
	not_ok "crash: the agent was killed at repair:volumes-back (exit ${AGENT_RC:-none})"
	dump
	[ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
	AGENT_PID=
fi
agent_start || not_ok "crash: the agent restarts"
check "crash: no repair intent left after the restart" test ! -e "$STATE/pool-repair.json"
in_step "crash"

# ---- and the VM can go ----------------------------------------------------
out=$(dmrep --json failover start "$VM" --point 1 --wait)
check "a failover to point 1" job_ok "$out"
out=$(dmrep --json failover revert "$VM" --wait)
check "and its revert" job_ok "$out"
out=$(dmrep --json vm remove "$VM" --force)
expect_rc "vm remove --force" 0 "$out"
lab_reboot
check "thin_check is clean on the pool's metadata" thin_check -q "/dev/mapper/${T}pmeta"
summary
