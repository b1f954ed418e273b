#!/bin/bash
# Lab test: a pool on files never overcommits its filesystem unasked
# (issue 11, item 4).  On a small scratch filesystem (a loop-mounted ext4
# of 160 MiB): a pool whose files it cannot hold is refused (32778, the
# numbers in one line) and leaves nothing behind; one that fits has its
# files allocated in full (fallocate: st_blocks covers the size, an
# existing sparse file too); with --sparse the overcommitted pool is made,
# the reply says what happens when the filesystem fills, and the space
# monitor warns at once, unasked, and only once.
set -u
. "$(dirname "$0")/lib/inittest.sh"

allocated() { echo $(($(stat -c '%b * %B' "$1"))); }
size_of() { stat -c %s "$1"; }
# new_agent: the agent on a fresh state directory, the pool's files gone.
new_agent() {
	lab_reboot
	rm -rf "$STATE" "$FS"/pool.*
	agent_start || not_ok "the agent starts again"
}
# The pool's loops are over files in $FS: they go before the unmount.
fs_teardown() {
	lab_reboot
	umount "$FS"
}

DMREPD_ARGS="--monitor-interval 1"
agent_setup
W=$(realpath "$W")
FS=$W/fs
mkdir -p "$FS"
truncate -s 160M "$W/fs.img"
mkfs.ext4 -q -F "$W/fs.img" >/dev/null 2>&1
lab_cleanup fs_teardown
check "a 160 MiB ext4 mounted in the scratch directory" mount -o loop "$W/fs.img" "$FS"
diag "free: $(df -B1M --output=avail "$FS" | tail -1) MiB"

out=$(dmrep --json pool create --data "$FS/pool.data" --data-size 256M --meta "$FS/pool.meta" --meta-size 8M)
expect_rc "a 256 MiB pool on it is refused (32778)" 32778 "$out"
check "the reason gives the numbers in one line" \
	jq -e '.error | test("has [0-9]+ MiB free, the pool.s files need [0-9]+ MiB") and (contains("\n") | not)' <<<"$out"
diag "$(jq -r .error <<<"$out")"
check "nothing is left behind" test ! -e "$FS/pool.data" -a ! -e "$FS/pool.meta"
out=$(dmrep --json pool status)
expect_rc "and there is no pool (32775)" 32775 "$out"

truncate -s 8M "$FS/pool.meta"
out=$(dmrep --json pool create --data "$FS/pool.data" --data-size 64M --meta "$FS/pool.meta")
expect_rc "a 64 MiB pool that fits (its metadata an existing sparse file)" 0 "$out"
check "the data file is allocated in full" test "$(allocated "$FS/pool.data")" -ge "$(size_of "$FS/pool.data")"
check "the existing metadata file too" test "$(allocated "$FS/pool.meta")" -ge "$(size_of "$FS/pool.meta")"
check "no warning in the reply" jq -e 'has("warning") | not' <<<"$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/t.img:16M")
expect_rc "a thin VM in it" 0 "$out"
check "the thin VM is writable" dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=1M count=8 oflag=direct status=none
sleep 2 # two rounds of the monitor
check "no filesystem warning for a pool allocated in full" eval '! grep -q "less than the" "$W/dmrepd.log"'

new_agent
out=$(dmrep --json pool create --data "$FS/pool.data" --data-size 256M --meta "$FS/pool.meta" --meta-size 8M --sparse)
expect_rc "with --sparse the 256 MiB pool is made" 0 "$out"
check "the reply says what happens when the filesystem fills" \
	jq -e '.warning | contains("sparse") and contains("read-only")' <<<"$out"
check "the data file is sparse" test "$(allocated "$FS/pool.data")" -lt $((16 << 20))
check "the log says so too" grep -q "sparse pool: the filesystem of $FS/pool.data" "$W/dmrepd.log"
check "unasked, the monitor warns that the filesystem cannot hold the pool's files" \
	agent_wait_log "the filesystem of $FS/pool.data has [0-9]+ MiB free, less than the [0-9]+ MiB"
sleep 3 # three more rounds
check "one warning, not one a round" test "$(grep -c "less than the" "$W/dmrepd.log")" = 1
check "dmrep pool create --help documents --sparse" sh -c "dmrep pool create --help | grep -q -- --sparse"
summary
