/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/ops.h - helpers shared by the method handlers (agent/rpc/ops_*.c).
 */
#ifndef DMR_AGENT_OPS_H
#define DMR_AGENT_OPS_H

#include "agent/rpc/method.h"
#include "agent/store/registry.h"

/* The pool, or fail the call: 32775 if none was created, 32777 if it
 * exists but could not be activated; then its health (dmr_pool_usable,
 * agent/engine/pool.h): 32775 failed or read-only, 32778 out of data
 * space, 32774 while RepairPool runs, each with what to do. */
int dmr_ops_need_pool(struct dmr_call *c, struct dmr_pool **ret_pool);

/* What the VM's backend needs: the pool if its storage lives there (as
 * dmr_ops_need_pool; dmr_vm_needs_pool, agent/engine/vm.h), else nothing;
 * 0 for an unknown VM (the caller's lookup reports it). */
int dmr_ops_need_storage(struct dmr_call *c, const char *vm_name);
/* The same for an operation that needs no new data space in the pool:
 * one that only frees it (removing points or a VM, retention, revert,
 * commit, the end of a test failover) or only reads it (a point's send).
 * A pool out of data space is not refused. */
int dmr_ops_need_storage_to_free(struct dmr_call *c, const char *vm_name);
/* Refuse (32777, the reason) work on a VM left down at activation (its
 * disk's device is not the disk that was added); removing it is allowed. */
int dmr_ops_need_up(struct dmr_call *c, const char *vm_name);

/* Validate params.<key> as a VM name (32773 on a bad one). */
int dmr_ops_vm_name(struct dmr_call *c, const char *key, const char **ret_name);

/*
 * Take the VM's busy lock and check it exists: 32774 if busy, 32779 if
 * absent, 32774 if a device with one of its names is not its own
 * (dmr_vm_dm_check, agent/engine/vm.h; the lock is then released).  On 0 the caller owns
 * the lock.
 */
int dmr_ops_vm_acquire(struct dmr_call *c, const char *name);

#endif
