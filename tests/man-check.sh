#!/bin/bash
# The man pages (docs/man/*.scd, built into $BUILD/man by make): each one
# `mandoc -T lint -W warning` clean; and every command and option the
# binaries' own --help lists is in its page, read from the real output:
#   - dmrep --help's synopses give the commands; each command's section of
#     dmrep(8) (from its heading "dmrep GROUP NAME" to the next command's)
#     must name every option of `dmrep GROUP NAME --help`'s option list;
#   - that option list is printed from the client's option table, so it is
#     also checked against the command's synopsis in --help, both ways:
#     --help must be true to what the command takes;
#   - dmrep's common options and every option of dmrepd --help are in
#     their pages.
# Last line: `man: N passed, N failed`.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
DMREP=$BUILD/bin/dmrep
DMREPD=$BUILD/bin/dmrepd
MAN=$BUILD/man
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
not_ok() { fail=$((fail + 1)); echo "not ok - $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for t in mandoc scdoc; do
	command -v "$t" >/dev/null || not_ok "$t is installed (make deps)"
done
for f in "$DMREP" "$DMREPD"; do
	[ -x "$f" ] || not_ok "$f is built (make)"
done
[ "$fail" -eq 0 ] || { echo "man: $pass passed, $fail failed"; exit 1; }

# --- lint ---------------------------------------------------------------------------
for src in docs/man/*.scd; do
	page=$MAN/$(basename "$src" .scd)
	if [ ! -s "$page" ] || [ "$page" -ot "$src" ]; then
		not_ok "$page is built from $src (make man)"
		continue
	fi
	if mandoc -T lint -W warning "$page" >"$tmp/lint" 2>&1; then
		ok "$(basename "$page"): mandoc -T lint -W warning is clean"
	else
		not_ok "$(basename "$page"): mandoc -T lint -W warning: $(head -n3 "$tmp/lint" | paste -sd' ')"
	fi
done

# render PAGE: its text, one line per paragraph or heading (no wrapping, so
# no option is broken at its hyphen), no overstrike.
render() { mandoc -T utf8 -O width=1000 "$1" 2>/dev/null | col -bx; }
# lacking DESC LIST PREFIX PAGE: ok if PAGE has every option of LIST (one a
# line) as a word, after the regex PREFIX; else not ok naming the others.
lacking() {
	local desc=$1 list=$2 pre=$3 page=$4 o missing=
	while read -r o; do
		grep -qE -- "$pre$o\b" "$page" || missing+=" $o"
	done <"$list"
	if [ -z "$missing" ]; then ok "$desc"; else not_ok "$desc: lacks$missing"; fi
}
# words FILE: every --option in it, one a line.
words() { grep -oE -- '--[a-z][a-z0-9-]*' "$1" | sort -u; }

render "$MAN/dmrep.8" >"$tmp/dmrep.txt"
render "$MAN/dmrepd.8" >"$tmp/dmrepd.txt"

# --- dmrep: commands and their options ----------------------------------------------
"$DMREP" --help >"$tmp/help"
# "group name", or "group" for a command of one word.
mapfile -t cmds < <(awk '$1 == "dmrep" && $2 ~ /^[a-z]/ {
	if ($3 ~ /^[a-z][a-z-]*$/) print $2 " " $3; else print $2 }' "$tmp/help" | sort -u)
if [ "${#cmds[@]}" -gt 10 ]; then
	ok "dmrep --help lists ${#cmds[@]} commands"
else
	not_ok "dmrep --help lists commands (found ${#cmds[@]})"
fi
# The command headings of the page: lines "dmrep GROUP [NAME] ..." at the
# indent of a tagged paragraph.
grep -nE '^ {7}dmrep [a-z]' "$tmp/dmrep.txt" >"$tmp/heads"
for c in "${cmds[@]}"; do
	# The command's section: from its first heading to the next heading
	# of another command (vm replicate has three headings).
	awk -v c="dmrep $c" '
		/^       dmrep [a-z]/ {
			h = $0; sub(/^ +/, "", h)
			mine = (h == c || index(h, c " ") == 1)
			if (mine) { on = 1; seen = 1 } else if (seen) on = 0
		}
		on' "$tmp/dmrep.txt" >"$tmp/section"
	if [ ! -s "$tmp/section" ]; then
		not_ok "dmrep(8) has a section for 'dmrep $c'"
		continue
	fi
	ok "dmrep(8) has a section for 'dmrep $c'"
	read -ra cw <<<"$c"
	"$DMREP" "${cw[@]}" --help >"$tmp/chelp"
	# The option list (from the option table) and the synopsis (by hand).
	awk '/^Options of this command:/ { on = 1; next } on && !NF { exit } on { print $1 }' \
		"$tmp/chelp" | sort -u >"$tmp/table"
	awk 'NR == 1 { next } !NF { exit } { print }' "$tmp/chelp" >"$tmp/synopsis"
	words "$tmp/synopsis" >"$tmp/syn"
	missing=$(comm -23 "$tmp/table" "$tmp/syn" | paste -sd' ')
	extra=$(comm -13 "$tmp/table" "$tmp/syn" | paste -sd' ')
	if [ -z "$missing$extra" ]; then
		ok "dmrep $c --help: its synopsis and its option list agree ($(wc -l <"$tmp/table") options)"
	else
		not_ok "dmrep $c --help: synopsis lacks '${missing}', lists '${extra}' the command does not take"
	fi
	lacking "dmrep(8), dmrep $c: every option of its --help" "$tmp/table" "" "$tmp/section"
done
# The options of every command (the block before the notes of --help).
awk '/^Options of every command/ { on = 1; next } on && !NF { exit } on' "$tmp/help" >"$tmp/common"
{ words "$tmp/common"; echo -h; } >"$tmp/commonw"
lacking "dmrep(8): the options of every command" "$tmp/commonw" "" "$tmp/dmrep.txt"

# --- dmrepd ---------------------------------------------------------------------------
"$DMREPD" --help >"$tmp/dhelp"
# Its options: the words that begin a line of the option list.
grep -oE '^  (-h, )?--[a-z][a-z0-9-]*' "$tmp/dhelp" | grep -oE -- '--[a-z0-9-]+' | sort -u >"$tmp/dopts"
if [ "$(wc -l <"$tmp/dopts")" -gt 10 ]; then
	ok "dmrepd --help lists $(wc -l <"$tmp/dopts") options"
else
	not_ok "dmrepd --help lists options"
fi
lacking "dmrepd(8): every option of dmrepd --help, each its own entry" "$tmp/dopts" \
	"^ {7}(-h, )?" "$tmp/dmrepd.txt"

echo "man: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
