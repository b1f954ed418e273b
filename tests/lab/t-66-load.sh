#!/bin/bash
# Lab test: 64 clients at once (issue 16, item 3).  tests/lab/lab_load runs
# 48 clients as root and 16 as a member of the agent's --group (its cap
# per uid: root is never capped) for two rounds of $ROUND s, mixing reads
# (vm list, vm show, point list, job list, pool status) with points on four
# VMs, while one more client fails one of them over and reverts it again
# and again.  Beside them, connections that send nothing, half a line, or
# requests they never read the replies of.  Checked: every reply
# well-formed with its id, code and one-line reason; no point taken on the
# failover VM while its failover job held it (the others 32774: busy); the
# clients that never read dropped at the agent's cap, the rest served
# meanwhile; the agent up, its descriptors back to what they were and its
# memory flat from the first round to the second; every job ended, nothing
# suspended, the failover VM on its live volumes.  Read latency (p50, p99)
# with and without a failover running goes to the log (a benchmark's
# number, not a check).
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_need jq
lab_need setpriv
ROUND=${LAB_LOAD_SECONDS:-20}
agent_setup
agent_stop
member_setup
DMREPD_ARGS="--group $G"
# Memory is the malloc heap's (heap(), below), made to say whether memory
# leaks rather than how the allocator laid out the last burst: buffers of
# 16 KiB and more (each connection's 64 KiB input buffer, a no-read
# client's 8 MiB of replies) are mmapped and go back at free, not left as
# holes that pin the heap's top (3 MiB more in a round, seen), nor does
# glibc raise that threshold after the first big free; one arena keeps the
# short-lived job threads from each growing its own.  Under ASan (make
# check-asan) LeakSanitizer checks the agent at its exit instead, and the
# heap says nothing (its quarantine keeps freed memory).
export MALLOC_MMAP_THRESHOLD_=16384 MALLOC_TRIM_THRESHOLD_=131072 MALLOC_ARENA_MAX=1
agent_start || { not_ok "dmrepd starts with --group"; exit 1; }
prepare_pool 512M 16M "a pool"
VMS=
for v in a b c f; do
	expect_rc "vm add $VM$v" 0 "$(dmrep --json vm add "$VM$v" --disk vda="$W/$v.img:8M")"
	expect_rc "vm retention $VM$v --keep-last 3" 0 "$(dmrep --json vm retention "$VM$v" --keep-last 3)"
	VMS=$VMS${VMS:+,}$VM$v
done
FO=${VM}f
expect_rc "a first point of $FO (what its failovers go to)" 0 "$(dmrep --json point create "$FO")"


rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status"; }
# The malloc heap's resident KiB: RSS itself moves with glibc's cache of
# freed thread stacks (a job's is 512 KiB, locked by mlockall: as many stay
# cached as jobs ran at once at the peak, up to 40 MiB), which is no leak.
heap() { awk '/\[heap\]$/ { h = 1; next } h && /^Rss:/ { print $2; exit }' "/proc/$AGENT_PID/smaps"; }
fds() { find "/proc/$AGENT_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# field FILE WHAT N: the Nth number after "load: WHAT" in FILE.
field() { awk -v w="$2" -v n="$3" '$1 == "load:" && $2 == w { print $(n + 3) }' "$1"; }
FDS0=$(fds)

# round N: both processes at once, their outputs in $W/root.N, $W/member.N.
round() {
	as_member lab_load -s "$SOCK" -t "$ROUND" -c 16 -v "$VMS" -w 30 >"$W/member.$1" 2>&1 &
	local m=$!
	lab_load -s "$SOCK" -t "$ROUND" -c 48 -v "$VMS" -w 50 -f "$FO" -i 4 -H 4 -n 2 >"$W/root.$1" 2>&1
	local rr=$?
	wait "$m"
	local rm=$?
	is "round $1: lab_load ran (root, member)" "0 0" "$rr $rm"
	grep '^bad:' "$W/root.$1" "$W/member.$1" | head -20 | sed 's/^/# /'
	is "round $1: every reply well-formed and as expected (root's clients)" 0 "$(field "$W/root.$1" bad 0)"
	is "round $1: every reply well-formed and as expected (the member's)" 0 "$(field "$W/member.$1" bad 0)"
	is "round $1: no point taken while a failover job held the VM" 0 "$(field "$W/root.$1" mixed 0)"
	check "round $1: failovers and reverts ran (one at least)" test "$(field "$W/root.$1" failovers 0)" -ge 1
	check "round $1: reads answered while a failover ran" test "$(field "$W/root.$1" reads-during-failover 0)" -ge 1
	check "round $1: the member's reads answered" test "$(field "$W/member.$1" reads 0)" -ge 1
	check "round $1: points accepted" test "$(field "$W/root.$1" points 2)" -ge 1
	BUSY=$((${BUSY:-0} + $(field "$W/root.$1" points 4) + $(field "$W/member.$1" points 4)))
	is "round $1: both clients that never read were dropped at the agent's cap" 2 "$(field "$W/root.$1" noread 2)"
	diag "round $1, root: $(grep '^load:' "$W/root.$1" | tr '\n' ';')"
	diag "round $1, member: $(grep '^load:' "$W/member.$1" | tr '\n' ';')"
	check "round $1: the agent runs and answers" dmrep --json vm list
	# Every connection of the round closed: the agent's descriptors as
	# before (it closes them at once, but it may be mid-reply).
	wait_until 30 test "$(fds)" -eq "$FDS0"
	is "round $1: the agent's descriptors as before the load" "$FDS0" "$(fds)"
}
round 1
RSS1=$(rss) HEAP1=$(heap)
round 2
RSS2=$(rss) HEAP2=$(heap)
check "points refused busy (32774) beside the others: the VMs were contended ($BUSY)" test "$BUSY" -ge 1
# Round 2's jobs, whose records the agent keeps (its last 1000).
JOBS2=$(($(field "$W/root.2" points 2) + $(field "$W/member.2" points 2) + 2 * $(field "$W/root.2" failovers 0)))
diag "the agent's RSS: $RSS1 KiB after round 1, $RSS2 KiB after round 2 ($JOBS2 jobs in it); its heap: $HEAP1, $HEAP2 KiB"
if [ "${LAB_SANITIZE:-0}" = 1 ]; then
	diag "not checked under ASan: the agent's memory flat from one round to the next"
else
	# 1 MiB of allocator noise and 8 KiB for each new job's record (kept,
	# as every job's); a leak of a kilobyte a request passes it.
	check "its heap flat from one round to the next (within 1 MiB and 8 KiB a job)" \
		test "${HEAP2:-999999}" -le $((${HEAP1:-0} + 1024 + 8 * JOBS2))
fi

# Every job ended (a point accepted at the end may still run: wait for it).
ended() { dmrep --json job list | jq -e 'all(.[]; .job_state >= 7)'; }
wait_until 120 ended
check "every job has ended" ended
check "none failed but by the load's own refusals" \
	sh -c "dmrep --socket '$SOCK' --json job list | jq -e 'all(.[]; .job_state == 7)'"
# One VM's jobs never overlap (second-resolution times: a next one starts
# in or after the second the previous one ended).
overlap=$(dmrep --json job list | jq -r 'group_by(.vm)[] | sort_by(.id) |
	[range(1; length) as $i | select(.[$i].started < .[$i - 1].finished) | "\(.[$i - 1].id)/\(.[$i].id)"] | .[]')
is "no two jobs of one VM overlap" "" "$overlap"
is "nothing suspended" 0 "$(dmsetup info 2>/dev/null | grep -c SUSPENDED)"
show=$(dmrep --json vm show "$FO")
is "$FO: replicating on its live volumes after the last revert" "replicating live" \
	"$(jq -r '.state + " " + ([.disks[].target] | unique | join(","))' <<<"$show")"
for v in a b c f; do
	expect_rc "vm remove $VM$v" 0 "$(dmrep --json vm remove "$VM$v")"
done
summary
