/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/hashes.h - block hashes of a point (docs/replication.md
 * "Resync and verify"): XXH3-64 of every pool block of every disk of a
 * point, read through the point's read-only device as a send reads it;
 * blocks the pool never mapped hash as zeros without being read.
 *
 * HashReplicaPoint is the job `dmrep point receive VM --hashes` (and a
 * receive that got a hash request) runs: the hashes of one point of a
 * replica VM, written as the reply of common/hashes.h to the descriptor
 * the client passed (its stdout).
 */
#ifndef DMR_AGENT_HASHES_H
#define DMR_AGENT_HASHES_H

#include <stdint.h>

#include "agent/core/agent.h"
#include "common/hashes.h"

struct dmr_job;

/* The hashes of point `point` of VM vm into *ret (cleared by the caller
 * with dmr_hashes_clear), from a job that holds the VM's busy lock.
 * -ENOENT (VM or point gone), -EOPNOTSUPP (the backend reads no points),
 * -EFBIG (more than DMR_HASHES_BLOCKS_MAX blocks), -errno of the reads;
 * the job's error is set. */
int dmr_hashes_of_point(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			uint64_t point, struct dmr_hashes *ret);

/* Start HashReplicaPoint of VM vm's point uuid ("" or NULL: its newest
 * valid one), the reply written to fd (taken, on failure too).  Result
 * fields: "point", "hashes_of" (the uuid), "bytes", "checksum" (16 hex
 * digits).  Refusals before the job: -errno and *ret_why. */
int dmr_hashes_start(struct dmr_agent *a, const char *vm, const char *uuid, int fd,
		     uint64_t *ret_job, char **ret_why);

/* Which point of vm (reg->lock held) a hash request names: the valid one
 * of uuid, or the newest valid one with uuid "" or NULL.  0 and *ret_id,
 * or -ENOENT and
 * *ret_why. */
struct dmr_vm;
int dmr_hashes_pick(const struct dmr_vm *vm, const char *uuid, uint64_t *ret_id, char **ret_why);

#endif
