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
#include <stddef.h>
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

/* The send itself, from a job of the caller's that holds the VM's busy
 * lock (a replication cycle, agent/engine/replicate.c): point (valid,
 * checked with dmr_replica_send_check) against base (0: a full stream)
 * written to fd (taken, closed at the end: the reader sees the stream's
 * end).  bandwidth caps the bytes written per second (0: no cap).  The
 * steps, percent (to 99) and result fields ("point", "uuid", "bytes",
 * "data_bytes", "base") are job's; on failure its error is set too.
 * *ret_bytes: the stream's size. */
struct dmr_job;
int dmr_replica_send_to_fd(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			   uint64_t point, uint64_t base, bool zstd, uint64_t bandwidth, int fd,
			   uint64_t *ret_bytes);

/* A resync's stream (docs/replication.md): point against the replica's
 * point of uuid base_uuid (which this host need not hold), carrying disk
 * i's extents ext[i][0..n_ext[i]) (DATA: the blocks whose hashes differ,
 * in blocks of block_bytes; zero grains in them go as ZERO records), the
 * header flagged resync.  As dmr_replica_send_to_fd otherwise. */
struct dmr_extent;
int dmr_replica_send_blocks(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			    uint64_t point, const char *base_uuid, struct dmr_extent *const *ext,
			    const size_t *n_ext, uint64_t block_bytes, bool zstd, uint64_t bandwidth,
			    int fd, uint64_t *ret_bytes);

/* Start ReceiveReplicationPoint of VM vm from fd (taken, on failure too).
 * The job's result fields: "point", "uuid" (and "bytes" read).  It takes
 * the VM's busy lock itself, the caller holds none: a VM not here yet is
 * only a name until the stream's header is read, in the job (-EBUSY and
 * *ret_why while another operation holds the name).  Every check of the
 * stream is the job's (agent/engine/receive.h): it fails with the code. */
int dmr_replica_receive_start(struct dmr_agent *a, const char *vm, int fd, uint64_t *ret_job,
			      char **ret_why);

/* At start, after dmr_recovery_run (the pool is active) and before the
 * server: release a pool metadata snapshot a dead agent left held
 * (snapshots/delta.h), and remove the read-only devices of points' volumes
 * that a send killed mid-way left up (the backend's point_read_down).
 * Logs what fails. */
void dmr_replica_recover(struct dmr_agent *a);

/* Exposed for unit tests (agent/engine/send.c). */
struct dmr_vm;
struct dmr_extent;
/* Resolve and check what to send (reg->lock held): *point (0: the latest
 * valid one) and base (0: none, else an older valid point of the VM).
 * -EOPNOTSUPP (the backend sends nothing), -ENOENT (no such point),
 * -EINVAL (not valid, a base not older), and *ret_why (malloc()ed). */
int dmr_replica_send_check(const struct dmr_vm *vm, uint64_t *point, uint64_t base,
			   char **ret_why);
/* Disk bytes that DATA extents ext[0..n) (in blocks of block_bytes) cover,
 * cut at the disk's end: the header's data_bytes. */
uint64_t dmr_send_data_bytes(const struct dmr_extent *ext, size_t n, uint64_t block_bytes,
			     uint64_t disk_bytes);

#endif
