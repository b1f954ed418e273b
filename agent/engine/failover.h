/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/failover.h - the failover engine: InitiateFailover, RevertFailover,
 * CommitFailover, TestReplicaSystem, StopTestReplicaSystem, and the crash
 * recovery of any of them.
 *
 * Every operation writes an intent into the VM's state file before its
 * first change and clears it after its last; every step is idempotent.  At
 * start, dmr_failover_recover() finds intents and, reading the live dm
 * tables as the truth, rolls each operation forward or back.
 */
#ifndef DMR_AGENT_FAILOVER_H
#define DMR_AGENT_FAILOVER_H

#include "agent/store/registry.h"

/* Recover every VM with an intent (called once the pool is up). */
void dmr_failover_recover(struct dmr_registry *reg);

#endif
