/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/failover.h - the failover engine: InitiateFailover, RevertFailover,
 * CommitFailover, TestReplicaSystem, StopTestReplicaSystem, and the crash
 * recovery of any of them.
 *
 * Every operation writes an intent into the VM's state file before its
 * first change and clears it after its last; every step is idempotent.  At
 * start, recovery (agent/engine/recovery.h) finds intents and, reading the
 * live dm tables as the truth, rolls each operation forward or back.
 */
#ifndef DMR_AGENT_FAILOVER_H
#define DMR_AGENT_FAILOVER_H

#include "agent/store/registry.h"

struct dmr_shim;
struct fo_ctx;

/*
 * For crash recovery (agent/engine/recovery.c), which reads the live dm
 * tables and decides whether an interrupted operation is rolled forward or
 * back: the context the operation's job had (guest policy reset, the test
 * views' ids from the catalog), and the operation's own idempotent steps.
 * Called at start, before any job, with no lock held.
 */
int dmr_failover_ctx_recovery(struct dmr_registry *reg, const struct dmr_vm *vm, bool reset,
			      struct fo_ctx **ret);
void dmr_failover_ctx_free(struct fo_ctx *c);
/* Which the stable devices run: 1 every disk its overlay, 0 none, -1 a mix. */
int dmr_failover_on_overlays(const struct fo_ctx *c);
/* Every stable device back on its live volume (reload, suspend, resume). */
int dmr_failover_retarget_live(const struct fo_ctx *c);
/* Remove the overlays (vm->overlay_ids) / the test views' volumes. */
int dmr_failover_delete_overlays(struct fo_ctx *c);
int dmr_failover_delete_test_views(struct fo_ctx *c);
/* Remove the test views' devices (only the VM's own, full UUID). */
int dmr_failover_remove_test_devices(const struct fo_ctx *c);
/* CommitFailover's work after its intent: layer (classic), deletes, catalog. */
int dmr_failover_commit_finish(struct fo_ctx *c);
/* The catalog as a finished or undone operation leaves it (no save). */
void dmr_failover_initiate_done(struct dmr_vm *vm);
void dmr_failover_initiate_undone(struct dmr_vm *vm);
void dmr_failover_revert_done(struct dmr_vm *vm);
void dmr_failover_test_undone(struct dmr_vm *vm);
/* The VM's hypervisor shim (qmp, exec, or none). */
int dmr_failover_shim(const struct dmr_vm *vm, struct dmr_shim **ret);

#endif
