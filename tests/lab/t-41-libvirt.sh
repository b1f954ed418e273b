#!/bin/bash
# Lab test: a VM whose hypervisor is libvirt (issue 17, item 1), through
# libvirt's C API in the agent.  The lab has no libvirtd; libvirt's own test
# driver (test:///default, inside libvirt.so) stands in for it: its domain
# "test" runs, pauses, resumes and freezes two filesystems.  Each of the
# agent's operations opens its own connection, so each sees a fresh "test"
# domain that runs.  What is checked: vm add with --libvirt and
# --libvirt-uri, the refusals (32773), the fields in vm show --json and the
# state file, kept across a restart; a failover and a revert that pause and
# resume the domain (a measured guest-paused window); an application point
# frozen through libvirt without --qga.
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_need thin_ls jq
agent_setup
prepare_pool 256M 8M
URI=test:///default
DISKS="vda vdb"

# Refusals first: nothing is added.
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --libvirt test --qmp "$W/none.qmp")
expect_rc "--libvirt with --qmp: refused" 32773 "$out"
check "... with a one-line reason" jq -e '.error | test("libvirt") and (test("\n") | not)' <<<"$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --libvirt test --exec-shim /bin/true)
expect_rc "--libvirt with --exec-shim: refused" 32773 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --libvirt-uri "$URI")
expect_rc "--libvirt-uri without --libvirt: refused" 32773 "$out"
out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --libvirt "a/b" --libvirt-uri "$URI")
expect_rc "a domain with a '/': refused" 32773 "$out"
check "no VM was added by the refusals" bash -c "! dmrep --json vm show $VM >/dev/null"

out=$(dmrep --json vm add "$VM" --disk vda="$W/vda.img:8M" --disk vdb="$W/vdb.img:8M" \
	--libvirt test --libvirt-uri "$URI")
expect_rc "vm add --libvirt test --libvirt-uri $URI" 0 "$out"
wait_until 30 vm_is '.disks | length == 2'
show=$(dmrep --json vm show "$VM")
check "vm show --json: libvirt and libvirt_uri" \
	jq -e --arg u "$URI" '.libvirt == "test" and .libvirt_uri == $u and .qmp == null' <<<"$show"
check "the state file holds them" \
	jq -e --arg u "$URI" '.libvirt == "test" and .libvirt_uri == $u' "$STATE/vms/$VM.json"

put_all a
out=$(dmrep --json point create "$VM" --label a)
expect_rc "a crash-consistent point" 0 "$out"
put_all b

# The swap pauses the domain through virDomainSuspend and resumes it.
out=$(dmrep --json failover start "$VM" --guest resume --wait)
expect_rc "failover start --wait" 0 "$out"
check "the job paused the guest for a measured window" jq -e '.guest_paused_usec > 0' <<<"$out"
check "... with the pause and resume steps" \
	jq -e '[.steps[].name] | index("window:pause") != null and index("window:guest-resume") != null' <<<"$out"
check "the disks run on the point" all_have a
out=$(dmrep --json failover revert "$VM" --wait)
expect_rc "failover revert --wait" 0 "$out"
check "back on the live disks" all_have b

# No --qga: application consistency through virDomainFSFreeze.
out=$(dmrep --json point create "$VM" --consistency application --label app)
expect_rc "point create --consistency application (frozen through libvirt)" 0 "$out"
job=$(dmrep --json job list | jq 'map(select(.method == "CreateReplicationPoint")) | max_by(.id)')
check "the job froze the test domain's two filesystems" \
	jq -e '.frozen_filesystems == 2 and (.steps | map(.name) | index("frozen")) != null' <<<"$job"

# The record survives a restart, and the agent says nothing of libvirt's
# own on its stderr (libvirt's default error printing is silenced).
agent_restart
show=$(dmrep --json vm show "$VM")
check "after a restart: libvirt and libvirt_uri kept" \
	jq -e --arg u "$URI" '.libvirt == "test" and .libvirt_uri == $u' <<<"$show"
check_not "libvirt printed nothing of its own in the agent's log" grep -q 'libvirt: .* error : ' "$W/dmrepd.log"

out=$(dmrep --json vm remove "$VM")
expect_rc "vm remove" 0 "$out"
agent_stop
summary
