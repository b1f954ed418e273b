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

/* What an operation run inside a job tells the job as it goes (the
 * engine fills it in from its job; a backend never sees one). */
struct dmr_backend_report {
	void *userdata;
	/* A step done, named as the job's "steps" list shows it. */
	void (*step)(void *userdata, const char *name, uint64_t usec);
	/* Bytes imported so far, over every disk. */
	void (*imported)(void *userdata, uint64_t bytes);
	/* Why it failed: recorded as dmr_job_fail(job, negerrno, "%s", what). */
	void (*fail)(void *userdata, int negerrno, const char *what);
};

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
	/* Does the VM's storage live in the agent's pool?  Then work on it
	 * is refused while the pool is absent or left down. */
	bool needs_pool;
	/* May RemoveVirtualSystem remove the VM (force: the user's --force)?
	 * 0, or -DMR_E_STATE and *ret_why (malloc()ed) saying why not and
	 * what to do first.  Caller holds reg->lock; no dm call. */
	int (*may_remove)(const struct dmr_vm *vm, bool force, char **ret_why);
	/* AddVirtualSystem's disks, for a VM recorded as importing: fds[i]
	 * is disk i's source as the handler opened and judged it (-1: a new
	 * empty disk); thin: volumes in the pool (one transaction, the VM's
	 * import_tid saved first), the stable devices, each source copied
	 * in; classic: loops over image files, the stable devices on the
	 * disks in place.  Steps, progress and the failure go to rep.  All
	 * or nothing: on failure no device or volume it made is left.
	 * Busy lock held, not reg->lock. */
	int (*create)(struct dmr_registry *reg, struct dmr_vm *vm, const int *fds,
		      const struct dmr_backend_report *rep);
	/* Bring the VM's devices up as the catalog has them (at start, after
	 * a reboot): each one that is not there is activated; one that is,
	 * is left as it is; one under its name with another UUID is left
	 * alone (-EEXIST).  Goes on past a failure (each is logged) and
	 * returns the first.  Idempotent.  Busy lock held (or recovery,
	 * before the server runs), not reg->lock. */
	int (*activate)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Take the VM's devices down: thin, its stable devices (the volumes
	 * stay: ->remove deletes them); classic, every device of it, its COW
	 * stores destroyed and its base loops detached (the disks stay).
	 * Stops at the first device it cannot remove: -EEXIST (another
	 * UUID), -EBUSY (open: the VM runs) or the errno, and *ret_why
	 * (malloc()ed; ret_why may be NULL) says so; what went before stays
	 * gone.  Busy lock held, not reg->lock. */
	int (*teardown)(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why);
};

/* The two backends (agent/backend/thin.c, agent/backend/classic.c). */
extern const struct dmr_backend dmr_backend_thin;
extern const struct dmr_backend dmr_backend_classic;

/* The VM's backend; the only function that reads vm->backend. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm);

#endif
