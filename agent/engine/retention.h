/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/retention.h - dropping points, by a retention policy or on
 * request.  The catalog first: the points leave it and their ids are
 * recorded as still to remove, durably; only then do the volumes go
 * (through the VM's backend).  A crash in between leaves volumes nobody
 * lists, which recovery removes at the next start, never a listed point
 * without its volume.
 */
#ifndef DMR_AGENT_ENGINE_RETENTION_H
#define DMR_AGENT_ENGINE_RETENTION_H

#include <stddef.h>

#include "agent/store/registry.h"

/*
 * Drop points[idx[0..n)] (indexes newest first; busy lock held, reg->lock
 * not): out of the catalog first, durably, then their volumes deleted
 * (with any an earlier call left).  op ("retention", "remove") names the
 * cause in the log and the test hooks' steps OP:recorded (catalog saved,
 * volumes still there) and OP:deleted (volumes gone, not yet forgotten).
 * -DMR_E_NOT_DURABLE: dropped from the catalog, volumes left for later.
 */
int dmr_retention_drop_points(struct dmr_registry *reg, struct dmr_vm *vm, const size_t *idx,
			      size_t n, const char *op);

/* Apply the VM's retention policy (busy lock held): drop its victims.
 * *ret_dropped (may be NULL): how many left the catalog. */
int dmr_retention_apply(struct dmr_registry *reg, struct dmr_vm *vm, size_t *ret_dropped);

#endif
