/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: a pool recorded but down (agent/engine/pool.c): what
 * GetPoolStatus answers for it and the one refusal every operation that
 * needs it gives (32775, why, what to do).  Why the pool went down at
 * start is recovery's (set on the registry here as recovery sets it); the
 * kernel's side (a metadata device on error, a data device missing, a
 * superblock overwritten or blank) is the lab's (t-69).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engine/pool.h"
#include "common/rc.h"
#include "tests/unit/bare_registry.h"

static char dir[64];

static int setup(void **st)
{
	struct dmr_registry *reg;

	snprintf(dir, sizeof(dir), "/tmp/dmrep-pooldown.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	reg = test_bare_registry(dir);
	reg->have_pool = true;
	reg->tid = 7;
	reg->pool_spec.data_path = strdup("/dev/mapper/pdata");
	reg->pool_spec.meta_path = strdup("/dev/mapper/pmeta");
	*st = reg;
	return 0;
}

static int teardown(void **st)
{
	struct dmr_registry *reg = *st;

	dmr_pool_spec_done(&reg->pool_spec);
	free(reg->pool_down_reason);
	free(reg->pool_down_advice);
	test_bare_free(reg);
	return test_rm_rf(dir);
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

/* Down with a reason: the status says so, with its paths and what to do;
 * nothing that only the kernel knows (usage, the pool's transaction id). */
static void test_status_down(void **st)
{
	struct dmr_registry *reg = *st;
	struct json_object *o = NULL, *v;
	char *why = NULL;

	reg->pool_down_reason = strdup("cannot activate it on /dev/mapper/pdata and "
				       "/dev/mapper/pmeta: Input/output error");
	reg->pool_down_advice = strdup("fix the devices, then restart dmrepd");
	assert_int_equal(dmr_pool_status_json(reg, &o, &why), 0);
	assert_null(why);
	assert_true(json_object_object_get_ex(o, "active", &v));
	assert_false(json_object_get_boolean(v));
	assert_string_equal(str(o, "mode"), "down");
	assert_string_equal(str(o, "health"), "fail");
	assert_string_equal(str(o, "reason"), reg->pool_down_reason);
	assert_string_equal(str(o, "advice"), reg->pool_down_advice);
	assert_string_equal(str(o, "data_path"), "/dev/mapper/pdata");
	assert_string_equal(str(o, "meta_path"), "/dev/mapper/pmeta");
	assert_true(json_object_object_get_ex(o, "catalog_transaction_id", &v));
	assert_int_equal(json_object_get_int64(v), 7);
	assert_false(json_object_object_get_ex(o, "transaction_id", NULL));
	assert_false(json_object_object_get_ex(o, "data_used_blocks", NULL));
	json_object_put(o);
}

/* Every operation's refusal: 32775, one line with the reason and advice. */
static void test_down_why(void **st)
{
	struct dmr_registry *reg = *st;
	char *why = NULL;
	int r;

	reg->pool_down_reason = strdup("its metadata device /dev/mapper/pmeta is blank");
	reg->pool_down_advice = strdup("put the pool's own metadata back, then restart dmrepd");
	r = dmr_pool_down_why(reg, &why);
	assert_int_equal(r, -DMR_E_STATE);
	assert_int_equal(dmr_rc_from_errno(r), DMR_RC_INVALID_STATE);
	assert_non_null(why);
	assert_string_equal(why, "the pool is down: its metadata device /dev/mapper/pmeta is "
			    "blank; put the pool's own metadata back, then restart dmrepd");
	assert_null(strchr(why, '\n'));
	free(why);
}

/* No reason recorded (a path recovery did not foresee): still a refusal
 * that says the pool is down and what to do, never an empty message. */
static void test_down_why_unknown(void **st)
{
	struct dmr_registry *reg = *st;
	struct json_object *o = NULL;
	char *why = NULL;

	assert_int_equal(dmr_pool_down_why(reg, &why), -DMR_E_STATE);
	assert_non_null(strstr(why, "the pool is down: "));
	assert_non_null(strstr(why, "restart dmrepd"));
	free(why);
	why = NULL;
	assert_int_equal(dmr_pool_status_json(reg, &o, &why), 0);
	assert_true(strlen(str(o, "reason")) > 0);
	assert_non_null(strstr(str(o, "advice"), "restart dmrepd"));
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_down_why, setup, teardown),
		cmocka_unit_test_setup_teardown(test_down_why_unknown, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
