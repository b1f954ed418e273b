#!/bin/bash
# make demo: dmrep end to end in the lab (tools/lab/run -- tools/demo.sh).
# A thin pool on sparse files, a VM with two disks (an ext4 filesystem on
# one), two replication points, a failover to the older point, a revert, a
# test failover, and a committed failover.  Every command is printed before
# it runs; the demo stops at the first failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$ROOT/${BUILD:-build}/bin:$PATH"
W=$(mktemp -d "${LAB_SCRATCH:-/tmp}/demo.XXXXXX")
export DMREP_SOCKET=/run/dmrep-demo/dmrepd.sock
MNT=$W/mnt
AGENT_PID=

cleanup() {
	set +e
	mountpoint -q "$MNT" && umount "$MNT"
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
run dmrep vm add demo --disk vda="$W/vda.img:64M" --disk vdb="$W/vdb.img:32M"
run ls -l /dev/dmrep/demo/
run mkfs.ext4 -q /dev/dmrep/demo/vda
mkdir -p "$MNT"
write_file "monday"

say "point 1 (monday), then point 2 (tuesday), then the live disk moves on to wednesday"
run dmrep point create demo --label monday
write_file "tuesday"
run dmrep point create demo --label tuesday
write_file "wednesday"
run dmrep point list demo
file_says wednesday

say "failover to point 1: every disk of the VM switches at once"
run dmrep failover start demo --point 1 --guest resume --wait
run dmrep vm show demo
file_says monday

say "revert: back to the live replica"
run dmrep failover revert demo --wait
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
