#!/bin/bash
# Smoke test of the lab itself, with dmsetup only: the kernel's targets are
# there, udevd runs with the project's rules, a linear device over a loop
# device on $LAB_SCRATCH gets its /dev/mapper node from udev, carries data
# written with O_DIRECT, survives suspend/resume and is removed cleanly; a
# thin pool (crc32c loaded first) comes up.  And the lab library's own
# promises: its teardown fails a test that leaves a DMREP- or dmrt* device, a
# loop device or a mount behind, and cleans them up; a skip is a skip, and
# under CI=true a failure.
set -u
. "$(dirname "$0")/lib/inittest.sh"
lab_setup

# --- the kernel -------------------------------------------------------
targets=$(dmsetup targets 2>&1)
for t in snapshot snapshot-origin thin-pool thin flakey delay; do
	check "dmsetup targets lists $t" grep -q "^$t " <<<"$targets"
done
check "the kernel's module tree is there for modprobe" test -s "/lib/modules/$(uname -r)/modules.dep"

# --- udev ---------------------------------------------------------------
check "systemd-udevd runs" pgrep -x systemd-udevd
check "udev's control socket is a socket" test -S /run/udev/control
n_rules=$(ls udev/*.rules 2>/dev/null | wc -l)
n_loaded=$(for r in udev/*.rules; do [ -f "$r" ] && [ -f "/run/udev/rules.d/${r##*/}" ] && echo; done | wc -l)
is "the project's udev rules are installed in /run/udev/rules.d" "$n_rules" "$n_loaded"

# --- scratch, loop ------------------------------------------------------
check "\$LAB_SCRATCH is a writable directory" test -d "$LAB_SCRATCH" -a -w "$LAB_SCRATCH"
avail=$(df -m --output=avail "$LAB_SCRATCH" | tail -n1 | tr -d ' ')
check "\$LAB_SCRATCH has at least 1 GiB free (${avail} MiB)" test "$avail" -ge 1024
loop=$(make_loop lin.img 64M)
check "a loop device over a sparse file in \$LAB_SCRATCH" is_blockdev "$loop"
check "the file stays sparse" test "$(du -k "$W/lin.img" | cut -f1)" -lt 1024

# --- a linear device -------------------------------------------------------
dev=${T}lin
sectors=$((32 * 2048)) # 32 MiB, at offset 8 MiB into the loop
if dmsetup create "$dev" --table "0 $sectors linear $loop 16384"; then ok "dmsetup create linear"; else
	not_ok "dmsetup create linear"
	exit 1
fi
check "/dev/mapper/$dev is a block device" is_blockdev "/dev/mapper/$dev"
check "udev made /dev/mapper/$dev (a link to ../dm-N)" test -L "/dev/mapper/$dev"
check "udev knows it (DM_NAME)" sh -c "udevadm info --query=property '/dev/mapper/$dev' | grep -qx 'DM_NAME=$dev'"
is "blockdev --getsz" "$sectors" "$(blockdev --getsz "/dev/mapper/$dev" 2>&1)"
is "the live table" "0 $sectors linear $(stat -c %Hr:%Lr "$loop") 16384" "$(dmsetup table "$dev")"

pat=$W/pattern
yes "dmrep lab t-00 $$" | head -c 1048576 >"$pat"
check "O_DIRECT write through the device" \
	dd if="$pat" of="/dev/mapper/$dev" bs=64k seek=16 oflag=direct conv=notrunc status=none
check "O_DIRECT read back gives the same data" \
	cmp -s "$pat" <(dd if="/dev/mapper/$dev" bs=64k skip=16 count=16 iflag=direct status=none)
check "the data sits where the table maps it (on the loop, 8 MiB + 1 MiB in)" \
	cmp -s "$pat" <(dd if="$loop" bs=64k skip=$((128 + 16)) count=16 iflag=direct status=none)

check "dmsetup suspend" dmsetup suspend "$dev"
check "the device reports suspended" is_suspended "$dev"
check "dmsetup resume" dmsetup resume "$dev"
check "the device reports active again" test "$(dm_attr "$dev" | cut -c3)" != s

check "dmsetup remove" dmsetup remove "$dev"
check "its /dev/mapper node is gone" test ! -e "/dev/mapper/$dev"
check "dmsetup no longer knows it" test -z "$(dm_names | grep -x "$dev")"

# --- a thin pool (needs crc32c before libcrc32c) ----------------------------
meta=$(make_loop meta.img 16M)
data=$(make_loop data.img 256M)
dd if=/dev/zero of="$meta" bs=4096 count=1 oflag=direct status=none
pool=${T}pool
if dmsetup create "$pool" --table "0 $((256 * 2048)) thin-pool $meta $data 128 0 1 skip_block_zeroing"; then
	ok "dmsetup create thin-pool"
	check "thin-pool: create_thin 0" dmsetup message "$pool" 0 "create_thin 0"
	check "thin device on the pool" dmsetup create "${T}thin" --table "0 $((64 * 2048)) thin /dev/mapper/$pool 0"
	check "thin device is a block device" is_blockdev "/dev/mapper/${T}thin"
	check "O_DIRECT round trip on the thin device" bash -c "
		dd if='$pat' of='/dev/mapper/${T}thin' bs=64k oflag=direct status=none &&
		cmp -s '$pat' <(dd if='/dev/mapper/${T}thin' bs=64k count=16 iflag=direct status=none)"
	used=$(dmsetup status "$pool" | awk '{ split($6, a, "/"); print a[1] }')
	check "the pool counts the written blocks (used data: $used)" test "${used:-0}" -ge 1
	check "remove the thin device" dm_remove "${T}thin"
	check "remove the pool" dm_remove "$pool"
else
	not_ok "dmsetup create thin-pool"
	dmesg | tail -n 5 | sed 's/^/# /'
fi

# --- the library: the teardown and skip (child tests) -------------------------------
# child NAME BODY [ENV...]: a lab test of BODY run under env ENV; its output
# in $W/NAME.out (shown as comments: its lines are not ours to count), its
# status in $crc.
mkdir -p "$W/scratch"
truncate -s 1M "$W/outside.img"
child() {
	local name=$1 body=$2 t0=$SECONDS
	shift 2
	printf '%s\n' '#!/bin/bash' 'set -u' ". '$LAB_LIB/inittest.sh'" 'lab_setup' "$body" 'summary' >"$W/$name.sh"
	env -u CI -u LAB_CI -u LAB_TAP_TIMES LAB_SCRATCH="$W/scratch" OUT="$W" "$@" bash "$W/$name.sh" >"$W/$name.out" 2>&1
	crc=$?
	sed "s/^/# $name: /" "$W/$name.out"
	diag "$name: exit $crc after $((SECONDS - t0)) s"
}
child clean 'ok "a check"'
is "a clean child test passes" 0 "$crc"
check "its teardown says so, counted" grep -qx 'ok - teardown: nothing left behind' "$W/clean.out"
check "and its counts line is last" test "$(tail -n1 "$W/clean.out")" = "# 2 passed, 0 failed, 0 skipped"

child dmrep 'dmsetup create "${T}left" -u "DMREP-labtest-$$-left" --table "0 8 zero"; ok "made a device"'
check "a child that leaves a DMREP- device fails" test "$crc" != 0
check "its teardown fails it, in a counted line" grep -qx 'not ok - teardown: nothing left behind (1 left)' "$W/dmrep.out"
check "naming the device" grep -q '^#   left behind: dm device dmrt[0-9]*-left (DMREP-labtest-' "$W/dmrep.out"
check "its counts line has the failure" test "$(tail -n1 "$W/dmrep.out")" = "# 1 passed, 1 failed, 0 skipped"
is "and it is gone afterwards" "" "$(dmsetup info -c --noheadings -o uuid 2>/dev/null | grep '^DMREP-labtest-')"

child uuid 'dmsetup create "dmrep-left$$" -u "DMREP-disk-left$$" --table "0 8 zero"
udevadm settle
dmsetup suspend "dmrep-left$$"'
check "a DMREP- UUID without the prefix, suspended: reported" grep -q '^#   left behind: dm device dmrep-left[0-9]* (DMREP-disk-left' "$W/uuid.out"
check "that child fails" test "$crc" != 0
is "and that device is gone too" "" "$(dmsetup info -c --noheadings -o uuid 2>/dev/null | grep '^DMREP-disk-left')"

child loop 'losetup -f --show "$OUT/outside.img" >/dev/null'
check "a child that leaves a loop device (over a file outside its \$W) fails" test "$crc" != 0
check "its teardown names the loop" grep -q "^#   left behind: loop device /dev/loop[0-9]* $W/outside.img" "$W/loop.out"
is "and it is detached afterwards" "" "$(losetup -j "$W/outside.img" -n -O NAME)"

child mount 'mkdir "$W/m" && mount -t tmpfs lab-selftest "$W/m"'
check "a child that leaves a mount fails" test "$crc" != 0
check "its teardown names the mount" grep -q "^#   left behind: mount $W/scratch/dmrt.*/m\$" "$W/mount.out"
check "and it is unmounted afterwards" sh -c "! grep -q ' lab-selftest ' /proc/self/mountinfo"

child cleaned 'mkdir "$W/m" && mount -t tmpfs lab-selftest "$W/m" && lab_cleanup "umount $W/m"
dmsetup create "${T}gone" --table "0 8 zero"; lab_cleanup "dmsetup remove ${T}gone"
make_loop x.img 1M >/dev/null'
is "a child that undoes what it made (lab_cleanup, make_loop) passes" 0 "$crc"

child skip 'skip "an optional check" "nosuchtool is not installed"'
is "a child with a skip passes" 0 "$crc"
check "the skip is a TAP skip" grep -qx 'ok - an optional check # SKIP nosuchtool is not installed' "$W/skip.out"
check "counted apart, not as a pass" test "$(tail -n1 "$W/skip.out")" = "# 1 passed, 0 failed, 1 skipped"
child skip-ci 'skip "an optional check" "nosuchtool is not installed"' CI=true
check "under CI=true a skip fails the test" test "$crc" != 0
check "in a counted not ok line" grep -q '^not ok - an optional check (skipped: nosuchtool is not installed; under CI=true a skip fails)$' "$W/skip-ci.out"
child need-ci 'lab_need nosuchtool-$$' LAB_CI=true
check "lab_need of a missing tool under LAB_CI=true fails too" grep -q '^not ok - need-ci.sh (skipped: nosuchtool-[0-9]* is not installed' "$W/need-ci.out"
check "with a non-zero status" test "$crc" != 0
child need 'lab_need nosuchtool-$$'
check "lab_need of a missing tool: the test is one skip" eval '[ "$crc" = 0 ] && grep -q "^ok - need.sh # SKIP nosuchtool-[0-9]* is not installed" "$W/need.out"'
summary
