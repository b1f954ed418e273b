/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/loop.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

/* The kernel registers every loop device, bound or not, under this major
 * (drivers/block/loop.c); minors are the index shifted by max_part. */
#define LOOP_DEV_MAJOR 7u

/* How often a free device may be raced away before attach gives up, and
 * how long detach waits for a deferred (last-close) detach. */
#define ATTACH_TRIES 32
#define CLR_FD_TRIES 10
#define UNBIND_WAIT_MS 2000
#define POLL_MS 50

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void closedirp(DIR **d)
{
	int saved = errno;

	if (*d)
		closedir(*d);
	errno = saved;
}

/* lo_device is huge_encode_dev() of the backing file's st_dev, the kernel's
 * 32-bit "new" encoding, which is not glibc's dev_t layout: decode it. */
static bool lo_device_matches(uint64_t lo_device, dev_t dev)
{
	unsigned maj = (unsigned)((lo_device & 0xfff00u) >> 8);
	unsigned min = (unsigned)((lo_device & 0xffu) | ((lo_device >> 12) & 0xfff00u));

	return maj == major(dev) && min == minor(dev);
}

static int loop_sysfs_path(const char *devpath, char *buf, size_t len)
{
	struct stat st;

	if (stat(devpath, &st) < 0)
		return dmr_negerrno();
	if (!S_ISBLK(st.st_mode) || major(st.st_rdev) != LOOP_DEV_MAJOR)
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "/sys/dev/block/%u:%u/loop/backing_file",
			     major(st.st_rdev), minor(st.st_rdev)) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int dmr_loop_backing_file(const char *devpath, char **ret_file)
{
	_cleanup_free_ char *buf = NULL;
	char path[128];
	size_t len;
	int r;

	if (!devpath || !ret_file)
		return -EINVAL;
	r = loop_sysfs_path(devpath, path, sizeof(path));
	if (r < 0)
		return r;
	/* The attribute exists only while the loop is bound. */
	r = dmr_read_file(path, PATH_MAX + 64, &buf, &len);
	if (r == -ENOENT)
		return -ENXIO;
	if (r < 0)
		return r;
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len == 0)
		return -ENXIO;
	*ret_file = DMR_TAKE_PTR(buf);
	return 0;
}

/*
 * Scan the bound loops for one over (st_dev, st_ino).  whole_only skips
 * loops with an offset or size limit.  Returns the lowest loop number that
 * matches, or -ENOENT.
 */
static int loop_scan(const struct stat *file_st, bool whole_only, long *ret_nr)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	long best = -1;

	d = opendir("/sys/block");
	if (!d)
		return dmr_negerrno();
	while ((de = readdir(d))) {
		_cleanup_close_ int fd = -1;
		struct loop_info64 info;
		char path[PATH_MAX];
		char *end;
		long nr;

		if (!dmr_startswith(de->d_name, "loop"))
			continue;
		errno = 0;
		nr = strtol(de->d_name + 4, &end, 10);
		if (errno || end == de->d_name + 4 || *end || nr < 0)
			continue;
		/* Skip unbound loops without opening them. */
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (access(path, F_OK) < 0)
			continue;
		snprintf(path, sizeof(path), "/dev/%s", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			/* Detached and removed while we looked, or no node:
			 * either way not something we can use. */
			log_debug("loop: cannot open %s: %m", path);
			continue;
		}
		if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
			continue;
		if (info.lo_inode != file_st->st_ino ||
		    !lo_device_matches(info.lo_device, file_st->st_dev))
			continue;
		if (whole_only && (info.lo_offset != 0 || info.lo_sizelimit != 0))
			continue;
		if (best < 0 || nr < best)
			best = nr;
	}
	if (best < 0)
		return -ENOENT;
	*ret_nr = best;
	return 0;
}

static int stat_regular(const char *file, struct stat *st)
{
	if (!file)
		return -EINVAL;
	if (stat(file, st) < 0)
		return dmr_negerrno();
	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	return 0;
}

int dmr_loop_find(const char *file, char **ret_devpath)
{
	struct stat st;
	char *dev;
	long nr;
	int r;

	if (!ret_devpath)
		return -EINVAL;
	r = stat_regular(file, &st);
	if (r < 0)
		return r;
	r = loop_scan(&st, true, &nr);
	if (r < 0)
		return r;
	if (asprintf(&dev, "/dev/loop%ld", nr) < 0)
		return -ENOMEM;
	*ret_devpath = dev;
	return 0;
}

int dmr_loop_file_is_attached(const char *file)
{
	struct stat st;
	long nr;
	int r;

	r = stat_regular(file, &st);
	if (r < 0)
		return r;
	r = loop_scan(&st, false, &nr);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

static void fill_info(struct loop_info64 *info, const char *file, bool read_only, bool dio)
{
	memset(info, 0, sizeof(*info));
	/* Informational only (losetup shows it); truncated at 63 bytes, the
	 * full path is in sysfs. */
	snprintf((char *)info->lo_file_name, sizeof(info->lo_file_name), "%s", file);
	info->lo_flags = (read_only ? LO_FLAGS_READ_ONLY : 0) | (dio ? LO_FLAGS_DIRECT_IO : 0);
}

static int configure(int loopfd, int filefd, const char *file, bool read_only, bool dio)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)filefd;
	/* block_size 0: keep the kernel's 512-byte default. */
	fill_info(&cfg.info, file, read_only, dio);
	if (ioctl(loopfd, LOOP_CONFIGURE, &cfg) < 0)
		return dmr_negerrno();
	return 0;
}

/* Kernels before 5.8: bind, then set status; not atomic, so a failure after
 * binding must unbind again. */
static int configure_legacy(int loopfd, int filefd, const char *file)
{
	struct loop_info64 info;
	int r;

	if (ioctl(loopfd, LOOP_SET_FD, filefd) < 0)
		return dmr_negerrno();
	/* LOOP_SET_STATUS64 cannot set READ_ONLY (it follows the file's open
	 * mode) nor DIRECT_IO (LOOP_SET_DIRECT_IO below). */
	fill_info(&info, file, false, false);
	if (ioctl(loopfd, LOOP_SET_STATUS64, &info) < 0) {
		r = dmr_negerrno();
		(void)ioctl(loopfd, LOOP_CLR_FD, 0);
		return r;
	}
	if (ioctl(loopfd, LOOP_SET_DIRECT_IO, 1UL) < 0)
		log_debug("loop: direct I/O not available for %s: %m", file);
	return 0;
}

/* Bind one specific free loop.  -EBUSY means it was taken meanwhile. */
static int attach_one(const char *dev, int filefd, const char *file, bool read_only)
{
	_cleanup_close_ int loopfd = -1;
	int r;

	/* A read-write loop needs the device opened for writing too: the
	 * kernel makes the loop read-only otherwise. */
	loopfd = open(dev, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (loopfd < 0)
		return dmr_negerrno();

	r = configure(loopfd, filefd, file, read_only, true);
	if (r == -EINVAL || r == -ENOTTY) {
		/* Either the backing filesystem refuses direct I/O (newer
		 * kernels reject the flag instead of dropping it) or the
		 * kernel predates LOOP_CONFIGURE: try without it first. */
		log_debug_errno(r, "loop: LOOP_CONFIGURE with direct I/O on %s: %m; retrying without",
				dev);
		r = configure(loopfd, filefd, file, read_only, false);
		if (r == -EINVAL || r == -ENOTTY) {
			log_debug("loop: LOOP_CONFIGURE unsupported on %s; using LOOP_SET_FD", dev);
			r = configure_legacy(loopfd, filefd, file);
		}
	}
	return r;
}

int dmr_loop_attach(const char *file, bool read_only, char **ret_devpath)
{
	_cleanup_close_ int filefd = -1, ctl = -1;
	struct stat st;
	int r = -EBUSY;

	if (!file || !ret_devpath)
		return -EINVAL;
	filefd = open(file, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (filefd < 0)
		return dmr_negerrno();
	if (fstat(filefd, &st) < 0)
		return dmr_negerrno();
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return dmr_negerrno();

	for (int attempt = 0; attempt < ATTACH_TRIES; attempt++) {
		char dev[32];
		int nr;

		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0)
			return dmr_negerrno();
		snprintf(dev, sizeof(dev), "/dev/loop%d", nr);
		r = attach_one(dev, filefd, file, read_only);
		if (r == 0) {
			char *p = strdup(dev);

			if (!p) {
				(void)dmr_loop_detach(dev);
				return -ENOMEM;
			}
			log_debug("loop: attached %s to %s%s", file, dev, read_only ? " read-only" : "");
			*ret_devpath = p;
			return 0;
		}
		if (r == -ENOENT) {
			/* A device GET_FREE just created may not have its
			 * node yet. */
			sleep_ms(10);
			continue;
		}
		if (r != -EBUSY)
			return r;
		log_debug("loop: %s was taken by someone else; trying the next free one", dev);
	}
	return r;
}

/* Is the loop whose backing_file attribute is at sysfs still bound? */
static bool sysfs_bound(const char *sysfs)
{
	return access(sysfs, F_OK) == 0;
}

int dmr_loop_detach(const char *devpath)
{
	char sysfs[128];
	int r, i;

	if (!devpath)
		return -EINVAL;
	r = loop_sysfs_path(devpath, sysfs, sizeof(sysfs));
	if (r < 0)
		return r;

	{
		_cleanup_close_ int fd = open(devpath, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return dmr_negerrno();
		for (i = 0; i < CLR_FD_TRIES; i++) {
			if (ioctl(fd, LOOP_CLR_FD, 0) == 0)
				break;
			if (errno == ENXIO) {
				log_debug("loop: %s is not bound", devpath);
				return 0;
			}
			if (errno != EBUSY)
				return dmr_negerrno();
			sleep_ms(100);
		}
		if (i == CLR_FD_TRIES)
			return -EBUSY;
		/* fd closes here: the kernel detaches on the last close, and
		 * ours may be it. */
	}

	for (i = 0; i * POLL_MS < UNBIND_WAIT_MS; i++) {
		if (!sysfs_bound(sysfs)) {
			log_debug("loop: detached %s", devpath);
			return 0;
		}
		sleep_ms(POLL_MS);
	}
	log_debug("loop: %s is still held open; it detaches on last close", devpath);
	return -EBUSY;
}

int dmr_loop_set_capacity(const char *devpath)
{
	_cleanup_close_ int fd = -1;

	if (!devpath)
		return -EINVAL;
	fd = open(devpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	if (ioctl(fd, LOOP_SET_CAPACITY, 0) < 0)
		return dmr_negerrno();
	return 0;
}
