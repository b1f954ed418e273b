/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/util.h - small helpers shared by every module: cleanup attributes,
 * array sizes, errno-preserving free, overflow-checked size parsing.
 *
 * Nothing here knows device-mapper, points or sockets.
 */
#ifndef DMR_COMMON_UTIL_H
#define DMR_COMMON_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DMR_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_ __attribute__((warn_unused_result))

static inline void dmr_freep(void *p)
{
	int saved = errno;

	free(*(void **)p);
	errno = saved;
}
#define _cleanup_free_ _cleanup_(dmr_freep)

/* For a type's free function func (NULL-safe): funcp, what a _cleanup_
 * attribute calls (systemd's DEFINE_TRIVIAL_CLEANUP_FUNC). */
#define DMR_DEFINE_FREEP(type, func)                                           \
	static inline void func##p(type *p)                                    \
	{                                                                      \
		func(*p);                                                      \
	}

static inline void dmr_closep(int *fd)
{
	int saved = errno;

	if (*fd >= 0)
		close(*fd);
	errno = saved;
}
#define _cleanup_close_ _cleanup_(dmr_closep)

static inline void dmr_fclosep(FILE **f)
{
	int saved = errno;

	if (*f)
		fclose(*f);
	errno = saved;
}
#define _cleanup_fclose_ _cleanup_(dmr_fclosep)

/* Free the n strings of v (NULL entries fine), then v. */
static inline void dmr_strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* Hand a cleanup-owned pointer to someone else: the local becomes NULL. */
#define DMR_TAKE_PTR(p)                                                        \
	({                                                                     \
		__typeof__(p) _p = (p);                                        \
		(p) = NULL;                                                    \
		_p;                                                            \
	})
#define DMR_TAKE_FD(fd)                                                        \
	({                                                                     \
		int _fd = (fd);                                                \
		(fd) = -1;                                                     \
		_fd;                                                           \
	})

/* Negative errno from the current errno, never 0 (a failed call that left
 * errno 0 still failed). */
static inline int dmr_negerrno(void)
{
	return errno > 0 ? -errno : -EIO;
}

static inline bool dmr_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static inline bool dmr_startswith(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static inline bool dmr_endswith(const char *s, const char *suffix)
{
	size_t n, k;

	if (!s)
		return false;
	n = strlen(s);
	k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/*
 * Parse a size with an optional suffix K, M, G, T (powers of 1024; also
 * KiB/MiB/..., case-insensitive) into bytes.  Rejects signs, empty input,
 * trailing junk and overflow with -EINVAL / -ERANGE.
 */
int dmr_parse_size(const char *s, uint64_t *ret_bytes);

/* Parse a decimal uint64 (no sign, no junk). */
int dmr_parse_u64(const char *s, uint64_t *ret);

/* Monotonic clock in microseconds. */
uint64_t dmr_now_usec(void);

/* Wall clock as RFC 3339 UTC ("2026-11-24T18:31:49Z") into buf[32]. */
/* A refusal's one-line reason: *ret_why (if ret_why is not NULL) becomes a
 * malloc()ed string of fmt, or NULL when there is no memory for it; returns
 * r, so that `return dmr_why_set(ret_why, -EINVAL, "...")` refuses in one. */
int dmr_why_set(char **ret_why, int r, const char *fmt, ...) _printf_(3, 4);
int dmr_format_rfc3339(uint64_t realtime_usec, char buf[32]);
uint64_t dmr_realtime_usec(void);

/* Write all of buf, retrying on EINTR and short writes. */
int dmr_write_all(int fd, const void *buf, size_t len);

/*
 * A file changed, but not durably: the rename (or unlink) is done, and every
 * reader and a restart see the new content, but the fsync of the directory
 * failed, so a power loss may still bring back the previous one.
 */
#define DMR_E_NOT_DURABLE EINPROGRESS

/*
 * Replace path atomically with content: write a temporary file in the same
 * directory, fsync it, rename it over path, fsync the directory.  A crash
 * leaves either the old or the new file, never a torn one.
 *
 * 0: replaced, durably.  -DMR_E_NOT_DURABLE: replaced, but the directory
 * fsync failed: the caller treats the file as changed (what it keeps in
 * memory is what the file says; nothing is rolled back as if the write had
 * not happened) and does nothing irreversible that relies on the new content
 * surviving a power loss; the next successful write in that directory makes
 * it durable.  Any other -errno: path is unchanged (the temporary file is
 * removed).
 */
int dmr_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode);

/* Remove path and fsync its directory, so that it does not come back after
 * a power loss.  0 (also if it did not exist); -DMR_E_NOT_DURABLE: removed,
 * but the directory fsync failed (as above); any other -errno: not removed. */
int dmr_unlink_durable(const char *path);

/* fsync the directory that holds path. */
int dmr_fsync_parent(const char *path);

/*
 * Text from outside (sockets, guest agents, state files) on its way to a log
 * or a terminal.  UTF-8 is checked strictly (no overlong forms, surrogates or
 * code points past U+10FFFF).
 */
bool dmr_utf8_valid(const char *s, size_t len);
/* The longest prefix of s[0..len) that does not end inside a character:
 * where to cut a string that must fit len bytes. */
size_t dmr_utf8_cut(const char *s, size_t len);
/* Copy src into dst[size] (size > 0), cut on a character boundary. */
void dmr_utf8_copy(char *dst, size_t size, const char *src);
/*
 * Copy src into dst[size] (size > 0) as one printable line: control
 * characters (C0, DEL and C1, so no newline, escape sequence or CSI) and
 * bytes that are not valid UTF-8 become "\xHH"; the result is cut on a
 * character or escape boundary and is always valid UTF-8.  Returns dst.
 * A buffer of 4 * strlen(src) + 1 bytes always holds all of it.
 */
char *dmr_cescape(char *dst, size_t size, const char *src);

/* Read a whole (small) file; *ret_buf is NUL-terminated. max bounds the size. */
int dmr_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len);

/* mkdir -p with mode for the components it creates. */
int dmr_mkdir_p(const char *path, mode_t mode);

#endif
