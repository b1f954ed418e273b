#!/bin/bash
# The fuzz smoke of `make check`: every target in $FUZZ_BIN (make fuzz's
# build-fuzz/fuzz) over its seed corpus (tests/fuzz/corpus/TARGET), then
# mutated for a fixed number of runs (FUZZ_RUNS, default 10000) with a fixed
# seed, so a run is repeatable.  One line per target; the corpus is only
# read (new inputs go to a scratch directory); a crash's input is left in $FUZZ_ARTIFACTS
# (default a temporary directory, named on failure).  Ends with
# `fuzz: N passed, N failed`; exit 0 iff all passed.
set -u
cd "$(dirname "$0")/../.."
bin=${FUZZ_BIN:-build-fuzz/fuzz}
runs=${FUZZ_RUNS:-10000}
art=${FUZZ_ARTIFACTS:-$(mktemp -d /tmp/dmrep-fuzz-smoke.XXXXXX)}
passed=0 failed=0
for src in tests/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c)
	t=${t#fuzz_}
	b=$bin/fuzz_$t
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	if [ ! -x "$b" ]; then
		echo "fuzz: $t: FAILED: $b is not built (make fuzz)"
		failed=$((failed + 1))
		continue
	fi
	start=$(date +%s)
	# libFuzzer adds what it finds to its first corpus directory: a
	# scratch one, so that the seeds stay as they are.
	mkdir -p "$art/$t"
	out=$("$b" -runs="$runs" -seed=1 -timeout=20 -rss_limit_mb=2048 "${dict[@]}" \
		-artifact_prefix="$art/$t-" "$art/$t" "tests/fuzz/corpus/$t" 2>&1)
	rc=$?
	n=$(printf '%s\n' "$out" | sed -n 's/^Done \([0-9]*\) runs.*/\1/p' | tail -n1)
	if [ "$rc" -eq 0 ] && [ -n "$n" ]; then
		echo "fuzz: $t: ok ($n runs, $(($(date +%s) - start)) s)"
		passed=$((passed + 1))
	else
		printf '%s\n' "$out" | grep -E 'ERROR|SUMMARY|check failed|Test unit written' | head -n 20
		echo "fuzz: $t: FAILED (exit $rc; the input is in $art)"
		failed=$((failed + 1))
	fi
done
[ -z "${FUZZ_ARTIFACTS:-}" ] && [ "$failed" -eq 0 ] && rm -rf "$art"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
