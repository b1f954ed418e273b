# shellcheck shell=bash
# aux.sh - prepare helpers and waits for the lab tests (sourced through
# inittest.sh), in the style of lvm2's test/lib/aux.sh.
#
#   wait_until SECONDS CMD...      CMD succeeds within SECONDS (polled 5/s)
#   lab_nap SECONDS                a sleep without a fork
#   stop_pid VAR [SIGNAL]          signal (TERM) the process whose pid is in
#                                  VAR, reap it, empty VAR
#   prepare_pool DATA META [DESC]  a pool on $W/pool.data and $W/pool.meta of
#                                  those sizes: `ok - DESC` (pool create)
#   vm_is JQ                       $VM's vm show satisfies JQ
#   both HEX_A HEX_B               $VM's vda has A and vdb has B (has)
#   put_all PHASE / all_have PHASE disk k of $DISKS (of $VM) gets / has the
#                                  byte PHASEk (a0, a1...)
#   wait_state VM JQ               VM's state file satisfies JQ within 30 s
#   member_setup                   a group $G and a user $U in it, not root
#                                  (for dmrepd --group): $GID, $UID_M; the
#                                  teardown removes them
#   as_member CMD...               CMD as $U, with only the group $G
#   failover_step STEP VM          for a crash hook's step (initiate:*,
#                                  revert:*, test:*, commit:*): $STEP_PRE, the
#                                  state the VM must be in first, and
#                                  STEP_CMD, the dmrep command that runs it

# lab_nap SECONDS: a sleep without a fork (every exec costs tens of
# milliseconds under TCG): bash's loadable sleep builtin (Debian's
# bash-builtins, tools/deps.sh), enabled once here for the whole test, so
# that every `sleep` of the test is the builtin; without it, sleep(1).
# (Not `read -t` on a FIFO: its SIGALRM longjmp killed a test's shell,
# "longjmp causes uninitialized stack frame".)
enable -f /usr/lib/bash/sleep sleep 2>/dev/null || true
lab_nap() { sleep "$1"; }

wait_until() {
	local n=$(($1 * 5)) i
	shift
	for ((i = 0; i < n; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		lab_nap 0.2
	done
	return 1
}

stop_pid() {
	local pid=${!1:-}
	[ -n "$pid" ] || return 0
	kill "-${2:-TERM}" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	printf -v "$1" '%s' ''
}

prepare_pool() {
	local out
	out=$(dmrep --json pool create --data "$W/pool.data" --data-size "$1" --meta "$W/pool.meta" --meta-size "$2")
	expect_rc "${3:-pool create}" 0 "$out"
}

both() { has "/dev/dmrep/$VM/vda" "$1" && has "/dev/dmrep/$VM/vdb" "$2"; }
put_all() {
	local k=0 d
	for d in $DISKS; do
		put "/dev/dmrep/$VM/$d" "$1$k"
		k=$((k + 1))
	done
}
all_have() {
	local k=0 d
	for d in $DISKS; do
		has "/dev/dmrep/$VM/$d" "$1$k" || return 1
		k=$((k + 1))
	done
}
vm_is() { dmrep --json vm show "$VM" | jq -e "$1" >/dev/null; }
wait_state() { wait_until 30 jq -e "$2" "$STATE/vms/$1.json"; }

member_setup() {
	G=dmrg$$
	U=dmru$$
	groupadd "$G" && useradd -M -N -g nogroup -G "$G" -s /bin/false "$U" ||
		{ not_ok "groupadd/useradd in the lab"; exit 1; }
	GID=$(getent group "$G" | cut -d: -f3)
	UID_M=$(id -u "$U")
	lab_cleanup member_cleanup
}
member_cleanup() { userdel "$U" 2>/dev/null; groupdel "$G" 2>/dev/null; }
as_member() { setpriv --reuid="$UID_M" --regid=65534 --groups="$GID" -- "$@"; }

failover_step() {
	case $1 in
	initiate:* | test:*) STEP_PRE=replicating ;;
	*) STEP_PRE=recovered ;;
	esac
	case $1 in
	initiate:*) STEP_CMD=(failover start "$2" --point 1 --guest resume) ;;
	revert:*) STEP_CMD=(failover revert "$2") ;;
	test:*) STEP_CMD=(failover start "$2" --test --point 1) ;;
	commit:*) STEP_CMD=(failover commit "$2") ;;
	esac
}
