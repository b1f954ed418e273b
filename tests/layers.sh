#!/bin/bash
# The layer check (docs/architecture.md): every `#include "..."` of the
# project's own headers must point at the same layer or one below it.
#
#   common/ < dm/ < snapshots/ < agent/core/ < agent/store/
#          < agent/guest/ | agent/backend/ < agent/engine/ < agent/rpc/
#          < agent/dmrepd.c
#
# guest/ and backend/ are peers and never include each other.  Two rules are
# narrower than the order: the store and the rpc layer may use dm/name.h
# (pure name rules) but no other part of dm/ (a store never activates a
# device, a handler never calls dm), and guest/ uses only common/, core/ and
# the store.  The client (tools/dmrep.c) uses only common/.
#
# Prints one TAP line per checked file and `layers: N passed, N failed`;
# exits non-zero on any violation.  `tests/layers.sh DIR` checks the tree
# in DIR (default: this checkout); `tests/layers.sh --self-test` checks that
# a planted upward include is caught (make check runs both).
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = --self-test ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/tests"
	cp tests/layers.sh "$tmp/tests/"
	for d in common dm snapshots agent tools; do cp -r "$d" "$tmp/"; done
	rm -rf "$tmp/tools/lab" "$tmp/tools/bench"
	if ! "$tmp/tests/layers.sh" "$tmp" >/dev/null; then
		echo "not ok - layers self-test: the tree as it is does not pass"
		echo "layers-self-test: 0 passed, 1 failed"
		exit 1
	fi
	# A store that calls dm, and dm that knows of the agent: both caught.
	sed -i '0,/^#include "/s//#include "dm\/dm.h"\n#include "/' "$tmp/agent/store/registry.c"
	sed -i '0,/^#include "/s//#include "agent\/rpc\/server.h"\n#include "/' "$tmp/dm/table.c"
	out=$("$tmp/tests/layers.sh" "$tmp")
	if [ $? -ne 0 ] && grep -q 'registry.c.*dm/dm.h' <<<"$out" && grep -q 'dm/table.c.*agent/rpc/server.h' <<<"$out"; then
		echo "ok - layers self-test: planted upward includes are caught"
		echo "layers-self-test: 1 passed, 0 failed"
		exit 0
	fi
	echo "not ok - layers self-test: a planted upward include was not reported"
	echo "layers-self-test: 0 passed, 1 failed"
	exit 1
fi
[ -n "${1:-}" ] && cd "$1"

# What a folder may include, besides its own folder.
allowed() {
	case "$1" in
	common) echo "" ;;
	dm) echo "common" ;;
	snapshots) echo "common dm" ;;
	agent/core) echo "common" ;;
	agent/store) echo "common agent/core dm/name.h snapshots/ident.h snapshots/pool.h" ;;
	agent/guest) echo "common agent/core agent/store dm/name.h snapshots/ident.h snapshots/pool.h" ;;
	agent/backend) echo "common dm snapshots agent/core agent/store" ;;
	agent/engine) echo "common dm snapshots agent/core agent/store agent/guest agent/backend" ;;
	agent/rpc) echo "common dm/name.h snapshots/ident.h snapshots/pool.h agent/core agent/store agent/guest agent/engine" ;;
	agent) echo "common dm snapshots agent/core agent/store agent/guest agent/backend agent/engine agent/rpc" ;;
	tools) echo "common" ;;
	*) return 1 ;;
	esac
}

pass=0 fail=0
if [ -z "${1:-}" ] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	files=$(git ls-files 'common/*.[ch]' 'dm/*.[ch]' 'snapshots/*.[ch]' 'agent/*.[ch]' \
		'agent/*/*.[ch]' 'tools/dmrep.c')
else
	files=$(find common dm snapshots agent -name '*.[ch]'; echo tools/dmrep.c)
fi
for f in $files; do
	[ -f "$f" ] || continue
	dir=$(dirname "$f")
	case "$f" in agent/*/*/*) dir=${dir%/*} ;; esac
	if ! ok=$(allowed "$dir"); then
		echo "not ok - $f: in a folder the layer order does not name ($dir)"
		fail=$((fail + 1))
		continue
	fi
	bad=""
	while read -r inc; do
		[ -n "$inc" ] || continue
		idir=$(dirname "$inc")
		[ "$idir" = "$dir" ] && continue
		hit=""
		for a in $ok; do
			if [ "$a" = "$inc" ] || [ "$a" = "$idir" ]; then hit=1; break; fi
		done
		[ -n "$hit" ] || bad="$bad $inc"
	done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
	if [ -n "$bad" ]; then
		echo "not ok - $f ($dir) includes a higher or sibling layer:$bad"
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
done
echo "layers: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
