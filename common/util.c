/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/util.h"

#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <libgen.h>
#include <sys/stat.h>
#include <time.h>

/* The unsigned decimal s starts with (no sign, no blank before it); *ret_end
 * after its digits. */
static int parse_leading_u64(const char *s, unsigned long long *ret, char **ret_end)
{
	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, ret_end, 10);
	return errno == ERANGE ? -ERANGE : 0;
}

int dmr_parse_u64(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;
	int r;

	assert(ret);
	r = parse_leading_u64(s, &v, &end);
	if (r == 0 && *end)
		r = -EINVAL; /* a suffix: dmr_parse_size's */
	if (r == 0)
		*ret = v;
	return r;
}

int dmr_parse_size(const char *s, uint64_t *ret_bytes)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{ "", 0 },     { "B", 0 },    { "K", 10 },   { "KiB", 10 },
		{ "KB", 10 },  { "M", 20 },   { "MiB", 20 }, { "MB", 20 },
		{ "G", 30 },   { "GiB", 30 }, { "GB", 30 },  { "T", 40 },
		{ "TiB", 40 }, { "TB", 40 },
	};
	unsigned long long v;
	char *end;
	int r;

	assert(ret_bytes);
	r = parse_leading_u64(s, &v, &end);
	if (r < 0)
		return r;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(units); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
			return -ERANGE;
		*ret_bytes = (uint64_t)v << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

uint64_t dmr_now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t dmr_realtime_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int dmr_format_rfc3339(uint64_t realtime_usec, char buf[32])
{
	time_t t = (time_t)(realtime_usec / 1000000u);
	struct tm tm;

	if (!gmtime_r(&t, &tm))
		return -EOVERFLOW;
	if (strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -EOVERFLOW;
	return 0;
}

int dmr_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return dmr_negerrno();
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int dmr_fsync_parent(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int dfd = -1;

	if (!copy)
		return -ENOMEM;
	dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return dmr_negerrno();
	if (fsync(dfd) < 0)
		return dmr_negerrno();
	return 0;
}

int dmr_write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return dmr_negerrno();
	r = dmr_write_all(fd, buf, len);
	if (r == 0 && fsync(fd) < 0)
		r = dmr_negerrno();
	if (r == 0 && close(DMR_TAKE_FD(fd)) < 0)
		r = dmr_negerrno();
	if (r == 0 && rename(tmp, path) < 0)
		r = dmr_negerrno();
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	/* Renamed: whatever happens now, the file has changed. */
	return dmr_fsync_parent(path) < 0 ? -DMR_E_NOT_DURABLE : 0;
}

int dmr_unlink_durable(const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return dmr_negerrno();
	/* Also when it was gone already: an earlier unlink may not have
	 * reached the disk. */
	return dmr_fsync_parent(path) < 0 ? -DMR_E_NOT_DURABLE : 0;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
	uint32_t cp, min;
	size_t k;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*ret_cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		k = 2;
		cp = s[0] & 0x1f;
		min = 0x80;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		k = 3;
		cp = s[0] & 0x0f;
		min = 0x800;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		k = 4;
		cp = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*ret_cp = cp;
	return k;
}

bool dmr_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;

	while (len > 0) {
		size_t k = utf8_seq(p, len, &cp);

		if (k == 0)
			return false;
		p += k;
		len -= k;
	}
	return true;
}

size_t dmr_utf8_cut(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = len, lead;

	/* Back over continuation bytes (at most 3) to the last lead byte. */
	while (i > 0 && len - i < 4 && (p[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || (p[i - 1] & 0xc0) != 0xc0)
		return len; /* ends on ASCII, or on bytes that are no sequence */
	lead = p[i - 1];
	/* The sequence that lead starts needs this many bytes. */
	{
		size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;

		return len - (i - 1) >= need ? len : i - 1;
	}
}

void dmr_utf8_copy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		n = dmr_utf8_cut(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

char *dmr_cescape(char *dst, size_t size, const char *src)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t len = strlen(src), o = 0;

	while (len > 0) {
		uint32_t cp = 0;
		size_t k = utf8_seq(p, len, &cp);
		bool esc = k == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
		size_t need = esc ? 4 * (k ? k : 1) : k;

		if (o + need >= size)
			break;
		if (esc) {
			for (size_t i = 0; i < (k ? k : 1); i++)
				o += (size_t)snprintf(dst + o, size - o, "\\x%02x", p[i]);
			k = k ? k : 1;
		} else {
			memcpy(dst + o, p, k);
			o += k;
		}
		p += k;
		len -= k;
	}
	dst[o] = '\0';
	return dst;
}

int dmr_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	assert(path && ret_buf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			size_t ncap = cap ? cap * 2 : 4096;
			char *nbuf;

			if (ncap > max + 1)
				ncap = max + 1;
			if (len + 1 >= ncap)
				return -EFBIG;
			nbuf = realloc(buf, ncap);
			if (!nbuf)
				return -ENOMEM;
			buf = nbuf;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return dmr_negerrno();
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (!buf && !(buf = calloc(1, 1)))
		return -ENOMEM;
	buf[len] = '\0';
	*ret_buf = DMR_TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

int dmr_mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return dmr_negerrno();
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return dmr_negerrno();
	return 0;
}

int dmr_why_set(char **ret_why, int r, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (!ret_why)
		return r;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	*ret_why = s;
	return r;
}
