/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/replicate.h - continuous replication (docs/replication.md):
 * the settings root gives (`vm replicate VM --to COMMAND ...`), the
 * scheduler thread that runs a VM's cycles when they are due, and the
 * cycle itself, a job (ReplicationCycle): a point, COMMAND started through
 * /bin/sh -c with the point's stream on its stdin, and the replica's
 * acknowledgement read from COMMAND's stdout.  What the cycles learn is
 * the catalog's (agent/store/repl.h), saved before the job ends.
 *
 * A cycle holds the VM's busy lock for its whole run: two cycles of one
 * VM never overlap, and no other operation runs on the VM meanwhile (a
 * VM that is busy when a cycle is due is tried again at the next tick).
 */
#ifndef DMR_AGENT_REPLICATE_H
#define DMR_AGENT_REPLICATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/agent.h"

/* How often the scheduler looks at the VMs (due cycles, health). */
#define DMR_REPLICATE_TICK_SEC 2u
/* What a cycle keeps of COMMAND's stdout and stderr: the last bytes. */
#define DMR_REPLICATE_CAPTURE_MAX (64u * 1024u)
/* A cycle that has not ended after this many intervals (and at least the
 * minimum) has COMMAND's process group killed. */
#define DMR_REPLICATE_TIMEOUT_INTERVALS 10u
#define DMR_REPLICATE_TIMEOUT_MIN_SEC 600u

struct dmr_replicator;

/* Start the scheduler (after recovery): it also counts a cycle that a
 * stopped agent left running as failed (dmr_repl_interrupted).  0 or
 * -errno. */
int dmr_replicate_start(struct dmr_agent *a, struct dmr_replicator **ret);
/* Stop and join it (before a->stopping: cycles in flight see that and
 * kill their COMMAND); accepts NULL. */
void dmr_replicate_stop(struct dmr_replicator *r);

/* What `vm replicate VM --to ...` sets.  Fields left at their "keep"
 * value keep the VM's current setting (or the default when it had none). */
struct dmr_replicate_settings {
	const char *to;        /* required when replication is off */
	uint32_t interval_sec; /* 0: keep / DMR_REPL_INTERVAL_DEFAULT */
	int consistency;       /* -1 keep, 0 crash, 1 application */
	int zstd;              /* -1 keep, 0 no, 1 zstd */
	int64_t bandwidth;     /* -1 keep, 0 no cap, else bytes per second */
};

/* Set them (a primary VM; values checked by the caller's bounds, again
 * here against the VM: a replica -DMR_E_STATE, a backend that cannot send
 * -EOPNOTSUPP, application consistency without a guest agent -EINVAL).
 * A new COMMAND forgets the acknowledged base (another replica: the next
 * cycle is full).  Saved before it returns.  *ret_why (malloc()ed, may
 * stay NULL) on refusal. */
int dmr_replicate_configure(struct dmr_agent *a, const char *vm,
			    const struct dmr_replicate_settings *s, char **ret_why);

enum dmr_replicate_action {
	DMR_REPLICATE_PAUSE,
	DMR_REPLICATE_RESUME,
	DMR_REPLICATE_OFF, /* settings and what the cycles learned forgotten */
};
int dmr_replicate_act(struct dmr_agent *a, const char *vm, enum dmr_replicate_action act,
		      char **ret_why);

/* Start one cycle now (`--now`): -EBUSY while another operation holds the
 * VM, -DMR_E_STATE when it does not replicate (or is a replica).  A
 * paused VM runs it too: it was asked for. */
int dmr_replicate_now(struct dmr_agent *a, const char *vm, uint64_t *ret_job, char **ret_why);

enum dmr_replicate_kind {
	DMR_REPLICATE_CYCLE,    /* ReplicationCycle, as dmr_replicate_now */
	DMR_REPLICATE_RESYNC,   /* Resynchronize: only the blocks that differ */
	DMR_REPLICATE_VERIFY,   /* VerifyReplica: compare, change nothing */
};
/* Start a job of kind (docs/replication.md "Resync and verify"), with the
 * refusals of dmr_replicate_now. */
int dmr_replicate_run(struct dmr_agent *a, const char *vm, enum dmr_replicate_kind kind,
		      uint64_t *ret_job, char **ret_why);

/* ---- pure parts, exposed for unit tests ---- */

/* The blocks whose hashes differ between a and b (the same number of
 * blocks) as DATA extents, adjacent ones merged: *ret_ext malloc()ed
 * (NULL when none). */
struct dmr_hash_disk;
struct dmr_extent;
int dmr_replicate_diff_extents(const struct dmr_hash_disk *a, const struct dmr_hash_disk *b,
			       struct dmr_extent **ret_ext, size_t *ret_n);


/* Is COMMAND's stdout (buf[0..len), its last bytes) an acknowledgement of
 * the point uuid?  Its last non-empty line must be a JSON object with
 * "return": 0 and "uuid": uuid (what `dmrep --json point receive` prints
 * once the point is durable).  0: acknowledged.  Otherwise -EBADMSG,
 * *ret_rc the receiver's return code when the line is its JSON answer with
 * another (0 when there is none to read), and *ret_why (malloc()ed) one
 * line: the receiver's error, or what is wrong with the answer. */
int dmr_replicate_ack_check(const char *buf, size_t len, const char *uuid, int *ret_rc,
			    char **ret_why);

/* The last non-empty line of buf[0..len) (without its newline), or NULL
 * and 0. */
const char *dmr_replicate_last_line(const char *buf, size_t len, size_t *ret_len);

/* The time after which a cycle of interval_sec is killed, in seconds. */
uint64_t dmr_replicate_timeout_sec(uint32_t interval_sec);

#endif
