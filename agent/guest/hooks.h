/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/hooks.h - failover hooks: the executables in the agent's hook
 * directory (--hook-dir, default /etc/dmrep/failover.d), run after a
 * failover or a test failover has switched the disks, with the VM, the
 * point, the test flag and the VM's failover network settings in the
 * environment:
 *
 *   DMREP_OPERATION     failover | test-failover
 *   DMREP_VM, DMREP_POINT, DMREP_TEST (0 or 1)
 *   DMREP_NETWORK       the settings as JSON: [{"mac", "addresses",
 *                       "gateways", "dns"}]
 *   DMREP_NICS          how many NICs; then for i in 0..DMREP_NICS-1:
 *   DMREP_NIC<i>_MAC, DMREP_NIC<i>_ADDRESSES, DMREP_NIC<i>_GATEWAYS,
 *   DMREP_NIC<i>_DNS    (lists separated by spaces)
 *
 * Like run-parts: regular executable files whose names are made of
 * [A-Za-z0-9_-], in name order, stdin /dev/null, output to the agent's log,
 * no other descriptor of the agent's (all above stderr are closed).
 * The directory and every hook must be owned by root and writable by no one
 * else (they run as root); otherwise none runs and the job fails.  Each
 * hook's exit status and duration go into the job (result "hooks" and a
 * "hook:NAME" step).  A hook that exits non-zero, or runs past 60 s (then
 * it is killed), fails the job with 32768 naming it; the hooks after it
 * do not run.  The failover itself stands: revert it if it must not.
 */
#ifndef DMR_AGENT_HOOKS_H
#define DMR_AGENT_HOOKS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/engine/job.h"

#define DMR_HOOK_DIR_DEFAULT "/etc/dmrep/failover.d"
#define DMR_HOOK_TIMEOUT_SEC 60

/* 0 if every hook succeeded (or there is none), else a negative errno
 * with the job's error set.  network may be NULL. */
int dmr_hooks_run(struct dmr_job *job, const char *dir, const char *vm, uint64_t point, bool test,
		  struct json_object *network);

#endif
