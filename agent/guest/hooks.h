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
 * else (they run as root); otherwise none runs and the run fails.  Each
 * hook's exit status and duration are reported (the failover's job records
 * them as its result "hooks" and a "hook:NAME" step: agent/engine/job_hooks.h).
 * A hook that exits non-zero, or runs past 60 s (then it is killed), fails
 * the run with an error naming it (the job's 32768); the hooks after it do
 * not run.  The failover itself stands: revert it if it must not.
 *
 * Called by the failover engine, through agent/engine/job_hooks.h; this
 * module knows nothing of jobs.
 */
#ifndef DMR_AGENT_HOOKS_H
#define DMR_AGENT_HOOKS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#define DMR_HOOK_DIR_DEFAULT "/etc/dmrep/failover.d"
#define DMR_HOOK_TIMEOUT_SEC 60

/* Where a run reports to, on the caller's thread.  Every member but
 * userdata must be set. */
struct dmr_hooks_report {
	void *userdata;
	/* A hook ended: step is "hook:NAME", usec how long it ran. */
	void (*step)(void *userdata, const char *step, uint64_t usec);
	/* Once, after the hooks ran, unless the directory is missing or
	 * refused: [{"name", "exit_status" (null if it could not run),
	 * "usec"}]; the callee takes the reference. */
	void (*results)(void *userdata, struct json_object *results);
	/* Why the run fails, one line; at most once per run. */
	void (*error)(void *userdata, const char *message);
};

/* 0 if every hook succeeded (or there is none, or dir is NULL), else a
 * negative errno, with the reason reported through report->error (a
 * failed allocation may report none).  network may be NULL. */
int dmr_hooks_run(const struct dmr_hooks_report *report, const char *dir, const char *vm,
		  uint64_t point, bool test, struct json_object *network);

#endif
