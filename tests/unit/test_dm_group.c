/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/dm.c's group create and remove over a fake libdevmapper (-Wl,--wrap,
 * see wrap.mk) that keeps a set of devices like a kernel would:
 *  - n creates share one udev cookie (the first task makes it, the others
 *    join it) and the group waits on it once, not once per device; with
 *    udev sync off (libdevmapper hands out cookie 0) the one wait still
 *    runs, since that is where libdevmapper makes the nodes itself;
 *  - all or nothing: the k-th create failing (the kernel, or the lab's
 *    test hook) removes the k made before it, after the create wait, and
 *    leaves no device; every name, table and UUID is refused before the
 *    first task (a UUID without DMREP- is -EPERM);
 *  - remove is best effort with one cookie per pass: missing devices are
 *    fine, busy ones are tried again, the first error is returned and
 *    every other device is still removed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "dm/dm.h"

#define MAXDEV 64
#define COOKIE 0x0d4d0042u

/* What the fake kernel has and what the fake libdevmapper saw. */
static struct {
	char devs[MAXDEV][DMR_DM_NAME_SIZE];
	size_t n_devs;
	int tasks, destroyed, creates, removes;
	int cookies_new, cookies_joined, waits;
	int sem;            /* the cookie's count: +1 per task set, -1 per task done */
	bool udev_off;      /* libdevmapper without udev sync: cookie 0 */
	uint32_t waited[8]; /* cookies waited on */
	/* Fail the create of this name (errno), or remove of it. */
	const char *fail_create, *fail_remove;
	int fail_create_errno, fail_remove_errno;
	int busy_removes; /* the next removes of fail_remove: EBUSY this many times */
} k;

struct dm_task {
	int type;
	char name[DMR_DM_NAME_SIZE];
	bool cookie;
	int err;
};

static ssize_t dev_find(const char *name)
{
	for (size_t i = 0; i < k.n_devs; i++)
		if (strcmp(k.devs[i], name) == 0)
			return (ssize_t)i;
	return -1;
}

struct dm_task *__wrap_dm_task_create(int type);
struct dm_task *__wrap_dm_task_create(int type)
{
	struct dm_task *t = calloc(1, sizeof(*t));

	t->type = type;
	k.tasks++;
	return t;
}

void __wrap_dm_task_destroy(struct dm_task *t);
void __wrap_dm_task_destroy(struct dm_task *t)
{
	k.destroyed++;
	free(t);
}

int __wrap_dm_task_set_name(struct dm_task *t, const char *n);
int __wrap_dm_task_set_name(struct dm_task *t, const char *n)
{
	snprintf(t->name, sizeof(t->name), "%s", n);
	return 1;
}

int __wrap_dm_task_set_uuid(struct dm_task *t, const char *u);
int __wrap_dm_task_set_uuid(struct dm_task *t, const char *u)
{
	(void)t;
	assert_true(strncmp(u, "DMREP-", 6) == 0);
	return 1;
}

int __wrap_dm_task_set_ro(struct dm_task *t);
int __wrap_dm_task_set_ro(struct dm_task *t)
{
	(void)t;
	return 1;
}

int __wrap_dm_task_add_target(struct dm_task *t, uint64_t start, uint64_t size, const char *ttype,
			      const char *params);
int __wrap_dm_task_add_target(struct dm_task *t, uint64_t start, uint64_t size, const char *ttype,
			      const char *params)
{
	(void)t;
	(void)start;
	(void)size;
	(void)ttype;
	(void)params;
	return 1;
}

/* As libdevmapper: a zero *cookie makes a new one, a set one is joined. */
int __wrap_dm_task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags);
int __wrap_dm_task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags)
{
	(void)flags;
	t->cookie = true;
	if (k.udev_off) {
		*cookie = 0;
		return 1;
	}
	if (*cookie == 0) {
		k.cookies_new++;
		*cookie = COOKIE + (uint32_t)k.cookies_new;
		k.sem = 1;
	} else {
		assert_int_equal(*cookie, COOKIE + (uint32_t)k.cookies_new);
		k.cookies_joined++;
	}
	k.sem++;
	return 1;
}

int __wrap_dm_task_run(struct dm_task *t);
int __wrap_dm_task_run(struct dm_task *t)
{
	ssize_t at = dev_find(t->name);

	t->err = 0;
	if (t->type == DM_DEVICE_CREATE) {
		k.creates++;
		if (k.fail_create && strcmp(k.fail_create, t->name) == 0)
			t->err = k.fail_create_errno;
		else if (at >= 0)
			t->err = EBUSY;
		else {
			assert_true(k.n_devs < MAXDEV);
			snprintf(k.devs[k.n_devs++], DMR_DM_NAME_SIZE, "%s", t->name);
		}
	} else if (t->type == DM_DEVICE_REMOVE) {
		k.removes++;
		if (k.fail_remove && strcmp(k.fail_remove, t->name) == 0 && k.busy_removes > 0) {
			k.busy_removes--;
			t->err = EBUSY;
		} else if (k.fail_remove && strcmp(k.fail_remove, t->name) == 0 && k.fail_remove_errno)
			t->err = k.fail_remove_errno;
		else if (at < 0)
			t->err = ENXIO;
		else
			memmove(k.devs[at], k.devs[at + 1], (k.n_devs-- - (size_t)at - 1) * DMR_DM_NAME_SIZE);
	} else {
		fail_msg("unexpected task type %d", t->type);
	}
	/* udev (or, on failure, libdevmapper) completes the task's part. */
	if (t->cookie && !k.udev_off)
		k.sem--;
	return t->err == 0;
}

int __wrap_dm_task_get_errno(struct dm_task *t);
int __wrap_dm_task_get_errno(struct dm_task *t)
{
	return t->err;
}

int __wrap_dm_udev_wait(uint32_t cookie);
int __wrap_dm_udev_wait(uint32_t cookie)
{
	if (!k.udev_off) {
		/* The wait drops the cookie's own 1 and finds every task done. */
		assert_int_equal(k.sem, 1);
		k.sem = 0;
	}
	if (k.waits < 8)
		k.waited[k.waits] = cookie;
	k.waits++;
	return 1;
}

static int reset(void **state)
{
	(void)state;
	memset(&k, 0, sizeof(k));
	unsetenv("DMREP_TEST_FAIL_AT");
	return 0;
}

/* n devices g0..g(n-1), UUIDs DMREP-g*, one zero target each. */
struct group {
	size_t n;
	char names[MAXDEV][DMR_DM_NAME_SIZE];
	char uuids[MAXDEV][DMR_DM_UUID_SIZE];
	const char *np[MAXDEV], *up[MAXDEV];
	struct dmr_table *t[MAXDEV];
	const struct dmr_table *tp[MAXDEV];
};

static void group_init(struct group *g, size_t n)
{
	g->n = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(g->names[i], sizeof(g->names[i]), "g%zu", i);
		snprintf(g->uuids[i], sizeof(g->uuids[i]), "DMREP-g%zu", i);
		g->np[i] = g->names[i];
		g->up[i] = g->uuids[i];
		g->t[i] = dmr_table_new();
		assert_non_null(g->t[i]);
		assert_int_equal(dmr_table_add_zero(g->t[i], 8), 0);
		g->tp[i] = g->t[i];
	}
}

static void group_done(struct group *g)
{
	for (size_t i = 0; i < g->n; i++)
		dmr_table_free(g->t[i]);
}

static void test_one_cookie_one_wait(void **state)
{
	struct group g;

	(void)state;
	group_init(&g, 32);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), 0);
	assert_int_equal(k.creates, 32);
	assert_int_equal(k.n_devs, 32);
	assert_int_equal(k.cookies_new, 1);
	assert_int_equal(k.cookies_joined, 31);
	assert_int_equal(k.waits, 1);
	assert_int_equal(k.waited[0], COOKIE + 1);
	assert_int_equal(k.sem, 0); /* released */
	assert_int_equal(k.tasks, k.destroyed);
	/* And the same for their removal: one cookie, one wait. */
	assert_int_equal(dmr_dm_remove_group(g.n, g.np, 0), 0);
	assert_int_equal(k.n_devs, 0);
	assert_int_equal(k.cookies_new, 2);
	assert_int_equal(k.cookies_joined, 62);
	assert_int_equal(k.waits, 2);
	group_done(&g);
}

/* Without udev sync libdevmapper makes the nodes in the wait: it runs
 * once for the group all the same. */
static void test_udev_off_still_waits_once(void **state)
{
	struct group g;

	(void)state;
	k.udev_off = true;
	group_init(&g, 4);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, DMR_DM_READONLY), 0);
	assert_int_equal(k.n_devs, 4);
	assert_int_equal(k.waits, 1);
	assert_int_equal(k.waited[0], 0);
	group_done(&g);
}

static void test_rollback_on_kth_failure(void **state)
{
	struct group g;

	(void)state;
	group_init(&g, 8);
	for (size_t fail = 0; fail < g.n; fail++) {
		reset(NULL);
		k.fail_create = g.names[fail];
		k.fail_create_errno = EINVAL;
		assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EINVAL);
		assert_int_equal(k.creates, (int)fail + 1); /* none after the failure */
		assert_int_equal(k.n_devs, 0);              /* the made ones are gone */
		assert_int_equal(k.removes, (int)fail);     /* and only those */
		/* The create's wait, then (if any was made) the remove's. */
		assert_int_equal(k.waits, fail ? 2 : 1);
		assert_int_equal(k.sem, 0);
		assert_int_equal(k.tasks, k.destroyed);
	}
	group_done(&g);
}

/* A name taken by a device the group did not make: it fails, and that
 * device is left alone (only the group's own are removed). */
static void test_existing_device_left_alone(void **state)
{
	struct group g;

	(void)state;
	group_init(&g, 3);
	snprintf(k.devs[k.n_devs++], DMR_DM_NAME_SIZE, "%s", "g1");
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EBUSY);
	assert_int_equal(k.n_devs, 1);
	assert_string_equal(k.devs[0], "g1");
	assert_int_equal(k.removes, 1); /* g0 */
	group_done(&g);
}

/* The lab's hook fails the K-th create as the kernel would. */
static void test_hook_fails_kth(void **state)
{
	struct group g;

	(void)state;
	group_init(&g, 5);
	setenv("DMREP_TEST_FAIL_AT", "create-group:3", 1);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EIO);
	unsetenv("DMREP_TEST_FAIL_AT");
	assert_int_equal(k.creates, 3);
	assert_int_equal(k.removes, 3);
	assert_int_equal(k.n_devs, 0);
	group_done(&g);
}

static void test_refusals_before_any_task(void **state)
{
	struct group g;
	const struct dmr_table *tp[3];
	struct dmr_table *empty = dmr_table_new();

	(void)state;
	group_init(&g, 3);
	g.up[2] = "LVM-notours";
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EPERM);
	g.up[2] = NULL;
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EPERM);
	g.up[2] = g.uuids[2];
	g.np[1] = "bad/name";
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), -EINVAL);
	g.np[1] = g.names[1];
	memcpy(tp, g.tp, sizeof(tp));
	tp[2] = empty;
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, tp, 0), -EINVAL);
	tp[2] = NULL;
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, tp, 0), -EINVAL);
	assert_int_equal(dmr_dm_create_group(0, g.np, g.up, g.tp, 0), -EINVAL);
	assert_int_equal(dmr_dm_create_group(g.n, NULL, g.up, g.tp, 0), -EINVAL);
	assert_int_equal(k.tasks, 0);
	assert_int_equal(k.waits, 0);
	dmr_table_free(empty);
	group_done(&g);
}

static void test_remove_best_effort(void **state)
{
	struct group g;
	const char *np[4];

	(void)state;
	group_init(&g, 4);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), 0);
	/* g1 is gone already (fine), NULL is skipped: g0 and g3 go. */
	np[0] = "g1";
	assert_int_equal(dmr_dm_remove_group(1, np, 0), 0);
	np[0] = "g0";
	np[1] = "g1";
	np[2] = NULL;
	np[3] = "g3";
	assert_int_equal(dmr_dm_remove_group(4, np, 0), 0);
	assert_int_equal(k.n_devs, 1);
	assert_string_equal(k.devs[0], "g2");
	/* The first error is returned, and every other device still goes. */
	reset(NULL);
	snprintf(k.devs[0], DMR_DM_NAME_SIZE, "g0");
	snprintf(k.devs[1], DMR_DM_NAME_SIZE, "g1");
	snprintf(k.devs[2], DMR_DM_NAME_SIZE, "g2");
	k.n_devs = 3;
	k.fail_remove = "g1";
	k.fail_remove_errno = EPERM;
	assert_int_equal(dmr_dm_remove_group(3, g.np, 0), -EPERM);
	assert_int_equal(k.n_devs, 1); /* g1 stays, the others went */
	assert_string_equal(k.devs[0], "g1");
	assert_int_equal(k.waits, 1);
	assert_int_equal(dmr_dm_remove_group(0, NULL, 0), 0);
	group_done(&g);
}

static void test_remove_retries_busy(void **state)
{
	struct group g;

	(void)state;
	group_init(&g, 3);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), 0);
	k.waits = 0;
	k.removes = 0;
	k.fail_remove = "g2";
	k.busy_removes = 2;
	assert_int_equal(dmr_dm_remove_group(g.n, g.np, 5), 0);
	assert_int_equal(k.n_devs, 0);
	assert_int_equal(k.removes, 5); /* 3, then g2 twice more */
	assert_int_equal(k.waits, 3);   /* one per pass */
	/* Out of retries: EBUSY, the rest still removed. */
	reset(NULL);
	assert_int_equal(dmr_dm_create_group(g.n, g.np, g.up, g.tp, 0), 0);
	k.fail_remove = "g0";
	k.busy_removes = 10;
	assert_int_equal(dmr_dm_remove_group(g.n, g.np, 1), -EBUSY);
	assert_int_equal(k.n_devs, 1);
	assert_string_equal(k.devs[0], "g0");
	group_done(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_one_cookie_one_wait, reset),
		cmocka_unit_test_setup(test_udev_off_still_waits_once, reset),
		cmocka_unit_test_setup(test_rollback_on_kth_failure, reset),
		cmocka_unit_test_setup(test_existing_device_left_alone, reset),
		cmocka_unit_test_setup(test_hook_fails_kth, reset),
		cmocka_unit_test_setup(test_refusals_before_any_task, reset),
		cmocka_unit_test_setup(test_remove_best_effort, reset),
		cmocka_unit_test_setup(test_remove_retries_busy, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
