/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/receive_check.c - ReceiveReplicationPoint's refusals
 * (agent/engine/receive.h): kept apart from the job so that they link and
 * are tested without the stream codec or the data path.
 */
#include "agent/engine/receive.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/rc.h"
#include "common/util.h"

const struct dmr_point *dmr_receive_latest(const struct dmr_vm *vm)
{
	for (size_t i = vm ? vm->n_points : 0; i-- > 0;)
		if (vm->points[i].valid && !vm->points[i].pending_tid)
			return &vm->points[i];
	return NULL;
}

int dmr_receive_check(const struct dmr_stream_header *h, const char *name,
		      const struct dmr_vm *vm, uint64_t free_bytes, uint64_t *ret_base,
		      char **ret_why)
{
	const struct dmr_point *latest;
	bool full;

	assert(h && name && ret_base && ret_why);
	full = h->base_uuid[0] == '\0';
	if (!dmr_streq(h->vm, name))
		return dmr_why_set(ret_why, -EINVAL, "the stream is of VM %s, not %s", h->vm, name);
	if (h->version > DMR_STREAM_VERSION)
		return dmr_why_set(ret_why, -EOPNOTSUPP,
				   "stream format version %" PRIu32 " is newer than this agent reads (%u)",
				   h->version, DMR_STREAM_VERSION);
	/* A promoted replica (failover commit) is a primary too: a returning
	 * old primary's streams never overwrite it; the reason says the way
	 * out, which is on the sending host. */
	if (vm && vm->role != DMR_VM_REPLICA)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s is a primary here: a replica takes streams (if the sender is "
				   "its old primary, demote it there with vm demote and replicate from "
				   "here)", name);
	if (vm && !dmr_streq(vm->uuid, h->vm_uuid))
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "the stream is of VM uuid %s; VM %s here is uuid %s", h->vm_uuid, name,
				   vm->uuid);
	/* A real failover runs the VM on this host's points: a new point
	 * under it would be of a timeline it left.  A test one changes
	 * nothing of the points. */
	if (vm && vm->state != DMR_VM_REPLICATING)
		return dmr_why_set(ret_why, -EBUSY,
				   "VM %s is %s: a replica in a failover takes no stream",
				   name, dmr_vm_state_name(vm->state));
	if (vm && vm->importing)
		return dmr_why_set(ret_why, -EBUSY, "VM %s is still being created", name);
	for (size_t i = 0; vm && i < vm->n_points; i++)
		if (dmr_streq(vm->points[i].uuid, h->point_uuid))
			return dmr_why_set(ret_why, -DMR_E_STATE,
					   "VM %s holds point %s already (point %" PRIu64 ")", name,
					   h->point_uuid, vm->points[i].id);
	latest = dmr_receive_latest(vm);
	if (full && latest)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "a full stream, but replica %s has points (latest %s): send an "
				   "incremental from it", name, latest->uuid);
	if (!full && !vm)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "stream's base is %s, but VM %s is not here: send a full stream first",
				   h->base_uuid, name);
	/* A resync's base is the point whose block hashes the sender
	 * compared (named in the hash request, the newest by default): a
	 * valid point here, not necessarily the latest. */
	if (h->resync && vm) {
		const struct dmr_point *bp = NULL;

		for (size_t i = 0; i < vm->n_points && !bp; i++)
			if (vm->points[i].valid && !vm->points[i].pending_tid &&
			    dmr_streq(vm->points[i].uuid, h->base_uuid))
				bp = &vm->points[i];
		if (!bp)
			return dmr_why_set(ret_why, -DMR_E_STATE,
					   "the resync's base is %s, which replica %s does not hold "
					   "(valid)", h->base_uuid, name);
		latest = bp;
	}
	if (!full && (!latest || !dmr_streq(latest->uuid, h->base_uuid)))
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "stream's base is %s, this replica's latest point is %s",
				   h->base_uuid, latest ? latest->uuid : "none");
	if (vm) {
		if (vm->n_disks != h->n_disks)
			return dmr_why_set(ret_why, -DMR_E_STATE,
					   "the stream has %" PRIu32 " disk(s), replica %s has %zu", h->n_disks,
					   name, vm->n_disks);
		for (size_t i = 0; i < vm->n_disks; i++)
			if (!dmr_streq(vm->disks[i].name, h->disks[i].name) ||
			    vm->disks[i].size_bytes != h->disks[i].size_bytes)
				return dmr_why_set(ret_why, -DMR_E_STATE,
						   "the stream's disk %zu is %s of %" PRIu64
						   " bytes, replica %s's is %s of %" PRIu64 " bytes",
						   i, h->disks[i].name, h->disks[i].size_bytes, name,
						   vm->disks[i].name, vm->disks[i].size_bytes);
	}
	if (h->data_bytes > free_bytes)
		return dmr_why_set(ret_why, -ENOSPC,
				   "the stream carries up to %" PRIu64 " bytes, the pool has %" PRIu64 " free",
				   h->data_bytes, free_bytes);
	*ret_base = full ? 0 : latest->id;
	return 0;
}
