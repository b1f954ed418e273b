#!/bin/bash
# Two-host lab test: the primary powered off in the middle of a stream
# (issue 14, "Tests").  lab1 runs the test and its power is not ours to
# cut, so here lab2 is the primary and lab1 the replica: a full send of
# point 1 first, then 64 MiB more written on lab2 and the incremental 1 -> 2
#   ssh lab2 dmrep point send VM --base 1 | dmrep --json point receive VM
# held by lab2's agent after its first data chunk (DMREP_TEST_HOLD_AT=
# send:data: mid-stream whatever the lab's speed) and lab2's power cut
# there (lab-power off).  The replica is unchanged (its point list, no
# DMREP- device left or added, no suspended one, no metadata snapshot held),
# its agent healthy; after lab-power on, lab2's agent starts again on its
# state on the scratch disk, the incremental goes through, and so does a
# later full send (the replica VM removed first: a full stream into a
# replica with points is refused), both checked against lab2's disk.
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_need jq
pair_setup

AGENT_USED=1
SOCK=/run/dmrep-test$$/dmrepd.sock
STATE=$W/state
export DMREP_SOCKET=$SOCK
agent_start || { not_ok "dmrepd starts on lab1"; exit 1; }
ok "dmrepd starts on lab1 (the replica)"
if peer_agent_start DMREP_TEST_HOLD_AT=send:data "DMREP_TEST_HOLD_FILE=$PW/hold"; then
	ok "dmrepd starts on lab2 (the primary), with a hold in its sends' data"
else
	not_ok "dmrepd starts on lab2"
	exit 1
fi
prepare_pool 512M 16M "a pool on lab1"
out=$(peer_dmrep --json pool create --data "$PW/pool.data" --data-size 512M --meta "$PW/pool.meta" --meta-size 16M)
expect_rc "a pool on lab2" 0 "$out"
out=$(peer_dmrep --json vm add "$VM" --disk vda="$PW/vda.img:128M")
expect_rc "a thin VM on lab2, one 128 MiB disk" 0 "$out"

# recv NAME SEND-ARGS...: lab2's point send, through ssh, into lab1's
# receive; the stream kept in $W/NAME (tee), lab1's answer in $W/NAME.recv.
recv() {
	local name=$1
	shift
	ssh lab2 dmrep --json point send "$VM" "$@" 2>"$W/$name.send" | tee "$W/$name" |
		dmrep --json point receive "$VM" >"$W/$name.recv"
}
uuids1() { dmrep --json point list "$VM" | jq -c '[.[].uuid]'; }
uuid2() { peer_dmrep --json point list "$VM" | jq -r --argjson p "$1" '.[] | select(.id == $p) | .uuid'; }
dmrep_devs() { dmsetup info -c --noheadings -o name,uuid 2>/dev/null | awk '$NF ~ /^DMREP-/ { print $1 }' | sort | tr '\n' ' '; }
held() { dmsetup status dmrep-pool | awk '{ print $7 }'; }
# sum1 POINT: the sha256 of lab1's point through a test failover.
sum1() {
	local out s
	out=$(dmrep --json failover start "$VM" --test --point "$1" --wait)
	job_ok "$out" || { echo "test failover: ${out:0:200}"; return 1; }
	s=$(sha256sum <"/dev/dmrep/$VM-test/vda" | cut -d' ' -f1)
	out=$(dmrep --json failover stop-test "$VM" --wait)
	job_ok "$out" || { echo "stop-test: ${out:0:200}"; return 1; }
	echo "$s"
}
# has1 POINT HEX: lab1's point reads HEX at blocks 8..11 (dev.sh's has).
has1() {
	local out rc=0
	out=$(dmrep --json failover start "$VM" --test --point "$1" --wait)
	job_ok "$out" || { diag "test failover: ${out:0:200}"; return 1; }
	has "/dev/dmrep/$VM-test/vda" "$2" || rc=1
	job_ok "$(dmrep --json failover stop-test "$VM" --wait)" || rc=1
	return $rc
}

peer_sh "put /dev/dmrep/$VM/vda a0"
expect_rc "point 1 on lab2" 0 "$(peer_dmrep --json point create "$VM")"
recv full1 --point 1
expect_rc "the full send of point 1 to lab1" 0 "$(cat "$W/full1.recv")"
U1=$(uuid2 1)
is "lab1 has it, a replica" "[\"$U1\"]" "$(uuids1)"

# 64 MiB that do not compress, and the pattern b0.
peer_sh "dd if=/dev/urandom of=/dev/dmrep/$VM/vda bs=1M seek=16 count=64 oflag=direct status=none && put /dev/dmrep/$VM/vda b0"
expect_rc "point 2 on lab2 (64 MiB more)" 0 "$(peer_dmrep --json point create "$VM")"
U2=$(uuid2 2)
SUM2=$(on_peer sh -c "sha256sum </dev/dmrep/$VM/vda | cut -d' ' -f1")
DEVS=$(dmrep_devs)
p1=$(dmrep --json point list "$VM" | jq -r '.[0].id')

# ---- the power cut, mid-stream ----------------------------------------------
peer_sh 'touch "$W/hold"'
recv cut --point 2 --base 1 &
RPID=$!
if wait_until 120 peer_sh 'grep -q "holding send:data" "$W/dmrepd.log"'; then
	ok "lab2's send is held after its first data chunk"
else
	not_ok "lab2's send is held after its first data chunk"
fi
# The first chunk (a pool block) through ssh, as far as it gets in 30 s.
wait_until 30 sh -c "test \$(stat -c %s '$W/cut') -ge 65536" || true
got=$(wc -c <"$W/cut")
diag "lab1 had $got bytes of the stream when lab2's power went"
check "lab1's receive had part of the stream" test "$got" -gt 0
check "lab-power off lab2 (mid-stream)" peer_power_off
t0=$SECONDS
for _ in $(seq 600); do kill -0 "$RPID" 2>/dev/null || break; lab_nap 0.1; done
if kill -0 "$RPID" 2>/dev/null; then
	not_ok "the receive on lab1 ends once lab2 is gone (within 60 s)"
	kill "$RPID" 2>/dev/null
else
	ok "the receive on lab1 ends once lab2 is gone ($((SECONDS - t0)) s)"
fi
wait "$RPID" 2>/dev/null
out=$(cat "$W/cut.recv")
diag "lab1's receive said: ${out:0:300}"
expect_rc "it refused the cut stream: 32773" 32773 "$out"
is "lab1's point list is unchanged" "[\"$U1\"]" "$(uuids1)"
is "no DMREP- device left or added on lab1" "$DEVS" "$(dmrep_devs)"
check "none suspended" no_suspended_or_inactive
is "no metadata snapshot held on lab1" - "$(held)"
check "lab1's agent answers (vm list)" eval "dmrep --json vm list | jq -e 'map(.name) | index(\"$VM\")'"
check "its receive job failed" sh -c \
	"dmrep --json job list | jq -e 'map(select(.method == \"ReceiveReplicationPoint\")) | max_by(.id) | .job_state >= 7 and .error_code != 0'"
check "lab1's point 1 is intact (test failover: a0)" has1 "$p1" a0

# ---- lab2 back ---------------------------------------------------------------
check "lab-power on lab2" peer_power_on
check_not "its agent did not survive the cut" peer_agent_alive
peer_sh 'rm -f "$W/hold"'
if peer_agent_start; then ok "lab2's agent starts again, on its state on the scratch disk"; else
	not_ok "lab2's agent starts again"
fi
is "lab2 still has its two points" "$U1 $U2" "$(uuid2 1) $(uuid2 2)"
is "lab2's no metadata snapshot held after the restart" - "$(on_peer dmsetup status dmrep-pool | awk '{ print $7 }')"
is "lab2's disk is what it was at point 2" "$SUM2" "$(on_peer sh -c "sha256sum </dev/dmrep/$VM/vda | cut -d' ' -f1")"

recv again --point 2 --base 1
expect_rc "the incremental 1 -> 2 goes through now" 0 "$(cat "$W/again.recv")"
is "lab1 has points 1 and 2" "[\"$U1\",\"$U2\"]" "$(uuids1)"
p2=$(dmrep --json point list "$VM" | jq -r '.[1].id')
is "lab1's point 2 is lab2's disk (sha256)" "$SUM2" "$(sum1 "$p2")"

out=$(recv full2 --point 2; cat "$W/full2.recv")
expect_rc "a full send into the replica with points: refused 32775" 32775 "$out"
expect_rc "the replica VM removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
recv full2
expect_rc "then a later full send works" 0 "$(cat "$W/full2.recv")"
is "lab1 has point 2" "[\"$U2\"]" "$(uuids1)"
p=$(dmrep --json point list "$VM" | jq -r '.[0].id')
is "its data is lab2's disk (sha256)" "$SUM2" "$(sum1 "$p")"
diag "the full stream: $(wc -c <"$W/full2") bytes"

expect_rc "the replica removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
expect_rc "the VM removed on lab2" 0 "$(peer_dmrep --json vm remove "$VM")"
summary
