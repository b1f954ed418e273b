#!/bin/bash
# `make check` (and `make check-asan`): the layer check (tests/layers.sh),
# unit tests, the lab suite on real device-mapper, then the two-host lab
# suite (tests/lab/h-*.sh in one `tools/lab/run --hosts 2`).  The last line
# counts them all: `N passed, N failed`.  A lab that cannot boot is a
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

tests/layers.sh | grep -v '^ok' | tee "$log"
layers_rc=${PIPESTATUS[0]}
tests/layers.sh --self-test | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || layers_rc=1
read -r yp yf < <(sed -n 's/^layers\(-self-test\)\{0,1\}: \([0-9]*\) passed, \([0-9]*\) failed$/\2 \3/p' "$log" |
	awk '{ p += $1; f += $2 } END { print p + 0, f + 0 }')
[ "$layers_rc" -eq 0 ] || [ "$yf" -gt 0 ] || yf=1

: >"$log"
tests/run-unit.sh "$@" | tee "$log"
unit_rc=${PIPESTATUS[0]}
read -r up uf < <(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)

# The lab passes only LAB_* and DMREP_* in: under CI a skip fails there too.
[ "${CI:-}" = true ] && export LAB_CI=true
# lab_suite NAME TIMEOUT RUN-ARGS... -- RUN-ALL-ARGS...: one lab run of
# tests/lab/run-all; its counts in $lp $lf, its status in $lrc.
lab_suite() {
	local name=$1 limit=$2 start
	shift 2
	: >"$log"
	start=$(date +%s)
	tools/lab/run --timeout "$limit" "$@" 2>&1 | tee "$log"
	lrc=${PIPESTATUS[0]}
	echo "$name: finished in $(($(date +%s) - start)) s (exit $lrc)"
	lp='' lf=''
	read -r lp lf < <(sed -n 's/^lab: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)
	if [ -z "${lp:-}" ]; then
		# The lab did not boot or died before its summary: count it as failed.
		lp=0 lf=1
		echo "$name: no summary (exit $lrc): the suite did not run to the end" >&2
	elif [ "$lrc" -ne 0 ] && [ "${lf:-0}" -eq 0 ]; then
		lf=1
	fi
}
lab_suite lab "${LAB_TIMEOUT:-2400}" -- tests/lab/run-all
lab_rc=$lrc l1p=$lp l1f=$lf
lab_suite lab-pair "${LAB_PAIR_TIMEOUT:-1800}" --hosts 2 -- tests/lab/run-all --hosts2
pair_rc=$lrc l2p=$lp l2f=$lf
lp=$((l1p + l2p)) lf=$((l1f + l2f))
up=${up:-0} uf=${uf:-1}
echo "$((yp + up + lp)) passed, $((yf + uf + lf)) failed"
[ "$layers_rc" -eq 0 ] && [ "$unit_rc" -eq 0 ] && [ "$lab_rc" -eq 0 ] && [ "$pair_rc" -eq 0 ] &&
	[ "$((yf + uf + lf))" -eq 0 ]
