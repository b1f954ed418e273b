# Helpers for lab tests that drive dmrepd through dmrep (sourced, not run).
# TAP lines on stdout; a per-run VM name prefix; refuses to start on
# leftovers; tears down every device, loop and file it made in an EXIT trap.

T_PASS=0
T_FAIL=0
ok() { T_PASS=$((T_PASS + 1)); echo "ok - $*"; }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "not ok - $*"; }
# check DESC CMD...: ok if CMD succeeds.
check() {
	local desc=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}
# expect_rc DESC CODE JSON: the --json output's "return" (0 for a plain
# object without one, e.g. vm show) is CODE.
expect_rc() {
	local got
	got=$(jq -r 'if type == "object" and has("return") then .return else 0 end' <<<"$3" 2>/dev/null)
	if [ "$got" = "$2" ]; then ok "$1"; else not_ok "$1 (want $2, got ${got:-no JSON}: ${3:0:200})"; fi
}
summary() {
	echo "# $T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" -eq 0 ]
}

# 16 KiB of a recognisable pattern.
pattern() { yes "$1" | head -c 16384; }

# point_matches THIN_ID SIZE NAME: activate the thin id read-only and check
# that blocks 8..11 hold NAME's pattern.
point_matches() {
	local id=$1 size=$2 name=$3 dev="dmrt$$-p$id" sectors rc
	sectors=$(( $(numfmt --from=iec "$size") / 512 ))
	dmsetup create "$dev" --readonly -u "DMREP-labtest-$$-$id" \
		--table "0 $sectors thin $(dmsetup info -c --noheadings -o major,minor --separator : dmrep-pool) $id" || return 1
	cmp -s <(pattern "$name") <(dd if="/dev/mapper/$dev" bs=4096 skip=8 count=4 iflag=direct status=none)
	rc=$?
	dmsetup remove --retry "$dev" >/dev/null 2>&1
	return $rc
}

agent_start() {
	# shellcheck disable=SC2086 # DMREPD_ARGS: extra flags, split on purpose
	dmrepd --foreground --socket "$SOCK" --state-dir "$STATE" --log-level info ${DMREPD_ARGS:-} \
		2>>"$W/dmrepd.log" &
	AGENT_PID=$!
	for _ in $(seq 100); do
		dmrep --socket "$SOCK" --json vm list >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "# dmrepd did not become ready" >&2
	cat "$W/dmrepd.log" >&2
	return 1
}

agent_stop() {
	[ -n "${AGENT_PID:-}" ] || return 0
	kill -TERM "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
}

agent_restart() {
	agent_stop
	agent_start || not_ok "agent restarts"
}

# remove_dmrep_devices: every DMREP- device.  A pass removes the ones no one
# holds open, so a stack (a classic chain of stable device, view, point and
# layers; thin volumes over the pool) goes top down, pass after pass; when
# every one left is open, all are tried (--retry waits out a passing
# opener such as udev's blkid).  Suspended ones are resumed first: a
# remove of a suspended device could hang on its holders' I/O.
remove_dmrep_devices() {
	local left free
	for _ in $(seq 16); do
		left=$(dmsetup info -c --noheadings -o name,uuid,open --separator ' ' 2>/dev/null |
			awk '$2 ~ /^DMREP-/')
		[ -n "$left" ] || return 0
		free=$(awk '$3 == 0 { print $1 }' <<<"$left")
		[ -n "$free" ] || free=$(awk '{ print $1 }' <<<"$left")
		while read -r name; do
			dmsetup resume "$name" >/dev/null 2>&1
			dmsetup remove --retry "$name" >/dev/null 2>&1
		done <<<"$free"
	done
}

# detach_w_loops: every loop over a file under $W (the pool's files, classic
# COW stores, image files the agent put on loops).
detach_w_loops() {
	losetup -l -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$W/" 'index($2, w) == 1 { print $1 }' |
		xargs -r -n1 losetup -d
}

# lab_reboot: what a host reboot leaves of dmrep in the kernel, i.e. nothing:
# the agent stops, every DMREP- device and every loop over $W goes.
lab_reboot() {
	agent_stop
	remove_dmrep_devices
	detach_w_loops
	udevadm settle >/dev/null 2>&1
}

agent_teardown() {
	# A test that died mid-hold (DMREP_TEST_HOLD_FILE) lets the agent go.
	rm -f "$W/hold"
	agent_stop
	remove_dmrep_devices
	detach_w_loops
	rm -rf "$W"
}

agent_setup() {
	VM=t$$
	W=${LAB_SCRATCH:-/tmp}/agent$$
	SOCK=/run/dmrep-test$$/dmrepd.sock
	STATE=$W/state
	export DMREP_SOCKET=$SOCK
	# attr is e.g. "L--w"; its third letter is "s" while suspended.
	if dmsetup info -c --noheadings -o uuid,attr --separator ' ' 2>/dev/null |
		awk '$1 ~ /^DMREP-/ || substr($NF, 3, 1) == "s" { bad = 1 } END { exit !bad }'; then
		not_ok "no leftover DMREP- or suspended devices before the test"
		dmsetup info -c 2>/dev/null | sed 's/^/# /'
		exit 1
	fi
	mkdir -p "$W"
	trap agent_teardown EXIT
	agent_start || { not_ok "dmrepd starts"; exit 1; }
	ok "dmrepd starts and answers"
}
