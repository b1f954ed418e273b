#!/bin/bash
# make demo: dmrep end to end in the lab (tools/lab/run -- tools/demo.sh).
# A thin pool on sparse files, a VM with two disks (an ext4 filesystem on
# one) run by a nested QEMU, two replication points, a failover to the older
# point while QEMU runs (what QEMU itself reads, and how long it was
# paused), a revert, a test failover, and a committed failover.  Every
# command is printed before it runs; the demo stops at the first failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$ROOT/${BUILD:-build}/bin:$PATH"
W=$(mktemp -d "${LAB_SCRATCH:-/tmp}/demo.XXXXXX")
export DMREP_SOCKET=/run/dmrep-demo/dmrepd.sock
MNT=$W/mnt
AGENT_PID=
QEMU_PID=
QMP=$W/qmp.sock

cleanup() {
	set +e
	mountpoint -q "$MNT" && umount "$MNT"
	[ -n "$QEMU_PID" ] && kill -KILL "$QEMU_PID" && wait "$QEMU_PID" 2>/dev/null
	[ -n "$AGENT_PID" ] && kill -TERM "$AGENT_PID" && wait "$AGENT_PID"
	for pass in 1 2; do
		dmsetup info -c --noheadings -o name,uuid --separator ' ' 2>/dev/null |
			while read -r name uuid; do
				case "$uuid" in DMREP-*) ;; *) continue ;; esac
				[ "$name" = dmrep-pool ] && [ "$pass" = 1 ] && continue
				dmsetup remove --retry "$name" >/dev/null 2>&1
			done
	done
	for f in pool.data pool.meta; do
		losetup -j "$W/$f" -O NAME -n | xargs -r -n1 losetup -d
	done
	rm -rf "$W"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}
# file_says TEXT: the demo file on vda holds TEXT (mounted read-only).
file_says() {
	mount -o ro "/dev/dmrep/demo/vda" "$MNT"
	printf 'vda:/hello.txt says: %s\n' "$(cat "$MNT/hello.txt")"
	grep -qx "$1" "$MNT/hello.txt"
	umount "$MNT"
}
# vdb carries a raw 64 KiB stamp at 1 MiB: one byte, repeated.
stamp() { head -c 65536 /dev/zero | tr '\000' "\\$(printf '%03o' "0x$1")" |
	dd of=/dev/dmrep/demo/vdb bs=65536 seek=16 oflag=direct conv=notrunc status=none; }
# guest_reads HEX: QEMU itself reads that stamp on vdb (qemu-io, whose
# output lands on QEMU's stdout).
guest_reads() {
	local before out
	before=$(stat -c %s "$W/qemu.out")
	lab_qmp "$QMP" hmp "qemu-io d1 \"read -P 0x$1 1048576 65536\"" >/dev/null
	out=$(tail -c +$((before + 1)) "$W/qemu.out")
	if grep -q "read 65536/65536" <<<"$out" && ! grep -qi "fail" <<<"$out"; then
		printf 'QEMU itself reads stamp 0x%s on vdb (qemu-io: %s)\n' "$1" "$(head -n1 <<<"$out")"
	else
		printf 'QEMU does NOT read stamp 0x%s on vdb: %s\n' "$1" "$out"
		return 1
	fi
}
write_file() {
	mount "/dev/dmrep/demo/vda" "$MNT"
	echo "$1" >"$MNT/hello.txt"
	umount "$MNT"
}

say "start the agent"
run dmrepd --foreground --state-dir "$W/state" --socket "$DMREP_SOCKET" --log-level notice &
AGENT_PID=$!
for _ in $(seq 100); do dmrep vm list >/dev/null 2>&1 && break; sleep 0.1; done

say "a thin pool on sparse files (a host with no spare disk)"
run dmrep pool create --data "$W/pool.data" --data-size 1G --meta "$W/pool.meta" --meta-size 16M
run dmrep pool status

say "a VM with two empty disks, and an ext4 filesystem on vda"
run dmrep vm add demo --disk vda="$W/vda.img:64M" --disk vdb="$W/vdb.img:32M" --qmp "$QMP"
run ls -l /dev/dmrep/demo/
run mkfs.ext4 -q /dev/dmrep/demo/vda
mkdir -p "$MNT"
write_file "monday"
stamp a1 # monday's stamp

say "a nested QEMU runs the VM from its stable devices (vda in the default cache mode, vdb cache=none)"
: >"$W/qemu.out"
stdbuf -oL qemu-system-x86_64 -accel tcg -machine q35 -m 128 -nodefaults -display none \
	-qmp "unix:$QMP,server=on,wait=off" \
	-drive file=/dev/dmrep/demo/vda,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
	-drive file=/dev/dmrep/demo/vdb,format=raw,if=none,id=d1,cache=none -device virtio-blk-pci,drive=d1 \
	>>"$W/qemu.out" 2>"$W/qemu.err" &
QEMU_PID=$!
for _ in $(seq 600); do [ -S "$QMP" ] && lab_qmp "$QMP" status >/dev/null 2>&1 && break; sleep 0.1; done
printf 'QEMU %s: %s\n' "$QEMU_PID" "$(lab_qmp "$QMP" status)"
guest_reads a1

say "point 1 (monday), then point 2 (tuesday), then the live disk moves on to wednesday"
run dmrep point create demo --label monday
write_file "tuesday"
stamp b2 # tuesday's
run dmrep point create demo --label tuesday
write_file "wednesday"
stamp c3 # wednesday's
guest_reads c3
run dmrep point list demo
file_says wednesday

say "failover to point 1 while QEMU runs: every disk of the VM switches at once"
out=$(dmrep --json failover start demo --point 1 --guest resume --wait)
printf '$ dmrep --json failover start demo --point 1 --guest resume --wait\n%s\n' "$out"
jq -e '.job_state == 7' <<<"$out" >/dev/null
printf 'the guest was paused for %s ms\n' "$(jq '.guest_paused_usec / 1000' <<<"$out")"
printf 'QEMU %s\n' "$(lab_qmp "$QMP" status)"
guest_reads a1
run dmrep vm show demo
file_says monday

say "revert: back to the live replica"
run dmrep failover revert demo --wait
guest_reads c3
file_says wednesday

say "test failover of point 2: the replica is untouched, the test view appears beside it"
run dmrep failover start demo --test --point 2 --wait
run ls -l /dev/dmrep/demo-test/
mount -o ro /dev/dmrep/demo-test/vda "$MNT"
printf 'demo-test vda:/hello.txt says: %s\n' "$(cat "$MNT/hello.txt")"
grep -qx tuesday "$MNT/hello.txt"
umount "$MNT"
file_says wednesday
run dmrep failover stop-test demo --wait

say "failover to point 2 and commit it"
run dmrep failover start demo --point 2 --guest resume --wait
run dmrep failover commit demo --wait
run dmrep vm show demo
run dmrep point list demo
file_says tuesday

say "the jobs"
run dmrep job list

say "demo finished"
