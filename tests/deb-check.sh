#!/bin/bash
# The Debian package (issue 17, item 5), run by make check: debian/ built
# with `dpkg-buildpackage -us -uc -b` in a copy of the tree (the files git
# knows, as a clean clone has them, plus those not yet committed), then:
# lintian reports no error nor warning; the package holds the agent, the
# client, the udev rules, the units, the man pages, the completion and the
# docs; its unit runs /usr/sbin/dmrepd; its binaries have no test hooks.
# The .deb is left in $BUILD/deb/ for the lab test that installs and purges
# it (tests/lab/t-99-package.sh).  Prints TAP lines and, last,
# `deb: N passed, N failed`.
set -u
cd "$(dirname "$0")/.."
out=${BUILD:-build}/deb
pass=0 fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $*"; fail=$((fail + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/dmrep" "$out"
rm -f "$out"/*.deb
# shellcheck disable=SC2046 # file names from git, one per line
git ls-files -z --cached --others --exclude-standard | tar -cf - --null -T - | tar -xf - -C "$tmp/dmrep"
if (cd "$tmp/dmrep" && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1; then
	ok "dpkg-buildpackage -us -uc -b builds the package"
else
	not_ok "dpkg-buildpackage -us -uc -b builds the package"
	tail -n 30 "$tmp/build.log" | sed 's/^/#   /'
	echo "deb: $pass passed, $((fail + 1)) failed"
	exit 1
fi
deb=$(ls "$tmp"/dmrep_*.deb 2>/dev/null | head -n1)
lintian --tag-display-limit 0 "$deb" >"$tmp/lintian" 2>&1
grep -v 'running with root privileges' "$tmp/lintian" | sed 's/^/# lintian: /'
if grep -qE '^[EW]: ' "$tmp/lintian"; then not_ok "lintian: no error, no warning"; else ok "lintian: no error, no warning"; fi
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$tmp/files"
for f in /usr/sbin/dmrepd /usr/bin/dmrep /lib/udev/rules.d/56-dmrep.rules /lib/systemd/system/dmrepd.service \
	/lib/systemd/system/dmrep-metrics.service /lib/systemd/system/dmrep-metrics.timer \
	/usr/share/man/man8/dmrep.8.gz /usr/share/man/man8/dmrepd.8.gz /usr/share/man/man5/dmrep-stream.5.gz \
	/usr/share/bash-completion/completions/dmrep /usr/share/doc/dmrep/README.md /usr/share/doc/dmrep/copyright; do
	if grep -qxF "$f" "$tmp/files"; then ok "the package holds $f"; else not_ok "the package holds $f"; fi
done
mkdir "$tmp/x"
dpkg-deb -x "$deb" "$tmp/x"
if grep -qx 'ExecStart=/usr/sbin/dmrepd --foreground' "$tmp/x/lib/systemd/system/dmrepd.service"; then
	ok "its unit runs /usr/sbin/dmrepd"
else
	not_ok "its unit runs /usr/sbin/dmrepd ($(grep ExecStart= "$tmp/x/lib/systemd/system/dmrepd.service"))"
fi
# The crash hook reads DMREP_TEST_CRASH_AT: a build with the hooks holds it.
if grep -aq DMREP_TEST_CRASH_AT "$tmp/x/usr/sbin/dmrepd"; then
	not_ok "dmrepd is built without the test hooks"
else
	ok "dmrepd is built without the test hooks"
fi
dep=$(dpkg-deb -f "$deb" Depends)
case $dep in
*libdevmapper* ) ok "Depends: the shared libraries and the tools it runs ($dep)" ;;
*) not_ok "Depends: the shared libraries and the tools it runs ($dep)" ;;
esac
case $dep in *thin-provisioning-tools*) ok "Depends: thin-provisioning-tools" ;; *) not_ok "Depends: thin-provisioning-tools" ;; esac
# The libvirt shim links libvirt (Build-Depends libvirt-dev): shlibs adds it.
case $dep in *libvirt0*) ok "Depends: libvirt0" ;; *) not_ok "Depends: libvirt0 ($dep)" ;; esac
cp "$deb" "$out/"
echo "deb: $pass passed, $fail failed"
[ "$fail" = 0 ]
