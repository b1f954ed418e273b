/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/job.c's suspended_usec: a top-level integer of a job that
 * set it (point jobs), absent from one that did not, the same in GetJob and
 * ListJobs, and the same after a restart (read back as the field, not as a
 * result field carried along).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/core/agent.h"
#include "agent/engine/job.h"

static char dir[] = "/tmp/dmrep-test-job-stall.XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[256];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct json_object *wait_done(struct dmr_agent *a, uint64_t id)
{
	for (int i = 0; i < 5000; i++) {
		struct json_object *o, *v;

		assert_int_equal(dmr_job_get_json(a, id, &o), 0);
		json_object_object_get_ex(o, "job_state", &v);
		if (json_object_get_int(v) >= 7)
			return o;
		json_object_put(o);
		usleep(1000);
	}
	fail_msg("job %lu did not finish", (unsigned long)id);
	return NULL;
}

static int stall_fn(struct dmr_job *job, void *ud)
{
	(void)ud;
	dmr_job_set_suspended(job, 0);
	dmr_job_add_step(job, "volumes-suspended", 4321);
	dmr_job_set_suspended(job, 4321);
	return 0;
}

static int plain_fn(struct dmr_job *job, void *ud)
{
	(void)job;
	(void)ud;
	return 0;
}

static int64_t stall_of(struct json_object *o)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, "suspended_usec", &v))
		return -1;
	assert_true(json_object_is_type(v, json_type_int));
	return json_object_get_int64(v);
}

static void test_field(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	struct json_object *o, *arr;
	uint64_t with, without;

	(void)state;
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "CreateReplicationPoint", NULL, stall_fn, NULL, NULL, &with), 0);
	assert_int_equal(dmr_job_start(&a, "InitiateFailover", NULL, plain_fn, NULL, NULL, &without), 0);
	o = wait_done(&a, with);
	assert_int_equal(stall_of(o), 4321);
	json_object_put(o);
	o = wait_done(&a, without);
	assert_int_equal(stall_of(o), -1);
	json_object_put(o);
	assert_int_equal(dmr_jobs_list_json(&a, &arr), 0);
	assert_int_equal(json_object_array_length(arr), 2);
	assert_int_equal(stall_of(json_object_array_get_idx(arr, 0)), 4321);
	assert_int_equal(stall_of(json_object_array_get_idx(arr, 1)), -1);
	json_object_put(arr);
	dmr_jobs_close(&a);

	/* After a restart: the same, and written back the same. */
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_get_json(&a, with, &o), 0);
	assert_int_equal(stall_of(o), 4321);
	json_object_put(o);
	assert_int_equal(dmr_job_get_json(&a, without, &o), 0);
	assert_int_equal(stall_of(o), -1);
	json_object_put(o);
	dmr_jobs_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
