#!/bin/bash
# Lab test: snapshots/delta.h and snapshots/xfer.h on a real pool, by the C
# program build/bin/lab_delta (tests/lab/lab_delta.c says what it checks):
# thin_dump / thin_delta extents for known writes, a full and an
# incremental send through the xfer reader and writer compared with cmp,
# and a metadata snapshot left held released at start.  The lab library's
# teardown fails it on anything left behind (dmrep-pool has a DMREP- UUID).
set -u
. "$(dirname "$0")/lib/inittest.sh"
lab_need thin_dump thin_delta
lab_setup
lab_run_c lab_delta
summary
