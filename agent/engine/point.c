/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/point.c - the point job: pending record, guest freeze, the
 * backend's consistency group, retention (agent/engine/point.h).
 */
#include "agent/engine/point.h"

#include <assert.h>
#include <inttypes.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "agent/engine/vm.h"
#include "agent/engine/retention.h"
#include "agent/guest/shim.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/dm.h"

struct point_ctx {
	struct dmr_registry *reg;
	char *vm;
	bool application;
	/* The guest agent's socket, for application points; NULL: the VM's
	 * hypervisor shim freezes them (libvirt, dmr_shim_vm_can_freeze). */
	char *qga;
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
int dmr_point_guest_thaw(struct dmr_qga *g, const char *vm)
{
	int r;

	assert(g && vm);
	r = dmr_qga_fsfreeze_thaw(g, DMR_QGA_THAW_MS, NULL);
	if (r < 0 && dmr_qga_sync(g, DMR_QGA_THAW_MS) == 0)
		r = dmr_qga_fsfreeze_thaw(g, DMR_QGA_THAW_MS, NULL);
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

	r = dmr_qga_connect(ctx->qga, DMR_QGA_CONNECT_MS, &g);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the guest agent at %s does not answer: %s",
				  ctx->qga, strerror(-r));
		return r;
	}
	r = dmr_qga_fsfreeze_freeze(g, DMR_QGA_FREEZE_MS, &count);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the guest could not freeze its filesystems: %s",
				  dmr_qga_last_error(g) ?: strerror(-r));
		(void)dmr_point_guest_thaw(g, ctx->vm);
		dmr_qga_free(g);
		return r;
	}
	log_info("VM %s: %d guest filesystems frozen", ctx->vm, count);
	dmr_job_set_result(job, "frozen_filesystems", json_object_new_int(count));
	*ret_g = g;
	return 0;
}

/* The same through the VM's hypervisor (libvirt: virDomainFSFreeze, by
 * the domain's own guest agent channel). */
static int shim_freeze(struct dmr_job *job, const char *vm, struct dmr_shim *s)
{
	int count = 0, r;

	if (!s) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "VM %s has no guest agent (vm add --qga "
				  "SOCKET or --libvirt DOMAIN) to freeze it", vm);
		return -EHOSTUNREACH;
	}
	r = dmr_shim_fsfreeze(s, &count);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the guest could not freeze its "
				  "filesystems: %s", dmr_shim_last_error(s));
		/* A freeze that failed part way may have frozen some. */
		(void)dmr_shim_fsthaw(s);
		return r;
	}
	log_info("VM %s: %d guest filesystems frozen (%s)", vm, count, dmr_shim_kind(s));
	dmr_job_set_result(job, "frozen_filesystems", json_object_new_int(count));
	return 0;
}

static int point_make(struct dmr_job *job, const struct point_ctx *ctx, uint64_t *ret_point)
{
	struct dmr_registry *reg = ctx->reg;
	_cleanup_free_ uint32_t *ids = NULL;
	const struct dmr_backend *be;
	struct dmr_point *pt, *np;
	struct dmr_vm *vm;
	uint64_t old_tid, new_tid, point_id = 0, suspended = 0, t0 = 0, tf = 0;
	struct dmr_qga *g = NULL;
	_cleanup_shim_ struct dmr_shim *fs = NULL;
	bool thaw_failed = false, shim_frozen = false;
	size_t n, dropped = 0;
	int r = 0;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	n = vm ? vm->n_disks : 0;
	be = vm ? dmr_backend_of(vm) : NULL;
	if (vm && ctx->application && !ctx->qga && dmr_shim_vm_can_freeze(vm))
		r = dmr_shim_new_for_vm(vm, &fs);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return r;
	/* Every point job carries its stall, 0 until volumes were suspended. */
	dmr_job_set_suspended(job, 0);
	if (!vm)
		return -ENOENT;
	{
		_cleanup_free_ char *why = NULL;

		if ((r = dmr_point_role_check(vm, &why)) < 0) {
			dmr_job_set_error(job, DMR_RC_INVALID_STATE, "%s", why ? why : "a replica");
			return r;
		}
	}
	ids = calloc(n, sizeof(*ids));
	if (!ids)
		return -ENOMEM;

	/* Record the point as pending, with the transaction id that will
	 * prove it, before the pool is touched: a crash in between is then
	 * resolved at start by comparing with the kernel's id (or, without a
	 * pool transaction, by whether its devices exist). */
	be->point_txn_begin(reg, &old_tid, &new_tid);
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
		dmr_uuid_new(pt->uuid);
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
			r = dmr_reg_vm_save(reg, vm);
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		(void)be->point_txn_end(reg, false, new_tid);
		dmr_job_fail(job, r, "cannot record the point");
		return r;
	}

	/* Application consistency: the guest's filesystems are frozen just
	 * around the snapshots, and thawed before anything else is written:
	 * the thaw always runs, whatever happened to the point. */
	if (ctx->application) {
		r = ctx->qga ? guest_freeze(job, ctx, &g) : shim_freeze(job, ctx->vm, fs);
		if (r < 0)
			goto drop_pending;
		shim_frozen = !ctx->qga;
		tf = dmr_now_usec();
		dmr_test_hook("point:frozen");
	}
	t0 = dmr_now_usec();
	r = dmr_test_fail("point:snapshot");
	if (r == 0)
		r = be->points_make(reg, vm, ids, (const char *const *)ctx->cow_devs, old_tid,
				    new_tid, g || shim_frozen ? DMR_DM_SKIP_LOCKFS : 0, &suspended);
	if (r == 0)
		dmr_test_hook("point:made"); /* made, not yet recorded */
	if (g || shim_frozen) {
		int q = g ? dmr_point_guest_thaw(g, ctx->vm) : dmr_shim_fsthaw(fs);
		uint64_t frozen = dmr_now_usec() - tf;

		if (q < 0 && !g)
			log_error("VM %s: cannot thaw the guest's filesystems: %s", ctx->vm,
				  dmr_shim_last_error(fs));

		dmr_job_add_step(job, "frozen", frozen);
		dmr_job_set_result(job, "frozen_usec", json_object_new_int64((int64_t)frozen));
		dmr_qga_free(g);
		g = NULL;
		shim_frozen = false;
		if (q < 0 && r == 0) {
			/* The point is good; the guest is not: say so. */
			thaw_failed = true;
		}
	}
drop_pending:
	(void)be->point_txn_end(reg, r == 0, new_tid);
	if (t0) {
		dmr_job_add_step(job, "snapshot", dmr_now_usec() - t0);
		dmr_job_add_step(job, "volumes-suspended", suspended);
		dmr_job_set_suspended(job, suspended);
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
	log_info("VM %s: point %" PRIu64 " made, volumes suspended %" PRIu64 " us", vm->name, point_id,
		 suspended);
	*ret_point = point_id;
	return 0;
}

static int point_job(struct dmr_job *job, void *userdata)
{
	struct point_ctx *ctx = userdata;
	uint64_t id;
	int r = point_make(job, ctx, &id);
	bool thin;

	if (r == 0) {
		dmr_job_set_percent(job, 100);
		return 0;
	}
	/* A pool that failed or went read-only during the point (a thin
	 * VM's): its refusal says what to do. */
	pthread_mutex_lock(&ctx->reg->lock);
	thin = dmr_vm_needs_pool(dmr_reg_vm_find(ctx->reg, ctx->vm));
	pthread_mutex_unlock(&ctx->reg->lock);
	return thin ? dmr_pool_job_explain(ctx->reg, job, r) : r;
}

int dmr_point_make(struct dmr_job *job, struct dmr_registry *reg, const char *vm,
		   bool application, const char *qga, const char *label, uint64_t *ret_point)
{
	struct point_ctx ctx = { .reg = reg, .vm = (char *)vm, .application = application,
				 .qga = (char *)qga, .label = (char *)label };

	assert(job && reg && vm && label && ret_point);
	return point_make(job, &ctx, ret_point);
}

int dmr_point_job_start(struct dmr_agent *agent, const char *vm, bool application,
			const char *qga, const char *label, char **cow_devs, size_t n_disks,
			uint64_t *ret_job)
{
	struct point_ctx *ctx;

	assert(agent && vm && label && ret_job);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		for (size_t i = 0; cow_devs && i < n_disks; i++)
			free(cow_devs[i]);
		free(cow_devs);
		return -ENOMEM;
	}
	ctx->cow_devs = cow_devs;
	ctx->n_disks = n_disks;
	ctx->reg = agent->reg;
	ctx->vm = strdup(vm);
	ctx->label = strdup(label);
	ctx->application = application;
	if (qga)
		ctx->qga = strdup(qga);
	if (!ctx->vm || !ctx->label || (qga && !ctx->qga)) {
		point_ctx_free(ctx);
		return -ENOMEM;
	}
	return dmr_job_start(agent, "CreateReplicationPoint", vm, point_job, ctx, point_ctx_free,
			     ret_job);
}

bool dmr_point_takes_cow_devices(const struct dmr_vm *vm)
{
	assert(vm);
	return dmr_backend_of(vm)->cow_device_check;
}

int dmr_point_cow_device_check(const struct dmr_vm *vm, const char *path, bool force,
			       char **ret_what)
{
	const struct dmr_backend *be;

	assert(vm && path);
	be = dmr_backend_of(vm);
	if (!be->cow_device_check)
		return -EOPNOTSUPP;
	return be->cow_device_check(vm, path, force, ret_what);
}

int dmr_point_role_check(const struct dmr_vm *vm, char **ret_why)
{
	assert(vm && ret_why);
	if (vm->role != DMR_VM_REPLICA)
		return 0;
	if (asprintf(ret_why, "VM %s is a replica: its points come from its primary's streams "
		     "(point receive); it has no live disk to take one of", vm->name) < 0)
		*ret_why = NULL;
	return -DMR_E_STATE;
}

int dmr_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
		   const char *const *cow_devs, char **ret_why)
{
	int r;

	assert(reg && vm && ret_why);
	/* Asked by CreateReplicationPoint's handler before the job: the
	 * place a replica is refused with its reason. */
	if ((r = dmr_point_role_check(vm, ret_why)) < 0)
		return r;
	return dmr_backend_of(vm)->point_room(reg, vm, cow_devs, ret_why);
}

void dmr_point_api_extras(const struct dmr_vm *vm, const struct dmr_point *pt,
			  struct json_object *o)
{
	assert(vm && pt && o);
	dmr_backend_of(vm)->point_api_extras(vm, pt, o);
}

bool dmr_point_pinned(const struct dmr_vm *vm, uint64_t point)
{
	assert(vm);
	return dmr_backend_of(vm)->point_pinned(vm, point);
}
