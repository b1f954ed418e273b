/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: recovery at start (agent/engine/recovery.c) without the
 * socket, over a fake kernel.  The dm/ and pool calls the agent makes are
 * replaced (-Wl,--wrap, see wrap.mk) by a table of devices, each running a
 * thin id (its live table) and maybe holding a loaded one; every call that
 * changes a device or the pool is recorded in order.  Each case writes the
 * state file a crash would leave, sets up the devices, runs
 * dmr_registry_open + dmr_recovery_run, and checks the catalog in memory,
 * the state file, and the calls made: for every intent, the case where
 * recovery rolls it forward and the one where it rolls it back (or, for
 * the operations that only ever finish, where it cannot and keeps the
 * intent for the next start).  What the kernel does is the lab's (t-55,
 * t-60, t-90).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libvirt/libvirt.h>

#include "agent/core/agent.h"
#include "agent/engine/recovery.h"
#include "agent/store/registry.h"
#include "common/json.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"

/* ---- the fake kernel ------------------------------------------------- */

struct fdev {
	char name[DMR_DM_NAME_SIZE];
	char uuid[DMR_DM_UUID_SIZE];
	uint32_t minor;         /* its number: 253:minor */
	bool linear;            /* live table: linear over 253:live, else thin id live */
	uint32_t live;
	long inactive;          /* loaded table's id or minor, or -1 */
	bool inactive_linear;
	bool suspended;
};

static struct {
	struct fdev dev[24];
	size_t n;
	uint32_t next_minor;
	uint64_t pool_tid;
	int delete_batch_errno; /* dmr_thin_delete_batch fails with it */
	int remove_errno;       /* dmr_dm_remove fails with it */
	char calls[4096];       /* "op arg;" in order */
} k;

static char state_dir[64];
static struct dmr_pool *const FAKE_POOL = (struct dmr_pool *)0x1;

static void call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void call(const char *fmt, ...)
{
	size_t len = strlen(k.calls);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(k.calls + len, sizeof(k.calls) - len, fmt, ap);
	va_end(ap);
	len = strlen(k.calls);
	snprintf(k.calls + len, sizeof(k.calls) - len, ";");
}

static struct fdev *dev_find(const char *name)
{
	for (size_t i = 0; i < k.n; i++)
		if (dmr_streq(k.dev[i].name, name))
			return &k.dev[i];
	return NULL;
}

static struct fdev *dev_by_minor(uint32_t minor)
{
	for (size_t i = 0; i < k.n; i++)
		if (k.dev[i].minor == minor)
			return &k.dev[i];
	return NULL;
}

/* The thin id a table shows: its own, or through the device below. */
static uint32_t id_through(bool linear, uint32_t v)
{
	struct fdev *below;

	if (!linear)
		return v;
	below = dev_by_minor(v);
	assert_non_null(below);
	return id_through(below->linear, below->live);
}

/* Which thin id device name shows now (0: no such device). */
static uint32_t shows(const char *name)
{
	struct fdev *d = dev_find(name);

	return d ? id_through(d->linear, d->live) : 0;
}

static struct fdev *dev_add(const char *name, const char *uuid, uint32_t live)
{
	struct fdev *d = &k.dev[k.n++];

	assert_true(k.n <= 24);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
	d->minor = ++k.next_minor;
	d->linear = false;
	d->live = live;
	d->inactive = -1;
	d->suspended = false;
	return d;
}

/* Volume id's own device (dmrep-thin-ID), unless it is up. */
static struct fdev *vol_add(uint32_t id)
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	struct fdev *d;

	snprintf(name, sizeof(name), "dmrep-thin-%u", id);
	snprintf(uuid, sizeof(uuid), "DMREP-thin-%u", id);
	d = dev_find(name);
	return d ? d : dev_add(name, uuid, id);
}

/* A stable device on the stack: linear over volume id's device. */
static struct fdev *stack_add(const char *name, const char *uuid, uint32_t id)
{
	uint32_t below = vol_add(id)->minor;
	struct fdev *d = dev_add(name, uuid, below);

	d->linear = true;
	return d;
}

/* A table as the kernel prints it: "thin ID" (the pool is implied) or
 * "linear 253:MINOR 0". */
static int table_of(bool linear, uint32_t v, struct dmr_table **ret)
{
	struct dmr_table *t = dmr_table_new();
	char p[32];

	if (!t)
		return -ENOMEM;
	snprintf(p, sizeof(p), linear ? "253:%u 0" : "%u", v);
	assert_int_equal(dmr_table_append(t, 2048, linear ? "linear" : "thin", p), 0);
	*ret = t;
	return 0;
}

/* Parse a table the agent built back into (linear, value). */
static void parse_table(const struct dmr_table *t, bool *linear, uint32_t *v)
{
	uint32_t maj;

	assert_int_equal(t->count, 1);
	*linear = dmr_table_linear_dev(t, &maj, v) == 0;
	if (*linear)
		assert_int_equal(maj, 253);
	else
		*v = (uint32_t)strtoul(t->targets[0].params, NULL, 10);
}

int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret);
int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret)
{
	struct fdev *d = dev_find(name);

	memset(ret, 0, sizeof(*ret));
	if (!d)
		return 0;
	ret->exists = true;
	ret->suspended = d->suspended;
	ret->live_table = true;
	ret->inactive_table = d->inactive >= 0;
	ret->major = 253;
	ret->minor = d->minor;
	snprintf(ret->name, sizeof(ret->name), "%s", d->name);
	snprintf(ret->uuid, sizeof(ret->uuid), "%s", d->uuid);
	return 0;
}

int __wrap_dmr_dm_create(const char *name, const char *uuid, const struct dmr_table *t,
			 unsigned flags);
int __wrap_dmr_dm_create(const char *name, const char *uuid, const struct dmr_table *t,
			 unsigned flags)
{
	struct fdev *d;
	bool linear;
	uint32_t v;

	if (dev_find(name))
		return -EEXIST;
	parse_table(t, &linear, &v);
	d = dev_add(name, uuid, v);
	d->linear = linear;
	call("create %s %u", name, shows(name));
	return 0;
}

int __wrap_dmr_dm_check_uuid(const char *name, const char *uuid);
int __wrap_dmr_dm_check_uuid(const char *name, const char *uuid)
{
	struct fdev *d = dev_find(name);

	return !d ? -ENOENT : dmr_streq(d->uuid, uuid) ? 0 : -EEXIST;
}

int __wrap_dmr_dm_owned(const char *name);
int __wrap_dmr_dm_owned(const char *name)
{
	struct fdev *d = dev_find(name);

	return !d ? -ENOENT : strncmp(d->uuid, DMR_UUID_PREFIX, 6) == 0 ? 0 : -EPERM;
}

int __wrap_dmr_dm_list(const char *prefix, struct dmr_dm_entry **ret, size_t *ret_n);
int __wrap_dmr_dm_list(const char *prefix, struct dmr_dm_entry **ret, size_t *ret_n)
{
	struct dmr_dm_entry *e = calloc(k.n + 1, sizeof(*e));
	size_t n = 0;

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < k.n; i++) {
		if (strncmp(k.dev[i].uuid, prefix, strlen(prefix)) != 0)
			continue;
		snprintf(e[n].name, sizeof(e[n].name), "%s", k.dev[i].name);
		snprintf(e[n].uuid, sizeof(e[n].uuid), "%s", k.dev[i].uuid);
		n++;
	}
	*ret = e;
	*ret_n = n;
	return 0;
}

int __wrap_dmr_dm_table(const char *name, bool inactive, struct dmr_table **ret);
int __wrap_dmr_dm_table(const char *name, bool inactive, struct dmr_table **ret)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	if (inactive && d->inactive < 0)
		return -ENODATA;
	return inactive ? table_of(d->inactive_linear, (uint32_t)d->inactive, ret) :
			  table_of(d->linear, d->live, ret);
}

/* A group create (the volumes' devices): logged as the activations they
 * are, one per device, "activate NAME ID". */
int __wrap_dmr_dm_create_group(size_t n, const char *const *names, const char *const *uuids,
			       const struct dmr_table *const *tables, unsigned flags);
int __wrap_dmr_dm_create_group(size_t n, const char *const *names, const char *const *uuids,
			       const struct dmr_table *const *tables, unsigned flags)
{
	for (size_t i = 0; i < n; i++) {
		struct fdev *d;
		bool linear;
		uint32_t v;

		if (dev_find(names[i]))
			return -EEXIST;
		parse_table(tables[i], &linear, &v);
		d = dev_add(names[i], uuids[i], v);
		d->linear = linear;
		call("activate %s %u", names[i], shows(names[i]));
	}
	return 0;
}

int __wrap_dmr_dm_remove(const char *name, unsigned retries);
int __wrap_dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries);
int __wrap_dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries)
{
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		int q = dev_find(names[i]) ? __wrap_dmr_dm_remove(names[i], retries) : 0;

		r = r ?: q;
	}
	return r;
}

int __wrap_dmr_dm_load(const char *name, const struct dmr_table *t, unsigned flags);
int __wrap_dmr_dm_load(const char *name, const struct dmr_table *t, unsigned flags)
{
	struct fdev *d = dev_find(name);
	uint32_t v;

	if (!d)
		return -ENXIO;
	parse_table(t, &d->inactive_linear, &v);
	d->inactive = v;
	/* Logged as the thin id it will show: "load D0 1", whatever the stack. */
	call("load %s %u", name, id_through(d->inactive_linear, v));
	return 0;
}

int __wrap_dmr_dm_clear(const char *name);
int __wrap_dmr_dm_clear(const char *name)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	d->inactive = -1;
	call("clear %s", name);
	return 0;
}

int __wrap_dmr_dm_suspend(const char *name, unsigned flags);
int __wrap_dmr_dm_suspend(const char *name, unsigned flags)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	d->suspended = true;
	call("suspend %s", name);
	return 0;
}

static int resume(const char *name)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	if (d->inactive >= 0) {
		d->live = (uint32_t)d->inactive;
		d->linear = d->inactive_linear;
	}
	d->inactive = -1;
	d->suspended = false;
	call("resume %s", name);
	return 0;
}

int __wrap_dmr_dm_resume(const char *name);
int __wrap_dmr_dm_resume(const char *name)
{
	return resume(name);
}

int __wrap_dmr_dm_resume_retry(const char *name);
int __wrap_dmr_dm_resume_retry(const char *name)
{
	return resume(name);
}

int __wrap_dmr_dm_remove(const char *name, unsigned retries);
int __wrap_dmr_dm_remove(const char *name, unsigned retries)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	if (k.remove_errno)
		return -k.remove_errno;
	for (size_t i = 0; i < k.n; i++)
		if (k.dev[i].linear && k.dev[i].live == d->minor)
			return -EBUSY; /* open: a device stands on it */
	call("remove %s", name);
	*d = k.dev[--k.n];
	return 0;
}

int __wrap_dmr_dm_rename(const char *name, const char *new_name);
int __wrap_dmr_dm_rename(const char *name, const char *new_name)
{
	struct fdev *d = dev_find(name);

	if (!d)
		return -ENXIO;
	call("rename %s %s", name, new_name);
	snprintf(d->name, sizeof(d->name), "%s", new_name);
	return 0;
}

int __wrap_dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret);
int __wrap_dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret)
{
	assert_ptr_equal(pool, FAKE_POOL);
	memset(ret, 0, sizeof(*ret));
	ret->transaction_id = k.pool_tid;
	return 0;
}

int __wrap_dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id);
int __wrap_dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id)
{
	char name[DMR_DM_NAME_SIZE];

	assert_ptr_equal(pool, FAKE_POOL);
	snprintf(name, sizeof(name), "dmrep-thin-%u", id);
	if (dev_find(name))
		return -EBUSY; /* the pool refuses to delete an active volume */
	call("delete %u", id);
	return 0;
}

int __wrap_dmr_thin_delete_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
				 uint64_t old_tid, uint64_t new_tid);
int __wrap_dmr_thin_delete_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
				 uint64_t old_tid, uint64_t new_tid)
{
	assert_ptr_equal(pool, FAKE_POOL);
	if (k.delete_batch_errno)
		return -k.delete_batch_errno;
	for (size_t i = 0; i < n; i++) {
		char name[DMR_DM_NAME_SIZE];

		snprintf(name, sizeof(name), "dmrep-thin-%u", ids[i]);
		if (dev_find(name))
			return -EBUSY;
	}
	for (size_t i = 0; i < n; i++)
		call("delete %u", ids[i]);
	k.pool_tid = new_tid;
	return 0;
}

int __wrap_dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
			     uint32_t id, uint64_t sectors, bool read_only);
int __wrap_dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
			     uint32_t id, uint64_t sectors, bool read_only)
{
	assert_ptr_equal(pool, FAKE_POOL);
	dev_add(name, uuid, id);
	call("activate %s %u", name, id);
	return 0;
}

int __wrap_dmr_thin_table(const struct dmr_pool *pool, uint32_t id, uint64_t sectors,
			  struct dmr_table **ret);
int __wrap_dmr_thin_table(const struct dmr_pool *pool, uint32_t id, uint64_t sectors,
			  struct dmr_table **ret)
{
	assert_ptr_equal(pool, FAKE_POOL);
	return table_of(false, id, ret);
}

int __wrap_dmr_thin_table_id(const struct dmr_pool *pool, const struct dmr_table *t,
			     uint32_t *ret);
int __wrap_dmr_thin_table_id(const struct dmr_pool *pool, const struct dmr_table *t,
			     uint32_t *ret)
{
	bool linear;
	uint32_t v;

	parse_table(t, &linear, &v);
	if (linear)
		return -EPROTO;
	*ret = v;
	return 0;
}

/* ---- a VM as a crash left it ----------------------------------------- */

#define D0 "dmrep-vm1:d0"
#define D1 "dmrep-vm1:d1"
#define U0 "DMREP-disk-vm1:d0"
#define U1 "DMREP-disk-vm1:d1"
#define T0 "dmrep-vm1:test:d0"
#define T1 "dmrep-vm1:test:d1"
#define TU0 "DMREP-test-vm1:d0"
#define TU1 "DMREP-test-vm1:d1"

/* Thin VM vm1: disks d0, d1 on thin ids 1, 2; point 1 on 3, 4. */
static const char *const base_vm =
	"{\"schema\":1,\"name\":\"vm1\",\"backend\":\"thin\",\"state\":\"replicating\","
	"\"test_failover\":false,\"qmp\":null,\"qga\":null,\"exec_shim\":null,"
	"\"next_point_id\":2,\"keep_last\":0,\"max_age_sec\":0,\"import_tid\":0,"
	"\"importing\":false,\"failover_point\":0,\"test_point\":0,\"intent\":\"\","
	"\"intent_point\":0,\"intent_guest_ran\":false,\"overlay_ids\":null,\"test_ids\":null,"
	"\"cow_size\":0,\"max_points\":0,\"layers\":[],"
	"\"disks\":[{\"name\":\"d0\",\"size_bytes\":1048576,\"thin_id\":1,\"source\":null},"
	"{\"name\":\"d1\",\"size_bytes\":1048576,\"thin_id\":2,\"source\":null}],"
	"\"points\":[{\"id\":1,\"created_usec\":1,\"consistency\":\"crash\",\"label\":\"\","
	"\"valid\":true,\"pending_tid\":0,\"thin_ids\":[3,4]}]}";

static struct dmr_agent agent;

static int setup(void **st)
{
	char path[128];

	memset(&k, 0, sizeof(k));
	snprintf(state_dir, sizeof(state_dir), "/tmp/dmrep-test-recovery.XXXXXX");
	assert_non_null(mkdtemp(state_dir));
	snprintf(path, sizeof(path), "%s/vms", state_dir);
	assert_int_equal(dmr_mkdir_p(path, 0700), 0);
	memset(&agent, 0, sizeof(agent));
	agent.state_dir = state_dir;
	return 0;
}

static int teardown(void **st)
{
	char cmd[128];

	if (agent.reg) {
		agent.reg->pool = NULL;
		dmr_registry_close(&agent);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct json_object *ids(uint32_t a, uint32_t b)
{
	struct json_object *o = json_object_new_array();

	json_object_array_add(o, json_object_new_int64(a));
	json_object_array_add(o, json_object_new_int64(b));
	return o;
}

/* Write vm1's state file: base_vm with edits applied by the caller. */
static void vm_write(struct json_object *o)
{
	char path[128];
	const char *s = json_object_to_json_string(o);

	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	assert_int_equal(dmr_write_file_atomic(path, s, strlen(s), 0600), 0);
	json_object_put(o);
}

static struct json_object *vm_base(void)
{
	struct json_object *o = NULL;

	assert_int_equal(dmr_json_parse_object(base_vm, strlen(base_vm), &o), 0);
	return o;
}

static void add_pending_point(struct json_object *o, uint64_t id, uint64_t tid, uint32_t a,
			      uint32_t b)
{
	struct json_object *pts, *p = json_object_new_object();

	assert_true(json_object_object_get_ex(o, "points", &pts));
	json_object_object_add(p, "id", json_object_new_int64((int64_t)id));
	json_object_object_add(p, "created_usec", json_object_new_int64(2));
	json_object_object_add(p, "consistency", json_object_new_string("crash"));
	json_object_object_add(p, "label", json_object_new_string(""));
	json_object_object_add(p, "valid", json_object_new_boolean(true));
	json_object_object_add(p, "pending_tid", json_object_new_int64((int64_t)tid));
	json_object_object_add(p, "thin_ids", ids(a, b));
	json_object_array_add(pts, p);
	json_object_object_add(o, "next_point_id", json_object_new_int64((int64_t)id + 1));
}

static void set_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, json_object_new_string(v));
}

static void set_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static void set_bool(struct json_object *o, const char *key, bool v)
{
	json_object_object_add(o, key, json_object_new_boolean(v));
}

/* Load the catalog and recover, as dmrepd does, with the pool at tid. */
static struct dmr_vm *recover(uint64_t pool_tid)
{
	k.pool_tid = pool_tid;
	assert_int_equal(dmr_registry_open(&agent), 0);
	/* Loading touches no device. */
	assert_string_equal(k.calls, "");
	agent.reg->pool = FAKE_POOL;
	assert_int_equal(dmr_recovery_run(&agent), 0);
	return dmr_reg_vm_find(agent.reg, "vm1");
}

static struct dmr_vm *recover_ok(uint64_t pool_tid)
{
	struct dmr_vm *vm = recover(pool_tid);

	assert_non_null(vm);
	return vm;
}

/* The state file as it is now. */
static struct json_object *state_file(void)
{
	char path[128];
	_cleanup_free_ char *buf = NULL;
	struct json_object *o = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	if (dmr_read_file(path, 1 << 20, &buf, &len) < 0)
		return NULL;
	assert_int_equal(dmr_json_parse_object(buf, len, &o), 0);
	return o;
}

static const char *file_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

static bool file_null(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return !json_object_object_get_ex(o, key, &v) || !v;
}

static size_t file_points(struct json_object *o)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, "points", &v));
	return json_object_array_length(v);
}

static void calls_are(const char *want)
{
	if (strcmp(k.calls, want) != 0)
		fprintf(stderr, "calls: %s\nwant:  %s\n", k.calls, want);
	assert_string_equal(k.calls, want);
}

/* A running VM: the live volumes' devices up (always), and both stable
 * devices on the stack over volumes a and b (the reboot case adds none). */
static void stable_on(uint32_t a, uint32_t b)
{
	vol_add(1);
	vol_add(2);
	stack_add(D0, U0, a);
	stack_add(D1, U1, b);
}

/* ---- point create (pending_tid) -------------------------------------- */

/* The pool's transaction id reached the point's: the snapshots exist. */
static void test_point_forward(void **st)
{
	struct json_object *o = vm_base(), *f;
	struct dmr_vm *vm;

	add_pending_point(o, 2, 5, 5, 6);
	vm_write(o);
	stable_on(1, 2);
	vm = recover_ok(5);
	assert_non_null(vm);
	assert_int_equal(vm->n_points, 2);
	assert_int_equal(vm->points[1].id, 2);
	assert_int_equal(vm->points[1].pending_tid, 0);
	assert_int_equal(agent.reg->tid, 5);
	calls_are("");
	f = state_file();
	assert_int_equal(file_points(f), 2);
	assert_int_equal(json_object_get_int64(json_object_object_get(
				 json_object_array_get_idx(json_object_object_get(f, "points"), 1),
				 "pending_tid")), 0);
	json_object_put(f);
}

/* It did not: the point goes, with whatever snapshots it made. */
static void test_point_back(void **st)
{
	struct json_object *o = vm_base(), *f;
	struct dmr_vm *vm;

	add_pending_point(o, 2, 5, 5, 6);
	vm_write(o);
	stable_on(1, 2);
	vm = recover_ok(4);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->points[0].id, 1);
	assert_int_equal(agent.reg->tid, 4);
	calls_are("delete 5;delete 6;");
	f = state_file();
	assert_int_equal(file_points(f), 1);
	json_object_put(f);
}

/* ---- InitiateFailover ------------------------------------------------- */

static struct json_object *vm_initiating(void)
{
	struct json_object *o = vm_base();

	set_str(o, "state", "failover-in-progress");
	set_str(o, "intent", "initiate");
	set_u64(o, "intent_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	return o;
}

/* Every disk had switched to its overlay: the failover stands. */
static void test_initiate_forward(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_initiating());
	stable_on(7, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_RECOVERED);
	assert_int_equal(vm->failover_point, 1);
	assert_string_equal(vm->intent, "");
	assert_non_null(vm->overlay_ids);
	assert_int_equal(vm->overlay_ids[0], 7);
	calls_are("");
	f = state_file();
	assert_string_equal(file_str(f, "state"), "recovered");
	assert_string_equal(file_str(f, "intent"), "");
	assert_int_equal(json_object_get_int64(json_object_object_get(f, "failover_point")), 1);
	json_object_put(f);
}

/* One disk had switched, one had not: both back on the live volumes,
 * the overlays deleted, the VM replicating again. */
static void test_initiate_back(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_initiating());
	stable_on(7, 2);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_int_equal(vm->failover_point, 0);
	assert_string_equal(vm->intent, "");
	assert_null(vm->overlay_ids);
	calls_are("load " D0 " 1;suspend " D0 ";resume " D0 ";remove dmrep-thin-7;delete 7;delete 8;");
	assert_int_equal(shows(D0), 1);
	assert_int_equal(shows(D1), 2);
	assert_true(dev_find(D0)->linear);
	f = state_file();
	assert_string_equal(file_str(f, "state"), "replicating");
	assert_string_equal(file_str(f, "intent"), "");
	assert_true(file_null(f, "overlay_ids"));
	json_object_put(f);
}

/* Crashed before the swap: no disk had switched; the overlays go. */
static void test_initiate_back_unswitched(void **st)
{
	struct dmr_vm *vm;

	vm_write(vm_initiating());
	stable_on(1, 2);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_null(vm->overlay_ids);
	assert_string_equal(vm->intent, "");
	calls_are("delete 7;delete 8;");
}

/* ---- a libvirt guest the interrupted swap paused ------------------------ */

/* libvirt's test driver (test:///default) stands in for libvirtd: its
 * domain "test" runs at first, and every connection of this process sees
 * the same domain until the last one closes, so the case's own connection
 * both sets the domain up and keeps its state for the agent's shim. */
struct lv {
	virConnectPtr conn;
	virDomainPtr dom;
};

static void lv_open(struct lv *l)
{
	l->conn = virConnectOpen("test:///default");
	assert_non_null(l->conn);
	l->dom = virDomainLookupByName(l->conn, "test");
	assert_non_null(l->dom);
}

static int lv_state(struct lv *l)
{
	int state = -1, reason;

	assert_int_equal(virDomainGetState(l->dom, &state, &reason, 0), 0);
	return state;
}

static void lv_close(struct lv *l)
{
	virDomainFree(l->dom);
	virConnectClose(l->conn);
}

/* vm1 as an initiate left it, its guest the libvirt domain "test". */
static struct json_object *vm_initiating_libvirt(bool guest_ran)
{
	struct json_object *o = vm_initiating();

	set_str(o, "libvirt", "test");
	set_str(o, "libvirt_uri", "test:///default");
	set_bool(o, "intent_guest_ran", guest_ran);
	return o;
}

/* The swap paused a running domain and the agent died: recovery resumes
 * it through libvirt, as it does a QMP guest. */
static void test_libvirt_guest_resumed(void **st)
{
	struct dmr_vm *vm;
	struct lv l;

	lv_open(&l);
	assert_int_equal(virDomainSuspend(l.dom), 0);
	vm_write(vm_initiating_libvirt(true));
	stable_on(7, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_RECOVERED);
	assert_string_equal(vm->libvirt, "test");
	assert_int_equal(lv_state(&l), VIR_DOMAIN_RUNNING);
	lv_close(&l);
}

/* The operator had paused the domain before the failover began (so the
 * swap did not pause it): it stays paused. */
static void test_libvirt_operator_paused(void **st)
{
	struct lv l;

	lv_open(&l);
	assert_int_equal(virDomainSuspend(l.dom), 0);
	vm_write(vm_initiating_libvirt(false));
	stable_on(7, 8);
	(void)recover_ok(0);
	assert_int_equal(lv_state(&l), VIR_DOMAIN_PAUSED);
	lv_close(&l);
}

/* The domain was shut down meanwhile: nothing starts it again. */
static void test_libvirt_shut_off_left(void **st)
{
	struct lv l;

	lv_open(&l);
	assert_int_equal(virDomainDestroy(l.dom), 0);
	vm_write(vm_initiating_libvirt(true));
	stable_on(7, 8);
	(void)recover_ok(0);
	assert_int_equal(lv_state(&l), VIR_DOMAIN_SHUTOFF);
	lv_close(&l);
}

/* ---- RevertFailover (always finished) ---------------------------------- */

static struct json_object *vm_reverting(void)
{
	struct json_object *o = vm_base();

	set_str(o, "state", "failover-in-progress");
	set_str(o, "intent", "revert");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	return o;
}

/* Still on the overlays: both go back to the live volumes, the overlays
 * are deleted. */
static void test_revert_forward(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_reverting());
	stable_on(7, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_string_equal(vm->intent, "");
	assert_null(vm->overlay_ids);
	calls_are("load " D0 " 1;suspend " D0 ";resume " D0 ";load " D1 " 2;suspend " D1
		  ";resume " D1 ";remove dmrep-thin-7;remove dmrep-thin-8;delete 7;delete 8;");
	assert_null(dev_find("dmrep-thin-7"));
	assert_non_null(dev_find("dmrep-thin-1"));
	f = state_file();
	assert_string_equal(file_str(f, "state"), "replicating");
	assert_string_equal(file_str(f, "intent"), "");
	json_object_put(f);
}

/* A device has a stable device's name but another UUID: nothing of the
 * VM is touched, the intent stays for the next start. */
static void test_revert_kept(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_reverting());
	vol_add(1);
	vol_add(2);
	stack_add(D0, U0, 7);
	dev_add(D1, "DMREP-disk-other", 8);
	vm = recover_ok(0);
	assert_string_equal(vm->intent, "revert");
	assert_int_equal(vm->state, DMR_VM_FAILOVER_IN_PROGRESS);
	assert_non_null(vm->overlay_ids);
	calls_are("");
	f = state_file();
	assert_string_equal(file_str(f, "intent"), "revert");
	assert_false(file_null(f, "overlay_ids"));
	json_object_put(f);
}

/* ---- CommitFailover (always finished) ----------------------------------- */

static struct json_object *vm_committing(void)
{
	struct json_object *o = vm_base();

	set_str(o, "state", "recovered");
	set_str(o, "intent", "commit");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	add_pending_point(o, 2, 0, 5, 6);
	return o;
}

/* The old live volumes and the newer point go; the overlays are the
 * disks' volumes now. */
static void test_commit_forward(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_committing());
	stable_on(7, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_COMMITTED);
	assert_string_equal(vm->intent, "");
	assert_int_equal(vm->disks[0].thin_id, 7);
	assert_int_equal(vm->disks[1].thin_id, 8);
	assert_int_equal(vm->n_points, 1);
	assert_null(vm->overlay_ids);
	calls_are("remove dmrep-thin-1;remove dmrep-thin-2;delete 1;delete 2;delete 5;delete 6;");
	f = state_file();
	assert_string_equal(file_str(f, "state"), "committed");
	assert_string_equal(file_str(f, "intent"), "");
	assert_int_equal(file_points(f), 1);
	json_object_put(f);
}

/* The pool refuses the deletes: nothing of the catalog changes, the
 * intent stays for the next start. */
static void test_commit_kept(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_committing());
	stable_on(7, 8);
	k.delete_batch_errno = EIO;
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_RECOVERED);
	assert_string_equal(vm->intent, "commit");
	assert_int_equal(vm->disks[0].thin_id, 1);
	assert_int_equal(vm->n_points, 2);
	/* The old live volumes' devices went first (nothing stood on them);
	 * the next start brings them up again, the intent finishes then. */
	calls_are("remove dmrep-thin-1;remove dmrep-thin-2;");
	f = state_file();
	assert_string_equal(file_str(f, "intent"), "commit");
	assert_int_equal(file_points(f), 2);
	json_object_put(f);
}

/* ---- TestReplicaSystem (always undone) ---------------------------------- */

static struct json_object *vm_testing(bool stop)
{
	struct json_object *o = vm_base();

	set_str(o, "intent", stop ? "stop-test" : "test");
	set_u64(o, "intent_point", stop ? 0 : 1);
	if (stop) {
		set_bool(o, "test_failover", true);
		set_u64(o, "test_point", 1);
	}
	json_object_object_add(o, "test_ids", ids(9, 10));
	return o;
}

/* One view was made: it and both view volumes go. */
static void test_test_back(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_testing(false));
	stable_on(1, 2);
	dev_add(T0, TU0, 9);
	vm = recover_ok(0);
	assert_false(vm->test_failover);
	assert_null(vm->test_ids);
	assert_string_equal(vm->intent, "");
	calls_are("remove " T0 ";delete 9;delete 10;");
	assert_null(dev_find(T0));
	f = state_file();
	assert_string_equal(file_str(f, "intent"), "");
	assert_true(file_null(f, "test_ids"));
	json_object_put(f);
}

/* Crashed right after the intent: no view yet, the ids still go (they
 * may name volumes made before the crash). */
static void test_test_back_early(void **st)
{
	struct dmr_vm *vm;

	vm_write(vm_testing(false));
	stable_on(1, 2);
	vm = recover_ok(0);
	assert_false(vm->test_failover);
	assert_null(vm->test_ids);
	assert_string_equal(vm->intent, "");
	calls_are("delete 9;delete 10;");
}

/* ---- StopTestReplicaSystem (always finished) ---------------------------- */

static void test_stop_test_forward(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_testing(true));
	stable_on(1, 2);
	dev_add(T0, TU0, 9);
	dev_add(T1, TU1, 10);
	vm = recover_ok(0);
	assert_false(vm->test_failover);
	assert_int_equal(vm->test_point, 0);
	assert_null(vm->test_ids);
	assert_string_equal(vm->intent, "");
	calls_are("remove " T0 ";remove " T1 ";delete 9;delete 10;");
	f = state_file();
	assert_false(json_object_get_boolean(json_object_object_get(f, "test_failover")));
	assert_string_equal(file_str(f, "intent"), "");
	json_object_put(f);
}

/* A device has a view's name but another UUID: it is never removed; the
 * VM's own failover is left unfinished, intent kept. */
static void test_stop_test_kept(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(vm_testing(true));
	stable_on(1, 2);
	dev_add(T0, "DMREP-test-other", 9);
	vm = recover_ok(0);
	assert_true(vm->test_failover);
	assert_string_equal(vm->intent, "stop-test");
	calls_are("");
	assert_non_null(dev_find(T0));
	f = state_file();
	assert_string_equal(file_str(f, "intent"), "stop-test");
	json_object_put(f);
}

/* A view is still open (cannot be removed): the end of the test is not
 * finished, its volumes stay, the intent stays. */
static void test_stop_test_busy(void **st)
{
	struct dmr_vm *vm;

	vm_write(vm_testing(true));
	stable_on(1, 2);
	dev_add(T0, TU0, 9);
	k.remove_errno = EBUSY;
	vm = recover_ok(0);
	assert_true(vm->test_failover);
	assert_non_null(vm->test_ids);
	assert_string_equal(vm->intent, "stop-test");
	calls_are("");
}

/* ---- reconcile: reboot, interrupted add, dropped points ------------------ */

/* After a reboot nothing is up: a recovered VM's disks come back on their
 * overlays, a finished test failover's views on theirs. */
static void test_reboot_bring_up(void **st)
{
	struct json_object *o = vm_base();

	set_str(o, "state", "recovered");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	set_bool(o, "test_failover", true);
	set_u64(o, "test_point", 1);
	json_object_object_add(o, "test_ids", ids(9, 10));
	vm_write(o);
	(void)recover(0);
	calls_are("activate dmrep-thin-1 1;activate dmrep-thin-2 2;activate dmrep-thin-7 7;create " D0
		  " 7;activate " T0 " 9;activate dmrep-thin-8 8;create " D1 " 8;activate " T1 " 10;");
	assert_true(dev_find(D0)->linear);
	assert_int_equal(shows(D1), 8);
}

/* A device left suspended with a loaded table (a swap cut short): the
 * table is dropped, the device resumed on its old one. */
static void test_suspended_cleared(void **st)
{
	struct fdev *d;

	vm_write(vm_base());
	stable_on(1, 2);
	d = dev_find(D0);
	d->suspended = true;
	d->inactive = 7;
	(void)recover(0);
	calls_are("clear " D0 ";resume " D0 ";");
	assert_int_equal(shows(D0), 1);
	assert_false(dev_find(D0)->suspended);
}

/* An add whose import a crash interrupted: devices, volumes, record go. */
static void test_import_undone(void **st)
{
	struct json_object *o = vm_base();
	char path[128];

	set_bool(o, "importing", true);
	set_u64(o, "import_tid", 1);
	json_object_object_add(o, "points", json_object_new_array());
	vm_write(o);
	stable_on(1, 2);
	assert_null(recover(0));
	calls_are("remove " D0 ";remove " D1 ";remove dmrep-thin-1;remove dmrep-thin-2;delete 1;delete 2;");
	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	assert_int_equal(access(path, F_OK), -1);
}

/* Points dropped from the catalog before a crash: their volumes go, and
 * the state file forgets them. */
static void test_doomed_removed(void **st)
{
	struct json_object *o = vm_base(), *f;
	struct dmr_vm *vm;

	json_object_object_add(o, "doomed_ids", ids(11, 12));
	vm_write(o);
	stable_on(1, 2);
	vm = recover_ok(0);
	assert_int_equal(vm->n_doomed, 0);
	calls_are("delete 11;delete 12;");
	f = state_file();
	assert_true(file_null(f, "doomed_ids"));
	json_object_put(f);
}

/* vm1 as a replica: no live volume (thin_id 0), a uuid, role replica. */
static struct json_object *replica_base(void)
{
	struct json_object *o = vm_base(), *disks;

	set_str(o, "role", "replica");
	set_str(o, "uuid", "6d1c0b5e-0b5e-4a2b-9c3d-0000000000aa");
	assert_true(json_object_object_get_ex(o, "disks", &disks));
	for (size_t i = 0; i < 2; i++)
		set_u64(json_object_array_get_idx(disks, i), "thin_id", 0);
	return o;
}

/* A replica's first receive, killed with its volumes up (receive:data):
 * they were recorded as doomed first, so they go, and the replica the
 * receive was creating goes with them. */
static void test_receive_new_undone(void **st)
{
	struct json_object *o = replica_base();
	char path[128];

	set_bool(o, "importing", true);
	json_object_object_add(o, "points", json_object_new_array());
	json_object_object_add(o, "doomed_ids", ids(11, 12));
	vm_write(o);
	vol_add(11);
	vol_add(12);
	assert_null(recover(0));
	calls_are("remove dmrep-thin-11;delete 11;remove dmrep-thin-12;delete 12;");
	assert_null(dev_find("dmrep-thin-11"));
	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	assert_int_equal(access(path, F_OK), -1);
}

/* An incremental receive into a replica, killed before its point was
 * saved: the new volumes go, the points stay, and nothing of the replica
 * is activated (it has no live volume, so no stable device). */
static void test_receive_doomed_replica(void **st)
{
	struct json_object *o = replica_base(), *f;
	struct dmr_vm *vm;

	json_object_object_add(o, "doomed_ids", ids(11, 12));
	vm_write(o);
	vol_add(11);
	vol_add(12);
	vm = recover_ok(0);
	calls_are("remove dmrep-thin-11;delete 11;remove dmrep-thin-12;delete 12;");
	assert_int_equal(vm->n_doomed, 0);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->role, DMR_VM_REPLICA);
	assert_null(dev_find(D0));
	f = state_file();
	assert_true(file_null(f, "doomed_ids"));
	assert_int_equal(file_points(f), 1);
	json_object_put(f);
}

/* A replica at rest after a reboot: nothing to bring up. */
static void test_replica_reboot(void **st)
{
	vm_write(replica_base());
	(void)recover_ok(0);
	calls_are("");
}

/* ---- a replica's failover (issue 15): no live volume, no guest -------- */

static struct json_object *replica_initiating(void)
{
	struct json_object *o = replica_base();

	set_str(o, "state", "failover-in-progress");
	set_str(o, "intent", "initiate");
	set_u64(o, "intent_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	return o;
}

/* Both stable devices had been made on the overlays (initiate:devices):
 * the failover stands, the devices stay. */
static void test_replica_initiate_forward(void **st)
{
	struct dmr_vm *vm;

	vm_write(replica_initiating());
	stack_add(D0, U0, 7);
	stack_add(D1, U1, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_RECOVERED);
	assert_int_equal(vm->role, DMR_VM_REPLICA);
	assert_int_equal(vm->failover_point, 1);
	assert_string_equal(vm->intent, "");
	calls_are("");
	assert_int_equal(shows(D0), 7);
	assert_int_equal(shows(D1), 8);
}

/* Killed before the devices were made (initiate:overlays), or after a
 * reboot took them: no device to look at; the overlays go, the replica
 * has no device again. */
static void test_replica_initiate_back(void **st)
{
	struct json_object *f;
	struct dmr_vm *vm;

	vm_write(replica_initiating());
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_null(vm->overlay_ids);
	assert_string_equal(vm->intent, "");
	calls_are("delete 7;delete 8;");
	assert_null(dev_find(D0));
	f = state_file();
	assert_string_equal(file_str(f, "state"), "replicating");
	assert_true(file_null(f, "overlay_ids"));
	json_object_put(f);
}

/* One device up, the other not (a group cut short): the one up goes
 * (never retargeted: a replica has no live volume to show), then the
 * overlays. */
static void test_replica_initiate_back_one(void **st)
{
	struct dmr_vm *vm;

	vm_write(replica_initiating());
	stack_add(D0, U0, 7);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_null(dev_find(D0));
	calls_are("remove " D0 ";remove dmrep-thin-7;delete 7;delete 8;");
}

/* A device under the replica's stable name with another UUID: never
 * removed; the rollback stops there and the intent stays. */
static void test_replica_initiate_foreign(void **st)
{
	struct dmr_vm *vm;

	vm_write(replica_initiating());
	dev_add(D0, "DMREP-disk-other", 9);
	vm = recover_ok(0);
	assert_non_null(dev_find(D0));
	assert_string_equal(vm->intent, "initiate");
	calls_are("");
}

/* A replica's revert killed after its devices went (revert:devices): the
 * overlays go, a replica with no device again. */
static void test_replica_revert_forward(void **st)
{
	struct json_object *o = replica_base();
	struct dmr_vm *vm;

	set_str(o, "state", "failover-in-progress");
	set_str(o, "intent", "revert");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	vm_write(o);
	stack_add(D1, U1, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->state, DMR_VM_REPLICATING);
	assert_null(vm->overlay_ids);
	assert_string_equal(vm->intent, "");
	assert_null(dev_find(D1));
	calls_are("remove " D1 ";remove dmrep-thin-8;delete 7;delete 8;");
}

/* A replica's commit killed after its intent: finished, and the replica
 * is the VM's primary now, its overlays its live volumes, the newer
 * received point gone, and the failover point acknowledged (the base of
 * a cycle back to the old primary). */
static void test_replica_commit_forward(void **st)
{
	struct json_object *o = replica_base(), *f;
	struct dmr_vm *vm;

	set_str(o, "state", "recovered");
	set_str(o, "intent", "commit");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	add_pending_point(o, 2, 0, 5, 6);
	vm_write(o);
	stack_add(D0, U0, 7);
	stack_add(D1, U1, 8);
	vm = recover_ok(0);
	assert_int_equal(vm->role, DMR_VM_PRIMARY);
	assert_int_equal(vm->state, DMR_VM_COMMITTED);
	assert_int_equal(vm->disks[0].thin_id, 7);
	assert_int_equal(vm->disks[1].thin_id, 8);
	assert_int_equal(vm->n_points, 1);
	assert_string_not_equal(vm->points[0].uuid, "");
	assert_string_equal(vm->repl.acked_uuid, vm->points[0].uuid);
	assert_int_equal(vm->repl.acked_usec, 1);
	calls_are("delete 5;delete 6;");
	f = state_file();
	assert_string_equal(file_str(f, "role"), "primary");
	assert_string_equal(file_str(f, "state"), "committed");
	json_object_put(f);
}

/* ---- DemoteVirtualSystem --------------------------------------------- */

/* Killed before the switch was saved (demote:intent, demote:down): the
 * VM is still the primary it was; its devices come back on the live
 * volumes, its points and volumes all stay, the intent goes. */
static void test_demote_undone(void **st)
{
	struct json_object *o = vm_base(), *f;
	struct dmr_vm *vm;

	set_str(o, "intent", "demote");
	set_u64(o, "intent_point", 1);
	vm_write(o);
	vm = recover_ok(0);
	assert_int_equal(vm->role, DMR_VM_PRIMARY);
	assert_string_equal(vm->intent, "");
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(shows(D0), 1);
	assert_int_equal(shows(D1), 2);
	f = state_file();
	assert_string_equal(file_str(f, "intent"), "");
	assert_string_equal(file_str(f, "role"), "primary");
	json_object_put(f);
}

/* An older dmrep's names (dmrep-VM-DISK): found by UUID, renamed. */
static void test_legacy_renamed(void **st)
{
	vm_write(vm_base());
	vol_add(1);
	vol_add(2);
	dev_add("dmrep-vm1-d0", U0, 1)->linear = true;
	dev_find("dmrep-vm1-d0")->live = dev_find("dmrep-thin-1")->minor;
	stack_add(D1, U1, 2);
	(void)recover(0);
	calls_are("rename dmrep-vm1-d0 " D0 ";");
	assert_non_null(dev_find(D0));
}

/* An older dmrep's stable devices (the thin target itself, `thin POOL
 * ID`): moved onto the stack at start, the same volume shown, each with one
 * swap and a flush (no guest pause), never removed (the same device). */
static void test_legacy_moved(void **st)
{
	uint32_t m0, m1;

	vm_write(vm_base());
	m0 = dev_add(D0, U0, 1)->minor;
	m1 = dev_add(D1, U1, 2)->minor;
	(void)recover(0);
	calls_are("activate dmrep-thin-1 1;activate dmrep-thin-2 2;load " D0 " 1;suspend " D0
		  ";resume " D0 ";load " D1 " 2;suspend " D1 ";resume " D1 ";");
	assert_int_equal(dev_find(D0)->minor, m0);
	assert_int_equal(dev_find(D1)->minor, m1);
	assert_true(dev_find(D0)->linear && dev_find(D1)->linear);
	assert_int_equal(shows(D0), 1);
	assert_int_equal(shows(D1), 2);
	/* A second start finds the stack and touches nothing. */
	agent.reg->pool = NULL;
	dmr_registry_close(&agent);
	k.calls[0] = '\0';
	(void)recover(0);
	calls_are("");
}

/* A failed-over VM of an older dmrep: its devices show the overlays and
 * are moved onto the overlays' own devices, not the live volumes'. */
static void test_legacy_moved_failed_over(void **st)
{
	struct json_object *o = vm_base();

	set_str(o, "state", "recovered");
	set_u64(o, "failover_point", 1);
	json_object_object_add(o, "overlay_ids", ids(7, 8));
	vm_write(o);
	dev_add(D0, U0, 7);
	dev_add(D1, U1, 8);
	(void)recover(0);
	calls_are("activate dmrep-thin-1 1;activate dmrep-thin-2 2;activate dmrep-thin-7 7;load " D0
		  " 7;suspend " D0 ";resume " D0 ";activate dmrep-thin-8 8;load " D1 " 8;suspend " D1
		  ";resume " D1 ";");
	assert_int_equal(shows(D0), 7);
	assert_int_equal(shows(D1), 8);
}

/* A stable device whose table shows a volume that is not the VM's (made
 * by hand?) is left as it is. */
static void test_legacy_unknown_left(void **st)
{
	vm_write(vm_base());
	dev_add(D0, U0, 99);
	stable_on(1, 2);
	(void)recover(0);
	calls_are("");
	assert_false(dev_find(D0)->linear);
	assert_int_equal(shows(D0), 99);
}

/* ---- the classic backend ------------------------------------------------ */

/* Classic vm1: disks in place on sources that are not there (so no loop
 * or stable device is made: activation reports them and goes on). */
static struct json_object *vm_classic(void)
{
	struct json_object *o = vm_base(), *disks;

	set_str(o, "backend", "classic");
	set_u64(o, "cow_size", 8 << 20);
	set_u64(o, "max_points", 8);
	assert_true(json_object_object_get_ex(o, "disks", &disks));
	for (size_t i = 0; i < 2; i++) {
		struct json_object *d = json_object_array_get_idx(disks, i);

		set_u64(d, "thin_id", 0);
		set_str(d, "source", i ? "/nonexistent/d1" : "/nonexistent/d0");
	}
	json_object_object_add(o, "points", json_object_new_array());
	return o;
}

/* Every store device of the pending point exists: it was made. */
static void test_classic_point_forward(void **st)
{
	struct json_object *o = vm_classic(), *f;
	struct dmr_vm *vm;

	add_pending_point(o, 2, 1, 5, 6);
	vm_write(o);
	dev_add("dmrep-snap-5", "DMREP-snap-5", 0);
	dev_add("dmrep-snap-6", "DMREP-snap-6", 0);
	vm = recover_ok(0);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->points[0].id, 2);
	assert_int_equal(vm->points[0].pending_tid, 0);
	calls_are("");
	f = state_file();
	assert_int_equal(file_points(f), 1);
	json_object_put(f);
}

/* One is missing: the point goes, and the device that was made with it. */
static void test_classic_point_back(void **st)
{
	struct json_object *o = vm_classic(), *f;
	struct dmr_vm *vm;

	add_pending_point(o, 2, 1, 5, 6);
	vm_write(o);
	dev_add("dmrep-snap-5", "DMREP-snap-5", 0);
	vm = recover_ok(0);
	assert_int_equal(vm->n_points, 0);
	calls_are("remove dmrep-snap-5;");
	assert_null(dev_find("dmrep-snap-5"));
	f = state_file();
	assert_int_equal(file_points(f), 0);
	json_object_put(f);
}

#define O0 "dmrep-vm1:d0@origin"
#define O1 "dmrep-vm1:d1@origin"
#define OU0 "DMREP-origin-vm1:d0"
#define OU1 "DMREP-origin-vm1:d1"

/* Both disks on the stack: stable devices over their origin devices. */
static void classic_stack_up(void)
{
	dev_add(D0, U0, 0);
	dev_add(D1, U1, 0);
	dev_add(O0, OU0, 0);
	dev_add(O1, OU1, 0);
}

/* The stack: the stores a point made are removed with the origin
 * devices (the snapshot-origin targets) suspended, not the stable
 * devices above them. */
static void test_classic_point_back_stack(void **st)
{
	struct json_object *o = vm_classic();
	struct dmr_vm *vm;

	add_pending_point(o, 2, 1, 5, 6);
	vm_write(o);
	classic_stack_up();
	dev_add("dmrep-snap-5", "DMREP-snap-5", 0);
	vm = recover_ok(0);
	assert_int_equal(vm->n_points, 0);
	calls_are("suspend " O0 ";suspend " O1 ";remove dmrep-snap-5;resume " O0 ";resume " O1 ";");
	assert_non_null(dev_find(D0));
	assert_non_null(dev_find(O0));
}

/* A device with an origin device's name and another UUID is not the
 * VM's: it is never suspended, and nothing is removed under it (the
 * point is dropped all the same, settle is best effort; its device stays
 * and is reported). */
static void test_classic_point_back_foreign_origin(void **st)
{
	struct json_object *o = vm_classic();

	add_pending_point(o, 2, 1, 5, 6);
	vm_write(o);
	dev_add(D0, U0, 0);
	dev_add(O0, "DMREP-origin-other:d0", 0);
	dev_add("dmrep-snap-5", "DMREP-snap-5", 0);
	(void)recover_ok(0);
	calls_are("");
	assert_non_null(dev_find("dmrep-snap-5"));
}

/* A classic add a crash interrupted: the VM's devices go, its disks (in
 * place) are untouched, the record goes. */
static void test_classic_add_undone(void **st)
{
	struct json_object *o = vm_classic();
	char path[128];

	set_bool(o, "importing", true);
	vm_write(o);
	dev_add(D0, U0, 0);
	assert_null(recover(0));
	calls_are("remove " D0 ";");
	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	assert_int_equal(access(path, F_OK), -1);
}

/* The same on the stack: the stable devices first, then the origin
 * devices they stand on; another VM's origin device is left alone. */
static void test_classic_add_undone_stack(void **st)
{
	struct json_object *o = vm_classic();
	char path[128];

	set_bool(o, "importing", true);
	vm_write(o);
	dev_add(D0, U0, 0);
	dev_add(D1, U1, 0);
	dev_add(O0, OU0, 0);
	dev_add("dmrep-vm2:d0@origin", "DMREP-origin-vm2:d0", 0);
	assert_null(recover(0));
	calls_are("remove " D0 ";remove " D1 ";remove " O0 ";");
	assert_non_null(dev_find("dmrep-vm2:d0@origin"));
	snprintf(path, sizeof(path), "%s/vms/vm1.json", state_dir);
	assert_int_equal(access(path, F_OK), -1);
}

/* Dropped points' stores go (devices first), and are forgotten. */
static void test_classic_doomed_removed(void **st)
{
	struct json_object *o = vm_classic(), *f;
	struct dmr_vm *vm;

	json_object_object_add(o, "doomed_ids", ids(11, 12));
	vm_write(o);
	dev_add("dmrep-snap-11", "DMREP-snap-11", 0);
	vm = recover_ok(0);
	assert_int_equal(vm->n_doomed, 0);
	calls_are("remove dmrep-snap-11;");
	f = state_file();
	assert_true(file_null(f, "doomed_ids"));
	json_object_put(f);
}

/* The same on the stack: the origin devices quiet around the removal. */
static void test_classic_doomed_removed_stack(void **st)
{
	struct json_object *o = vm_classic();
	struct dmr_vm *vm;

	json_object_object_add(o, "doomed_ids", ids(11, 12));
	vm_write(o);
	classic_stack_up();
	dev_add("dmrep-snap-11", "DMREP-snap-11", 0);
	dev_add("dmrep-snap-12", "DMREP-snap-12", 0);
	vm = recover_ok(0);
	assert_int_equal(vm->n_doomed, 0);
	calls_are("suspend " O0 ";suspend " O1 ";remove dmrep-snap-11;remove dmrep-snap-12;resume " O0
		  ";resume " O1 ";");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_point_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initiate_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initiate_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_initiate_back_unswitched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libvirt_guest_resumed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libvirt_operator_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libvirt_shut_off_left, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revert_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revert_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_test_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_test_back_early, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_test_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_test_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_test_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot_bring_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suspended_cleared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_undone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_doomed_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_new_undone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_receive_doomed_replica, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_reboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_renamed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_moved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_moved_failed_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_unknown_left, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_point_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_point_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_add_undone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_doomed_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_point_back_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_point_back_foreign_origin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_add_undone_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_doomed_removed_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_initiate_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_initiate_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_initiate_back_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_initiate_foreign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_revert_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_commit_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_demote_undone, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
