#!/bin/bash
# Lab test: dm/ on the lab's real kernel, by the C program build/bin/lab_dm
# (tests/lab/lab_dm.c says what it checks), under the lab library's setup
# and teardown: it starts on no leftovers, and whatever it leaves behind
# fails it.
set -u
. "$(dirname "$0")/lib/inittest.sh"
lab_setup
lab_run_c lab_dm
summary
