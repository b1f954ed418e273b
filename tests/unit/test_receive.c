/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: ReceiveReplicationPoint's refusals (dmr_receive_check, a pure
 * function of the stream's header and the VM here) and the state file of
 * a replica VM (no live volume, a receive's ids recorded as doomed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/engine/receive.h"
#include "agent/store/registry.h"
#include "common/rc.h"
#include "common/util.h"
#include "tests/unit/vm_points.h"

#define VM_UUID "0b5e7c1e-1111-4a2b-9c3d-000000000001"
#define FREE (1ull << 40)

static void point_uuid(size_t p, char buf[DMR_UUID_STR_SIZE])
{
	snprintf(buf, DMR_UUID_STR_SIZE, "0b5e7c1e-2222-4a2b-9c3d-%012zu", p);
}

/* A replica of 3 disks with npoints received points (uuids point_uuid). */
static struct dmr_vm *replica(size_t npoints)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->name = strdup("web01");
	vm->backend = strdup("thin");
	snprintf(vm->uuid, sizeof(vm->uuid), "%s", VM_UUID);
	vm->role = DMR_VM_REPLICA;
	vm->n_disks = 3;
	vm->disks = calloc(3, sizeof(*vm->disks));
	for (size_t i = 0; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "vd%c", (char)('a' + i));
		vm->disks[i].name = strdup(name);
		vm->disks[i].size_bytes = (i + 1) << 20;
	}
	test_vm_add_points(vm, npoints);
	for (size_t p = 0; p < npoints; p++)
		point_uuid(p, vm->points[p].uuid);
	return vm;
}

/* A header of the replica's disks: a full stream (base < 0) or an
 * incremental from point_uuid(base), of point_uuid(point). */
static void header(struct dmr_stream_header *h, long base, size_t point)
{
	memset(h, 0, sizeof(*h));
	h->version = DMR_STREAM_VERSION;
	snprintf(h->vm, sizeof(h->vm), "web01");
	snprintf(h->vm_uuid, sizeof(h->vm_uuid), "%s", VM_UUID);
	point_uuid(point, h->point_uuid);
	if (base >= 0)
		point_uuid((size_t)base, h->base_uuid);
	h->created_usec = 1700000000000000ull;
	h->block_bytes = 64 << 10;
	h->data_bytes = 1 << 20;
	h->n_disks = 3;
	for (size_t i = 0; i < 3; i++) {
		snprintf(h->disks[i].name, sizeof(h->disks[i].name), "vd%c", (char)('a' + i));
		h->disks[i].size_bytes = (i + 1) << 20;
	}
}

/* check() and its reason: the code as the job reports it, and the
 * message holds want (NULL: no check). */
static int check(const struct dmr_stream_header *h, const char *name, const struct dmr_vm *vm,
		 uint64_t free_bytes, uint64_t *base, const char *want)
{
	char *why = NULL;
	int r = dmr_receive_check(h, name, vm, free_bytes, base, &why);

	if (r < 0) {
		assert_non_null(why);
		if (want && !strstr(why, want))
			fail_msg("reason '%s' lacks '%s'", why, want);
	} else {
		assert_null(why);
	}
	free(why);
	return r < 0 ? dmr_rc_from_errno(r) : 0;
}

static void test_full_new_vm(void **state)
{
	struct dmr_stream_header h;
	uint64_t base = 99;

	(void)state;
	header(&h, -1, 0);
	assert_int_equal(check(&h, "web01", NULL, FREE, &base, NULL), 0);
	assert_int_equal(base, 0);
	/* The command line names the VM; the stream must be of it. */
	assert_int_equal(check(&h, "web02", NULL, FREE, &base, "not web02"),
			 DMR_RC_INVALID_PARAMETER);
	/* An incremental with nothing here to apply it to. */
	header(&h, 0, 1);
	assert_int_equal(check(&h, "web01", NULL, FREE, &base, "full stream first"),
			 DMR_RC_INVALID_STATE);
}

static void test_incremental(void **state)
{
	struct dmr_vm *vm = replica(3);
	struct dmr_stream_header h;
	uint64_t base = 0;

	(void)state;
	header(&h, 2, 3);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	assert_int_equal(base, 3); /* point id 3 has uuid point_uuid(2) */
	/* The base must be the latest valid point, and the message names both. */
	header(&h, 1, 3);
	assert_int_equal(check(&h, "web01", vm, FREE, &base,
			       "stream's base is 0b5e7c1e-2222-4a2b-9c3d-000000000001, this "
			       "replica's latest point is 0b5e7c1e-2222-4a2b-9c3d-000000000002"),
			 DMR_RC_INVALID_STATE);
	/* A point already held, whatever its base says. */
	header(&h, 2, 1);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "holds point"), DMR_RC_INVALID_STATE);
	/* A full stream for a replica that has points. */
	header(&h, -1, 7);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "has points"), DMR_RC_INVALID_STATE);
	/* An invalid latest point is skipped: the base is the latest valid one. */
	vm->points[2].valid = false;
	header(&h, 1, 3);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	assert_int_equal(base, 2);
	dmr_vm_free(vm);
}

/* A resync's stream (header flag): its base is the point whose hashes
 * the sender compared, any valid point here, not only the latest. */
static void test_resync_base(void **state)
{
	struct dmr_vm *vm = replica(3);
	struct dmr_stream_header h;
	uint64_t base = 0;

	(void)state;
	header(&h, 0, 5);
	h.resync = true;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	assert_int_equal(base, 1);
	header(&h, 2, 5);
	h.resync = true;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	assert_int_equal(base, 3);
	/* Without the flag the same older base is refused. */
	header(&h, 0, 5);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "latest point"), DMR_RC_INVALID_STATE);
	/* A base it does not hold, or holds invalid. */
	header(&h, 9, 5);
	h.resync = true;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "does not hold"), DMR_RC_INVALID_STATE);
	vm->points[0].valid = false;
	header(&h, 0, 5);
	h.resync = true;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "does not hold"), DMR_RC_INVALID_STATE);
	dmr_vm_free(vm);
}

static void test_full_into_empty_replica(void **state)
{
	struct dmr_vm *vm = replica(0);
	struct dmr_stream_header h;
	uint64_t base = 5;

	(void)state;
	header(&h, -1, 0);
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	assert_int_equal(base, 0);
	dmr_vm_free(vm);
}

static void test_vm_mismatch(void **state)
{
	struct dmr_vm *vm = replica(1);
	struct dmr_stream_header h;
	uint64_t base;

	(void)state;
	header(&h, 0, 1);
	vm->role = DMR_VM_PRIMARY;
	assert_int_equal(check(&h, "web01", vm, FREE, &base,
			       "VM web01 is a primary here: a replica takes streams (if the sender is "
			       "its old primary, demote it there with vm demote"),
			 DMR_RC_INVALID_STATE);
	vm->role = DMR_VM_REPLICA;
	snprintf(h.vm_uuid, sizeof(h.vm_uuid), "0b5e7c1e-1111-4a2b-9c3d-000000000009");
	assert_int_equal(check(&h, "web01", vm, FREE, &base, VM_UUID), DMR_RC_INVALID_STATE);
	header(&h, 0, 1);
	h.disks[1].size_bytes += 512;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "disk 1"), DMR_RC_INVALID_STATE);
	header(&h, 0, 1);
	snprintf(h.disks[2].name, sizeof(h.disks[2].name), "vdz");
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "vdz"), DMR_RC_INVALID_STATE);
	header(&h, 0, 1);
	h.n_disks = 2;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "2 disk"), DMR_RC_INVALID_STATE);
	dmr_vm_free(vm);
}

static void test_version_failover_room(void **state)
{
	struct dmr_vm *vm = replica(1);
	struct dmr_stream_header h;
	uint64_t base;

	(void)state;
	header(&h, 0, 1);
	h.version = DMR_STREAM_VERSION + 1;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, "newer"), DMR_RC_NOT_SUPPORTED);
	header(&h, 0, 1);
	for (int s = DMR_VM_FAILOVER_IN_PROGRESS; s <= DMR_VM_COMMITTED; s++) {
		vm->state = (enum dmr_vm_state)s;
		assert_int_equal(check(&h, "web01", vm, FREE, &base, dmr_vm_state_name(vm->state)),
				 DMR_RC_IN_USE);
	}
	/* A test failover changes nothing of the points: received into. */
	vm->state = DMR_VM_REPLICATING;
	vm->test_failover = true;
	vm->test_point = 1;
	assert_int_equal(check(&h, "web01", vm, FREE, &base, NULL), 0);
	/* Room: the header's bound against the pool's free bytes. */
	assert_int_equal(check(&h, "web01", vm, h.data_bytes, &base, NULL), 0);
	assert_int_equal(check(&h, "web01", vm, h.data_bytes - 1, &base, "free"), DMR_RC_NO_SPACE);
	dmr_vm_free(vm);
}

/* A replica's state file: role, uuid, disks without a live volume, the
 * time of the last receive and a receive's ids in doomed, all kept. */
static void test_replica_round_trip(void **state)
{
	struct dmr_vm *vm = replica(2), *back = NULL;
	struct json_object *o, *o2, *api, *disks, *d, *t;

	(void)state;
	vm->last_received_usec = 1700000123000000ull;
	vm->importing = true;
	vm->n_doomed = 3;
	vm->doomed = calloc(3, sizeof(uint32_t));
	vm->doomed[0] = 700;
	vm->doomed[1] = 701;
	vm->doomed[2] = 702;
	o = dmr_vm_state_json(vm);
	assert_non_null(o);
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	o2 = dmr_vm_state_json(back);
	assert_string_equal(json_object_to_json_string(o), json_object_to_json_string(o2));
	assert_int_equal(back->role, DMR_VM_REPLICA);
	assert_string_equal(back->uuid, VM_UUID);
	assert_int_equal(back->last_received_usec, 1700000123000000ull);
	assert_true(back->importing);
	assert_int_equal(back->n_doomed, 3);
	assert_int_equal(back->doomed[2], 702);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(back->disks[i].thin_id, 0);
	assert_string_equal(back->points[1].uuid, vm->points[1].uuid);
	/* vm show: no stable device before a failover. */
	api = dmr_vm_api_json(back);
	assert_true(json_object_object_get_ex(api, "disks", &disks));
	d = json_object_array_get_idx(disks, 0);
	assert_true(json_object_object_get_ex(d, "target", &t));
	assert_string_equal(json_object_get_string(t), "none");
	assert_true(json_object_object_get_ex(api, "role", &t));
	assert_string_equal(json_object_get_string(t), "replica");
	json_object_put(api);
	json_object_put(o);
	json_object_put(o2);
	dmr_vm_free(vm);
	dmr_vm_free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_new_vm),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_resync_base),
		cmocka_unit_test(test_full_into_empty_replica),
		cmocka_unit_test(test_vm_mismatch),
		cmocka_unit_test(test_version_failover_room),
		cmocka_unit_test(test_replica_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
