/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/job.c: the job lifecycle and its JSON (CONTRACT.md's shape),
 * records that survive a restart (a job that was running is marked 10),
 * error codes from errnos and from dmr_job_set_error, the VM busy lock,
 * ended threads joined (their stacks unmapped), records pruned past the
 * last 1000, and ids that never repeat.
 */
#include <dirent.h>
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
#include "common/rc.h"
#include "common/log.h"
#include "common/util.h"

static char dir[] = "/tmp/dmrep-test-job.XXXXXX";

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	return 0;
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

static int ok_fn(struct dmr_job *job, void *ud)
{
	(void)ud;
	dmr_job_add_step(job, "first", 1234);
	dmr_job_set_percent(job, 50);
	dmr_job_set_guest_paused(job, 777);
	dmr_job_set_result(job, "point", json_object_new_int64(5));
	return 0;
}

static int errno_fn(struct dmr_job *job, void *ud)
{
	(void)job;
	(void)ud;
	return -ENOSPC;
}

static int error_fn(struct dmr_job *job, void *ud)
{
	(void)ud;
	dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the hypervisor is gone\nsecond line");
	dmr_job_set_error(job, DMR_RC_FAILED, "a later error does not replace the first");
	return -EIO;
}

static int freed;
static void count_free(void *p)
{
	(void)p;
	freed++;
}

static const char *str(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	return v ? json_object_get_string(v) : NULL;
}

static int64_t num(struct json_object *o, const char *k)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, k, &v));
	return json_object_get_int64(v);
}

static void test_lifecycle(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	struct json_object *o, *steps, *v;
	uint64_t id;

	(void)state;
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_vm_busy_acquire(&a, "vm1"), 0);
	assert_int_equal(dmr_job_start(&a, "CreateReplicationPoint", "vm1", ok_fn, NULL, count_free, &id), 0);
	o = wait_done(&a, id);
	assert_int_equal(num(o, "id"), (int64_t)id);
	assert_string_equal(str(o, "method"), "CreateReplicationPoint");
	assert_string_equal(str(o, "vm"), "vm1");
	assert_int_equal(num(o, "job_state"), 7);
	assert_string_equal(str(o, "state"), "completed");
	assert_int_equal(num(o, "percent_complete"), 100);
	assert_int_equal(num(o, "error_code"), 0);
	assert_string_equal(str(o, "error_description"), "");
	assert_int_equal(num(o, "guest_paused_usec"), 777);
	assert_int_equal(num(o, "point"), 5);
	assert_non_null(str(o, "started"));
	assert_non_null(str(o, "finished"));
	assert_int_equal(strlen(str(o, "finished")), 20); /* 2026-11-25T03:00:00Z */
	assert_true(json_object_object_get_ex(o, "steps", &steps));
	assert_int_equal(json_object_array_length(steps), 1);
	json_object_object_get_ex(json_object_array_get_idx(steps, 0), "usec", &v);
	assert_int_equal(json_object_get_int64(v), 1234);
	json_object_put(o);
	/* The job releases the VM as its very last act, after freeing its
	 * data: wait for the release, then the data must be gone. */
	for (int i = 0; i < 500 && dmr_vm_busy_acquire(&a, "vm1") == -EBUSY; i++)
		usleep(10000);
	assert_int_equal(freed, 1);
	assert_int_equal(dmr_vm_busy_acquire(&a, "vm1"), -EBUSY);
	assert_int_equal(dmr_vm_busy_acquire(&a, "vm2"), 0);
	dmr_vm_busy_release(&a, "vm1");
	dmr_vm_busy_release(&a, "vm2");
	assert_int_equal(dmr_job_get_json(&a, 999, &o), -ENOENT);
	dmr_jobs_close(&a);
}

static void test_errors(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	struct json_object *o;
	uint64_t id1, id2;

	(void)state;
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "AddVirtualSystem", NULL, errno_fn, NULL, NULL, &id1), 0);
	assert_int_equal(dmr_job_start(&a, "InitiateFailover", NULL, error_fn, NULL, NULL, &id2), 0);
	assert_true(id2 > id1);
	o = wait_done(&a, id1);
	assert_int_equal(num(o, "job_state"), 10);
	assert_string_equal(str(o, "state"), "exception");
	assert_int_equal(num(o, "error_code"), dmr_rc_from_errno(-ENOSPC));
	assert_string_equal(str(o, "error_description"), strerror(ENOSPC));
	json_object_put(o);
	o = wait_done(&a, id2);
	assert_int_equal(num(o, "error_code"), DMR_RC_UNAVAILABLE);
	assert_string_equal(str(o, "error_description"), "the hypervisor is gone");
	json_object_put(o);
	dmr_jobs_close(&a);
}

/* Cleanup that takes a while, like closing a guest's QMP connection. */
static void slow_free(void *p)
{
	(void)p;
	usleep(20000);
}

/* A caller that sees a job end goes on with the next operation on the VM
 * at once (a script's `point create` after `point create`): the VM must
 * be free by then, the job's cleanup included. */
static void test_ended_means_vm_free(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	uint64_t id;

	(void)state;
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_vm_busy_acquire(&a, "vm3"), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(dmr_job_start(&a, "CreateReplicationPoint", "vm3", ok_fn, NULL,
					       slow_free, &id), 0);
		json_object_put(wait_done(&a, id));
		assert_int_equal(dmr_vm_busy_acquire(&a, "vm3"), 0);
	}
	dmr_vm_busy_release(&a, "vm3");
	dmr_jobs_close(&a);
}

static void test_restart(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	struct json_object *o, *arr;
	char path[512];
	const char *running = "{\"id\": 41, \"method\": \"InitiateFailover\", \"vm\": \"v\", "
			      "\"job_state\": 4, \"state\": \"running\", \"percent_complete\": 30, "
			      "\"error_code\": 0, \"error_description\": \"\", "
			      "\"started\": \"2026-11-25T01:02:03Z\", \"finished\": null, "
			      "\"steps\": [{\"name\": \"overlays\", \"usec\": 9}], "
			      "\"guest_paused_usec\": 0, \"point\": 3}";
	uint64_t id;
	size_t n_before;

	(void)state;
	/* Jobs of the earlier tests are on disk; add one that "was running". */
	snprintf(path, sizeof(path), "%s/jobs/41.json", dir);
	assert_int_equal(dmr_write_file_atomic(path, running, strlen(running), 0600), 0);
	snprintf(path, sizeof(path), "%s/jobs/junk.json", dir);
	assert_int_equal(dmr_write_file_atomic(path, "{", 1, 0600), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_get_json(&a, 41, &o), 0);
	assert_int_equal(num(o, "job_state"), 10);
	assert_int_equal(num(o, "error_code"), DMR_RC_FAILED);
	assert_string_equal(str(o, "error_description"), "agent restarted while the job ran");
	assert_int_equal(num(o, "point"), 3); /* result fields survive */
	assert_string_equal(str(o, "started"), "2026-11-25T01:02:03Z");
	json_object_put(o);
	assert_int_equal(dmr_jobs_list_json(&a, &arr), 0);
	n_before = json_object_array_length(arr);
	assert_true(n_before >= 4);
	json_object_put(arr);
	/* Numbering goes on after the highest id seen. */
	assert_int_equal(dmr_job_start(&a, "X", NULL, ok_fn, NULL, NULL, &id), 0);
	assert_int_equal(id, 42);
	json_object_put(wait_done(&a, id));
	dmr_jobs_close(&a);
	/* And the completed record reads back the same. */
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_get_json(&a, 42, &o), 0);
	assert_int_equal(num(o, "job_state"), 7);
	assert_int_equal(num(o, "point"), 5);
	json_object_put(o);
	dmr_jobs_close(&a);
}

/* A fresh state directory: on tmpfs when there is one, since the jobs
 * below write thousands of records, each with its fsyncs. */
static void fresh_dir(char *buf, size_t len)
{
	snprintf(buf, len, "%s/dmrep-test-job2.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	assert_non_null(mkdtemp(buf));
}

static void remove_dir(const char *d)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	assert_int_equal(system(cmd), 0);
}

/* This process's mapped address space, in KiB: a thread's stack stays
 * mapped until the thread is joined. */
static long vm_size_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "re");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
			break;
	fclose(f);
	assert_true(kib > 0);
	return kib;
}

static int count_records(const char *d)
{
	char path[512];
	struct dirent *de;
	int n = 0;
	DIR *dd;

	snprintf(path, sizeof(path), "%s/jobs", d);
	dd = opendir(path);
	assert_non_null(dd);
	while ((de = readdir(dd)))
		n += strstr(de->d_name, ".json") != NULL;
	closedir(dd);
	return n;
}

/* The agent runs jobs for months: their threads' stacks must come back,
 * and the records stop at the last 1000, files included. */
static void test_threads_reaped_and_pruned(void **state)
{
	char d[64];
	struct dmr_agent a = { .state_dir = d };
	struct json_object *o, *arr;
	enum dmr_log_level level;
	uint64_t id, first = 0;
	long before = 0;

	(void)state;
	fresh_dir(d, sizeof(d));
	level = dmr_log_get_level();
	dmr_log_set_level(DMR_LOG_WARNING); /* not a line per job */
	assert_int_equal(dmr_jobs_open(&a), 0);
	for (int i = 0; i < 1100; i++) {
		assert_int_equal(dmr_job_start(&a, "X", NULL, ok_fn, NULL, NULL, &id), 0);
		if (i == 0)
			first = id;
		json_object_put(wait_done(&a, id));
		/* Past the first jobs, malloc's arenas and the stack cache
		 * are in place: what grows from here is what leaks. */
		if (i == 20)
			before = vm_size_kib();
	}
	/* 1079 threads left unjoined keep 1079 stacks: gigabytes. */
	assert_true(vm_size_kib() - before < 64 * 1024);
	assert_int_equal(dmr_job_get_json(&a, first, &o), -ENOENT);
	assert_int_equal(dmr_job_get_json(&a, id, &o), 0);
	json_object_put(o);
	assert_int_equal(dmr_jobs_list_json(&a, &arr), 0);
	assert_true(json_object_array_length(arr) <= 1000);
	assert_true(json_object_array_length(arr) >= 999);
	json_object_put(arr);
	assert_true(count_records(d) <= 1000);
	dmr_jobs_close(&a);
	dmr_log_set_level(level);
	remove_dir(d);
}

/* An id names one job forever: after the records are pruned or removed,
 * and across a restart, numbering goes on from the last id handed out. */
static void test_ids_never_repeat(void **state)
{
	char d[64], cmd[256];
	struct dmr_agent a = { .state_dir = d };
	uint64_t id, last = 0;

	(void)state;
	fresh_dir(d, sizeof(d));
	assert_int_equal(dmr_jobs_open(&a), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(dmr_job_start(&a, "X", NULL, ok_fn, NULL, NULL, &id), 0);
		assert_true(id > last);
		last = id;
		json_object_put(wait_done(&a, id));
	}
	dmr_jobs_close(&a);
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/jobs/*.json", d);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(count_records(d), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "X", NULL, ok_fn, NULL, NULL, &id), 0);
	assert_int_equal(id, last + 1);
	json_object_put(wait_done(&a, id));
	dmr_jobs_close(&a);
	remove_dir(d);
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

/* suspended_usec: a top-level integer of a job that set it (point jobs),
 * absent from one that did not, the same in GetJob and ListJobs, and after
 * a restart. */
static void test_suspended_field(void **state)
{
	char own[] = "/tmp/dmrep-test-job-stall.XXXXXX", cmd[64];
	struct dmr_agent a = { .state_dir = own };
	struct json_object *o, *arr;
	uint64_t with, without;

	(void)state;
	/* Its own state directory: the list below counts exactly two jobs. */
	assert_non_null(mkdtemp(own));
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
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", own);
	assert_int_equal(system(cmd), 0);
}

/* dmr_job_record_load (the fuzz target's entry point): a record the agent
 * wrote comes back the same; what the loader refuses is refused here too. */
static void test_record_load(void **state)
{
	static const char rec[] =
		"{\"id\":12,\"method\":\"CreateReplicationPoint\",\"vm\":\"web01\",\"job_state\":7,"
		"\"state\":\"completed\",\"percent_complete\":100,\"error_code\":0,"
		"\"error_description\":\"\",\"started\":\"2026-11-24T18:31:49Z\","
		"\"finished\":\"2026-11-24T18:31:50Z\",\"steps\":[{\"name\":\"freeze\",\"usec\":1200}],"
		"\"guest_paused_usec\":0,\"suspended_usec\":4100,\"point\":{\"id\":3}}";
	char *out = NULL;

	(void)state;
	assert_int_equal(dmr_job_record_load(rec, strlen(rec), &out), 0);
	assert_string_equal(out, rec);
	free(out);
	out = NULL;
	assert_int_equal(dmr_job_record_load("{\"id\":0,\"method\":\"x\",\"job_state\":7}", 35, &out),
			 -EINVAL);
	assert_int_equal(dmr_job_record_load("{\"id\":1,\"method\":\"x\",\"job_state\":99}", 36,
					     &out), -EINVAL);
	assert_int_equal(dmr_job_record_load("[1]", 3, &out), -EBADMSG);
	assert_int_equal(dmr_job_record_load("{\"id\":\"\xc0\x80\"}", 11, &out), -EILSEQ);
	assert_null(out);
}

/* A time that timegm() would have to normalise is not one the agent wrote:
 * it reads as absent (fuzz_job found "9999-12-31T23:59:60Z" written back
 * as year 10000, and that read back as nothing). */
static void test_record_odd_times(void **state)
{
	static const char *const odd[] = { "9999-12-31T23:59:60Z", "2026-11-31T10:00:00Z",
					   "2026-02-29T00:00:00Z" };
	char rec[256], *out = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		snprintf(rec, sizeof(rec), "{\"id\":1,\"method\":\"CreatePo\",\"vm\":null,"
			 "\"job_state\":4,\"started\":\"%s\"}", odd[i]);
		assert_int_equal(dmr_job_record_load(rec, strlen(rec), &out), 0);
		assert_non_null(strstr(out, "\"started\":null"));
		free(out);
		out = NULL;
	}
	snprintf(rec, sizeof(rec), "{\"id\":1,\"method\":\"CreatePo\",\"vm\":null,"
		 "\"job_state\":4,\"started\":\"2028-02-29T23:59:59Z\"}");
	assert_int_equal(dmr_job_record_load(rec, strlen(rec), &out), 0);
	assert_non_null(strstr(out, "\"started\":\"2028-02-29T23:59:59Z\""));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_ended_means_vm_free),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_threads_reaped_and_pruned),
		cmocka_unit_test(test_ids_never_repeat),
		cmocka_unit_test(test_suspended_field),
		cmocka_unit_test(test_record_load),
		cmocka_unit_test(test_record_odd_times),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
