/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_vm - the VM state files the agent loads at start
 * (STATE/vms/NAME.json, agent/store/registry.c), parsed as vms_load does
 * (dmr_json_parse_object, dmr_vm_from_state_json) and checked as a round
 * trip with the writer (dmr_vm_state_json): load -> write -> load -> write
 * gives the same text twice.  A VM the loader takes also gives its API
 * shapes (dmr_vm_api_json, dmr_point_api_json) and its retention victims.
 */
#include "agent/store/registry.h"
#include "common/json.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

/* As the agent writes a state file (save_json). */
static char *save(const struct dmr_vm *vm)
{
	return fuzz_json_text(dmr_vm_state_json(vm), JSON_C_TO_STRING_PRETTY);
}

static struct dmr_vm *load(const char *text, size_t len)
{
	struct json_object *o = NULL;
	struct dmr_vm *vm = NULL;
	int r;

	if (dmr_json_parse_object(text, len, &o) < 0)
		return NULL;
	r = dmr_vm_from_state_json(o, &vm);
	json_object_put(o);
	return r < 0 ? NULL : vm;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_vm *vm = load((const char *)data, size), *again;
	struct json_object *api;
	char *a, *b;
	size_t *idx = NULL, n = 0;

	if (!vm)
		return 0;
	a = save(vm);
	api = dmr_vm_api_json(vm);
	FUZZ_CHECK(api);
	json_object_put(api);
	for (size_t i = 0; i < vm->n_points; i++) {
		api = dmr_point_api_json(&vm->points[i], vm->n_disks);
		FUZZ_CHECK(api);
		json_object_put(api);
	}
	if (dmr_vm_retention_victims(vm, vm->n_points ? vm->points[0].created_usec * 2 : 0, &idx,
				     &n) == 0)
		FUZZ_CHECK(n <= vm->n_points);
	free(idx);
	again = load(a, strlen(a));
	if (!again)
		fprintf(stderr, "written file does not load:\n%s\n", a);
	FUZZ_CHECK(again);
	b = save(again);
	fuzz_same_text(a, b);
	dmr_vm_free(vm);
	dmr_vm_free(again);
	return 0;
}
