#!/bin/bash
# Lab test: the Debian package on a host that never had dmrep (issue 17,
# item 5).  tests/deb-check.sh (make check, before the lab) builds it into
# $BUILD/deb/; here it is installed with dpkg, its agent run from
# /usr/sbin with a crash step named (a build without the test hooks ignores
# it), and purged.  The lab's root is an overlay whose writable layer
# tools/lab/init shows read-only at /run/lab/rw: after the purge, nothing
# may be left there that the install made, but dpkg's own records of
# what it did (its log, its status and available files).
set -u
. "$(dirname "$0")/lib/inittest.sh"

lab_setup
deb=$(ls "$ROOT/${BUILD:-build}"/deb/dmrep_*.deb 2>/dev/null | head -n1)
if [ -z "$deb" ]; then
	not_ok "the package is built (tests/deb-check.sh, which make check runs before the lab)"
	exit 1
fi
ok "the package: ${deb##*/}"
[ -d /run/lab/rw ] || { not_ok "the root's writable layer is at /run/lab/rw (tools/lab/init)"; exit 1; }
check "dmrep is not installed here" sh -c '! dpkg-query -W dmrep >/dev/null 2>&1'
# Files, links and whiteouts in the writable layer (its directories are
# copied up from the host's as soon as anything below them changes).
# man-db's trigger indexes every man page of the host at each install and
# purge: minutes under TCG, and nothing this test checks (`man -w` finds
# the page without the index).  Its switch is this file.
rm -f /var/lib/man-db/auto-update
layer() { (cd /run/lab/rw && find . -mindepth 1 ! -type d | sort); }
layer >"$W/layer.before"
# The package's paths that do not exist yet: each must be gone after the purge.
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\.||; s|/$||' | grep . |
	while read -r p; do [ -e "$p" ] || echo "$p"; done >"$W/new-paths"

if dpkg -i "$deb" >"$W/install.log" 2>&1; then ok "dpkg -i installs it"; else
	not_ok "dpkg -i installs it"
	sed 's/^/#   /' "$W/install.log"
fi
is "dpkg: installed" "install ok installed" "$(dpkg-query -W -f '${Status}' dmrep 2>/dev/null)"
check "dmrepd --help from /usr/sbin" /usr/sbin/dmrepd --help
check "dmrep --help from /usr/bin" /usr/bin/dmrep --help
check "man finds dmrep(8)" man -w 8 dmrep
check "the completion is where bash-completion looks" test -s /usr/share/bash-completion/completions/dmrep
check "the unit, enabled (deb-systemd-helper)" test -L /etc/systemd/system/multi-user.target.wants/dmrepd.service
check "the metrics timer installed, not enabled" sh -c \
	'test -s /lib/systemd/system/dmrep-metrics.timer && ! test -e /etc/systemd/system/timers.target.wants/dmrep-metrics.timer'

# The installed agent: a point with a crash step named, which a test build
# would die at (SIGKILL); this one ignores it.
SOCK=/run/dmrep-pkg$$/dmrepd.sock
DMREP_TEST_CRASH_AT=point:made /usr/sbin/dmrepd --foreground --socket "$SOCK" --state-dir "$W/state" \
	2>>"$W/dmrepd.log" &
PKG_AGENT=$!
lab_cleanup 'kill $PKG_AGENT 2>/dev/null; wait $PKG_AGENT 2>/dev/null'
pd() { /usr/bin/dmrep --socket "$SOCK" --json "$@"; }
if wait_until 20 pd vm list; then ok "the installed dmrepd answers"; else not_ok "the installed dmrepd answers"; fi
expect_rc "a pool" 0 "$(pd pool create --data "$W/pool.data" --data-size 128M --meta "$W/pool.meta" --meta-size 8M)"
expect_rc "a VM" 0 "$(pd vm add "$VM" --disk vda="$W/vda.img:8M")"
expect_rc "a point, DMREP_TEST_CRASH_AT=point:made set" 0 "$(pd point create "$VM")"
check "the agent did not die at the step: no test hooks" kill -0 "$PKG_AGENT"
expect_rc "the VM removed" 0 "$(pd vm remove "$VM")"
kill "$PKG_AGENT" 2>/dev/null
wait "$PKG_AGENT" 2>/dev/null
PKG_AGENT=
# What a reboot takes (the pool's device, its loops): the lib's teardown
# does it only for the agent it started itself.
remove_dmrep_devices
lab_detach_under "$W"

if dpkg --purge dmrep >"$W/purge.log" 2>&1; then ok "dpkg --purge removes it"; else
	not_ok "dpkg --purge removes it"
	sed 's/^/#   /' "$W/purge.log"
fi
check "dpkg has no record of it" sh -c '! dpkg-query -W dmrep >/dev/null 2>&1'
# What the install and purge left: every path the package made gone, and
# in the root's writable layer no file, link or whiteout (a host file
# removed) that was not there before, dpkg's own records aside.
is "every file and directory the package made is gone" "" \
	"$(while read -r p; do [ -e "$p" ] || [ -L "$p" ] && echo "$p"; done <"$W/new-paths" | tr '\n' ' ')"
layer >"$W/layer.after"
left=$(comm -13 "$W/layer.before" "$W/layer.after" |
	grep -vE '^\./var/(lib/dpkg|log|cache/debconf)/' | tr '\n' ' ')
is "nothing else left behind on this host (the root's writable layer)" "" "$left"
check "no dmrep file in dpkg's records" sh -c '! ls /var/lib/dpkg/info/dmrep.* >/dev/null 2>&1'
summary
