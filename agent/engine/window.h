/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/window.h - the guest-paused window of a failover: sync, suspend,
 * resume and page-cache invalidation of a set of dm devices, each device
 * but the first on its own pre-started thread (the caller runs the first)
 * so that the window does not grow linearly with the number of disks.
 *
 * Everything that allocates, opens or may wait on udev happens in
 * dmr_window_new (before the guest is paused); the phases only run raw DM
 * ioctls (dm/ioctl.h: one control fd per thread, no libdevmapper state) and
 * sync_file_range/BLKFLSBUF on descriptors opened up front.  The threads and the
 * suspend and resume are dm/batch.h's, shared with the point's stall
 * (snapshots/thin.c); the window adds the page-cache phases.
 */
#ifndef DMR_AGENT_WINDOW_H
#define DMR_AGENT_WINDOW_H

#include <stddef.h>

struct dmr_window;

enum dmr_window_op {
	DMR_WIN_SYNC,     /* write back the page cache (no cache flush) */
	DMR_WIN_SUSPEND,  /* noflush, skip lockfs: nothing is in flight */
	DMR_WIN_RESUME,   /* the preloaded inactive table goes live */
	DMR_WIN_FLUSHBUF, /* BLKFLSBUF: drop cached blocks of the old table */
};

/* names: n dm device names (copied).  Opens /dev/mapper/NAME for each. */
int dmr_window_new(size_t n, const char *const *names, struct dmr_window **ret);
void dmr_window_free(struct dmr_window *w);

/* Run op on every device at once; 0 if all succeeded, else the first
 * error.  ret_results (may be NULL, n entries) gets each device's result. */
int dmr_window_run(struct dmr_window *w, enum dmr_window_op op, int *ret_results);

#endif
