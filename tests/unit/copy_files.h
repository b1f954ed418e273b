/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the copier's unit tests (test_copy.c, test_copy_fault.c):
 * a scratch directory on a filesystem that takes O_DIRECT, files with
 * pseudo-random data, holes and zero runs, and byte-for-byte comparison.
 */
#ifndef DMR_TESTS_UNIT_COPY_FILES_H
#define DMR_TESTS_UNIT_COPY_FILES_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define KiB (1024u)
#define MiB (1024u * 1024u)

struct scratch {
	char dir[4096];
};

/* Can this directory hold a file that O_DIRECT writes to?  tmpfs before
 * 6.6 and some overlay setups answer EINVAL. */
static inline bool dir_takes_odirect(const char *dir)
{
	char path[4200];
	void *buf = NULL;
	bool ok = false;
	int fd;

	snprintf(path, sizeof(path), "%s/odirect-probe", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd >= 0 && posix_memalign(&buf, 4096, 4096) == 0) {
		memset(buf, 0, 4096);
		ok = pwrite(fd, buf, 4096, 0) == 4096;
	}
	free(buf);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return ok;
}

/* Make a scratch directory where O_DIRECT works: $DMR_TEST_DIR, /var/tmp,
 * the build directory, /tmp.  Returns false if none does. */
static inline bool scratch_make(struct scratch *s, const char *tag)
{
	const char *env = getenv("DMR_TEST_DIR");
	const char *cands[] = { env, "/var/tmp", "build", "/tmp" };

	for (size_t i = 0; i < DMR_ARRAY_SIZE(cands); i++) {
		if (!cands[i] || !cands[i][0])
			continue;
		snprintf(s->dir, sizeof(s->dir), "%s/dmr-%s-XXXXXX", cands[i], tag);
		if (!mkdtemp(s->dir))
			continue;
		if (dir_takes_odirect(s->dir))
			return true;
		rmdir(s->dir);
	}
	s->dir[0] = '\0';
	return false;
}

static inline void scratch_path(const struct scratch *s, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", s->dir, name);
}

static inline void scratch_remove(struct scratch *s)
{
	static const char *const names[] = { "src", "dst", "src2", "dst2", "odirect-probe" };
	char p[4200];

	if (!s->dir[0])
		return;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(names); i++) {
		scratch_path(s, names[i], p, sizeof(p));
		unlink(p);
	}
	rmdir(s->dir);
	s->dir[0] = '\0';
}

/* Deterministic bytes without zero runs: xorshift64*, never zero-seeded. */
static inline void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56) | 1;
	}
}

/* Create (or truncate) path as a sparse file of size bytes. */
static inline int file_make_sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Write n pseudo-random bytes (seed) at off; 0 on success. */
static inline int file_put_random(int fd, uint64_t off, size_t n, uint64_t seed)
{
	uint8_t *b = malloc(n);
	int r = -1;

	if (b) {
		fill_random(b, n, seed);
		r = pwrite(fd, b, n, (off_t)off) == (ssize_t)n ? 0 : -1;
	}
	free(b);
	return r;
}

/* Write n explicit zero bytes at off (allocated, unlike a hole). */
static inline int file_put_zeros(int fd, uint64_t off, size_t n)
{
	uint8_t *b = calloc(1, n);
	int r = -1;

	if (b)
		r = pwrite(fd, b, n, (off_t)off) == (ssize_t)n ? 0 : -1;
	free(b);
	return r;
}

/* Do the first n bytes of a and b match?  Returns the first differing
 * offset, or -1 if they match (-2 on a read error). */
static inline long long files_diff(const char *a, const char *b, uint64_t n)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	static uint8_t ba[65536], bb[65536];
	long long res = -1;
	uint64_t off = 0;

	if (!fa || !fb) {
		res = -2;
		goto out;
	}
	while (off < n) {
		size_t want = n - off < sizeof(ba) ? (size_t)(n - off) : sizeof(ba);

		if (fread(ba, 1, want, fa) != want || fread(bb, 1, want, fb) != want) {
			res = -2;
			goto out;
		}
		if (memcmp(ba, bb, want) != 0) {
			for (size_t i = 0; i < want; i++)
				if (ba[i] != bb[i]) {
					res = (long long)(off + i);
					goto out;
				}
		}
		off += want;
	}
out:
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return res;
}

static inline uint64_t file_alloc_bytes(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return UINT64_MAX;
	return (uint64_t)st.st_blocks * 512u;
}

#endif
