/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/delta.h - which blocks of a thin volume to send: the mapped
 * blocks of one volume (a full send), or the blocks that differ between
 * two (an incremental), read from the pool's metadata by
 * thin-provisioning-tools on a metadata snapshot.
 *
 * The kernel's pool metadata is live: thin_dump and thin_delta may read it
 * only through a metadata snapshot (`reserve_metadata_snap`, released with
 * `release_metadata_snap`).  A pool holds at most one, so the snapshot is a
 * pool-wide lock: dmr_delta_extents takes it, runs the tool, releases it
 * before it returns (the data is streamed after, without it), and
 * serialises its callers (one per pool at a time; concurrent ones wait).
 * An agent that died holding one leaves it in the pool:
 * dmr_delta_release_stale, at start, releases it.
 *
 * Extents are in pool blocks (dmr_pool_block_bytes).  The tool's output is
 * parsed as untrusted (bounded line length, numbers, extents within the
 * volume's size): the parsers are pure and unit-tested on literal output
 * of thin_dump / thin_delta 0.9.
 */
#ifndef DMR_SNAPSHOTS_DELTA_H
#define DMR_SNAPSHOTS_DELTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshots/pool.h"

enum dmr_extent_kind {
	DMR_EXTENT_DATA,        /* mapped in the volume: send its bytes */
	DMR_EXTENT_UNMAPPED,    /* mapped in the base only: reads as zeros now */
};

struct dmr_extent {
	uint64_t begin;         /* pool blocks from the volume's start */
	uint64_t length;        /* pool blocks, > 0 */
	enum dmr_extent_kind kind;
};

/* Extents of thin volume id: with base_id == 0 its mapped blocks (a full
 * send), else the blocks where it differs from base_id (mapped in id and
 * not the same block of base_id: DATA; mapped in base_id only: UNMAPPED).
 * Sorted by begin, not overlapping, adjacent ones of one kind merged,
 * none at or past max_blocks (the disk's size in blocks: -EBADMSG if the
 * tool reports one).  *ret_ext malloc()ed (NULL if none).  -ENOENT if a
 * volume is not in the pool; -EBUSY if a metadata snapshot that is not
 * ours is held; -errno if the tool cannot run or fails (its stderr's first
 * line logged at debug): -ENOEXEC not installed or not executable, -EIO it
 * failed, -EFBIG it printed more than 256 MiB, -ETIMEDOUT it ran past 10
 * minutes (then it is killed).  The metadata snapshot is released on every
 * path; a failed release is returned, and retried before the next reserve. */
int dmr_delta_extents(const struct dmr_pool *pool, uint32_t base_id, uint32_t id,
		      uint64_t max_blocks, struct dmr_extent **ret_ext, size_t *ret_n);

/* At start, before any send: release a metadata snapshot a dead agent
 * left held (none: 0). */
int dmr_delta_release_stale(const struct dmr_pool *pool);

/* The parsers (exposed for unit tests and the fuzzer): the XML that
 * `thin_dump --metadata-snap=... --dev-id ID` and `thin_delta
 * --metadata-snap --snap1 A --snap2 B` print, in buf[0..len).  Same
 * results and errors as dmr_delta_extents. */
int dmr_delta_parse_dump(const char *buf, size_t len, uint64_t max_blocks,
			 struct dmr_extent **ret_ext, size_t *ret_n);
int dmr_delta_parse_delta(const char *buf, size_t len, uint64_t max_blocks,
			  struct dmr_extent **ret_ext, size_t *ret_n);

/* The thin ids in metadata at meta_path, an inactive copy (never the live
 * device of an active pool: it is read without a metadata snapshot), as
 * `thin_ls --no-headers -o DEV` prints them: *ret_ids malloc()ed (NULL
 * if none), ascending.  Errors as dmr_delta_run_tool's, -EBADMSG for
 * output dmr_delta_parse_ids refuses.  The pool's repair reads its
 * repaired metadata so (agent/engine/pool.c). */
int dmr_delta_thin_ids(const char *meta_path, uint32_t **ret_ids, size_t *ret_n);

/* The parser of that output, buf[0..len): one decimal id per line (below
 * 2^24, the kernel's bound), blanks around it; empty lines skipped.
 * -EBADMSG for anything else or an id twice.  Sorted ascending. */
int dmr_delta_parse_ids(const char *buf, size_t len, uint32_t **ret_ids, size_t *ret_n);

/* Is id among ids[0..n), ascending as those two return them?  Pure. */
bool dmr_delta_ids_has(const uint32_t *ids, size_t n, uint32_t id);

/* Run a thin-provisioning-tools program: argv[0] a name looked up in
 * PATH (then /usr/sbin, /sbin, ...), no shell, stdin /dev/null; its stdout
 * into *ret_out (NUL-terminated, *ret_len bytes, bounded), the first line
 * of its stderr, escaped, into err[err_size].  0 only if it exited 0;
 * -EIO if it failed, -ENOEXEC if it could not run.  (Shared with the
 * pool's repair, agent/engine/pool.c.) */
int dmr_delta_run_tool(const char *const *argv, char **ret_out, size_t *ret_len, char *err,
		       size_t err_size);

#endif
