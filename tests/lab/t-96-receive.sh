#!/bin/bash
# Lab test: `point receive` on one host (issue 14, items 4 and 5).  First
# the streams `point send` made of a 3-disk primary, received by a fresh
# agent on a fresh pool and checked through test failovers.  Then streams
# of known data (build/bin/lab_mkstream, common/stream.h's writer): a full
# one and incrementals of a 3-disk VM, with data, zero and unmapped
# extents.  A fresh agent with a fresh pool receives them: the replica VM
# is made by the first, `point list` has the streams' uuids, and every
# point is checked on every disk through a test failover on the replica
# (no hypervisor).  Refused, with the point list, the pool's volumes and the
# data unchanged: a wrong base, a point already held, one flipped bit in
# the header, a data record and the trailer, a truncated stream, trailing
# bytes, another VM on the command line (32773), a primary of that name
# (32775).  The agent killed at every step of a receive, and stopped with
# SIGTERM in one: no partial point, no volume left, the next receive works.
set -u
. "$(dirname "$0")/lib/inittest.sh"

R=${VM}r                    # the replica
VMU=6d1c0b5e-0b5e-4a2b-9c3d-0000000000aa
pu() { printf '6d1c0b5e-0b5e-4a2b-9c3d-%012d' "$1"; }   # point k's uuid
DISKS="vda vdb vdc"
DISKARGS=(--disk vda:16777216 --disk vdb:16777216 --disk vdc:8388608)
S=

# mk FILE K BASE [RECORDS...]: the stream of point K (base point BASE, 0:
# a full stream) of $R into $S/FILE.
mk() {
	local f=$1 k=$2 base=$3
	shift 3
	local b=()
	[ "$base" = 0 ] || b=(--base "$(pu "$base")")
	lab_mkstream --vm "$R" --vm-uuid "$VMU" --point "$(pu "$k")" "${b[@]}" --label "p$k" \
		"${DISKARGS[@]}" "$@" >"$S/$f"
}
# pat3 X: the data records of pattern X on the three disks (blocks 8..11).
pat3() { echo --data 0:32768:16384:"${1}0" --data 1:32768:16384:"${1}1" --data 2:32768:16384:"${1}2"; }
recv() { dmrep --json point receive "$R" <"$1"; }
uuids() { dmrep --json point list "$R" | jq -c '[.[].uuid]'; }
# The volumes' own devices up now (the primary's live one is always up).
thin_devs() { dmsetup ls 2>/dev/null | awk '$1 ~ /^dmrep-thin-/ { print $1 }' | sort | tr '\n' ' '; }
no_thin_devices() { [ "$(thin_devs)" = "${DEVS0:-}" ]; }
# flip FILE OFFSET: one bit of FILE's byte at OFFSET flipped, into FILE.bad
flip() {
	local b
	cp "$1" "$1.bad"
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059 # the octal escape is the format
	printf "\\$(printf '%03o' $((b ^ 4)))" | dd of="$1.bad" bs=1 seek="$2" conv=notrunc status=none
}
# point_has K A B C: the replica's point K reads A, B, C on vda, vdb, vdc
# through a test failover (the test views, /dev/dmrep/R-test/DISK).
point_has() {
	local k=$1 out rc=0 i=0 d want v=${PH_VM:-$R}
	shift
	out=$(dmrep --json failover start "$v" --test --point "$k" --wait)
	job_ok "$out" || { diag "test failover of point $k: ${out:0:300}"; return 1; }
	for d in $DISKS; do
		i=$((i + 1))
		want=${!i}
		has "/dev/dmrep/$v-test/$d" "$want" || { diag "point $k $d: not $want"; rc=1; }
	done
	out=$(dmrep --json failover stop-test "$v" --wait)
	job_ok "$out" || { diag "stop-test: ${out:0:300}"; rc=1; }
	return $rc
}
# unchanged DESC: after a refusal, the replica is as it was: its points'
# uuids, the pool's volumes, no device left up, the latest point's data.
unchanged() {
	local u tc
	u=$(uuids)
	tc=$(thin_count)
	if [ "$u" = "$UUIDS" ] && [ "$tc" = "$THIN" ] && no_thin_devices && no_suspended_or_inactive; then
		ok "$1: the replica is unchanged"
	else
		not_ok "$1: the replica is unchanged (points $u, want $UUIDS; volumes $tc, want $THIN;" \
			"devices '$(thin_devs)', want '${DEVS0:-}')"
	fi
}
# refused DESC CODE FILE [VM]: the receive answers CODE and changes nothing.
refused() {
	local out
	out=$(dmrep --json point receive "${4:-$R}" <"$3")
	expect_rc "$1: refused with $2" "$2" "$out"
	diag "$1: $(jq -r '.error // .description // empty' <<<"$out" 2>/dev/null | head -1)"
	unchanged "$1"
}

lab_need thin_ls
agent_setup
S=$W/streams
mkdir -p "$S"

# --- streams of a primary (point send), received by a fresh agent ----------
# A thin VM with three disks and a pattern per disk and point; a full
# stream and two incrementals to files; then everything goes (the VM, the
# agent, its state, the pool) and a new agent on a new pool receives them.
prepare_pool 512M 16M "pool create (the sender's)"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:16M" \
	--disk vdc="$W/vdc.img:8M")
expect_rc "a primary with three disks" 0 "$out"
for ph in a b c; do
	put_all "$ph"
	expect_rc "point of pattern $ph" 0 "$(dmrep --json point create "$VM" --label "$ph")"
done
SENT=$(dmrep --json point list "$VM" | jq -c '[.[].uuid]')
dmrep --json point send "$VM" --point 1 >"$S/f1" 2>"$S/f1.json" &&
	dmrep --json point send "$VM" --point 2 --base 1 >"$S/f2" 2>"$S/f2.json" &&
	dmrep --json point send "$VM" --point 3 --base 2 --compress zstd >"$S/f3" 2>"$S/f3.json"
check "point send: a full stream and two incrementals (one zstd)" test -s "$S/f3"
expect_rc "the primary is removed" 0 "$(dmrep --json vm remove "$VM")"
lab_reboot
rm -f "$W/pool.data" "$W/pool.meta"
STATE=$W/state2
agent_start || not_ok "a fresh agent starts on a new state directory"
prepare_pool 512M 16M "a new pool (the receiver's)"
for f in f1 f2 f3; do
	out=$(dmrep --json point receive "$VM" <"$S/$f")
	expect_rc "$f is received" 0 "$out"
	is "$f: as the point of the uuid it was sent as" "$(jq -r .uuid "$S/$f.json")" "$(jq -r .uuid <<<"$out")"
done
is "point list has the primary's uuids" "$SENT" "$(dmrep --json point list "$VM" | jq -c '[.[].uuid]')"
check "the VM here is a replica" eval "dmrep --json vm show '$VM' | jq -e '.role == \"replica\"'"
PH_VM=$VM
check "sent point 1 reads a0 a1 a2 on every disk (test failover)" point_has 1 a0 a1 a2
check "sent point 2 reads b0 b1 b2" point_has 2 b0 b1 b2
check "sent point 3 (zstd) reads c0 c1 c2" point_has 3 c0 c1 c2
PH_VM=
expect_rc "the replica is removed" 0 "$(dmrep --json vm remove "$VM")"
is "and the pool is empty" 0 "$(thin_count)"

# --- streams of known data (lab_mkstream) ----------------------------------
mk s1 1 0 $(pat3 a) --zero 0:1048576:65536 --unmap 1:1048576:65536
mk s2 2 1 $(pat3 b) --zstd
mk s3 3 2 --data 0:32768:16384:c0 --zero 1:32768:16384 --unmap 2:32768:16384
mk s4 4 3 $(pat3 d)
mk s5 5 4 $(pat3 e)
check "five streams of known data are made" test -s "$S/s5"

# --- a bad first (full) stream makes nothing --------------------------------
# (a full stream's zero extents are skipped: its trailer is checked all the same)
size=$(stat -c %s "$S/s1")
flip "$S/s1" $((size - 6))
out=$(recv "$S/s1.bad")
expect_rc "a full stream with a flipped bit in its trailer: refused with 32773" 32773 "$out"
out=$(dmrep --json vm show "$R")
expect_rc "and no replica VM is made" 32779 "$out"
is "and no volume is left in the pool" 0 "$(thin_count)"
check "nor any device" no_thin_devices

# --- a crash in the first (full) receive leaves no VM and no volume --------
for step in receive:volumes receive:data; do
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	recv "$S/s1" >/dev/null 2>&1
	agent_killed_at "full $step"
	agent_start || { not_ok "full $step: the agent restarts"; continue; }
	out=$(dmrep --json vm show "$R")
	expect_rc "full $step: the replica VM the crash interrupted is gone" 32779 "$out"
	is "full $step: no volume is left in the pool" 0 "$(thin_count)"
	check "full $step: no device is left" no_thin_devices
done

# --- the streams received --------------------------------------------------
out=$(recv "$S/s1")
expect_rc "the full stream is received: a replica VM is made" 0 "$out"
check "its answer names the point and its uuid" jq -e --arg u "$(pu 1)" '.point == 1 and .uuid == $u' <<<"$out"
show=$(dmrep --json vm show "$R")
check "the VM is a replica with the stream's uuid" jq -e --arg u "$VMU" '.role == "replica" and .uuid == $u' <<<"$show"
check "its disks show no target before a failover" jq -e '[.disks[].target] | unique == ["none"]' <<<"$show"
check "and it has a last_received time" jq -e '.replication.last_received | type == "string"' <<<"$show"
check "no stable device exists for it" test ! -e "/dev/dmrep/$R/vda"
for f in s2 s3; do
	out=$(recv "$S/$f")
	expect_rc "incremental $f is received" 0 "$out"
done
is "point list has the streams' uuids, in order" "[\"$(pu 1)\",\"$(pu 2)\",\"$(pu 3)\"]" "$(uuids)"
check "the labels and consistency come from the headers" sh -c \
	"dmrep --json point list '$R' | jq -e '[.[].label] == [\"p1\",\"p2\",\"p3\"]'"
if no_thin_devices; then ok "nothing of a receive stays up"; else
	not_ok "nothing of a receive stays up ($(thin_devs))"
	dmsetup info -c 2>&1 | sed 's/^/# /'
	grep -v ' debug: ' "$W/dmrepd.log" | tail -20 | sed 's/^/# log: /'
fi
check "point 1 reads a0 a1 a2 on every disk (test failover)" point_has 1 a0 a1 a2
check "point 2 (zstd) reads b0 b1 b2" point_has 2 b0 b1 b2
check "point 3 reads c0, and zeros where it zeroed and unmapped" point_has 3 c0 00 00
UUIDS=$(uuids)
THIN=$(thin_count)
is "the pool holds one volume per disk and point" 9 "$THIN"

# --- refusals --------------------------------------------------------------
mk wrongbase 4 1 $(pat3 f)
refused "an incremental from point 1 (the latest is 3)" 32775 "$S/wrongbase"
refused "a point already held (stream 3 again)" 32775 "$S/s3"
mk full7 7 0 $(pat3 f)
refused "a full stream (of a new point) into a replica with points" 32775 "$S/full7"
size=$(stat -c %s "$S/s4")
flip "$S/s4" 40
refused "one flipped bit in the header" 32773 "$S/s4.bad"
flip "$S/s4" $((size / 2))
refused "one flipped bit in a data record" 32773 "$S/s4.bad"
flip "$S/s4" $((size - 6))
refused "one flipped bit in the trailer" 32773 "$S/s4.bad"
head -c $((size - 100)) "$S/s4" >"$S/s4.bad"
refused "a truncated stream" 32773 "$S/s4.bad"
{ cat "$S/s4"; printf x; } >"$S/s4.bad"
refused "a stream followed by a byte" 32773 "$S/s4.bad"
refused "another VM named on the command line" 32773 "$S/s4" "${VM}other"
out=$(dmrep --json vm show "${VM}other")
expect_rc "and no VM of that name is made" 32779 "$out"
out=$(dmrep --json vm add "${VM}p" --disk vda="$W/p.img:16M")
expect_rc "a primary VM is added" 0 "$out"
lab_mkstream --vm "${VM}p" --vm-uuid "$VMU" --point "$(pu 9)" --disk vda:16777216 \
	--data 0:0:4096:aa >"$S/prim"
THIN=$((THIN + 1))
DEVS0=$(thin_devs)
refused "a stream for a VM that is a primary here" 32775 "$S/prim" "${VM}p"
check "the primary is still a primary" eval "dmrep --json vm show '${VM}p' | jq -e '.role == \"primary\"'"
out=$(dmrep --json point create "$R")
expect_rc "point create on a replica" 32775 "$out"
# (a real failover on a replica, its revert and commit: t-97-failback)
check "point 3 still reads c0 00 00" point_has 3 c0 00 00

# --- a crash at every step of an incremental receive ------------------------
for step in receive:recorded receive:volumes receive:data receive:trailer; do
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	recv "$S/s4" >/dev/null 2>&1
	agent_killed_at "$step"
	agent_start || { not_ok "$step: the agent restarts"; continue; }
	unchanged "$step: after the restart"
done
agent_stop
DMREP_TEST_CRASH_AT=receive:point-saved agent_start || not_ok "point-saved: agent starts with the hook"
recv "$S/s4" >/dev/null 2>&1
agent_killed_at receive:point-saved
agent_start || not_ok "point-saved: the agent restarts"
is "point-saved: the point saved before the crash is kept" "[\"$(pu 1)\",\"$(pu 2)\",\"$(pu 3)\",\"$(pu 4)\"]" "$(uuids)"
is "point-saved: and exactly its volumes are added" $((THIN + 3)) "$(thin_count)"
check "point-saved: no device is left" no_thin_devices
check "point 4 reads d0 d1 d2" point_has 4 d0 d1 d2

# --- SIGTERM in the middle of a receive: rolled back ------------------------
UUIDS=$(uuids)
THIN=$(thin_count)
agent_stop
touch "$W/hold"
DMREP_TEST_HOLD_AT=receive:data DMREP_TEST_HOLD_FILE=$W/hold agent_start ||
	not_ok "the agent starts with a hold in the receive"
recv "$S/s5" >"$W/sigterm.out" 2>&1 &
RECV_PID=$!
if agent_wait_log 'holding receive:data' 60; then ok "the receive is held in its data"; else
	not_ok "the receive is held in its data"
fi
kill -TERM "$AGENT_PID"
sleep 1
rm -f "$W/hold"
if agent_exited 60; then ok "SIGTERM: the agent stops (exit $AGENT_RC)"; else
	not_ok "SIGTERM: the agent stops"
	agent_stop
fi
wait "$RECV_PID" 2>/dev/null
diag "the client said: $(head -c 200 "$W/sigterm.out")"
agent_start || not_ok "the agent starts after SIGTERM"
unchanged "SIGTERM mid-receive"
check "its job says it was rolled back" sh -c \
	"dmrep --json job list | jq -e 'map(select(.method == \"ReceiveReplicationPoint\")) | max_by(.id) | .job_state >= 7 and .error_code != 0'"

out=$(recv "$S/s5")
expect_rc "the next receive works" 0 "$out"
check "point 5 reads e0 e1 e2" point_has 5 e0 e1 e2

# --- the replica goes whole ------------------------------------------------
out=$(dmrep --json vm remove "$R")
expect_rc "vm remove of the replica" 0 "$out"
is "its volumes are gone from the pool (the primary's one is left)" 1 "$(thin_count)"
out=$(dmrep --json vm remove "${VM}p")
expect_rc "vm remove of the primary" 0 "$out"
agent_stop
summary
