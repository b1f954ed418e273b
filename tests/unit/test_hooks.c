/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/hooks.c: a hook runs with stdin, stdout and stderr and no other
 * descriptor of the agent's, even one opened without O_CLOEXEC; what a run
 * reports (steps, results, the error) reaches the caller's report, and
 * through agent/engine/job_hooks.c the job.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/agent.h"
#include "agent/guest/hooks.h"
#include "agent/engine/job.h"
#include "agent/engine/job_hooks.h"
#include "common/util.h"

static char dir[] = "/tmp/dmrep-test-hooks.XXXXXX";
static char hook_dir[64], out[80];

static int hooks_fn(struct dmr_job *job, void *ud)
{
	(void)ud;
	return dmr_job_hooks_run(job, hook_dir, "vm1", 3, false, NULL);
}

/* What a report received. */
struct seen {
	char steps[4][64];
	uint64_t usec[4];
	size_t n_steps;
	struct json_object *results;
	unsigned n_results;
	char error[1024];
	unsigned n_errors;
};

static void seen_step(void *userdata, const char *step, uint64_t usec)
{
	struct seen *s = userdata;

	assert_true(s->n_steps < 4);
	snprintf(s->steps[s->n_steps], sizeof(s->steps[0]), "%s", step);
	s->usec[s->n_steps++] = usec;
}

static void seen_results(void *userdata, struct json_object *results)
{
	struct seen *s = userdata;

	json_object_put(s->results);
	s->results = results;
	s->n_results++;
}

static void seen_error(void *userdata, const char *message)
{
	struct seen *s = userdata;

	snprintf(s->error, sizeof(s->error), "%s", message);
	s->n_errors++;
}

static void write_hook(const char *name, const char *body)
{
	_cleanup_free_ char *path = NULL, *script = NULL;

	assert_true(asprintf(&path, "%s/%s", hook_dir, name) > 0);
	assert_true(asprintf(&script, "#!/bin/sh\n%s\n", body) > 0);
	assert_int_equal(dmr_write_file_atomic(path, script, strlen(script), 0755), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

/* The hooks run in name order with the VM's environment; the first that
 * fails stops the run, and the report hears of each step, the results
 * and one error naming the hook. */
static void test_report_steps_results_error(void **state)
{
	struct seen s = { .n_steps = 0 };
	const struct dmr_hooks_report rep = {
		.userdata = &s, .step = seen_step, .results = seen_results, .error = seen_error,
	};
	_cleanup_free_ char *text = NULL, *cmd = NULL, *env = NULL, *fds = NULL;
	struct json_object *o, *v;

	(void)state;
	if (geteuid() != 0)
		skip();
	if (!hook_dir[0]) {
		assert_non_null(mkdtemp(dir));
		snprintf(hook_dir, sizeof(hook_dir), "%s/hooks", dir);
		assert_int_equal(mkdir(hook_dir, 0755), 0);
	}
	assert_true(asprintf(&env, "%s/env", dir) > 0);
	assert_true(asprintf(&cmd, "echo \"$DMREP_OPERATION $DMREP_VM $DMREP_POINT $DMREP_TEST\" > %s",
			     env) > 0);
	/* The hook of the test before, if it ran. */
	assert_true(asprintf(&fds, "%s/10-fds", hook_dir) > 0);
	(void)unlink(fds);
	write_hook("10-env", cmd);
	write_hook("20-fail", "exit 3");
	write_hook("30-after", "exit 0");

	assert_int_equal(dmr_hooks_run(&rep, hook_dir, "vm7", 9, true, NULL), -EIO);
	assert_int_equal(dmr_read_file(env, 4096, &text, NULL), 0);
	assert_string_equal(text, "test-failover vm7 9 1\n");
	assert_int_equal(s.n_steps, 2);
	assert_string_equal(s.steps[0], "hook:10-env");
	assert_string_equal(s.steps[1], "hook:20-fail");
	assert_int_equal(s.n_errors, 1);
	assert_string_equal(s.error, "failover hook 20-fail exited 3");
	assert_int_equal(s.n_results, 1);
	assert_int_equal(json_object_array_length(s.results), 2);
	o = json_object_array_get_idx(s.results, 1);
	assert_true(json_object_object_get_ex(o, "name", &v));
	assert_string_equal(json_object_get_string(v), "20-fail");
	assert_true(json_object_object_get_ex(o, "exit_status", &v));
	assert_int_equal(json_object_get_int(v), 3);
	assert_true(json_object_object_get_ex(o, "usec", &v));
	assert_int_equal((uint64_t)json_object_get_int64(v), s.usec[1]);
	json_object_put(s.results);

	/* No directory configured, or none there: nothing runs, nothing is
	 * reported. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(dmr_hooks_run(&rep, NULL, "vm7", 9, false, NULL), 0);
	assert_int_equal(dmr_hooks_run(&rep, "/nonexistent/dmrep-hooks", "vm7", 9, false, NULL), 0);
	assert_int_equal(s.n_steps + s.n_results + s.n_errors, 0);

	/* A directory others may write to runs nothing and says so. */
	assert_int_equal(chmod(hook_dir, 0775), 0);
	assert_int_equal(dmr_hooks_run(&rep, hook_dir, "vm7", 9, false, NULL), -EPERM);
	assert_int_equal(chmod(hook_dir, 0755), 0);
	assert_int_equal(s.n_steps + s.n_results, 0);
	assert_int_equal(s.n_errors, 1);
	assert_true(strstr(s.error, "is not root's alone: no hook was run") != NULL);
}

static void test_hook_sees_only_stdio(void **state)
{
	struct dmr_agent a = { .state_dir = dir };
	_cleanup_free_ char *text = NULL, *script = NULL;
	struct json_object *o, *v;
	char hook[128];
	uint64_t id;
	int leak, st = 0;

	(void)state;
	/* Hooks run as root: the directory and the hook must be root's. */
	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(hook_dir, sizeof(hook_dir), "%s/hooks", dir);
	snprintf(out, sizeof(out), "%s/fds", dir);
	snprintf(hook, sizeof(hook), "%s/10-fds", hook_dir);
	assert_int_equal(mkdir(hook_dir, 0755), 0);
	/* exec: the shell's own script descriptor is close-on-exec; ls's
	 * listing then holds 0, 1, 2 and ls's own handle on the directory,
	 * the lowest free number: 3. */
	assert_true(asprintf(&script, "#!/bin/sh\nexec /bin/ls /proc/self/fd > %s\n", out) > 0);
	assert_int_equal(dmr_write_file_atomic(hook, script, strlen(script), 0755), 0);
	assert_int_equal(chmod(hook, 0755), 0);
	/* What a module that forgets O_CLOEXEC leaves open in the agent. */
	leak = open("/dev/null", O_RDONLY);
	assert_true(leak >= 0);
	assert_int_equal(dup2(leak, 77), 77);

	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "InitiateFailover", NULL, hooks_fn, NULL, NULL, &id), 0);
	for (int i = 0; i < 5000 && st < 7; i++) {
		assert_int_equal(dmr_job_get_json(&a, id, &o), 0);
		json_object_object_get_ex(o, "job_state", &v);
		st = json_object_get_int(v);
		json_object_put(o);
		usleep(1000);
	}
	assert_int_equal(st, 7);
	/* agent/engine/job_hooks.c: the run's results reach the job. */
	assert_int_equal(dmr_job_get_json(&a, id, &o), 0);
	assert_true(json_object_object_get_ex(o, "hooks", &v));
	assert_int_equal(json_object_array_length(v), 1);
	json_object_put(o);
	dmr_jobs_close(&a);
	close(77);
	close(leak);

	assert_int_equal(dmr_read_file(out, 4096, &text, NULL), 0);
	assert_string_equal(text, "0\n1\n2\n3\n");
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hook_sees_only_stdio),
		cmocka_unit_test(test_report_steps_results_error),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
