/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/identity.h - disk identities checked against the devices:
 * the pool's paths before it is activated, a table naming a device.  Their
 * JSON, in state files and replies, is the store's (agent/store/ident_json.h).
 */
#ifndef DMR_AGENT_IDENTITY_H
#define DMR_AGENT_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/store/ident_json.h"
#include "snapshots/ident.h"

struct dmr_registry;

/* Does the live table of dm device `name` name device maj:min?  False
 * when it does not exist or cannot be read. */
bool dmr_ident_table_uses(const char *name, uint32_t maj, uint32_t min);

/*
 * Before the pool is activated: is each of its paths the device or file
 * the pool was made on?  0 if so (or not known: then a warning); -ESTALE if
 * not, with reg->pool_down_reason set (the pool stays down, nothing is
 * written to either device).  Caller holds no lock (start-up).
 */
int dmr_reg_pool_ident_check(struct dmr_registry *reg);
/* After activation: record the identities not known yet where they are
 * unambiguous (a file, found by inode; a device the live pool table
 * names).  Returns true if one was recorded (pool.json to be saved). */
bool dmr_reg_pool_ident_learn(struct dmr_registry *reg);

#endif
