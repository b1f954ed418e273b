/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/thin.h - thin volumes and consistency-group snapshots in the
 * pool (snapshots/pool.h).  Knows thin ids and dm devices, nothing of VMs.
 */
#ifndef DMR_SNAPSHOTS_THIN_H
#define DMR_SNAPSHOTS_THIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dm/table.h"
#include "snapshots/pool.h"

/* A thin volume as a dm table: `0 SECTORS thin MAJ:MIN ID`. */
int dmr_thin_table(const struct dmr_pool *pool, uint32_t id, uint64_t sectors,
		   struct dmr_table **ret_table);
/* Parse a live table back: is it a single thin target on this pool, and
 * which id?  -EPROTO if the table is something else, or not as the kernel
 * prints one (dmr_table_parse_devno). */
int dmr_thin_table_id(const struct dmr_pool *pool, const struct dmr_table *t,
		      uint32_t *ret_id);

/* Activate thin id as dm device name/uuid (read-only if asked). */
int dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
		      uint32_t id, uint64_t sectors, bool read_only);

/*
 * A consistency group: for i < n, snapshot the thin volume origin_ids[i],
 * which is live under the dm device names[i] (names NULL or names[i] NULL:
 * not active), into the new thin id new_ids[i].  All active origins are
 * suspended together (with lockfs and flush, as the kernel requires for
 * create_snap of an active volume), so every snapshot is of the same
 * instant; then the messages, then all resume, then `set_transaction_id
 * old_tid new_tid` (outside the stall).  The suspends and the resumes run
 * in parallel, one thread and control descriptor per device started
 * before the first suspend (dm/batch.h); what still grows with the number
 * of disks is the messages: the kernel commits the pool's metadata after
 * each one.  The pool itself is never suspended.  On failure every snapshot
 * already made is deleted, every device suspended is resumed (twice if
 * the first resume fails), and the transaction id is left at old_tid; an
 * origin that stays suspended fails the group too.
 * suspend_flags: 0, or DMR_DM_SKIP_LOCKFS when whatever sits on the volumes
 * is frozen already (an application-consistent point: the guest froze its
 * filesystems, and freezing a frozen filesystem again fails with EBUSY).
 * ret_suspend_usec (may be NULL) gets the stall, from the first suspend
 * issued to the last resume done (0 if no origin is active); on failure
 * too, since the volumes stalled all the same.
 */
int dmr_thin_snapshot_group(const struct dmr_pool *pool, size_t n,
			    const char *const *names, const uint32_t *origin_ids,
			    const uint32_t *new_ids, uint64_t old_tid, uint64_t new_tid,
			    unsigned suspend_flags, uint64_t *ret_suspend_usec);

/* Create empty thin volumes ids[0..n) and move the transaction id. */
int dmr_thin_create_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
			  uint64_t old_tid, uint64_t new_tid);
/* Delete thin ids (missing ones are fine) and move the transaction id. */
int dmr_thin_delete_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
			  uint64_t old_tid, uint64_t new_tid);

#endif
