/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/recovery.h - what the agent does at start, after a crash or
 * a reboot, between loading the catalog (dmr_registry_open) and opening
 * the socket: the pool activated (checked to be on its own devices first),
 * the devices reconciled with the catalog (reading the kernel as the
 * truth: volumes of dropped points removed, pending points kept or
 * dropped, interrupted creations undone, devices brought back up after a
 * reboot, older dmreps' names renamed, orphans reported), every
 * interrupted failover operation rolled forward or back from its intent,
 * and guests an interrupted point left frozen thawed.
 *
 * Called by dmrepd.c once, before the server and any job: nothing else
 * touches the catalog meanwhile, so no lock is held.  Each VM's backend
 * does its own device work (agent/backend/backend.h).
 */
#ifndef DMR_AGENT_RECOVERY_H
#define DMR_AGENT_RECOVERY_H

#include "agent/core/agent.h"

/* Everything above, in that order.  Failures are logged and leave the
 * VM (or the pool) as it was found; the agent serves what it can.
 * 0 (or -ENOMEM). */
int dmr_recovery_run(struct dmr_agent *a);

/* After RepairPool (agent/engine/pool.c) brought the pool back on
 * repaired metadata holding thin ids ids[0..n) (ascending) at transaction
 * pool_tid, which may lack the last transactions the kernel had accepted
 * (thin_repair keeps the last commit): the catalog takes the pool's
 * transaction id (else every later batch's set_transaction_id fails), each
 * thin VM drops what the metadata lost (backend ->repaired) and is saved,
 * the remaining volumes of dropped points are removed.  The caller holds
 * every thin VM's busy lock (or runs at start, before the server); takes
 * reg->lock itself.  0, or the first error (each logged). */
int dmr_recovery_reconcile_repaired(struct dmr_registry *reg, const uint32_t *ids, size_t n,
				    uint64_t pool_tid);

#endif
