#!/bin/bash
# Lab test: failover on real device-mapper with a real nested QEMU guest
# (issue: failover).  A VM with three disks opened by QEMU (two in QEMU's
# default cache mode, through the host page cache, one with cache=none), and
# a buffered reader on the host holding a disk open.  InitiateFailover,
# revert, failover again (the point was never written), commit, test
# failover, the refusals, a dead hypervisor, and injected faults in the swap:
# all disks switch or none does.
set -u
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb vdc"

# has_buffered HEX: the same for vdb through the host page cache.  The
# page cache belongs to the block device, and fd 8 keeps it open (so do
# QEMU's descriptors): every buffered reader shares what is cached there.
has_buffered() {
	cmp -s <(bytes "$1") <(dd if="/dev/dmrep/$VM/vdb" bs=4096 skip=8 count=4 status=none)
}
# hex byte of disk k in phase P (a, b, c).
pat() { printf '%s%d' "$1" "$2"; }
# qemu_io DRIVE CMD: run a qemu-io command inside QEMU (HMP) and print what
# it said.  qemu-io writes to QEMU's stdout, not to the monitor: QEMU runs
# line-buffered into $W/qemu.out and the new part of that file is the answer.
qemu_io() {
	local before
	before=$(stat -c %s "$W/qemu.out")
	qmp hmp "qemu-io $1 \"$2\"" >/dev/null || return 1
	tail -c +$((before + 1)) "$W/qemu.out"
}
# guest_has DRIVE HEX: QEMU itself reads that pattern.
guest_has() {
	local out
	out=$(qemu_io "$1" "read -P 0x$2 32768 16384")
	case $out in *"read 16384/16384"*) ! grep -qi fail <<<"$out" ;; *) return 1 ;; esac
}
guest_put() { qemu_io "$1" "write -P 0x$2 32768 16384" | grep -q "wrote 16384/16384"; }
targets() { dmrep --json vm show "$VM" | jq -c '[.disks[].target] | unique'; }
# The writer and the buffered holder go before QEMU (the library stops it).
teardown() {
	[ -n "${WRITER:-}" ] && { touch "$W/writer.stop"; wait "$WRITER" 2>/dev/null; }
	exec 8<&- 2>/dev/null
}

lab_need qemu-system-x86_64 thin_ls
lab_need_qmp
agent_setup
bytes a0 >"$W/pat.a0"
W_QMP=$W/qmp.sock

prepare_pool 1G 16M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:32M" --disk vdb="$W/vdb.img:32M" \
	--disk vdc="$W/vdc.img:32M" --qmp "$W_QMP")
expect_rc "vm add with three disks and a QMP socket" 0 "$out"
put_all a
out=$(dmrep --json point create "$VM" --label before)
expect_rc "point 1 (pattern a)" 0 "$out"
put_all b
check "the live disks hold pattern b" all_have b

if start_qemu "/dev/dmrep/$VM/vda" "/dev/dmrep/$VM/vdb" "/dev/dmrep/$VM/vdc,cache=none"; then
	lab_cleanup teardown
	ok "a nested QEMU runs with the three stable devices"
else
	not_ok "a nested QEMU runs with the three stable devices"
	exit 1
fi
# Fill the host page cache with the live data: QEMU's default cache mode
# reads through it, and so does a buffered holder on the host.
check "QEMU reads pattern b on vda (host page cache)" guest_has d0 b0
check "QEMU reads pattern b on vdc (cache=none)" guest_has d2 b2
exec 8<"/dev/dmrep/$VM/vdb"
check "a buffered holder of vdb reads pattern b" has_buffered b1
# An O_DIRECT writer on vdc (away from the checked blocks) through every
# swap that follows: it must never see an I/O error.  One dd writes 64
# blocks (200..263), each as the shell hands it one through the pipe
# every 50 ms: more writes than a dd started per write managed (each
# process costs 0.1 s or more under TCG), at a fraction of the CPU.
: >"$W/writer.err"
lab_nap 0
(
	blk=$(printf '%4096s' '')
	n=0
	while [ ! -e "$W/writer.stop" ]; do
		for ((i = 0; i < 64; i++)); do
			printf '%s' "$blk"
			lab_nap 0.05
			[ -e "$W/writer.stop" ] && break
		done | dd of="/dev/dmrep/$VM/vdc" bs=4096 seek=200 iflag=fullblock oflag=direct conv=notrunc \
			status=none 2>>"$W/writer.err" || echo "the writes after $n failed" >>"$W/writer.err"
		n=$((n + 64))
	done
	echo "$n" >"$W/writer.count"
) &
WRITER=$!

# --- refusals before anything ------------------------------------------------
out=$(dmrep --json failover start nosuchvm --wait)
expect_rc "failover of an unknown VM: not found" 32779 "$out"
out=$(dmrep --json failover start "$VM" --point 99 --wait)
expect_rc "failover to an unknown point: not found" 32779 "$out"
out=$(dmrep --json failover revert "$VM" --wait)
expect_rc "revert of a replicating VM: invalid state" 32775 "$out"
out=$(dmrep --json failover commit "$VM" --wait)
expect_rc "commit of a replicating VM: invalid state" 32775 "$out"
out=$(dmrep --json failover start "$VM" --guest sideways)
expect_rc "a bad guest policy: invalid parameter" 32773 "$out"

# --- InitiateFailover, latest point, guest resumed ------------------------------
out=$(dmrep --json failover start "$VM")
expect_rc "failover start without --wait returns a job" 4096 "$out"
job=$(jq -r .job <<<"$out")
out=$(dmrep --json job wait "$job" --timeout 120)
check "the failover job completes" job_ok "$out"
check "its job JSON has the contract's fields" jq -e --arg vm "$VM" '.method == "InitiateFailover"
	and .vm == $vm and .state == "completed" and .percent_complete == 100
	and (.steps | length) > 0 and (.started | length) > 0 and (.finished | length) > 0' <<<"$out"
check "the guest was paused for a measured window" jq -e '.guest_paused_usec > 0' <<<"$out"
check "the window's phases are steps that add up to at most the window" jq -e '
	[.steps[] | select(.name | startswith("window:")) | .name] ==
	["window:pause", "window:sync", "window:suspend", "window:resume", "window:flushbuf",
	 "window:guest-resume"] and
	([.steps[] | select(.name | startswith("window:")) | .usec] | add) <=
	([.steps[] | select(.name == "window") | .usec][0]) + 1000' <<<"$out"
echo "# guest-paused window: $(jq .guest_paused_usec <<<"$out") us (reset policy, 3 disks)"
check "the VM is recovered on point 1" eval "dmrep --json vm show '$VM' | jq -e '.state == \"recovered\" and .failover_point == 1'"
is_t=$(targets)
if [ "$is_t" = '["point:1"]' ]; then ok "every disk's target is point:1"; else not_ok "every disk's target is point:1 (got $is_t)"; fi
check "every stable device now reads pattern a (O_DIRECT)" all_have a
check "the buffered holder reads pattern a (page cache invalidated)" has_buffered a1
# What the device holds under QEMU's own descriptor.
qfd=
for f in /proc/"$QEMU_PID"/fd/*; do
	[ "$(readlink -f "$f")" = "$(readlink -f "/dev/dmrep/$VM/vda")" ] && { qfd=$f; break; }
done
fd_has_a0() { [ -n "$qfd" ] && dd if="$qfd" bs=4096 skip=8 count=4 status=none | cmp -s - "$W/pat.a0"; }
check "QEMU's own descriptor of vda (${qfd:-none found}) reads pattern a" fd_has_a0
check "the guest runs after the failover" guest_running
check "no DMREP- device is suspended or has an inactive table" no_suspended_or_inactive
out=$(dmrep --json failover start "$VM" --wait)
expect_rc "failover of a recovered VM: invalid state" 32775 "$out"

# --- revert, with the guest resumed so QEMU's view can be read ---------------------
check "QEMU writes pattern c to the overlay of vda" guest_put d0 c0
out=$(dmrep --json failover revert "$VM" --wait)
check "revert completes" job_ok "$out"
check "the VM is replicating again, every disk live" eval "dmrep --json vm show '$VM' | jq -e '.state == \"replicating\" and .failover_point == null and ([.disks[].target] | unique) == [\"live\"]'"
check "the live disks hold pattern b again" all_have b

out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover to point 1 again, guest resumed" job_ok "$out"
check "QEMU reads pattern a on vda (default cache mode, after the swap)" guest_has d0 a0
check "QEMU reads pattern a on vdb" guest_has d1 a1
check "QEMU reads pattern a on vdc (cache=none)" guest_has d2 a2
check "point 1 was never written: pattern a, not c, on vda" has "/dev/dmrep/$VM/vda" a0
pts=$(dmrep --json point list "$VM")
check "point 1 still listed and valid" jq -e 'map(select(.id == 1 and .valid)) | length == 1' <<<"$pts"
out=$(dmrep --json failover revert "$VM" --wait)
check "revert again" job_ok "$out"

# --- test failover ----------------------------------------------------------------
out=$(dmrep --json failover start "$VM" --test --wait)
check "test failover completes" job_ok "$out"
k=0
for d in $DISKS; do
	check "/dev/dmrep/$VM-test/$d is a block device" test -b "/dev/dmrep/$VM-test/$d"
	check "the test view of $d holds point 1 (pattern a)" has "/dev/dmrep/$VM-test/$d" "$(pat a $k)"
	k=$((k + 1))
done
check "the replica's own disks are untouched (pattern b)" all_have b
check "vm show says test_failover" eval "dmrep --json vm show '$VM' | jq -e '.test_failover == true and .state == \"replicating\"'"
put "/dev/dmrep/$VM-test/vda" c0
check "the test view is writable" has "/dev/dmrep/$VM-test/vda" c0
out=$(dmrep --json point create "$VM" --label during-test)
expect_rc "a point can be taken during the test failover" 0 "$out"
out=$(dmrep --json failover start "$VM" --test --wait)
expect_rc "a second test failover: invalid state" 32775 "$out"
out=$(dmrep --json failover stop-test "$VM" --wait)
check "stop-test completes" job_ok "$out"
check "the test devices are gone" test ! -e "/dev/dmrep/$VM-test/vda" -a ! -e "/dev/mapper/dmrep-$VM:test:vda"
check "vm show: no test failover" eval "dmrep --json vm show '$VM' | jq -e '.test_failover == false'"

# --- all or none: injected faults in the swap, on the real kernel --------------------
used=$(thin_count)
for step in initiate:preload:1 initiate:suspended; do
	agent_stop
	DMREP_TEST_FAIL_AT=$step agent_start || not_ok "agent starts with a fault at $step"
	out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
	check "fault at $step: the job ends in exception with 32768" jq -e '.job_state == 10 and .error_code == 32768 and (.error_description | length) > 0' <<<"$out"
	check "fault at $step: the VM is replicating, every disk live" eval "dmrep --json vm show '$VM' | jq -e '.state == \"replicating\" and ([.disks[].target] | unique) == [\"live\"]'"
	check "fault at $step: every disk still reads the live data" all_have b
	check "fault at $step: nothing suspended, no inactive table left" no_suspended_or_inactive
	check "fault at $step: the guest runs" guest_running
done
agent_restart
check "the failed failovers left no overlay behind (thin devices: $used)" test "$(thin_count)" = "$used"

# --- one operation per VM at a time ------------------------------------------------
agent_stop
touch "$W/hold"
DMREP_TEST_HOLD_AT=initiate:overlays DMREP_TEST_HOLD_FILE=$W/hold agent_start ||
	not_ok "agent starts with a held step"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume)
expect_rc "a failover held at its overlays step starts" 4096 "$out"
job=$(jq -r .job <<<"$out")
out=$(dmrep --json point create "$VM")
expect_rc "meanwhile, a point of the same VM: in use" 32774 "$out"
out=$(dmrep --json failover start "$VM")
expect_rc "meanwhile, a second failover: in use" 32774 "$out"
check "meanwhile, vm show answers: failover-in-progress" \
	eval "dmrep --json vm show '$VM' | jq -e '.state == \"failover-in-progress\"'"
out=$(dmrep --json job show "$job")
check "meanwhile, the job is running" jq -e '.job_state == 4 and .percent_complete < 100' <<<"$out"
rm -f "$W/hold"
out=$(dmrep --json job wait "$job" --timeout 120)
check "then the failover completes" job_ok "$out"
out=$(dmrep --json failover revert "$VM" --wait)
check "and reverts" job_ok "$out"
agent_restart

# --- commit -------------------------------------------------------------------------
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover to point 1 for the commit" job_ok "$out"
out=$(dmrep --json failover commit "$VM" --wait)
check "commit completes" job_ok "$out"
check "the VM is committed, every disk live" eval "dmrep --json vm show '$VM' | jq -e '.state == \"committed\" and ([.disks[].target] | unique) == [\"live\"]'"
check "the committed disks hold point 1's data" all_have a
pts=$(dmrep --json point list "$VM")
check "commit kept point 1 and dropped the newer point" jq -e 'map(.id) == [1]' <<<"$pts"
check "the pool holds exactly 3 live volumes + 3 for point 1" test "$(thin_count)" = 6
out=$(dmrep --json failover revert "$VM" --wait)
expect_rc "revert after commit: invalid state" 32775 "$out"
out=$(dmrep --json point create "$VM")
expect_rc "points can be taken after the commit" 0 "$out"
check "the VM replicates again after a point" eval "dmrep --json vm show '$VM' | jq -e '.state == \"replicating\"'"
agent_restart
check "the committed state survives an agent restart" all_have a

touch "$W/writer.stop"
wait "$WRITER"
check "the O_DIRECT writer saw no I/O error through $(cat "$W/writer.count" 2>/dev/null) writes and every swap" \
	test ! -s "$W/writer.err"

# --- a pause that fails (exec shim): the disks are not touched ---------------------------
cat >"$W/shim.sh" <<'SHIM'
#!/bin/sh
case $1 in
status) echo running ;;
pause) echo "pause refused" >&2; exit 1 ;;
*) exit 0 ;;
esac
SHIM
chmod 0755 "$W/shim.sh"
out=$(dmrep --json vm add "${VM}x" --disk vda="$W/x.img:16M" --exec-shim "$W/shim.sh")
expect_rc "a VM with an exec shim" 0 "$out"
put "/dev/dmrep/${VM}x/vda" a0
dmrep --json point create "${VM}x" >/dev/null
put "/dev/dmrep/${VM}x/vda" b0
used=$(thin_count)
out=$(dmrep --json failover start "${VM}x" --wait)
check "a failed pause ends the job in exception (32777)" jq -e '.job_state == 10 and .error_code == 32777' <<<"$out"
check "its disk still holds the live data" has "/dev/dmrep/${VM}x/vda" b0
check "and is live, replicating" eval "dmrep --json vm show '${VM}x' | jq -e '.state == \"replicating\" and .disks[0].target == \"live\"'"
check "no overlay left behind (thin devices: $used)" test "$(thin_count)" = "$used"
check "no DMREP- device suspended or with an inactive table" no_suspended_or_inactive

# --- the guest policy, as the shim sees it (exec shim logging each verb) ---------------
cat >"$W/logshim.sh" <<'SHIM'
#!/bin/sh
case $1 in
status) echo running ;;
*) echo "$1" >>"${0%.sh}.log" ;;
esac
SHIM
chmod 0755 "$W/logshim.sh"
out=$(dmrep --json vm add "${VM}y" --disk vda="$W/y.img:16M" --exec-shim "$W/logshim.sh")
expect_rc "a VM whose exec shim logs what it is asked" 0 "$out"
dmrep --json point create "${VM}y" >/dev/null
# shim_saw OP ARGS... EXPECTED: run the operation, compare the verbs logged.
shim_saw() {
	local want=${*: -1} got
	: >"$W/logshim.log"
	dmrep --json failover "${@:1:$#-1}" --wait >"$W/logshim.out" || return 1
	got=$(paste -sd' ' "$W/logshim.log")
	[ "$got" = "$want" ] || { echo "# shim saw: '$got', expected '$want'"; return 1; }
}
check "failover start --guest resume: pause, resume" shim_saw start "${VM}y" --guest resume "pause resume"
check "failover revert --guest resume: pause, resume" shim_saw revert "${VM}y" --guest resume "pause resume"
check "failover start (default policy): pause, reset, resume" shim_saw start "${VM}y" "pause reset resume"
check "failover revert (default policy): pause, reset, resume" shim_saw revert "${VM}y" "pause reset resume"
: >"$W/logshim.log"
out=$(dmrep --json failover revert "${VM}y" --guest reset --wait)
expect_rc "a revert of a replicating VM, policy given: invalid state" 32775 "$out"
check "and the shim was asked nothing" test ! -s "$W/logshim.log"

# --- a dead hypervisor: 32777 before any change ---------------------------------------
put "/dev/dmrep/$VM/vda" b0
stop_qemu
exec 8<&-
used=$(thin_count)
out=$(dmrep --json failover start "$VM" --wait)
check "failover with the hypervisor gone: 32777" jq -e '.job_state == 10 and .error_code == 32777' <<<"$out"
check "nothing changed: replicating, every disk live" eval "dmrep --json vm show '$VM' | jq -e '.state == \"replicating\" and ([.disks[].target] | unique) == [\"live\"]'"
check "nothing changed: no new thin volume" test "$(thin_count)" = "$used"
check "the live data is untouched" has "/dev/dmrep/$VM/vda" b0

agent_stop
summary
