# shellcheck shell=bash
# fault.sh - devices that fail on demand under the pool, for the fault
# tests (issue 16, item 2; lvm2's aux error_dev in spirit).  Sourced by a
# test after inittest.sh.
#
#   fault_pool_devices DATA META  ${T}pdata and ${T}pmeta: dm linear devices
#                                 (no DMREP- UUID: the test's own) over loops
#                                 over $W/pdata.img and $W/pmeta.img of those
#                                 sizes; the pool goes on them
#   fault_device NAME SIZE        NAME: a dm linear device (no UUID) over a
#                                 loop over $W/NAME.img of SIZE, for
#                                 fault_table (a classic point's COW store)
#   fault_table NAME error|linear|flakey|delay|dropwrites  NAME's table
#                                 swapped (load, suspend, resume): every I/O
#                                 fails, back to the loop, up 1 s / down 1 s,
#                                 every I/O 200 ms late, or every write
#                                 reported done and never written (lvm2's
#                                 aux "dropwrites"; reads still work)
#   fault_setup DATA META DISK    the prelude of a fault test: the agent up,
#                                 the teardown registered (a reboot, then the
#                                 devices), fault_pool_vm
#   fault_pool_healthy, fault_pool_sick   pool status says ok / failed,
#                                 needs_check or read_only
#   fault_linear_remove           both removed (after the pool is gone)
#   fault_lower_type NAME         the target type of the device under the
#                                 linear device NAME
#
# A fault matrix's cells (t-65, t-68) judge each operation's end with:
#   on_one_target                 $VM recovered on one target, replicating on
#                                 its live volumes, or committed on one
#   documented OUT                OUT (a reply or a job) is 0, or a documented
#                                 code (32768-32779) with a one-line reason
#   code_of OUT                   "CODE REASON", the reason cut at 110 bytes
#   run_op OP                     one cell's operation on $VM, its JSON answer
#                                 on stdout: create, start (to point 1),
#                                 revert, commit, send (point 1), import
#                                 ($W/imp.img as VM ${VM}i), receive
#                                 ($RECV_STREAM, default $W/p1.stream, as VM
#                                 $RECV_VM, default $VM)

declare -A FAULT_BASE=()

fault_pool_devices() {
	local k size loop
	for k in data meta; do
		[ "$k" = data ] && size=$1 || size=$2
		loop=$(make_loop "p$k.img" "$size") || return 1
		FAULT_BASE[${T}p$k]=$loop
		dmsetup create "${T}p$k" --table "0 $(blockdev --getsz "$loop") linear $loop 0" || return 1
	done
	udevadm settle >/dev/null 2>&1
}

fault_device() {
	local loop
	loop=$(make_loop "$1.img" "$2") || return 1
	FAULT_BASE[$1]=$loop
	dmsetup create "$1" --table "0 $(blockdev --getsz "$loop") linear $loop 0" || return 1
	udevadm settle >/dev/null 2>&1
}

# fault_pool_vm DATA_SIZE META_SIZE DISK_SIZE: the agent's pool on the
# test's dm linear devices (fault_pool_devices) and a thin VM $VM in it with
# one disk vda of DISK_SIZE; D is that disk's stable device.
fault_pool_vm() {
	local out
	fault_pool_devices "$1" "$2" || not_ok "the pool's devices are dm linear devices over loops"
	out=$(dmrep --json pool create --data "/dev/mapper/${T}pdata" --meta "/dev/mapper/${T}pmeta")
	expect_rc "a pool on dm linear devices" 0 "$out"
	out=$(dmrep --json vm add "$VM" --disk vda="$W/t.img:$3")
	expect_rc "a thin VM in it" 0 "$out"
	D=/dev/dmrep/$VM/vda
}

fault_setup() {
	agent_setup
	lab_cleanup 'lab_reboot; fault_linear_remove'
	fault_pool_vm "$@"
}

fault_pool_healthy() { dmrep --json pool status | jq -e '.health == "ok"'; }
fault_pool_sick() { dmrep --json pool status | jq -e '.health | test("^(fail|needs_check|read_only)$")'; }

fault_table() {
	local name=$1 loop=${FAULT_BASE[$1]} sz table
	sz=$(blockdev --getsz "$loop")
	case $2 in
	error) table="0 $sz error" ;;
	linear) table="0 $sz linear $loop 0" ;;
	flakey) table="0 $sz flakey $loop 0 1 1" ;;
	delay) table="0 $sz delay $loop 0 200" ;;
	dropwrites) table="0 $sz flakey $loop 0 0 86400 1 drop_writes" ;;
	*) return 1 ;;
	esac
	dmsetup load "$name" --table "$table" && dmsetup suspend --noflush "$name" &&
		dmsetup resume "$name"
}

fault_linear_remove() {
	local n
	for n in "${!FAULT_BASE[@]}"; do dm_remove "$n"; done
}

fault_lower_type() {
	local devno
	devno=$(dm_lower "$1") || return 1
	dmsetup info -c --noheadings -o name -j "${devno%:*}" -m "${devno#*:}" 2>/dev/null |
		xargs -r dmsetup table 2>/dev/null | awk 'NR == 1 { print $3 }'
}

on_one_target() {
	dmrep --json vm show "$VM" | jq -e '(.state == "recovered" and ([.disks[].target] | unique | length) == 1) or (.state == "replicating" and ([.disks[].target] | unique) == ["live"]) or (.state == "committed" and ([.disks[].target] | unique | length) == 1)' >/dev/null
}
documented() {  # OUT: 0, or a documented code with a one-line reason
	jq -e '(.return // .error_code // 0) as $c | ($c == 0 and (.job_state // 7) == 7) or
		($c >= 32768 and $c <= 32779 and ((.error // .error_description // "") | length > 0 and (contains("\n") | not)))' <<<"$1" >/dev/null
}
code_of() { jq -r '"\(.return // .error_code // "?") \((.error // .error_description // "") | .[0:110])"' <<<"$1" 2>/dev/null || echo "? ${1:0:110}"; }
run_op() {
	case $1 in
	create) dmrep --json point create "$VM" ;;
	start) timeout 120 dmrep --json failover start "$VM" --point 1 --wait ;;
	revert) timeout 120 dmrep --json failover revert "$VM" --wait ;;
	commit) timeout 120 dmrep --json failover commit "$VM" --wait ;;
	send) timeout 120 dmrep --json point send "$VM" --point 1 2>&1 >/dev/null | tail -n 1 ;;
	import) timeout 120 dmrep --json vm add "${VM}i" --disk vda="$W/imp.img" ;;
	receive) timeout 120 dmrep --json point receive "${RECV_VM:-$VM}" <"${RECV_STREAM:-$W/p1.stream}" ;;
	esac
}
