#!/bin/bash
# Lab test: application-consistent points (issue: classic backend,
# application consistency, network settings - the application part).
#
# The "guest" is the lab's own kernel: a real qemu-ga listens on a Unix
# socket and freezes every mounted filesystem on a block device, here an
# ext4 mounted from the VM's stable disk (and the lab's scratch disk: this
# test keeps the agent's state, log and pool on tmpfs, which no freeze
# touches).  Checks: the point is made while frozen and its filesystem is
# clean (e2fsck -n), a writer blocks while frozen, the frozen window is in
# the job, no agent or a dead agent gives 32777 and no point, the thaw runs
# when the point fails, and an agent killed while the guest is frozen thaws
# it when it starts again.
set -u
export LAB_SCRATCH=/tmp
. "$(dirname "$0")/lib/inittest.sh"

guest_status() { "$LAB_QMP" --qga "$QGA" fsfreeze-status 2>/dev/null; }
# After the library's qga_down (registered later, run first: it thaws).
teardown() {
	fsfreeze --unfreeze "$MNT" >/dev/null 2>&1
	mountpoint -q "$MNT" && umount "$MNT"
}
npoints() { dmrep --json point list "$VM" | jq length; }

lab_need qemu-ga e2fsck debugfs
lab_need_qmp
agent_setup
lab_cleanup teardown
QGA=$W/qga.sock
MNT=$W/mnt
mkdir -p "$MNT"

prepare_pool 256M 8M "pool create on tmpfs"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:64M" --qga "$QGA")
expect_rc "vm add with a guest agent socket" 0 "$out"
out=$(dmrep --json vm add "${VM}n" --disk vda="$W/n.img:16M")
expect_rc "vm add without one" 0 "$out"
check "mkfs.ext4 on the VM's disk" mkfs.ext4 -q -F "/dev/dmrep/$VM/vda"
check "mount it" mount -o noatime "/dev/dmrep/$VM/vda" "$MNT"
echo before >"$MNT/before.txt"
if qga_start; then ok "qemu-ga listens on $QGA"; else not_ok "qemu-ga listens on $QGA"; exit 1; fi

# --- refusals: no point is made -----------------------------------------------
out=$(dmrep --json point create "${VM}n" --consistency application)
expect_rc "a VM without a guest agent: 32777" 32777 "$out"
out=$(dmrep --json point create "$VM" --consistency sideways)
expect_rc "a bad consistency: 32773" 32773 "$out"

# --- an application-consistent point, a writer blocked meanwhile ---------------
agent_stop
touch "$W/hold"
DMREP_TEST_HOLD_AT=point:frozen DMREP_TEST_HOLD_FILE=$W/hold agent_start ||
	not_ok "agent starts with a held frozen step"
dmrep --json point create "$VM" --consistency application --label app >"$W/point.out" &
pc=$!
# The job freezes the guest, then holds frozen until the test lets it go.
# (Not asked through qemu-ga: it serves one client, and the agent keeps its
# connection until the thaw.)
for _ in $(seq 600); do
	grep -q "holding point:frozen" "$W/dmrepd.log" && break
	sleep 0.1
done
check "the agent holds the point at its frozen step" grep -q "holding point:frozen" "$W/dmrepd.log"
t0=${EPOCHREALTIME/[.,]/}
dd if=/dev/zero of="$MNT/during.bin" bs=4096 count=1 conv=fsync status=none &
wr=$!
sleep 0.5
if kill -0 "$wr" 2>/dev/null; then ok "a writer to the frozen filesystem is blocked"; else
	not_ok "a writer to the frozen filesystem is blocked"
fi
sleep 1
rm -f "$W/hold"
wait "$wr"
t1=${EPOCHREALTIME/[.,]/}
echo "# the writer waited $(((t1 - t0) / 1000)) ms, 1.5 s of it the test's hold"
wait "$pc"
out=$(cat "$W/point.out")
expect_rc "point create --consistency application" 0 "$out"
pid=$(jq -r .point <<<"$out")
check "the writer finished once thawed" test -s "$MNT/during.bin"
job=$(dmrep --json job list | jq 'map(select(.method == "CreateReplicationPoint")) | max_by(.id)')
check "the job reports the frozen window and the frozen filesystems" \
	jq -e '.frozen_usec > 0 and .frozen_filesystems >= 1 and (.steps | map(.name) | index("frozen")) != null' <<<"$job"
echo "# frozen window: $(jq .frozen_usec <<<"$job") us (most of it the test's hold)"
pts=$(dmrep --json point list "$VM")
check "the point is listed as application-consistent" \
	jq -e --argjson p "$pid" 'map(select(.id == $p))[0] | .consistency == "application" and .label == "app" and .valid' <<<"$pts"
check "the guest is thawed" test "$(guest_status)" = thawed

# The point's filesystem is clean: frozen means the journal was committed.
tid=$(jq -r --argjson p "$pid" 'map(select(.id == $p))[0].thin_ids[0]' <<<"$pts")
pdev=${T}app
thin_view app "$tid" 131072
check "e2fsck -n finds the point's filesystem clean" e2fsck -n -f "/dev/mapper/$pdev"
check "the point holds the file written before it" \
	sh -c "debugfs -R 'cat /before.txt' '/dev/mapper/$pdev' 2>/dev/null | grep -qx before"
dmsetup remove --retry "$pdev" >/dev/null 2>&1
agent_restart

# --- the thaw runs when the point fails ----------------------------------------
agent_stop
DMREP_TEST_FAIL_AT=point:snapshot agent_start || not_ok "agent starts with a failing snapshot"
n0=$(npoints)
out=$(dmrep --json point create "$VM" --consistency application)
expect_rc "a point that fails after the freeze: 32768" 32768 "$out"
check "the guest was thawed all the same" test "$(guest_status)" = thawed
check "a writer goes through at once" timeout 10 dd if=/dev/zero of="$MNT/after.bin" bs=4096 count=1 conv=fsync status=none
check "no point was added" test "$(npoints)" = "$n0"

# --- an agent killed while the guest is frozen thaws it when it starts ------------
agent_stop
DMREP_TEST_CRASH_AT=point:frozen agent_start || not_ok "agent starts with a crash while frozen"
dmrep --json point create "$VM" --consistency application >/dev/null 2>&1
if agent_exited 10; then ok "the agent died while the guest was frozen"; else
	not_ok "the agent died while the guest was frozen"
	agent_stop
fi
check "the guest is left frozen by the crash" test "$(guest_status)" = frozen
agent_start || not_ok "the agent starts again"
check "the restarted agent thawed the guest" test "$(guest_status)" = thawed
check "the interrupted point was not kept" test "$(npoints)" = "$n0"

# --- a guest agent that is gone: 32777, no point ------------------------------------
qga_stop
out=$(dmrep --json point create "$VM" --consistency application)
expect_rc "the guest agent is gone: 32777" 32777 "$out"
check "no point was added" test "$(npoints)" = "$n0"
out=$(dmrep --json point create "$VM")
expect_rc "a crash-consistent point still works" 0 "$out"

agent_stop
summary
