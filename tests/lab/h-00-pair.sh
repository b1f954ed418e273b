#!/bin/bash
# Two-host lab test: the pair keeps its contract (shared/CONTRACT.md §1
# "Two hosts").  Both hosts up under their names, which resolve on both;
# root's ssh works both ways with no prompt and gives the command's PATH;
# each host has its own kernel, device-mapper and scratch disk (journaled);
# this machine's /root/.ssh is masked by the lab's own; the link reaches
# nothing but the other host; each host's agent answers `ssh HOST dmrep`;
# `lab-power off lab2` cuts it at once (ssh fails within seconds), `on`
# boots it again on the same disk with what was synced before the cut; and
# the library's teardown fails a test that leaves a device on the peer.
set -u
. "$(dirname "$0")/lib/inittest.sh"
pair_agent_setup

declare -A addr=([lab1]=169.254.1.1 [lab2]=169.254.1.2)
boot_id() { cat /proc/sys/kernel/random/boot_id; }
peer_boot_id() { on_peer cat /proc/sys/kernel/random/boot_id; }

# --- names ------------------------------------------------------------------------
is "this host is lab1 (\$LAB_HOST)" lab1 "$LAB_HOST"
is "its kernel's hostname too" lab1 "$(hostname)"
is "the peer is lab2" lab2 "$PEER"
is "on lab2, \$LAB_HOST is lab2" lab2 "$(on_peer printenv LAB_HOST)"
is "and its hostname" lab2 "$(on_peer hostname)"
for h in lab1 lab2; do
	is "$h resolves on lab1 to ${addr[$h]}" "${addr[$h]}" "$(getent ahostsv4 "$h" | awk 'NR == 1 { print $1 }')"
	is "$h resolves on lab2 to ${addr[$h]}" "${addr[$h]}" "$(on_peer getent ahostsv4 "$h" | awk 'NR == 1 { print $1 }')"
done
cp /etc/hosts "$W/hosts"
check "/etc/hosts is the lab's own copy, writable" sh -c "echo '# h-00' >>/etc/hosts && cp '$W/hosts' /etc/hosts"

# --- ssh ----------------------------------------------------------------------------
t0=${EPOCHREALTIME/[.,]/}
check "ssh lab2 true: no prompt (BatchMode, no terminal, stdin closed)" setsid ssh -o BatchMode=yes lab2 true
t1=${EPOCHREALTIME/[.,]/}
diag "one ssh round trip: $(((t1 - t0) / 1000)) ms"
check "and back: ssh lab1 true from lab2" on_peer setsid ssh -o BatchMode=yes lab1 true
is "ssh lab2 runs as root" root "$(ssh lab2 id -un)"
path=$(ssh lab2 printenv PATH)
is "ssh lab2's PATH is the command's" "$PATH" "$path"
is "its first entry is the repo's build/bin" "$(dirname "$(command -v dmrep)")" "${path%%:*}"
is "dmrep there is the repo's" "$(command -v dmrep)" "$(ssh lab2 command -v dmrep)"
is "ssh lab1's PATH (from lab2) is the same" "$PATH" "$(on_peer ssh lab1 printenv PATH)"
is "LAB and LAB_SCRATCH in an ssh session" "1 /run/lab/scratch" "$(ssh lab2 'echo $LAB $LAB_SCRATCH')"
head -c 4194304 /dev/urandom >"$W/rand"
want=$(sha256sum <"$W/rand" | cut -d' ' -f1)
is "4 MiB through on_peer's stdin arrive intact" "$want" "$(on_peer sha256sum <"$W/rand" | cut -d' ' -f1)"
t0=${EPOCHREALTIME/[.,]/}
got=$(ssh lab2 sha256sum <"$W/rand" | cut -d' ' -f1)
t1=${EPOCHREALTIME/[.,]/}
is "and through a plain ssh lab2" "$want" "$got"
diag "4 MiB through ssh lab2 (connection included): $(((t1 - t0) / 1000)) ms"

# --- this machine's /root/.ssh: masked ----------------------------------------------
lab_files="authorized_keys config environment id_ed25519 id_ed25519.pub known_hosts"
is "/root/.ssh on lab1 is a tmpfs" tmpfs "$(findmnt -n -o FSTYPE /root/.ssh)"
is "holding the lab's files only" "$lab_files" "$(ls /root/.ssh | tr '\n' ' ' | sed 's/ $//')"
is "/root/.ssh on lab2 is a tmpfs" tmpfs "$(on_peer findmnt -n -o FSTYPE /root/.ssh)"
is "holding the lab's files only" "$lab_files" "$(on_peer ls /root/.ssh | tr '\n' ' ' | sed 's/ $//')"
check "known_hosts names lab1 and lab2 only" sh -c 'test "$(cut -d" " -f1 /root/.ssh/known_hosts | tr "\n" " ")" = "lab1,169.254.1.1 lab2,169.254.1.2 "'

# --- own kernels, device-mapper and disks ---------------------------------------------
check "two kernels: lab1 and lab2 have different boot ids" test "$(boot_id)" != "$(peer_boot_id)"
peer_cleanup 'lab_remove_dm "${T}peer"'
check "a dm device made on lab2" peer_sh 'dmsetup create "${T}peer" -u "DMREP-labtest-$$-peer" --table "0 8 zero"'
check "lab2 has it" on_peer dmsetup info "${T}peer"
check_not "lab1 does not (each host its own device-mapper)" dmsetup info "${T}peer"
check "removed on lab2" on_peer dmsetup remove "${T}peer"
check "lab2's work directory \$PW is on lab2's scratch disk" on_peer test -d "$PW"
check_not "and not on lab1's" test -e "$PW"
check "lab1's scratch is journaled ext4" sh -c 'tune2fs -l "$(findmnt -n -o SOURCE /run/lab/scratch)" | grep -q "features:.*has_journal"'
check "lab2's too" on_peer sh -c 'tune2fs -l "$(findmnt -n -o SOURCE /run/lab/scratch)" | grep -q "features:.*has_journal"'

# --- the link reaches nothing else --------------------------------------------------
is "lab1 has no default route" "" "$(ip route show default)"
is "lab2 neither" "" "$(on_peer ip route show default)"
is "lab1's one IPv4 route is the link's" "169.254.0.0/16" "$(ip -4 route show | awk '{ print $1 }' | tr '\n' ' ' | sed 's/ $//')"
check_not "10.0.2.2 (QEMU's user network) has no route" ip route get 10.0.2.2
check_not "nor does a public address" ip route get 192.0.2.1
check_not "no TCP connection to 10.0.2.2" timeout 5 bash -c 'exec 3<>/dev/tcp/10.0.2.2/22'
is "lab1 has one NIC besides lo" 1 "$(ls /sys/class/net | grep -vcx lo)"

# --- the peer's agent, through ssh -----------------------------------------------
if peer_agent_start; then ok "dmrepd starts on lab2 (peer_agent_start)"; else not_ok "dmrepd starts on lab2"; fi
check "ssh lab2 dmrep --json vm list reaches it on the default socket" \
	sh -c 'ssh lab2 dmrep --json vm list | jq -e "type == \"array\" and length == 0"'
check "peer_agent_alive" peer_agent_alive
check "and back: ssh lab1 dmrep from lab2 reaches lab1's agent (pair_agent_setup)" \
	on_peer sh -c 'ssh lab1 dmrep --json vm list | jq -e "type == \"array\""'
check "the socket there is this test's agent's" sh -c "ss -xlpn | grep -q '/run/dmrep/dmrepd.sock .*pid=$AGENT_PID,'"

# --- lab-power --------------------------------------------------------------------
token="h-00 $$ $RANDOM"
before=$(peer_boot_id)
check "a file on lab2's scratch, synced (fsync)" peer_sh "printf '%s\n' '$token' >\"\$W/synced\" && sync \"\$W/synced\""
is "lab-power status lab2: on" on "$(lab-power status lab2)"
check_not "lab-power off lab1 on lab1 (itself) is refused" lab-power off lab1
check_not "lab-power off lab1 from lab2 is refused (lab1 runs the command)" on_peer lab-power off lab1
check_not "lab-power off lab3: no such host" lab-power off lab3
t0=$SECONDS
check "lab-power off lab2" lab-power off lab2
diag "off took $((SECONDS - t0)) s"
is "lab-power status lab2: off" off "$(lab-power status lab2)"
t0=$SECONDS
check_not "ssh lab2 fails once it is off" ssh lab2 true
dt=$((SECONDS - t0))
check "quickly: within 15 s ($dt s)" test "$dt" -le 15
t0=$SECONDS
check "lab-power on lab2" lab-power on lab2
diag "on (until ssh answers) took $((SECONDS - t0)) s"
is "lab-power status lab2: on again" on "$(lab-power status lab2)"
check "ssh lab2 answers at once" ssh -o ConnectTimeout=5 lab2 true
check "it booted anew (another boot id)" test "$(peer_boot_id)" != "$before"
is "the file synced before the cut is there, intact" "$token" "$(on_peer cat "$PW/synced")"
check "its scratch disk was not reformatted (\$PW is there)" on_peer test -d "$PW"
check_not "the agent did not survive the cut" peer_agent_alive
if peer_agent_start; then ok "dmrepd starts again on lab2, on its state there"; else not_ok "dmrepd starts again on lab2"; fi
check "ssh both ways after the power cycle" on_peer ssh lab1 true
is "lab2 is still lab2" lab2 "$(on_peer printenv LAB_HOST)"
check "its /root/.ssh is the lab's again" on_peer sh -c 'test "$(findmnt -n -o FSTYPE /root/.ssh)" = tmpfs'

# --- the library: the teardown on the peer (a child two-host test) -------------------
child() {
	local name=$1 body=$2
	printf '%s\n' '#!/bin/bash' 'set -u' ". '$LAB_LIB/inittest.sh'" 'pair_setup' "$body" 'summary' >"$W/$name.sh"
	env -u CI -u LAB_CI -u LAB_TAP_TIMES bash "$W/$name.sh" >"$W/$name.out" 2>&1
	crc=$?
	sed "s/^/# $name: /" "$W/$name.out"
}
child left 'peer_sh '\''dmsetup create "${T}left" -u "DMREP-labtest-$$-left" --table "0 8 zero"'\''
ok "made a device on lab2"'
check "a child test that leaves a device on lab2 fails" test "$crc" != 0
# (A line from lab2 may end with its time, lab2 booted with LAB_TAP_TIMES=1.)
check "the peer's teardown says so, counted" grep -qE '^not ok - teardown on lab2: nothing left behind \(1 left\)( # \+[0-9]+ ms)?$' "$W/left.out"
check "naming the device" grep -q '^#   left behind on lab2: dm device dmrt[0-9]*-left (DMREP-labtest-' "$W/left.out"
check "lab1's own teardown passed" grep -qx 'ok - teardown: nothing left behind' "$W/left.out"
check "its counts line has the one failure" test "$(tail -n1 "$W/left.out")" = "# 2 passed, 1 failed, 0 skipped"
is "and the device is gone from lab2" "" "$(on_peer dmsetup info -c --noheadings -o uuid 2>/dev/null | grep '^DMREP-labtest-')"
child off 'peer_power_off && ok "lab2 off"'
is "a child test that leaves lab2 off passes" 0 "$crc"
check "its teardown powered lab2 on and checked it" grep -qE '^ok - teardown on lab2: nothing left behind( # \+[0-9]+ ms)?$' "$W/off.out"
check "lab2 is on after it" ssh lab2 true
summary
