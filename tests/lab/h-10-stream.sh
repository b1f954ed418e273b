#!/bin/bash
# Two-host lab test: replication streams over real ssh (issue 14, "Tests").
# Agents on both hosts, state and pool on each one's scratch disk.  A thin
# VM with 3 disks on lab1; a full send, then incrementals, each point with
# its own pattern on each disk, piped
#   dmrep point send VM [--base PREV] | ssh lab2 dmrep --json point receive VM
# and every point checked on lab2, on every disk, through a test failover
# there; the same point uuids on both hosts; lab2's VM a replica.  One
# changed 4 KiB block: at most one pool block of data plus framing (the
# stream kept by tee, read with lab_stream dump, and its bytes on the wire).
# --compress zstd there and back.  Refused on lab2 with the contracted
# code and a reason, its point list, its devices and the data of its latest
# point unchanged after each: a wrong base, a point already held, one
# flipped bit in a data record, in the header and in the trailer
# (lab_stream flip at lab_stream dump's offsets), a truncated stream,
# trailing bytes, and streams forged well-formed but for one field
# (lab_stream forge): an extent past the disk's end, a disk name with '/',
# an absurd disk size (2^60 bytes: 32773; 1 PiB, within the format, against
# the replica's 16 MiB: 32775).  A classic VM's send: 32770.
set -u
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb vdc"
lab_need jq lab_stream
pair_setup

# lab1's agent on its own socket, its state in $W (the scratch disk).
AGENT_USED=1
SOCK=/run/dmrep-test$$/dmrepd.sock
STATE=$W/state
export DMREP_SOCKET=$SOCK
agent_start || { not_ok "dmrepd starts on lab1"; exit 1; }
ok "dmrepd starts on lab1"
if peer_agent_start; then ok "dmrepd starts on lab2 (state on its scratch disk)"; else
	not_ok "dmrepd starts on lab2"
	exit 1
fi
prepare_pool 512M 16M "a pool on lab1 (files on its scratch disk)"
out=$(peer_dmrep --json pool create --data "$PW/pool.data" --data-size 512M --meta "$PW/pool.meta" --meta-size 16M)
expect_rc "a pool on lab2 (files on its scratch disk)" 0 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:8M" --disk vdc="$W/vdc.img:4M")
expect_rc "a thin VM with 3 disks on lab1" 0 "$out"

S=$W/streams
mkdir -p "$S"
# xfer NAME SEND-ARGS...: point send of $VM (SEND-ARGS) piped into ssh lab2
# dmrep --json point receive, the stream kept by tee in $S/NAME, the
# sender's summary in $S/NAME.send, lab2's answer in $S/NAME.recv; $SRC and
# $RRC the two exit statuses.
xfer() {
	local name=$1
	shift
	dmrep --json point send "$VM" "$@" 2>"$S/$name.send" | tee "$S/$name" |
		ssh lab2 dmrep --json point receive "$VM" >"$S/$name.recv"
	local st=("${PIPESTATUS[@]}")
	SRC=${st[0]} RRC=${st[2]}
}
uuid1() { dmrep --json point list "$VM" | jq -r --argjson p "$1" '.[] | select(.id == $p) | .uuid'; }
uuids1() { dmrep --json point list "$VM" | jq -c '[.[].uuid]'; }
uuids2() { peer_dmrep --json point list "$VM" | jq -c '[.[].uuid]'; }
# id2 UUID: lab2's point id for that uuid.
id2() { peer_dmrep --json point list "$VM" | jq -r --arg u "$1" '.[] | select(.uuid == $u) | .id'; }
# has2 ID A B C: lab2's point ID reads A, B, C on vda, vdb, vdc (blocks
# 8..11, dev.sh's has) through a test failover on lab2.
has2() {
	local p=$1 out rc=0
	shift
	out=$(peer_dmrep --json failover start "$VM" --test --point "$p" --wait)
	job_ok "$out" || { diag "test failover of lab2's point $p: ${out:0:300}"; return 1; }
	peer_sh "has /dev/dmrep/$VM-test/vda $1 && has /dev/dmrep/$VM-test/vdb $2 && has /dev/dmrep/$VM-test/vdc $3" ||
		{ diag "lab2's point $p does not read $*"; rc=1; }
	out=$(peer_dmrep --json failover stop-test "$VM" --wait)
	job_ok "$out" || { diag "stop-test on lab2: ${out:0:300}"; rc=1; }
	return $rc
}
# What lab2 has up: its dm devices (names), and its pool's held metadata
# root ("-": none held).
devs2() { on_peer dmsetup info -c --noheadings -o name 2>/dev/null | sort | tr '\n' ' '; }
held2() { on_peer dmsetup status dmrep-pool | awk '{ print $7 }'; }

# ---- a full send, then five incrementals ------------------------------------
# Point k: the bytes Xk0, Xk1, Xk2 (X = a..f) on vda, vdb, vdc.
pats=(- a b c d e f)
prev=
for k in 1 2 3 4 5 6; do
	put_all "${pats[k]}"
	out=$(dmrep --json point create "$VM" --label "p$k")
	expect_rc "point $k on lab1 (pattern ${pats[k]})" 0 "$out"
	if [ -z "$prev" ]; then
		xfer "s$k" --point "$k"
		what="the full send of point 1"
	else
		xfer "s$k" --point "$k" --base "$prev"
		what="the incremental $prev -> $k"
	fi
	if [ "$SRC" = 0 ] && [ "$RRC" = 0 ] && jq -e --arg u "$(uuid1 "$k")" '.return == 0 and .uuid == $u' "$S/s$k.recv" >/dev/null; then
		ok "$what over ssh: received on lab2 with its uuid"
	else
		not_ok "$what over ssh (send $SRC: $(head -c 200 "$S/s$k.send"); receive $RRC: $(head -c 200 "$S/s$k.recv"))"
	fi
	is "... the sender's bytes are the stream's" "$(wc -c <"$S/s$k")" "$(jq -r .bytes "$S/s$k.send" 2>/dev/null)"
	prev=$k
done
is "point uuids are the same on both hosts" "$(uuids1)" "$(uuids2)"
show=$(peer_dmrep --json vm show "$VM")
check "vm show on lab2: role replica, the VM's uuid" jq -e --arg u "$(dmrep --json vm show "$VM" | jq -r .uuid)" \
	'.role == "replica" and .uuid == $u' <<<"$show"
check "... no writable disk before a failover (no target)" jq -e '[.disks[].target] | unique == ["none"]' <<<"$show"
check "... a last_received time" jq -e '.replication.last_received | type == "string"' <<<"$show"
diag "lab2's vm show: $(jq -c . <<<"$show" | head -c 600)"
for k in 1 2 3 4 5 6; do
	p=$(id2 "$(uuid1 "$k")")
	x=${pats[k]}
	check "point $k on lab2 (id $p) reads ${x}0 ${x}1 ${x}2 (test failover)" has2 "$p" "${x}0" "${x}1" "${x}2"
done
is "no test view is left up on lab2" "" "$(on_peer sh -c "ls /dev/dmrep/$VM-test 2>/dev/null")"

# ---- one changed 4 KiB block --------------------------------------------------
# At 4 MiB of vdb, a pool block never written before.
head -c 4096 /dev/zero | tr '\000' '\307' | dd of="/dev/dmrep/$VM/vdb" bs=4096 seek=1024 oflag=direct conv=notrunc status=none
expect_rc "point 7: one 4 KiB block changed" 0 "$(dmrep --json point create "$VM" --label p7)"
xfer s7 --point 7 --base 6
is "the incremental 6 -> 7 is received" "0 0 0" "$SRC $RRC $(jq -r .return "$S/s7.recv" 2>/dev/null)"
block=$(lab_stream dump "$S/s7" | tail -n1 | jq -r .header.block_bytes)
wire=$(wc -c <"$S/s7")
data=$(lab_stream dump "$S/s7" | jq -s '[.[] | select(.type == "data" or .type == "data_zstd") | .length] | add // 0')
recs=$(lab_stream dump "$S/s7" | jq -s -c '[.[] | select(.type) | .type]')
diag "one 4 KiB block: $wire bytes on the wire, $data of data, pool block $block, records $recs"
check "... at most one pool block of data ($data of $block)" test "$data" -le "$block"
is "... its records: the header, one data record, the trailer" '["header","data","trailer"]' "$recs"
check "... on the wire at most one pool block plus 4 KiB of framing ($wire)" test "$wire" -le $((block + 4096))
p7=$(id2 "$(uuid1 7)")
check "point 7 on lab2 reads f0 f1 f2 where the patterns are" has2 "$p7" f0 f1 f2
out=$(peer_dmrep --json failover start "$VM" --test --point "$p7" --wait)
if job_ok "$out" && on_peer bash -c "cmp -s <(head -c 4096 /dev/zero | tr '\\000' '\\307') <(dd if=/dev/dmrep/$VM-test/vdb bs=4096 skip=1024 count=1 iflag=direct status=none)"; then
	ok "... and the changed block on vdb"
else
	not_ok "... and the changed block on vdb (${out:0:200})"
fi
job_ok "$(peer_dmrep --json failover stop-test "$VM" --wait)" || not_ok "stop-test after point 7"

# ---- --compress zstd, there and back --------------------------------------------
put_all 7
expect_rc "point 8 (pattern 7x)" 0 "$(dmrep --json point create "$VM" --label p8)"
xfer s8 --point 8 --base 7 --compress zstd
is "the zstd incremental 7 -> 8 is received" "0 0 0" "$SRC $RRC $(jq -r .return "$S/s8.recv" 2>/dev/null)"
check "... its data records are compressed" eval "lab_stream dump '$S/s8' | jq -e -s 'map(select(.type == \"data_zstd\")) | length == 3'"
check "... it is smaller than its data" test "$(wc -c <"$S/s8")" -lt $((3 * block))
p8=$(id2 "$(uuid1 8)")
check "point 8 on lab2 reads 70 71 72 (test failover)" has2 "$p8" 70 71 72
is "point uuids still the same on both hosts" "$(uuids1)" "$(uuids2)"

# ---- refusals ---------------------------------------------------------------
UUIDS=$(uuids2)
DEVS=$(devs2)
# unchanged DESC: lab2's point list, devices, held metadata and its latest
# point's data as they were.
unchanged() {
	local u d h
	u=$(uuids2) d=$(devs2) h=$(held2)
	if [ "$u" = "$UUIDS" ] && [ "$d" = "$DEVS" ] && [ "$h" = - ]; then
		ok "$1: lab2's points and devices are unchanged, no metadata snapshot held"
	else
		not_ok "$1: lab2 unchanged (points $u, want $UUIDS; devices '$d', want '$DEVS'; held $h)"
	fi
	check "$1: lab2's latest point still reads 70 71 72" has2 "$p8" 70 71 72
}
# refused DESC CODE FILE: the stream in FILE, over ssh, refused with CODE
# and a reason.
refused() {
	local out
	out=$(ssh lab2 dmrep --json point receive "$VM" <"$3")
	expect_rc "$1: refused with $2" "$2" "$out"
	check "$1: with a reason" jq -e '.error | type == "string" and length > 0' <<<"$out"
	diag "$1: $(jq -r '.error // empty' <<<"$out" 2>/dev/null | head -1)"
	unchanged "$1"
}
put_all 8
expect_rc "point 9 on lab1" 0 "$(dmrep --json point create "$VM" --label p9)"
dmrep --json point send "$VM" --point 9 --base 7 >"$S/wrongbase" 2>/dev/null
refused "an incremental from point 7 (lab2's latest is 8)" 32775 "$S/wrongbase"
refused "a point already held (7 -> 8 again)" 32775 "$S/s8"
refused "a full stream of a point already held" 32775 "$S/s1"
dmrep --json point send "$VM" --point 9 --base 8 >"$S/s9" 2>/dev/null
check "the good stream 8 -> 9 is whole (lab_stream dump)" lab_stream dump "$S/s9"
lab_stream dump "$S/s9" >"$S/s9.dump"
size=$(wc -c <"$S/s9")
hoff=$(jq -s -r 'map(select(.type == "header"))[0].payload_offset' "$S/s9.dump")
doff=$(jq -s -r 'map(select(.type == "data"))[1].payload_offset' "$S/s9.dump")
toff=$(jq -s -r 'map(select(.type == "trailer"))[0].payload_offset' "$S/s9.dump")
diag "s9: $size bytes, header payload at $hoff, second data record's at $doff, trailer's at $toff"
bad() { # NAME OFFSET: s9 with the bit 3 of byte OFFSET flipped, as $S/NAME
	cp "$S/s9" "$S/$1" && lab_stream flip "$S/$1" "$2" 3
}
bad bit-data $((doff + 16 + 1000))
refused "one flipped bit in a data record" 32773 "$S/bit-data"
bad bit-header $((hoff + 40))
refused "one flipped bit in the header" 32773 "$S/bit-header"
bad bit-trailer $((toff + 32))
refused "one flipped bit in the trailer (its checksum)" 32773 "$S/bit-trailer"
head -c $((size - 100)) "$S/s9" >"$S/truncated"
refused "a truncated stream" 32773 "$S/truncated"
{ cat "$S/s9"; printf 'x'; } >"$S/trailing"
refused "a stream followed by one byte" 32773 "$S/trailing"
for kind in good past-end disk-slash disk-size disk-huge; do
	lab_stream forge "$kind" "$S/s9" "$S/forge-$kind" || not_ok "lab_stream forge $kind"
done
check "a forged stream with nothing wrong reads whole (the forge's control)" lab_stream dump "$S/forge-good"
for kind in past-end disk-slash disk-size; do
	why=$(lab_stream dump "$S/forge-$kind" | tail -n1 | jq -r .error)
	case $why in
	"" | null | *checksum*) not_ok "forged $kind: the reader's complaint is that field, not a checksum ($why)" ;;
	*) ok "forged $kind: the reader's complaint is that field, not a checksum ($why)" ;;
	esac
done
refused "an extent past the disk's end (forged)" 32773 "$S/forge-past-end"
refused "a disk name with '/' (forged)" 32773 "$S/forge-disk-slash"
refused "an absurd disk size, 2^60 bytes (forged)" 32773 "$S/forge-disk-size"
check "a 1 PiB disk (2^50, DMR_STREAM_SIZE_MAX) is within the format: the reader takes it" \
	lab_stream dump "$S/forge-disk-huge"
refused "a 1 PiB disk where the replica's is 16 MiB (forged)" 32775 "$S/forge-disk-huge"

# After every refusal, the good stream still goes in.
out=$(ssh lab2 dmrep --json point receive "$VM" <"$S/s9")
expect_rc "then the good stream 8 -> 9 is received" 0 "$out"
check "point 9 on lab2 reads 80 81 82" has2 "$(id2 "$(uuid1 9)")" 80 81 82
is "point uuids the same on both hosts" "$(uuids1)" "$(uuids2)"
# The forge writes what the receiver takes: its control received (the
# base, 8, is no longer lab2's latest: forged anew on a 9 -> 10 stream).
put_all 9
expect_rc "point 10 on lab1" 0 "$(dmrep --json point create "$VM" --label p10)"
dmrep --json point send "$VM" --point 10 --base 9 >"$S/s10" 2>/dev/null
lab_stream forge good "$S/s10" "$S/forge-good10"
out=$(ssh lab2 dmrep --json point receive "$VM" <"$S/forge-good10")
expect_rc "a forged stream with nothing wrong is received (the forge is sound)" 0 "$out"
fp=$(jq -r .point <<<"$out")
out=$(peer_dmrep --json failover start "$VM" --test --point "$fp" --wait)
if job_ok "$out" && on_peer bash -c "cmp -s <(head -c 4096 /dev/zero | tr '\\000' '\\360') <(dd if=/dev/dmrep/$VM-test/vda bs=4096 count=1 iflag=direct status=none)"; then
	ok "... and its point reads the forged 4 KiB of f0 at the start of vda"
else
	not_ok "... and its point reads the forged data (${out:0:200})"
fi
job_ok "$(peer_dmrep --json failover stop-test "$VM" --wait)" || not_ok "stop-test after the forged point"

# ---- a classic VM's send ----------------------------------------------------
out=$(dmrep --json vm add "${VM}c" --backend classic --disk vda="$W/c.img:4M")
expect_rc "a classic VM on lab1" 0 "$out"
expect_rc "... a point of it" 0 "$(dmrep --json point create "${VM}c")"
dmrep --json point send "${VM}c" >"$S/classic" 2>"$S/classic.send"
is "a classic VM's point send: 32770" 32770 "$(jq -r .return "$S/classic.send" 2>/dev/null)"
check "... saying why" jq -e '.error | length > 0' "$S/classic.send"
check "... and nothing on stdout" test ! -s "$S/classic"
expect_rc "the classic VM removed" 0 "$(dmrep --json vm remove "${VM}c")"

# ---- the end ---------------------------------------------------------------
expect_rc "the replica VM removed on lab2" 0 "$(peer_dmrep --json vm remove "$VM")"
expect_rc "the VM removed on lab1" 0 "$(dmrep --json vm remove "$VM")"
summary
