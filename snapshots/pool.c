/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/pool.h"

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/name.h"
#include "dm/table.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"

/* Messages to one pool must not interleave: a batch is
 * create/delete... + set_transaction_id, and the transaction id read before
 * it must still hold when it is sent. */
static pthread_mutex_t pool_msg_lock = PTHREAD_MUTEX_INITIALIZER;

void dmr_pool_spec_done(struct dmr_pool_spec *spec)
{
	if (!spec)
		return;
	free(spec->data_path);
	free(spec->meta_path);
	spec->data_path = spec->meta_path = NULL;
}

void dmr_pool_free(struct dmr_pool *pool)
{
	if (!pool)
		return;
	dmr_pool_spec_done(&pool->spec);
	free(pool);
}

static void pool_freep(struct dmr_pool **p)
{
	dmr_pool_free(*p);
}

static int spec_copy(const struct dmr_pool_spec *src, struct dmr_pool_spec *dst)
{
	*dst = *src;
	dst->data_path = strdup(src->data_path);
	dst->meta_path = strdup(src->meta_path);
	if (!dst->data_path || !dst->meta_path) {
		dmr_pool_spec_done(dst);
		return -ENOMEM;
	}
	if (!dst->block_sectors)
		dst->block_sectors = DMR_POOL_BLOCK_SECTORS;
	return 0;
}

uint64_t dmr_pool_default_meta_size(uint64_t data_size)
{
	uint64_t msize = data_size / 1000;

	if (msize < (8u << 20))
		msize = 8u << 20;
	if (msize > (16ull << 30))
		msize = 16ull << 30;
	return msize;
}

int dmr_pool_file_growth(const char *path, uint64_t new_size, uint64_t *ret_bytes,
			 uint64_t *ret_fs_dev)
{
	_cleanup_free_ char *dir = NULL;
	struct stat st;
	char *slash;

	assert(path && ret_bytes && ret_fs_dev);
	if (stat(path, &st) == 0) {
		uint64_t have = (uint64_t)st.st_blocks * 512;

		if (S_ISBLK(st.st_mode)) {
			*ret_bytes = 0;
			*ret_fs_dev = 0;
			return 0;
		}
		if (!S_ISREG(st.st_mode))
			return -EINVAL;
		*ret_bytes = (uint64_t)st.st_size > have ? (uint64_t)st.st_size - have : 0;
		*ret_fs_dev = (uint64_t)st.st_dev;
		return 0;
	}
	if (errno != ENOENT)
		return dmr_negerrno();
	/* A new file: it lands on its directory's filesystem. */
	if (!(dir = strdup(path)))
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash)
		return -EINVAL;
	slash[slash == dir ? 1 : 0] = '\0';
	if (stat(dir, &st) < 0)
		return dmr_negerrno();
	*ret_bytes = new_size;
	*ret_fs_dev = (uint64_t)st.st_dev;
	return 0;
}

/* Allocate every block of the file open as fd (size bytes): blocks already
 * there keep their data, holes become allocated (unwritten) extents. */
static int allocate(int fd, uint64_t size)
{
	if (size && fallocate(fd, 0, 0, (off_t)size) < 0)
		return errno == ENOTSUP ? -EOPNOTSUPP : dmr_negerrno();
	return 0;
}

/* Create a file of size bytes, allocated unless sparse; -EEXIST if it
 * exists. */
static int create_file(const char *path, uint64_t size, bool sparse)
{
	_cleanup_close_ int fd = -1;
	int r = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return dmr_negerrno();
	if (ftruncate(fd, (off_t)size) < 0)
		r = dmr_negerrno();
	if (r == 0 && !sparse)
		r = allocate(fd, size);
	if (r == 0 && fsync(fd) < 0)
		r = dmr_negerrno();
	if (r < 0)
		unlink(path);
	return r;
}

/* An existing backing file, allocated in full (not sparse). */
static int allocate_existing(const char *path)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (!S_ISREG(st.st_mode))
		return 0;
	r = allocate(fd, (uint64_t)st.st_size);
	if (r == 0 && fsync(fd) < 0)
		r = dmr_negerrno();
	return r;
}

/* Resolve one backing path to a block device: a block device is used as
 * is, a regular file is attached to (or found on) a loop device. */
static int backing_attach(const char *path, char *dev, size_t devlen, bool *ret_loop,
			  uint64_t *ret_sectors)
{
	_cleanup_free_ char *loop = NULL;
	bool is_block;
	uint64_t size;
	int r;

	r = dmr_probe_path_kind(path, &is_block, &size);
	if (r < 0)
		return r;
	if (is_block) {
		if ((size_t)snprintf(dev, devlen, "%s", path) >= devlen)
			return -ENAMETOOLONG;
		*ret_loop = false;
	} else {
		r = dmr_loop_find(path, &loop);
		if (r == -ENOENT)
			r = dmr_loop_attach(path, false, &loop);
		if (r < 0)
			return r;
		if ((size_t)snprintf(dev, devlen, "%s", loop) >= devlen)
			return -ENAMETOOLONG;
		*ret_loop = true;
	}
	*ret_sectors = size / 512;
	return 0;
}

static void backing_detach(const char *dev, bool is_loop)
{
	if (is_loop && dev[0])
		(void)dmr_loop_detach(dev);
}

static int pool_table(const struct dmr_pool *pool, struct dmr_table **ret)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	struct dmr_thin_pool_opts opts = {
		.block_sectors = pool->spec.block_sectors,
		/* Warn (dm event) when 1/16 of the blocks remain. */
		.low_water_blocks = pool->data_sectors / pool->spec.block_sectors / 16,
		/* Thin volumes of imported disks are written in full blocks;
		 * zeroing new blocks first would double first-write cost. */
		.skip_block_zeroing = false,
		/* A full pool must fail I/O, not queue it forever: a queued
		 * write would hang the guest and the agent's suspends. */
		.error_if_no_space = true,
	};
	uint64_t len;
	int r;

	if (!t)
		return -ENOMEM;
	len = pool->data_sectors - pool->data_sectors % pool->spec.block_sectors;
	if (len == 0)
		return -EINVAL;
	r = dmr_table_add_thin_pool(t, len, pool->meta_dev, pool->data_dev, &opts);
	if (r < 0)
		return r;
	*ret = DMR_TAKE_PTR(t);
	return 0;
}

static int pool_fill_devno(struct dmr_pool *pool)
{
	struct dmr_dm_info info;
	int r;

	r = dmr_dm_info(DMR_POOL_DM_NAME, &info);
	if (r < 0)
		return r;
	if (!info.exists)
		return -ENOENT;
	if (!dmr_name_uuid_is_ours(info.uuid))
		return -EPERM;
	pool->major = info.major;
	pool->minor = info.minor;
	return 0;
}

static int zero_header(const char *dev)
{
	_cleanup_free_ void *buf = NULL;
	_cleanup_close_ int fd = -1;

	/* The kernel formats a metadata device whose superblock is all
	 * zeroes; anything else it tries to open as an existing pool. */
	fd = open(dev, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	buf = calloc(1, 4096);
	if (!buf)
		return -ENOMEM;
	if (pwrite(fd, buf, 4096, 0) != 4096)
		return errno ? dmr_negerrno() : -EIO;
	if (fsync(fd) < 0)
		return dmr_negerrno();
	return 0;
}

/* A pool object with its own copy of spec, nothing attached. */
static int pool_new(const struct dmr_pool_spec *spec, struct dmr_pool **ret)
{
	_cleanup_(pool_freep) struct dmr_pool *pool = NULL;
	int r;

	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	r = spec_copy(spec, &pool->spec);
	if (r < 0)
		return r;
	*ret = DMR_TAKE_PTR(pool);
	return 0;
}

/* Attach the pool's data, then its metadata backing (a loop device for a
 * file).  If the metadata fails the data stays attached: backing_detach()
 * of both undoes whatever was attached. */
static int pool_attach(struct dmr_pool *pool)
{
	int r;

	r = backing_attach(pool->spec.data_path, pool->data_dev, sizeof(pool->data_dev),
			   &pool->data_is_loop, &pool->data_sectors);
	if (r < 0)
		return r;
	return backing_attach(pool->spec.meta_path, pool->meta_dev, sizeof(pool->meta_dev),
			      &pool->meta_is_loop, &pool->meta_sectors);
}

/* Is the metadata device's superblock all zeroes?  The kernel formats
 * such a device as a new, empty pool: on an existing pool's metadata
 * (wiped, or a device swapped for a blank one) that would drop every
 * volume and its data for good, so activation refuses it (-EUCLEAN).
 * Read with O_DIRECT: what the device holds, not a cached page. */
static int meta_blank(const char *dev)
{
	_cleanup_close_ int fd = -1;
	void *buf = NULL;
	ssize_t n;
	int r = 0;

	fd = open(dev, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	if (posix_memalign(&buf, 4096, 4096) != 0)
		return -ENOMEM;
	n = pread(fd, buf, 4096, 0);
	if (n < 0)
		r = dmr_negerrno();
	else if (n != 4096)
		r = -EIO;
	else {
		const unsigned char *b = buf;
		bool zero = true;

		for (size_t i = 0; zero && i < 4096; i++)
			zero = b[i] == 0;
		r = zero ? -EUCLEAN : 0;
	}
	free(buf);
	return r;
}

/* Make the pool's device over the attached backing. */
static int pool_load(struct dmr_pool *pool)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	int r;

	r = pool_table(pool, &t);
	if (r < 0)
		return r;
	return dmr_dm_create(DMR_POOL_DM_NAME, DMR_POOL_DM_UUID, t, 0);
}

/* The same for an existing pool: never over a blank superblock. */
static int pool_load_existing(struct dmr_pool *pool)
{
	int r = meta_blank(pool->meta_dev);

	return r < 0 ? r : pool_load(pool);
}

int dmr_pool_create(const struct dmr_pool_spec *spec, bool force,
		    struct dmr_pool **ret_pool, char **ret_what)
{
	_cleanup_(pool_freep) struct dmr_pool *pool = NULL;
	bool made_data = false, made_meta = false;
	struct dmr_dm_info info;
	int r;

	assert(spec && ret_pool);
	if (!spec->data_path || !spec->meta_path || spec->data_path[0] != '/' ||
	    spec->meta_path[0] != '/' || dmr_streq(spec->data_path, spec->meta_path))
		return -EINVAL;
	r = dmr_dm_info(DMR_POOL_DM_NAME, &info);
	if (r < 0)
		return r;
	if (info.exists)
		return -EBUSY;

	r = pool_new(spec, &pool);
	if (r < 0)
		return r;

	if (access(spec->data_path, F_OK) < 0) {
		if (!spec->data_size)
			return -EINVAL;
		r = create_file(spec->data_path, spec->data_size, spec->sparse);
		if (r < 0)
			return r;
		made_data = true;
	} else if ((r = dmr_probe_unused_blank(spec->data_path, force, ret_what)) < 0) {
		return r;
	}
	if (access(spec->meta_path, F_OK) < 0) {
		uint64_t msize = spec->meta_size ? spec->meta_size :
				 dmr_pool_default_meta_size(spec->data_size);

		r = create_file(spec->meta_path, msize, spec->sparse);
		if (r < 0)
			goto fail;
		made_meta = true;
	} else if ((r = dmr_probe_unused_blank(spec->meta_path, force, ret_what)) < 0) {
		goto fail;
	}
	/* Files given that exist: their holes are allocated too. */
	if (!spec->sparse &&
	    ((!made_data && (r = allocate_existing(spec->data_path)) < 0) ||
	     (!made_meta && (r = allocate_existing(spec->meta_path)) < 0)))
		goto fail;

	r = pool_attach(pool);
	if (r < 0)
		goto fail_meta;
	if (pool->meta_sectors < 4096) { /* 2 MiB: the kernel's minimum is less,
					    but a pool that small is useless */
		r = -EINVAL;
		goto fail_meta;
	}
	r = zero_header(pool->meta_dev);
	if (r < 0)
		goto fail_meta;
	r = pool_load(pool);
	if (r < 0)
		goto fail_meta;
	r = pool_fill_devno(pool);
	if (r < 0) {
		(void)dmr_dm_remove(DMR_POOL_DM_NAME, 10);
		goto fail_meta;
	}
	*ret_pool = DMR_TAKE_PTR(pool);
	return 0;

fail_meta:
	backing_detach(pool->meta_dev, pool->meta_is_loop);
	backing_detach(pool->data_dev, pool->data_is_loop);
fail:
	if (made_meta)
		unlink(spec->meta_path);
	if (made_data)
		unlink(spec->data_path);
	return r;
}

int dmr_pool_activate(const struct dmr_pool_spec *spec, struct dmr_pool **ret_pool)
{
	_cleanup_(pool_freep) struct dmr_pool *pool = NULL;
	struct dmr_dm_info info;
	int r;

	assert(spec && ret_pool);
	r = pool_new(spec, &pool);
	if (r < 0)
		return r;
	r = pool_attach(pool);
	if (r < 0)
		return r;
	r = dmr_dm_info(DMR_POOL_DM_NAME, &info);
	if (r < 0)
		return r;
	if (!info.exists && (r = pool_load_existing(pool)) < 0)
		return r;
	r = pool_fill_devno(pool);
	if (r < 0)
		return r;
	*ret_pool = DMR_TAKE_PTR(pool);
	return 0;
}

int dmr_pool_deactivate(const struct dmr_pool *pool)
{
	struct dmr_dm_info info;
	int r;

	assert(pool);
	r = dmr_dm_info(DMR_POOL_DM_NAME, &info);
	if (r < 0 || !info.exists)
		return r;
	if (!dmr_name_uuid_is_ours(info.uuid))
		return -EPERM;
	return dmr_dm_remove(DMR_POOL_DM_NAME, 5);
}

int dmr_pool_meta_refresh(struct dmr_pool *pool, uint64_t *ret_bytes)
{
	uint64_t size;
	bool is_block;
	int r;

	assert(pool);
	if (pool->meta_is_loop && (r = dmr_loop_set_capacity(pool->meta_dev)) < 0)
		return r;
	r = dmr_probe_path_kind(pool->meta_dev, &is_block, &size);
	if (r < 0)
		return r;
	if (!is_block)
		return -ENOTBLK;
	pool->meta_sectors = size / 512;
	if (ret_bytes)
		*ret_bytes = size;
	return 0;
}

int dmr_pool_reactivate(struct dmr_pool *pool)
{
	struct dmr_dm_info info;
	int r;

	assert(pool);
	r = dmr_dm_info(DMR_POOL_DM_NAME, &info);
	if (r < 0)
		return r;
	if (!info.exists && (r = pool_load_existing(pool)) < 0)
		return r;
	return pool_fill_devno(pool);
}

int dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret)
{
	_cleanup_free_ char *params = NULL;
	int r;

	r = dmr_dm_target_status(DMR_POOL_DM_NAME, "thin-pool", &params);
	return r < 0 ? r : dmr_status_parse_thin_pool(params, ret);
}

void dmr_pool_devno(const struct dmr_pool *pool, char buf[32])
{
	snprintf(buf, 32, "%u:%u", pool->major, pool->minor);
}

uint64_t dmr_pool_block_bytes(const struct dmr_pool *pool)
{
	return (uint64_t)pool->spec.block_sectors * 512u;
}

int dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	pthread_mutex_lock(&pool_msg_lock);
	r = dmr_dm_message(DMR_POOL_DM_NAME, 0, msg, NULL);
	pthread_mutex_unlock(&pool_msg_lock);
	log_debug("pool message '%s': %d", msg, r);
	return r;
}

int dmr_pool_set_transaction(const struct dmr_pool *pool, uint64_t old_id, uint64_t new_id)
{
	return dmr_pool_message(pool, "set_transaction_id %llu %llu",
				(unsigned long long)old_id, (unsigned long long)new_id);
}

int dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id)
{
	int r = dmr_pool_message(pool, "delete %u", id);

	/* The kernel answers ENODATA for an id it does not have: deleting
	 * again after a crash is not an error. */
	if (r == -ENODATA || r == -ENOENT)
		return 0;
	return r;
}

int dmr_pool_free_bytes(const struct dmr_pool *pool, uint64_t *ret_bytes)
{
	struct dmr_thin_pool_status st;
	int r;

	assert(pool && ret_bytes);
	r = dmr_pool_status(pool, &st);
	if (r < 0)
		return r;
	if (st.fail)
		return -EIO;
	*ret_bytes = (st.total_data_blocks - st.used_data_blocks) * dmr_pool_block_bytes(pool);
	return 0;
}
