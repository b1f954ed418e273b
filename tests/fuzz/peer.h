/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/fuzz/peer.h - the other end of a QMP or guest-agent socket for
 * fuzz_qmp and fuzz_qga (included by them; not a library).  Those clients
 * only read sockets (agent/guest/qmp.h connects to a path), so the input
 * goes over a real Unix socket: peer_start() has a thread accept one
 * connection and write the whole input to it while it reads and drops
 * what the client sends, then shut its side down, so the client always
 * comes to the end of the input (no timeout is ever waited for); peer_end()
 * joins it.  The listening socket is made once, in a temporary directory,
 * by the LLVMFuzzerInitialize defined here (the target's `peer`).
 */
#ifndef DMR_TESTS_FUZZ_PEER_H
#define DMR_TESTS_FUZZ_PEER_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

struct peer {
	char dir[64];
	char path[96];
	int listen_fd;
	pthread_t thread;
	const uint8_t *data;
	size_t size;
};

static struct peer *peer_made;

/* At exit: the socket and its directory go. */
static inline void peer_remove(void)
{
	if (!peer_made)
		return;
	(void)unlink(peer_made->path);
	(void)rmdir(peer_made->dir);
}

static inline void peer_init(struct peer *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(p->dir, sizeof(p->dir), "/tmp/dmrep-fuzz.XXXXXX");
	FUZZ_CHECK(mkdtemp(p->dir));
	snprintf(p->path, sizeof(p->path), "%s/sock", p->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->path);
	p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(p->listen_fd >= 0);
	FUZZ_CHECK(bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	FUZZ_CHECK(listen(p->listen_fd, 4) == 0);
	peer_made = p;
	atexit(peer_remove);
}

static inline void *peer_main(void *arg)
{
	struct peer *p = arg;
	struct pollfd lp = { .fd = p->listen_fd, .events = POLLIN };
	size_t off = 0;
	bool shut = false;
	char sink[4096];
	int fd;

	/* The client connects unless it fails before (then nobody comes). */
	if (poll(&lp, 1, 2000) != 1)
		return NULL;
	fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return NULL;
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT) };
		ssize_t k;

		if (!shut && off == p->size) {
			(void)shutdown(fd, SHUT_WR);
			shut = true;
			continue;
		}
		if (poll(&pf, 1, 5000) <= 0)
			break;
		if (pf.revents & POLLOUT) {
			k = send(fd, p->data + off, p->size - off, MSG_NOSIGNAL);
			if (k < 0 && errno != EAGAIN && errno != EINTR)
				break;
			if (k > 0)
				off += (size_t)k;
		}
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			k = recv(fd, sink, sizeof(sink), 0);
			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
	}
	close(fd);
	return NULL;
}

/* False for an input over 64 KiB (a peer's words are bounded by the
 * client's line limit long before; nothing more to learn from them). */
static inline bool peer_start(struct peer *p, const uint8_t *data, size_t size)
{
	if (size > (1u << 16))
		return false;
	p->data = data;
	p->size = size;
	FUZZ_CHECK(pthread_create(&p->thread, NULL, peer_main, p) == 0);
	return true;
}

static inline void peer_end(struct peer *p)
{
	FUZZ_CHECK(pthread_join(p->thread, NULL) == 0);
}

/* LLVMFuzzerInitialize of a target that uses a peer. */
static inline void peer_setup(struct peer *p)
{
	fuzz_quiet();
	peer_init(p);
}

/* The target's one peer, made before the first input. */
static struct peer peer;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	peer_setup(&peer);
	return 0;
}

/* The errors agent/guest/qmp.h documents for a peer's words. */
static inline void peer_check_rc(int r)
{
	FUZZ_CHECK(r == 0 || r == -EHOSTUNREACH || r == -EPROTO || r == -EIO || r == -ETIMEDOUT ||
		   r == -ENOMEM);
}

/* {"key": "value"}, a command's arguments. */
static inline struct json_object *peer_args(const char *key, const char *value)
{
	struct json_object *o = json_object_new_object();

	FUZZ_CHECK(o && json_object_object_add(o, key, json_object_new_string(value)) == 0);
	return o;
}

/* Text a client keeps from its peer for logs: one printable line. */
static inline void check_line(const char *s)
{
	if (!s)
		return;
	FUZZ_CHECK(dmr_utf8_valid(s, strlen(s)));
	for (; *s; s++)
		FUZZ_CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
}

#endif
