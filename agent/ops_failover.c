/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * InitiateFailover, RevertFailover, CommitFailover, TestReplicaSystem,
 * StopTestReplicaSystem.
 *
 * This version of dmrep takes and keeps replication points but does not yet
 * retarget a VM's devices; these methods validate their VM and answer 32770
 * (not supported) so that scripts see a clear, stable refusal.
 */
#include "agent/handlers.h"
#include "agent/ops.h"
#include "agent/rc.h"

static int failover_refuse(struct dmr_call *c, const char *method)
{
	struct dmr_registry *reg = c->agent->reg;
	const char *name;
	bool found;
	int rc;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	found = dmr_reg_vm_find(reg, name) != NULL;
	pthread_mutex_unlock(&reg->lock);
	if (!found)
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no VM named %s", name);
	return dmr_call_fail(c, DMR_RC_NOT_SUPPORTED, "%s is not available in this version of dmrep",
			     method);
}

int dmr_h_initiate_failover(struct dmr_call *c)
{
	return failover_refuse(c, "InitiateFailover");
}

int dmr_h_revert_failover(struct dmr_call *c)
{
	return failover_refuse(c, "RevertFailover");
}

int dmr_h_commit_failover(struct dmr_call *c)
{
	return failover_refuse(c, "CommitFailover");
}

int dmr_h_test_replica(struct dmr_call *c)
{
	return failover_refuse(c, "TestReplicaSystem");
}

int dmr_h_stop_test(struct dmr_call *c)
{
	return failover_refuse(c, "StopTestReplicaSystem");
}
