/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/notify.h"
#include "common/util.h"

static char *notify_path;

int dmr_notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;

	dmr_notify_done();
	if (!e || !*e)
		return 0;
	/* systemd names a path, or an abstract socket as "@name". */
	if ((e[0] != '/' && e[0] != '@') || strlen(e) >= sizeof(sa.sun_path) || !e[1])
		return -EINVAL;
	notify_path = strdup(e);
	if (!notify_path)
		return -ENOMEM;
	(void)unsetenv("NOTIFY_SOCKET");
	return 1;
}

int dmr_notify(const char *state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	size_t n, len;
	socklen_t salen;
	ssize_t k;

	if (!notify_path)
		return 0;
	n = strlen(notify_path);
	memcpy(sa.sun_path, notify_path, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	len = strlen(state);
	k = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	if (k < 0)
		return -errno;
	return (size_t)k == len ? 0 : -EIO;
}

void dmr_notify_done(void)
{
	free(notify_path);
	notify_path = NULL;
}
