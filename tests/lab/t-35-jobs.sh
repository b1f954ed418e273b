#!/bin/bash
# Lab test: hundreds of jobs through the socket, and the agent's memory
# stays flat.  mlockall locks every page the agent maps, so a job thread
# that is never joined leaves its whole stack locked (9 MB a point, seen
# in the lab); and the records stop at the last KEEP (1000 in the agent;
# the test hook DMREP_TEST_JOBS_KEEP lowers it here to 200, so that
# pruning is seen after 400 jobs, not 1200: 80 s less of the lab).  Each job is a point
# creation that the test hook fails at once (DMREP_TEST_FAIL_AT), so it
# costs a thread, a record and two state-file writes, no snapshot; the
# state directory is on tmpfs and the calls go over one connection, so
# that they fit in the lab's time.  Then job ids go on after a
# restart with every record removed.
set -u
. "$(dirname "$0")/lib/inittest.sh"

# 400 after the warm-up: past the KEEP records kept, so that pruning is
# seen (the oldest 250 go), and 8 memory checks of 50 jobs each; a job
# costs ~60 ms of the lab's CPU under TCG, so every job counts.  A leak of
# a stack a job fails at the first check.
KEEP=${LAB_JOBS_KEEP:-200}
N=${LAB_JOBS:-400}
export DMREP_TEST_JOBS_KEEP=$KEEP
# Under ASan (make check-asan) memory says nothing (its quarantine keeps
# what is freed, its shadow is not locked): the records and ids are still
# checked, over enough jobs to prune.
san=${LAB_SANITIZE:-0}
[ "$san" = 1 ] && N=${LAB_JOBS:-300}
# mem_check DESC TEST...: check; under ASan not a check at all (nothing is
# missing that CI could install: the build measures otherwise), a comment.
mem_check() {
	if [ "$san" = 1 ]; then diag "not checked under ASan: $1"; else check "$@"; fi
}
# status_kb FIELD: the agent's VmLck, VmRSS, Threads.
status_kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$AGENT_PID/status"; }

# One connection for every call: rpc LINE sets REPLY_LINE.
rpc_open() { coproc RPC { socat - "UNIX-CONNECT:$SOCK"; }; }
rpc_close() {
	local pid=${RPC_PID:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
rpc() {
	REPLY_LINE=
	printf '%s\n' "$1" >&"${RPC[1]}" && IFS= read -r -t 60 REPLY_LINE <&"${RPC[0]}"
}
# points K: K point creations, each a job that ran and failed at the
# test hook's -EIO (not a refusal), waited for with GetJob.
points() {
	local i job st
	for i in $(seq "$1"); do
		rpc "{\"id\": $i, \"method\": \"CreateReplicationPoint\", \"params\": {\"vm\": \"$VM\"}}"
		if ! [[ $REPLY_LINE =~ \"return\":\ ?4096 && $REPLY_LINE =~ \"job\":\ ?([0-9]+) ]]; then
			not_ok "point creation $i starts a job (${REPLY_LINE:0:200})"
			return 1
		fi
		job=${BASH_REMATCH[1]}
		st=
		while [ -z "$st" ]; do
			rpc "{\"id\": 0, \"method\": \"GetJob\", \"params\": {\"job\": $job}}"
			[[ $REPLY_LINE =~ \"job_state\":\ ?(7|8|10), ]] && st=${BASH_REMATCH[1]}
			[ -n "$REPLY_LINE" ] || { not_ok "GetJob $job answers"; return 1; }
		done
		if [ "$st" != 10 ] || ! [[ $REPLY_LINE == *"cannot make the point"* ]]; then
			not_ok "job $job failed at the test hook (${REPLY_LINE:0:300})"
			return 1
		fi
	done
}

export DMREP_TEST_FAIL_AT=point:snapshot
agent_setup
# The state directory on tmpfs: thousands of records, each with fsyncs.
agent_stop
STATE=$(mktemp -d /run/dmrep-jobs.XXXXXX)/state
lab_cleanup 'rm -rf "${STATE%/state}"'
lab_cleanup rpc_close
agent_start || { not_ok "dmrepd starts on a tmpfs state directory"; exit 1; }

prepare_pool 256M 8M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M")
expect_rc "vm add" 0 "$out"
out=$(dmrep --json point create "$VM")
check "a point creation is a job the test hook fails" jq -e '.return != 0 and (.error | test("cannot make the point"))' <<<"$out"

rpc_open
# Warm up: malloc's arena and glibc's stack cache are in place after this.
points 50 || exit 1
lck0=$(status_kb VmLck) rss0=$(status_kb VmRSS) threads0=$(status_kb Threads)
diag "after 50 jobs: VmLck $lck0 kB, VmRSS $rss0 kB, $threads0 threads"
mem_check "the agent runs with its memory locked (VmLck $lck0 kB)" test "${lck0:-0}" -gt 0

# A bound, not a timing: 16 MiB over the warm-up, checked every 50 jobs so
# that a leak (8 MiB a job) fails long before it fills the lab's memory.
bound=$((16 * 1024))
t0=$SECONDS
done_n=0
lck=$lck0 rss=$rss0
while [ "$done_n" -lt "$N" ]; do
	points 50 || break
	done_n=$((done_n + 50))
	lck=$(status_kb VmLck) rss=$(status_kb VmRSS)
	[ $((done_n % 100)) = 0 ] && diag "after $done_n more jobs: VmLck $lck kB, VmRSS $rss kB, $(status_kb Threads) threads"
	[ "$san" = 1 ] || { [ $((lck - lck0)) -lt "$bound" ] && [ $((rss - rss0)) -lt "$bound" ]; } || break
done
rpc_close
diag "$done_n jobs in $((SECONDS - t0)) s; VmLck $lck0 -> $lck kB, VmRSS $rss0 -> $rss kB"
check "$N jobs ran ($done_n)" test "$done_n" = "$N"
mem_check "VmLck grew by less than 16 MiB over $done_n jobs ($lck0 -> $lck kB)" test $((lck - lck0)) -lt "$bound"
mem_check "VmRSS grew by less than 16 MiB over $done_n jobs ($rss0 -> $rss kB)" test $((rss - rss0)) -lt "$bound"
threads=$(status_kb Threads)
# The server's own threads (loop, writer, readers) are there after the
# warm-up; at most one ended job thread waits to be joined by the next job.
check "no job thread is left over ($threads threads, $threads0 after the warm-up)" \
	test "$threads" -le $((threads0 + 1))

# --- records: the last KEEP ---------------------------------------------------
n_files=$(find "$STATE/jobs" -name '*.json' | wc -l)
check "at most $KEEP job records on disk ($n_files)" test "$n_files" -le "$KEEP"
out=$(dmrep --json job list)
check "job list has the last $KEEP jobs" jq -e --argjson k "$KEEP" 'length == $k' <<<"$out"
last=$(jq 'map(.id) | max' <<<"$out")
check "the oldest records are gone (job 1)" test ! -e "$STATE/jobs/1.json"
check "the newest is kept (job $last)" test -e "$STATE/jobs/$last.json"

# --- ids never repeat -------------------------------------------------------------
agent_stop
rm -f "$STATE"/jobs/*.json
agent_start || not_ok "the agent restarts"
dmrep --json point create "$VM" >/dev/null 2>&1
out=$(dmrep --json job list)
check "after a restart with every record removed, ids go on ($last, then $((last + 1)))" \
	jq -e --argjson last "$last" 'map(.id) == [$last + 1]' <<<"$out"

agent_stop
summary
