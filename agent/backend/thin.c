/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/thin.c - the thin backend: a VM's disks, points and views
 * are thin volumes and snapshots in the agent's pool (snapshots/thin.h);
 * every id is a thin id, and every batch of metadata changes is one pool
 * transaction (dmr_reg_txn_begin/_end).
 */
#include "agent/backend/backend.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>

#include "common/log.h"
#include "common/path.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/copy.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"

/* Delete thin ids in one pool transaction (0 ids: nothing). */
static int thin_delete_ids(struct dmr_registry *reg, size_t n, const uint32_t *ids)
{
	uint64_t old_tid, new_tid;
	int r;

	if (n == 0)
		return 0;
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	r = dmr_thin_delete_batch(reg->pool, n, ids, old_tid, new_tid);
	if (r < 0)
		log_error("cannot delete thin volumes from the pool: %s", strerror(-r));
	(void)dmr_reg_txn_end(reg, r == 0, new_tid);
	return r;
}

static uint32_t thin_live_id(const struct dmr_vm *vm, size_t i)
{
	return vm->disks[i].thin_id;
}

static int thin_stable_table(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			     uint32_t id, struct dmr_table **ret_table)
{
	return dmr_thin_table(reg->pool, id, vm->disks[i].size_bytes / 512, ret_table);
}

static bool thin_table_shows(struct dmr_registry *reg, const struct dmr_table *t, uint32_t id)
{
	uint32_t cur;

	return dmr_thin_table_id(reg->pool, t, &cur) == 0 && cur == id;
}

static int thin_views_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			   const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE], const char (*uuids)[DMR_DM_UUID_SIZE])
{
	const struct dmr_point *p = dmr_vm_point_find((struct dmr_vm *)vm, point);
	_cleanup_free_ const char **none = calloc(vm->n_disks, sizeof(char *));
	uint64_t old_tid, new_tid;
	size_t made = 0;
	int r;

	if (!p)
		return -ENOENT;
	if (!none)
		return -ENOMEM;
	/* Snapshots of snapshots that are not active: no suspend. */
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	r = dmr_thin_snapshot_group(reg->pool, vm->n_disks, none, p->vol_ids, ids, old_tid,
				    new_tid, 0, NULL);
	(void)dmr_reg_txn_end(reg, r == 0, new_tid);
	for (; r == 0 && names && made < vm->n_disks; made++)
		r = dmr_thin_activate(reg->pool, names[made], uuids[made], ids[made],
				      vm->disks[made].size_bytes / 512, false);
	if (r < 0 && names) {
		for (size_t i = 0; i < made; i++)
			if (dmr_dm_check_uuid(names[i], uuids[i]) == 0)
				(void)dmr_dm_remove(names[i], 20);
		(void)thin_delete_ids(reg, vm->n_disks, ids);
	}
	return r;
}

static int thin_remove(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids)
{
	return thin_delete_ids(reg, n, ids);
}

/* A point is refused up front when the pool is nearly full: a snapshot
 * costs nothing at creation, but every later write to the live volume or
 * the point's overlay then needs fresh blocks, and a pool that runs out
 * errors I/O (error_if_no_space).  Thresholds: 1/32 of data or 1/16 of
 * metadata left. */
static int thin_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
			   const char *const *cow_devs, char **ret_why)
{
	struct dmr_thin_pool_status st;
	int r = dmr_pool_status(reg->pool, &st);

	if (r < 0) {
		if (asprintf(ret_why, "cannot read pool status: %s", strerror(-r)) < 0)
			*ret_why = NULL;
		return r;
	}
	if (st.fail || st.read_only || st.out_of_data_space) {
		if (asprintf(ret_why, "the pool is %s",
			     st.fail ? "failed" : st.read_only ? "read-only" : "out of data space") < 0)
			*ret_why = NULL;
		return -ENOSPC;
	}
	if ((st.total_data_blocks - st.used_data_blocks) * 32 < st.total_data_blocks ||
	    (st.total_meta_blocks - st.used_meta_blocks) * 16 < st.total_meta_blocks) {
		if (asprintf(ret_why, "the pool is nearly full (data %" PRIu64 "/%" PRIu64
			     ", metadata %" PRIu64 "/%" PRIu64 " blocks)",
			     st.used_data_blocks, st.total_data_blocks, st.used_meta_blocks,
			     st.total_meta_blocks) < 0)
			*ret_why = NULL;
		return -ENOSPC;
	}
	return 0;
}

static int thin_points_make(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			    const char *const *cow_devs, uint64_t old_tid, uint64_t new_tid,
			    unsigned suspend_flags, uint64_t *ret_suspend_usec)
{
	size_t n = vm->n_disks;
	_cleanup_free_ uint32_t *origins = calloc(n, sizeof(*origins));
	_cleanup_free_ const char **names = calloc(n, sizeof(*names));
	_cleanup_free_ char (*dmnames)[DMR_DM_NAME_SIZE] = calloc(n, sizeof(*dmnames));

	if (!origins || !names || !dmnames)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		origins[i] = vm->disks[i].thin_id;
		(void)dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, dmnames[i]);
		names[i] = dmnames[i];
	}
	return dmr_thin_snapshot_group(reg->pool, n, names, origins, ids, old_tid, new_tid,
				       suspend_flags, ret_suspend_usec);
}

static void thin_point_api_extras(const struct dmr_vm *vm, const struct dmr_point *pt,
				  struct json_object *o)
{
}

static bool thin_point_pinned(const struct dmr_vm *vm, uint64_t point)
{
	return false;
}

static void thin_refresh(struct dmr_registry *reg, const char *vm_name)
{
	/* Nothing of a thin VM fills alone: its points share the pool. */
}

static int thin_commit(struct dmr_registry *reg, const struct dmr_vm *vm, uint32_t *ret_ids)
{
	/* The devices run on the overlays already. */
	if (!vm->overlay_ids)
		return -EINVAL;
	memcpy(ret_ids, vm->overlay_ids, vm->n_disks * sizeof(uint32_t));
	return 0;
}

/* A thin VM's only devices are its stable devices and, while a test
 * failover has views, those; points and views are volumes, not devices. */
static bool thin_owns(const struct dmr_vm *vm, const char *name)
{
	char buf[DMR_DM_NAME_SIZE];

	for (size_t i = 0; i < vm->n_disks; i++) {
		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
		if (vm->test_ids && dmr_vm_test_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
	}
	return false;
}

static void vm_remove_devices(const struct dmr_vm *vm)
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name) < 0 ||
		    dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid) < 0)
			continue;
		if (dmr_dm_check_uuid(name, uuid) == 0)
			(void)dmr_dm_remove(name, 10);
	}
}

static void thin_discard(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* An import copies from a source that is still there: undo it
	 * whole, the user adds the VM again. */
	log_notice("VM %s: import was interrupted; removing it", vm->name);
	vm_remove_devices(vm);
	for (size_t i = 0; i < vm->n_disks; i++)
		(void)dmr_pool_delete_thin(reg->pool, vm->disks[i].thin_id);
}

static bool thin_doomed_remove(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* Deleting one that is gone already is no error. */
	size_t left = 0, n = vm->n_doomed;

	log_notice("VM %s: removing %zu volume(s) of dropped points", vm->name, vm->n_doomed);
	for (size_t i = 0; i < vm->n_doomed; i++)
		if (dmr_pool_delete_thin(reg->pool, vm->doomed[i]) < 0)
			vm->doomed[left++] = vm->doomed[i];
	vm->n_doomed = left;
	return left != n;
}

/* The pool's transaction id proves the snapshots exist: it moves with the
 * batch that made them. */
static int thin_settle(struct dmr_registry *reg, const struct dmr_vm *vm,
		       const struct dmr_point *p, uint64_t pool_tid)
{
	if (pool_tid >= p->pending_tid)
		return 1;
	for (size_t i = 0; i < vm->n_disks; i++)
		(void)dmr_pool_delete_thin(reg->pool, p->vol_ids[i]);
	return 0;
}

/* A thin VM's data is in its volumes, which remove deletes: always. */
static int thin_may_remove(const struct dmr_vm *vm, bool force, char **ret_why)
{
	return 0;
}

static void report_fail(const struct dmr_backend_report *rep, int r, const char *fmt, ...)
	_printf_(3, 4);
static void report_fail(const struct dmr_backend_report *rep, int r, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	rep->fail(rep->userdata, r, what);
}

static void why_set(char **why, const char *fmt, ...) _printf_(2, 3);
static void why_set(char **why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(why, fmt, ap) < 0)
		*why = NULL;
	va_end(ap);
}

struct import_progress {
	const struct dmr_backend_report *rep;
	uint64_t done_bytes; /* of finished disks */
};

static int import_progress(uint64_t done, uint64_t total, void *userdata)
{
	struct import_progress *p = userdata;

	p->rep->imported(p->rep->userdata, p->done_bytes + done);
	return 0;
}

static int thin_teardown(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why)
{
	_cleanup_free_ char *why = NULL;
	int r = 0;

	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		char dm[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
		struct dmr_dm_info info;

		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, dm) < 0 ||
		    dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid) < 0 ||
		    dmr_dm_info(dm, &info) < 0 || !info.exists)
			continue;
		/* Only this VM's own device: one with its name and another
		 * UUID (another VM's, an older agent's) is left alone. */
		if (!dmr_streq(info.uuid, uuid)) {
			r = -EEXIST;
			why_set(&why, "%s is not VM %s's device (another UUID)", dm, vm->name);
			break;
		}
		/* Open after the retries (udev's blkid lets go; a running VM
		 * does not): the removal stops before anything else goes. */
		r = dmr_dm_remove(dm, 20);
		if (r == -EBUSY)
			why_set(&why, "%s is open (is the VM running?)", dm);
		else if (r < 0)
			why_set(&why, "cannot remove %s: %s", dm, strerror(-r));
	}
	if (r < 0 && ret_why)
		*ret_why = DMR_TAKE_PTR(why);
	return r;
}

static int thin_create(struct dmr_registry *reg, struct dmr_vm *vm, const int *fds,
		       const struct dmr_backend_report *rep)
{
	struct import_progress progress = { .rep = rep };
	_cleanup_free_ uint32_t *ids = NULL;
	uint64_t old_tid, new_tid, t0;
	bool volumes_made = false;
	int r;

	ids = calloc(vm->n_disks, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_disks; i++)
		ids[i] = vm->disks[i].thin_id;

	t0 = dmr_now_usec();
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	pthread_mutex_lock(&reg->lock);
	vm->import_tid = new_tid;
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		r = dmr_thin_create_batch(reg->pool, vm->n_disks, ids, old_tid, new_tid);
	volumes_made = r == 0;
	if (dmr_reg_txn_end(reg, r == 0, new_tid) < 0 && r == 0)
		r = -EIO;
	if (r < 0) {
		report_fail(rep, r, "cannot create thin volumes");
		goto fail;
	}
	rep->step(rep->userdata, "create-volumes", dmr_now_usec() - t0);

	t0 = dmr_now_usec();
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0)
			goto fail;
		r = dmr_thin_activate(reg->pool, name, uuid, ids[i], vm->disks[i].size_bytes / 512,
				      false);
		if (r < 0) {
			report_fail(rep, r, "cannot activate %s", name);
			goto fail;
		}
	}
	rep->step(rep->userdata, "activate", dmr_now_usec() - t0);

	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct dmr_disk *d = &vm->disks[i];
		struct dmr_copy_opts opts = { .queue_depth = 32, .block_size = 1u << 20,
					      .skip_zero = true };
		struct dmr_copy_stats stats;
		char name[DMR_DM_NAME_SIZE], dev[DMR_DM_PATH_SIZE], step[128], src[DMR_PATH_FD_NAME_MAX];

		if (!d->source || fds[i] < 0)
			continue;
		t0 = dmr_now_usec();
		(void)dmr_vm_disk_dm_name(vm->name, d->name, name);
		snprintf(dev, sizeof(dev), "/dev/mapper/%s", name);
		/* The source the handler opened and judged, reopened through
		 * its descriptor (O_DIRECT needs an open of its own). */
		dmr_path_fd_name(fds[i], src);
		r = dmr_copy_run(src, dev, d->size_bytes, &opts, import_progress, &progress, &stats);
		if (r < 0) {
			report_fail(rep, r, "import of %s from %s failed",
					  d->name, d->source);
			goto fail;
		}
		progress.done_bytes += d->size_bytes;
		snprintf(step, sizeof(step), "import-%s", d->name);
		rep->step(rep->userdata, step, dmr_now_usec() - t0);
		log_info("VM %s: imported %s: %" PRIu64 " bytes written, %" PRIu64 " zero bytes skipped",
			 vm->name, d->name, stats.bytes_written, stats.bytes_skipped);
	}
	return 0;

fail:
	/* The import source was only read, so nothing is lost. */
	(void)thin_teardown(reg, vm, NULL);
	if (volumes_made)
		(void)thin_delete_ids(reg, vm->n_disks, ids);
	return r < 0 ? r : -EIO;
}

/* Activate thin id as name/uuid unless it is there. */
static int thin_bring_up(struct dmr_registry *reg, const struct dmr_vm *vm, const char *name,
			 const char *uuid, uint32_t id, uint64_t bytes)
{
	struct dmr_dm_info info;
	int r;

	if ((r = dmr_dm_info(name, &info)) < 0)
		return r;
	if (info.exists && !dmr_streq(info.uuid, uuid)) {
		log_error("VM %s: %s is another device (UUID %s): not activated, left alone",
			  vm->name, name, info.uuid);
		return -EEXIST;
	}
	if (info.exists)
		return 0;
	r = dmr_thin_activate(reg->pool, name, uuid, id, bytes / 512, false);
	if (r < 0)
		log_error("VM %s: cannot activate %s: %s", vm->name, name, strerror(-r));
	return r;
}

/* The stable devices come back on the live volumes, or on the overlays of
 * a recovered VM; a finished test failover's views on theirs, as the user
 * left them (one with an operation in flight is for failover recovery). */
static int thin_activate(struct dmr_registry *reg, struct dmr_vm *vm)
{
	int r = 0;

	if (!reg->pool)
		return -ENODEV;
	for (size_t i = 0; i < vm->n_disks; i++) {
		const char *disk = vm->disks[i].name;
		uint64_t bytes = vm->disks[i].size_bytes;
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
		int q;

		q = dmr_vm_disk_dm_name(vm->name, disk, name);
		q = q ?: dmr_vm_disk_dm_uuid(vm->name, disk, uuid);
		q = q ?: thin_bring_up(reg, vm, name, uuid,
				       vm->state == DMR_VM_RECOVERED && vm->overlay_ids ?
				       vm->overlay_ids[i] : vm->disks[i].thin_id, bytes);
		r = r ?: q;
		if (!vm->test_failover || !vm->test_ids || vm->intent[0])
			continue;
		q = dmr_vm_test_dm_name(vm->name, disk, name);
		q = q ?: dmr_vm_test_dm_uuid(vm->name, disk, uuid);
		q = q ?: thin_bring_up(reg, vm, name, uuid, vm->test_ids[i], bytes);
		r = r ?: q;
	}
	return r;
}

static int thin_add_room(struct dmr_registry *reg, uint64_t *ret_free)
{
	assert(reg && ret_free);
	if (!reg->pool)
		return -ENODEV;
	return dmr_pool_free_bytes(reg->pool, ret_free);
}

static int thin_add_ids(struct dmr_registry *reg, size_t n, uint32_t *ret_ids)
{
	return dmr_reg_alloc_vol_ids(reg, n, ret_ids);
}

/* A thin point's blocks come from the pool: no store of its own. */
static uint64_t thin_default_cow(uint64_t disk_bytes)
{
	return 0;
}

const struct dmr_backend dmr_backend_thin = {
	.name = "thin",
	.live_id = thin_live_id,
	.stable_table = thin_stable_table,
	.table_shows = thin_table_shows,
	.views_make = thin_views_make,
	.remove = thin_remove,
	.point_txn_begin = dmr_reg_txn_begin,
	.point_txn_end = dmr_reg_txn_end,
	.points_make = thin_points_make,
	.point_room = thin_point_room,
	/* .cow_device_check: none, thin points live in the pool. */
	.point_api_extras = thin_point_api_extras,
	.point_pinned = thin_point_pinned,
	.refresh = thin_refresh,
	.commit = thin_commit,
	.owns = thin_owns,
	.needs_pool = true,
	.discard = thin_discard,
	.doomed_remove = thin_doomed_remove,
	.settle = thin_settle,
	.may_remove = thin_may_remove,
	.create = thin_create,
	.activate = thin_activate,
	.teardown = thin_teardown,
	.in_place = false,
	.add_room = thin_add_room,
	.add_ids = thin_add_ids,
	.default_cow = thin_default_cow,
};

