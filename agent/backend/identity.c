/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/backend/identity.h"

#include <inttypes.h>
#include <stdio.h>

#include "agent/store/registry.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/table.h"
#include "snapshots/pool.h"
#include "snapshots/probe.h"

bool dmr_ident_table_uses(const char *name, uint32_t maj, uint32_t min)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	char devno[32];

	snprintf(devno, sizeof(devno), "%" PRIu32 ":%" PRIu32, maj, min);
	if (dmr_dm_table(name, false, &t) < 0)
		return false;
	for (size_t i = 0; i < t->count; i++) {
		_cleanup_free_ char *params = t->targets[i].params ? strdup(t->targets[i].params) : NULL;
		char *save = NULL;

		for (char *tok = params ? strtok_r(params, " ", &save) : NULL; tok;
		     tok = strtok_r(NULL, " ", &save))
			if (dmr_streq(tok, devno))
				return true;
	}
	return false;
}

static const char *const pool_role[2] = { "data", "metadata" };

static const char *pool_path(const struct dmr_registry *reg, size_t k)
{
	return k == 0 ? reg->pool_spec.data_path : reg->pool_spec.meta_path;
}

int dmr_reg_pool_ident_check(struct dmr_registry *reg)
{
	for (size_t k = 0; k < 2; k++) {
		_cleanup_free_ char *why = NULL;
		struct dmr_ident now;
		int r;

		if (!reg->pool_ident[k]) {
			/* A file is found by its inode (snapshots/loop.c); a
			 * device by path only, until it is learnt. */
			if (dmr_probe_path_kind(pool_path(reg, k), NULL, NULL) == 0 &&
			    dmr_ident_read(pool_path(reg, k), &now) == 0) {
				if (now.is_block && !dmr_ident_table_uses(DMR_POOL_DM_NAME, now.major,
									  now.minor))
					log_warning("pool %s device %s: its identity was never recorded "
						    "(pool.json from an older dmrep): it is trusted by "
						    "path", pool_role[k], pool_path(reg, k));
				dmr_ident_done(&now);
			}
			continue;
		}
		r = dmr_ident_read(pool_path(reg, k), &now);
		if (r == -ENOENT)
			continue; /* activation says so */
		if (r < 0)
			return r;
		r = dmr_ident_match(reg->pool_ident[k], &now, &why);
		dmr_ident_done(&now);
		if (r == -ESTALE) {
			free(reg->pool_down_reason);
			if (asprintf(&reg->pool_down_reason,
				     "the pool's %s path %s is not what the pool was made on: %s",
				     pool_role[k], pool_path(reg, k), why ? why : "it differs") < 0)
				reg->pool_down_reason = NULL;
			return -ESTALE;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

bool dmr_reg_pool_ident_learn(struct dmr_registry *reg)
{
	bool learnt = false;

	for (size_t k = 0; k < 2; k++) {
		struct dmr_ident now, *id;

		if (reg->pool_ident[k] || dmr_ident_read(pool_path(reg, k), &now) < 0)
			continue;
		if (now.is_block && !dmr_ident_table_uses(DMR_POOL_DM_NAME, now.major, now.minor)) {
			dmr_ident_done(&now);
			continue;
		}
		id = malloc(sizeof(*id));
		if (!id) {
			dmr_ident_done(&now);
			continue;
		}
		*id = now;
		reg->pool_ident[k] = id;
		log_notice("pool %s %s: identity recorded", pool_role[k], pool_path(reg, k));
		learnt = true;
	}
	return learnt;
}
