/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/monitor.h - the agent's watch over space, between calls.
 *
 * A thread wakes every --monitor-interval seconds and reads, from the
 * kernel, what runs out silently otherwise: the thin pool's data and
 * metadata use and mode, the free space of the filesystem under the pool's
 * files, and what each VM's backend checks (its refresh: every classic
 * point's COW use).  It logs a
 * warning when use crosses DMR_MONITOR_WARN_PCT (once, until it drops below
 * DMR_MONITOR_REARM_PCT), an error when the pool leaves read-write mode,
 * and marks a classic point whose snapshot the kernel invalidated as not
 * valid (saved at once: it is never offered for failover), all without
 * anyone calling in.  It never changes a device.
 */
#ifndef DMR_AGENT_MONITOR_H
#define DMR_AGENT_MONITOR_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/backend/backend.h"
#include "dm/status.h"

/* One warning mark for every store that fills: the pool and COW stores. */
#define DMR_MONITOR_WARN_PCT DMR_BACKEND_WARN_PCT
#define DMR_MONITOR_REARM_PCT 75
#define DMR_MONITOR_INTERVAL_DEFAULT 30

/* What the monitor last said of the pool (pure state, for tests). */
struct dmr_pool_watch {
	bool data_warned, meta_warned;
	int mode; /* 0 rw, 1 out of data space, 2 read-only, 3 failed; -1 unknown */
};

enum {
	DMR_WATCH_DATA_HIGH = 1 << 0, /* data use crossed the warning mark */
	DMR_WATCH_META_HIGH = 1 << 1,
	DMR_WATCH_MODE = 1 << 2,      /* the mode changed (w->mode is the new one) */
};

/*
 * The filesystem under the pool's files: a warning once its free space is
 * less than what the files on it may still grow by (sparse files: their
 * unallocated bytes), since from then on the pool can fill it and turn
 * read-only; a notice once it has that room again, with a margin of 1/16
 * so a filesystem hovering at the mark does not flood the log.  Pool
 * writes take as much from the free space as from the growth, so only
 * other users of the filesystem move the relation: the warning comes as
 * soon as the overcommit exists, well before the filesystem fills.
 */
struct dmr_fs_watch {
	bool warned;
};
enum {
	DMR_WATCH_FS_LOW = 1 << 3, /* free < growth */
	DMR_WATCH_FS_OK = 1 << 4,  /* room again */
};
/* Pure: no I/O. */
unsigned dmr_fs_watch_update(struct dmr_fs_watch *w, uint64_t free_bytes, uint64_t grow_bytes);

/* Fold one status reading into w; returns the DMR_WATCH_* events to log.
 * Pure: no I/O.  *ret_data_pct and *ret_meta_pct get the use in percent. */
unsigned dmr_pool_watch_update(struct dmr_pool_watch *w, const struct dmr_thin_pool_status *st,
			       unsigned *ret_data_pct, unsigned *ret_meta_pct);
void dmr_pool_watch_init(struct dmr_pool_watch *w);
const char *dmr_pool_watch_mode_name(int mode);

struct dmr_monitor;

/* Start the thread (interval_s > 0).  Returns 0 or a negative errno. */
int dmr_monitor_start(struct dmr_agent *a, unsigned interval_s, struct dmr_monitor **ret_mon);
/* Stop and join it; accepts NULL. */
void dmr_monitor_stop(struct dmr_monitor *m);

/* The monitor's check of one VM's volumes, now (its backend's refresh):
 * a failover reads the kernel's word on every point before it picks one,
 * ListReplicationPoints before it lists them.  No busy lock needed; takes
 * reg->lock itself; an unknown VM is nothing to check. */
void dmr_monitor_refresh(struct dmr_registry *reg, const char *vm_name);

#endif
