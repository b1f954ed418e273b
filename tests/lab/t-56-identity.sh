#!/bin/bash
# Lab test: kernel names do not survive a power loss (issue 11, item 3).
# A classic VM on a disk given by path (/dev/loopN over an image attached
# by hand), a point, a thin VM in a pool on files; then a power loss (the
# agent SIGKILLed, every device and loop gone).  The image comes back on
# another loop, and the agent attaches its pool files to the loops that are
# free: the pool's metadata lands on the very /dev/loopN the classic VM was
# added by.  The agent must leave the classic VM down (vm show says why,
# and the log), make no device of it over the pool's metadata, and the
# pool and the thin VM must be intact even when a guest writes to whatever
# /dev/dmrep/VM/vda is.  Once the image is back at its path the VM comes
# back.  A state file from before identities were recorded is treated as
# unknown but never matches the pool's devices, and learns its identity
# once it is unambiguous.  A point's COW store on a device given by path
# is checked likewise.  A pool made on block devices by path is left down
# when they come back swapped.
set -u
. "$(dirname "$0")/lib/inittest.sh"

backing() { losetup -n -O BACK-FILE "$1" 2>/dev/null; }
devno() { printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; }
# stacked_on DEV: names of dm devices whose table uses DEV, but the pool.
stacked_on() {
	local d
	d=$(devno "$1")
	dmsetup table 2>/dev/null | awk -v d="$d" '$1 != "dmrep-pool:" { for (i = 4; i <= NF; i++) if ($i == d) print $1 }'
}
# guest_writes VM: what a guest started on /dev/dmrep/VM/vda does.
guest_writes() {
	if [ -b "/dev/dmrep/$1/vda" ]; then
		head -c 4M /dev/urandom | dd of="/dev/dmrep/$1/vda" bs=1M oflag=direct conv=notrunc status=none
	fi
	return 0
}

agent_setup
W=$(realpath "$W") # the kernel reports backing files by their real path
CV=${VM}c
out=$(dmrep --json pool create --data "$W/pool.data" --data-size 64M --meta "$W/pool.meta" --meta-size 32M)
expect_rc "pool create on files" 0 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/t.img:16M")
expect_rc "a thin VM" 0 "$out"
put "/dev/dmrep/$VM/vda" 7a

# The image is as large as the pool's metadata: the kernel takes a table
# over a device of the same size (over a smaller one it refuses, and the
# power loss would look harmless).
truncate -s 32M "$W/c.img"
CLOOP=$(losetup -f --show "$W/c.img")
put "$CLOOP" c0
out=$(dmrep --json vm add "$CV" --backend classic --disk vda="$CLOOP" --cow-size 4M)
expect_rc "a classic VM on $CLOOP, attached by hand" 0 "$out"
show=$(dmrep --json vm show "$CV")
check "vm show: the disk's identity is the loop's backing file" \
	jq -e --arg f "$W/c.img" '.disks[0].identity.loop_file == $f and .down_reason == null' <<<"$show"
check "the state file records it" jq -e --arg f "$W/c.img" '.disks[0].identity.loop_file == $f and .disks[0].identity.loop_inode > 0' \
	"$STATE/vms/$CV.json"
out=$(dmrep --json point create "$CV")
expect_rc "classic point 1" 0 "$out"
put "/dev/dmrep/$CV/vda" c1

# --- power loss; the image comes back on another loop -------------------------------
power_loss
check "the power loss took every loop over the test's files" test -z "$(losetup -j "$W/c.img" -n -O NAME)"
NEWLOOP=$(losetup -f --show "$W/c.img")
diag "the image was on $CLOOP, is on $NEWLOOP now"
COW_SUM=$(cat "$STATE"/cow/*.cow | md5sum)
agent_start || not_ok "the agent starts after the power loss"
is "the agent attached the pool's metadata to $CLOOP (the scenario)" "$W/pool.meta" "$(backing "$CLOOP")"
show=$(dmrep --json vm show "$CV")
check "vm show: the classic VM is down and says why" \
	jq -e --arg f "$W/pool.meta" '.down_reason | type == "string" and contains($f) and contains("not the disk that was added")' <<<"$show"
diag "down_reason: $(jq -r .down_reason <<<"$show")"
check "the reason says where the image is now" jq -e --arg l "$NEWLOOP" '.down_reason | contains($l)' <<<"$show"
check "the log says so" grep -q "VM $CV: left down, nothing written" "$W/dmrepd.log"
check "no stable device of the classic VM" test ! -e "/dev/mapper/dmrep-$CV-vda"
is "no device stacked on the pool's metadata device but the pool" "" "$(stacked_on "$CLOOP")"
guest_writes "$CV"
check "the thin VM's data is intact" has "/dev/dmrep/$VM/vda" 7a
check "the pool is read-write, no needs_check" \
	eval "dmrep --json pool status | jq -e '.mode == \"rw\" and .needs_check == false'"
out=$(dmrep --json point create "$VM")
expect_rc "a thin point can still be made" 0 "$out"
out=$(dmrep --json point create "$CV")
expect_rc "a point of the down VM is refused (32777)" 32777 "$out"
out=$(dmrep --json failover start "$CV" --guest resume)
expect_rc "a failover of the down VM is refused (32777)" 32777 "$out"
agent_stop
check "the classic VM's COW stores were not written" test "$COW_SUM" = "$(cat "$STATE"/cow/*.cow | md5sum)"
check "the image itself holds its data" has "$NEWLOOP" c1

# --- the disk is back at its path: the VM comes back ----------------------------------
lab_reboot
losetup "$CLOOP" "$W/c.img"
agent_start || not_ok "the agent starts with the image at its path"
check "vm show: up again" jq -e '.down_reason == null' <<<"$(dmrep --json vm show "$CV")"
check "the classic VM's disk is back with its data" has "/dev/dmrep/$CV/vda" c1
check "its point is back with its moment" \
	has "/dev/mapper/dmrep-snap-$(dmrep --json point list "$CV" | jq -r '.[0].thin_ids[0]')" c0
check "the thin VM is back" has "/dev/dmrep/$VM/vda" 7a

# --- a state file from before identities ------------------------------------------------
agent_stop
jq 'del(.disks[].identity)' "$STATE/vms/$CV.json" >"$W/old.json" && mv "$W/old.json" "$STATE/vms/$CV.json"
lab_reboot
NEWLOOP=$(losetup -f --show "$W/c.img")
agent_start || not_ok "the agent starts on an old state file"
is "the pool's metadata is on $CLOOP again" "$W/pool.meta" "$(backing "$CLOOP")"
show=$(dmrep --json vm show "$CV")
check "unknown identity: still never the pool's metadata device" \
	jq -e '.down_reason | type == "string" and contains("pool")' <<<"$show"
diag "down_reason: $(jq -r .down_reason <<<"$show")"
is "no device stacked on the pool's metadata device" "" "$(stacked_on "$CLOOP")"
guest_writes "$CV"
check "the thin VM's data is intact" has "/dev/dmrep/$VM/vda" 7a
agent_stop
lab_reboot
losetup "$CLOOP" "$W/c.img"
agent_start || not_ok "the agent starts, old state file, image at its path"
check "unknown identity on a free device: up, trusted by path" \
	jq -e '.down_reason == null' <<<"$(dmrep --json vm show "$CV")"
check "and said so in the log" grep -q "identity of $CLOOP was never recorded" "$W/dmrepd.log"
check "not recorded while ambiguous" jq -e '.disks[0].identity == null' "$STATE/vms/$CV.json"
agent_restart
check "recorded once the live devices show it" \
	jq -e --arg f "$W/c.img" '.disks[0].identity.loop_file == $f' "$STATE/vms/$CV.json"

# --- a point's COW store on a device given by path -------------------------------------
truncate -s 16M "$W/cowdev.img" "$W/decoy.img"
CDEV=$(losetup -f --show "$W/cowdev.img")
out=$(dmrep --json point create "$CV" --cow-dev vda="$CDEV")
expect_rc "a point with its COW store on $CDEV" 0 "$out"
P2=$(jq -r .point <<<"$out")
S2=$(dmrep --json point list "$CV" | jq -r --argjson p "$P2" '.[] | select(.id == $p) | .thin_ids[0]')
check "the store device's identity is kept beside its link" \
	jq -e --arg f "$W/cowdev.img" '.loop_file == $f' "$STATE/cow-id/$S2.json"
put "/dev/dmrep/$CV/vda" c2
power_loss
losetup "$CLOOP" "$W/c.img"
losetup "$CDEV" "$W/decoy.img"
DECOY_SUM=$(md5sum <"$W/decoy.img")
agent_start || not_ok "the agent starts with another file on the store's loop"
show=$(dmrep --json vm show "$CV")
check "the VM is down: its point's COW store device is another" \
	jq -e --arg f "$W/decoy.img" '.down_reason | type == "string" and contains("COW store") and contains($f)' <<<"$show"
diag "down_reason: $(jq -r .down_reason <<<"$show")"
is "no device stacked on $CDEV" "" "$(stacked_on "$CDEV")"
guest_writes "$CV"
agent_stop
check "the device at the store's old path was not written" test "$DECOY_SUM" = "$(md5sum <"$W/decoy.img")"
lab_reboot
losetup "$CLOOP" "$W/c.img"
losetup "$CDEV" "$W/cowdev.img"
agent_start || not_ok "the agent starts with the store's device back"
check "up again" jq -e '.down_reason == null' <<<"$(dmrep --json vm show "$CV")"
check "the point on the device store holds its moment" has "/dev/mapper/dmrep-snap-$S2" c1
check "the disk its data" has "/dev/dmrep/$CV/vda" c2

# --- a pool on block devices by path comes back swapped ---------------------------------
agent_stop
lab_reboot
rm -rf "$STATE"
truncate -s 64M "$W/pd.img"
truncate -s 64M "$W/pm.img"
PD=$(losetup -f --show "$W/pd.img")
PM=$(losetup -f --show "$W/pm.img")
agent_start || not_ok "a fresh agent"
out=$(dmrep --json pool create --data "$PD" --meta "$PM")
expect_rc "pool create on $PD and $PM" 0 "$out"
check "pool.json records what they are" \
	jq -e --arg d "$W/pd.img" --arg m "$W/pm.img" '.data_identity.loop_file == $d and .meta_identity.loop_file == $m' \
	"$STATE/pool.json"
out=$(dmrep --json vm add "$VM" --disk vda="$W/t2.img:8M")
expect_rc "a thin VM in it" 0 "$out"
put "/dev/dmrep/$VM/vda" 5d
power_loss
losetup "$PD" "$W/pm.img"
losetup "$PM" "$W/pd.img"
PD_SUM=$(md5sum <"$W/pd.img")
PM_SUM=$(md5sum <"$W/pm.img")
agent_start || not_ok "the agent starts with the pool's devices swapped"
out=$(dmrep --json pool status)
check "pool status: down, why and what to do" jq -e --arg f "$W/pm.img" \
	'.active == false and .mode == "down" and .health == "fail" and (.reason | contains($f)) and (.advice | contains("restart dmrepd"))' <<<"$out"
out=$(dmrep --json point create "$VM")
expect_rc "a point of its thin VM: 32775" 32775 "$out"
check "... the pool is down, and why" jq -e --arg f "$W/pm.img" '.error | startswith("the pool is down: ") and contains($f)' <<<"$out"
check "the pool was not activated" test ! -e /dev/mapper/dmrep-pool
check "the log says so" grep -q "pool left down" "$W/dmrepd.log"
agent_stop
check "neither device was written" test "$PD_SUM $PM_SUM" = "$(md5sum <"$W/pd.img") $(md5sum <"$W/pm.img")"
lab_reboot
losetup "$PD" "$W/pd.img"
losetup "$PM" "$W/pm.img"
agent_start || not_ok "the agent starts with the pool's devices in place"
check "the pool is back, and its VM's data" has "/dev/dmrep/$VM/vda" 5d
summary
