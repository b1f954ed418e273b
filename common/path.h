/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/path.h - open a path once and judge what it resolved to.
 *
 * A path a caller names is checked and used through one descriptor: it is
 * opened (following symlinks, so /dev/vg0/lv keeps working), the kernel is
 * asked what the descriptor holds (/proc/self/fd/N), the checks judge that
 * canonical path and fstat(), and from then on the object is reached only
 * through the descriptor (the fd itself, or dmr_path_fd_name() to reopen
 * or connect to the very same inode).  Swapping the path for a symlink
 * after the check changes nothing the caller holds.
 *
 * Every function returns 0 or a negative errno; out-parameters are
 * untouched on failure.
 */
#ifndef DMR_COMMON_PATH_H
#define DMR_COMMON_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* "/proc/self/fd/" and an int, with its NUL. */
#define DMR_PATH_FD_NAME_MAX 32

/* The name that reopens (or connects to) what fd holds. */
void dmr_path_fd_name(int fd, char buf[DMR_PATH_FD_NAME_MAX]);

/* The canonical absolute path of what fd holds; -ENOENT if it was
 * unlinked since, -ENAMETOOLONG past PATH_MAX. */
int dmr_path_fd_resolved(int fd, char **ret_resolved);

/*
 * Is `resolved` (canonical, absolute) `dir` itself or below it?  `dir` is
 * canonical too; a trailing '/' is allowed.  Pure string logic, component
 * by component: /srv/images2 is not inside /srv/images.
 */
bool dmr_path_is_inside(const char *resolved, const char *dir);

/* Is `resolved` inside any of n dirs? */
bool dmr_path_is_inside_any(const char *resolved, const char *const *dirs, size_t n);

/*
 * open(path, flags | O_CLOEXEC) for an absolute path, and what it resolved
 * to.  -EINVAL for a relative or over-long path.
 */
int dmr_path_open(const char *path, int flags, int *ret_fd, char **ret_resolved);

/*
 * As dmr_path_open, but only if what it resolved to is inside one of the n
 * dirs (which must be canonical: see dmr_path_canonical_dir); -EACCES
 * otherwise (nothing is kept open).
 */
int dmr_path_open_inside(const char *path, int flags, const char *const *dirs, size_t n,
			 int *ret_fd, char **ret_resolved);

/*
 * Create a new regular file at path, mode `mode`: its parent directory is
 * opened once and resolved, then the last component is created relative to
 * that descriptor with O_CREAT | O_EXCL | O_NOFOLLOW (a symlink or anything
 * else already there: -EEXIST).  With n > 0 the parent must resolve inside
 * one of dirs (-EACCES).  The last component must be a plain name (not
 * empty, ".", ".."): -EINVAL.  flags adds O_RDWR/O_WRONLY and the like.
 */
int dmr_path_create(const char *path, int flags, mode_t mode, const char *const *dirs, size_t n,
		    int *ret_fd, char **ret_resolved);

/*
 * A directory given on a command line, made canonical (realpath) so that
 * the checks above compare like with like; -ENOTDIR if it is not one.
 */
int dmr_path_canonical_dir(const char *dir, char **ret_dir);

#endif
