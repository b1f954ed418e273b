#!/bin/bash
# Run the cmocka unit test binaries given as arguments; print cmocka's own
# output and a closing `unit: N passed, N failed` line.  Exit 0 iff all pass.
set -u
passed=0 failed=0
for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	passed=$((passed + ${p:-0}))
	f=${f:-0}
	# A binary that crashed or failed without cmocka's summary still failed.
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "unit: $t exited $rc" >&2; fi
	failed=$((failed + f))
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
