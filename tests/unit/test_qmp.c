/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the QMP client against scripted fake QEMUs - negotiation,
 * events around replies, replies split or batched, error replies, stale
 * replies after a timeout, timeouts, closed and absent sockets, lines over
 * the limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>

#include "agent/guest/qmp.h"
#include "common/util.h"
#include "tests/unit/fake_server.h"

#define RET_OK "{\"return\": {}, \"id\": %ID%}\n"
#define EV_STOP "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\n"
#define EV_RTC "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 0}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\n"

static void test_negotiation_and_status(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("{\"execute\":\"query-status\",\"id\":2}"),
		SEND("{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": %ID%}\n"),
		EXPECT("\"query-status\""),
		SEND("{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}, \"id\": %ID%}\n"),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	char *status = NULL;
	bool running = false;
	int major, minor, micro;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	dmr_qmp_version(q, &major, &minor, &micro);
	assert_int_equal(major, 7);
	assert_int_equal(minor, 2);
	assert_int_equal(micro, 22);
	assert_int_equal(dmr_qmp_query_status(q, &running, &status), 0);
	assert_true(running);
	assert_string_equal(status, "running");
	free(status);
	status = NULL;
	assert_int_equal(dmr_qmp_query_status(q, &running, NULL), 0);
	assert_false(running);
	assert_null(dmr_qmp_last_event(q));
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_events_skipped(void **state)
{
	static const struct fake_step script[] = {
		SEND(QMP_GREETING),
		EXPECT("\"qmp_capabilities\""),
		SEND(EV_RTC),
		SLEEP(20),
		SEND(RET_OK),
		EXPECT("\"stop\""),
		SEND(EV_RTC),
		SLEEP(20),
		SEND(EV_STOP),
		SLEEP(20),
		SEND(RET_OK),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_event_count(q), 1);
	assert_string_equal(dmr_qmp_last_event(q), "RTC_CHANGE");
	assert_int_equal(dmr_qmp_stop(q), 0);
	assert_int_equal(dmr_qmp_event_count(q), 3);
	assert_string_equal(dmr_qmp_last_event(q), "STOP");
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_split_reply(void **state)
{
	static const struct fake_step script[] = {
		SEND("{\"QMP\": {\"version\": {\"qemu\": "),
		SLEEP(30),
		SEND("{\"micro\": 0, \"minor\": 0, \"major\": 8}}, \"capabilities\": []}}\n"),
		EXPECT("\"qmp_capabilities\""),
		SEND(RET_OK),
		EXPECT("\"query-status\""),
		SEND("{\"return\": {\"sta"),
		SLEEP(30),
		SEND("tus\": \"running\", \"runn"),
		SLEEP(30),
		SEND("ing\": true}, \"id\": %ID%}"),
		SLEEP(30),
		SEND("\r\n"),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	char *status = NULL;
	bool running = false;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_query_status(q, &running, &status), 0);
	assert_true(running);
	assert_string_equal(status, "running");
	free(status);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_several_per_write(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		/* The reply, then an event in the same write: the event stays
		 * buffered for the next command's wait. */
		SEND(EV_RTC "{\"return\": {}, \"id\": %ID%}\n" EV_STOP),
		EXPECT("\"cont\""),
		SEND("{\"id\": %ID%, \"return\": {}}\n{\"event\": \"RESUME\"}\n"),
		EXPECT("\"system_reset\""),
		SEND("{\"event\": \"RESET\"}\n\n{\"return\": {}, \"id\": %ID%}\n"),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_stop(q), 0);
	assert_string_equal(dmr_qmp_last_event(q), "RTC_CHANGE");
	assert_int_equal(dmr_qmp_cont(q), 0);
	assert_string_equal(dmr_qmp_last_event(q), "STOP");
	assert_int_equal(dmr_qmp_system_reset(q), 0);
	assert_string_equal(dmr_qmp_last_event(q), "RESET");
	assert_int_equal(dmr_qmp_event_count(q), 4);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_error_reply(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"cont\""),
		SEND("{\"id\": %ID%, \"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual Machine is required\"}}\n"),
		EXPECT("\"stop\""),
		SEND(RET_OK),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_null(dmr_qmp_last_error(q));
	assert_int_equal(dmr_qmp_cont(q), -EIO);
	assert_string_equal(dmr_qmp_last_error(q), "Resetting the Virtual Machine is required");
	assert_string_equal(dmr_qmp_last_error_class(q), "GenericError");
	/* The handle is still good, and a success clears the error. */
	assert_int_equal(dmr_qmp_stop(q), 0);
	assert_null(dmr_qmp_last_error(q));
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_timeout(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		/* Events keep coming, but never the reply. */
		SEND(EV_RTC), SLEEP(100), SEND(EV_RTC), SLEEP(100), SEND(EV_RTC), SLEEP(100),
		SEND(EV_RTC), SLEEP(100), SEND(EV_RTC), SLEEP(100),
		HANG,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	struct timespec t0;
	long ms;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_qmp_execute(q, "stop", NULL, 300, NULL), -ETIMEDOUT);
	ms = fake_elapsed_ms(&t0);
	assert_true(ms >= 290);
	assert_true(ms < 800);
	dmr_qmp_free(q);
	fake_finish(&f, 1);
}

static void test_stale_reply_skipped(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		SLEEP(400),
		/* The late answer to stop: it must not pass for cont's. */
		SEND("{\"id\": %ID%, \"error\": {\"class\": \"GenericError\", \"desc\": \"late\"}}\n"),
		EXPECT("\"cont\""),
		SEND(RET_OK),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_execute(q, "stop", NULL, 150, NULL), -ETIMEDOUT);
	assert_int_equal(dmr_qmp_execute(q, "cont", NULL, 2000, NULL), 0);
	assert_null(dmr_qmp_last_error(q));
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_server_closes(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		CLOSE,
		END,
	};
	static const struct fake_step no_greeting[] = {
		CLOSE,
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_stop(q), -EHOSTUNREACH);
	/* Writing to the dead connection neither raises SIGPIPE nor hangs. */
	assert_int_equal(dmr_qmp_cont(q), -EHOSTUNREACH);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);

	q = NULL;
	fake_start(&f, no_greeting);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), -EHOSTUNREACH);
	assert_null(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_server_closes_after_send(void **state)
{
	/* The peer is gone before the command is even written. */
	static const struct fake_step script[] = {
		QMP_HELLO,
		CLOSE,
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(fake_finish(&f, 0), 0);
	assert_int_equal(dmr_qmp_stop(q), -EHOSTUNREACH);
	dmr_qmp_free(q);
}

static void test_absent_socket(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/dmr-qmp-XXXXXX", path[64];
	struct dmr_qmp *q = NULL;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(dmr_qmp_connect(path, 500, &q), -EHOSTUNREACH);

	/* A socket file nobody listens on any more (QEMU died). */
	snprintf(path, sizeof(path), "%s/dead", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(dmr_qmp_connect(path, 500, &q), -EHOSTUNREACH);

	/* A regular file where the socket should be. */
	unlink(path);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(dmr_qmp_connect(path, 500, &q), -EHOSTUNREACH);
	assert_null(q);
	unlink(path);
	rmdir(dir);
}

static void test_no_greeting_times_out(void **state)
{
	/* Like QEMU's monitor while another client holds it. */
	static const struct fake_step script[] = {
		HANG,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	struct timespec t0;

	fake_start(&f, script);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_qmp_connect(f.path, 200, &q), -ETIMEDOUT);
	assert_true(fake_elapsed_ms(&t0) < 700);
	assert_null(q);
	fake_finish(&f, 1);
}

static void test_oversized_line(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"query-status\""),
		BIG(DMR_JSONL_MAX_LINE + 10),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	bool running;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_query_status(q, &running, NULL), -EPROTO);
	/* The stream is out of step for good. */
	assert_int_equal(dmr_qmp_stop(q), -EHOSTUNREACH);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_garbage_and_bad_greeting(void **state)
{
	static const struct fake_step garbage[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		SEND("this is not JSON\n"),
		END,
	};
	static const struct fake_step not_qmp[] = {
		SEND("{\"return\": {}}\n"),
		END,
	};
	static const struct fake_step neither[] = {
		QMP_HELLO,
		EXPECT("\"stop\""),
		SEND("{\"id\": %ID%}\n"),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;

	fake_start(&f, garbage);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_stop(q), -EPROTO);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);

	q = NULL;
	fake_start(&f, not_qmp);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), -EPROTO);
	assert_int_equal(fake_finish(&f, 0), 0);

	fake_start(&f, neither);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_stop(q), -EPROTO);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_hmp_and_arguments(void **state)
{
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info version\"},\"id\":2}"),
		SEND("{\"return\": \"7.2.22 (Debian)\\r\\n\", \"id\": %ID%}\n"),
		EXPECT("\"human-monitor-command\""),
		SEND("{\"return\": {}, \"id\": %ID%}\n"),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	char *out = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_hmp(q, "info version", &out), 0);
	assert_string_equal(out, "7.2.22 (Debian)\r\n");
	free(out);
	out = NULL;
	/* A return that is not text is a protocol error for HMP. */
	assert_int_equal(dmr_qmp_hmp(q, "info status", &out), -EPROTO);
	assert_null(out);
	assert_int_equal(dmr_qmp_execute(q, "bad\"name", NULL, 100, NULL), -EINVAL);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_large_reply(void **state)
{
	/* Just under the limit: the buffer grows, the line is taken whole. */
	static const struct fake_step script[] = {
		QMP_HELLO,
		EXPECT("\"human-monitor-command\""),
		BIGRET(DMR_JSONL_MAX_LINE - 64),
		EXPECT("\"stop\""),
		SEND(RET_OK),
		END,
	};
	struct fake f;
	struct dmr_qmp *q = NULL;
	char *out = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qmp_connect(f.path, 2000, &q), 0);
	assert_int_equal(dmr_qmp_hmp(q, "info mtree", &out), 0);
	assert_int_equal(strlen(out), DMR_JSONL_MAX_LINE - 64);
	free(out);
	assert_int_equal(dmr_qmp_stop(q), 0);
	dmr_qmp_free(q);
	assert_int_equal(fake_finish(&f, 0), 0);
}

/* The command-name rule QMP and the guest agent share (guest/qmp.c). */
static void test_qapi_name(void **state)
{
	(void)state;
	assert_true(dmr_qapi_name_valid("query-status"));
	assert_true(dmr_qapi_name_valid("qmp_capabilities"));
	assert_true(dmr_qapi_name_valid("guest-fsfreeze-freeze"));
	assert_true(dmr_qapi_name_valid("x"));
	assert_false(dmr_qapi_name_valid(NULL));
	assert_false(dmr_qapi_name_valid(""));
	assert_false(dmr_qapi_name_valid("guest ping"));
	assert_false(dmr_qapi_name_valid("bad\"name"));
	assert_false(dmr_qapi_name_valid("a.b"));
	assert_false(dmr_qapi_name_valid("stop\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_negotiation_and_status),
		cmocka_unit_test(test_qapi_name),
		cmocka_unit_test(test_events_skipped),
		cmocka_unit_test(test_split_reply),
		cmocka_unit_test(test_several_per_write),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_stale_reply_skipped),
		cmocka_unit_test(test_server_closes),
		cmocka_unit_test(test_server_closes_after_send),
		cmocka_unit_test(test_absent_socket),
		cmocka_unit_test(test_no_greeting_times_out),
		cmocka_unit_test(test_oversized_line),
		cmocka_unit_test(test_garbage_and_bad_greeting),
		cmocka_unit_test(test_hmp_and_arguments),
		cmocka_unit_test(test_large_reply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
