/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreateReplicationPoint, ListReplicationPoints, DestroyReplicationPoint. */
#include <inttypes.h>

#include "agent/engine/retention.h"
#include "agent/backend/classic.h"
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/ops.h"
#include "agent/guest/qga.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/thin.h"

#define DMR_LABEL_MAX 256
/* The guest agent: connecting, and freezing (fsfreeze syncs every
 * filesystem first, so it may take long under write load).  A freeze that
 * has not finished by then is abandoned: thawed, and the point refused. */
#define QGA_CONNECT_MS 5000
#define QGA_FREEZE_MS 20000
#define QGA_THAW_MS 10000

/* A point is refused up front when the pool is nearly full: a snapshot
 * costs nothing at creation, but every later write to the live volume or
 * the point's overlay then needs fresh blocks, and a pool that runs out
 * errors I/O (error_if_no_space).  Thresholds: 1/32 of data or 1/16 of
 * metadata left. */
static int pool_has_room(struct dmr_call *c, struct dmr_pool *pool)
{
	struct dmr_thin_pool_status st;
	int r = dmr_pool_status(pool, &st);

	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot read pool status: %s", strerror(-r));
	if (st.fail || st.read_only || st.out_of_data_space)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "the pool is %s",
				     st.fail ? "failed" : st.read_only ? "read-only" : "out of data space");
	if ((st.total_data_blocks - st.used_data_blocks) * 32 < st.total_data_blocks ||
	    (st.total_meta_blocks - st.used_meta_blocks) * 16 < st.total_meta_blocks)
		return dmr_call_fail(c, DMR_RC_NO_SPACE,
				     "the pool is nearly full (data %" PRIu64 "/%" PRIu64
				     ", metadata %" PRIu64 "/%" PRIu64 " blocks)",
				     st.used_data_blocks, st.total_data_blocks, st.used_meta_blocks,
				     st.total_meta_blocks);
	return 0;
}

struct point_ctx {
	struct dmr_registry *reg;
	char *vm;
	bool application;
	char *qga;   /* the guest agent's socket, for application points */
	char *label;
	char **cow_devs; /* classic: a block device per disk for its store, or NULL */
	size_t n_disks;
};

static void point_ctx_free(void *p)
{
	struct point_ctx *ctx = p;

	for (size_t i = 0; ctx->cow_devs && i < ctx->n_disks; i++)
		free(ctx->cow_devs[i]);
	free(ctx->cow_devs);
	free(ctx->vm);
	free(ctx->qga);
	free(ctx->label);
	free(ctx);
}

/* Thaw, and once more after a resynchronisation if the first try failed
 * (a timed-out freeze may leave a reply in flight).  0 or -errno. */
static int guest_thaw(struct dmr_qga *g, const char *vm)
{
	int r = dmr_qga_fsfreeze_thaw(g, QGA_THAW_MS, NULL);

	if (r < 0 && dmr_qga_sync(g, QGA_THAW_MS) == 0)
		r = dmr_qga_fsfreeze_thaw(g, QGA_THAW_MS, NULL);
	if (r < 0)
		log_error("VM %s: cannot thaw the guest's filesystems: %s", vm,
			  dmr_qga_last_error(g) ?: strerror(-r));
	return r;
}

/* Freeze the guest's filesystems; on failure thaw (a failed or timed-out
 * freeze may have frozen some) and fail the job with 32777. */
static int guest_freeze(struct dmr_job *job, const struct point_ctx *ctx, struct dmr_qga **ret_g)
{
	struct dmr_qga *g = NULL;
	int count = 0, r;

	r = dmr_qga_connect(ctx->qga, QGA_CONNECT_MS, &g);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the guest agent at %s does not answer: %s",
				  ctx->qga, strerror(-r));
		return r;
	}
	r = dmr_qga_fsfreeze_freeze(g, QGA_FREEZE_MS, &count);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the guest could not freeze its filesystems: %s",
				  dmr_qga_last_error(g) ?: strerror(-r));
		(void)guest_thaw(g, ctx->vm);
		dmr_qga_free(g);
		return r;
	}
	log_info("VM %s: %d guest filesystems frozen", ctx->vm, count);
	dmr_job_set_result(job, "frozen_filesystems", json_object_new_int(count));
	*ret_g = g;
	return 0;
}

static int point_job(struct dmr_job *job, void *userdata)
{
	struct point_ctx *ctx = userdata;
	struct dmr_registry *reg = ctx->reg;
	_cleanup_free_ uint32_t *origins = NULL, *ids = NULL;
	_cleanup_free_ const char **names = NULL;
	_cleanup_free_ char (*dmnames)[DMR_DM_NAME_SIZE] = NULL;
	struct dmr_point *pt, *np;
	struct dmr_vm *vm;
	uint64_t old_tid, new_tid, point_id = 0, suspended = 0, t0 = 0, tf = 0;
	struct dmr_qga *g = NULL;
	bool thaw_failed = false, classic;
	size_t n, dropped = 0;
	int r;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	n = vm ? vm->n_disks : 0;
	classic = dmr_vm_is_classic(vm);
	pthread_mutex_unlock(&reg->lock);
	if (!vm)
		return -ENOENT;
	origins = calloc(n, sizeof(*origins));
	ids = calloc(n, sizeof(*ids));
	names = calloc(n, sizeof(*names));
	dmnames = calloc(n, sizeof(*dmnames));
	if (!origins || !ids || !names || !dmnames)
		return -ENOMEM;

	/* Record the point as pending, with the transaction id that will
	 * prove it, before the pool is touched: a crash in between is then
	 * resolved at start by comparing with the kernel's id. */
	if (classic) {
		/* No pool transaction: a pending classic point is resolved
		 * at start by whether its devices exist. */
		old_tid = 0;
		new_tid = 1;
	} else {
		dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	}
	pthread_mutex_lock(&reg->lock);
	r = dmr_reg_alloc_vol_ids(reg, n, ids);
	np = r == 0 ? realloc(vm->points, (vm->n_points + 1) * sizeof(*vm->points)) : NULL;
	if (r == 0 && !np)
		r = -ENOMEM;
	if (r == 0) {
		vm->points = np;
		pt = &vm->points[vm->n_points];
		memset(pt, 0, sizeof(*pt));
		pt->id = point_id = vm->next_point_id;
		pt->created_usec = dmr_realtime_usec();
		pt->application = ctx->application;
		pt->label = strdup(ctx->label ? ctx->label : "");
		pt->valid = true;
		pt->pending_tid = new_tid;
		pt->vol_ids = malloc(n * sizeof(uint32_t));
		if (!pt->label || !pt->vol_ids) {
			free(pt->label);
			free(pt->vol_ids);
			r = -ENOMEM;
		} else {
			memcpy(pt->vol_ids, ids, n * sizeof(uint32_t));
			vm->n_points++;
			vm->next_point_id++;
			for (size_t i = 0; i < n; i++) {
				origins[i] = vm->disks[i].thin_id;
				(void)dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, dmnames[i]);
				names[i] = dmnames[i];
			}
			r = dmr_reg_vm_save(reg, vm);
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		if (!classic)
			(void)dmr_reg_txn_end(reg, false, new_tid);
		dmr_job_fail(job, r, "cannot record the point");
		return r;
	}

	/* Application consistency: the guest's filesystems are frozen just
	 * around the snapshots, and thawed before anything else is written:
	 * the thaw always runs, whatever happened to the point. */
	if (ctx->application) {
		r = guest_freeze(job, ctx, &g);
		if (r < 0)
			goto drop_pending;
		tf = dmr_now_usec();
		dmr_test_hook("point:frozen");
	}
	t0 = dmr_now_usec();
	r = dmr_test_fail("point:snapshot");
	if (r == 0 && classic)
		r = dmr_classic_point_make(reg, vm, ids, (const char *const *)ctx->cow_devs,
					   g ? DMR_DM_SKIP_LOCKFS : 0, &suspended);
	else if (r == 0)
		r = dmr_thin_snapshot_group(reg->pool, n, names, origins, ids, old_tid, new_tid,
					    g ? DMR_DM_SKIP_LOCKFS : 0, &suspended);
	if (r == 0)
		dmr_test_hook("point:made"); /* made, not yet recorded */
	if (g) {
		int q = guest_thaw(g, ctx->vm);
		uint64_t frozen = dmr_now_usec() - tf;

		dmr_job_add_step(job, "frozen", frozen);
		dmr_job_set_result(job, "frozen_usec", json_object_new_int64((int64_t)frozen));
		dmr_qga_free(g);
		g = NULL;
		if (q < 0 && r == 0) {
			/* The point is good; the guest is not: say so. */
			thaw_failed = true;
		}
	}
drop_pending:
	if (!classic)
		(void)dmr_reg_txn_end(reg, r == 0, new_tid);
	if (t0) {
		dmr_job_add_step(job, "snapshot", dmr_now_usec() - t0);
		dmr_job_add_step(job, "volumes-suspended", suspended);
	}

	pthread_mutex_lock(&reg->lock);
	for (size_t i = 0; i < vm->n_points; i++) {
		if (vm->points[i].id != point_id)
			continue;
		if (r == 0) {
			vm->points[i].pending_tid = 0;
			/* A committed VM replicates again from here on. */
			vm->state = DMR_VM_REPLICATING;
		}
		else
			dmr_vm_point_drop(vm, i);
		break;
	}
	{
		int q = dmr_reg_vm_save(reg, vm);

		if (r == 0 && q < 0)
			r = q;
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot make the point");
		return r;
	}
	if (thaw_failed)
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE,
				  "point %" PRIu64 " made, but the guest's filesystems could not be thawed",
				  point_id);

	t0 = dmr_now_usec();
	r = dmr_retention_apply(reg, vm, &dropped);
	if (r < 0)
		/* The point exists; retention runs again after the next one. */
		log_warning("VM %s: retention failed: %s", vm->name, strerror(-r));
	if (dropped)
		dmr_job_add_step(job, "retention", dmr_now_usec() - t0);
	dmr_job_set_result(job, "point", json_object_new_int64((int64_t)point_id));
	dmr_job_set_percent(job, 100);
	log_info("VM %s: point %" PRIu64 " made, volumes suspended %" PRIu64 " us", vm->name, point_id,
		 suspended);
	return 0;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* cow_devices: {"DISK": "/dev/...", ...} for a classic VM: every key a disk
 * of the VM, every device checked (dmr_classic_cow_device_check), none
 * twice.  *ret gets one entry per disk (NULL: a store file). */
static int cow_devices_parse(struct dmr_call *c, const struct dmr_vm *vm, struct json_object *o,
			     bool force, char ***ret)
{
	char **devs;

	if (!dmr_vm_is_classic(vm))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_devices is for VMs on the classic backend");
	devs = calloc(vm->n_disks, sizeof(*devs));
	if (!devs)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_foreach(o, disk, jpath) {
		_cleanup_free_ char *what = NULL;
		const char *path;
		size_t i = 0;
		int r;

		while (i < vm->n_disks && !dmr_streq(vm->disks[i].name, disk))
			i++;
		if (i == vm->n_disks || !json_object_is_type(jpath, json_type_string)) {
			free_strv(devs, vm->n_disks);
			return dmr_call_fail(c, i == vm->n_disks ? DMR_RC_INVALID_PARAMETER :
					     DMR_RC_INCORRECT_TYPE, "cow_devices: %s is not a disk of %s "
					     "with a path", disk, vm->name);
		}
		path = json_object_get_string(jpath);
		for (size_t k = 0; k < vm->n_disks; k++)
			if (devs[k] && dmr_streq(devs[k], path)) {
				free_strv(devs, vm->n_disks);
				return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						     "cow_devices: %s given twice", path);
			}
		r = dmr_classic_cow_device_check(vm, path, force, &what);
		if (r < 0) {
			free_strv(devs, vm->n_disks);
			if (r == -EBUSY)
				return dmr_call_fail(c, DMR_RC_IN_USE, "COW device %s is in use", path);
			if (r == -EEXIST)
				return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						     "COW device %s carries %s (--force to overwrite)",
						     path, what ? what : "a signature");
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "COW device %s: %s", path,
					     r == -ENOSPC ? "smaller than 1 MiB" :
					     r == -EINVAL ? "not an absolute path to another device" :
					     strerror(-r));
		}
		devs[i] = strdup(path);
		if (!devs[i]) {
			free_strv(devs, vm->n_disks);
			return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		}
	}
	*ret = devs;
	return 0;
}

int dmr_h_create_point(struct dmr_call *c)
{
	struct json_object *cowdevs = NULL;
	char **devs = NULL;
	size_t n_devs = 0;
	bool force = false;
	const char *name, *consistency = "crash", *label = "";
	struct point_ctx *ctx;
	struct dmr_pool *pool;
	uint64_t id;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_string(c, "consistency", false, &consistency)) ||
	    (rc = dmr_param_string(c, "label", false, &label)))
		return rc;
	if (!dmr_streq(consistency, "crash") && !dmr_streq(consistency, "application"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "consistency must be crash or application");
	if (strlen(label) > DMR_LABEL_MAX)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "label longer than %d bytes", DMR_LABEL_MAX);
	for (const unsigned char *p = (const unsigned char *)label; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "label has control characters");
	if ((rc = dmr_param_bool(c, "force", false, &force)))
		return rc;
	if (json_object_object_get_ex(c->params, "cow_devices", &cowdevs) &&
	    !json_object_is_type(cowdevs, json_type_object))
		return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "cow_devices must be an object");
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_need_up(c, name)) ||
	    (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	{
		struct dmr_registry *reg = c->agent->reg;
		_cleanup_free_ char *why = NULL;
		struct dmr_vm *vm;

		pthread_mutex_lock(&reg->lock);
		vm = dmr_reg_vm_find(reg, name);
		pthread_mutex_unlock(&reg->lock);
		/* The busy lock keeps vm's fields still for the checks. */
		if (cowdevs && (rc = cow_devices_parse(c, vm, cowdevs, force, &devs))) {
			dmr_vm_busy_release(c->agent, name);
			return rc;
		}
		n_devs = vm->n_disks;
		if (dmr_vm_is_classic(vm)) {
			r = dmr_classic_point_room(reg, vm, (const char *const *)devs, &why);
			if (r < 0)
				rc = dmr_call_fail(c, r == -EDQUOT || r == -ENOSPC ? DMR_RC_NO_SPACE :
						   dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
		} else if (!(rc = dmr_ops_need_pool(c, &pool))) {
			rc = pool_has_room(c, pool);
		}
		if (rc) {
			dmr_vm_busy_release(c->agent, name);
			free_strv(devs, n_devs);
			return rc;
		}
	}
	ctx = calloc(1, sizeof(*ctx));
	if (ctx) {
		ctx->cow_devs = devs;
		ctx->n_disks = n_devs;
	} else {
		free_strv(devs, n_devs);
	}
	devs = NULL;
	{
		struct dmr_registry *reg = c->agent->reg;
		enum dmr_vm_state st;
		const char *qga;

		pthread_mutex_lock(&reg->lock);
		st = dmr_reg_vm_find(reg, name)->state;
		qga = dmr_reg_vm_find(reg, name)->qga;
		if (ctx && qga)
			ctx->qga = strdup(qga);
		pthread_mutex_unlock(&reg->lock);
		if (dmr_streq(consistency, "application") && !qga) {
			dmr_vm_busy_release(c->agent, name);
			if (ctx)
				point_ctx_free(ctx);
			return dmr_call_fail(c, DMR_RC_UNAVAILABLE,
					     "VM %s has no guest agent (vm add --qga SOCKET) to freeze it",
					     name);
		}
		/* A recovered VM runs on a point's overlay: its live
		 * volumes are no longer what it writes to. */
		if (st != DMR_VM_REPLICATING && st != DMR_VM_COMMITTED) {
			dmr_vm_busy_release(c->agent, name);
			if (ctx)
				point_ctx_free(ctx);
			return dmr_call_fail(c, DMR_RC_INVALID_STATE,
					     "VM %s is %s: points are taken while replicating",
					     name, dmr_vm_state_name(st));
		}
	}

	if (ctx) {
		ctx->reg = c->agent->reg;
		ctx->vm = strdup(name);
		ctx->label = strdup(label);
		ctx->application = dmr_streq(consistency, "application");
	}
	r = ctx && ctx->vm && ctx->label && (!ctx->application || ctx->qga) ? 0 : -ENOMEM;
	if (r == 0)
		r = dmr_job_start(c->agent, "CreateReplicationPoint", name, point_job, ctx,
				  point_ctx_free, &id);
	else if (ctx)
		point_ctx_free(ctx);
	if (r < 0) {
		dmr_vm_busy_release(c->agent, name);
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot start the job: %s", strerror(-r));
	}
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}

int dmr_h_list_points(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct json_object *a;
	struct dmr_vm *vm;
	const char *name;
	int rc;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	/* Classic points: the kernel says whether each is still valid. */
	dmr_classic_refresh(reg, name);
	a = json_object_new_array();
	if (!a)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	for (size_t i = 0; vm && i < vm->n_points; i++) {
		/* A point still being made is not offered. */
		if (vm->points[i].pending_tid)
			continue;
		struct json_object *o = dmr_point_api_json(&vm->points[i], vm->n_disks);

		if (o && dmr_vm_is_classic(vm))
			json_object_object_add(o, "cow_used_percent",
					       json_object_new_int((int)vm->points[i].cow_pct));
		if (o)
			json_object_array_add(a, o);
	}
	pthread_mutex_unlock(&reg->lock);
	if (!vm) {
		json_object_put(a);
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no VM named %s", name);
	}
	json_object_object_add(c->reply, "points", a);
	return DMR_RC_OK;
}

int dmr_h_destroy_point(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_point *pt;
	struct dmr_vm *vm;
	const char *name;
	uint64_t point;
	size_t idx = 0;
	int rc, r = 0;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) || (rc = dmr_param_u64(c, "point", true, &point)) ||
	    (rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	pt = dmr_vm_point_find(vm, point);
	if (!pt || pt->pending_tid)
		r = -ENOENT;
	else if (point == vm->failover_point || point == vm->test_point ||
		 dmr_classic_point_pinned(vm, point))
		r = -EBUSY;
	else
		idx = (size_t)(pt - vm->points);
	pthread_mutex_unlock(&reg->lock);
	if (r == -ENOENT) {
		rc = dmr_call_fail(c, DMR_RC_NOT_FOUND, "VM %s has no point %" PRIu64, name, point);
		goto out;
	}
	if (r == -EBUSY) {
		rc = dmr_call_fail(c, DMR_RC_IN_USE, "point %" PRIu64 " is in use by a failover%s", point,
				   dmr_classic_point_pinned(vm, point) ?
				   " (a committed failover's disks stack on it)" : "");
		goto out;
	}
	/* The busy lock keeps idx valid. */
	if (r == 0)
		r = dmr_retention_drop_points(reg, vm, &idx, 1, "remove");
	if (r == -DMR_E_NOT_DURABLE)
		rc = dmr_call_fail(c, DMR_RC_FAILED, "point %" PRIu64 " removed from the catalog, but "
				   "the state directory cannot be synced: its volumes are kept until it "
				   "can", point);
	else
		rc = r < 0 ? dmr_call_fail(c, dmr_rc_from_errno(r), "cannot remove point %" PRIu64
					   ": %s", point, strerror(-r)) : DMR_RC_OK;
out:
	dmr_vm_busy_release(c->agent, name);
	return rc;
}
