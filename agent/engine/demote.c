/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/engine/demote.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "agent/backend/backend.h"
#include "agent/guest/shim.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/dm.h"

/* ---- the plan (pure) ------------------------------------------------------ */

static bool usable(const struct dmr_point *p)
{
	return p->valid && !p->pending_tid;
}

int dmr_demote_plan(const struct dmr_vm *vm, uint64_t point, struct dmr_demote_plan *ret_plan)
{
	struct dmr_demote_plan p = { 0 };
	size_t i;

	assert(vm && ret_plan);
	if (point) {
		p.rule = DMR_DEMOTE_BY_POINT;
		for (i = 0; i < vm->n_points && vm->points[i].id != point; i++)
			;
		/* The caller names what the other host holds: a point that is
		 * not whole here cannot be that. */
		if (i == vm->n_points || !usable(&vm->points[i]))
			return -ENOENT;
		p.found = true;
	} else if (vm->repl.acked_uuid[0]) {
		p.rule = DMR_DEMOTE_BY_ACKED;
		for (i = 0; i < vm->n_points && !dmr_streq(vm->points[i].uuid, vm->repl.acked_uuid); i++)
			;
		p.found = i < vm->n_points && usable(&vm->points[i]);
	} else {
		p.rule = DMR_DEMOTE_BY_NEWEST;
		for (i = vm->n_points; i-- > 0 && !usable(&vm->points[i]);)
			;
		p.found = i < vm->n_points;
	}
	p.common = p.found ? i : 0;
	p.keep = p.found ? i + 1 : 0;
	p.drop = vm->n_points - p.keep;
	*ret_plan = p;
	return 0;
}

const char *dmr_demote_rule_name(enum dmr_demote_rule r)
{
	switch (r) {
	case DMR_DEMOTE_BY_POINT: return "named with --point";
	case DMR_DEMOTE_BY_ACKED: return "the last point the other host acknowledged";
	case DMR_DEMOTE_BY_NEWEST: return "the newest valid point: none acknowledged";
	}
	return "?";
}

/* ---- the operation ---------------------------------------------------------- */

/* The checks under reg->lock, and the plan. */
static int check(const struct dmr_vm *vm, const struct dmr_demote_req *req,
		 struct dmr_demote_plan *plan, char **ret_why)
{
	const struct dmr_backend *be = dmr_backend_of(vm);
	int r;

	/* A replica holds received points: a backend that cannot take a
	 * stream can never be one. */
	if (!be->receive_make)
		return dmr_why_set(ret_why, -EOPNOTSUPP, "VM %s cannot be a replica: %s", vm->name,
				   be->stream_unsupported ? be->stream_unsupported : "its backend takes no stream");
	if (vm->role == DMR_VM_REPLICA)
		return dmr_why_set(ret_why, -DMR_E_STATE, "VM %s is a replica already", vm->name);
	if (vm->importing)
		return dmr_why_set(ret_why, -EBUSY, "VM %s is still being created", vm->name);
	if (vm->intent[0])
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s has an operation ('%s') left unfinished",
				   vm->name, vm->intent);
	if ((vm->state != DMR_VM_REPLICATING && vm->state != DMR_VM_COMMITTED) || vm->overlay_ids)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s is %s: revert or commit its failover here first", vm->name,
				   dmr_vm_state_name(vm->state));
	if (vm->test_failover)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s has a test failover: stop it first (failover stop-test)", vm->name);
	r = dmr_demote_plan(vm, req->point, plan);
	if (r == -ENOENT)
		return dmr_why_set(ret_why, -ENOENT, "VM %s has no valid point %" PRIu64, vm->name,
				   req->point);
	if (r < 0)
		return r;
	if (!plan->found && !req->force && vm->n_points)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s holds no point the other host has (%s%s%s): --point names "
				   "one; --force drops all %zu, and the next stream must be a full one",
				   vm->name, dmr_demote_rule_name(plan->rule),
				   plan->rule == DMR_DEMOTE_BY_ACKED ? " " : "",
				   plan->rule == DMR_DEMOTE_BY_ACKED ? vm->repl.acked_uuid : "",
				   vm->n_points);
	if (plan->found && plan->drop && !req->force) {
		const struct dmr_point *c = &vm->points[plan->common];

		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s has %zu point(s) newer than point %" PRIu64 " (uuid %s, %s), "
				   "taken as points the other host does not hold: --force drops them, "
				   "--point names another common point", vm->name,
				   plan->drop, c->id, c->uuid, dmr_demote_rule_name(plan->rule));
	}
	return 0;
}

/* Is the guest off?  Only a hypervisor that says so (or no hypervisor)
 * lets a demote go on without --force: a guest still running on this
 * host's disks after a failover elsewhere is a split brain, and its disks
 * are about to go. */
static int guest_off(const struct dmr_vm *vm, struct dmr_shim *s, char **ret_why)
{
	enum dmr_guest_status gs;
	int r = dmr_shim_status(s, &gs);

	if (r < 0) {
		const char *why = dmr_shim_last_error(s);

		return dmr_why_set(ret_why, -EHOSTUNREACH,
				   "cannot tell whether VM %s's guest runs: the hypervisor (%s) does not "
				   "answer (%s); --force goes on without asking", vm->name, dmr_shim_kind(s),
				   why && *why ? why : strerror(-r));
	}
	if (gs == DMR_GUEST_RUNNING || gs == DMR_GUEST_PAUSED)
		return dmr_why_set(ret_why, -DMR_E_STATE,
				   "VM %s's guest is %s here (hypervisor %s): shut it down before its disks "
				   "go", vm->name, gs == DMR_GUEST_RUNNING ? "running" : "paused",
				   dmr_shim_kind(s));
	return 0;
}

/* A disk's stable device held open (a guest, a mount): -EBUSY with why.
 * udev's probe after a change lets go within the 2 s of retries. */
static int devices_closed(const struct dmr_vm *vm, char **ret_why)
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE];
		struct dmr_dm_info info;
		int r, tries = 20;

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0)
			return r;
		while ((r = dmr_dm_info(name, &info)) == 0 && info.exists && info.open_count > 0 &&
		       --tries > 0)
			usleep(100 * 1000);
		if (r < 0)
			return r;
		if (info.exists && info.open_count > 0)
			return dmr_why_set(ret_why, -EBUSY,
					   "%s is open (is VM %s running here?)", name,
					   vm->name);
	}
	return 0;
}

static int save_intent(struct dmr_registry *reg, struct dmr_vm *vm, const char *intent,
		       uint64_t point)
{
	int r;

	pthread_mutex_lock(&reg->lock);
	snprintf(vm->intent, sizeof(vm->intent), "%s", intent);
	vm->intent_point = point;
	vm->intent_guest_ran = false;
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	return r;
}

void dmr_demote_undone(struct dmr_vm *vm)
{
	assert(vm);
	vm->intent[0] = '\0';
	vm->intent_point = 0;
}

/*
 * The switch, in memory and in one save (reg->lock held): role replica,
 * state replicating, points[keep..) out, the live volumes gone from the
 * disks, their ids and the dropped points' into the doomed list, the
 * replication settings cleared, the intent cleared.  A save that fails
 * puts memory back as it was (the file is as it was too): *ret_ids are
 * then not set.  On success *ret_ids / *ret_n: the ids to remove now.
 */
static int switch_catalog(struct dmr_registry *reg, struct dmr_vm *vm, size_t keep,
			  uint32_t **ret_ids, size_t *ret_n)
{
	size_t n_old = vm->n_points, n_doomed_old = vm->n_doomed, add = 0;
	_cleanup_free_ uint32_t *thin_old = calloc(vm->n_disks, sizeof(uint32_t));
	uint32_t *doomed_new, *ids;
	struct dmr_repl repl_old = vm->repl;
	enum dmr_vm_state state_old = vm->state;
	uint64_t fo_old = vm->failover_point, last_old = vm->last_received_usec;
	int r;

	if (!thin_old)
		return -ENOMEM;
	for (size_t i = 0; i < vm->n_disks; i++)
		add += vm->disks[i].thin_id != 0;
	for (size_t p = keep; p < n_old; p++)
		for (size_t i = 0; vm->points[p].vol_ids && i < vm->n_disks; i++)
			add += vm->points[p].vol_ids[i] != 0;
	doomed_new = malloc((n_doomed_old + add + 1) * sizeof(uint32_t));
	ids = malloc((add + 1) * sizeof(uint32_t));
	if (!doomed_new || !ids) {
		free(doomed_new);
		free(ids);
		return -ENOMEM;
	}
	if (n_doomed_old)
		memcpy(doomed_new, vm->doomed, n_doomed_old * sizeof(uint32_t));
	add = 0;
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].thin_id)
			ids[add++] = vm->disks[i].thin_id;
	for (size_t p = keep; p < n_old; p++)
		for (size_t i = 0; vm->points[p].vol_ids && i < vm->n_disks; i++)
			if (vm->points[p].vol_ids[i])
				ids[add++] = vm->points[p].vol_ids[i];
	memcpy(doomed_new + n_doomed_old, ids, add * sizeof(uint32_t));

	/* In memory; only n_points is cut, so that a failed save undoes it. */
	uint32_t *doomed_old = vm->doomed;

	vm->doomed = doomed_new;
	vm->n_doomed = n_doomed_old + add;
	vm->n_points = keep;
	for (size_t i = 0; i < vm->n_disks; i++) {
		thin_old[i] = vm->disks[i].thin_id;
		vm->disks[i].thin_id = 0;
	}
	vm->role = DMR_VM_REPLICA;
	vm->state = DMR_VM_REPLICATING;
	vm->failover_point = 0;
	memset(&vm->repl, 0, sizeof(vm->repl));
	/* As after a receive: the newest point's arrival is not known here. */
	vm->last_received_usec = 0;
	vm->intent[0] = '\0';
	vm->intent_point = 0;
	r = dmr_reg_vm_save(reg, vm);
	if (r < 0 && r != -DMR_E_NOT_DURABLE) {
		vm->doomed = doomed_old;
		vm->n_doomed = n_doomed_old;
		vm->n_points = n_old;
		for (size_t i = 0; i < vm->n_disks; i++)
			vm->disks[i].thin_id = thin_old[i];
		vm->role = DMR_VM_PRIMARY;
		vm->state = state_old;
		vm->failover_point = fo_old;
		vm->repl = repl_old;
		vm->last_received_usec = last_old;
		snprintf(vm->intent, sizeof(vm->intent), "demote");
		free(doomed_new);
		free(ids);
		return r;
	}
	/* Saved: what the old catalog held goes for good. */
	free(doomed_old);
	vm->n_points = n_old;
	for (size_t p = n_old; p-- > keep;)
		dmr_vm_point_drop(vm, p);
	dmr_repl_clear(&repl_old);
	*ret_ids = ids;
	*ret_n = add;
	return r;
}

int dmr_demote_run(struct dmr_agent *a, const struct dmr_demote_req *req,
		   struct dmr_demote_result *ret_result, char **ret_why)
{
	struct dmr_registry *reg = a->reg;
	struct dmr_demote_result res = { 0 };
	struct dmr_demote_plan plan;
	struct dmr_shim *shim = NULL;
	_cleanup_free_ uint32_t *ids = NULL;
	const struct dmr_backend *be;
	struct dmr_vm *vm;
	size_t n = 0;
	int r, q;

	assert(a && req && req->vm && ret_result && ret_why);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, req->vm);
	r = vm ? check(vm, req, &plan, ret_why) : dmr_why_set(ret_why, -ENOENT, "no VM %s", req->vm);
	if (r == 0 && !req->force && (q = dmr_shim_new_for_vm(vm, &shim)) < 0)
		r = dmr_why_set(ret_why, q, "VM %s: bad hypervisor shim: %s", vm->name, strerror(-q));
	if (r == 0 && plan.found) {
		res.point = vm->points[plan.common].id;
		snprintf(res.uuid, sizeof(res.uuid), "%s", vm->points[plan.common].uuid);
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return r;
	/* The busy lock keeps vm (and its fields) ours from here. */
	be = dmr_backend_of(vm);
	if (shim) {
		r = guest_off(vm, shim, ret_why);
		dmr_shim_free(shim);
		if (r < 0)
			return r;
	}
	if ((r = devices_closed(vm, ret_why)) < 0)
		return r;

	r = save_intent(reg, vm, "demote", res.point);
	if (r < 0)
		return dmr_why_set(ret_why, r, "cannot record the intent: %s", strerror(-r));
	dmr_test_hook("demote:intent");
	r = be->teardown(reg, vm, ret_why);
	if (r == 0)
		r = dmr_test_fail("demote:down");
	if (r < 0) {
		/* Nothing of the catalog changed: the devices come back as
		 * they were, the intent goes. */
		log_error("VM %s: demote: cannot take the devices down (%s): undoing", vm->name,
			  *ret_why ? *ret_why : strerror(-r));
		q = be->activate(reg, vm);
		if (q < 0)
			log_error("VM %s: cannot bring its devices back: %s", vm->name, strerror(-q));
		pthread_mutex_lock(&reg->lock);
		dmr_demote_undone(vm);
		(void)dmr_reg_vm_save(reg, vm);
		pthread_mutex_unlock(&reg->lock);
		if (!*ret_why)
			(void)dmr_why_set(ret_why, r, "cannot take VM %s's devices down: %s", vm->name,
					  strerror(-r));
		return r;
	}
	dmr_test_hook("demote:down");

	pthread_mutex_lock(&reg->lock);
	r = switch_catalog(reg, vm, plan.keep, &ids, &n);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0 && r != -DMR_E_NOT_DURABLE) {
		/* The file still says primary, with the intent: undo now as
		 * recovery would. */
		q = be->activate(reg, vm);
		if (q < 0)
			log_error("VM %s: cannot bring its devices back: %s", vm->name, strerror(-q));
		pthread_mutex_lock(&reg->lock);
		dmr_demote_undone(vm);
		(void)dmr_reg_vm_save(reg, vm);
		pthread_mutex_unlock(&reg->lock);
		return dmr_why_set(ret_why, r,
				   "cannot save VM %s's state: %s", vm->name, strerror(-r));
	}
	res.dropped = plan.drop;
	log_notice("VM %s demoted: a replica now, its latest point %" PRIu64 " (%s; %s), %zu "
		   "point(s) dropped", vm->name, res.point, res.uuid[0] ? res.uuid : "none",
		   dmr_demote_rule_name(plan.rule), plan.drop);
	dmr_test_hook("demote:saved");
	if (r == -DMR_E_NOT_DURABLE) {
		/* The switch may not survive a power loss: nothing
		 * irreversible until it does (the next start removes them). */
		log_warning("VM %s: the catalog is not durable yet; %zu volume(s) left for later",
			    vm->name, n);
	} else if (n > 0) {
		q = be->remove(reg, vm, n, ids);
		if (q < 0) {
			log_warning("VM %s: %zu volume(s) not removed yet (%s): the next start does it",
				    vm->name, n, strerror(-q));
		} else {
			dmr_test_hook("demote:removed");
			pthread_mutex_lock(&reg->lock);
			q = dmr_reg_doomed_forget(reg, vm, ids, n);
			pthread_mutex_unlock(&reg->lock);
			if (q < 0 && q != -DMR_E_NOT_DURABLE)
				log_warning("VM %s: cannot save state: %s", vm->name, strerror(-q));
		}
	}
	*ret_result = res;
	return 0;
}
