/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/failover.h - the failover engine: InitiateFailover, RevertFailover,
 * CommitFailover, TestReplicaSystem, StopTestReplicaSystem, and the crash
 * recovery of any of them.
 *
 * The jobs are started through dmr_failover_new/_prepare/_start by the
 * method handlers (agent/rpc/ops_failover.c).
 *
 * Every operation writes an intent into the VM's state file before its
 * first change and clears it after its last; every step is idempotent.  At
 * start, recovery (agent/engine/recovery.h) finds intents and, reading the
 * live dm tables as the truth, rolls each operation forward or back.
 */
#ifndef DMR_AGENT_FAILOVER_H
#define DMR_AGENT_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/store/registry.h"

/* The operations, each started by one method of the control API. */
enum dmr_failover_op {
	DMR_FAILOVER_INITIATE,  /* InitiateFailover */
	DMR_FAILOVER_REVERT,    /* RevertFailover */
	DMR_FAILOVER_COMMIT,    /* CommitFailover */
	DMR_FAILOVER_TEST,      /* TestReplicaSystem */
	DMR_FAILOVER_STOP_TEST, /* StopTestReplicaSystem */
};

/* The method's name, which the operation's job carries ("InitiateFailover"). */
const char *dmr_failover_method(enum dmr_failover_op op);

/*
 * One operation, from the caller's checks to the end of its job: what the
 * job needs, copied out of the catalog so that it runs without reg->lock.
 *
 * The caller (agent/rpc/ops_failover.c) takes the VM's busy lock
 * (dmr_vm_busy_acquire), then under reg->lock calls dmr_failover_new(),
 * checks that the VM's state allows the operation and calls
 * dmr_failover_prepare(); then, without reg->lock, dmr_failover_start().
 */
struct dmr_failover;

/* Copy what operation op on vm needs: its disks' device names and ids, its
 * network settings, and hook_dir (the failover hooks, agent/guest/hooks.h;
 * may be NULL).  Caller holds reg->lock.  0 or -ENOMEM (-EINVAL for a name
 * a state file edited by hand made invalid). */
int dmr_failover_new(struct dmr_registry *reg, const struct dmr_vm *vm, enum dmr_failover_op op,
		     const char *hook_dir, struct dmr_failover **ret_fo);
/* May op run on vm as its role is?  0, or a negative errno and *ret_why
 * (static) the reason for the caller's reply; dmr_failover_new refuses the
 * same.  Every operation runs on a replica now: its failover makes the
 * stable devices on the point's overlays (no guest to pause), its revert
 * removes them, its commit makes it the VM's primary (role "primary",
 * repl.acked_uuid the failover point's: the last point both hosts share). */
int dmr_failover_role_check(const struct dmr_vm *vm, enum dmr_failover_op op,
			    const char **ret_why);
/* Once the caller has checked the VM's state: the point (INITIATE, TEST: a
 * valid point that is not pending; 0 otherwise), whether the guest is reset
 * once its disks switched (INITIATE, REVERT), and for the two operations
 * that pause the guest its hypervisor shim.  Caller holds reg->lock.  0, or
 * a negative errno when the VM's shim settings make none. */
int dmr_failover_prepare(struct dmr_failover *fo, const struct dmr_vm *vm, uint64_t point,
			 bool reset);
/* Start the operation's job (reg->lock not held).  On 0 the job owns fo and
 * the VM's busy lock, and *ret_id is its number; on failure both stay the
 * caller's. */
int dmr_failover_start(struct dmr_agent *a, struct dmr_failover *fo, uint64_t *ret_id);
/* Accepts NULL. */
void dmr_failover_free(struct dmr_failover *fo);


struct dmr_shim;

/*
 * For crash recovery (agent/engine/recovery.c), which reads the live dm
 * tables and decides whether an interrupted operation is rolled forward or
 * back: the context the operation's job had (guest policy reset, the test
 * views' ids from the catalog), and the operation's own idempotent steps.
 * Called at start, before any job, with no lock held.
 */
int dmr_failover_ctx_recovery(struct dmr_registry *reg, const struct dmr_vm *vm, bool reset,
			      struct dmr_failover **ret);
/* Which the stable devices run: 1 every disk its overlay, 0 none, -1 a mix. */
int dmr_failover_on_overlays(const struct dmr_failover *c);
/* Every stable device back on its live volume (reload, suspend, resume);
 * a replica's, whose live state has none, removed (only its own). */
int dmr_failover_retarget_live(const struct dmr_failover *c);
/* Remove the overlays (vm->overlay_ids) / the test views' volumes. */
int dmr_failover_delete_overlays(struct dmr_failover *c);
int dmr_failover_delete_test_views(struct dmr_failover *c);
/* Remove the test views' devices (only the VM's own, full UUID). */
int dmr_failover_remove_test_devices(const struct dmr_failover *c);
/* CommitFailover's work after its intent: layer (classic), deletes, catalog. */
int dmr_failover_commit_finish(struct dmr_failover *c);
/* The catalog as a finished or undone operation leaves it (no save). */
void dmr_failover_initiate_done(struct dmr_vm *vm);
void dmr_failover_initiate_undone(struct dmr_vm *vm);
void dmr_failover_revert_done(struct dmr_vm *vm);
void dmr_failover_test_undone(struct dmr_vm *vm);
/* The VM's hypervisor shim (qmp, exec, or none). */
int dmr_failover_shim(const struct dmr_vm *vm, struct dmr_shim **ret);

#endif
