/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_qmp - the QMP half of a failover window's floor, for `make bench`
 * (tools/bench/run, in the lab): a `stop` then a `cont`, each sent and its
 * reply read, on one connection opened (and capabilities negotiated)
 * beforehand, so that nothing but the two round trips is timed.
 *
 *   bench_qmp SOCKET REPS
 *
 * The client is the least a client can be: a blocking Unix stream socket,
 * the command written with one send, the reply found by scanning the read
 * bytes for a line with "return" (event lines on the way are skipped, no
 * JSON parser).  Whatever client the agent uses can only add to this, so
 * stop + cont here is a floor, not an estimate of the agent's client.
 * QEMU serves one QMP client at a time: run it while nobody else holds
 * the monitor.  Prints `qmp REPS median_us min_us`.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

#define TIMEOUT_MS 10000
#define BUF_SIZE 65536

struct conn {
	int fd;
	char buf[BUF_SIZE];
	size_t len; /* bytes in buf not yet consumed */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One line (without its newline) into *ret_line, valid until the next call. */
static int read_line(struct conn *c, char **ret_line)
{
	static char line[BUF_SIZE];

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		ssize_t n;
		int r;

		if (nl) {
			size_t k = (size_t)(nl - c->buf);

			memcpy(line, c->buf, k);
			line[k] = '\0';
			memmove(c->buf, nl + 1, c->len - k - 1);
			c->len -= k + 1;
			*ret_line = line;
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -EPROTO; /* a line longer than the buffer: not QMP */
		r = poll(&p, 1, TIMEOUT_MS);
		if (r < 0)
			return dmr_negerrno();
		if (r == 0)
			return -ETIMEDOUT;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n < 0)
			return dmr_negerrno();
		if (n == 0)
			return -ECONNRESET;
		c->len += (size_t)n;
	}
}

/* Send COMMAND and wait for its reply; events on the way are skipped. */
static int command(struct conn *c, const char *cmd)
{
	size_t len = strlen(cmd);
	char *line;
	int r;

	if (send(c->fd, cmd, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -EIO;
	for (;;) {
		r = read_line(c, &line);
		if (r < 0)
			return r;
		if (strstr(line, "\"event\""))
			continue;
		if (strstr(line, "\"return\""))
			return 0;
		fprintf(stderr, "bench_qmp: %.*s: %s\n", (int)strcspn(cmd, "\n"), cmd, line);
		return -EIO;
	}
}

static int qmp_open(const char *path, struct conn *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *line;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return dmr_negerrno();
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return dmr_negerrno();
	r = read_line(c, &line); /* the greeting */
	if (r < 0)
		return r;
	if (!strstr(line, "\"QMP\""))
		return -EPROTO;
	return command(c, "{\"execute\":\"qmp_capabilities\"}\n");
}

int main(int argc, char **argv)
{
	static struct conn c = { .fd = -1 };
	uint64_t reps;
	uint64_t *times;
	int r = 0;

	if (argc != 3 || dmr_parse_u64(argv[2], &reps) < 0 || reps == 0 || reps > 100000) {
		fprintf(stderr, "usage: bench_qmp SOCKET REPS\n");
		return 2;
	}
	times = calloc(reps, sizeof(*times));
	if (!times)
		return 1;
	r = qmp_open(argv[1], &c);
	if (r < 0) {
		fprintf(stderr, "bench_qmp: %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	for (uint64_t k = 0; k < reps && r == 0; k++) {
		uint64_t t0 = dmr_now_usec();

		r = command(&c, "{\"execute\":\"stop\"}\n");
		if (r == 0)
			r = command(&c, "{\"execute\":\"cont\"}\n");
		times[k] = dmr_now_usec() - t0;
	}
	close(c.fd);
	if (r < 0) {
		fprintf(stderr, "bench_qmp: stop/cont: %s\n", strerror(-r));
		free(times);
		return 1;
	}
	qsort(times, reps, sizeof(*times), cmp_u64);
	printf("qmp %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", reps, times[reps / 2], times[0]);
	free(times);
	return 0;
}
