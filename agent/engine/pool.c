/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreatePool's and GetPoolStatus's work (agent/engine/pool.h). */
#include "agent/engine/pool.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/statvfs.h>

#include "common/log.h"
#include "common/util.h"
#include "snapshots/ident.h"

#define MIB(b) ((b) >> 20)

/*
 * Can the filesystems under the pool's files hold them full?  Files on the
 * same filesystem add up.  Unless sparse: then refused (-ENOSPC) with the
 * numbers.  With sparse, *ret_warning (malloc()ed, or NULL when nothing
 * is overcommitted) says what happens when it fills.
 */
static int pool_room(const struct dmr_pool_spec *spec, char **ret_warning, char **ret_why)
{
	uint64_t meta_new = spec->meta_size ? spec->meta_size :
			    dmr_pool_default_meta_size(spec->data_size);
	uint64_t grow[2], fs[2], need, avail;
	const char *path[2] = { spec->data_path, spec->meta_path };
	struct statvfs sv;
	int r;

	*ret_warning = NULL;
	if ((r = dmr_pool_file_growth(path[0], spec->data_size, &grow[0], &fs[0])) < 0 ||
	    (r = dmr_pool_file_growth(path[1], meta_new, &grow[1], &fs[1])) < 0)
		return dmr_why_set(ret_why, -EINVAL, "cannot look at the pool's paths: %s",
				   strerror(-r));
	for (size_t k = 0; k < 2; k++) {
		_cleanup_free_ char *dir = NULL;
		char *slash;

		if (!fs[k] || (k == 1 && fs[1] == fs[0]))
			continue; /* a block device, or counted with the data */
		need = grow[k] + (k == 0 && fs[1] == fs[0] ? grow[1] : 0);
		dir = strdup(path[k]);
		if (!dir)
			return dmr_why_set(ret_why, -ENOMEM, "out of memory");
		/* A file still to be made: its directory's filesystem. */
		slash = strrchr(dir, '/');
		if (access(path[k], F_OK) < 0 && slash)
			slash[slash == dir] = '\0';
		if (statvfs(dir, &sv) < 0)
			return dmr_why_set(ret_why, -errno, "cannot read free space of %s: %s", dir,
					   strerror(errno));
		avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		if (need <= avail)
			continue;
		if (!spec->sparse)
			return dmr_why_set(ret_why, -ENOSPC,
					   "the filesystem of %s has %" PRIu64 " MiB free, the pool's "
					   "files need %" PRIu64 " MiB more: give smaller sizes, or "
					   "--sparse to overcommit it", path[k], MIB(avail), MIB(need));
		if (asprintf(ret_warning, "sparse pool: the filesystem of %s has %" PRIu64 " MiB "
			     "free, the pool's files may grow by %" PRIu64 " MiB; if it fills, writes "
			     "to new blocks fail, the pool turns read-only (needs_check) and no point "
			     "can be made", path[k], MIB(avail), MIB(need)) < 0)
			*ret_warning = NULL;
	}
	return 0;
}

int dmr_pool_make(struct dmr_registry *reg, struct dmr_pool_spec *spec, bool force,
		  char **ret_warning, char **ret_why)
{
	_cleanup_free_ char *what = NULL, *warning = NULL;
	const char *data = spec->data_path, *meta = spec->meta_path;
	struct dmr_pool *pool = NULL;
	int r;

	assert(reg);
	assert(spec);
	assert(ret_warning);
	assert(ret_why);
	if ((r = pool_room(spec, &warning, ret_why)) < 0)
		return r;
	r = dmr_pool_create(spec, force, &pool, &what);
	if (r == -EEXIST && what)
		return dmr_why_set(ret_why, -EINVAL,
				   "refusing to overwrite: found %s; use --force to override", what);
	if (r == -EBUSY)
		return dmr_why_set(ret_why, r, "the data or metadata device is in use");
	if (r == -EOPNOTSUPP)
		return dmr_why_set(ret_why, r, "the filesystem cannot preallocate the "
				   "pool's files (fallocate): give --sparse to use sparse files");
	if (r == -ENOSPC)
		return dmr_why_set(ret_why, r, "no room for the pool's files: %s", strerror(-r));
	if (r < 0)
		return dmr_why_set(ret_why, r, "cannot create the pool: %s", strerror(-r));

	/* What the paths are now, checked before every later activation:
	 * after a reboot /dev/loopN or /dev/sdX may be another device. */
	for (size_t k = 0; k < 2; k++) {
		struct dmr_ident *id = calloc(1, sizeof(*id));

		if (id && dmr_ident_read(k ? meta : data, id) == 0) {
			dmr_ident_free(reg->pool_ident[k]);
			reg->pool_ident[k] = id;
		} else {
			free(id);
		}
	}
	pthread_mutex_lock(&reg->lock);
	reg->pool_spec.data_path = strdup(data);
	reg->pool_spec.meta_path = strdup(meta);
	reg->pool_spec.block_sectors = pool->spec.block_sectors;
	reg->pool = pool;
	reg->have_pool = true;
	reg->tid = 0;
	reg->next_vol_id = 1;
	r = reg->pool_spec.data_path && reg->pool_spec.meta_path ? dmr_reg_pool_save(reg) : -ENOMEM;
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return dmr_why_set(ret_why, r,
				   "pool made but its state not saved: %s", strerror(-r));
	*ret_warning = DMR_TAKE_PTR(warning);
	return 0;
}

int dmr_pool_status_json(struct dmr_registry *reg, struct json_object **ret, char **ret_why)
{
	struct dmr_pool *pool = reg->pool;
	struct dmr_thin_pool_status st;
	struct json_object *o;
	uint64_t bb;
	const char *mode;
	int r;

	assert(ret);
	assert(ret_why);
	r = dmr_pool_status(pool, &st);
	if (r < 0)
		return dmr_why_set(ret_why, r, "cannot read pool status: %s", strerror(-r));
	bb = dmr_pool_block_bytes(pool);
	mode = st.fail ? "fail" : st.out_of_data_space ? "out_of_data_space" :
	       st.read_only ? "ro" : "rw";
	o = json_object_new_object();
	if (!o)
		return dmr_why_set(ret_why, -ENOMEM, "out of memory");
	pthread_mutex_lock(&reg->lock);
	json_object_object_add(o, "data_path", json_object_new_string(reg->pool_spec.data_path));
	json_object_object_add(o, "meta_path", json_object_new_string(reg->pool_spec.meta_path));
	json_object_object_add(o, "transaction_id", json_object_new_int64((int64_t)st.transaction_id));
	json_object_object_add(o, "catalog_transaction_id", json_object_new_int64((int64_t)reg->tid));
	pthread_mutex_unlock(&reg->lock);
	json_object_object_add(o, "device", json_object_new_string("/dev/mapper/" DMR_POOL_DM_NAME));
	json_object_object_add(o, "block_size_bytes", json_object_new_int64((int64_t)bb));
	json_object_object_add(o, "data_used_blocks", json_object_new_int64((int64_t)st.used_data_blocks));
	json_object_object_add(o, "data_total_blocks", json_object_new_int64((int64_t)st.total_data_blocks));
	json_object_object_add(o, "data_used_bytes", json_object_new_int64((int64_t)(st.used_data_blocks * bb)));
	json_object_object_add(o, "data_size_bytes", json_object_new_int64((int64_t)(st.total_data_blocks * bb)));
	json_object_object_add(o, "meta_used_blocks", json_object_new_int64((int64_t)st.used_meta_blocks));
	json_object_object_add(o, "meta_total_blocks", json_object_new_int64((int64_t)st.total_meta_blocks));
	json_object_object_add(o, "mode", json_object_new_string(mode));
	json_object_object_add(o, "needs_check", json_object_new_boolean(st.needs_check));
	json_object_object_add(o, "no_space_policy",
			       json_object_new_string(st.no_space == DMR_NO_SPACE_ERROR ? "error" : "queue"));
	*ret = o;
	return 0;
}
