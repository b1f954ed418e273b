# shellcheck shell=bash
# inittest.sh - what every lab test sources first (after lvm2's
# test/lib/inittest): the library, the per-run names, setup and THE teardown.
#
#   . "$(dirname "$0")/lib/inittest.sh"
#   lab_need qemu-ga           # a missing optional tool: skip the test
#   lab_setup                  # refuse leftovers, make $W, teardown on EXIT
#   lab_cleanup 'umount "$MNT"'  # the test's own undo steps, run first, LIFO
#   lab_run_c lab_dm           # a C lab test, its TAP lines counted as ours
#   ...
#   summary                    # the end: exit, the teardown reports
#
# Names: $T (dmrtPID-) prefixes every dm device a test makes by hand (UUID
# DMREP-labtest-PID-*), $VM (tPID) every VM; $W is a fresh directory in
# $LAB_SCRATCH.  Sources tap.sh (TAP, skip), dev.sh (devices, bytes/put/
# has), agent.sh (dmrepd start/stop, reboot), qemu.sh (nested QEMU,
# qemu-ga), aux.sh (prepare helpers), pair.sh (two-host tests, h-*.sh:
# pair_setup instead of lab_setup, on_peer, peer_sh, the peer's agent and
# power; the teardown then checks both hosts).
#
# The teardown (lab_teardown, the EXIT trap) runs the test's cleanups, stops
# the agent and takes away what a reboot takes (the agent's DMREP- devices,
# the loops over files in $W), detaches the loops make_loop made; then
# anything left is a failure of THIS test, one counted line `not ok -
# teardown: nothing left behind` naming it: a dm device with a DMREP- UUID
# or a dmrt* name (the run's prefix; C tests use theirs), a loop device or
# a mount that was not there at lab_setup.  It then removes them (resume,
# remove, --force; detach; lazy unmount) so that the next test starts clean.
# With nothing left it prints `ok - teardown: nothing left behind`.  The
# last line is `# N passed, N failed, N skipped`; the exit status is 0 iff
# nothing failed.

LAB_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LAB_LIB/../../.." && pwd)
# Per-run prefix for every dm device a test makes; any run's carries T_BASE.
T=${T:-dmrt$$-}
T_BASE=dmrt
VM=t$$
W=
LAB_CLEANUPS=()
LAB_LOOPS0=
LAB_MOUNTS0=
PAIR_USED=

# jq is gojq (Debian's, the same language) where installed: jq 1.6 parses
# its builtins at every start, half a second of the lab's CPU a call under
# TCG (gojq: a tenth of that natively, 1 ms against 20), and the tests call
# it by the hundred.  A function, so only the tests' own jq changes (not a
# `sh -c` or the project's scripts); LAB_JQ=jq keeps jq 1.6.  gojq is
# stricter where it matters: `jq -e` on empty input fails (jq 1.6: 0).
if [ "${LAB_JQ:-gojq}" = gojq ] && command -v gojq >/dev/null 2>&1; then
	jq() { gojq "$@"; }
fi

. "$LAB_LIB/tap.sh"
. "$LAB_LIB/dev.sh"
. "$LAB_LIB/agent.sh"
. "$LAB_LIB/qemu.sh"
. "$LAB_LIB/aux.sh"
. "$LAB_LIB/pair.sh"

# lab_need TOOL...: a tool the test cannot run without but the project does
# not need (qemu, qemu-ga, thin_ls...): missing, the test is one skip (under
# CI=true a failure).
lab_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 && continue
		skip "${0##*/}" "$t is not installed"
		# After lab_setup the teardown counts; before, nothing is made.
		[ -n "$W" ] || t_counts
		[ "$T_FAIL" = 0 ]
		exit
	done
}

# lab_cleanup CMD: run CMD (eval'd) at teardown, before the library's own
# steps; the last registered runs first.
lab_cleanup() { LAB_CLEANUPS+=("$1"); }

# The dm devices a test may leave: DMREP- UUID or a dmrt* name.
lab_dm_leftovers() {
	dmsetup info -c --noheadings -o name,uuid,attr --separator ' ' 2>/dev/null |
		awk -v base="$T_BASE" '$0 !~ /^No devices found/ && (index($1, base) == 1 || $2 ~ /^DMREP-/)'
}
lab_loops() { losetup -l -n -O NAME,BACK-FILE 2>/dev/null | sort; }
lab_mounts() { awk '{ print $5 }' /proc/self/mountinfo | sort; }
# The loops and mounts made since lab_setup.
lab_new_loops() { comm -13 <(printf '%s\n' "$LAB_LOOPS0") <(lab_loops) | grep .; }
lab_new_mounts() { comm -13 <(printf '%s\n' "$LAB_MOUNTS0") <(lab_mounts) | grep .; }

# lab_guard: refuse to start on leftovers (a suspended dm device, one named
# like a test's or with a DMREP- UUID): they would hang or skew this test.
lab_guard() {
	local bad
	bad=$(dmsetup info -c --noheadings -o name,uuid,attr --separator ' ' 2>/dev/null |
		awk -v base="$T_BASE" '
			$0 ~ /^No devices found/ { next }
			index($1, base) == 1 || $2 ~ /^DMREP-/ || substr($NF, 3, 1) == "s" { print }')
	if [ -n "$bad" ]; then
		not_ok "no leftover dmrt*, DMREP- or suspended devices before the test"
		sed 's/^/#   /' <<<"$bad"
		exit 1
	fi
}

# lab_setup: the guard, $W, what exists now (loops, mounts), the teardown.
lab_setup() {
	if [ -z "${LAB:-}" ]; then
		echo "not ok - runs in the lab (use tools/lab/run)"
		exit 1
	fi
	lab_guard
	LAB_LOOPS0=$(lab_loops)
	LAB_MOUNTS0=$(lab_mounts)
	W=$(mktemp -d "${LAB_SCRATCH:-/tmp}/${T}XXXXXX") || { not_ok "make a work directory"; exit 1; }
	# Others may look in (t-37's group member, t-30's nobody).
	chmod 0755 "$W"
	trap lab_teardown EXIT
	# Killed by run-all's time limit: still tear down (EXIT runs on exit).
	trap 'exit 143' TERM
	trap 'exit 130' INT
}

# lab_remove_dm NAME...: remove them, holders first (unopened ones first,
# pass after pass), every one resumed first (a suspended lower device would
# block its holders' flush); --retry waits out a passing opener (udev).
# Each pass lists every device once (name, attr, open count) and removes
# the unopened ones in one dmsetup: a reboot's dozens of devices cost a
# few processes a pass, not several each (tens of milliseconds apiece
# under TCG).
lab_remove_dm() {
	local n attr open pass before=-1 progress
	local -A want=()
	local left susp unopened
	for n in "$@"; do want[$n]=1; done
	for ((pass = 0; pass < 16; pass++)); do
		left=() susp=() unopened=()
		while read -r n attr open; do
			[ -n "$n" ] && [ -n "${want[$n]:-}" ] || continue
			left+=("$n")
			[ "${attr:2:1}" = s ] && susp+=("$n")
			[ "$open" = 0 ] && unopened+=("$n")
		done < <(dmsetup info -c --noheadings -o name,attr,open --separator ' ' 2>/dev/null)
		[ ${#left[@]} -gt 0 ] || return 0
		[ ${#susp[@]} -eq 0 ] || dmsetup resume "${susp[@]}" >/dev/null 2>&1
		# Fewer left than a pass ago, or some unopened to remove: go on.
		progress=0
		[ "$before" -lt 0 ] || [ ${#left[@]} -lt "$before" ] && progress=1
		before=${#left[@]}
		if [ ${#unopened[@]} -gt 0 ]; then
			dmsetup remove --retry "${unopened[@]}" >/dev/null 2>&1
			continue
		fi
		[ "$progress" = 1 ] && continue
		for n in "${left[@]}"; do dm_remove "$n" && progress=1; done
		[ "$progress" = 1 ] || return 1
	done
	while read -r n _; do
		[ -n "$n" ] && [ -n "${want[$n]:-}" ] && return 1
	done < <(dmsetup info -c --noheadings -o name --separator ' ' 2>/dev/null)
	return 0
}
# lab_detach_under DIR: every loop over a file below DIR.
# (The kernel reports backing files by their real path.)
lab_detach_under() {
	local d
	d=$(realpath "$1") || return 0
	losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$d/" 'index($2, w) == 1 { print $1 }' |
		xargs -r -n1 losetup -d 2>/dev/null
}

# lab_leftovers: what is left (dm devices, loops, mounts), one a line.
lab_leftovers() {
	lab_dm_leftovers | awk '{ print "dm device " $1 " (" ($2 == "" ? "no UUID" : $2) ")" }'
	lab_new_loops | sed 's/^/loop device /'
	lab_new_mounts | sed 's/^/mount /'
}

# lab_force_clean: take away every leftover, however.
lab_force_clean() {
	local m n
	for m in $(lab_new_mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	mapfile -t n < <(lab_dm_leftovers | awk '{ print $1 }')
	if [ ${#n[@]} -gt 0 ] && ! lab_remove_dm "${n[@]}"; then
		for m in "${n[@]}"; do dmsetup remove --force "$m" >/dev/null 2>&1; done
	fi
	for n in $(lab_new_loops | awk '{ print $1 }'); do losetup -d "$n" 2>/dev/null; done
	udevadm settle --timeout=10 >/dev/null 2>&1
}

# lab_teardown (the EXIT trap).
lab_teardown() {
	local rc=$? i left
	trap - EXIT
	for ((i = ${#LAB_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${LAB_CLEANUPS[i]}" >/dev/null 2>&1
	done
	agent_down
	# The loops make_loop made (a loop over a file in $W).
	[ -n "$W" ] && lab_detach_under "$W"
	# Bounded: a udev worker may hang on a suspended leftover.
	udevadm settle --timeout=10 >/dev/null 2>&1
	# Give a loop a moment to go (autoclear after the last close).
	for _ in 1 2 3 4 5; do
		left=$(lab_leftovers)
		[ -z "$left" ] && break
		lab_nap 0.2
	done
	if [ -n "$left" ]; then
		not_ok "teardown: nothing left behind ($(wc -l <<<"$left") left)"
		sed 's/^/#   left behind: /' <<<"$left"
		lab_force_clean
		left=$(lab_leftovers)
		[ -n "$left" ] && sed 's/^/#   still there after a forced cleanup: /' <<<"$left"
		rc=1
	else
		ok "teardown: nothing left behind"
	fi
	# A two-host test (pair_setup): the same on the peer.
	if [ -n "$PAIR_USED" ] && [ -n "$PW" ]; then
		pair_teardown || rc=1
	fi
	[ -n "$W" ] && rm -rf "$W"
	[ "$T_FAIL" -gt 0 ] && [ "$rc" = 0 ] && rc=1
	t_counts
	exit "$rc"
}

# lab_run_c NAME: run the C lab test build/bin/NAME (lab_dm, lab_snap) with
# $W as its scratch; its TAP lines are passed on and counted as this test's.
lab_run_c() {
	local bin line rc
	bin=$(command -v "$1" || echo "$ROOT/${BUILD:-build}/bin/$1")
	[ -x "$bin" ] || { not_ok "$1 is built ($bin)"; return 1; }
	while IFS= read -r line; do
		case $line in
		"not ok" | "not ok "*) T_FAIL=$((T_FAIL + 1)) ;;
		"ok "*" # SKIP"*) T_SKIP=$((T_SKIP + 1)) ;;
		ok | "ok "*) T_PASS=$((T_PASS + 1)) ;;
		esac
		printf '%s\n' "$line"
	done < <(
		LAB_SCRATCH=$W "$bin"
		echo $? >"$W/$1.rc"
	)
	rc=$(cat "$W/$1.rc" 2>/dev/null)
	[ "${rc:-1}" = 0 ] || [ "$T_FAIL" -gt 0 ] || not_ok "$1 exited ${rc:-?} without a failed check"
}

# summary: the test's end; the teardown (EXIT) reports and sets the status.
summary() { exit 0; }
