#!/bin/bash
# Lab test: the catalog and the pool agree through crashes while points are
# dropped (issue 11, item 7), and a hostile state file does not stop the
# agent (item 6).
#
# Retention and `point remove` write the catalog without the points (their
# volumes recorded as still to remove) before they delete the volumes.  The
# agent is killed (DMREP_TEST_CRASH_AT) right after that write
# (retention:recorded, remove:recorded) and right after the deletes
# (retention:deleted, remove:deleted); after a restart every thin volume the
# catalog lists exists in the pool and the pool holds no other: never a
# listed point without its volume, no volume left behind.
set -u
. "$(dirname "$0")/lib/inittest.sh"

# The thin ids the catalog lists for the VM: disks and points, sorted.
catalog_ids() {
	{
		dmrep --json vm show "$VM" | jq -r '.disks[].thin_id'
		dmrep --json point list "$VM" | jq -r '.[].thin_ids[]'
	} | sort -n
}
agree() {
	local p c
	p=$(pool_ids | tr '\n' ' ')
	c=$(catalog_ids | tr '\n' ' ')
	if [ -n "$c" ] && [ "$p" = "$c" ]; then ok "$1: the pool holds exactly the catalog's volumes ($c)"; else
		not_ok "$1: the pool holds exactly the catalog's volumes (pool: $p; catalog: $c)"
		grep -v ' debug: ' "$W/dmrepd.log" | tail -15 | sed 's/^/# log: /'
	fi
}

lab_need thin_ls socat
agent_setup
prepare_pool 256M 8M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --disk vdb="$W/vdb.img:8M")
expect_rc "vm add" 0 "$out"
out=$(dmrep --json vm retention "$VM" --keep-last 2)
expect_rc "retention: keep the last 2" 0 "$out"
for _ in 1 2; do dmrep --json point create "$VM" >/dev/null; done
agree "before any crash"

for step in retention:recorded retention:deleted remove:recorded remove:deleted; do
	agent_stop
	DMREP_TEST_CRASH_AT=$step agent_start || { not_ok "$step: agent starts with the hook"; continue; }
	before=$(dmrep --json point list "$VM" | jq -c '[.[].id]')
	case $step in
	retention:*) out=$(dmrep --json point create "$VM") ;;   # a third point: one goes
	remove:*) out=$(dmrep --json point remove "$VM" "$(jq '.[0]' <<<"$before")") ;;
	esac
	case $(jq -r .return <<<"$out" 2>/dev/null) in
	0 | 32777) ok "$step: the operation ran into the crash" ;;
	*) not_ok "$step: the operation ran into the crash (${out:0:200})" ;;
	esac
	agent_killed_at "$step"
	agent_start || { not_ok "$step: the agent restarts after the crash"; continue; }
	agree "$step"
	after=$(dmrep --json point list "$VM" | jq -c '[.[].id]')
	# The dropped point is gone for good: the catalog was written first.
	if [ "$(jq --argjson b "$before" '.[0] as $x | $b[0] as $y | ($x != $y)' <<<"$after")" = true ]; then
		ok "$step: the oldest point ($(jq '.[0]' <<<"$before")) stays dropped (points now $after)"
	else
		not_ok "$step: the oldest point stays dropped (before $before, after $after)"
	fi
	[ "$(jq length <<<"$after")" -lt 2 ] && dmrep --json point create "$VM" >/dev/null
done
out=$(dmrep --json point create "$VM")
expect_rc "a point after the crash loop" 0 "$out"
agree "after the crash loop"

# A VM file with "layers": {} (json-c aborted on its length before its
# type was checked) beside a good VM: the agent starts, serves the good
# one, names the bad file in its log once, and leaves it as it was.
agent_stop
jq '.name = "bad" | .layers = {}' "$STATE/vms/$VM.json" >"$STATE/vms/bad.json"
sum=$(md5sum <"$STATE/vms/bad.json")
agent_start || not_ok "the agent starts beside a hostile state file"
check "the agent keeps running" kill -0 "$AGENT_PID"
check "and serves the good VM" eval "dmrep --json vm list | jq -e 'map(.name) == [\"$VM\"]'"
n=$(grep -c 'vms/bad.json is unreadable (Bad message: field layers)' "$W/dmrepd.log")
if [ "$n" = 1 ]; then ok "the log names the bad file and field, once"; else
	not_ok "the log names the bad file and field, once (got $n)"
fi
check "the bad file is left alone" sh -c "[ \"\$(md5sum <'$STATE/vms/bad.json')\" = '$sum' ]"
rm -f "$STATE/vms/bad.json"

# A forged record in a refused call's "vm" param stays one escaped line.
printf '{"id": 1, "method": "GetVirtualSystem", "params": {"vm": "x\\n<0>dmrepd: forged"}}\n' |
	socat -t 2 - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
sleep 0.5
check "a newline in a vm param forges no log record" sh -c "! grep -q '^<0>dmrepd: forged' '$W/dmrepd.log'"
check "the refused call is logged, its param escaped" grep -qF 'GetVirtualSystem VM x\x0a<0>dmrepd: forged uid 0: 32773' "$W/dmrepd.log"

agent_stop
summary
