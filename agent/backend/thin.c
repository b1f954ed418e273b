/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/thin.c - the thin backend: a VM's disks, points and views
 * are thin volumes and snapshots in the agent's pool (snapshots/thin.h);
 * every id is a thin id, and every batch of metadata changes is one pool
 * transaction (dmr_reg_txn_begin/_end).
 */
#include "agent/backend/backend.h"

#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/thin.h"

/* Delete thin ids in one pool transaction (0 ids: nothing). */
static int thin_delete_ids(struct dmr_registry *reg, size_t n, const uint32_t *ids)
{
	uint64_t old_tid, new_tid;
	int r;

	if (n == 0)
		return 0;
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	r = dmr_thin_delete_batch(reg->pool, n, ids, old_tid, new_tid);
	if (r < 0)
		log_error("cannot delete thin volumes from the pool: %s", strerror(-r));
	(void)dmr_reg_txn_end(reg, r == 0, new_tid);
	return r;
}

static uint32_t thin_live_id(const struct dmr_vm *vm, size_t i)
{
	return vm->disks[i].thin_id;
}

static int thin_stable_table(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			     uint32_t id, struct dmr_table **ret_table)
{
	return dmr_thin_table(reg->pool, id, vm->disks[i].size_bytes / 512, ret_table);
}

static bool thin_table_shows(struct dmr_registry *reg, const struct dmr_table *t, uint32_t id)
{
	uint32_t cur;

	return dmr_thin_table_id(reg->pool, t, &cur) == 0 && cur == id;
}

static int thin_views_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			   const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE], const char (*uuids)[DMR_DM_UUID_SIZE])
{
	const struct dmr_point *p = dmr_vm_point_find((struct dmr_vm *)vm, point);
	_cleanup_free_ const char **none = calloc(vm->n_disks, sizeof(char *));
	uint64_t old_tid, new_tid;
	size_t made = 0;
	int r;

	if (!p)
		return -ENOENT;
	if (!none)
		return -ENOMEM;
	/* Snapshots of snapshots that are not active: no suspend. */
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	r = dmr_thin_snapshot_group(reg->pool, vm->n_disks, none, p->vol_ids, ids, old_tid,
				    new_tid, 0, NULL);
	(void)dmr_reg_txn_end(reg, r == 0, new_tid);
	for (; r == 0 && names && made < vm->n_disks; made++)
		r = dmr_thin_activate(reg->pool, names[made], uuids[made], ids[made],
				      vm->disks[made].size_bytes / 512, false);
	if (r < 0 && names) {
		for (size_t i = 0; i < made; i++)
			if (dmr_dm_check_uuid(names[i], uuids[i]) == 0)
				(void)dmr_dm_remove(names[i], 20);
		(void)thin_delete_ids(reg, vm->n_disks, ids);
	}
	return r;
}

static int thin_remove(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids)
{
	return thin_delete_ids(reg, n, ids);
}

/* A thin VM's only devices are its stable devices and, while a test
 * failover has views, those; points and views are volumes, not devices. */
static bool thin_owns(const struct dmr_vm *vm, const char *name)
{
	char buf[DMR_DM_NAME_SIZE];

	for (size_t i = 0; i < vm->n_disks; i++) {
		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
		if (vm->test_ids && dmr_vm_test_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		    dmr_streq(buf, name))
			return true;
	}
	return false;
}

const struct dmr_backend dmr_backend_thin = {
	.name = "thin",
	.live_id = thin_live_id,
	.stable_table = thin_stable_table,
	.table_shows = thin_table_shows,
	.views_make = thin_views_make,
	.remove = thin_remove,
	.owns = thin_owns,
};

