/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/ident.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/log.h"
#include "common/util.h"

#define LOOP_MAJOR_NR 7u
#define BY_ID_DIR "/dev/disk/by-id"

void dmr_ident_done(struct dmr_ident *id)
{
	if (!id)
		return;
	free(id->loop_file);
	free(id->dm_uuid);
	free(id->wwid);
	free(id->serial);
	dmr_strv_free(id->by_id, id->n_by_id);
	*id = (struct dmr_ident){ 0 };
}

void dmr_ident_free(struct dmr_ident *id)
{
	dmr_ident_done(id);
	free(id);
}

static void ident_donep(struct dmr_ident *id)
{
	dmr_ident_done(id);
}

/* One sysfs attribute, trailing whitespace cut; NULL (and 0) if absent or
 * empty. */
static int read_attr(const char *dir, const char *name, char **ret)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	size_t len;
	int r;

	*ret = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return -ENOMEM;
	r = dmr_read_file(path, DMR_IDENT_STR_MAX, &buf, &len);
	if (r == -ENOENT || r == -ENOTDIR || r == -EFBIG)
		return 0;
	if (r < 0)
		return r;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	if (len == 0 || strlen(buf) != len)
		return 0;
	*ret = DMR_TAKE_PTR(buf);
	return 0;
}

/* E:KEY=VALUE from udev's database entry of a block device. */
static int udev_prop(uint32_t maj, uint32_t min, const char *key, char **ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *line, *save = NULL;
	size_t klen = strlen(key);
	int r;

	*ret = NULL;
	snprintf(path, sizeof(path), "/run/udev/data/b%" PRIu32 ":%" PRIu32, maj, min);
	r = dmr_read_file(path, 1u << 16, &buf, NULL);
	if (r < 0)
		return r == -ENOENT || r == -EFBIG ? 0 : r;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "E:", 2) == 0 && strncmp(line + 2, key, klen) == 0 &&
		    line[2 + klen] == '=' && line[3 + klen] && strlen(line) < DMR_IDENT_STR_MAX) {
			*ret = strdup(line + 3 + klen);
			return *ret ? 0 : -ENOMEM;
		}
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The /dev/disk/by-id names of device rdev, sorted. */
static int read_by_id(dev_t rdev, struct dmr_ident *id)
{
	DIR *d = opendir(BY_ID_DIR);
	struct dirent *de;
	int r = 0;

	if (!d)
		return 0; /* no udev links on this host: nothing to record */
	while (r == 0 && (de = readdir(d)) && id->n_by_id < DMR_IDENT_BY_ID_MAX) {
		struct stat st;
		char **n;

		if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
		    !S_ISBLK(st.st_mode) || st.st_rdev != rdev)
			continue;
		n = realloc(id->by_id, (id->n_by_id + 1) * sizeof(*n));
		if (!n) {
			r = -ENOMEM;
			break;
		}
		id->by_id = n;
		if (!(id->by_id[id->n_by_id] = strdup(de->d_name)))
			r = -ENOMEM;
		else
			id->n_by_id++;
	}
	closedir(d);
	if (id->n_by_id > 1)
		qsort(id->by_id, id->n_by_id, sizeof(*id->by_id), cmp_str);
	return r;
}

static int read_block(const char *path, const struct stat *st, struct dmr_ident *id)
{
	_cleanup_free_ char *part = NULL, *start = NULL, *whole = NULL;
	_cleanup_close_ int fd = -1;
	char sys[96], wholebuf[PATH_MAX];
	uint64_t size;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return dmr_negerrno();
	if (ioctl(fd, BLKGETSIZE64, &size) < 0)
		return dmr_negerrno();
	id->is_block = true;
	id->size_bytes = size;
	id->major = major(st->st_rdev);
	id->minor = minor(st->st_rdev);
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", id->major, id->minor);

	if (id->major == LOOP_MAJOR_NR) {
		struct loop_info64 info;

		if ((r = read_attr(sys, "loop/backing_file", &id->loop_file)) < 0)
			return r;
		if (id->loop_file && ioctl(fd, LOOP_GET_STATUS64, &info) == 0)
			id->loop_inode = info.lo_inode;
	}
	if ((r = read_attr(sys, "dm/uuid", &id->dm_uuid)) < 0)
		return r;

	/* A partition: its number and start, and the disk's own ids. */
	if ((r = read_attr(sys, "partition", &part)) < 0 || (r = read_attr(sys, "start", &start)) < 0)
		return r;
	if (part && start) {
		uint64_t nr;

		if (dmr_parse_u64(part, &nr) == 0 && nr > 0 && nr <= UINT32_MAX &&
		    dmr_parse_u64(start, &id->part_start) == 0)
			id->part_nr = (uint32_t)nr;
		if (snprintf(wholebuf, sizeof(wholebuf), "%s/..", sys) < (int)sizeof(wholebuf))
			whole = realpath(wholebuf, NULL);
	}
	{
		const char *wdir = whole ? whole : sys;
		_cleanup_free_ char *devdir = NULL;

		if (asprintf(&devdir, "%s/device", wdir) < 0)
			return -ENOMEM;
		if ((r = read_attr(wdir, "wwid", &id->wwid)) < 0)
			return r;
		if (!id->wwid && (r = read_attr(devdir, "wwid", &id->wwid)) < 0)
			return r;
		if ((r = udev_prop(id->major, id->minor, "ID_SERIAL", &id->serial)) < 0)
			return r;
		if (!id->serial && (r = read_attr(wdir, "serial", &id->serial)) < 0)
			return r;
		if (!id->serial && (r = read_attr(devdir, "serial", &id->serial)) < 0)
			return r;
	}
	return read_by_id(st->st_rdev, id);
}

int dmr_ident_read(const char *path, struct dmr_ident *ret)
{
	_cleanup_(ident_donep) struct dmr_ident id = { 0 };
	struct stat st;
	int r;

	if (!path || !ret)
		return -EINVAL;
	if (stat(path, &st) < 0)
		return dmr_negerrno();
	if (S_ISREG(st.st_mode)) {
		id.size_bytes = (uint64_t)st.st_size;
		id.inode = (uint64_t)st.st_ino;
	} else if (S_ISBLK(st.st_mode)) {
		if ((r = read_block(path, &st, &id)) < 0)
			return r;
	} else {
		return -EINVAL;
	}
	*ret = id;
	id = (struct dmr_ident){ 0 };
	return 0;
}

bool dmr_ident_strong(const struct dmr_ident *id)
{
	return !id->is_block || id->loop_file || id->dm_uuid || id->wwid || id->serial ||
	       id->n_by_id > 0;
}

static bool by_id_meet(const struct dmr_ident *a, const struct dmr_ident *b)
{
	for (size_t i = 0; i < a->n_by_id; i++)
		for (size_t k = 0; k < b->n_by_id; k++)
			if (dmr_streq(a->by_id[i], b->by_id[k]))
				return true;
	return false;
}

int dmr_ident_describe(const struct dmr_ident *id, char **ret)
{
	int n;

	assert(id && ret);
	if (!id->is_block)
		n = asprintf(ret, "a regular file (inode %" PRIu64 ", %" PRIu64 " bytes)", id->inode,
			     id->size_bytes);
	else if (id->loop_file)
		n = asprintf(ret, "a loop over %s (inode %" PRIu64 ")", id->loop_file, id->loop_inode);
	else if (id->dm_uuid)
		n = asprintf(ret, "dm device %s", id->dm_uuid);
	else if (id->wwid)
		n = asprintf(ret, "disk %s%s", id->wwid, id->part_nr ? " (a partition)" : "");
	else if (id->serial)
		n = asprintf(ret, "disk serial %s%s", id->serial, id->part_nr ? " (a partition)" : "");
	else if (id->n_by_id)
		n = asprintf(ret, "/dev/disk/by-id/%s", id->by_id[0]);
	else
		n = asprintf(ret, "a %" PRIu64 "-byte block device %" PRIu32 ":%" PRIu32
			     " with no stable name", id->size_bytes, id->major, id->minor);
	if (n < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Both absent, or equal. */
static bool same_opt(const char *a, const char *b)
{
	return (!a && !b) || dmr_streq(a, b);
}

/* Do the strong ids of two block devices differ?  Loop, dm UUID, WWID,
 * serial and partition are compared when either side has them; by-id
 * names only when nothing stronger was recorded (udev may add or rename
 * links between releases, and may not have made them yet at boot). */
static bool block_ids_differ(const struct dmr_ident *rec, const struct dmr_ident *now)
{
	if (rec->loop_file || now->loop_file)
		return !dmr_streq(rec->loop_file, now->loop_file) || rec->loop_inode != now->loop_inode;
	if (!same_opt(rec->dm_uuid, now->dm_uuid) ||
	    (rec->wwid && !dmr_streq(rec->wwid, now->wwid)) ||
	    (rec->serial && !dmr_streq(rec->serial, now->serial)) ||
	    rec->part_nr != now->part_nr || rec->part_start != now->part_start)
		return true;
	return !rec->dm_uuid && !rec->wwid && !rec->serial && rec->n_by_id && !by_id_meet(rec, now);
}

/* The reason two identities differ, or NULL if they do not. */
static int differ(const struct dmr_ident *rec, const struct dmr_ident *now, char **ret)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	int n;

	*ret = NULL;
	if (rec->is_block != now->is_block)
		n = asprintf(ret, "it is %s", now->is_block ?
			     "a block device, not the regular file that was added" :
			     "a regular file, not the block device that was added");
	else if (!rec->is_block && rec->inode && rec->inode != now->inode)
		n = asprintf(ret, "it is another file (inode %" PRIu64 ", not %" PRIu64 ")",
			     now->inode, rec->inode);
	else if (rec->is_block && block_ids_differ(rec, now)) {
		if (dmr_ident_describe(now, &a) < 0 || dmr_ident_describe(rec, &b) < 0)
			return -ENOMEM;
		n = asprintf(ret, "it is %s, not %s as when it was added", a, b);
	} else if (rec->size_bytes != now->size_bytes)
		n = asprintf(ret, "it has %" PRIu64 " bytes, not %" PRIu64, now->size_bytes,
			     rec->size_bytes);
	else
		return 0;
	if (n < 0) {
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}

int dmr_ident_match(const struct dmr_ident *rec, const struct dmr_ident *now, char **ret_why)
{
	char *why = NULL;
	int r;

	assert(rec && now);
	r = differ(rec, now, &why);
	if (r < 0)
		return r;
	if (!why)
		return 0;
	if (ret_why)
		*ret_why = why;
	else
		free(why);
	return -ESTALE;
}

static int dup_opt(const char *s, char **ret)
{
	*ret = NULL;
	if (s && !(*ret = strdup(s)))
		return -ENOMEM;
	return 0;
}

int dmr_ident_copy(const struct dmr_ident *src, struct dmr_ident *ret)
{
	_cleanup_(ident_donep) struct dmr_ident id = *src;

	assert(ret);
	id.loop_file = id.dm_uuid = id.wwid = id.serial = NULL;
	id.by_id = NULL;
	id.n_by_id = 0;
	if (dup_opt(src->loop_file, &id.loop_file) < 0 || dup_opt(src->dm_uuid, &id.dm_uuid) < 0 ||
	    dup_opt(src->wwid, &id.wwid) < 0 || dup_opt(src->serial, &id.serial) < 0)
		return -ENOMEM;
	if (src->n_by_id) {
		id.by_id = calloc(src->n_by_id, sizeof(*id.by_id));
		if (!id.by_id)
			return -ENOMEM;
		for (; id.n_by_id < src->n_by_id; id.n_by_id++)
			if (!(id.by_id[id.n_by_id] = strdup(src->by_id[id.n_by_id])))
				return -ENOMEM;
	}
	*ret = id;
	id = (struct dmr_ident){ 0 };
	return 0;
}
