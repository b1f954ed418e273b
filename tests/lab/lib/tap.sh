# shellcheck shell=bash
# tap.sh - TAP output and counting for the lab tests (sourced through
# inittest.sh).
#
#   ok DESC / not_ok DESC        one assertion, counted
#   skip DESC REASON             `ok - DESC # SKIP REASON`, counted apart (never
#                                a pass); under CI=true (or LAB_CI=true: the
#                                lab passes only LAB_* and DMREP_* through) a
#                                `not ok`: CI must run every check
#   diag TEXT                    a `# TEXT` comment
#   check DESC CMD...            ok if CMD succeeds (its output discarded)
#   check_not DESC CMD...        ok if CMD fails
#   is DESC WANT GOT             ok if the strings are equal
#   expect_rc DESC CODE JSON     the --json output's "return" is CODE (0 for
#                                a plain object without one, e.g. vm show)
#   job_ok JSON                  (a test, no output) the job completed, 0
#
# The counts go into the last line the teardown prints:
# `# N passed, N failed, N skipped`.

T_PASS=0
T_FAIL=0
T_SKIP=0

# LAB_TAP_TIMES=1: each ok / not ok line ends with the wall time since the
# previous one (`# +N ms`), to find where a test spends its lab time
# (no fork: a process costs milliseconds under TCG).
T_LAST=${EPOCHREALTIME/./}
T_SINCE=
t_since() {
	T_SINCE=
	[ "${LAB_TAP_TIMES:-0}" = 1 ] || return 0
	local now=${EPOCHREALTIME/./}
	T_SINCE=" # +$(((now - T_LAST) / 1000)) ms"
	T_LAST=$now
}
ok() { T_PASS=$((T_PASS + 1)); t_since; echo "ok - $*$T_SINCE"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); t_since; echo "not ok - $*$T_SINCE"; }
diag() { echo "# $*"; }
lab_ci() { [ "${CI:-}" = true ] || [ "${LAB_CI:-}" = true ]; }
skip() {
	if lab_ci; then
		not_ok "$1 (skipped: ${2:-no reason given}; under CI=true a skip fails)"
	else
		T_SKIP=$((T_SKIP + 1))
		echo "ok - $1 # SKIP ${2:-no reason given}"
	fi
}
check() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}
check_not() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then not_ok "$desc"; else ok "$desc"; fi
}
is() { if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1 (want '$2', got '$3')"; fi; }
expect_rc() {
	local got= rest
	# Without a jq (a process costs tens of ms under TCG, and there are
	# hundreds of these): one object whose text names "return" once, with
	# an integer.  Anything else (no "return", two, not an object) is jq's.
	if [[ $3 =~ ^[[:space:]]*\{.*\}[[:space:]]*$ && $3 =~ \"return\":[[:space:]]*(-?[0-9]+)[[:space:]]*[,}] ]]; then
		got=${BASH_REMATCH[1]}
		rest=${3#*\"return\":}
		[[ $rest == *\"return\":* ]] && got=
	fi
	[ -n "$got" ] || got=$(jq -r 'if type == "object" and has("return") then .return else 0 end' <<<"$3" 2>/dev/null)
	if [ "$got" = "$2" ]; then ok "$1"; else not_ok "$1 (want $2, got ${got:-no JSON}: ${3:0:200})"; fi
}
job_ok() { jq -e '.job_state == 7 and .error_code == 0' <<<"$1" >/dev/null; }
# t_counts: the counting line (printed last, by the teardown).
t_counts() { diag "$T_PASS passed, $T_FAIL failed, $T_SKIP skipped"; }
