/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/job_hooks.h - the failover hooks (agent/guest/hooks.h) run as
 * part of a job: each hook's step, the result "hooks" and the error that
 * fails the job (code 32768, DMR_RC_FAILED) go into the job.
 *
 * For the failover engine (engine/failover.c), which runs the hooks once a
 * failover or a test failover stands.
 */
#ifndef DMR_AGENT_JOB_HOOKS_H
#define DMR_AGENT_JOB_HOOKS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/engine/job.h"

/* dmr_hooks_run() reporting to job: 0, or a negative errno with the job's
 * error set. */
int dmr_job_hooks_run(struct dmr_job *job, const char *dir, const char *vm, uint64_t point,
		      bool test, struct json_object *network);

#endif
