# shellcheck shell=bash
# pair.sh - two-host lab tests (tests/lab/h-*.sh: `tests/lab/run-all
# --hosts2` in one `tools/lab/run --hosts 2`), sourced through inittest.sh.
# The test runs on lab1 ($LAB_HOST); $PEER is the other host (lab2).  The
# repo is at the same path on both, and so is this library.
#
#   pair_setup               lab_setup here, then the same on $PEER (its
#                            guard, its work directory $PW in its own
#                            $LAB_SCRATCH with this run's prefix $T, what
#                            exists there now); from then on the teardown
#                            runs on both hosts, each a counted line
#                            `ok - teardown: nothing left behind` and
#                            `ok - teardown on lab2: nothing left behind`
#   pair_agent_setup         pair_setup, then this host's agent as
#                            agent_setup starts it ($SOCK, $STATE=$W/state,
#                            `ok - dmrepd starts and answers`) but on the
#                            default socket, so that `ssh lab1 dmrep ...`
#                            from the peer (its --to commands) reaches it
#   on_peer CMD [ARG...]     CMD with its ARGs (each quoted) on $PEER by ssh,
#                            in the repo root; stdin passes through (give it
#                            </dev/null inside a `while read` loop)
#   peer_sh SCRIPT           the bash SCRIPT on $PEER with this library loaded
#                            and W=$PW, T, VM as here: `peer_sh 'put
#                            "$W/x.img" a1'`, `peer_sh 'make_loop x.img 64M'`
#   peer_cleanup SCRIPT      SCRIPT (as peer_sh) at teardown, before the
#                            peer's own steps; the last registered runs first
#   peer_agent_start [VAR=VALUE...] [DMREPD-FLAG...]
#                            dmrepd --foreground on $PEER, detached from the
#                            ssh session, on the DEFAULT socket
#                            (/run/dmrep/dmrepd.sock: what `ssh $PEER dmrep
#                            ...` and the agent's `--to` command reach) with
#                            state $PW/state (its scratch disk: kept across
#                            a power cut), log $PW/dmrepd.log, VARs in its
#                            environment (DMREP_TEST_* hooks); returns once
#                            it answers (`ok`/`not_ok` are the caller's)
#   peer_agent_stop [SIGNAL] (TERM) and wait until it is gone (30 s)
#   peer_agent_alive         it runs (in this boot of $PEER)
#   peer_dmrep ARG...        on_peer dmrep ARG...
#   peer_power_off / peer_power_on   lab-power off|on $PEER (on returns once
#                            ssh answers); a peer left off is powered on by
#                            the teardown, which then checks it as usual
#                            (what survives a power cut: $PW and the state
#                            in it, as far as it was synced)
#
# on_peer and peer_sh share one ssh connection to the peer (a control
# master, /run/lab/ssh-mux-HOST, kept 300 s; lab-power closes it before
# switching that host): a new connection costs a second or more under TCG.
# Plain `ssh lab2 ...` (and the agents' --to commands) connect anew.
#
# On the peer, the same helpers run in peer_sh scripts (put, has,
# make_loop, lab_remove_dm...); the peer's teardown stops its agent (the pid
# file carries the boot id: a pid from before a power cut is nobody's),
# removes its DMREP- devices, detaches the loops over files in $PW, then
# fails on what is left as lab_teardown does, and removes $PW.

PEER=
PW=
PEER_CLEANUPS=()
case ${LAB_HOST:-} in
lab1) PEER=lab2 ;;
lab2) PEER=lab1 ;;
esac
PAIR_SSH=(ssh -o ControlMaster=auto -o ControlPath=/run/lab/ssh-mux-%h -o ControlPersist=300)

on_peer() {
	local cmd
	printf -v cmd ' %q' "$@"
	# shellcheck disable=SC2029 # expanded here on purpose: the command line
	"${PAIR_SSH[@]}" "$PEER" "cd $(printf %q "$ROOT") && exec$cmd"
}
peer_sh() {
	local pre
	printf -v pre 'cd %q && export T=%q && . tests/lab/lib/inittest.sh && W=%q VM=%q' "$ROOT" "$T" "$PW" "$VM"
	# shellcheck disable=SC2029
	"${PAIR_SSH[@]}" "$PEER" "$pre"$'\n'"$1"
}
peer_cleanup() { PEER_CLEANUPS+=("$1"); }
peer_dmrep() { on_peer dmrep "$@"; }
peer_power_off() { lab-power off "$PEER"; }
peer_power_on() { lab-power on "$PEER"; }

# pair_tap CMD...: CMD's TAP lines passed on and counted as ours; a line
# `pair-w DIR` sets $PW instead.  Its status is CMD's.
pair_tap() {
	local line rc=255
	while IFS= read -r line; do
		case $line in
		"pair-w "*) PW=${line#pair-w }; continue ;;
		"pair-rc "*) rc=${line#pair-rc }; continue ;;
		"not ok" | "not ok "*) T_FAIL=$((T_FAIL + 1)) ;;
		"ok "*" # SKIP"*) T_SKIP=$((T_SKIP + 1)) ;;
		ok | "ok "*) T_PASS=$((T_PASS + 1)) ;;
		esac
		printf '%s\n' "$line"
	done < <(
		"$@" </dev/null
		echo "pair-rc $?"
	)
	return "$rc"
}

pair_setup() {
	if [ -z "$PEER" ] || [ "${LAB_HOSTS:-1}" != 2 ]; then
		echo "not ok - runs in the two-host lab (tools/lab/run --hosts 2)"
		exit 1
	fi
	lab_setup
	PAIR_USED=1
	if ! pair_tap peer_sh pair_peer_setup || [ -z "$PW" ]; then
		not_ok "$PEER is set up for the test (ssh $PEER, its guard, its \$W)"
		exit 1
	fi
}

pair_agent_setup() {
	pair_setup
	AGENT_USED=1
	SOCK=/run/dmrep/dmrepd.sock
	STATE=$W/state
	export DMREP_SOCKET=$SOCK
	agent_start || { not_ok "dmrepd starts"; exit 1; }
	ok "dmrepd starts and answers"
}

# --- run on the peer (peer_sh) ---------------------------------------------
pair_peer_setup() {
	lab_guard
	W=$(mktemp -d "$LAB_SCRATCH/${T}XXXXXX") || { not_ok "make a work directory on $LAB_HOST"; exit 1; }
	chmod 0755 "$W"
	lab_loops >"$W/.pair-loops0"
	lab_mounts >"$W/.pair-mounts0"
	# There after a power cut, whenever it comes.
	sync
	echo "pair-w $W"
}
pair_boot_id() { cat /proc/sys/kernel/random/boot_id; }
# pair_alive PID: running, not a zombie (the agent is not our child: its
# parent, once the ssh session is gone, is the lab's PID 1).
pair_alive() {
	local s
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}
# pair_peer_agent_pid: the agent's pid, if it runs in this boot.
pair_peer_agent_pid() {
	local pid boot
	{ read -r pid boot <"$W/dmrepd.pid"; } 2>/dev/null || return 1
	[ "$boot" = "$(pair_boot_id)" ] && pair_alive "$pid" && echo "$pid"
}
pair_peer_agent_start() {
	local envs=() a
	while [ $# -gt 0 ] && [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
		envs+=("$1")
		shift
	done
	pair_peer_agent_pid >/dev/null && { echo "# the agent on $LAB_HOST runs already" >&2; return 1; }
	mkdir -p /run/dmrep "$W/state"
	rm -f /run/dmrep/dmrepd.sock
	env "${envs[@]}" setsid dmrepd --foreground --socket /run/dmrep/dmrepd.sock --state-dir "$W/state" \
		--log-level info "$@" </dev/null >>"$W/dmrepd.log" 2>&1 &
	a=$!
	echo "$a $(pair_boot_id)" >"$W/dmrepd.pid"
	# The socket (removed above) is there once recovery is done: look for
	# it without a fork every 20 ms before asking (20 s in all).
	local i
	for ((i = 0; i < 1000; i++)); do
		[ -S /run/dmrep/dmrepd.sock ] && break
		pair_alive "$a" || break
		lab_nap 0.02
	done
	wait_until 20 dmrep --socket /run/dmrep/dmrepd.sock --json vm list && return 0
	echo "# dmrepd on $LAB_HOST did not become ready" >&2
	sed 's/^/# /' "$W/dmrepd.log" >&2
	return 1
}
pair_peer_agent_stop() {
	local pid i
	pid=$(pair_peer_agent_pid) || { rm -f "$W/dmrepd.pid"; return 0; }
	kill "-${1:-TERM}" "$pid" 2>/dev/null
	for ((i = 0; i < 300; i++)); do
		pair_alive "$pid" || break
		lab_nap 0.1
	done
	if pair_alive "$pid"; then
		echo "# dmrepd on $LAB_HOST did not stop on ${1:-TERM}: SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null
		sleep 0.5
	fi
	rm -f "$W/dmrepd.pid"
	[ "${1:-TERM}" = KILL ] || rm -f /run/dmrep/dmrepd.sock
}
# make check-asan (LAB_SANITIZE=1): each sanitizer report on the peer (its
# ssh sessions log them to /run/lab-sanitize, see tools/lab/run-pair) is a
# failure of the test that ran, as run-all counts lab1's.
pair_peer_sanitizer_reports() {
	local f
	[ "${LAB_SANITIZE:-0}" = 1 ] || return 0
	for f in /run/lab-sanitize/asan.* /run/lab-sanitize/ubsan.*; do
		[ -f "$f" ] || continue
		not_ok "a sanitizer report on $LAB_HOST (${f##*/})"
		head -n 40 "$f" | sed 's/^/# /'
		mv "$f" /run/lab-sanitize/seen/
	done
}
pair_peer_teardown() {
	local left have0=1
	if [ -f "$W/.pair-loops0" ] && [ -f "$W/.pair-mounts0" ]; then
		LAB_LOOPS0=$(cat "$W/.pair-loops0")
		LAB_MOUNTS0=$(cat "$W/.pair-mounts0")
	else
		have0=0
		echo "# $LAB_HOST: no record of its loops and mounts at setup: only its dm devices are checked"
	fi
	rm -f "$W/hold"
	pair_peer_agent_stop
	remove_dmrep_devices agent
	[ -d "$W" ] && lab_detach_under "$W"
	udevadm settle --timeout=10 >/dev/null 2>&1
	for _ in 1 2 3 4 5; do
		if [ "$have0" = 1 ]; then left=$(lab_leftovers); else left=$(lab_leftovers | grep '^dm device'); fi
		[ -z "$left" ] && break
		sleep 0.2
	done
	pair_peer_sanitizer_reports
	if [ -n "$left" ]; then
		not_ok "teardown on $LAB_HOST: nothing left behind ($(wc -l <<<"$left") left)"
		sed 's/^/#   left behind on '"$LAB_HOST"': /' <<<"$left"
		[ "$have0" = 1 ] || LAB_LOOPS0=$(lab_loops) LAB_MOUNTS0=$(lab_mounts)
		lab_force_clean
		left=$(lab_leftovers)
		[ -n "$left" ] && sed 's/^/#   still there after a forced cleanup: /' <<<"$left"
	else
		ok "teardown on $LAB_HOST: nothing left behind"
	fi
	rm -rf "$W"
}

# --- the peer's agent, from here ---------------------------------------------
peer_agent_start() {
	local a=
	[ $# -gt 0 ] && printf -v a ' %q' "$@"
	peer_sh "pair_peer_agent_start$a"
}
peer_agent_stop() { peer_sh "pair_peer_agent_stop ${1:-TERM}"; }
peer_agent_alive() { peer_sh 'pair_peer_agent_pid' >/dev/null; }

# pair_teardown (lab_teardown's last step, with a peer): the peer powered on
# if a test left it off, its cleanups, its teardown (counted here).
pair_teardown() {
	local s i script=
	s=$(lab-power status "$PEER" 2>/dev/null)
	if [ "$s" = booting ]; then
		for _ in $(seq 300); do
			s=$(lab-power status "$PEER" 2>/dev/null)
			[ "$s" = booting ] || break
			sleep 0.5
		done
	fi
	if [ "$s" = off ]; then
		diag "teardown: $PEER was left off: powering it on"
		lab-power on "$PEER" || { not_ok "teardown: $PEER boots again"; return 1; }
	fi
	for ((i = ${#PEER_CLEANUPS[@]} - 1; i >= 0; i--)); do
		script+="{ ${PEER_CLEANUPS[i]}"$'\n'"} >/dev/null 2>&1"$'\n'
	done
	local f0=$T_FAIL
	pair_tap peer_sh "${script}pair_peer_teardown" ||
		[ "$T_FAIL" -gt "$f0" ] || not_ok "teardown on $PEER ran (ssh $PEER)"
	[ "$T_FAIL" = "$f0" ]
}

# point_sums HOST ID: the sha256 of vda and vdb of point ID on HOST (1:
# here, 2: $PEER), one line, read through a test failover there (h-30,
# h-50: a point on both hosts is the same, bit for bit).
point_sums() {
	local d=dmrep out cmd
	cmd="sha256sum /dev/dmrep/$VM-test/vda /dev/dmrep/$VM-test/vdb | cut -d' ' -f1 | tr '\n' ' '"
	[ "$1" = 2 ] && d=peer_dmrep
	out=$($d --json failover start "$VM" --test --point "$2" --wait)
	job_ok "$out" || { echo "test failover: ${out:0:200}"; return 1; }
	if [ "$1" = 2 ]; then on_peer sh -c "$cmd"; else sh -c "$cmd"; fi
	out=$($d --json failover stop-test "$VM" --wait)
	job_ok "$out" || echo "stop-test: ${out:0:200}"
}
