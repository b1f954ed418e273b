# shellcheck shell=bash
# Helpers for the shell lab tests (sourced by tests/lab/t-*.sh; they run in
# the lab, as root, on real device-mapper).
#
#   . "$(dirname "$0")/lib.sh"
#   lab_setup                  # refuse leftovers, make $W, teardown on EXIT
#   loop=$(make_loop data 64M) # sparse $W/data + a loop device over it
#   dmsetup create "${T}lin" --table "0 $n linear $loop 0"
#   check "the device is a block device" is_blockdev "/dev/mapper/${T}lin"
#
# Output is TAP-style, one line per assertion on stdout: `ok - DESC` or
# `not ok - DESC`; `# ...` lines are comments.  At exit the teardown removes
# every dm device whose name starts with $T (retrying while busy), detaches
# every loop device over a file in $W, deletes $W, and makes the exit status
# non-zero if any assertion failed or anything was left behind.

T_PASS=0
T_FAIL=0
# Per-run prefix for every dm device a test makes.
T=${T:-dmrt$$-}
# Leftovers of any test run carry this.
T_BASE=dmrt
W=

ok() { T_PASS=$((T_PASS + 1)); echo "ok - $*"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "not ok - $*"; }
diag() { echo "# $*"; }
# check DESC CMD...: ok if CMD succeeds (its output is discarded).
check() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}
# check_not DESC CMD...: ok if CMD fails.
check_not() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then not_ok "$desc"; else ok "$desc"; fi
}
# is DESC WANT GOT
is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (want '$2', got '$3')"; fi; }
summary() {
	diag "$T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
}

# is_blockdev PATH: PATH is a block device.  (A write to a missing
# /dev/mapper/NAME silently creates a regular file on devtmpfs: check the
# type before trusting a path, and never write to one that is not.)
is_blockdev() {
	[ -b "$1" ] && return 0
	[ -e "$1" ] && diag "$1 exists but is not a block device"
	return 1
}

# dm_names: the names of all dm devices, one per line.
dm_names() {
	dmsetup info -c --noheadings -o name 2>/dev/null | grep -v '^No devices found'
}
# dm_attr NAME: dmsetup's attr column, e.g. "L--w"; "s" third while
# suspended.
dm_attr() { dmsetup info -c --noheadings -o attr "$1" 2>/dev/null; }
is_suspended() { [ "$(dm_attr "$1" | cut -c3)" = s ]; }

# lab_guard: refuse to start on leftovers (a suspended dm device, or one
# named like a test's or with a DMREP- UUID): they would hang or skew this
# test.  Prints `not ok - leftovers` and exits 1.
lab_guard() {
	local bad
	bad=$(dmsetup info -c --noheadings -o name,uuid,attr --separator ' ' 2>/dev/null |
		awk -v base="$T_BASE" '
			$0 ~ /^No devices found/ { next }
			index($1, base) == 1 || $2 ~ /^DMREP-/ || substr($NF, 3, 1) == "s" { print }')
	if [ -n "$bad" ]; then
		not_ok "leftovers"
		diag "dm devices left by an earlier test (or suspended):"
		sed 's/^/#   /' <<<"$bad"
		exit 1
	fi
}

# lab_setup: the guard, then $W (a fresh directory in $LAB_SCRATCH) and the
# teardown trap.
lab_setup() {
	if [ -z "${LAB:-}" ]; then
		echo "not ok - runs in the lab (use tools/lab/run)"
		exit 1
	fi
	lab_guard
	W=$(mktemp -d "${LAB_SCRATCH:-/tmp}/${T}XXXXXX") || { not_ok "make a work directory"; exit 1; }
	trap lab_teardown EXIT
	# Killed by run-all's time limit: still tear down (EXIT runs on exit).
	trap 'exit 143' TERM
	trap 'exit 130' INT
}

# make_file NAME SIZE: a sparse file $W/NAME of SIZE (truncate's suffixes:
# K, M, G are powers of 1024); prints its path.
make_file() {
	local f=$W/$1
	rm -f "$f"
	truncate -s "$2" "$f" || return 1
	echo "$f"
}
# make_loop NAME SIZE [LOSETUP-OPTION...]: make_file, then a loop device
# over it (direct I/O on: no second page cache); prints /dev/loopN.
make_loop() {
	local f dev
	f=$(make_file "$1" "$2") || return 1
	shift 2
	dev=$(losetup -f --show --direct-io=on "$@" "$f") || return 1
	udevadm settle >/dev/null 2>&1
	echo "$dev"
}
# loop_of FILE: the loop device over FILE (first one).
loop_of() { losetup -j "$1" -n -O NAME 2>/dev/null | head -n1; }

# dm_remove NAME: resume if suspended, then remove, retrying while busy.
dm_remove() {
	dmsetup info "$1" >/dev/null 2>&1 || return 0
	is_suspended "$1" && dmsetup resume "$1" >/dev/null 2>&1
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		dmsetup remove "$1" >/dev/null 2>&1 && return 0
		dmsetup info "$1" >/dev/null 2>&1 || return 0
		sleep 0.2
	done
	return 1
}

# lab_teardown (the EXIT trap): every dm device named $T*, then every loop
# over a file in $W, then $W.  Devices stacked on each other go in passes,
# holders first.
lab_teardown() {
	local rc=$? names n left loops progress
	trap - EXIT
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
		names=$(dm_names | awk -v p="$T" 'index($0, p) == 1')
		[ -z "$names" ] && break
		# Resume everything first: a suspended lower device would block its
		# holders' removal (their flush would wait on it).
		for n in $names; do is_suspended "$n" && dmsetup resume "$n" >/dev/null 2>&1; done
		# Unopened devices first (the holders of the others); then, if none
		# was, everything, with retries (udev or blkid may hold one briefly).
		progress=0
		for n in $names; do
			[ "$(dmsetup info -c --noheadings -o open "$n" 2>/dev/null | tr -d ' ')" = 0 ] || continue
			dmsetup remove "$n" >/dev/null 2>&1 && progress=1
		done
		[ "$progress" = 1 ] && continue
		for n in $names; do dm_remove "$n" && progress=1; done
		[ "$progress" = 1 ] || break
	done
	left=$(dm_names | awk -v p="$T" 'index($0, p) == 1')
	if [ -n "$W" ] && [ -d "$W" ]; then
		loops=$(losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$W/" 'index($2, w) == 1 { print $1 }')
		for n in $loops; do losetup -d "$n" 2>/dev/null; done
		sleep 0.1
		loops=$(losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$W/" 'index($2, w) == 1 { print $1 }')
		rm -rf "$W"
	fi
	udevadm settle >/dev/null 2>&1
	if [ -n "$left" ] || [ -n "${loops:-}" ]; then
		not_ok "teardown left nothing behind"
		diag "left:" $left $loops
		dmsetup info -c 2>/dev/null | sed 's/^/#   /'
		rc=1
	fi
	[ "$T_FAIL" -gt 0 ] && [ "$rc" = 0 ] && rc=1
	diag "$T_PASS passed, $T_FAIL failed"
	exit "$rc"
}
