#!/bin/bash
# Lab test: a thin-pool VM survives a host reboot in every state it can rest
# in.  The reboot is simulated the way the kernel sees one: the agent stops,
# every DMREP- device (the pool last) and every loop over the pool's files
# goes.  The agent then starts on its state directory alone and must bring
# back the pool, the stable devices on the right volumes (the live ones
# while replicating, the overlays once recovered), a test failover's views
# with what was written to them, and every point; without reporting its
# own devices as orphans.  Under systemd (Type=notify) it reports READY=1
# only once all that is back: lab_notify plays systemd and looks then.
set -u
. "$(dirname "$0")/lib/inittest.sh"

LAB_NOTIFY=${LAB_NOTIFY:-$(command -v lab_notify || echo "$ROOT/${BUILD:-build}/bin/lab_notify")}

orphans() { grep -c "orphan device" "$W/dmrepd.log"; }

simulate_reboot() {
	lab_reboot
	if dmsetup info -c --noheadings -o uuid 2>/dev/null | grep -q '^DMREP-'; then
		not_ok "the simulated reboot removed every DMREP- device"
	else
		ok "the simulated reboot removed every DMREP- device"
	fi
}

agent_setup
prepare_pool 512M 16M
truncate -s 16M "$W/vda.img" "$W/vdb.img"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img" --disk vdb="$W/vdb.img")
expect_rc "vm add, two disks" 0 "$out"
put "/dev/dmrep/$VM/vda" a1
put "/dev/dmrep/$VM/vdb" b1
out=$(dmrep --json point create "$VM" --label before)
expect_rc "point 1" 0 "$out"
put "/dev/dmrep/$VM/vda" a2
put "/dev/dmrep/$VM/vdb" b2

# --- replicating ----------------------------------------------------------------
simulate_reboot
check "the pool's loops went too" test -z "$(losetup -j "$W/pool.data" -O NAME -n)"
agent_start || not_ok "agent starts after the reboot"
check "the pool is back" eval "dmrep --json pool status | jq -e '.data_used_blocks > 0'"
check "the stable devices are back with the live data" both a2 b2
check "point 1 is still listed" eval "dmrep --json point list '$VM' | jq -e 'length == 1 and .[0].id == 1'"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover to point 1 after the reboot" job_ok "$out"
check "the disks show point 1" both a1 b1

# --- recovered: the guest's writes live on the overlays -----------------------------
put "/dev/dmrep/$VM/vda" a3
put "/dev/dmrep/$VM/vdb" b3
simulate_reboot
agent_start || not_ok "agent starts after a reboot while recovered"
check "still recovered on point 1" vm_is '.state == "recovered" and ([.disks[].target] | unique) == ["point:1"]'
check "the stable devices are back on the overlays, with what was written there" both a3 b3
out=$(dmrep --json failover revert "$VM" --wait)
check "revert after the reboot" job_ok "$out"
check "revert brings back the live data from before the failover" both a2 b2
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover to point 1 again: the point was never written" eval 'job_ok "$out" && both a1 b1'
out=$(dmrep --json failover revert "$VM" --wait)
check "revert again" job_ok "$out"

# --- test failover --------------------------------------------------------------------
out=$(dmrep --json failover start "$VM" --test --wait)
check "test failover" job_ok "$out"
put "/dev/dmrep/$VM-test/vda" a5
before=$(orphans)
agent_restart
check "an agent restart does not call the test views orphans" test "$(orphans)" = "$before"
simulate_reboot
# What a hypervisor unit ordered after dmrepd finds at READY=1.
"$LAB_NOTIFY" "$W/notify.sock" 120 sh -c "test -b /dev/dmrep/$VM/vda && test -b /dev/dmrep/$VM/vdb &&
	test -b /dev/dmrep/$VM-test/vda && test -b /dev/dmrep/$VM-test/vdb" >"$W/notify.out" 2>&1 &
npid=$!
for _ in $(seq 100); do [ -S "$W/notify.sock" ] && break; lab_nap 0.05; done
NOTIFY_SOCKET=$W/notify.sock agent_start || not_ok "agent starts after a reboot during a test failover"
wait "$npid"
nrc=$?
sed 's/^/# notify: /' "$W/notify.out"
check "the agent said READY=1 only with every device back (lab_notify: $nrc)" test "$nrc" = 0
check "the test views are back" test -b "/dev/dmrep/$VM-test/vda" -a -b "/dev/dmrep/$VM-test/vdb"
check "the test view keeps what was written to it" has "/dev/dmrep/$VM-test/vda" a5
check "the other test view shows the point" has "/dev/dmrep/$VM-test/vdb" b1
check "the replica's own disks are untouched" both a2 b2
check "vm show: test failover, replicating" vm_is '.test_failover == true and .state == "replicating"'
check "no orphan reported after the reboot" test "$(orphans)" = "$before"
out=$(dmrep --json failover stop-test "$VM" --wait)
check "stop-test after the reboot" job_ok "$out"
check "the test devices are gone" test ! -e "/dev/mapper/dmrep-$VM:test:vda" -a ! -e "/dev/mapper/dmrep-$VM:test:vdb"
out=$(dmrep --json point create "$VM" --label after)
expect_rc "a new point after all that" 0 "$out"
summary
