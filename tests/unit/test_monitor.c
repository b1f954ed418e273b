/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: what the space monitor says of the pool (agent/engine/monitor.h),
 * fed literal kernel status lines: a warning once at 80 % data or
 * metadata use, again only after use fell below 75 %; a line when the pool
 * leaves read-write mode and when it comes back, none for a healthy pool
 * at start; an empty pool divides by nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/engine/monitor.h"
#include "dm/status.h"

/* feed: parse a thin-pool status line and fold it in. */
static unsigned feed(struct dmr_pool_watch *w, const char *line, unsigned *dp, unsigned *mp)
{
	struct dmr_thin_pool_status st;

	assert_int_equal(dmr_status_parse_thin_pool(line, &st), 0);
	return dmr_pool_watch_update(w, &st, dp, mp);
}

#define RW(meta, data) "7 " meta " " data " - rw no_discard_passdown error_if_no_space - 1024"

static void test_data_mark_and_rearm(void **state)
{
	struct dmr_pool_watch w;
	unsigned dp, mp;

	(void)state;
	dmr_pool_watch_init(&w);
	assert_int_equal(feed(&w, RW("10/1000", "100/1000"), &dp, &mp), 0);
	assert_int_equal(dp, 10);
	assert_int_equal(mp, 1);
	assert_int_equal(feed(&w, RW("10/1000", "799/1000"), &dp, &mp), 0);
	assert_int_equal(dp, 79);
	assert_int_equal(feed(&w, RW("10/1000", "800/1000"), &dp, &mp), DMR_WATCH_DATA_HIGH);
	assert_int_equal(dp, 80);
	/* Said once: higher or hovering stays quiet. */
	assert_int_equal(feed(&w, RW("10/1000", "950/1000"), &dp, &mp), 0);
	assert_int_equal(feed(&w, RW("10/1000", "760/1000"), &dp, &mp), 0);
	assert_int_equal(feed(&w, RW("10/1000", "810/1000"), &dp, &mp), 0);
	/* Below 75 % re-arms it. */
	assert_int_equal(feed(&w, RW("10/1000", "749/1000"), &dp, &mp), 0);
	assert_int_equal(feed(&w, RW("10/1000", "820/1000"), &dp, &mp), DMR_WATCH_DATA_HIGH);
}

static void test_meta_independent(void **state)
{
	struct dmr_pool_watch w;
	unsigned dp, mp;

	(void)state;
	dmr_pool_watch_init(&w);
	assert_int_equal(feed(&w, RW("3300/4096", "1/16384"), &dp, &mp), DMR_WATCH_META_HIGH);
	assert_int_equal(mp, 80);
	assert_int_equal(feed(&w, RW("3300/4096", "16000/16384"), &dp, &mp), DMR_WATCH_DATA_HIGH);
	assert_int_equal(feed(&w, RW("4000/4096", "16000/16384"), &dp, &mp), 0);
}

static void test_mode_changes(void **state)
{
	struct dmr_pool_watch w;
	unsigned dp, mp;

	(void)state;
	dmr_pool_watch_init(&w);
	assert_int_equal(feed(&w, RW("10/512", "10/100"), &dp, &mp), 0);
	assert_int_equal(w.mode, 0);
	assert_int_equal(feed(&w, "8 10/512 100/100 - out_of_data_space no_discard_passdown "
				  "error_if_no_space - 8", &dp, &mp),
			 DMR_WATCH_DATA_HIGH | DMR_WATCH_MODE);
	assert_int_equal(w.mode, 1);
	assert_int_equal(feed(&w, "8 10/512 100/100 - out_of_data_space no_discard_passdown "
				  "error_if_no_space - 8", &dp, &mp), 0);
	assert_int_equal(feed(&w, "8 10/512 100/100 - ro no_discard_passdown error_if_no_space "
				  "needs_check 8", &dp, &mp), DMR_WATCH_MODE);
	assert_int_equal(w.mode, 2);
	assert_int_equal(feed(&w, "Fail", &dp, &mp), DMR_WATCH_MODE);
	assert_int_equal(w.mode, 3);
	assert_int_equal(dp, 0); /* a failed pool reports no use */
	assert_int_equal(feed(&w, RW("10/512", "10/100"), &dp, &mp), DMR_WATCH_MODE);
	assert_int_equal(w.mode, 0);
	assert_string_equal(dmr_pool_watch_mode_name(0), "read-write");
}

static void test_first_reading(void **state)
{
	struct dmr_pool_watch w;
	unsigned dp, mp;

	(void)state;
	/* A pool already in trouble when the agent starts is reported. */
	dmr_pool_watch_init(&w);
	assert_int_equal(feed(&w, "0 10/512 0/100 42 ro discard_passdown queue_if_no_space needs_check",
			      &dp, &mp), DMR_WATCH_MODE);
	/* An empty status (no blocks) divides by nothing. */
	dmr_pool_watch_init(&w);
	assert_int_equal(feed(&w, RW("0/0", "0/0"), &dp, &mp), 0);
	assert_int_equal(dp, 0);
	assert_int_equal(mp, 0);
}

/* The filesystem under the pool's files: a warning once free space is
 * less than the files may still grow by, once; room again (with a 1/16
 * margin) says so, once; allocated files (no growth) never warn. */
static void test_fs_watch(void **state)
{
	struct dmr_fs_watch w = { 0 };
	const uint64_t M = 1u << 20;

	(void)state;
	assert_int_equal(dmr_fs_watch_update(&w, 10 * M, 0), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 0, 0), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 200 * M, 128 * M), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 50 * M, 128 * M), DMR_WATCH_FS_LOW);
	assert_int_equal(dmr_fs_watch_update(&w, 40 * M, 118 * M), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 1 * M, 2 * M), 0);
	/* At the mark but inside the margin: still quiet. */
	assert_int_equal(dmr_fs_watch_update(&w, 128 * M, 128 * M), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 136 * M, 128 * M), DMR_WATCH_FS_OK);
	assert_int_equal(dmr_fs_watch_update(&w, 500 * M, 128 * M), 0);
	assert_int_equal(dmr_fs_watch_update(&w, 127 * M, 128 * M), DMR_WATCH_FS_LOW);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_data_mark_and_rearm),
		cmocka_unit_test(test_meta_independent),
		cmocka_unit_test(test_mode_changes),
		cmocka_unit_test(test_first_reading),
		cmocka_unit_test(test_fs_watch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
