/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/unit/fake_server.h - a scripted peer on a temporary Unix socket for
 * the QMP, QGA and shim unit tests (included by them; not a library).
 *
 * fake_start() binds and listens in the test process (so the socket exists
 * before the client connects, without a race), then forks a child that
 * accepts one connection and plays the script:
 *   EXPECT(s)   read one line (0xFF bytes dropped, as qemu-ga's parser does)
 *               and require s in it; remembers the request's id:
 *               arguments.id if there is one (guest-sync), else "id"
 *   SEND(s)     write s in one write(), with each "%ID%" replaced by that id
 *   SLEEP(ms)   pause
 *   BIG(n)      write n bytes of 'x' and a newline
 *   BIGRET(n)   write {"return": "xxx...", "id": %ID%} with n 'x's
 *   CLOSE       close the connection
 *   ACCEPT      accept the next connection
 *   HANG        wait to be killed
 * After the script the child reads until the client closes, then exits 0.
 * A failed EXPECT exits 1 (the test sees it from fake_finish()).
 */
#ifndef DMR_TESTS_FAKE_SERVER_H
#define DMR_TESTS_FAKE_SERVER_H

#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum fake_op { F_END, F_EXPECT, F_SEND, F_SLEEP, F_BIG, F_BIGRET, F_CLOSE, F_ACCEPT, F_HANG };

struct fake_step {
	enum fake_op op;
	const char *s;
	long n;
};

#define EXPECT(x) { F_EXPECT, (x), 0 }
#define SEND(x) { F_SEND, (x), 0 }
#define SLEEP(ms) { F_SLEEP, NULL, (ms) }
#define BIG(len) { F_BIG, NULL, (len) }
#define BIGRET(len) { F_BIGRET, NULL, (len) }
#define CLOSE { F_CLOSE, NULL, 0 }
#define ACCEPT { F_ACCEPT, NULL, 0 }
#define HANG { F_HANG, NULL, 0 }
#define END { F_END, NULL, 0 }

#define QMP_GREETING                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, " \
	"\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\n"
/* Greeting and capabilities negotiation, as QEMU does them. */
#define QMP_HELLO SEND(QMP_GREETING), EXPECT("\"qmp_capabilities\""), \
	SEND("{\"return\": {}, \"id\": %ID%}\n")

struct fake {
	char dir[48];
	char path[64];
	int listen_fd;
	pid_t pid;
};

static inline void fake_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0)
		;
}

/* One line from fd, 0xFF bytes dropped; -1 at EOF. */
static inline int fake_read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char c;
		ssize_t k = read(fd, &c, 1);

		if (k <= 0)
			return -1;
		if ((unsigned char)c == 0xff)
			continue;
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}

static inline void fake_remember_id(const char *line, char *id, size_t size)
{
	struct json_object *o = json_tokener_parse(line), *a, *v;

	id[0] = '\0';
	if (!o)
		return;
	if ((json_object_object_get_ex(o, "arguments", &a) && json_object_object_get_ex(a, "id", &v)) ||
	    json_object_object_get_ex(o, "id", &v))
		snprintf(id, size, "%s", json_object_to_json_string(v));
	json_object_put(o);
}

static inline void fake_send(int fd, const char *tmpl, const char *id)
{
	char out[8192];
	size_t n = 0;

	for (const char *p = tmpl; *p && n < sizeof(out) - 64;) {
		if (strncmp(p, "%ID%", 4) == 0) {
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s", id);
			p += 4;
		} else
			out[n++] = *p++;
	}
	(void)!write(fd, out, n);
}

static inline _Noreturn void fake_child(struct fake *f, const struct fake_step *script)
{
	char line[65536], id[64] = "";
	int c = accept(f->listen_fd, NULL, NULL);

	signal(SIGPIPE, SIG_IGN);
	for (const struct fake_step *s = script; s->op != F_END; s++) {
		switch (s->op) {
		case F_EXPECT:
			if (fake_read_line(c, line, sizeof(line)) < 0 || !strstr(line, s->s)) {
				fprintf(stderr, "fake server: expected %s, got %s\n", s->s, line);
				_exit(1);
			}
			fake_remember_id(line, id, sizeof(id));
			break;
		case F_SEND:
			fake_send(c, s->s, id);
			break;
		case F_SLEEP:
			fake_sleep_ms(s->n);
			break;
		case F_BIG:
		case F_BIGRET: {
			size_t len = (size_t)s->n + 128, n = 0;
			char *big = malloc(len);

			if (s->op == F_BIGRET)
				n += (size_t)snprintf(big, len, "{\"return\": \"");
			memset(big + n, 'x', (size_t)s->n);
			n += (size_t)s->n;
			if (s->op == F_BIGRET)
				n += (size_t)snprintf(big + n, len - n, "\", \"id\": %s}", id);
			big[n++] = '\n';
			for (size_t off = 0; off < n;) {
				ssize_t k = write(c, big + off, n - off);

				if (k <= 0)
					break;
				off += (size_t)k;
			}
			free(big);
			break;
		}
		case F_CLOSE:
			close(c);
			c = -1;
			break;
		case F_ACCEPT:
			if (c >= 0)
				close(c);
			c = accept(f->listen_fd, NULL, NULL);
			break;
		case F_HANG:
			for (;;)
				pause();
		case F_END:
			break;
		}
	}
	while (c >= 0 && fake_read_line(c, line, sizeof(line)) == 0)
		;
	_exit(0);
}

static inline void fake_start(struct fake *f, const struct fake_step *script)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(f->dir, sizeof(f->dir), "/tmp/dmr-fake-XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->listen_fd, 4) < 0)
		abort();
	f->pid = fork();
	if (f->pid < 0)
		abort();
	if (f->pid == 0)
		fake_child(f, script);
}

/* Stop the server (killing it if hang) and clean up; its exit status. */
static inline int fake_finish(struct fake *f, int hang)
{
	int status = 0;

	if (hang)
		kill(f->pid, SIGKILL);
	waitpid(f->pid, &status, 0);
	close(f->listen_fd);
	unlink(f->path);
	rmdir(f->dir);
	if (hang)
		return 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static inline long fake_elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

#endif
