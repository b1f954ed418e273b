/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: hypervisor shims - exec (a script in a temp dir: verbs and
 * arguments, status words, exit codes, signals, timeout with a lingering
 * grandchild, missing or unrunnable commands), none, and qmp against a
 * fake QEMU (one kept connection, reconnect, errors, run states). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/guest/shim.h"
#include "common/util.h"
#include "tests/unit/fake_server.h"

static const char script_text[] =
	"#!/bin/sh\n"
	"d=$(dirname \"$0\")\n"
	"echo \"$*\" >>\"$d/log\"\n"
	"case \"$1\" in\n"
	"--fail) exit 3 ;;\n"
	"--signal) kill -KILL $$ ;;\n"
	"--slow) sleep 30 & echo $! >\"$d/bgpid\"; sleep 30 ;;\n"
	"--bg) sleep 30 & echo $! >\"$d/bgpid\"; echo running; exit 0 ;;\n"
	"--garbage) echo flying; exit 0 ;;\n"
	"--shout) printf '  \\tSHUTOFF since yesterday\\n'; exit 0 ;;\n"
	"--quiet) exit 0 ;;\n"
	"esac\n"
	"case \"$1\" in\n"
	"status) cat \"$d/state\" 2>/dev/null || echo running ;;\n"
	"pause) echo paused >\"$d/state\" ;;\n"
	"resume) echo running >\"$d/state\" ;;\n"
	"reset) echo reset >>\"$d/resets\" ;;\n"
	"*) exit 2 ;;\n"
	"esac\n";

struct tdir {
	char dir[48];
	char script[96];
};

static void tdir_make(struct tdir *t)
{
	int fd;

	snprintf(t->dir, sizeof(t->dir), "/tmp/dmr-shim-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->script, sizeof(t->script), "%s/shim.sh", t->dir);
	fd = open(t->script, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, script_text, sizeof(script_text) - 1), sizeof(script_text) - 1);
	close(fd);
}

static void tdir_remove(struct tdir *t)
{
	static const char *const files[] = { "shim.sh", "log", "state", "resets", "bgpid", "plain" };
	char p[128];

	for (size_t i = 0; i < DMR_ARRAY_SIZE(files); i++) {
		snprintf(p, sizeof(p), "%s/%s", t->dir, files[i]);
		unlink(p);
	}
	rmdir(t->dir);
}

static char *tdir_read(struct tdir *t, const char *name)
{
	char p[128], *buf = NULL;
	size_t len;

	snprintf(p, sizeof(p), "%s/%s", t->dir, name);
	if (dmr_read_file(p, 65536, &buf, &len) < 0)
		return NULL;
	return buf;
}

static struct dmr_shim *exec_shim(struct tdir *t, const char *extra)
{
	struct dmr_shim *s = NULL;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "  %s %s ", t->script, extra);
	assert_int_equal(dmr_shim_new("exec", cmd, "vm1", &s), 0);
	assert_string_equal(dmr_shim_kind(s), "exec");
	return s;
}

/* pid from the script's bgpid file is gone or a zombie within 2 s. */
static bool bg_gone(struct tdir *t)
{
	char *s = tdir_read(t, "bgpid"), p[64], *stat = NULL;
	size_t len;
	pid_t pid;
	bool gone = false;

	assert_non_null(s);
	pid = (pid_t)atoi(s);
	free(s);
	assert_true(pid > 1);
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 200 && !gone; i++) {
		if (dmr_read_file(p, 4096, &stat, &len) < 0)
			gone = true;
		else {
			const char *rp = strrchr(stat, ')');

			gone = rp && rp[1] == ' ' && rp[2] == 'Z';
			free(stat);
			stat = NULL;
		}
		if (!gone)
			fake_sleep_ms(10);
	}
	if (!gone)
		kill(pid, SIGKILL);
	return gone;
}

static void test_exec_verbs(void **state)
{
	struct tdir t;
	struct dmr_shim *s;
	enum dmr_guest_status st = DMR_GUEST_UNKNOWN;
	char *log;

	tdir_make(&t);
	s = exec_shim(&t, "");
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_int_equal(dmr_shim_pause(s), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_PAUSED);
	assert_int_equal(dmr_shim_reset(s), 0);
	assert_int_equal(dmr_shim_resume(s), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_string_equal(dmr_shim_last_error(s), "");
	dmr_shim_free(s);

	log = tdir_read(&t, "log");
	assert_non_null(log);
	assert_string_equal(log, "status vm1\npause vm1\nstatus vm1\nreset vm1\nresume vm1\nstatus vm1\n");
	free(log);
	log = tdir_read(&t, "resets");
	assert_string_equal(log, "reset\n");
	free(log);
	tdir_remove(&t);
}

static void test_exec_status_words(void **state)
{
	struct tdir t;
	struct dmr_shim *s;
	enum dmr_guest_status st = DMR_GUEST_RUNNING;
	char *log;

	tdir_make(&t);
	s = exec_shim(&t, "--shout");
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_NOT_RUNNING);
	dmr_shim_free(s);

	s = exec_shim(&t, "--garbage");
	st = DMR_GUEST_RUNNING;
	assert_int_equal(dmr_shim_status(s, &st), -EPROTO);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_non_null(strstr(dmr_shim_last_error(s), "flying"));
	dmr_shim_free(s);

	s = exec_shim(&t, "--quiet");
	assert_int_equal(dmr_shim_status(s, &st), -EPROTO);
	dmr_shim_free(s);

	/* Extra words of COMMAND come before VERB and VM. */
	log = tdir_read(&t, "log");
	assert_string_equal(log, "--shout status vm1\n--garbage status vm1\n--quiet status vm1\n");
	free(log);
	tdir_remove(&t);
}

static void test_exec_failures(void **state)
{
	struct tdir t;
	struct dmr_shim *s;
	enum dmr_guest_status st;
	char p[128];
	int fd;

	tdir_make(&t);
	s = exec_shim(&t, "--fail");
	assert_int_equal(dmr_shim_pause(s), -EIO);
	assert_non_null(strstr(dmr_shim_last_error(s), "exit status 3"));
	assert_int_equal(dmr_shim_status(s, &st), -EIO);
	dmr_shim_free(s);

	s = exec_shim(&t, "--signal");
	assert_int_equal(dmr_shim_resume(s), -EIO);
	assert_non_null(strstr(dmr_shim_last_error(s), "signal 9"));
	dmr_shim_free(s);

	/* Commands that cannot be run at all. */
	assert_int_equal(dmr_shim_new("exec", "/nonexistent/dmrep-shim", "vm1", &s), 0);
	assert_int_equal(dmr_shim_pause(s), -EHOSTUNREACH);
	assert_non_null(strstr(dmr_shim_last_error(s), "cannot run"));
	dmr_shim_free(s);
	snprintf(p, sizeof(p), "%s/plain", t.dir);
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	close(fd);
	assert_int_equal(dmr_shim_new("exec", p, "vm1", &s), 0);
	assert_int_equal(dmr_shim_status(s, &st), -EHOSTUNREACH);
	dmr_shim_free(s);
	tdir_remove(&t);
}

static void test_exec_timeout(void **state)
{
	struct tdir t;
	struct dmr_shim *s;
	enum dmr_guest_status st = DMR_GUEST_UNKNOWN;
	struct timespec t0;

	tdir_make(&t);
	s = exec_shim(&t, "--slow");
	assert_int_equal(dmr_shim_set_timeout(s, 0), -EINVAL);
	assert_int_equal(dmr_shim_set_timeout(s, 300), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_shim_pause(s), -ETIMEDOUT);
	assert_true(fake_elapsed_ms(&t0) >= 290);
	assert_true(fake_elapsed_ms(&t0) < 1500);
	/* The whole process group went, the background sleep too. */
	assert_true(bg_gone(&t));
	dmr_shim_free(s);

	/* A command that exits leaving a child holding its stdout: the
	 * answer does not wait for the child. */
	s = exec_shim(&t, "--bg");
	assert_int_equal(dmr_shim_set_timeout(s, 5000), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_true(fake_elapsed_ms(&t0) < 2000);
	dmr_shim_free(s);
	{
		char *pid = tdir_read(&t, "bgpid");

		if (pid)
			kill((pid_t)atoi(pid), SIGKILL);
		free(pid);
	}
	tdir_remove(&t);
}

static void test_new_rejects(void **state)
{
	struct dmr_shim *s = NULL;

	assert_int_equal(dmr_shim_new("libvirt", "/x", "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new(NULL, "/x", "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("exec", "shim.sh", "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("exec", " \t ", "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("exec", NULL, "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("qmp", "", "vm1", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("qmp", "/run/x.qmp", "", &s), -EINVAL);
	assert_int_equal(dmr_shim_new("none", NULL, NULL, &s), -EINVAL);
	assert_null(s);
}

static void test_none(void **state)
{
	struct dmr_shim *s = NULL;
	enum dmr_guest_status st = DMR_GUEST_RUNNING;

	assert_int_equal(dmr_shim_new("none", NULL, "vm1", &s), 0);
	assert_string_equal(dmr_shim_kind(s), "none");
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_NOT_RUNNING);
	assert_int_equal(st, DMR_GUEST_SHUTOFF);
	assert_int_equal(dmr_shim_pause(s), 0);
	assert_int_equal(dmr_shim_resume(s), 0);
	assert_int_equal(dmr_shim_reset(s), 0);
	dmr_shim_free(s);
}

#define QS(st, run) SEND("{\"return\": {\"status\": \"" st "\", \"singlestep\": false, \"running\": " run "}, \"id\": %ID%}\n")
#define OK SEND("{\"return\": {}, \"id\": %ID%}\n")

static void test_qmp_one_connection(void **state)
{
	/* The fake accepts one connection only: a second would hang. */
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"query-status\""), QS("running", "true"),
		EXPECT("\"stop\""), SEND("{\"event\": \"STOP\"}\n"), OK,
		EXPECT("\"query-status\""), QS("paused", "false"),
		EXPECT("\"system_reset\""), OK,
		EXPECT("\"cont\""), OK,
		EXPECT("\"query-status\""), QS("shutdown", "false"),
		END,
	};
	struct fake f;
	struct dmr_shim *s = NULL;
	enum dmr_guest_status st = DMR_GUEST_UNKNOWN;

	fake_start(&f, script);
	assert_int_equal(dmr_shim_new("qmp", f.path, "vm1", &s), 0);
	assert_int_equal(dmr_shim_set_timeout(s, 2000), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_int_equal(dmr_shim_pause(s), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_PAUSED);
	assert_int_equal(dmr_shim_reset(s), 0);
	assert_int_equal(dmr_shim_resume(s), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_NOT_RUNNING);
	dmr_shim_free(s);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_qmp_reconnect(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"query-status\""), QS("running", "true"),
		CLOSE,
		ACCEPT,
		QMP_HELLO,
		EXPECT("\"stop\""), OK,
		END,
	};
	struct fake f;
	struct dmr_shim *s = NULL;
	enum dmr_guest_status st = DMR_GUEST_UNKNOWN;

	fake_start(&f, script);
	assert_int_equal(dmr_shim_new("qmp", f.path, "vm1", &s), 0);
	assert_int_equal(dmr_shim_set_timeout(s, 2000), 0);
	assert_int_equal(dmr_shim_status(s, &st), 0);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	fake_sleep_ms(50);
	assert_int_equal(dmr_shim_pause(s), 0);
	dmr_shim_free(s);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_qmp_errors(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"cont\""),
		SEND("{\"id\": %ID%, \"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual Machine is required\"}}\n"),
		CLOSE,
		END,
	};
	struct fake f;
	struct dmr_shim *s = NULL;
	enum dmr_guest_status st = DMR_GUEST_RUNNING;

	fake_start(&f, script);
	assert_int_equal(dmr_shim_new("qmp", f.path, "vm1", &s), 0);
	assert_int_equal(dmr_shim_resume(s), -EIO);
	assert_string_equal(dmr_shim_last_error(s), "cont: Resetting the Virtual Machine is required");
	assert_int_equal(fake_finish(&f, 0), 0);
	/* QEMU is gone now: the kept connection is dead and a new one
	 * finds no socket. */
	assert_int_equal(dmr_shim_status(s, &st), -EHOSTUNREACH);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_non_null(strstr(dmr_shim_last_error(s), "cannot connect"));
	assert_int_equal(dmr_shim_pause(s), -EHOSTUNREACH);
	dmr_shim_free(s);
}

static void test_qmp_runstates(void **state)
{
	assert_int_equal(dmr_guest_status_from_qmp("running"), DMR_GUEST_RUNNING);
	assert_int_equal(dmr_guest_status_from_qmp("paused"), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_qmp("suspended"), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_qmp("prelaunch"), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_qmp("io-error"), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_qmp("guest-panicked"), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_qmp("shutdown"), DMR_GUEST_NOT_RUNNING);
	assert_int_equal(dmr_guest_status_from_qmp("inmigrate"), DMR_GUEST_UNKNOWN);
	assert_int_equal(dmr_guest_status_from_qmp("postmigrate"), DMR_GUEST_UNKNOWN);
	assert_int_equal(dmr_guest_status_from_qmp(NULL), DMR_GUEST_UNKNOWN);
	assert_string_equal(dmr_guest_status_to_string(DMR_GUEST_PAUSED), "paused");
	assert_string_equal(dmr_guest_status_to_string(DMR_GUEST_NOT_RUNNING), "not-running");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_verbs),
		cmocka_unit_test(test_exec_status_words),
		cmocka_unit_test(test_exec_failures),
		cmocka_unit_test(test_exec_timeout),
		cmocka_unit_test(test_new_rejects),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_qmp_one_connection),
		cmocka_unit_test(test_qmp_reconnect),
		cmocka_unit_test(test_qmp_errors),
		cmocka_unit_test(test_qmp_runstates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
