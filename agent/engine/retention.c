/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/retention.c - dropping points: from the catalog first, then
 * their volumes (agent/engine/retention.h).
 */
#include "agent/engine/retention.h"

#include <inttypes.h>
#include <string.h>

#include "agent/backend/backend.h"
#include "common/log.h"
#include "common/testhook.h"
#include "common/util.h"

int dmr_retention_drop_points(struct dmr_registry *reg, struct dmr_vm *vm, const size_t *idx,
			      size_t n, const char *op)
{
	_cleanup_free_ uint32_t *ids = NULL;
	char step[64];
	size_t nids = 0;
	int r = 0;

	/* The catalog first: the points leave it, their ids are recorded as
	 * still to remove, durably, and only then do the volumes go.  A
	 * crash in between leaves volumes nobody lists, which the next start
	 * removes (agent/engine/recovery.c), never a listed point
	 * without its volume. */
	pthread_mutex_lock(&reg->lock);
	for (size_t k = 0; k < n; k++)
		log_info("VM %s: %s drops point %" PRIu64, vm->name, op, vm->points[idx[k]].id);
	if (n > 0)
		r = dmr_reg_points_doom(reg, vm, idx, n);
	/* Also what an earlier run left to remove. */
	if ((r == 0 || r == -DMR_E_NOT_DURABLE) && vm->n_doomed &&
	    !(ids = malloc(vm->n_doomed * sizeof(*ids))))
		r = -ENOMEM;
	if (ids) {
		nids = vm->n_doomed;
		memcpy(ids, vm->doomed, nids * sizeof(*ids));
	}
	pthread_mutex_unlock(&reg->lock);
	if (r == -DMR_E_NOT_DURABLE)
		/* The file lists the points no more, but a power loss may
		 * bring them back: their volumes wait for a write that
		 * sticks (the next retention, or a restart). */
		log_warning("VM %s: the catalog is not durable yet; %zu volume(s) left for later",
			    vm->name, nids);
	if (r < 0 || nids == 0)
		return r;
	snprintf(step, sizeof(step), "%s:recorded", op);
	dmr_test_hook(step);
	r = dmr_backend_of(vm)->remove(reg, vm, nids, ids);
	if (r < 0)
		return r;
	snprintf(step, sizeof(step), "%s:deleted", op);
	dmr_test_hook(step);
	pthread_mutex_lock(&reg->lock);
	r = dmr_reg_doomed_forget(reg, vm, ids, nids);
	pthread_mutex_unlock(&reg->lock);
	/* Not durable: deleting them again after a power loss is harmless
	 * (the ids stay in use until the forget sticks). */
	return r == -DMR_E_NOT_DURABLE ? 0 : r;
}

int dmr_retention_apply(struct dmr_registry *reg, struct dmr_vm *vm, size_t *ret_dropped)
{
	_cleanup_free_ size_t *idx = NULL;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&reg->lock);
	r = dmr_vm_retention_victims(vm, dmr_realtime_usec(), &idx, &n);
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		r = dmr_retention_drop_points(reg, vm, idx, n, "retention");
	if (ret_dropped)
		*ret_dropped = r == 0 || r == -DMR_E_NOT_DURABLE ? n : 0;
	return r;
}
