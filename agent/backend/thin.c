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
#include "common/rc.h"
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

/* ---- the stack: a thin volume's own device under the stable device ---- */

/* Named by thin id alone: the pool's ids are unique, and every path that
 * removes a volume (dropped points, a crash's leftovers) knows only its
 * id.  Hidden by udev (56-dmrep.rules: not a DMREP-disk- device). */
#define VOL_NAME_FMT "dmrep-thin-%" PRIu32
#define VOL_UUID_FMT DMR_UUID_PREFIX "thin-%" PRIu32
_Static_assert(sizeof(VOL_NAME_FMT) + 10 < DMR_DM_NAME_SIZE &&
	       sizeof(VOL_UUID_FMT) + 10 < DMR_DM_UUID_SIZE, "a volume's name fits");

static void vol_name(uint32_t id, char name[DMR_DM_NAME_SIZE])
{
	snprintf(name, DMR_DM_NAME_SIZE, VOL_NAME_FMT, id);
}

static void vol_uuid(uint32_t id, char uuid[DMR_DM_UUID_SIZE])
{
	snprintf(uuid, DMR_DM_UUID_SIZE, VOL_UUID_FMT, id);
}

bool dmr_backend_pool_volume(const char *uuid, uint32_t *ret_id)
{
	uint32_t id;
	int end = 0;

	assert(uuid && ret_id);
	if (sscanf(uuid, VOL_UUID_FMT "%n", &id, &end) != 1 || uuid[end] != '\0' || !id)
		return false;
	*ret_id = id;
	return true;
}

/* Is volume id's device up: 1 (and its info), 0 if not, -EEXIST if its
 * name is another device's. */
static int vol_info(uint32_t id, struct dmr_dm_info *ret_info)
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	struct dmr_dm_info info;
	int r;

	vol_name(id, name);
	vol_uuid(id, uuid);
	if ((r = dmr_dm_info(name, &info)) < 0)
		return r;
	if (!info.exists)
		return 0;
	if (!dmr_streq(info.uuid, uuid))
		return -EEXIST;
	*ret_info = info;
	return 1;
}

/* Bring up the devices of volumes ids[0..n) (0: none) that are not up,
 * each of sectors[i]; all or nothing. */
static int vols_up(struct dmr_registry *reg, size_t n, const uint32_t *ids,
		   const uint64_t *sectors)
{
	_cleanup_free_ const char **names = calloc(n ? n : 1, sizeof(*names));
	_cleanup_free_ const char **uuids = calloc(n ? n : 1, sizeof(*uuids));
	_cleanup_free_ struct dmr_table **tables = calloc(n ? n : 1, sizeof(*tables));
	_cleanup_free_ char (*nbuf)[DMR_DM_NAME_SIZE] = calloc(n ? n : 1, sizeof(*nbuf));
	_cleanup_free_ char (*ubuf)[DMR_DM_UUID_SIZE] = calloc(n ? n : 1, sizeof(*ubuf));
	size_t m = 0;
	int r = 0;

	if (!names || !uuids || !tables || !nbuf || !ubuf)
		return -ENOMEM;
	if (!reg->pool)
		return -ENODEV;
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct dmr_dm_info info;
		bool twice = false;

		if (ids[i] == 0)
			continue;
		/* A list may name one volume twice (the same id in two roles). */
		for (size_t k = 0; k < i && !twice; k++)
			twice = ids[k] == ids[i];
		if (twice || (r = vol_info(ids[i], &info)) != 0) {
			r = r > 0 ? 0 : r;
			continue;
		}
		vol_name(ids[i], nbuf[m]);
		vol_uuid(ids[i], ubuf[m]);
		names[m] = nbuf[m];
		uuids[m] = ubuf[m];
		r = dmr_thin_table(reg->pool, ids[i], sectors[i], &tables[m]);
		if (r == 0)
			m++;
	}
	/* One group, one udev wait: n devices before a failover's pause cost
	 * about what one costs. */
	if (r == 0 && m > 0)
		r = dmr_dm_create_group(m, names, uuids, (const struct dmr_table *const *)tables, 0);
	for (size_t k = 0; k < m; k++)
		dmr_table_free(tables[k]);
	return r;
}

/* Take down the devices of volumes ids[0..n) (0 and missing: skipped),
 * in one group; the first error (-EBUSY: something still sits on one). */
static int vols_down(size_t n, const uint32_t *ids)
{
	_cleanup_free_ const char **names = calloc(n ? n : 1, sizeof(*names));
	_cleanup_free_ char (*nbuf)[DMR_DM_NAME_SIZE] = calloc(n ? n : 1, sizeof(*nbuf));
	size_t m = 0;
	int r = 0;

	if (!names || !nbuf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct dmr_dm_info info;
		int q;

		if (ids[i] == 0 || (q = vol_info(ids[i], &info)) == 0)
			continue;
		if (q < 0) {
			/* another device under a volume's name: never removed */
			log_debug("thin volume %" PRIu32 "'s device: %s", ids[i], strerror(-q));
			r = r ?: q;
			continue;
		}
		vol_name(ids[i], nbuf[m]);
		names[m] = nbuf[m];
		m++;
	}
	if (m > 0) {
		int q = dmr_dm_remove_group(m, names, 10);

		if (q < 0)
			log_debug("thin volumes' devices: %s", strerror(-q));
		r = r ?: q;
	}
	return r;
}

static int thin_volumes_up(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids)
{
	_cleanup_free_ uint64_t *sectors = calloc(vm->n_disks, sizeof(*sectors));

	if (!sectors)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_disks; i++)
		sectors[i] = vm->disks[i].size_bytes / 512;
	return vols_up(reg, vm->n_disks, ids, sectors);
}

/* `linear` over volume id's device, by its number: a name would be
 * looked up again by the kernel at every load. */
static int stack_table(uint32_t id, uint64_t sectors, struct dmr_table **ret_table)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	struct dmr_dm_info info;
	char dev[32];
	int r;

	if ((r = vol_info(id, &info)) <= 0)
		return r == 0 ? -ENOENT : r;
	snprintf(dev, sizeof(dev), "%" PRIu32 ":%" PRIu32, info.major, info.minor);
	if (!(t = dmr_table_new()))
		return -ENOMEM;
	if ((r = dmr_table_add_linear(t, sectors, dev, 0)) < 0)
		return r;
	*ret_table = DMR_TAKE_PTR(t);
	return 0;
}

/* Disk i's stable device, made on volume id's device (which is up). */
static int stable_create(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i, uint32_t id)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	int r;

	if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
	    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
	    (r = stack_table(id, vm->disks[i].size_bytes / 512, &t)) < 0)
		return r;
	return dmr_dm_create(name, uuid, t, 0);
}

static bool stack_shows(const struct dmr_table *t, uint32_t id)
{
	struct dmr_dm_info info;
	uint32_t maj, min;

	return dmr_table_linear_dev(t, &maj, &min) == 0 && vol_info(id, &info) > 0 &&
	       info.major == maj && info.minor == min;
}

static uint32_t thin_live_id(const struct dmr_vm *vm, size_t i)
{
	return vm->disks[i].thin_id;
}

static int thin_stable_table(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			     uint32_t id, struct dmr_table **ret_table)
{
	return stack_table(id, vm->disks[i].size_bytes / 512, ret_table);
}

static bool thin_table_shows(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			     const struct dmr_table *t, uint32_t id)
{
	return stack_shows(t, id);
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
	if (r == 0 && names) {
		/* One group, one udev wait; all or nothing. */
		_cleanup_free_ struct dmr_table **tables = calloc(vm->n_disks, sizeof(*tables));
		_cleanup_free_ const char **np = calloc(vm->n_disks, sizeof(*np));
		_cleanup_free_ const char **up = calloc(vm->n_disks, sizeof(*up));

		r = tables && np && up ? 0 : -ENOMEM;
		for (; r == 0 && made < vm->n_disks; made++) {
			np[made] = names[made];
			up[made] = uuids[made];
			r = dmr_thin_table(reg->pool, ids[made], vm->disks[made].size_bytes / 512,
					   &tables[made]);
		}
		if (r == 0)
			r = dmr_dm_create_group(vm->n_disks, np, up,
						(const struct dmr_table *const *)tables, 0);
		for (size_t i = 0; tables && i < vm->n_disks; i++)
			dmr_table_free(tables[i]);
		if (r < 0)
			(void)thin_delete_ids(reg, vm->n_disks, ids);
	}
	return r;
}

static int thin_remove(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids)
{
	/* The pool refuses to delete a volume a device has open. */
	int r = vols_down(n, ids);

	return r < 0 ? r : thin_delete_ids(reg, n, ids);
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
		if (asprintf(ret_why, "cannot read pool status (%s): run 'dmrep pool repair'",
			     strerror(-r)) < 0)
			*ret_why = NULL;
		return -DMR_E_STATE;
	}
	/* A damaged pool is a state to repair, not a lack of room (the
	 * same words as the handlers' check, for jobs that did not pass it:
	 * replication cycles). */
	switch (dmr_status_thin_pool_health(&st)) {
	case DMR_POOL_OK:
		break;
	case DMR_POOL_OUT_OF_DATA_SPACE:
		if (asprintf(ret_why, "the pool is out of data space: remove points or VMs, "
			     "or grow its data device") < 0)
			*ret_why = NULL;
		return -ENOSPC;
	case DMR_POOL_OUT_OF_METADATA_SPACE:
		if (asprintf(ret_why, "the pool ran out of metadata space and is read-only: grow "
			     "its metadata device, then run 'dmrep pool repair'") < 0)
			*ret_why = NULL;
		return -DMR_E_STATE;
	default:
		if (asprintf(ret_why, "the pool is %s: run 'dmrep pool repair'",
			     st.fail ? "failed" : "read-only (needs_check)") < 0)
			*ret_why = NULL;
		return -DMR_E_STATE;
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
		struct dmr_dm_info info;
		int q;

		origins[i] = vm->disks[i].thin_id;
		/* The live volume's own device is the thin target whose I/O
		 * must stop for create_snap; the stable device above it just
		 * queues.  A stable device an older dmrep left with the thin
		 * target itself (not moved yet) is suspended instead. */
		if ((q = vol_info(origins[i], &info)) < 0)
			return q;
		if (q > 0)
			vol_name(origins[i], dmnames[i]);
		else if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, dmnames[i]) < 0 ||
			 dmr_dm_info(dmnames[i], &info) < 0 || !info.exists)
			continue;
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

/* Is thin id one of the VM's volumes: live, overlay, a point's or a
 * dropped one not deleted yet? */
static bool vm_has_vol(const struct dmr_vm *vm, uint32_t id)
{
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].thin_id == id || (vm->overlay_ids && vm->overlay_ids[i] == id))
			return true;
	for (size_t p = 0; p < vm->n_points; p++)
		for (size_t i = 0; vm->points[p].vol_ids && i < vm->n_disks; i++)
			if (vm->points[p].vol_ids[i] == id)
				return true;
	for (size_t k = 0; k < vm->n_doomed; k++)
		if (vm->doomed[k] == id)
			return true;
	return false;
}

/* A thin VM's devices are its stable devices, the devices of the
 * volumes they show and, while a test failover has views, those. */
static bool thin_owns(const struct dmr_vm *vm, const char *name)
{
	char buf[DMR_DM_NAME_SIZE];
	uint32_t id;
	int end = 0;

	for (size_t i = 0; i < vm->n_disks; i++) {
		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
		if (vm->test_ids && dmr_vm_test_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
	}
	/* The devices of its volumes, whatever their role now. */
	return sscanf(name, "dmrep-thin-%" SCNu32 "%n", &id, &end) == 1 && name[end] == '\0' &&
	       vm_has_vol(vm, id);
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
	for (size_t i = 0; i < vm->n_disks; i++) {
		(void)vols_down(1, &vm->disks[i].thin_id);
		if (vm->overlay_ids)
			(void)vols_down(1, &vm->overlay_ids[i]);
	}
}

static void thin_discard(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* An import copies from a source that is still there: undo it
	 * whole, the user adds the VM again. */
	log_notice("VM %s: import was interrupted; removing it", vm->name);
	vm_remove_devices(vm);
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].thin_id) /* 0: a replica's, no live volume */
			(void)dmr_pool_delete_thin(reg->pool, vm->disks[i].thin_id);
}

static bool thin_doomed_remove(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* Deleting one that is gone already is no error. */
	size_t left = 0, n = vm->n_doomed;

	log_notice("VM %s: removing %zu volume(s) of dropped points", vm->name, vm->n_doomed);
	for (size_t i = 0; i < vm->n_doomed; i++)
		if (vols_down(1, &vm->doomed[i]) < 0 ||
		    dmr_pool_delete_thin(reg->pool, vm->doomed[i]) < 0)
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

/* Id 0 is no volume: nothing to lose. */
static bool id_kept(const uint32_t *ids, size_t n, uint32_t id)
{
	return id == 0 || dmr_delta_ids_has(ids, n, id);
}

static bool thin_repaired(struct dmr_vm *vm, const uint32_t *ids, size_t n)
{
	bool changed = false;
	size_t k = 0;

	/* What the repaired metadata lost of the volumes being removed is
	 * removed already. */
	for (size_t i = 0; i < vm->n_doomed; i++)
		if (id_kept(ids, n, vm->doomed[i]))
			vm->doomed[k++] = vm->doomed[i];
	changed = k != vm->n_doomed;
	vm->n_doomed = k;
	for (size_t p = 0; p < vm->n_points;) {
		struct dmr_point *pt = &vm->points[p];
		size_t lost = 0, kept = 0;
		uint32_t *d;

		for (size_t i = 0; pt->vol_ids && i < vm->n_disks; i++)
			lost += !id_kept(ids, n, pt->vol_ids[i]);
		if (lost == 0) {
			if (pt->pending_tid) {
				/* Every snapshot is there: it was made. */
				pt->pending_tid = 0;
				changed = true;
			}
			p++;
			continue;
		}
		log_warning("VM %s: point %" PRIu64 " is not in the repaired pool metadata (%zu of "
			    "its %zu volumes lost with the pool's last transactions): dropped",
			    vm->name, pt->id, lost, vm->n_disks);
		d = reallocarray(vm->doomed, vm->n_doomed + vm->n_disks, sizeof(*d));
		if (d) {
			vm->doomed = d;
			for (size_t i = 0; i < vm->n_disks; i++)
				if (pt->vol_ids[i] && id_kept(ids, n, pt->vol_ids[i]))
					d[vm->n_doomed + kept++] = pt->vol_ids[i];
			vm->n_doomed += kept;
		}
		/* Out of memory: the remaining volumes stay, unlisted; the
		 * start's orphan report names their devices, if any. */
		dmr_vm_point_drop(vm, p);
		changed = true;
	}
	for (size_t i = 0; i < vm->n_disks; i++) {
		const char *disk = vm->disks[i].name;

		if (!id_kept(ids, n, vm->disks[i].thin_id))
			log_error("VM %s: disk %s's volume %" PRIu32 " is not in the repaired pool "
				  "metadata: its data is lost; fail over to a point or remove the VM",
				  vm->name, disk, vm->disks[i].thin_id);
		if (vm->overlay_ids && !id_kept(ids, n, vm->overlay_ids[i]))
			log_error("VM %s: disk %s's failover overlay %" PRIu32 " is not in the "
				  "repaired pool metadata: revert the failover", vm->name, disk,
				  vm->overlay_ids[i]);
		if (vm->test_ids && !id_kept(ids, n, vm->test_ids[i]))
			log_error("VM %s: disk %s's test view %" PRIu32 " is not in the repaired "
				  "pool metadata: stop the test failover", vm->name, disk,
				  vm->test_ids[i]);
	}
	return changed;
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
	/* Then what they stood on: nothing of the VM's sits there now. */
	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		uint32_t ids[2] = { vm->disks[i].thin_id, vm->overlay_ids ? vm->overlay_ids[i] : 0 };
		char name[DMR_DM_NAME_SIZE];

		r = vols_down(2, ids);
		if (r < 0) {
			vol_name(ids[0], name);
			why_set(&why, "cannot remove the device of volume %" PRIu32 " (%s): %s",
				ids[0], name, strerror(-r));
		}
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
	r = thin_volumes_up(reg, vm, ids);
	if (r < 0) {
		report_fail(rep, r, "cannot activate the volumes");
		goto fail;
	}
	for (size_t i = 0; i < vm->n_disks; i++) {
		r = stable_create(reg, vm, i, ids[i]);
		if (r < 0) {
			char name[DMR_DM_NAME_SIZE];

			(void)dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name);
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

/* Activate thin id as name/uuid unless it is there (test views: a thin
 * device of their own, never swapped). */
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

/* A stable device an older dmrep made (`thin POOL ID`, the volume's own
 * target) moved onto the stack: volume ID's device up, then one swap with
 * a flush; the guest runs on (its writes wait for the flush, nothing is
 * lost).  A table that is neither is left alone: 0 if it is the stack. */
static int stable_move(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
		       const char *name)
{
	_cleanup_table_ struct dmr_table *live = NULL, *want = NULL;
	uint32_t maj, min, id;
	uint64_t sectors = vm->disks[i].size_bytes / 512;
	int r;

	if ((r = dmr_dm_table(name, false, &live)) < 0)
		return r;
	if (dmr_table_linear_dev(live, &maj, &min) == 0)
		return 0;
	if (dmr_thin_table_id(reg->pool, live, &id) < 0 || !vm_has_vol(vm, id)) {
		log_warning("VM %s: %s has a table dmrep does not know: left as it is", vm->name,
			    name);
		return 0;
	}
	if ((r = vols_up(reg, 1, &id, &sectors)) < 0 ||
	    (r = stack_table(id, sectors, &want)) < 0 ||
	    (r = dmr_dm_load(name, want, 0)) < 0)
		goto fail;
	if ((r = dmr_dm_suspend(name, 0)) < 0 || (r = dmr_dm_resume(name)) < 0) {
		(void)dmr_dm_clear(name);
		(void)dmr_dm_resume_retry(name);
		goto fail;
	}
	log_notice("VM %s: %s moved onto volume %" PRIu32 "'s own device (dmrep-thin-%" PRIu32 ")",
		   vm->name, name, id, id);
	return 0;
fail:
	(void)dmr_dm_clear(name);
	log_error("VM %s: cannot move %s onto the stack: %s", vm->name, name, strerror(-r));
	return r;
}

/* The live volumes' devices always up; the stable devices come back on
 * the live volumes, or on the overlays of a failed-over or recovered VM
 * (which show them now); a finished test failover's views on theirs, as
 * the user left them (one with an operation in flight is for failover
 * recovery).  An older dmrep's stable devices move onto the stack. */
static int thin_activate(struct dmr_registry *reg, struct dmr_vm *vm)
{
	_cleanup_free_ uint32_t *live = calloc(vm->n_disks, sizeof(*live));
	int r = 0, q;

	if (!reg->pool)
		return -ENODEV;
	if (!live)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_disks; i++)
		live[i] = vm->disks[i].thin_id;
	q = thin_volumes_up(reg, vm, live);
	if (q < 0)
		log_error("VM %s: cannot activate its live volumes: %s", vm->name, strerror(-q));
	r = q;
	for (size_t i = 0; i < vm->n_disks; i++) {
		const char *disk = vm->disks[i].name;
		uint64_t bytes = vm->disks[i].size_bytes, sectors = bytes / 512;
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
		struct dmr_dm_info info;
		uint32_t id = vm->disks[i].thin_id;

		if (vm->state == DMR_VM_RECOVERED && vm->overlay_ids)
			id = vm->overlay_ids[i];
		q = dmr_vm_disk_dm_name(vm->name, disk, name);
		q = q ?: dmr_vm_disk_dm_uuid(vm->name, disk, uuid);
		q = q ?: dmr_dm_info(name, &info);
		if (q == 0 && id == 0) {
			/* A replica's disk before a failover: no live volume,
			 * so no stable device (README, replica VMs). */
		} else if (q == 0 && info.exists && !dmr_streq(info.uuid, uuid)) {
			log_error("VM %s: %s is another device (UUID %s): not activated, left alone",
				  vm->name, name, info.uuid);
			q = -EEXIST;
		} else if (q == 0 && info.exists) {
			q = stable_move(reg, vm, i, name);
		} else if (q == 0) {
			q = vols_up(reg, 1, &id, &sectors);
			q = q ?: stable_create(reg, vm, i, id);
			if (q < 0)
				log_error("VM %s: cannot activate %s: %s", vm->name, name, strerror(-q));
		}
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

/* ---- replication: sending a point (docs/stream.md) ----------------------
 * A point's own volume is never up otherwise (failovers and test failovers
 * show views, snapshots of it with ids of their own), so its device,
 * dmrep-thin-ID (DMREP-thin-ID) as every volume's, clashes with nothing;
 * it is made read-only for the send and removed after, and at start
 * (dmr_replica_recover) when a send was killed with it up. */

/* Disk i's volume of point `point`: -ENOENT if the VM has no such point. */
static int point_vol(const struct dmr_vm *vm, uint64_t point, size_t i, uint32_t *ret_id)
{
	for (size_t p = 0; p < vm->n_points; p++)
		if (vm->points[p].id == point) {
			if (!vm->points[p].vol_ids || i >= vm->n_disks || !vm->points[p].vol_ids[i])
				return -ENOENT;
			*ret_id = vm->points[p].vol_ids[i];
			return 0;
		}
	return -ENOENT;
}

static int thin_point_extents(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t base,
			      uint64_t point, size_t i, struct dmr_extent **ret_ext, size_t *ret_n,
			      uint64_t *ret_block_bytes)
{
	uint32_t id, base_id = 0;
	uint64_t bb;
	int r;

	assert(reg && vm && ret_ext && ret_n && ret_block_bytes);
	if (!reg->pool)
		return -ENODEV;
	if ((r = point_vol(vm, point, i, &id)) < 0 ||
	    (base && (r = point_vol(vm, base, i, &base_id)) < 0))
		return r;
	bb = dmr_pool_block_bytes(reg->pool);
	if (bb == 0)
		return -EIO;
	r = dmr_delta_extents(reg->pool, base_id, id, (vm->disks[i].size_bytes + bb - 1) / bb,
			      ret_ext, ret_n);
	if (r < 0)
		return r;
	*ret_block_bytes = bb;
	return 0;
}

static int thin_point_read_up(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			      size_t i, char path[DMR_DM_PATH_SIZE])
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	struct dmr_dm_info info;
	uint32_t id;
	int r;

	assert(reg && vm && path);
	if (!reg->pool)
		return -ENODEV;
	if ((r = point_vol(vm, point, i, &id)) < 0)
		return r;
	vol_name(id, name);
	vol_uuid(id, uuid);
	r = vol_info(id, &info);
	if (r < 0)
		return r;
	/* Up already and writable: not what a send leaves; never ours to
	 * read from as the point. */
	if (r > 0 && !info.read_only)
		return -EBUSY;
	if (r == 0) {
		r = dmr_thin_activate(reg->pool, name, uuid, id, vm->disks[i].size_bytes / 512, true);
		if (r < 0)
			return r;
	}
	snprintf(path, DMR_DM_PATH_SIZE, "/dev/mapper/%s", name);
	return 0;
}

static int thin_point_read_down(struct dmr_registry *reg, const struct dmr_vm *vm,
				uint64_t point, size_t i)
{
	uint32_t id;

	assert(reg && vm);
	if (point_vol(vm, point, i, &id) < 0)
		return 0;
	return vols_down(1, &id);
}

/* ---- receive (a replica's point from a stream: docs/stream.md) ---------- */

/* The volumes a received point is written into: empty ones (a full
 * stream: a new thin volume reads as zeros) or snapshots of the base
 * point's (an incremental: the base itself is never written), one pool
 * transaction; then each up as its own hidden writable device. */
static int thin_receive_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t base,
			     const uint32_t *ids, char (*paths)[DMR_DM_PATH_SIZE])
{
	const struct dmr_point *p = NULL;
	_cleanup_free_ const char **none = calloc(vm->n_disks, sizeof(char *));
	_cleanup_free_ uint64_t *sectors = calloc(vm->n_disks, sizeof(*sectors));
	uint64_t old_tid, new_tid;
	int r;

	if (!none || !sectors)
		return -ENOMEM;
	if (!reg->pool)
		return -ENODEV;
	if (base && !(p = dmr_vm_point_find((struct dmr_vm *)vm, base)))
		return -ENOENT;
	for (size_t i = 0; i < vm->n_disks; i++)
		sectors[i] = vm->disks[i].size_bytes / 512;
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	/* A point's volumes are not active: no suspend. */
	r = p ? dmr_thin_snapshot_group(reg->pool, vm->n_disks, none, p->vol_ids, ids, old_tid,
					new_tid, 0, NULL) :
		dmr_thin_create_batch(reg->pool, vm->n_disks, ids, old_tid, new_tid);
	if (dmr_reg_txn_end(reg, r == 0, new_tid) < 0 && r == 0)
		r = -EIO;
	if (r < 0) {
		log_debug("VM %s: cannot create the received point's volumes: %s", vm->name,
			  strerror(-r));
		return r;
	}
	r = vols_up(reg, vm->n_disks, ids, sectors);
	if (r < 0) {
		(void)thin_delete_ids(reg, vm->n_disks, ids);
		return r;
	}
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE];

		vol_name(ids[i], name);
		snprintf(paths[i], DMR_DM_PATH_SIZE, "/dev/mapper/%s", name);
	}
	return 0;
}

/* The data is durable (the writer's fdatasync, which commits the pool's
 * metadata): the devices go, the volumes stay as the point's. */
static int thin_receive_done(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids)
{
	return vols_down(vm->n_disks, ids);
}

/* ---- end of receive ------------------------------------------------------ */

const struct dmr_backend dmr_backend_thin = {
	.name = "thin",
	.live_id = thin_live_id,
	.volumes_up = thin_volumes_up,
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
	.repaired = thin_repaired,
	.may_remove = thin_may_remove,
	.create = thin_create,
	.activate = thin_activate,
	.teardown = thin_teardown,
	.in_place = false,
	.add_room = thin_add_room,
	.add_ids = thin_add_ids,
	.default_cow = thin_default_cow,
	/* Replication between hosts: sending. */
	.point_extents = thin_point_extents,
	.point_read_up = thin_point_read_up,
	.point_read_down = thin_point_read_down,
	.receive_make = thin_receive_make,
	.receive_done = thin_receive_done,
};

