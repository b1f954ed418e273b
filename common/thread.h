/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/thread.h - what the agent's worker threads share: how a thread
 * that sleeps on a condition variable is told to stop.  For any module.
 */
#ifndef DMR_COMMON_THREAD_H
#define DMR_COMMON_THREAD_H

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>

/* Tell the threads that wait on cond under lock to stop: *stop, what they
 * check, becomes true under the lock, and every one of them wakes.  The
 * caller joins them after. */
static inline void dmr_threads_stop(pthread_mutex_t *lock, pthread_cond_t *cond, bool *stop)
{
	assert(lock && cond && stop);
	pthread_mutex_lock(lock);
	*stop = true;
	pthread_cond_broadcast(cond);
	pthread_mutex_unlock(lock);
}

#endif
