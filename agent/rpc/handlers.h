/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/handlers.h - the method handlers, by method name.  Each takes a
 * dmr_call (agent/rpc/method.h) and returns a WMI return code.  The params and
 * reply fields of each are documented in docs/protocol.md.
 */
#ifndef DMR_AGENT_HANDLERS_H
#define DMR_AGENT_HANDLERS_H

#include "agent/rpc/method.h"

/* agent/rpc/ops_pool.c */
int dmr_h_create_pool(struct dmr_call *c);        /* CreatePool, mutating */
int dmr_h_get_pool_status(struct dmr_call *c);    /* GetPoolStatus */
int dmr_h_repair_pool(struct dmr_call *c);        /* RepairPool */
/* agent/rpc/ops_vm.c */
int dmr_h_add_vm(struct dmr_call *c);             /* AddVirtualSystem, mutating */
int dmr_h_get_vm(struct dmr_call *c);             /* GetVirtualSystem */
int dmr_h_list_vms(struct dmr_call *c);           /* ListVirtualSystems */
int dmr_h_remove_vm(struct dmr_call *c);          /* RemoveVirtualSystem, mutating */
int dmr_h_set_retention(struct dmr_call *c);      /* SetRetentionPolicy, mutating */
/* agent/rpc/ops_network.c */
int dmr_h_set_network(struct dmr_call *c);        /* SetFailoverNetworkAdapterSettings, mutating */
/* agent/rpc/ops_point.c */
int dmr_h_create_point(struct dmr_call *c);       /* CreateReplicationPoint, mutating */
int dmr_h_list_points(struct dmr_call *c);        /* ListReplicationPoints */
int dmr_h_destroy_point(struct dmr_call *c);      /* DestroyReplicationPoint, mutating */
/* agent/rpc/ops_failover.c */
int dmr_h_initiate_failover(struct dmr_call *c);  /* InitiateFailover, mutating */
int dmr_h_revert_failover(struct dmr_call *c);    /* RevertFailover, mutating */
int dmr_h_commit_failover(struct dmr_call *c);    /* CommitFailover, mutating */
int dmr_h_test_replica(struct dmr_call *c);       /* TestReplicaSystem, mutating */
int dmr_h_stop_test(struct dmr_call *c);          /* StopTestReplicaSystem, mutating */
/* agent/rpc/ops_replica.c: root only, each takes a descriptor */
int dmr_h_send_point(struct dmr_call *c);         /* SendReplicationPoint, mutating */
int dmr_h_receive_point(struct dmr_call *c);      /* ReceiveReplicationPoint, mutating */
int dmr_h_hash_point(struct dmr_call *c);         /* HashReplicaPoint */
/* agent/rpc/ops_demote.c: root only */
int dmr_h_demote_vm(struct dmr_call *c);          /* DemoteVirtualSystem, mutating */
/* agent/rpc/ops_replicate.c: continuous replication (to: root only) */
int dmr_h_set_replication(struct dmr_call *c);    /* SetReplication, mutating */
int dmr_h_start_replication_cycle(struct dmr_call *c); /* StartReplicationCycle, mutating */
/* agent/rpc/ops_job.c */
int dmr_h_get_job(struct dmr_call *c);            /* GetJob */
int dmr_h_list_jobs(struct dmr_call *c);          /* ListJobs */

#endif
