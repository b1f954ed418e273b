/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/ident.h - what a disk *is*, as opposed to what it is called.
 *
 * Kernel names (/dev/loopN, /dev/sdX, dm minors) are handed out at boot in
 * whatever order devices appear: after a reboot the path a disk was added
 * by can name another device, even the pool's own metadata.  An identity is
 * read once, when a disk (or the pool's device) is added, stored by the
 * caller, and compared with what is at the path before every activation.
 *
 * What counts, strongest first:
 *   a regular file      its inode (and size)
 *   a loop device       its backing file's path and inode
 *   a dm device         its UUID (LVM's "LVM-...", cryptsetup's "CRYPT-...")
 *   a disk              its WWID/WWN and serial (sysfs, udev), for a
 *                       partition also its number and start
 *   anything else       its /dev/disk/by-id names
 * and always the kind and the size.  A device with none of the strong
 * ones (a ramdisk, an nbd) has a weak identity: kind and size only.
 *
 * Every function returns 0 or a negative errno; out-parameters are left
 * untouched on failure.
 */
#ifndef DMR_SNAPSHOTS_IDENT_H
#define DMR_SNAPSHOTS_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on what is recorded (and accepted from a state file). */
#define DMR_IDENT_BY_ID_MAX 16
#define DMR_IDENT_STR_MAX 4096

struct dmr_ident {
	bool is_block;
	uint64_t size_bytes;
	uint64_t inode;         /* regular file; 0 for a block device */
	char *loop_file;        /* loop device: its backing file, or NULL */
	uint64_t loop_inode;
	char *dm_uuid;          /* dm device with a UUID, or NULL */
	char *wwid;             /* disk (or a partition's disk), or NULL */
	char *serial;
	uint32_t part_nr;       /* partition: its number (0: not one) */
	uint64_t part_start;    /* and first sector */
	size_t n_by_id;
	char **by_id;           /* names under /dev/disk/by-id, sorted */
	uint32_t major, minor;  /* when read; informational, never compared */
};

void dmr_ident_done(struct dmr_ident *id);
void dmr_ident_free(struct dmr_ident *id);

/* Read the identity of what is at path now (symlinks followed).
 * *ret is overwritten (call dmr_ident_done on it later). */
int dmr_ident_read(const char *path, struct dmr_ident *ret);

/* Does the identity have anything stronger than kind and size? */
bool dmr_ident_strong(const struct dmr_ident *id);

/*
 * Is `now` the same disk as `rec` (recorded when it was added)?  0 if so;
 * -ESTALE if not, with *ret_why (may be NULL) a malloc()ed sentence
 * saying what differs ("it is a loop over /x/pool.meta, not over
 * /x/img.raw").  Pure: no I/O.
 */
int dmr_ident_match(const struct dmr_ident *rec, const struct dmr_ident *now, char **ret_why);

/* A short description for messages: "a loop over /x/img (inode 12)",
 * "dm device LVM-...", "wwid naa.5000...", "a 1048576-byte block device".
 * malloc()ed. */
int dmr_ident_describe(const struct dmr_ident *id, char **ret);

/* Deep copy. */
int dmr_ident_copy(const struct dmr_ident *src, struct dmr_ident *ret);

#endif
