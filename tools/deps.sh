#!/bin/sh
# Install the Debian packages dmrep needs to build and to run its lab.
# Idempotent and quick when everything is there.  As non-root it prints the
# apt-get line instead and fails if anything is missing.
set -eu
PKGS="build-essential pkg-config libdevmapper-dev libblkid-dev libaio-dev libjson-c-dev libcmocka-dev
qemu-system-x86 busybox-static cpio udev dmsetup thin-provisioning-tools kmod e2fsprogs qemu-utils
qemu-guest-agent util-linux jq gojq socat uuid-dev libxxhash-dev libzstd-dev openssh-server openssh-client
libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients clang libclang-rt-14-dev scdoc mandoc bash-completion bash-builtins python3-prometheus-client debhelper lintian"
missing=""
for p in $PKGS; do
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$s" in *"ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "dmrep: missing packages:$missing" >&2
	echo "run: sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
	exit 1
fi
echo "dmrep: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists: update once before installing.
apt-get update -q >&2
# Package scripts must not start daemons on this machine (openssh-server
# would start sshd): a policy-rc.d that refuses, ours only while we install.
rcd=/usr/sbin/policy-rc.d
ours=
if [ ! -e $rcd ]; then
	printf '#!/bin/sh\n# dmrep tools/deps.sh: no daemon starts while it installs\nexit 101\n' >$rcd
	chmod 755 $rcd
	ours=1
fi
rc=0
apt-get install -y -q --no-install-recommends $missing >&2 || rc=$?
[ -n "$ours" ] && rm -f $rcd
exit $rc
