/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/path.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

void dmr_path_fd_name(int fd, char buf[DMR_PATH_FD_NAME_MAX])
{
	snprintf(buf, DMR_PATH_FD_NAME_MAX, "/proc/self/fd/%d", fd);
}

int dmr_path_fd_resolved(int fd, char **ret_resolved)
{
	char name[DMR_PATH_FD_NAME_MAX], buf[PATH_MAX];
	struct stat fst, st;
	ssize_t n;
	char *s;

	assert(ret_resolved);
	dmr_path_fd_name(fd, name);
	n = readlink(name, buf, sizeof(buf));
	if (n < 0)
		return dmr_negerrno();
	if ((size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	buf[n] = '\0';
	/* Not a file system object (a pipe, a socket made by socket()). */
	if (buf[0] != '/')
		return -EINVAL;
	/* The kernel appends " (deleted)" to an unlinked file's name: the
	 * name must still lead to this very object. */
	if (fstat(fd, &fst) < 0)
		return dmr_negerrno();
	if (lstat(buf, &st) < 0 || st.st_dev != fst.st_dev || st.st_ino != fst.st_ino)
		return -ENOENT;
	s = strdup(buf);
	if (!s)
		return -ENOMEM;
	*ret_resolved = s;
	return 0;
}

bool dmr_path_is_inside(const char *resolved, const char *dir)
{
	size_t n;

	if (!resolved || !dir || resolved[0] != '/' || dir[0] != '/')
		return false;
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1) /* "/" holds everything */
		return true;
	return strncmp(resolved, dir, n) == 0 && (resolved[n] == '\0' || resolved[n] == '/');
}

bool dmr_path_is_inside_any(const char *resolved, const char *const *dirs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (dmr_path_is_inside(resolved, dirs[i]))
			return true;
	return false;
}

int dmr_path_open(const char *path, int flags, int *ret_fd, char **ret_resolved)
{
	_cleanup_close_ int fd = -1;
	char *resolved = NULL;
	int r;

	assert(ret_fd);
	if (!path || path[0] != '/' || strlen(path) >= PATH_MAX)
		return -EINVAL;
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	r = dmr_path_fd_resolved(fd, &resolved);
	if (r < 0)
		return r;
	*ret_fd = DMR_TAKE_FD(fd);
	if (ret_resolved)
		*ret_resolved = resolved;
	else
		free(resolved);
	return 0;
}

int dmr_path_open_inside(const char *path, int flags, const char *const *dirs, size_t n,
			 int *ret_fd, char **ret_resolved)
{
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	r = dmr_path_open(path, flags, &fd, &resolved);
	if (r < 0)
		return r;
	if (!dmr_path_is_inside_any(resolved, dirs, n))
		return -EACCES;
	*ret_fd = DMR_TAKE_FD(fd);
	if (ret_resolved)
		*ret_resolved = DMR_TAKE_PTR(resolved);
	return 0;
}

int dmr_path_create(const char *path, int flags, mode_t mode, const char *const *dirs, size_t n,
		    int *ret_fd, char **ret_resolved)
{
	_cleanup_free_ char *parent = NULL, *pres = NULL, *resolved = NULL;
	_cleanup_close_ int dfd = -1, fd = -1;
	const char *base;
	char *slash;
	int r;

	if (!path || path[0] != '/' || strlen(path) >= PATH_MAX)
		return -EINVAL;
	parent = strdup(path);
	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	base = path + (slash - parent) + 1;
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return -EINVAL;
	*slash = '\0';
	r = dmr_path_open(*parent ? parent : "/", O_PATH | O_DIRECTORY, &dfd, &pres);
	if (r < 0)
		return r;
	if (n > 0 && !dmr_path_is_inside_any(pres, dirs, n))
		return -EACCES;
	fd = openat(dfd, base, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return dmr_negerrno();
	r = dmr_path_fd_resolved(fd, &resolved);
	if (r < 0) {
		(void)unlinkat(dfd, base, 0);
		return r;
	}
	*ret_fd = DMR_TAKE_FD(fd);
	if (ret_resolved)
		*ret_resolved = DMR_TAKE_PTR(resolved);
	return 0;
}

int dmr_path_canonical_dir(const char *dir, char **ret_dir)
{
	struct stat st;
	char *s;

	assert(ret_dir);
	if (!dir || dir[0] != '/')
		return -EINVAL;
	s = realpath(dir, NULL);
	if (!s)
		return dmr_negerrno();
	if (stat(s, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(s);
		return -ENOTDIR;
	}
	*ret_dir = s;
	return 0;
}
