#!/bin/bash
# The bash completion (tools/completion/dmrep), in a non-interactive bash
# with bash-completion's library, as bash calls it: COMP_WORDS, COMP_CWORD,
# COMP_LINE, COMP_POINT set, _dmrep called, COMPREPLY compared.  The client
# is build/bin/dmrep (its --help is where commands and options come from);
# VM names and point ids come from a stand-in agent: a dmrep wrapper that
# answers vm list and point list itself and passes the rest to the real
# client.  tests/lab/t-98-metrics.sh completes names from a real agent.
# Last line: `completion: N passed, N failed`.
set -u
cd "$(dirname "$0")/.." || exit 1
BIN=${BUILD:-build}/bin/dmrep
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $*"; }

if [ ! -r /usr/share/bash-completion/bash_completion ] || [ ! -x "$BIN" ]; then
	not_ok "bash-completion and $BIN are there (make deps, make)"
	echo "completion: $pass passed, $fail failed"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/files/sub" "$tmp/bin"
touch "$tmp/files/pool.data" "$tmp/files/pool.meta"
# The stand-in: a dmrep that knows two VMs and their points, and records
# the socket it was asked on; the rest is the real client.
cat >"$tmp/bin/dmrep" <<EOF
#!/bin/bash
sock=\${DMREP_SOCKET:-}
args=()
while [ \$# -gt 0 ]; do
	case \$1 in
	--socket) sock=\$2; shift 2 ;;
	*) args+=("\$1"); shift ;;
	esac
done
echo "\$sock" >"$tmp/socket-asked"
case \$sock in /nonexistent/*) exec "$PWD/$BIN" --socket "\$sock" "\${args[@]}" ;; esac
case "\${args[*]}" in
"vm list") printf 'web: replicating, backend thin\n  vda /dev/dmrep/web/vda 1 bytes live\ndb1: recovered, backend classic\n' ;;
"point list web") printf '%6s  %s\n' ID CREATED 3 2026-01-01T00:00:00Z 7 2026-01-02T00:00:00Z ;;
"job list") printf 'job 12: InitiateFailover web: completed, 100%%\n' ;;
"vm list"* | "point list"* | "job list"*) exit 10 ;;
*) exec "$PWD/$BIN" "\${args[@]}" ;;
esac
EOF
chmod 0755 "$tmp/bin/dmrep"

# run CWORDS...: the completion of the last word, one line, sorted.
run() {
	bash --norc --noprofile -c '
		. /usr/share/bash-completion/bash_completion
		. tools/completion/dmrep
		COMP_WORDS=("$@")
		COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		COMPREPLY=()
		_dmrep dmrep "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]:-}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | paste -sd" "' _ "$@" 2>"$tmp/stderr"
}
# want DESC "EXPECTED" WORDS...: the completion is exactly EXPECTED (sorted).
want() {
	local desc=$1 exp=$2 got
	shift 2
	got=$(run "$@")
	if [ "$got" = "$exp" ] && [ ! -s "$tmp/stderr" ]; then
		ok "$desc"
	else
		not_ok "$desc (want '$exp', got '$got'$([ -s "$tmp/stderr" ] && echo ", stderr: $(head -c 200 "$tmp/stderr")"))"
	fi
}
# has DESC WORD WORDS...: the completion includes WORD.
has() {
	local desc=$1 w=$2 got
	shift 2
	got=" $(run "$@") "
	if [[ $got == *" $w "* ]]; then ok "$desc"; else not_ok "$desc (no '$w' in '$got')"; fi
}

export DMREP_SOCKET=$tmp/default.sock
PATH=$tmp/bin:$PATH
# Commands and subcommands: every group of dmrep --help.
groups=$("$BIN" --help | awk '$1 == "dmrep" && $2 ~ /^[a-z]/ { print $2 }' | sort -u | paste -sd' ')
want "commands: every group of --help" "$groups" dmrep ""
want "a group from its first letters" "point pool" dmrep po
want "subcommands of pool: those of --help" \
	"$("$BIN" --help | awk '$2 == "pool" { print $3 }' | sort | paste -sd' ')" dmrep pool ""
want "subcommands of failover" "commit revert start stop-test" dmrep failover ""
want "subcommands after --json and --socket's value" "show" dmrep --json --socket /x vm s
want "options before a command" "--help --json --socket --version" dmrep --
# Options per command, as its --help lists them.
want "pool create's options" "--data --data-size" dmrep pool create --data
has "vm add takes --backend" --backend dmrep vm add web --b
has "every command takes --socket" --socket dmrep job list --so
has "metrics (one word) takes --json" --json dmrep metrics --j
want "job wait: --timeout" "--timeout" dmrep job wait 3 --t
# Values with fixed choices.
want "--backend thin|classic" "classic thin" dmrep vm add web --backend ""
want "--consistency crash|application" "application" dmrep point create web --consistency a
want "--guest resume|reset" "reset resume" dmrep failover start web --guest ""
want "--compress zstd" "zstd" dmrep point send web --compress ""
want "--backend=VALUE form" "classic" dmrep vm add web --backend=c
# Paths.
want "--data: files" "$tmp/files/pool.data" dmrep pool create --data "$tmp/files/pool.d"
want "--meta: files" "$tmp/files/pool.meta" dmrep pool create --data x --meta "$tmp/files/pool.m"
want "--socket: files" "$tmp/files/sub" dmrep --socket "$tmp/files/s"
want "--disk NAME=PATH: the path after the =" "vda=$tmp/files/pool.data" \
	dmrep vm add web --disk "vda=$tmp/files/pool.d"
want "--to COMMAND: nothing offered" "" dmrep vm replicate web --to ""
want "--libvirt DOMAIN: nothing offered" "" dmrep vm add web --libvirt ""
want "--libvirt-uri URI: libvirt's local URIs" "qemu:///session qemu:///system" \
	dmrep vm add web --libvirt d --libvirt-uri ""
# bash splits the word at ':' and replaces what follows the last one.
want "--libvirt-uri URI: after a ':'" "///system" dmrep vm add web --libvirt-uri "qemu:///sy"
# Names and ids from the agent.
want "vm show: the agent's VMs" "db1 web" dmrep vm show ""
want "failover start: VMs from a prefix" "web" dmrep failover start w
want "point remove VM: its points" "3 7" dmrep point remove web ""
want "failover start --point: the VM's points" "3 7" dmrep failover start web --point ""
want "point send --base: the VM's points" "3 7" dmrep point send web --point 7 --base ""
want "job show: the agent's jobs" "12" dmrep job show ""
want "no name after the positionals" "" dmrep vm show web ""
run dmrep --socket /run/other.sock vm show "" >/dev/null
if [ "$(cat "$tmp/socket-asked")" = /run/other.sock ]; then
	ok "the agent is asked on the command line's --socket"
else
	not_ok "the agent is asked on the command line's --socket (asked: $(cat "$tmp/socket-asked"))"
fi
# An unknown VM, or an agent that does not answer: nothing, and quiet.
want "no agent at the socket: no VMs, quietly" "" dmrep --socket /nonexistent/dmrepd.sock vm show ""
want "no agent at the socket: no points, quietly" "" dmrep --socket /nonexistent/dmrepd.sock point remove web ""
want "point remove of an unknown VM: nothing, quietly" "" dmrep point remove nosuch ""
echo "completion: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
