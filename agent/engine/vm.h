/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/vm.h - a VM's life as a whole: AddVirtualSystem's job
 * (image files made, the disks created or imported through the VM's
 * backend, undone whole on failure), RemoveVirtualSystem's device and
 * volume work, and the device questions its handlers ask (is every device
 * under the VM's names its own, is a source one of dmrep's devices or in
 * use).  Called by the handlers of agent/rpc/ops_vm.c and ops_pool.c (and
 * failover's jobs, for dmr_vm_dm_check); 0 or a negative errno, never a
 * WMI code.
 */
#ifndef DMR_AGENT_ENGINE_VM_H
#define DMR_AGENT_ENGINE_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/core/authz.h"
#include "agent/store/registry.h"
#include "dm/name.h"

/* Is every device that carries one of the VM's names the VM's own (full
 * UUID)?  0 if so (absent ones are fine); -EEXIST if one is another
 * device, its name in ret_name: nothing of it may be removed, reloaded
 * or suspended.  Busy lock held, reg->lock not (dm calls). */
int dmr_vm_dm_check(const struct dmr_vm *vm, char ret_name[DMR_DM_NAME_SIZE]);

/* Does the VM's storage live in the agent's pool (false for NULL)? */
bool dmr_vm_needs_pool(const struct dmr_vm *vm);

/* May the VM be removed (force: --force)?  0, or -DMR_E_STATE with
 * *ret_why (malloc()ed) saying why not.  Caller holds reg->lock. */
int dmr_vm_may_remove(const struct dmr_vm *vm, bool force, char **ret_why);

/* AddVirtualSystem's questions of a backend, by its name, before any VM
 * has it (the table is agent/backend/backend.h's; a handler only holds
 * the pointer).  NULL for a name no backend has. */
struct dmr_backend;
const struct dmr_backend *dmr_vm_backend_named(const char *name);
/* Do its disks live on their sources: opened read-write, a new disk an
 * image file at its path, no two disks one file, cow_size and max_points
 * taken (the backend's in_place)? */
bool dmr_vm_backend_in_place(const struct dmr_backend *b);
/* Does its storage live in the agent's pool? */
bool dmr_vm_backend_needs_pool(const struct dmr_backend *b);
/* The bytes an import may write (the backend's add_room: the pool's free
 * bytes, or UINT64_MAX where nothing is copied); -errno if unknown. */
int dmr_vm_add_room(struct dmr_registry *reg, const struct dmr_backend *b, uint64_t *ret_free);
/* A new VM's disks' volume ids into the zeroed ret_ids[0..n) (the
 * backend's add_ids).  reg->lock held. */
int dmr_vm_add_ids(struct dmr_registry *reg, const struct dmr_backend *b, size_t n,
		   uint32_t *ret_ids);

/* A disk's default COW store size per point (the backend's default_cow;
 * 0 where points have no store of their own). */
uint64_t dmr_vm_default_cow(const struct dmr_backend *b, uint64_t disk_bytes);

/* What an opened disk source is, for AddVirtualSystem's checks. */
struct dmr_vm_source {
	bool is_block;  /* else a regular file */
	uint64_t size;  /* bytes */
	bool dmrep_own; /* one of dmrep's own devices (a stable, point or pool device) */
	bool in_use;    /* held open exclusively (mounted, a VM's, LVM's) */
};
/* Probe path (a descriptor's /proc/self/fd name): -EINVAL if it is not a
 * block device or regular file. */
int dmr_vm_source_probe(const char *path, struct dmr_vm_source *ret);

/* Close the sources opened for AddVirtualSystem (-1 skipped), free fds. */
void dmr_vm_fds_close(int *fds, size_t n);

/*
 * Start AddVirtualSystem's job for VM name, recorded as importing (busy
 * lock held: the job takes it over).  fds[i]: disk i's source as the
 * handler opened and judged it (-1: a new disk; a classic one with a
 * source gets an image file made under peer's rules); import_bytes: what
 * the copy will write, for percent_complete.  fds is the job's from now
 * on, also on failure.  On failure the caller still holds the busy lock
 * and the catalog entry.
 */
int dmr_vm_add_start(struct dmr_agent *a, const char *name, enum dmr_peer_class peer, int *fds,
		     size_t n, uint64_t import_bytes, uint64_t *ret_id);

/*
 * RemoveVirtualSystem's device and volume work (busy lock held, reg->lock
 * not): the VM's devices down through its backend, then every volume of
 * its disks and points deleted.  On failure *ret_why (malloc()ed) is the
 * whole message and the catalog entry stays; on 0 the caller deletes it.
 */
int dmr_vm_destroy(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why);

#endif
