/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/server.c over a real Unix socket, with a small method table: the
 * framing and error codes (malformed JSON, unknown method, wrong types,
 * oversized requests), pipelining, a stalled client that must not block
 * another, authorization of an unprivileged peer (a child that drops to
 * nobody), the stale/live socket rules, and the socket's directory: a
 * pre-existing root:root 0750 one (systemd's RuntimeDirectory=) that --group
 * members still get through, and unsafe ones refused.
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
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "agent/method.h"
#include "agent/rc.h"
#include "agent/server.h"
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

static const struct dmr_method methods[] = {
	{ "Read", false, h_read },
	{ "Write", true, h_write },
	{ NULL, false, NULL },
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
	close(stop_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int dial(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
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
		cmocka_unit_test(test_pipelined_and_oversized),
		cmocka_unit_test(test_stalled_client),
		cmocka_unit_test(test_unprivileged_peer),
		cmocka_unit_test(test_socket_rules),
		cmocka_unit_test(test_socket_dir),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
