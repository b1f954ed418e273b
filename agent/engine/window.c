/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/window.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "dm/batch.h"
#include "dm/dm.h"

/* The threads, the control descriptors and the suspend and resume are the
 * batch's (dm/batch.h); the window adds a descriptor of each device for
 * the page-cache phases. */
struct dmr_window {
	struct dmr_dm_batch *batch;
	size_t n;
	int *fds;
};

/* Write back the device's page cache and wait for it, without fsync's
 * cache flush: the flush goes down to the pool, where dm-thin answers it
 * with a metadata commit (10-100 ms in the lab, measured as most of what
 * the agent's window cost over its floor).  The swap needs the written
 * pages on the old volume, not the pool's metadata durable: what the
 * guest itself flushed is durable already, and what it did not is no
 * more at risk than before the failover. */
static int op_sync(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	const struct dmr_window *w = userdata;

	(void)b;
	return sync_file_range(w->fds[i], 0, 0,
			       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
			       SYNC_FILE_RANGE_WAIT_AFTER) < 0 ? dmr_negerrno() : 0;
}

static int op_flushbuf(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	const struct dmr_window *w = userdata;

	(void)b;
	return ioctl(w->fds[i], BLKFLSBUF, 0) < 0 ? dmr_negerrno() : 0;
}

void dmr_window_free(struct dmr_window *w)
{
	if (!w)
		return;
	dmr_dm_batch_free(w->batch);
	for (size_t i = 0; w->fds && i < w->n; i++)
		if (w->fds[i] >= 0)
			close(w->fds[i]);
	free(w->fds);
	free(w);
}

int dmr_window_new(size_t n, const char *const *names, struct dmr_window **ret)
{
	struct dmr_window *w;
	int r = 0;

	if (n == 0)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fds = malloc(n * sizeof(*w->fds));
	if (!w->fds) {
		free(w);
		return -ENOMEM;
	}
	w->n = n;
	for (size_t i = 0; i < n; i++)
		w->fds[i] = -1;
	for (size_t i = 0; i < n && r == 0; i++) {
		char path[DMR_DM_PATH_SIZE];

		r = dmr_dm_path(names[i], path, sizeof(path));
		if (r < 0)
			break;
		/* Our own descriptor: writing back through it reaches the device's
		 * page cache, shared by every opener; BLKFLSBUF drops it. */
		w->fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (w->fds[i] < 0)
			r = dmr_negerrno();
	}
	if (r == 0)
		r = dmr_dm_batch_new(n, names, &w->batch);
	if (r < 0) {
		dmr_window_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

int dmr_window_run(struct dmr_window *w, enum dmr_window_op op, int *ret_results)
{
	switch (op) {
	case DMR_WIN_SYNC:
		return dmr_dm_batch_run(w->batch, op_sync, w, NULL, ret_results);
	case DMR_WIN_SUSPEND:
		/* QEMU is stopped and its writes synced: nothing is in
		 * flight, so noflush, and no filesystem sits on the disk. */
		return dmr_dm_batch_suspend(w->batch, DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS, NULL,
					    ret_results);
	case DMR_WIN_RESUME:
		return dmr_dm_batch_resume(w->batch, NULL, ret_results);
	case DMR_WIN_FLUSHBUF:
		return dmr_dm_batch_run(w->batch, op_flushbuf, w, NULL, ret_results);
	}
	return -EINVAL;
}
