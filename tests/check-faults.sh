#!/bin/bash
# make check-faults: the lab's fault tests (LAB_TESTS, default t-65; the
# Makefile gives FAULT_TESTS) in one boot of their own (make check runs them
# too); the last line is `N passed, N failed` as .ci/run reads it.
# A lab that cannot boot or a run with no count line is a failure.
set -u
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
tools/lab/run --timeout "${LAB_TIMEOUT:-1200}" -- tests/lab/run-all ${LAB_TESTS:-t-65} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "lab-faults: finished in $(($(date +%s) - start)) s (exit $rc)"
read -r p f < <(sed -n 's/^lab: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)
if [ -z "${p:-}" ]; then
	p=0 f=1
elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
	f=1
fi
echo "$p passed, $f failed"
[ "$rc" -eq 0 ] && [ "$f" -eq 0 ]
