#!/bin/bash
# Smoke test of the lab itself, with dmsetup only: the kernel's targets are
# there, udevd runs with the project's rules, a linear device over a loop
# device on $LAB_SCRATCH gets its /dev/mapper node from udev, carries data
# written with O_DIRECT, survives suspend/resume and is removed cleanly; a
# thin pool (crc32c loaded first) comes up.
set -u
. "$(dirname "$0")/lib.sh"
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
