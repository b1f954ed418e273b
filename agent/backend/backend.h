/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/backend.h - the one small interface behind which a VM's storage
 * backend sits, so that points, failover and recovery are written once:
 *
 *   thin      thin volumes and snapshots in the agent's pool
 *             (snapshots/thin.h); ids are thin ids
 *   classic   snapshot targets in place on the VM's own block devices
 *             (agent/backend/classic.h); ids are COW store numbers
 *
 * A VM's disks, points and views are named by ids from the registry's
 * allocator (dmr_reg_alloc_vol_ids).  Called with the VM's busy lock held
 * and without reg->lock; 0 or a negative errno.  Making points stays in
 * agent/rpc/ops_point.c, since thin points ride on pool transactions.
 */
#ifndef DMR_AGENT_BACKEND_H
#define DMR_AGENT_BACKEND_H

#include "agent/store/registry.h"
#include "dm/table.h"

/* A store that fills (the pool, a classic point's COW store) is warned
 * about once this full: one mark for every backend and the monitor. */
#define DMR_BACKEND_WARN_PCT 80u

struct dmr_backend {
	const char *name;
	/* The id that means disk i's live volume. */
	uint32_t (*live_id)(const struct dmr_vm *vm, size_t i);
	/* The table that makes disk i's stable device show id. */
	int (*stable_table)(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			    uint32_t id, struct dmr_table **ret_table);
	/* Does a stable device's live table t show id? */
	bool (*table_shows)(struct dmr_registry *reg, const struct dmr_table *t, uint32_t id);
	/* Writable views of point `point`, one per disk, into new ids[]:
	 * activated as names[i]/uuids[i] when names is not NULL.  All or
	 * nothing. */
	int (*views_make)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			  const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE], const char (*uuids)[DMR_DM_UUID_SIZE]);
	/* Remove the volumes ids[0..n) (points, views; 0 and missing ones
	 * skipped).  Devices named after a view (test views) go first,
	 * by the caller. */
	int (*remove)(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		      const uint32_t *ids);
	/* The monitor's periodic check of the VM's volumes, made also before
	 * a failover picks its point: read from the kernel what fills between
	 * calls and record it.  classic: every point's COW use; a point whose
	 * store overflowed or failed is marked not valid and saved at once
	 * (it is never failed over to), one past DMR_BACKEND_WARN_PCT is
	 * warned about once.  thin: nothing (a thin point has no store of
	 * its own; the pool is the monitor's watch).  By name and without the
	 * VM's busy lock (the monitor holds none): a VM removed meanwhile is
	 * not found.  Takes reg->lock itself; never changes a device. */
	void (*refresh)(struct dmr_registry *reg, const char *vm_name);
	/* CommitFailover, once its intent is recorded and before the volumes
	 * it drops are removed: make the overlays the VM runs on
	 * (vm->overlay_ids) its disks for good.  ret_ids[i] (one per disk)
	 * gets the id the catalog records as disk i's live volume
	 * (vm->disks[i].thin_id) with the commit's last save.  thin: nothing
	 * changes yet, ret_ids are the overlays (the old live volumes are
	 * removed by the ids the catalog still holds); classic: the overlays
	 * become a new layer, saved at once, and the stable devices move from
	 * `linear VIEW` onto it (the live id, snapshot-origin), the guest
	 * running (same data); ret_ids stay 0.  Idempotent: after a crash
	 * recovery calls it again; on failure the intent stays for that. */
	int (*commit)(struct dmr_registry *reg, const struct dmr_vm *vm, uint32_t *ret_ids);
};

/* The two backends (agent/backend/thin.c, agent/backend/classic.c). */
extern const struct dmr_backend dmr_backend_thin;
extern const struct dmr_backend dmr_backend_classic;

/* The VM's backend; the only function that reads vm->backend. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm);

/* Make every stable device of the VM (disk i's) show id ids[i], whatever
 * it shows now (through its backend's table_shows and stable_table), and
 * leave none suspended or with an inactive table.  Not inside a guest
 * pause: it suspends with a flush.  Goes on past a failing disk; returns
 * the first error (-ENOENT for a device that does not exist). */
int dmr_backend_retarget(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids);

#endif
