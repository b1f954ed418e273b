/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/probe.h - safety probes run before dmrep writes to a device or
 * file it was handed: what is it, does it carry data, is someone using it.
 *
 * Every function returns 0 or a negative errno; out-parameters are left
 * untouched on failure.
 */
#ifndef DMR_SNAPSHOTS_PROBE_H
#define DMR_SNAPSHOTS_PROBE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Probe a block device or regular file with libblkid for any superblock
 * (filesystem, LVM2_member, linux_raid_member, swap, crypto_LUKS, ...) or
 * partition table.  Returns 0 with *ret_what = NULL if nothing was found,
 * or 0 with *ret_what = a malloc()ed description if something was:
 * "ext4 filesystem", "LVM2_member (raid)", "swap (other)",
 * "dos partition table", "ext4 filesystem, dos partition table".
 * Signatures that contradict each other (libblkid's "ambivalent" result)
 * count as found: "ambivalent signatures: ext4 filesystem, swap (other)".
 * A signature whose checksum is wrong is not reported (libblkid's default).
 * An empty file is clean.  Negative errno if the path cannot be opened or
 * read.
 */
int dmr_probe_signatures(const char *path, char **ret_what);

/*
 * Is path in use?  Returns -EBUSY if so, 0 if not, another negative errno
 * if it cannot be checked (-ENOENT, -EINVAL for neither a block device nor a
 * regular file).
 *
 * A block device is in use when an exclusive open (O_EXCL) fails with EBUSY:
 * it is mounted, swapped on, held by a dm or md device (or a partition of
 * it is), or opened exclusively by another program.  A plain, non-exclusive
 * opener (a program that just open()s the device) cannot be seen this way.
 *
 * A regular file is in use when any loop device is attached to it.  Other
 * processes holding the file open are not detected: Linux offers no cheap,
 * reliable way to ask (short of walking every /proc/PID/fd), and an image
 * a hypervisor uses is expected to be locked by the hypervisor itself.
 */
int dmr_probe_in_use(const char *path);

/*
 * May path be taken over as storage dmrep writes (a pool's data or
 * metadata, a COW store)?  -EBUSY if it is in use (dmr_probe_in_use); then,
 * unless force, -EEXIST if it holds a signature, its description in
 * *ret_what (malloc()ed; ret_what may be NULL).  0 if free; another
 * negative errno if it cannot be checked.
 */
int dmr_probe_unused_blank(const char *path, bool force, char **ret_what);

/*
 * What is at path: *ret_is_block is true for a block device, false for a
 * regular file; *ret_size_bytes is the device size (BLKGETSIZE64) or the
 * file size.  Symlinks are followed (/dev/disk/by-id/..., /dev/dmrep/...).
 * -ENOENT if absent, -EINVAL for anything else (character device,
 * directory, fifo, socket).  Either out-parameter may be NULL.
 */
int dmr_probe_path_kind(const char *path, bool *ret_is_block, uint64_t *ret_size_bytes);
/* The same of an open descriptor (fstat; no symlink to follow). */
int dmr_probe_fd_kind(int fd, bool *ret_is_block, uint64_t *ret_size_bytes);

#endif
