/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GetJob and ListJobs: a job's JSON (agent/engine/job.h), with GetJob's
 * long poll. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "agent/engine/job.h"
#include "agent/rpc/handlers.h"
#include "common/rc.h"

/* GetJob's "wait": an hour at most, so a long poll ends. */
#define GET_JOB_WAIT_MAX_SEC 3600

int dmr_h_get_job(struct dmr_call *c)
{
	struct json_object *o, *st;
	uint64_t id, wait = 0;
	int rc, r;

	if ((rc = dmr_param_u64(c, "job", true, &id)) ||
	    (rc = dmr_param_u64(c, "wait", false, &wait)))
		return rc;
	if (wait > GET_JOB_WAIT_MAX_SEC)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "wait is at most %d seconds",
				     GET_JOB_WAIT_MAX_SEC);
	r = dmr_job_get_json(c->agent, id, &o);
	if (r == -ENOENT)
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no job %" PRIu64, id);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", strerror(-r));
	/* Long poll: the answer once the job has finished, or wait is up. */
	if (wait && c->may_wait && json_object_object_get_ex(o, "job_state", &st) &&
	    json_object_get_int(st) < DMR_JOB_COMPLETED) {
		json_object_put(o);
		c->wait_usec = wait * 1000000;
		return DMR_RC_AGAIN;
	}
	json_object_object_add(c->reply, "job", o);
	return DMR_RC_OK;
}

int dmr_h_list_jobs(struct dmr_call *c)
{
	struct json_object *arr;
	int r = dmr_jobs_list_json(c->agent, &arr);

	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", strerror(-r));
	json_object_object_add(c->reply, "jobs", arr);
	return DMR_RC_OK;
}
