#!/bin/bash
# Lab test: faults the agent meets at start and below a classic point
# (issue 16, item 2, the part t-64 and t-65 leave).
#
# A pool that cannot be activated when the agent starts: its metadata
# device failing (dm error), its data device missing, its metadata
# superblock overwritten, and its superblock blank (all zeroes: the kernel
# would format an empty pool over it and every point would be gone).  Each
# time the agent comes up all the same, the pool stays down and nothing is
# written to it; pool status says `active: false`, mode `down`, health
# `fail`, the reason and what to do; point create and failover start
# answer 32775 "the pool is down: ..."; `dmrep metrics` says
# dmrep_pool_up 0.  With the device fixed and the agent restarted, the
# pool, the VM and its data are back.  Before this, the first three
# answered 32777 "the pool could not be activated; see the agent's log" and
# pool status 32777; the blank superblock was formatted: the VM's volume
# gone.
#
# A classic point whose COW store (on a device, --cow-dev) fails: the
# guest's writes to the origin go on, the point turns invalid, a failover
# to it is refused (32775, why in one line), the point can be removed and
# a new one taken and failed over to (the device again only with --force:
# the old store's header is a signature).  A COW store that is only slow:
# the point and its failover work.  A COW store that fails under a running
# failover: reads of what the point holds fail, the revert brings the VM
# back on its disk, intact, and with the store back the point is whole.
set -u
. "$(dirname "$0")/lib/inittest.sh"
. "$(dirname "$0")/lib/fault.sh"

fault_setup 128M 8M 16M
check "data on the VM's disk" dd if=/dev/urandom of="$D" bs=1M count=4 oflag=direct status=none
expect_rc "point 1" 0 "$(dmrep --json point create "$VM")"
H=$(head -c 4M "$D" | sha256sum)
META=/dev/mapper/${T}pmeta
DATA=/dev/mapper/${T}pdata

# down_restart: the agent stopped and its devices gone, as after a
# reboot; the test's own devices under the pool stay.
down_restart() {
	agent_stop
	remove_dmrep_devices agent
	udevadm settle >/dev/null 2>&1
}
# down_checks CASE REGEX: the agent is up on a pool that is down for the
# reason REGEX matches.
down_checks() {
	local c=$1 out
	agent_start || { not_ok "$c: the agent starts"; return 1; }
	ok "$c: the agent starts"
	check "$c: the pool is not activated" test ! -e /dev/mapper/dmrep-pool
	out=$(dmrep --json pool status)
	diag "$c: pool status $(jq -c '{active, mode, health, reason, advice}' <<<"$out")"
	check "$c: pool status says down, why and what to do" jq -e --arg re "$2" \
		'.active == false and .mode == "down" and .health == "fail" and (.reason | test($re)) and (.advice | contains("restart dmrepd"))' <<<"$out"
	check "$c: the text form says so" sh -c 'dmrep pool status | grep -q "mode.*down"'
	out=$(dmrep --json point create "$VM")
	expect_rc "$c: point create: 32775" 32775 "$out"
	check "$c: ... the pool is down, why, what to do" jq -e --arg re "$2" \
		'(.error | startswith("the pool is down: ")) and (.error | test($re)) and (.error | contains("restart dmrepd")) and (.error | contains("\n") | not)' <<<"$out"
	out=$(dmrep --json failover start "$VM" --point 1)
	expect_rc "$c: failover start: 32775" 32775 "$out"
	check "$c: ... the same reason" jq -e '.error | startswith("the pool is down: ")' <<<"$out"
	check "$c: the VM is still listed" sh -c "dmrep --json vm list | jq -e 'map(.name) | index(\"$VM\") != null'"
	check "$c: metrics: dmrep_pool_up 0" sh -c 'dmrep metrics | grep -qx "dmrep_pool_up 0"'
	check "$c: no DMREP- device suspended" no_suspended_or_inactive
}
# back CASE: the fault fixed, the agent restarted: the pool, the VM, its data.
back() {
	local c=$1
	agent_stop
	agent_start || { not_ok "$c fixed: the agent starts"; return 1; }
	check "$c fixed: the pool is healthy" fault_pool_healthy
	check "$c fixed: the VM's disk is there" test -b "$D"
	is "$c fixed: the VM's data intact" "$H" "$(head -c 4M "$D" | sha256sum)"
	out=$(dmrep --json point create "$VM")
	expect_rc "$c fixed: point create" 0 "$out"
}

# ---- the metadata device fails --------------------------------------------------
down_restart
fault_table "${T}pmeta" error || not_ok "the metadata device on error"
down_checks "metadata on error" "cannot activate it on .*${T}pmeta.*(error|Input/output)"
fault_table "${T}pmeta" linear || not_ok "the metadata device back"
back "metadata on error"

# ---- the data device is missing -------------------------------------------------
down_restart
DATA_TABLE=$(dmsetup table "${T}pdata")
dmsetup remove "${T}pdata" || not_ok "the data device removed"
down_checks "data missing" "${T}pdata.* does not exist"
dmsetup create "${T}pdata" --table "$DATA_TABLE" || not_ok "the data device back"
udevadm settle >/dev/null 2>&1
back "data missing"

# ---- the metadata superblock overwritten ----------------------------------------
down_restart
dd if="$META" of="$W/sb" bs=4096 count=1 iflag=direct status=none
check "the superblock overwritten" dd if=/dev/urandom of="$META" bs=4096 count=1 oflag=direct conv=notrunc status=none
down_checks "superblock overwritten" "cannot activate it on .*${T}pmeta"
dd if="$W/sb" of="$META" bs=4096 count=1 oflag=direct conv=notrunc status=none
back "superblock overwritten"

# ---- the metadata superblock blank ----------------------------------------------
down_restart
dd if="$META" of="$W/sb" bs=4096 count=1 iflag=direct status=none
check "the superblock zeroed" dd if=/dev/zero of="$META" bs=4096 count=1 oflag=direct conv=notrunc status=none
down_checks "blank superblock" "metadata device .*${T}pmeta is blank"
is "blank superblock: nothing was formatted over it" 0 \
	"$(dd if="$META" bs=4096 count=1 iflag=direct status=none | tr -d '\0' | wc -c)"
dd if="$W/sb" of="$META" bs=4096 count=1 oflag=direct conv=notrunc status=none
back "blank superblock"
check "the pool's catalog kept every point" jq -e 'length == 5' <<<"$(dmrep --json point list "$VM")"

# ---- a classic point's COW store fails ----------------------------------------------
CV=${VM}c
CD=/dev/dmrep/$CV/vda
fault_device "${T}cow" 8M || not_ok "a device for the COW store"
COW=/dev/mapper/${T}cow
expect_rc "a classic VM" 0 "$(dmrep --json vm add "$CV" --backend classic --disk vda="$W/c.img:16M")"
dd if=/dev/urandom of="$CD" bs=1M count=2 oflag=direct status=none
expect_rc "its point 1, the COW store on the device" 0 "$(dmrep --json point create "$CV" --cow-dev vda="$COW")"
fault_table "${T}cow" error || not_ok "the COW store on error"
check "COW store on error: the guest's writes go on" dd if=/dev/urandom of="$CD" bs=1M count=1 oflag=direct conv=notrunc status=none
HC=$(head -c 2M "$CD" | sha256sum)
list=$(dmrep --json point list "$CV")
check "COW store on error: the point is invalid" jq -e '.[0].id == 1 and .[0].valid == false' <<<"$list"
out=$(dmrep --json failover start "$CV" --point 1)
expect_rc "COW store on error: a failover to it: 32775" 32775 "$out"
check "... why, in one line" jq -e '(.error | test("point 1 is not valid")) and (.error | contains("\n") | not)' <<<"$out"
check "COW store on error: the agent is up, nothing suspended" no_suspended_or_inactive
is "COW store on error: the disk holds the guest's writes" "$HC" "$(head -c 2M "$CD" | sha256sum)"
fault_table "${T}cow" linear || not_ok "the COW store back"
expect_rc "the invalid point removed" 0 "$(dmrep --json point remove "$CV" 1)"
expect_rc "a new point (COW store in a file)" 0 "$(dmrep --json point create "$CV")"
check "a failover to it" job_ok "$(timeout 120 dmrep --json failover start "$CV" --point 2 --guest resume --wait)"
is "... shows the disk as it was" "$HC" "$(head -c 2M "$CD" | sha256sum)"
check "and its revert" job_ok "$(timeout 120 dmrep --json failover revert "$CV" --guest resume --wait)"
expect_rc "point 2 removed" 0 "$(dmrep --json point remove "$CV" 2)"

# ---- slow: a delayed COW store -----------------------------------------------------------
# The removed point's COW header is still on the device (a signature):
# reusing it takes --force, and the store is zeroed before it is used.
out=$(dmrep --json point create "$CV" --cow-dev vda="$COW")
expect_rc "the device again, its old COW header there: 32773 without --force" 32773 "$out"
expect_rc "point 3 on the device again, --force" 0 "$(dmrep --json point create "$CV" --cow-dev vda="$COW" --force)"
H3=$(head -c 2M "$CD" | sha256sum)
fault_table "${T}cow" delay || not_ok "the COW store delayed"
check "COW store delayed: the guest's writes go on" dd if=/dev/urandom of="$CD" bs=1M count=1 oflag=direct conv=notrunc status=none
HL=$(head -c 2M "$CD" | sha256sum)
check "COW store delayed: the point stays valid" jq -e '.[0].valid == true' <<<"$(dmrep --json point list "$CV")"
check "COW store delayed: a failover to it" job_ok "$(timeout 120 dmrep --json failover start "$CV" --point 3 --guest resume --wait)"
is "... shows the point" "$H3" "$(head -c 2M "$CD" | sha256sum)"

# ---- the COW store fails under the running failover ----------------------------------------
fault_table "${T}cow" error || not_ok "the COW store on error under the failover"
# The view's writes go to its own store (a file); what the guest changed on
# the origin after point 3 is read from the point's store: those reads fail.
check_not "under the failover, reading what the point's store holds fails" \
	dd if="$CD" of=/dev/null bs=1M count=1 iflag=direct status=none
out=$(timeout 120 dmrep --json failover revert "$CV" --guest resume --wait)
check "the revert works" job_ok "$out"
diag "revert: $(jq -c '{job_state, error_code, error_description}' <<<"$out")"
is "the VM is on its disk again" '"replicating"' "$(dmrep --json vm show "$CV" | jq .state)"
is "its data as the guest left it before the failover" "$HL" "$(head -c 2M "$CD" | sha256sum)"
check "nothing suspended" no_suspended_or_inactive
fault_table "${T}cow" linear || not_ok "the COW store back"
check "the store back: point 3 is still valid" jq -e '.[0].id == 3 and .[0].valid == true' <<<"$(dmrep --json point list "$CV")"
check "... a failover to it again" job_ok "$(timeout 120 dmrep --json failover start "$CV" --point 3 --guest resume --wait)"
is "... shows the point, intact" "$H3" "$(head -c 2M "$CD" | sha256sum)"
check "... and its revert" job_ok "$(timeout 120 dmrep --json failover revert "$CV" --guest resume --wait)"
expect_rc "the classic VM removed" 0 "$(dmrep --json vm remove "$CV" --force)"

lab_reboot
check "thin_check is clean on the pool's metadata" thin_check -q "$META"
summary
