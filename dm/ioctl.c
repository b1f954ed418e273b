/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dm/ioctl.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/log.h"
#include "dm/dm.h"
#include "dm/name.h"

/* A suspend or resume carries no payload; the kernel still wants room for
 * a reply (the event number, and for resume a possible uevent cookie). */
#define CTL_BUF_SIZE 16384

struct dmr_dm_ctl {
	int fd;
	union {
		struct dm_ioctl io;
		char raw[CTL_BUF_SIZE];
	} buf;
};

int dmr_dm_ctl_open(struct dmr_dm_ctl **ret_ctl)
{
	struct dmr_dm_ctl *ctl;

	if (!ret_ctl)
		return -EINVAL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
	if (ctl->fd < 0) {
		int r = -errno;

		log_debug_errno(r, "dm ctl: open /dev/mapper/control: %m");
		free(ctl);
		return r;
	}
	*ret_ctl = ctl;
	return 0;
}

void dmr_dm_ctl_close(struct dmr_dm_ctl *ctl)
{
	if (!ctl)
		return;
	if (ctl->fd >= 0)
		close(ctl->fd);
	free(ctl);
}

static int ctl_suspend_resume(struct dmr_dm_ctl *ctl, const char *name, uint32_t flags)
{
	struct dm_ioctl *io;
	size_t n;

	if (!ctl || dmr_name_dm_valid(name) < 0)
		return -EINVAL;
	n = strlen(name);
	if (n >= DM_NAME_LEN)
		return -ENAMETOOLONG;
	/* No allocation here: this runs inside the guest-paused window. */
	memset(&ctl->buf, 0, sizeof(struct dm_ioctl));
	io = &ctl->buf.io;
	io->version[0] = DM_VERSION_MAJOR;
	io->version[1] = 0;
	io->version[2] = 0;
	io->data_size = sizeof(ctl->buf);
	io->data_start = sizeof(struct dm_ioctl);
	io->flags = flags;
	memcpy(io->name, name, n + 1);
	if (ioctl(ctl->fd, DM_DEV_SUSPEND, io) < 0)
		return -errno;
	return 0;
}

int dmr_dm_ctl_suspend(struct dmr_dm_ctl *ctl, const char *name, unsigned flags)
{
	uint32_t f = DM_SUSPEND_FLAG;

	if (flags & DMR_DM_NOFLUSH)
		f |= DM_NOFLUSH_FLAG;
	if (flags & DMR_DM_SKIP_LOCKFS)
		f |= DM_SKIP_LOCKFS_FLAG;
	return ctl_suspend_resume(ctl, name, f);
}

int dmr_dm_ctl_resume(struct dmr_dm_ctl *ctl, const char *name)
{
	return ctl_suspend_resume(ctl, name, 0);
}
