/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: VM state files (round trip, corrupt or truncated input
 * detected), retention, thin id allocation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/store/registry.h"
#include "dm/name.h"
#include "dm/table.h"
#include "common/util.h"
#include "tests/unit/vm_points.h"

static struct dmr_vm *make_vm(size_t ndisks, size_t npoints)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->name = strdup("web01");
	vm->backend = strdup("thin");
	vm->qmp = strdup("/run/qemu/web01.qmp");
	vm->n_disks = ndisks;
	vm->disks = calloc(ndisks, sizeof(*vm->disks));
	for (size_t i = 0; i < ndisks; i++) {
		char name[8];

		snprintf(name, sizeof(name), "vd%c", (char)('a' + i));
		vm->disks[i].name = strdup(name);
		vm->disks[i].size_bytes = (i + 1) << 20;
		vm->disks[i].thin_id = (uint32_t)(i + 1);
	}
	test_vm_add_points(vm, npoints);
	/* As every VM and point is made: with uuids, which the round trip
	 * must keep. */
	dmr_uuid_new(vm->uuid);
	for (size_t i = 0; i < vm->n_points; i++)
		dmr_uuid_new(vm->points[i].uuid);
	return vm;
}

/* A state file from before uuids: the loader makes them (and says so, for
 * the save); one that is not a uuid is refused. */
static void test_uuids_made_and_checked(void **state)
{
	struct dmr_vm *vm = make_vm(2, 2), *back = NULL;
	struct json_object *o, *pts;

	(void)state;
	o = dmr_vm_state_json(vm);
	json_object_object_del(o, "uuid");
	pts = json_object_object_get(o, "points");
	json_object_object_del(json_object_array_get_idx(pts, 1), "uuid");
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	assert_true(back->uuids_made);
	assert_true(dmr_uuid_valid(back->uuid));
	assert_string_not_equal(back->uuid, vm->uuid);
	assert_string_equal(back->points[0].uuid, vm->points[0].uuid);
	assert_true(dmr_uuid_valid(back->points[1].uuid));
	dmr_vm_free(back);
	back = NULL;
	json_object_object_add(o, "uuid", json_object_new_string("not-a-uuid"));
	assert_int_equal(dmr_vm_from_state_json(o, &back), -EBADMSG);
	json_object_object_add(o, "uuid", json_object_new_string("00000000-0000-0000-0000-000000000000"));
	assert_int_equal(dmr_vm_from_state_json(o, &back), -EBADMSG);
	json_object_object_add(o, "uuid", json_object_new_string(vm->uuid));
	json_object_object_add(o, "role", json_object_new_string("spare"));
	assert_int_equal(dmr_vm_from_state_json(o, &back), -EBADMSG);
	json_object_object_add(o, "role", json_object_new_string("replica"));
	json_object_object_add(json_object_array_get_idx(pts, 1), "uuid",
			       json_object_new_string(vm->points[1].uuid));
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	assert_int_equal(back->role, DMR_VM_REPLICA);
	assert_false(back->uuids_made);
	dmr_vm_free(back);
	json_object_put(o);
	dmr_vm_free(vm);
}

/* vm show's role and replication object: CONTRACT.md's fields, and a
 * replica's side. */
static void test_api_role_replication(void **state)
{
	struct dmr_vm *vm = make_vm(1, 2);
	struct json_object *o, *rep, *v;

	(void)state;
	o = dmr_vm_api_json(vm);
	assert_string_equal(json_object_get_string(json_object_object_get(o, "role")), "primary");
	assert_string_equal(json_object_get_string(json_object_object_get(o, "uuid")), vm->uuid);
	rep = json_object_object_get(o, "replication");
	assert_string_equal(json_object_get_string(json_object_object_get(rep, "state")), "off");
	assert_true(json_object_object_get_ex(rep, "interval", NULL));
	assert_true(json_object_object_get_ex(rep, "to", NULL));
	assert_true(json_object_object_get_ex(rep, "last_success", &v) && !v);
	assert_true(json_object_object_get_ex(rep, "lag_seconds", &v) && !v);
	assert_true(json_object_object_get_ex(rep, "bytes_sent", NULL));
	assert_true(json_object_object_get_ex(rep, "last_error", NULL));
	assert_false(json_object_object_get_ex(rep, "last_received", NULL));
	json_object_put(o);
	vm->role = DMR_VM_REPLICA;
	vm->last_received_usec = 1700000000000000ull;
	o = dmr_vm_api_json(vm);
	rep = json_object_object_get(o, "replication");
	assert_string_equal(json_object_get_string(json_object_object_get(o, "role")), "replica");
	assert_string_equal(json_object_get_string(json_object_object_get(rep, "last_received")),
			    "2023-11-14T22:13:20Z");
	assert_true(json_object_object_get_ex(rep, "newest_point_age_seconds", &v) && v);
	json_object_put(o);
	dmr_vm_free(vm);
}

static void test_round_trip(void **state)
{
	struct dmr_vm *vm = make_vm(3, 4), *back = NULL;
	struct json_object *o, *o2;

	(void)state;
	vm->keep_last = 7;
	vm->points[1].application = true;
	vm->points[2].valid = false;
	vm->failover_point = 2;
	vm->state = DMR_VM_RECOVERED;
	vm->overlay_ids = calloc(3, sizeof(uint32_t));
	vm->overlay_ids[0] = 500;
	vm->overlay_ids[1] = 501;
	vm->overlay_ids[2] = 502;
	o = dmr_vm_state_json(vm);
	assert_non_null(o);
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	o2 = dmr_vm_state_json(back);
	assert_string_equal(json_object_to_json_string(o), json_object_to_json_string(o2));
	assert_int_equal(back->n_disks, 3);
	assert_int_equal(back->n_points, 4);
	assert_true(back->points[1].application);
	assert_false(back->points[2].valid);
	assert_string_equal(back->uuid, vm->uuid);
	assert_string_equal(back->points[3].uuid, vm->points[3].uuid);
	assert_int_equal(back->points[3].vol_ids[2], 100 + 3 * 3 + 2);
	assert_int_equal(back->overlay_ids[2], 502);
	assert_int_equal(back->state, DMR_VM_RECOVERED);
	assert_string_equal(back->qmp, "/run/qemu/web01.qmp");
	assert_null(back->qga);
	json_object_put(o);
	json_object_put(o2);
	dmr_vm_free(vm);
	dmr_vm_free(back);
}

/* Every way a state file can be damaged must be refused, never half-read. */
static void test_corrupt_detected(void **state)
{
	struct dmr_vm *vm = make_vm(2, 2);
	struct json_object *o = dmr_vm_state_json(vm);
	const char *text = json_object_to_json_string(o);
	size_t len = strlen(text);
	static const struct {
		const char *key;
		const char *value;
	} bad[] = {
		{ "schema", "2" },          { "name", "\"../etc\"" }, { "state", "\"flying\"" },
		{ "disks", "[]" },          { "points", "{}" },       { "next_point_id", "1" },
		{ "keep_last", "-1" },      { "backend", "7" },       { "overlay_ids", "[1]" },
	};

	(void)state;
	/* Truncations at many places: none parses into a VM. */
	for (size_t cut = 1; cut < len; cut += 7) {
		char *t = strndup(text, cut);
		struct json_object *p = json_tokener_parse(t);
		struct dmr_vm *v = NULL;

		if (p) {
			assert_int_not_equal(dmr_vm_from_state_json(p, &v), 0);
			json_object_put(p);
		}
		assert_null(v);
		free(t);
	}
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		struct json_object *p = json_tokener_parse(text);
		struct dmr_vm *v = NULL;

		json_object_object_add(p, bad[i].key, json_tokener_parse(bad[i].value));
		assert_int_not_equal(dmr_vm_from_state_json(p, &v), 0);
		assert_null(v);
		json_object_put(p);
	}
	{
		/* A point's thin id beyond 24 bits. */
		struct json_object *p = json_tokener_parse(text), *pts, *ids;
		struct dmr_vm *v = NULL;

		json_object_object_get_ex(p, "points", &pts);
		json_object_object_get_ex(json_object_array_get_idx(pts, 0), "thin_ids", &ids);
		json_object_array_put_idx(ids, 0, json_object_new_int64(1 << 24));
		assert_int_not_equal(dmr_vm_from_state_json(p, &v), 0);
		json_object_put(p);
	}
	json_object_put(o);
	dmr_vm_free(vm);
}

static void test_retention_keep_last(void **state)
{
	struct dmr_vm *vm = make_vm(1, 6);
	size_t *idx = NULL, n = 0;

	(void)state;
	vm->keep_last = 2;
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 4);
	/* newest first: 3, 2, 1, 0 */
	assert_int_equal(idx[0], 3);
	assert_int_equal(idx[3], 0);
	free(idx);
	dmr_vm_free(vm);
}

static void test_retention_keeps_latest_valid(void **state)
{
	struct dmr_vm *vm = make_vm(1, 4);
	uint64_t now = vm->points[3].created_usec + 100ull * 3600 * 1000000;
	size_t *idx = NULL, n = 0;

	(void)state;
	/* All points are older than an hour, and the newest is invalid:
	 * the newest valid one (index 2) must survive. */
	vm->max_age_sec = 3600;
	vm->points[3].valid = false;
	assert_int_equal(dmr_vm_retention_victims(vm, now, &idx, &n), 0);
	assert_int_equal(n, 3);
	for (size_t k = 0; k < n; k++)
		assert_int_not_equal(idx[k], 2);
	free(idx);
	dmr_vm_free(vm);
}

static void test_retention_spares_failover_point(void **state)
{
	struct dmr_vm *vm = make_vm(1, 5);
	size_t *idx = NULL, n = 0;

	(void)state;
	vm->keep_last = 1;
	vm->failover_point = 2;
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 3);
	for (size_t k = 0; k < n; k++)
		assert_int_not_equal(vm->points[idx[k]].id, 2);
	free(idx);
	dmr_vm_free(vm);
}

/* A primary replicating: the point the replica acknowledged last is the
 * next cycle's base and stays whatever keep_last says; on a replica the
 * same uuid pins nothing (its own history follows its own policy). */
static void test_retention_spares_acked_point(void **state)
{
	struct dmr_vm *vm = make_vm(1, 5);
	size_t *idx = NULL, n = 0;

	(void)state;
	vm->keep_last = 1;
	memcpy(vm->repl.acked_uuid, vm->points[1].uuid, sizeof(vm->repl.acked_uuid));
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 3);
	for (size_t k = 0; k < n; k++)
		assert_int_not_equal(idx[k], 1);
	free(idx);
	idx = NULL;
	vm->role = DMR_VM_REPLICA;
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 4);
	free(idx);
	dmr_vm_free(vm);
}

static void test_retention_none(void **state)
{
	struct dmr_vm *vm = make_vm(2, 3);
	size_t *idx = NULL, n = 99;

	(void)state;
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 0);
	free(idx);
	dmr_vm_free(vm);
}

static void test_alloc_thin_ids(void **state)
{
	struct dmr_registry reg = { 0 };
	struct dmr_vm *vm = make_vm(2, 1); /* uses 1, 2, 100, 101 */
	uint32_t ids[4];

	(void)state;
	pthread_mutex_init(&reg.lock, NULL);
	reg.vms = calloc(1, sizeof(*reg.vms));
	reg.vms[0] = vm;
	reg.n_vms = 1;
	reg.next_vol_id = 1;
	assert_int_equal(dmr_reg_alloc_vol_ids(&reg, 2, ids), 0);
	assert_int_equal(ids[0], 3);
	assert_int_equal(ids[1], 4);
	/* Wraps at 2^24 - 1 back to 1, skipping ids in use, never 0. */
	reg.next_vol_id = DMR_THIN_DEV_ID_MAX;
	assert_int_equal(dmr_reg_alloc_vol_ids(&reg, 2, ids), 0);
	assert_int_equal(ids[0], DMR_THIN_DEV_ID_MAX);
	assert_int_equal(ids[1], 3);
	reg.next_vol_id = 99;
	assert_int_equal(dmr_reg_alloc_vol_ids(&reg, 2, ids), 0);
	assert_int_equal(ids[0], 99);
	assert_int_equal(ids[1], 102);
	dmr_vm_free(vm);
	free(reg.vms);
	pthread_mutex_destroy(&reg.lock);
}

/* A classic VM: COW size, cap and committed layers survive a round trip;
 * damaged layers are refused. */
static void test_classic_round_trip(void **state)
{
	struct dmr_vm *vm = make_vm(2, 3), *back = NULL;
	struct json_object *o, *o2, *p, *layers;

	(void)state;
	free(vm->backend);
	vm->backend = strdup("classic");
	vm->cow_size = 8u << 20;
	vm->max_points = 5;
	vm->n_layers = 2;
	vm->layers = calloc(2, sizeof(*vm->layers));
	for (size_t l = 0; l < 2; l++) {
		vm->layers[l].point = l + 1;
		vm->layers[l].since = l + 2;
		vm->layers[l].ids = calloc(2, sizeof(uint32_t));
		vm->layers[l].ids[0] = (uint32_t)(700 + l);
		vm->layers[l].ids[1] = (uint32_t)(800 + l);
	}
	o = dmr_vm_state_json(vm);
	assert_int_equal(dmr_vm_from_state_json(o, &back), 0);
	o2 = dmr_vm_state_json(back);
	assert_string_equal(json_object_to_json_string(o), json_object_to_json_string(o2));
	assert_string_equal(back->backend, "classic");
	assert_int_equal(back->cow_size, 8u << 20);
	assert_int_equal(back->max_points, 5);
	assert_int_equal(back->n_layers, 2);
	assert_int_equal(back->layers[1].since, 3);
	assert_int_equal(back->layers[1].ids[1], 801);
	dmr_vm_free(back);
	back = NULL;

	/* Layers out of order, with the wrong number of ids, or an unknown
	 * backend: refused. */
	p = json_tokener_parse(json_object_to_json_string(o));
	json_object_object_get_ex(p, "layers", &layers);
	json_object_object_add(json_object_array_get_idx(layers, 1), "since", json_object_new_int64(2));
	assert_int_not_equal(dmr_vm_from_state_json(p, &back), 0);
	json_object_put(p);
	p = json_tokener_parse(json_object_to_json_string(o));
	json_object_object_get_ex(p, "layers", &layers);
	json_object_object_add(json_object_array_get_idx(layers, 0), "ids", json_tokener_parse("[1]"));
	assert_int_not_equal(dmr_vm_from_state_json(p, &back), 0);
	json_object_put(p);
	p = json_tokener_parse(json_object_to_json_string(o));
	json_object_object_add(p, "backend", json_object_new_string("zfs"));
	assert_int_not_equal(dmr_vm_from_state_json(p, &back), 0);
	json_object_put(p);
	assert_null(back);
	json_object_put(o);
	json_object_put(o2);
	dmr_vm_free(vm);
}

/* A point a committed classic layer stacks on is never dropped, and the
 * layer's ids are never handed out again. */
static void test_classic_layer_pins(void **state)
{
	struct dmr_registry reg = { 0 };
	struct dmr_vm *vm = make_vm(1, 5);
	size_t *idx = NULL, n = 0;
	uint32_t ids[1];

	(void)state;
	vm->keep_last = 1;
	vm->n_layers = 1;
	vm->layers = calloc(1, sizeof(*vm->layers));
	vm->layers[0].point = 2;
	vm->layers[0].since = 3;
	vm->layers[0].ids = calloc(1, sizeof(uint32_t));
	vm->layers[0].ids[0] = 3;
	assert_int_equal(dmr_vm_retention_victims(vm, 1800000000000000ull, &idx, &n), 0);
	assert_int_equal(n, 3);
	for (size_t k = 0; k < n; k++)
		assert_int_not_equal(vm->points[idx[k]].id, 2);
	free(idx);

	pthread_mutex_init(&reg.lock, NULL);
	reg.vms = calloc(1, sizeof(*reg.vms));
	reg.vms[0] = vm;
	reg.n_vms = 1;
	reg.next_vol_id = 2; /* 2 is free, 3 is the layer's */
	assert_int_equal(dmr_reg_alloc_vol_ids(&reg, 1, ids), 0);
	assert_int_equal(ids[0], 2);
	assert_int_equal(dmr_reg_alloc_vol_ids(&reg, 1, ids), 0);
	assert_int_equal(ids[0], 4);
	free(reg.vms);
	pthread_mutex_destroy(&reg.lock);
	dmr_vm_free(vm);
}

static void test_names(void **state)
{
	char name[128], uuid[129];

	(void)state;
	assert_int_equal(dmr_vm_disk_dm_name("web01", "vda", name), 0);
	assert_string_equal(name, "dmrep-web01:vda");
	assert_int_equal(dmr_vm_disk_dm_uuid("web01", "vda", uuid), 0);
	assert_string_equal(uuid, "DMREP-disk-web01:vda");
	assert_int_equal(dmr_vm_test_dm_name("web01", "vda", name), 0);
	assert_string_equal(name, "dmrep-web01:test:vda");
	assert_int_equal(dmr_vm_test_dm_uuid("web01", "vda", uuid), 0);
	assert_string_equal(uuid, "DMREP-test-web01:vda");
	/* What makes the names unambiguous is refused as a part of them. */
	assert_int_equal(dmr_vm_disk_dm_name("a:b", "c", name), -EINVAL);
	assert_int_equal(dmr_vm_test_dm_name("a", "b:c", name), -EINVAL);
	assert_int_equal(dmr_vm_disk_dm_uuid("a", "", uuid), -EINVAL);
	assert_int_equal(dmr_vm_test_dm_uuid("a/b", "c", uuid), -EINVAL);
}

/* The longest VM and disk names, every character '-' after the first
 * (what an escaping scheme would double), still fit the kernel's limits,
 * and the results are valid dm names and UUIDs; one byte more is refused. */
static void test_names_worst_case(void **state)
{
	char vm[DMR_OBJ_NAME_MAX + 2], disk[DMR_OBJ_NAME_MAX + 2];
	char name[DMR_DM_NAME_MAX + 1], uuid[DMR_DM_UUID_MAX + 1];

	(void)state;
	memset(vm, '-', DMR_OBJ_NAME_MAX);
	memset(disk, '-', DMR_OBJ_NAME_MAX);
	vm[0] = 'v';
	disk[0] = 'd';
	vm[DMR_OBJ_NAME_MAX] = disk[DMR_OBJ_NAME_MAX] = '\0';
	assert_int_equal(dmr_vm_disk_dm_name(vm, disk, name), 0);
	assert_int_equal(dmr_name_dm_valid(name), 0);
	assert_int_equal(strlen(name), strlen("dmrep-:") + 2 * DMR_OBJ_NAME_MAX);
	assert_int_equal(dmr_vm_test_dm_name(vm, disk, name), 0);
	assert_int_equal(dmr_name_dm_valid(name), 0);
	assert_int_equal(strlen(name), strlen("dmrep-:test:") + 2 * DMR_OBJ_NAME_MAX);
	assert_true(strlen(name) <= DMR_DM_NAME_MAX);
	assert_int_equal(dmr_vm_disk_dm_uuid(vm, disk, uuid), 0);
	assert_true(dmr_name_uuid_is_ours(uuid));
	assert_int_equal(dmr_vm_test_dm_uuid(vm, disk, uuid), 0);
	assert_true(dmr_name_uuid_is_ours(uuid));
	assert_true(strlen(uuid) <= DMR_DM_UUID_MAX);
	vm[DMR_OBJ_NAME_MAX] = 'x';
	vm[DMR_OBJ_NAME_MAX + 1] = '\0';
	assert_int_equal(dmr_vm_test_dm_name(vm, disk, name), -EINVAL);
}

/* VM a-b's disk c and VM a's disk b-c; VM x's test view of y, VM x-test's
 * disk y and VM x's disk test-y: each set shared one name under the old
 * "dmrep-VM-DISK" / "dmrep-VM-test-DISK". */
static void test_names_distinct_pairs(void **state)
{
	char n1[128], n2[128], u1[129], u2[129];

	(void)state;
	assert_int_equal(dmr_vm_disk_dm_name("a-b", "c", n1), 0);
	assert_int_equal(dmr_vm_disk_dm_name("a", "b-c", n2), 0);
	assert_string_not_equal(n1, n2);
	assert_string_equal(n1, "dmrep-a-b:c");
	assert_string_equal(n2, "dmrep-a:b-c");
	assert_int_equal(dmr_vm_disk_dm_uuid("a-b", "c", u1), 0);
	assert_int_equal(dmr_vm_disk_dm_uuid("a", "b-c", u2), 0);
	assert_string_not_equal(u1, u2);

	assert_int_equal(dmr_vm_test_dm_name("x", "y", n1), 0);
	assert_int_equal(dmr_vm_disk_dm_name("x-test", "y", n2), 0);
	assert_string_not_equal(n1, n2);
	/* ...and not VM x's own disk test-y. */
	assert_int_equal(dmr_vm_disk_dm_name("x", "test-y", n2), 0);
	assert_string_not_equal(n1, n2);
	/* No VM's device takes an internal device's name. */
	assert_int_equal(dmr_vm_disk_dm_name("snap", "3", n1), 0);
	assert_string_not_equal(n1, "dmrep-snap-3");
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every VM/disk pair from a small alphabet rich in '-', "test" and ':'
 * neighbours: no two (pair, kind) give the same dm name, and none has
 * the shape of an internal name (no ':' in dmrep-pool, dmrep-snap-N). */
static void test_names_injective(void **state)
{
	static const char *extra[] = { "test", "a-test", "test-a", "test-test", "t", "-" };
	char parts[64][8];
	size_t np = 0, n = 0;
	char **all;

	(void)state;
	/* Strings over {a, -} of length 1..5, valid ones only. */
	for (size_t len = 1; len <= 5; len++)
		for (unsigned bits = 0; bits < (1u << len); bits++) {
			char w[8];

			for (size_t k = 0; k < len; k++)
				w[k] = bits & (1u << k) ? '-' : 'a';
			w[len] = '\0';
			if (dmr_name_obj_valid(w, DMR_OBJ_NAME_MAX) == 0)
				snprintf(parts[np++], sizeof(parts[0]), "%s", w);
		}
	for (size_t e = 0; e < sizeof(extra) / sizeof(extra[0]); e++)
		if (dmr_name_obj_valid(extra[e], DMR_OBJ_NAME_MAX) == 0)
			snprintf(parts[np++], sizeof(parts[0]), "%s", extra[e]);
	assert_int_equal(np, 31 + 5);
	all = calloc(np * np * 2, sizeof(*all));
	assert_non_null(all);
	for (size_t v = 0; v < np; v++)
		for (size_t d = 0; d < np; d++)
			for (int test = 0; test < 2; test++) {
				char buf[128];

				assert_int_equal(test ? dmr_vm_test_dm_name(parts[v], parts[d], buf) :
							dmr_vm_disk_dm_name(parts[v], parts[d], buf), 0);
				assert_non_null(strchr(buf, ':'));
				all[n++] = strdup(buf);
			}
	qsort(all, n, sizeof(*all), str_cmp);
	for (size_t i = 0; i + 1 < n; i++)
		if (strcmp(all[i], all[i + 1]) == 0)
			fail_msg("two devices would be named %s", all[i]);
	for (size_t i = 0; i < n; i++)
		free(all[i]);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_uuids_made_and_checked),
		cmocka_unit_test(test_api_role_replication),
		cmocka_unit_test(test_corrupt_detected),
		cmocka_unit_test(test_retention_keep_last),
		cmocka_unit_test(test_retention_keeps_latest_valid),
		cmocka_unit_test(test_retention_spares_failover_point),
		cmocka_unit_test(test_retention_spares_acked_point),
		cmocka_unit_test(test_retention_none),
		cmocka_unit_test(test_alloc_thin_ids),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_names_worst_case),
		cmocka_unit_test(test_names_distinct_pairs),
		cmocka_unit_test(test_names_injective),
		cmocka_unit_test(test_classic_round_trip),
		cmocka_unit_test(test_classic_layer_pins),
	};

	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
