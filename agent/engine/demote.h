/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/demote.h - DemoteVirtualSystem (`dmrep vm demote VM`): on
 * the old primary, once the VM failed over to another host and was
 * committed there, the VM here becomes a replica of that host again, so
 * that the promoted side replicates back incrementally (issue 15, item 7;
 * docs/failback.md).
 *
 * What goes: the points newer than the last point both hosts share (the
 * common point: they are of the timeline the other host abandoned), the
 * live volumes (the data written here after the common point, diverged),
 * the stable devices /dev/dmrep/VM/DISK, the replication settings.  What
 * stays: the common point and the older ones, the VM's uuid, its network
 * settings and retention.  Afterwards the VM is role "replica", state
 * "replicating", its latest point the common point: an incremental from
 * the promoted side whose base is that point is taken by `point receive`.
 *
 * Crash-safe as every operation: an intent ("demote") is recorded before
 * the first change; the devices go; then one save switches the catalog
 * (role, the dropped points and the live volumes out, their ids recorded
 * as doomed, the intent cleared); then the volumes are removed.  A crash
 * before that save leaves the VM a primary, its devices brought back by
 * recovery (dmr_demote_undone); one after it leaves volumes the doomed
 * list names, which every start removes.  Crash steps demote:intent,
 * demote:down, demote:saved, demote:removed.
 */
#ifndef DMR_AGENT_DEMOTE_H
#define DMR_AGENT_DEMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/store/registry.h"

/* Where the common point came from. */
enum dmr_demote_rule {
	DMR_DEMOTE_BY_POINT,    /* the caller named it (--point) */
	DMR_DEMOTE_BY_ACKED,    /* repl.acked_uuid: the last point the other host acknowledged */
	DMR_DEMOTE_BY_NEWEST,   /* neither: the newest valid point (nothing to drop) */
};

struct dmr_demote_plan {
	bool found;             /* a common point exists here */
	size_t common;          /* its index in vm->points (found) */
	size_t keep;            /* points[0..keep) stay, points[keep..n) are dropped */
	size_t drop;            /* n_points - keep */
	enum dmr_demote_rule rule;
};

/*
 * Pure: which point is common, and which points go.  The rule, first that
 * applies: `point` (non-zero: the caller's --point, this host's id; it must
 * be a valid point here, else -ENOENT); else vm->repl.acked_uuid when set
 * (the point of that uuid; none here: found false, every point dropped:
 * the next stream must then be full); else the newest valid, not pending
 * point (none: found false, every point dropped).  With found, keep is
 * common + 1.  Caller holds reg->lock or the VM's busy lock.
 */
int dmr_demote_plan(const struct dmr_vm *vm, uint64_t point, struct dmr_demote_plan *ret_plan);
const char *dmr_demote_rule_name(enum dmr_demote_rule r);

struct dmr_demote_req {
	const char *vm;
	uint64_t point;         /* 0: the rule above */
	bool force;             /* drop newer points; do not ask the hypervisor */
};

struct dmr_demote_result {
	uint64_t point;         /* the common point's id here, 0: none */
	char uuid[DMR_UUID_STR_SIZE];
	size_t dropped;         /* points dropped */
};

/*
 * Demote VM req->vm (the caller holds its busy lock, not reg->lock; the
 * handler has checked the caller is root).  Refusals change nothing:
 * -EOPNOTSUPP (a backend that cannot stream: classic), -DMR_E_STATE (a
 * replica already, a failover or test failover or operation in flight,
 * newer points without force, no common point without force, the guest
 * runs or is paused per its hypervisor), -EHOSTUNREACH (the hypervisor
 * does not answer; force does not ask it), -EBUSY (a disk's device is
 * open), -ENOENT (no such --point), each with *ret_why (malloc()ed, one
 * line).  Other errors: *ret_why too where known.
 */
int dmr_demote_run(struct dmr_agent *a, const struct dmr_demote_req *req,
		   struct dmr_demote_result *ret_result, char **ret_why);

/* Recovery (agent/engine/recovery.c) of an intent "demote" found at start:
 * the catalog's switch was never saved, so the VM is still the primary
 * it was, and reconcile has brought its devices back: the intent is
 * cleared (the caller saves), the demote undone. */
void dmr_demote_undone(struct dmr_vm *vm);

#endif
