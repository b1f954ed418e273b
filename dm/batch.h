/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/batch.h - one operation on a set of dm devices at once: each device but
 * the first on its own thread, started up front (the caller runs the first
 * itself, so one device costs no thread hop), each thread with its own
 * control descriptor (dm/ioctl.h).  Suspending or resuming n devices then
 * costs about what one costs, not n times that: the guest-paused window of
 * a failover (agent/engine/window.c) and the I/O stall of a point
 * (snapshots/thin.c, snapshots/classic.c) are built on it.
 *
 * Contract:
 *  - everything that allocates, opens or starts a thread happens in
 *    dmr_dm_batch_new; a run allocates nothing, takes no libdevmapper lock
 *    and logs nothing on success;
 *  - a batch is driven by one thread at a time (the one that made it);
 *  - the built-in suspend and resume remember, per device, whether the
 *    batch left it suspended, so that a failure half-way is undone with
 *    dmr_dm_batch_resume_all whatever phase failed;
 *  - 0 or a negative errno; out-parameters untouched on failure.
 */
#ifndef DMR_DM_BATCH_H
#define DMR_DM_BATCH_H

#include <stdbool.h>
#include <stddef.h>

struct dmr_dm_batch;
struct dmr_dm_ctl;

/* An operation on device i of b (0 or -errno), run on that device's
 * thread.  It may use dmr_dm_batch_ctl(b, i) and whatever of userdata
 * belongs to device i, nothing another device's run touches. */
typedef int (*dmr_dm_batch_fn)(struct dmr_dm_batch *b, size_t i, void *userdata);

/* names: n >= 1 dm device names (copied, not looked up: the devices need
 * not exist yet).  Opens a control descriptor per device and starts n - 1
 * threads. */
int dmr_dm_batch_new(size_t n, const char *const *names, struct dmr_dm_batch **ret_batch);
/* Stops and joins the threads, closes the descriptors.  NULL is fine.  It
 * does not resume anything: a caller that suspended resumes first. */
void dmr_dm_batch_free(struct dmr_dm_batch *b);

size_t dmr_dm_batch_size(const struct dmr_dm_batch *b);
const char *dmr_dm_batch_name(const struct dmr_dm_batch *b, size_t i);
struct dmr_dm_ctl *dmr_dm_batch_ctl(struct dmr_dm_batch *b, size_t i);
/* Did the batch's own suspend leave device i suspended (not resumed since)? */
bool dmr_dm_batch_suspended(const struct dmr_dm_batch *b, size_t i);

/*
 * Run fn on every device i (only NULL) or on those with only[i] true, all
 * at once, and return when every one has finished: 0 if all succeeded,
 * else the first error in device order.  ret_results (may be NULL) gets n
 * entries, each device's result, 0 for one left out.
 */
int dmr_dm_batch_run(struct dmr_dm_batch *b, dmr_dm_batch_fn fn, void *userdata, const bool *only,
		     int *ret_results);

/* DM_DEV_SUSPEND on every device (or those in only), flags DMR_DM_NOFLUSH
 * and/or DMR_DM_SKIP_LOCKFS (dm/dm.h).  Without DMR_DM_NOFLUSH the
 * kernel waits for in-flight I/O to complete before each device counts as
 * suspended. */
int dmr_dm_batch_suspend(struct dmr_dm_batch *b, unsigned flags, const bool *only,
			 int *ret_results);
/* Resume (a loaded inactive table goes live).  No udev cookie: the
 * devices exist, and their nodes do not change (dm/ioctl.h). */
int dmr_dm_batch_resume(struct dmr_dm_batch *b, const bool *only, int *ret_results);

/*
 * The consistency-group pair, for taking points: suspend every device
 * with flags; if any fails, the ones that did are resumed again and the
 * first error is returned (nothing is left suspended).  resume_all resumes
 * every device the batch left suspended, and a device whose resume fails
 * once more (a failed resume leaves the table it had live; a second one
 * brings it back, as lvm2 and multipath do); the first error that
 * remains.
 */
int dmr_dm_batch_suspend_all(struct dmr_dm_batch *b, unsigned flags);
int dmr_dm_batch_resume_all(struct dmr_dm_batch *b);

#endif
