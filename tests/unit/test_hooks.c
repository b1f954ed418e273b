/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/hooks.c: a hook runs with stdin, stdout and stderr and no other
 * descriptor of the agent's, even one opened without O_CLOEXEC.
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
#include "common/util.h"

static char dir[] = "/tmp/dmrep-test-hooks.XXXXXX";
static char hook_dir[64], out[80];

static int hooks_fn(struct dmr_job *job, void *ud)
{
	(void)ud;
	return dmr_hooks_run(job, hook_dir, "vm1", 3, false, NULL);
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
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
