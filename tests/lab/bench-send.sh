#!/bin/bash
# Lab bench (issue 14's "a full send at least 0.7x the speed of reading the
# same device to /dev/null"), not a test: run-all runs only t-*.sh.
#
#   tools/lab/run --timeout 1500 -- tests/lab/bench-send.sh [MIB...]   (default 128 512)
#
# For each size: a thin VM with one disk of MIB MiB, all of it written,
# one point; then, twice, dd of the disk (iflag=direct bs=1M) to /dev/null
# and a full `dmrep point send > /dev/null` (its job's steps and the
# agent's split of the data step); with LAB_BENCH_BEFORE=DIR (a directory
# holding another dmrepd) each send is followed by one from that agent
# (restarted in between, same state); with LAB_BENCH_XFER=1
# build/bin/xferbench on the disk (the reader alone, with zero grains, into
# a stream writer); with LAB_BENCH_PROFILE=1 one more send of each agent
# under strace -c (the counts of its fsyncs, writes, I/O calls).
# LAB_BENCH_REPS: how many dd + send rounds (default 2).
# Compare ratios within one run only: the lab is TCG on a shared machine.
set -u
. "$(dirname "$0")/lib/inittest.sh"

SIZES=${*:-128 512}
now() { date +%s.%N; }
el() { echo "$2 - $1" | bc -l | xargs printf '%.2f'; }

agent_setup
# What one dm create costs here, waiting for udev (as dmrep's do) and not.
for sync in "" --noudevsync; do
	t0=$(now)
	dmsetup create ${sync} "${T}probe" --uuid "DMREP-labtest-$$-probe" --table "0 8 zero"
	t1=$(now)
	[ -n "$sync" ] && udevadm settle
	dmsetup remove "${T}probe"
	t2=$(now)
	diag "dm create ${sync:-(udev sync)}: $(el "$t0" "$t1") s, remove $(el "$t1" "$t2") s"
done
max=0
for s in $SIZES; do [ "$s" -gt "$max" ] && max=$s; done
prepare_pool $((max + 64))M 64M
for s in $SIZES; do
	vm=${VM}s$s
	expect_rc "VM with a $s MiB disk" 0 "$(dmrep --json vm add "$vm" --disk vda="$W/$vm.img:${s}M")"
	dev=/dev/dmrep/$vm/vda
	yes "dmrep bench $s $RANDOM" | dd of="$dev" bs=1M count="$s" iflag=fullblock oflag=direct status=none
	expect_rc "point of $vm" 0 "$(dmrep --json point create "$vm")"
	sync; echo 3 >/proc/sys/vm/drop_caches

	# dd_once, send_once LABEL: one timed read, one timed full send.
	dd_once() {
		local t0 t1
		t0=$(now); dd if="$dev" of=/dev/null bs=1M iflag=direct status=none; t1=$(now)
		diag "$s MiB: dd $(el "$t0" "$t1") s"
	}
	send_once() {
		local t0 t1 rc job steps
		t0=$(now); dmrep --json point send "$vm" >/dev/null 2>"$W/send.json"; rc=$?; t1=$(now)
		is "$s MiB: send ($1) exits 0" 0 "$rc"
		job=$(jq -r .job "$W/send.json")
		steps=$(dmrep --json job show "$job" | jq -r '.steps | map("\(.name)=\(.usec / 1e4 | round / 100)") | join(" ")')
		diag "$s MiB: send ($1) $(el "$t0" "$t1") s ($steps; $(grep ' sent (base' "$W/dmrepd.log" | tail -n 1 | sed 's/.*of data; //'))"
	}
	use_agent() {
		[ -n "${LAB_BENCH_BEFORE:-}" ] || return 0
		agent_stop
		if [ "$1" = before ]; then PATH=$LAB_BENCH_BEFORE:$PATH agent_start; else agent_start; fi
	}
	dd_once
	for rep in $(seq "${LAB_BENCH_REPS:-2}"); do
		send_once after
		if [ -n "${LAB_BENCH_BEFORE:-}" ]; then
			use_agent before
			send_once before
			use_agent after
		fi
		dd_once
	done
	[ "${LAB_BENCH_XFER:-0}" = 1 ] || XFER=skip
	[ "${XFER:-}" = skip ] || xferbench "$dev" 2>&1 | sed "s/^/$s MiB xferbench: /" | while read -r l; do diag "$l"; done
	# The agent's system calls over one send (strace -c: every call
	# stops, so times are inflated; the counts are what to compare).
	strace_once() {
		local sp
		strace -c -f -p "$AGENT_PID" -o "$W/strace.txt" 2>/dev/null & sp=$!
		sleep 1
		dmrep --json point send "$vm" >/dev/null 2>/dev/null
		kill -INT $sp; wait $sp
		grep -E 'fsync|fdatasync|rename|io_getevents|io_submit|write|total' "$W/strace.txt" |
			while read -r l; do diag "$s MiB strace ($1): $l"; done
	}
	if [ "${LAB_BENCH_PROFILE:-0}" = 1 ]; then
		strace_once after
		if [ -n "${LAB_BENCH_BEFORE:-}" ]; then
			use_agent before
			strace_once before
			use_agent after
		fi
	fi
	expect_rc "$vm goes" 0 "$(dmrep --json vm remove "$vm")"
done
summary
