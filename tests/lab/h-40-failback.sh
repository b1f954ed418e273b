#!/bin/bash
# Two-host lab test: the primary lost, failover on the replica, failback
# without a full copy, and a planned failback (issue 15, items 5-7,
# "Tests").  lab1's power is not ours to cut, so lab2 starts as the
# primary of a 2-disk VM and lab1 is its replica; its first points travel
# by hand (`point send | ssh ... point receive`; h-30 tests the cycles
# themselves), the way back and the planned failback by cycles
# (`vm replicate --to`, the timer's first cycle and --now).
#   - a test failover on lab1 while a point arrives; a failover start and
#     revert on lab1 without commit (devices up, then gone);
#   - lab2 writes on (a point lab1 never gets) and its power is cut;
#   - on lab1, no hypervisor: `failover start` to the latest point, the
#     disks equal the last received point (sha256), the replica's hooks
#     ran with its own network settings; `failover commit`: a primary;
#   - lab2 powered on: its agent brings the VM back as it was (a primary,
#     its disks and its four points), and its stream to lab1 is refused
#     (32775: lab1 is the primary now); so is its replication cycle, and
#     its health says `critical` with lab1's reason;
#   - `vm demote` on lab2: refused without --force (its newer points),
#     then with it; lab1's first cycle back (`vm replicate --to`) is
#     incremental from the common point (by uuid): its bytes under 25% of
#     a disk; both hosts then hold the same data;
#   - a planned failback to lab2: lab1's writes stopped, the final point
#     sent by `vm replicate --now --wait`, failover and commit on lab2:
#     each disk on lab2 equals lab1's, block for block (sha256 of the whole
#     device); lab1 demoted by its acknowledged point (nothing to drop) and
#     lab2's first cycle, incremental from it, taken by lab1.
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_need jq
pair_setup

HOOKS=/tmp/dmrep-hooks$$
OUT=/tmp/dmrep-hooks$$.out
mkdir -p "$HOOKS"
chmod 0755 "$HOOKS"
# shellcheck disable=SC2016 # expanded by the teardown
lab_cleanup 'rm -rf "$HOOKS" "$OUT".*'
cat >"$HOOKS/10-record" <<HOOK
#!/bin/sh
env | grep '^DMREP_' | sort >"$OUT.\${DMREP_OPERATION}"
HOOK
chmod 0755 "$HOOKS/10-record"
export DMREPD_ARGS="--hook-dir $HOOKS"

AGENT_USED=1
SOCK=/run/dmrep-test$$/dmrepd.sock
STATE=$W/state
export DMREP_SOCKET=$SOCK
agent_start || { not_ok "dmrepd starts on lab1"; exit 1; }
ok "dmrepd starts on lab1 (the replica first)"
if peer_agent_start; then ok "dmrepd starts on lab2 (the primary first)"; else
	not_ok "dmrepd starts on lab2"
	exit 1
fi
prepare_pool 512M 16M "a pool on lab1"
expect_rc "a pool on lab2" 0 "$(peer_dmrep --json pool create --data "$PW/pool.data" --data-size 512M \
	--meta "$PW/pool.meta" --meta-size 16M)"
DISK=$((64 << 20))
expect_rc "a thin VM on lab2, two 64 MiB disks" 0 \
	"$(peer_dmrep --json vm add "$VM" --disk vda="$PW/vda.img:64M" --disk vdb="$PW/vdb.img:64M")"

# to1 NAME SEND-ARGS...: lab2's point send into lab1's receive (ssh).
to1() {
	local name=$1
	shift
	ssh lab2 dmrep --json point send "$VM" "$@" 2>"$W/$name.send" | dmrep --json point receive "$VM" >"$W/$name.recv"
	cat "$W/$name.recv"
}
sums1() { for d in vda vdb; do sha256sum <"/dev/dmrep/$VM/$d" | cut -d' ' -f1; done | tr '\n' ' '; }
sums2() { on_peer sh -c "for d in vda vdb; do sha256sum </dev/dmrep/$VM/\$d | cut -d' ' -f1; done | tr '\n' ' '"; }
sums1_test() { for d in vda vdb; do sha256sum <"/dev/dmrep/$VM-test/$d" | cut -d' ' -f1; done | tr '\n' ' '; }
sums2_test() { on_peer sh -c "for d in vda vdb; do sha256sum </dev/dmrep/$VM-test/\$d | cut -d' ' -f1; done | tr '\n' ' '"; }
# write2 / write1 MIB SEEK-MIB: random data on both disks of lab2's / lab1's VM.
write2() { peer_sh "for d in vda vdb; do dd if=/dev/urandom of=/dev/dmrep/$VM/\$d bs=1M seek=$2 count=$1 oflag=direct status=none; done"; }
write1() { for d in vda vdb; do dd if=/dev/urandom of="/dev/dmrep/$VM/$d" bs=1M seek="$2" count="$1" oflag=direct status=none; done; }
id1() { dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
id2() { peer_dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
last_uuid1() { dmrep --json point list "$VM" | jq -r '.[-1].uuid'; }
last_uuid2() { peer_dmrep --json point list "$VM" | jq -r '.[-1].uuid'; }
# cycles WHERE: WHERE's finished ReplicationCycle jobs of the VM (WHERE:
# dmrep or peer_dmrep), a count; last_cycle WHERE: the newest of them.
cycles() { "$1" --json job list | jq --arg vm "$VM" '[.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state >= 7)] | length'; }
last_cycle() {
	local id
	id=$("$1" --json job list | jq -r --arg vm "$VM" \
		'[.[] | select(.method == "ReplicationCycle" and .vm == $vm and .job_state >= 7)] | max_by(.id) | .id // empty')
	[ -n "$id" ] && "$1" --json job show "$id"
}
# replicate_to WHERE COMMAND: `vm replicate --to COMMAND` on WHERE with an
# interval long enough that only its first cycle (the timer's, at once)
# runs; returns when that cycle has finished, its job in $CYCLE.
cycle_after() { [ "$(cycles "$1")" -gt "$2" ]; }
replicate_to() {
	local n host=lab1
	[ "$1" = peer_dmrep ] && host=lab2
	n=$(cycles "$1")
	expect_rc "$host: vm replicate --to '$2'" 0 "$("$1" --json vm replicate "$VM" --to "$2" --interval 3600)"
	wait_until 300 cycle_after "$1" "$n"
	CYCLE=$(last_cycle "$1")
}
role_state() { jq -r '.role + " " + .state + " " + ([.disks[].target] | unique | join(","))'; }

# ---- replicated by hand: lab2 -> lab1 --------------------------------------------
write2 8 0
expect_rc "point 1 on lab2 (8 MiB on each disk)" 0 "$(peer_dmrep --json point create "$VM")"
expect_rc "its full stream to lab1" 0 "$(to1 full --point 1)"
write2 2 20
expect_rc "point 2 on lab2" 0 "$(peer_dmrep --json point create "$VM")"
expect_rc "the incremental 1 -> 2" 0 "$(to1 inc2 --point 2 --base 1)"
expect_rc "vm network on lab1's replica (per host)" 0 \
	"$(dmrep --json vm network "$VM" --mac 52:54:00:aa:bb:02 --address 10.7.7.7/24)"

# A test failover on lab1 while a point arrives.
out=$(dmrep --json failover start "$VM" --test --wait)
check "a test failover on lab1 (point 2)" job_ok "$out"
write2 2 30
expect_rc "point 3 on lab2" 0 "$(peer_dmrep --json point create "$VM")"
SUM3=$(sums2)
U3=$(last_uuid2)
expect_rc "the incremental 2 -> 3 arrives during the test failover" 0 "$(to1 inc3 --point 3 --base 2)"
check "stop-test" job_ok "$(dmrep --json failover stop-test "$VM" --wait)"
is "lab1 holds point 3 (its latest)" "$U3" "$(last_uuid1)"

# A failover on the replica, then revert, without commit.
out=$(dmrep --json failover start "$VM" --wait)
check "failover start on lab1 (no hypervisor)" job_ok "$out"
check "/dev/dmrep/$VM/vda and vdb exist" sh -c "test -b /dev/dmrep/$VM/vda && test -b /dev/dmrep/$VM/vdb"
is "they hold point 3 (sha256 of each disk, as lab2's)" "$SUM3" "$(sums1)"
check "failover revert on lab1" job_ok "$(dmrep --json failover revert "$VM" --wait)"
check "the devices are gone, a replica again" eval "test ! -e /dev/dmrep/$VM/vda && dmrep --json vm show $VM | jq -e '.role == \"replica\" and .state == \"replicating\"'"
rm -f "$OUT".*

# ---- lab2 writes on, then its power goes ----------------------------------------
write2 1 40
expect_rc "point 4 on lab2 (never sent)" 0 "$(peer_dmrep --json point create "$VM")"
SUM4=$(sums2)
U4=$(last_uuid2)
check "lab-power off lab2" peer_power_off

# ---- failover on lab1 -------------------------------------------------------------
t0=$SECONDS
out=$(dmrep --json failover start "$VM" --wait)
check "failover start on lab1 to its latest point, lab2 gone" job_ok "$out"
diag "in $((SECONDS - t0)) s; steps $(jq -c '[.steps[] | .name + " " + (.usec / 1000 | floor | tostring) + " ms"]' <<<"$out")"
is "lab1's disks are the last received point, lab2's point 3 (sha256)" "$SUM3" "$(sums1)"
check "lab1's failover hook ran" test -s "$OUT.failover"
check "with lab1's own network settings" grep -qxF "DMREP_NIC0_ADDRESSES=10.7.7.7/24" "$OUT.failover"
check "failover commit on lab1" job_ok "$(dmrep --json failover commit "$VM" --wait)"
show=$(dmrep --json vm show "$VM")
is "lab1: the VM is a primary, committed, on live disks" "primary committed live" "$(role_state <<<"$show")"
is "lab1 acknowledges point 3 as the base back" "$U3" "$(jq -r .replication.acknowledged <<<"$show")"
write1 4 48
expect_rc "lab1 takes a point of its own (4 MiB more on each disk)" 0 "$(dmrep --json point create "$VM")"
SUMP1=$(sums1)
UP1=$(last_uuid1)

# ---- lab2 back ---------------------------------------------------------------------
check "lab-power on lab2" peer_power_on
if peer_agent_start; then ok "lab2's agent starts again"; else not_ok "lab2's agent starts again"; fi
show=$(peer_dmrep --json vm show "$VM")
is "lab2 brings its VM back as it was: a primary on live disks" "primary replicating live" "$(role_state <<<"$show")"
is "with its four points, the newest point 4" "4 $U4" "$(peer_dmrep --json point list "$VM" | jq -r '"\(length) \(.[-1].uuid)"')"
is "and its disks as at point 4 (sha256)" "$SUM4" "$(sums2)"
out=$(to1 stale --point 4 --base 3)
expect_rc "lab2's stream to lab1 is refused: 32775" 32775 "$out"
diag "lab1 said: $(jq -r '.error // .error_description' <<<"$out")"
check "and says lab1 is the primary here" jq -e '(.error // .error_description // "") | test("primary here")' <<<"$out"
is "lab1's points unchanged by it" "$UP1" "$(last_uuid1)"
# Its replication cycles too (lab2 still takes itself for the primary):
# the first, at once, takes a point (lab2's fifth) and lab1 refuses it.
TO1="ssh lab1 dmrep --socket $SOCK --json point receive $VM"
replicate_to peer_dmrep "$TO1"
check "lab2's cycle to lab1 is refused: 32775" jq -e '.job_state == 10 and .error_code == 32775' <<<"$CYCLE"
rep=$(peer_dmrep --json vm show "$VM" | jq -c .replication)
is "lab2's health: critical" critical "$(jq -r .state <<<"$rep")"
check "with lab1's reason (the primary is there)" jq -e '.last_error | test("primary here")' <<<"$rep"
diag "lab2's health: $rep"
is "lab1's points unchanged by the cycle" "$UP1" "$(last_uuid1)"

# ---- demote lab2, replicate back -------------------------------------------------
P3=$(id2 "$U3")
out=$(peer_dmrep --json vm demote "$VM" --point "$P3")
expect_rc "vm demote on lab2 (common: point $P3, points 4 and 5 newer): refused 32775" 32775 "$out"
check "the reason counts the newer points" jq -e '.error | test("has 2 point")' <<<"$out"
diag "lab2 said: $(jq -r .error <<<"$out")"
check "still a primary on lab2" eval "ssh lab2 dmrep --json vm show $VM | jq -e '.role == \"primary\"'"
out=$(peer_dmrep --json vm demote "$VM" --point "$P3" --force)
expect_rc "vm demote --force on lab2" 0 "$out"
check "it dropped two points; the common one is point 3's uuid" jq -e --arg u "$U3" '.dropped == 2 and .uuid == $u' <<<"$out"
is "and lab2's replication settings with them" off "$(peer_dmrep --json vm show "$VM" | jq -r .replication.state)"
show=$(peer_dmrep --json vm show "$VM")
is "lab2: a replica, no disk" "replica replicating none" "$(role_state <<<"$show")"
check "lab2 has no /dev/dmrep/$VM/vda" on_peer test ! -e "/dev/dmrep/$VM/vda"
is "lab2's latest point is the common point" "$U3" "$(last_uuid2)"
# Reverse replication: lab1's first cycle back to lab2 (a point of its
# own, no write since UP1: the same data).
replicate_to dmrep "ssh lab2 dmrep --json point receive $VM"
check "lab1's first cycle back is acknowledged" jq -e '.job_state == 7 and (.acknowledged | type == "string")' <<<"$CYCLE"
is "... incremental from the common point (point 3's uuid), not a full copy" "$U3" "$(jq -r .base_uuid <<<"$CYCLE")"
bytes=$(jq -r .bytes <<<"$CYCLE")
diag "the reverse cycle's stream: $bytes bytes (4 MiB changed on each of two 64 MiB disks)"
check "its bytes are under 25% of a disk ($((DISK / 4)))" test "${bytes:-999999999999}" -lt $((DISK / 4))
UB=$(jq -r .acknowledged <<<"$CYCLE")
is "the cycle's point is lab1's newest" "$UB" "$(last_uuid1)"
is "lab2 holds it" "$UB" "$(last_uuid2)"
is "lab1's health: ok" ok "$(dmrep --json vm show "$VM" | jq -r .replication.state)"
out=$(peer_dmrep --json failover start "$VM" --test --wait)
check "a test failover of it on lab2" job_ok "$out"
is "both hosts hold the same data (sha256 of each disk)" "$SUMP1" "$(sums2_test)"
check "stop-test on lab2" job_ok "$(peer_dmrep --json failover stop-test "$VM" --wait)"

# ---- a planned failback to lab2 ---------------------------------------------------
write1 2 56
# The guest is shut down here (none runs in the lab): nothing writes from
# now on, so the final point is the last data.
out=$(dmrep --json vm replicate "$VM" --now --wait)
check "the final point sent by vm replicate --now --wait" job_ok "$out"
is "... incremental from the cycle before" "$UB" "$(jq -r .base_uuid <<<"$out")"
UP2=$(jq -r .acknowledged <<<"$out")
is "... its point is lab1's newest" "$UP2" "$(last_uuid1)"
is "... and lab2's" "$UP2" "$(last_uuid2)"
FINAL=$(sums1)
check "failover start on lab2" job_ok "$(peer_dmrep --json failover start "$VM" --wait)"
check "failover commit on lab2" job_ok "$(peer_dmrep --json failover commit "$VM" --wait)"
is "lab2: a primary again" "primary committed live" "$(peer_dmrep --json vm show "$VM" | role_state)"
is "zero loss: each disk on lab2 equals lab1's, block for block (sha256 of the whole device)" \
	"$FINAL" "$(sums2)"
for d in vda vdb; do
	is "$d: the same size on both hosts" "$(blockdev --getsize64 "/dev/dmrep/$VM/$d")" \
		"$(on_peer blockdev --getsize64 "/dev/dmrep/$VM/$d")"
done

# lab1's acknowledged point is the final one, the newest both hold: a
# demote by it drops nothing.
out=$(dmrep --json vm demote "$VM")
expect_rc "vm demote on lab1, by its acknowledged point" 0 "$out"
check "it dropped nothing; the common point is the final one" jq -e --arg u "$UP2" '.dropped == 0 and .uuid == $u' <<<"$out"
is "lab1: a replica" "replica replicating none" "$(dmrep --json vm show "$VM" | role_state)"
write2 1 8
replicate_to peer_dmrep "$TO1"
check "lab2's first cycle to lab1 is acknowledged" jq -e '.job_state == 7 and (.acknowledged | type == "string")' <<<"$CYCLE"
is "... incremental from the final point" "$UP2" "$(jq -r .base_uuid <<<"$CYCLE")"
is "lab1 holds it" "$(jq -r .acknowledged <<<"$CYCLE")" "$(last_uuid1)"

expect_rc "the VM removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
expect_rc "the VM removed on lab2" 0 "$(peer_dmrep --json vm remove "$VM")"
summary
