/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: `vm replicate`'s settings in the engine (agent/engine/
 * replicate.c: dmr_replicate_configure, dmr_replicate_act) over a bare
 * registry with a state directory: what is refused and why, what a new
 * COMMAND forgets, what pause, resume and off change, and that each is in
 * the VM's state file before the call returns. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/engine/replicate.h"
#include "agent/store/registry.h"
#include "common/rc.h"
#include "tests/unit/bare_registry.h"
#include "tests/unit/vm_points.h"

#define TO "ssh b dmrep --json point receive web"
#define UUID_A "0b6f6c1e-3a51-4c1b-9a8e-1f2d3c4b5a69"

static char dir[64];

static int setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof(dir), "/tmp/dmrep-test-replicate.XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	return test_rm_rf(dir);
}

/* The VM's replication object as its state file has it. */
static struct json_object *saved(const char *vm)
{
	char path[160];
	struct json_object *o, *r = NULL;

	snprintf(path, sizeof(path), "%s/vms/%s.json", dir, vm);
	o = json_object_from_file(path);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "replication", &r));
	r = json_object_get(r);
	json_object_put(o);
	return r;
}

static const char *s_at(struct json_object *o, const char *k)
{
	struct json_object *v = json_object_object_get(o, k);

	return v ? json_object_get_string(v) : NULL;
}

static void test_configure(void **st)
{
	struct dmr_registry *reg = test_bare_registry(dir);
	struct dmr_agent a = { .state_dir = dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("web", false, 1, 2);
	struct dmr_replicate_settings s = { .consistency = -1, .zstd = -1, .bandwidth = -1 };
	struct json_object *o;
	char *why = NULL;

	(void)st;
	dmr_uuid_new(vm->uuid);
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	/* Settings without a COMMAND while off: 32775. */
	s.interval_sec = 60;
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), -DMR_E_STATE);
	assert_non_null(strstr(why, "--to"));
	free(why);
	why = NULL;
	assert_int_equal(dmr_replicate_configure(&a, "nosuch", &s, &why), -ENOENT);
	free(why);
	why = NULL;
	/* A first --to: defaults where not given, saved. */
	s.to = TO;
	s.interval_sec = 0;
	s.bandwidth = 1 << 20;
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), 0);
	assert_null(why);
	assert_string_equal(vm->repl.to, TO);
	assert_int_equal(vm->repl.interval_sec, DMR_REPL_INTERVAL_DEFAULT);
	assert_int_equal(vm->repl.bandwidth, 1 << 20);
	assert_true(vm->repl.set_usec > 0);
	o = saved("web");
	assert_string_equal(s_at(o, "to"), TO);
	assert_int_equal(json_object_get_int(json_object_object_get(o, "bandwidth")), 1 << 20);
	json_object_put(o);
	/* What the cycles learned stays while the COMMAND is the same... */
	strcpy(vm->repl.acked_uuid, UUID_A);
	vm->repl.failures = 2;
	s = (struct dmr_replicate_settings){ .to = TO, .interval_sec = 45, .consistency = 1,
					     .zstd = 1, .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), 0);
	assert_string_equal(vm->repl.acked_uuid, UUID_A);
	assert_int_equal(vm->repl.failures, 2);
	assert_int_equal(vm->repl.interval_sec, 45);
	assert_true(vm->repl.application && vm->repl.zstd);
	assert_int_equal(vm->repl.bandwidth, 1 << 20);
	/* ... and is forgotten with another (another replica, perhaps). */
	s = (struct dmr_replicate_settings){ .to = "ssh c dmrep --json point receive web",
					     .consistency = -1, .zstd = -1, .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), 0);
	assert_string_equal(vm->repl.acked_uuid, "");
	assert_int_equal(vm->repl.failures, 0);
	assert_int_equal(vm->repl.interval_sec, DMR_REPL_INTERVAL_DEFAULT);
	o = saved("web");
	assert_string_equal(s_at(o, "acked_uuid"), "");
	json_object_put(o);
	/* Bounds, again here. */
	s = (struct dmr_replicate_settings){ .to = "a\nb", .consistency = -1, .zstd = -1,
					     .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), -EINVAL);
	free(why);
	why = NULL;
	s = (struct dmr_replicate_settings){ .interval_sec = 29, .consistency = -1, .zstd = -1,
					     .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), -EINVAL);
	free(why);
	why = NULL;
	/* Application consistency needs the guest agent. */
	free(vm->qga);
	vm->qga = NULL;
	vm->repl.application = false;
	s = (struct dmr_replicate_settings){ .consistency = 1, .zstd = -1, .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), -EINVAL);
	assert_non_null(strstr(why, "guest agent"));
	free(why);
	why = NULL;
	/* A replica replicates nothing: 32775, with the reason. */
	vm->role = DMR_VM_REPLICA;
	s = (struct dmr_replicate_settings){ .to = TO, .consistency = -1, .zstd = -1, .bandwidth = -1 };
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), -DMR_E_STATE);
	assert_non_null(strstr(why, "replica"));
	free(why);
	why = NULL;
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_PAUSE, &why), -DMR_E_STATE);
	free(why);
	test_bare_free(reg);
}

/* A replica's commit leaves the point both hosts share as acknowledged,
 * with no COMMAND (failover.c): the first --to keeps it, so that the cycle
 * back to the old primary is incremental (the h-40 lab test found it
 * cleared, and the first cycle a full stream the old primary refused). */
static void test_configure_after_commit(void **st)
{
	struct dmr_registry *reg = test_bare_registry(dir);
	struct dmr_agent a = { .state_dir = dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("back", false, 1, 2);
	struct dmr_replicate_settings s = { .to = TO, .consistency = -1, .zstd = -1, .bandwidth = -1 };
	struct json_object *o;
	char *why = NULL;

	(void)st;
	dmr_uuid_new(vm->uuid);
	strcpy(vm->repl.acked_uuid, UUID_A);
	vm->repl.acked_usec = 1234;
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_replicate_configure(&a, "back", &s, &why), 0);
	assert_null(why);
	assert_string_equal(vm->repl.to, TO);
	assert_string_equal(vm->repl.acked_uuid, UUID_A);
	assert_int_equal(vm->repl.acked_usec, 1234);
	o = saved("back");
	assert_string_equal(s_at(o, "acked_uuid"), UUID_A);
	json_object_put(o);
	/* --off forgets it: the next --to starts from nothing (a full stream). */
	assert_int_equal(dmr_replicate_act(&a, "back", DMR_REPLICATE_OFF, &why), 0);
	assert_string_equal(vm->repl.acked_uuid, "");
	assert_int_equal(dmr_replicate_configure(&a, "back", &s, &why), 0);
	assert_string_equal(vm->repl.acked_uuid, "");
	test_bare_free(reg);
}

static void test_act(void **st)
{
	struct dmr_registry *reg = test_bare_registry(dir);
	struct dmr_agent a = { .state_dir = dir, .reg = reg };
	struct dmr_vm *vm = test_make_vm("web", false, 1, 1);
	struct dmr_replicate_settings s = { .to = TO, .consistency = -1, .zstd = -1, .bandwidth = -1 };
	struct json_object *o;
	char *why = NULL;

	(void)st;
	dmr_uuid_new(vm->uuid);
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	/* Not replicating: pause and resume refused, off is off already. */
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_PAUSE, &why), -DMR_E_STATE);
	free(why);
	why = NULL;
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_OFF, &why), 0);
	assert_int_equal(dmr_replicate_configure(&a, "web", &s, &why), 0);
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_PAUSE, &why), 0);
	assert_true(vm->repl.paused);
	assert_int_equal(dmr_repl_health(&vm->repl, dmr_realtime_usec()), DMR_REPL_PAUSED);
	o = saved("web");
	assert_true(json_object_get_boolean(json_object_object_get(o, "paused")));
	json_object_put(o);
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_RESUME, &why), 0);
	assert_false(vm->repl.paused);
	strcpy(vm->repl.acked_uuid, UUID_A);
	assert_int_equal(dmr_replicate_act(&a, "web", DMR_REPLICATE_OFF, &why), 0);
	assert_null(vm->repl.to);
	assert_string_equal(vm->repl.acked_uuid, "");
	assert_int_equal(dmr_repl_health(&vm->repl, dmr_realtime_usec()), DMR_REPL_OFF);
	{
		/* Off: the state file is as before replication was set. */
		char path[160];

		snprintf(path, sizeof(path), "%s/vms/web.json", dir);
		o = json_object_from_file(path);
		assert_non_null(o);
		assert_false(json_object_object_get_ex(o, "replication", NULL));
		json_object_put(o);
	}
	assert_null(why);
	test_bare_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_configure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configure_after_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_act, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
