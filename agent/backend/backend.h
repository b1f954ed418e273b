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
};

/* The two backends (agent/backend/thin.c, agent/backend/classic.c). */
extern const struct dmr_backend dmr_backend_thin;
extern const struct dmr_backend dmr_backend_classic;

/* The VM's backend; the only function that reads vm->backend. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm);

#endif
