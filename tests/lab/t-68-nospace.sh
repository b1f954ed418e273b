#!/bin/bash
# Lab test: a pool out of data space under each operation (issue 16, item
# 2; t-64 covers point create alone).  One thin VM with data and a point;
# a second VM, larger than the pool, filled until the pool runs out (the
# pool errors I/O then: error_if_no_space).  In a full pool, and in one
# with a few MiB left (nearly full: 1/32 of its data), each operation
# (point create, failover start, failover revert, failover commit, point
# send, vm add importing a disk, point receive) ends with 0 or a
# documented code and a one-line reason (32778 for what needs room; revert,
# commit and send need none and work: before this, a full pool refused
# them too, so a VM failed over could not be reverted until space was
# found), no DMREP- device suspended, the
# VM on one target, the agent up, the VM's data intact.  Space back (the
# filler removed): the pool is healthy again, a point and a failover work,
# and thin_check is clean.  Out of *metadata* space is not here: filling
# an 8 MiB metadata device takes gigabytes of mappings, beyond the lab's
# scratch disk and time (the same refusal covers it: thin_point_room).
set -u
. "$(dirname "$0")/lib/inittest.sh"
. "$(dirname "$0")/lib/fault.sh"

agent_setup
prepare_pool 128M 8M
D=/dev/dmrep/$VM/vda
expect_rc "a thin VM" 0 "$(dmrep --json vm add "$VM" --disk vda="$W/t.img:16M")"
check "data on its disk" dd if=/dev/urandom of="$D" bs=1M count=4 oflag=direct status=none
expect_rc "point 1" 0 "$(dmrep --json point create "$VM")"
H=$(head -c 4M "$D" | sha256sum)
dmrep --json point send "$VM" --point 1 >"$W/p1.stream" 2>"$W/p1.json"
check "a stream of point 1" test -s "$W/p1.stream"
dd if=/dev/urandom of="$W/imp.img" bs=1M count=4 status=none
# A stream to receive: another VM's point (a replica takes a stream under
# the VM name it carries), that VM gone before the receives.
S=${VM}s
expect_rc "a VM to send from" 0 "$(dmrep --json vm add "$S" --disk vda="$W/s.img:16M")"
dd if=/dev/urandom of="/dev/dmrep/$S/vda" bs=1M count=4 oflag=direct status=none
expect_rc "its point 1" 0 "$(dmrep --json point create "$S")"
dmrep --json point send "$S" --point 1 >"$W/s1.stream" 2>/dev/null
check "a stream of it" test -s "$W/s1.stream"
expect_rc "that VM removed" 0 "$(dmrep --json vm remove "$S")"

F=${VM}f
FD=/dev/dmrep/$F/vda
pool_free_mb() { dmrep --json pool status | jq '((.data_total_blocks - .data_used_blocks) * .block_size_bytes / 1048576) | floor'; }
# fill LEFT_MB: a new filler VM, larger than the pool, writes until at most
# LEFT_MB MiB of data are free (0: until the pool is out of space and
# errors its writes).
unfill() {
	dmrep --json vm show "$F" >/dev/null 2>&1 || return 0
	expect_rc "the filler removed" 0 "$(dmrep --json vm remove "$F")"
	check "the pool has room again" wait_until 30 sh -c "dmrep --json pool status | jq -e '.health == \"ok\"'"
}
fill() {
	local free
	expect_rc "a filler VM larger than the pool" 0 "$(dmrep --json vm add "$F" --disk vda="$W/f.img:256M")"
	free=$(pool_free_mb)
	if [ "$1" = 0 ]; then
		dd if=/dev/urandom of="$FD" bs=1M count=$((free + 8)) oflag=direct status=none 2>/dev/null
		check "the pool runs out of data space" \
			wait_until 30 sh -c "dmrep --json pool status | jq -e '.health == \"out_of_data_space\"'"
	else
		check "the pool filled to ${1} MiB free" \
			dd if=/dev/urandom of="$FD" bs=1M count=$((free - $1)) oflag=direct status=none
	fi
}
# run_op's receive (lib/fault.sh): the other VM's stream, under its name.
RECV_VM=$S RECV_STREAM=$W/s1.stream
# want PHASE OP: the code the cell must end with ("" any documented one).
# Without room nothing is made: refused up front (32778).  What needs no
# new space (revert, commit, a send, which only reads) works in a full
# pool: they are the way out of it.
want() {
	case $1:$2 in
	full:create | full:import | full:receive | full:start | nearly:create | nearly:import) echo 32778 ;;
	*:revert | *:commit | *:send | nearly:start) echo 0 ;;
	*) echo "" ;;
	esac
}

RESULTS=()
# Each phase starts with the VM failed over to point 1 (with room), then
# fills the pool: revert and commit are tried with the VM recovered.
# A commit is last: a committed VM fails over no more.
for phase in nearly full full-commit; do
	unfill
	state=$(dmrep --json vm show "$VM" | jq -r .state)
	[ "$state" = recovered ] ||
		check "$phase: the VM failed over to point 1 first" job_ok "$(timeout 120 dmrep --json failover start "$VM" --point 1 --wait)"
	case $phase in
	nearly) fill 3; ops="create send import receive revert start" ;;
	full) fill 0; ops="create send import receive revert start" ;;
	full-commit) fill 0; ops="commit" ;;
	esac
	diag "$phase: pool $(dmrep --json pool status | jq -c '{health, data_used_blocks, data_total_blocks}')"
	for op in $ops; do
		cell="$op x $phase"
		out=$(run_op "$op")
		r=$(code_of "$out")
		RESULTS+=("$cell -> $r")
		diag "$cell: $r"
		check "$cell: 0 or a documented code with a one-line reason" documented "$out"
		w=$(want "${phase%-commit}" "$op")
		[ -z "$w" ] || is "$cell: ends with $w" "$w" "${r%% *}"
		check "$cell: no DMREP- device suspended" no_suspended_or_inactive
		check "$cell: the agent is up" dmrep --json vm list
		check "$cell: the VM on one target" on_one_target
		dmrep --json vm show "${VM}i" >/dev/null 2>&1 && dmrep --json vm remove "${VM}i" --force >/dev/null
		dmrep --json vm show "$S" >/dev/null 2>&1 && dmrep --json vm remove "$S" --force >/dev/null
		# The VM's disk holds what point 1 holds, live or failed over
		# (nothing was written since the point), committed too.
		is "$cell: the VM's data intact" "$H" "$(head -c 4M "$D" | sha256sum)"
	done
done
for r in "${RESULTS[@]}"; do diag "RESULT $r"; done

# ---- space back --------------------------------------------------------------------
expect_rc "the filler removed" 0 "$(dmrep --json vm remove "$F")"
check "the pool is healthy again" wait_until 30 sh -c "dmrep --json pool status | jq -e '.health == \"ok\"'"
expect_rc "a point again" 0 "$(dmrep --json point create "$VM")"
check "the committed VM's points: 1 and the new one" jq -e 'length == 2' <<<"$(dmrep --json point list "$VM")"
check "writes to the VM work again" dd if=/dev/urandom of="$D" bs=1M count=1 seek=8 oflag=direct status=none
is "the VM's data intact" "$H" "$(head -c 4M "$D" | sha256sum)"
lab_reboot
check "thin_check is clean on the pool's metadata" thin_check -q "$W/pool.meta"
summary
