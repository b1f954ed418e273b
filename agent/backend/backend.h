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
	/* Is dm device `name` one of the VM's own: its stable devices, its
	 * test views, and the devices of its points, views and layers where
	 * the backend has such?  Names only, no dm call: recovery asks it of
	 * every DMREP- device it finds.  Caller keeps vm (reg->lock or the
	 * VM's busy lock). */
	bool (*owns)(const struct dmr_vm *vm, const char *name);

	/* The rest is crash and reboot recovery's (agent/engine/recovery.c):
	 * called once at start, before the server and any job, so with no
	 * lock held; each logs its own failures (the agent goes on).
	 *
	 * needs_pool: the VM's storage lives in the agent's pool (thin):
	 * nothing of it is reconciled or recovered while the pool is down. */
	bool needs_pool;
	/* A creation (AddVirtualSystem) that a crash interrupted
	 * (vm->importing), undone: every device and volume made for the VM
	 * removed, best effort; its sources are untouched (thin copies them,
	 * classic uses them in place).  The caller deletes the record. */
	void (*discard)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Remove the volumes of vm->doomed (points the catalog dropped before
	 * a crash) and take the removed ones out of it (missing ones count as
	 * removed; classic: all or none).  True if vm->doomed changed (the
	 * caller saves). */
	bool (*doomed_remove)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Settle point p, left pending (p->pending_tid) by a crash while it
	 * was made: 1 if it was made (thin: the pool's transaction id
	 * pool_tid reached pending_tid; classic: every one of its devices
	 * exists), else 0 once whatever volumes of it exist are removed
	 * (best effort).  The catalog is the caller's to update. */
	int (*settle)(struct dmr_registry *reg, const struct dmr_vm *vm,
		      const struct dmr_point *p, uint64_t pool_tid);
	/* After a reboot: bring up every device the catalog names that is
	 * not active (stable devices on what the VM runs on, the views of a
	 * finished test failover, classic stores in dependency order), left
	 * alone where a device of that name is not the VM's.  Idempotent;
	 * 0 or the first error (each logged). */
	int (*reconcile)(struct dmr_registry *reg, struct dmr_vm *vm);
};

/* The two backends (agent/backend/thin.c, agent/backend/classic.c). */
extern const struct dmr_backend dmr_backend_thin;
extern const struct dmr_backend dmr_backend_classic;

/* The VM's backend; the only function that reads vm->backend. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm);

/* Is every device that carries one of the VM's names the VM's own (full
 * UUID)?  0 if so (absent ones are fine); -EEXIST if one is another
 * device, its name in ret_name: nothing of it may be removed, reloaded
 * or suspended.  Busy lock held, reg->lock not (dm calls). */
int dmr_vm_dm_check(const struct dmr_vm *vm, char ret_name[DMR_DM_NAME_SIZE]);

#endif
