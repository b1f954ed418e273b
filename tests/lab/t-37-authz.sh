#!/bin/bash
# Lab test: a member of dmrepd --group is not root (issue 11, item 5).
# An unprivileged user in the group (useradd inside the lab) may use VMs
# and points, and name disks, sockets and shims only inside what root
# configured (--image-dir, --socket-dir, --shim-dir); pool create, network
# settings, --cow-dev and --force are root's; a QMP socket swapped for a
# link to another VM's monitor after it was accepted is never connected to;
# root may do everything.
set -u
. "$(dirname "$0")/lib/inittest.sh"

agent_setup
agent_stop
member_setup
lab_cleanup 'rm -f "/etc/$G-nologin"'
mdrep() { as_member dmrep --socket "$SOCK" --json "$@"; }
# expect_denied DESC JSON RULE: the agent (not the socket's mode) refused
# with 32769, and its one line names RULE.
expect_denied() {
	if [ "$(jq -r .return <<<"$2" 2>/dev/null)" = 32769 ] && jq -r .error <<<"$2" | grep -q -- "$3"; then
		ok "$1"
	else
		not_ok "$1 (want 32769 naming '$3', got: ${2:0:200})"
	fi
}

mkdir -p "$W/img" "$W/sock" "$W/shim" "$W/out"
chgrp "$G" "$W/img" "$W/sock" && chmod 2775 "$W/img" "$W/sock"
# The first start made the socket's directory without a group.
rm -rf "$(dirname "$SOCK")"
DMREPD_ARGS="--group $G --image-dir $W/img --socket-dir $W/sock --shim-dir $W/shim"
agent_start || { not_ok "dmrepd starts with --group and the member directories"; exit 1; }
ok "dmrepd starts with --group, --image-dir, --socket-dir, --shim-dir"

out=$(mdrep vm list)
expect_rc "a member reaches the socket" 0 "$out"

# --- the pool is root's ----------------------------------------------------------
out=$(mdrep pool create --data "$W/img/m.data" --data-size 1G --meta "$W/img/m.meta")
expect_denied "member: pool create is refused: root-only" "$out" "root-only"
check "and made no file" test ! -e "$W/img/m.data" -a ! -e "$W/img/m.meta"
out=$(dmrep --json pool create --data "$W/pool.data" --data-size 1G --meta "$W/pool.meta" --meta-size 16M)
expect_rc "root: pool create" 0 "$out"

# --- disks ---------------------------------------------------------------------
out=$(mdrep vm add "${VM}n" --backend classic --disk x="/etc/$G-nologin:512")
expect_denied "member: NAME=PATH:SIZE in /etc is refused, naming --image-dir" "$out" "--image-dir"
sleep 0.5
check "no file was made in /etc" test ! -e "/etc/$G-nologin"
truncate -s 16M "$W/out/secret.img"
out=$(mdrep vm add "${VM}o" --backend classic --disk vda="$W/out/secret.img")
expect_denied "member: a disk outside --image-dir is refused" "$out" "outside every --image-dir"
ln -s ../out/secret.img "$W/img/link.img"
out=$(mdrep vm add "${VM}o" --backend classic --disk vda="$W/img/link.img")
expect_denied "member: a symlink in --image-dir to a file outside is refused" "$out" "resolves to $W/out/secret.img"
ln "$W/out/secret.img" "$W/img/hard.img"
out=$(mdrep vm add "${VM}o" --backend classic --disk vda="$W/img/hard.img")
expect_denied "member: a hard link into --image-dir is refused" "$out" "links"
loopdev=$(losetup -f --show "$W/out/secret.img")
out=$(mdrep vm add "${VM}o" --disk vda="$loopdev")
expect_denied "member: a block device is refused" "$out" "image-dir"
losetup -d "$loopdev"
check "nothing of the refused VMs was recorded" test ! -e "$STATE/vms/${VM}o.json" -a ! -e "$STATE/vms/${VM}n.json"

truncate -s 16M "$W/img/thin.img"
pattern member-thin | dd of="$W/img/thin.img" bs=4096 seek=8 conv=notrunc status=none
out=$(mdrep vm add "$VM" --disk vda="$W/img/thin.img")
expect_rc "member: vm add from an image inside --image-dir" 0 "$out"
check "the image was imported" cmp -s "$W/img/thin.img" "/dev/dmrep/$VM/vda"
out=$(mdrep vm add "${VM}c" --backend classic --disk vda="$W/img/new.img:8M" --cow-size 4M)
expect_rc "member: classic NAME=PATH:SIZE inside --image-dir" 0 "$out"
check "the new image is root's, 0600, 8 MiB" test "$(stat -c %U:%a:%s "$W/img/new.img")" = root:600:8388608
check "and is the disk's backing file" sh -c "losetup -j '$W/img/new.img' | grep -q ."

# --- points, failovers: a member's -----------------------------------------------
out=$(mdrep point create "$VM")
expect_rc "member: point create" 0 "$out"
out=$(mdrep failover start "$VM" --test --wait)
expect_rc "member: test failover" 0 "$out"
out=$(mdrep failover stop-test "$VM" --wait)
expect_rc "member: stop-test" 0 "$out"
out=$(mdrep point create "${VM}c" --cow-dev vda=/dev/loop7)
expect_denied "member: --cow-dev is refused" "$out" "cow_devices is root-only"
out=$(mdrep point create "${VM}c" --force)
expect_denied "member: point create --force is refused" "$out" "force is root-only"
out=$(mdrep vm network "$VM" --mac 52:54:00:12:34:56 --address 10.0.0.5/24)
expect_denied "member: network settings (run by root's hooks) are refused" "$out" "hooks"

# --- exec shims --------------------------------------------------------------------
out=$(mdrep vm add "${VM}s" --disk vda="$W/img/s.img:8M" --exec-shim "/bin/sh -c id")
expect_denied "member: an exec shim outside --shim-dir is refused" "$out" "outside every --shim-dir"
printf '#!/bin/sh\n[ "$1" = status ] && echo running\nexit 0\n' >"$W/img/shim.sh"
chmod 0755 "$W/img/shim.sh"
ln -s ../img/shim.sh "$W/shim/out-shim"
out=$(mdrep vm add "${VM}s" --disk vda="$W/img/s.img:8M" --exec-shim "$W/shim/out-shim")
expect_denied "member: a link in --shim-dir to a file outside is refused" "$out" "outside every --shim-dir"
cp "$W/img/shim.sh" "$W/shim/shim.sh"
chmod 0775 "$W/shim/shim.sh"
out=$(mdrep vm add "${VM}s" --disk vda="$W/img/s.img:8M" --exec-shim "$W/shim/shim.sh")
expect_denied "member: a group-writable shim is refused" "$out" "writable by no one else"
chmod 0755 "$W/shim/shim.sh"
out=$(mdrep vm add "${VM}s" --disk vda="$W/img/s.img:8M" --exec-shim "$W/shim/shim.sh")
expect_rc "member: a root-owned shim inside --shim-dir" 0 "$out"

# --- QMP sockets ---------------------------------------------------------------------
# Another VM's monitor, outside --socket-dir; it logs who connects.
socat "UNIX-LISTEN:$W/out/other.qmp,fork" SYSTEM:"echo connected >>$W/out/other.log" &
OTHER=$!
socat "UNIX-LISTEN:$W/sock/mine.qmp,fork" /dev/null &
MINE=$!
for _ in $(seq 50); do [ -S "$W/out/other.qmp" ] && [ -S "$W/sock/mine.qmp" ] && break; lab_nap 0.1; done
out=$(mdrep vm add "${VM}q" --disk vda="$W/img/q.img:8M" --qmp "$W/out/other.qmp")
expect_denied "member: a QMP socket outside --socket-dir is refused" "$out" "outside every --socket-dir"
out=$(mdrep vm add "${VM}q" --disk vda="$W/img/q.img:8M" --qga "$W/out/other.qmp")
expect_denied "member: a guest-agent socket outside --socket-dir is refused" "$out" "outside every --socket-dir"
ln -s ../out/other.qmp "$W/sock/link.qmp"
out=$(mdrep vm add "${VM}q" --disk vda="$W/img/q.img:8M" --qmp "$W/sock/link.qmp")
expect_denied "member: a link in --socket-dir to another VM's monitor is refused" "$out" "resolves to $W/out/other.qmp"
out=$(mdrep vm add "${VM}q" --disk vda="$W/img/q.img:8M" --qmp "$W/sock/mine.qmp")
expect_rc "member: a QMP socket inside --socket-dir" 0 "$out"
out=$(mdrep point create "${VM}q")
expect_rc "member: a point of that VM" 0 "$out"
# Accepted, then swapped (the member may write --socket-dir) for a link to
# the other VM's monitor: root must not connect there at failover time.
kill "$MINE" 2>/dev/null; wait "$MINE" 2>/dev/null
as_member rm -f "$W/sock/mine.qmp"
as_member ln -s ../out/other.qmp "$W/sock/mine.qmp"
out=$(mdrep failover start "${VM}q" --wait)
check "failover with the swapped socket: its job fails, hypervisor unreachable (32777)" \
	jq -e '.job_state == 10 and .error_code == 32777 and (.error_description | test("--socket-dir"))' <<<"$out"
check "the other VM's monitor saw no connection" test ! -s "$W/out/other.log"
check "the VM is still replicating" test "$(dmrep --json vm show "${VM}q" | jq -r .state)" = replicating

# --- root may do everything ---------------------------------------------------------
out=$(dmrep --json vm add "${VM}r" --disk vda="$W/out/secret.img" --exec-shim "$W/img/shim.sh")
expect_rc "root: a disk, and a shim, anywhere" 0 "$out"
out=$(dmrep --json vm add "${VM}t" --disk vda="$W/out/t.img:8M" --qmp "$W/out/other.qmp")
expect_rc "root: any QMP socket" 0 "$out"
out=$(dmrep --json vm network "$VM" --mac 52:54:00:12:34:56 --address 10.0.0.5/24)
expect_rc "root: network settings" 0 "$out"
kill "$OTHER" 2>/dev/null; wait "$OTHER" 2>/dev/null

# --- a member's image swapped for a device while the agent was down ----------
lab_reboot
truncate -s 8M "$W/out/dev.img"
victim=$(losetup -f --show "$W/out/dev.img")
as_member rm -f "$W/img/new.img"
as_member ln -s "$victim" "$W/img/new.img"
agent_start || not_ok "the agent starts again"
mm=$(lsblk -dno MAJ:MIN "$victim" | tr -d ' ')
check "after the restart the swapped image is not activated" test ! -e "/dev/dmrep/${VM}c/vda"
if dmsetup table 2>/dev/null | grep -qE "(^| )$mm( |\$)"; then
	not_ok "no table uses the device it now links to ($mm)"
else
	ok "no table uses the device it now links to ($mm)"
fi
check "the agent's log says why" grep -q "${VM}c.*vda.*Permission denied" "$W/dmrepd.log"
check "the member's other VM came back" test -b "/dev/dmrep/$VM/vda"
losetup -d "$victim"

for v in "$VM" "${VM}c" "${VM}s" "${VM}q" "${VM}r" "${VM}t"; do
	dmrep --json vm remove "$v" >/dev/null 2>&1
done
out=$(mdrep vm list)
check "a member lists what is left" jq -e 'type == "array"' <<<"$out"

agent_stop
summary
