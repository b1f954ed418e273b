/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dm/batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/thread.h"
#include "dm/dm.h"
#include "dm/ioctl.h"
#include "dm/name.h"

/* A device's thread runs one small op at a time (an ioctl on a buffer of
 * its ctl, an fsync); under the agent's mlockall every byte of its stack
 * is locked and touched when the thread starts, so not the 8 MiB default:
 * 32 disks would lock a quarter of a GiB per failover. */
#define BATCH_STACK (256u * 1024)

struct slot {
	struct dmr_dm_batch *b;
	size_t i;
	char name[DMR_DM_NAME_SIZE];
	struct dmr_dm_ctl *ctl;
	int result;
	bool suspended; /* by this batch, not resumed since */
	pthread_t thread;
	bool started;
};

struct dmr_dm_batch {
	size_t n;
	struct slot *slots;
	bool *mask; /* resume_all's scratch, allocated up front */
	/* One generation per run: workers wait for gen to move, run the op,
	 * and the last to finish wakes the caller, which meanwhile runs the
	 * first device's op itself.  A mutex and two condition variables
	 * (not a barrier) so that a batch whose thread creation failed
	 * half-way can still release the threads it has. */
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	uint64_t gen;
	size_t pending;
	dmr_dm_batch_fn fn;
	void *userdata;
	const bool *only;
	bool quit;
};

static void slot_run(struct slot *s)
{
	struct dmr_dm_batch *b = s->b;

	s->result = !b->only || b->only[s->i] ? b->fn(b, s->i, b->userdata) : 0;
}

static void *slot_main(void *arg)
{
	struct slot *s = arg;
	struct dmr_dm_batch *b = s->b;
	uint64_t seen = 0;

	pthread_mutex_lock(&b->lock);
	for (;;) {
		while (!b->quit && b->gen == seen)
			pthread_cond_wait(&b->go, &b->lock);
		if (b->quit)
			break;
		seen = b->gen;
		pthread_mutex_unlock(&b->lock);
		slot_run(s);
		pthread_mutex_lock(&b->lock);
		if (--b->pending == 0)
			pthread_cond_signal(&b->done);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

void dmr_dm_batch_free(struct dmr_dm_batch *b)
{
	if (!b)
		return;
	dmr_threads_stop(&b->lock, &b->go, &b->quit);
	for (size_t i = 0; b->slots && i < b->n; i++) {
		if (b->slots[i].started)
			pthread_join(b->slots[i].thread, NULL);
		dmr_dm_ctl_close(b->slots[i].ctl);
	}
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->go);
	pthread_cond_destroy(&b->done);
	free(b->slots);
	free(b->mask);
	free(b);
}

int dmr_dm_batch_new(size_t n, const char *const *names, struct dmr_dm_batch **ret_batch)
{
	struct dmr_dm_batch *b;
	pthread_attr_t attr;
	int r = 0;

	if (n == 0 || !names || !ret_batch)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (dmr_name_dm_valid(names[i]) < 0)
			return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->go, NULL);
	pthread_cond_init(&b->done, NULL);
	b->slots = calloc(n, sizeof(*b->slots));
	b->mask = calloc(n, sizeof(*b->mask));
	if (!b->slots || !b->mask) {
		dmr_dm_batch_free(b);
		return -ENOMEM;
	}
	b->n = n;
	if (pthread_attr_init(&attr)) {
		dmr_dm_batch_free(b);
		return -ENOMEM;
	}
	(void)pthread_attr_setstacksize(&attr, BATCH_STACK);
	for (size_t i = 0; i < n && r == 0; i++) {
		struct slot *s = &b->slots[i];

		s->b = b;
		s->i = i;
		if ((size_t)snprintf(s->name, sizeof(s->name), "%s", names[i]) >= sizeof(s->name)) {
			r = -ENAMETOOLONG;
			break;
		}
		r = dmr_dm_ctl_open(&s->ctl);
		if (r == 0 && i > 0) {
			r = -pthread_create(&s->thread, &attr, slot_main, s);
			s->started = r == 0;
		}
	}
	pthread_attr_destroy(&attr);
	if (r < 0) {
		log_debug_errno(r, "dm batch of %zu: %m", n);
		dmr_dm_batch_free(b);
		return r;
	}
	*ret_batch = b;
	return 0;
}

size_t dmr_dm_batch_size(const struct dmr_dm_batch *b)
{
	return b ? b->n : 0;
}

const char *dmr_dm_batch_name(const struct dmr_dm_batch *b, size_t i)
{
	return b && i < b->n ? b->slots[i].name : NULL;
}

struct dmr_dm_ctl *dmr_dm_batch_ctl(struct dmr_dm_batch *b, size_t i)
{
	return b && i < b->n ? b->slots[i].ctl : NULL;
}

bool dmr_dm_batch_suspended(const struct dmr_dm_batch *b, size_t i)
{
	return b && i < b->n && b->slots[i].suspended;
}

int dmr_dm_batch_run(struct dmr_dm_batch *b, dmr_dm_batch_fn fn, void *userdata, const bool *only,
		     int *ret_results)
{
	int r = 0;

	if (!b || !fn)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	b->fn = fn;
	b->userdata = userdata;
	b->only = only;
	b->pending = b->n - 1;
	b->gen++;
	pthread_cond_broadcast(&b->go);
	pthread_mutex_unlock(&b->lock);
	slot_run(&b->slots[0]);
	pthread_mutex_lock(&b->lock);
	while (b->pending > 0)
		pthread_cond_wait(&b->done, &b->lock);
	pthread_mutex_unlock(&b->lock);
	for (size_t i = 0; i < b->n; i++) {
		if (ret_results)
			ret_results[i] = b->slots[i].result;
		if (b->slots[i].result < 0 && r == 0)
			r = b->slots[i].result;
	}
	return r;
}

static int op_suspend(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	struct slot *s = &b->slots[i];
	int r = dmr_dm_ctl_suspend(s->ctl, s->name, *(const unsigned *)userdata);

	if (r == 0)
		s->suspended = true;
	return r;
}

static int op_resume(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	struct slot *s = &b->slots[i];
	int r = dmr_dm_ctl_resume(s->ctl, s->name);

	(void)userdata;
	if (r == 0)
		s->suspended = false;
	return r;
}

int dmr_dm_batch_suspend(struct dmr_dm_batch *b, unsigned flags, const bool *only,
			 int *ret_results)
{
	flags &= DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS;
	return dmr_dm_batch_run(b, op_suspend, &flags, only, ret_results);
}

int dmr_dm_batch_resume(struct dmr_dm_batch *b, const bool *only, int *ret_results)
{
	return dmr_dm_batch_run(b, op_resume, NULL, only, ret_results);
}

int dmr_dm_batch_resume_all(struct dmr_dm_batch *b)
{
	int r = 0;

	if (!b)
		return -EINVAL;
	/* Twice at most: the second pass takes only what the first left
	 * suspended. */
	for (int pass = 0; pass < 2; pass++) {
		bool any = false;

		for (size_t i = 0; i < b->n; i++) {
			b->mask[i] = b->slots[i].suspended;
			any = any || b->mask[i];
		}
		if (!any)
			return 0;
		r = dmr_dm_batch_resume(b, b->mask, NULL);
		if (r < 0)
			log_debug_errno(r, "dm batch: resume, pass %d: %m", pass + 1);
	}
	/* r is the second pass's: 0 only if every device came back. */
	return r;
}

int dmr_dm_batch_suspend_all(struct dmr_dm_batch *b, unsigned flags)
{
	int r;

	if (!b)
		return -EINVAL;
	r = dmr_dm_batch_suspend(b, flags, NULL, NULL);
	if (r < 0) {
		log_debug_errno(r, "dm batch: suspend: %m");
		(void)dmr_dm_batch_resume_all(b);
	}
	return r;
}
