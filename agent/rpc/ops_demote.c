/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DemoteVirtualSystem (`dmrep vm demote VM [--point POINT] [--force]`): the
 * old primary of a VM that failed over to another host becomes a replica
 * of it (agent/engine/demote.h, docs/failback.md).  Synchronous: the work
 * is device removals and one save, done while the call waits.
 */
#include <inttypes.h>

#include "agent/engine/demote.h"
#include "agent/engine/job.h"
#include "agent/rpc/handlers.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/util.h"

int dmr_h_demote_vm(struct dmr_call *c)
{
	struct dmr_demote_req req = { 0 };
	struct dmr_demote_result res;
	_cleanup_free_ char *why = NULL;
	const char *name;
	int rc, r;

	/* It deletes the VM's live data and makes it take streams, which
	 * only root sends (CONTRACT.md §3): root's alone. */
	if (c->uid != 0)
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED,
				     "vm demote is root-only: it drops the VM's live data and makes it "
				     "a replica (uid %u)", (unsigned)c->uid);
	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_u64_range(c, "point", false, 1, INT64_MAX - 1, &req.point)) ||
	    (rc = dmr_param_bool(c, "force", false, &req.force)))
		return rc;
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_need_up(c, name)) ||
	    (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	req.vm = name;
	r = dmr_demote_run(c->agent, &req, &res, &why);
	dmr_vm_busy_release(c->agent, name);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	if (res.point) {
		json_object_object_add(c->reply, "point", json_object_new_int64((int64_t)res.point));
		json_object_object_add(c->reply, "uuid", json_object_new_string(res.uuid));
	} else {
		json_object_object_add(c->reply, "point", NULL);
	}
	json_object_object_add(c->reply, "dropped", json_object_new_int64((int64_t)res.dropped));
	return DMR_RC_OK;
}
