#!/bin/bash
# Lab test: a pool out of metadata space (issue 16, item 2).  A pool with
# 2 MiB of metadata (512 blocks) and a VM with two 256 MiB disks, full of
# data.  Each point shares the disks' mapping trees; a write to every MiB
# of both disks after it copies each leaf it touches (about 36 metadata
# blocks a round, measured).  Points are refused (32778, "nearly full")
# with 1/16 of the metadata left; a failover to the latest point and the
# same writes through its overlays then take the last metadata: they are
# acknowledged and committed (the kernel keeps a reserve for that), and
# the kernel switches the pool to read-only ("No free metadata blocks").  Then:
# pool status says health out_of_metadata_space and what to do (grow the
# metadata device, then repair); operations answer 32775 saying so; a
# repair before the device grew is refused (32775: nothing changed).  The
# metadata file grown to 4 MiB, `pool repair --wait` rewrites the metadata
# into the room added: the pool is healthy with 1024 blocks, the writes
# acknowledged before it went read-only are there, the revert
# brings the VM back on its live volumes with their data as before the
# failover, points and writes work, and thin_check is clean.  Before this,
# pool status said read_only with "fix the metadata device, then run
# 'dmrep pool repair'", and the repair failed whatever one did (thin_repair
# into a spare of the old size: "terminate called after throwing an
# instance of 'std::runtime_error'").
set -u
. "$(dirname "$0")/lib/inittest.sh"

agent_setup
out=$(dmrep --json pool create --data "$W/pool.data" --data-size 1536M --meta "$W/pool.meta" --meta-size 2M --sparse)
expect_rc "a pool with 2 MiB of metadata" 0 "$out"
expect_rc "a VM with two 256 MiB disks" 0 \
	"$(dmrep --json vm add "$VM" --disk vda="$W/a.img:256M" --disk vdb="$W/b.img:256M")"
A=/dev/dmrep/$VM/vda B=/dev/dmrep/$VM/vdb
check "their data" sh -c "dd if=/dev/urandom of=$A bs=1M count=256 oflag=direct status=none &&
	dd if=/dev/urandom of=$B bs=1M count=256 oflag=direct status=none"
# round DEV CHAR: 4 KiB of CHAR at every MiB of DEV (a write in every leaf of
# its mapping tree), then fsync'ed; fails if a write or the fsync fails.
round() {
	perl -MIO::Handle -e 'open(my $f, "+<", $ARGV[0]) or die "open: $!";
		for (my $o = 0; $o < 256 * 1048576; $o += 1048576) {
			sysseek($f, $o, 0); syswrite($f, $ARGV[1] x 4096) == 4096 or die "write at $o: $!\n"; }
		$f->sync or die "fsync: $!\n"; close($f) or die "close: $!\n";' "$1" "$2"
}
meta() { dmrep --json pool status | jq -r '"\(.meta_used_blocks)/\(.meta_total_blocks) \(.health)"'; }
sums() { echo "$(sha256sum <"$A" | cut -c1-64) $(sha256sum <"$B" | cut -c1-64)"; }

# ---- points until the metadata is nearly full ------------------------------------
n=0 refused=
for i in $(seq 30); do
	c=$(printf "\\x$(printf %x $((65 + i % 26)))")
	round "$A" "$c" && round "$B" "$c" || { not_ok "round $i of writes"; break; }
	out=$(dmrep --json point create "$VM")
	if [[ $out == *'"return": 0'* || $out == *'"return":0'* ]]; then
		n=$((n + 1))
	else
		refused=$out
		break
	fi
done
diag "$n points, then: $(jq -c . <<<"$refused" 2>/dev/null) (metadata $(meta))"
check "points until the metadata is nearly full ($n)" test "$n" -ge 3
expect_rc "then a point is refused: 32778" 32778 "$refused"
check "... the metadata is nearly full" jq -e '.error | test("nearly full.*metadata")' <<<"$refused"
LIVE=$(sums)

# ---- a failover's writes run it out ------------------------------------------------
check "a failover to the latest point" job_ok "$(timeout 120 dmrep --json failover start "$VM" --wait)"
# The kernel keeps a reserve for the commit under way: the writes are
# acknowledged and committed, then, no metadata block left, it switches
# the pool to read-only before a later write could fail.
overlay_rounds() { round "$A" z && round "$B" z; }
check "writes through its overlays take the last metadata, and are acknowledged" overlay_rounds
check "the pool is read-only, out of metadata space" wait_until 30 sh -c \
	"dmrep --json pool status | jq -e '.health == \"out_of_metadata_space\" and .mode == \"ro\"'"
out=$(dmrep --json pool status)
diag "pool status: $(jq -c '{health, mode, meta_used_blocks, meta_total_blocks, advice}' <<<"$out")"
check "pool status says what to do: grow the metadata device, then repair" \
	jq -e '(.advice | test("grow the metadata device")) and (.advice | contains("dmrep pool repair"))' <<<"$out"
check "the kernel said so" sh -c 'dmesg | grep -q "No free metadata blocks"'
out=$(dmrep --json point create "$VM")
expect_rc "point create: 32775" 32775 "$out"
check "... out of metadata space, grow it" jq -e '(.error | test("out of metadata space")) and (.error | test("grow"))' <<<"$out"
out=$(dmrep --json failover revert "$VM")
expect_rc "revert on the read-only pool: 32775" 32775 "$out"
# The other operations: refused up front, the same reason, nothing made.
dmrep --json point send "$VM" --point 1 >"$W/p1.stream" 2>"$W/send.err"
sendj=$(tail -n 1 "$W/send.err")
expect_rc "point send: 32775" 32775 "$sendj"
expect_rc "failover commit: 32775" 32775 "$(dmrep --json failover commit "$VM")"
dd if=/dev/urandom of="$W/imp.img" bs=1M count=1 status=none
expect_rc "vm add importing a disk: 32775" 32775 "$(dmrep --json vm add "${VM}i" --disk vda="$W/imp.img")"
out=$(dmrep --json point receive "${VM}r" </dev/null)
expect_rc "point receive: 32775" 32775 "$out"
check "... the send and the receive say the pool is out of metadata space" \
	jq -e -s 'map(.error | test("out of metadata space")) | all' <<<"$sendj $out"
out=$(dmrep --json pool repair --wait)
expect_rc "a repair before the device grew: 32775" 32775 "$out"
check "... grow it first, nothing changed" jq -e '.error | test("grow its metadata device .* first")' <<<"$out"
check "nothing suspended" no_suspended_or_inactive

# ---- the metadata grown, repaired ------------------------------------------------------
truncate -s 4M "$W/pool.meta"
out=$(timeout 300 dmrep --json pool repair --wait)
check "the metadata file grown to 4 MiB, the repair works" job_ok "$out"
diag "repair: $(jq -c '{error_code, error_description, thin_check_before, thin_check_after, transaction_id}' <<<"$out")"
out=$(dmrep --json pool status)
check "the pool is healthy, with 1024 metadata blocks" jq -e '.health == "ok" and .meta_total_blocks == 1024' <<<"$out"
zz=$(head -c 4096 /dev/zero | tr '\0' z | sha256sum)
is "the writes acknowledged before it went read-only are there" "$zz $zz" \
	"$(dd if="$A" bs=4096 count=1 iflag=direct status=none | sha256sum) $(dd if="$B" bs=4096 count=1 iflag=direct status=none | sha256sum)"
diag "after the repair: metadata $(meta)"
check "the revert" job_ok "$(timeout 120 dmrep --json failover revert "$VM" --wait)"
is "the live disks hold what they held before the failover" "$LIVE" "$(sums)"
expect_rc "a point again" 0 "$(dmrep --json point create "$VM")"
check "writes again" round "$A" q
check "nothing suspended" no_suspended_or_inactive
lab_reboot
check "thin_check is clean on the grown metadata" thin_check -q "$W/pool.meta"
summary
