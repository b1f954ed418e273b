/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/classic.h - the classic backend's dm pieces: points in place on
 * an existing block device with the kernel's `snapshot` target.
 *
 *   origin device   snapshot-origin ORIGIN      (writes copy out to points;
 *                                                the stable device is
 *                                                linear ORIGINDEV 0 above it)
 *   point           snapshot ORIGIN COW P 8     (read-only device)
 *   writable view   snapshot POINTDEV COW P 8   (stacked on the point, so
 *                                                the point is never written)
 *   failover        the stable device becomes   linear VIEWDEV 0
 *
 * Each COW store is a sparse file attached to a loop device.  Knows dm
 * devices and files, nothing of VMs.  Every function returns 0 or a
 * negative errno; out-parameters are untouched on failure.
 */
#ifndef DMR_SNAPSHOTS_CLASSIC_H
#define DMR_SNAPSHOTS_CLASSIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dm/status.h"
#include "dm/table.h"

/* 4 KiB chunks: a 4 KiB write to the origin copies 4 KiB per point. */
#define DMR_CLASSIC_CHUNK_SECTORS 8u

/*
 * A new, empty COW store: file is created (or truncated: a leftover of an
 * operation the catalog forgot) sparse, `bytes` long, and attached to a
 * loop device.  An all-zero store is what the kernel formats as a new
 * persistent snapshot.  ret_dev gets "/dev/loopN" (malloc()ed).
 */
int dmr_cow_create(const char *file, uint64_t bytes, char **ret_dev);
/*
 * A new COW store on a given block device instead: its first 64 KiB are
 * zeroed (the kernel then formats a new store; it zeroes the first
 * metadata area itself) and file becomes a symlink to device, the record
 * of the store.  The caller has checked the device (not in use, no
 * signature it may not overwrite).  ret_dev gets device (malloc()ed).
 */
int dmr_cow_link_device(const char *file, const char *device, char **ret_dev);
/* The block device of an existing store: the loop over a store file
 * (attached if none is), or the device a store symlink names. */
int dmr_cow_attach(const char *file, char **ret_dev);
/* Forget a store: a file's loops are detached and the file unlinked; a
 * device store's symlink is unlinked (the device is left as it is).  A
 * missing file is fine. */
int dmr_cow_destroy(const char *file);
/* Bytes of file not allocated yet (what the store may still grow by). */
int dmr_cow_unallocated(const char *file, uint64_t *ret_bytes);

int dmr_classic_origin_table(const char *origin_dev, uint64_t sectors,
			     struct dmr_table **ret_table);
int dmr_classic_snap_table(const char *origin_dev, const char *cow_dev, uint64_t sectors,
			   struct dmr_table **ret_table);
/* The stable device over a writable view: `linear VIEWDEV 0`. */
int dmr_classic_view_table(const char *view_dev, uint64_t sectors, struct dmr_table **ret_table);
/* Is t a single snapshot-origin target? */
bool dmr_classic_table_is_origin(const struct dmr_table *t);
/* Is t a single linear target at offset 0 on device maj:min? */
bool dmr_classic_table_is_view_of(const struct dmr_table *t, uint32_t maj, uint32_t min);

/*
 * A consistency group of classic snapshots: the stable devices stable[0..n)
 * (NULL entries are skipped; several disks may share none) are suspended
 * together, in parallel (dm/batch.h; lockfs and flush unless suspend_flags
 * says otherwise), every snapshot device names[i] is created read-only
 * with uuids[i] and tables[i], all with one udev wait
 * (dmr_dm_create_group; the kernel ties a snapshot to its origin when the
 * table is loaded, so the origin is quiet then), and the stable devices
 * resume in parallel.  On failure the snapshots made are removed while the
 * origins are still suspended, and every origin resumes (twice if the
 * first resume fails).  ret_suspend_usec (may be NULL) gets the stall,
 * from the first suspend to the last resume, on failure too.
 */
int dmr_classic_snapshot_group(size_t n, const char *const *stable, const char *const *names,
			       const char *const *uuids, struct dmr_table *const *tables,
			       unsigned suspend_flags, uint64_t *ret_suspend_usec);

/*
 * Remove snapshot devices names[0..n) (missing or not dmrep's: skipped),
 * with the stable devices stable[0..ns) suspended around it, as the kernel
 * wants for unloading a snapshot of an origin that is being written.
 */
int dmr_classic_snap_remove(size_t ns, const char *const *stable, size_t n,
			    const char *const *names);

/* Status of a snapshot device. */
int dmr_classic_snap_status(const char *name, struct dmr_snapshot_status *ret);

/* Is t, as the kernel reports it, a single snapshot-origin target over
 * device maj:min (the whole device, from sector 0)? */
bool dmr_classic_table_is_origin_of(const struct dmr_table *t, uint32_t maj, uint32_t min);

#endif
