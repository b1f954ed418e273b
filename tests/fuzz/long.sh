#!/bin/bash
# make fuzz-long: every target in $FUZZ_BIN for SECONDS (argument, default
# 600) each, one after the other, starting from its seed corpus
# (tests/fuzz/corpus/TARGET, only read) and keeping what it finds in
# $FUZZ_WORK/TARGET (default build-fuzz/corpus/TARGET, kept between runs).
# Prints each target's executions and findings (crash inputs, in
# $FUZZ_WORK/TARGET-crash-*); exit 0 iff no target found anything.  A new
# input worth keeping in the repository: `-merge=1` it into the seeds
# (README "Fuzzing").
set -u
cd "$(dirname "$0")/../.."
secs=${1:-600}
bin=${FUZZ_BIN:-build-fuzz/fuzz}
work=${FUZZ_WORK:-build-fuzz/corpus}
bad=0
all=$(for src in tests/fuzz/fuzz_*.c; do t=$(basename "$src" .c); echo "${t#fuzz_}"; done)
for t in ${FUZZ_TARGETS:-$all}; do
	[ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz-long: $t: no such target" >&2; bad=1; continue; }
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	mkdir -p "$work/$t"
	log="$work/$t.log"
	"$bin/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 "${dict[@]}" \
		-artifact_prefix="$work/$t-crash-" -print_final_stats=1 \
		"$work/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$log" | tail -n1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
	crashes=$(find "$work" -maxdepth 1 -name "$t-crash-*" | wc -l)
	echo "fuzz-long: $t: ${n:-?} executions in $secs s, ${cov:-cov: ?}, exit $rc, $crashes finding(s) (log $log)"
	[ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || bad=1
done
exit $bad
