/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/backend/backend.h - the one small interface behind which a VM's storage
 * backend sits, so that points, failover and recovery are written once:
 *
 *   thin      thin volumes and snapshots in the agent's pool
 *             (snapshots/thin.h); ids are thin ids
 *   classic   snapshot targets in place on the VM's own block devices
 *             (agent/backend/classic.h); ids are COW store numbers
 *
 * A VM's disks, points and views are named by ids from the registry's
 * allocator (dmr_reg_alloc_vol_ids).  Called with the VM's busy lock held
 * and without reg->lock unless said otherwise; 0 or a negative errno.
 */
#ifndef DMR_AGENT_BACKEND_H
#define DMR_AGENT_BACKEND_H

#include "agent/store/registry.h"
#include "dm/table.h"
#include "snapshots/delta.h"

/* A store that fills (the pool, a classic point's COW store) is warned
 * about once this full: one mark for every backend and the monitor. */
#define DMR_BACKEND_WARN_PCT 80u

/* What an operation run inside a job tells the job as it goes (the
 * engine fills it in from its job; a backend never sees one). */
struct dmr_backend_report {
	void *userdata;
	/* A step done, named as the job's "steps" list shows it. */
	void (*step)(void *userdata, const char *name, uint64_t usec);
	/* Bytes imported so far, over every disk. */
	void (*imported)(void *userdata, uint64_t bytes);
	/* Why it failed: recorded as dmr_job_fail(job, negerrno, "%s", what). */
	void (*fail)(void *userdata, int negerrno, const char *what);
};

struct dmr_backend {
	const char *name;
	/* The id that means disk i's live volume. */
	uint32_t (*live_id)(const struct dmr_vm *vm, size_t i);
	/* The stack.  A stable device (/dev/dmrep/VM/DISK) is one `linear`
	 * target over a hidden, always-active device of the volume it shows
	 * (thin: the live volume or an overlay, dmrep-thin-ID; classic: the
	 * disk's origin device, a view or a layer), so that a failover's
	 * guest pause swaps only linear tables: retargeting a device whose
	 * own table is `thin` or `snapshot-origin` waits on the pool's worker
	 * and an RCU grace period inside the window (issue 13 measured 8-16x
	 * the cost of a linear swap).
	 *
	 * volumes_up: bring up the devices that disk i's stable table for
	 * ids[i] stacks on, every disk, in one group (one udev wait, not one
	 * per device); those already up are left as they are.  All or
	 * nothing: on failure the ones it made are removed.  Called before
	 * any stable table is built for ids, outside the guest pause. */
	int (*volumes_up)(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids);
	/* The table that makes disk i's stable device show id: `linear` over
	 * id's device, which volumes_up brought up (-ENOENT if it is not up).
	 * Reads only. */
	int (*stable_table)(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			    uint32_t id, struct dmr_table **ret_table);
	/* Does disk i's stable device's live table t show id, in the stack
	 * above (linear over id's device)?  A table of an older dmrep (the
	 * volume's own target in the stable device) shows nothing here:
	 * activate moves such devices onto the stack. */
	bool (*table_shows)(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
			    const struct dmr_table *t, uint32_t id);
	/* Writable views of point `point`, one per disk, into new ids[]:
	 * activated as names[i]/uuids[i] when names is not NULL.  All or
	 * nothing. */
	int (*views_make)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			  const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE], const char (*uuids)[DMR_DM_UUID_SIZE]);
	/* Remove the volumes ids[0..n) (points, views; 0 and missing ones
	 * skipped), their own devices first (a stable device still on one
	 * makes it -EBUSY).  Devices named after a view (test views) go
	 * first, by the caller. */
	int (*remove)(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		      const uint32_t *ids);
	/* Bracket the making of a point (point_txn_begin, points_make,
	 * point_txn_end): *ret_new is what the pending point records so that
	 * recovery can tell whether it was made (thin: the pool transaction
	 * id it will carry, from dmr_reg_txn_begin; classic: 1, a pending
	 * classic point is resolved by whether its devices exist).  end is
	 * called once after every begin, with whether the point was made;
	 * it ends the pool transaction (thin) or does nothing (classic). */
	void (*point_txn_begin)(struct dmr_registry *reg, uint64_t *ret_old, uint64_t *ret_new);
	int (*point_txn_end)(struct dmr_registry *reg, bool done, uint64_t new_tid);
	/* A consistency group: a point of every disk at once into the new
	 * ids[] (recorded as pending before), the disks suspended together
	 * with suspend_flags (DMR_DM_SKIP_LOCKFS when the guest is frozen)
	 * and *ret_suspend_usec how long.  thin: snapshots in the pool
	 * transaction old_tid -> new_tid; classic: snapshot targets with
	 * stores in cow_devs (NULL, or one per disk, NULL entries: a store
	 * file).  All or nothing: on failure no device or volume of ids[]
	 * stays (a thin pool transaction not moved). */
	int (*points_make)(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			   const char *const *cow_devs, uint64_t old_tid, uint64_t new_tid,
			   unsigned suspend_flags, uint64_t *ret_suspend_usec);
	/* Is there room for one more point, checked before it is recorded:
	 * thin: the pool is writable and has 1/32 of its data and 1/16 of
	 * its metadata left; classic: the per-VM cap (-EDQUOT) and the state
	 * directory's room for the stores not on cow_devs (-ENOSPC).  On
	 * failure *ret_why (malloc()ed, may stay NULL) says why in one line.
	 * Reads only (thin: the pool's status). */
	int (*point_room)(struct dmr_registry *reg, const struct dmr_vm *vm,
			  const char *const *cow_devs, char **ret_why);
	/* Check block device path as the COW store of a point's disk
	 * (errors as dmr_classic_cow_device_check; *ret_what names a found
	 * signature, may be NULL).  NULL: the backend takes no cow_devices
	 * (thin: points live in the pool). */
	int (*cow_device_check)(const struct dmr_vm *vm, const char *path, bool force,
				char **ret_what);
	/* Add the backend's fields to point pt's API object o
	 * (ListReplicationPoints; classic: cow_used_percent).  Called with
	 * reg->lock held; only adds to o. */
	void (*point_api_extras)(const struct dmr_vm *vm, const struct dmr_point *pt,
				 struct json_object *o);
	/* Is the point held by the backend itself and never removed (classic:
	 * a committed layer's base)?  Called with or without reg->lock. */
	bool (*point_pinned)(const struct dmr_vm *vm, uint64_t point);
	/* Bring what the registry knows of VM vm_name's points up to date
	 * with the kernel (classic: COW use, invalid points marked not valid
	 * and saved; thin: nothing).  Takes reg->lock itself; best effort,
	 * logs what fails. */
	void (*refresh)(struct dmr_registry *reg, const char *vm_name);
	/* CommitFailover, once its intent is recorded and before the volumes
	 * it drops are removed: make the overlays the VM runs on
	 * (vm->overlay_ids) its disks for good.  ret_ids[i] (one per disk)
	 * gets the id the catalog records as disk i's live volume
	 * (vm->disks[i].thin_id) with the commit's last save.  thin: nothing
	 * changes yet, ret_ids are the overlays (the old live volumes are
	 * removed by the ids the catalog still holds); classic: the overlays
	 * become a new layer, saved at once, and the stable devices move from
	 * `linear VIEW` onto it (the live id: linear over the disk's origin
	 * device, reloaded as snapshot-origin LAYER), the guest
	 * running (same data); ret_ids stay 0.  Idempotent: after a crash
	 * recovery calls it again; on failure the intent stays for that. */
	int (*commit)(struct dmr_registry *reg, const struct dmr_vm *vm, uint32_t *ret_ids);

	/* Is dm device `name` one of the VM's own: its stable devices, its
	 * test views, and the devices of its points, views and layers where
	 * the backend has such?  Names only, no dm call: recovery asks it of
	 * every DMREP- device it finds.  Caller keeps vm (reg->lock or the
	 * VM's busy lock). */
	bool (*owns)(const struct dmr_vm *vm, const char *name);

	/* Replication between hosts (docs/stream.md).  NULL in a backend
	 * whose VMs cannot be sent or received (classic: 32770, why in
	 * stream_unsupported).
	 *
	 * point_extents: disk i's extents of point `point` (base 0: every
	 * mapped block; else what differs from point `base`), in blocks of
	 * *ret_block_bytes (snapshots/delta.h).  Reads only.
	 * point_read_up: point's volume of disk i as a read-only block
	 * device (its own hidden DMREP- device), its path into path;
	 * point_read_down: that device removed (not there: 0).  The volume
	 * itself is never written. */
	int (*point_extents)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t base,
			     uint64_t point, size_t i, struct dmr_extent **ret_ext, size_t *ret_n,
			     uint64_t *ret_block_bytes);
	int (*point_read_up)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			     size_t i, char path[DMR_DM_PATH_SIZE]);
	int (*point_read_down)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			       size_t i);
	/* receive_make: the volumes a received point is written into, new
	 * ids[] (one per disk, recorded by the caller before): empty volumes
	 * of the disks' sizes (base 0) or snapshots of point base's volumes
	 * (never written themselves), in one pool transaction, each up as a
	 * writable hidden device, paths into paths[].  All or nothing.
	 * receive_done: their devices removed once the data is durable (the
	 * volumes stay: they are the point's).  Aborting is ->remove. */
	int (*receive_make)(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t base,
			    const uint32_t *ids, char (*paths)[DMR_DM_PATH_SIZE]);
	int (*receive_done)(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids);
	/* Why point_extents is NULL, one line (NULL where it is not). */
	const char *stream_unsupported;

	/* The VM's storage lives in the agent's pool (thin):
	 * nothing of it is reconciled or recovered while the pool is down,
	 * and work on it is refused while the pool is absent or down. */
	bool needs_pool;
	/* discard, doomed_remove and settle are crash and reboot recovery's
	 * (agent/engine/recovery.c): called once at start, before the server
	 * and any job, so with no lock held; each logs its own failures (the
	 * agent goes on).
	 *
	 * discard: a creation (AddVirtualSystem) that a crash interrupted
	 * (vm->importing), undone: every device and volume made for the VM
	 * removed, best effort; its sources are untouched (thin copies them,
	 * classic uses them in place).  The caller deletes the record. */
	void (*discard)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Remove the volumes of vm->doomed (points the catalog dropped before
	 * a crash) and take the removed ones out of it (missing ones count as
	 * removed; classic: all or none).  True if vm->doomed changed (the
	 * caller saves). */
	bool (*doomed_remove)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Settle point p, left pending (p->pending_tid) by a crash while it
	 * was made: 1 if it was made (thin: the pool's transaction id
	 * pool_tid reached pending_tid; classic: every one of its devices
	 * exists), else 0 once whatever volumes of it exist are removed
	 * (best effort).  The catalog is the caller's to update. */
	int (*settle)(struct dmr_registry *reg, const struct dmr_vm *vm,
		      const struct dmr_point *p, uint64_t pool_tid);
	/* After RepairPool brought the pool back on metadata that holds the
	 * volumes ids[0..n) (ascending) and may have lost the transactions
	 * after its last commit: the VM's catalog made to match it.  A point
	 * with a volume gone is dropped (those of its volumes that remain go
	 * to vm->doomed, for the caller to remove), so is a pending point
	 * unless all its volumes are there (then it is kept); doomed ids that
	 * are gone are forgotten; a live volume, overlay or test view that is
	 * gone cannot be brought back: logged once (its data is lost).  True
	 * if the catalog changed (the caller saves).  Memory only, reg->lock
	 * held; classic: nothing (its VMs are not in the pool). */
	bool (*repaired)(struct dmr_vm *vm, const uint32_t *ids, size_t n);
	/* May RemoveVirtualSystem remove the VM (force: the user's --force)?
	 * 0, or -DMR_E_STATE and *ret_why (malloc()ed) saying why not and
	 * what to do first.  Caller holds reg->lock; no dm call. */
	int (*may_remove)(const struct dmr_vm *vm, bool force, char **ret_why);
	/* AddVirtualSystem's disks, for a VM recorded as importing: fds[i]
	 * is disk i's source as the handler opened and judged it (-1: a new
	 * empty disk); thin: volumes in the pool (one transaction, the VM's
	 * import_tid saved first), the stable devices, each source copied
	 * in; classic: loops over image files, the stable devices on the
	 * disks in place.  Steps, progress and the failure go to rep.  All
	 * or nothing: on failure no device or volume it made is left.
	 * Busy lock held, not reg->lock. */
	int (*create)(struct dmr_registry *reg, struct dmr_vm *vm, const int *fds,
		      const struct dmr_backend_report *rep);
	/* Bring the VM's devices up as the catalog has them (at start, after
	 * a reboot): each one that is not there is activated, stable devices
	 * on the stack above; one that is, is left as it is, but a stable
	 * device an older dmrep made with the volume's own table is moved
	 * onto the stack (same volume, one table swap with a flush, the
	 * guest running); one under its name with another UUID is left
	 * alone (-EEXIST).  Goes on past a failure (each is logged) and
	 * returns the first.  Idempotent.  Busy lock held (or recovery,
	 * before the server runs), not reg->lock. */
	int (*activate)(struct dmr_registry *reg, struct dmr_vm *vm);
	/* Take the VM's devices down: thin, its stable devices and the
	 * volumes' devices below them (the volumes stay: ->remove deletes
	 * them); classic, every device of it, its COW
	 * stores destroyed and its base loops detached (the disks stay).
	 * Stops at the first device it cannot remove: -EEXIST (another
	 * UUID), -EBUSY (open: the VM runs) or the errno, and *ret_why
	 * (malloc()ed; ret_why may be NULL) says so; what went before stays
	 * gone.  Busy lock held, not reg->lock. */
	int (*teardown)(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why);

	/* AddVirtualSystem's questions, asked of a backend by its name
	 * before any VM has it (dmr_backend_named).
	 *
	 * in_place: the disks live on their sources (classic): each source
	 * is opened read-write, a disk that does not exist yet becomes an
	 * image file at its path, two disks may not be one file or device,
	 * and the VM takes cow_size and max_points.  Else (thin) the sources
	 * are only read, copied into new volumes. */
	bool in_place;
	/* add_room: how many bytes an import may write into *ret_free (thin:
	 * the pool's free data bytes; classic: UINT64_MAX, nothing is
	 * copied).  Reads only; the caller has checked needs_pool's pool is
	 * up.  -errno if it cannot tell, *ret_free untouched. */
	int (*add_room)(struct dmr_registry *reg, uint64_t *ret_free);
	/* add_ids: the volume ids of a new VM's n disks into ret_ids[0..n),
	 * which the caller has zeroed (thin: n new ids from
	 * dmr_reg_alloc_vol_ids; classic: nothing written, a disk in place
	 * has no volume).  reg->lock held; on failure ret_ids is not to be
	 * used. */
	int (*add_ids)(struct dmr_registry *reg, size_t n, uint32_t *ret_ids);
	/* default_cow: the COW store size an in_place backend gives each
	 * point of a disk of disk_bytes when cow_size is not set (classic: a
	 * quarter of the disk, at least 8 MiB, in 4 KiB units); 0 where
	 * points take no store of their own (thin). */
	uint64_t (*default_cow)(uint64_t disk_bytes);
};

/* The two backends (agent/backend/thin.c, agent/backend/classic.c). */
extern const struct dmr_backend dmr_backend_thin;
extern const struct dmr_backend dmr_backend_classic;

/* The VM's backend; the only function that reads vm->backend. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm);

/* The backend named name ("thin", "classic"), NULL for any other name:
 * AddVirtualSystem's, before there is a VM to ask dmr_backend_of. */
const struct dmr_backend *dmr_backend_named(const char *name);

/* Make every stable device of the VM (disk i's) show id ids[i], whatever
 * it shows now (through its backend's volumes_up, table_shows and
 * stable_table: an older dmrep's table moves onto the stack too), and
 * leave none suspended or with an inactive table.  Not inside a guest
 * pause: it suspends with a flush.  Goes on past a failing disk; returns
 * the first error (-ENOENT for a device that does not exist). */
int dmr_backend_retarget(struct dmr_registry *reg, const struct dmr_vm *vm, const uint32_t *ids);

/* The pool's repair (agent/engine/pool.c) reloads every volume device in
 * the agent's pool: is the dm device of this UUID one (thin: DMREP-thin-ID),
 * and of which thin id?  Needed because a failed pool's thin devices show
 * "Fail" for their table too.  Names only, no dm call. */
bool dmr_backend_pool_volume(const char *uuid, uint32_t *ret_id);

#endif
