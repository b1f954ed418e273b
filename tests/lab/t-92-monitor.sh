#!/bin/bash
# Lab test: the space monitor (dmrepd --monitor-interval) on real dm.  With
# nobody calling in, the agent notices a classic point's COW store filling
# (a warning at 80 %), then overflowing (the point is marked invalid in its
# state file, so failover never picks it), and a thin pool filling (a
# warning at 80 %) and running out of data space (an error).  Every check
# waits for the agent's own log or state file; no request that would read
# the status for it (point list, failover) is made before.
set -u
. "$(dirname "$0")/lib/inittest.sh"

# fill DEV MIB SEEK_MIB: write MIB MiB of random data at SEEK_MIB, O_DIRECT.
fill() { head -c "$2M" /dev/urandom | dd of="$1" bs=1M seek="$3" oflag=direct conv=notrunc status=none; }

DMREPD_ARGS="--monitor-interval 1"
agent_setup

check "a bad --monitor-interval is a usage error (2)" test "$(dmrepd --monitor-interval soon >/dev/null 2>&1; echo $?)" = 2
check "--help documents --monitor-interval" sh -c "dmrepd --help | grep -q -- --monitor-interval"

# --- classic: a COW store fills, then overflows ------------------------------------
CV=${VM}c
out=$(dmrep --json vm add "$CV" --backend classic --disk vda="$W/c.img:16M" --cow-size 2M)
expect_rc "classic vm add with a 2 MiB COW store" 0 "$out"
out=$(dmrep --json point create "$CV")
expect_rc "classic point 1" 0 "$out"
check "the state file says point 1 is valid" wait_state "$CV" '.points[0].valid == true'
# 1.75 MiB of the store's 2 (with its metadata: about 88 %).
head -c $((7 * 256 * 1024)) /dev/urandom |
	dd of="/dev/dmrep/$CV/vda" bs=256K oflag=direct conv=notrunc status=none
check "unasked, the agent warns that point 1's COW store is past 80 %" \
	agent_wait_log "VM $CV: point 1's COW store is (8[0-9]|9[0-9])% full"
check "the point is still valid" jq -e '.points[0].valid == true' "$STATE/vms/$CV.json"
fill "/dev/dmrep/$CV/vda" 2 4
check "unasked, the agent marks the overflowed point invalid in its state file" \
	wait_state "$CV" '.points[0].valid == false'
check "and logs it" agent_wait_log "VM $CV: point 1 is invalid"
out=$(dmrep --json failover start "$CV" --point 1 --guest resume 2>/dev/null)
expect_rc "failover to it is refused (32775)" 32775 "$out"

# --- thin: the pool fills, then runs out ----------------------------------------------
out=$(dmrep --json pool create --data "$W/pool.data" --data-size 64M --meta "$W/pool.meta" --meta-size 8M)
expect_rc "a 64 MiB pool" 0 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/t.img:96M")
expect_rc "a thin disk larger than the pool" 0 "$out"
check "no pool warning while it is nearly empty" eval '! grep -q "pool data is" "$W/dmrepd.log"'
fill "/dev/dmrep/$VM/vda" 54 0
check "unasked, the agent warns that the pool's data is past 80 %" \
	agent_wait_log "pool data is (8[0-9]|9[0-9])% full"
sleep 3 # three more rounds of the monitor
check "one warning, not one a round" test "$(grep -c "pool data is" "$W/dmrepd.log")" = 1
fill "/dev/dmrep/$VM/vda" 16 60 2>/dev/null
check "pool status says out_of_data_space" test "$(dmrep --json pool status | jq -r .mode)" = out_of_data_space
check "unasked, the agent says the pool is out of data space" agent_wait_log "pool is out of data space"
summary
