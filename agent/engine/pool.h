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

/* The "pool" object of GetPoolStatus (CONTRACT.md) for reg->pool, up:
 * -errno if its status cannot be read (*ret_why, malloc()ed, says so). */
int dmr_pool_status_json(struct dmr_registry *reg, struct json_object **ret, char **ret_why);

#endif
