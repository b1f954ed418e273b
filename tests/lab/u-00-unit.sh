#!/bin/bash
# Lab test, under systemd as PID 1 (tools/lab/run --systemd -- THIS; run by
# tests/check.sh in a boot of its own): the real unit, agent/dmrepd.service.in
# installed as make install makes it (ExecStart on this build's dmrepd),
# started by systemctl; its sandbox is really applied (no new privileges,
# a seccomp filter, the capability bounding set, its own mount namespace,
# /usr read-only and /root read-only for its children), and the agent still
# works under it: pool create on loop files, vm add, a point, a failover
# to it with a failover hook run (under the same sandbox), the revert, and
# a clean systemctl stop.
set -u
. "$(dirname "$0")/lib/inittest.sh"

UNIT=/etc/systemd/system/dmrepd.service
HOOKS=/etc/dmrep/failover.d
unit_down() {
	systemctl stop dmrepd.service
	rm -f "$UNIT"
	rm -rf "$HOOKS" /var/lib/dmrep/* /run/dmrep
	systemctl daemon-reload
	remove_dmrep_devices agent
	# The pool's loops, attached inside the agent's mount namespace: their
	# back-file reads relative to the scratch mount there (/NAME/pool.data),
	# which lab_detach_under "$W" does not match.
	losetup -l -n -O NAME,BACK-FILE | awk -v d="/${W##*/}/" 'index($2, d) { print $1 }' |
		xargs -r -n1 losetup -d
}

if [ "$(ps -p 1 -o comm=)" != systemd ]; then
	not_ok "runs under systemd as PID 1 (tools/lab/run --systemd)"
	exit 1
fi
lab_setup
lab_cleanup unit_down
unset DMREP_SOCKET

# What make install writes (the Makefile's sed), on this build's agent.
sed "s|@SBINDIR@|$ROOT/${BUILD:-build}/bin|g" agent/dmrepd.service.in >"$UNIT"
chmod 0644 "$UNIT"
# A hook that says what it sees: it runs under the agent's sandbox.
mkdir -p "$HOOKS"
chmod 0755 /etc/dmrep "$HOOKS"
cat >"$HOOKS/10-probe" <<HOOK
#!/bin/sh
{
	grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
	touch /usr/dmrep-probe 2>/dev/null && echo usr=rw || echo usr=ro
	touch /root/dmrep-probe 2>/dev/null && echo root=rw || echo root=ro
	echo "vm=\$DMREP_VM"
} >$W/hook.out
HOOK
chmod 0755 "$HOOKS/10-probe"
check "systemctl daemon-reload" systemctl daemon-reload
t0=$(date +%s.%N)
if systemctl start dmrepd.service; then
	ok "systemctl start dmrepd (Type=notify: READY=1 came)"
else
	not_ok "systemctl start dmrepd (Type=notify: READY=1 came)"
	systemctl status --no-pager dmrepd.service | sed 's/^/#   /'
	journalctl -b -u dmrepd.service --no-pager | tail -n 30 | sed 's/^/#   /'
	exit 1
fi
diag "started in $(echo "$(date +%s.%N) - $t0" | bc) s"
check "systemctl is-active dmrepd" systemctl is-active --quiet dmrepd.service

# The sandbox, as the kernel sees it on the agent's process.
pid=$(systemctl show -p MainPID --value dmrepd.service)
st=$(cat "/proc/$pid/status")
check "the agent runs with no new privileges" grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$st"
check "the agent runs under a seccomp filter" grep -q '^Seccomp:[[:space:]]*2$' <<<"$st"
bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' <<<"$st")))
# CAP_SYS_ADMIN 21 and CAP_IPC_LOCK 14 kept; CAP_SYS_MODULE 16,
# CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_SETUID 7 gone.
check "its bounding set keeps CAP_SYS_ADMIN and CAP_IPC_LOCK" \
	test $(((bnd >> 21 & 1) + (bnd >> 14 & 1))) = 2
check "its bounding set drops CAP_SYS_MODULE, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_SETUID" \
	test $(((bnd >> 16 & 1) + (bnd >> 12 & 1) + (bnd >> 19 & 1) + (bnd >> 7 & 1))) = 0
check "it has a mount namespace of its own" \
	test "$(readlink "/proc/$pid/ns/mnt")" != "$(readlink /proc/1/ns/mnt)"
check "systemd applies ProtectHome=read-only, ProtectSystem=full" \
	test "$(systemctl show -p ProtectHome -p ProtectSystem --value dmrepd.service | tr '\n' ' ')" = "read-only full "
check "its memory is locked (mlockall under LimitMEMLOCK)" \
	eval "[ \"\$(awk '/^VmLck:/ { print \$2 }' /proc/$pid/status)\" -gt 0 ]"

# The agent's work, through the client on the default socket.
prepare_pool 512M 16M
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:16M" --disk vdb="$W/vdb.img:16M")
expect_rc "vm add with two disks" 0 "$out"
put "/dev/dmrep/$VM/vda" a0 && put "/dev/dmrep/$VM/vdb" a1
out=$(dmrep --json point create "$VM" --label unit)
expect_rc "point create" 0 "$out"
put "/dev/dmrep/$VM/vda" b0 && put "/dev/dmrep/$VM/vdb" b1
out=$(dmrep --json failover start "$VM" --wait)
expect_rc "failover start --wait" 0 "$out"
check "the failover job completes" job_ok "$out"
check "the VM is recovered on the point" \
	eval "dmrep --json vm show '$VM' | jq -e '.state == \"recovered\"'"
check "the disks hold the point's data" both a0 a1
check "the failover hook ran for the VM" grep -qx "vm=$VM" "$W/hook.out"
check "the hook ran with no new privileges under seccomp" \
	eval "grep -q '^NoNewPrivs:[[:space:]]*1$' '$W/hook.out' && grep -q '^Seccomp:[[:space:]]*2$' '$W/hook.out'"
check "the hook sees /usr and /root read-only" \
	eval "grep -qx usr=ro '$W/hook.out' && grep -qx root=ro '$W/hook.out'"
[ -e /usr/dmrep-probe ] && rm -f /usr/dmrep-probe
[ -e /root/dmrep-probe ] && rm -f /root/dmrep-probe
out=$(dmrep --json failover revert "$VM" --wait)
expect_rc "failover revert --wait" 0 "$out"
check "the VM replicates again on the live data" \
	eval "dmrep --json vm show '$VM' | jq -e '.state == \"replicating\"' && both b0 b1"

if systemctl stop dmrepd.service; then ok "systemctl stop dmrepd"; else not_ok "systemctl stop dmrepd"; fi
check "the agent stopped cleanly (exit 0, result success)" \
	test "$(systemctl show -p Result -p ExecMainStatus --value dmrepd.service | tr '\n' ' ')" = "success 0 "
journalctl -b -u dmrepd.service --no-pager -p warning | grep -v '^-- ' | sed 's/^/#   journal: /'
summary
