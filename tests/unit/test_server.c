/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/server.c over a real Unix socket, with a small method table: the
 * framing and error codes (malformed JSON, unknown method, wrong types,
 * oversized requests), pipelining, a stalled client that must not block
 * another, authorization of an unprivileged peer (a child that drops to
 * nobody), the stale/live socket rules, the socket's directory (a
 * pre-existing root:root 0750 one, systemd's RuntimeDirectory=, that --group
 * members still get through, and unsafe ones refused); connection limits (one uid's
 * 300 connections leave root served), idle clients closed while a GetJob
 * long poll is not, and slow handlers off the event loop (a handler that
 * blocks until released does not hold up another client's read).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <inttypes.h>
#include <unistd.h>

#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/method.h"
#include "common/rc.h"
#include "agent/rpc/server.h"
#include "common/util.h"

static int h_read(struct dmr_call *c)
{
	uint64_t n = 0;
	int rc;

	if ((rc = dmr_param_u64(c, "n", false, &n)))
		return rc;
	json_object_object_add(c->reply, "twice", json_object_new_int64((int64_t)(2 * n)));
	return DMR_RC_OK;
}

static int h_write(struct dmr_call *c)
{
	const char *s;
	int rc;

	if ((rc = dmr_param_string(c, "s", true, &s)))
		return rc;
	if (!*s)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "s must not be empty");
	return DMR_RC_JOB_STARTED;
}

/* A reply larger than any socket buffer. */
#define BIG_BYTES (1u << 20)

static int h_big(struct dmr_call *c)
{
	char *blob = malloc(BIG_BYTES + 1);

	if (!blob)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	memset(blob, 'x', BIG_BYTES);
	blob[BIG_BYTES] = '\0';
	json_object_object_add(c->reply, "blob", json_object_new_string(blob));
	free(blob);
	return DMR_RC_OK;
}

/* A method that takes a descriptor: reads what is there (a pipe's read
 * end) and says it. */
static int h_fd(struct dmr_call *c)
{
	char buf[64];
	ssize_t k;

	if (c->fd < 0)
		return dmr_call_fail(c, DMR_RC_FAILED, "no descriptor reached the handler");
	k = read(c->fd, buf, sizeof(buf) - 1);
	if (k < 0)
		return dmr_call_fail(c, DMR_RC_FAILED, "read: %s", strerror(errno));
	buf[k] = '\0';
	json_object_object_add(c->reply, "read", json_object_new_string(buf));
	return DMR_RC_OK;
}

/* A handler that keeps the descriptor (call->fd = -1): the test closes it. */
static int kept_fd = -1;

static int h_keep_fd(struct dmr_call *c)
{
	kept_fd = c->fd;
	c->fd = -1;
	return DMR_RC_OK;
}

/* A handler that blocks until released (10 s at most, so a failing test
 * still ends): counts its starts and ends. */
static pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cond = PTHREAD_COND_INITIALIZER;
static int slow_started, slow_ended;
static bool slow_release;

static int h_slow(struct dmr_call *c)
{
	struct timespec until;
	bool released;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&slow_lock);
	slow_started++;
	pthread_cond_broadcast(&slow_cond);
	while (!slow_release && pthread_cond_timedwait(&slow_cond, &slow_lock, &until) == 0)
		;
	released = slow_release;
	slow_ended++;
	pthread_mutex_unlock(&slow_lock);
	json_object_object_add(c->reply, "released", json_object_new_boolean(released));
	return DMR_RC_OK;
}

static void slow_reset(void)
{
	pthread_mutex_lock(&slow_lock);
	slow_started = slow_ended = 0;
	slow_release = false;
	pthread_mutex_unlock(&slow_lock);
}

static void slow_wait_started(int n)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&slow_lock);
	while (slow_started < n && pthread_cond_timedwait(&slow_cond, &slow_lock, &until) == 0)
		;
	assert_int_equal(slow_started, n);
	pthread_mutex_unlock(&slow_lock);
}

static int slow_ended_now(void)
{
	int n;

	pthread_mutex_lock(&slow_lock);
	n = slow_ended;
	pthread_mutex_unlock(&slow_lock);
	return n;
}

static void slow_let_go(void)
{
	pthread_mutex_lock(&slow_lock);
	slow_release = true;
	pthread_cond_broadcast(&slow_cond);
	pthread_mutex_unlock(&slow_lock);
}

/* A job that runs until released, like h_slow. */
static int job_slow(struct dmr_job *job, void *ud)
{
	struct dmr_call c = { .reply = json_object_new_object() };

	(void)job;
	(void)ud;
	h_slow(&c);
	json_object_put(c.reply);
	return 0;
}

static const struct dmr_method methods[] = {
	{ "Read", false, h_read, false, false },
	{ "Write", true, h_write, false, false },
	{ "Sleep", true, h_slow, false, false },    /* a slow write: the writer thread */
	{ "SlowRead", false, h_slow, true, false }, /* a slow read: a reader thread */
	{ "GetJob", false, dmr_h_get_job, false, false },
	{ "Big", false, h_big, false, false },
	{ "Fd", true, h_fd, false, true },         /* on the writer thread */
	{ "FdRead", false, h_fd, false, true },    /* on the loop */
	{ "KeepFd", false, h_keep_fd, false, true },
	{ NULL, false, NULL, false, false },
};

static char dir[] = "/tmp/dmrep-test-srv.XXXXXX";
static char sock[100];
static struct dmr_agent agent;
static struct dmr_server *srv;
static pthread_t thread;
static int stop_fd = -1;

static void *run(void *p)
{
	(void)p;
	return (void *)(intptr_t)dmr_server_run(srv, stop_fd);
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/run/d.sock", dir);
	agent.state_dir = dir;
	agent.socket_path = sock;
	assert_int_equal(dmr_jobs_open(&agent), 0);
	assert_int_equal(dmr_server_open(&agent, &srv), 0);
	dmr_server_set_methods(srv, methods);
	stop_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(stop_fd >= 0);
	assert_int_equal(pthread_create(&thread, NULL, run, NULL), 0);
	return 0;
}

static int teardown(void **state)
{
	uint64_t one = 1;
	void *ret;
	char cmd[300];

	(void)state;
	assert_int_equal(write(stop_fd, &one, sizeof(one)), sizeof(one));
	pthread_join(thread, &ret);
	dmr_server_free(srv);
	slow_let_go();
	dmr_jobs_close(&agent);
	close(stop_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int dial_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int dial(void)
{
	return dial_at(sock);
}

static void send_all(int fd, const char *s)
{
	assert_int_equal(dmr_write_all(fd, s, strlen(s)), 0);
}

/* One reply line as JSON (5 s limit). */
static struct json_object *recv_reply(int fd)
{
	static char buf[1 << 16];
	static size_t len;
	static int buf_fd = -1;
	char *nl;

	if (buf_fd != fd) {
		buf_fd = fd;
		len = 0;
	}
	for (;;) {
		struct timeval tv = { .tv_sec = 5 };
		ssize_t k;

		nl = memchr(buf, '\n', len);
		if (nl) {
			struct json_object *o;

			*nl = '\0';
			o = json_tokener_parse(buf);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
			assert_non_null(o);
			return o;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		k = recv(fd, buf + len, sizeof(buf) - len, 0);
		if (k <= 0)
			fail_msg("no reply (%zd, %s)", k, strerror(errno));
		len += (size_t)k;
	}
}

static int rc_of(struct json_object *o)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, "return", &v));
	return json_object_get_int(v);
}

static int call_rc(int fd, const char *line)
{
	struct json_object *o;
	int rc;

	send_all(fd, line);
	o = recv_reply(fd);
	rc = rc_of(o);
	json_object_put(o);
	return rc;
}

/* Send line with descriptors fds[0..n) attached to its first byte. */
static void send_with_fds(int fd, const char *line, const int *fds, size_t n)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} cm;
	struct iovec iov = { (void *)line, strlen(line) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *h;

	assert_true(n >= 1 && n <= 4);
	memset(&cm, 0, sizeof(cm));
	mh.msg_control = cm.buf;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	h = CMSG_FIRSTHDR(&mh);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(h), fds, sizeof(int) * n);
	assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)strlen(line));
}

/* Once every copy of a pipe's write end is closed, its read end reads
 * EOF: true if that happens within 5 s (the server closed its copy). */
static bool write_end_closed(int rfd)
{
	struct pollfd p = { .fd = rfd, .events = POLLIN };
	char c;

	if (poll(&p, 1, 5000) != 1 || !(p.revents & (POLLHUP | POLLIN)))
		return false;
	return read(rfd, &c, 1) == 0;
}

static void test_fd_passing(void **state)
{
	struct json_object *o, *v;
	int p[2], q[2], fd = dial();

	(void)state;
	assert_true(fd >= 0);
	/* A descriptor reaches a method that takes one, on the loop and on
	 * the writer thread; the server closes it after the handler. */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		assert_int_equal(write(p[1], "hello", 5), 5);
		send_with_fds(fd, i ? "{\"id\": 1, \"method\": \"Fd\"}\n" :
				   "{\"id\": 1, \"method\": \"FdRead\"}\n", &p[0], 1);
		close(p[0]);
		o = recv_reply(fd);
		assert_int_equal(rc_of(o), 0);
		assert_true(json_object_object_get_ex(o, "read", &v));
		assert_string_equal(json_object_get_string(v), "hello");
		json_object_put(o);
		/* Its copy closed too: the write end sees no reader. */
		{
			struct pollfd pf = { .fd = p[1], .events = POLLOUT };

			assert_int_equal(poll(&pf, 1, 5000), 1);
			assert_true(pf.revents & POLLERR);
		}
		close(p[1]);
	}
	/* To a method that takes none: refused, and closed. */
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	send_with_fds(fd, "{\"id\": 2, \"method\": \"Read\", \"params\": {\"n\": 1}}\n", &q[1], 1);
	close(q[1]);
	o = recv_reply(fd);
	assert_int_equal(rc_of(o), DMR_RC_INVALID_PARAMETER);
	assert_true(json_object_object_get_ex(o, "error", &v));
	assert_string_equal(json_object_get_string(v), "this method takes no descriptor");
	json_object_put(o);
	assert_true(write_end_closed(q[0]));
	close(q[0]);
	/* A method that takes one, without one. */
	assert_int_equal(call_rc(fd, "{\"id\": 3, \"method\": \"Fd\"}\n"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "{\"id\": 3, \"method\": \"FdRead\"}\n"), DMR_RC_INVALID_PARAMETER);
	/* To an unknown method, to malformed JSON: closed as well. */
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	send_with_fds(fd, "{\"id\": 4, \"method\": \"Nope\"}\n", &q[1], 1);
	assert_int_equal(rc_of(o = recv_reply(fd)), DMR_RC_NOT_SUPPORTED);
	json_object_put(o);
	send_with_fds(fd, "{junk\n", &q[1], 1);
	assert_int_equal(rc_of(o = recv_reply(fd)), DMR_RC_INVALID_PARAMETER);
	json_object_put(o);
	close(q[1]);
	assert_true(write_end_closed(q[0]));
	close(q[0]);
	/* The descriptor goes with its own line, not the one before it. */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "two", 3), 3);
	send_all(fd, "{\"id\": 5, \"method\": \"Read\", \"params\": {\"n\": 2}}\n");
	assert_int_equal(rc_of(o = recv_reply(fd)), 0);
	json_object_put(o);
	send_with_fds(fd, "{\"id\": 6, \"method\": \"FdRead\"}\n", &p[0], 1);
	o = recv_reply(fd);
	assert_int_equal(rc_of(o), 0);
	assert_true(json_object_object_get_ex(o, "read", &v));
	assert_string_equal(json_object_get_string(v), "two");
	json_object_put(o);
	close(p[0]);
	close(p[1]);
	/* A line split over two messages, the descriptor with the first. */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(p[1], "split", 5), 5);
	send_with_fds(fd, "{\"id\": 7, \"method\"", &p[0], 1);
	usleep(20000);
	send_all(fd, ": \"Fd\"}\n");
	o = recv_reply(fd);
	assert_int_equal(rc_of(o), 0);
	assert_true(json_object_object_get_ex(o, "read", &v));
	assert_string_equal(json_object_get_string(v), "split");
	json_object_put(o);
	close(p[0]);
	close(p[1]);
	/* A handler that keeps it: still open after the reply. */
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	send_with_fds(fd, "{\"id\": 8, \"method\": \"KeepFd\"}\n", &q[1], 1);
	close(q[1]);
	assert_int_equal(rc_of(o = recv_reply(fd)), 0);
	json_object_put(o);
	assert_true(kept_fd >= 0);
	assert_int_equal(write(kept_fd, "k", 1), 1);
	{
		char c;

		assert_int_equal(read(q[0], &c, 1), 1);
	}
	close(kept_fd);
	kept_fd = -1;
	assert_true(write_end_closed(q[0]));
	close(q[0]);
	close(fd);

	/* Two descriptors in one message: both closed, 32773, and the
	 * client closed. */
	fd = dial();
	assert_true(fd >= 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	{
		int two[2] = { p[1], q[1] };
		char c;

		send_with_fds(fd, "{\"id\": 9, \"method\": \"Fd\"}\n", two, 2);
		close(p[1]);
		close(q[1]);
		assert_int_equal(rc_of(o = recv_reply(fd)), DMR_RC_INVALID_PARAMETER);
		json_object_put(o);
		assert_int_equal(recv(fd, &c, 1, 0), 0);
	}
	assert_true(write_end_closed(p[0]));
	assert_true(write_end_closed(q[0]));
	close(p[0]);
	close(q[0]);
	close(fd);

	/* A second descriptor before the first one's line ended. */
	fd = dial();
	assert_true(fd >= 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(q, O_CLOEXEC), 0);
	send_with_fds(fd, "{\"id\": 10, ", &p[1], 1);
	usleep(20000);
	send_with_fds(fd, "\"method\": \"Fd\"}\n", &q[1], 1);
	close(p[1]);
	close(q[1]);
	assert_int_equal(rc_of(o = recv_reply(fd)), DMR_RC_INVALID_PARAMETER);
	json_object_put(o);
	assert_true(write_end_closed(p[0]));
	assert_true(write_end_closed(q[0]));
	close(p[0]);
	close(q[0]);
	close(fd);

	/* A client that goes away with a descriptor and half a line. */
	fd = dial();
	assert_true(fd >= 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	send_with_fds(fd, "{\"id\": 11, ", &p[1], 1);
	close(p[1]);
	usleep(20000);
	close(fd);
	assert_true(write_end_closed(p[0]));
	close(p[0]);
}

static void test_socket_modes(void **state)
{
	struct stat st;
	char d[300];

	(void)state;
	assert_int_equal(stat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	snprintf(d, sizeof(d), "%s/run", dir);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
}

static void test_codes(void **state)
{
	struct json_object *o, *v;
	int fd = dial();

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(call_rc(fd, "{not json\n"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "[1, 2]\n"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "{\"id\": 1} trailing\n"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "{\"id\": 1}\n"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": 7}\n"), DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Nope\"}\n"), DMR_RC_NOT_SUPPORTED);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Read\", \"params\": 3}\n"),
			 DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Read\", \"params\": {\"n\": \"x\"}}\n"),
			 DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Read\", \"params\": {\"n\": -1}}\n"),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Write\"}\n"), DMR_RC_INVALID_PARAMETER);
	/* The error is one line, and the id comes back as sent. */
	send_all(fd, "{\"id\": \"abc\", \"method\": \"Write\", \"params\": {\"s\": \"\"}}\n");
	o = recv_reply(fd);
	assert_int_equal(rc_of(o), DMR_RC_INVALID_PARAMETER);
	assert_true(json_object_object_get_ex(o, "id", &v));
	assert_string_equal(json_object_get_string(v), "abc");
	assert_true(json_object_object_get_ex(o, "error", &v));
	assert_string_equal(json_object_get_string(v), "s must not be empty");
	json_object_put(o);
	/* Success has no error field. */
	send_all(fd, "{\"id\": 9, \"method\": \"Read\", \"params\": {\"n\": 21}}\n");
	o = recv_reply(fd);
	assert_int_equal(rc_of(o), 0);
	assert_false(json_object_object_get_ex(o, "error", NULL));
	assert_true(json_object_object_get_ex(o, "twice", &v));
	assert_int_equal(json_object_get_int(v), 42);
	json_object_put(o);
	close(fd);
}

static void test_pipelined_and_oversized(void **state)
{
	size_t big = DMR_SERVER_MAX_REQUEST + 4096;
	char *line = malloc(big + 1);
	struct json_object *o, *v;
	int fd = dial();

	(void)state;
	assert_true(fd >= 0);
	send_all(fd, "{\"id\": 1, \"method\": \"Read\", \"params\": {\"n\": 1}}\n"
		     "{\"id\": 2, \"method\": \"Read\", \"params\": {\"n\": 2}}\n"
		     "{\"id\": 3, \"method\": \"Read\", \"params\": {\"n\": 3}}\n");
	for (int i = 1; i <= 3; i++) {
		o = recv_reply(fd);
		json_object_object_get_ex(o, "id", &v);
		assert_int_equal(json_object_get_int(v), i);
		json_object_put(o);
	}
	/* Over 1 MiB: answered with 32773, and the connection goes on. */
	memset(line, ' ', big);
	line[big] = '\0';
	memcpy(line, "{\"id\": 5, \"method\": \"Read\", \"params\": {\"x\": \"", 44);
	line[big - 1] = '\n';
	send_all(fd, line);
	assert_int_equal(call_rc(fd, "{\"id\": 6, \"method\": \"Read\"}\n"), DMR_RC_INVALID_PARAMETER);
	o = recv_reply(fd);
	json_object_object_get_ex(o, "id", &v);
	assert_int_equal(json_object_get_int(v), 6);
	assert_int_equal(rc_of(o), 0);
	json_object_put(o);
	free(line);
	close(fd);
}

static void test_stalled_client(void **state)
{
	int stalled = dial(), other = dial();

	(void)state;
	assert_true(stalled >= 0 && other >= 0);
	/* Half a request, never finished, and never reading. */
	send_all(stalled, "{\"id\": 1, \"method\": \"Re");
	assert_int_equal(call_rc(other, "{\"id\": 2, \"method\": \"Read\"}\n"), 0);
	close(stalled);
	assert_int_equal(call_rc(other, "{\"id\": 3, \"method\": \"Read\"}\n"), 0);
	close(other);
}

static void test_unprivileged_peer(void **state)
{
	char d[300];
	pid_t pid;
	int status;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(d, sizeof(d), "%s/run", dir);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(chmod(sock, 0666), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd, r1, r2;

		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(90);
		fd = dial();
		if (fd < 0)
			_exit(91);
		r1 = call_rc(fd, "{\"id\": 1, \"method\": \"Read\"}\n");
		r2 = call_rc(fd, "{\"id\": 2, \"method\": \"Write\", \"params\": {\"s\": \"x\"}}\n");
		_exit(r1 == 0 && r2 == DMR_RC_ACCESS_DENIED ? 0 : 92);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* Root may write. */
	{
		int fd = dial();

		assert_int_equal(call_rc(fd, "{\"id\": 1, \"method\": \"Write\", \"params\": {\"s\": \"x\"}}\n"),
				 DMR_RC_JOB_STARTED);
		close(fd);
	}
}

static void test_socket_rules(void **state)
{
	struct dmr_agent b = { .state_dir = dir };
	struct dmr_server *s2 = NULL;
	char path[100];
	int fd;

	(void)state;
	/* A live agent's socket is never taken over. */
	b.socket_path = sock;
	assert_int_equal(dmr_server_open(&b, &s2), -EADDRINUSE);
	/* A stale one (nobody listens) is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	b.socket_path = path;
	assert_int_equal(dmr_server_open(&b, &s2), 0);
	dmr_server_free(s2);
	assert_int_equal(access(path, F_OK), -1); /* unlinked on free */
	/* A regular file in the way is not deleted. */
	assert_int_equal(dmr_write_file_atomic(path, "x", 1, 0600), 0);
	assert_int_equal(dmr_server_open(&b, &s2), -EEXIST);
	b.socket_path = (char *)"relative.sock";
	assert_int_equal(dmr_server_open(&b, &s2), -EINVAL);
}

/* A second server on its own socket, with other limits; same jobs. */
struct srv2 {
	struct dmr_agent a;
	struct dmr_server *s;
	char path[100];
	int stop;
	pthread_t t;
};

static void *run2(void *p)
{
	struct srv2 *x = p;

	return (void *)(intptr_t)dmr_server_run(x->s, x->stop);
}

static void srv2_start(struct srv2 *x, const char *name, uint64_t idle_usec, unsigned per_uid)
{
	x->a = agent;
	snprintf(x->path, sizeof(x->path), "%s/run/%s", dir, name);
	x->a.socket_path = x->path;
	x->a.idle_timeout_usec = idle_usec;
	x->a.max_clients_per_uid = per_uid;
	assert_int_equal(dmr_server_open(&x->a, &x->s), 0);
	dmr_server_set_methods(x->s, methods);
	x->stop = eventfd(0, EFD_CLOEXEC);
	assert_true(x->stop >= 0);
	assert_int_equal(pthread_create(&x->t, NULL, run2, x), 0);
}

static void srv2_stop(struct srv2 *x)
{
	uint64_t one = 1;

	assert_int_equal(write(x->stop, &one, sizeof(one)), sizeof(one));
	pthread_join(x->t, NULL);
	dmr_server_free(x->s);
	close(x->stop);
}

/* The return code of the next reply line on fd, or -1 on EOF or 5 s of
 * silence (no cmocka: also runs in a forked child). */
static int line_rc(int fd)
{
	char buf[4096];
	size_t len = 0;
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (len < sizeof(buf) - 1) {
		ssize_t k = recv(fd, buf + len, 1, 0);
		struct json_object *o, *v;
		int rc = -1;

		if (k <= 0)
			return -1;
		if (buf[len++] != '\n')
			continue;
		buf[len] = '\0';
		o = json_tokener_parse(buf);
		if (o && json_object_object_get_ex(o, "return", &v))
			rc = json_object_get_int(v);
		json_object_put(o);
		return rc;
	}
	return -1;
}

/* Has the server closed fd within 5 s?  What came before: its size, and
 * the return code of its last line (-1: none). */
static bool closed_by_server(int fd, size_t *ret_bytes, int *ret_rc)
{
	static char buf[1 << 16];
	uint64_t end = dmr_now_usec() + 5000000;
	size_t total = 0, len = 0;
	int rc = -1;

	while (dmr_now_usec() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&p, 1, 100) <= 0)
			continue;
		k = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (k <= 0) {
			if (ret_bytes)
				*ret_bytes = total;
			if (ret_rc)
				*ret_rc = rc;
			return k == 0;
		}
		total += (size_t)k;
		len += (size_t)k;
		for (char *nl; (nl = memchr(buf, '\n', len));) {
			struct json_object *o, *v;

			*nl = '\0';
			o = json_tokener_parse(buf);
			if (o && json_object_object_get_ex(o, "return", &v))
				rc = json_object_get_int(v);
			json_object_put(o);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		if (len == sizeof(buf) - 1)
			len = 0; /* a huge line: only its size matters */
	}
	return false;
}

/* Has the server hung up on fd within 5 s (its unread data left unread)? */
static bool hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 5000) == 1 && (p.revents & (POLLRDHUP | POLLHUP));
}

static bool readable_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1;
}

/* As uid 65534, open n connections and send a Read on each: how many were
 * served and how many refused with 32777, as "OK REFUSED" on out; then hold
 * them until in has a byte. */
static void hog(const char *path, int n, int in, int out)
{
	int *fds = calloc((size_t)n, sizeof(int)), ok = 0, refused = 0;
	char msg[64];
	char c;

	if (!fds || setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
	    setresuid(65534, 65534, 65534) < 0)
		_exit(90);
	for (int i = 0; i < n; i++) {
		fds[i] = dial_at(path);
		if (fds[i] < 0)
			_exit(91);
		/* A refused one may be closed already: no SIGPIPE. */
		(void)send(fds[i], "{\"id\": 1, \"method\": \"Read\"}\n", 29, MSG_NOSIGNAL);
	}
	for (int i = 0; i < n; i++) {
		int rc = line_rc(fds[i]);

		ok += rc == 0;
		refused += rc == DMR_RC_UNAVAILABLE;
	}
	snprintf(msg, sizeof(msg), "%d %d\n", ok, refused);
	if (write(out, msg, strlen(msg)) < 0 || read(in, &c, 1) != 1)
		_exit(92);
	_exit(0);
}

static void check_root_served(const char *path, unsigned per_uid, int want_ok)
{
	int to_child[2], from_child[2], status, ok = -1, refused = -1;
	char buf[64] = "";
	int root[20];
	FILE *f;
	pid_t pid;

	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(from_child), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(to_child[1]);
		close(from_child[0]);
		hog(path, 300, to_child[0], from_child[1]);
	}
	close(to_child[0]);
	close(from_child[1]);
	f = fdopen(from_child[0], "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	assert_int_equal(sscanf(buf, "%d %d", &ok, &refused), 2);
	/* The cap, and every other one told why (32777), not just closed. */
	assert_int_equal(ok, want_ok);
	assert_int_equal(refused, 300 - want_ok);
	/* Root, with the hog's connections still open: served, and not
	 * capped per uid itself. */
	for (size_t i = 0; i < DMR_ARRAY_SIZE(root); i++) {
		root[i] = dial_at(path);
		assert_true(root[i] >= 0);
		assert_int_equal(call_rc(root[i], "{\"id\": 1, \"method\": \"Read\"}\n"), 0);
	}
	assert_true(per_uid < DMR_ARRAY_SIZE(root));
	assert_int_equal(write(to_child[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(root); i++)
		close(root[i]);
	fclose(f);
	close(to_child[1]);
}

static void test_connection_limits(void **state)
{
	struct srv2 all;
	char d[300];

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(d, sizeof(d), "%s/run", dir);
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(chmod(sock, 0666), 0);
	/* One uid: 16 connections, the other 284 refused; root served. */
	check_root_served(sock, DMR_SERVER_PER_UID, DMR_SERVER_PER_UID);
	/* With a per-uid cap as high as the total: all users but root hold
	 * 256 together at most, and root still has slots of its own. */
	srv2_start(&all, "all.sock", 0, DMR_SERVER_MAX_CLIENTS);
	assert_int_equal(chmod(all.path, 0666), 0);
	check_root_served(all.path, 1, DMR_SERVER_MAX_CLIENTS);
	srv2_stop(&all);
}

static void test_idle_clients(void **state)
{
	struct srv2 x;
	int silent, half, unread, waiter, rc;
	size_t bytes = 0;
	uint64_t id, t0;
	char req[128];
	struct json_object *o, *j, *v;

	(void)state;
	slow_reset();
	srv2_start(&x, "idle.sock", 1000000, 0);
	assert_int_equal(dmr_job_start(&agent, "Test", NULL, job_slow, NULL, NULL, &id), 0);
	slow_wait_started(1);
	t0 = dmr_now_usec();
	silent = dial_at(x.path);
	half = dial_at(x.path);
	unread = dial_at(x.path);
	waiter = dial_at(x.path);
	assert_true(silent >= 0 && half >= 0 && unread >= 0 && waiter >= 0);
	send_all(half, "{\"id\": 1, \"method\": \"Re");
	send_all(unread, "{\"id\": 1, \"method\": \"Big\"}\n");
	/* A bound is checked before the wait. */
	snprintf(req, sizeof(req), "{\"id\": 1, \"method\": \"GetJob\", \"params\": {\"job\": %" PRIu64
		 ", \"wait\": 3601}}\n", id);
	assert_int_equal(call_rc(waiter, req), DMR_RC_INVALID_PARAMETER);
	snprintf(req, sizeof(req), "{\"id\": 2, \"method\": \"GetJob\", \"params\": {\"job\": %" PRIu64
		 ", \"wait\": 60}}\n", id);
	send_all(waiter, req);
	/* Connected and silent, half a line, a reply never read: closed,
	 * none before the timeout; the silent one told why (32772), the
	 * other's megabyte never all sent. */
	assert_true(closed_by_server(silent, NULL, &rc));
	assert_int_equal(rc, DMR_RC_TIMEOUT);
	assert_true(dmr_now_usec() - t0 >= 1000000);
	assert_true(closed_by_server(half, NULL, &rc));
	assert_int_equal(rc, DMR_RC_TIMEOUT);
	assert_true(hung_up(unread));
	assert_true(closed_by_server(unread, &bytes, NULL));
	assert_true(bytes < BIG_BYTES);
	/* The long poll outlived them all: no answer yet, not closed. */
	assert_false(readable_now(waiter));
	assert_int_equal(slow_ended_now(), 0);
	slow_let_go();
	o = recv_reply(waiter);
	assert_int_equal(rc_of(o), 0);
	assert_true(json_object_object_get_ex(o, "job", &j));
	assert_true(json_object_object_get_ex(j, "job_state", &v));
	assert_int_equal(json_object_get_int(v), DMR_JOB_COMPLETED);
	json_object_put(o);
	/* A finished job answers at once; then the connection goes on, and
	 * once idle it is closed too. */
	snprintf(req, sizeof(req), "{\"id\": 3, \"method\": \"GetJob\", \"params\": {\"job\": %" PRIu64
		 ", \"wait\": 60}}\n", id);
	assert_int_equal(call_rc(waiter, req), 0);
	assert_true(closed_by_server(waiter, NULL, &rc));
	assert_int_equal(rc, DMR_RC_TIMEOUT);
	close(silent);
	close(half);
	close(unread);
	close(waiter);
	srv2_stop(&x);
}

static void test_slow_off_loop(void **state)
{
	int writer = dial(), queued = dial(), reader = dial(), other = dial(), gone = dial();
	struct json_object *o, *v;

	(void)state;
	assert_true(writer >= 0 && queued >= 0 && reader >= 0 && other >= 0 && gone >= 0);
	slow_reset();
	send_all(writer, "{\"id\": 1, \"method\": \"Sleep\"}\n");
	slow_wait_started(1);
	/* While the write blocks: a read on the loop is answered... */
	assert_int_equal(call_rc(other, "{\"id\": 2, \"method\": \"Read\"}\n"), 0);
	/* ...a slow read runs beside it on a reader thread... */
	send_all(reader, "{\"id\": 3, \"method\": \"SlowRead\"}\n");
	slow_wait_started(2);
	assert_int_equal(slow_ended_now(), 0);
	/* ...and writes wait their turn, one at a time. */
	send_all(queued, "{\"id\": 4, \"method\": \"Write\", \"params\": {\"s\": \"x\"}}\n");
	assert_int_equal(call_rc(other, "{\"id\": 5, \"method\": \"Read\"}\n"), 0);
	assert_false(readable_now(queued));
	/* A client that hangs up while its request runs. */
	send_all(gone, "{\"id\": 6, \"method\": \"SlowRead\"}\n");
	slow_wait_started(3);
	close(gone);
	assert_int_equal(call_rc(other, "{\"id\": 7, \"method\": \"Read\"}\n"), 0);
	assert_int_equal(slow_ended_now(), 0);
	slow_let_go();
	o = recv_reply(writer);
	assert_int_equal(rc_of(o), 0);
	assert_true(json_object_object_get_ex(o, "released", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(o);
	assert_int_equal(call_rc(reader, "{\"id\": 8, \"method\": \"Read\"}\n") , 0);
	assert_int_equal(rc_of(o = recv_reply(queued)), DMR_RC_JOB_STARTED);
	json_object_put(o);
	close(writer);
	close(queued);
	close(reader);
	close(other);
}

/* In a child that drops to nobody with supplementary group gid: 0 if it
 * can connect to path, else the errno. */
static int connect_as_member(const char *path, gid_t gid)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd;

		if (setgroups(1, &gid) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(255);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		_exit(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 255);
	return WEXITSTATUS(status);
}

static void test_socket_dir(void **state)
{
	const gid_t group = 4242;
	struct dmr_agent b = { .state_dir = dir, .have_group = true, .group = group };
	struct dmr_server *s2 = NULL;
	char d[200], path[250];
	struct stat st;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(d, sizeof(d), "%s/rt", dir);
	snprintf(path, sizeof(path), "%s/g.sock", d);
	b.socket_path = path;
	/* As systemd leaves it: root:root 0750, made before the agent ran. */
	assert_int_equal(mkdir(d, 0750), 0);
	assert_int_equal(chown(d, 0, 0), 0);
	assert_int_equal(chmod(d, 0750), 0);
	assert_int_equal(dmr_server_open(&b, &s2), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, group);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(connect_as_member(path, group), 0);
	assert_int_equal(connect_as_member(path, group + 1), EACCES);
	dmr_server_free(s2);
	s2 = NULL;
	/* Group-writable root:root: members must not gain write when the
	 * directory becomes theirs. */
	assert_int_equal(chown(d, 0, 0), 0);
	assert_int_equal(chmod(d, 0770), 0);
	assert_int_equal(dmr_server_open(&b, &s2), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_gid, group);
	assert_int_equal(st.st_mode & 07777, 0750);
	dmr_server_free(s2);
	s2 = NULL;
	/* Others may search it (a shared directory): left as it is. */
	assert_int_equal(chown(d, 0, 0), 0);
	assert_int_equal(chmod(d, 0755), 0);
	assert_int_equal(dmr_server_open(&b, &s2), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(connect_as_member(path, group), 0);
	dmr_server_free(s2);
	s2 = NULL;
	/* Unsafe ones are refused and left alone. */
	assert_int_equal(chown(d, 65534, 0), 0);
	assert_int_equal(chmod(d, 0750), 0);
	assert_int_equal(dmr_server_open(&b, &s2), -EPERM);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(chown(d, 0, 0), 0);
	assert_int_equal(chmod(d, 0777), 0);
	assert_int_equal(dmr_server_open(&b, &s2), -EPERM);
	assert_int_equal(chmod(d, 0775), 0);
	assert_int_equal(chown(d, 0, 100), 0);
	assert_int_equal(dmr_server_open(&b, &s2), -EPERM);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_socket_modes),
		cmocka_unit_test(test_codes),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_pipelined_and_oversized),
		cmocka_unit_test(test_stalled_client),
		cmocka_unit_test(test_unprivileged_peer),
		cmocka_unit_test(test_socket_rules),
		cmocka_unit_test(test_socket_dir),
		cmocka_unit_test(test_connection_limits),
		cmocka_unit_test(test_idle_clients),
		cmocka_unit_test(test_slow_off_loop),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
