/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/dm.h - device operations over libdevmapper.
 *
 * Contract:
 *  - every function returns 0 or a negative errno; libdevmapper's 1/0 never
 *    leaves dm/dm.c, where one function (task_run) runs every task: it owns the
 *    task's lifetime, the udev cookie, errno, a process-wide lock and debug
 *    logging;
 *  - out-parameters are ret_-prefixed, last, and untouched on failure;
 *  - dm/ knows device-mapper and nothing of VMs or points;
 *  - udev cookies are used on create, resume, remove and rename (so the caller
 *    returns only once udev has made or removed /dev/mapper nodes and
 *    links), never on reload, suspend or message;
 *  - a device that dmrep creates always has a UUID starting DMR_UUID_PREFIX;
 *    dmr_dm_create refuses any other UUID.  dmr_dm_owned() is the check a
 *    caller makes before touching a device it did not just create.
 *
 * Thread safety: libdevmapper keeps process-wide state (log callback, udev
 * cookie semaphores, the control fd); all tasks are serialised by one lock in
 * dm/dm.c.  The raw-ioctl path (dm/ioctl.h, dm/batch.h) exists for where
 * parallel suspends matter: the failover window and a point's stall.
 */
#ifndef DMR_DM_DM_H
#define DMR_DM_DM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dm/name.h"
#include "dm/table.h"

/* Flags for dmr_dm_create / dmr_dm_load. */
#define DMR_DM_READONLY (1u << 0)
/* Flags for dmr_dm_suspend. */
#define DMR_DM_NOFLUSH (1u << 1)   /* keep queued I/O queued, don't flush it */
#define DMR_DM_SKIP_LOCKFS (1u << 2) /* don't freeze a filesystem on top */

struct dmr_dm_info {
	bool exists;
	bool suspended;
	bool live_table;
	bool inactive_table;
	bool read_only;
	int32_t open_count;
	uint32_t major;
	uint32_t minor;
	uint32_t event_nr;
	uint32_t target_count;
	char name[DMR_DM_NAME_SIZE];
	char uuid[DMR_DM_UUID_SIZE];
};

/* Global setup: udev sync on (default) or off (DM_DISABLE_UDEV=1 honoured by
 * libdevmapper itself).  Idempotent; called implicitly by every operation. */
int dmr_dm_init(void);

/* Does the kernel know dm at all (control node present, version ioctl works)? */
int dmr_dm_driver_version(char *buf, size_t len);

/* Create name with uuid (must start with DMR_UUID_PREFIX) and table, active. */
int dmr_dm_create(const char *name, const char *uuid,
		  const struct dmr_table *table, unsigned flags);
/*
 * Create n devices (names[i], uuids[i], tables[i]; flags as dmr_dm_create)
 * with one udev cookie and one wait for all of them, not one per device.
 * All or nothing: every name, table and UUID (DMR_UUID_PREFIX, else
 * -EPERM) is checked before the first task, and on a failure the devices
 * it made are removed again (after udev is done with them) and the first
 * error is returned.
 */
int dmr_dm_create_group(size_t n, const char *const *names, const char *const *uuids,
			const struct dmr_table *const *tables, unsigned flags);
/*
 * Remove n devices (NULL entries skipped) with one udev cookie per pass
 * and one wait each.  Best effort: every device is tried, a missing one
 * counts as removed, a busy one is tried again up to `retries` more
 * passes 100 ms apart (as dmr_dm_remove); the first error remains.
 */
int dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries);
/* Load table as name's inactive table (RELOAD); the live table is untouched. */
int dmr_dm_load(const char *name, const struct dmr_table *table, unsigned flags);
/* Drop an inactive table loaded with dmr_dm_load (DM_DEVICE_CLEAR). */
int dmr_dm_clear(const char *name);
int dmr_dm_suspend(const char *name, unsigned flags);
/* Resume: makes a loaded inactive table live.  Waits for udev. */
int dmr_dm_resume(const char *name);
/* Resume, and once more if that fails: a resume that fails after loading
 * the inactive table leaves the old table live, and a second resume brings
 * it back (as lvm2 and multipath do).  Used on rollback paths, where the
 * inactive table has been cleared first. */
int dmr_dm_resume_retry(const char *name);
/* Remove; retries up to `retries` times, 100 ms apart, while busy (EBUSY).
 * Never forces (no deferred remove, no error-table replacement). */
int dmr_dm_remove(const char *name, unsigned retries);
/* Rename (used to move a committed overlay into a stable name). */
int dmr_dm_rename(const char *name, const char *new_name);

/* Info; a device that does not exist gives 0 with ret_info->exists false. */
int dmr_dm_info(const char *name, struct dmr_dm_info *ret_info);
/* 0 if the device exists and its UUID starts with DMR_UUID_PREFIX,
 * -ENOENT if it does not exist, -EPERM if it is not ours. */
int dmr_dm_owned(const char *name);
/* Is name the device with exactly this UUID?  0 if so, -ENOENT if no
 * device has the name, -EEXIST if one has it under another UUID (a
 * device the caller does not mean: leave it alone).  The prefix alone
 * (dmr_dm_owned) says "dmrep's", not "this VM's disk": callers check this
 * before they remove, reload or suspend a device they did not just make. */
int dmr_dm_check_uuid(const char *name, const char *uuid);

/* Live (or, with inactive, the inactive) table, and status lines. */
int dmr_dm_table(const char *name, bool inactive, struct dmr_table **ret_table);
int dmr_dm_status(const char *name, struct dmr_table **ret_status);
/* The status of name's single target, which must be of type (else
 * -EPROTO): its params ("" if none), a new string. */
int dmr_dm_target_status(const char *name, const char *type, char **ret_params);

/* Send a target message (e.g. "create_snap 3 1" to a thin pool).  The
 * response, if the target gives one, is returned in *ret_response (may be
 * NULL if none wanted); free() it. */
int dmr_dm_message(const char *name, uint64_t sector, const char *message,
		   char **ret_response);

struct dmr_dm_entry {
	char name[DMR_DM_NAME_SIZE];
	char uuid[DMR_DM_UUID_SIZE];
	uint32_t major, minor;
};
/* All dm devices whose UUID starts with uuid_prefix (NULL or "" = all),
 * sorted by name.  *ret_entries is malloc()ed. */
int dmr_dm_list(const char *uuid_prefix, struct dmr_dm_entry **ret_entries,
		size_t *ret_count);

/* Does the kernel have this target type loaded ("thin-pool", "snapshot")? */
int dmr_dm_has_target(const char *target_type);

/* /dev/mapper/NAME into buf. */
int dmr_dm_path(const char *name, char *buf, size_t len);

#endif
