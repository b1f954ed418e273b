/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/replica.h - replication streams as jobs (docs/stream.md):
 * SendReplicationPoint writes a point of a VM to a descriptor the caller
 * handed over; ReceiveReplicationPoint reads one from a descriptor and
 * makes it a point of a replica VM on this host.
 *
 * Both run as jobs on their own thread (the descriptor is the job's and
 * closed when it ends); the handler only checks what it can in memory and
 * starts them.  Crash safety as every operation: a receive is recorded
 * (its volume ids) before its volumes exist, so recovery removes what a
 * crash left; a point exists only once the stream's trailer and every
 * checksum checked out and its data is durable.
 */
#ifndef DMR_AGENT_REPLICA_H
#define DMR_AGENT_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"

struct dmr_send_req {
	const char *vm;
	uint64_t point;         /* 0: the latest valid point */
	uint64_t base;          /* 0: a full stream */
	bool zstd;
	int fd;                 /* taken, on failure too */
};

/* Start SendReplicationPoint.  On success *ret_job; its result fields
 * (job show) are "point", "uuid", "bytes".  Refusals before the job
 * starts: -errno and *ret_why (malloc()ed one line, may stay NULL); the
 * handler maps them to return codes. */
int dmr_replica_send_start(struct dmr_agent *a, const struct dmr_send_req *req,
			   uint64_t *ret_job, char **ret_why);

/* Start ReceiveReplicationPoint of VM vm from fd (taken, on failure too).
 * The job's result fields: "point", "uuid". */
int dmr_replica_receive_start(struct dmr_agent *a, const char *vm, int fd, uint64_t *ret_job,
			      char **ret_why);

/* At start, before the server: release a pool metadata snapshot a dead
 * agent left held (snapshots/delta.h).  Logs what fails. */
void dmr_replica_recover(struct dmr_agent *a);

#endif
