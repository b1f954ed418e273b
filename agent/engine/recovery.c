/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/recovery.h"
#include "agent/engine/pool.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine/vm.h"
#include "agent/backend/backend.h"
#include "agent/backend/identity.h"
#include "agent/engine/demote.h"
#include "agent/engine/failover.h"
#include "agent/engine/point.h"
#include "agent/guest/qga.h"
#include "agent/guest/shim.h"
#include "agent/store/registry.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/pool.h"

/* The guest agent at start: a guest that is not running does not answer. */
#define QGA_CONNECT_MS 5000

/* ---- the pool ---------------------------------------------------------- */

/* Why the pool stays down and what to do, for every caller until the
 * agent is restarted (dmr_pool_down_why answers with them). */
static void pool_down(struct dmr_registry *reg, const char *advice, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void pool_down(struct dmr_registry *reg, const char *advice, const char *fmt, ...)
{
	va_list ap;

	free(reg->pool_down_reason);
	free(reg->pool_down_advice);
	va_start(ap, fmt);
	if (vasprintf(&reg->pool_down_reason, fmt, ap) < 0)
		reg->pool_down_reason = NULL;
	va_end(ap);
	reg->pool_down_advice = strdup(advice);
}

/* The pool, unless pool.json is unreadable or its paths are not the
 * devices it was made on (never activate a pool over a device that is not
 * its own). */
static void pool_activate(struct dmr_registry *reg)
{
	int r;

	if (!reg->have_pool) {
		size_t thin = 0;

		for (size_t i = 0; i < reg->n_vms; i++)
			thin += dmr_backend_of(reg->vms[i])->needs_pool;
		if (thin)
			log_error("%zu thin VM(s) in the catalog but no pool: create or restore pool.json",
				  thin);
	} else if (reg->pool_unreadable) {
		/* Said where pool.json was read: neither activated nor
		 * rewritten, so nothing of the bad file is taken for true. */
	} else if ((r = dmr_reg_pool_ident_check(reg)) < 0) {
		/* Never activate a pool over a device that is not its own:
		 * the kernel would write its metadata there. */
		if (!reg->pool_down_reason)
			pool_down(reg, "check the pool's devices, then restart dmrepd",
				  "its devices cannot be identified: %s", strerror(-r));
		else {
			free(reg->pool_down_advice);
			reg->pool_down_advice = strdup("put the pool's own devices back at its "
						       "paths, then restart dmrepd");
		}
		log_error("pool left down: %s", reg->pool_down_reason ? reg->pool_down_reason :
			  strerror(-r));
	} else if ((r = dmr_pool_activate(&reg->pool_spec, &reg->pool)) < 0) {
		/* Stay up so status can be read; storage methods answer 32775
		 * with this reason until the devices are fixed and the agent
		 * restarted.  A missing device and one the kernel refused
		 * (unreadable, or metadata it cannot read: a table load fails
		 * with EINVAL or EIO, dmesg says which) want different fixes. */
		if (r == -EUCLEAN)
			pool_down(reg, "put the pool's own metadata back on that device (a copy, or "
				  "a backup a repair left in the state directory), then restart dmrepd",
				  "its metadata device %s is blank (all zeroes): activating it would "
				  "format an empty pool and lose every point", reg->pool_spec.meta_path);
		else if (r == -ENOENT)
			pool_down(reg, "attach the pool's devices at those paths, then restart dmrepd",
				  "cannot activate it: %s or %s does not exist",
				  reg->pool_spec.data_path, reg->pool_spec.meta_path);
		else
			pool_down(reg, "fix the devices (dmesg says why the kernel refused the pool); "
				  "if thin_check finds its metadata damaged, thin_repair it into a "
				  "spare and copy that over the metadata device; then restart dmrepd",
				  "cannot activate it on %s and %s: %s", reg->pool_spec.data_path,
				  reg->pool_spec.meta_path, strerror(-r));
		log_error("cannot activate the pool (%s on %s, %s): %s", DMR_POOL_DM_NAME,
			  reg->pool_spec.data_path, reg->pool_spec.meta_path, strerror(-r));
	} else if (dmr_reg_pool_ident_learn(reg) && (r = dmr_reg_pool_save(reg)) < 0) {
		log_error("cannot save pool state: %s", strerror(-r));
	}
}

/* ---- devices after a crash or a reboot -------------------------------- */

static void rename_legacy(struct dmr_registry *reg, struct dmr_dm_entry *devs, size_t ndevs)
{
	for (size_t v = 0; v < reg->n_vms; v++) {
		const struct dmr_vm *vm = reg->vms[v];

		for (size_t i = 0; i < vm->n_disks; i++)
			for (int test = 0; test < 2; test++) {
				char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
				const char *d = vm->disks[i].name;
				int r;

				if ((test ? dmr_vm_test_dm_name(vm->name, d, name) :
					    dmr_vm_disk_dm_name(vm->name, d, name)) < 0 ||
				    (test ? dmr_vm_test_dm_uuid(vm->name, d, uuid) :
					    dmr_vm_disk_dm_uuid(vm->name, d, uuid)) < 0)
					continue;
				for (size_t k = 0; k < ndevs; k++) {
					if (!dmr_streq(devs[k].uuid, uuid) ||
					    dmr_streq(devs[k].name, name))
						continue;
					r = dmr_dm_rename(devs[k].name, name);
					if (r < 0) {
						log_error("VM %s: cannot rename %s (%s) to %s: %s; left alone",
							  vm->name, devs[k].name, uuid, name, strerror(-r));
						break;
					}
					log_notice("VM %s: renamed %s to %s (an older dmrep's name)",
						   vm->name, devs[k].name, name);
					snprintf(devs[k].name, sizeof(devs[k].name), "%s", name);
					break;
				}
			}
	}
}

/* One VM: an interrupted creation is undone (the VM goes: returns
 * -ENOENT), the volumes of points dropped from the catalog before a crash
 * are removed, a pending point is kept if it was made, else dropped with
 * whatever of it was made; then the devices are brought up. */
static int reconcile_vm(struct dmr_registry *reg, struct dmr_vm *vm, uint64_t pool_tid)
{
	const struct dmr_backend *be = dmr_backend_of(vm);
	bool changed = false;
	int r;

	if (vm->importing) {
		/* A replica a first receive was making: its volumes are the
		 * receive's, recorded as doomed before they existed. */
		if (vm->n_doomed)
			(void)be->doomed_remove(reg, vm);
		be->discard(reg, vm);
		(void)dmr_reg_vm_delete(reg, vm->name);
		return -ENOENT;
	}
	if (vm->n_doomed)
		changed = be->doomed_remove(reg, vm);
	for (size_t p = 0; p < vm->n_points;) {
		struct dmr_point *pt = &vm->points[p];

		if (!pt->pending_tid) {
			p++;
			continue;
		}
		changed = true;
		if (be->settle(reg, vm, pt, pool_tid) > 0) {
			log_notice("VM %s: point %" PRIu64 " was made; keeping it", vm->name, pt->id);
			pt->pending_tid = 0;
			p++;
			continue;
		}
		log_notice("VM %s: point %" PRIu64 " was not made; dropping it", vm->name, pt->id);
		dmr_vm_point_drop(vm, p);
	}
	(void)be->activate(reg, vm);
	if (changed && (r = dmr_reg_vm_save(reg, vm)) < 0)
		log_error("VM %s: cannot save state: %s", vm->name, strerror(-r));
	return 0;
}

/* Finish or undo what a crash interrupted, reading the kernel as the
 * truth: a point whose transaction the pool reports happened is kept, one
 * whose transaction did not is dropped with whatever snapshots it made. */
static void reconcile(struct dmr_registry *reg)
{
	struct dmr_thin_pool_status st;
	_cleanup_free_ struct dmr_dm_entry *devs = NULL;
	size_t ndevs = 0;
	bool thin_ok = false;
	uint64_t k = reg->tid;
	int r;

	/* Thin VMs need the pool; classic ones are reconciled regardless. */
	if (reg->pool) {
		r = dmr_pool_status(reg->pool, &st);
		if (r < 0)
			log_error("pool status unreadable (%s): thin VMs not reconciled", strerror(-r));
		/* A failed pool ("Fail") has no transaction id to go by: its
		 * VMs wait for 'dmrep pool repair'. */
		if (r == 0 && st.fail)
			log_error("the pool failed: thin VMs not reconciled; run 'dmrep pool repair'");
		thin_ok = r == 0 && !st.fail;
	}
	if (thin_ok)
		k = st.transaction_id;
	if (k != reg->tid)
		log_notice("pool transaction id %" PRIu64 ", catalog %" PRIu64 ": reconciling",
			   k, reg->tid);

	/* A crash inside a snapshot group leaves volumes suspended. */
	if (dmr_dm_list(DMR_UUID_PREFIX, &devs, &ndevs) == 0) {
		for (size_t i = 0; i < ndevs; i++) {
			struct dmr_dm_info info;

			if (dmr_dm_info(devs[i].name, &info) == 0 && info.exists && info.suspended) {
				/* A table swap cut short: drop its inactive table
				 * first, so the resume brings back the old one and
				 * failover recovery decides from a consistent view
				 * (a blind resume would finish the swap of some
				 * disks only). */
				log_notice("resuming %s, left suspended%s", devs[i].name,
					   info.inactive_table ? " with a table loaded: clearing it" : "");
				if (info.inactive_table)
					(void)dmr_dm_clear(devs[i].name);
				(void)dmr_dm_resume_retry(devs[i].name);
			}
		}
		rename_legacy(reg, devs, ndevs);
	}

	for (size_t v = 0; v < reg->n_vms;) {
		struct dmr_vm *vm = reg->vms[v];

		/* Thin VMs need the pool; classic ones are reconciled regardless. */
		if (dmr_backend_of(vm)->needs_pool && !thin_ok) {
			v++;
			continue;
		}
		if (reconcile_vm(reg, vm, k) == 0)
			v++;
	}
	if (thin_ok && k != reg->tid) {
		if (k < reg->tid)
			log_warning("pool transaction id %" PRIu64 " is behind the catalog's %" PRIu64
				    ": the pool lost metadata (power loss before a commit?)",
				    k, reg->tid);
		reg->tid = k;
		if ((r = dmr_reg_pool_save(reg)) < 0)
			log_error("cannot save pool state: %s", strerror(-r));
	}

	/* Report (never remove) DMREP- devices the catalog does not know,
	 * as they are now: the VMs' reconciliation removed some (a crashed
	 * receive's volumes, an interrupted creation's). */
	free(devs);
	devs = NULL;
	ndevs = 0;
	if (dmr_dm_list(DMR_UUID_PREFIX, &devs, &ndevs) < 0)
		ndevs = 0;
	for (size_t i = 0; i < ndevs; i++) {
		bool known = dmr_streq(devs[i].name, DMR_POOL_DM_NAME);

		for (size_t v = 0; !known && v < reg->n_vms; v++)
			known = dmr_backend_of(reg->vms[v])->owns(reg->vms[v], devs[i].name);
		if (!known)
			log_warning("orphan device %s (%s): not in the catalog, left alone",
				    devs[i].name, devs[i].uuid);
	}
}

/* ---- after a pool repair ---------------------------------------------- */

int dmr_recovery_reconcile_repaired(struct dmr_registry *reg, const uint32_t *ids, size_t n,
				    uint64_t pool_tid)
{
	int first = 0, r;

	assert(reg && (ids || n == 0));
	pthread_mutex_lock(&reg->lock);
	if (reg->tid != pool_tid) {
		log_notice("pool repaired at transaction %" PRIu64 ", catalog at %" PRIu64
			   ": the catalog takes the pool's", pool_tid, reg->tid);
		reg->tid = pool_tid;
		if ((r = dmr_reg_pool_save(reg)) < 0) {
			log_error("cannot save pool state: %s", strerror(-r));
			first = r;
		}
	}
	for (size_t v = 0; v < reg->n_vms; v++) {
		struct dmr_vm *vm = reg->vms[v];
		const struct dmr_backend *be = dmr_backend_of(vm);

		if (!be->needs_pool || !be->repaired(vm, ids, n))
			continue;
		if ((r = dmr_reg_vm_save(reg, vm)) < 0) {
			log_error("VM %s: cannot save state: %s", vm->name, strerror(-r));
			if (!first)
				first = r;
		}
	}
	pthread_mutex_unlock(&reg->lock);

	/* The volumes of dropped points that the repair kept, removed now
	 * that the catalog's transaction id is the pool's.  The VMs stay:
	 * their busy locks are held. */
	for (size_t v = 0;; v++) {
		_cleanup_free_ uint32_t *doomed = NULL;
		struct dmr_vm *vm;
		size_t nd = 0;

		pthread_mutex_lock(&reg->lock);
		if (v >= reg->n_vms) {
			pthread_mutex_unlock(&reg->lock);
			break;
		}
		vm = reg->vms[v];
		if (dmr_backend_of(vm)->needs_pool && vm->n_doomed &&
		    (doomed = calloc(vm->n_doomed, sizeof(*doomed)))) {
			nd = vm->n_doomed;
			memcpy(doomed, vm->doomed, nd * sizeof(*doomed));
		}
		pthread_mutex_unlock(&reg->lock);
		if (nd == 0)
			continue;
		if ((r = dmr_backend_of(vm)->remove(reg, vm, nd, doomed)) < 0) {
			log_error("VM %s: cannot remove %zu volume(s) of dropped points: %s; left "
				  "for the next start", vm->name, nd, strerror(-r));
			continue;
		}
		pthread_mutex_lock(&reg->lock);
		r = dmr_reg_doomed_forget(reg, vm, doomed, nd);
		pthread_mutex_unlock(&reg->lock);
		if (r < 0)
			log_error("VM %s: cannot save state: %s", vm->name, strerror(-r));
	}
	return first;
}

/* ---- interrupted failover operations ----------------------------------- */

static void failover_freep(struct dmr_failover **c)
{
	dmr_failover_free(*c);
}

static void recover_vm(struct dmr_registry *reg, struct dmr_vm *vm)
{
	_cleanup_(failover_freep) struct dmr_failover *c = NULL;
	bool switched = false, reset = false;
	char intent[16], dm[DMR_DM_NAME_SIZE];
	int r;

	snprintf(intent, sizeof(intent), "%s", vm->intent);
	/* The guest policy rides on the intent ("initiate-reset"): a swap
	 * rolled forward must leave the guest as the caller asked. */
	if (dmr_endswith(intent, "-reset")) {
		intent[strlen(intent) - strlen("-reset")] = '\0';
		reset = true;
	}
	if (dmr_failover_ctx_recovery(reg, vm, reset, &c) < 0) {
		log_error("VM %s: out of memory in recovery", vm->name);
		return;
	}
	if (dmr_vm_dm_check(vm, dm) == -EEXIST) {
		log_error("VM %s: %s is another device (not the VM's UUID): '%s' left unfinished",
			  vm->name, dm, vm->intent);
		return;
	}

	/* Whatever the operation, no device of the VM stays suspended or
	 * with a half-loaded table, and a guest we may have paused runs. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		struct dmr_dm_info info;
		char name[DMR_DM_NAME_SIZE];

		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name) < 0 ||
		    dmr_dm_info(name, &info) < 0 || !info.exists)
			continue;
		if (info.inactive_table)
			(void)dmr_dm_clear(name);
		if (info.suspended)
			(void)dmr_dm_resume_retry(name);
	}

	if (dmr_streq(intent, "initiate")) {
		int on = vm->overlay_ids ? dmr_failover_on_overlays(c) : 0;

		if (on == 1) {
			log_notice("VM %s: failover had switched every disk: finishing it", vm->name);
			dmr_failover_initiate_done(vm);
			switched = true;
		} else {
			log_notice("VM %s: failover had not switched every disk: rolling back", vm->name);
			r = dmr_failover_retarget_live(c);
			if (r < 0)
				log_error("VM %s: cannot put the disks back on the live volumes: %s",
					  vm->name, strerror(-r));
			if (r == 0 && vm->overlay_ids)
				(void)dmr_failover_delete_overlays(c);
			if (r == 0)
				dmr_failover_initiate_undone(vm);
		}
	} else if (dmr_streq(intent, "revert")) {
		log_notice("VM %s: finishing the revert", vm->name);
		r = dmr_failover_retarget_live(c);
		if (r == 0) {
			(void)dmr_failover_delete_overlays(c);
			dmr_failover_revert_done(vm);
			switched = true;
		} else {
			log_error("VM %s: revert not finished: %s", vm->name, strerror(-r));
		}
	} else if (dmr_streq(intent, "commit")) {
		log_notice("VM %s: finishing the commit", vm->name);
		r = dmr_failover_commit_finish(c);
		if (r < 0)
			log_error("VM %s: commit not finished: %s", vm->name, strerror(-r));
	} else if (dmr_streq(intent, "test")) {
		log_notice("VM %s: test failover was interrupted: undoing it", vm->name);
		(void)dmr_failover_remove_test_devices(c);
		if (vm->test_ids)
			(void)dmr_failover_delete_test_views(c);
		dmr_failover_test_undone(vm);
	} else if (dmr_streq(intent, "stop-test")) {
		log_notice("VM %s: finishing the end of the test failover", vm->name);
		if (dmr_failover_remove_test_devices(c) == 0) {
			if (vm->test_ids)
				(void)dmr_failover_delete_test_views(c);
			dmr_failover_test_undone(vm);
		}
	} else if (dmr_streq(intent, "demote")) {
		/* The switch to a replica is one save that clears the intent:
		 * still here, it never happened, and reconcile brought the
		 * devices back on the live volumes. */
		log_notice("VM %s: a demote was interrupted before it changed the catalog: undone, "
			   "still a primary (vm demote again)", vm->name);
		dmr_demote_undone(vm);
	} else {
		log_error("VM %s: unknown intent '%s' left alone", vm->name, intent);
		return;
	}

	/* Only initiate and revert pause the guest. */
	if (dmr_shim_vm_has_hypervisor(vm) &&
	    (dmr_streq(intent, "initiate") || dmr_streq(intent, "revert"))) {
		struct dmr_shim *s = NULL;
		enum dmr_guest_status gs;

		/* Only a guest that ran when the operation began was paused by
		 * it; one the operator had paused stays paused. */
		if (vm->intent_guest_ran && dmr_failover_shim(vm, &s) == 0 && dmr_shim_status(s, &gs) == 0 &&
		    gs == DMR_GUEST_PAUSED) {
			/* Paused by the interrupted swap: a guest whose disks
			 * switched under it restarts if the caller asked. */
			if (switched && reset && dmr_shim_reset(s) < 0)
				log_error("VM %s: cannot reset the guest", vm->name);
			log_notice("VM %s: resuming the guest", vm->name);
			if (dmr_shim_resume(s) < 0)
				log_error("VM %s: cannot resume the guest", vm->name);
		}
		dmr_shim_free(s);
	}
	if ((r = dmr_reg_vm_save(reg, vm)) < 0)
		log_error("VM %s: cannot save state after recovery: %s", vm->name, strerror(-r));
}

static void failover_recover(struct dmr_registry *reg)
{
	/* Called once at start, before the server runs and before any job:
	 * nothing else touches the registry, so no lock is held here (the
	 * pool deletes below take the registry's locks themselves). */
	for (size_t i = 0; i < reg->n_vms; i++) {
		struct dmr_vm *vm = reg->vms[i];

		if (!vm->intent[0])
			continue;
		if (vm->down_reason) {
			log_error("VM %s: operation '%s' left unfinished: the VM is down", vm->name,
				  vm->intent);
			continue;
		}
		if (dmr_backend_of(vm)->needs_pool && !reg->pool) {
			log_error("VM %s: operation '%s' left unfinished: the pool is not active",
				  vm->name, vm->intent);
			continue;
		}
		recover_vm(reg, vm);
	}
}

/* ---- guests ------------------------------------------------------------ */

/* A guest frozen through its hypervisor (libvirt) cannot be asked whether
 * it is: one that runs is thawed, which thaws nothing in a guest that was
 * not frozen.  Best effort: a domain without a guest agent says so. */
static void thaw_by_shim(struct dmr_shim *s, const char *name)
{
	enum dmr_guest_status gs;

	if (dmr_shim_status(s, &gs) < 0 || (gs != DMR_GUEST_RUNNING && gs != DMR_GUEST_PAUSED))
		return;
	if (dmr_shim_fsthaw(s) < 0)
		log_debug("VM %s: no thaw at start: %s", name, dmr_shim_last_error(s));
	else
		log_info("VM %s: the guest's filesystems thawed through %s (in case an interrupted "
			 "point left them frozen)", name, dmr_shim_kind(s));
}

/* Thaw the filesystems of any guest that an interrupted
 * application-consistent point left frozen. */
static void thaw_guests(struct dmr_registry *reg)
{
	for (size_t i = 0;; i++) {
		_cleanup_free_ char *path = NULL, *name = NULL;
		_cleanup_shim_ struct dmr_shim *shim = NULL;
		struct dmr_qga *g = NULL;
		bool frozen = false;
		int r;

		pthread_mutex_lock(&reg->lock);
		if (i >= reg->n_vms) {
			pthread_mutex_unlock(&reg->lock);
			return;
		}
		if (reg->vms[i]->qga) {
			path = strdup(reg->vms[i]->qga);
			name = strdup(reg->vms[i]->name);
		} else if (dmr_shim_vm_can_freeze(reg->vms[i]) &&
			   dmr_shim_new_for_vm(reg->vms[i], &shim) == 0) {
			name = strdup(reg->vms[i]->name);
		}
		pthread_mutex_unlock(&reg->lock);
		if (shim && name)
			thaw_by_shim(shim, name);
		if (!path || !name)
			continue;
		/* A guest that is not running has nothing frozen. */
		r = dmr_qga_connect(path, QGA_CONNECT_MS / 2, &g);
		if (r < 0) {
			log_debug("VM %s: guest agent not reachable at start: %s", name, strerror(-r));
			continue;
		}
		r = dmr_qga_fsfreeze_status(g, QGA_CONNECT_MS, &frozen);
		if (r == 0 && frozen) {
			log_notice("VM %s: the guest's filesystems were left frozen: thawing them", name);
			(void)dmr_point_guest_thaw(g, name);
		}
		dmr_qga_free(g);
	}
}

/* ---- all of it ----------------------------------------------------------- */

int dmr_recovery_run(struct dmr_agent *a)
{
	struct dmr_registry *reg = a->reg;

	assert(reg);
	dmr_pool_repair_recover_pre(reg);
	pool_activate(reg);
	dmr_pool_repair_recover_post(reg);
	reconcile(reg);
	failover_recover(reg);
	log_info("catalog: %zu VM(s), pool transaction id %" PRIu64, reg->n_vms, reg->tid);
	thaw_guests(reg);
	return 0;
}
