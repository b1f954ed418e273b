# shellcheck shell=bash
# libvirt.sh - a real libvirt daemon in the lab, for the libvirt shim's
# test (tests/lab/t-57-libvirt.sh).  Sourced after inittest.sh.
#
#   libvirt_start            libvirtd from the host's packages, as root's
#                            qemu:///system: QEMU runs as root (the lab has
#                            no libvirt-qemu user), its stdio to files (no
#                            virtlogd), cgroup2 mounted for the device ACL
#                            (before lab_setup: the lab's baseline); returns
#                            once the socket answers (60 s); at teardown
#                            every domain is destroyed and undefined, then
#                            libvirtd stops
#   vsh ARGS...              virsh -c qemu:///system ARGS, stderr to $W/virsh.err
#   vdomstate DOMAIN         its state word (running, paused, shut off)
#   vqemu_io DOMAIN NODE CMD a qemu-io command run inside that domain's QEMU
#                            (the test's own HMP passthrough, never the
#                            agent's) on block node NODE; prints its answer,
#                            which QEMU writes to its stdout: the new part of
#                            the domain's log

LIBVIRTD_PID=

vsh() { virsh -c qemu:///system "$@" 2>>"${W:-/tmp}/virsh.err"; }
vdomstate() { vsh domstate "$1" | head -n 1; }
vqemu_io() {
	local log=/var/log/libvirt/qemu/$1.log before
	before=$(stat -c %s "$log") || return 1
	vsh qemu-monitor-command "$1" --hmp "qemu-io $2 \"$3\"" >/dev/null || return 1
	sleep 0.2
	tail -c +$((before + 1)) "$log"
}

libvirt_start() {
	mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup || return 1
	grep -q '^libvirt-qemu:' /etc/passwd ||
		echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >>/etc/passwd
	grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >>/etc/group
	grep -q '^kvm:' /etc/group || echo 'kvm:x:64056:' >>/etc/group
	mkdir -p /etc/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt /run/libvirt
	cat >/etc/libvirt/qemu.conf <<-'CONF'
	user = "root"
	group = "root"
	swtpm_user = "root"
	swtpm_group = "root"
	stdio_handler = "file"
	CONF
	libvirtd -p /run/libvirtd.pid >"/tmp/libvirtd.log" 2>&1 &
	LIBVIRTD_PID=$!
	wait_until 60 sh -c 'virsh -c qemu:///system version >/dev/null 2>&1'
}

# The teardown's step (lab_cleanup libvirt_down, registered by the test).
libvirt_down() {
	local d
	for d in $(virsh -c qemu:///system list --all --name 2>/dev/null); do
		virsh -c qemu:///system destroy "$d" >/dev/null 2>&1
		virsh -c qemu:///system undefine "$d" >/dev/null 2>&1
	done
	stop_pid LIBVIRTD_PID TERM
}
