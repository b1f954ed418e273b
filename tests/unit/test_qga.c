/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the qemu-guest-agent client against scripted fake agents -
 * guest-sync-delimited through garbage, stale replies of timed-out
 * commands and syncs, fsfreeze freeze/thaw/status, error replies,
 * timeouts, absent and silent agents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/guest/qga.h"
#include "common/util.h"
#include "tests/unit/fake_server.h"

#define SYNC EXPECT("\"guest-sync-delimited\"")
#define SYNC_REPLY SEND("\xff{\"return\": %ID%}\n")

static void test_sync_through_garbage(void **state)
{
	static const struct fake_step script[] = {
		SYNC,
		/* What a previous client left behind: half a reply, a whole
		 * one, noise; then the sentinel and the answer. */
		SEND("{\"return\": 17}\n{\"retu"),
		SLEEP(20),
		SEND("rn\": {}, garbage\n\x01\x02 more"),
		SLEEP(20),
		SEND("\xff{\"return\": %ID%}\n"),
		EXPECT("{\"execute\":\"guest-ping\"}"),
		SEND("{\"return\": {}}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_ping(g, 1000), 0);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_sync_sends_reset_byte(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct dmr_qga *g = NULL;
	char dir[] = "/tmp/dmr-qga-XXXXXX", buf[256];
	int l, c;
	ssize_t n;
	pid_t pid;

	/* The 0xFF must come first, before the command, on the wire. */
	assert_non_null(mkdtemp(dir));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s", dir);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		_exit(dmr_qga_connect(sa.sun_path, 300, &g) == -ETIMEDOUT ? 0 : 1);
	}
	c = accept(l, NULL, NULL);
	n = read(c, buf, sizeof(buf) - 1);
	assert_true(n > 1);
	buf[n] = '\0';
	assert_int_equal((unsigned char)buf[0], 0xff);
	assert_non_null(strstr(buf + 1, "{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":"));
	assert_int_equal(waitpid(pid, &c, 0), pid);
	assert_true(WIFEXITED(c) && WEXITSTATUS(c) == 0);
	close(l);
	unlink(sa.sun_path);
	rmdir(dir);
}

static void test_freeze_thaw_status(void **state)
{
	static const struct fake_step script[] = {
		SYNC, SYNC_REPLY,
		EXPECT("{\"execute\":\"guest-fsfreeze-status\"}"),
		SEND("{\"return\": \"thawed\"}\n"),
		EXPECT("{\"execute\":\"guest-fsfreeze-freeze\"}"),
		SEND("{\"return\": 3}\n"),
		EXPECT("\"guest-fsfreeze-status\""),
		SEND("{\"return\": \"frozen\"}\r\n"),
		EXPECT("{\"execute\":\"guest-fsfreeze-thaw\"}"),
		SEND("{\"return\": 3}\n"),
		EXPECT("\"guest-fsfreeze-status\""),
		SEND("{\"return\": \"melting\"}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;
	bool frozen = true;
	int n = 0;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_fsfreeze_status(g, 1000, &frozen), 0);
	assert_false(frozen);
	assert_int_equal(dmr_qga_fsfreeze_freeze(g, 1000, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(dmr_qga_fsfreeze_status(g, 1000, &frozen), 0);
	assert_true(frozen);
	n = 0;
	assert_int_equal(dmr_qga_fsfreeze_thaw(g, 1000, &n), 0);
	assert_int_equal(n, 3);
	frozen = true;
	assert_int_equal(dmr_qga_fsfreeze_status(g, 1000, &frozen), -EPROTO);
	assert_true(frozen); /* untouched on failure */
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_error_reply(void **state)
{
	static const struct fake_step script[] = {
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-fsfreeze-freeze\""),
		SEND("{\"error\": {\"class\": \"GenericError\", \"desc\": \"Command guest-fsfreeze-freeze has been disabled\"}}\n"),
		/* No resync needed after an error reply: it was in step. */
		EXPECT("\"guest-ping\""),
		SEND("{\"return\": {}}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;
	int n = -1;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_fsfreeze_freeze(g, 1000, &n), -EIO);
	assert_int_equal(n, -1);
	assert_string_equal(dmr_qga_last_error(g), "Command guest-fsfreeze-freeze has been disabled");
	assert_int_equal(dmr_qga_ping(g, 1000), 0);
	assert_null(dmr_qga_last_error(g));
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_stale_reply_after_timeout(void **state)
{
	static const struct fake_step script[] = {
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-fsfreeze-freeze\""),
		SLEEP(400),
		/* The freeze's answer, after the client gave up on it. */
		SEND("{\"return\": \"thawed\"}\n"),
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-fsfreeze-status\""),
		SEND("{\"return\": \"frozen\"}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;
	struct timespec t0;
	bool frozen = false;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_qga_fsfreeze_freeze(g, 150, NULL), -ETIMEDOUT);
	assert_true(fake_elapsed_ms(&t0) < 600);
	/* This call resyncs first: the late reply must not be taken for
	 * the status (it says "thawed"). */
	assert_int_equal(dmr_qga_fsfreeze_status(g, 2000, &frozen), 0);
	assert_true(frozen);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_sync_timeout_then_resync(void **state)
{
	static const struct fake_step script[] = {
		SYNC,
		SLEEP(400),
		/* The answer to the abandoned sync, with its own id, then a
		 * doubled sentinel before the answer to the new one. */
		SYNC_REPLY,
		SYNC,
		SEND("\xff\xff{\"return\": %ID%}\n"),
		EXPECT("\"guest-ping\""),
		SEND("{\"return\": {}}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 150, &g), -ETIMEDOUT);
	assert_null(g);
	assert_int_equal(fake_finish(&f, 1), 0);

	/* The same, on one handle: connect in step, then a sync that times
	 * out, then one that has to skip the first one's late answer. */
	{
		static const struct fake_step script2[] = {
			SYNC, SYNC_REPLY,
			SYNC, SLEEP(400), SYNC_REPLY,
			SYNC, SEND("\xff\xff{\"return\": %ID%}\n"),
			EXPECT("\"guest-ping\""),
			SEND("{\"return\": {}}\n"),
			END,
		};

		fake_start(&f, script2);
		assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
		assert_int_equal(dmr_qga_sync(g, 150), -ETIMEDOUT);
		/* ping resyncs by itself. */
		assert_int_equal(dmr_qga_ping(g, 2000), 0);
		dmr_qga_free(g);
		assert_int_equal(fake_finish(&f, 0), 0);
	}
}

static void test_garbled_reply_resyncs(void **state)
{
	static const struct fake_step script[] = {
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-ping\""),
		SEND("}}not json\n"),
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-ping\""),
		SEND("{\"return\": {}}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_ping(g, 1000), -EPROTO);
	assert_int_equal(dmr_qga_ping(g, 1000), 0);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_unreachable(void **state)
{
	static const struct fake_step silent[] = {
		HANG,
	};
	static const struct fake_step closes[] = {
		SYNC, SYNC_REPLY,
		EXPECT("\"guest-ping\""),
		CLOSE,
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;
	struct timespec t0;

	assert_int_equal(dmr_qga_connect("/nonexistent/dmr/qga.sock", 500, &g), -EHOSTUNREACH);

	/* A virtio-serial chardev with no agent behind it, or qemu-ga
	 * busy with another client: the connect works, nothing answers. */
	fake_start(&f, silent);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmr_qga_connect(f.path, 200, &g), -ETIMEDOUT);
	assert_true(fake_elapsed_ms(&t0) < 700);
	fake_finish(&f, 1);

	fake_start(&f, closes);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	assert_int_equal(dmr_qga_ping(g, 1000), -EHOSTUNREACH);
	assert_int_equal(dmr_qga_ping(g, 1000), -EHOSTUNREACH);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

static void test_arguments(void **state)
{
	static const struct fake_step script[] = {
		SYNC, SYNC_REPLY,
		EXPECT("{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":{\"mountpoints\":[\"/mnt/data\"]}}"),
		SEND("{\"return\": 1}\n"),
		END,
	};
	struct fake f;
	struct dmr_qga *g = NULL;
	struct json_object *args, *list, *ret = NULL;

	fake_start(&f, script);
	assert_int_equal(dmr_qga_connect(f.path, 2000, &g), 0);
	args = json_object_new_object();
	list = json_object_new_array();
	json_object_array_add(list, json_object_new_string("/mnt/data"));
	json_object_object_add(args, "mountpoints", list);
	assert_int_equal(dmr_qga_execute(g, "guest-fsfreeze-freeze-list", args, 1000, &ret), 0);
	assert_int_equal(json_object_get_int(ret), 1);
	json_object_put(ret);
	json_object_put(args);
	assert_int_equal(dmr_qga_execute(g, "guest ping", NULL, 1000, NULL), -EINVAL);
	dmr_qga_free(g);
	assert_int_equal(fake_finish(&f, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync_through_garbage),
		cmocka_unit_test(test_sync_sends_reset_byte),
		cmocka_unit_test(test_freeze_thaw_status),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_stale_reply_after_timeout),
		cmocka_unit_test(test_sync_timeout_then_resync),
		cmocka_unit_test(test_garbled_reply_resyncs),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
