/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: the point job (agent/engine/point.c) and what it asks of the
 * backends, over a mocked pool (dmr_thin_snapshot_group, dmr_pool_status):
 *  - a thin point is one consistency group of every disk, from the disks'
 *    live volumes under their stable devices into the ids the catalog
 *    recorded as pending, inside the pool transaction the catalog then
 *    moves to; the job reports the point and its steps;
 *  - a failed group leaves no point in the catalog and the transaction
 *    where it was, and the job says why with the errno's code;
 *  - the thin room check refuses a failed or nearly full pool, with the
 *    message the handler returns; the backends' point extras (classic:
 *    cow_used_percent, cow_devices, pinned layer bases).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <unistd.h>

#include "agent/core/agent.h"
#include "agent/engine/job.h"
#include "agent/engine/point.h"
#include "agent/store/registry.h"
#include "common/rc.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/status.h"
#include "tests/unit/bare_registry.h"
#include "tests/unit/vm_points.h"

/* ---- mocks ------------------------------------------------------------ */

static char state_dir[64];
static int group_calls, group_fail;
static size_t group_n;
static char group_names[4][DMR_DM_NAME_SIZE];
static uint32_t group_origins[4], group_new[4];
static uint64_t group_old_tid, group_new_tid;
static unsigned group_flags;
static size_t group_points_seen; /* the VM's catalog entries at the call */
static bool group_pending_seen;  /* the new point was pending at the call */
static struct dmr_registry *the_reg;
static struct dmr_thin_pool_status pool_st;
static int pool_st_r;

int __wrap_dmr_thin_snapshot_group(const void *pool, size_t n, const char *const *names,
				   const uint32_t *origin_ids, const uint32_t *new_ids,
				   uint64_t old_tid, uint64_t new_tid, unsigned suspend_flags,
				   uint64_t *ret_suspend_usec);
int __wrap_dmr_pool_status(const void *pool, struct dmr_thin_pool_status *ret);
int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret);

/* The dm devices that exist (dmr_dm_info's answer), with DMREP- UUIDs as
 * the agent makes them. */
static char up[8][DMR_DM_NAME_SIZE], up_uuid[8][DMR_DM_UUID_SIZE];
static size_t n_up;

static void dev_up(const char *name, const char *uuid)
{
	assert_true(n_up < 8);
	snprintf(up[n_up], sizeof(up[n_up]), "%s", name);
	snprintf(up_uuid[n_up++], sizeof(up_uuid[0]), "%s", uuid);
}

int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < n_up; i++)
		if (dmr_streq(up[i], name)) {
			ret->exists = true;
			ret->major = 253;
			ret->minor = (uint32_t)i;
			snprintf(ret->name, sizeof(ret->name), "%s", name);
			memcpy(ret->uuid, up_uuid[i], sizeof(ret->uuid));
		}
	return 0;
}

int __wrap_dmr_thin_snapshot_group(const void *pool, size_t n, const char *const *names,
				   const uint32_t *origin_ids, const uint32_t *new_ids,
				   uint64_t old_tid, uint64_t new_tid, unsigned suspend_flags,
				   uint64_t *ret_suspend_usec)
{
	struct dmr_vm *vm;

	(void)pool;
	group_calls++;
	group_n = n;
	for (size_t i = 0; i < n && i < DMR_ARRAY_SIZE(group_new); i++) {
		snprintf(group_names[i], sizeof(group_names[i]), "%s", names[i] ? names[i] : "");
		group_origins[i] = origin_ids[i];
		group_new[i] = new_ids[i];
	}
	group_old_tid = old_tid;
	group_new_tid = new_tid;
	group_flags = suspend_flags;
	pthread_mutex_lock(&the_reg->lock);
	vm = dmr_reg_vm_find(the_reg, "p");
	group_points_seen = vm->n_points;
	group_pending_seen = vm->n_points && vm->points[vm->n_points - 1].pending_tid == new_tid;
	pthread_mutex_unlock(&the_reg->lock);
	if (group_fail)
		return group_fail;
	if (ret_suspend_usec)
		*ret_suspend_usec = 7;
	return 0;
}

int __wrap_dmr_pool_status(const void *pool, struct dmr_thin_pool_status *ret)
{
	(void)pool;
	if (pool_st_r)
		return pool_st_r;
	*ret = pool_st;
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static int setup(void **st)
{
	(void)st;
	snprintf(state_dir, sizeof(state_dir), "/tmp/dmrep-test-point.XXXXXX");
	assert_non_null(mkdtemp(state_dir));
	group_calls = group_fail = 0;
	group_n = 0;
	pool_st_r = 0;
	n_up = 0;
	memset(&pool_st, 0, sizeof(pool_st));
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	return test_rm_rf(state_dir);
}

/* Over the mocked pool: never dereferenced. */
static struct dmr_registry *pool_registry(void)
{
	struct dmr_registry *reg = test_bare_registry(state_dir);

	reg->pool = (struct dmr_pool *)&pool_st;
	reg->tid = 41;
	reg->next_vol_id = 50;
	return reg;
}

/* Run a point job on VM "p" to its end; its record. */
static struct json_object *run_point_as(struct dmr_agent *a, bool application)
{
	struct json_object *o = NULL, *v;
	uint64_t id;

	assert_int_equal(dmr_vm_busy_acquire(a, "p"), 0);
	assert_int_equal(dmr_point_job_start(a, "p", application, NULL, "before upgrade", NULL, 0,
					     &id), 0);
	for (int k = 0; k < 5000; k++) {
		assert_int_equal(dmr_job_get_json(a, id, &o), 0);
		assert_true(json_object_object_get_ex(o, "job_state", &v));
		if (json_object_get_int(v) >= 7)
			break;
		json_object_put(o);
		o = NULL;
		usleep(1000);
	}
	assert_non_null(o);
	/* The job gave the VM back. */
	assert_int_equal(dmr_vm_busy_acquire(a, "p"), 0);
	dmr_vm_busy_release(a, "p");
	return o;
}

static struct json_object *run_point(struct dmr_agent *a)
{
	return run_point_as(a, false);
}

static bool has_step(struct json_object *job, const char *name)
{
	struct json_object *steps, *n;

	assert_true(json_object_object_get_ex(job, "steps", &steps));
	for (size_t i = 0; i < json_object_array_length(steps); i++)
		if (json_object_object_get_ex(json_object_array_get_idx(steps, i), "name", &n) &&
		    dmr_streq(json_object_get_string(n), name))
			return true;
	return false;
}

/* ---- tests ------------------------------------------------------------ */

static void test_thin_point_is_one_group(void **st)
{
	struct dmr_registry *reg = pool_registry();
	struct dmr_agent a = { .state_dir = state_dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("p", false, 2, 0);
	struct json_object *job, *v;
	char name[DMR_DM_NAME_SIZE];

	(void)st;
	the_reg = reg;
	for (size_t i = 0; i < 2; i++) {
		char uuid[DMR_DM_UUID_SIZE];

		snprintf(name, sizeof(name), "dmrep-thin-%u", vm->disks[i].thin_id);
		snprintf(uuid, sizeof(uuid), "DMREP-thin-%u", vm->disks[i].thin_id);
		dev_up(name, uuid);
		assert_int_equal(dmr_vm_disk_dm_name("p", vm->disks[i].name, name), 0);
		assert_int_equal(dmr_vm_disk_dm_uuid("p", vm->disks[i].name, uuid), 0);
		dev_up(name, uuid);
	}
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
	job = run_point(&a);

	assert_int_equal(group_calls, 1);
	assert_int_equal(group_n, 2);
	/* The live volumes' own devices are suspended (the thin targets), not
	 * the stable devices stacked on them. */
	for (size_t i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "dmrep-thin-%u", vm->disks[i].thin_id);
		assert_string_equal(group_names[i], name);
		assert_int_equal(group_origins[i], vm->disks[i].thin_id);
	}
	/* Recorded as pending, with the transaction that proves it, before
	 * the pool was touched; crash-consistent: lockfs as usual. */
	assert_int_equal(group_points_seen, 1);
	assert_true(group_pending_seen);
	assert_int_equal(group_old_tid, 41);
	assert_int_equal(group_new_tid, 42);
	assert_int_equal(group_flags, 0);

	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->points[0].id, 1);
	assert_int_equal(vm->points[0].pending_tid, 0);
	assert_string_equal(vm->points[0].label, "before upgrade");
	assert_int_equal(vm->points[0].vol_ids[0], group_new[0]);
	assert_int_equal(vm->points[0].vol_ids[1], group_new[1]);
	assert_int_not_equal(group_new[0], group_new[1]);
	assert_int_equal(reg->tid, 42);

	assert_true(json_object_object_get_ex(job, "job_state", &v));
	assert_int_equal(json_object_get_int(v), 7);
	assert_true(json_object_object_get_ex(job, "point", &v));
	assert_int_equal(json_object_get_int64(v), 1);
	assert_true(has_step(job, "snapshot"));
	assert_true(has_step(job, "volumes-suspended"));
	json_object_put(job);
	dmr_jobs_close(&a);
	test_bare_free(reg);
}

/* An application point of a libvirt VM without --qga: frozen through
 * libvirt (its test driver's domain "test": two filesystems) around the
 * group, which then skips lockfs; a domain that is not there fails the
 * job with 32777 before any volume is touched, no point left. */
static void test_application_through_libvirt(void **st)
{
	struct dmr_registry *reg = pool_registry();
	struct dmr_agent a = { .state_dir = state_dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("p", false, 1, 0);
	struct json_object *job, *v;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

	(void)st;
	the_reg = reg;
	free(vm->qmp);
	free(vm->qga);
	free(vm->exec_shim);
	free(vm->libvirt);
	free(vm->libvirt_uri);
	vm->qmp = vm->qga = vm->exec_shim = NULL;
	vm->libvirt = strdup("test");
	vm->libvirt_uri = strdup("test:///default");
	snprintf(name, sizeof(name), "dmrep-thin-%u", vm->disks[0].thin_id);
	snprintf(uuid, sizeof(uuid), "DMREP-thin-%u", vm->disks[0].thin_id);
	dev_up(name, uuid);
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);

	job = run_point_as(&a, true);
	assert_true(json_object_object_get_ex(job, "job_state", &v));
	assert_int_equal(json_object_get_int(v), 7);
	assert_true(json_object_object_get_ex(job, "frozen_filesystems", &v));
	assert_int_equal(json_object_get_int(v), 2);
	assert_true(has_step(job, "frozen"));
	assert_int_equal(group_calls, 1);
	assert_int_equal(group_flags, DMR_DM_SKIP_LOCKFS);
	assert_int_equal(vm->n_points, 1);
	assert_true(vm->points[0].application);
	json_object_put(job);

	pthread_mutex_lock(&reg->lock);
	free(vm->libvirt);
	vm->libvirt = strdup("nosuch");
	pthread_mutex_unlock(&reg->lock);
	job = run_point_as(&a, true);
	assert_true(json_object_object_get_ex(job, "error_code", &v));
	assert_int_equal(json_object_get_int(v), DMR_RC_UNAVAILABLE);
	assert_true(json_object_object_get_ex(job, "error_description", &v));
	assert_non_null(strstr(json_object_get_string(v), "could not freeze"));
	assert_int_equal(group_calls, 1);
	assert_int_equal(vm->n_points, 1);
	json_object_put(job);
	dmr_jobs_close(&a);
	test_bare_free(reg);
}

/* Disk 0's stable device is an older dmrep's (the thin target itself,
 * not moved onto the stack): it is what gets suspended.  Disk 1 has no
 * device at all: nothing to suspend (NULL), its volume is snapshot as it
 * is. */
static void test_thin_point_legacy_and_inactive(void **st)
{
	struct dmr_registry *reg = pool_registry();
	struct dmr_agent a = { .state_dir = state_dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("p", false, 2, 0);
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	struct json_object *job;

	(void)st;
	the_reg = reg;
	assert_int_equal(dmr_vm_disk_dm_name("p", vm->disks[0].name, name), 0);
	assert_int_equal(dmr_vm_disk_dm_uuid("p", vm->disks[0].name, uuid), 0);
	dev_up(name, uuid);
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
	job = run_point(&a);
	assert_int_equal(group_calls, 1);
	assert_string_equal(group_names[0], name);
	assert_string_equal(group_names[1], "");
	assert_int_equal(vm->n_points, 1);
	json_object_put(job);
	dmr_jobs_close(&a);
	test_bare_free(reg);
}

static void test_thin_point_failed_leaves_nothing(void **st)
{
	struct dmr_registry *reg = pool_registry();
	struct dmr_agent a = { .state_dir = state_dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("p", false, 2, 0);
	struct json_object *job, *v;

	(void)st;
	the_reg = reg;
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
	group_fail = -EIO;
	job = run_point(&a);

	assert_int_equal(group_calls, 1);
	assert_int_equal(vm->n_points, 0);
	assert_int_equal(reg->tid, 41);
	assert_true(json_object_object_get_ex(job, "job_state", &v));
	assert_int_equal(json_object_get_int(v), 10);
	assert_true(json_object_object_get_ex(job, "error_code", &v));
	assert_int_equal(json_object_get_int(v), dmr_rc_from_errno(-EIO));
	assert_true(json_object_object_get_ex(job, "error_description", &v));
	assert_string_equal(json_object_get_string(v), "cannot make the point: Input/output error");
	json_object_put(job);

	/* The next one is made, in the transaction the failed one did not
	 * take. */
	group_fail = 0;
	job = run_point(&a);
	assert_int_equal(group_old_tid, 41);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(reg->tid, 42);
	json_object_put(job);
	dmr_jobs_close(&a);
	test_bare_free(reg);
}

static void test_room_and_extras(void **st)
{
	struct dmr_registry *reg = pool_registry();
	struct dmr_vm *thin = test_make_vm("p", false, 1, 0), *classic = test_make_vm("c", true, 1, 0);
	struct json_object *o;
	char *why = NULL;

	(void)st;
	/* Thin: room while 1/32 of the data and 1/16 of the metadata is
	 * left, refused with why otherwise. */
	pool_st.total_data_blocks = 3200;
	pool_st.used_data_blocks = 3100;
	pool_st.total_meta_blocks = 160;
	pool_st.used_meta_blocks = 150;
	assert_int_equal(dmr_point_room(reg, thin, NULL, &why), 0);
	assert_null(why);
	pool_st.used_data_blocks = 3101;
	assert_int_equal(dmr_point_room(reg, thin, NULL, &why), -ENOSPC);
	assert_string_equal(why, "the pool is nearly full (data 3101/3200, metadata 150/160 blocks)");
	free(why);
	why = NULL;
	pool_st.used_data_blocks = 0;
	/* A damaged pool is a state to repair (32775), not a lack of room. */
	pool_st.read_only = true;
	assert_int_equal(dmr_point_room(reg, thin, NULL, &why), -DMR_E_STATE);
	assert_string_equal(why, "the pool is read-only (needs_check): run 'dmrep pool repair'");
	free(why);
	why = NULL;
	pool_st.read_only = false;
	pool_st.out_of_data_space = true;
	assert_int_equal(dmr_point_room(reg, thin, NULL, &why), -ENOSPC);
	assert_string_equal(why, "the pool is out of data space: remove points or VMs, or grow its "
			   "data device");
	free(why);
	why = NULL;
	pool_st.out_of_data_space = false;
	pool_st_r = -EIO;
	assert_int_equal(dmr_point_room(reg, thin, NULL, &why), -DMR_E_STATE);
	assert_string_equal(why, "cannot read pool status (Input/output error): run 'dmrep pool repair'");
	free(why);

	/* cow_devices, pinned points and cow_used_percent are classic's. */
	assert_false(dmr_point_takes_cow_devices(thin));
	assert_true(dmr_point_takes_cow_devices(classic));
	assert_int_equal(dmr_point_cow_device_check(thin, "/dev/sdz", false, NULL), -EOPNOTSUPP);
	classic->n_layers = 1;
	classic->layers = calloc(1, sizeof(*classic->layers));
	classic->layers[0].point = 3;
	assert_true(dmr_point_pinned(classic, 3));
	assert_false(dmr_point_pinned(classic, 4));
	thin->n_layers = 1;
	thin->layers = calloc(1, sizeof(*thin->layers));
	thin->layers[0].point = 3;
	assert_false(dmr_point_pinned(thin, 3));
	{
		struct dmr_point pt = { .id = 3, .cow_pct = 42 };

		o = json_object_new_object();
		dmr_point_api_extras(thin, &pt, o);
		assert_false(json_object_object_get_ex(o, "cow_used_percent", NULL));
		dmr_point_api_extras(classic, &pt, o);
		assert_true(json_object_object_get_ex(o, "cow_used_percent", NULL));
		assert_int_equal(json_object_get_int(json_object_object_get(o, "cow_used_percent")), 42);
		json_object_put(o);
	}
	dmr_vm_free(thin);
	dmr_vm_free(classic);
	test_bare_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_thin_point_is_one_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thin_point_legacy_and_inactive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_application_through_libvirt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thin_point_failed_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_room_and_extras, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
