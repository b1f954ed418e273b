# shellcheck shell=bash
# dev.sh - devices and data patterns for the lab tests (sourced through
# inittest.sh).
#
#   bytes HEX                16 KiB of that byte, on stdout
#   put DEV HEX / has DEV HEX  write it at 32 KiB / check it is there (O_DIRECT)
#   pattern TEXT             16 KiB of TEXT repeated
#   is_blockdev PATH         a block device (never trust a /dev/mapper path
#                            before: a write to a missing one makes a file)
#   dm_names, dm_attr NAME, is_suspended NAME, uuid_of NAME, same_dev A B
#   no_suspended_or_inactive no DMREP- device suspended or with an inactive table
#   make_file NAME SIZE, make_loop NAME SIZE [LOSETUP-OPTION...], loop_of FILE
#   dm_remove NAME           resume if suspended, remove, retrying while busy
#   pool_ids, thin_count     the thin ids in dmrep-pool (from a metadata
#                            snapshot, not from dmrep's catalog)
#   point_matches ID SIZE NAME  thin volume ID holds pattern NAME at 32 KiB
#   dm_type NAME, dm_devno NAME  the target type of a dm device's first
#                            target, its MAJ:MIN; blk_devno PATH, a block
#                            device's MAJ:MIN
#   dm_lower NAME            the MAJ:MIN a one-target linear or
#                            snapshot-origin table stands on
#   on_origin VM DISK [DEV]  the stable device is linear over the disk's
#                            classic origin device, a snapshot-origin (over DEV)
#   on_view VM DISK ID       the stable device is linear over view dmrep-snap-ID

bytes() { head -c 16384 /dev/zero | tr '\000' "\\$(printf '%03o' "0x$1")"; }
# bytes_file HEX: a file of bytes HEX, made once per lab boot (in the lab's
# /tmp): put and has cost one process each instead of five (each costs
# tens of milliseconds under TCG, and the tests call them by the hundred).
bytes_file() {
	BYTES_FILE=${TMPDIR:-/tmp}/lab-bytes/$1
	[ -s "$BYTES_FILE" ] && return 0
	mkdir -p "${BYTES_FILE%/*}" && bytes "$1" >"$BYTES_FILE.$$" && mv -f "$BYTES_FILE.$$" "$BYTES_FILE"
}
put() { bytes_file "$2" && dd if="$BYTES_FILE" of="$1" bs=4096 seek=8 oflag=direct conv=notrunc status=none; }
has() {
	bytes_file "$2" || return 1
	dd if="$1" bs=4096 skip=8 count=4 iflag=direct status=none | cmp -s "$BYTES_FILE" -
}
pattern() { yes "$1" | head -c 16384; }

is_blockdev() {
	[ -b "$1" ] && return 0
	[ -e "$1" ] && diag "$1 exists but is not a block device"
	return 1
}
dm_names() {
	dmsetup info -c --noheadings -o name 2>/dev/null | grep -v '^No devices found'
}
# dm_attr NAME: dmsetup's attr column, e.g. "L--w"; "s" third while
# suspended, "i" fifth with an inactive table.
dm_attr() { dmsetup info -c --noheadings -o attr "$1" 2>/dev/null; }
is_suspended() { [ "$(dm_attr "$1" | cut -c3)" = s ]; }
uuid_of() { dmsetup info -c --noheadings -o uuid "$1" 2>/dev/null; }
same_dev() { test "$(readlink -f "$1")" = "$(readlink -f "$2")"; }
no_suspended_or_inactive() {
	! dmsetup info -c --noheadings -o uuid,attr --separator ' ' 2>/dev/null |
		awk '$1 ~ /^DMREP-/ && (substr($2, 3, 1) == "s" || substr($2, 5, 1) == "i") { bad = 1 } END { exit !bad }'
}

# make_file NAME SIZE: a sparse file $W/NAME of SIZE (truncate's suffixes);
# prints its path.
make_file() {
	local f=$W/$1
	rm -f "$f"
	truncate -s "$2" "$f" || return 1
	echo "$f"
}
# make_loop NAME SIZE [LOSETUP-OPTION...]: make_file, then a loop device
# over it (direct I/O on: no second page cache); prints /dev/loopN.  The
# teardown detaches it.
make_loop() {
	local f dev
	f=$(make_file "$1" "$2") || return 1
	shift 2
	dev=$(losetup -f --show --direct-io=on "$@" "$f") || return 1
	udevadm settle >/dev/null 2>&1
	echo "$dev"
}
loop_of() { losetup -j "$1" -n -O NAME 2>/dev/null | head -n1; }

dm_remove() {
	dmsetup info "$1" >/dev/null 2>&1 || return 0
	is_suspended "$1" && dmsetup resume "$1" >/dev/null 2>&1
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		dmsetup remove "$1" >/dev/null 2>&1 && return 0
		dmsetup info "$1" >/dev/null 2>&1 || return 0
		lab_nap 0.2
	done
	return 1
}

# pool_ids: the thin ids dmrep-pool holds (its metadata on the loop over
# $W/pool.meta), one a line, sorted.
pool_ids() {
	local meta
	read -r meta < <(losetup -j "$W/pool.meta" -O NAME -n)
	dmsetup message dmrep-pool 0 reserve_metadata_snap || return 1
	thin_ls --metadata-snap --no-headers -o DEV "$meta" | tr -d ' ' | sort -n
	dmsetup message dmrep-pool 0 release_metadata_snap
}
thin_count() {
	local ids
	ids=$(pool_ids) || return 1
	grep -c . <<<"$ids"
}

# point_matches THIN_ID SIZE NAME: activate the thin id read-only and check
# that blocks 8..11 hold NAME's pattern.
point_matches() {
	local id=$1 size=$2 name=$3 dev="${T}p$1" sectors rc
	sectors=$(($(numfmt --from=iec "$size") / 512))
	dmsetup create "$dev" --readonly -u "DMREP-labtest-$$-$id" \
		--table "0 $sectors thin $(dmsetup info -c --noheadings -o major,minor --separator : dmrep-pool) $id" || return 1
	cmp -s <(pattern "$name") <(dd if="/dev/mapper/$dev" bs=4096 skip=8 count=4 iflag=direct status=none)
	rc=$?
	dmsetup remove --retry "$dev" >/dev/null 2>&1
	return $rc
}
# thin_view NAME THIN_ID SECTORS: a read-only view ${T}NAME of a thin volume
# of dmrep-pool (the caller removes it).
thin_view() {
	dmsetup create "${T}$1" --readonly -u "DMREP-labtest-$$-$1" --table \
		"0 $3 thin $(dmsetup info -c --noheadings -o major,minor --separator : dmrep-pool) $2"
}

dm_type() { dmsetup table "$1" 2>/dev/null | awk '{ print $3 }'; }
dm_devno() { dmsetup info -c --noheadings -o major,minor --separator : "$1" 2>/dev/null | tr -d ' '; }
dm_lower() { dmsetup table "$1" 2>/dev/null | awk 'NR == 1 && ($3 == "linear" || $3 == "snapshot-origin") { print $4 }'; }
blk_devno() { printf '%d:%d' "0x$(stat -L -c %t "$1")" "0x$(stat -L -c %T "$1")"; }
on_origin() {
	local s="dmrep-$1:$2" o="dmrep-$1:$2@origin"
	[ "$(dm_type "$s")" = linear ] && [ "$(dm_lower "$s")" = "$(dm_devno "$o")" ] &&
		[ "$(dm_type "$o")" = snapshot-origin ] &&
		{ [ -z "${3:-}" ] || [ "$(dm_lower "$o")" = "$(blk_devno "$3")" ]; }
}
on_view() { [ "$(dm_type "dmrep-$1:$2")" = linear ] && [ "$(dm_lower "dmrep-$1:$2")" = "$(dm_devno "dmrep-snap-$3")" ]; }
