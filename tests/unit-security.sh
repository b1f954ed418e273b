#!/bin/bash
# The agent's unit against systemd's own rating (make check, host side):
# agent/dmrepd.service.in made as make install makes it, then
# `systemd-analyze security --offline=yes --threshold=59` (exposure
# 0.0-10.0, in tenths here: a unit rated above 5.9 fails).  Its sandbox is
# proven to work in the lab (tests/lab/u-00-unit.sh).  Last line:
# `sandbox: N passed, N failed`.
set -u
cd "$(dirname "$0")/.." || exit 1
# In tenths, as --threshold takes it: 59 is 5.9.
max=${UNIT_SECURITY_MAX:-59}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
pass=0 fail=0
if ! command -v systemd-analyze >/dev/null; then
	echo "not ok - systemd-analyze is installed (apt-get install systemd)"
	fail=1
else
	sed 's|@SBINDIR@|/usr/sbin|g' agent/dmrepd.service.in >"$d/dmrepd.service"
	out=$(systemd-analyze security --offline=yes --threshold="$max" "$d/dmrepd.service" 2>&1)
	rc=$?
	level=$(sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
	if [ "$rc" -eq 0 ] && [ -n "$level" ]; then
		echo "ok - dmrepd.service: systemd-analyze security $level (at most $((max / 10)).$((max % 10)))"
		pass=1
	else
		echo "not ok - dmrepd.service: systemd-analyze security ${level:-?} (at most $((max / 10)).$((max % 10)), exit $rc)"
		grep '✗' <<<"$out" | sed 's/^/#   /'
		fail=1
	fi
fi
echo "sandbox: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
