#!/bin/bash
# `make check` (and `make check-asan`): the layer check (tests/layers.sh),
# unit tests, the man pages and the completion (tests/man-check.sh,
# tests/completion-check.sh), the unit's sandbox rating
# (tests/unit-security.sh), the Debian package (tests/deb-check.sh), the
# lab suite on real device-mapper, then the
# two-host lab suite (tests/lab/h-*.sh in one `tools/lab/run --hosts 2`)
# and the unit under systemd (tests/lab/u-00-unit.sh, `tools/lab/run --systemd`).
# The last line counts them all: `N passed, N failed`.  A lab that cannot boot is a
# failure, never a skip.
set -u
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# SANITIZE=1 (make check-asan): a UBSan finding fails a unit test as an ASan
# one does, and the lab counts every sanitizer report as a failure.
if [ "${SANITIZE:-0}" = 1 ]; then
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	export LAB_SANITIZE=1
fi

# The Debian package (tests/deb-check.sh) builds beside the checks below,
# on the second core; the lab installs and purges it (t-99).  Not under
# make check-asan: it leaves t-99 out (ASAN_EXCLUDE).
debf=$(mktemp)
trap 'rm -f "$log" "$debf"' EXIT
deb_pid=
if [ "${SANITIZE:-0}" != 1 ]; then
	tests/deb-check.sh >"$debf" 2>&1 &
	deb_pid=$!
fi

tests/layers.sh | grep -v '^ok' | tee "$log"
layers_rc=${PIPESTATUS[0]}
tests/layers.sh --self-test | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || layers_rc=1
read -r yp yf < <(sed -n 's/^layers\(-self-test\)\{0,1\}: \([0-9]*\) passed, \([0-9]*\) failed$/\2 \3/p' "$log" |
	awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }')
[ "$layers_rc" -eq 0 ] || [ "$yf" -gt 0 ] || yf=1

# The fuzz smoke (tests/fuzz/smoke.sh, built by make fuzz): every target
# over its corpus for a fixed number of runs.  make check-asan leaves it
# out: the targets are built with ASan and UBSan already.
fp=0 ff=0 fuzz_rc=0
if [ "${SANITIZE:-0}" != 1 ]; then
	: >"$log"
	tests/fuzz/smoke.sh | tee "$log"
	fuzz_rc=${PIPESTATUS[0]}
	read -r fp ff < <(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)
	fp=${fp:-0} ff=${ff:-1}
	[ "$fuzz_rc" -eq 0 ] || [ "$ff" -gt 0 ] || ff=1
fi

: >"$log"
tests/run-unit.sh "$@" | tee "$log"
unit_rc=${PIPESTATUS[0]}
read -r up uf < <(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)

# The man pages against --help, and the shell completion (no lab needed).
: >"$log"
tests/man-check.sh | tee "$log"
docs_rc=${PIPESTATUS[0]}
tests/completion-check.sh | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || docs_rc=1
# The agent's unit rated by systemd-analyze security (tests/unit-security.sh).
tests/unit-security.sh | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || docs_rc=1
read -r dp df < <(sed -n 's/^\(man\|completion\|sandbox\): \([0-9]*\) passed, \([0-9]*\) failed$/\2 \3/p' "$log" |
	awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }')
[ "$docs_rc" -eq 0 ] || [ "$df" -gt 0 ] || df=1

bp=0 bf=0 deb_rc=0
if [ -n "$deb_pid" ]; then
	wait "$deb_pid"
	deb_rc=$?
	cat "$debf"
	read -r bp bf < <(sed -n 's/^deb: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$debf")
	bp=${bp:-0} bf=${bf:-1}
	[ "$deb_rc" -eq 0 ] || [ "$bf" -gt 0 ] || bf=1
fi

# The lab passes only LAB_* and DMREP_* in: under CI a skip fails there too.
[ "${CI:-}" = true ] && export LAB_CI=true
# lab_counts NAME LOG RC: the counts of one lab run of tests/lab/run-all
# in $lp $lf (a run without its summary line counts as failed).
lab_counts() {
	lp='' lf=''
	read -r lp lf < <(sed -n 's/^lab: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$2" | tail -n1)
	if [ -z "${lp:-}" ]; then
		# The lab did not boot or died before its summary: count it as failed.
		lp=0 lf=1
		echo "$1: no summary (exit $3): the suite did not run to the end" >&2
	elif [ "$3" -ne 0 ] && [ "${lf:-0}" -eq 0 ]; then
		lf=1
	fi
}
# The two suites run at once: each lab test keeps mostly one emulated CPU
# busy, so the pair (two -smp 1 hosts) fits beside the one-host lab on a
# two-core machine, and make check takes about the longer of the two
# instead of their sum.  The pair's output is shown when it is done.
# The image first, once: two runs must not build it at the same time.
tools/lab/build-image || echo "lab: cannot build the lab image" >&2
plog=$(mktemp)
trap 'rm -f "$log" "$plog" "$debf"' EXIT
pstart=$(date +%s)
# LAB_TESTS and LAB_PAIR_TESTS (patterns, as tests/lab/run-all takes them;
# empty: all) narrow the suites.
# shellcheck disable=SC2086 # the patterns are words
# LAB_PAIR_ALSO (make check: PAIR_ALSO in the Makefile): one-host tests
# the pair runs on its lab1 after its own, left out of the one-host run,
# so that the two suites take about as long (measured 2026-12-04: 916 s
# one-host, about 650 s the pair, before t-68 and t-69 came).
also=${LAB_PAIR_ALSO:-}
LAB_PAIR_ALSO=$also tools/lab/run --timeout "${LAB_PAIR_TIMEOUT:-1800}" --hosts 2 -- \
	tests/lab/run-all --hosts2 ${LAB_PAIR_TESTS:-} >"$plog" 2>&1 &
ppid=$!
: >"$log"
start=$(date +%s)
# shellcheck disable=SC2086
LAB_PAIR_ALSO= LAB_EXCLUDE="${LAB_EXCLUDE:-} $also" \
	tools/lab/run --timeout "${LAB_TIMEOUT:-3600}" -- tests/lab/run-all ${LAB_TESTS:-} 2>&1 | tee "$log"
lab_rc=${PIPESTATUS[0]}
echo "lab: finished in $(($(date +%s) - start)) s (exit $lab_rc)"
lab_counts lab "$log" "$lab_rc"
l1p=$lp l1f=$lf
# The unit under systemd as PID 1 (tests/lab/u-00-unit.sh), in a boot of
# its own once the one-host suite is done (the pair may still run beside
# it): its ok / not ok lines are counted; no count line is a failure.
# make check-asan leaves it out (LAB_UNIT=0): the sandbox is the unit's,
# not the build's.
: >"$log"
l3p=0 l3f=0 unitlab_rc=0
if [ "${LAB_UNIT:-1}" != 0 ]; then
	start=$(date +%s)
	tools/lab/run --systemd --timeout "${LAB_UNIT_TIMEOUT:-400}" -- tests/lab/u-00-unit.sh 2>&1 | tee "$log"
	unitlab_rc=${PIPESTATUS[0]}
	echo "lab-unit: finished in $(($(date +%s) - start)) s (exit $unitlab_rc)"
	l3p=$(grep -c '^ok - ' "$log") l3f=$(grep -c '^not ok - ' "$log")
	if ! grep -q '^# [0-9]* passed, [0-9]* failed' "$log"; then
		echo "lab-unit: no count line (exit $unitlab_rc): the test did not run to the end" >&2
		l3f=$((l3f + 1))
	elif [ "$unitlab_rc" -ne 0 ] && [ "$l3f" -eq 0 ]; then
		l3f=1
	fi
fi
wait "$ppid"
pair_rc=$?
cat "$plog"
echo "lab-pair: finished in $(($(date +%s) - pstart)) s (exit $pair_rc)"
lab_counts lab-pair "$plog" "$pair_rc"
l2p=$lp l2f=$lf
lp=$((l1p + l2p + l3p)) lf=$((l1f + l2f + l3f))
up=${up:-0} uf=${uf:-1}
echo "$((yp + up + fp + dp + bp + lp)) passed, $((yf + uf + ff + df + bf + lf)) failed"
[ "$layers_rc" -eq 0 ] && [ "$unit_rc" -eq 0 ] && [ "$fuzz_rc" -eq 0 ] && [ "$docs_rc" -eq 0 ] &&
	[ "$deb_rc" -eq 0 ] && [ "$lab_rc" -eq 0 ] && [ "$pair_rc" -eq 0 ] && [ "$unitlab_rc" -eq 0 ] &&
	[ "$((yf + uf + ff + df + bf + lf))" -eq 0 ]
