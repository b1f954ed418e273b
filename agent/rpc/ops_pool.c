/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreatePool, GetPoolStatus and the helpers every storage handler shares. */
#include <inttypes.h>
#include <sys/statvfs.h>

#include "agent/backend/backend.h"
#include "agent/backend/classic.h"
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/name.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"

int dmr_ops_need_pool(struct dmr_call *c, struct dmr_pool **ret_pool)
{
	struct dmr_registry *reg = c->agent->reg;

	if (!reg->have_pool)
		return dmr_call_fail(c, DMR_RC_INVALID_STATE,
				     "no pool: create one with 'dmrep pool create'");
	if (!reg->pool && reg->pool_down_reason)
		return dmr_call_fail(c, DMR_RC_UNAVAILABLE, "the pool was left down: %s",
				     reg->pool_down_reason);
	if (!reg->pool)
		return dmr_call_fail(c, DMR_RC_UNAVAILABLE,
				     "the pool could not be activated; see the agent's log");
	*ret_pool = reg->pool;
	return 0;
}

int dmr_ops_need_storage(struct dmr_call *c, const char *vm_name)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_pool *pool;
	bool classic;
	struct dmr_vm *vm;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	classic = dmr_vm_is_classic(vm);
	pthread_mutex_unlock(&reg->lock);
	if (!vm || classic)
		return 0;
	return dmr_ops_need_pool(c, &pool);
}

int dmr_ops_need_up(struct dmr_call *c, const char *vm_name)
{
	struct dmr_registry *reg = c->agent->reg;
	_cleanup_free_ char *why = NULL;
	struct dmr_vm *vm;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	if (vm && vm->down_reason)
		why = strdup(vm->down_reason);
	pthread_mutex_unlock(&reg->lock);
	if (!why)
		return 0;
	return dmr_call_fail(c, DMR_RC_UNAVAILABLE, "VM %s is down: %s", vm_name, why);
}

int dmr_ops_vm_name(struct dmr_call *c, const char *key, const char **ret_name)
{
	const char *name;
	int rc;

	rc = dmr_param_string(c, key, true, &name);
	if (rc)
		return rc;
	if (dmr_name_obj_valid(name, DMR_OBJ_NAME_MAX) < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "invalid VM name: use 1-%d of [A-Za-z0-9+_.-], not starting with '-'",
				     DMR_OBJ_NAME_MAX);
	*ret_name = name;
	return 0;
}

int dmr_ops_vm_acquire(struct dmr_call *c, const char *name)
{
	struct dmr_registry *reg = c->agent->reg;
	char dm[DMR_DM_NAME_SIZE];
	struct dmr_vm *vm;
	int r;

	if (dmr_vm_busy_acquire(c->agent, name) < 0)
		return dmr_call_fail(c, DMR_RC_IN_USE, "another operation holds VM %s", name);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	pthread_mutex_unlock(&reg->lock);
	if (!vm) {
		dmr_vm_busy_release(c->agent, name);
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no VM named %s", name);
	}
	/* The busy lock keeps vm: its devices are checked without reg->lock. */
	r = dmr_vm_dm_check(vm, dm);
	if (r < 0) {
		dmr_vm_busy_release(c->agent, name);
		if (r == -EEXIST)
			return dmr_call_fail(c, DMR_RC_IN_USE,
					     "%s is not VM %s's device (another UUID): left alone", dm,
					     name);
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot check VM %s's devices: %s",
				     name, strerror(-r));
	}
	return 0;
}

static int size_param(struct dmr_call *c, const char *key, uint64_t *ret)
{
	int rc = dmr_param_u64_range(c, key, false, 0, DMR_SIZE_MAX, ret);

	if (rc)
		return rc;
	if (*ret % 512)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "%s must be a multiple of 512", key);
	return 0;
}

#define MIB(b) ((b) >> 20)

/*
 * Can the filesystems under the pool's files hold them full?  Files on the
 * same filesystem add up.  Unless sparse: then refused with 32778 and the
 * numbers.  With sparse, *ret_warning (malloc()ed, or NULL when nothing
 * is overcommitted) says what happens when it fills.
 */
static int pool_room(struct dmr_call *c, const struct dmr_pool_spec *spec, char **ret_warning)
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
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "cannot look at the pool's paths: %s",
				     strerror(-r));
	for (size_t k = 0; k < 2; k++) {
		_cleanup_free_ char *dir = NULL;
		char *slash;

		if (!fs[k] || (k == 1 && fs[1] == fs[0]))
			continue; /* a block device, or counted with the data */
		need = grow[k] + (k == 0 && fs[1] == fs[0] ? grow[1] : 0);
		dir = strdup(path[k]);
		if (!dir)
			return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		/* A file still to be made: its directory's filesystem. */
		slash = strrchr(dir, '/');
		if (access(path[k], F_OK) < 0 && slash)
			slash[slash == dir] = '\0';
		if (statvfs(dir, &sv) < 0)
			return dmr_call_fail(c, dmr_rc_from_errno(-errno), "cannot read free space of %s: %s",
					     dir, strerror(errno));
		avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		if (need <= avail)
			continue;
		if (!spec->sparse)
			return dmr_call_fail(c, DMR_RC_NO_SPACE,
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

int dmr_h_create_pool(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_pool_spec spec = { .block_sectors = DMR_POOL_BLOCK_SECTORS };
	_cleanup_free_ char *what = NULL, *warning = NULL;
	struct dmr_pool *pool = NULL;
	const char *data, *meta;
	bool force = false;
	int rc, r;

	if ((rc = dmr_param_string(c, "data", true, &data)) ||
	    (rc = dmr_param_string(c, "meta", true, &meta)) ||
	    (rc = size_param(c, "data_size", &spec.data_size)) ||
	    (rc = size_param(c, "meta_size", &spec.meta_size)) ||
	    (rc = dmr_param_bool(c, "force", false, &force)) ||
	    (rc = dmr_param_bool(c, "sparse", false, &spec.sparse)))
		return rc;
	if (data[0] != '/' || meta[0] != '/')
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "data and meta must be absolute paths");
	if (dmr_streq(data, meta))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "data and meta must differ");
	if (reg->have_pool)
		return dmr_call_fail(c, DMR_RC_INVALID_STATE, "a pool exists already (%s)",
				     reg->pool_spec.data_path);
	if (access(data, F_OK) < 0 && spec.data_size < (64u << 20))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "%s does not exist: give --data-size of at least 64M", data);
	spec.data_path = (char *)data;
	spec.meta_path = (char *)meta;
	if ((rc = pool_room(c, &spec, &warning)))
		return rc;
	r = dmr_pool_create(&spec, force, &pool, &what);
	if (r == -EEXIST && what)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "refusing to overwrite: found %s; use --force to override", what);
	if (r == -EBUSY)
		return dmr_call_fail(c, DMR_RC_IN_USE, "the data or metadata device is in use");
	if (r == -EOPNOTSUPP)
		return dmr_call_fail(c, DMR_RC_NOT_SUPPORTED, "the filesystem cannot preallocate the "
				     "pool's files (fallocate): give --sparse to use sparse files");
	if (r == -ENOSPC)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "no room for the pool's files: %s",
				     strerror(-r));
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot create the pool: %s",
				     strerror(-r));

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
		return dmr_call_fail(c, dmr_rc_from_errno(r), "pool made but its state not saved: %s",
				     strerror(-r));
	if (warning) {
		log_warning("%s", warning);
		json_object_object_add(c->reply, "warning", json_object_new_string(warning));
	}
	return DMR_RC_OK;
}

int dmr_h_get_pool_status(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_thin_pool_status st;
	struct dmr_pool *pool = NULL;
	struct json_object *o;
	uint64_t bb;
	const char *mode;
	int rc, r;

	if ((rc = dmr_ops_need_pool(c, &pool)))
		return rc;
	r = dmr_pool_status(pool, &st);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot read pool status: %s",
				     strerror(-r));
	bb = dmr_pool_block_bytes(pool);
	mode = st.fail ? "fail" : st.out_of_data_space ? "out_of_data_space" :
	       st.read_only ? "ro" : "rw";
	o = json_object_new_object();
	if (!o)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
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
	json_object_object_add(c->reply, "pool", o);
	return DMR_RC_OK;
}
