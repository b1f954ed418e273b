#!/bin/bash
# Lab test: dmrep metrics (issue 17, item 6) and the completion's names
# from a real agent (item 3).  A pool, a VM with two points and a failover
# through an exec shim; dmrep metrics parsed by prometheus_client's parser
# (python3-prometheus-client), its values against point list, pool status
# and the failover's job; a member of --group and anyone else who may open
# the socket read them too; one who may not gets dmrep_up 0.
set -u
. "$(dirname "$0")/lib/inittest.sh"

agent_setup
agent_stop
member_setup
# The first start made the socket's directory without a group.
rm -rf "$(dirname "$SOCK")"
DMREPD_ARGS="--group $G"
agent_start || { not_ok "dmrepd starts with --group"; exit 1; }

prepare_pool 256M 8M
cat >"$W/shim.sh" <<'SHIM'
#!/bin/sh
case $1 in
status) echo running ;;
pause) sleep 0.2 ;;
esac
SHIM
chmod 0755 "$W/shim.sh"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --exec-shim "$W/shim.sh")
expect_rc "vm add with an exec shim" 0 "$out"
put "/dev/dmrep/$VM/vda" a0
expect_rc "point 1" 0 "$(dmrep --json point create "$VM" --label one)"
put "/dev/dmrep/$VM/vda" b0
expect_rc "point 2" 0 "$(dmrep --json point create "$VM")"
fo=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "a failover to point 1" job_ok "$fo"

# samples: the exposition parsed by prometheus_client, one sample a line,
# "name{label=value,...} value" with the labels sorted; fails on anything
# the parser refuses.
samples() {
	/usr/bin/python3 -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    if not fam.documentation:
        sys.exit("no HELP for " + fam.name)
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, float(s.value)))
'
}
# value NAME{LABELS}: the sample's value, as python printed it.
value() { awk -v k="$1" '$1 == k { print $2 }' "$W/samples"; }
num() { /usr/bin/python3 -c "print(float($1))"; }

dmrep metrics >"$W/metrics"
is "dmrep metrics exits 0" 0 "$?"
if samples <"$W/metrics" >"$W/samples" 2>"$W/parse.err"; then
	ok "its output parses (prometheus_client)"
else
	not_ok "its output parses (prometheus_client): $(tail -n1 "$W/parse.err")"
fi
check "every family has HELP and TYPE" awk '/^# HELP/ { h[$3] = 1 } /^# TYPE/ { t[$3] = 1 }
	!/^#/ { sub(/[{ ].*/, ""); n[$0] = 1 }
	END { for (m in n) { b = m; sub(/_total$/, "", b); if (!((m in h) || (b in h)) || !((m in t) || (b in t))) exit 1 } }' "$W/metrics"
check "names carry units: _bytes, _seconds" grep -q '^dmrep_pool_data_used_bytes ' "$W/metrics"
is "dmrep_up is 1" 1.0 "$(value 'dmrep_up{}')"
pool=$(dmrep --json pool status)
is "pool data used bytes: pool status's" "$(num "$(jq .data_used_bytes <<<"$pool")")" \
	"$(value 'dmrep_pool_data_used_bytes{}')"
is "pool data size bytes: pool status's" "$(num "$(jq .data_size_bytes <<<"$pool")")" \
	"$(value 'dmrep_pool_data_size_bytes{}')"
is "pool metadata used: pool status's blocks of 4 KiB" "$(num "$(jq '.meta_used_blocks * 4096' <<<"$pool")")" \
	"$(value 'dmrep_pool_metadata_used_bytes{}')"
is "pool mode rw is 1" 1.0 "$(value 'dmrep_pool_mode{mode=rw}')"
npoints=$(dmrep --json point list "$VM" | jq length)
is "points of the VM: point list's length" "$(num "$npoints")" "$(value "dmrep_vm_points{vm=$VM}")"
check "the VM's state is a label of dmrep_vm_info" grep -qx \
	"dmrep_vm_info{backend=thin,role=primary,state=recovered,vm=$VM} 1.0" "$W/samples"
paused=$(jq .guest_paused_usec <<<"$fo")
check "the failover paused the guest (the shim's pause sleeps)" test "$paused" -gt 0
is "last failover's paused window: the job's guest_paused_usec" \
	"$(/usr/bin/python3 -c "print(round($paused / 1e6, 6))")" \
	"$(value "dmrep_vm_last_failover_guest_paused_seconds{vm=$VM}")"
age=$(value "dmrep_vm_newest_point_age_seconds{vm=$VM}")
oldest=$(value "dmrep_vm_oldest_point_age_seconds{vm=$VM}")
check "point ages: newest valid <= oldest, both under an hour" /usr/bin/python3 -c \
	"import sys; sys.exit(not (0 <= $age <= $oldest < 3600))"
is "replication off: state off is 1" 1.0 "$(value "dmrep_replication_state{state=off,vm=$VM}")"
is "replication off: state ok is 0" 0.0 "$(value "dmrep_replication_state{state=ok,vm=$VM}")"
failed=$(dmrep --json job list | jq '[.[] | select(.job_state >= 7 and (.job_state != 7 or .error_code != 0))] | length')
is "failed jobs: job list's" "$(num "$failed")" "$(value 'dmrep_jobs_failed{}')"

# --- who may read them ----------------------------------------------------------
out=$(as_member dmrep --socket "$SOCK" metrics)
check "a member of --group reads the same points" grep -qx "dmrep_vm_points{vm=\"$VM\"} $npoints" <<<"$out"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups -- dmrep --socket "$SOCK" metrics 2>"$W/err")
rc=$?
is "one who may not open the socket: exit 2 (32769)" 2 "$rc"
check "and stdout still says dmrep_up 0" grep -qx "dmrep_up 0" <<<"$out"
check "and nothing else" test "$(grep -vc '^#' <<<"$out")" = 1
out=$(dmrep --json metrics)
check "--json: one document holding the text" jq -e '.return == 0 and (.metrics | test("dmrep_up 1"))' <<<"$out"

# --- the example unit's command: the file replaced atomically -----------------------
# Its ExecStart, with systemd's $$ made the shell's $ again.
unit_cmd=$(sed -n "s|^ExecStart=/bin/sh -c '\(.*\)'\$|\1|p" tools/metrics/dmrep-metrics.service | sed 's/\$\$/$/g')
mkdir "$W/prom"
echo "old" >"$W/prom/dmrep.prom"
DMREP_PROM_DIR=$W/prom sh -c "$unit_cmd"
is "dmrep-metrics.service's command exits 0" 0 "$?"
check "it replaced dmrep.prom with the metrics" grep -qx "dmrep_up 1" "$W/prom/dmrep.prom"
is "and left no temporary file" "dmrep.prom" "$(ls -A "$W/prom" | paste -sd' ')"

# --- the completion's names, from this agent -------------------------------------
complete_words() {
	bash --norc --noprofile -c '
		. /usr/share/bash-completion/bash_completion
		. tools/completion/dmrep
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_dmrep dmrep "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | paste -sd" "' _ "$@"
}
is "completion: vm show offers the VM" "$VM" "$(complete_words dmrep vm show "")"
is "completion: point remove VM offers its points" \
	"$(dmrep --json point list "$VM" | jq -r '.[].id' | sort | paste -sd' ')" \
	"$(complete_words dmrep point remove "$VM" "")"
is "completion: failover start VM --point offers them too" \
	"$(dmrep --json point list "$VM" | jq -r '.[].id' | sort | paste -sd' ')" \
	"$(complete_words dmrep --socket "$SOCK" failover start "$VM" --point "")"

out=$(dmrep --json failover revert "$VM" --guest resume --wait)
check "revert" job_ok "$out"
agent_stop
out=$(dmrep metrics 2>/dev/null)
rc=$?
is "the agent stopped: exit 10 (32777)" 10 "$rc"
check "and dmrep_up 0" grep -qx "dmrep_up 0" <<<"$out"
is "completion with the agent down: nothing" "" "$(complete_words dmrep vm show "")"
DMREP_PROM_DIR=$W/prom sh -c "$unit_cmd" 2>/dev/null
check "the unit's command fails with the agent down" test "$?" -ne 0
check "and the file says dmrep_up 0" grep -qx "dmrep_up 0" "$W/prom/dmrep.prom"
summary
