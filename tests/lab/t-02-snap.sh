#!/bin/bash
# Lab test: the snapshots/ leaf modules (loop devices, the libaio copier,
# the safety probes) on the lab's real kernel, by the C program
# build/bin/lab_snap (tests/lab/lab_snap.c says what it checks), under the
# lab library's setup and teardown: whatever it leaves behind fails it.
set -u
. "$(dirname "$0")/lib/inittest.sh"
lab_setup
lab_run_c lab_snap
summary
