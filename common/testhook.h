/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/testhook.h - fault injection for the lab, compiled in only when
 * DMR_TEST_HOOKS is 1 (`make`, the default; `make TEST_HOOKS=0` for a
 * production build, where every hook is a no-op).  Steps are named
 * "operation:step", e.g. "initiate:suspended", "point:frozen".
 *
 *   DMREP_TEST_CRASH_AT=STEP  dmr_test_hook kills the agent with SIGKILL
 *   DMREP_TEST_HOLD_AT=STEP   dmr_test_hook holds the operation while the
 *                             file DMREP_TEST_HOLD_FILE exists (at most
 *                             300 s), so a test checks what callers see
 *                             mid-operation and then lets it go on: no
 *                             race against a clock, however slow the lab
 *   DMREP_TEST_FAIL_AT=STEP   dmr_test_fail returns -EIO
 *   DMREP_TEST_JOBS_KEEP=N    the agent keeps N job records, not 1000
 *                             (dmr_test_limit), so that the lab sees
 *                             pruning after hundreds of jobs, not 1000+
 *
 * Below the agent too: "create-group:K" fails the K-th create of a dm
 * group (dm/dm.c: the volumes' devices, classic points), and
 * "thin-group:suspended" a thin point with every volume suspended
 * (snapshots/thin.c).
 */
#ifndef DMR_AGENT_TESTHOOK_H
#define DMR_AGENT_TESTHOOK_H

void dmr_test_hook(const char *step);
/* 0, or -EIO when DMREP_TEST_FAIL_AT names step. */
int dmr_test_fail(const char *step);
/* The value of the environment variable name when it is a decimal number
 * in 1..dflt, else dflt (always dflt in a production build): a test may
 * only lower a limit. */
unsigned dmr_test_limit(const char *name, unsigned dflt);

#endif
