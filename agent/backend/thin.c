/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/thin.c - the thin backend: a VM's disks, points and views
 * are thin volumes and snapshots in the agent's pool (snapshots/thin.h);
 * every id is a thin id, and every batch of metadata changes is one pool
 * transaction (dmr_reg_txn_begin/_end).
 */
#include <inttypes.h>

#include "agent/backend/backend.h"

#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
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
};

