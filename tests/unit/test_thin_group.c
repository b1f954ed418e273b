/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/thin.c's consistency group over a fake kernel: the raw
 * suspend/resume ioctls (dm/ioctl.h) and the pool's messages are wrapped
 * (-Wl,--wrap, see wrap.mk), each call logged in order:
 *  - every active origin is suspended (with flush; skip-lockfs only when
 *    asked) before the first create_snap and resumed after the last; the
 *    transaction id moves after the resume (one commit less in the
 *    stall); inactive ones (NULL names) are not touched;
 *  - a failure anywhere (a suspend, a message, the transaction, the lab's
 *    hook) deletes the snapshots made, resumes every origin that was
 *    suspended and leaves none suspended; a resume that fails is retried;
 *  - the stall is reported, 0 when nothing was active.
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
#include <unistd.h>

#include "dm/dm.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"

#define N 4

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static struct {
	char log[64][48];
	size_t n_log;
	bool suspended[N];
	unsigned flags[N];
	int fail_suspend[N], fail_resumes[N];
	int fail_message_at; /* 1-based create_snap that fails, 0 never */
	int messages, fail_txn, ctls;
} kern;

struct dmr_dm_ctl {
	int unused;
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&mu);
	if (kern.n_log < 64) {
		va_start(ap, fmt);
		vsnprintf(kern.log[kern.n_log++], sizeof(kern.log[0]), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&mu);
}

static int dev_index(const char *name)
{
	int i = -1;

	(void)sscanf(name, "v%d", &i);
	return i >= 0 && i < N ? i : 0;
}

int __wrap_dmr_dm_ctl_open(struct dmr_dm_ctl **ret);
int __wrap_dmr_dm_ctl_open(struct dmr_dm_ctl **ret)
{
	pthread_mutex_lock(&mu);
	kern.ctls++;
	pthread_mutex_unlock(&mu);
	*ret = calloc(1, sizeof(**ret));
	return 0;
}

void __wrap_dmr_dm_ctl_close(struct dmr_dm_ctl *c);
void __wrap_dmr_dm_ctl_close(struct dmr_dm_ctl *c)
{
	free(c);
}

int __wrap_dmr_dm_ctl_suspend(struct dmr_dm_ctl *c, const char *name, unsigned flags);
int __wrap_dmr_dm_ctl_suspend(struct dmr_dm_ctl *c, const char *name, unsigned flags)
{
	int i = dev_index(name), e = kern.fail_suspend[i];

	(void)c;
	kern.flags[i] = flags;
	if (e) {
		kern.fail_suspend[i] = 0;
		return -e;
	}
	kern.suspended[i] = true;
	logf_("S");
	return 0;
}

int __wrap_dmr_dm_ctl_resume(struct dmr_dm_ctl *c, const char *name);
int __wrap_dmr_dm_ctl_resume(struct dmr_dm_ctl *c, const char *name)
{
	int i = dev_index(name);

	(void)c;
	/* Long enough that the stall is never 0 microseconds. */
	usleep(1000);
	if (kern.fail_resumes[i] > 0) {
		kern.fail_resumes[i]--;
		return -EIO;
	}
	kern.suspended[i] = false;
	logf_("R");
	return 0;
}

int __wrap_dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...);
int __wrap_dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...)
{
	char buf[48];
	va_list ap;

	(void)pool;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (++kern.messages == kern.fail_message_at)
		return -ENOSPC;
	logf_("%s", buf);
	return 0;
}

int __wrap_dmr_pool_set_transaction(const struct dmr_pool *pool, uint64_t o, uint64_t n);
int __wrap_dmr_pool_set_transaction(const struct dmr_pool *pool, uint64_t o, uint64_t n)
{
	(void)pool;
	if (kern.fail_txn)
		return -EIO;
	logf_("txn %llu %llu", (unsigned long long)o, (unsigned long long)n);
	return 0;
}

int __wrap_dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id);
int __wrap_dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id)
{
	(void)pool;
	logf_("delete %u", id);
	return 0;
}

static int reset(void **state)
{
	(void)state;
	memset(&kern, 0, sizeof(kern));
	unsetenv("DMREP_TEST_FAIL_AT");
	return 0;
}

static const struct dmr_pool *pool = (const struct dmr_pool *)&kern;
static const char *names[N] = { "v0", "v1", "v2", "v3" };
static const uint32_t origins[N] = { 1, 2, 3, 4 }, news[N] = { 11, 12, 13, 14 };

/* The log as one string, "S S S S create_snap 11 1 ... R R R R". */
static const char *joined(void)
{
	static char buf[64 * 48];

	buf[0] = '\0';
	for (size_t i = 0; i < kern.n_log; i++) {
		if (i)
			strcat(buf, ",");
		strcat(buf, kern.log[i]);
	}
	return buf;
}

static bool none_suspended(void)
{
	for (size_t i = 0; i < N; i++)
		if (kern.suspended[i])
			return false;
	return true;
}

static void test_order(void **state)
{
	uint64_t stall = 0;

	(void)state;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, &stall), 0);
	assert_string_equal(joined(), "S,S,S,S,create_snap 11 1,create_snap 12 2,create_snap 13 3,"
				      "create_snap 14 4,R,R,R,R,txn 5 6");
	assert_true(none_suspended());
	assert_true(stall >= 1000);
	/* With flush and lockfs: the kernel wants the origin quiet. */
	for (size_t i = 0; i < N; i++)
		assert_int_equal(kern.flags[i], 0);
	assert_int_equal(kern.ctls, N);
}

static void test_skip_lockfs_never_noflush(void **state)
{
	(void)state;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6,
						 DMR_DM_SKIP_LOCKFS | DMR_DM_NOFLUSH, NULL), 0);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(kern.flags[i], DMR_DM_SKIP_LOCKFS);
}

/* Inactive origins (NULL) are not suspended; none active: no batch. */
static void test_inactive(void **state)
{
	const char *some[N] = { NULL, "v1", NULL, "v3" };
	const char *none[N] = { NULL };
	uint64_t stall = 99;

	(void)state;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, some, origins, news, 5, 6, 0, NULL), 0);
	assert_int_equal(kern.ctls, 2);
	assert_string_equal(joined(), "S,S,create_snap 11 1,create_snap 12 2,create_snap 13 3,"
				      "create_snap 14 4,R,R,txn 5 6");
	reset(NULL);
	assert_int_equal(dmr_thin_snapshot_group(pool, N, none, origins, news, 5, 6, 0, &stall), 0);
	assert_int_equal(kern.ctls, 0);
	assert_int_equal(stall, 0);
	reset(NULL);
	assert_int_equal(dmr_thin_snapshot_group(pool, N, NULL, origins, news, 5, 6, 0, &stall), 0);
	assert_int_equal(kern.ctls, 0);
}

static void test_suspend_fails(void **state)
{
	uint64_t stall = 0;

	(void)state;
	kern.fail_suspend[2] = EINTR;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, &stall),
			 -EINTR);
	/* No snapshot, no transaction; the three suspended came back. */
	assert_string_equal(joined(), "S,S,S,R,R,R");
	assert_true(none_suspended());
}

static void test_message_fails(void **state)
{
	(void)state;
	kern.fail_message_at = 3;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, NULL),
			 -ENOSPC);
	assert_string_equal(joined(), "S,S,S,S,create_snap 11 1,create_snap 12 2,R,R,R,R,"
				      "delete 11,delete 12");
	assert_true(none_suspended());
}

static void test_transaction_fails(void **state)
{
	(void)state;
	kern.fail_txn = 1;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, NULL), -EIO);
	assert_string_equal(joined(), "S,S,S,S,create_snap 11 1,create_snap 12 2,create_snap 13 3,"
				      "create_snap 14 4,R,R,R,R,delete 11,delete 12,delete 13,delete 14");
	assert_true(none_suspended());
}

/* The lab's hook: a failure with every origin suspended. */
static void test_hook_with_all_suspended(void **state)
{
	(void)state;
	setenv("DMREP_TEST_FAIL_AT", "thin-group:suspended", 1);
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, NULL), -EIO);
	assert_string_equal(joined(), "S,S,S,S,R,R,R,R");
	assert_true(none_suspended());
}

static void test_resume_retried(void **state)
{
	(void)state;
	kern.fail_resumes[1] = 1;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, NULL), 0);
	assert_true(none_suspended());
	reset(NULL);
	/* Twice: the point's error, since an origin stays suspended; the
	 * transaction id stays and the snapshots go. */
	kern.fail_resumes[3] = 2;
	assert_int_equal(dmr_thin_snapshot_group(pool, N, names, origins, news, 5, 6, 0, NULL), -EIO);
	assert_true(kern.suspended[3]);
	assert_null(strstr(joined(), "txn"));
	assert_non_null(strstr(joined(), "delete 11,delete 12,delete 13,delete 14"));
}

/* A live thin table read back: the kernel's form only (tests/fuzz/
 * fuzz_table.c found sscanf taking a sign, junk after the id and an id
 * past 32 bits wrapped to a small one). */
static void test_table_id(void **state)
{
	static const struct { const char *params; int r; uint32_t id; } cases[] = {
		{ "253:3 7", 0, 7 },
		{ "253:3 0", 0, 0 },
		{ "253:3 16777215", 0, 16777215 },
		{ "253:3 7 253:9", 0, 7 },      /* an external origin */
		{ "253:3 16777216", -EPROTO, 0 },
		{ "253:3 4294967303", -EPROTO, 0 },
		{ "253:3 -4294967289", -EPROTO, 0 },
		{ "253:3 +7", -EPROTO, 0 },
		{ "253:3 07", -EPROTO, 0 },
		{ "253:3  7", -EPROTO, 0 },
		{ "253:3 7x", -EPROTO, 0 },
		{ "253:3 7\x96" "253:9", -EPROTO, 0 },
		{ "253:3 7 /dev/sda", -EPROTO, 0 },
		{ "253:3 7 ", -EPROTO, 0 },
		{ "253:4 7", -EPROTO, 0 },      /* another pool */
		{ "253:03 7", -EPROTO, 0 },
		{ "253:3", -EPROTO, 0 },
	};
	struct dmr_pool p = { .major = 253, .minor = 3 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		_cleanup_table_ struct dmr_table *t = dmr_table_new();
		uint32_t id = 99;

		assert_int_equal(dmr_table_append_at(t, 0, 8, "thin", cases[i].params), 0);
		assert_int_equal(dmr_thin_table_id(&p, t, &id), cases[i].r);
		assert_int_equal(id, cases[i].r ? 99 : cases[i].id);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_order, reset),
		cmocka_unit_test_setup(test_skip_lockfs_never_noflush, reset),
		cmocka_unit_test_setup(test_inactive, reset),
		cmocka_unit_test_setup(test_suspend_fails, reset),
		cmocka_unit_test_setup(test_message_fails, reset),
		cmocka_unit_test_setup(test_transaction_fails, reset),
		cmocka_unit_test_setup(test_hook_with_all_suspended, reset),
		cmocka_unit_test_setup(test_resume_retried, reset),
		cmocka_unit_test(test_table_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
