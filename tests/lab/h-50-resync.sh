#!/bin/bash
# Two-host lab test: resync and verify (issue 15 item 4; docs/replication.md
# "Resync and verify").  A thin VM with 2 disks (16 + 8 MiB of random data)
# on lab1, replicated to lab2 by --now cycles (a full one, an incremental).
# Then the two sides diverge: lab1's points are all removed (no common
# point left) and 4 of the 384 pool blocks (~1%) written; the next cycle
# fails and health says `resync-required`, --verify is refused (32775).
# `point receive VM --hashes` on lab2 answers the hash reply of its newest
# point.  `--resync --wait` sends only the 4 blocks that differ (its stream
# under a fifth of the full cycle's bytes), onto lab2's newest point; the
# new point on lab2 equals lab1's bit for bit (sha256 of both disks through
# a test failover on each host); health `ok`, and the next cycle is an
# incremental from the resync's point.  `--verify --wait` is clean on equal
# data; after one block of lab2's copy of the acknowledged point is
# overwritten under dmrep (a plain dm thin device over lab2's pool on that
# point's thin id, made and removed by the test), it fails and names
# exactly that block.
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_need jq
# lab1's agent (the primary) on the default socket, then lab2's.
pair_agent_setup
peer_agent_start || { not_ok "dmrepd starts on lab2 (the replica)"; exit 1; }
ok "dmrepd starts on lab2 (the replica)"
prepare_pool 256M 16M "a pool on lab1"
expect_rc "a pool on lab2" 0 "$(peer_dmrep --json pool create --data "$PW/pool.data" --data-size 256M \
	--meta "$PW/pool.meta" --meta-size 16M)"
expect_rc "a thin VM with 2 disks on lab1" 0 \
	"$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:8M")"
dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=1M count=16 oflag=direct status=none
dd if=/dev/urandom of="/dev/dmrep/$VM/vdb" bs=1M count=8 oflag=direct status=none
BLOCK=65536

TO="ssh lab2 dmrep --json point receive $VM"
health() { dmrep --json vm show "$VM" | jq -r .replication.state; }
id1() { dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
id2() { peer_dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
idle() {
	dmrep --json job list | jq -e --arg vm "$VM" \
		'[.[] | select(.vm == $vm and .job_state < 7)] | length == 0' >/dev/null
}
# run ARGS...: vm replicate VM ARGS (a job, --wait), retried while a
# timer's cycle holds the VM; the finished job in $LAST.
run() {
	local out
	for _ in 1 2 3; do
		wait_until 300 idle
		out=$(dmrep --json vm replicate "$VM" "$@" --wait)
		[ "$(jq -r .return <<<"$out" 2>/dev/null)" = 32774 ] || break
	done
	LAST=$out
}
# sums HOST ID: sha256 of vda and vdb of the host's point ID (pair.sh).
sums() { point_sums "$@"; }
# same UUID DESC: the point of that uuid is the same on both hosts.
same() {
	local s1 s2
	s1=$(sums 1 "$(id1 "$1")" </dev/null)
	s2=$(sums 2 "$(id2 "$1")" </dev/null)
	if [[ $s1 =~ ^[0-9a-f]{64}\ [0-9a-f]{64}\ $ ]] && [ "$s1" = "$s2" ]; then ok "$2"; else
		not_ok "$2 (lab1 '$s1', lab2 '$s2')"
	fi
}

# ---- two cycles: a full one, an incremental ------------------------------------
expect_rc "vm replicate --to '$TO'" 0 "$(dmrep --json vm replicate "$VM" --to "$TO" --interval 600)"
# The timer runs the first cycle at once (a full one), then none for 600 s
# (each --now cycle restarts the interval).
acked() { dmrep --json vm show "$VM" | jq -e '.replication.acknowledged != null' >/dev/null; }
wait_until 300 acked
LAST=$(dmrep --json job list | jq -c --arg vm "$VM" '[.[] | select(.method == "ReplicationCycle" and .vm == $vm)] | first')
if job_ok "$LAST"; then ok "the first cycle (the timer's, full) is acknowledged"; else not_ok "the first cycle (${LAST:0:400})"; fi
FULL=$(jq -r '.bytes // 0' <<<"$LAST")
diag "a full cycle: $FULL bytes"
dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=64K count=1 seek=200 oflag=direct conv=notrunc status=none
run --now
if job_ok "$LAST" && jq -e '.base_uuid | type == "string"' <<<"$LAST" >/dev/null; then
	ok "the second cycle (incremental) is acknowledged"
else
	not_ok "the second cycle (${LAST:0:400})"
fi
NEWEST2=$(jq -r .acknowledged <<<"$LAST")

# ---- the hash reply by hand -------------------------------------------------------
out=$(on_peer dmrep --json point receive "$VM" --hashes)
check "point receive --hashes on lab2: its newest point's hashes, then the answer" \
	jq -e --arg u "$NEWEST2" 'select(has("return")) | .return == 0 and .hashes_of == $u and .bytes > 0' \
	<<<"$(tail -n 1 <<<"$out")"
is "... a head line and one line per disk before it" 3 "$(($(wc -l <<<"$out") - 1))"
check "... 256 hashes for vda" jq -e 'select(.disk == 0) | (.xxh3 | length) == 256 * 16' <<<"$(sed -n 2p <<<"$out")"

# ---- no common point left --------------------------------------------------------
for p in $(dmrep --json point list "$VM" | jq -r '.[].id'); do
	dmrep --json point remove "$VM" "$p" >/dev/null
done
is "every point on lab1 removed" 0 "$(dmrep --json point list "$VM" | jq length)"
# 4 blocks of 384 (~1%) change.
for b in 3 100; do
	dd if=/dev/urandom of="/dev/dmrep/$VM/vda" bs=64K count=1 seek=$b oflag=direct conv=notrunc status=none
done
for b in 7 50; do
	dd if=/dev/urandom of="/dev/dmrep/$VM/vdb" bs=64K count=1 seek=$b oflag=direct conv=notrunc status=none
done
run --now
check "the next cycle fails with 32775" jq -e '.job_state == 10 and .error_code == 32775' <<<"$LAST"
is "health resync-required" resync-required "$(health)"
run --verify
check "--verify without a common point: refused (32775)" jq -e '.method == "VerifyReplica" and .error_code == 32775' <<<"$LAST"

# ---- resync ------------------------------------------------------------------------
run --resync
if job_ok "$LAST" && jq -e '.method == "Resynchronize" and (.acknowledged | type == "string")' <<<"$LAST" >/dev/null; then
	ok "--resync --wait: acknowledged (job $(jq -r .id <<<"$LAST"))"
else
	not_ok "--resync --wait (${LAST:0:800})"
fi
RS=$(jq -r '.acknowledged // empty' <<<"$LAST")
RSB=$(jq -r '.bytes // 0' <<<"$LAST")
diag "resync: $RSB bytes against a full cycle's $FULL ($(jq -c '.steps' <<<"$LAST"))"
is "... onto lab2's newest point" "$NEWEST2" "$(jq -r .base_uuid <<<"$LAST")"
is "... 4 blocks differed" 4 "$(jq -r .blocks_differing <<<"$LAST")"
check "... its stream under a fifth of the full cycle's ($RSB < $FULL / 5)" test $((RSB * 5)) -lt "$FULL"
check "... lab2 holds the new point, with lab1's uuid" test -n "$(id2 "$RS")"
is "health ok" ok "$(health)"
same "$RS" "the resync's point equals lab2's copy bit for bit (sha256 of vda and vdb)"
run --now
if job_ok "$LAST" && jq -e --arg u "$RS" '.base_uuid == $u' <<<"$LAST" >/dev/null; then
	ok "the next cycle is an incremental from the resync's point"
else
	not_ok "the next cycle is an incremental from the resync's point (${LAST:0:400})"
fi
ACK=$(jq -r '.acknowledged // empty' <<<"$LAST")

# ---- verify -----------------------------------------------------------------------
run --verify
if job_ok "$LAST" && jq -e --arg u "$ACK" '.method == "VerifyReplica" and .uuid == $u and .blocks_differing == 0' <<<"$LAST" >/dev/null; then
	ok "--verify --wait on equal data: clean"
else
	not_ok "--verify --wait on equal data (${LAST:0:600})"
fi
# One block (10) of vda of lab2's copy of the acknowledged point, overwritten
# through a plain dm thin device on its thin id (not dmrep's: removed here).
tid=$(on_peer jq -r --arg u "$ACK" '.points[] | select(.uuid == $u) | .thin_ids[0]' "$PW/state/vms/$VM.json")
peer_cleanup "dmsetup remove --retry ${T}corrupt 2>/dev/null || :"
# udev probes the new device: settled before the remove, which retries.
on_peer sh -c "dmsetup create ${T}corrupt --table '0 $((16 * 2048)) thin /dev/mapper/dmrep-pool $tid' &&
	dd if=/dev/urandom of=/dev/mapper/${T}corrupt bs=64K count=1 seek=10 oflag=direct conv=notrunc status=none &&
	udevadm settle && dmsetup remove --retry ${T}corrupt"
check "one block of lab2's copy overwritten (thin id $tid)" test -n "$tid"
run --verify
check "--verify --wait: fails (32768)" jq -e '.job_state == 10 and .error_code == 32768' <<<"$LAST"
is "... exactly one block differs" 1 "$(jq -r .blocks_differing <<<"$LAST")"
is "... vda's block 10" "vda 1 $((10 * BLOCK))" \
	"$(jq -r '.disks[] | select(.differing > 0) | "\(.name) \(.differing) \(.first_offsets | join(","))"' <<<"$LAST")"
check "... nothing changed: health ok" test "$(health)" = ok

expect_rc "--off" 0 "$(dmrep --json vm replicate "$VM" --off)"
expect_rc "the replica VM removed on lab2" 0 "$(peer_dmrep --json vm remove "$VM")"
expect_rc "the VM removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
summary
