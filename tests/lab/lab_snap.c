/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_snap - snapshots/ leaf modules on a real kernel: loop devices
 * (snapshots/loop.h), the libaio copier (snapshots/copy.h) and the safety
 * probes (snapshots/probe.h).  Runs in the lab as root (tools/lab/run, or
 * tests/lab/run-all); prints TAP lines `ok - DESC` / `not ok - DESC` and
 * `# ...` comments, and exits non-zero if any check failed.
 *
 * Everything it makes lives in a fresh directory $LAB_SCRATCH/dmrtPID-snap-*
 * (files) and in the loop devices it attaches, all of which are detached
 * (and a mount it made unmounted) on every way out: normal exit, a failed
 * check, or SIGINT/SIGTERM/SIGHUP.
 *
 * Environment: LAB (must be set), LAB_SCRATCH (default /var/tmp),
 * LAB_SNAP_MB (size of the throughput image, default 256).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "snapshots/copy.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"
#include "lib/tap.h"

#define MiB (1024u * 1024u)
#define KiB 1024u
#define MAX_LOOPS 16

static char work[512];
static char mnt[600];
static bool mounted;
static char *loops[MAX_LOOPS];

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", work, name);
}

static void track_loop(const char *dev)
{
	for (int i = 0; i < MAX_LOOPS; i++)
		if (!loops[i]) {
			loops[i] = strdup(dev);
			return;
		}
}

static void untrack_loop(const char *dev)
{
	for (int i = 0; i < MAX_LOOPS; i++)
		if (loops[i] && strcmp(loops[i], dev) == 0) {
			free(loops[i]);
			loops[i] = NULL;
		}
}

/* Undo everything: unmount, detach every loop we made (and any other loop
 * still over a file of ours), delete the files.  Safe to call twice. */
static void cleanup(void)
{
	DIR *d;
	struct dirent *de;

	if (mounted) {
		if (umount2(mnt, 0) < 0)
			(void)umount2(mnt, MNT_DETACH);
		mounted = false;
	}
	if (mnt[0])
		rmdir(mnt);
	for (int i = 0; i < MAX_LOOPS; i++) {
		if (!loops[i])
			continue;
		(void)dmr_loop_detach(loops[i]);
		free(loops[i]);
		loops[i] = NULL;
	}
	if (!work[0])
		return;
	d = opendir(work);
	while (d && (de = readdir(d))) {
		char p[1024];

		if (de->d_name[0] == '.')
			continue;
		path_in(p, sizeof(p), de->d_name);
		for (int tries = 0; tries < 3; tries++) {
			_cleanup_free_ char *dev = NULL;

			if (dmr_loop_find(p, &dev) < 0)
				break;
			(void)dmr_loop_detach(dev);
		}
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(work);
	work[0] = '\0';
}

static void on_signal(int sig)
{
	/* Not async-signal-safe, but the alternative is loops left behind
	 * in a lab that is about to be torn down anyway. */
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Run a program quietly; its exit status, or -1. */
static int run(const char *const *argv)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i = 0;

	/* Eight bytes per step: TCG makes every instruction count. */
	for (; i + 8 <= n; i += 8) {
		uint64_t v;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = (x * 0x2545f4914f6cdd1dull) | 0x0101010101010101ull;
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = 0x5a;
}

static int make_sparse(const char *path, uint64_t size)
{
	_cleanup_close_ int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return -1;
	return 0;
}

static int put(const char *path, uint64_t off, size_t n, uint64_t seed, bool zeros)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *b = malloc(n);

	if (fd < 0 || !b)
		return -1;
	if (zeros)
		memset(b, 0, n);
	else
		fill_random(b, n, seed);
	return pwrite(fd, b, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

/* First differing offset of the first n bytes, -1 if equal, -2 on error. */
static long long diff(const char *a, const char *b, uint64_t n)
{
	_cleanup_close_ int fa = open(a, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int fb = open(b, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *ba = malloc(MiB), *bb = malloc(MiB);

	if (fa < 0 || fb < 0 || !ba || !bb)
		return -2;
	for (uint64_t off = 0; off < n;) {
		size_t want = n - off < MiB ? (size_t)(n - off) : MiB;

		if (pread(fa, ba, want, (off_t)off) != (ssize_t)want ||
		    pread(fb, bb, want, (off_t)off) != (ssize_t)want)
			return -2;
		if (memcmp(ba, bb, want) != 0)
			for (size_t i = 0; i < want; i++)
				if (ba[i] != bb[i])
					return (long long)(off + i);
		off += want;
	}
	return -1;
}

static int sysfs_loop_attr(const char *dev, const char *attr)
{
	_cleanup_free_ char *buf = NULL;
	char p[128];
	size_t len;

	snprintf(p, sizeof(p), "/sys/block/%s/loop/%s", dev + strlen("/dev/"), attr);
	if (dmr_read_file(p, 64, &buf, &len) < 0)
		return -1;
	return atoi(buf);
}

static uint64_t alloc_bytes(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512u : UINT64_MAX;
}

static char *attach(const char *file, const char *what)
{
	char *dev = NULL;
	int r = dmr_loop_attach(file, false, &dev);

	check(r == 0, "attach %s to a loop device (%s)", what, r < 0 ? strerror(-r) : dev);
	if (r == 0)
		track_loop(dev);
	return r == 0 ? dev : NULL;
}

static bool detach(const char *dev, const char *what)
{
	int r = dmr_loop_detach(dev);

	check(r == 0, "detach the %s loop %s%s%s", what, dev, r < 0 ? ": " : "",
	      r < 0 ? strerror(-r) : "");
	if (r == 0)
		untrack_loop(dev);
	return r == 0;
}

struct prog {
	uint64_t last;
	unsigned calls;
	bool monotonic;
};

static int on_progress(uint64_t done, uint64_t total, void *userdata)
{
	struct prog *p = userdata;

	if (done < p->last || done > total)
		p->monotonic = false;
	p->last = done;
	p->calls++;
	return 0;
}

/* --- loop devices ------------------------------------------------------ */

static char *test_loops(const char *pool)
{
	_cleanup_free_ char *found = NULL, *backing = NULL;
	char other[1200];
	char *dev;
	bool is_block = false;
	uint64_t size = 0;
	int r;

	check(make_sparse(pool, 512ull * MiB) == 0, "make a sparse 512 MiB pool file");
	dev = attach(pool, "the pool file");
	if (!dev)
		return NULL;
	check(dmr_probe_path_kind(dev, &is_block, &size) == 0 && is_block && size == 512ull * MiB,
	      "the loop is a 512 MiB block device");
	check(sysfs_loop_attr(dev, "autoclear") == 0, "no autoclear: the loop outlives the agent");
	check(sysfs_loop_attr(dev, "dio") == 1, "direct I/O on the ext4 backing file");

	r = dmr_loop_find(pool, &found);
	check(r == 0 && dmr_streq(found, dev), "find the loop again by its file (%s)",
	      found ? found : "none");
	free(DMR_TAKE_PTR(found));
	snprintf(other, sizeof(other), "%s/../%s/%s", work, strrchr(work, '/') + 1,
		 strrchr(pool, '/') + 1);
	check(dmr_loop_find(other, &found) == 0 && dmr_streq(found, dev),
	      "find it by another spelling of the path");
	r = dmr_loop_backing_file(dev, &backing);
	check(r == 0 && dmr_streq(backing, pool), "its backing file is the pool file (%s)",
	      backing ? backing : "none");
	check(dmr_probe_in_use(pool) == -EBUSY, "the attached pool file is in use");
	return dev;
}

/* --- the copier onto a loop device ---------------------------------------- */

/*
 * The image: 64 MiB + 1.5 KiB,
 *   0-2 MiB random, 2-9 MiB hole, 9-10 MiB written zeros,
 *   10 MiB + 256 KiB: 8 KiB random, 11-40 MiB hole, 40-48 MiB random,
 *   48-64 MiB hole, 1.5 KiB random tail.
 */
#define IMG_LEN (64ull * MiB + 1536)
#define IMG_DATA (2 * MiB + 64 * KiB + 8 * MiB + 1536)

static void test_copy_sparse(const char *img, const char *dev, const char *pool)
{
	struct dmr_copy_opts o = { .queue_depth = 32, .block_size = MiB, .skip_zero = true };
	struct dmr_copy_stats st = { 0 };
	struct prog p = { .monotonic = true };
	uint64_t before, after;
	long long d;
	int r;

	check(make_sparse(img, IMG_LEN) == 0 && put(img, 0, 2 * MiB, 1, false) == 0 &&
		      put(img, 9 * MiB, MiB, 0, true) == 0 &&
		      put(img, 10 * MiB + 256 * KiB, 8 * KiB, 2, false) == 0 &&
		      put(img, 40 * MiB, 8 * MiB, 3, false) == 0 &&
		      put(img, 64 * MiB, 1536, 4, false) == 0,
	      "make a 64 MiB image with holes, zeros and data");

	before = alloc_bytes(pool);
	r = dmr_copy_run(img, dev, IMG_LEN, &o, on_progress, &p, &st);
	check(r == 0, "copy the image onto the loop (O_DIRECT, libaio, skip zeros)%s%s",
	      r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
	diag("read %" PRIu64 ", written %" PRIu64 ", skipped %" PRIu64 ", %u progress calls",
	     st.bytes_read, st.bytes_written, st.bytes_skipped, p.calls);
	check(st.bytes_written == IMG_DATA, "only the data grains were written (%" PRIu64 " bytes)",
	      st.bytes_written);
	check(st.bytes_written + st.bytes_skipped == IMG_LEN, "written + skipped = length");
	check(st.bytes_read <= 2 * MiB + 2 * MiB + 8 * MiB + MiB, "holes were not read");
	check(p.monotonic && p.last == IMG_LEN, "progress is monotonic and reaches the total");
	d = diff(img, dev, IMG_LEN);
	check(d == -1, "the loop holds the image byte for byte (first difference: %lld)", d);
	after = alloc_bytes(pool);
	diag("pool file allocation: %" PRIu64 " -> %" PRIu64 " bytes", before, after);
	check(after - before <= IMG_DATA + MiB, "the pool file stays sparse");
}

/* Throughput: a fully random image, nothing to skip. */
static void test_copy_throughput(const char *img, const char *dev, uint64_t len)
{
	struct dmr_copy_opts o = { .queue_depth = 32, .block_size = MiB, .skip_zero = true };
	struct dmr_copy_stats st = { 0 };
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *buf = malloc(MiB);
	uint64_t t0, usec;
	bool made = buf != NULL;
	int r;

	fd = open(img, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	made = made && fd >= 0;
	for (uint64_t off = 0; made && off < len; off += MiB) {
		fill_random(buf, MiB, off / MiB + 100);
		made = pwrite(fd, buf, MiB, (off_t)off) == (ssize_t)MiB;
	}
	made = made && fsync(fd) == 0;
	check(made, "make a %" PRIu64 " MiB random image", len / MiB);
	if (!made)
		return;
	/* Measure the copy, not the page cache: start from cold. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	t0 = dmr_now_usec();
	r = dmr_copy_run(img, dev, len, &o, NULL, NULL, &st);
	usec = dmr_now_usec() - t0;
	check(r == 0 && st.bytes_written == len, "copy %" PRIu64 " MiB of random data onto the loop",
	      len / MiB);
	diag("copy throughput: %" PRIu64 " MiB in %" PRIu64 ".%03" PRIu64 " s = %" PRIu64
	     " MiB/s (queue depth 32, 1 MiB blocks, O_DIRECT source and loop)",
	     len / MiB, usec / 1000000, usec / 1000 % 1000,
	     usec ? len * 1000000 / usec / MiB : 0);
	check(diff(img, dev, len) == -1, "the loop holds the random image byte for byte");
}

/* A source that refuses O_DIRECT (tmpfs on kernels before 6.6) is read
 * buffered; one that takes it is read direct: either way the copy holds. */
static void test_copy_from_tmp(const char *dev)
{
	char img[64];
	int fd, r;

	snprintf(img, sizeof(img), "/tmp/dmrt%d-snap.img", (int)getpid());
	fd = open(img, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
	diag("/tmp %s O_DIRECT", fd >= 0 ? "takes" : "refuses");
	if (fd >= 0)
		close(fd);
	r = -EIO;
	if (make_sparse(img, 8 * MiB + 512) == 0 && put(img, 0, 3 * MiB, 7, false) == 0 &&
	    put(img, 8 * MiB, 512, 8, false) == 0)
		r = dmr_copy_run(img, dev, 8 * MiB + 512, NULL, NULL, NULL, NULL);
	check(r == 0 && diff(img, dev, 8 * MiB + 512) == -1,
	      "copy from a file on /tmp (tmpfs) onto the loop%s%s", r < 0 ? ": " : "",
	      r < 0 ? strerror(-r) : "");
	unlink(img);
}

/* --- probes --------------------------------------------------------------- */

static void test_probes(const char *extimg)
{
	_cleanup_free_ char *what = NULL, *what_file = NULL, *clean = NULL;
	const char *mkfs[] = { "mkfs.ext4", "-q", "-F", NULL, NULL };
	_cleanup_free_ char *dev = NULL;
	int r;

	check(make_sparse(extimg, 64 * MiB) == 0, "make a 64 MiB file for ext4");
	dev = attach(extimg, "the ext4 file");
	if (!dev)
		return;
	r = dmr_probe_signatures(dev, &clean);
	check(r == 0 && !clean, "a fresh loop carries no signature");

	mkfs[3] = dev;
	check(run(mkfs) == 0, "mkfs.ext4 on the loop");
	r = dmr_probe_signatures(dev, &what);
	check(r == 0 && dmr_streq(what, "ext4 filesystem"),
	      "the probe names the ext4 on the loop, so a pool would refuse it (%s)",
	      what ? what : "nothing");
	r = dmr_probe_signatures(extimg, &what_file);
	check(r == 0 && dmr_streq(what_file, "ext4 filesystem"), "and on its backing file");
	check(dmr_probe_in_use(dev) == 0, "an unmounted loop is not in use");

	snprintf(mnt, sizeof(mnt), "%s/mnt", work);
	if (mkdir(mnt, 0700) < 0) {
		check(false, "make a mount point");
		return;
	}
	r = mount(dev, mnt, "ext4", 0, NULL);
	mounted = r == 0;
	check(r == 0, "mount the ext4 loop%s%s", r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
	if (!mounted)
		return;
	check(dmr_probe_in_use(dev) == -EBUSY, "the mounted loop is in use");
	r = dmr_loop_detach(dev);
	check(r == -EBUSY, "detaching the mounted loop reports it busy (%s)", strerror(-r));

	mounted = !(umount2(mnt, 0) == 0);
	check(!mounted, "unmount it");
	/* The refused detach left the loop marked for detach on last close
	 * (see dmr_loop_detach): with the mount gone it goes by itself. */
	{
		_cleanup_free_ char *still = NULL;
		int tries = 0;

		while (dmr_loop_find(extimg, &still) == 0 && tries++ < 100) {
			free(DMR_TAKE_PTR(still));
			usleep(20 * 1000);
		}
		r = dmr_loop_find(extimg, &still);
		check(r == -ENOENT, "after the unmount the loop detached itself");
		if (r == -ENOENT)
			untrack_loop(dev);
	}
}

static void count_leftovers(void)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	unsigned left = 0;

	while (d && (de = readdir(d))) {
		_cleanup_free_ char *b = NULL;
		char dev[300];

		if (!dmr_startswith(de->d_name, "loop"))
			continue;
		snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
		if (dmr_loop_backing_file(dev, &b) == 0 && dmr_startswith(b, work)) {
			diag("left over: %s on %s", dev, b);
			left++;
		}
	}
	if (d)
		closedir(d);
	check(left == 0, "no loop device over our files is left (%u)", left);
}

int main(void)
{
	const char *scratch = getenv("LAB_SCRATCH");
	const char *mb = getenv("LAB_SNAP_MB");
	char pool[1024], img[1024], big[1024], extimg[1024];
	uint64_t big_len = (mb ? strtoull(mb, NULL, 10) : 256) * MiB;
	char *dev;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!getenv("LAB")) {
		printf("not ok - runs in the lab (use tools/lab/run)\n");
		return 1;
	}
	if (geteuid() != 0) {
		printf("not ok - runs as root\n");
		return 1;
	}
	if (!scratch || !scratch[0])
		scratch = "/var/tmp";
	snprintf(work, sizeof(work), "%s/dmrt%d-snap-XXXXXX", scratch, (int)getpid());
	if (!mkdtemp(work)) {
		printf("not ok - make a work directory in %s: %s\n", scratch, strerror(errno));
		return 1;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	diag("work directory %s", work);

	path_in(pool, sizeof(pool), "pool.img");
	path_in(img, sizeof(img), "image.img");
	path_in(big, sizeof(big), "random.img");
	path_in(extimg, sizeof(extimg), "ext4.img");

	dev = test_loops(pool);
	if (dev) {
		test_copy_sparse(img, dev, pool);
		if (big_len && big_len <= 512ull * MiB)
			test_copy_throughput(big, dev, big_len);
		test_copy_from_tmp(dev);
		if (detach(dev, "pool")) {
			_cleanup_free_ char *gone = NULL;

			check(dmr_loop_find(pool, &gone) == -ENOENT,
			      "after detach no loop is over the pool file");
			check(dmr_probe_in_use(pool) == 0, "and it is no longer in use");
		}
		free(dev);
	}
	test_probes(extimg);
	count_leftovers();
	cleanup();

	diag("%u passed, %u failed", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
