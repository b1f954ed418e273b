/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/point.h - making replication points, as a job: the point is
 * recorded as pending, the guest's filesystems are frozen around it when
 * it is application-consistent, the VM's backend makes a point of every
 * disk at once, and the VM's retention policy runs after it.  Also what
 * the point handlers (agent/rpc/ops_point.c) ask of a VM's backend
 * before and around that, so that they never branch on it.
 *
 * Called by the rpc layer and by recovery; the VM's busy lock is held by
 * the caller (the job releases it when it ends) unless said otherwise.
 */
#ifndef DMR_AGENT_ENGINE_POINT_H
#define DMR_AGENT_ENGINE_POINT_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/guest/qga.h"
#include "agent/store/registry.h"

/* The guest agent: connecting, and freezing (fsfreeze syncs every
 * filesystem first, so it may take long under write load).  A freeze that
 * has not finished by then is abandoned: thawed, and the point refused. */
#define DMR_QGA_CONNECT_MS 5000
#define DMR_QGA_FREEZE_MS 20000
#define DMR_QGA_THAW_MS 10000

/*
 * Start CreateReplicationPoint for VM vm (busy lock held, state checked):
 * application: freeze and thaw the guest through its agent at qga, or,
 * qga NULL, through the VM's hypervisor shim where it can (libvirt:
 * dmr_shim_vm_can_freeze; else the job fails with 32777); label: the point's label; cow_devs: NULL, or one entry per
 * disk (n_disks of them; NULL entries: a store file), block devices
 * checked with dmr_point_cow_device_check to hold a classic point's
 * stores.  cow_devs is taken, on failure too.  *ret_job: the job's id.
 */
int dmr_point_job_start(struct dmr_agent *agent, const char *vm, bool application,
			const char *qga, const char *label, char **cow_devs, size_t n_disks,
			uint64_t *ret_job);

/* The point job's work, synchronously from a job of the caller's that
 * holds the VM's busy lock (a replication cycle, agent/engine/replicate.c):
 * the same pending record, freeze, backend and retention as
 * dmr_point_job_start, no COW devices (a thin VM's; a classic VM's stores
 * are files).  Steps, the result field "point" and on failure the error
 * go to job.  *ret_point: the new point's id. */
struct dmr_job;
int dmr_point_make(struct dmr_job *job, struct dmr_registry *reg, const char *vm,
		   bool application, const char *qga, const char *label, uint64_t *ret_point);

/* Does the VM's backend take block devices for a point's stores? */
bool dmr_point_takes_cow_devices(const struct dmr_vm *vm);
/* Check path as a point's COW store device (the backend's
 * cow_device_check; -EOPNOTSUPP if it takes none). */
int dmr_point_cow_device_check(const struct dmr_vm *vm, const char *path, bool force,
			       char **ret_what);
/* May points be taken of the VM here: 0, or -DMR_E_STATE for a replica
 * (its points are received) and *ret_why (malloc()ed) says so.
 * dmr_point_room and the point job ask it too. */
int dmr_point_role_check(const struct dmr_vm *vm, char **ret_why);
/* Is there room for one more point (the backend's point_room)?  On
 * failure *ret_why (malloc()ed, may stay NULL) says why. */
int dmr_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
		   const char *const *cow_devs, char **ret_why);
/* Add the backend's fields to point pt's API object o (reg->lock held). */
void dmr_point_api_extras(const struct dmr_vm *vm, const struct dmr_point *pt,
			  struct json_object *o);
/* Is the point held by the backend (never removed)? */
bool dmr_point_pinned(const struct dmr_vm *vm, uint64_t point);

/* Thaw the guest's filesystems, and once more after a resynchronisation
 * if the first try failed; logs a failure.  0 or -errno. */
int dmr_point_guest_thaw(struct dmr_qga *g, const char *vm);

#endif
