/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the backend table's operations that need no device: which
 * dm devices a VM owns (recovery's orphan report asks it of every DMREP-
 * device), whether it needs the pool, whether it may be removed, what
 * AddVirtualSystem asks of a backend by its name, what a pool repair that
 * lost transactions changes in the catalog, for both backends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "agent/backend/backend.h"
#include "common/rc.h"
#include "common/util.h"
#include "vm_points.h"

static struct dmr_vm *vm_new(const char *backend, size_t npoints)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->name = strdup("db");
	vm->backend = strdup(backend);
	vm->n_disks = 2;
	vm->disks = calloc(2, sizeof(*vm->disks));
	vm->disks[0].name = strdup("vda");
	vm->disks[1].name = strdup("vdb");
	vm->disks[0].thin_id = 1;
	vm->disks[1].thin_id = 2;
	vm->state = DMR_VM_REPLICATING;
	test_vm_add_points(vm, npoints);
	return vm;
}

static void test_owns(void **state)
{
	struct dmr_vm *vm = vm_new("thin", 1);
	const struct dmr_backend *b = dmr_backend_of(vm);

	(void)state;
	assert_ptr_equal(b, &dmr_backend_thin);
	assert_true(b->owns(vm, "dmrep-db:vda"));
	assert_true(b->owns(vm, "dmrep-db:vdb"));
	assert_false(b->owns(vm, "dmrep-db:vdc"));
	assert_false(b->owns(vm, "dmrep-db2:vda"));
	assert_false(b->owns(vm, "dmrep-pool"));
	/* A thin point is a volume, never a device of its own. */
	assert_false(b->owns(vm, "dmrep-snap-100"));
	/* Test views only while a test failover has them. */
	assert_false(b->owns(vm, "dmrep-db:test:vda"));
	vm->test_ids = calloc(2, sizeof(uint32_t));
	assert_true(b->owns(vm, "dmrep-db:test:vda"));
	dmr_vm_free(vm);

	vm = vm_new("classic", 2);
	b = dmr_backend_of(vm);
	assert_ptr_equal(b, &dmr_backend_classic);
	assert_true(b->owns(vm, "dmrep-db:vda"));
	assert_true(b->owns(vm, "dmrep-db:test:vdb"));
	/* Every point's store device, of every disk. */
	assert_true(b->owns(vm, "dmrep-snap-100"));
	assert_true(b->owns(vm, "dmrep-snap-103"));
	assert_false(b->owns(vm, "dmrep-snap-104"));
	assert_false(b->owns(vm, "dmrep-other:vda"));
	dmr_vm_free(vm);
}

static void test_needs_pool(void **state)
{
	(void)state;
	assert_true(dmr_backend_thin.needs_pool);
	assert_false(dmr_backend_classic.needs_pool);
}

static void test_may_remove(void **state)
{
	struct dmr_vm *vm = vm_new("thin", 1);
	char *why = NULL;

	(void)state;
	assert_int_equal(dmr_backend_of(vm)->may_remove(vm, false, &why), 0);
	assert_null(why);
	dmr_vm_free(vm);

	vm = vm_new("classic", 1);
	assert_int_equal(dmr_backend_of(vm)->may_remove(vm, false, &why), 0);
	assert_null(why);
	/* Committed: its data is in the layers' stores, only with --force. */
	vm->n_layers = 2;
	vm->layers = calloc(2, sizeof(*vm->layers));
	vm->layers[0].ids = calloc(2, sizeof(uint32_t));
	vm->layers[1].ids = calloc(2, sizeof(uint32_t));
	assert_int_equal(dmr_backend_of(vm)->may_remove(vm, false, &why), -DMR_E_STATE);
	assert_string_equal(why, "VM db's committed data lives in 2 layers of COW stores, not on "
			    "its disks: copy each /dev/dmrep/db/DISK out, then vm remove --force");
	free(why);
	why = NULL;
	assert_int_equal(dmr_backend_of(vm)->may_remove(vm, true, &why), 0);
	assert_null(why);
	dmr_vm_free(vm);
}

/* Points 1..3 on volumes 100-101, 102-103, 104-105; the repaired metadata
 * holds the live volumes, point 1's, and 104 of point 3; doomed 50 is gone,
 * 60 is not.  Point 1 was left pending: its volumes are there, so kept. */
static void test_repaired(void **state)
{
	static const uint32_t ids[] = { 1, 2, 60, 100, 101, 104 };
	struct dmr_vm *vm = vm_new("thin", 3), *cl = vm_new("classic", 2);
	const struct dmr_backend *b = dmr_backend_of(vm);

	(void)state;
	vm->points[0].pending_tid = 9;
	vm->doomed = calloc(2, sizeof(*vm->doomed));
	assert_non_null(vm->doomed);
	vm->doomed[0] = 50;
	vm->doomed[1] = 60;
	vm->n_doomed = 2;
	assert_true(b->repaired(vm, ids, DMR_ARRAY_SIZE(ids)));
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->points[0].id, 1);
	assert_int_equal(vm->points[0].pending_tid, 0);
	/* 50 gone with the metadata; 104, point 3's survivor, to remove. */
	assert_int_equal(vm->n_doomed, 2);
	assert_int_equal(vm->doomed[0], 60);
	assert_int_equal(vm->doomed[1], 104);
	/* In step now: a second pass (a restart after a crash) changes nothing. */
	assert_false(b->repaired(vm, ids, DMR_ARRAY_SIZE(ids)));
	assert_int_equal(vm->n_points, 1);
	/* Metadata with no volume at all: every point goes, nothing else. */
	assert_true(b->repaired(vm, NULL, 0));
	assert_int_equal(vm->n_points, 0);
	assert_int_equal(vm->n_doomed, 0);
	assert_int_equal(vm->n_disks, 2);
	/* Classic VMs are not in the pool. */
	assert_false(dmr_backend_of(cl)->repaired(cl, NULL, 0));
	assert_int_equal(cl->n_points, 2);
	dmr_vm_free(vm);
	dmr_vm_free(cl);
}

static void test_named(void **state)
{
	(void)state;
	assert_ptr_equal(dmr_backend_named("thin"), &dmr_backend_thin);
	assert_ptr_equal(dmr_backend_named("classic"), &dmr_backend_classic);
	assert_null(dmr_backend_named("Thin"));
	assert_null(dmr_backend_named("lvm"));
	assert_null(dmr_backend_named(""));
}

/* AddVirtualSystem's add-time questions: classic disks live on their
 * sources (read-write, new image files, no shared file, cow_size), thin
 * ones are copied into the pool's volumes, checked against its room. */
static void test_add(void **state)
{
	struct dmr_registry reg = { 0 };
	uint32_t ids[3] = { 0 };
	uint64_t room = 7;

	(void)state;
	assert_false(dmr_backend_thin.in_place);
	assert_true(dmr_backend_classic.in_place);

	/* Nothing is copied in place: no bound. */
	assert_int_equal(dmr_backend_classic.add_room(&reg, &room), 0);
	assert_true(room == UINT64_MAX);
	/* No pool up: thin cannot tell, and says so. */
	room = 7;
	assert_int_equal(dmr_backend_thin.add_room(&reg, &room), -ENODEV);
	assert_true(room == 7);

	/* A disk in place has no volume. */
	assert_int_equal(dmr_backend_classic.add_ids(&reg, 3, ids), 0);
	assert_int_equal(ids[0] | ids[1] | ids[2], 0);
	/* Thin: one new id per disk, never 0, all different. */
	reg.next_vol_id = 5;
	assert_int_equal(dmr_backend_thin.add_ids(&reg, 3, ids), 0);
	assert_int_equal(ids[0], 5);
	assert_int_equal(ids[1], 6);
	assert_int_equal(ids[2], 7);
	assert_int_equal(reg.next_vol_id, 8);

	/* A classic point's store by default: a quarter of the disk, at
	 * least 8 MiB, in 4 KiB units; thin points have none. */
	assert_true(dmr_backend_classic.default_cow(1ull << 30) == 256ull << 20);
	assert_true(dmr_backend_classic.default_cow(1ull << 20) == 8ull << 20);
	assert_true(dmr_backend_classic.default_cow((1ull << 30) + 4) == (256ull << 20) + 4096);
	assert_true(dmr_backend_thin.default_cow(1ull << 30) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owns),
		cmocka_unit_test(test_needs_pool),
		cmocka_unit_test(test_may_remove),
		cmocka_unit_test(test_repaired),
		cmocka_unit_test(test_named),
		cmocka_unit_test(test_add),
	};

	return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
