/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the readiness protocol (common/notify.h) against a real
 * datagram socket, named by path and as an abstract "@name": the message
 * arrives whole, the variable leaves the environment (children must not
 * inherit it), no variable means nothing sent and success, a bad name is
 * refused, a socket nobody listens on is an error the caller can log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/notify.h"
#include "common/util.h"

struct fx {
	char dir[64];
	char path[108];
	int fd;
};

static int bind_dgram(const char *name, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(sa.sun_path + abstract, name, n);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + abstract + n)), 0);
	return fd;
}

static void recv_is(int fd, const char *want)
{
	char buf[256];
	ssize_t k = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	assert_true(k >= 0);
	buf[k] = '\0';
	assert_string_equal(buf, want);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/dmr-notify-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/notify", f->dir);
	f->fd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dmr_notify_done();
	unsetenv("NOTIFY_SOCKET");
	if (f->fd >= 0)
		close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_path(void **state)
{
	struct fx *f = *state;

	f->fd = bind_dgram(f->path, false);
	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_int_equal(dmr_notify_init(), 1);
	assert_null(getenv("NOTIFY_SOCKET"));
	assert_int_equal(dmr_notify("READY=1"), 0);
	recv_is(f->fd, "READY=1");
	assert_int_equal(dmr_notify("STOPPING=1"), 0);
	recv_is(f->fd, "STOPPING=1");
}

static void test_abstract(void **state)
{
	struct fx *f = *state;
	char name[64], var[66];

	snprintf(name, sizeof(name), "dmr-notify-test-%d", (int)getpid());
	snprintf(var, sizeof(var), "@%s", name);
	f->fd = bind_dgram(name, true);
	setenv("NOTIFY_SOCKET", var, 1);
	assert_int_equal(dmr_notify_init(), 1);
	assert_int_equal(dmr_notify("READY=1"), 0);
	recv_is(f->fd, "READY=1");
}

static void test_none(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(dmr_notify_init(), 0);
	assert_int_equal(dmr_notify("READY=1"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(dmr_notify_init(), 0);
	assert_int_equal(dmr_notify("READY=1"), 0);
}

static void test_bad_names(void **state)
{
	char longname[200];

	(void)state;
	setenv("NOTIFY_SOCKET", "relative/sock", 1);
	assert_int_equal(dmr_notify_init(), -EINVAL);
	assert_int_equal(dmr_notify("READY=1"), 0); /* nothing taken */
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(dmr_notify_init(), -EINVAL);
	memset(longname, 'x', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	assert_int_equal(dmr_notify_init(), -EINVAL);
}

static void test_nobody_listens(void **state)
{
	struct fx *f = *state;

	setenv("NOTIFY_SOCKET", f->path, 1);
	assert_int_equal(dmr_notify_init(), 1);
	assert_int_equal(dmr_notify("READY=1"), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abstract, setup, teardown),
		cmocka_unit_test_setup_teardown(test_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nobody_listens, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
