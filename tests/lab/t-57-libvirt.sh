#!/bin/bash
# Lab test: the libvirt shim (issue 17, item 1) with a real libvirt daemon
# from Debian's packages running a TCG domain whose disk is the VM's
# stable device /dev/dmrep/VM/vda: QEMU opens it inside libvirt's private
# /dev and cgroup device ACL.  Failover and revert through the shim (the
# domain paused and resumed by libvirt's API, QEMU itself reading the
# point's data afterwards), a domain its operator paused stays paused, a
# domain shut off is never started, a failover interrupted while the
# domain was paused is finished and the domain resumed at the restart, an
# application point without a guest agent in the domain fails with 32777
# and leaves nothing, and the refusals of vm add.
set -u
. "$(dirname "$0")/lib/inittest.sh"
. "$(dirname "$0")/lib/libvirt.sh"

lab_need libvirtd virsh qemu-system-x86_64
# Before lab_setup: its mounts are the lab's baseline, not a leftover.
libvirt_start || { not_ok "libvirtd starts (see /tmp/libvirtd.log)"; exit 1; }
agent_setup
lab_cleanup libvirt_down
ok "libvirtd answers on qemu:///system"
DOM=${T}dom
D=/dev/dmrep/$VM/vda
# What QEMU reads of the disk, at the offset put and has use.
guest_has() {
	local out
	out=$(vqemu_io "$DOM" libvirt-1-format "read -P 0x$1 32768 16384")
	case $out in *"read 16384/16384"*) ! grep -qi fail <<<"$out" ;; *) return 1 ;; esac
}
log_has() { grep -q "$1" "$W/dmrepd.log"; }

prepare_pool 256M 8M
# ---- vm add's refusals ---------------------------------------------------
out=$(dmrep --json vm add "${VM}x" --disk vda="$W/x.img:8M" --libvirt "$DOM" --qmp "$W/q.sock")
expect_rc "--libvirt with --qmp is refused (32773)" 32773 "$out"
check "the reason says one hypervisor" jq -e '.error | contains("not with qmp")' <<<"$out"
out=$(dmrep --json vm add "${VM}x" --disk vda="$W/x.img:8M" --libvirt-uri qemu:///system)
expect_rc "--libvirt-uri without --libvirt is refused (32773)" 32773 "$out"
out=$(dmrep --json vm add "${VM}x" --disk vda="$W/x.img:8M" --libvirt "a/b")
expect_rc "a domain with a / is refused (32773)" 32773 "$out"
check "no VM was made by a refusal" sh -c "! dmrep --json vm show ${VM}x >/dev/null 2>&1"

out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:32M" --libvirt "$DOM")
expect_rc "vm add --libvirt DOMAIN" 0 "$out"
out=$(dmrep --json vm show "$VM")
is "vm show names the domain" "$DOM qemu:///system" "$(jq -r '"\(.libvirt) \(.libvirt_uri)"' <<<"$out")"
check "pattern a on the disk" put "$D" a0
expect_rc "point 1 (pattern a)" 0 "$(dmrep --json point create "$VM")"
check "pattern b on the disk" put "$D" b0

cat >"$W/dom.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>96</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='$D'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
XML
check "the domain is defined" vsh define "$W/dom.xml"
check "and starts (libvirt's QEMU opens the stable device)" vsh start "$DOM"
is "libvirt says it runs" running "$(vdomstate "$DOM")"
check "QEMU reads the live data (pattern b)" guest_has b0

# ---- failover and revert through libvirt -----------------------------------
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover start --point 1 completes" job_ok "$out"
check "the guest was paused for a measured window" jq -e '.guest_paused_usec > 0' <<<"$out"
diag "guest-paused window through libvirt: $(jq .guest_paused_usec <<<"$out") us"
is "the domain runs again" running "$(vdomstate "$DOM")"
check "QEMU, in libvirt's namespace, reads point 1's data (pattern a)" guest_has a0
out=$(dmrep --json failover revert "$VM" --guest resume --wait)
check "failover revert completes" job_ok "$out"
is "the domain runs" running "$(vdomstate "$DOM")"
check "QEMU reads the live data again (pattern b)" guest_has b0

# ---- a domain its operator paused stays paused ------------------------------
check "the operator pauses the domain" vsh suspend "$DOM"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover of the paused domain completes" job_ok "$out"
is "the domain stays paused" paused "$(vdomstate "$DOM")"
check "QEMU reads point 1's data" guest_has a0
out=$(dmrep --json failover revert "$VM" --guest resume --wait)
check "and its revert" job_ok "$out"
is "still paused" paused "$(vdomstate "$DOM")"
check "the operator resumes it" vsh resume "$DOM"

# ---- a failover cut short while the domain was paused ----------------------
agent_stop
DMREP_TEST_CRASH_AT=initiate:suspended agent_start || not_ok "the agent starts with the hook"
expect_rc "failover start (the agent dies in the window)" 4096 \
	"$(dmrep --json failover start "$VM" --point 1 --guest resume)"
if agent_exited 120 && [ "$AGENT_RC" = 137 ]; then ok "the agent was killed at initiate:suspended"
else not_ok "the agent was killed at initiate:suspended (exit ${AGENT_RC:-none})"; fi
is "libvirt says the domain is paused, by the failover" paused "$(vdomstate "$DOM")"
agent_start || not_ok "the agent restarts"
is "the restart resumed the domain through libvirt" running "$(vdomstate "$DOM")"
check "the log says so" log_has "resuming the guest"
state=$(dmrep --json vm show "$VM" | jq -r .state)
diag "after the restart the VM is $state"
if [ "$state" = recovered ]; then
	check "QEMU reads point 1's data" guest_has a0
	out=$(dmrep --json failover revert "$VM" --guest resume --wait)
	check "revert after the restart" job_ok "$out"
fi
check "QEMU reads the live data (pattern b)" guest_has b0

# ---- application point: the domain has a channel but no agent inside -------
out=$(dmrep --json point create "$VM" --consistency application)
expect_rc "with no guest agent answering in the domain, an application point fails (32777)" 32777 "$out"
check "the reason is libvirt's: the guest could not freeze" \
	jq -e '.error | contains("could not freeze") and contains("virDomainFSFreeze")' <<<"$out"
is "no point was added" 1 "$(dmrep --json point list "$VM" | jq length)"
is "the domain runs" running "$(vdomstate "$DOM")"

# ---- a domain shut off is never started -------------------------------------
check "the operator shuts the domain off" vsh destroy "$DOM"
out=$(dmrep --json failover start "$VM" --point 1 --guest resume --wait)
check "failover of the shut-off domain completes" job_ok "$out"
is "the domain stays shut off" "shut off" "$(vdomstate "$DOM")"
out=$(dmrep --json failover revert "$VM" --guest resume --wait)
check "and its revert" job_ok "$out"
is "still shut off" "shut off" "$(vdomstate "$DOM")"
check "the disk holds the live data" has "$D" b0

# ---- a domain that is not there ------------------------------------------------
check "the domain is undefined" vsh undefine "$DOM"
out=$(dmrep --json failover start "$VM" --point 1 --wait)
check "failover with the domain gone ends with 32777 (hypervisor unreachable)" \
	jq -e '.error_code == 32777' <<<"$out"
diag "$(jq -r .error_description <<<"$out")"
is "the VM is on its live volumes" '["live"]' "$(dmrep --json vm show "$VM" | jq -c '[.disks[].target] | unique')"
expect_rc "vm remove" 0 "$(dmrep --json vm remove "$VM")"
summary
