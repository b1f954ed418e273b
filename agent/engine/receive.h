/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/receive.h - what ReceiveReplicationPoint (agent/engine/
 * replica.h) decides before it writes anything, as a pure function of the
 * stream's header and the VM record of that name here, so that every
 * refusal is unit tested without a pool or a stream.
 */
#ifndef DMR_AGENT_RECEIVE_H
#define DMR_AGENT_RECEIVE_H

#include <stdint.h>

#include "agent/store/registry.h"
#include "common/stream.h"

/* May stream header h become a point of VM `name` here?  vm is the VM
 * of that name in the catalog (NULL: none; caller holds reg->lock or its
 * busy lock), free_bytes the pool's free data bytes.  0, with *ret_base
 * the base point's id (0: a full stream; a full one into an existing
 * replica with no points), or:
 *   -EINVAL        the header names another VM than the command line
 *   -EOPNOTSUPP    a stream version newer than this agent reads
 *   -DMR_E_STATE   VM is a primary here, has another uuid, a full stream
 *                  for a replica that has points, an incremental whose
 *                  base is not the latest valid point, a point already
 *                  held, disks that are not the replica's
 *   -EBUSY         the VM is in a real failover (a test one is fine)
 *   -ENOSPC        the stream's data cannot fit in the pool
 * and *ret_why (malloc()ed one line saying what was expected; may stay
 * NULL on -ENOMEM). */
int dmr_receive_check(const struct dmr_stream_header *h, const char *name,
		      const struct dmr_vm *vm, uint64_t free_bytes, uint64_t *ret_base,
		      char **ret_why);

/* The latest valid point that is not pending, or NULL (reg->lock). */
const struct dmr_point *dmr_receive_latest(const struct dmr_vm *vm);

#endif
