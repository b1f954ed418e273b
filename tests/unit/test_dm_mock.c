/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/dm.c's own logic with libdevmapper replaced (-Wl,--wrap, see wrap.mk):
 * which tasks take a udev cookie and always wait on it, the remove retry,
 * errno mapping, flags, refusals before any task, untouched out-params.
 * What the kernel does is the lab's job (lab_dm, t-50); this is the
 * wrapper's bookkeeping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libdevmapper.h>
#include <stdlib.h>
#include <string.h>

#include "dm/dm.h"

/* What the fake libdevmapper saw. */
static struct {
	int created, destroyed, runs, cookies, waits, no_flush, skip_lockfs, targets;
	int last_type;
	/* The next runs fail with these errnos (0: succeed), in order. */
	int fail_errno[8];
	int n_fail;
	int exists; /* for DM_DEVICE_INFO */
	const char *uuid; /* the device's UUID (NULL: "LVM-notours") */
	const char *target_type, *target_params; /* the one target (NULL: zero, "") */
} fake;

struct dm_task {
	int type;
};

struct dm_task *__wrap_dm_task_create(int type);
struct dm_task *__wrap_dm_task_create(int type)
{
	struct dm_task *t = calloc(1, sizeof(*t));

	t->type = type;
	fake.created++;
	fake.last_type = type;
	return t;
}

void __wrap_dm_task_destroy(struct dm_task *t);
void __wrap_dm_task_destroy(struct dm_task *t)
{
	fake.destroyed++;
	free(t);
}

static int cur_errno;

int __wrap_dm_task_run(struct dm_task *t);
int __wrap_dm_task_run(struct dm_task *t)
{
	(void)t;
	fake.runs++;
	if (fake.n_fail) {
		cur_errno = fake.fail_errno[0];
		memmove(fake.fail_errno, fake.fail_errno + 1, sizeof(fake.fail_errno) - sizeof(int));
		fake.n_fail--;
		if (cur_errno)
			return 0;
	}
	cur_errno = 0;
	return 1;
}

int __wrap_dm_task_get_errno(struct dm_task *t);
int __wrap_dm_task_get_errno(struct dm_task *t)
{
	(void)t;
	return cur_errno;
}

int __wrap_dm_task_set_name(struct dm_task *t, const char *n);
int __wrap_dm_task_set_name(struct dm_task *t, const char *n)
{
	(void)t;
	(void)n;
	return 1;
}

int __wrap_dm_task_set_uuid(struct dm_task *t, const char *u);
int __wrap_dm_task_set_uuid(struct dm_task *t, const char *u)
{
	(void)t;
	(void)u;
	return 1;
}

int __wrap_dm_task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags);
int __wrap_dm_task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags)
{
	(void)t;
	(void)flags;
	fake.cookies++;
	*cookie = 0x0d4d0001;
	return 1;
}

int __wrap_dm_udev_wait(uint32_t cookie);
int __wrap_dm_udev_wait(uint32_t cookie)
{
	assert_int_equal(cookie, 0x0d4d0001);
	fake.waits++;
	return 1;
}

int __wrap_dm_task_no_flush(struct dm_task *t);
int __wrap_dm_task_no_flush(struct dm_task *t)
{
	(void)t;
	fake.no_flush++;
	return 1;
}

int __wrap_dm_task_skip_lockfs(struct dm_task *t);
int __wrap_dm_task_skip_lockfs(struct dm_task *t)
{
	(void)t;
	fake.skip_lockfs++;
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
	fake.targets++;
	return 1;
}

int __wrap_dm_task_get_info(struct dm_task *t, struct dm_info *info);
int __wrap_dm_task_get_info(struct dm_task *t, struct dm_info *info)
{
	(void)t;
	memset(info, 0, sizeof(*info));
	info->exists = fake.exists;
	info->suspended = 1;
	info->open_count = 2;
	info->major = 253;
	info->minor = 7;
	return 1;
}

const char *__wrap_dm_task_get_uuid(const struct dm_task *t);
const char *__wrap_dm_task_get_uuid(const struct dm_task *t)
{
	(void)t;
	return fake.uuid ? fake.uuid : "LVM-notours";
}

const char *__wrap_dm_task_get_name(const struct dm_task *t);
const char *__wrap_dm_task_get_name(const struct dm_task *t)
{
	(void)t;
	return "x";
}

/* Setters the tests do not look at: accept. */
#define ACCEPT(fn, ...)                            \
	int __wrap_##fn(struct dm_task *t, ##__VA_ARGS__); \
	int __wrap_##fn(struct dm_task *t, ##__VA_ARGS__)
ACCEPT(dm_task_set_sector, uint64_t s)
{
	(void)t;
	(void)s;
	return 1;
}
ACCEPT(dm_task_set_message, const char *m)
{
	(void)t;
	(void)m;
	return 1;
}
ACCEPT(dm_task_set_ro)
{
	(void)t;
	return 1;
}
ACCEPT(dm_task_query_inactive_table)
{
	(void)t;
	return 1;
}

const char *__wrap_dm_task_get_message_response(struct dm_task *t);
const char *__wrap_dm_task_get_message_response(struct dm_task *t)
{
	(void)t;
	return NULL;
}

void *__wrap_dm_get_next_target(struct dm_task *t, void *next, uint64_t *start, uint64_t *length,
				char **type, char **params);
void *__wrap_dm_get_next_target(struct dm_task *t, void *next, uint64_t *start, uint64_t *length,
				char **type, char **params)
{
	(void)t;
	(void)next;
	*start = 0;
	*length = 8;
	*type = (char *)(fake.target_type ? fake.target_type : "zero");
	*params = (char *)(fake.target_params ? fake.target_params : "");
	return NULL;
}

static int reset(void **state)
{
	(void)state;
	memset(&fake, 0, sizeof(fake));
	return 0;
}

static struct dmr_table *one_target(void)
{
	struct dmr_table *t = dmr_table_new();

	assert_int_equal(dmr_table_add_zero(t, 8), 0);
	return t;
}

static void test_create_refuses_foreign_uuid(void **state)
{
	_cleanup_table_ struct dmr_table *t = one_target();

	(void)state;
	assert_int_equal(dmr_dm_create("x", "LVM-abc", t, 0), -EPERM);
	assert_int_equal(dmr_dm_create("x", NULL, t, 0), -EPERM);
	assert_int_equal(dmr_dm_create("bad/name", "DMREP-x", t, 0), -EINVAL);
	assert_int_equal(fake.created, 0); /* refused before any task */
}

static void test_cookie_on_create_resume_remove_only(void **state)
{
	_cleanup_table_ struct dmr_table *t = one_target();

	(void)state;
	assert_int_equal(dmr_dm_create("x", "DMREP-x", t, 0), 0);
	assert_int_equal(fake.cookies, 1);
	assert_int_equal(fake.targets, 1);
	assert_int_equal(dmr_dm_load("x", t, 0), 0);
	assert_int_equal(dmr_dm_suspend("x", 0), 0);
	assert_int_equal(dmr_dm_message("x", 0, "create_thin 1", NULL), 0);
	assert_int_equal(dmr_dm_clear("x"), 0);
	assert_int_equal(fake.cookies, 1); /* none of those took one */
	assert_int_equal(dmr_dm_resume("x"), 0);
	assert_int_equal(dmr_dm_remove("x", 0), 0);
	assert_int_equal(fake.cookies, 3);
	assert_int_equal(fake.waits, 3);
	assert_int_equal(fake.created, fake.destroyed);
}

static void test_cookie_waited_on_failure(void **state)
{
	(void)state;
	fake.fail_errno[0] = EINVAL;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_resume("x"), -EINVAL);
	assert_int_equal(fake.cookies, 1);
	assert_int_equal(fake.waits, 1); /* the semaphore is released */
	assert_int_equal(fake.created, fake.destroyed);
}

static void test_remove_retries_busy(void **state)
{
	(void)state;
	fake.fail_errno[0] = fake.fail_errno[1] = fake.fail_errno[2] = EBUSY;
	fake.n_fail = 3;
	assert_int_equal(dmr_dm_remove("x", 5), 0);
	assert_int_equal(fake.runs, 4);
	reset(NULL);
	fake.fail_errno[0] = fake.fail_errno[1] = fake.fail_errno[2] = EBUSY;
	fake.n_fail = 3;
	assert_int_equal(dmr_dm_remove("x", 1), -EBUSY);
	assert_int_equal(fake.runs, 2);
	reset(NULL);
	fake.fail_errno[0] = EINVAL;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_remove("x", 5), -EINVAL); /* only EBUSY is retried */
	assert_int_equal(fake.runs, 1);
}

static void test_errno_mapping(void **state)
{
	(void)state;
	fake.fail_errno[0] = ENXIO;
	fake.fail_errno[1] = 0; /* "failed" without errno */
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_suspend("x", 0), -ENOENT);
	fake.fail_errno[0] = EPERM;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_suspend("x", 0), -EPERM);
}

static void test_suspend_flags(void **state)
{
	(void)state;
	assert_int_equal(dmr_dm_suspend("x", DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS), 0);
	assert_int_equal(fake.no_flush, 1);
	assert_int_equal(fake.skip_lockfs, 1);
	assert_int_equal(dmr_dm_suspend("x", 0), 0);
	assert_int_equal(fake.no_flush, 1);
	assert_int_equal(fake.last_type, DM_DEVICE_SUSPEND);
}

static void test_info_and_owned(void **state)
{
	struct dmr_dm_info info = { .open_count = 99 };

	(void)state;
	fake.exists = 0;
	assert_int_equal(dmr_dm_info("x", &info), 0);
	assert_false(info.exists);
	assert_int_equal(dmr_dm_owned("x"), -ENOENT);
	fake.exists = 1;
	assert_int_equal(dmr_dm_info("x", &info), 0);
	assert_true(info.exists && info.suspended);
	assert_int_equal(info.open_count, 2);
	assert_string_equal(info.uuid, "LVM-notours");
	assert_int_equal(dmr_dm_owned("x"), -EPERM);
	/* Out-params are untouched on failure. */
	info.open_count = 99;
	fake.fail_errno[0] = EIO;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_info("x", &info), -EIO);
	assert_int_equal(info.open_count, 99);
}

/* The full UUID decides, not its DMREP- prefix: VM a-b's disk c and VM
 * a's disk b-c are both dmrep's, and only one of them is the caller's. */
static void test_check_uuid(void **state)
{
	(void)state;
	fake.exists = 0;
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -ENOENT);
	fake.exists = 1;
	fake.uuid = "DMREP-disk-a:b-c";
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), 0);
	fake.uuid = "DMREP-disk-a-b:c";
	assert_int_equal(dmr_dm_owned("x"), 0);
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -EEXIST);
	/* Neither a prefix nor an extension of the expected UUID is it. */
	fake.uuid = "DMREP-disk-a:b";
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -EEXIST);
	fake.uuid = "DMREP-disk-a:b-c-d";
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -EEXIST);
	fake.uuid = "";
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -EEXIST);
	/* A bad expectation is refused before any task. */
	fake.runs = 0;
	assert_int_equal(dmr_dm_check_uuid("x", ""), -EINVAL);
	assert_int_equal(dmr_dm_check_uuid("x", NULL), -EINVAL);
	assert_int_equal(fake.runs, 0);
	/* A failed info is passed on, never taken for a match. */
	fake.uuid = "DMREP-disk-a:b-c";
	fake.fail_errno[0] = EIO;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_check_uuid("x", "DMREP-disk-a:b-c"), -EIO);
}

static void test_table_untouched_on_failure(void **state)
{
	struct dmr_table *sentinel = (struct dmr_table *)0x1;
	struct dmr_table *t = sentinel;

	(void)state;
	fake.fail_errno[0] = ENXIO;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_table("x", false, &t), -ENOENT);
	assert_ptr_equal(t, sentinel);
	assert_int_equal(dmr_dm_table("x", false, NULL), -EINVAL);
}

/* One target's status (what snapshots/pool.c and classic.c parse): its
 * params if the type is the one expected, else -EPROTO; nothing returned
 * on failure. */
static void test_target_status(void **state)
{
	char *sentinel = (char *)0x1, *p = sentinel;

	(void)state;
	fake.target_type = "snapshot";
	fake.target_params = "16/1024 8";
	assert_int_equal(dmr_dm_target_status("x", "snapshot", &p), 0);
	assert_string_equal(p, "16/1024 8");
	free(p);
	p = sentinel;
	assert_int_equal(dmr_dm_target_status("x", "thin-pool", &p), -EPROTO);
	assert_ptr_equal(p, sentinel);
	fake.fail_errno[0] = ENXIO;
	fake.n_fail = 1;
	assert_int_equal(dmr_dm_target_status("x", "snapshot", &p), -ENOENT);
	assert_ptr_equal(p, sentinel);
	assert_int_equal(dmr_dm_target_status("bad/name", "snapshot", &p), -EINVAL);
	assert_ptr_equal(p, sentinel);
	assert_int_equal(fake.created, fake.destroyed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_create_refuses_foreign_uuid, reset),
		cmocka_unit_test_setup(test_cookie_on_create_resume_remove_only, reset),
		cmocka_unit_test_setup(test_cookie_waited_on_failure, reset),
		cmocka_unit_test_setup(test_remove_retries_busy, reset),
		cmocka_unit_test_setup(test_errno_mapping, reset),
		cmocka_unit_test_setup(test_suspend_flags, reset),
		cmocka_unit_test_setup(test_info_and_owned, reset),
		cmocka_unit_test_setup(test_check_uuid, reset),
		cmocka_unit_test_setup(test_table_untouched_on_failure, reset),
		cmocka_unit_test_setup(test_target_status, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
