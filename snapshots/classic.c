/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/classic.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "dm/batch.h"
#include "dm/dm.h"
#include "snapshots/loop.h"

int dmr_cow_create(const char *file, uint64_t bytes, char **ret_dev)
{
	int fd, r = 0;

	assert(file && ret_dev);
	if (bytes == 0 || bytes % 4096)
		return -EINVAL;
	/* O_TRUNC: a file by this name is a leftover the catalog no longer
	 * names; zeroing it makes it a new store.  Its old loop, if any,
	 * would keep stale data cached: refuse instead of stacking. */
	if (dmr_loop_file_is_attached(file) > 0)
		return -EBUSY;
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return dmr_negerrno();
	if (ftruncate(fd, (off_t)bytes) < 0 || fsync(fd) < 0)
		r = dmr_negerrno();
	close(fd);
	if (r == 0)
		r = dmr_loop_attach(file, false, ret_dev);
	if (r < 0) {
		log_debug_errno(r, "COW store %s: %m", file);
		(void)unlink(file);
	}
	return r;
}

int dmr_cow_link_device(const char *file, const char *device, char **ret_dev)
{
	assert(file && device && ret_dev);
	/* O_DIRECT: the buffer is aligned like the device wants it. */
	static const char zero[4096] __attribute__((aligned(4096)));
	char *dev;
	int fd, r = 0;

	fd = open(device, O_WRONLY | O_CLOEXEC | O_EXCL | O_DIRECT);
	if (fd < 0)
		return dmr_negerrno();
	for (off_t off = 0; r == 0 && off < 65536; off += (off_t)sizeof(zero)) {
		ssize_t k = pwrite(fd, zero, sizeof(zero), off);

		if (k != (ssize_t)sizeof(zero))
			r = k < 0 ? dmr_negerrno() : -EIO;
	}
	if (r == 0 && fsync(fd) < 0)
		r = dmr_negerrno();
	close(fd);
	if (r < 0)
		return r;
	(void)unlink(file); /* a leftover the catalog no longer names */
	if (symlink(device, file) < 0)
		return dmr_negerrno();
	dev = strdup(device);
	if (!dev) {
		(void)unlink(file);
		return -ENOMEM;
	}
	*ret_dev = dev;
	return 0;
}

/* Is file a store symlink?  Then ret_target gets where it points. */
static bool store_link(const char *file, char **ret_target)
{
	char buf[PATH_MAX];
	struct stat st;
	ssize_t k;

	if (lstat(file, &st) < 0 || !S_ISLNK(st.st_mode))
		return false;
	k = readlink(file, buf, sizeof(buf) - 1);
	if (k <= 0)
		return false;
	buf[k] = '\0';
	*ret_target = strdup(buf);
	return *ret_target != NULL;
}

int dmr_cow_attach(const char *file, char **ret_dev)
{
	char *target = NULL;
	struct stat st;
	int r;

	assert(file && ret_dev);
	if (store_link(file, &target)) {
		if (stat(target, &st) < 0 || !S_ISBLK(st.st_mode)) {
			r = stat(target, &st) < 0 ? dmr_negerrno() : -ENOTBLK;
			free(target);
			return r;
		}
		*ret_dev = target;
		return 0;
	}
	r = dmr_loop_find(file, ret_dev);

	if (r == -ENOENT)
		r = dmr_loop_attach(file, false, ret_dev);
	return r;
}

int dmr_cow_destroy(const char *file)
{
	char *target = NULL;

	if (store_link(file, &target)) {
		free(target);
		return unlink(file) < 0 && errno != ENOENT ? dmr_negerrno() : 0;
	}
	for (int tries = 0; tries < 8; tries++) {
		_cleanup_free_ char *dev = NULL;
		int r = dmr_loop_find(file, &dev);

		if (r == -ENOENT)
			break;
		if (r < 0)
			return r;
		r = dmr_loop_detach(dev);
		if (r < 0)
			return r;
	}
	if (unlink(file) < 0 && errno != ENOENT)
		return dmr_negerrno();
	return 0;
}

int dmr_cow_unallocated(const char *file, uint64_t *ret_bytes)
{
	struct stat st;
	uint64_t used;

	assert(file && ret_bytes);
	/* A device store takes nothing from the state directory. */
	if (lstat(file, &st) < 0)
		return dmr_negerrno();
	if (S_ISLNK(st.st_mode)) {
		*ret_bytes = 0;
		return 0;
	}
	used = (uint64_t)st.st_blocks * 512;
	*ret_bytes = (uint64_t)st.st_size > used ? (uint64_t)st.st_size - used : 0;
	return 0;
}

static int one_target(uint64_t sectors, struct dmr_table **ret,
		      int (*add)(struct dmr_table *, uint64_t, const char *, const char *),
		      const char *a, const char *b)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	int r;

	if (!t)
		return -ENOMEM;
	r = add(t, sectors, a, b);
	if (r < 0)
		return r;
	*ret = DMR_TAKE_PTR(t);
	return 0;
}

static int add_origin(struct dmr_table *t, uint64_t len, const char *a, const char *b)
{
	(void)b;
	return dmr_table_add_snapshot_origin(t, len, a);
}

static int add_snap(struct dmr_table *t, uint64_t len, const char *a, const char *b)
{
	return dmr_table_add_snapshot(t, len, a, b, true, DMR_CLASSIC_CHUNK_SECTORS);
}

static int add_view(struct dmr_table *t, uint64_t len, const char *a, const char *b)
{
	(void)b;
	return dmr_table_add_linear(t, len, a, 0);
}

int dmr_classic_origin_table(const char *origin_dev, uint64_t sectors, struct dmr_table **ret_table)
{
	return one_target(sectors, ret_table, add_origin, origin_dev, NULL);
}

int dmr_classic_snap_table(const char *origin_dev, const char *cow_dev, uint64_t sectors,
			   struct dmr_table **ret_table)
{
	return one_target(sectors, ret_table, add_snap, origin_dev, cow_dev);
}

int dmr_classic_view_table(const char *view_dev, uint64_t sectors, struct dmr_table **ret_table)
{
	return one_target(sectors, ret_table, add_view, view_dev, NULL);
}

bool dmr_classic_table_is_origin(const struct dmr_table *t)
{
	return t && t->count == 1 && dmr_streq(t->targets[0].type, "snapshot-origin");
}

bool dmr_classic_table_is_view_of(const struct dmr_table *t, uint32_t maj, uint32_t min)
{
	uint32_t a, b;

	/* `linear MAJ:MIN 0`, as the kernel prints it (dm/table.h). */
	return dmr_table_linear_dev(t, &a, &b) == 0 && a == maj && b == min;
}

/* A batch (dm/batch.h) over the distinct, existing, not yet suspended
 * devices of stable[]; *ret NULL if there is none.  Made before anything
 * is suspended: threads and descriptors are not part of the stall. */
static int origins_batch(size_t n, const char *const *stable, struct dmr_dm_batch **ret)
{
	_cleanup_free_ const char **pick = calloc(n ? n : 1, sizeof(*pick));
	size_t k = 0;

	if (!pick)
		return -ENOMEM;
	for (size_t i = 0; stable && i < n; i++) {
		struct dmr_dm_info info;
		bool dup = false;
		int r;

		if (!stable[i])
			continue;
		for (size_t j = 0; j < k; j++)
			dup = dup || dmr_streq(pick[j], stable[i]);
		if (dup)
			continue;
		r = dmr_dm_info(stable[i], &info);
		if (r < 0)
			return r;
		if (!info.exists || info.suspended)
			continue;
		pick[k++] = stable[i];
	}
	*ret = NULL;
	return k ? dmr_dm_batch_new(k, pick, ret) : 0;
}

/* Resume what b suspended (twice where the first fails), free it; the
 * first error of r and the resume's. */
static int origins_resume(struct dmr_dm_batch *b, int r)
{
	int q;

	if (!b)
		return r;
	q = dmr_dm_batch_resume_all(b);
	dmr_dm_batch_free(b);
	return r < 0 ? r : q;
}

int dmr_classic_snapshot_group(size_t n, const char *const *stable, const char *const *names,
			       const char *const *uuids, struct dmr_table *const *tables,
			       unsigned suspend_flags, uint64_t *ret_suspend_usec)
{
	_cleanup_free_ const char **np = calloc(n ? n : 1, sizeof(*np));
	_cleanup_free_ const char **up = calloc(n ? n : 1, sizeof(*up));
	_cleanup_free_ const struct dmr_table **tp = calloc(n ? n : 1, sizeof(*tp));
	struct dmr_dm_batch *b = NULL;
	size_t k = 0;
	uint64_t t0 = 0, t1 = 0;
	int r;

	if (!np || !up || !tp)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!names[i])
			continue;
		np[k] = names[i];
		up[k] = uuids[i];
		tp[k++] = tables[i];
	}
	r = origins_batch(n, stable, &b);
	if (r < 0)
		return r;
	/* The origins in parallel (lockfs and flush unless the caller
	 * says): one instant for every disk, and a stall that does not grow
	 * with their number. */
	t0 = dmr_now_usec();
	if (b)
		r = dmr_dm_batch_suspend_all(b, suspend_flags);
	/* One udev wait for every snapshot, not one each.  On a failure the
	 * group removes the made ones while their origins are still quiet. */
	if (r == 0 && k > 0) {
		r = dmr_dm_create_group(k, np, up, tp, DMR_DM_READONLY);
		if (r < 0)
			log_debug_errno(r, "snapshot group of %zu: %m", k);
	}
	r = origins_resume(b, r);
	t1 = dmr_now_usec();
	/* On failure too: the origins stalled all the same. */
	if (ret_suspend_usec)
		*ret_suspend_usec = b ? t1 - t0 : 0;
	return r;
}

/* Point removal keeps the one-by-one libdevmapper path: nothing measures
 * its stall, and recovery's tests drive it over a fake dm_* layer. */
static void resume_all(size_t n, const char *const *stable, const bool *suspended)
{
	for (size_t i = 0; i < n; i++)
		if (suspended[i] && dmr_dm_resume(stable[i]) < 0)
			(void)dmr_dm_resume(stable[i]);
}

/* Suspend the distinct, existing, not yet suspended devices of stable[]. */
static int suspend_all(size_t n, const char *const *stable, unsigned flags, bool *suspended)
{
	for (size_t i = 0; i < n; i++) {
		struct dmr_dm_info info;
		bool dup = false;
		int r;

		if (!stable[i])
			continue;
		for (size_t k = 0; k < i; k++)
			dup = dup || (stable[k] && dmr_streq(stable[k], stable[i]));
		if (dup)
			continue;
		r = dmr_dm_info(stable[i], &info);
		if (r < 0)
			return r;
		if (!info.exists || info.suspended)
			continue;
		r = dmr_dm_suspend(stable[i], flags);
		if (r < 0)
			return r;
		suspended[i] = true;
	}
	return 0;
}

int dmr_classic_snap_remove(size_t ns, const char *const *stable, size_t n,
			    const char *const *names)
{
	_cleanup_free_ bool *suspended = calloc(ns ? ns : 1, sizeof(bool));
	bool any = false;
	int r = 0;

	if (!suspended)
		return -ENOMEM;
	for (size_t i = 0; i < n && !any; i++) {
		struct dmr_dm_info info;

		any = names[i] && dmr_dm_info(names[i], &info) == 0 && info.exists;
	}
	if (!any)
		return 0;
	r = suspend_all(ns, stable, 0, suspended);
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct dmr_dm_info info;
		int q;

		if (!names[i] || dmr_dm_info(names[i], &info) < 0 || !info.exists)
			continue;
		if (dmr_dm_owned(names[i]) < 0)
			continue;
		q = dmr_dm_remove(names[i], 20);
		if (q < 0) {
			log_debug_errno(q, "remove %s: %m", names[i]);
			r = q;
		}
	}
	resume_all(ns, stable, suspended);
	return r;
}

int dmr_classic_snap_status(const char *name, struct dmr_snapshot_status *ret)
{
	_cleanup_free_ char *params = NULL;
	int r;

	r = dmr_dm_target_status(name, "snapshot", &params);
	return r < 0 ? r : dmr_status_parse_snapshot(params, ret);
}

bool dmr_classic_table_is_origin_of(const struct dmr_table *t, uint32_t maj, uint32_t min)
{
	uint32_t a, b;
	const char *end;

	/* The kernel prints the origin as MAJ:MIN, and nothing after it. */
	if (!dmr_classic_table_is_origin(t) || t->targets[0].start != 0 || !t->targets[0].params ||
	    dmr_table_parse_devno(t->targets[0].params, &a, &b, &end) < 0 || *end != '\0')
		return false;
	return a == maj && b == min;
}
