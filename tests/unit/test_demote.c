/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: which point `vm demote` keeps as the one both hosts share,
 * and which newer points it drops (dmr_demote_plan, a pure function of the
 * VM's points, its acknowledged base and the caller's --point). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/engine/demote.h"
#include "agent/store/registry.h"
#include "common/util.h"
#include "tests/unit/vm_points.h"

/* A primary of 2 disks with points 1..n, point p's uuid "...-00000000000p". */
static struct dmr_vm *primary(size_t n)
{
	struct dmr_vm *vm = test_make_vm("web01", false, 2, n);

	for (size_t p = 0; p < n; p++)
		snprintf(vm->points[p].uuid, sizeof(vm->points[p].uuid),
			 "0b5e7c1e-2222-4a2b-9c3d-%012zu", p + 1);
	return vm;
}

static void uuid_of(size_t p, char buf[DMR_UUID_STR_SIZE])
{
	snprintf(buf, DMR_UUID_STR_SIZE, "0b5e7c1e-2222-4a2b-9c3d-%012zu", p);
}

/* The acknowledged base decides: the points after it go. */
static void test_by_acked(void **state)
{
	struct dmr_vm *vm = primary(5);
	struct dmr_demote_plan p;

	(void)state;
	uuid_of(3, vm->repl.acked_uuid);
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_true(p.found);
	assert_int_equal(p.rule, DMR_DEMOTE_BY_ACKED);
	assert_int_equal(p.common, 2);
	assert_int_equal(p.keep, 3);
	assert_int_equal(p.drop, 2);
	/* The newest acknowledged: nothing to drop. */
	uuid_of(5, vm->repl.acked_uuid);
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_int_equal(p.drop, 0);
	assert_int_equal(p.keep, 5);
	dmr_vm_free(vm);
}

/* --point wins over the acknowledged base; it must be a valid point. */
static void test_by_point(void **state)
{
	struct dmr_vm *vm = primary(4);
	struct dmr_demote_plan p;

	(void)state;
	uuid_of(4, vm->repl.acked_uuid);
	assert_int_equal(dmr_demote_plan(vm, 2, &p), 0);
	assert_int_equal(p.rule, DMR_DEMOTE_BY_POINT);
	assert_int_equal(p.keep, 2);
	assert_int_equal(p.drop, 2);
	assert_int_equal(dmr_demote_plan(vm, 9, &p), -ENOENT);
	vm->points[1].valid = false;
	assert_int_equal(dmr_demote_plan(vm, 2, &p), -ENOENT);
	vm->points[1].valid = true;
	vm->points[1].pending_tid = 7;
	assert_int_equal(dmr_demote_plan(vm, 2, &p), -ENOENT);
	dmr_vm_free(vm);
}

/* Nothing acknowledged (points sent by hand): the newest valid point is
 * taken as common, and the invalid or pending ones after it go. */
static void test_by_newest(void **state)
{
	struct dmr_vm *vm = primary(4);
	struct dmr_demote_plan p;

	(void)state;
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_int_equal(p.rule, DMR_DEMOTE_BY_NEWEST);
	assert_true(p.found);
	assert_int_equal(p.keep, 4);
	assert_int_equal(p.drop, 0);
	vm->points[3].valid = false;
	vm->points[2].pending_tid = 9;
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_int_equal(p.common, 1);
	assert_int_equal(p.drop, 2);
	dmr_vm_free(vm);
}

/* No common point: the acknowledged uuid is not here (a point removed by
 * hand), or the VM has no valid point: every point would go. */
static void test_none(void **state)
{
	struct dmr_vm *vm = primary(3);
	struct dmr_demote_plan p;

	(void)state;
	uuid_of(8, vm->repl.acked_uuid);
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_false(p.found);
	assert_int_equal(p.keep, 0);
	assert_int_equal(p.drop, 3);
	/* The acknowledged point is there but not valid: not a base. */
	uuid_of(2, vm->repl.acked_uuid);
	vm->points[1].valid = false;
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_false(p.found);
	dmr_vm_free(vm);

	vm = primary(0);
	assert_int_equal(dmr_demote_plan(vm, 0, &p), 0);
	assert_false(p.found);
	assert_int_equal(p.drop, 0);
	dmr_vm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_by_acked),
		cmocka_unit_test(test_by_point),
		cmocka_unit_test(test_by_newest),
		cmocka_unit_test(test_none),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
