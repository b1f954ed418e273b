#!/bin/bash
# Lab test: dmrepd + dmrep on real device-mapper (issue: the agent).
# A pool on sparse files, a VM with three disks imported from images,
# five points with distinct patterns verified through the pool, retention,
# a restarted agent, bad names and paths, authorization, a pool too small,
# connection limits and idle clients (dmrepd --max-clients-per-uid, --idle-timeout).
set -u
. "$(dirname "$0")/lib/inittest.sh"

agent_setup

# --- pool -------------------------------------------------------------
mkfs.ext4 -q -F "$W/has-fs.img" 64M >/dev/null 2>&1 || truncate -s 64M "$W/has-fs.img"
out=$(dmrep --json pool create --data "$W/has-fs.img" --meta "$W/m0.img" --meta-size 8M)
expect_rc "pool create on a file with ext4 is refused" 32773 "$out"
check "the refusal names the signature" grep -q ext4 <<<"$out"
check "nothing was left behind by the refusal" test ! -e "$W/m0.img" -a ! -b /dev/mapper/dmrep-pool

prepare_pool 1G 16M "pool create on new sparse files"
check "pool device is a block device" test -b /dev/mapper/dmrep-pool
out=$(dmrep --json pool status)
check "pool status shows data use" jq -e '.data_total_blocks > 0 and .data_used_blocks == 0 and .mode == "rw"' <<<"$out"
check "pool errors rather than queues when full" jq -e '.no_space_policy == "error"' <<<"$out"
out=$(dmrep --json pool create --data "$W/p2.data" --data-size 1G --meta "$W/p2.meta")
expect_rc "a second pool is refused" 32775 "$out"

# --- a VM with three disks from images --------------------------------
for d in vda vdb vdc; do
	truncate -s 32M "$W/$d.img"
	# Leave most of it a hole so the import's zero skipping shows.
	pattern "$d-import" | dd of="$W/$d.img" bs=4096 seek=100 conv=notrunc status=none
done
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img" --disk vdb="$W/vdb.img" --disk vdc="$W/vdc.img")
expect_rc "vm add with three image disks" 0 "$out"
for d in vda vdb vdc; do
	check "/dev/dmrep/$VM/$d is a block device (udev link)" test -b "/dev/dmrep/$VM/$d"
	check "$d holds the imported image" cmp -s "$W/$d.img" "/dev/dmrep/$VM/$d"
done
out=$(dmrep --json pool status)
check "import stayed thin (zero blocks skipped)" jq -e '.data_used_blocks < 16' <<<"$out"
out=$(dmrep --json vm show "$VM")
check "vm show matches the contract" jq -e --arg vm "$VM" '.name == $vm and .state == "replicating"
	and .test_failover == false and .backend == "thin" and (.disks | length) == 3
	and .disks[0].device == "/dev/dmrep/\($vm)/vda" and .disks[0].size_bytes == 33554432
	and .disks[0].target == "live" and .failover_point == null' <<<"$out"
out=$(dmrep --json vm list)
check "vm list has the VM" jq -e --arg vm "$VM" 'map(.name) | index($vm) != null' <<<"$out"

# --- five points, each disk a distinct pattern per moment -------------
for i in 1 2 3 4 5; do
	for d in vda vdb vdc; do
		pattern "$d-$i" | dd of="/dev/dmrep/$VM/$d" bs=4096 seek=8 oflag=direct conv=notrunc status=none
	done
	out=$(dmrep --json point create "$VM" --label "round $i")
	expect_rc "point create $i" 0 "$out"
	check "point create $i returns point $i" jq -e --argjson i "$i" '.point == $i' <<<"$out"
done
# Writes after the last point must not show in it.
for d in vda vdb vdc; do
	pattern "$d-after" | dd of="/dev/dmrep/$VM/$d" bs=4096 seek=8 oflag=direct conv=notrunc status=none
done
out=$(dmrep --json point list "$VM")
check "point list: five points, oldest first, contract fields" jq -e 'length == 5 and
	(map(.id) == [1,2,3,4,5]) and all(.[]; .valid == true and .consistency == "crash"
	and (.created | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")))
	and .[2].label == "round 3"' <<<"$out"
bad=0
for i in 1 2 3 4 5; do
	k=0
	for d in vda vdb vdc; do
		id=$(jq -r --argjson i "$i" --argjson k "$k" '.[] | select(.id == $i) | .thin_ids[$k]' <<<"$out")
		point_matches "$id" 32M "$d-$i" || { bad=1; echo "# point $i disk $d (thin $id) wrong" >&2; }
		k=$((k + 1))
	done
done
check "every point holds, on every disk, exactly the pattern of its moment" test "$bad" = 0

# --- retention -----------------------------------------------------------
out=$(dmrep --json vm retention "$VM" --keep-last 3)
expect_rc "retention keep-last 3" 0 "$out"
out=$(dmrep --json point list "$VM")
check "retention dropped the two oldest points" jq -e 'map(.id) == [3,4,5]' <<<"$out"
out=$(dmrep --json point create "$VM")
check "the next point is 6" jq -e '.point == 6' <<<"$out"
check "retention keeps three" eval "dmrep --json point list '$VM' | jq -e 'map(.id) == [4,5,6]'"
out=$(dmrep --json point remove "$VM" 5)
expect_rc "point remove 5" 0 "$out"
out=$(dmrep --json point remove "$VM" 5)
expect_rc "removing it again: not found" 32779 "$out"
out=$(dmrep --json point list "$VM")
check "point list after removal" jq -e 'map(.id) == [4,6]' <<<"$out"

# --- the agent restarts and knows the same VMs and points ----------------
before_vm=$(dmrep --json vm show "$VM")
before_pts=$(dmrep --json point list "$VM")
agent_restart
check "restarted agent reports the same VM" test "$(dmrep --json vm show "$VM")" = "$before_vm"
check "restarted agent reports the same points" test "$(dmrep --json point list "$VM")" = "$before_pts"
out=$(dmrep --json point create "$VM")
check "points go on from 7 after the restart" jq -e '.point == 7' <<<"$out"

# --- bad names and paths ---------------------------------------------------
long=$(printf 'x%.0s' $(seq 300))
for name in '../x' "$long" '' 'vm é' 'a b' 'a;rm' '$(id)' '-rf' '.' '..' 'a/b' 'a:b'; do
	out=$(dmrep --json vm add -- "$name" --disk vda="$W/new-$RANDOM.img:16M" 2>/dev/null)
	expect_rc "VM name '${name:0:20}' is refused" 32773 "$out"
done
out=$(dmrep --json vm add "${VM}n" --disk '../d'="$W/n1.img:16M")
expect_rc "disk name '../d' is refused" 32773 "$out"
# The agent has another working directory and refuses relative paths; the
# client resolves one against the caller's, so this succeeds (an empty disk:
# the path names no file, only the pool volume is made).
out=$(cd "$W" && dmrep --json vm add "${VM}r" --disk vda=relative.img:16M)
expect_rc "a relative path is taken relative to the caller" 0 "$out"
out=$(dmrep --json vm remove "${VM}r")
expect_rc "and that VM is removed again" 0 "$out"
out=$(dmrep --json vm add "${VM}n" --disk vda=/dev/null)
expect_rc "a character device is refused" 32773 "$out"
out=$(dmrep --json vm add "${VM}n" --disk vda="$W")
expect_rc "a directory is refused" 32773 "$out"
out=$(dmrep --json vm add "${VM}n" --disk vda="/dev/mapper/dmrep-$VM:vda")
expect_rc "a device dmrep owns is refused" 32773 "$out"
out=$(dmrep --json vm add "${VM}n" --disk vda=/dev/mapper/dmrep-pool)
expect_rc "the pool device is refused" 32773 "$out"
out=$(dmrep --json vm show nosuchvm)
expect_rc "an unknown VM is not found" 32779 "$out"
check "no VM was left behind by the refusals" eval "dmrep --json vm list | jq -e 'length == 1'"

# --- an empty disk, and a pool too small for an import --------------------
out=$(dmrep --json vm add "${VM}e" --disk data="$W/absent.img:64M")
expect_rc "vm add with an empty disk of 64M" 0 "$out"
check "the empty disk has 64M" test "$(blockdev --getsize64 "/dev/dmrep/${VM}e/data")" = 67108864
check "the empty disk reads zeros" cmp -s -n 1048576 /dev/zero "/dev/dmrep/${VM}e/data"
# udev: a point carries the same filesystem UUID as its disk; the rules keep
# every internal DMREP- device out of blkid scanning, the disk itself not.
mkfs.ext4 -q -F "/dev/dmrep/${VM}e/data" >/dev/null 2>&1
udevadm trigger --action=change --settle "/dev/mapper/dmrep-${VM}e:data" 2>/dev/null || udevadm settle
check "the stable disk is scanned: udev knows its ext4" \
	sh -c "udevadm info -q property -n '/dev/mapper/dmrep-${VM}e:data' | grep -qx 'ID_FS_TYPE=ext4'"
out=$(dmrep --json point create "${VM}e")
expect_rc "a point of the disk with ext4" 0 "$out"
pid=$(dmrep --json point list "${VM}e" | jq -r '.[0].thin_ids[0]')
pdev=${T}scan
thin_view scan "$pid" 131072
udevadm settle
props=$(udevadm info -q property -n "/dev/mapper/$pdev" 2>/dev/null)
check "an internal DMREP- device gets DM_NOSCAN=1" grep -qx 'DM_NOSCAN=1' <<<"$props"
check "and is not scanned: no ID_FS_TYPE although it holds ext4" sh -c "! grep -q '^ID_FS_TYPE=' <<EOF
$props
EOF"
fsuuid=$(blkid -p -s UUID -o value "/dev/mapper/dmrep-${VM}e:data")
check "the filesystem's by-uuid link still names the VM's disk, not the point" \
	test "$(readlink -f "/dev/disk/by-uuid/$fsuuid")" = "$(readlink -f "/dev/mapper/dmrep-${VM}e:data")"
dmsetup remove --retry "$pdev" >/dev/null 2>&1

# 1100 MiB allocated (zeros count: the up-front check goes by allocated
# blocks, not content) against a 1 GiB pool.
fallocate -l 1100M "$W/big.img" 2>/dev/null || dd if=/dev/zero of="$W/big.img" bs=1M count=1100 status=none
used_before=$(dmrep --json pool status | jq .data_used_blocks)
out=$(dmrep --json vm add "${VM}b" --disk vda="$W/big.img")
expect_rc "an import larger than the pool's free space is refused" 32778 "$out"
check "nothing was written to the pool" test "$(dmrep --json pool status | jq .data_used_blocks)" = "$used_before"
check "no device was made for it" test ! -e "/dev/mapper/dmrep-${VM}b:vda"
rm -f "$W/big.img"

# --- authorization -----------------------------------------------------------
# Let nobody reach the socket, so the agent's own check is what refuses.
chmod o+x "$(dirname "$SOCK")"; chmod o+rw "$SOCK"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
out=$(as_nobody dmrep --socket "$SOCK" --json vm show "$VM")
expect_rc "an unprivileged peer may read" 0 "$(jq -c '{return: (if .name then 0 else .return end)}' <<<"$out")"
for cmd in "pool create --data $W/x.d --data-size 1G --meta $W/x.m" \
	   "vm add ${VM}x --disk vda=$W/x.img:16M" "vm remove $VM" "vm retention $VM --keep-last 1" \
	   "point create $VM" "point remove $VM 4"; do
	out=$(as_nobody dmrep --socket "$SOCK" --json $cmd)
	expect_rc "unprivileged: ${cmd%% --*} is denied" 32769 "$out"
done
chmod o-rw "$SOCK"
out=$(as_nobody dmrep --socket "$SOCK" --json vm list)
expect_rc "a peer that may not open the socket gets 32769" 32769 "$out"
as_nobody dmrep --socket "$SOCK" vm list >/dev/null 2>&1
check "its exit status is 32769 - 32767 = 2" test $? = 2

# --- connection limits, idle clients ----------------------------------------
# The real dmrepd's options: two connections a uid, 5 s idle.  Two silent
# connections of nobody hold its slots; a third is refused with 32777 and
# why, root is served; the silent ones are closed once idle, and nobody
# gets in again.
DMREPD_ARGS="--max-clients-per-uid 2 --idle-timeout 5" agent_restart
chmod o+rw "$SOCK"
t0=$(date +%s)
holders=()
for i in 1 2; do
	as_nobody socat -u "UNIX-CONNECT:$SOCK" STDOUT >"$W/hold$i.out" 2>&1 &
	holders+=($!)
done
sleep 1
out=$(as_nobody dmrep --socket "$SOCK" --json vm list 2>/dev/null)
expect_rc "a uid over its connection cap is refused" 32777 "$out"
check "the refusal says why" jq -e '.error | test("too many connections from uid 65534")' <<<"$out"
out=$(dmrep --json vm list)
expect_rc "root is served meanwhile" 0 "$(jq -c '{return: (if type == "array" then 0 else .return end)}' <<<"$out")"
for _ in $(seq 200); do
	kill -0 "${holders[0]}" 2>/dev/null || kill -0 "${holders[1]}" 2>/dev/null || break
	lab_nap 0.1
done
check "the silent connections were closed" sh -c "! kill -0 ${holders[0]} && ! kill -0 ${holders[1]}"
wait "${holders[@]}" 2>/dev/null
check "not before the idle timeout" test $(( $(date +%s) - t0 )) -ge 5
check "each was told why (32772)" sh -c "grep -q '\"return\":32772' '$W/hold1.out' && grep -q '\"return\":32772' '$W/hold2.out'"
out=$(as_nobody dmrep --socket "$SOCK" --json vm list)
expect_rc "then nobody is served again" 0 "$(jq -c '{return: (if type == "array" then 0 else .return end)}' <<<"$out")"
chmod o-rw "$SOCK"

# --- removal ---------------------------------------------------------------
out=$(dmrep --json vm remove "${VM}e")
expect_rc "vm remove" 0 "$out"
check "its device is gone" test ! -e "/dev/mapper/dmrep-${VM}e:data"
exec 7<"/dev/dmrep/$VM/vda"
out=$(dmrep --json vm remove "$VM")
expect_rc "removing a VM whose disk is open is refused" 32774 "$out"
exec 7<&-
check "the refused VM is intact" test -b "/dev/dmrep/$VM/vda"

agent_stop
summary
