#!/bin/bash
# Two-host lab test: continuous replication (issue 15, "Tests", its first,
# second and fourth items; docs/replication.md).  A thin VM with 2 disks on
# lab1, replicated to lab2 by
#   dmrep vm replicate VM --to 'ssh lab2 dmrep --json point receive VM' --interval 30
# while a writer (dd in a loop) writes to both disks.  Cycles come from the
# interval timer (two at least, waited for) and from --now --wait.  Then,
# each on a cycle slowed by --bandwidth so that it is mid-stream when hit
# (its job's percent_complete above 0): lab2's agent SIGKILLed, lab1's agent
# SIGKILLed, the cycle's ssh (COMMAND's process group) killed.  After each:
# health `warning` with a last_error, no point on lab2 that lab1 did not
# acknowledge, no metadata snapshot held and nothing suspended on either
# host; the next cycle brings health back to `ok`.  --bandwidth: a capped
# cycle's stream takes at least its bytes over the rate.  Settings and
# health survive a restart of both agents.  Every acknowledged point equals
# lab2's copy bit for bit (sha256 of both disks through a test failover on
# each host).  Retention with --keep-last 1 keeps the acknowledged point (a
# point taken after it is newer) and the next cycle is an incremental from
# it.  A lost acknowledgement (a second VM whose COMMAND drops the
# receiver's answer once): the next cycle goes from the point lab2 holds
# and is acknowledged.  Refusals: --interval 29 (32773), --resync / --verify before --to (32775), a
# replica VM (32775), --now on a VM that does not replicate (32775).
set -u
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb"
lab_need jq
pair_setup

AGENT_USED=1
SOCK=/run/dmrep-test$$/dmrepd.sock
STATE=$W/state
export DMREP_SOCKET=$SOCK
agent_start || { not_ok "dmrepd starts on lab1"; exit 1; }
ok "dmrepd starts on lab1 (the primary)"
if peer_agent_start; then ok "dmrepd starts on lab2 (the replica)"; else
	not_ok "dmrepd starts on lab2"
	exit 1
fi
prepare_pool 512M 16M "a pool on lab1"
out=$(peer_dmrep --json pool create --data "$PW/pool.data" --data-size 512M --meta "$PW/pool.meta" --meta-size 16M)
expect_rc "a pool on lab2" 0 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:8M")
expect_rc "a thin VM with 2 disks on lab1" 0 "$out"
put_all a

TO="ssh lab2 dmrep --json point receive $VM"
rep() { dmrep --json vm show "$VM" | jq -c .replication; }
rep2() { peer_dmrep --json vm show "$VM" | jq -c .replication; }
health() { dmrep --json vm show "$VM" | jq -r .replication.state; }
uuids2() { peer_dmrep --json point list "$VM" | jq -c '[.[].uuid]'; }
id1() { dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
id2() { peer_dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
held1() { dmsetup status dmrep-pool | awk '{ print $7 }'; }
held2() { on_peer dmsetup status dmrep-pool | awk '{ print $7 }'; }
susp1() { dmsetup info 2>/dev/null | grep -c SUSPENDED; }
susp2() { on_peer sh -c 'dmsetup info 2>/dev/null | grep -c SUSPENDED'; }
# The uuids lab1 acknowledged, one a line, in $W/acked: every finished
# cycle's (the jobs survive the agent's restarts).
acked_all() {
	dmrep --json job list | jq -r --arg vm "$VM" \
		'.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state == 7) | .acknowledged' |
		sort -u >"$W/acked"
}
# idle: no cycle of the VM runs.
idle() {
	dmrep --json job list | jq -e --arg vm "$VM" \
		'[.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state < 7)] | length == 0'
}
# cycle DESC: one cycle by --now --wait, which must be acknowledged (a
# timer's cycle that holds the VM first is waited for).
cycle() {
	local out
	for _ in 1 2 3; do
		wait_until 300 idle
		out=$(dmrep --json vm replicate "$VM" --now --wait)
		[ "$(jq -r .return <<<"$out" 2>/dev/null)" = 32774 ] || break
	done
	if job_ok "$out" && jq -e '.method == "ReplicationCycle" and (.acknowledged | type == "string")' <<<"$out" >/dev/null; then
		ok "$1: acknowledged (job $(jq -r .id <<<"$out"), $(jq -r .bytes <<<"$out") bytes)"
		LAST=$out
	else
		not_ok "$1: acknowledged (${out:0:600})"
		LAST=
	fi
}
# nothing_left DESC: no point on lab2 that lab1 did not acknowledge, no
# metadata snapshot held, nothing suspended, on either host.
nothing_left() {
	local extra
	acked_all
	extra=$(uuids2 | jq -r '.[]' | grep -vxF -f "$W/acked")
	is "$1: every point on lab2 is one lab1 acknowledged (no partial point)" "" "$extra"
	is "$1: no metadata snapshot held on lab1 or lab2" "- -" "$(held1) $(held2)"
	is "$1: no device suspended on lab1 or lab2" "0 0" "$(susp1) $(susp2)"
}
# writer: dd in a loop, 16 KiB at a random place of each disk, twice a
# second (a steady stream of changes, not so many that every incremental
# is the whole disk).
writer() {
	while :; do
		dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=16K count=1 seek=$((RANDOM % 1024)) oflag=direct conv=notrunc status=none
		dd if=/dev/urandom of="/dev/dmrep/$VM/vdb" bs=16K count=1 seek=$((RANDOM % 512)) oflag=direct conv=notrunc status=none
		sleep 0.5
	done
}
# running_cycle: the job id of the VM's running cycle, once its stream has
# begun (percent_complete above 0).
running_cycle() {
	dmrep --json job list | jq -e -r --arg vm "$VM" \
		'[.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state == 4 and .percent_complete > 0)] | last | .id'
}
# fresh MIB: MIB of new data on vda, so the next stream is long enough at
# the capped rate to be hit mid-way.
fresh() { dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=1M count="$1" oflag=direct conv=notrunc status=none; }

# ---- refusals --------------------------------------------------------------------
expect_rc "--interval 29 is refused" 32773 "$(dmrep --json vm replicate "$VM" --to "$TO" --interval 29)"
expect_rc "--now before --to: 32775" 32775 "$(dmrep --json vm replicate "$VM" --now)"
expect_rc "--resync before --to: 32775" 32775 "$(dmrep --json vm replicate "$VM" --resync)"
expect_rc "--verify before --to: 32775" 32775 "$(dmrep --json vm replicate "$VM" --verify)"

# ---- cycles from the timer, while the writer writes -------------------------------
expect_rc "vm replicate --to '$TO' --interval 30" 0 \
	"$(dmrep --json vm replicate "$VM" --to "$TO" --interval 30)"
check "... vm show: interval 30, the command" jq -e --arg to "$TO" '.interval == 30 and .to == $to' <<<"$(rep)"
writer &
WRITER=$!
# The timer starts the first cycle at once (never attempted), then one
# every 30 s: two acknowledged within 120 s (the second is the timer's own,
# 30 s after the first; a third would only cost the lab 30 s more).
got=0
for _ in $(seq 120); do
	got=$(dmrep --json job list | jq --arg vm "$VM" '[.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state == 7)] | length')
	[ "$got" -ge 2 ] && break
	sleep 1
done
check "two cycles from the interval timer acknowledged within 120 s ($got)" test "$got" -ge 2
# From here cycles are driven by --now; a long interval keeps the timer
# out of the way.
expect_rc "--interval 600" 0 "$(dmrep --json vm replicate "$VM" --interval 600)"
check "... the timer's cycle in flight ends" wait_until 300 idle
first=$(dmrep --json job list | jq -c --arg vm "$VM" '[.[] | select(.method == "ReplicationCycle" and .vm == $vm)] | first')
check "... the first was a full stream (no base), the later ones incremental" \
	eval "dmrep --json job list | jq -e --arg vm '$VM' '[.[] | select(.method == \"ReplicationCycle\" and .vm == \$vm and .job_state == 7)] | (.[0] | has(\"base_uuid\") | not) and (.[1:] | all(has(\"base_uuid\")))'"
diag "first cycle: $(jq -c '{id, steps, bytes, exit_status}' <<<"$first")"
r=$(rep)
diag "replication: $r"
# Two intervals of the timer's 30 s (the interval is 600 now, the lag is
# what the timer's cycles left).
check "health ok, lag at most two intervals of 30 s" jq -e '.state == "ok" and .lag_seconds != null and .lag_seconds <= 60' <<<"$r"
check "... bytes_sent counted, last_success set, no error" \
	jq -e '.bytes_sent > 0 and (.last_success | type == "string") and .last_error == ""' <<<"$r"
check "lab2's VM is a replica, with a last_received time" \
	jq -e '.role == "replica" and (.replication.last_received | type == "string")' <<<"$(peer_dmrep --json vm show "$VM")"
expect_rc "vm replicate on the replica VM: 32775" 32775 \
	"$(peer_dmrep --json vm replicate "$VM" --to "ssh lab1 true")"
nothing_left "after the timer's cycles"
cycle "a cycle by --now --wait"
cycle "another"

# ---- --bandwidth ------------------------------------------------------------------
expect_rc "--bandwidth 256K" 0 "$(dmrep --json vm replicate "$VM" --bandwidth 256K)"
fresh 1
cycle "a cycle capped at 256 KiB/s"
if [ -n "$LAST" ]; then
	b=$(jq .bytes <<<"$LAST")
	us=$(jq '[.steps[] | select(.name == "stream") | .usec] | add' <<<"$LAST")
	# One second's worth may go at once (the bucket's depth).
	min=$(((b - 262144) * 1000000 / 262144))
	diag "capped cycle: $b bytes in $us us (at least $min)"
	check "... its stream took at least its bytes over the rate" test "$us" -ge "$min"
fi
expect_rc "--bandwidth 0 (no cap)" 0 "$(dmrep --json vm replicate "$VM" --bandwidth 0)"

# ---- faults mid-cycle ----------------------------------------------------------------
# start_slow: 4 MiB fresh, a --now cycle started at 128 KiB/s (32 s or
# more of stream, time enough to find and hit it however slow the lab; a
# hit cycle ends at once), the cap lifted again for the cycles after it (a
# cycle reads it when it starts); once its stream runs (percent above 0).
start_slow() {
	fresh 4
	wait_until 300 idle
	expect_rc "$1: --bandwidth 128K" 0 "$(dmrep --json vm replicate "$VM" --bandwidth 128K)"
	out=$(dmrep --json vm replicate "$VM" --now)
	expect_rc "$1: a capped cycle starts" 4096 "$out"
	CJOB=$(jq -r .job <<<"$out")
	expect_rc "$1: --bandwidth 0 for the next ones" 0 "$(dmrep --json vm replicate "$VM" --bandwidth 0)"
	wait_until 120 running_cycle
	check "$1: the cycle is mid-stream (percent above 0)" running_cycle
}
# recovers DESC: health warning with a reason, nothing left, then ok after
# a cycle.
recovers() {
	local r
	r=$(rep)
	diag "$1: $r"
	check "$1: health warning, with a last_error" jq -e '.state == "warning" and .failures >= 1 and (.last_error | length > 0)' <<<"$r"
	nothing_left "$1"
	cycle "$1: the next cycle"
	is "$1: health ok again" ok "$(health)"
}

# lab2's agent killed mid-cycle.
start_slow "lab2's agent killed"
peer_agent_stop KILL
out=$(dmrep --json job wait "$CJOB" --timeout 300)
check "lab2's agent killed: the cycle fails" jq -e '.job_state == 10 and .error_code != 0' <<<"$out"
diag "lab2's agent killed: $(jq -c '{error_code, error_description, exit_status, stderr}' <<<"$out" | head -c 600)"
if peer_agent_start; then ok "lab2's agent starts again"; else not_ok "lab2's agent starts again"; fi
recovers "lab2's agent killed"

# lab1's agent killed mid-cycle (its COMMAND is left to end on its own: the
# stream stops short, lab2 refuses it).
start_slow "lab1's agent killed"
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
# Its orphaned COMMAND ends once lab2 has refused the short stream (a
# minute at most; wait_until counts tries, and a pgrep is slow under TCG).
for _ in $(seq 60); do
	pgrep -f "^ssh lab2 dmrep --json point receive $VM" >/dev/null || break
	sleep 1
done
agent_start || not_ok "lab1's agent starts again"
check "lab1's agent killed: the restarted agent counts the cycle failed" \
	grep -q "cycle was interrupted" "$W/dmrepd.log"
recovers "lab1's agent killed"

# The ssh killed mid-stream (COMMAND's process group).
start_slow "the ssh killed"
pg=$(pgrep -f "^ssh lab2 dmrep --json point receive $VM" | head -n1)
if [ -n "$pg" ]; then
	kill -TERM "$pg"
	ok "the ssh killed: the cycle's ssh found and killed ($pg)"
else
	not_ok "the ssh killed: the cycle's ssh found"
fi
out=$(dmrep --json job wait "$CJOB" --timeout 300)
check "the ssh killed: the cycle fails, COMMAND's stderr kept in the job" \
	jq -e '.job_state == 10 and (.stderr | type == "string") and (.exit_status != 0)' <<<"$out"
diag "the ssh killed: $(jq -c '{error_code, error_description, exit_status}' <<<"$out" | head -c 400)"
recovers "the ssh killed"

# ---- settings and health across restarts -------------------------------------------
kill "$WRITER"
wait "$WRITER" 2>/dev/null
cycle "a cycle after the writer stopped"
expect_rc "--pause" 0 "$(dmrep --json vm replicate "$VM" --pause)"
is "health paused" paused "$(health)"
expect_rc "--resume" 0 "$(dmrep --json vm replicate "$VM" --resume)"
before=$(rep | jq -c '{state, interval, to, last_success, bytes_sent, acknowledged}')
before2=$(rep2 | jq -c '{last_received}')
agent_restart
peer_agent_stop
peer_agent_start || not_ok "lab2's agent starts again"
is "lab1's settings and health survive its agent's restart" "$before" "$(rep | jq -c '{state, interval, to, last_success, bytes_sent, acknowledged}')"
is "lab2's last_received survives its agent's restart" "$before2" "$(rep2 | jq -c '{last_received}')"
cycle "a cycle after both restarts"

# ---- every acknowledged point, bit for bit ---------------------------------------------
expect_rc "--pause for the checks" 0 "$(dmrep --json vm replicate "$VM" --pause)"
# sums HOST ID: sha256 of vda and vdb of the host's point ID (pair.sh).
sums() { point_sums "$@"; }
n=0
bad=0
acked_all
# The list on fd 3: the ssh under id2 and sums reads stdin.
while read -r u <&3; do
	[ -n "$u" ] || continue
	p1=$(id1 "$u") p2=$(id2 "$u")
	# Both hosts at once.
	sums 1 "$p1" </dev/null >"$W/s1" &
	s2=$(sums 2 "$p2" </dev/null)
	wait $!
	s1=$(cat "$W/s1")
	n=$((n + 1))
	# Two sha256 sums each, or it is no comparison.
	if [ -z "$p1" ] || [ -z "$p2" ] || [ "$s1" != "$s2" ] ||
		! [[ $s1 =~ ^[0-9a-f]{64}\ [0-9a-f]{64}\ $ ]]; then
		bad=$((bad + 1))
		diag "point $u: lab1 $p1 '$s1', lab2 $p2 '$s2'"
	fi
done 3<"$W/acked"
check "at least 5 acknowledged cycles ($n)" test "$n" -ge 5
is "every acknowledged point equals lab2's copy bit for bit (sha256 of vda and vdb, $n points)" 0 "$bad"

# ---- retention keeps the acknowledged point -----------------------------------------------
acked=$(rep | jq -r .acknowledged)
expect_rc "a point taken after the last acknowledged one" 0 "$(dmrep --json point create "$VM" --label after)"
expect_rc "vm retention --keep-last 1" 0 "$(dmrep --json vm retention "$VM" --keep-last 1)"
list=$(dmrep --json point list "$VM")
check "... the acknowledged point is kept" jq -e --arg u "$acked" 'any(.[]; .uuid == $u)' <<<"$list"
is "... with the newest: two points left" 2 "$(jq length <<<"$list")"
expect_rc "--resume" 0 "$(dmrep --json vm replicate "$VM" --resume)"
cycle "the cycle after retention"
check "... an incremental from the acknowledged point" jq -e --arg u "$acked" '.base_uuid == $u' <<<"${LAST:-null}"

# ---- a lost acknowledgement ---------------------------------------------------------
# A second VM whose COMMAND drops the receiver's answer while $W/lose
# exists (and exits 1): lab2 then holds a point lab1 never saw
# acknowledged.  The next cycle tries that point as its base and is
# acknowledged: no refusal, no critical.
V2=${VM}l
TO2="ssh lab2 dmrep --json point receive $V2 | (if [ -e $W/lose ]; then cat >/dev/null; exit 1; else cat; fi)"
expect_rc "a second VM, one disk" 0 "$(dmrep --json vm add "$V2" --disk vda="$W/l.img:4M")"
expect_rc "... replicated by a COMMAND that can lose the answer" 0 \
	"$(dmrep --json vm replicate "$V2" --to "$TO2" --interval 600)"
wait_until 120 eval "dmrep --json vm show '$V2' | jq -e '.replication.acknowledged != null'"
check "... its first cycle (the timer's) acknowledged" eval "dmrep --json vm show '$V2' | jq -e '.replication.acknowledged != null'"
touch "$W/lose"
out=$(dmrep --json vm replicate "$V2" --now --wait)
check "the answer lost: the cycle fails" jq -e '.job_state == 10 and .exit_status == 1' <<<"$out"
lost=$(jq -r .uuid <<<"$out")
on_peer dmrep --json point list "$V2" | jq -e --arg u "$lost" 'any(.[]; .uuid == $u)' >/dev/null &&
	ok "... lab2 holds the point sent ($lost)" || not_ok "... lab2 holds the point sent ($lost)"
rm -f "$W/lose"
out=$(dmrep --json vm replicate "$V2" --now --wait)
if job_ok "$out" && jq -e --arg u "$lost" '.base_uuid == $u and .base_unacknowledged == true' <<<"$out" >/dev/null; then
	ok "the next cycle goes from the point whose answer was lost, and is acknowledged"
else
	not_ok "the next cycle goes from the point whose answer was lost (${out:0:500})"
fi
is "... health ok" ok "$(dmrep --json vm show "$V2" | jq -r .replication.state)"
out=$(dmrep --json vm replicate "$V2" --now --wait)
check "... and the one after from the acknowledged point" jq -e '.job_state == 7 and (has("base_unacknowledged") | not)' <<<"$out"
expect_rc "the second VM's replication off" 0 "$(dmrep --json vm replicate "$V2" --off)"
expect_rc "... its replica removed on lab2" 0 "$(peer_dmrep --json vm remove "$V2")"
expect_rc "... and it on lab1" 0 "$(dmrep --json vm remove "$V2")"

# ---- off ---------------------------------------------------------------------------
expect_rc "--off" 0 "$(dmrep --json vm replicate "$VM" --off)"
check "health off, nothing acknowledged any more" jq -e '.state == "off" and .acknowledged == null' <<<"$(rep)"
nothing_left "at the end"
grep -E 'replication health' "$W/dmrepd.log" | sed 's/^/# log: /' | tail -n 12
check "the health changes were logged" grep -q 'replication health warning' "$W/dmrepd.log"
expect_rc "the replica VM removed on lab2" 0 "$(peer_dmrep --json vm remove "$VM")"
expect_rc "the VM removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
summary
