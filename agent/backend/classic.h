/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/classic.h - VMs on the classic backend: disks stay on their own
 * block devices (or image files on loops), points are `snapshot` targets
 * with their own COW stores (snapshots/classic.h).
 *
 * Devices (every one with a DMREP- UUID):
 *   dmrep-VM:DISK    the stable device: linear over the origin device while
 *                    live, linear over VIEW while recovered (so a failover
 *                    or a revert swaps linear tables only: backend.h)
 *   dmrep-VM:DISK@origin  the disk's origin device, UUID DMREP-origin-VM:DISK,
 *                    hidden: snapshot-origin ORIGIN (its writes are copied
 *                    out to the points); always up with the VM
 *   dmrep-snap-ID    a point (read-only) or a writable view (a failover
 *                    overlay, or a committed layer), UUID DMREP-snap-ID
 *   dmrep-VM:test:DISK  a test failover's view
 * COW stores: STATE/cow/ID.cow, sparse, on loop devices.  IDs come from the
 * registry's id allocator and are recorded before anything is made.
 *
 * ORIGIN is the disk's source, until a failover is committed: then the
 * view the VM ran on becomes the origin of later points and of the origin
 * device (a layer, registry.h), stacked on its point, which stays pinned.
 * Points are taken, and removed, with the origin devices suspended (the
 * snapshot-origin targets), not the stable devices.  An older dmrep's
 * stable device (snapshot-origin ORIGIN itself) is moved onto the stack
 * at activation.
 *
 * Functions are called with the VM's busy lock held (so the VM's fields
 * are stable) and without reg->lock; 0 or a negative errno.
 */
#ifndef DMR_AGENT_CLASSIC_H
#define DMR_AGENT_CLASSIC_H

#include <limits.h>

#include "agent/store/registry.h"
#include "dm/table.h"


bool dmr_vm_is_classic(const struct dmr_vm *vm);

int dmr_classic_dev_name(uint32_t id, char buf[DMR_DM_NAME_SIZE]);
/* /dev/mapper/dmrep-snap-ID */
int dmr_classic_dev_path(uint32_t id, char buf[DMR_DM_PATH_SIZE]);

/* Default COW store size for a disk (a quarter of it, at least 8 MiB). */
uint64_t dmr_classic_default_cow(uint64_t disk_bytes);

/* The device disk i's stable device and new points sit on now. */
int dmr_classic_origin(const struct dmr_vm *vm, size_t i, char buf[PATH_MAX]);

/* Disk i's origin device's name and UUID (uuid may be NULL): -EINVAL for
 * names a VM or disk cannot have. */
int dmr_classic_origin_dm_name(const char *vm, const char *disk, char name[DMR_DM_NAME_SIZE],
			       char uuid[DMR_DM_UUID_SIZE]);
/* The backend's volumes_up: for ids[i] 0 disk i's origin device up over
 * its origin now (made, or reloaded after a commit while nothing sits on
 * it), for a view id the view's device checked (-ENOENT).  All or
 * nothing: on failure the origin devices it made are removed. */
int dmr_classic_volumes_up(const struct dmr_vm *vm, const uint32_t *ids);
/* The stable device's table for disk i: `linear` over the origin device
 * (id 0, -ESTALE while it is over another origin than the catalog's) or
 * over the view dmrep-snap-ID; -ENOENT if that is not up.  Reads only. */
int dmr_classic_stable_table(const struct dmr_vm *vm, size_t i, uint32_t id,
			     struct dmr_table **ret_table);
/* Does the live table t of disk i's stable device show id (0 = live), in
 * the stack?  An older dmrep's snapshot-origin table shows nothing. */
bool dmr_classic_table_shows(const struct dmr_vm *vm, size_t i, const struct dmr_table *t,
			     uint32_t id);

/* AddVirtualSystem: base loops for image files, the stable devices. */
int dmr_classic_vm_create(struct dmr_registry *reg, struct dmr_vm *vm);
/* At start (and after a reboot): attach and activate everything the
 * catalog names that is not active, in dependency order.  Idempotent. */
int dmr_classic_vm_activate(struct dmr_registry *reg, struct dmr_vm *vm);
/* Is dm device `name` one of this classic VM's own: its stable devices,
 * origin devices, test views, or a point's, view's or layer's store
 * device? */
bool dmr_classic_vm_owns(const struct dmr_vm *vm, const char *name);
/* Remove every device of the VM (stable ones first, then the origin
 * devices, then the stores' in reverse order; -EBUSY if one is open),
 * destroy its stores, detach base loops.  The sources stay. */
int dmr_classic_vm_teardown(struct dmr_registry *reg, struct dmr_vm *vm);

/* Can a new point be made: the cap (-EDQUOT) and the state directory's
 * free space for every store to fill (-ENOSPC); ret_why malloc()ed.
 * devs: as for dmr_classic_point_make (disks with a device need no room). */
int dmr_classic_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
			   const char *const *devs, char **ret_why);
/*
 * Check a block device given as a point's COW store: absolute, a block
 * device of at least 1 MiB, not in use (-EBUSY), not one of dmrep's own or
 * a disk of the VM (-EINVAL), no signature unless force (-EEXIST,
 * *ret_what names it).  ret_what may be NULL.
 */
int dmr_classic_cow_device_check(const struct dmr_vm *vm, const char *path, bool force,
				 char **ret_what);
/* A point of every disk at once into stores ids[] (see
 * dmr_classic_snapshot_group); devs (NULL, or one entry per disk, NULL for
 * a store file) names block devices to hold the stores instead. */
int dmr_classic_point_make(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			   const char *const *devs, unsigned suspend_flags,
			   uint64_t *ret_suspend_usec);
/* Writable views of point `point` in stores ids[]: devices names[i] /
 * uuids[i], or dmrep-snap-ID when names is NULL.  On failure none stays. */
int dmr_classic_views_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			   const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE],
			   const char (*uuids)[DMR_DM_UUID_SIZE]);
/* Remove stores ids[0..n) (0 entries skipped): their dmrep-snap devices,
 * with the VM's origin devices suspended around it, then the files. */
int dmr_classic_delete(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids);
/* Is the point a committed layer's base (never removed)? */
bool dmr_classic_point_pinned(const struct dmr_vm *vm, uint64_t point);

/* Read the COW use of every point; mark Invalid/Overflowed points not
 * valid (under reg->lock, saved), warn once past DMR_BACKEND_WARN_PCT.
 * Takes reg->lock itself.  The classic backend's refresh. */
void dmr_classic_refresh(struct dmr_registry *reg, const char *vm_name);

#endif
