#!/bin/bash
# Lab test: faults below the pool (issue 16, item 2).  The pool's data and
# metadata are dm linear devices the test makes over loops (${T}pdata,
# ${T}pmeta), so that a table swap to `error` fails them under the pool.
#
# A metadata device that fails makes the pool fail: pool status says so
# (health fail/needs_check/read_only, advice naming 'dmrep pool repair'),
# point create and failover start are refused with 32775 and that reason
# (not a dm errno).  The device back, `dmrep pool repair --wait` brings the
# pool back; a crash at each of its steps leaves the VM's devices back on
# the pool after the restart and the repair can run again; the VM's data
# and points are intact (sha256), point create and failover work again,
# thin_check is clean on the metadata; a data device on error during a
# failover leaves the VM on one target, nothing suspended.  Then a pool out
# of data space: 32778 with a reason, but removing points or a VM works.
set -u
. "$(dirname "$0")/lib/inittest.sh"
. "$(dirname "$0")/lib/fault.sh"

fault_setup 128M 8M 32M
check "data written to the VM's disk" dd if=/dev/urandom of="$D" bs=1M count=8 oflag=direct status=none
expect_rc "point 1" 0 "$(dmrep --json point create "$VM")"
check "more data after point 1" dd if=/dev/urandom of="$D" bs=1M count=2 seek=2 oflag=direct status=none
expect_rc "point 2" 0 "$(dmrep --json point create "$VM")"
H=$(head -c 16M "$D" | sha256sum)
# What point 1 holds, from a failover to it now (then reverted).
out=$(dmrep --json failover start "$VM" --point 1 --wait)
check "a failover to point 1 before the fault" job_ok "$out"
H1=$(head -c 16M "$D" | sha256sum)
out=$(dmrep --json failover revert "$VM" --wait)
check "and its revert" job_ok "$out"
is "the disk holds the live data again" "$H" "$(head -c 16M "$D" | sha256sum)"

# ---- the metadata device fails ------------------------------------------
fault_meta_fail() {
	fault_table "${T}pmeta" error
	# Writes to new blocks need metadata: the pool's commit fails.
	dd if=/dev/urandom of="$D" bs=1M count=2 seek=20 oflag=direct status=none 2>/dev/null
	dmrep --json point create "$VM" >/dev/null 2>&1
	wait_until 30 fault_pool_sick
}
check "with the metadata device on error, the pool fails" fault_meta_fail
out=$(dmrep --json pool status)
diag "pool status: $(jq -c '{health, mode, needs_check, advice}' <<<"$out")"
check "pool status says what to do" jq -e '.advice | contains("dmrep pool repair")' <<<"$out"
check "the text form says the health too" sh -c "dmrep pool status | grep -Eq 'health.*(fail|needs_check|read_only)'"
out=$(dmrep --json point create "$VM")
expect_rc "point create on the failed pool: 32775" 32775 "$out"
check "the reason says the pool failed and to repair it" \
	jq -e '.error | test("pool (failed|is read-only|.s status cannot be read)") and contains("dmrep pool repair")' <<<"$out"
diag "$(jq -r .error <<<"$out")"
out=$(dmrep --json failover start "$VM" --point 1)
expect_rc "failover start on the failed pool: 32775" 32775 "$out"
check "the same reason" jq -e '.error | contains("dmrep pool repair")' <<<"$out"
out=$(dmrep --json pool repair --wait)
check "repair while the device still fails does not complete" jq -e '.job_state != 7' <<<"$out"
diag "repair on the failing device: $(jq -c '{job_state, error_code, error_description}' <<<"$out")"
check "no DMREP- device is left suspended" no_suspended_or_inactive

fault_table "${T}pmeta" linear
ok "the metadata device works again"

# ---- a crash at each step of the repair ---------------------------------
# After each, the restart brings the volumes' devices back on the pool (on
# the old metadata before the swap, on the repaired one after); a pool that
# came back healthy is made to fail again for the next step.
fail_again() {
	fault_pool_healthy || return 0
	fault_meta_fail
	fault_table "${T}pmeta" linear
	fault_pool_sick
}
# What the agent and dm say, when a step did not go as it should.
dump() {
	diag "dm devices:"; dmsetup info -c -o name,attr,open 2>&1 | sed 's/^/#   /'
	dmsetup table 2>&1 | sed 's/^/#   /'
	diag "agent log:"; tail -n 25 "$W/dmrepd.log" | sed 's/^/#   /'
}
for step in ${LAB_T64_STEPS:-backup volumes-error pool-down repaired swapped pool-up}; do
	check "$step: the pool is failed before the repair" fail_again
	agent_stop
	DMREP_TEST_CRASH_AT=repair:$step agent_start || { not_ok "$step: the agent starts with the hook"; continue; }
	out=$(dmrep --json pool repair)
	expect_rc "$step: the repair starts" 4096 "$out"
	if ! agent_exited 60; then
		not_ok "repair:$step: the agent was killed at the step"
		dump
		kill -KILL "$AGENT_PID"
		wait "$AGENT_PID" 2>/dev/null
		AGENT_PID=
	elif [ "$AGENT_RC" = 137 ]; then
		ok "repair:$step: the agent was killed at the step (SIGKILL)"
	else
		not_ok "repair:$step: the agent was killed at the step (exit $AGENT_RC)"
		dump
	fi
	agent_start || { not_ok "$step: the agent restarts"; continue; }
	check "$step: no DMREP- device suspended or with a table loaded" no_suspended_or_inactive
	if fault_pool_healthy >/dev/null 2>&1; then
		is "$step: the pool came back healthy, the disk's volume is back on it" thin \
			"$(fault_lower_type "dmrep-$VM:vda")"
		check "$step: no repair intent left" test ! -e "$STATE/pool-repair.json"
		is "$step: the disk holds its data" "$H" "$(head -c 16M "$D" | sha256sum)"
	else
		# Still the failed pool in the kernel: it takes no thin table.
		diag "$step: the pool is still failed after the restart; the volume's device is on $(fault_lower_type "dmrep-$VM:vda")"
		out=$(dmrep --json point create "$VM")
		expect_rc "$step: the pool still failed, point create is refused (32775)" 32775 "$out"
	fi
done

# ---- the repair -----------------------------------------------------------
check "the pool is failed before the repair" fail_again
out=$(timeout 300 dmrep --json pool repair --wait)
check "pool repair --wait completes" job_ok "$out"
job_ok "$out" || { diag "$out"; dump; }
diag "repair: $(jq -c '{steps: [.steps[].name], thin_check_before, thin_check_after, backup}' <<<"$out")"
check "the job names the old metadata's backup, which exists" test -s "$(jq -r .backup <<<"$out")"
check "thin_check passed on the metadata after the swap" jq -e '.thin_check_after == "clean"' <<<"$out"
check "the pool is healthy" fault_pool_healthy
check "no DMREP- device suspended or with a table loaded" no_suspended_or_inactive
is "the disk holds its data as before the fault" "$H" "$(head -c 16M "$D" | sha256sum)"
out=$(dmrep --json point list "$VM")
check "points 1 and 2 are listed and valid" jq -e '[.[] | select(.valid) | .id] | index(1) != null and index(2) != null' <<<"$out"
out=$(dmrep --json point create "$VM")
expect_rc "point create works again" 0 "$out"
out=$(dmrep --json failover start "$VM" --point 1 --wait)
check "a failover to point 1 works again" job_ok "$out"
is "and the disk holds point 1's data" "$H1" "$(head -c 16M "$D" | sha256sum)"
out=$(dmrep --json failover revert "$VM" --wait)
check "and its revert" job_ok "$out"
is "the disk holds its live data" "$H" "$(head -c 16M "$D" | sha256sum)"
out=$(dmrep --json pool repair)
expect_rc "a healthy pool is not repaired (32775)" 32775 "$out"
check "the reason says it is healthy" jq -e '.error | contains("healthy")' <<<"$out"

# ---- the data device fails during a failover -----------------------------
# The failover swaps tables and makes overlays (metadata only): whatever it
# answers, the VM ends on one target, nothing is suspended, the agent is up.
fault_table "${T}pdata" error
out=$(timeout 300 dmrep --json failover start "$VM" --point 1 --wait)
diag "failover with the data device on error: $(jq -c '{job_state, error_code, error_description}' <<<"$out" 2>/dev/null || echo "$out")"
check "with the data device failing, the failover ends (completed or a documented code)" \
	jq -e '.job_state == 7 or (.error_code >= 32768 and .error_code <= 32779)' <<<"$out"
check "no DMREP- device suspended or with a table loaded" no_suspended_or_inactive
out=$(dmrep --json vm show "$VM")
check "the VM is on one target, as its state says" \
	jq -e '(.state == "recovered" and ([.disks[].target] | unique) == ["point:1"]) or (.state == "replicating" and ([.disks[].target] | unique) == ["live"])' <<<"$out"
check "the agent is up" dmrep --json vm list
fault_table "${T}pdata" linear
ok "the data device works again"
if jq -e '.state == "recovered"' <<<"$out" >/dev/null; then
	out=$(dmrep --json failover revert "$VM" --wait)
	check "the failover is reverted once the device is back" job_ok "$out"
fi
is "the disk holds its live data" "$H" "$(head -c 16M "$D" | sha256sum)"
fault_pool_healthy >/dev/null 2>&1 || diag "pool after the data fault: $(dmrep --json pool status | jq -c '{health, mode}')"

# ---- thin_check on the metadata, the pool down ---------------------------
lab_reboot
check "thin_check is clean on the pool's metadata" thin_check -q "/dev/mapper/${T}pmeta"
agent_start || not_ok "the agent starts after the reboot"
check "the pool is healthy after a reboot" fault_pool_healthy
is "the disk holds its live data after the reboot" "$H" "$(head -c 16M "$D" | sha256sum)"

# ---- out of data space -----------------------------------------------------
out=$(dmrep --json vm add "${VM}b" --disk vda="$W/big.img:256M")
expect_rc "a second VM, larger than the pool" 0 "$out"
dd if=/dev/urandom of="/dev/dmrep/${VM}b/vda" bs=1M count=160 oflag=direct status=none 2>/dev/null
check "filling it, the pool runs out of data space" \
	wait_until 30 sh -c "dmrep --json pool status | jq -e '.health == \"out_of_data_space\" or .data_used_blocks == .data_total_blocks'"
out=$(dmrep --json point create "$VM")
expect_rc "point create in a full pool: 32778" 32778 "$out"
check "the reason says the pool is out of space" jq -e '.error | test("out of data space|nearly full")' <<<"$out"
diag "$(jq -r .error <<<"$out")"
out=$(dmrep --json pool repair)
expect_rc "repair does not apply to a full pool (32775)" 32775 "$out"
out=$(dmrep --json point remove "$VM" 1)
expect_rc "removing a point frees space: not refused in a full pool" 0 "$out"
out=$(dmrep --json vm remove "${VM}b")
expect_rc "nor removing a VM" 0 "$out"
check "the agent is up" dmrep --json vm list
summary
