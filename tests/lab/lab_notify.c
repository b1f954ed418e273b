/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_notify - play systemd's side of the readiness protocol, for
 * tests/lab/t-55-reboot.sh.
 *
 *   lab_notify SOCKET SECONDS CMD [ARG]...
 *
 * Binds a datagram socket at SOCKET (a path), waits at most SECONDS for a
 * message holding the line READY=1, and at that moment runs CMD: what a
 * unit ordered After=dmrepd.service would find.  Prints every message it
 * got, then "check: STATUS".  Exit status: CMD's; 2 if no READY=1 came in
 * time; 1 on any other failure.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int has_ready(const char *msg)
{
	for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, "READY=1", 7) == 0 && (p[7] == '\n' || p[7] == '\0'))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long deadline;
	int fd, status;
	pid_t pid;

	if (argc < 4 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: lab_notify SOCKET SECONDS CMD [ARG]...\n");
		return 1;
	}
	strcpy(sa.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "lab_notify: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	deadline = now_ms() + atol(argv[2]) * 1000L;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[4096];
		long left = deadline - now_ms();
		ssize_t k;

		if (left <= 0) {
			printf("no READY=1\n");
			return 2;
		}
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		k = recv(fd, buf, sizeof(buf) - 1, 0);
		if (k < 0) {
			fprintf(stderr, "lab_notify: recv: %s\n", strerror(errno));
			return 1;
		}
		buf[k] = '\0';
		printf("got: %s\n", buf);
		if (has_ready(buf))
			break;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		execvp(argv[3], argv + 3);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return 1;
	status = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	printf("check: %d\n", status);
	return status;
}
