/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/thin.h"

#include <inttypes.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/batch.h"
#include "dm/dm.h"

int dmr_thin_table(const struct dmr_pool *pool, uint32_t id, uint64_t sectors,
		   struct dmr_table **ret_table)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char devno[32];
	int r;

	if (!t)
		return -ENOMEM;
	dmr_pool_devno(pool, devno);
	r = dmr_table_add_thin(t, sectors, devno, id, NULL);
	if (r < 0)
		return r;
	*ret_table = DMR_TAKE_PTR(t);
	return 0;
}

int dmr_thin_table_id(const struct dmr_pool *pool, const struct dmr_table *t,
		      uint32_t *ret_id)
{
	uint32_t maj, min;
	uint64_t id;
	const char *p;

	if (!t || t->count != 1 || !dmr_streq(t->targets[0].type, "thin") || !t->targets[0].params)
		return -EPROTO;
	/* "MAJ:MIN ID", as the kernel prints it, and an external origin
	 * ("MAJ:MIN") after it if the volume has one. */
	if (dmr_table_parse_devno(t->targets[0].params, &maj, &min, &p) < 0 || *p != ' ' ||
	    dmr_table_parse_u64(p + 1, DMR_THIN_DEV_ID_MAX, &id, &p) < 0)
		return -EPROTO;
	if (*p == ' ' && (dmr_table_parse_devno(p + 1, &(uint32_t){ 0 }, &(uint32_t){ 0 }, &p) < 0))
		return -EPROTO;
	if (*p != '\0' || maj != pool->major || min != pool->minor)
		return -EPROTO;
	*ret_id = (uint32_t)id;
	return 0;
}

int dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
		      uint32_t id, uint64_t sectors, bool read_only)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	int r;

	r = dmr_thin_table(pool, id, sectors, &t);
	if (r < 0)
		return r;
	return dmr_dm_create(name, uuid, t, read_only ? DMR_DM_READONLY : 0);
}

static void delete_ids(const struct dmr_pool *pool, size_t n, const uint32_t *ids)
{
	for (size_t i = 0; i < n; i++) {
		int r = dmr_pool_delete_thin(pool, ids[i]);

		if (r < 0)
			log_debug("rollback: delete thin %u: %d", ids[i], r);
	}
}

int dmr_thin_snapshot_group(const struct dmr_pool *pool, size_t n,
			    const char *const *names, const uint32_t *origin_ids,
			    const uint32_t *new_ids, uint64_t old_tid, uint64_t new_tid,
			    unsigned suspend_flags, uint64_t *ret_suspend_usec)
{
	_cleanup_free_ const char **active = calloc(n ? n : 1, sizeof(*active));
	struct dmr_dm_batch *b = NULL;
	size_t k = 0, made = 0;
	uint64_t t0 = 0, ts = 0, tm = 0, t1 = 0;
	int r = 0, q;

	if (!active)
		return -ENOMEM;
	for (size_t i = 0; names && i < n; i++)
		if (names[i])
			active[k++] = names[i];
	/* Threads and descriptors before the first suspend: the stall is
	 * the kernel's suspend and resume, in parallel, and the messages. */
	if (k > 0) {
		r = dmr_dm_batch_new(k, active, &b);
		if (r < 0) {
			log_debug_errno(r, "snapshot group: cannot prepare the suspend: %m");
			return r;
		}
		/* All active origins at once, so every snapshot shares one
		 * instant: a point never mixes moments across a VM's disks.
		 * With flush: what is in flight lands before the snapshot. */
		t0 = dmr_now_usec();
		r = dmr_dm_batch_suspend_all(b, suspend_flags & DMR_DM_SKIP_LOCKFS);
		ts = dmr_now_usec();
		if (r == 0)
			r = dmr_test_fail("thin-group:suspended");
	}
	/* The kernel commits the pool's metadata after every message: these
	 * commits are the part of the stall that grows with the disks. */
	for (; r == 0 && made < n; made++) {
		r = dmr_pool_message(pool, "create_snap %u %u", new_ids[made],
				     origin_ids[made]);
		if (r < 0)
			break;
	}
	if (b) {
		/* Resume in any case; a resume that fails is tried once
		 * more (it brings the same table back). */
		tm = dmr_now_usec();
		q = dmr_dm_batch_resume_all(b);
		t1 = dmr_now_usec();
		if (q < 0 && r == 0)
			r = q;
		dmr_dm_batch_free(b);
		/* Where the stall goes: the suspends' flush, the pool's
		 * metadata commits (one per message), the resumes. */
		log_debug("snapshot group of %zu (%zu active): suspend %" PRIu64 " us, messages %" PRIu64
			  " us, resume %" PRIu64 " us", n, k, ts - t0, tm - ts, t1 - tm);
	}
	/* The transaction id moves after the resume: it is one more commit,
	 * and it needs no quiet origin.  It is what proves the point (a
	 * crash before it drops the point and its snapshots at start), so a
	 * group whose origins did not all come back does not move it. */
	if (r == 0)
		r = dmr_pool_set_transaction(pool, old_tid, new_tid);
	if (r < 0)
		delete_ids(pool, made, new_ids);
	/* On failure too: the volumes stalled whatever became of the point
	 * (0 when none was suspended). */
	if (ret_suspend_usec)
		*ret_suspend_usec = t1 - t0;
	return r;
}

int dmr_thin_create_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
			  uint64_t old_tid, uint64_t new_tid)
{
	size_t made;
	int r = 0;

	for (made = 0; made < n; made++) {
		r = dmr_pool_message(pool, "create_thin %u", ids[made]);
		if (r < 0)
			break;
	}
	if (r == 0)
		r = dmr_pool_set_transaction(pool, old_tid, new_tid);
	if (r < 0)
		delete_ids(pool, made, ids);
	return r;
}

int dmr_thin_delete_batch(const struct dmr_pool *pool, size_t n, const uint32_t *ids,
			  uint64_t old_tid, uint64_t new_tid)
{
	for (size_t i = 0; i < n; i++) {
		int r = dmr_pool_delete_thin(pool, ids[i]);

		if (r < 0)
			return r;
	}
	return dmr_pool_set_transaction(pool, old_tid, new_tid);
}
