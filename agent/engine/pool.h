/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/pool.h - the agent's thin pool as an operation: CreatePool's
 * work (room on the filesystems, the pool made, its identity and state
 * recorded) and GetPoolStatus's reading.  Called by agent/rpc/ops_pool.c's
 * handlers, which check the parameters first; 0 or a negative errno, and
 * a message for the caller to answer with.
 */
#ifndef DMR_AGENT_ENGINE_POOL_H
#define DMR_AGENT_ENGINE_POOL_H

#include <json-c/json.h>

#include "agent/core/agent.h"
#include "agent/engine/job.h"
#include "agent/store/registry.h"
#include "snapshots/pool.h"

/*
 * Make the pool spec (data_path, meta_path absolute, checked) names and
 * record it as the agent's: the filesystems under its files must hold
 * them full unless spec->sparse (then *ret_warning, malloc()ed or NULL,
 * says what happens when they fill); a device or file with a signature is
 * refused unless force.  On failure *ret_why (malloc()ed) is the whole
 * message: -EINVAL a path cannot be looked at or a signature was found,
 * -ENOSPC no room, -EBUSY a device is in use, -EOPNOTSUPP no fallocate,
 * else the errno; nothing is recorded (the pool may exist when only the
 * record failed: the message says so).  reg->lock not held.
 */
int dmr_pool_make(struct dmr_registry *reg, struct dmr_pool_spec *spec, bool force,
		  char **ret_warning, char **ret_why);

/* The "pool" object of GetPoolStatus (CONTRACT.md) for reg->pool, up
 * ("active": true): -errno if its status cannot be read (*ret_why,
 * malloc()ed, says so).  A pool that is down (recorded, not active:
 * reg->pool NULL) is answered too, "active": false, "mode": "down",
 * "health": "fail", with "reason" and "advice" (dmr_pool_down_why's). */
int dmr_pool_status_json(struct dmr_registry *reg, struct json_object **ret, char **ret_why);
/* A pool recorded but down (reg->pool NULL, reg->have_pool): -DMR_E_STATE
 * (32775) and *ret_why (malloc()ed) "the pool is down: REASON; ADVICE", one
 * line, the same for every operation that needs it. */
int dmr_pool_down_why(struct dmr_registry *reg, char **ret_why);

/* May an operation use the pool (reg->pool up)?  0; -DMR_E_STATE when it
 * failed, needs a check, is read-only or its status cannot be read (the
 * reason says to run 'dmrep pool repair'), -ENOSPC out of data space
 * (unless to_free: the operation only frees space, as removing points),
 * -EBUSY while a repair runs; *ret_why (malloc()ed) says so in one line.
 * Reads the kernel (the pool's status). */
int dmr_pool_usable(struct dmr_registry *reg, bool to_free, char **ret_why);

/* An operation on the pool failed with r (< 0): when the pool itself has
 * failed, gone read-only or run out of space meanwhile (the fault came
 * during the operation, past the handler's dmr_pool_usable gate), the
 * pool's refusal is the answer that says what to do, so it replaces the
 * job's error and its code is returned; else r, the job untouched (also
 * when the status cannot be read now).  No pool (classic VMs only): r. */
int dmr_pool_job_explain(struct dmr_registry *reg, struct dmr_job *job, int r);

/*
 * RepairPool: a job (method "RepairPool", no VM) that brings a failed or
 * read-only pool back in service, as lvm2's `lvconvert --repair` does:
 * every thin VM's busy lock taken (-EBUSY if one is held), the metadata
 * copied to STATE/pool-meta.backup-TIME (the job's "backup"; a device that
 * cannot be read fails the job with 32775, nothing changed), the volumes'
 * devices reloaded to `error` (stable devices untouched), the pool's
 * device down, the backup thin_check'ed, thin_repair'ed into STATE/pool-meta.spare,
 * that copied over the metadata device and checked, the pool and the
 * volumes' tables back.  thin_repair keeps the last commit, so what the
 * kernel accepted after it (a batch whose commit failed with the device)
 * is lost: the catalog then takes the repaired pool's transaction id and
 * drops the points whose volumes are gone (dmr_recovery_reconcile_repaired;
 * the job's "transaction_id"), and a device on a lost volume is removed
 * (or, held open, stays on `error`).  Refused (-DMR_E_STATE) for a healthy
 * pool or one only out of data space.  Crash steps "repair:backup",
 * "repair:volumes-error", "repair:pool-down", "repair:repaired",
 * "repair:swapped", "repair:pool-up", "repair:volumes-back",
 * "repair:reconciled".
 */
int dmr_pool_repair_start(struct dmr_agent *a, uint64_t *ret_id, char **ret_why);

/* Recovery (agent/engine/recovery.c) of a repair a crash interrupted,
 * from STATE/pool-repair.json: _pre before the pool is activated (a copy
 * of the repaired metadata cut short is finished), _post after it and
 * before the VMs are reconciled (the volumes' devices left on `error`
 * reloaded on the pool; on the repaired metadata, the catalog brought in
 * step with it as the repair does).  Log what fails. */
void dmr_pool_repair_recover_pre(struct dmr_registry *reg);
void dmr_pool_repair_recover_post(struct dmr_registry *reg);

#endif
