/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the classic backend's pure parts: table builders, reading
 * live tables back (literal `dmsetup table` lines of the lab's kernel),
 * the origin devices' names and which devices a VM owns, default COW
 * sizes, and the room check for a new point (the cap and the state
 * directory's free space).  What the stack does with the kernel is the
 * lab's (t-90). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/backend/classic.h"
#include "agent/store/registry.h"
#include "common/util.h"
#include "dm/table.h"
#include "snapshots/classic.h"

static struct dmr_table *parse_line(const char *line)
{
	unsigned long long start, len;
	char type[DMR_TARGET_TYPE_MAX];
	struct dmr_table *t = dmr_table_new();
	int n = 0;

	assert_non_null(t);
	assert_int_equal(sscanf(line, "%llu %llu %15s %n", &start, &len, type, &n), 3);
	assert_int_equal(dmr_table_append_at(t, start, len, type, line + n), 0);
	return t;
}

static void test_tables(void **state)
{
	struct dmr_table *t = NULL;
	char *text = NULL;

	(void)state;
	assert_int_equal(dmr_classic_snap_table("/dev/loop3", "/dev/loop7", 65536, &t), 0);
	assert_int_equal(dmr_table_format(t, &text), 0);
	assert_string_equal(text, "0 65536 snapshot /dev/loop3 /dev/loop7 P 8\n");
	free(text);
	dmr_table_free(t);
	assert_int_equal(dmr_classic_origin_table("/dev/sdb", 2048, &t), 0);
	assert_int_equal(dmr_table_format(t, &text), 0);
	assert_string_equal(text, "0 2048 snapshot-origin /dev/sdb\n");
	free(text);
	dmr_table_free(t);
	assert_int_equal(dmr_classic_view_table("/dev/mapper/dmrep-snap-12", 2048, &t), 0);
	assert_int_equal(dmr_table_format(t, &text), 0);
	assert_string_equal(text, "0 2048 linear /dev/mapper/dmrep-snap-12 0\n");
	free(text);
	dmr_table_free(t);
	/* The stack: a stable device over its origin device, by number. */
	assert_int_equal(dmr_classic_view_table("253:7", 2048, &t), 0);
	assert_int_equal(dmr_table_format(t, &text), 0);
	assert_string_equal(text, "0 2048 linear 253:7 0\n");
	free(text);
	dmr_table_free(t);
	/* No device, no table. */
	assert_int_not_equal(dmr_classic_snap_table("", "/dev/loop7", 8, &t), 0);
}

static void test_read_back(void **state)
{
	struct dmr_table *t;

	(void)state;
	/* As the kernel reports them (devices as MAJ:MIN). */
	t = parse_line("0 65536 snapshot-origin 7:0");
	assert_true(dmr_classic_table_is_origin(t));
	assert_false(dmr_classic_table_is_view_of(t, 7, 0));
	dmr_table_free(t);
	t = parse_line("0 65536 linear 253:5 0");
	assert_false(dmr_classic_table_is_origin(t));
	assert_true(dmr_classic_table_is_view_of(t, 253, 5));
	assert_false(dmr_classic_table_is_view_of(t, 253, 50));
	assert_false(dmr_classic_table_is_view_of(t, 25, 5));
	dmr_table_free(t);
	t = parse_line("0 65536 linear 253:5 2048");
	assert_false(dmr_classic_table_is_view_of(t, 253, 5)); /* not the whole view */
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot 7:0 7:1 P 8");
	assert_false(dmr_classic_table_is_origin(t));
	assert_false(dmr_classic_table_is_view_of(t, 7, 0));
	dmr_table_free(t);
	assert_false(dmr_classic_table_is_origin(NULL));
	/* Not the kernel's form (tests/fuzz/fuzz_table.c): sscanf took a
	 * sign, spaces, junk after the offset, a minor past 32 bits. */
	{
		static const char *const not_views[] = {
			"0 65536 linear 253:5 0 junk", "0 65536 linear 253:5 0x",
			"0 65536 linear 253:5 -0", "0 65536 linear 253:4294967301 0",
			"0 65536 linear +253:5 0", "0 65536 linear 253: 5 0",
		};

		for (size_t i = 0; i < sizeof(not_views) / sizeof(not_views[0]); i++) {
			t = parse_line(not_views[i]);
			assert_false(dmr_classic_table_is_view_of(t, 253, 5));
			dmr_table_free(t);
		}
	}
}

static struct dmr_vm *classic_vm(size_t npoints, uint64_t cow);

/* An origin device's table names the device it copies out of; the
 * stable device an older dmrep made had it itself, and shows nothing in
 * the stack (activate moves it). */
static void test_origin_tables(void **state)
{
	struct dmr_vm *vm = classic_vm(0, 1u << 20);
	struct dmr_table *t;
	uint32_t maj = 0, min = 0;

	(void)state;
	t = parse_line("0 65536 snapshot-origin 7:0");
	assert_true(dmr_classic_table_is_origin_of(t, 7, 0));
	assert_false(dmr_classic_table_is_origin_of(t, 7, 1));
	assert_false(dmr_classic_table_is_origin_of(t, 8, 0));
	/* Read without a dm call: the older table is not the stack. */
	assert_false(dmr_classic_table_shows(vm, 0, t, 0));
	assert_int_equal(dmr_table_linear_dev(t, &maj, &min), -EINVAL);
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot-origin 253:4294967308");
	assert_false(dmr_classic_table_is_origin_of(t, 253, 12)); /* wrapped: not 12 */
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot-origin 253:012");
	assert_false(dmr_classic_table_is_origin_of(t, 253, 12));
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot-origin 253:12");
	assert_true(dmr_classic_table_is_origin_of(t, 253, 12));
	assert_false(dmr_classic_table_is_origin_of(t, 253, 1));
	dmr_table_free(t);
	t = parse_line("0 65536 linear 7:0 0");
	assert_false(dmr_classic_table_is_origin_of(t, 7, 0));
	assert_int_equal(dmr_table_linear_dev(t, &maj, &min), 0);
	assert_int_equal(maj, 7);
	assert_int_equal(min, 0);
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot 7:0 7:1 P 8");
	assert_false(dmr_classic_table_is_origin_of(t, 7, 0));
	assert_false(dmr_classic_table_shows(vm, 0, t, 0));
	dmr_table_free(t);
	t = parse_line("0 65536 snapshot-origin 7:0");
	assert_int_equal(dmr_table_append(t, 8, "snapshot-origin", "7:0"), 0);
	assert_false(dmr_classic_table_is_origin_of(t, 7, 0)); /* two targets */
	dmr_table_free(t);
	assert_false(dmr_classic_table_is_origin_of(NULL, 7, 0));
	dmr_vm_free(vm);
}

/* The origin device's name: after the disk, never a stable device's, a
 * test view's, a store's or the pool's; the longest names fit. */
static void test_origin_names(void **state)
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE], other[DMR_DM_NAME_SIZE];
	char vm[DMR_OBJ_NAME_MAX + 2], disk[DMR_OBJ_NAME_MAX + 1];
	static const char *const pairs[][2] = {
		{ "db", "vda" }, { "db", "test" }, { "test", "vda" }, { "a-b", "c" }, { "a", "b-c" },
		{ "x-test", "y" }, { "origin", "origin" },
	};

	(void)state;
	assert_int_equal(dmr_classic_origin_dm_name("db", "vda", name, uuid), 0);
	assert_string_equal(name, "dmrep-db:vda@origin");
	assert_string_equal(uuid, "DMREP-origin-db:vda");
	assert_int_equal(dmr_name_dm_valid(name), 0);
	assert_int_equal(dmr_name_uuid_valid(uuid), 0);
	/* Hidden by udev: neither a disk's nor a test view's UUID. */
	assert_false(dmr_startswith(uuid, "DMREP-disk-") || dmr_startswith(uuid, "DMREP-test-"));
	assert_int_equal(dmr_classic_origin_dm_name("db", "vdb", name, NULL), 0);
	assert_string_equal(name, "dmrep-db:vdb@origin");
	for (size_t a = 0; a < sizeof(pairs) / sizeof(pairs[0]); a++) {
		assert_int_equal(dmr_classic_origin_dm_name(pairs[a][0], pairs[a][1], name, NULL), 0);
		for (size_t b = 0; b < sizeof(pairs) / sizeof(pairs[0]); b++) {
			assert_int_equal(dmr_vm_disk_dm_name(pairs[b][0], pairs[b][1], other), 0);
			assert_string_not_equal(name, other);
			assert_int_equal(dmr_vm_test_dm_name(pairs[b][0], pairs[b][1], other), 0);
			assert_string_not_equal(name, other);
			if (b != a) {
				assert_int_equal(dmr_classic_origin_dm_name(pairs[b][0], pairs[b][1],
									    other, NULL), 0);
				assert_string_not_equal(name, other);
			}
		}
	}
	/* Names a VM or disk cannot have. */
	assert_int_equal(dmr_classic_origin_dm_name("db", "vda@origin", name, uuid), -EINVAL);
	assert_int_equal(dmr_classic_origin_dm_name("d:b", "vda", name, uuid), -EINVAL);
	assert_int_equal(dmr_classic_origin_dm_name("db", "", name, uuid), -EINVAL);
	/* The longest. */
	memset(vm, 'v', sizeof(vm));
	vm[DMR_OBJ_NAME_MAX] = '\0';
	memset(disk, 'd', sizeof(disk));
	disk[DMR_OBJ_NAME_MAX] = '\0';
	assert_int_equal(dmr_classic_origin_dm_name(vm, disk, name, uuid), 0);
	assert_int_equal(strlen(name), strlen("dmrep-:@origin") + 2 * DMR_OBJ_NAME_MAX);
	assert_int_equal(dmr_name_dm_valid(name), 0);
	assert_int_equal(dmr_name_uuid_valid(uuid), 0);
	vm[DMR_OBJ_NAME_MAX] = 'v';
	vm[DMR_OBJ_NAME_MAX + 1] = '\0';
	assert_int_equal(dmr_classic_origin_dm_name(vm, disk, name, uuid), -EINVAL);
}

/* Recovery calls no device the catalog knows an orphan: the origin
 * devices are the VM's, as its stable devices, points and views are. */
static void test_owns(void **state)
{
	struct dmr_vm *vm = classic_vm(1, 1u << 20);

	(void)state;
	vm->points[0].vol_ids[0] = 5;
	vm->points[0].vol_ids[1] = 6;
	assert_true(dmr_classic_vm_owns(vm, "dmrep-db:vda"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-db:vdb"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-db:vda@origin"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-db:vdb@origin"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-db:test:vda"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-snap-5"));
	assert_true(dmr_classic_vm_owns(vm, "dmrep-snap-6"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-db:vdc@origin"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-dbx:vda@origin"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-db:vda@origin2"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-db:vda@"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-snap-7"));
	assert_false(dmr_classic_vm_owns(vm, "dmrep-thin-5"));
	dmr_vm_free(vm);
}

static void test_default_cow(void **state)
{
	(void)state;
	assert_int_equal(dmr_classic_default_cow(16u << 20), 8u << 20);   /* the floor */
	assert_int_equal(dmr_classic_default_cow(1ull << 30), 256u << 20); /* a quarter */
	assert_int_equal(dmr_classic_default_cow((1ull << 30) + 512) % 4096, 0);
}

static struct dmr_vm *classic_vm(size_t npoints, uint64_t cow)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->name = strdup("db");
	vm->backend = strdup("classic");
	vm->n_disks = 2;
	vm->disks = calloc(2, sizeof(*vm->disks));
	vm->disks[0].name = strdup("vda");
	vm->disks[1].name = strdup("vdb");
	vm->cow_size = cow;
	vm->max_points = 3;
	vm->n_points = npoints;
	vm->points = calloc(npoints + 1, sizeof(*vm->points));
	for (size_t p = 0; p < npoints; p++) {
		vm->points[p].id = p + 1;
		vm->points[p].label = strdup("");
		vm->points[p].vol_ids = calloc(2, sizeof(uint32_t));
	}
	return vm;
}

static void test_point_room(void **state)
{
	char dir[] = "/tmp/dmrep-classic-XXXXXX";
	struct dmr_registry reg = { 0 };
	struct dmr_vm *vm;
	char *why = NULL, *cow = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	reg.state_dir = dir;

	vm = classic_vm(2, 1u << 20);
	assert_int_equal(dmr_classic_point_room(&reg, vm, NULL, &why), 0);
	/* At the cap: -EDQUOT, and the reason says so. */
	vm->max_points = 2;
	assert_int_equal(dmr_classic_point_room(&reg, vm, NULL, &why), -EDQUOT);
	assert_non_null(strstr(why, "2 points"));
	free(why);
	why = NULL;
	/* A point still being made does not count. */
	vm->points[1].pending_tid = 1;
	assert_int_equal(dmr_classic_point_room(&reg, vm, NULL, &why), 0);
	dmr_vm_free(vm);

	/* Stores bigger than the filesystem could ever hold: -ENOSPC. */
	vm = classic_vm(0, 1ull << 60);
	assert_int_equal(dmr_classic_point_room(&reg, vm, NULL, &why), -ENOSPC);
	assert_non_null(strstr(why, "could need"));
	free(why);
	why = NULL;
	{
		/* Disks whose stores go to block devices need no room here. */
		const char *one[2] = { "/dev/vg0/cow", NULL }, *both[2] = { "/dev/a", "/dev/b" };

		assert_int_equal(dmr_classic_point_room(&reg, vm, one, &why), -ENOSPC);
		free(why);
		why = NULL;
		assert_int_equal(dmr_classic_point_room(&reg, vm, both, &why), 0);
		assert_null(why);
	}
	dmr_vm_free(vm);

	assert_int_equal(asprintf(&cow, "%s/cow", dir), (int)strlen(dir) + 4);
	assert_int_equal(rmdir(cow), 0); /* made by the check */
	free(cow);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_read_back),
		cmocka_unit_test(test_origin_tables),
		cmocka_unit_test(test_origin_names),
		cmocka_unit_test(test_owns),
		cmocka_unit_test(test_default_cow),
		cmocka_unit_test(test_point_room),
	};

	return cmocka_run_group_tests_name("classic", tests, NULL, NULL);
}
