#!/bin/bash
# Lab test: the stack under a thin VM's stable devices (issue 13).  Each
# stable device /dev/dmrep/VM/DISK is one `linear` target over the own
# device of the volume it shows (dmrep-thin-ID, a `thin` target, hidden
# from udev's other rules), so a failover's guest pause swaps linear tables
# only.  Checked on real device-mapper: the shape after add, failover,
# revert, commit and a reboot; a point suspends the volumes' devices, not
# the stable ones; what is removed goes with its volume; and an older
# dmrep's stable devices (the thin target itself) are moved onto the stack
# when the agent starts, the disk open and its data the same, the device
# never removed (same number, same open descriptor).
set -u
. "$(dirname "$0")/lib/inittest.sh"

DISKS="vda vdb"

# The table of dm device $1: "TYPE PARAMS" of its single target.
tab() { dmsetup table "$1" 2>/dev/null | awk '{ $1 = $2 = ""; sub(/^  /, ""); print }'; }
# The id the state file says disk $1 shows: its overlay while failed over.
live_id() { jq -r ".disks[$1].thin_id" "$STATE/vms/$VM.json"; }
overlay_id() { jq -r ".overlay_ids[$1]" "$STATE/vms/$VM.json"; }
# stacked K ID: disk K's stable device is `linear` over dmrep-thin-ID at
# offset 0, and that device is the thin volume ID with a DMREP-thin- UUID.
stacked() {
	local d=${DISK_NAMES[$1]} want
	want="linear $(dm_devno "dmrep-thin-$2") 0"
	[ "$(tab "dmrep-$VM:$d")" = "$want" ] || return 1
	tab "dmrep-thin-$2" | grep -qE "^thin [0-9]+:[0-9]+ $2\$" || return 1
	[ "$(uuid_of "dmrep-thin-$2")" = "DMREP-thin-$2" ]
}
all_stacked_on() { # live|overlay
	local k
	for k in 0 1; do stacked "$k" "$("${1}_id" "$k")" || return 1; done
}
vol_devs() { dmsetup info -c --noheadings -o name 2>/dev/null | grep -c '^dmrep-thin-' || true; }
DISK_NAMES=(vda vdb)

lab_need thin_ls
agent_setup
prepare_pool 256M 8M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:16M")
expect_rc "vm add with two disks" 0 "$out"

check "each stable device is linear over its live volume's own device" all_stacked_on live
is "one volume device per disk" 2 "$(vol_devs)"
check "the stable device keeps its /dev/dmrep link" same_dev "/dev/dmrep/$VM/vda" "/dev/mapper/dmrep-$VM:vda"
check "no /dev/dmrep link for a volume's device" test -z "$(find /dev/dmrep -lname "*/dm-$(dmsetup info -c --noheadings -o minor "dmrep-thin-$(live_id 0)" | tr -d ' ')" 2>/dev/null)"
if command -v udevadm >/dev/null; then
	dm=$(basename "$(readlink -f "/dev/mapper/dmrep-thin-$(live_id 0)")")
	check "udev leaves a volume's device alone (SYSTEMD_READY=0, DM_NOSCAN=1)" eval \
		"udevadm info -q property -n /dev/$dm | grep -qx SYSTEMD_READY=0 && udevadm info -q property -n /dev/$dm | grep -qx DM_NOSCAN=1"
fi

put_all a
# A point suspends the thin targets (the volumes' devices); the stable
# devices above only queue.  Seen from the kernel: every resume sends a
# change uevent for its device.
dm_of() { basename "$(readlink -f "/dev/mapper/$1")"; }
stable_dm=$(dm_of "dmrep-$VM:vda") vol_dm=$(dm_of "dmrep-thin-$(live_id 0)")
udevadm monitor --kernel --subsystem-match=block >"$W/uevents" 2>/dev/null &
MON=$!
sleep 1
out=$(dmrep --json point create "$VM" --label a)
expect_rc "point 1 (pattern a)" 0 "$out"
sleep 1
stop_pid MON
check "the point suspended and resumed the live volume's device ($vol_dm)" \
	grep -qE "change +/devices/virtual/block/$vol_dm \(block\)" "$W/uevents"
check "and not the stable device ($stable_dm)" \
	eval "! grep -qE 'change +/devices/virtual/block/$stable_dm \(block\)' '$W/uevents'"
check "after the point: still on the live volumes" all_stacked_on live
put_all b

out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
expect_rc "failover to point 1" 0 "$out"
check "each stable device is linear over its overlay's own device" all_stacked_on overlay
check "the live volumes' devices stay up" test -b "/dev/mapper/dmrep-thin-$(live_id 0)"
is "four volume devices (live and overlay, two disks)" 4 "$(vol_devs)"
check "the failed-over disks show the point" all_have a
check "no DMREP- device is suspended or has a table loaded" no_suspended_or_inactive
ov0=$(overlay_id 0)

out=$(dmrep --json failover revert "$VM" --wait)
expect_rc "revert" 0 "$out"
check "back on the live volumes' devices" all_stacked_on live
check "the overlays' devices went with them" test ! -e "/dev/mapper/dmrep-thin-$ov0"
is "two volume devices again" 2 "$(vol_devs)"
check "the live disks hold pattern b" all_have b

out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
expect_rc "failover again" 0 "$out"
old0=$(live_id 0)
out=$(dmrep --json failover commit "$VM" --wait)
expect_rc "commit" 0 "$out"
check "committed: the overlays are the live volumes, the stable devices stay on them" all_stacked_on live
check "the old live volume's device is gone" test ! -e "/dev/mapper/dmrep-thin-$old0"
is "two volume devices after the commit" 2 "$(vol_devs)"
check "the committed disks hold pattern a" all_have a

lab_reboot
agent_start || not_ok "agent starts after a reboot"
check "after a reboot: the stack is back" all_stacked_on live
check "the disks still hold pattern a" all_have a

# An older dmrep's devices: the stable device is the thin target itself.
# Made here as that dmrep left them (agent stopped, each stable device
# swapped by hand to `thin POOL ID`, the volume's device removed), a reader
# holding vda open across the restart.
agent_stop
pool=$(dm_devno dmrep-pool)
for k in 0 1; do
	d=${DISK_NAMES[$k]} id=$(live_id "$k")
	size=$(blockdev --getsz "/dev/mapper/dmrep-$VM:$d")
	dmsetup load "dmrep-$VM:$d" --table "0 $size thin $pool $id" &&
		dmsetup suspend "dmrep-$VM:$d" && dmsetup resume "dmrep-$VM:$d" &&
		dmsetup remove "dmrep-thin-$id" || not_ok "make disk $d an older dmrep's"
done
check "the stable devices are the thin targets themselves now" eval \
	'[ "$(tab "dmrep-$VM:vda" | cut -d" " -f1)" = thin ] && [ "$(vol_devs)" = 0 ]'
before=$(dm_devno "dmrep-$VM:vda")
exec 7<"/dev/dmrep/$VM/vda"
put_all c
agent_start || not_ok "agent starts on an older dmrep's devices"
check "the agent moved every stable device onto the stack" all_stacked_on live
is "the same device (never removed)" "$before" "$(dm_devno "dmrep-$VM:vda")"
check "it says so in its log" agent_wait_log "moved onto volume"
check "the data is the same" all_have c
check "the descriptor held open across the move still reads it" \
	cmp -s <(bytes c0) <(dd bs=4096 skip=8 count=4 iflag=direct status=none <&7)
exec 7<&-
check "no DMREP- device is suspended or has a table loaded" no_suspended_or_inactive
agent_restart
is "a second start leaves the stack as it is (two moves logged, both by the first)" 2 \
	"$(grep -c "moved onto volume" "$W/dmrepd.log")"

out=$(dmrep --json vm remove "$VM")
expect_rc "vm remove" 0 "$out"
is "no volume device is left" 0 "$(vol_devs)"
summary
