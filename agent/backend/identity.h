/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/identity.h - disk identities (snapshots/ident.h) in state files and
 * replies: one JSON object per disk or pool device,
 *   {"kind": "block"|"file", "size_bytes": N, "inode": N,
 *    "loop_file": "...", "loop_inode": N, "dm_uuid": "...", "wwid": "...",
 *    "serial": "...", "partition": N, "partition_start": N,
 *    "by_id": ["..."], "devno": "MAJ:MIN"}
 * with absent keys for what the device does not have.  devno is what the
 * device was called when recorded, for the operator; it is never compared.
 */
#ifndef DMR_AGENT_IDENTITY_H
#define DMR_AGENT_IDENTITY_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshots/ident.h"

struct json_object *dmr_ident_json(const struct dmr_ident *id);
/* Parse one (bounded, validated: a state file is not trusted blindly).
 * *ret is a new malloc()ed identity; -EBADMSG on anything malformed. */
int dmr_ident_from_json(struct json_object *o, struct dmr_ident **ret);


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
