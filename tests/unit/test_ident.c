/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: disk identities (snapshots/ident.h, agent/backend/identity.h).  The
 * issue's power loss: a disk added as /dev/loop2 over an image, and after
 * the reboot /dev/loop2 is a loop over the pool's metadata file: never the
 * same disk.  What is compared (loop backing file, dm UUID, WWID, serial,
 * partition, by-id names, size, kind, a file's inode) and what not (the
 * kernel's device number); identities in state files, bounded and
 * validated; a state file from before identities loads without one; the
 * pool's files' growth, for the overcommit check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>

#include "agent/backend/identity.h"
#include "agent/store/registry.h"
#include "common/util.h"
#include "snapshots/pool.h"

static struct dmr_ident loop_ident(const char *file, uint64_t inode, uint32_t minor)
{
	struct dmr_ident id = { .is_block = true, .size_bytes = 32u << 20, .loop_inode = inode,
				.major = 7, .minor = minor };

	id.loop_file = strdup(file);
	return id;
}

static void test_loop_scenario(void **state)
{
	struct dmr_ident rec = loop_ident("/scratch/c.img", 12, 2);
	struct dmr_ident same = loop_ident("/scratch/c.img", 12, 0);
	struct dmr_ident meta = loop_ident("/scratch/pool.meta", 13, 2);
	char *why = NULL;

	(void)state;
	/* The same image on another loop number is the same disk. */
	assert_int_equal(dmr_ident_match(&rec, &same, &why), 0);
	assert_null(why);
	/* The pool's metadata at the disk's old path is not; the reason
	 * names both, even though the sizes differ too. */
	meta.size_bytes = 8u << 20;
	assert_int_equal(dmr_ident_match(&rec, &meta, &why), -ESTALE);
	assert_non_null(why);
	assert_non_null(strstr(why, "/scratch/pool.meta"));
	assert_non_null(strstr(why, "/scratch/c.img"));
	free(why);
	/* Same path, another file (recreated): its inode tells. */
	same.loop_inode = 99;
	assert_int_equal(dmr_ident_match(&rec, &same, NULL), -ESTALE);
	dmr_ident_done(&rec);
	dmr_ident_done(&same);
	dmr_ident_done(&meta);
}

static void test_block_ids(void **state)
{
	struct dmr_ident rec = { .is_block = true, .size_bytes = 1u << 30 };
	struct dmr_ident now = rec;

	(void)state;
	rec.wwid = strdup("naa.5000c500a1b2c3d4");
	rec.serial = strdup("ST1000_Z1D2");
	now.wwid = strdup("naa.5000c500a1b2c3d4");
	now.serial = strdup("ST1000_Z1D2");
	now.major = 8; /* sdb now, sda then: names are not compared */
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), 0);
	free(now.wwid);
	now.wwid = strdup("naa.5000c500ffffffff");
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	free(now.wwid);
	now.wwid = strdup(rec.wwid);
	/* A partition of the same disk: its number and start. */
	rec.part_nr = 1;
	rec.part_start = 2048;
	now.part_nr = 2;
	now.part_start = 2048;
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	now.part_nr = 1;
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), 0);
	/* Now a loop device where a disk was: never the same. */
	now.loop_file = strdup("/x/pool.data");
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	free(now.loop_file);
	now.loop_file = NULL;
	/* A size change alone is enough. */
	now.size_bytes = 2u << 30;
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	dmr_ident_done(&rec);
	dmr_ident_done(&now);
}

static void test_dm_uuid_and_by_id(void **state)
{
	struct dmr_ident rec = { .is_block = true, .size_bytes = 1u << 20 };
	struct dmr_ident now = rec;
	char *a[] = { strdup("dm-name-vg0-db"), strdup("dm-uuid-LVM-abc") };
	char *b[] = { strdup("dm-name-vg0-db") };
	char *c[] = { strdup("virtio-other") };

	(void)state;
	rec.dm_uuid = strdup("LVM-abc");
	now.dm_uuid = strdup("LVM-abd");
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	free(now.dm_uuid);
	now.dm_uuid = NULL;
	/* A dm device then, none now (or the reverse). */
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	assert_int_equal(dmr_ident_match(&now, &rec, NULL), -ESTALE);
	free(rec.dm_uuid);
	rec.dm_uuid = NULL;
	/* by-id names decide only when nothing stronger was recorded: one
	 * name in common is enough (udev may add links). */
	rec.by_id = a;
	rec.n_by_id = 2;
	now.by_id = b;
	now.n_by_id = 1;
	assert_true(dmr_ident_strong(&rec));
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), 0);
	now.by_id = c;
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	now.n_by_id = 0;
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), -ESTALE);
	/* Nothing but kind and size: weak, compared by size only. */
	rec.n_by_id = 0;
	assert_false(dmr_ident_strong(&rec));
	assert_int_equal(dmr_ident_match(&rec, &now, NULL), 0);
	free(a[0]);
	free(a[1]);
	free(b[0]);
	free(c[0]);
}

static void test_files(void **state)
{
	char path[] = "/tmp/dmrep-ident-XXXXXX";
	struct dmr_ident a, b;
	struct stat st;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1u << 20), 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	assert_int_equal(dmr_ident_read(path, &a), 0);
	assert_false(a.is_block);
	assert_int_equal(a.inode, st.st_ino);
	assert_int_equal(a.size_bytes, 1u << 20);
	assert_true(dmr_ident_strong(&a));
	/* Replaced by another file at the same path. */
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1u << 20), 0);
	close(fd);
	assert_int_equal(dmr_ident_read(path, &b), 0);
	if (b.inode != a.inode)
		assert_int_equal(dmr_ident_match(&a, &b, NULL), -ESTALE);
	b.inode = a.inode;
	assert_int_equal(dmr_ident_match(&a, &b, NULL), 0);
	b.is_block = true;
	assert_int_equal(dmr_ident_match(&a, &b, NULL), -ESTALE);
	unlink(path);
	assert_int_equal(dmr_ident_read(path, &b), -ENOENT);
	assert_int_equal(dmr_ident_read("/dev/null", &b), -EINVAL);
	dmr_ident_done(&a);
}

static void test_json(void **state)
{
	struct dmr_ident rec = loop_ident("/scratch/c.img", 12, 2), *back = NULL;
	struct json_object *o, *p;
	char *names[] = { strdup("wwn-0x5000"), strdup("ata-X_Y") };
	static const char *const bad[] = {
		"{\"kind\": \"tape\", \"size_bytes\": 1}",
		"{\"size_bytes\": 1}",
		"{\"kind\": \"block\", \"size_bytes\": -1}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"loop_file\": 7}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"loop_file\": \"\"}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"by_id\": [\"../../etc\"]}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"by_id\": {}}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"by_id\": [1]}",
		"{\"kind\": \"block\", \"size_bytes\": 1, \"partition\": 4294967296}",
		"[]",
	};

	(void)state;
	rec.by_id = names;
	rec.n_by_id = 2;
	rec.part_nr = 3;
	rec.part_start = 4096;
	o = dmr_ident_json(&rec);
	assert_non_null(o);
	assert_int_equal(dmr_ident_from_json(o, &back), 0);
	assert_int_equal(dmr_ident_match(&rec, back, NULL), 0);
	assert_string_equal(back->loop_file, "/scratch/c.img");
	assert_int_equal(back->loop_inode, 12);
	assert_int_equal(back->n_by_id, 2);
	assert_int_equal(back->part_nr, 3);
	dmr_ident_free(back);
	json_object_put(o);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		back = NULL;
		p = json_tokener_parse(bad[i]);
		assert_non_null(p);
		assert_int_equal(dmr_ident_from_json(p, &back), -EBADMSG);
		assert_null(back);
		json_object_put(p);
	}
	/* Too many by-id names. */
	p = json_tokener_parse("{\"kind\": \"block\", \"size_bytes\": 1}");
	{
		struct json_object *a = json_object_new_array();

		for (int i = 0; i <= DMR_IDENT_BY_ID_MAX; i++)
			json_object_array_add(a, json_object_new_string("n"));
		json_object_object_add(p, "by_id", a);
	}
	assert_int_equal(dmr_ident_from_json(p, &back), -EBADMSG);
	json_object_put(p);
	rec.by_id = NULL;
	rec.n_by_id = 0;
	free(names[0]);
	free(names[1]);
	dmr_ident_done(&rec);
}

/* A classic VM's state file keeps its disks' identities; one written
 * before identities existed loads with none (unknown, learnt later). */
static void test_state_file(void **state)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm)), *back = NULL;
	struct json_object *o, *disks;
	struct dmr_ident id = loop_ident("/scratch/c.img", 12, 2);

	(void)state;
	vm->name = strdup("db");
	vm->backend = strdup("classic");
	vm->n_disks = 1;
	vm->disks = calloc(1, sizeof(*vm->disks));
	vm->disks[0].name = strdup("vda");
	vm->disks[0].size_bytes = 32u << 20;
	vm->disks[0].source = strdup("/dev/loop2");
	vm->disks[0].ident = calloc(1, sizeof(*vm->disks[0].ident));
	assert_int_equal(dmr_ident_copy(&id, vm->disks[0].ident), 0);
	vm->points = calloc(1, sizeof(*vm->points));
	vm->next_point_id = 1;
	vm->cow_size = 8u << 20;
	vm->max_points = 8;
	o = dmr_vm_state_json(vm);
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	assert_non_null(back->disks[0].ident);
	assert_int_equal(dmr_ident_match(&id, back->disks[0].ident, NULL), 0);
	dmr_vm_free(back);
	back = NULL;

	json_object_object_get_ex(o, "disks", &disks);
	json_object_object_del(json_object_array_get_idx(disks, 0), "identity");
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	assert_null(back->disks[0].ident);
	dmr_vm_free(back);
	back = NULL;

	/* A hostile identity refuses the file, as any other bad field. */
	json_object_object_add(json_object_array_get_idx(disks, 0), "identity",
			       json_tokener_parse("{\"kind\": \"block\", \"by_id\": [\"a/b\"]}"));
	assert_int_not_equal(dmr_vm_from_state_json(o, &back), 0);
	assert_null(back);
	json_object_put(o);
	dmr_vm_free(vm);
	dmr_ident_done(&id);
}

static void test_file_growth(void **state)
{
	char path[] = "/tmp/dmrep-grow-XXXXXX";
	uint64_t g = 1, fs = 0;
	struct stat st;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8u << 20), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(dmr_pool_file_growth(path, 0, &g, &fs), 0);
	assert_int_equal(g, (8u << 20) - (uint64_t)st.st_blocks * 512);
	assert_int_equal(fs, st.st_dev);
	if (fallocate(fd, 0, 0, 8u << 20) == 0) {
		assert_int_equal(dmr_pool_file_growth(path, 0, &g, &fs), 0);
		assert_int_equal(g, 0);
	}
	close(fd);
	unlink(path);
	/* A file still to be made takes all of its size, from its dir's fs. */
	assert_int_equal(dmr_pool_file_growth(path, 5u << 20, &g, &fs), 0);
	assert_int_equal(g, 5u << 20);
	assert_int_equal(dmr_pool_default_meta_size(2ull << 30), 8u << 20);
	assert_int_equal(dmr_pool_default_meta_size(100ull << 30), (100ull << 30) / 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loop_scenario),
		cmocka_unit_test(test_block_ids),
		cmocka_unit_test(test_dm_uuid_and_by_id),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_state_file),
		cmocka_unit_test(test_file_growth),
	};

	return cmocka_run_group_tests_name("ident", tests, NULL, NULL);
}
