# shellcheck shell=bash
# qemu.sh - a nested QEMU and a qemu-ga for the lab tests (sourced through
# inittest.sh), driven through build/bin/lab_qmp ($LAB_QMP).
#
#   start_qemu [DISK[,DRIVE-OPTION...]...]  qemu-system-x86_64 (TCG, no
#                            firmware disk) with a QMP socket $QMP ($W/qmp.sock)
#                            and each DISK as a raw virtio-blk drive d0, d1...;
#                            its stdout line-buffered to $W/qemu.out (qemu-io
#                            answers there), stderr $W/qemu.err; returns once
#                            QMP answers (60 s); stopped at teardown
#   stop_qemu                SIGKILL, reaped
#   lq ARGS...               $LAB_QMP ARGS, its stderr to $W/lab_qmp.err
#   qmp ARGS...              lq $QMP ARGS
#   guest_running            QEMU says it runs
#   qga_start [QEMU-GA-OPTION...]  qemu-ga on the Unix socket $QGA
#                            ($W/qga.sock), log $W/qga.log; at teardown the
#                            lab is thawed through it, then it stops
#   qga_stop [SIGNAL]        (TERM)
#   wait_socket PATH SECONDS

LAB_QMP=${LAB_QMP:-$(command -v lab_qmp || echo "$ROOT/${BUILD:-build}/bin/lab_qmp")}
QEMU_PID=
QGA_PID=

wait_socket() { wait_until "$2" test -S "$1"; }
lq() { "$LAB_QMP" "$@" 2>>"$W/lab_qmp.err"; }
qmp() { lq "$QMP" "$@"; }
qemu_ready() { [ -S "$QMP" ] && qmp status; }
guest_running() { qmp status 2>/dev/null | grep -q '^running'; }

# lab_need_qmp: lab_qmp is built with the project (not optional).
lab_need_qmp() {
	[ -x "$LAB_QMP" ] && return 0
	not_ok "lab_qmp is built ($LAB_QMP)"
	exit 1
}

start_qemu() {
	local args=() k=0 d
	for d in "$@"; do
		args+=(-drive "file=${d%%,*},format=raw,if=none,id=d$k${d#"${d%%,*}"}" -device "virtio-blk-pci,drive=d$k")
		k=$((k + 1))
	done
	QMP=$W/qmp.sock
	rm -f "$QMP"
	: >"$W/qemu.out"
	stdbuf -oL qemu-system-x86_64 -accel tcg -machine q35 -m 128 -nodefaults -display none \
		-qmp "unix:$QMP,server=on,wait=off" "${args[@]}" >>"$W/qemu.out" 2>"$W/qemu.err" &
	QEMU_PID=$!
	[ -n "${QEMU_REGISTERED:-}" ] || { lab_cleanup stop_qemu; QEMU_REGISTERED=1; }
	wait_until 60 qemu_ready && return 0
	sed 's/^/# qemu: /' "$W/qemu.err"
	return 1
}
stop_qemu() { stop_pid QEMU_PID KILL; }

qga_start() {
	QGA=${QGA:-$W/qga.sock}
	rm -f "$QGA"
	qemu-ga -m unix-listen -p "$QGA" -f "$W/qga.pid" -t "$W" "$@" 2>>"$W/qga.log" &
	QGA_PID=$!
	[ -n "${QGA_REGISTERED:-}" ] || { lab_cleanup qga_down; QGA_REGISTERED=1; }
	wait_socket "$QGA" 30
}
# qga_down (the teardown's step): whatever happened, never leave the lab's
# filesystems frozen (the "guest" is the lab's own kernel), then stop it.
qga_down() {
	[ -n "$QGA_PID" ] && lq --qga "$QGA" thaw >/dev/null
	qga_stop
}
qga_stop() { stop_pid QGA_PID "${1:-TERM}"; }
