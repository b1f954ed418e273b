/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/probe.h"

#include <assert.h>
#include <blkid.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "snapshots/loop.h"

/* A device can carry only so many signatures; the bound keeps a probe that
 * keeps returning results from looping forever. */
#define MAX_AMBIVALENT 16

static void blkid_free_probep(blkid_probe *pr)
{
	if (*pr)
		blkid_free_probe(*pr);
}

int dmr_probe_fd_kind(int fd, bool *ret_is_block, uint64_t *ret_size_bytes)
{
	struct stat st;
	uint64_t size;

	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			return dmr_negerrno();
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		return -EINVAL;
	}
	if (ret_is_block)
		*ret_is_block = S_ISBLK(st.st_mode);
	if (ret_size_bytes)
		*ret_size_bytes = size;
	return 0;
}

int dmr_probe_path_kind(const char *path, bool *ret_is_block, uint64_t *ret_size_bytes)
{
	struct stat st;

	if (!path)
		return -EINVAL;
	if (stat(path, &st) < 0)
		return dmr_negerrno();
	if (S_ISBLK(st.st_mode)) {
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

		if (fd < 0)
			return dmr_negerrno();
		return dmr_probe_fd_kind(fd, ret_is_block, ret_size_bytes);
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (ret_is_block)
		*ret_is_block = false;
	if (ret_size_bytes)
		*ret_size_bytes = (uint64_t)st.st_size;
	return 0;
}

int dmr_probe_unused_blank(const char *path, bool force, char **ret_what)
{
	_cleanup_free_ char *what = NULL;
	int r;

	assert(path);
	r = dmr_probe_in_use(path);
	if (r < 0)
		return r;
	if (force)
		return 0;
	r = dmr_probe_signatures(path, &what);
	if (r < 0)
		return r;
	if (what) {
		if (ret_what)
			*ret_what = DMR_TAKE_PTR(what);
		return -EEXIST;
	}
	return 0;
}

int dmr_probe_in_use(const char *path)
{
	bool is_block;
	int r;

	r = dmr_probe_path_kind(path, &is_block, NULL);
	if (r < 0)
		return r;
	if (is_block) {
		/* The kernel refuses a second exclusive claim: mounts, swap,
		 * dm/md holders and O_EXCL openers all hold one, and a claim
		 * on a partition also claims its whole disk. */
		_cleanup_close_ int fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0)
			return 0;
		if (errno == EBUSY) {
			log_debug("probe: %s is claimed exclusively by someone else", path);
			return -EBUSY;
		}
		return dmr_negerrno();
	}
	r = dmr_loop_file_is_attached(path);
	if (r < 0)
		return r;
	if (r > 0) {
		log_debug("probe: %s is attached to a loop device", path);
		return -EBUSY;
	}
	return 0;
}

/* "ext4 filesystem", "LVM2_member (raid)", "dos partition table" for the
 * values the probe holds now; NULL (and 0) if it holds none. */
static int describe_current(blkid_probe pr, char **ret)
{
	const char *type = NULL, *usage = NULL, *pttype = NULL;
	_cleanup_free_ char *sb = NULL, *pt = NULL;
	char *s = NULL;

	if (blkid_probe_lookup_value(pr, "TYPE", &type, NULL) == 0 && type) {
		int n;

		(void)blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
		if (dmr_streq(usage, "filesystem"))
			n = asprintf(&sb, "%s filesystem", type);
		else
			n = asprintf(&sb, "%s (%s)", type, usage ? usage : "unknown usage");
		if (n < 0) {
			sb = NULL;
			return -ENOMEM;
		}
	}
	if (blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL) == 0 && pttype) {
		if (asprintf(&pt, "%s partition table", pttype) < 0) {
			pt = NULL;
			return -ENOMEM;
		}
	}
	if (sb && pt) {
		if (asprintf(&s, "%s, %s", sb, pt) < 0)
			return -ENOMEM;
	} else if (sb || pt) {
		s = sb ? DMR_TAKE_PTR(sb) : DMR_TAKE_PTR(pt);
	}
	*ret = s;
	return 0;
}

/* Append item to a ", "-separated list unless it is already there. */
static int list_add(char **list, const char *item)
{
	char *n;

	if (*list && strstr(*list, item))
		return 0;
	if (asprintf(&n, "%s%s%s", *list ? *list : "", *list ? ", " : "", item) < 0)
		return -ENOMEM;
	free(*list);
	*list = n;
	return 0;
}

/* libblkid found several signatures that exclude each other; list them all
 * (as wipefs does, one blkid_do_probe per result). */
static int describe_ambivalent(blkid_probe pr, char **ret)
{
	_cleanup_free_ char *list = NULL;
	char *s;
	int r;

	blkid_reset_probe(pr);
	for (int i = 0; i < MAX_AMBIVALENT && blkid_do_probe(pr) == 0; i++) {
		_cleanup_free_ char *one = NULL;

		r = describe_current(pr, &one);
		if (r < 0)
			return r;
		if (one && (r = list_add(&list, one)) < 0)
			return r;
	}
	if (asprintf(&s, "ambivalent signatures: %s", list ? list : "unidentified") < 0)
		return -ENOMEM;
	*ret = s;
	return 0;
}

int dmr_probe_signatures(const char *path, char **ret_what)
{
	_cleanup_(blkid_free_probep) blkid_probe pr = NULL;
	_cleanup_close_ int fd = -1;
	char *what = NULL;
	struct stat st;
	int r;

	if (!path || !ret_what)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return dmr_negerrno();
	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode))
		return -EINVAL;
	if (S_ISREG(st.st_mode) && st.st_size == 0) {
		*ret_what = NULL;
		return 0;
	}

	pr = blkid_new_probe();
	if (!pr)
		return -ENOMEM;
	errno = 0;
	if (blkid_probe_set_device(pr, fd, 0, 0) < 0)
		return dmr_negerrno();
	if (blkid_probe_enable_superblocks(pr, 1) < 0 ||
	    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE |
						      BLKID_SUBLKS_MAGIC) < 0 ||
	    blkid_probe_enable_partitions(pr, 1) < 0 ||
	    blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC) < 0)
		return -ENOMEM;

	errno = 0;
	r = blkid_do_safeprobe(pr);
	switch (r) {
	case 0:
		r = describe_current(pr, &what);
		if (r < 0)
			return r;
		/* A result without a type we can name is still a result. */
		if (!what && !(what = strdup("unidentified signature")))
			return -ENOMEM;
		break;
	case 1:
		break;
	case -2:
		r = describe_ambivalent(pr, &what);
		if (r < 0)
			return r;
		break;
	default:
		r = dmr_negerrno();
		log_debug_errno(r, "probe: libblkid failed on %s: %m", path);
		return r;
	}
	log_debug("probe: %s: %s", path, what ? what : "no signature");
	*ret_what = what;
	return 0;
}
