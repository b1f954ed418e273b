#!/bin/bash
# Lab test: point send (issue 14), on one host.  A thin VM with 3 disks and
# a pattern per disk and point; full and incremental streams to files (the
# data records cover exactly the blocks written: one changed 4 KiB block is
# one pool block of data); the refusals (a classic VM 32770, a non-root
# caller 32769, a point that does not exist 32779, a base that is not older
# 32773, stdout a terminal 32773); a reader that goes away (32768); the
# agent killed at every step of a send and stopped with SIGTERM in the
# middle of one: after a restart no device is left, no metadata snapshot
# held, and the next send works.  Last, the streams are received back on
# this host (the VM removed first: a replica of the same name) and every
# point is checked on every disk through a test failover.
set -u
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb vdc"
GRAIN=65536 # snapshots/xfer.h: zero runs are found in 64 KiB grains

# send NAME ARGS...: dmrep --json point send ARGS > $W/NAME, its stderr
# (the summary) in $W/NAME.json, its exit status in $RC.
send() {
	local name=$1
	shift
	dmrep --json point send "$@" >"$W/$name" 2>"$W/$name.json"
	RC=$?
}
field() { jq -r "$2" "$W/$1.json" 2>/dev/null; }
uuid_of_point() { dmrep --json point list "$VM" | jq -r --argjson p "$1" '.[] | select(.id == $p) | .uuid'; }
# The devices of thin volumes up now, by id.
thin_devs() { dmsetup info -c --noheadings -o name 2>/dev/null | grep -c '^dmrep-thin-'; }
# The pool's held metadata root: "-" when no metadata snapshot is held.
held_root() { dmsetup status dmrep-pool | awk '{ print $7 }'; }
# stream_ok FILE: a complete stream (lab_stream dump, where built).
stream_ok() {
	lab_stream dump "$1" >/dev/null
}
# data_recs FILE: the stream's data records, one [disk, offset, length] a
# line (lab_stream dump).
data_recs() {
	lab_stream dump "$1" | jq -c 'select(.type == "data" or .type == "data_zstd") |
		[.disk_name, .offset, .length]'
}
# hdr FILE JQ: a field of the stream's header.
hdr() { lab_stream dump "$1" | tail -n1 | jq -r ".header$2"; }
# put4k DEV OFFSET_KIB HEX: one 4 KiB block of that byte.
put4k() { head -c 4096 /dev/zero | tr '\000' "\\$(printf '%03o' "0x$3")" |
	dd of="$1" bs=1024 seek="$2" oflag=direct conv=notrunc status=none; }
has4k() { cmp -s <(head -c 4096 /dev/zero | tr '\000' "\\$(printf '%03o' "0x$3")") \
	<(dd if="$1" bs=1024 skip="$2" count=4 iflag=direct status=none); }

lab_need thin_delta thin_dump jq lab_stream
agent_setup
prepare_pool 256M 16M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:8M" \
	--disk vdc="$W/vdc.img:4M")
expect_rc "a thin VM with 3 disks" 0 "$out"
live_devs=$(thin_devs)

# Point 1: a0 a1 a2 at 32 KiB; point 2: b0 b1 b2 there; point 3: one 4 KiB
# block more on vdb, at 4 MiB (a pool block never written before).
put_all a
expect_rc "point 1" 0 "$(dmrep --json point create "$VM")"
put_all b
expect_rc "point 2" 0 "$(dmrep --json point create "$VM")"
put4k "/dev/dmrep/$VM/vdb" 4096 c5
expect_rc "point 3" 0 "$(dmrep --json point create "$VM" --label "one block")"

# ---- full and incremental streams ------------------------------------
send full1 "$VM" --point 1
is "a full send of point 1 exits 0" 0 "$RC"
is "its summary is on stderr, return 0" 0 "$(field full1 .return)"
is "... the point" 1 "$(field full1 .point)"
is "... its uuid" "$(uuid_of_point 1)" "$(field full1 .uuid)"
is "... bytes: the stream's size" "$(stat -c %s "$W/full1")" "$(field full1 .bytes)"
check "... and the stream is whole" stream_ok "$W/full1"
# Every disk wrote one grain (16 KiB inside the first 64 KiB): nothing else
# is mapped, so nothing else is sent.
is "a full send carries only the written blocks (3 grains)" $((3 * GRAIN)) "$(field full1 .data_bytes)"
is "... its data records: the first grain of each disk" \
	"[\"vda\",0,$GRAIN] [\"vdb\",0,$GRAIN] [\"vdc\",0,$GRAIN]" "$(data_recs "$W/full1" | tr '\n' ' ' | sed 's/ $//')"
is "... its header names the VM" "$VM" "$(hdr "$W/full1" .vm)"
is "... and the point's uuid" "$(uuid_of_point 1)" "$(hdr "$W/full1" .point_uuid)"
is "... no base" "" "$(hdr "$W/full1" .base_uuid)"
is "... its disks and sizes" "vda:16777216 vdb:8388608 vdc:4194304" \
	"$(hdr "$W/full1" '.disks | map("\(.name):\(.size_bytes)") | join(" ")')"

send latest "$VM"
is "without --point: the latest valid point" 3 "$(field latest .point)"

send inc12 "$VM" --point 2 --base 1 --compress zstd
is "an incremental 1 -> 2 (zstd) exits 0" 0 "$RC"
is "... its base" 1 "$(field inc12 .base)"
check "... whole" stream_ok "$W/inc12"
is "... it carries the 3 rewritten grains" $((3 * GRAIN)) "$(field inc12 .data_bytes)"
check "... compressed: smaller than its data" test "$(field inc12 .bytes)" -lt $((3 * GRAIN))
is "... as 3 compressed data records" 3 "$(lab_stream dump "$W/inc12" | jq -s 'map(select(.type == "data_zstd")) | length')"
is "... the first grain of each disk" \
	"[\"vda\",0,$GRAIN] [\"vdb\",0,$GRAIN] [\"vdc\",0,$GRAIN]" "$(data_recs "$W/inc12" | tr '\n' ' ' | sed 's/ $//')"

send inc23 "$VM" --point 3 --base 2
is "an incremental 2 -> 3 exits 0" 0 "$RC"
is "one changed 4 KiB block: one pool block of data" "$GRAIN" "$(field inc23 .data_bytes)"
is "... one data record, that block" "[\"vdb\",4194304,$GRAIN]" "$(data_recs "$W/inc23")"
is "... the base's uuid in its header" "$(uuid_of_point 2)" "$(hdr "$W/inc23" .base_uuid)"
check "... whole" stream_ok "$W/inc23"
check "... and its stream is small (under 2 blocks)" test "$(field inc23 .bytes)" -lt $((2 * GRAIN))
is "no point's device is left up" "$live_devs" "$(thin_devs)"
is "no metadata snapshot is held" - "$(held_root)"
for f in full1 inc12 inc23; do
	diag "$f: $(field $f .bytes) stream bytes, $(field $f .data_bytes) of data, $(lab_stream dump "$W/$f" | grep -c '"index"') records"
done

# ---- refusals ---------------------------------------------------------
send bad "$VM" --point 99
is "a point that does not exist: 32779" 32779 "$(field bad .return)"
check "... and nothing on stdout" test ! -s "$W/bad"
send bad "$VM" --point 1 --base 99
is "a base that does not exist: 32779" 32779 "$(field bad .return)"
send bad "$VM" --point 1 --base 2
is "a base that is not older: 32773" 32773 "$(field bad .return)"
send bad "$VM" --compress lz4
is "an unknown compressor: 32773" 32773 "$(field bad .return)"
send bad nosuchvm
is "a VM that does not exist: 32779" 32779 "$(field bad .return)"
if command -v script >/dev/null 2>&1; then
	out=$(script -qec "dmrep --json --socket '$SOCK' point send '$VM'" /dev/null </dev/null 2>&1)
	check "stdout a terminal: refused with 32773" grep -q '"return": 32773' <<<"$out"
	check "... saying why" grep -q 'stdout is a terminal' <<<"$out"
	out=$(script -qec "dmrep --json --socket '$SOCK' point receive '$VM'" /dev/null 2>&1 </dev/null)
	check "stdin a terminal: point receive refuses (32773)" grep -q '"return": 32773' <<<"$out"
else
	skip "stdout a terminal is refused" "script (util-linux) is not installed"
fi
# Let nobody reach the socket: the agent's own check refuses.
chmod o+x "$(dirname "$SOCK")"
chmod o+rw "$SOCK"
setpriv --reuid=65534 --regid=65534 --clear-groups -- \
	dmrep --socket "$SOCK" --json point send "$VM" >"$W/bad" 2>"$W/bad.json"
is "a non-root caller: 32769" 32769 "$(field bad .return)"
check "... and nothing on stdout" test ! -s "$W/bad"
chmod o-rw "$SOCK"
make_file c.img 8M >/dev/null
out=$(dmrep --json vm add "${VM}c" --backend classic --disk vda="$W/c.img")
expect_rc "a classic VM" 0 "$out"
send bad "${VM}c"
is "a classic VM: 32770" 32770 "$(field bad .return)"
check "... saying why" grep -q 'classic VMs cannot be replicated' "$W/bad.json"
expect_rc "the classic VM goes" 0 "$(dmrep --json vm remove "${VM}c")"

# A reader that goes away: the job fails cleanly (32768), says so.
dmrep --json point send "$VM" --point 1 2>"$W/pipe.json" | head -c 100 >/dev/null
is "a reader that goes away: 32768" 32768 "$(field pipe .return)"
check "... and the job says the reader went away" grep -q 'reader went away' "$W/pipe.json"
is "... no point's device is left up" "$live_devs" "$(thin_devs)"
send again "$VM" --point 2 --base 1
is "... and the next send works" 0 "$RC"

# ---- the agent killed at every step -----------------------------------
for step in send:extents send:data send:trailer; do
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	send crash "$VM" --point 3 --base 1
	check "$step: the client fails" test "$RC" != 0
	agent_killed_at "$step"
	agent_start || { not_ok "$step: the agent restarts"; continue; }
	is "$step: no point's device is left up" "$live_devs" "$(thin_devs)"
	is "$step: no metadata snapshot is held" - "$(held_root)"
	check "$step: nothing suspended" no_suspended_or_inactive
	send after "$VM" --point 3 --base 1
	is "$step: the next send works" 0 "$RC"
	check "$step: ... and is whole" stream_ok "$W/after"
	# What the reader got is cut short: no trailer.
	check "$step: the cut stream is shorter than the whole one" \
		test "$(stat -c %s "$W/crash")" -lt "$(stat -c %s "$W/after")"
	check_not "$step: ... and does not read as whole" stream_ok "$W/crash"
done

# ---- SIGTERM in the middle of a send -----------------------------------
agent_stop
: >"$W/hold"
DMREP_TEST_HOLD_AT=send:data DMREP_TEST_HOLD_FILE=$W/hold agent_start ||
	not_ok "the agent starts with a hold at send:data"
dmrep --json point send "$VM" --point 1 >"$W/term" 2>"$W/term.json" &
spid=$!
if agent_wait_log 'holding send:data' 60; then ok "a send is held in its data phase"; else
	not_ok "a send is held in its data phase"
fi
kill -TERM "$AGENT_PID"
sleep 0.5
rm -f "$W/hold"
if agent_exited 60; then is "SIGTERM mid-send: the agent stops (exit 0)" 0 "$AGENT_RC"; else
	not_ok "SIGTERM mid-send: the agent stops"
	agent_stop
fi
wait "$spid"
check "... the client fails" test $? != 0
check "... the job was stopped" grep -q 'agent is stopping' "$W/dmrepd.log"
agent_start || not_ok "the agent restarts after SIGTERM"
is "... no point's device is left up" "$live_devs" "$(thin_devs)"
is "... no metadata snapshot is held" - "$(held_root)"
send after "$VM" --point 1
is "... and the next send works" 0 "$RC"

# ---- SIGTERM with a reader that stalls ---------------------------------
# The reader opens the pipe and never reads: the agent's writes wait on a
# full pipe, and a SIGTERM still stops the send.
mkfifo "$W/fifo"
sleep 600 <"$W/fifo" &
rpid=$!
lab_cleanup "kill $rpid"
dmrep --json point send "$VM" --point 2 >"$W/fifo" 2>"$W/stall.json" &
spid=$!
if wait_until 60 eval "dmrep --json job list | jq -e 'max_by(.id) | .method == \"SendReplicationPoint\" and .job_state == 4'"; then
	ok "a send to a reader that stalls runs"
else
	not_ok "a send to a reader that stalls runs"
fi
sleep 1
kill -TERM "$AGENT_PID"
if agent_exited 30; then is "SIGTERM, the reader stalled: the agent stops within 30 s (exit 0)" 0 "$AGENT_RC"; else
	not_ok "SIGTERM, the reader stalled: the agent stops within 30 s"
	stop_pid AGENT_PID KILL
fi
kill "$rpid" 2>/dev/null
wait "$spid" "$rpid" 2>/dev/null
agent_start || not_ok "the agent restarts"
is "... no point's device is left up" "$live_devs" "$(thin_devs)"

# ---- a metadata snapshot a dead agent left held -------------------------
agent_stop
dmsetup message dmrep-pool 0 reserve_metadata_snap
check "a metadata snapshot is held while the agent is down" test "$(held_root)" != -
agent_start || not_ok "the agent restarts"
is "the agent's start releases it" - "$(held_root)"
send after "$VM" --point 3 --base 2
is "... and a send works" 0 "$RC"

# ---- the streams received back ----------------------------------------
# The VM goes; its streams make a replica of the same name here.
expect_rc "the VM is removed" 0 "$(dmrep --json vm remove "$VM")"
for s in full1 inc12 inc23; do
	out=$(dmrep --json point receive "$VM" <"$W/$s")
	expect_rc "$s is received" 0 "$out"
	is "... as the point of its uuid" "$(field "$s" .uuid)" "$(jq -r .uuid <<<"$out")"
done
for p in 1 2 3; do
	out=$(dmrep --json failover start "$VM" --test --point "$p" --wait)
	if ! job_ok "$out"; then
		not_ok "point $p: a test failover on the replica (${out:0:200})"
		continue
	fi
	case $p in 1) ph=a ;; *) ph=b ;; esac
	k=0
	for d in $DISKS; do
		check "point $p: $d holds $ph$k" has "/dev/dmrep/$VM-test/$d" "$ph$k"
		k=$((k + 1))
	done
	if [ "$p" = 3 ]; then
		check "point 3: vdb has its 4 KiB block" has4k "/dev/dmrep/$VM-test/vdb" 4096 c5
	else
		check "point $p: vdb has no block at 4 MiB" has4k "/dev/dmrep/$VM-test/vdb" 4096 00
	fi
	dmrep --json failover stop-test "$VM" --wait >/dev/null
done
summary
