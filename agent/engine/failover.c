/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/failover.h"

#include <assert.h>
#include <inttypes.h>
#include <signal.h>
#include <unistd.h>

#include "agent/backend/backend.h"
#include "agent/engine/job_hooks.h"
#include "agent/guest/hooks.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "agent/engine/vm.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "agent/guest/shim.h"
#include "agent/engine/window.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"

/* ---- what an operation needs, copied out of the catalog --------------- */

struct dmr_failover {
	enum dmr_failover_op op;
	struct dmr_registry *reg;
	const struct dmr_backend *be;
	/* The VM: its fields are stable while the operation holds the VM's
	 * busy lock (registry.h); the backend reads them through this. */
	const struct dmr_vm *vmp;
	char *vm;
	uint64_t point;     /* 0: latest valid */
	bool reset;         /* guest policy */
	bool pause_guest;   /* the guest ran and we paused it */
	size_t n;
	char (*names)[DMR_DM_NAME_SIZE];      /* stable dm names */
	char (*uuids)[DMR_DM_UUID_SIZE];      /* and their UUIDs */
	char (*test_names)[DMR_DM_NAME_SIZE]; /* test view names */
	char (*test_uuids)[DMR_DM_UUID_SIZE];
	uint64_t *sectors;
	uint32_t *live_ids;
	uint32_t *new_ids;       /* overlays being made */
	uint32_t *old_ids;       /* overlays being dropped */
	/* A replica VM (points only): no live volume and no stable device
	 * until a failover, and no guest here to pause. */
	bool replica;
	struct dmr_shim *shim;
	char *hook_dir;          /* failover hooks (agent/guest/hooks.h), or NULL */
	struct json_object *network; /* a copy of the VM's settings, or NULL */
};

static void fo_ctx_free(void *p)
{
	struct dmr_failover *c = p;

	if (!c)
		return;
	dmr_shim_free(c->shim);
	free(c->hook_dir);
	json_object_put(c->network);
	free(c->vm);
	free(c->names);
	free(c->uuids);
	free(c->test_names);
	free(c->test_uuids);
	free(c->sectors);
	free(c->live_ids);
	free(c->new_ids);
	free(c->old_ids);
	free(c);
}

DMR_DEFINE_FREEP(struct dmr_failover *, fo_ctx_free)

/* Fill ctx from the VM (caller holds reg->lock). */
static int ctx_fill(struct dmr_failover *c, const struct dmr_vm *vm)
{
	size_t n = vm->n_disks;

	c->n = n;
	c->be = dmr_backend_of(vm);
	c->vmp = vm;
	c->replica = vm->role == DMR_VM_REPLICA;
	c->names = calloc(n, sizeof(*c->names));
	c->uuids = calloc(n, sizeof(*c->uuids));
	c->test_names = calloc(n, sizeof(*c->test_names));
	c->test_uuids = calloc(n, sizeof(*c->test_uuids));
	c->sectors = calloc(n, sizeof(*c->sectors));
	c->live_ids = calloc(n, sizeof(*c->live_ids));
	c->new_ids = calloc(n, sizeof(*c->new_ids));
	c->old_ids = calloc(n, sizeof(*c->old_ids));
	if (!c->names || !c->uuids || !c->test_names || !c->test_uuids || !c->sectors || !c->live_ids ||
	    !c->new_ids || !c->old_ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int k;

		(void)dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, c->names[i]);
		(void)dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, c->uuids[i]);
		if ((k = dmr_vm_test_dm_name(vm->name, vm->disks[i].name, c->test_names[i])) < 0 ||
		    (k = dmr_vm_test_dm_uuid(vm->name, vm->disks[i].name, c->test_uuids[i])) < 0)
			return k;
		c->sectors[i] = vm->disks[i].size_bytes / 512;
		c->live_ids[i] = c->be->live_id(vm, i);
		if (vm->overlay_ids)
			c->old_ids[i] = vm->overlay_ids[i];
	}
	return 0;
}

/* Save the VM (caller holds nothing). */
static int vm_save_locked(struct dmr_registry *reg, const char *name,
			  void (*mutate)(struct dmr_vm *, void *), void *arg)
{
	struct dmr_vm *vm;
	int r;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm) {
		pthread_mutex_unlock(&reg->lock);
		return -ENOENT;
	}
	if (mutate)
		mutate(vm, arg);
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	return r;
}

/* ---- dm helpers ---------------------------------------------------------- */

/* Every stable device i onto ids[i] (agent/backend/backend.h). */
static int retarget_all(struct dmr_registry *reg, const struct dmr_failover *c, const uint32_t *ids)
{
	return dmr_backend_retarget(reg, c->vmp, ids);
}

/* Which of ids[] the stable devices run: 1 all, 0 none, -1 a mix or
 * something else. */
static int devices_on(struct dmr_registry *reg, const struct dmr_failover *c, const uint32_t *ids)
{
	size_t on = 0;

	for (size_t i = 0; i < c->n; i++) {
		_cleanup_table_ struct dmr_table *live = NULL;

		if (dmr_dm_table(c->names[i], false, &live) == 0 &&
		    c->be->table_shows(reg, c->vmp, i, live, ids[i]))
			on++;
	}
	return on == c->n ? 1 : on == 0 ? 0 : -1;
}

/* ---- a replica's stable devices: its failover makes them, its revert
 * takes them away (README, replica VMs) ------------------------------------ */

/* Every disk's stable device made on ids[i]'s device, in one group (one
 * udev wait, all or nothing): a replica has none before its failover, and
 * no guest runs on it, so nothing is paused or swapped. */
static int replica_devices_up(struct dmr_failover *c, const uint32_t *ids)
{
	_cleanup_free_ struct dmr_table **t = calloc(c->n, sizeof(*t));
	_cleanup_free_ const char **names = calloc(c->n, sizeof(*names));
	_cleanup_free_ const char **uuids = calloc(c->n, sizeof(*uuids));
	int r;

	if (!t || !names || !uuids)
		return -ENOMEM;
	r = c->be->volumes_up(c->reg, c->vmp, ids);
	for (size_t i = 0; r == 0 && i < c->n; i++) {
		names[i] = c->names[i];
		uuids[i] = c->uuids[i];
		r = c->be->stable_table(c->reg, c->vmp, i, ids[i], &t[i]);
	}
	if (r == 0)
		r = dmr_test_fail("initiate:devices");
	if (r == 0)
		r = dmr_dm_create_group(c->n, names, uuids, (const struct dmr_table *const *)t, 0);
	for (size_t i = 0; i < c->n; i++)
		dmr_table_free(t[i]);
	return r;
}

/* The replica's stable devices removed, only its own (the full UUID), and
 * every disk's or none: -EBUSY when one is held open (a guest or a mount
 * on it) after 2 s of retries (udev's probe lets go sooner), -EEXIST when
 * one under its name is another device.  Missing ones count as gone. */
static int replica_devices_down(const struct dmr_failover *c)
{
	_cleanup_free_ const char **names = calloc(c->n ? c->n : 1, sizeof(*names));
	size_t m = 0;

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++) {
		struct dmr_dm_info info;
		int r, tries = 20;

		while ((r = dmr_dm_info(c->names[i], &info)) == 0 && info.exists &&
		       dmr_streq(info.uuid, c->uuids[i]) && info.open_count > 0 && --tries > 0)
			usleep(100 * 1000);
		if (r < 0)
			return r;
		if (!info.exists)
			continue;
		if (!dmr_streq(info.uuid, c->uuids[i])) {
			log_debug("VM %s: %s is another device (%s)", c->vm, c->names[i], info.uuid);
			return -EEXIST;
		}
		if (info.open_count > 0) {
			log_debug("VM %s: %s is open (%d)", c->vm, c->names[i], (int)info.open_count);
			return -EBUSY;
		}
		names[m++] = c->names[i];
	}
	return m ? dmr_dm_remove_group(m, names, 20) : 0;
}

/*
 * The swap: every stable device i goes from its live table to thin id
 * to[i].  Tables are preloaded while the guest runs; then the guest is
 * paused, the devices synced, suspended and resumed in parallel, their
 * page caches dropped, the guest reset if asked, and resumed.  All disks
 * switch or none does: on any failure before every disk has switched the
 * inactive tables are cleared, every device resumed on its old table, and
 * the guest resumed.  ret_paused gets the guest-paused window.
 */
/* One phase of the guest-paused window as a job step ("window:sync"...),
 * so that what the window costs over its floor is measured, not guessed
 * (make bench lists them). */
static void window_phase(struct dmr_job *job, const char *name, uint64_t *since)
{
	uint64_t now = dmr_now_usec();

	dmr_job_add_step(job, name, now - *since);
	*since = now;
}

static int swap_tables(struct dmr_job *job, struct dmr_failover *c, const uint32_t *to,
		       const uint32_t *back, const char *op)
{
	_cleanup_free_ int *res = calloc(c->n, sizeof(int));
	_cleanup_free_ const char **names = calloc(c->n, sizeof(char *));
	struct dmr_window *w = NULL;
	uint64_t t0, tp = 0, tph = 0;
	char hook[64];
	size_t loaded = 0;
	int r = 0, q;

	if (!res || !names)
		return -ENOMEM;
	t0 = dmr_now_usec();
	/* The volumes shown after the swap are up before the guest pauses:
	 * the window then swaps linear tables only. */
	r = c->be->volumes_up(c->reg, c->vmp, to);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "cannot activate the volumes to show: %s",
				  strerror(-r));
		return r;
	}
	dmr_job_add_step(job, "volumes-up", dmr_now_usec() - t0);
	for (; loaded < c->n; loaded++) {
		_cleanup_table_ struct dmr_table *t = NULL;

		names[loaded] = c->names[loaded];
		snprintf(hook, sizeof(hook), "%s:preload:%zu", op, loaded);
		r = dmr_test_fail(hook);
		if (r == 0)
			r = c->be->stable_table(c->reg, c->vmp, loaded, to[loaded], &t);
		if (r == 0)
			r = dmr_dm_load(c->names[loaded], t, 0);
		if (r < 0) {
			dmr_job_set_error(job, DMR_RC_FAILED, "cannot preload %s: %s", c->names[loaded],
					  strerror(-r));
			goto clear;
		}
	}
	r = dmr_window_new(c->n, names, &w);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "cannot prepare the swap: %s", strerror(-r));
		goto clear;
	}
	dmr_job_add_step(job, "preload", dmr_now_usec() - t0);
	snprintf(hook, sizeof(hook), "%s:preload", op);
	dmr_test_hook(hook);

	tp = tph = dmr_now_usec();
	if (c->pause_guest) {
		r = dmr_shim_pause(c->shim);
		if (r < 0) {
			const char *why = dmr_shim_last_error(c->shim);

			dmr_job_set_error(job, dmr_rc_from_errno(r) == DMR_RC_FAILED ? DMR_RC_UNAVAILABLE :
					  dmr_rc_from_errno(r), "cannot pause the guest: %s",
					  why && *why ? why : strerror(-r));
			c->pause_guest = false; /* nothing to resume */
			goto clear;
		}
	}
	window_phase(job, "window:pause", &tph);
	snprintf(hook, sizeof(hook), "%s:paused", op);
	dmr_test_hook(hook);
	/* QEMU's stop drained its own I/O; what it wrote through the host
	 * page cache is written back before the old table goes. */
	r = dmr_window_run(w, DMR_WIN_SYNC, res);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "sync failed: %s", strerror(-r));
		goto clear;
	}
	window_phase(job, "window:sync", &tph);
	r = dmr_window_run(w, DMR_WIN_SUSPEND, res);
	window_phase(job, "window:suspend", &tph);
	snprintf(hook, sizeof(hook), "%s:suspended", op);
	dmr_test_hook(hook);
	if (r == 0)
		r = dmr_test_fail(hook);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "suspend failed: %s", strerror(-r));
		goto clear;
	}
	r = dmr_window_run(w, DMR_WIN_RESUME, res);
	if (r < 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "resume with the new table failed: %s",
				  strerror(-r));
		/* A failed resume leaves the old table live; a second resume
		 * brings it back.  Then put every switched device back. */
		for (size_t i = 0; i < c->n; i++)
			if (res[i] < 0)
				(void)dmr_dm_resume_retry(c->names[i]);
		(void)retarget_all(c->reg, c, back);
		goto guest;
	}
	window_phase(job, "window:resume", &tph);
	snprintf(hook, sizeof(hook), "%s:resumed", op);
	dmr_test_hook(hook);
	/* Measured in the lab: a reader with the host page cache (QEMU's
	 * default cache mode) keeps reading the old disk's blocks until
	 * the device's cache is dropped. */
	q = dmr_window_run(w, DMR_WIN_FLUSHBUF, res);
	if (q < 0)
		log_warning("BLKFLSBUF failed on a device: %s", strerror(-q));
	window_phase(job, "window:flushbuf", &tph);
	if (c->pause_guest && c->reset) {
		q = dmr_shim_reset(c->shim);
		if (q < 0)
			log_warning("guest reset failed: %s", strerror(-q));
	}
	goto guest;

clear:
	for (size_t i = 0; i < loaded; i++)
		(void)dmr_dm_clear(c->names[i]);
	if (w) {
		/* Devices the failed phase suspended come back on the old
		 * table: the inactive one was cleared first. */
		for (size_t i = 0; i < c->n; i++) {
			struct dmr_dm_info info;

			if (dmr_dm_info(c->names[i], &info) == 0 && info.suspended)
				(void)dmr_dm_resume_retry(c->names[i]);
		}
	}
guest:
	if (c->pause_guest) {
		q = dmr_shim_resume(c->shim);
		if (q < 0) {
			log_error("VM %s: cannot resume the guest: %s", c->vm, strerror(-q));
			if (r == 0) {
				dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "cannot resume the guest: %s",
						  strerror(-q));
				r = q;
			}
		}
		dmr_job_set_guest_paused(job, dmr_now_usec() - tp);
		window_phase(job, "window:guest-resume", &tph);
	}
	if (tp)
		dmr_job_add_step(job, "window", dmr_now_usec() - tp);
	dmr_window_free(w);
	return r;
}

/* Writable views of the operation's point into new ids to[i]. */
static int make_overlays(struct dmr_failover *c, const uint32_t *to)
{
	return c->be->views_make(c->reg, c->vmp, c->point, to, NULL, NULL);
}

/* ---- catalog mutations --------------------------------------------------- */

struct intent_arg {
	const char *intent;
	uint64_t point;
	uint32_t *ids;        /* overlay or test ids to record (moved in), or NULL */
	bool test;
	bool guest_ran;       /* the guest ran when the operation began */
	int state;            /* -1: keep */
};

static void set_intent(struct dmr_vm *vm, void *p)
{
	struct intent_arg *a = p;

	snprintf(vm->intent, sizeof(vm->intent), "%s", a->intent);
	vm->intent_point = a->point;
	vm->intent_guest_ran = a->guest_ran;
	if (a->ids) {
		uint32_t **dst = a->test ? &vm->test_ids : &vm->overlay_ids;

		free(*dst);
		*dst = a->ids;
		a->ids = NULL;
	}
	if (a->state >= 0)
		vm->state = (enum dmr_vm_state)a->state;
}

/* The operation the intent named is over (done or undone). */
static void intent_clear(struct dmr_vm *vm)
{
	vm->intent[0] = '\0';
	vm->intent_point = 0;
}

/* Record the intent before the operation's first change.  guest_ran tells
 * recovery whether a paused guest was paused by us (and so is resumed). */
static int intent_begin(struct dmr_failover *c, const char *intent, uint64_t point, const uint32_t *ids,
			bool test, int state)
{
	struct intent_arg a = { intent, point, NULL, test, c->pause_guest, state };
	int r;

	/* Allocated here, so that the ids are never left unrecorded while
	 * the volumes they name get made. */
	if (ids) {
		a.ids = malloc(c->n * sizeof(uint32_t));
		if (!a.ids)
			return -ENOMEM;
		memcpy(a.ids, ids, c->n * sizeof(uint32_t));
	}
	r = vm_save_locked(c->reg, c->vm, set_intent, &a);
	free(a.ids);
	return r;
}

/* The (test) failover stands: its point is the job's result, and the
 * failover hooks run now; a failing hook fails the job. */
static int stands(struct dmr_job *job, const struct dmr_failover *c, bool test)
{
	int r;

	dmr_job_set_result(job, "point", json_object_new_int64((int64_t)c->point));
	r = dmr_job_hooks_run(job, c->hook_dir, c->vm, c->point, test, c->network);
	if (r < 0)
		return r;
	dmr_job_set_percent(job, 100);
	return 0;
}

/* ---- InitiateFailover ---------------------------------------------------- */

static void initiate_done(struct dmr_vm *vm, void *p)
{
	vm->state = DMR_VM_RECOVERED;
	vm->failover_point = vm->intent_point;
	intent_clear(vm);
	(void)p;
}

static void initiate_undone(struct dmr_vm *vm, void *p)
{
	vm->state = DMR_VM_REPLICATING;
	free(vm->overlay_ids);
	vm->overlay_ids = NULL;
	vm->failover_point = 0;
	intent_clear(vm);
	(void)p;
}

static int delete_ids(struct dmr_failover *c, const uint32_t *ids)
{
	return c->be->remove(c->reg, c->vmp, c->n, ids);
}

/* Allocate n thin ids under the registry lock. */
static int alloc_ids(struct dmr_failover *c, uint32_t *ids)
{
	int r;

	pthread_mutex_lock(&c->reg->lock);
	r = dmr_reg_alloc_vol_ids(c->reg, c->n, ids);
	pthread_mutex_unlock(&c->reg->lock);
	return r;
}

/* The hypervisor must answer before anything changes. */
static int guest_probe(struct dmr_job *job, struct dmr_failover *c)
{
	enum dmr_guest_status gs;
	int r;

	r = dmr_shim_status(c->shim, &gs);
	if (r < 0) {
		const char *why = dmr_shim_last_error(c->shim);

		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the hypervisor (%s) does not answer: %s",
				  dmr_shim_kind(c->shim), why && *why ? why : strerror(-r));
		return r;
	}
	c->pause_guest = gs == DMR_GUEST_RUNNING;
	return 0;
}

/*
 * A replica's failover (issue 15): the primary is lost, its points are
 * here.  The same intent and overlays as a primary's, but no guest to
 * pause and no stable device to swap: the stable devices are made on the
 * overlays, all disks in one group or none.  Crash steps initiate:intent,
 * initiate:overlays, initiate:devices, initiate:done; recovery reads the
 * devices as for a primary (all on the overlays: done; else they go, and
 * the overlays).  The failover hooks run as on a primary, with this VM's
 * own network settings (vm network here: nothing executable came in a
 * stream), and may start the VM on this host.
 */
static int replica_initiate_job(struct dmr_job *job, struct dmr_failover *c)
{
	uint64_t t0;
	int r;

	c->pause_guest = false;
	r = alloc_ids(c, c->new_ids);
	if (r == 0)
		r = intent_begin(c, "initiate", c->point, c->new_ids, false,
				 DMR_VM_FAILOVER_IN_PROGRESS);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("initiate:intent");
	t0 = dmr_now_usec();
	r = make_overlays(c, c->new_ids);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot make the overlays");
		r = dmr_pool_job_explain(c->reg, job, r);
		goto undo_catalog;
	}
	dmr_job_add_step(job, "overlays", dmr_now_usec() - t0);
	dmr_job_set_percent(job, 40);
	dmr_test_hook("initiate:overlays");
	t0 = dmr_now_usec();
	r = replica_devices_up(c, c->new_ids);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot make the disks' devices");
		goto undo_overlays;
	}
	dmr_job_add_step(job, "devices", dmr_now_usec() - t0);
	dmr_job_set_percent(job, 90);
	dmr_test_hook("initiate:devices");
	r = vm_save_locked(c->reg, c->vm, initiate_done, NULL);
	if (r < 0) {
		/* Recovery at the next start finds every device on its
		 * overlay and finishes this. */
		dmr_job_fail(job, r, "the devices are up, but state not saved");
		return r;
	}
	dmr_test_hook("initiate:done");
	return stands(job, c, false);

undo_overlays:
	(void)delete_ids(c, c->new_ids);
undo_catalog:
	(void)vm_save_locked(c->reg, c->vm, initiate_undone, NULL);
	return r;
}

static int initiate_job(struct dmr_job *job, void *userdata)
{
	struct dmr_failover *c = userdata;
	uint64_t t0;
	int r;

	if (c->replica)
		return replica_initiate_job(job, c);
	if (guest_probe(job, c) < 0)
		return -EHOSTUNREACH;
	r = alloc_ids(c, c->new_ids);
	if (r == 0)
		r = intent_begin(c, c->reset ? "initiate-reset" : "initiate", c->point, c->new_ids,
				 false, DMR_VM_FAILOVER_IN_PROGRESS);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("initiate:intent");
	t0 = dmr_now_usec();
	r = make_overlays(c, c->new_ids);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot make the overlays");
		r = dmr_pool_job_explain(c->reg, job, r);
		goto undo_catalog;
	}
	dmr_job_add_step(job, "overlays", dmr_now_usec() - t0);
	dmr_job_set_percent(job, 30);
	dmr_test_hook("initiate:overlays");

	r = swap_tables(job, c, c->new_ids, c->live_ids, "initiate");
	if (r < 0)
		goto undo_overlays;
	dmr_job_set_percent(job, 90);
	dmr_test_hook("initiate:swapped");
	r = vm_save_locked(c->reg, c->vm, initiate_done, NULL);
	if (r < 0) {
		/* The devices switched; recovery at the next start reads
		 * them and finishes this.  Report the failure now. */
		dmr_job_fail(job, r, "switched, but state not saved");
		return r;
	}
	dmr_test_hook("initiate:done");
	/* The failover is done and stands. */
	return stands(job, c, false);

undo_overlays:
	(void)delete_ids(c, c->new_ids);
undo_catalog:
	(void)vm_save_locked(c->reg, c->vm, initiate_undone, NULL);
	return r;
}

/* ---- RevertFailover -------------------------------------------------------- */

static void revert_done(struct dmr_vm *vm, void *p)
{
	initiate_undone(vm, p);
}

static void revert_failed(struct dmr_vm *vm, void *p)
{
	vm->state = DMR_VM_RECOVERED;
	vm->intent[0] = '\0';
	(void)p;
}

/* A replica's revert: its stable devices go (refused while one is open:
 * a guest started on them must be stopped first), then the overlays;
 * back to a replica with no live disk.  Crash steps revert:intent,
 * revert:devices, revert:deleted; recovery finishes it. */
static int replica_revert_job(struct dmr_job *job, struct dmr_failover *c)
{
	int r;

	c->pause_guest = false;
	r = intent_begin(c, "revert", 0, NULL, false, DMR_VM_FAILOVER_IN_PROGRESS);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("revert:intent");
	r = replica_devices_down(c);
	if (r < 0) {
		if (r == -EBUSY)
			dmr_job_set_error(job, DMR_RC_IN_USE, "a disk's device of VM %s is open (is the "
					  "VM running here?): stop it first", c->vm);
		else
			dmr_job_fail(job, r, "cannot remove the disks' devices");
		(void)vm_save_locked(c->reg, c->vm, revert_failed, NULL);
		return r;
	}
	dmr_test_hook("revert:devices");
	r = delete_ids(c, c->old_ids);
	if (r < 0)
		log_warning("VM %s: overlays not deleted (%s); recovery retries", c->vm, strerror(-r));
	dmr_test_hook("revert:deleted");
	r = vm_save_locked(c->reg, c->vm, revert_done, NULL);
	if (r < 0)
		return dmr_job_fail(job, r, "reverted, but state not saved");
	dmr_job_set_percent(job, 100);
	return 0;
}

static int revert_job(struct dmr_job *job, void *userdata)
{
	struct dmr_failover *c = userdata;
	int r;

	if (c->replica)
		return replica_revert_job(job, c);
	if (guest_probe(job, c) < 0)
		return -EHOSTUNREACH;
	r = intent_begin(c, c->reset ? "revert-reset" : "revert", 0, NULL, false,
			 DMR_VM_FAILOVER_IN_PROGRESS);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("revert:intent");
	r = swap_tables(job, c, c->live_ids, c->old_ids, "revert");
	if (r < 0) {
		(void)vm_save_locked(c->reg, c->vm, revert_failed, NULL);
		return r;
	}
	dmr_test_hook("revert:swapped");
	/* The overlays go only once nothing runs on them. */
	r = delete_ids(c, c->old_ids);
	if (r < 0)
		log_warning("VM %s: overlays not deleted (%s); recovery retries", c->vm, strerror(-r));
	dmr_test_hook("revert:deleted");
	r = vm_save_locked(c->reg, c->vm, revert_done, NULL);
	if (r < 0)
		return dmr_job_fail(job, r, "reverted, but state not saved");
	dmr_job_set_percent(job, 100);
	return 0;
}

/* ---- CommitFailover ---------------------------------------------------------- */

/*
 * The overlays become the live volumes for good.  The old live volumes go,
 * and so do the points newer than the failover point: they belong to the
 * timeline that was abandoned.  The failover point and older ones stay.
 * Commit changes no dm table (the devices already run on the overlays), so
 * it is catalog work plus deletes, all idempotent: recovery rolls it
 * forward.
 */
static void commit_done(struct dmr_vm *vm, void *p)
{
	const uint32_t *live = p;

	/* What the backend's commit said the disks' volumes are now (thin:
	 * the overlays; classic: unchanged, the views are the top layer). */
	for (size_t i = 0; i < vm->n_disks; i++)
		vm->disks[i].thin_id = live[i];
	for (size_t i = vm->n_points; i-- > 0;)
		if (vm->points[i].id > vm->failover_point)
			dmr_vm_point_drop(vm, i);
	if (vm->role == DMR_VM_REPLICA) {
		/* A replica failed over for good is the VM's primary now: it
		 * takes points and can replicate, and refuses streams.  Every
		 * point it holds came from the other host; the newest left
		 * (the failover point: newer ones went above) is the last one
		 * both hosts share, so a cycle back to the old primary, once
		 * demoted, is incremental from it (agent/store/repl.h). */
		const struct dmr_point *pt = dmr_vm_point_find(vm, vm->failover_point);

		vm->role = DMR_VM_PRIMARY;
		dmr_repl_clear(&vm->repl);
		if (pt) {
			snprintf(vm->repl.acked_uuid, sizeof(vm->repl.acked_uuid), "%s", pt->uuid);
			vm->repl.acked_usec = pt->created_usec;
		}
	}
	free(vm->overlay_ids);
	vm->overlay_ids = NULL;
	vm->failover_point = 0;
	vm->state = DMR_VM_COMMITTED;
	intent_clear(vm);
	(void)p;
}

/* Thin ids that commit deletes: old live volumes, newer points. */
static int commit_victims(struct dmr_registry *reg, const char *name, uint32_t **ret, size_t *ret_n)
{
	struct dmr_vm *vm;
	uint32_t *ids;
	size_t n = 0;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	ids = vm ? calloc(vm->n_disks * (vm->n_points + 1), sizeof(*ids)) : NULL;
	if (ids) {
		/* A replica's disks have no live volume (0): nothing to drop. */
		for (size_t i = 0; i < vm->n_disks; i++)
			if (vm->overlay_ids && vm->disks[i].thin_id &&
			    vm->disks[i].thin_id != vm->overlay_ids[i])
				ids[n++] = vm->disks[i].thin_id;
		for (size_t p = 0; p < vm->n_points; p++)
			if (vm->points[p].id > vm->failover_point)
				for (size_t i = 0; i < vm->n_disks; i++)
					ids[n++] = vm->points[p].vol_ids[i];
	}
	pthread_mutex_unlock(&reg->lock);
	if (!ids)
		return vm ? -ENOMEM : -ENOENT;
	*ret = ids;
	*ret_n = n;
	return 0;
}

static int commit_finish(struct dmr_failover *c)
{
	struct dmr_registry *reg = c->reg;
	const char *name = c->vm;
	_cleanup_free_ uint32_t *ids = NULL, *live = calloc(c->n, sizeof(uint32_t));
	size_t n = 0;
	int r;

	if (!live)
		return -ENOMEM;
	r = c->be->commit(reg, c->vmp, live);
	if (r < 0)
		return r;
	r = commit_victims(reg, name, &ids, &n);
	if (r == 0)
		r = c->be->remove(reg, c->vmp, n, ids);
	dmr_test_hook("commit:deleted");
	if (r == 0)
		r = vm_save_locked(reg, name, commit_done, live);
	return r;
}

static int commit_job(struct dmr_job *job, void *userdata)
{
	struct dmr_failover *c = userdata;
	int r;

	r = intent_begin(c, "commit", 0, NULL, false, -1);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("commit:intent");
	r = commit_finish(c);
	if (r < 0)
		return dmr_job_fail(job, r, "commit failed (recovery finishes it)");
	dmr_job_set_percent(job, 100);
	return 0;
}

/* ---- TestReplicaSystem / StopTestReplicaSystem ------------------------------- */

static void test_done(struct dmr_vm *vm, void *p)
{
	vm->test_failover = true;
	vm->test_point = vm->intent_point;
	intent_clear(vm);
	(void)p;
}

static void test_undone(struct dmr_vm *vm, void *p)
{
	vm->test_failover = false;
	vm->test_point = 0;
	free(vm->test_ids);
	vm->test_ids = NULL;
	intent_clear(vm);
	(void)p;
}

static int remove_test_devices(const struct dmr_failover *c)
{
	int r = 0;

	for (size_t i = 0; i < c->n; i++) {
		int q;

		/* Only the VM's own view (full UUID), never a device that
		 * merely has its name: that one is an error, left alone. */
		q = dmr_dm_check_uuid(c->test_names[i], c->test_uuids[i]);
		if (q == -ENOENT)
			continue;
		if (q == 0)
			q = dmr_dm_remove(c->test_names[i], 20);
		if (q < 0)
			r = r ?: q;
	}
	return r;
}

static int test_job(struct dmr_job *job, void *userdata)
{
	struct dmr_failover *c = userdata;
	uint64_t t0;
	int r;

	r = alloc_ids(c, c->new_ids);
	if (r == 0)
		r = intent_begin(c, "test", c->point, c->new_ids, true, -1);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	dmr_test_hook("test:intent");
	t0 = dmr_now_usec();
	r = c->be->views_make(c->reg, c->vmp, c->point, c->new_ids,
			      (const char (*)[DMR_DM_NAME_SIZE])c->test_names, (const char (*)[DMR_DM_UUID_SIZE])c->test_uuids);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot make the test views");
		(void)vm_save_locked(c->reg, c->vm, test_undone, NULL);
		return r;
	}
	dmr_job_add_step(job, "views", dmr_now_usec() - t0);
	r = vm_save_locked(c->reg, c->vm, test_done, NULL);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot save state");
	return stands(job, c, true);
}

static void stop_test_failed(struct dmr_vm *vm, void *p)
{
	vm->intent[0] = '\0';
	(void)p;
}

static int stop_test_job(struct dmr_job *job, void *userdata)
{
	struct dmr_failover *c = userdata;
	int r;

	r = intent_begin(c, "stop-test", 0, NULL, true, -1);
	if (r < 0)
		return dmr_job_fail(job, r, "cannot record the intent");
	r = remove_test_devices(c);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot remove the test devices (still open?)");
		(void)vm_save_locked(c->reg, c->vm, stop_test_failed, NULL);
		return r;
	}
	r = delete_ids(c, c->old_ids);
	if (r == 0)
		r = vm_save_locked(c->reg, c->vm, test_undone, NULL);
	if (r < 0)
		dmr_job_fail(job, r, "cannot drop the test overlays");
	return r;
}

/* ---- the entry point (agent/engine/failover.h) ---------------------------- */

static const struct {
	const char *method;
	dmr_job_fn fn;
} fo_methods[] = {
	[DMR_FAILOVER_INITIATE] = { "InitiateFailover", initiate_job },
	[DMR_FAILOVER_REVERT] = { "RevertFailover", revert_job },
	[DMR_FAILOVER_COMMIT] = { "CommitFailover", commit_job },
	[DMR_FAILOVER_TEST] = { "TestReplicaSystem", test_job },
	[DMR_FAILOVER_STOP_TEST] = { "StopTestReplicaSystem", stop_test_job },
};

const char *dmr_failover_method(enum dmr_failover_op op)
{
	assert((size_t)op < DMR_ARRAY_SIZE(fo_methods));
	return fo_methods[op].method;
}

int dmr_failover_role_check(const struct dmr_vm *vm, enum dmr_failover_op op,
			    const char **ret_why)
{
	assert(vm && ret_why);
	/* Every operation runs on a replica too (issue 15): a failover
	 * there makes the stable devices on the point's overlays, with no
	 * guest to pause; revert and commit need a failover (the caller's
	 * state check).  A replica's guest polices nothing: --guest is moot. */
	(void)op;
	return 0;
}

int dmr_failover_new(struct dmr_registry *reg, const struct dmr_vm *vm, enum dmr_failover_op op,
		     const char *hook_dir, struct dmr_failover **ret_fo)
{
	_cleanup_(fo_ctx_freep) struct dmr_failover *c = NULL;
	const char *why;
	int r;

	assert(reg && vm && ret_fo);
	assert((size_t)op < DMR_ARRAY_SIZE(fo_methods));
	if ((r = dmr_failover_role_check(vm, op, &why)) < 0) {
		log_debug("VM %s: %s", vm->name, why);
		return r;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->op = op;
	c->reg = reg;
	c->vm = strdup(vm->name);
	r = c->vm ? ctx_fill(c, vm) : -ENOMEM;
	if (r == 0 && hook_dir && !(c->hook_dir = strdup(hook_dir)))
		r = -ENOMEM;
	/* A deep copy: the job reads it outside the registry lock. */
	if (r == 0 && vm->network && json_object_deep_copy(vm->network, &c->network, NULL) < 0)
		r = -ENOMEM;
	if (r < 0)
		return r;
	*ret_fo = DMR_TAKE_PTR(c);
	return 0;
}

int dmr_failover_prepare(struct dmr_failover *c, const struct dmr_vm *vm, uint64_t point,
			 bool reset)
{
	assert(c && vm);
	c->point = point;
	c->reset = reset;
	if (c->op == DMR_FAILOVER_STOP_TEST && vm->test_ids)
		memcpy(c->old_ids, vm->test_ids, c->n * sizeof(uint32_t));
	/* Only initiate and revert pause the guest. */
	if (c->op == DMR_FAILOVER_INITIATE || c->op == DMR_FAILOVER_REVERT)
		return dmr_shim_new_for_vm(vm, &c->shim);
	return 0;
}

int dmr_failover_start(struct dmr_agent *a, struct dmr_failover *c, uint64_t *ret_id)
{
	assert(a && c && ret_id);
	return dmr_job_start(a, fo_methods[c->op].method, c->vm, fo_methods[c->op].fn, c,
			     fo_ctx_free, ret_id);
}

void dmr_failover_free(struct dmr_failover *c)
{
	fo_ctx_free(c);
}

/* ---- steps for crash recovery (agent/engine/recovery.c) ------------------- */

int dmr_failover_ctx_recovery(struct dmr_registry *reg, const struct dmr_vm *vm, bool reset,
			      struct dmr_failover **ret)
{
	_cleanup_(fo_ctx_freep) struct dmr_failover *c = calloc(1, sizeof(*c));
	int r;

	assert(reg && vm && ret);
	if (!c || !(c->vm = strdup(vm->name)))
		return -ENOMEM;
	r = ctx_fill(c, vm);
	if (r < 0)
		return r;
	c->reg = reg;
	c->reset = reset;
	if (vm->test_ids)
		memcpy(c->new_ids, vm->test_ids, c->n * sizeof(uint32_t));
	*ret = DMR_TAKE_PTR(c);
	return 0;
}

int dmr_failover_on_overlays(const struct dmr_failover *c)
{
	return devices_on(c->reg, c, c->old_ids);
}

int dmr_failover_retarget_live(const struct dmr_failover *c)
{
	/* A replica's live state has no stable device. */
	return c->replica ? replica_devices_down(c) : retarget_all(c->reg, c, c->live_ids);
}

int dmr_failover_delete_overlays(struct dmr_failover *c)
{
	return delete_ids(c, c->old_ids);
}

int dmr_failover_delete_test_views(struct dmr_failover *c)
{
	return delete_ids(c, c->new_ids);
}

int dmr_failover_remove_test_devices(const struct dmr_failover *c)
{
	return remove_test_devices(c);
}

int dmr_failover_commit_finish(struct dmr_failover *c)
{
	return commit_finish(c);
}

void dmr_failover_initiate_done(struct dmr_vm *vm)
{
	initiate_done(vm, NULL);
}

void dmr_failover_initiate_undone(struct dmr_vm *vm)
{
	initiate_undone(vm, NULL);
}

void dmr_failover_revert_done(struct dmr_vm *vm)
{
	revert_done(vm, NULL);
}

void dmr_failover_test_undone(struct dmr_vm *vm)
{
	test_undone(vm, NULL);
}

int dmr_failover_shim(const struct dmr_vm *vm, struct dmr_shim **ret)
{
	return dmr_shim_new_for_vm(vm, ret);
}
