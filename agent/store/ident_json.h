/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/store/ident_json.h - disk identities (snapshots/ident.h) in state
 * files and replies: one JSON object per disk or pool device,
 *   {"kind": "block"|"file", "size_bytes": N, "inode": N,
 *    "loop_file": "...", "loop_inode": N, "dm_uuid": "...", "wwid": "...",
 *    "serial": "...", "partition": N, "partition_start": N,
 *    "by_id": ["..."], "devno": "MAJ:MIN"}
 * with absent keys for what the device does not have.  devno is what the
 * device was called when recorded, for the operator; it is never compared.
 * JSON only: checking an identity against the devices is the backends'
 * (agent/backend/identity.h).
 */
#ifndef DMR_AGENT_IDENT_JSON_H
#define DMR_AGENT_IDENT_JSON_H

#include <json-c/json.h>

#include "snapshots/ident.h"

struct json_object *dmr_ident_json(const struct dmr_ident *id);
/* Parse one (bounded, validated: a state file is not trusted blindly).
 * *ret is a new malloc()ed identity; -EBADMSG on anything malformed. */
int dmr_ident_from_json(struct json_object *o, struct dmr_ident **ret);

#endif
