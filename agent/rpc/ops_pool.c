/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreatePool, GetPoolStatus (their work is agent/engine/pool.c's) and the
 * helpers every storage handler shares. */
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "agent/engine/vm.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/name.h"

/* The pool recorded and active, whatever its health (RepairPool looks at
 * a failed pool); one that is down answers 32775 with why and what to do. */
static int need_pool_active(struct dmr_call *c, struct dmr_pool **ret_pool)
{
	struct dmr_registry *reg = c->agent->reg;

	if (!reg->have_pool)
		return dmr_call_fail(c, DMR_RC_INVALID_STATE,
				     "no pool: create one with 'dmrep pool create'");
	if (!reg->pool) {
		_cleanup_free_ char *why = NULL;
		int r = dmr_pool_down_why(reg, &why);

		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	}
	*ret_pool = reg->pool;
	return 0;
}

static int need_pool(struct dmr_call *c, bool to_free, struct dmr_pool **ret_pool)
{
	_cleanup_free_ char *why = NULL;
	struct dmr_pool *pool;
	int rc, r;

	if ((rc = need_pool_active(c, &pool)))
		return rc;
	/* A failed, read-only or full pool refuses here, for every method
	 * that needs it, with what to do (not a dm errno further down). */
	r = dmr_pool_usable(c->agent->reg, to_free, &why);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	*ret_pool = pool;
	return 0;
}

int dmr_ops_need_pool(struct dmr_call *c, struct dmr_pool **ret_pool)
{
	return need_pool(c, false, ret_pool);
}

static int need_storage(struct dmr_call *c, const char *vm_name, bool to_free)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_pool *pool;
	bool needs;

	pthread_mutex_lock(&reg->lock);
	needs = dmr_vm_needs_pool(dmr_reg_vm_find(reg, vm_name));
	pthread_mutex_unlock(&reg->lock);
	if (!needs)
		return 0;
	return need_pool(c, to_free, &pool);
}

int dmr_ops_need_storage(struct dmr_call *c, const char *vm_name)
{
	return need_storage(c, vm_name, false);
}

int dmr_ops_need_storage_to_free(struct dmr_call *c, const char *vm_name)
{
	return need_storage(c, vm_name, true);
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

int dmr_h_create_pool(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_pool_spec spec = { .block_sectors = DMR_POOL_BLOCK_SECTORS };
	_cleanup_free_ char *why = NULL, *warning = NULL;
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
	r = dmr_pool_make(reg, &spec, force, &warning, &why);
	if (r < 0)
		return why ? dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why) :
			     dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	if (warning) {
		log_warning("%s", warning);
		json_object_object_add(c->reply, "warning", json_object_new_string(warning));
	}
	return DMR_RC_OK;
}

int dmr_h_get_pool_status(struct dmr_call *c)
{
	_cleanup_free_ char *why = NULL;
	struct json_object *o;
	int r;

	/* Recorded, up or down: a pool that is down is answered with why. */
	if (!c->agent->reg->have_pool)
		return dmr_call_fail(c, DMR_RC_INVALID_STATE,
				     "no pool: create one with 'dmrep pool create'");
	r = dmr_pool_status_json(c->agent->reg, &o, &why);
	if (r < 0)
		return why ? dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why) :
			     dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_add(c->reply, "pool", o);
	return DMR_RC_OK;
}

int dmr_h_repair_pool(struct dmr_call *c)
{
	_cleanup_free_ char *why = NULL;
	struct dmr_pool *pool = NULL;
	uint64_t id;
	int rc, r;

	/* It rewrites the pool's metadata: root's alone, as pool create. */
	if (c->uid != 0)
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED, "pool repair is root-only (uid %u)",
				     (unsigned)c->uid);
	if ((rc = need_pool_active(c, &pool)))
		return rc;
	r = dmr_pool_repair_start(c->agent, &id, &why);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}
