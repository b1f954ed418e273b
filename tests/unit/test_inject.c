/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: text from outside on its way to logs and terminals.
 *  - a "vm" param with a newline cannot forge a log record, even in a
 *    refused call (the real server over a socket, its log captured);
 *  - a request that is not UTF-8 (json-c's check, and an overlong form
 *    that json-c lets through) is refused with 32773, one with a NUL
 *    inside a string too;
 *  - job errors and call errors are cut on a character boundary and carry
 *    no control character;
 *  - a guest agent's error text with escape sequences reaches the job
 *    escaped; a QGA reply that is not UTF-8 is refused;
 *  - the escaping and UTF-8 helpers themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include "agent/core/agent.h"
#include "agent/engine/job.h"
#include "agent/rpc/method.h"
#include "agent/guest/qga.h"
#include "common/rc.h"
#include "agent/rpc/server.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/unit/fake_server.h"

static char dir[64], sock[96], logpath[128];
static struct dmr_agent agent;
static struct dmr_server *srv;
static pthread_t thread;
static int stop_fd = -1, saved_err = -1;

/* A method that refuses what it is given, as most handlers would a bad
 * VM name: the server still logs the call with its "vm" param. */
static int h_refuse(struct dmr_call *c)
{
	const char *s = "";

	(void)dmr_param_string(c, "s", false, &s);
	return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "refused: %s", s);
}

static int h_echo(struct dmr_call *c)
{
	const char *s;
	int rc;

	if ((rc = dmr_param_string(c, "s", true, &s)))
		return rc;
	json_object_object_add(c->reply, "s", json_object_new_string(s));
	return DMR_RC_OK;
}

static const struct dmr_method methods[] = {
	{ "Refuse", false, h_refuse, false, false },
	{ "Echo", false, h_echo, false, false },
	{ NULL, false, NULL, false, false },
};

static void *run(void *p)
{
	(void)p;
	return (void *)(intptr_t)dmr_server_run(srv, stop_fd);
}

static int setup(void **st)
{
	int fd;

	(void)st;
	snprintf(dir, sizeof(dir), "/tmp/dmrep-test-inject.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/d.sock", dir);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	/* Everything the agent logs goes to a file the tests read. */
	fflush(stderr);
	saved_err = dup(2);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	assert_true(fd >= 0 && saved_err >= 0);
	dup2(fd, 2);
	close(fd);
	dmr_log_set_level(DMR_LOG_DEBUG);
	agent.state_dir = dir;
	agent.socket_path = sock;
	agent.stopping = 0; /* the last test's server stopped on it */
	assert_int_equal(dmr_server_open(&agent, &srv), 0);
	dmr_server_set_methods(srv, methods);
	stop_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(stop_fd >= 0);
	assert_int_equal(pthread_create(&thread, NULL, run, NULL), 0);
	return 0;
}

static int teardown(void **st)
{
	uint64_t one = 1;
	void *ret;
	char cmd[128];

	(void)st;
	assert_int_equal(write(stop_fd, &one, sizeof(one)), sizeof(one));
	pthread_join(thread, &ret);
	dmr_server_free(srv);
	close(stop_fd);
	fflush(stderr);
	dup2(saved_err, 2);
	close(saved_err);
	dmr_log_set_level(DMR_LOG_INFO);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int dial(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Send one request line, read one reply line. */
static struct json_object *roundtrip(int fd, const char *line, size_t len)
{
	char buf[8192];
	size_t got = 0;
	struct timeval tv = { .tv_sec = 5 };

	assert_int_equal(dmr_write_all(fd, line, len), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (!memchr(buf, '\n', got)) {
		ssize_t k = recv(fd, buf + got, sizeof(buf) - got - 1, 0);

		if (k <= 0)
			fail_msg("no reply");
		got += (size_t)k;
	}
	buf[got] = '\0';
	return json_tokener_parse(buf);
}

static int rc_of(struct json_object *o)
{
	struct json_object *v;

	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "return", &v));
	return json_object_get_int(v);
}

static char *read_log(void)
{
	char *text = NULL;

	fflush(stderr);
	assert_int_equal(dmr_read_file(logpath, 1 << 20, &text, NULL), 0);
	return text;
}

/* Every line of the log is one of ours: "<N>" and a tag. */
static void assert_log_lines_ours(const char *log)
{
	for (const char *l = log; *l;) {
		const char *nl = strchr(l, '\n');

		if (!(l[0] == '<' && l[1] >= '3' && l[1] <= '7' && l[2] == '>'))
			fail_msg("a log line not written by the logger: %.*s",
				 (int)(nl ? nl - l : (ptrdiff_t)strlen(l)), l);
		assert_false(strchr(l, '\x1b') && (!nl || strchr(l, '\x1b') < nl));
		if (!nl)
			break;
		l = nl + 1;
	}
}

static void test_forged_newline_in_vm(void **st)
{
	static const char req[] = "{\"id\": 1, \"method\": \"Refuse\", \"params\": {\"vm\": "
				  "\"x\\n<0>dmrepd: emergency: forged\", \"s\": \"\\u001b[2J\\r\"}}\n";
	_cleanup_free_ char *log = NULL;
	struct json_object *o;
	struct json_object *v;
	int fd = dial();

	(void)st;
	o = roundtrip(fd, req, strlen(req));
	assert_int_equal(rc_of(o), DMR_RC_INVALID_PARAMETER);
	/* The reply's error quotes the param, escaped. */
	assert_true(json_object_object_get_ex(o, "error", &v));
	assert_string_equal(json_object_get_string(v), "refused: \\x1b[2J\\x0d");
	json_object_put(o);
	close(fd);
	log = read_log();
	assert_log_lines_ours(log);
	assert_null(strstr(log, "\n<0>"));
	assert_non_null(strstr(log, "Refuse VM x\\x0a<0>dmrepd: emergency: forged uid"));
}

static void test_invalid_utf8_refused(void **st)
{
	static const struct {
		const char *line;
		int rc;
	} reqs[] = {
		/* A bare continuation byte; a lead byte without its tail. */
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"a\x80z\"}}\n", DMR_RC_INVALID_PARAMETER },
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"\xc3\x28\"}}\n", DMR_RC_INVALID_PARAMETER },
		/* Overlong '/', a surrogate, past U+10FFFF: json-c's flag lets
		 * these through, the server does not. */
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"\xc0\xaf\"}}\n", DMR_RC_INVALID_PARAMETER },
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"\xed\xa0\x80\"}}\n", DMR_RC_INVALID_PARAMETER },
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"\xf4\x90\x80\x80\"}}\n", DMR_RC_INVALID_PARAMETER },
		/* In a key, in the method name. */
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"ok\", \"\xff\": 1}}\n", DMR_RC_INVALID_PARAMETER },
		{ "{\"method\": \"Ech\xe2\x82\"}\n", DMR_RC_INVALID_PARAMETER },
		/* A NUL inside a string would cut it short of what was checked. */
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"ok\\u0000../x\"}}\n", DMR_RC_INVALID_PARAMETER },
		/* Valid: two-, three- and four-byte characters. */
		{ "{\"method\": \"Echo\", \"params\": {\"s\": \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}\n", 0 },
	};
	int fd = dial();

	(void)st;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(reqs); i++) {
		struct json_object *o = roundtrip(fd, reqs[i].line, strlen(reqs[i].line));

		if (rc_of(o) != reqs[i].rc)
			fail_msg("request %zu: return %d, want %d", i, rc_of(o), reqs[i].rc);
		json_object_put(o);
	}
	close(fd);
}

/* ---- truncation and escaping ------------------------------------------ */

static int long_error_fn(struct dmr_job *job, void *ud)
{
	char msg[1200];
	size_t n = 0;

	(void)ud;
	/* "xx" then two-byte characters: the 511-byte cut falls inside one. */
	msg[n++] = 'x';
	msg[n++] = 'x';
	while (n + 2 < sizeof(msg)) {
		msg[n++] = (char)0xc3;
		msg[n++] = (char)0xa9;
	}
	msg[n] = '\0';
	dmr_job_set_error(job, DMR_RC_FAILED, "%s", msg);
	return -EIO;
}

static int escape_error_fn(struct dmr_job *job, void *ud)
{
	dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "guest: %s", (const char *)ud);
	return -EIO;
}

static struct json_object *wait_job(struct dmr_agent *a, uint64_t id)
{
	for (int i = 0; i < 500; i++) {
		struct json_object *o, *v;

		assert_int_equal(dmr_job_get_json(a, id, &o), 0);
		json_object_object_get_ex(o, "job_state", &v);
		if (json_object_get_int(v) >= 7)
			return o;
		json_object_put(o);
		usleep(10000);
	}
	fail_msg("job did not finish");
	return NULL;
}

static const char *job_error(struct json_object *o)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, "error_description", &v));
	return json_object_get_string(v);
}

static void test_truncation_on_boundary(void **st)
{
	struct dmr_agent a = { .state_dir = dir };
	struct dmr_call c = { 0 };
	struct json_object *o;
	char big[1200], out[8], wide[16];
	const char *e;
	uint64_t id;
	size_t n = 0;

	(void)st;
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "X", NULL, long_error_fn, NULL, NULL, &id), 0);
	o = wait_job(&a, id);
	e = job_error(o);
	assert_true(dmr_utf8_valid(e, strlen(e)));
	/* Cut before the split character, not inside it. */
	assert_int_equal(strlen(e), 510);
	json_object_put(o);
	dmr_jobs_close(&a);

	/* A call's error, likewise. */
	big[n++] = 'x';
	while (n + 3 < sizeof(big)) {
		memcpy(big + n, "\xe2\x82\xac", 3);
		n += 3;
	}
	big[n] = '\0';
	dmr_call_fail(&c, DMR_RC_FAILED, "%s", big);
	assert_true(dmr_utf8_valid(c.error, strlen(c.error)));
	assert_int_equal(strlen(c.error), 1 + 3 * ((sizeof(c.error) - 2) / 3));

	/* The helpers at the edges: a 4-byte character does not fit in 4
	 * bytes with its NUL; an escape is never cut in half. */
	dmr_utf8_copy(out, 5, "a\xf0\x9f\x98\x80");
	assert_string_equal(out, "a");
	dmr_utf8_copy(out, 6, "a\xf0\x9f\x98\x80");
	assert_string_equal(out, "a\xf0\x9f\x98\x80");
	dmr_cescape(out, sizeof(out), "ab\n");
	assert_string_equal(out, "ab\\x0a");
	dmr_cescape(out, 6, "ab\n");
	assert_string_equal(out, "ab");
	/* A C1 control (CSI) is escaped whole, or not at all. */
	dmr_cescape(out, sizeof(out), "\xc2\x9b" "1");
	assert_string_equal(out, "");
	dmr_cescape(wide, sizeof(wide), "\xc2\x9b" "1");
	assert_string_equal(wide, "\\xc2\\x9b1");
	assert_int_equal(dmr_utf8_cut("a\xe2\x82", 3), 1);
	assert_int_equal(dmr_utf8_cut("a\xe2\x82\xac", 4), 4);
}

static void test_qga_error_escapes(void **st)
{
	static const struct fake_step script[] = {
		EXPECT("\"guest-sync-delimited\""), SEND("\xff{\"return\": %ID%}\n"),
		EXPECT("\"guest-fsfreeze-freeze\""),
		SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": "
		     "\"frozen\\u001b[2J\\u001b]0;owned\\u0007\\nline2\\r\\u009b31m\"}}\n"),
		EXPECT("\"guest-ping\""),
		/* Not UTF-8: refused, not passed on. */
		SEND("{\"return\": \"\xc0\xaf\"}\n"),
		END,
	};
	struct dmr_agent a = { .state_dir = dir };
	struct json_object *o;
	struct fake f;
	struct dmr_qga *g = NULL;
	const char *why;
	uint64_t id;
	int n = -1;

	(void)st;
	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_fsfreeze_freeze(g, 1000, &n), -EIO);
	why = dmr_qga_last_error(g);
	assert_string_equal(why, "frozen\\x1b[2J\\x1b]0;owned\\x07\\x0aline2\\x0d\\xc2\\x9b31m");
	/* Through a job, as a failed application-consistent point says it. */
	assert_int_equal(dmr_jobs_open(&a), 0);
	assert_int_equal(dmr_job_start(&a, "X", NULL, escape_error_fn, (void *)why, NULL, &id), 0);
	o = wait_job(&a, id);
	for (const unsigned char *p = (const unsigned char *)job_error(o); *p; p++)
		assert_true(*p >= 0x20 && *p != 0x7f);
	assert_non_null(strstr(job_error(o), "guest: frozen\\x1b[2J"));
	json_object_put(o);
	dmr_jobs_close(&a);
	assert_int_equal(dmr_qga_ping(g, 1000), -EPROTO);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_forged_newline_in_vm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_utf8_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation_on_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qga_error_escapes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
