/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/window.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "common/thread.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/ioctl.h"

struct slot {
	struct dmr_window *w;
	char name[DMR_DM_NAME_SIZE];
	struct dmr_dm_ctl *ctl;
	int fd;
	int result;
	pthread_t thread;
	bool started;
};

struct dmr_window {
	size_t n;
	struct slot *slots;
	/* One generation per phase: workers wait for gen to move, run the
	 * op, and the last to finish wakes the caller, which meanwhile runs
	 * the first device's op itself (so one disk costs no thread hop).
	 * A mutex and two condition variables (not barriers) so that a
	 * window whose thread creation failed half-way can still release
	 * the threads it has. */
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	uint64_t gen;
	size_t pending;
	enum dmr_window_op op;
	bool quit;
};

static int slot_op(struct slot *s, enum dmr_window_op op)
{
	switch (op) {
	case DMR_WIN_SYNC:
		return fsync(s->fd) < 0 ? dmr_negerrno() : 0;
	case DMR_WIN_SUSPEND:
		return dmr_dm_ctl_suspend(s->ctl, s->name, DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS);
	case DMR_WIN_RESUME:
		return dmr_dm_ctl_resume(s->ctl, s->name);
	case DMR_WIN_FLUSHBUF:
		return ioctl(s->fd, BLKFLSBUF, 0) < 0 ? dmr_negerrno() : 0;
	}
	return -EINVAL;
}

static void *slot_main(void *arg)
{
	struct slot *s = arg;
	struct dmr_window *w = s->w;
	uint64_t seen = 0;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->quit && w->gen == seen)
			pthread_cond_wait(&w->go, &w->lock);
		if (w->quit)
			break;
		seen = w->gen;
		pthread_mutex_unlock(&w->lock);
		s->result = slot_op(s, w->op);
		pthread_mutex_lock(&w->lock);
		if (--w->pending == 0)
			pthread_cond_signal(&w->done);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void dmr_window_free(struct dmr_window *w)
{
	if (!w)
		return;
	dmr_threads_stop(&w->lock, &w->go, &w->quit);
	for (size_t i = 0; i < w->n; i++) {
		if (w->slots[i].started)
			pthread_join(w->slots[i].thread, NULL);
		if (w->slots[i].fd >= 0)
			close(w->slots[i].fd);
		dmr_dm_ctl_close(w->slots[i].ctl);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->go);
	pthread_cond_destroy(&w->done);
	free(w->slots);
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
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->go, NULL);
	pthread_cond_init(&w->done, NULL);
	w->slots = calloc(n, sizeof(*w->slots));
	if (!w->slots) {
		dmr_window_free(w);
		return -ENOMEM;
	}
	w->n = n;
	for (size_t i = 0; i < n; i++)
		w->slots[i].fd = -1;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct slot *s = &w->slots[i];
		char path[DMR_DM_PATH_SIZE];

		s->w = w;
		if ((size_t)snprintf(s->name, sizeof(s->name), "%s", names[i]) >= sizeof(s->name)) {
			r = -ENAMETOOLONG;
			break;
		}
		snprintf(path, sizeof(path), "/dev/mapper/%s", names[i]);
		/* Our own descriptor: fsync on it writes back the device's
		 * page cache, shared by every opener; BLKFLSBUF drops it. */
		s->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->fd < 0) {
			r = dmr_negerrno();
			break;
		}
		r = dmr_dm_ctl_open(&s->ctl);
		if (r == 0 && i > 0) {
			r = -pthread_create(&s->thread, NULL, slot_main, s);
			s->started = r == 0;
		}
	}
	if (r < 0) {
		dmr_window_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

int dmr_window_run(struct dmr_window *w, enum dmr_window_op op, int *ret_results)
{
	int r = 0;

	pthread_mutex_lock(&w->lock);
	w->op = op;
	w->pending = w->n - 1;
	w->gen++;
	pthread_cond_broadcast(&w->go);
	pthread_mutex_unlock(&w->lock);
	w->slots[0].result = slot_op(&w->slots[0], op);
	pthread_mutex_lock(&w->lock);
	while (w->pending > 0)
		pthread_cond_wait(&w->done, &w->lock);
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < w->n; i++) {
		if (ret_results)
			ret_results[i] = w->slots[i].result;
		if (w->slots[i].result < 0 && r == 0)
			r = w->slots[i].result;
	}
	return r;
}
