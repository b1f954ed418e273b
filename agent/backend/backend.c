/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/backend.c - which backend a VM has, and what is written once
 * over the table of operations (moving stable devices between volumes).
 */
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

const struct dmr_backend *dmr_backend_named(const char *name)
{
	assert(name);
	if (dmr_streq(name, dmr_backend_thin.name))
		return &dmr_backend_thin;
	if (dmr_streq(name, dmr_backend_classic.name))
		return &dmr_backend_classic;
	return NULL;
}

/* Used for rollback, recovery and a classic commit, outside any guest
 * pause, so plain libdevmapper reload/suspend/resume with flush is right
 * here. */
int dmr_backend_retarget(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids)
{
	const struct dmr_backend *be = dmr_backend_of(vm);
	int r = 0;

	assert(reg && ids);
	/* A volume that cannot be brought up fails its disk's stable_table
	 * below; the other disks still move. */
	r = be->volumes_up(reg, vm, ids);
	for (size_t i = 0; i < vm->n_disks; i++) {
		_cleanup_table_ struct dmr_table *live = NULL, *want = NULL;
		char name[DMR_DM_NAME_SIZE];
		struct dmr_dm_info info;
		int q;

		q = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name);
		if (q == 0)
			q = dmr_dm_info(name, &info);
		if (q < 0 || !info.exists) {
			r = r ?: (q < 0 ? q : -ENOENT);
			continue;
		}
		if (info.inactive_table)
			(void)dmr_dm_clear(name);
		if (dmr_dm_table(name, false, &live) == 0 &&
		    be->table_shows(reg, vm, i, live, ids[i])) {
			if (info.suspended && (q = dmr_dm_resume_retry(name)) < 0)
				r = r ?: q;
			continue;
		}
		q = be->stable_table(reg, vm, i, ids[i], &want);
		if (q == 0)
			q = dmr_dm_load(name, want, 0);
		if (q == 0 && !info.suspended)
			q = dmr_dm_suspend(name, 0);
		if (q == 0)
			q = dmr_dm_resume(name);
		if (q < 0) {
			(void)dmr_dm_clear(name);
			(void)dmr_dm_resume_retry(name);
			r = r ?: q;
		}
	}
	return r;
}
