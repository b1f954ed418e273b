/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* InitiateFailover, RevertFailover, CommitFailover, TestReplicaSystem and
 * StopTestReplicaSystem: parse, check the VM's state, start the failover
 * engine's job (agent/engine/failover.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent/engine/failover.h"
#include "agent/engine/job.h"
#include "agent/engine/monitor.h"
#include "agent/rpc/handlers.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/util.h"

/* Latest valid point, or 0. Caller holds reg->lock. */
static uint64_t latest_valid(const struct dmr_vm *vm)
{
	for (size_t i = vm->n_points; i-- > 0;)
		if (vm->points[i].valid && !vm->points[i].pending_tid)
			return vm->points[i].id;
	return 0;
}

/* Is there a VM named NAME-test (caller holds reg->lock)? */
static bool vm_named_test_of(struct dmr_registry *reg, const char *name)
{
	char t[DMR_OBJ_NAME_MAX + sizeof("-test")];

	return snprintf(t, sizeof(t), "%s-test", name) < (int)sizeof(t) && dmr_reg_vm_find(reg, t);
}

/* Check the VM's state for the method; fill the point (0: the latest
 * valid one); 0 or a WMI code. */
static int fo_check(struct dmr_call *call, enum dmr_failover_op m, struct dmr_vm *vm,
		    uint64_t *point)
{
	const struct dmr_point *pt;

	switch (m) {
	case DMR_FAILOVER_INITIATE:
	case DMR_FAILOVER_TEST:
		if (m == DMR_FAILOVER_INITIATE && vm->state != DMR_VM_REPLICATING)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE,
					     "VM %s is %s: failover needs it replicating", vm->name,
					     dmr_vm_state_name(vm->state));
		if (m == DMR_FAILOVER_TEST && vm->test_failover)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE,
					     "VM %s has a test failover already", vm->name);
		if (m == DMR_FAILOVER_TEST && vm->state == DMR_VM_FAILOVER_IN_PROGRESS)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE, "VM %s is failing over",
					     vm->name);
		/* An older agent let a VM be named VM-test: its disks hold the
		 * /dev/dmrep/VM-test/DISK links the test views would take. */
		if (m == DMR_FAILOVER_TEST && vm_named_test_of(call->agent->reg, vm->name))
			return dmr_call_fail(call, DMR_RC_INVALID_STATE,
					     "VM %s-test exists: its disks are /dev/dmrep/%s-test/*",
					     vm->name, vm->name);
		if (!*point)
			*point = latest_valid(vm);
		if (!*point)
			return dmr_call_fail(call, DMR_RC_NOT_FOUND, "VM %s has no valid point", vm->name);
		pt = dmr_vm_point_find(vm, *point);
		if (!pt || pt->pending_tid)
			return dmr_call_fail(call, DMR_RC_NOT_FOUND, "VM %s has no point %" PRIu64,
					     vm->name, *point);
		if (!pt->valid)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE,
					     "point %" PRIu64 " is not valid (its store overflowed or "
					     "failed; the agent's log says when): fail over to a valid "
					     "one ('dmrep point list')", *point);
		return 0;
	case DMR_FAILOVER_REVERT:
	case DMR_FAILOVER_COMMIT:
		if (vm->state != DMR_VM_RECOVERED || !vm->overlay_ids)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE,
					     "VM %s is %s: %s needs it recovered", vm->name,
					     dmr_vm_state_name(vm->state), dmr_failover_method(m));
		return 0;
	case DMR_FAILOVER_STOP_TEST:
		if (!vm->test_failover || !vm->test_ids)
			return dmr_call_fail(call, DMR_RC_INVALID_STATE, "VM %s has no test failover",
					     vm->name);
		return 0;
	}
	return DMR_RC_FAILED;
}

static void failover_freep(struct dmr_failover **fo)
{
	dmr_failover_free(*fo);
}

static int fo_handler(struct dmr_call *call, enum dmr_failover_op m)
{
	struct dmr_registry *reg = call->agent->reg;
	_cleanup_(failover_freep) struct dmr_failover *fo = NULL;
	const char *name, *guest = "reset";
	struct dmr_vm *vm;
	uint64_t id, point = 0;
	int rc, r;

	if ((rc = dmr_ops_vm_name(call, "vm", &name)))
		return rc;
	if (m == DMR_FAILOVER_INITIATE || m == DMR_FAILOVER_TEST) {
		if ((rc = dmr_param_u64(call, "point", false, &point)))
			return rc;
	}
	if ((rc = dmr_param_string(call, "guest", false, &guest)))
		return rc;
	if (!dmr_streq(guest, "reset") && !dmr_streq(guest, "resume"))
		return dmr_call_fail(call, DMR_RC_INVALID_PARAMETER, "guest must be reset or resume");
	/* Revert, commit and the end of a test only drop volumes: a pool out
	 * of data space takes them (they are the way out of it); a failover
	 * or a test view would run the guest on a pool that errors writes. */
	if (m == DMR_FAILOVER_INITIATE || m == DMR_FAILOVER_TEST)
		rc = dmr_ops_need_storage(call, name);
	else
		rc = dmr_ops_need_storage_to_free(call, name);
	if (rc || (rc = dmr_ops_need_up(call, name)) || (rc = dmr_ops_vm_acquire(call, name)))
		return rc;
	/* A classic point whose COW store overflowed is never failed over
	 * to: read the kernel's word on every point first. */
	if (m == DMR_FAILOVER_INITIATE || m == DMR_FAILOVER_TEST)
		dmr_monitor_refresh(reg, name);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	{
		/* A refusal by role says why, not just its errno's words. */
		const char *why = NULL;

		r = vm ? dmr_failover_role_check(vm, m, &why) : 0;
		if (r == 0)
			r = dmr_failover_new(reg, vm, m, call->agent->hook_dir, &fo);
		rc = r < 0 ? dmr_call_fail(call, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r)) :
			     fo_check(call, m, vm, &point);
	}
	if (rc == 0) {
		r = dmr_failover_prepare(fo, vm, point, dmr_streq(guest, "reset"));
		if (r < 0)
			rc = dmr_call_fail(call, DMR_RC_INVALID_PARAMETER, "bad hypervisor shim: %s",
					   strerror(-r));
	}
	pthread_mutex_unlock(&reg->lock);
	if (rc) {
		dmr_vm_busy_release(call->agent, name);
		return rc;
	}
	r = dmr_failover_start(call->agent, fo, &id);
	if (r < 0) {
		dmr_vm_busy_release(call->agent, name);
		return dmr_call_fail(call, dmr_rc_from_errno(r), "cannot start the job: %s", strerror(-r));
	}
	fo = NULL; /* the job owns it */
	json_object_object_add(call->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}

int dmr_h_initiate_failover(struct dmr_call *c)
{
	return fo_handler(c, DMR_FAILOVER_INITIATE);
}

int dmr_h_revert_failover(struct dmr_call *c)
{
	return fo_handler(c, DMR_FAILOVER_REVERT);
}

int dmr_h_commit_failover(struct dmr_call *c)
{
	return fo_handler(c, DMR_FAILOVER_COMMIT);
}

int dmr_h_test_replica(struct dmr_call *c)
{
	return fo_handler(c, DMR_FAILOVER_TEST);
}

int dmr_h_stop_test(struct dmr_call *c)
{
	return fo_handler(c, DMR_FAILOVER_STOP_TEST);
}

