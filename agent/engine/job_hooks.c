/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/job_hooks.h"

#include <assert.h>

#include "agent/guest/hooks.h"
#include "common/rc.h"

static void job_step(void *userdata, const char *step, uint64_t usec)
{
	dmr_job_add_step(userdata, step, usec);
}

static void job_results(void *userdata, struct json_object *results)
{
	dmr_job_set_result(userdata, "hooks", results);
}

static void job_error(void *userdata, const char *message)
{
	dmr_job_set_error(userdata, DMR_RC_FAILED, "%s", message);
}

int dmr_job_hooks_run(struct dmr_job *job, const char *dir, const char *vm, uint64_t point,
		      bool test, struct json_object *network)
{
	const struct dmr_hooks_report rep = {
		.userdata = job,
		.step = job_step,
		.results = job_results,
		.error = job_error,
	};

	assert(job);
	return dmr_hooks_run(&rep, dir, vm, point, test, network);
}
