/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/classic.h"

#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "agent/authz.h"
#include "common/log.h"
#include "common/path.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/classic.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"

bool dmr_vm_is_classic(const struct dmr_vm *vm)
{
	return vm && dmr_streq(vm->backend, "classic");
}

int dmr_classic_dev_name(uint32_t id, char buf[128])
{
	return snprintf(buf, 128, "dmrep-snap-%" PRIu32, id) >= 128 ? -ENAMETOOLONG : 0;
}

static void dev_uuid(uint32_t id, char buf[129])
{
	snprintf(buf, 129, DMR_UUID_PREFIX "snap-%" PRIu32, id);
}

int dmr_classic_dev_path(uint32_t id, char buf[160])
{
	return snprintf(buf, 160, "/dev/mapper/dmrep-snap-%" PRIu32, id) >= 160 ? -ENAMETOOLONG : 0;
}

static int store_path(const struct dmr_registry *reg, uint32_t id, char **ret)
{
	return asprintf(ret, "%s/cow/%" PRIu32 ".cow", reg->state_dir, id) < 0 ? -ENOMEM : 0;
}

uint64_t dmr_classic_default_cow(uint64_t disk_bytes)
{
	uint64_t b = disk_bytes / 4;

	if (b < (8u << 20))
		b = 8u << 20;
	return (b + 4095) & ~(uint64_t)4095;
}

/* The block device under disk i: the source itself, or the loop over an
 * image file (found again after a restart, attached after a reboot). */
static int disk_base(struct dmr_vm *vm, size_t i, const char **ret)
{
	struct dmr_disk *d = &vm->disks[i];
	char src[DMR_PATH_FD_NAME_MAX];
	_cleanup_close_ int fd = -1;
	bool is_block = false;
	char *dev = NULL;
	int r;

	if (d->base_dev) {
		*ret = d->base_dev;
		return 0;
	}
	/* Opened once and judged (agent/authz.h); the loop is made over
	 * that descriptor. */
	r = dmr_authz_source_open(dmr_authz_conf(), d->source, O_RDONLY | O_NONBLOCK, &fd);
	if (r < 0)
		return r;
	dmr_path_fd_name(fd, src);
	r = dmr_probe_path_kind(src, &is_block, NULL);
	if (r < 0)
		return r;
	if (is_block)
		dev = strdup(d->source);
	else if ((r = dmr_loop_find(src, &dev)) == -ENOENT)
		r = dmr_loop_attach(src, false, &dev);
	if (r < 0)
		return r;
	if (!dev)
		return -ENOMEM;
	d->base_dev = dev;
	*ret = dev;
	return 0;
}

/* The origin of a point of disk i with id `point` (UINT64_MAX: now). */
static int point_origin(const struct dmr_vm *vm, uint64_t point, size_t i, char buf[PATH_MAX])
{
	const struct dmr_layer *ly = NULL;

	for (size_t l = 0; l < vm->n_layers; l++)
		if (vm->layers[l].since <= point)
			ly = &vm->layers[l];
	if (ly)
		return dmr_classic_dev_path(ly->ids[i], buf);
	if (!vm->disks[i].base_dev)
		return -ENODEV;
	return snprintf(buf, PATH_MAX, "%s", vm->disks[i].base_dev) >= PATH_MAX ? -ENAMETOOLONG : 0;
}

int dmr_classic_origin(const struct dmr_vm *vm, size_t i, char buf[PATH_MAX])
{
	return point_origin(vm, UINT64_MAX, i, buf);
}

int dmr_classic_stable_table(const struct dmr_vm *vm, size_t i, uint32_t id,
			     struct dmr_table **ret_table)
{
	uint64_t sectors = vm->disks[i].size_bytes / 512;
	char path[PATH_MAX];
	int r;

	if (id == 0) {
		r = dmr_classic_origin(vm, i, path);
		return r < 0 ? r : dmr_classic_origin_table(path, sectors, ret_table);
	}
	r = dmr_classic_dev_path(id, path);
	return r < 0 ? r : dmr_classic_view_table(path, sectors, ret_table);
}

bool dmr_classic_table_shows(const struct dmr_table *t, uint32_t id)
{
	struct dmr_dm_info info;
	char name[128];

	if (id == 0)
		return dmr_classic_table_is_origin(t);
	if (dmr_classic_dev_name(id, name) < 0 || dmr_dm_info(name, &info) < 0 || !info.exists)
		return false;
	return dmr_classic_table_is_view_of(t, info.major, info.minor);
}

bool dmr_classic_point_pinned(const struct dmr_vm *vm, uint64_t point)
{
	for (size_t l = 0; l < vm->n_layers; l++)
		if (vm->layers[l].point == point)
			return true;
	return false;
}

/* Create dmrep-snap-ID (or name/uuid) as a snapshot of origin on store
 * id's (existing) file, unless it exists. */
static int snap_activate(struct dmr_registry *reg, uint32_t id, const char *origin,
			 uint64_t sectors, bool read_only, const char *name, const char *uuid)
{
	_cleanup_free_ char *file = NULL, *cow = NULL;
	_cleanup_table_ struct dmr_table *t = NULL;
	struct dmr_dm_info info;
	char nbuf[128], ubuf[129];
	int r;

	if (!name) {
		if ((r = dmr_classic_dev_name(id, nbuf)) < 0)
			return r;
		dev_uuid(id, ubuf);
		name = nbuf;
		uuid = ubuf;
	}
	if ((r = dmr_dm_info(name, &info)) < 0)
		return r;
	if (info.exists)
		return 0;
	if ((r = store_path(reg, id, &file)) < 0 || (r = dmr_cow_attach(file, &cow)) < 0 ||
	    (r = dmr_classic_snap_table(origin, cow, sectors, &t)) < 0)
		return r;
	return dmr_dm_create(name, uuid, t, read_only ? DMR_DM_READONLY : 0);
}

static int stable_names(const struct dmr_vm *vm, char (*names)[128])
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		int r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, names[i]);

		if (r < 0)
			return r;
	}
	return 0;
}

static int test_name(const struct dmr_vm *vm, size_t i, char name[128], char uuid[129])
{
	int r = dmr_vm_test_dm_name(vm->name, vm->disks[i].name, name);

	return r < 0 ? r : dmr_vm_test_dm_uuid(vm->name, vm->disks[i].name, uuid);
}

int dmr_classic_vm_create(struct dmr_registry *reg, struct dmr_vm *vm)
{
	size_t made = 0;
	int r = 0;

	for (; made < vm->n_disks; made++) {
		_cleanup_table_ struct dmr_table *t = NULL;
		char name[128], uuid[129];
		const char *base;

		if ((r = disk_base(vm, made, &base)) < 0 ||
		    (r = dmr_vm_disk_dm_name(vm->name, vm->disks[made].name, name)) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[made].name, uuid)) < 0 ||
		    (r = dmr_classic_stable_table(vm, made, 0, &t)) < 0 ||
		    (r = dmr_dm_create(name, uuid, t, 0)) < 0)
			break;
	}
	if (r < 0)
		(void)dmr_classic_vm_teardown(reg, vm);
	return r;
}

static int activate_points_below(struct dmr_registry *reg, struct dmr_vm *vm, size_t i,
				 uint64_t below)
{
	int r = 0;

	for (size_t p = 0; p < vm->n_points && vm->points[p].id < below; p++) {
		char origin[PATH_MAX];
		int q;

		if (vm->points[p].pending_tid)
			continue;
		q = point_origin(vm, vm->points[p].id, i, origin);
		if (q == 0)
			q = snap_activate(reg, vm->points[p].thin_ids[i], origin,
					  vm->disks[i].size_bytes / 512, true, NULL, NULL);
		if (q < 0) {
			log_debug("VM %s: point %" PRIu64 " of %s: %s", vm->name, vm->points[p].id,
				  vm->disks[i].name, strerror(-q));
			r = r ?: q;
		}
	}
	return r;
}

/* A view of point `point` for disk i in store id. */
static int view_activate(struct dmr_registry *reg, struct dmr_vm *vm, size_t i, uint64_t point,
			 uint32_t id, const char *name, const char *uuid)
{
	const struct dmr_point *p = dmr_vm_point_find(vm, point);
	char pdev[160];
	int r;

	if (!p)
		return -ENOENT;
	r = dmr_classic_dev_path(p->thin_ids[i], pdev);
	return r < 0 ? r : snap_activate(reg, id, pdev, vm->disks[i].size_bytes / 512, false, name, uuid);
}

int dmr_classic_vm_activate(struct dmr_registry *reg, struct dmr_vm *vm)
{
	int r = 0;

	for (size_t i = 0; i < vm->n_disks; i++) {
		_cleanup_table_ struct dmr_table *t = NULL;
		char name[128], uuid[129];
		struct dmr_dm_info info;
		const char *base;
		int q;

		q = disk_base(vm, i, &base);
		if (q < 0) {
			log_error("VM %s: disk %s: %s is not available: %s", vm->name,
				  vm->disks[i].name, vm->disks[i].source, strerror(-q));
			r = r ?: q;
			continue;
		}
		/* Dependency order: a layer's view needs its point; points
		 * taken after a commit need the layer below them. */
		for (size_t l = 0; l < vm->n_layers; l++) {
			q = activate_points_below(reg, vm, i, vm->layers[l].since);
			if (q == 0)
				q = view_activate(reg, vm, i, vm->layers[l].point, vm->layers[l].ids[i],
						  NULL, NULL);
			r = r ?: q;
		}
		r = r ?: activate_points_below(reg, vm, i, UINT64_MAX);
		if (vm->overlay_ids && vm->failover_point)
			r = r ?: view_activate(reg, vm, i, vm->failover_point, vm->overlay_ids[i], NULL,
					       NULL);
		if (vm->test_ids && vm->test_point && test_name(vm, i, name, uuid) == 0)
			r = r ?: view_activate(reg, vm, i, vm->test_point, vm->test_ids[i], name, uuid);

		if ((q = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (q = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
		    (q = dmr_dm_info(name, &info)) < 0 || info.exists) {
			r = r ?: q;
			continue;
		}
		q = dmr_classic_stable_table(vm, i,
					     vm->state == DMR_VM_RECOVERED && vm->overlay_ids ?
					     vm->overlay_ids[i] : 0, &t);
		if (q == 0)
			q = dmr_dm_create(name, uuid, t, 0);
		if (q < 0)
			log_error("VM %s: cannot activate %s: %s", vm->name, name, strerror(-q));
		r = r ?: q;
	}
	return r;
}

static int remove_dev(const char *name)
{
	struct dmr_dm_info info;
	int r;

	if ((r = dmr_dm_info(name, &info)) < 0 || !info.exists)
		return r;
	if (dmr_dm_owned(name) < 0)
		return -EPERM;
	if (info.open_count > 0)
		return -EBUSY;
	return dmr_dm_remove(name, 20);
}

static int remove_store_dev(uint32_t id)
{
	char name[128];

	return id && dmr_classic_dev_name(id, name) == 0 ? remove_dev(name) : 0;
}

static int destroy_store(struct dmr_registry *reg, uint32_t id)
{
	_cleanup_free_ char *file = NULL;

	if (!id)
		return 0;
	return store_path(reg, id, &file) < 0 ? -ENOMEM : dmr_cow_destroy(file);
}

int dmr_classic_vm_teardown(struct dmr_registry *reg, struct dmr_vm *vm)
{
	int r = 0;

	/* The stable devices first: one that is open stops everything. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[128], uuid[129];

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (r = remove_dev(name)) < 0)
			return r;
		if (test_name(vm, i, name, uuid) == 0 && (r = remove_dev(name)) < 0)
			return r;
	}
	/* Then the reverse of the activation order. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		size_t l = vm->n_layers;

		if (vm->overlay_ids)
			r = r ?: remove_store_dev(vm->overlay_ids[i]);
		for (size_t p = vm->n_points; p-- > 0;) {
			while (l > 0 && vm->points[p].id < vm->layers[l - 1].since) {
				r = r ?: remove_store_dev(vm->layers[l - 1].ids[i]);
				l--;
			}
			r = r ?: remove_store_dev(vm->points[p].thin_ids[i]);
		}
		for (; l > 0; l--)
			r = r ?: remove_store_dev(vm->layers[l - 1].ids[i]);
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < vm->n_disks; i++) {
		if (vm->overlay_ids)
			r = r ?: destroy_store(reg, vm->overlay_ids[i]);
		if (vm->test_ids)
			r = r ?: destroy_store(reg, vm->test_ids[i]);
		for (size_t p = 0; p < vm->n_points; p++)
			r = r ?: destroy_store(reg, vm->points[p].thin_ids[i]);
		for (size_t l = 0; l < vm->n_layers; l++)
			r = r ?: destroy_store(reg, vm->layers[l].ids[i]);
		/* A loop dmrep put under an image file goes too. */
		if (vm->disks[i].base_dev && !dmr_streq(vm->disks[i].base_dev, vm->disks[i].source)) {
			(void)dmr_loop_detach(vm->disks[i].base_dev);
			free(vm->disks[i].base_dev);
			vm->disks[i].base_dev = NULL;
		}
	}
	return r;
}

static int cow_dir(struct dmr_registry *reg, char **ret)
{
	if (asprintf(ret, "%s/cow", reg->state_dir) < 0)
		return -ENOMEM;
	return dmr_mkdir_p(*ret, 0700);
}

static void add_unallocated(struct dmr_registry *reg, uint32_t id, uint64_t *sum)
{
	_cleanup_free_ char *file = NULL;
	uint64_t b = 0;

	if (id && store_path(reg, id, &file) == 0 && dmr_cow_unallocated(file, &b) == 0)
		*sum += b;
}

int dmr_classic_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
			   const char *const *devs, char **ret_why)
{
	_cleanup_free_ char *dir = NULL;
	uint64_t need, grow = 0, avail;
	struct statvfs sv;
	size_t n = 0;
	int r;

	for (size_t p = 0; p < vm->n_points; p++)
		n += !vm->points[p].pending_tid;
	if (n >= vm->max_points) {
		if (asprintf(ret_why, "VM %s has %zu points, its cap (each origin write is copied "
			     "to every point; remove one or raise --max-points)", vm->name, n) < 0)
			*ret_why = NULL;
		return -EDQUOT;
	}
	if ((r = cow_dir(reg, &dir)) < 0)
		return r;
	if (statvfs(dir, &sv) < 0)
		return dmr_negerrno();
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	/* Every store may fill up: the new ones, and what the sparse
	 * existing ones have not allocated yet. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		for (size_t p = 0; p < vm->n_points; p++)
			add_unallocated(reg, vm->points[p].thin_ids[i], &grow);
		if (vm->overlay_ids)
			add_unallocated(reg, vm->overlay_ids[i], &grow);
		if (vm->test_ids)
			add_unallocated(reg, vm->test_ids[i], &grow);
	}
	need = grow;
	for (size_t i = 0; i < vm->n_disks; i++)
		if (!devs || !devs[i])
			need += vm->cow_size;
	if (need > avail) {
		if (asprintf(ret_why, "the COW stores of VM %s could need %" PRIu64 " bytes in %s, "
			     "which has %" PRIu64 " free", vm->name, need, dir, avail) < 0)
			*ret_why = NULL;
		return -ENOSPC;
	}
	return 0;
}

int dmr_classic_cow_device_check(const struct dmr_vm *vm, const char *path, bool force,
				 char **ret_what)
{
	struct stat st, ds;
	bool is_block = false;
	uint64_t size = 0;
	int r;

	if (path[0] != '/')
		return -EINVAL;
	r = dmr_probe_path_kind(path, &is_block, &size);
	if (r < 0)
		return r;
	if (!is_block)
		return -ENOTBLK;
	if (size < (1u << 20))
		return -ENOSPC;
	if (stat(path, &st) < 0)
		return dmr_negerrno();
	/* The VM's own disks are in use by it, but say so plainly. */
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].base_dev && stat(vm->disks[i].base_dev, &ds) == 0 &&
		    ds.st_rdev == st.st_rdev)
			return -EINVAL;
	r = dmr_probe_in_use(path);
	if (r < 0)
		return r;
	if (!force) {
		_cleanup_free_ char *what = NULL;

		r = dmr_probe_signatures(path, &what);
		if (r < 0)
			return r;
		if (what) {
			if (ret_what)
				*ret_what = DMR_TAKE_PTR(what);
			return -EEXIST;
		}
	}
	return 0;
}

int dmr_classic_point_make(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			   const char *const *devs, unsigned suspend_flags,
			   uint64_t *ret_suspend_usec)
{
	size_t n = vm->n_disks, made = 0;
	_cleanup_free_ char (*stable)[128] = calloc(n, sizeof(*stable));
	_cleanup_free_ char (*names)[128] = calloc(n, sizeof(*names));
	_cleanup_free_ char (*uuids)[129] = calloc(n, sizeof(*uuids));
	_cleanup_free_ const char **sp = calloc(n, sizeof(char *));
	_cleanup_free_ const char **np = calloc(n, sizeof(char *));
	_cleanup_free_ const char **up = calloc(n, sizeof(char *));
	_cleanup_free_ struct dmr_table **tables = calloc(n, sizeof(*tables));
	_cleanup_free_ char *dir = NULL;
	int r;

	if (!stable || !names || !uuids || !sp || !np || !up || !tables)
		return -ENOMEM;
	if ((r = cow_dir(reg, &dir)) < 0 || (r = stable_names(vm, stable)) < 0)
		return r;
	/* Stores and tables before the origins are suspended. */
	for (; made < n; made++) {
		_cleanup_free_ char *file = NULL, *cow = NULL;
		char origin[PATH_MAX];

		if ((r = point_origin(vm, UINT64_MAX, made, origin)) < 0 ||
		    (r = dmr_classic_dev_name(ids[made], names[made])) < 0 ||
		    (r = store_path(reg, ids[made], &file)) < 0)
			break;
		dev_uuid(ids[made], uuids[made]);
		if (devs && devs[made])
			r = dmr_cow_link_device(file, devs[made], &cow);
		else
			r = dmr_cow_create(file, vm->cow_size, &cow);
		if (r < 0)
			break;
		r = dmr_classic_snap_table(origin, cow, vm->disks[made].size_bytes / 512, &tables[made]);
		if (r < 0) {
			made++; /* its store exists */
			break;
		}
		sp[made] = stable[made];
		np[made] = names[made];
		up[made] = uuids[made];
	}
	if (r == 0)
		r = dmr_classic_snapshot_group(n, sp, np, up, tables, suspend_flags, ret_suspend_usec);
	for (size_t i = 0; i < n; i++)
		dmr_table_free(tables[i]);
	if (r < 0)
		for (size_t i = 0; i < made; i++)
			(void)destroy_store(reg, ids[i]);
	return r;
}

int dmr_classic_views_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			   const uint32_t *ids, const char (*names)[128],
			   const char (*uuids)[129])
{
	const struct dmr_point *p = dmr_vm_point_find((struct dmr_vm *)vm, point);
	_cleanup_free_ char *dir = NULL;
	size_t made = 0;
	int r;

	if (!p)
		return -ENOENT;
	if ((r = cow_dir(reg, &dir)) < 0)
		return r;
	for (; made < vm->n_disks; made++) {
		_cleanup_free_ char *file = NULL, *cow = NULL;
		_cleanup_table_ struct dmr_table *t = NULL;
		char pdev[160], nbuf[128], ubuf[129];
		const char *name = names ? names[made] : nbuf, *uuid = uuids ? uuids[made] : ubuf;

		if (!names) {
			(void)dmr_classic_dev_name(ids[made], nbuf);
			dev_uuid(ids[made], ubuf);
		}
		if ((r = dmr_classic_dev_path(p->thin_ids[made], pdev)) < 0 ||
		    (r = store_path(reg, ids[made], &file)) < 0 ||
		    (r = dmr_cow_create(file, vm->cow_size, &cow)) < 0)
			break;
		/* The table load reads the store's metadata (none yet): out
		 * of any guest pause, here. */
		r = dmr_classic_snap_table(pdev, cow, vm->disks[made].size_bytes / 512, &t);
		if (r == 0)
			r = dmr_dm_create(name, uuid, t, 0);
		if (r < 0) {
			(void)destroy_store(reg, ids[made]);
			break;
		}
	}
	if (r < 0) {
		for (size_t i = 0; i < made; i++) {
			char nbuf[128];

			if (!names)
				(void)dmr_classic_dev_name(ids[i], nbuf);
			(void)remove_dev(names ? names[i] : nbuf);
			(void)destroy_store(reg, ids[i]);
		}
	}
	return r;
}

int dmr_classic_delete(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids)
{
	_cleanup_free_ char (*stable)[128] = calloc(vm->n_disks, sizeof(*stable));
	_cleanup_free_ char (*names)[128] = calloc(n ? n : 1, sizeof(*names));
	_cleanup_free_ const char **sp = calloc(vm->n_disks, sizeof(char *));
	_cleanup_free_ const char **np = calloc(n ? n : 1, sizeof(char *));
	int r;

	if (!stable || !names || !sp || !np)
		return -ENOMEM;
	if ((r = stable_names(vm, stable)) < 0)
		return r;
	for (size_t i = 0; i < vm->n_disks; i++)
		sp[i] = stable[i];
	for (size_t k = 0; k < n; k++)
		if (ids[k] && dmr_classic_dev_name(ids[k], names[k]) == 0)
			np[k] = names[k];
	r = dmr_classic_snap_remove(vm->n_disks, sp, n, np);
	if (r < 0) {
		log_debug("VM %s: removing snapshot devices: %s", vm->name, strerror(-r));
		return r;
	}
	for (size_t k = 0; k < n; k++) {
		int q = destroy_store(reg, ids[k]);

		if (q < 0)
			log_debug("VM %s: COW store %" PRIu32 ": %s", vm->name, ids[k], strerror(-q));
		r = r ?: q;
	}
	return r;
}

void dmr_classic_refresh(struct dmr_registry *reg, const char *vm_name)
{
	_cleanup_free_ uint64_t *pids = NULL;
	_cleanup_free_ uint32_t *ids = NULL;
	_cleanup_free_ unsigned *pct = NULL;
	_cleanup_free_ bool *bad = NULL;
	size_t np = 0, nd = 0;
	struct dmr_vm *vm;
	bool changed = false;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	if (vm && dmr_vm_is_classic(vm) && vm->n_points) {
		np = vm->n_points;
		nd = vm->n_disks;
		pids = calloc(np, sizeof(*pids));
		ids = calloc(np * nd, sizeof(*ids));
		pct = calloc(np, sizeof(*pct));
		bad = calloc(np, sizeof(*bad));
		for (size_t p = 0; pids && ids && pct && bad && p < np; p++) {
			pids[p] = vm->points[p].pending_tid ? 0 : vm->points[p].id;
			memcpy(&ids[p * nd], vm->points[p].thin_ids, nd * sizeof(*ids));
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (!pids || !ids || !pct || !bad)
		return;

	for (size_t p = 0; p < np; p++) {
		for (size_t i = 0; pids[p] && i < nd; i++) {
			struct dmr_snapshot_status st;
			char name[128];

			if (dmr_classic_dev_name(ids[p * nd + i], name) < 0 ||
			    dmr_classic_snap_status(name, &st) < 0)
				continue; /* not active: nothing to learn */
			if (st.invalid || st.overflow)
				bad[p] = true;
			else if (st.total_sectors) {
				unsigned u = (unsigned)(st.used_sectors * 100 / st.total_sectors);

				if (u > pct[p])
					pct[p] = u;
			}
		}
	}

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	for (size_t k = 0; vm && k < np; k++) {
		struct dmr_point *pt = pids[k] ? dmr_vm_point_find(vm, pids[k]) : NULL;

		if (!pt)
			continue;
		if (bad[k] && pt->valid) {
			log_warning("VM %s: point %" PRIu64 " is invalid (its COW store overflowed or "
				    "failed): it is never offered for failover", vm->name, pt->id);
			pt->valid = false;
			changed = true;
		}
		pt->cow_pct = bad[k] ? 100 : pct[k];
		if (!bad[k] && pct[k] >= DMR_CLASSIC_COW_WARN_PCT && !pt->cow_warned) {
			log_warning("VM %s: point %" PRIu64 "'s COW store is %u%% full", vm->name, pt->id,
				    pct[k]);
			pt->cow_warned = true;
		}
	}
	if (vm && changed) {
		int r = dmr_reg_vm_save(reg, vm);

		if (r < 0)
			log_error("VM %s: cannot save state: %s", vm->name, strerror(-r));
	}
	pthread_mutex_unlock(&reg->lock);
}
