# shellcheck shell=bash
# agent.sh - dmrepd for the lab tests (sourced through inittest.sh).
#
#   agent_setup              lab_setup, $SOCK, $STATE ($W/state), then the
#                            agent started: `ok - dmrepd starts and answers`
#   agent_start / agent_stop / agent_restart
#                            dmrepd --foreground on $SOCK and $STATE, its log
#                            $W/dmrepd.log, extra flags from $DMREPD_ARGS and
#                            the environment (DMREP_TEST_* hooks)
#   agent_exited SECONDS     the agent exits (a crash hook) within SECONDS:
#                            reaped, its status in $AGENT_RC
#   agent_killed_at STEP     `ok - STEP: the agent was killed at the step
#                            (SIGKILL)` if it died of SIGKILL within 60 s
#   agent_wait_log REGEX [SECONDS]  the agent's log has a matching line
#   lab_reboot               what a host reboot leaves of dmrep in the
#                            kernel: nothing (the agent stops, every DMREP-
#                            device goes, every loop over a file in $W)
#   power_loss               the same with the agent SIGKILLed first
#
# The teardown (inittest.sh) stops the agent and takes away what a reboot
# takes; devices a test made by hand (DMREP-labtest- UUIDs) it must remove
# itself, or the teardown fails it.

AGENT_PID=
AGENT_USED=

agent_start() {
	: >"$W/.agent-start"
	# shellcheck disable=SC2086 # DMREPD_ARGS: extra flags, split on purpose
	dmrepd --foreground --socket "$SOCK" --state-dir "$STATE" --log-level info ${DMREPD_ARGS:-} \
		2>>"$W/dmrepd.log" &
	AGENT_PID=$!
	# The agent binds its socket once its recovery is done: ask it only
	# once the socket is newer than the start (a SIGKILLed agent's stays
	# behind), looking without a fork every 20 ms.  After 2 s, or should
	# the clock not tell them apart, ask every 0.2 s as before.
	local i
	for ((i = 0; i < 100; i++)); do
		if [ -S "$SOCK" ] && [ "$SOCK" -nt "$W/.agent-start" ]; then
			dmrep --socket "$SOCK" --json vm list >/dev/null 2>&1 && return 0
		fi
		kill -0 "$AGENT_PID" 2>/dev/null || break
		lab_nap 0.02
	done
	wait_until 8 dmrep --socket "$SOCK" --json vm list && return 0
	echo "# dmrepd did not become ready" >&2
	cat "$W/dmrepd.log" >&2
	return 1
}
agent_stop() { stop_pid AGENT_PID; }
agent_restart() {
	agent_stop
	agent_start || not_ok "agent restarts"
}
agent_exited() {
	local n=$((${1:-60} * 10))
	for _ in $(seq "$n"); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$AGENT_PID" 2>/dev/null && return 1
	wait "$AGENT_PID" 2>/dev/null
	AGENT_RC=$?
	AGENT_PID=
}
agent_killed_at() {
	if ! agent_exited 60; then
		not_ok "$1: the agent was killed at the step"
		agent_stop
	elif [ "$AGENT_RC" = 137 ]; then
		ok "$1: the agent was killed at the step (SIGKILL)"
	else
		not_ok "$1: the agent was killed at the step (exit $AGENT_RC)"
	fi
}
agent_wait_log() {
	wait_until "${2:-30}" grep -qE "$1" "$W/dmrepd.log"
}

# remove_dmrep_devices [all|agent]: every DMREP- device (agent: but those a
# test made by hand, DMREP-labtest-).
remove_dmrep_devices() {
	local n
	mapfile -t n < <(dmsetup info -c --noheadings -o name,uuid --separator ' ' 2>/dev/null |
		awk -v all="${1:-all}" '$2 ~ /^DMREP-/ && (all == "all" || $2 !~ /^DMREP-labtest-/) { print $1 }')
	[ ${#n[@]} -eq 0 ] || lab_remove_dm "${n[@]}"
}
lab_reboot() {
	agent_stop
	remove_dmrep_devices
	lab_detach_under "$W"
	udevadm settle >/dev/null 2>&1
}
power_loss() {
	kill -KILL "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	lab_reboot
}

# agent_down (the teardown's step): a test that died mid-hold
# (DMREP_TEST_HOLD_FILE) lets the agent go; then the reboot.
agent_down() {
	[ -n "$AGENT_USED" ] || return 0
	rm -f "$W/hold"
	agent_stop
	remove_dmrep_devices agent
	lab_detach_under "$W"
	rm -rf "$(dirname "$SOCK")"
}

agent_setup() {
	lab_setup
	AGENT_USED=1
	SOCK=/run/dmrep-test$$/dmrepd.sock
	STATE=$W/state
	export DMREP_SOCKET=$SOCK
	agent_start || { not_ok "dmrepd starts"; exit 1; }
	ok "dmrepd starts and answers"
}
