/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dm/status.c on literal status lines and malformed ones.  The "lab:" lines
 * were printed by `dmsetup status` in the lab (Debian kernel 6.1): a pool
 * of 64 KiB blocks after 3 blocks written to a thin volume, and a classic
 * snapshot with 16-sector chunks before and after one 64 KiB write. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "dm/status.h"

static void test_thin_pool_ok(void **state)
{
	struct dmr_thin_pool_status st;

	(void)state;
	/* lab: */
	assert_int_equal(dmr_status_parse_thin_pool(
				 "0 214/2048 3/1024 - rw discard_passdown error_if_no_space - 512 ", &st), 0);
	assert_int_equal(st.used_meta_blocks, 214);
	assert_int_equal(st.total_meta_blocks, 2048);
	assert_int_equal(st.used_data_blocks, 3);
	assert_int_equal(st.total_data_blocks, 1024);
	assert_true(st.discard_passdown);
	assert_int_equal(st.metadata_low_watermark, 512);
	assert_int_equal(dmr_status_parse_thin_pool(
				 "7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1024",
				 &st), 0);
	assert_false(st.fail);
	assert_int_equal(st.transaction_id, 7);
	assert_int_equal(st.used_meta_blocks, 287);
	assert_int_equal(st.total_meta_blocks, 4096);
	assert_int_equal(st.used_data_blocks, 1543);
	assert_int_equal(st.total_data_blocks, 16384);
	assert_false(st.has_held_root);
	assert_false(st.read_only);
	assert_false(st.out_of_data_space);
	assert_false(st.discard_passdown);
	assert_int_equal(st.no_space, DMR_NO_SPACE_ERROR);
	assert_false(st.needs_check);
	assert_int_equal(st.metadata_low_watermark, 1024);
}

static void test_thin_pool_variants(void **state)
{
	struct dmr_thin_pool_status st;

	(void)state;
	/* Older kernels: no low watermark; a held root; queueing; ro. */
	assert_int_equal(dmr_status_parse_thin_pool(
				 "0 10/512 0/100 42 ro discard_passdown queue_if_no_space needs_check", &st), 0);
	assert_true(st.has_held_root);
	assert_int_equal(st.held_root, 42);
	assert_true(st.read_only);
	assert_true(st.discard_passdown);
	assert_int_equal(st.no_space, DMR_NO_SPACE_QUEUE);
	assert_true(st.needs_check);
	assert_int_equal(st.metadata_low_watermark, 0);
	assert_int_equal(dmr_status_parse_thin_pool(
				 "3 10/512 100/100 - out_of_data_space no_discard_passdown error_if_no_space - 8",
				 &st), 0);
	assert_true(st.out_of_data_space);
	assert_int_equal(dmr_status_parse_thin_pool("Fail", &st), 0);
	assert_true(st.fail);
}

static void test_thin_pool_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"Fail extra",
		"7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space",      /* short */
		"7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1 2", /* long */
		"x 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1",
		"7 287-4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1",
		"7 287/4096 1543/ - rw no_discard_passdown error_if_no_space - 1",
		"7 5000/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1",   /* used > total */
		"7 287/4096 1543/16384 - rx no_discard_passdown error_if_no_space - 1",
		"7 287/4096 1543/16384 - rw passdown error_if_no_space - 1",
		"7 287/4096 1543/16384 - rw no_discard_passdown maybe - 1",
		"7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space + 1",
		"-7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1",
		"99999999999999999999 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1",
		NULL,
	};
	struct dmr_thin_pool_status st = { .transaction_id = 12345 };

	(void)state;
	for (size_t i = 0; bad[i]; i++) {
		assert_int_equal(dmr_status_parse_thin_pool(bad[i], &st), -EINVAL);
		assert_int_equal(st.transaction_id, 12345); /* untouched */
	}
	assert_int_equal(dmr_status_parse_thin_pool(NULL, &st), -EINVAL);
}

/* Health from literal lines as dm-thin's pool_status() prints them. */
static void test_thin_pool_health(void **state)
{
	static const struct {
		const char *line;
		enum dmr_pool_health h;
		const char *name;
	} cases[] = {
		{ "7 287/4096 1543/16384 - rw no_discard_passdown error_if_no_space - 1024",
		  DMR_POOL_OK, "ok" },
		{ "Fail", DMR_POOL_FAIL, "fail" },
		{ "Error", DMR_POOL_FAIL, "fail" },
		{ "7 287/4096 1543/16384 - ro no_discard_passdown error_if_no_space needs_check 1024",
		  DMR_POOL_NEEDS_CHECK, "needs_check" },
		{ "7 287/4096 1543/16384 - rw discard_passdown queue_if_no_space needs_check",
		  DMR_POOL_NEEDS_CHECK, "needs_check" },
		{ "7 287/4096 1543/16384 - ro no_discard_passdown error_if_no_space - 1024",
		  DMR_POOL_READ_ONLY, "read_only" },
		{ "7 287/4096 16384/16384 - out_of_data_space discard_passdown error_if_no_space - 1024",
		  DMR_POOL_OUT_OF_DATA_SPACE, "out_of_data_space" },
		/* The lab's pool once its 2 MiB of metadata filled (2026-12-04):
		 * "No free metadata blocks", "switching pool to read-only mode". */
		{ "12 512/512 13824/24576 - ro discard_passdown error_if_no_space - 128",
		  DMR_POOL_OUT_OF_METADATA_SPACE, "out_of_metadata_space" },
		{ "12 512/512 13824/24576 - ro discard_passdown error_if_no_space needs_check 128",
		  DMR_POOL_OUT_OF_METADATA_SPACE, "out_of_metadata_space" },
		/* Full but still writing: the kernel has not switched yet. */
		{ "12 512/512 13824/24576 - rw discard_passdown error_if_no_space - 128",
		  DMR_POOL_OK, "ok" },
		{ "12 511/512 13824/24576 - ro discard_passdown error_if_no_space - 128",
		  DMR_POOL_READ_ONLY, "read_only" },
	};
	struct dmr_thin_pool_status st;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum dmr_pool_health h;

		assert_int_equal(dmr_status_parse_thin_pool(cases[i].line, &st), 0);
		h = dmr_status_thin_pool_health(&st);
		assert_int_equal(h, cases[i].h);
		assert_string_equal(dmr_status_thin_pool_health_name(h), cases[i].name);
	}
	assert_int_equal(dmr_status_parse_thin_pool("Error", &st), 0);
	assert_true(st.error);
	assert_int_equal(dmr_status_parse_thin_pool("Error 1", &st), -EINVAL);
	assert_int_equal(dmr_status_thin_pool_health(NULL), DMR_POOL_FAIL);
}

static void test_thin(void **state)
{
	struct dmr_thin_status st;

	(void)state;
	/* lab: */
	assert_int_equal(dmr_status_parse_thin("384 383", &st), 0);
	assert_int_equal(st.mapped_sectors, 384);
	assert_int_equal(st.highest_mapped_sector, 383);
	assert_int_equal(dmr_status_parse_thin("4096 65535", &st), 0);
	assert_int_equal(st.mapped_sectors, 4096);
	assert_true(st.has_highest);
	assert_int_equal(st.highest_mapped_sector, 65535);
	assert_int_equal(dmr_status_parse_thin("0 -", &st), 0);
	assert_false(st.has_highest);
	assert_int_equal(dmr_status_parse_thin("Fail", &st), 0);
	assert_true(st.fail);
	assert_int_equal(dmr_status_parse_thin("", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_thin("12", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_thin("12 13 14", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_thin("a -", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_thin("1 1x", &st), -EINVAL);
}

static void test_snapshot(void **state)
{
	struct dmr_snapshot_status st;

	(void)state;
	/* lab: */
	assert_int_equal(dmr_status_parse_snapshot("32/32768 32", &st), 0);
	assert_int_equal(st.used_sectors, 32);
	assert_int_equal(st.metadata_sectors, 32);
	assert_int_equal(dmr_status_parse_snapshot("160/32768 32", &st), 0);
	assert_int_equal(st.used_sectors, 160);
	assert_int_equal(dmr_status_parse_snapshot("112/2097152 16", &st), 0);
	assert_int_equal(st.used_sectors, 112);
	assert_int_equal(st.total_sectors, 2097152);
	assert_int_equal(st.metadata_sectors, 16);
	assert_false(st.invalid || st.overflow || st.merge_failed);
	assert_int_equal(dmr_status_parse_snapshot("Invalid", &st), 0);
	assert_true(st.invalid);
	assert_int_equal(dmr_status_parse_snapshot("Overflow", &st), 0);
	assert_true(st.overflow);
	assert_int_equal(dmr_status_parse_snapshot("Merge failed", &st), 0);
	assert_true(st.merge_failed);
	assert_int_equal(dmr_status_parse_snapshot("112/2097152", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_snapshot("3000/2000 16", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_snapshot("112/2097152 200", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_snapshot("invalid", &st), -EINVAL);
	assert_int_equal(dmr_status_parse_snapshot("Merge", &st), -EINVAL);
}

static void test_long_input(void **state)
{
	static char big[8192];
	struct dmr_thin_status st;

	(void)state;
	memset(big, '1', sizeof(big) - 1);
	assert_int_equal(dmr_status_parse_thin(big, &st), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thin_pool_ok),
		cmocka_unit_test(test_thin_pool_variants),
		cmocka_unit_test(test_thin_pool_bad),
		cmocka_unit_test(test_thin_pool_health),
		cmocka_unit_test(test_thin),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_long_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
