/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/backend/backend.h"

#include <assert.h>

#include "common/util.h"
#include "dm/dm.h"

/* The one place that reads a VM's backend name (the state file's
 * "backend"); everything else calls through the table. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm)
{
	assert(vm);
	return dmr_streq(vm->backend, "classic") ? &dmr_backend_classic : &dmr_backend_thin;
}

int dmr_vm_dm_check(const struct dmr_vm *vm, char ret_name[DMR_DM_NAME_SIZE])
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[2][DMR_DM_NAME_SIZE], uuid[2][DMR_DM_UUID_SIZE];
		int r;

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name[0])) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid[0])) < 0 ||
		    (r = dmr_vm_test_dm_name(vm->name, vm->disks[i].name, name[1])) < 0 ||
		    (r = dmr_vm_test_dm_uuid(vm->name, vm->disks[i].name, uuid[1])) < 0)
			return r;
		for (size_t k = 0; k < 2; k++) {
			r = dmr_dm_check_uuid(name[k], uuid[k]);
			if (r == -EEXIST)
				memcpy(ret_name, name[k], sizeof(name[k]));
			if (r < 0 && r != -ENOENT)
				return r;
		}
	}
	return 0;
}
