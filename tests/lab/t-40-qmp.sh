#!/bin/bash
# Lab test: dmrep's QMP client and qmp shim against a real nested QEMU (TCG,
# no disk: it sits in its firmware), and its guest-agent client against a
# real qemu-ga listening on a Unix socket on the lab's own kernel.
# Driven through build/bin/lab_qmp.  TAP lines on stdout; exit 0 iff all ok.
set -u
. "$(dirname "$0")/lib/inittest.sh"

HOLD_PID=
lab_need qemu-system-x86_64 qemu-ga
lab_need_qmp
lab_setup
lab_cleanup 'kill -KILL $HOLD_PID; wait $HOLD_PID'

# --- QMP: a nested QEMU ------------------------------------------------
if start_qemu; then ok "nested QEMU is up with a QMP socket"; else
	not_ok "nested QEMU is up with a QMP socket"
	exit 1
fi

is "status of a fresh QEMU: running" "running running" "$(lq "$QMP" status)"
check "pause (stop)" lq "$QMP" pause
is "status after pause: paused" "paused paused" "$(lq "$QMP" status)"
check "pause again is harmless" lq "$QMP" pause
check "resume (cont)" lq "$QMP" resume
is "status after resume: running" "running running" "$(lq "$QMP" status)"
check "reset (system_reset)" lq "$QMP" reset
is "status after reset: running" "running running" "$(lq "$QMP" status)"

want=$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
out=$(lq "$QMP" hmp "info version")
case "$out" in
"$want"*) ok "hmp 'info version' returns QEMU's version ($want)" ;;
*) not_ok "hmp 'info version' returns QEMU's version (want $want..., got '$out')" ;;
esac
out=$(lq "$QMP" hmp "info status")
is "hmp 'info status'" "VM status: running" "$(tr -d '\r\n' <<<"$out")"
out=$(lq "$QMP" hmp "no-such-command")
case "$out" in
*unknown\ command*) ok "an unknown HMP command answers with text, not a QMP error" ;;
*) not_ok "an unknown HMP command answers with text (got '$out')" ;;
esac

# QEMU serves one QMP client at a time: a second one is accepted by the
# kernel but never greeted, so it times out instead of hanging.
"$LAB_QMP" "$QMP" hold 2500 >"$W/hold.out" 2>&1 &
HOLD_PID=$!
for _ in $(seq 50); do grep -q connected "$W/hold.out" && break; lab_nap 0.1; done
start=${EPOCHREALTIME/./}
LAB_QMP_TIMEOUT_MS=500 "$LAB_QMP" "$QMP" status >/dev/null 2>"$W/busy.err"
rc=$?
ms=$(((${EPOCHREALTIME/./} - start) / 1000))
if [ $rc -ne 0 ] && grep -q "timed out" "$W/busy.err" && [ $ms -lt 3000 ]; then
	ok "a second QMP client times out while the monitor is held (${ms} ms)"
else
	not_ok "a second QMP client times out while the monitor is held (rc $rc, ${ms} ms: $(cat "$W/busy.err"))"
fi
wait "$HOLD_PID" 2>/dev/null
HOLD_PID=
is "the monitor serves again once released" "running running" "$(lq "$QMP" status)"

# The round trips the failover window is made of: one connection, status,
# then pause+resume rounds.
out=$(lq "$QMP" bench 200)
if [ $? -eq 0 ]; then
	ok "200 stop/cont rounds through the qmp shim"
	sed 's/^/# /' <<<"$out"
	median=$(sed -n 's/^window .*median=\([0-9]*\)us.*/\1/p' <<<"$out")
	# A sanity bound, not a benchmark: TCG in a VM in a VM is slow.
	if [ -n "$median" ] && [ "$median" -lt 100000 ]; then
		ok "median stop+cont window under 100 ms (${median} us)"
	else
		not_ok "median stop+cont window under 100 ms (${median:-none} us)"
	fi
else
	not_ok "200 stop/cont rounds through the qmp shim"
fi
is "status after the rounds: running" "running running" "$(lq "$QMP" status)"

# A dead hypervisor: the socket file stays, nobody listens.
stop_qemu
"$LAB_QMP" "$QMP" status >/dev/null 2>"$W/dead.err"
rc=$?
if [ $rc -ne 0 ] && grep -q "No route to host" "$W/dead.err"; then
	ok "a killed QEMU is unreachable (EHOSTUNREACH)"
else
	not_ok "a killed QEMU is unreachable (rc $rc: $(cat "$W/dead.err"))"
fi
"$LAB_QMP" "$W/absent.sock" pause >/dev/null 2>"$W/absent.err"
if [ $? -ne 0 ] && grep -q "No route to host" "$W/absent.err"; then
	ok "an absent QMP socket is unreachable (EHOSTUNREACH)"
else
	not_ok "an absent QMP socket is unreachable ($(cat "$W/absent.err"))"
fi

# --- QGA: qemu-ga on the lab's own kernel -------------------------------
# Freezing is blocked: here the "guest" is the lab itself, and freezing its
# filesystems would freeze this test.  A blocked RPC also gives a real
# error reply to check.
if qga_start -b guest-fsfreeze-freeze,guest-fsfreeze-freeze-list; then ok "qemu-ga listens on a Unix socket"; else
	not_ok "qemu-ga listens on a Unix socket"
	sed 's/^/# /' "$W/qga.log"
	exit 1
fi
check "guest-sync-delimited" lq --qga "$QGA" sync
check "guest-ping" lq --qga "$QGA" ping
is "guest-fsfreeze-status" "thawed" "$(lq --qga "$QGA" fsfreeze-status)"
"$LAB_QMP" --qga "$QGA" freeze >/dev/null 2>"$W/freeze.err"
if [ $? -ne 0 ] && grep -q "Input/output error: .*disabled" "$W/freeze.err"; then
	ok "a disabled freeze is an error reply (EIO) with QGA's description"
else
	not_ok "a disabled freeze is an error reply ($(cat "$W/freeze.err"))"
fi
is "guest-fsfreeze-thaw with nothing frozen" "0" "$(lq --qga "$QGA" thaw)"
check "the channel is in step after the error" lq --qga "$QGA" sync

"$LAB_QMP" --qga "$QGA" hold 2500 >"$W/hold.out" 2>&1 &
HOLD_PID=$!
for _ in $(seq 50); do grep -q connected "$W/hold.out" && break; lab_nap 0.1; done
LAB_QMP_TIMEOUT_MS=500 "$LAB_QMP" --qga "$QGA" sync >/dev/null 2>"$W/busy.err"
if [ $? -ne 0 ] && grep -q "timed out" "$W/busy.err"; then
	ok "qemu-ga serves one connection at a time: a second one times out"
else
	not_ok "a second qemu-ga client times out ($(cat "$W/busy.err"))"
fi
wait "$HOLD_PID" 2>/dev/null
HOLD_PID=
check "qemu-ga serves the next client once the first is gone" lq --qga "$QGA" sync

qga_stop KILL
"$LAB_QMP" --qga "$QGA" sync >/dev/null 2>"$W/dead.err"
if [ $? -ne 0 ] && grep -q "No route to host" "$W/dead.err"; then
	ok "a killed qemu-ga is unreachable (EHOSTUNREACH)"
else
	not_ok "a killed qemu-ga is unreachable ($(cat "$W/dead.err"))"
fi

if [ -s "$W/lab_qmp.err" ]; then
	sed 's/^/# lab_qmp: /' "$W/lab_qmp.err"
fi
summary
