#!/bin/bash
# Lab test: failover network settings and failover hooks (issue: classic
# backend, application consistency, network settings - the network part).
# Settings per VM and NIC are validated, stored, shown by vm show and kept
# across a restart; at failover and test failover the agent runs the hooks
# of --hook-dir with the VM, point, test flag and settings in the
# environment, records each hook in the job, and a failing hook fails the
# job while the failover stands.
set -u
. "$(dirname "$0")/lib/inittest.sh"

HOOKS=/tmp/dmrep-hooks$$
mkdir -p "$HOOKS"
chmod 0755 "$HOOKS"
export DMREPD_ARGS="--hook-dir $HOOKS"
agent_setup
lab_cleanup 'rm -rf "$HOOKS"'
OUT=$W/hook-env
# has_line FILE LINE: FILE has exactly that line.
has_line() { grep -qxF -- "$2" "$1"; }

prepare_pool 256M 8M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M")
expect_rc "vm add" 0 "$out"
out=$(dmrep --json point create "$VM")
expect_rc "point 1" 0 "$out"

# --- settings -------------------------------------------------------------------
out=$(dmrep --json vm network "$VM" --mac 52:54:00:AA:bb:01 --address 10.1.2.3/24 \
	--address fd00::5/64 --gateway 10.1.2.1 --dns 10.1.2.53 --dns 2001:db8::53)
expect_rc "settings for NIC 1" 0 "$out"
out=$(dmrep --json vm network "$VM" --mac 52:54:00:aa:bb:02 --address 192.168.7.7/16)
expect_rc "settings for NIC 2" 0 "$out"
show=$(dmrep --json vm show "$VM")
check "vm show has both NICs, the MAC normalised, lists intact" jq -e '.network | length == 2 and
	.[0].mac == "52:54:00:aa:bb:01" and .[0].addresses == ["10.1.2.3/24", "fd00::5/64"] and
	.[0].gateways == ["10.1.2.1"] and .[0].dns == ["10.1.2.53", "2001:db8::53"] and
	.[1].addresses == ["192.168.7.7/16"] and .[1].gateways == []' <<<"$show"
out=$(dmrep --json vm network "$VM" --mac 52:54:00:aa:bb:02 --address 192.168.7.8/16 --gateway 192.168.0.1)
expect_rc "setting a NIC again replaces it" 0 "$out"
show=$(dmrep --json vm show "$VM")
check "one entry per MAC, the new one" jq -e '(.network | length) == 2 and
	(.network | map(select(.mac == "52:54:00:aa:bb:02"))[0].addresses == ["192.168.7.8/16"])' <<<"$show"
for bad in "--mac 52:54:00:aa:bb" "--mac zz:54:00:aa:bb:01" "--mac 52:54:00:aa:bb:03 --address 10.0.0.300" \
	"--mac 52:54:00:aa:bb:03 --address 10.0.0.1/33" "--mac 52:54:00:aa:bb:03 --gateway 10.0.0.1/24" \
	"--mac 52:54:00:aa:bb:03 --dns example.com" "--address 10.0.0.1"; do
	# shellcheck disable=SC2086 # the options, split on purpose
	out=$(dmrep --json vm network "$VM" $bad)
	expect_rc "refused: $bad" 32773 "$out"
done
out=$(dmrep --json vm network nosuchvm --mac 52:54:00:aa:bb:01)
expect_rc "unknown VM: 32779" 32779 "$out"
agent_restart
check "the settings survive a restart" \
	test "$(dmrep --json vm show "$VM" | jq -c .network)" = "$(jq -c .network <<<"$show")"

# --- hooks ------------------------------------------------------------------------
cat >"$HOOKS/10-record" <<HOOK
#!/bin/sh
env | grep '^DMREP_' | sort >"$OUT.\${DMREP_OPERATION}"
HOOK
printf '#!/bin/sh\nexit 0\n' >"$HOOKS/20-ok"
printf '#!/bin/sh\nexit 9\n' >"$HOOKS/skipped.sh" # not a run-parts name: never run
printf '#!/bin/sh\nexit 9\n' >"$HOOKS/30-notexec" # not executable: never run
chmod 0755 "$HOOKS/10-record" "$HOOKS/20-ok" "$HOOKS/skipped.sh"
chmod 0644 "$HOOKS/30-notexec"

out=$(dmrep --json failover start "$VM" --guest resume --wait)
check "failover with hooks completes" jq -e '.job_state == 7' <<<"$out"
check "the job records each hook's exit status and duration" jq -e '(.hooks | map(.name)) == ["10-record", "20-ok"]
	and all(.hooks[]; .exit_status == 0 and .usec > 0)
	and (.steps | map(.name) | index("hook:10-record")) != null' <<<"$out"
F=$OUT.failover
check "the hook saw the VM" has_line "$F" "DMREP_VM=$VM"
check "the hook saw DMREP_POINT=1" has_line "$F" "DMREP_POINT=1"
check "the hook saw DMREP_TEST=0" has_line "$F" "DMREP_TEST=0"
check "the hook saw DMREP_OPERATION=failover" has_line "$F" "DMREP_OPERATION=failover"
check "the hook saw DMREP_NICS=2" has_line "$F" "DMREP_NICS=2"
check "NIC 0's MAC" has_line "$F" "DMREP_NIC0_MAC=52:54:00:aa:bb:01"
check "NIC 0's addresses" has_line "$F" "DMREP_NIC0_ADDRESSES=10.1.2.3/24 fd00::5/64"
check "NIC 0's DNS servers" has_line "$F" "DMREP_NIC0_DNS=10.1.2.53 2001:db8::53"
check "NIC 1's gateways" has_line "$F" "DMREP_NIC1_GATEWAYS=192.168.0.1"
check "the settings as JSON" eval "sed -n 's/^DMREP_NETWORK=//p' '$F' | jq -e 'length == 2'"
out=$(dmrep --json failover revert "$VM" --wait)
check "revert" jq -e '.job_state == 7' <<<"$out"

out=$(dmrep --json failover start "$VM" --test --wait)
check "test failover with hooks completes" jq -e '.job_state == 7 and (.hooks | length) == 2' <<<"$out"
check "the hook saw DMREP_TEST=1" has_line "$OUT.test-failover" "DMREP_TEST=1"
check "the hook saw DMREP_OPERATION=test-failover" has_line "$OUT.test-failover" "DMREP_OPERATION=test-failover"
out=$(dmrep --json failover stop-test "$VM" --wait)
check "stop-test" jq -e '.job_state == 7' <<<"$out"

# A failing hook fails the job; the failover stands; later hooks do not run.
printf '#!/bin/sh\necho "hook 15 fails" >&2\nexit 3\n' >"$HOOKS/15-fail"
chmod 0755 "$HOOKS/15-fail"
out=$(dmrep --json failover start "$VM" --guest resume --wait)
check "a failing hook: the job ends 10 with 32768 naming it" jq -e '.job_state == 10 and .error_code == 32768
	and (.error_description | test("15-fail exited 3"))' <<<"$out"
check "the hooks before it ran, the ones after it did not" \
	jq -e '(.hooks | map(.name)) == ["10-record", "15-fail"] and .hooks[1].exit_status == 3' <<<"$out"
show=$(dmrep --json vm show "$VM")
check "the failover itself stands (recovered on point 1)" \
	jq -e '.state == "recovered" and .failover_point == 1' <<<"$show"
rm -f "$HOOKS/15-fail"
out=$(dmrep --json failover revert "$VM" --wait)
check "and can be reverted" jq -e '.job_state == 7' <<<"$out"

# Hooks run as root: a directory others may write to runs none.
chmod 0777 "$HOOKS"
out=$(dmrep --json failover start "$VM" --guest resume --wait)
check "a world-writable hook directory: no hook runs, the job says why" \
	jq -e '.job_state == 10 and (.error_description | test("not root.s alone")) and ((.hooks // []) | length) == 0' <<<"$out"
chmod 0755 "$HOOKS"
dmrep --json failover revert "$VM" --wait >/dev/null

# --clear removes a NIC.
out=$(dmrep --json vm network "$VM" --mac 52:54:00:aa:bb:02 --clear)
expect_rc "clear NIC 2" 0 "$out"
show=$(dmrep --json vm show "$VM")
check "one NIC left" jq -e '.network | length == 1' <<<"$show"

agent_stop
summary
