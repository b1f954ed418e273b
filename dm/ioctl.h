/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/ioctl.h - raw device-mapper ioctls on /dev/mapper/control, for the one
 * place where libdevmapper does not fit: the guest-paused window of a
 * failover, where every stable device is suspended and resumed at once, each
 * from its own thread.
 *
 * Why not libdevmapper there: it keeps process-wide state (the control fd,
 * the log callback, udev cookie semaphores) and is not safe to call from
 * several threads at once (cryptsetup's dm backend serialises it for the
 * same reason); dm/dm.c serialises every task under one lock, which would
 * make the window grow linearly with the number of disks.  The kernel's DM
 * ioctls themselves are safe in parallel on separate descriptors.
 *
 * Contract:
 *  - a dmr_dm_ctl is one open descriptor of /dev/mapper/control, used by one
 *    thread at a time; open it before the window (it allocates), use it in
 *    the window (no allocation, no udev, no logging on success);
 *  - suspend and resume are DM_DEV_SUSPEND with and without
 *    DM_SUSPEND_FLAG; a resume here makes no udev cookie: the caller's
 *    devices already exist, and a table swap changes no device node
 *    (udev still sees a change uevent, which the agent does not wait for);
 *  - 0 or a negative errno; nothing is logged above debug level.
 */
#ifndef DMR_DM_IOCTL_H
#define DMR_DM_IOCTL_H

struct dmr_dm_ctl;

int dmr_dm_ctl_open(struct dmr_dm_ctl **ret_ctl);
void dmr_dm_ctl_close(struct dmr_dm_ctl *ctl);

/* flags: DMR_DM_NOFLUSH and/or DMR_DM_SKIP_LOCKFS (dm/dm.h). */
int dmr_dm_ctl_suspend(struct dmr_dm_ctl *ctl, const char *name, unsigned flags);
/* Makes the inactive table live if one is loaded, else just resumes. */
int dmr_dm_ctl_resume(struct dmr_dm_ctl *ctl, const char *name);

#endif
