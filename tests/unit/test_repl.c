/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: continuous replication's health, lag and state file object
 * (agent/store/repl.c), and the cycle's pure parts: the receiver's answer
 * read from COMMAND's stdout, the timeout (agent/engine/replicate.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engine/replicate.h"
#include "agent/store/repl.h"
#include "common/rc.h"

#define SEC 1000000ull
#define T0 (1800000000ull * SEC)
#define UUID_A "0b6f6c1e-3a51-4c1b-9a8e-1f2d3c4b5a69"
#define UUID_B "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"

static void set_on(struct dmr_repl *r)
{
	memset(r, 0, sizeof(*r));
	r->to = strdup("ssh b dmrep --json point receive web");
	r->interval_sec = 30;
	r->set_usec = T0;
}

static void acked(struct dmr_repl *r, uint64_t created, uint64_t at)
{
	strcpy(r->acked_uuid, UUID_A);
	r->acked_usec = created;
	r->last_success_usec = at;
	r->failures = 0;
}

static void test_health_off_ok_paused(void **state)
{
	struct dmr_repl r = { 0 };

	(void)state;
	assert_int_equal(dmr_repl_health(&r, T0), DMR_REPL_OFF);
	set_on(&r);
	/* Just set, nothing sent yet: not late until two intervals pass. */
	assert_int_equal(dmr_repl_health(&r, T0 + 10 * SEC), DMR_REPL_OK);
	assert_int_equal(dmr_repl_health(&r, T0 + 60 * SEC), DMR_REPL_OK);
	assert_int_equal(dmr_repl_health(&r, T0 + 61 * SEC), DMR_REPL_WARNING);
	r.paused = true;
	assert_int_equal(dmr_repl_health(&r, T0 + 1000 * SEC), DMR_REPL_PAUSED);
	assert_string_equal(dmr_repl_health_name(DMR_REPL_PAUSED), "paused");
	assert_string_equal(dmr_repl_health_name(DMR_REPL_RESYNC_REQUIRED), "resync-required");
	dmr_repl_clear(&r);
	assert_null(r.to);
}

/* ok -> warning (one failure) -> critical (three) -> ok (a success). */
static void test_health_failures(void **state)
{
	struct dmr_repl r;
	uint64_t now = T0 + 40 * SEC;

	(void)state;
	set_on(&r);
	acked(&r, T0 + 30 * SEC, T0 + 35 * SEC);
	assert_int_equal(dmr_repl_health(&r, now), DMR_REPL_OK);
	r.failures = 1;
	assert_int_equal(dmr_repl_health(&r, now), DMR_REPL_WARNING);
	r.failures = 2;
	assert_int_equal(dmr_repl_health(&r, now), DMR_REPL_WARNING);
	r.failures = DMR_REPL_CRITICAL_FAILURES;
	assert_int_equal(dmr_repl_health(&r, now), DMR_REPL_CRITICAL);
	acked(&r, now, now + SEC);
	assert_int_equal(dmr_repl_health(&r, now + 2 * SEC), DMR_REPL_OK);
	/* A refusal for good: critical at once, whatever the count. */
	r.refused = true;
	r.failures = 1;
	assert_int_equal(dmr_repl_health(&r, now + 2 * SEC), DMR_REPL_CRITICAL);
	/* No common point: resync-required before anything else but pause. */
	r.resync_required = true;
	assert_int_equal(dmr_repl_health(&r, now + 2 * SEC), DMR_REPL_RESYNC_REQUIRED);
	r.paused = true;
	assert_int_equal(dmr_repl_health(&r, now + 2 * SEC), DMR_REPL_PAUSED);
	dmr_repl_clear(&r);
}

/* Late, then lag: warning past two intervals without a success, critical
 * once the newest acknowledged point is older than three. */
static void test_health_lag(void **state)
{
	struct dmr_repl r;

	(void)state;
	set_on(&r);
	assert_int_equal(dmr_repl_lag_sec(&r, T0), -1);
	acked(&r, T0 + 100 * SEC, T0 + 110 * SEC);
	assert_int_equal(dmr_repl_lag_sec(&r, T0 + 145 * SEC), 45);
	/* A clock that went back: no negative lag. */
	assert_int_equal(dmr_repl_lag_sec(&r, T0), 0);
	assert_int_equal(dmr_repl_health(&r, T0 + 170 * SEC), DMR_REPL_OK);
	assert_int_equal(dmr_repl_health(&r, T0 + 171 * SEC), DMR_REPL_WARNING); /* 61 s since */
	assert_int_equal(dmr_repl_health(&r, T0 + 190 * SEC), DMR_REPL_WARNING); /* lag 90 */
	assert_int_equal(dmr_repl_health(&r, T0 + 191 * SEC), DMR_REPL_CRITICAL); /* lag 91 */
	dmr_repl_clear(&r);
}

static void test_interrupted(void **state)
{
	struct dmr_repl r;

	(void)state;
	set_on(&r);
	acked(&r, T0, T0);
	assert_false(dmr_repl_interrupted(&r));
	r.cycle_running = true;
	assert_true(dmr_repl_interrupted(&r));
	assert_false(r.cycle_running);
	assert_int_equal(r.failures, 1);
	assert_non_null(strstr(r.last_error, "interrupted"));
	assert_int_equal(dmr_repl_health(&r, T0 + SEC), DMR_REPL_WARNING);
	assert_false(dmr_repl_interrupted(&r));
	dmr_repl_clear(&r);
}

static void test_state_round_trip(void **state)
{
	struct dmr_repl r, back = { 0 };
	struct json_object *o;
	const char *field = NULL;

	(void)state;
	set_on(&r);
	acked(&r, T0 + 1, T0 + 2);
	r.application = true;
	r.zstd = true;
	r.bandwidth = 262144;
	r.last_attempt_usec = T0 + 3;
	r.bytes_sent = 123456789;
	r.failures = 2;
	r.refused = true;
	r.cycle_running = true;
	strcpy(r.sent_uuid, UUID_B);
	r.last_error = strdup("the receiver refused (32775): no");
	o = dmr_repl_state_json(&r);
	assert_int_equal(dmr_repl_state_parse(o, &back, &field), 0);
	assert_string_equal(back.to, r.to);
	assert_int_equal(back.interval_sec, 30);
	assert_true(back.application && back.zstd && back.refused && back.cycle_running);
	assert_false(back.paused || back.resync_required);
	assert_int_equal(back.bandwidth, 262144);
	assert_string_equal(back.acked_uuid, UUID_A);
	assert_string_equal(back.sent_uuid, UUID_B);
	assert_int_equal(back.acked_usec, T0 + 1);
	assert_int_equal(back.last_success_usec, T0 + 2);
	assert_int_equal(back.last_attempt_usec, T0 + 3);
	assert_int_equal(back.set_usec, T0);
	assert_int_equal(back.bytes_sent, 123456789);
	assert_int_equal(back.failures, 2);
	assert_string_equal(back.last_error, r.last_error);
	json_object_put(o);

	/* Off: to and last_error null, and a file from before cycle_running. */
	dmr_repl_clear(&r);
	o = dmr_repl_state_json(&r);
	json_object_object_del(o, "cycle_running");
	json_object_object_del(o, "sent_uuid");
	assert_int_equal(dmr_repl_state_parse(o, &back, &field), 0);
	assert_null(back.to);
	assert_null(back.last_error);
	assert_false(back.cycle_running);
	assert_string_equal(back.sent_uuid, "");
	assert_int_equal(dmr_repl_health(&back, T0), DMR_REPL_OFF);
	json_object_put(o);
	dmr_repl_clear(&back);
}

/* Each field of the wrong type or out of bounds is refused, by name, and
 * the struct is left as it was. */
static void test_state_refusals(void **state)
{
	static const struct {
		const char *key, *json, *field;
	} bad[] = {
		{ "to", "\"ssh b x\\nrm -rf /\"", "to" },
		{ "to", "42", "to" },
		{ "interval_sec", "29", "interval_sec" },
		{ "interval_sec", "86401", "interval_sec" },
		{ "interval_sec", "\"30\"", "interval_sec" },
		{ "bandwidth", "-1", "bandwidth" },
		{ "paused", "1", "paused" },
		{ "acked_uuid", "\"not-a-uuid\"", "acked_uuid" },
		{ "acked_uuid", "null", "acked_uuid" },
		{ "bytes_sent", "-5", "bytes_sent" },
		{ "failures", "4294967296", "failures" },
		{ "refused", "\"yes\"", "refused" },
		{ "cycle_running", "0", "cycle_running" },
		{ "sent_uuid", "\"../../etc\"", "sent_uuid" },
		{ "sent_uuid", "7", "sent_uuid" },
	};
	struct dmr_repl r, keep;
	char longerr[DMR_REPL_ERROR_MAX + 8];

	(void)state;
	set_on(&r);
	acked(&r, T0, T0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_object *o = dmr_repl_state_json(&r);
		const char *field = NULL;

		set_on(&keep);
		json_object_object_add(o, bad[i].key, json_tokener_parse(bad[i].json));
		assert_int_equal(dmr_repl_state_parse(o, &keep, &field), -EBADMSG);
		assert_non_null(field);
		assert_string_equal(field, bad[i].field);
		assert_string_equal(keep.to, "ssh b dmrep --json point receive web");
		json_object_put(o);
		dmr_repl_clear(&keep);
	}
	{
		struct json_object *o = dmr_repl_state_json(&r);
		const char *field = NULL;

		memset(longerr, 'e', sizeof(longerr) - 1);
		longerr[sizeof(longerr) - 1] = '\0';
		json_object_object_add(o, "last_error", json_object_new_string(longerr));
		memset(&keep, 0, sizeof(keep));
		assert_int_equal(dmr_repl_state_parse(o, &keep, &field), -EBADMSG);
		assert_string_equal(field, "last_error");
		json_object_object_del(o, "failures");
		assert_int_equal(dmr_repl_state_parse(o, &keep, &field), -EBADMSG);
		json_object_put(o);
		o = json_object_new_array();
		assert_int_equal(dmr_repl_state_parse(o, &keep, &field), -EBADMSG);
		json_object_put(o);
	}
	assert_int_equal(dmr_repl_to_valid("ssh b dmrep --json point receive web"), 0);
	assert_int_equal(dmr_repl_to_valid(""), -EINVAL);
	assert_int_equal(dmr_repl_to_valid("a\tb"), -EINVAL);
	assert_int_equal(dmr_repl_interval_valid(30), 0);
	assert_int_equal(dmr_repl_interval_valid(29), -EINVAL);
	dmr_repl_clear(&r);
}

/* What `dmrep --json point receive` prints, as the cycle reads it. */
static void test_ack(void **state)
{
	char *why = NULL;
	int rc = -1;
	const char *ok = "{\"return\": 0, \"point\": 4, \"uuid\": \"" UUID_A "\"}\n";
	const char *l;
	size_t n;

	(void)state;
	assert_int_equal(dmr_replicate_ack_check(ok, strlen(ok), UUID_A, &rc, &why), 0);
	assert_int_equal(rc, 0);
	/* Whatever came before, and blank lines after. */
	{
		const char *s = "Warning: Permanently added 'b'\n{\"return\": 0, \"uuid\": \"" UUID_A
				"\"}\n\n  \n";

		assert_int_equal(dmr_replicate_ack_check(s, strlen(s), UUID_A, &rc, &why), 0);
	}
	/* Another uuid: not this point's acknowledgement. */
	assert_int_equal(dmr_replicate_ack_check(ok, strlen(ok), UUID_B, &rc, &why), -EBADMSG);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(why, UUID_B));
	free(why);
	why = NULL;
	/* The receiver's refusal: its code and its line. */
	{
		const char *s = "{\"return\": 32775, \"error\": \"the stream's base is not the replica's "
				"latest point\"}\n";

		assert_int_equal(dmr_replicate_ack_check(s, strlen(s), UUID_A, &rc, &why), -EBADMSG);
		assert_int_equal(rc, DMR_RC_INVALID_STATE);
		assert_non_null(strstr(why, "32775"));
		assert_non_null(strstr(why, "not the replica's latest point"));
		free(why);
		why = NULL;
	}
	/* An earlier good answer does not count: only the last line. */
	{
		const char *s = "{\"return\": 0, \"uuid\": \"" UUID_A "\"}\ngarbage\n";

		assert_int_equal(dmr_replicate_ack_check(s, strlen(s), UUID_A, &rc, &why), -EBADMSG);
		free(why);
		why = NULL;
	}
	/* Nothing, not JSON, no return, return 0 without a uuid, a string. */
	{
		const char *cases[] = { "", "\n\n", "ok\n", "{\"point\": 3}\n", "{\"return\": 0}\n",
					"{\"return\": \"0\", \"uuid\": \"" UUID_A "\"}\n",
					"[0]\n", "{\"return\": 0, \"uuid\": \"" UUID_A "\"} x\n" };

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			rc = -1;
			assert_int_equal(dmr_replicate_ack_check(cases[i], strlen(cases[i]), UUID_A,
								 &rc, &why), -EBADMSG);
			assert_int_equal(rc, 0);
			assert_non_null(why);
			free(why);
			why = NULL;
		}
	}
	/* A NUL in the line is not JSON text. */
	{
		const char s[] = "{\"return\": 0, \"uuid\": \"" UUID_A "\"\0}\n";

		assert_int_equal(dmr_replicate_ack_check(s, sizeof(s) - 1, UUID_A, &rc, &why), -EBADMSG);
		free(why);
		why = NULL;
	}
	l = dmr_replicate_last_line("a\nbc\r\n", 6, &n);
	assert_non_null(l);
	assert_int_equal(n, 2);
	assert_memory_equal(l, "bc", 2);
	assert_null(dmr_replicate_last_line(" \n", 2, &n));
}

static void test_timeout(void **state)
{
	(void)state;
	assert_int_equal(dmr_replicate_timeout_sec(30), DMR_REPLICATE_TIMEOUT_MIN_SEC);
	assert_int_equal(dmr_replicate_timeout_sec(60), 600);
	assert_int_equal(dmr_replicate_timeout_sec(300), 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_off_ok_paused),
		cmocka_unit_test(test_health_failures),
		cmocka_unit_test(test_health_lag),
		cmocka_unit_test(test_interrupted),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_refusals),
		cmocka_unit_test(test_ack),
		cmocka_unit_test(test_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
