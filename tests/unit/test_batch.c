/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/batch.c without device-mapper: the control descriptors and the raw
 * suspend/resume ioctls (dm/ioctl.h) are faked (-Wl,--wrap, see wrap.mk),
 * so this is the batch's own machinery:
 *  - the threads exist before the first run, one per device but the
 *    first, which the caller's thread runs itself;
 *  - a run is parallel: every device's op is under way at the same time
 *    (each waits for all the others to arrive, which a serial runner
 *    never lets happen);
 *  - per-device results, the first error in device order, `only` masks;
 *  - suspend_all undoes a half-failed suspend; resume_all resumes what
 *    the batch left suspended, a failed resume once more, and reports
 *    only what stayed suspended;
 *  - a batch that cannot be made leaves no thread and no descriptor.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dm/batch.h"
#include "dm/dm.h"

#define N 8

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* The fake kernel: per device name d0..d7, suspended or not, and faults. */
static struct {
	bool suspended[N];
	int suspends[N], resumes[N];
	unsigned flags[N];
	int fail_suspend[N];  /* errno for the next suspend */
	int fail_resumes[N];  /* that many next resumes fail with EIO */
	int open_ctls, opened, open_fail_at; /* open_fail_at: 1-based, 0 never */
} kern;

struct dmr_dm_ctl {
	int id;
};

static int dev_index(const char *name)
{
	int i;

	assert_int_equal(sscanf(name, "d%d", &i), 1);
	assert_true(i >= 0 && i < N);
	return i;
}

int __wrap_dmr_dm_ctl_open(struct dmr_dm_ctl **ret);
int __wrap_dmr_dm_ctl_open(struct dmr_dm_ctl **ret)
{
	struct dmr_dm_ctl *c;

	if (kern.open_fail_at && ++kern.opened == kern.open_fail_at)
		return -EMFILE;
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&mu);
	kern.open_ctls++;
	pthread_mutex_unlock(&mu);
	*ret = c;
	return 0;
}

void __wrap_dmr_dm_ctl_close(struct dmr_dm_ctl *c);
void __wrap_dmr_dm_ctl_close(struct dmr_dm_ctl *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&mu);
	kern.open_ctls--;
	pthread_mutex_unlock(&mu);
	free(c);
}

/* Each device's ioctl touches only its own entries: no lock needed. */
int __wrap_dmr_dm_ctl_suspend(struct dmr_dm_ctl *c, const char *name, unsigned flags);
int __wrap_dmr_dm_ctl_suspend(struct dmr_dm_ctl *c, const char *name, unsigned flags)
{
	int i = dev_index(name), e = kern.fail_suspend[i];

	assert_non_null(c);
	kern.suspends[i]++;
	kern.flags[i] = flags;
	if (e) {
		kern.fail_suspend[i] = 0;
		return -e;
	}
	if (kern.suspended[i])
		return -EINVAL;
	kern.suspended[i] = true;
	return 0;
}

int __wrap_dmr_dm_ctl_resume(struct dmr_dm_ctl *c, const char *name);
int __wrap_dmr_dm_ctl_resume(struct dmr_dm_ctl *c, const char *name)
{
	int i = dev_index(name);

	assert_non_null(c);
	kern.resumes[i]++;
	if (kern.fail_resumes[i] > 0) {
		kern.fail_resumes[i]--;
		return -EIO;
	}
	kern.suspended[i] = false;
	return 0;
}

static int threads_now(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

static const char *names[N] = { "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7" };

static int reset(void **state)
{
	(void)state;
	memset(&kern, 0, sizeof(kern));
	return 0;
}

static void test_threads_started_up_front(void **state)
{
	struct dmr_dm_batch *b = NULL;
	int before = threads_now();

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	assert_int_equal(threads_now(), before + N - 1);
	assert_int_equal(kern.open_ctls, N);
	assert_int_equal(dmr_dm_batch_size(b), N);
	assert_string_equal(dmr_dm_batch_name(b, 3), "d3");
	assert_non_null(dmr_dm_batch_ctl(b, 7));
	assert_null(dmr_dm_batch_name(b, N));
	dmr_dm_batch_free(b);
	assert_int_equal(threads_now(), before);
	assert_int_equal(kern.open_ctls, 0);
	dmr_dm_batch_free(NULL);
}

/* Every op waits (5 s at most) for all N to be under way. */
struct meet {
	int arrived;
	pthread_t who[N];
};

static int op_meet(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	struct meet *m = userdata;
	struct timespec until;
	int r = 0;

	(void)b;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&mu);
	m->who[i] = pthread_self();
	m->arrived++;
	pthread_cond_broadcast(&cv);
	while (m->arrived < N && r == 0)
		r = pthread_cond_timedwait(&cv, &mu, &until);
	pthread_mutex_unlock(&mu);
	return r ? -ETIMEDOUT : 0;
}

static void test_run_is_parallel(void **state)
{
	struct dmr_dm_batch *b = NULL;
	struct meet m = { 0 };
	int res[N];

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	assert_int_equal(dmr_dm_batch_run(b, op_meet, &m, NULL, res), 0);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(res[i], 0);
		/* The caller runs the first device; every other has its own. */
		assert_int_equal(pthread_equal(m.who[i], pthread_self()) != 0, i == 0);
		for (size_t j = 0; j < i; j++)
			assert_false(pthread_equal(m.who[i], m.who[j]));
	}
	/* The same threads run the next phase. */
	memset(&m, 0, sizeof(m));
	assert_int_equal(dmr_dm_batch_run(b, op_meet, &m, NULL, NULL), 0);
	dmr_dm_batch_free(b);
}

static int op_fail_odd(struct dmr_dm_batch *b, size_t i, void *userdata)
{
	int *calls = userdata;

	(void)b;
	__atomic_add_fetch(&calls[i], 1, __ATOMIC_SEQ_CST);
	return i % 2 ? -(int)(100 + i) : 0;
}

static void test_results_first_error_and_mask(void **state)
{
	struct dmr_dm_batch *b = NULL;
	int calls[N] = { 0 }, res[N];
	bool only[N] = { false };

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	assert_int_equal(dmr_dm_batch_run(b, op_fail_odd, calls, NULL, res), -101);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(res[i], i % 2 ? -(int)(100 + i) : 0);
		assert_int_equal(calls[i], 1);
	}
	only[4] = only[5] = true;
	assert_int_equal(dmr_dm_batch_run(b, op_fail_odd, calls, only, res), -105);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(calls[i], i == 4 || i == 5 ? 2 : 1);
		assert_int_equal(res[i], i == 5 ? -105 : 0);
	}
	assert_int_equal(dmr_dm_batch_run(b, NULL, NULL, NULL, NULL), -EINVAL);
	dmr_dm_batch_free(b);
}

static void test_suspend_resume_all(void **state)
{
	struct dmr_dm_batch *b = NULL;

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	assert_int_equal(dmr_dm_batch_suspend_all(b, DMR_DM_SKIP_LOCKFS), 0);
	for (size_t i = 0; i < N; i++) {
		assert_true(kern.suspended[i]);
		assert_true(dmr_dm_batch_suspended(b, i));
		/* With flush: a point wants in-flight I/O landed. */
		assert_int_equal(kern.flags[i], DMR_DM_SKIP_LOCKFS);
	}
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	for (size_t i = 0; i < N; i++) {
		assert_false(kern.suspended[i]);
		assert_false(dmr_dm_batch_suspended(b, i));
		assert_int_equal(kern.resumes[i], 1);
	}
	/* Nothing suspended: nothing to resume. */
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	assert_int_equal(kern.resumes[0], 1);
	/* Only the suspend flags pass. */
	assert_int_equal(dmr_dm_batch_suspend(b, DMR_DM_NOFLUSH | DMR_DM_READONLY, NULL, NULL), 0);
	assert_int_equal(kern.flags[3], DMR_DM_NOFLUSH);
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	dmr_dm_batch_free(b);
}

/* Device 5 fails to suspend: the others come back, 5 is not resumed
 * (it never was suspended). */
static void test_suspend_all_undoes(void **state)
{
	struct dmr_dm_batch *b = NULL;

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	kern.fail_suspend[5] = EINTR;
	assert_int_equal(dmr_dm_batch_suspend_all(b, 0), -EINTR);
	for (size_t i = 0; i < N; i++) {
		assert_false(kern.suspended[i]);
		assert_int_equal(kern.resumes[i], i == 5 ? 0 : 1);
	}
	dmr_dm_batch_free(b);
}

/* A resume that fails once is tried again (only that device); one that
 * fails twice is reported and the device still counts as suspended. */
static void test_resume_all_retries(void **state)
{
	struct dmr_dm_batch *b = NULL;

	(void)state;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), 0);
	assert_int_equal(dmr_dm_batch_suspend_all(b, 0), 0);
	kern.fail_resumes[2] = 1;
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	for (size_t i = 0; i < N; i++) {
		assert_false(kern.suspended[i]);
		assert_int_equal(kern.resumes[i], i == 2 ? 2 : 1);
	}
	assert_int_equal(dmr_dm_batch_suspend_all(b, 0), 0);
	kern.fail_resumes[6] = 2;
	assert_int_equal(dmr_dm_batch_resume_all(b), -EIO);
	assert_true(kern.suspended[6]);
	assert_true(dmr_dm_batch_suspended(b, 6));
	assert_false(kern.suspended[0]);
	/* A later try gets it back. */
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	assert_false(kern.suspended[6]);
	dmr_dm_batch_free(b);
}

static void test_new_fails_cleanly(void **state)
{
	struct dmr_dm_batch *b = (struct dmr_dm_batch *)0x1;
	const char *bad[2] = { "d0", "no/slash" };
	int before = threads_now();

	(void)state;
	kern.open_fail_at = 5;
	assert_int_equal(dmr_dm_batch_new(N, names, &b), -EMFILE);
	assert_ptr_equal(b, (struct dmr_dm_batch *)0x1); /* untouched */
	assert_int_equal(threads_now(), before);
	assert_int_equal(kern.open_ctls, 0);
	assert_int_equal(dmr_dm_batch_new(0, names, &b), -EINVAL);
	assert_int_equal(dmr_dm_batch_new(2, bad, &b), -EINVAL);
	assert_int_equal(kern.opened, 5);
}

/* One device: no thread at all. */
static void test_single_device_no_thread(void **state)
{
	struct dmr_dm_batch *b = NULL;
	int before = threads_now();

	(void)state;
	assert_int_equal(dmr_dm_batch_new(1, names, &b), 0);
	assert_int_equal(threads_now(), before);
	assert_int_equal(dmr_dm_batch_suspend_all(b, 0), 0);
	assert_true(kern.suspended[0]);
	assert_int_equal(dmr_dm_batch_resume_all(b), 0);
	assert_false(kern.suspended[0]);
	dmr_dm_batch_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_threads_started_up_front, reset),
		cmocka_unit_test_setup(test_run_is_parallel, reset),
		cmocka_unit_test_setup(test_results_first_error_and_mask, reset),
		cmocka_unit_test_setup(test_suspend_resume_all, reset),
		cmocka_unit_test_setup(test_suspend_all_undoes, reset),
		cmocka_unit_test_setup(test_resume_all_retries, reset),
		cmocka_unit_test_setup(test_new_fails_cleanly, reset),
		cmocka_unit_test_setup(test_single_device_no_thread, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
