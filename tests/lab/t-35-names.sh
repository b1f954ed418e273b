#!/bin/bash
# Lab test: dm device names (issue 11, item 2).  "dmrep-VM-DISK" was one
# name for VM a-b's disk c and VM a's disk b-c: adding the second failed and
# its rollback removed the first VM's device.  Now the names differ
# (dmrep-VM:DISK, dmrep-VM:test:DISK); a device that has a VM's name but not
# its full UUID is refused (32774) and left alone; a VM name ending in -test
# is refused (32773); and devices an older agent left under the old names
# (same UUIDs, same state files) are renamed when the agent starts, open or
# not, for a thin VM, its test view and a classic VM.
set -u
. "$(dirname "$0")/lib/inittest.sh"

agent_setup
prepare_pool 512M 8M

# --- VM a-b with disk c, then VM a with disk b-c ----------------------------------
A=$VM-b        # VM "a-b" (disk c): the old name was dmrep-$VM-b-c
B=$VM          # VM "a"   (disk b-c): the old name was dmrep-$VM-b-c too
truncate -s 16M "$W/c.img" "$W/bc.img"
put "$W/c.img" c1
put "$W/bc.img" bc
out=$(dmrep --json vm add "$A" --disk c="$W/c.img")
expect_rc "vm add $A --disk c" 0 "$out"
put "/dev/dmrep/$A/c" c2        # the guest wrote since the import
out=$(dmrep --json vm add "$B" --disk b-c="$W/bc.img")
expect_rc "vm add $B --disk b-c succeeds beside $A's disk c" 0 "$out"
check "/dev/dmrep/$A/c is still there" test -b "/dev/dmrep/$A/c"
check "$A's disk c still holds what its guest wrote" has "/dev/dmrep/$A/c" c2
check "/dev/dmrep/$B/b-c holds its own import" has "/dev/dmrep/$B/b-c" bc
is "$A's disk is dmrep-$A:c with its UUID" "DMREP-disk-$A:c" "$(uuid_of "dmrep-$A:c")"
is "$B's disk is dmrep-$B:b-c with its UUID" "DMREP-disk-$B:b-c" "$(uuid_of "dmrep-$B:b-c")"
check "the stable links follow the UUIDs" sh -c "
	[ \"\$(readlink -f /dev/dmrep/$A/c)\" = \"\$(readlink -f /dev/mapper/dmrep-$A:c)\" ] &&
	[ \"\$(readlink -f /dev/dmrep/$B/b-c)\" = \"\$(readlink -f /dev/mapper/dmrep-$B:b-c)\" ]"
out=$(dmrep --json point create "$A")
expect_rc "a point of $A" 0 "$out"
out=$(dmrep --json point create "$B")
expect_rc "a point of $B" 0 "$out"
out=$(dmrep --json vm remove "$B")
expect_rc "vm remove $B" 0 "$out"
check "removing $B left $A's device and data alone" has "/dev/dmrep/$A/c" c2
check "vm show $A: replicating" eval "dmrep --json vm show '$A' | jq -e '.state == \"replicating\"'"

# --- a device with a VM's name and another UUID is never touched -------------------
# Hand-made, with a DMREP- UUID that is not the one the name means: the
# prefix alone would call it dmrep's.
F=${VM}f
dmsetup create "dmrep-$F:vda" -u "DMREP-disk-${F}x:vda" --table "0 32768 zero"
truncate -s 16M "$W/f.img"
out=$(dmrep --json vm add "$F" --disk vda="$W/f.img")
expect_rc "vm add over a device with its name and another UUID: 32774" 32774 "$out"
check "the refusal names the device" grep -q "dmrep-$F:vda" <<<"$out"
is "the other device is still there, unchanged" "DMREP-disk-${F}x:vda" "$(uuid_of "dmrep-$F:vda")"
out=$(dmrep --json vm show "$F")
expect_rc "no VM $F was recorded" 32779 "$out"
dmsetup remove "dmrep-$F:vda"

dmsetup create "dmrep-$A:test:c" -u "DMREP-labtest-$$-view" --table "0 32768 zero"
out=$(dmrep --json failover start "$A" --test --wait)
expect_rc "test failover with another device at the test view's name: 32774" 32774 "$out"
out=$(dmrep --json point create "$A")
expect_rc "point create while it is there: 32774 (nothing is suspended)" 32774 "$out"
is "the other device is left alone" "DMREP-labtest-$$-view" "$(uuid_of "dmrep-$A:test:c")"
check "$A's disk is untouched" has "/dev/dmrep/$A/c" c2
dmsetup remove "dmrep-$A:test:c"
out=$(dmrep --json failover start "$A" --test --wait)
check "once it is gone the test failover runs" job_ok "$out"
check "/dev/dmrep/$A-test/c shows the point" has "/dev/dmrep/$A-test/c" c2
is "the test view is dmrep-$A:test:c" "DMREP-test-$A:c" "$(uuid_of "dmrep-$A:test:c")"
out=$(dmrep --json failover stop-test "$A" --wait)
check "stop-test" job_ok "$out"
check "the test view is gone" test ! -e "/dev/mapper/dmrep-$A:test:c" -a ! -e "/dev/dmrep/$A-test/c"

# --- VM names ending in -test -------------------------------------------------
out=$(dmrep --json vm add "$A-test" --disk c="$W/t.img:8M")
expect_rc "vm add $A-test: 32773" 32773 "$out"
check "the reason says why" grep -q -- "-test" <<<"$out"
check "nothing was made for it" test ! -e "$W/t.img" -a ! -e "/dev/dmrep/$A-test/c"
out=$(dmrep --json vm show "$A-test")
expect_rc "no VM $A-test was recorded" 32779 "$out"
out=$(dmrep --json vm add "${VM}test" --disk c="$W/t.img:8M")
expect_rc "a name merely ending in 'test' is fine" 0 "$out"
# A VM that an older agent let be named $A-test: its disk c is
# /dev/dmrep/$A-test/c, the link $A's test view of c would take.
K=${VM}k
truncate -s 8M "$W/k.img"
out=$(dmrep --json vm add "$K" --backend classic --disk c="$W/k.img" --cow-size 4M)
expect_rc "classic VM $K" 0 "$out"
agent_stop
dmsetup remove "dmrep-$K:c" "dmrep-$K:c@origin"
jq --arg n "$A-test" '.name = $n' "$STATE/vms/$K.json" >"$STATE/vms/$A-test.json"
rm "$STATE/vms/$K.json"
agent_start || not_ok "the agent starts with a VM named $A-test"
udevadm settle
check "/dev/dmrep/$A-test/c is VM $A-test's disk" same_dev "/dev/dmrep/$A-test/c" "/dev/mapper/dmrep-$A-test:c"
out=$(dmrep --json failover start "$A" --test --wait)
expect_rc "a test failover of $A while VM $A-test exists: 32775" 32775 "$out"
check "the reason names VM $A-test" grep -q "$A-test" <<<"$out"
check "/dev/dmrep/$A-test/c is still VM $A-test's disk" same_dev "/dev/dmrep/$A-test/c" "/dev/mapper/dmrep-$A-test:c"
out=$(dmrep --json vm remove "$A-test")
expect_rc "VM $A-test can still be removed" 0 "$out"

# --- an older agent's devices: dmrep-VM-DISK, dmrep-VM-test-DISK -----------------
U=${VM}u
C=${VM}c
truncate -s 16M "$W/u1.img" "$W/u2.img" "$W/cl.img"
out=$(dmrep --json vm add "$U" --disk vda="$W/u1.img" --disk vdb="$W/u2.img")
expect_rc "thin VM $U" 0 "$out"
out=$(dmrep --json vm add "$C" --backend classic --disk vda="$W/cl.img" --cow-size 4M)
expect_rc "classic VM $C" 0 "$out"
put "/dev/dmrep/$U/vda" 11
put "/dev/dmrep/$U/vdb" 12
put "/dev/dmrep/$C/vda" 13
out=$(dmrep --json point create "$U")
expect_rc "a point of $U" 0 "$out"
out=$(dmrep --json point create "$C")
expect_rc "a point of $C" 0 "$out"
out=$(dmrep --json failover start "$U" --test --wait)
check "a test failover of $U" job_ok "$out"
put "/dev/dmrep/$U/vda" 21      # after the point: live only
agent_stop
# What an older agent leaves running: the same devices, UUIDs and state
# files, under its names.
dmsetup rename "dmrep-$U:vda" "dmrep-$U-vda"
dmsetup rename "dmrep-$U:vdb" "dmrep-$U-vdb"
dmsetup rename "dmrep-$U:test:vda" "dmrep-$U-test-vda"
dmsetup rename "dmrep-$U:test:vdb" "dmrep-$U-test-vdb"
dmsetup rename "dmrep-$C:vda" "dmrep-$C-vda"
udevadm settle
check "the old names are in place" test -b "/dev/mapper/dmrep-$U-vda" -a -b "/dev/mapper/dmrep-$U-test-vdb" -a -b "/dev/mapper/dmrep-$C-vda"
exec 3<"/dev/mapper/dmrep-$U-vda"   # a guest holds the disk open meanwhile
agent_start || not_ok "the new agent starts over the old names"
udevadm settle
for n in "$U:vda" "$U:vdb" "$U:test:vda" "$U:test:vdb" "$C:vda"; do
	check "dmrep-$n is back under its name" test -b "/dev/mapper/dmrep-$n"
done
check "no device is left under an old name" test ! -e "/dev/mapper/dmrep-$U-vda" -a ! -e "/dev/mapper/dmrep-$U-test-vda" -a ! -e "/dev/mapper/dmrep-$C-vda"
is "the renamed disk kept its UUID" "DMREP-disk-$U:vda" "$(uuid_of "dmrep-$U:vda")"
check "the agent says it renamed them" grep -q "renamed dmrep-$U-vda to dmrep-$U:vda" "$W/dmrepd.log"
check "/dev/dmrep/$U/vda is the renamed device" same_dev "/dev/dmrep/$U/vda" "/dev/mapper/dmrep-$U:vda"
check "/dev/dmrep/$U-test/vdb is the renamed view" same_dev "/dev/dmrep/$U-test/vdb" "/dev/mapper/dmrep-$U:test:vdb"
check "/dev/dmrep/$C/vda is the renamed classic device" same_dev "/dev/dmrep/$C/vda" "/dev/mapper/dmrep-$C:vda"
check "the open disk kept its data" has "/dev/dmrep/$U/vda" 21
check "vdb kept its data" has "/dev/dmrep/$U/vdb" 12
check "the classic disk kept its data" has "/dev/dmrep/$C/vda" 13
check "the test view kept the point" has "/dev/dmrep/$U-test/vda" 11
exec 3<&-
show=$(dmrep --json vm show "$U")
check "vm show $U: replicating, test failover, devices" jq -e --arg vm "$U" '.state == "replicating" and
	.test_failover == true and .disks[0].device == "/dev/dmrep/\($vm)/vda"' <<<"$show"
out=$(dmrep --json point create "$U")
expect_rc "a point of $U after the upgrade" 0 "$out"
out=$(dmrep --json point create "$C")
expect_rc "a point of $C after the upgrade" 0 "$out"
out=$(dmrep --json failover stop-test "$U" --wait)
check "stop-test of the renamed view" job_ok "$out"
check "the renamed view is gone" test ! -e "/dev/mapper/dmrep-$U:test:vda" -a ! -e "/dev/dmrep/$U-test/vda"
out=$(dmrep --json failover start "$U" --point 1 --guest resume --wait)
check "failover of $U to its first point" job_ok "$out"
check "$U's disk shows the point" has "/dev/dmrep/$U/vda" 11
out=$(dmrep --json failover revert "$U" --guest resume --wait)
check "revert" job_ok "$out"
check "$U's disk is live again" has "/dev/dmrep/$U/vda" 21
out=$(dmrep --json failover start "$C" --wait)
check "failover of the classic VM $C" job_ok "$out"
check "$C's disk shows its point" has "/dev/dmrep/$C/vda" 13
out=$(dmrep --json failover revert "$C" --wait)
check "revert of $C" job_ok "$out"
out=$(dmrep --json vm remove "$C")
expect_rc "vm remove of the classic VM" 0 "$out"
check "its device is gone" test ! -e "/dev/mapper/dmrep-$C:vda"

# An old name whose new name another device holds: left alone, said so.
agent_stop
dmsetup rename "dmrep-$U:vdb" "dmrep-$U-vdb"
dmsetup create "dmrep-$U:vdb" -u "DMREP-labtest-$$-squat" --table "0 32768 zero"
agent_start || not_ok "the agent starts"
is "the old-named disk is left under its old name" "DMREP-disk-$U:vdb" "$(uuid_of "dmrep-$U-vdb")"
is "the other device is left alone" "DMREP-labtest-$$-squat" "$(uuid_of "dmrep-$U:vdb")"
check "the log says why" grep -q "cannot rename dmrep-$U-vdb" "$W/dmrepd.log"
out=$(dmrep --json point create "$U")
expect_rc "point create on that VM: 32774" 32774 "$out"
check "vdb still holds its data" has "/dev/mapper/dmrep-$U-vdb" 12
dmsetup remove "dmrep-$U:vdb"

summary
