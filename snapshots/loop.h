/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/loop.h - loop devices over the pool's (and COW) backing files.
 *
 * dmrep owns its loops outright: they are attached without autoclear, so
 * they survive the agent, and an agent that restarts finds them again by
 * backing file (dmr_loop_find) instead of stacking a second loop on the
 * same file.  Detaching is always explicit.
 *
 * Every function returns 0 or a negative errno; out-parameters are
 * malloc()ed strings ("/dev/loopN", a path) owned by the caller, and are
 * left untouched on failure.
 */
#ifndef DMR_SNAPSHOTS_LOOP_H
#define DMR_SNAPSHOTS_LOOP_H

#include <stdbool.h>

/*
 * Attach file to a free loop device: LOOP_CTL_GET_FREE on /dev/loop-control,
 * then LOOP_CONFIGURE (LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before
 * 5.8).  A free device that another process takes between the two steps
 * (EBUSY) is retried with the next free one.  Direct I/O to the backing
 * file is enabled when its filesystem supports it and silently left off
 * when not (tmpfs before 6.6, 9p, ...).  The logical block size is the
 * kernel's default (512), so devices stacked on the loop keep 512-byte
 * sectors.  No autoclear, no partition scan.
 *
 * read_only opens the file read-only and makes a read-only loop.
 * -ENOENT if file does not exist, -EINVAL if it is not a regular file,
 * -EBUSY if no free loop could be claimed after several tries.
 */
int dmr_loop_attach(const char *file, bool read_only, char **ret_devpath);

/*
 * Find a loop device already attached to file, comparing the backing
 * file's device and inode (LOOP_GET_STATUS64 lo_device/lo_inode) over every
 * bound /sys/block/loop*, so renames and different spellings of the path do
 * not matter.  Only loops over the whole file (offset 0, no size limit)
 * count: a partial view is not one dmrep made.  With several matches the
 * lowest-numbered loop wins.  -ENOENT if there is none.
 */
int dmr_loop_find(const char *file, char **ret_devpath);

/*
 * Like dmr_loop_find, but any loop over file counts, whatever its offset or
 * size limit: for "is this file in use".  Returns 1 if one exists, 0 if not.
 */
int dmr_loop_file_is_attached(const char *file);

/*
 * Detach a loop device (LOOP_CLR_FD).  EBUSY from the kernel is retried a
 * few times.  While anyone else holds the device open (a mount, a dm table,
 * udev's probe) the kernel only marks it to be detached on last close; this
 * waits up to about two seconds for that and returns -EBUSY if the device
 * is still bound then (it stays marked and detaches itself once released).
 * Detaching a loop that is not bound is not an error; -EINVAL if devpath
 * is not a loop device.
 */
int dmr_loop_detach(const char *devpath);

/* Make loop device devpath take its backing file's size now
 * (LOOP_SET_CAPACITY: a file grown since it was attached).  0 or -errno;
 * the device may be in use. */
int dmr_loop_set_capacity(const char *devpath);

/*
 * The backing file of a bound loop device, as the kernel reports it
 * (/sys/block/loopN/loop/backing_file; the kernel appends " (deleted)" to a
 * deleted file).  -ENXIO if the loop is not bound, -EINVAL if devpath is not
 * a loop device.
 */
int dmr_loop_backing_file(const char *devpath, char **ret_file);

#endif
