/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: loop devices (snapshots/loop.h) - attach with direct I/O and
 * without autoclear, find by backing file under another spelling of its
 * path, backing file, read-only, parallel attaches racing for the free
 * device, detach (idempotent), errors.  Needs root and /dev/loop-control;
 * skips otherwise.  Every loop made is detached in teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "snapshots/loop.h"

#define NFILES 4
#define MAXLOOPS 8

struct fx {
	char dir[64];
	char file[NFILES][96];
	char *loops[MAXLOOPS];
};

static bool can_loop(void)
{
	return geteuid() == 0 && access("/dev/loop-control", W_OK) == 0;
}

static int setup(void **state)
{
	struct fx *f;

	if (!can_loop())
		return 0; /* each test skips */
	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	/* Not tmpfs where possible: direct I/O is checked on /var/tmp. */
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/dmr-loop-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	for (int i = 0; i < NFILES; i++) {
		int fd;

		snprintf(f->file[i], sizeof(f->file[i]), "%s/f%d", f->dir, i);
		fd = open(f->file[i], O_CREAT | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, 16 << 20) < 0)
			return -1;
		close(fd);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (!f)
		return 0;
	for (int i = 0; i < MAXLOOPS; i++) {
		if (f->loops[i])
			(void)dmr_loop_detach(f->loops[i]);
		free(f->loops[i]);
	}
	for (int i = 0; i < NFILES; i++)
		unlink(f->file[i]);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Remember a loop for teardown; returns its slot. */
static char **track(struct fx *f)
{
	for (int i = 0; i < MAXLOOPS; i++)
		if (!f->loops[i])
			return &f->loops[i];
	fail_msg("too many loops");
	return NULL;
}

static void untrack(struct fx *f, const char *devpath)
{
	char dev[64];

	/* devpath may be one of the strings freed below. */
	snprintf(dev, sizeof(dev), "%s", devpath);
	for (int i = 0; i < MAXLOOPS; i++)
		if (f->loops[i] && strcmp(f->loops[i], dev) == 0) {
			free(f->loops[i]);
			f->loops[i] = NULL;
		}
}

/* Detach a tracked loop and forget it, so teardown never detaches a
 * number that someone else may have been given since. */
static void detach_tracked(struct fx *f, char **dev)
{
	assert_int_equal(dmr_loop_detach(*dev), 0);
	untrack(f, *dev);
}

static int sysfs_attr(const char *dev, const char *attr)
{
	_cleanup_free_ char *buf = NULL;
	char p[128];
	size_t len;

	snprintf(p, sizeof(p), "/sys/block/%s/loop/%s", dev + strlen("/dev/"), attr);
	if (dmr_read_file(p, 64, &buf, &len) < 0)
		return -1;
	return atoi(buf);
}

#define NEED_LOOP(f)                                                           \
	do {                                                                   \
		if (!(f))                                                      \
			skip();                                                \
	} while (0)

static void test_attach_find_detach(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *found = NULL, *backing = NULL, *again = NULL;
	char **dev;
	char other[160];

	NEED_LOOP(f);
	assert_int_equal(dmr_loop_find(f->file[0], &found), -ENOENT);
	dev = track(f);
	assert_int_equal(dmr_loop_attach(f->file[0], false, dev), 0);
	assert_true(dmr_startswith(*dev, "/dev/loop"));

	/* Owned by dmrep: no autoclear; direct I/O on a disk filesystem. */
	assert_int_equal(sysfs_attr(*dev, "autoclear"), 0);
	print_message("%s dio=%d\n", *dev, sysfs_attr(*dev, "dio"));

	/* Found by inode, whatever the spelling of the path. */
	snprintf(other, sizeof(other), "%s/./../%s/f0", f->dir, strrchr(f->dir, '/') + 1);
	assert_int_equal(dmr_loop_find(other, &found), 0);
	assert_string_equal(found, *dev);
	assert_int_equal(dmr_loop_file_is_attached(f->file[0]), 1);
	assert_int_equal(dmr_loop_file_is_attached(f->file[1]), 0);

	assert_int_equal(dmr_loop_backing_file(*dev, &backing), 0);
	assert_string_equal(backing, f->file[0]);

	assert_int_equal(dmr_loop_detach(*dev), 0);
	assert_int_equal(dmr_loop_find(f->file[0], &again), -ENOENT);
	assert_null(again);
	assert_int_equal(dmr_loop_backing_file(found, &again), -ENXIO);
	/* Detaching an unbound loop is fine. */
	assert_int_equal(dmr_loop_detach(found), 0);
	untrack(f, found);
}

static void test_read_only(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int fd = -1;
	char **dev;
	int ro = 0;

	NEED_LOOP(f);
	dev = track(f);
	assert_int_equal(dmr_loop_attach(f->file[1], true, dev), 0);
	fd = open(*dev, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, BLKROGET, &ro), 0);
	assert_int_equal(ro, 1);
	close(DMR_TAKE_FD(fd));
	detach_tracked(f, dev);
}

static void test_two_files_two_loops(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *found = NULL;
	char **a, **b;

	NEED_LOOP(f);
	a = track(f);
	assert_int_equal(dmr_loop_attach(f->file[0], false, a), 0);
	b = track(f);
	assert_int_equal(dmr_loop_attach(f->file[1], false, b), 0);
	assert_string_not_equal(*a, *b);
	assert_int_equal(dmr_loop_find(f->file[1], &found), 0);
	assert_string_equal(found, *b);
	detach_tracked(f, a);
	detach_tracked(f, b);
}

/* Several processes attach at once: LOOP_CTL_GET_FREE hands them the same
 * device and all but one get EBUSY from LOOP_CONFIGURE; each must retry
 * and end up on its own loop. */
static void test_parallel_attach(void **state)
{
	struct fx *f = *state;
	pid_t pids[NFILES];

	NEED_LOOP(f);
	for (int i = 0; i < NFILES; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			char *dev = NULL;

			_exit(dmr_loop_attach(f->file[i], false, &dev) == 0 ? 0 : 1);
		}
	}
	for (int i = 0; i < NFILES; i++) {
		int status;

		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	for (int i = 0; i < NFILES; i++) {
		char **dev = track(f);

		assert_int_equal(dmr_loop_find(f->file[i], dev), 0);
		for (int j = 0; j < MAXLOOPS; j++)
			if (f->loops[j] && &f->loops[j] != dev)
				assert_string_not_equal(f->loops[j], *dev);
	}
	for (int i = 0; i < MAXLOOPS; i++)
		if (f->loops[i])
			detach_tracked(f, &f->loops[i]);
}

/* Held open by someone else: the kernel defers the detach to the last
 * close; detach reports -EBUSY, and the loop goes once released. */
static void test_detach_while_open(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *found = NULL;
	_cleanup_close_ int holder = -1;
	char **dev;

	NEED_LOOP(f);
	dev = track(f);
	assert_int_equal(dmr_loop_attach(f->file[2], false, dev), 0);
	holder = open(*dev, O_RDONLY | O_CLOEXEC);
	assert_true(holder >= 0);
	assert_int_equal(dmr_loop_detach(*dev), -EBUSY);
	close(DMR_TAKE_FD(holder));
	for (int i = 0; i < 100 && dmr_loop_find(f->file[2], &found) == 0; i++) {
		free(DMR_TAKE_PTR(found));
		usleep(20 * 1000);
	}
	assert_int_equal(dmr_loop_find(f->file[2], &found), -ENOENT);
	untrack(f, *dev);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	char *out = (char *)"untouched";
	char p[128];

	NEED_LOOP(f);
	snprintf(p, sizeof(p), "%s/missing", f->dir);
	assert_int_equal(dmr_loop_attach(p, false, &out), -ENOENT);
	assert_int_equal(dmr_loop_attach(f->dir, true, &out), -EINVAL);
	assert_int_equal(dmr_loop_find(p, &out), -ENOENT);
	assert_int_equal(dmr_loop_find("/dev/null", &out), -EINVAL);
	assert_int_equal(dmr_loop_backing_file("/dev/null", &out), -EINVAL);
	assert_int_equal(dmr_loop_backing_file(f->file[0], &out), -EINVAL);
	assert_int_equal(dmr_loop_detach("/dev/null"), -EINVAL);
	assert_int_equal(dmr_loop_detach(p), -ENOENT);
	assert_string_equal(out, "untouched");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_attach_find_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_files_two_loops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel_attach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_while_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
