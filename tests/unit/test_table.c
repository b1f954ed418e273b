/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dm/table.c builders and dm/name.c rules: pure, no kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "dm/name.h"
#include "dm/table.h"

static char *fmt(struct dmr_table *t)
{
	char *s = NULL;

	assert_int_equal(dmr_table_format(t, &s), 0);
	return s;
}

static void test_linear_and_starts(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char *s;

	(void)state;
	assert_int_equal(dmr_table_add_linear(t, 100, "/dev/loop0", 0), 0);
	assert_int_equal(dmr_table_add_error(t, 50), 0);
	assert_int_equal(dmr_table_add_zero(t, 10), 0);
	assert_int_equal(dmr_table_length(t), 160);
	s = fmt(t);
	assert_string_equal(s, "0 100 linear /dev/loop0 0\n100 50 error \n150 10 zero \n");
	free(s);
}

/* Tables as the kernel prints them back (DM_TABLE_STATUS). */
static void test_linear_dev(void **state)
{
	static const struct { const char *type, *params; int r; uint32_t maj, min; } cases[] = {
		{ "linear", "253:7 0", 0, 253, 7 },
		{ "linear", "259:1048575 0", 0, 259, 1048575 },
		{ "linear", "253:7 8", -EINVAL, 0, 0 },    /* not the whole device */
		{ "linear", "/dev/loop0 0", -EINVAL, 0, 0 },
		{ "linear", "253:7 0 x", -EINVAL, 0, 0 },
		{ "linear", "253:7", -EINVAL, 0, 0 },
		{ "thin", "253:0 5", -EINVAL, 0, 0 },
		{ "snapshot-origin", "253:7", -EINVAL, 0, 0 },
		/* Not what the kernel prints (tests/fuzz/fuzz_table.c found
		 * sscanf's %u taking them): a sign, a space, a leading zero,
		 * a number past 32 bits that wrapped to the device's. */
		{ "linear", "+253:0 0", -EINVAL, 0, 0 },
		{ "linear", " 253:0 0", -EINVAL, 0, 0 },
		{ "linear", "253: 0 0", -EINVAL, 0, 0 },
		{ "linear", "0253:0 0", -EINVAL, 0, 0 },
		{ "linear", "253:4294967296 0", -EINVAL, 0, 0 },
		{ "linear", "253:0 -0", -EINVAL, 0, 0 },
		{ "linear", "253:0 00", -EINVAL, 0, 0 },
		{ "linear", "0:0 0", 0, 0, 0 },
		{ "linear", "4294967295:4294967295 0", 0, UINT32_MAX, UINT32_MAX },
	};
	uint32_t maj = 1, min = 2;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		_cleanup_table_ struct dmr_table *t = dmr_table_new();

		assert_non_null(t);
		assert_int_equal(dmr_table_append_at(t, 0, 2048, cases[i].type, cases[i].params), 0);
		maj = 1, min = 2;
		assert_int_equal(dmr_table_linear_dev(t, &maj, &min), cases[i].r);
		if (cases[i].r == 0) {
			assert_int_equal(maj, cases[i].maj);
			assert_int_equal(min, cases[i].min);
		} else {
			/* untouched on failure */
			assert_int_equal(maj, 1);
			assert_int_equal(min, 2);
		}
	}
	{
		/* two targets: a device stacked on two, not one */
		_cleanup_table_ struct dmr_table *t = dmr_table_new();

		assert_int_equal(dmr_table_append_at(t, 0, 8, "linear", "253:7 0"), 0);
		assert_int_equal(dmr_table_append_at(t, 8, 8, "linear", "253:8 0"), 0);
		assert_int_equal(dmr_table_linear_dev(t, &maj, &min), -EINVAL);
		assert_int_equal(dmr_table_linear_dev(NULL, &maj, &min), -EINVAL);
	}
}

/* The kernel's numbers, and nothing else (dmr_table_parse_u64, _devno). */
static void test_parse_numbers(void **state)
{
	static const struct { const char *s; uint64_t max; int r; uint64_t v; size_t end; } nums[] = {
		{ "0", 9, 0, 0, 1 },
		{ "42 x", 100, 0, 42, 2 },
		{ "18446744073709551615", UINT64_MAX, 0, UINT64_MAX, 20 },
		{ "18446744073709551616", UINT64_MAX, -EINVAL, 0, 0 },
		{ "4294967296", UINT32_MAX, -EINVAL, 0, 0 },
		{ "101", 100, -EINVAL, 0, 0 },
		{ "9", 5, -EINVAL, 0, 0 },
		{ "01", 100, -EINVAL, 0, 0 },
		{ "+1", 100, -EINVAL, 0, 0 },
		{ "-1", 100, -EINVAL, 0, 0 },
		{ " 1", 100, -EINVAL, 0, 0 },
		{ "", 100, -EINVAL, 0, 0 },
	};
	uint32_t a = 7, b = 8;
	const char *end = NULL;
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		v = 5;
		assert_int_equal(dmr_table_parse_u64(nums[i].s, nums[i].max, &v, &end), nums[i].r);
		assert_true(v == (nums[i].r ? 5 : nums[i].v));
		if (nums[i].r == 0)
			assert_ptr_equal(end, nums[i].s + nums[i].end);
	}
	assert_int_equal(dmr_table_parse_devno("253:12 0", &a, &b, &end), 0);
	assert_int_equal(a, 253);
	assert_int_equal(b, 12);
	assert_string_equal(end, " 0");
	assert_int_equal(dmr_table_parse_devno("253:", &a, &b, NULL), -EINVAL);
	assert_int_equal(dmr_table_parse_devno("253 12", &a, &b, NULL), -EINVAL);
	assert_int_equal(dmr_table_parse_devno("253:+12", &a, &b, NULL), -EINVAL);
	assert_int_equal(a, 253);
}

static void test_thin_pool(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	struct dmr_thin_pool_opts o = { .block_sectors = 128, .low_water_blocks = 0,
					.error_if_no_space = true, .skip_block_zeroing = true };
	char *s;

	(void)state;
	assert_int_equal(dmr_table_add_thin_pool(t, 2097152, "7:1", "7:0", &o), 0);
	s = fmt(t);
	assert_string_equal(s, "0 2097152 thin-pool 7:1 7:0 128 0 2 skip_block_zeroing error_if_no_space\n");
	free(s);
	o.block_sectors = 100; /* not a multiple of 128 */
	assert_int_equal(dmr_table_add_thin_pool(t, 10, "7:1", "7:0", &o), -EINVAL);
	o.block_sectors = 64;
	assert_int_equal(dmr_table_add_thin_pool(t, 10, "7:1", "7:0", &o), -EINVAL);
	o.block_sectors = 2097152 + 128;
	assert_int_equal(dmr_table_add_thin_pool(t, 10, "7:1", "7:0", &o), -EINVAL);
	assert_int_equal(t->count, 1); /* refusals append nothing */
}

static void test_thin(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char *s;

	(void)state;
	assert_int_equal(dmr_table_add_thin(t, 8, "253:0", 5, NULL), 0);
	assert_int_equal(dmr_table_add_thin(t, 8, "253:0", DMR_THIN_DEV_ID_MAX, "/dev/sda"), 0);
	assert_int_equal(dmr_table_add_thin(t, 8, "253:0", DMR_THIN_DEV_ID_MAX + 1, NULL), -EINVAL);
	s = fmt(t);
	assert_string_equal(s, "0 8 thin 253:0 5\n8 8 thin 253:0 16777215 /dev/sda\n");
	free(s);
}

static void test_snapshot(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char *s;

	(void)state;
	assert_int_equal(dmr_table_add_snapshot(t, 64, "/dev/a", "/dev/b", true, 16), 0);
	assert_int_equal(dmr_table_add_snapshot(t, 64, "/dev/a", "/dev/b", false, 8), 0);
	assert_int_equal(dmr_table_add_snapshot(t, 64, "/dev/a", "/dev/b", true, 12), -EINVAL);
	assert_int_equal(dmr_table_add_snapshot(t, 64, "/dev/a", "/dev/b", true, 4), -EINVAL);
	assert_int_equal(dmr_table_add_snapshot_merge(t, 64, "/dev/a", "/dev/b", 32), 0);
	assert_int_equal(dmr_table_add_snapshot_origin(t, 64, "/dev/a"), 0);
	s = fmt(t);
	assert_string_equal(s, "0 64 snapshot /dev/a /dev/b P 16\n64 64 snapshot /dev/a /dev/b N 8\n"
			       "128 64 snapshot-merge /dev/a /dev/b P 32\n192 64 snapshot-origin /dev/a\n");
	free(s);
}

static void test_faults(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char *s;

	(void)state;
	assert_int_equal(dmr_table_add_flakey(t, 10, "/dev/x", 0, 1, 2, NULL), 0);
	assert_int_equal(dmr_table_add_flakey(t, 10, "/dev/x", 0, 1, 2, "drop_writes"), 0);
	assert_int_equal(dmr_table_add_flakey(t, 10, "/dev/x", 0, 1, 2, "bogus"), -EINVAL);
	assert_int_equal(dmr_table_add_delay(t, 10, "/dev/x", 4, 500), 0);
	s = fmt(t);
	assert_string_equal(s, "0 10 flakey /dev/x 0 1 2\n10 10 flakey /dev/x 0 1 2 1 drop_writes\n"
			       "20 10 delay /dev/x 4 500\n");
	free(s);
}

static void test_bad_args(void **state)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();

	(void)state;
	assert_int_equal(dmr_table_add_linear(t, 0, "/dev/x", 0), -EINVAL);
	assert_int_equal(dmr_table_add_linear(t, 1, "", 0), -EINVAL);
	assert_int_equal(dmr_table_add_linear(t, 1, "/dev/x y", 0), -EINVAL);
	assert_int_equal(dmr_table_add_linear(t, 1, "/dev/x\n0 1 error", 0), -EINVAL);
	assert_int_equal(dmr_table_add_linear(t, 1, NULL, 0), -EINVAL);
	assert_int_equal(dmr_table_append(t, 1, "Linear", "x"), -EINVAL);
	assert_int_equal(dmr_table_append(t, 1, "averyveryverylongtype", "x"), -EINVAL);
	assert_int_equal(dmr_table_append(t, 1, "linear", "a\nb"), -EINVAL);
	assert_int_equal(t->count, 0);
	dmr_table_free(NULL);
}

static void test_names(void **state)
{
	char long_name[200];

	(void)state;
	assert_int_equal(dmr_name_dm_valid("dmrep-vm-vda"), 0);
	assert_int_equal(dmr_name_dm_valid(""), -EINVAL);
	assert_int_equal(dmr_name_dm_valid("a/b"), -EINVAL);
	assert_int_equal(dmr_name_dm_valid("a b"), -EINVAL);
	assert_int_equal(dmr_name_dm_valid("."), -EINVAL);
	assert_int_equal(dmr_name_dm_valid(".."), -EINVAL);
	assert_int_equal(dmr_name_dm_valid("caf\xc3\xa9"), -EINVAL);
	memset(long_name, 'a', sizeof(long_name));
	long_name[127] = '\0';
	assert_int_equal(dmr_name_dm_valid(long_name), 0);
	long_name[127] = 'a';
	long_name[128] = '\0';
	assert_int_equal(dmr_name_dm_valid(long_name), -EINVAL);

	assert_int_equal(dmr_name_obj_valid("web-01_a.b+c", 48), 0);
	assert_int_equal(dmr_name_obj_valid("-rf", 48), -EINVAL);
	assert_int_equal(dmr_name_obj_valid("a:b", 48), -EINVAL);
	assert_int_equal(dmr_name_obj_valid("$(id)", 48), -EINVAL);
	assert_int_equal(dmr_name_obj_valid("..", 48), -EINVAL);
	assert_int_equal(dmr_name_obj_valid("abc", 2), -EINVAL);
	assert_int_equal(dmr_name_obj_valid(NULL, 2), -EINVAL);

	assert_true(dmr_name_uuid_is_ours("DMREP-disk-vm:vda"));
	assert_false(dmr_name_uuid_is_ours("DMREP-"));
	assert_false(dmr_name_uuid_is_ours("LVM-abc"));
	assert_false(dmr_name_uuid_is_ours("dmrep-x"));
	assert_false(dmr_name_uuid_is_ours(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linear_and_starts),
		cmocka_unit_test(test_linear_dev),
		cmocka_unit_test(test_thin_pool),
		cmocka_unit_test(test_thin),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
