/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the replication stream's codec (common/stream.h, docs/stream.md).
 * Round trips, full and incremental, with and without zstd; and every way a
 * stream can be wrong, made either by damaging what the writer wrote or by
 * an encoder of this file's own that follows docs/stream.md byte by byte
 * (so the document is checked too): a flipped bit anywhere, a truncation at
 * every byte, bytes after the trailer, extents outside their disk, bad
 * names and sizes, lengths that claim more than the bound (the reader must
 * neither allocate nor read for them: malloc, calloc and realloc are
 * wrapped, tests/unit/wrap.mk), a newer version, unknown records, a zstd
 * bomb. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <xxhash.h>
#include <zstd.h>

#include "common/stream.h"
#include "common/util.h"
#include "common/uuid.h"

/* --- allocation watch (--wrap=malloc,calloc,realloc) -------------------- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static size_t alloc_max;        /* the largest single allocation seen */
static bool watching;           /* while the code under test runs */

static void seen(size_t size)
{
	if (watching && size > alloc_max)
		alloc_max = size;
}

void *__wrap_malloc(size_t size)
{
	seen(size);
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	seen(n * size);
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	seen(size);
	return __real_realloc(p, size);
}

/* What a reader may allocate at most at once: a record, framed. */
#define READER_ALLOC_MAX (DMR_STREAM_RECORD_MAX + 64u)

/* --- memory sink and source ----------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_done(struct buf *b)
{
	free(b->p);
	*b = (struct buf){ 0 };
}

static int sink(void *userdata, const void *p, size_t n)
{
	buf_add(userdata, p, n);
	return (int)n;
}

struct src {
	const uint8_t *p;
	size_t len, pos;
	size_t chunk;           /* 0: as much as asked */
	int fail_at;            /* > 0: return -EIO once pos >= fail_at - 1 */
	bool eintr;             /* return -EINTR every other call */
	unsigned calls;
};

static ssize_t source(void *userdata, void *p, size_t n)
{
	struct src *s = userdata;

	s->calls++;
	if (s->eintr && s->calls % 2)
		return -EINTR;
	if (s->fail_at > 0 && s->pos >= (size_t)s->fail_at - 1)
		return -EIO;
	if (n > s->len - s->pos)
		n = s->len - s->pos;
	if (s->chunk && n > s->chunk)
		n = s->chunk;
	memcpy(p, s->p + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

/* --- fixtures ------------------------------------------------------------- */

#define DISK_SIZE (4u << 20)

static void make_header(struct dmr_stream_header *h, uint32_t n_disks, bool incremental)
{
	memset(h, 0, sizeof(*h));
	strcpy(h->vm, "web-01");
	dmr_uuid_new(h->vm_uuid);
	dmr_uuid_new(h->point_uuid);
	if (incremental)
		dmr_uuid_new(h->base_uuid);
	h->created_usec = 1796000000123456ull;
	h->application = incremental;
	strcpy(h->label, "nightly \xc3\xa9t\xc3\xa9 \"quoted\"");
	h->block_bytes = 64u << 10;
	h->n_disks = n_disks;
	for (uint32_t i = 0; i < n_disks; i++) {
		snprintf(h->disks[i].name, sizeof(h->disks[i].name), "vd%c", 'a' + i);
		h->disks[i].size_bytes = DISK_SIZE + i * 512u;
		h->data_bytes += h->disks[i].size_bytes;
	}
}

/* Deterministic bytes: compressible (a repeated word) or not (xorshift). */
static void fill(uint8_t *p, size_t n, uint64_t seed, bool compressible)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < n; i++) {
		if (compressible) {
			p[i] = (uint8_t)("dmrep stream "[i % 13] + (i / 4096 + seed) % 7);
		} else {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = (uint8_t)x;
		}
	}
}

/* Whether read_stream rebuilds the disks (the round trips) or only
 * counts (the thousands of damaged streams). */
static bool images;

/* What a reader made of a stream: each disk's image (zeros where nothing
 * was written) and what was counted. */
struct image {
	uint8_t *disk[4];
	uint64_t written[4];    /* bytes covered by extents */
	unsigned extents, types[8], infos;
	uint64_t info_types[8];
	char error[400];
	struct dmr_stream_header h;
	struct dmr_stream_totals t;
};

static void image_done(struct image *im)
{
	for (unsigned i = 0; i < 4; i++)
		free(im->disk[i]);
}

static void on_trace(void *userdata, const struct dmr_stream_rec_info *info)
{
	struct image *im = userdata;

	im->infos++;
	im->info_types[info->type < 8 ? info->type : 7]++;
	assert_int_equal(info->payload_offset, info->offset + 16);
}

/* Read all of b (in chunks of `chunk` bytes, 0: as asked): the result of
 * the reader (0 for a good stream, else -errno). */
static int read_stream(const uint8_t *p, size_t len, size_t chunk, struct image *im)
{
	struct src s = { .p = p, .len = len, .chunk = chunk };
	struct dmr_stream_reader *r = NULL;
	struct dmr_stream_rec rec;
	int rc;

	memset(im, 0, sizeof(*im));
	watching = true;
	rc = dmr_stream_reader_new_trace(source, &s, on_trace, im, &r);
	watching = false;
	if (rc < 0) {
		assert_null(r);
		snprintf(im->error, sizeof(im->error), "%s", dmr_stream_reader_error(NULL));
		return rc;
	}
	im->h = *dmr_stream_reader_header(r);
	for (uint32_t i = 0; images && i < im->h.n_disks && i < 4; i++) {
		im->disk[i] = calloc(1, im->h.disks[i].size_bytes);
		assert_non_null(im->disk[i]);
	}
	watching = true;
	while ((rc = dmr_stream_read_next(r, &rec)) == 1) {
		im->extents++;
		im->types[rec.type]++;
		assert_true(rec.disk < im->h.n_disks);
		assert_true(rec.offset + rec.length <= im->h.disks[rec.disk].size_bytes);
		if (rec.disk < 4) {
			if (!images)
				;
			else if (rec.type == DMR_STREAM_DATA)
				memcpy(im->disk[rec.disk] + rec.offset, rec.data, rec.length);
			else
				memset(im->disk[rec.disk] + rec.offset, 0, rec.length);
			im->written[rec.disk] += rec.length;
		}
	}
	if (rc == 0)
		dmr_stream_reader_totals(r, &im->t);
	else
		snprintf(im->error, sizeof(im->error), "%s", dmr_stream_reader_error(r));
	/* Sticky: asking again gives the same. */
	assert_int_equal(dmr_stream_read_next(r, &rec), rc);
	dmr_stream_reader_free(r);
	watching = false;
	return rc;
}

/* A writer's stream of h: on each disk a compressible extent, an
 * incompressible one, a zeroed and an unmapped one; *src gets the disks'
 * contents as a reader must rebuild them. */
static void write_stream(const struct dmr_stream_header *h, unsigned flags, struct buf *out,
			 uint8_t *src[], struct dmr_stream_totals *ret_t)
{
	struct dmr_stream_writer *w = NULL;
	uint8_t *data = malloc(DISK_SIZE);

	assert_non_null(data);
	assert_int_equal(dmr_stream_writer_new(h, flags, sink, out, &w), 0);
	for (uint32_t d = 0; d < h->n_disks; d++) {
		src[d] = calloc(1, h->disks[d].size_bytes);
		fill(data, 192u << 10, d, true);
		assert_int_equal(dmr_stream_write_data(w, d, 64u << 10, data, 192u << 10), 0);
		memcpy(src[d] + (64u << 10), data, 192u << 10);
		fill(data, 64u << 10, d + 100, false);
		assert_int_equal(dmr_stream_write_data(w, d, 1u << 20, data, 64u << 10), 0);
		memcpy(src[d] + (1u << 20), data, 64u << 10);
		assert_int_equal(dmr_stream_write_zero(w, d, 2u << 20, 1u << 20), 0);
		assert_int_equal(dmr_stream_write_unmap(w, d, 3u << 20, 512u << 10), 0);
		/* The last sector of the disk: extents may end at its end. */
		fill(data, 512, d + 7, false);
		assert_int_equal(dmr_stream_write_data(w, d, h->disks[d].size_bytes - 512, data, 512), 0);
		memcpy(src[d] + h->disks[d].size_bytes - 512, data, 512);
	}
	assert_int_equal(dmr_stream_writer_finish(w, ret_t), 0);
	dmr_stream_writer_free(w);
	free(data);
}

/* A small good stream: one disk, a few records. */
static void small_stream(struct buf *out, struct dmr_stream_header *h)
{
	struct dmr_stream_writer *w = NULL;
	uint8_t data[2048];

	make_header(h, 2, true);
	fill(data, sizeof(data), 3, false);
	assert_int_equal(dmr_stream_writer_new(h, 0, sink, out, &w), 0);
	assert_int_equal(dmr_stream_write_data(w, 0, 4096, data, 1024), 0);
	assert_int_equal(dmr_stream_write_zero(w, 1, 0, 8192), 0);
	assert_int_equal(dmr_stream_write_unmap(w, 0, 1u << 20, 1u << 20), 0);
	assert_int_equal(dmr_stream_write_data(w, 1, 512, data + 1024, 1024), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	dmr_stream_writer_free(w);
}

/* --- this file's own encoder, from docs/stream.md ------------------------- */

/* Where the header payload's VM name starts (after its length). */
#define VM_AT 134

static void le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void raw_preamble(struct buf *b, uint32_t version)
{
	uint8_t v[4];

	buf_add(b, "DMREPSTR", 8);
	le(v, version, 4);
	buf_add(b, v, 4);
}

/* A record with a payload length field of `claimed` (normally len). */
static void raw_record_claim(struct buf *b, uint32_t type, uint32_t flags, const void *payload,
			     size_t len, uint64_t claimed)
{
	uint8_t f[16], s[8];
	XXH3_state_t *st = XXH3_createState();

	le(f, type, 4);
	le(f + 4, flags, 4);
	le(f + 8, claimed, 8);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, f, 16);
	XXH3_64bits_update(st, payload, len);
	le(s, XXH3_64bits_digest(st), 8);
	XXH3_freeState(st);
	buf_add(b, f, 16);
	buf_add(b, payload, len);
	buf_add(b, s, 8);
}

static void raw_record(struct buf *b, uint32_t type, uint32_t flags, const void *payload, size_t len)
{
	raw_record_claim(b, type, flags, payload, len, len);
}

static void put_str(struct buf *p, const char *s)
{
	uint8_t n[2];

	le(n, strlen(s), 2);
	buf_add(p, n, 2);
	buf_add(p, s, strlen(s));
}

/* The header payload of h, as docs/stream.md lays it out: no checks. */
static void raw_header_payload(struct buf *p, const struct dmr_stream_header *h)
{
	uint8_t v[8], zero[36] = { 0 };

	buf_add(p, h->vm_uuid, 36);
	buf_add(p, h->point_uuid, 36);
	buf_add(p, h->base_uuid[0] ? (const uint8_t *)h->base_uuid : zero, 36);
	le(v, h->created_usec, 8);
	buf_add(p, v, 8);
	le(v, h->block_bytes, 4);
	buf_add(p, v, 4);
	le(v, h->application ? 1 : 0, 4);
	buf_add(p, v, 4);
	le(v, h->data_bytes, 8);
	buf_add(p, v, 8);
	put_str(p, h->vm);
	put_str(p, h->label);
	le(v, h->n_disks, 4);
	buf_add(p, v, 4);
	for (uint32_t i = 0; i < h->n_disks; i++) {
		put_str(p, h->disks[i].name);
		le(v, h->disks[i].size_bytes, 8);
		buf_add(p, v, 8);
	}
}

static void raw_header(struct buf *b, const struct dmr_stream_header *h)
{
	struct buf p = { 0 };

	raw_header_payload(&p, h);
	raw_record(b, 1, 0, p.p, p.len);
	buf_done(&p);
}

/* The trailer's checksum of the stream in p, as docs/stream.md defines it:
 * XXH3-64 of the preamble followed by each record's checksum field, found
 * by walking the records' lengths. */
static uint64_t chain_sum(const uint8_t *p, size_t len)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t sum;
	size_t off = 12;

	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, p, 12);
	while (off + 16 <= len) {
		uint64_t n = rd(p + off + 8, 8);

		assert_true(off + 16 + n + 8 <= len);
		XXH3_64bits_update(st, p + off + 16 + n, 8);
		off += 16 + n + 8;
	}
	assert_int_equal(off, len);
	sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return sum;
}

/* The trailer for what b holds: counts as given. */
static void raw_trailer(struct buf *b, uint64_t records, uint64_t data, uint64_t zero)
{
	uint8_t t[40];

	le(t, records, 8);
	le(t + 8, data, 8);
	le(t + 16, zero, 8);
	le(t + 24, b->len + 64, 8);
	le(t + 32, chain_sum(b->p, b->len), 8);
	raw_record(b, 6, 0, t, sizeof(t));
}

/* An extent payload: disk, pad, offset, then `tail` (length or data). */
static void raw_extent(struct buf *b, uint32_t type, uint32_t disk, uint32_t pad, uint64_t offset,
		       const void *tail, size_t tail_len)
{
	struct buf p = { 0 };
	uint8_t v[16];

	le(v, disk, 4);
	le(v + 4, pad, 4);
	le(v + 8, offset, 8);
	buf_add(&p, v, 16);
	buf_add(&p, tail, tail_len);
	raw_record(b, type, 0, p.p, p.len);
	buf_done(&p);
}

static void raw_range(struct buf *b, uint32_t type, uint32_t disk, uint64_t offset, uint64_t len)
{
	uint8_t v[8];

	le(v, len, 8);
	raw_extent(b, type, disk, 0, offset, v, 8);
}

/* A stream of h and one extent record made by `add` (after the header):
 * the reader's verdict, its message in im. */
static int one_record_counts(const struct dmr_stream_header *h, struct image *im,
			     void (*add)(struct buf *b, const void *arg), const void *arg,
			     uint64_t data, uint64_t zero)
{
	struct buf b = { 0 };
	int rc;

	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_header(&b, h);
	add(&b, arg);
	raw_trailer(&b, 2, data, zero);
	rc = read_stream(b.p, b.len, 0, im);
	image_done(im);
	buf_done(&b);
	return rc;
}

static int one_record(const struct dmr_stream_header *h, struct image *im,
		      void (*add)(struct buf *b, const void *arg), const void *arg)
{
	return one_record_counts(h, im, add, arg, 0, 0);
}

/* Replace a writer's trailer (the last 64 bytes) by one of this file's. */
static void strip_trailer(struct buf *b, struct dmr_stream_totals *ret)
{
	const uint8_t *t = b->p + b->len - 48;

	assert_int_equal(rd(b->p + b->len - 64, 4), 6);
	ret->records = rd(t, 8);
	ret->data_bytes = rd(t + 8, 8);
	ret->zero_bytes = rd(t + 16, 8);
	b->len -= 64;
}

static void flip(uint8_t *p, size_t byte, unsigned bit)
{
	p[byte] ^= (uint8_t)(1u << bit);
}

/* --- round trips ------------------------------------------------------------ */

static void check_roundtrip(bool incremental, unsigned flags)
{
	struct dmr_stream_header h;
	struct dmr_stream_totals wt;
	struct buf b = { 0 };
	uint8_t *src[4] = { 0 };
	struct image im;

	make_header(&h, 3, incremental);
	write_stream(&h, flags, &b, src, &wt);
	images = true;
	assert_int_equal(wt.stream_bytes, b.len);
	/* As it comes, and in odd small pieces (a pipe's short reads). */
	for (int pass = 0; pass < 2; pass++) {
		assert_int_equal(read_stream(b.p, b.len, pass ? 4093 : 0, &im), 0);
		assert_int_equal(im.h.version, DMR_STREAM_VERSION);
		assert_string_equal(im.h.vm, h.vm);
		assert_string_equal(im.h.vm_uuid, h.vm_uuid);
		assert_string_equal(im.h.point_uuid, h.point_uuid);
		assert_string_equal(im.h.base_uuid, h.base_uuid);
		assert_string_equal(im.h.label, h.label);
		assert_int_equal(im.h.created_usec, h.created_usec);
		assert_int_equal(im.h.application, h.application);
		assert_int_equal(im.h.block_bytes, h.block_bytes);
		assert_int_equal(im.h.n_disks, 3);
		for (uint32_t d = 0; d < 3; d++) {
			assert_string_equal(im.h.disks[d].name, h.disks[d].name);
			assert_int_equal(im.h.disks[d].size_bytes, h.disks[d].size_bytes);
			assert_memory_equal(im.disk[d], src[d], h.disks[d].size_bytes);
			assert_int_equal(im.written[d], (192u << 10) + (64u << 10) + (1u << 20) +
							      (512u << 10) + 512);
		}
		assert_int_equal(im.types[DMR_STREAM_ZERO], 3);
		assert_int_equal(im.types[DMR_STREAM_UNMAP], 3);
		/* The reader's totals are the writer's. */
		assert_int_equal(im.t.records, wt.records);
		assert_int_equal(im.t.data_bytes, wt.data_bytes);
		assert_int_equal(im.t.data_bytes, 3 * ((192u << 10) + (64u << 10) + 512));
		assert_int_equal(im.t.zero_bytes, 3 * ((1u << 20) + (512u << 10)));
		assert_int_equal(im.t.stream_bytes, b.len);
		assert_int_equal(im.t.records, 1 + im.extents);
		/* The trace saw each record, the trailer too. */
		assert_int_equal(im.infos, im.t.records + 1);
		assert_int_equal(im.info_types[1], 1);
		assert_int_equal(im.info_types[6], 1);
		if (flags & DMR_STREAM_W_ZSTD) {
			/* Compressible data went compressed, the random
			 * extent and the last sector did not shrink. */
			assert_int_equal(im.info_types[5], 3);
			assert_int_equal(im.info_types[2], 6);
		} else {
			assert_int_equal(im.info_types[5], 0);
			assert_int_equal(im.info_types[2], 9);
		}
		assert_true(alloc_max <= READER_ALLOC_MAX);
		image_done(&im);
	}
	if (flags & DMR_STREAM_W_ZSTD)
		assert_true(b.len < 3 * (64u << 10) + 3 * 4096 + (192u << 10));
	else
		assert_true(b.len > wt.data_bytes);
	for (unsigned d = 0; d < 4; d++)
		free(src[d]);
	buf_done(&b);
	images = false;
}

static void test_roundtrip_full(void **state)
{
	check_roundtrip(false, 0);
}

static void test_roundtrip_full_zstd(void **state)
{
	check_roundtrip(false, DMR_STREAM_W_ZSTD);
}

static void test_roundtrip_incremental(void **state)
{
	check_roundtrip(true, 0);
}

static void test_roundtrip_incremental_zstd(void **state)
{
	check_roundtrip(true, DMR_STREAM_W_ZSTD);
}

/* A big extent is split into records of DMR_STREAM_DATA_MAX; an empty
 * stream (header, trailer) is a stream; the reader's memory stays bounded. */
static void test_split_and_empty(void **state)
{
	struct dmr_stream_header h;
	struct dmr_stream_writer *w = NULL;
	struct dmr_stream_totals t;
	struct buf b = { 0 };
	struct image im;
	size_t n = (5u << 19) + 4096;   /* 2.5 MiB and a page */
	uint8_t *data = malloc(n);

	make_header(&h, 1, false);
	fill(data, n, 9, false);
	assert_int_equal(dmr_stream_writer_new(&h, DMR_STREAM_W_ZSTD, sink, &b, &w), 0);
	assert_int_equal(dmr_stream_write_data(w, 0, 512, data, n), 0);
	assert_int_equal(dmr_stream_writer_finish(w, &t), 0);
	dmr_stream_writer_free(w);
	assert_int_equal(t.records, 1 + 3);
	alloc_max = 0;
	images = true;
	assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
	images = false;
	assert_int_equal(im.extents, 3);
	assert_memory_equal(im.disk[0] + 512, data, n);
	/* The reader's largest block is its record buffer. */
	assert_true(alloc_max <= READER_ALLOC_MAX);
	image_done(&im);
	buf_done(&b);

	assert_int_equal(dmr_stream_writer_new(&h, 0, sink, &b, &w), 0);
	assert_int_equal(dmr_stream_writer_finish(w, &t), 0);
	dmr_stream_writer_free(w);
	assert_int_equal(t.records, 1);
	assert_int_equal(read_stream(b.p, b.len, 1, &im), 0);
	assert_int_equal(im.extents, 0);
	assert_int_equal(im.t.stream_bytes, b.len);
	image_done(&im);
	buf_done(&b);
	free(data);
}

/* --- the writer's refusals ------------------------------------------------- */

static int fail_sink(void *userdata, const void *p, size_t n)
{
	int *left = userdata;

	if ((*left)-- <= 0)
		return -ENOSPC;
	return (int)n;
}

static int short_sink(void *userdata, const void *p, size_t n)
{
	return n > 1 ? (int)n - 1 : (int)n;
}

static void test_writer_refusals(void **state)
{
	struct dmr_stream_header h, bad;
	struct dmr_stream_writer *w = (void *)1, *w2;
	struct buf b = { 0 };
	uint8_t data[1024] = { 0 };
	int left;

	make_header(&h, 2, false);
	bad = h;
	strcpy(bad.disks[1].name, "a/b");
	/* A bad header: -EINVAL, nothing written, out-param untouched. */
	assert_int_equal(dmr_stream_writer_new(&bad, 0, sink, &b, &w), -EINVAL);
	assert_ptr_equal(w, (void *)1);
	assert_int_equal(b.len, 0);
	assert_int_equal(dmr_stream_writer_new(&h, 0x80, sink, &b, &w), -EINVAL);
	assert_int_equal(dmr_stream_writer_new(&h, 0, sink, &b, &w), 0);
	/* Past the end, not in sectors, empty, a disk that is not there. */
	assert_int_equal(dmr_stream_write_data(w, 0, DISK_SIZE - 512, data, 1024), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 0, 100, data, 512), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 0, 0, data, 100), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 0, 0, data, 0), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 0, 0, NULL, 512), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 2, 0, data, 512), -EINVAL);
	assert_int_equal(dmr_stream_write_zero(w, 1, 0, DISK_SIZE + 1024), -EINVAL);
	assert_int_equal(dmr_stream_write_zero(w, 1, UINT64_MAX - 511, 1024), -EINVAL);
	assert_int_equal(dmr_stream_write_unmap(w, 0, 512, 0), -EINVAL);
	/* The refusals wrote nothing and did not break the writer. */
	assert_int_equal(dmr_stream_write_zero(w, 1, 0, DISK_SIZE + 512), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	/* Nothing after the trailer. */
	assert_int_equal(dmr_stream_write_zero(w, 0, 0, 512), -EINVAL);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), -EINVAL);
	dmr_stream_writer_free(w);
	{
		struct image im;

		assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
		assert_int_equal(im.extents, 1);
		image_done(&im);
	}
	buf_done(&b);

	/* A sink that fails: the error, and it sticks. */
	left = 0;
	assert_int_equal(dmr_stream_writer_new(&h, 0, fail_sink, &left, &w2), -ENOSPC);
	left = 1;       /* the preamble, not the header record (one write) */
	assert_int_equal(dmr_stream_writer_new(&h, 0, fail_sink, &left, &w2), -ENOSPC);
	left = 2;
	assert_int_equal(dmr_stream_writer_new(&h, 0, fail_sink, &left, &w2), 0);
	assert_int_equal(dmr_stream_write_zero(w2, 0, 0, 512), -ENOSPC);
	left = 100;
	assert_int_equal(dmr_stream_write_zero(w2, 0, 0, 512), -ENOSPC);
	assert_int_equal(dmr_stream_writer_finish(w2, NULL), -ENOSPC);
	dmr_stream_writer_free(w2);
	/* A short write is an error, not a silent gap. */
	assert_int_equal(dmr_stream_writer_new(&h, 0, short_sink, NULL, &w2), -EIO);
}

/* --- the header's rules ------------------------------------------------------ */

static void on_header_len(void *userdata, const struct dmr_stream_rec_info *info)
{
	if (info->index == 0)
		*(uint64_t *)userdata = info->payload_len;
}

static void test_header_check(void **state)
{
	struct dmr_stream_header good, h;
	const char *why = NULL;
	static const char *bad_names[] = { "", ".", "..", "-x", "a/b", "a b", "\xc3\xa9", "a\\b",
					   "a:b", "a\nb" };

	make_header(&good, 3, true);
	assert_int_equal(dmr_stream_header_check(&good, &why), 0);
	assert_null(why);
	assert_int_equal(dmr_stream_header_check(&good, NULL), 0);
	/* What the agent's names allow passes: dots inside, '+', '_'. */
	h = good;
	strcpy(h.vm, ".hidden+v_1.2");
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);
	memset(h.vm, 'a', DMR_STREAM_NAME_MAX);
	h.vm[DMR_STREAM_NAME_MAX] = '\0';
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);
	/* A name without its NUL within the bound. */
	h.vm[DMR_STREAM_NAME_MAX] = 'a';
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "vm name");

	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad_names); i++) {
		h = good;
		strcpy(h.vm, bad_names[i]);
		assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
		assert_string_equal(why, "vm name");
		h = good;
		strcpy(h.disks[2].name, bad_names[i]);
		assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
		assert_string_equal(why, "disk name");
	}
	h = good;
	strcpy(h.disks[2].name, h.disks[0].name);
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "disk name (a duplicate)");

	h = good;
	strcpy(h.vm_uuid, "not-a-uuid");
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "vm uuid");
	h = good;
	strcpy(h.point_uuid, "00000000-0000-0000-0000-000000000000");
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "point uuid");
	h = good;
	h.base_uuid[3] = 'X';
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "base uuid");
	h = good;
	strcpy(h.base_uuid, h.point_uuid);
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	h = good;
	h.base_uuid[0] = '\0';  /* a full stream */
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);

	h = good;
	strcpy(h.label, "tab\there");
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "label");
	strcpy(h.label, "del\x7f");
	assert_int_equal(dmr_stream_header_check(&h, NULL), -EBADMSG);
	strcpy(h.label, "bad utf-8 \xc3");
	assert_int_equal(dmr_stream_header_check(&h, NULL), -EBADMSG);
	memset(h.label, 'l', sizeof(h.label));
	assert_int_equal(dmr_stream_header_check(&h, NULL), -EBADMSG);
	h.label[DMR_STREAM_LABEL_MAX] = '\0';
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);

	static const uint32_t bad_blocks[] = { 0, 512, 32u << 10, (64u << 10) + 512, 96u << 10,
					       2u << 30, UINT32_MAX };
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad_blocks); i++) {
		h = good;
		h.block_bytes = bad_blocks[i];
		assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
		assert_string_equal(why, "block size");
	}
	h.block_bytes = 1u << 30;
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);
	h.block_bytes = 128u << 10;
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);

	h = good;
	h.n_disks = 0;
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "disk count");
	h.n_disks = DMR_STREAM_DISKS_MAX + 1;
	assert_int_equal(dmr_stream_header_check(&h, NULL), -EBADMSG);

	static const uint64_t bad_sizes[] = { 0, 511, 4097, DMR_STREAM_SIZE_MAX + 512, 1ull << 60,
					      UINT64_MAX };
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad_sizes); i++) {
		h = good;
		h.disks[1].size_bytes = bad_sizes[i];
		assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
		assert_string_equal(why, "disk size");
	}
	h.disks[1].size_bytes = DMR_STREAM_SIZE_MAX;
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);

	/* The most a header holds. */
	h = good;
	h.n_disks = DMR_STREAM_DISKS_MAX;
	for (uint32_t i = 0; i < h.n_disks; i++) {
		memset(h.disks[i].name, 'd', DMR_STREAM_NAME_MAX);
		snprintf(h.disks[i].name + DMR_STREAM_NAME_MAX - 3, 4, "%03u", i % 1000u);
		h.disks[i].size_bytes = DMR_STREAM_SIZE_MAX;
	}
	memset(h.vm, 'v', DMR_STREAM_NAME_MAX);
	h.vm[DMR_STREAM_NAME_MAX] = '\0';
	memset(h.label, 'l', DMR_STREAM_LABEL_MAX);
	h.label[DMR_STREAM_LABEL_MAX] = '\0';
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);
	{
		struct dmr_stream_writer *w = NULL;
		struct buf b = { 0 };
		struct image im;

		assert_int_equal(dmr_stream_writer_new(&h, 0, sink, &b, &w), 0);
		assert_int_equal(dmr_stream_write_zero(w, 63, DMR_STREAM_SIZE_MAX - 512, 512), 0);
		assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
		dmr_stream_writer_free(w);
		memset(&im, 0, sizeof(im));
		{
			struct src s = { .p = b.p, .len = b.len };
			struct dmr_stream_reader *r = NULL;
			struct dmr_stream_rec rec;
			uint64_t hlen = 0;

			assert_int_equal(dmr_stream_reader_new_trace(source, &s, on_header_len, &hlen, &r), 0);
			/* The longest header there is: docs/stream.md's number,
			 * the reader's bound. */
			assert_int_equal(hlen, 9356);
			assert_int_equal(dmr_stream_reader_header(r)->n_disks, 64);
			assert_string_equal(dmr_stream_reader_header(r)->disks[63].name,
					    h.disks[63].name);
			assert_int_equal(dmr_stream_read_next(r, &rec), 1);
			assert_int_equal(rec.disk, 63);
			assert_int_equal(dmr_stream_read_next(r, &rec), 0);
			dmr_stream_reader_free(r);
		}
		buf_done(&b);
	}
}

/* --- damage to a writer's stream ------------------------------------------------ */

/* One bit flipped anywhere in a small stream: never accepted.  The
 * version's bits give -EPROTONOSUPPORT (or version 0, -EBADMSG), a
 * length that grows past the input -ENODATA, anything else -EBADMSG. */
static void test_flip_every_bit(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct image im;
	unsigned nodata = 0, proto = 0, badmsg = 0;

	small_stream(&b, &h);
	assert_true(b.len < 4096);
	for (size_t i = 0; i < b.len; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			int rc;

			flip(b.p, i, bit);
			rc = read_stream(b.p, b.len, 0, &im);
			image_done(&im);
			flip(b.p, i, bit);
			if (rc == -ENODATA)
				nodata++;
			else if (rc == -EPROTONOSUPPORT)
				proto++;
			else if (rc == -EBADMSG)
				badmsg++;
			else
				fail_msg("bit %u of byte %zu: %d", bit, i, rc);
			if (i >= 8 && i < 12)
				assert_true(rc == -EPROTONOSUPPORT || (i == 8 && bit == 0 && rc == -EBADMSG));
		}
	}
	assert_int_equal(proto, 31);
	assert_int_equal(nodata + proto + badmsg, 8 * b.len);
	assert_true(alloc_max <= READER_ALLOC_MAX);
	buf_done(&b);
}

/* Damage that the record checksums cannot see: a record's type, flags or
 * payload changed and its checksum made again, thousands of times at
 * random over a stream of every record type.  The parsers see bad values
 * behind good checksums; whatever they make of them (an ASan build
 * watches), the stream is refused: at the latest its trailer's
 * whole-stream checksum does not match. */
static void test_resigned_mutations(void **state)
{
	struct dmr_stream_header h;
	struct dmr_stream_writer *w = NULL;
	struct buf b = { 0 };
	struct image im;
	size_t at[16], n_rec = 0, pos = 12;
	uint8_t data[8192];
	uint64_t x = 0x2545f4914f6cdd1dull;
	unsigned refused_early = 0;

	make_header(&h, 2, true);
	fill(data, 4096, 1, true);
	fill(data + 4096, 4096, 2, false);
	assert_int_equal(dmr_stream_writer_new(&h, DMR_STREAM_W_ZSTD, sink, &b, &w), 0);
	assert_int_equal(dmr_stream_write_data(w, 0, 0, data, 4096), 0);
	assert_int_equal(dmr_stream_write_data(w, 1, 4096, data + 4096, 4096), 0);
	assert_int_equal(dmr_stream_write_zero(w, 0, 8192, 8192), 0);
	assert_int_equal(dmr_stream_write_unmap(w, 1, 1u << 20, 1u << 20), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	dmr_stream_writer_free(w);
	/* Where the records are, the trailer left out. */
	while (pos < b.len) {
		if (rd(b.p + pos, 4) != DMR_STREAM_T_TRAILER)
			at[n_rec++] = pos;
		pos += 16 + rd(b.p + pos + 8, 8) + 8;
	}
	assert_int_equal(pos, b.len);
	assert_int_equal(n_rec, 5);
	assert_int_equal(rd(b.p + at[1], 4), DMR_STREAM_T_DATA_ZSTD);
	assert_int_equal(rd(b.p + at[2], 4), DMR_STREAM_DATA);

	for (unsigned i = 0; i < 4000; i++) {
		uint8_t *copy = malloc(b.len);
		size_t r, len, off;
		int rc;

		memcpy(copy, b.p, b.len);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		r = at[x % n_rec];
		len = rd(copy + r + 8, 8);
		/* Anywhere in the record but its length field. */
		off = (x >> 8) % (16 + len - 8);
		if (off >= 8)
			off += 8;
		copy[r + off] ^= (uint8_t)(1u << ((x >> 40) % 8));
		if ((x >> 50) % 4 == 0) {
			/* Sometimes a whole byte, and a second one. */
			copy[r + off] = (uint8_t)(x >> 24);
			copy[r + 16 + (x >> 32) % len] ^= 0xff;
		}
		le(copy + r + 16 + len, XXH3_64bits(copy + r, 16 + len), 8);
		rc = read_stream(copy, b.len, 0, &im);
		if (rc != -EBADMSG)
			fail_msg("mutation %u at byte %zu: %d (%s)", i, r + off, rc, im.error);
		if (!strstr(im.error, "whole-stream checksum"))
			refused_early++;
		image_done(&im);
		free(copy);
	}
	print_message("%u of 4000 refused before the trailer\n", refused_early);
	/* Most damage is seen by the parsers, before the trailer. */
	assert_true(refused_early > 1000);
	assert_true(alloc_max <= READER_ALLOC_MAX);
	buf_done(&b);
}

/* The refusals the issue names, with the message a user sees. */
static void test_flip_named(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct image im;
	size_t hdr_len, data_at;

	small_stream(&b, &h);
	hdr_len = rd(b.p + 12 + 8, 8);
	/* In the header's payload (the VM name's first byte). */
	flip(b.p, 12 + 16 + VM_AT, 1);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_string_equal(im.error, "record 0 (byte 12): checksum mismatch");
	image_done(&im);
	flip(b.p, 12 + 16 + VM_AT, 1);
	/* In the first data record's bytes. */
	data_at = 12 + 16 + hdr_len + 8;
	assert_int_equal(rd(b.p + data_at, 4), DMR_STREAM_DATA);
	flip(b.p, data_at + 16 + 16 + 100, 7);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_non_null(strstr(im.error, "record 1 "));
	assert_non_null(strstr(im.error, "checksum mismatch"));
	/* Nothing of the bad record was handed out. */
	assert_int_equal(im.extents, 0);
	image_done(&im);
	flip(b.p, data_at + 16 + 16 + 100, 7);
	/* In its checksum. */
	flip(b.p, data_at + 16 + 16 + 1024 + 3, 0);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_non_null(strstr(im.error, "record 1 "));
	image_done(&im);
	flip(b.p, data_at + 16 + 16 + 1024 + 3, 0);
	/* In the trailer's payload: the records before it were handed out,
	 * the end is not reached. */
	flip(b.p, b.len - 8 - 40 + 2, 4);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_non_null(strstr(im.error, "record 5 "));
	assert_int_equal(im.extents, 4);
	image_done(&im);
	flip(b.p, b.len - 8 - 40 + 2, 4);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
	image_done(&im);
	buf_done(&b);
}

/* A record damaged and its checksum made again: the trailer's
 * whole-stream checksum still catches it; and the trailer's own fields. */
static void test_trailer_checks(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 }, c = { 0 };
	struct dmr_stream_totals t;
	struct image im;
	size_t hdr_len, data_at;

	small_stream(&b, &h);
	strip_trailer(&b, &t);
	hdr_len = rd(b.p + 12 + 8, 8);
	data_at = 12 + 16 + hdr_len + 8;

	/* The good trailer, from this file's encoder: the same bytes. */
	buf_add(&c, b.p, b.len);
	raw_trailer(&c, t.records, t.data_bytes, t.zero_bytes);
	assert_int_equal(read_stream(c.p, c.len, 0, &im), 0);
	image_done(&im);

	/* A data byte changed, the record's checksum made to match. */
	c.len = 0;
	buf_add(&c, b.p, b.len);
	c.p[data_at + 16 + 16 + 5] ^= 0x40;
	le(c.p + data_at + 16 + 1040, XXH3_64bits(c.p + data_at, 16 + 1040), 8);
	{
		/* ... followed by the trailer of the stream as it was. */
		struct buf d = { 0 };

		buf_add(&d, b.p, b.len);
		raw_trailer(&d, t.records, t.data_bytes, t.zero_bytes);
		buf_add(&c, d.p + b.len, 64);
		buf_done(&d);
	}
	assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
	assert_string_equal(im.error, "trailer: whole-stream checksum mismatch");
	image_done(&im);

	/* Counts that are not the stream's. */
	for (int k = 0; k < 3; k++) {
		c.len = 0;
		buf_add(&c, b.p, b.len);
		raw_trailer(&c, t.records + (k == 0), t.data_bytes + (k == 1) * 512,
			    t.zero_bytes - (k == 2) * 512);
		assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
		assert_non_null(strstr(im.error, "trailer: counts"));
		image_done(&im);
	}
	/* A stream length that is not its own. */
	{
		uint8_t tr[40];

		c.len = 0;
		buf_add(&c, b.p, b.len);
		le(tr, t.records, 8);
		le(tr + 8, t.data_bytes, 8);
		le(tr + 16, t.zero_bytes, 8);
		le(tr + 24, c.len + 65, 8);
		le(tr + 32, chain_sum(c.p, c.len), 8);
		raw_record(&c, 6, 0, tr, 40);
		assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
		assert_non_null(strstr(im.error, "stream bytes"));
		image_done(&im);
		/* A trailer of another length, or flagged. */
		c.len = 0;
		buf_add(&c, b.p, b.len);
		raw_record(&c, 6, 0, tr, 32);
		assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
		image_done(&im);
		c.len = 0;
		buf_add(&c, b.p, b.len);
		raw_record(&c, 6, DMR_STREAM_F_OPTIONAL, tr, 40);
		assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
		image_done(&im);
	}
	/* No trailer at all: the input ends early. */
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -ENODATA);
	assert_int_equal(im.extents, 4);
	image_done(&im);
	buf_done(&b);
	buf_done(&c);
}

/* Cut at every byte: always -ENODATA, in one read or byte by byte. */
static void test_truncation(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct image im;

	small_stream(&b, &h);
	for (size_t len = 0; len < b.len; len++) {
		for (size_t chunk = 0; chunk <= 1; chunk++) {
			int rc = read_stream(b.p, len, chunk, &im);

			if (rc != -ENODATA)
				fail_msg("cut at %zu of %zu: %d (%s)", len, b.len, rc, im.error);
			image_done(&im);
		}
	}
	assert_int_equal(read_stream(b.p, 5, 0, &im), -ENODATA);
	assert_string_equal(im.error, "the stream ends early, at byte 5");
	image_done(&im);
	buf_done(&b);
}

static void test_trailing_bytes(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct image im;
	size_t len;

	small_stream(&b, &h);
	len = b.len;
	buf_add(&b, "\0", 1);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_non_null(strstr(im.error, "bytes after the trailer"));
	/* Every extent was handed out; the caller must still throw them away. */
	assert_int_equal(im.extents, 4);
	image_done(&im);
	/* A second stream after the first. */
	{
		uint8_t *copy = malloc(len);

		memcpy(copy, b.p, len);
		buf_add(&b, copy, len);
		free(copy);
	}
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	image_done(&im);
	buf_done(&b);
}

/* --- extents the reader refuses ----------------------------------------------- */

struct ext_arg {
	uint32_t type, disk, pad;
	uint64_t offset, len;
	size_t data_len;        /* DATA */
};

static void add_ext(struct buf *b, const void *arg)
{
	const struct ext_arg *a = arg;

	if (a->type == DMR_STREAM_DATA) {
		uint8_t *d = calloc(1, a->data_len + 1);

		raw_extent(b, DMR_STREAM_DATA, a->disk, a->pad, a->offset, d, a->data_len);
		free(d);
	} else {
		uint8_t v[8];

		le(v, a->len, 8);
		raw_extent(b, a->type, a->disk, a->pad, a->offset, v, 8);
	}
}

static void test_extent_refusals(void **state)
{
	struct dmr_stream_header h;
	struct image im;
	struct ext_arg a;

	make_header(&h, 2, false);
	/* The encoder and a good extent first. */
	a = (struct ext_arg){ DMR_STREAM_DATA, 1, 0, DISK_SIZE, 0, 512 };
	assert_int_equal(one_record_counts(&h, &im, add_ext, &a, 512, 0), 0);
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 0, 0, DISK_SIZE, 0 };
	assert_int_equal(one_record_counts(&h, &im, add_ext, &a, 0, DISK_SIZE), 0);

	/* Past the end of the disk. */
	a = (struct ext_arg){ DMR_STREAM_DATA, 0, 0, DISK_SIZE - 512, 0, 1024 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: data extent past the end of disk vda (offset 4193792"
				      " length 1024 size 4194304)");
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 0, DISK_SIZE, 512, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "zero extent past the end of disk vda"));
	a = (struct ext_arg){ DMR_STREAM_UNMAP, 0, 0, 512, DISK_SIZE, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "unmap extent past the end"));
	/* Where offset + length wraps around. */
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 0, UINT64_MAX - 511, 1024, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 0, 512, UINT64_MAX - 511, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);

	/* Not in 512-byte sectors: the offset, the length, data's length. */
	a = (struct ext_arg){ DMR_STREAM_DATA, 0, 0, 100, 0, 512 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "not in 512-byte sectors"));
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 0, 4096, 4000, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	a = (struct ext_arg){ DMR_STREAM_DATA, 0, 0, 0, 0, 700 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	/* Empty. */
	a = (struct ext_arg){ DMR_STREAM_DATA, 0, 0, 0, 0, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	a = (struct ext_arg){ DMR_STREAM_UNMAP, 0, 0, 0, 0, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);

	/* A disk the header does not have. */
	a = (struct ext_arg){ DMR_STREAM_DATA, 2, 0, 0, 0, 512 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: data extent for disk 2 of a stream with 2 disks");
	a = (struct ext_arg){ DMR_STREAM_ZERO, UINT32_MAX, 0, 0, 512, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
	/* The pad is zero. */
	a = (struct ext_arg){ DMR_STREAM_ZERO, 0, 1, 0, 512, 0 };
	assert_int_equal(one_record(&h, &im, add_ext, &a), -EBADMSG);
}

struct rec_arg {
	uint32_t type, flags;
	size_t len;
};

static void add_rec(struct buf *b, const void *arg)
{
	const struct rec_arg *a = arg;
	uint8_t *p = calloc(1, a->len + 1);

	raw_record(b, a->type, a->flags, p, a->len);
	free(p);
}

/* Records of a known type of the wrong size or with flags, a second header. */
static void test_record_shapes(void **state)
{
	struct dmr_stream_header h;
	struct image im;
	struct rec_arg a;

	make_header(&h, 1, false);
	static const struct rec_arg bad[] = {
		{ DMR_STREAM_ZERO, 0, 16 }, { DMR_STREAM_ZERO, 0, 32 }, { DMR_STREAM_UNMAP, 0, 0 },
		{ DMR_STREAM_DATA, 0, 8 }, { DMR_STREAM_T_DATA_ZSTD, 0, 24 },
		{ DMR_STREAM_ZERO, DMR_STREAM_F_OPTIONAL, 24 }, { DMR_STREAM_DATA, 2, 16 + 512 },
		{ DMR_STREAM_T_HEADER, 0, 200 }, { 0, 0, 0 },
	};
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		a = bad[i];
		assert_int_equal(one_record(&h, &im, add_rec, &a), -EBADMSG);
	}
	a = (struct rec_arg){ DMR_STREAM_T_HEADER, 0, 10 };
	assert_int_equal(one_record(&h, &im, add_rec, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: a second header");
}

/* --- headers the reader refuses --------------------------------------------- */

static int read_header(const struct dmr_stream_header *h, struct image *im)
{
	struct buf b = { 0 };
	int rc;

	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_header(&b, h);
	raw_trailer(&b, 1, 0, 0);
	rc = read_stream(b.p, b.len, 0, im);
	image_done(im);
	buf_done(&b);
	return rc;
}

static int read_header_payload(const struct buf *p, struct image *im)
{
	struct buf b = { 0 };
	int rc;

	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_record(&b, 1, 0, p->p, p->len);
	raw_trailer(&b, 1, 0, 0);
	rc = read_stream(b.p, b.len, 0, im);
	image_done(im);
	buf_done(&b);
	return rc;
}

static void test_header_refusals(void **state)
{
	struct dmr_stream_header good, h;
	struct image im;
	struct buf p = { 0 };

	make_header(&good, 2, true);
	assert_int_equal(read_header(&good, &im), 0);
	assert_int_equal(im.t.records, 1);

	h = good;
	strcpy(h.disks[1].name, "../etc");
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: disk 1: bad disk name");
	h = good;
	strcpy(h.disks[0].name, "a/b");
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: disk 0: bad disk name");
	h = good;
	strcpy(h.disks[1].name, h.disks[0].name);
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: disk 1: bad disk name (a duplicate)");
	h = good;
	h.disks[1].size_bytes = 1ull << 62;
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: disk 1: bad disk size");
	h.disks[1].size_bytes = 1000;
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	h = good;
	strcpy(h.vm, "web/01");
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: bad vm name");
	h = good;
	h.block_bytes = 4096;
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	assert_string_equal(im.error, "header: bad block size");
	h = good;
	strcpy(h.label, "\x1b[31mred");
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	h = good;
	h.vm_uuid[0] = 'G';
	assert_int_equal(read_header(&h, &im), -EBADMSG);
	h = good;
	strcpy(h.base_uuid, h.point_uuid);
	assert_int_equal(read_header(&h, &im), -EBADMSG);

	/* Malformed payloads: what the encoder cannot say from a struct. */
	raw_header_payload(&p, &good);
	/* Bytes after the last disk. */
	buf_add(&p, "x", 1);
	assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
	assert_string_equal(im.error, "header: bad bytes after the last disk");
	/* Ends inside the last disk's size. */
	p.len -= 4;
	assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
	assert_string_equal(im.error, "header: bad ends inside a field");
	/* Every shorter payload. */
	for (size_t n = p.len; n-- > 0;) {
		p.len = n;
		assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
	}
	buf_done(&p);

	{
		/* A base uuid whose first byte is NUL, the rest not: not a
		 * full stream. */
		raw_header_payload(&p, &good);
		p.p[72] = '\0';
		assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
		assert_string_equal(im.error, "header: bad base uuid");
		buf_done(&p);
		/* Unknown header flags. */
		raw_header_payload(&p, &good);
		p.p[108 + 8 + 4] |= 4; /* bit 1 is the resync flag */
		assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
		assert_string_equal(im.error, "header: bad unknown header flags");
		buf_done(&p);
		/* A name that claims more than the bound, or hides a NUL. */
		raw_header_payload(&p, &good);
		le(p.p + VM_AT - 2, DMR_STREAM_NAME_MAX + 1, 2);
		assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
		assert_string_equal(im.error, "header: bad vm name");
		le(p.p + VM_AT - 2, 6, 2);
		p.p[VM_AT + 3] = '\0';
		assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
		assert_string_equal(im.error, "header: bad vm name");
		buf_done(&p);
		/* A disk count past the bound, and one more than there are. */
		raw_header_payload(&p, &good);
		{
			size_t at = VM_AT + strlen(good.vm) + 2 + strlen(good.label);

			assert_int_equal(rd(p.p + at, 4), 2);
			le(p.p + at, 100000, 4);
			assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
			assert_string_equal(im.error, "header: bad disk count");
			le(p.p + at, 3, 4);
			assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
			le(p.p + at, 0, 4);
			assert_int_equal(read_header_payload(&p, &im), -EBADMSG);
		}
		buf_done(&p);
	}
	/* The first record is not a header, or is flagged. */
	{
		struct buf b = { 0 };

		raw_preamble(&b, DMR_STREAM_VERSION);
		raw_range(&b, DMR_STREAM_ZERO, 0, 0, 512);
		assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
		assert_non_null(strstr(im.error, "not a header"));
		image_done(&im);
		b.len = 0;
		raw_preamble(&b, DMR_STREAM_VERSION);
		raw_header_payload(&p, &good);
		raw_record(&b, 1, DMR_STREAM_F_OPTIONAL, p.p, p.len);
		raw_trailer(&b, 1, 0, 0);
		assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
		image_done(&im);
		buf_done(&p);
		buf_done(&b);
	}
	/* Not a stream at all. */
	{
		static const char junk[] = "#!/bin/sh\necho this is not a stream\n";

		assert_int_equal(read_stream((const uint8_t *)junk, sizeof(junk), 0, &im), -EBADMSG);
		assert_string_equal(im.error, "not a dmrep stream (no DMREPSTR at its start)");
		image_done(&im);
	}
}

/* --- bounds on what lengths claim -------------------------------------------- */

/* A payload length above the bound: refused from the record's 16 bytes,
 * before a byte of payload is read or a byte allocated for it. */
static void test_payload_too_long(void **state)
{
	static const uint64_t claims[] = { DMR_STREAM_RECORD_MAX + 1ull, 1ull << 40, UINT64_MAX };
	struct dmr_stream_header h;
	struct buf b = { 0 };
	uint8_t f[16];

	make_header(&h, 1, false);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(claims); i++) {
		struct dmr_stream_reader *r = NULL;
		struct dmr_stream_rec rec;
		struct src s;
		size_t at;

		b.len = 0;
		raw_preamble(&b, DMR_STREAM_VERSION);
		raw_header(&b, &h);
		at = b.len;
		le(f, DMR_STREAM_DATA, 4);
		le(f + 4, 0, 4);
		le(f + 8, claims[i], 8);
		buf_add(&b, f, 16);
		/* Plenty of bytes follow: a reader that believed the length
		 * would read them. */
		for (int k = 0; k < 64; k++)
			buf_add(&b, f, 16);
		s = (struct src){ .p = b.p, .len = b.len };
		alloc_max = 0;
		watching = true;
		assert_int_equal(dmr_stream_reader_new(source, &s, &r), 0);
		assert_int_equal(dmr_stream_read_next(r, &rec), -EBADMSG);
		watching = false;
		assert_int_equal(s.pos, at + 16);
		assert_non_null(strstr(dmr_stream_reader_error(r), "record 1 "));
		assert_non_null(strstr(dmr_stream_reader_error(r), "is more than 4194304"));
		assert_true(alloc_max < (1u << 17));
		dmr_stream_reader_free(r);
	}
	/* The header's own bound is far below: a header that claims 1 MiB,
	 * or one byte more than the longest there is. */
	b.len = 0;
	raw_preamble(&b, DMR_STREAM_VERSION);
	le(f, 1, 4);
	le(f + 4, 0, 4);
	le(f + 8, 9357, 8);
	buf_add(&b, f, 16);
	{
		struct image im;

		assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
		assert_non_null(strstr(im.error, "payload length 9357 is more than 9356"));
		image_done(&im);
	}
	b.len = 0;
	raw_preamble(&b, DMR_STREAM_VERSION);
	le(f, 1, 4);
	le(f + 4, 0, 4);
	le(f + 8, 1u << 20, 8);
	buf_add(&b, f, 16);
	{
		struct image im;

		alloc_max = 0;
		assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
		assert_non_null(strstr(im.error, "record 0 (byte 12): payload length 1048576 is more than"));
		assert_true(alloc_max < (1u << 17));
		image_done(&im);
	}
	/* The largest payloads there may be are read: an (optional) record
	 * of exactly the bound, a data record of the most sectors in it. */
	{
		size_t n = DMR_STREAM_RECORD_MAX - 512;
		uint8_t *big = calloc(1, DMR_STREAM_RECORD_MAX);
		struct image im;

		h.disks[0].size_bytes = DMR_STREAM_RECORD_MAX;
		b.len = 0;
		raw_preamble(&b, DMR_STREAM_VERSION);
		raw_header(&b, &h);
		raw_record(&b, 99, DMR_STREAM_F_OPTIONAL, big, DMR_STREAM_RECORD_MAX);
		raw_extent(&b, DMR_STREAM_DATA, 0, 0, 512, big, n);
		raw_trailer(&b, 3, n, 0);
		alloc_max = 0;
		assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
		assert_int_equal(im.extents, 1);
		assert_true(alloc_max <= READER_ALLOC_MAX);
		assert_true(alloc_max >= DMR_STREAM_RECORD_MAX);
		image_done(&im);
		free(big);
	}
	buf_done(&b);
}

/* Compressed records: what they claim bounded before decompressing. */
enum zmode {
	Z_GOOD,
	Z_JUNK,         /* not a zstd frame */
	Z_NOSIZE,       /* a frame that does not say its content size */
	Z_TWO,          /* two frames */
	Z_SKIPPABLE,    /* a skippable frame first */
	Z_LIE,          /* the frame's content size patched to the claim */
};

struct zstd_arg {
	uint64_t offset, claim;
	size_t real;            /* bytes compressed */
	enum zmode mode;
};

/* Patch a single-segment frame's 2-byte content size (what zstd writes
 * for 256 .. 65791 bytes) to want. */
static void patch_fcs(uint8_t *z, uint64_t want)
{
	uint8_t fhd = z[4];

	assert_int_equal(fhd >> 6, 1);          /* FCS field: 2 bytes */
	assert_true(fhd & 0x20);                /* single segment: no window byte */
	assert_int_equal(fhd & 3, 0);           /* no dictionary id */
	le(z + 5, want - 256, 2);
}

static void add_zstd(struct buf *b, const void *arg)
{
	const struct zstd_arg *a = arg;
	uint8_t *raw = calloc(1, a->real + 1);
	size_t cap = 2 * ZSTD_compressBound(a->real) + 1024, n = 0;
	uint8_t *z = malloc(cap);
	struct buf p = { 0 };
	uint8_t hd[24];

	for (size_t i = 0; i < a->real; i += 777)
		raw[i] = (uint8_t)i;
	if (a->mode == Z_JUNK) {
		memset(z, 0x5a, 600);
		n = 600;
	} else if (a->mode == Z_NOSIZE) {
		ZSTD_CCtx *c = ZSTD_createCCtx();

		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
		n = ZSTD_compress2(c, z, cap, raw, a->real);
		ZSTD_freeCCtx(c);
	} else {
		if (a->mode == Z_SKIPPABLE) {
			/* Its magic, its length, its bytes (zstd's format). */
			le(z, ZSTD_MAGIC_SKIPPABLE_START, 4);
			le(z + 4, 5, 4);
			memcpy(z + 8, "hello", 5);
			n = 13;
		}
		n += ZSTD_compress(z + n, cap - n, raw, a->real, 3);
		if (a->mode == Z_TWO)
			n += ZSTD_compress(z + n, cap - n, raw, a->real, 3);
		if (a->mode == Z_LIE)
			patch_fcs(z, a->claim);
	}
	assert_false(ZSTD_isError(n));
	le(hd, 0, 4);
	le(hd + 4, 0, 4);
	le(hd + 8, a->offset, 8);
	le(hd + 16, a->claim, 8);
	buf_add(&p, hd, 24);
	buf_add(&p, z, n);
	raw_record(b, DMR_STREAM_T_DATA_ZSTD, 0, p.p, p.len);
	buf_done(&p);
	free(raw);
	free(z);
}

static void test_zstd_bomb(void **state)
{
	struct dmr_stream_header h;
	struct image im;
	struct zstd_arg a;

	make_header(&h, 1, false);
	/* A good one first. */
	a = (struct zstd_arg){ 0, 64u << 10, 64u << 10, Z_GOOD };
	assert_int_equal(one_record_counts(&h, &im, add_zstd, &a, 64u << 10, 0), 0);
	/* 64 MiB in a few KiB, claimed as what they are: refused from the
	 * claim, nothing decompressed, nothing allocated for it. */
	alloc_max = 0;
	a = (struct zstd_arg){ 0, 64u << 20, 64u << 20, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data claims 67108864 bytes, more than 1048576");
	assert_true(alloc_max < (2u << 20));
	a.claim = UINT64_MAX;
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	/* Claiming 64 KiB and holding 64 MiB: the frame says so. */
	a = (struct zstd_arg){ 0, 64u << 10, 64u << 20, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data's frame says 67108864 bytes, its record 65536");
	/* Holding less than it claims. */
	a = (struct zstd_arg){ 0, 64u << 10, 32u << 10, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "says 32768 bytes, its record 65536"));
	/* A frame that lies about its size: decompression into exactly the
	 * claim, which the output does not fill. */
	a = (struct zstd_arg){ 0, 64u << 10, 32u << 10, Z_LIE };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "does not decompress to its 65536 bytes (zstd: "));
	a = (struct zstd_arg){ 0, 32u << 10, (64u << 10) - 512, Z_LIE };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "does not decompress"));
	/* Not a frame, no size, two frames, a skippable frame. */
	a = (struct zstd_arg){ 0, 4096, 0, Z_JUNK };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data is not one zstd frame");
	a = (struct zstd_arg){ 0, 4096, 4096, Z_NOSIZE };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data's frame does not say its size");
	a = (struct zstd_arg){ 0, 8192, 4096, Z_TWO };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data is not one zstd frame");
	a = (struct zstd_arg){ 0, 4096, 4096, Z_SKIPPABLE };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_string_equal(im.error, "record 1: compressed data is not one zstd frame");
	/* A raw length not in sectors; past the end; empty. */
	a = (struct zstd_arg){ 0, 1000, 1000, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "not in 512-byte sectors"));
	a = (struct zstd_arg){ DISK_SIZE - 4096, 8192, 8192, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
	assert_non_null(strstr(im.error, "past the end of disk vda"));
	a = (struct zstd_arg){ 0, 0, 0, Z_GOOD };
	assert_int_equal(one_record(&h, &im, add_zstd, &a), -EBADMSG);
}

/* --- versions and unknown records -------------------------------------------- */

static void test_versions(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct image im;
	struct src s;
	struct dmr_stream_reader *r = (void *)1;

	make_header(&h, 1, false);
	/* A newer version: refused from its 12 bytes, whatever follows
	 * (here a header this version could read). */
	raw_preamble(&b, 9);
	raw_header(&b, &h);
	raw_trailer(&b, 1, 0, 0);
	s = (struct src){ .p = b.p, .len = b.len };
	assert_int_equal(dmr_stream_reader_new(source, &s, &r), -EPROTONOSUPPORT);
	assert_ptr_equal(r, (void *)1);
	assert_int_equal(s.pos, 12);
	assert_string_equal(dmr_stream_reader_error(NULL),
			    "stream format version 9 is newer than this dmrep's 1");
	le(b.p + 8, UINT32_MAX, 4);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EPROTONOSUPPORT);
	image_done(&im);
	le(b.p + 8, 2, 4);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EPROTONOSUPPORT);
	image_done(&im);
	/* Garbage after a newer version's preamble is still "newer". */
	b.len = 12;
	buf_add(&b, "garbage", 7);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EPROTONOSUPPORT);
	image_done(&im);
	/* Version 0 is no version. */
	le(b.p + 8, 0, 4);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	image_done(&im);
	/* This version reads, and says so. */
	b.len = 0;
	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_header(&b, &h);
	raw_trailer(&b, 1, 0, 0);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
	assert_int_equal(im.h.version, 1);
	image_done(&im);
	buf_done(&b);
}

static void test_unknown_records(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 }, c = { 0 };
	struct dmr_stream_totals t;
	struct image im;
	uint8_t payload[3000];

	small_stream(&b, &h);
	strip_trailer(&b, &t);
	fill(payload, sizeof(payload), 5, false);

	/* An optional record of a type from the future, twice, one empty:
	 * skipped, counted, in the stream's checksum. */
	buf_add(&c, b.p, b.len);
	raw_record(&c, 77, DMR_STREAM_F_OPTIONAL, payload, sizeof(payload));
	raw_record(&c, 0x10000, DMR_STREAM_F_OPTIONAL | 0x100, NULL, 0);
	raw_range(&c, DMR_STREAM_ZERO, 0, 0, 512);
	raw_trailer(&c, t.records + 3, t.data_bytes, t.zero_bytes + 512);
	assert_int_equal(read_stream(c.p, c.len, 0, &im), 0);
	assert_int_equal(im.extents, 5);
	assert_int_equal(im.t.records, t.records + 3);
	assert_int_equal(im.info_types[7], 2);
	image_done(&im);
	/* ... and when the trailer does not count them, refused. */
	c.len = 0;
	buf_add(&c, b.p, b.len);
	raw_record(&c, 77, DMR_STREAM_F_OPTIONAL, payload, sizeof(payload));
	raw_trailer(&c, t.records, t.data_bytes, t.zero_bytes);
	assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
	image_done(&im);
	/* Damaged, it is refused even though it would be skipped. */
	c.len = 0;
	buf_add(&c, b.p, b.len);
	raw_record(&c, 77, DMR_STREAM_F_OPTIONAL, payload, sizeof(payload));
	c.p[c.len - 100] ^= 1;
	raw_trailer(&c, t.records + 1, t.data_bytes, t.zero_bytes);
	assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
	assert_non_null(strstr(im.error, "checksum mismatch"));
	image_done(&im);
	/* Not optional: refused, and named. */
	c.len = 0;
	buf_add(&c, b.p, b.len);
	raw_record(&c, 77, 0, payload, sizeof(payload));
	raw_trailer(&c, t.records + 1, t.data_bytes, t.zero_bytes);
	assert_int_equal(read_stream(c.p, c.len, 0, &im), -EBADMSG);
	assert_string_equal(im.error, "record 5: unknown type 77 not marked optional");
	image_done(&im);
	buf_done(&b);
	buf_done(&c);
}

/* --- the source's errors; stickiness -------------------------------------------- */

static void test_source_errors(void **state)
{
	struct dmr_stream_header h;
	struct buf b = { 0 };
	struct dmr_stream_reader *r = NULL;
	struct dmr_stream_rec rec;
	struct src s;
	size_t hdr_end;

	small_stream(&b, &h);
	hdr_end = 12 + 16 + rd(b.p + 20, 8) + 8;
	/* -EINTR is retried; a good stream reads. */
	s = (struct src){ .p = b.p, .len = b.len, .chunk = 100, .eintr = true };
	assert_int_equal(dmr_stream_reader_new(source, &s, &r), 0);
	while (dmr_stream_read_next(r, &rec) == 1)
		;
	assert_int_equal(dmr_stream_read_next(r, &rec), 0);
	assert_string_equal(dmr_stream_reader_error(r), "no error");
	dmr_stream_reader_free(r);
	/* -EIO in the header, in a record, at the check for the end. */
	s = (struct src){ .p = b.p, .len = b.len, .fail_at = 20 };
	assert_int_equal(dmr_stream_reader_new(source, &s, &r), -EIO);
	assert_non_null(strstr(dmr_stream_reader_error(NULL), "reading the stream at byte"));
	s = (struct src){ .p = b.p, .len = b.len, .fail_at = (int)hdr_end + 10 };
	assert_int_equal(dmr_stream_reader_new(source, &s, &r), 0);
	assert_int_equal(dmr_stream_read_next(r, &rec), -EIO);
	/* Sticky: the source would work now, the reader does not. */
	s.fail_at = 0;
	assert_int_equal(dmr_stream_read_next(r, &rec), -EIO);
	assert_non_null(strstr(dmr_stream_reader_error(r), "Input/output error"));
	dmr_stream_reader_free(r);
	s = (struct src){ .p = b.p, .len = b.len, .fail_at = (int)b.len + 1 };
	assert_int_equal(dmr_stream_reader_new(source, &s, &r), 0);
	while (dmr_stream_read_next(r, &rec) == 1)
		;
	assert_int_equal(dmr_stream_read_next(r, &rec), -EIO);
	assert_non_null(strstr(dmr_stream_reader_error(r), "after its trailer"));
	dmr_stream_reader_free(r);
	buf_done(&b);
}

/* The header's data_bytes is a promise: the writer keeps it, the reader
 * refuses the record that breaks it (before the trailer), and the header
 * cannot promise more than its disks hold. */
static void test_data_bytes_bound(void **state)
{
	struct dmr_stream_header h;
	struct dmr_stream_writer *w = NULL;
	struct buf b = { 0 };
	struct image im;
	uint8_t data[4096] = { 1 };
	const char *why = NULL;

	make_header(&h, 2, false);
	h.data_bytes = 2 * DISK_SIZE + 512 + 512;
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	assert_string_equal(why, "data bytes (more than the disks hold)");
	h.data_bytes = 2 * DISK_SIZE + 512;
	assert_int_equal(dmr_stream_header_check(&h, NULL), 0);

	/* The writer: up to the promise, not a sector more. */
	h.data_bytes = 3 * 1024;
	assert_int_equal(dmr_stream_writer_new(&h, 0, sink, &b, &w), 0);
	assert_int_equal(dmr_stream_write_data(w, 0, 0, data, 2048), 0);
	assert_int_equal(dmr_stream_write_data(w, 1, 0, data, 1536), -EINVAL);
	assert_int_equal(dmr_stream_write_data(w, 1, 0, data, 1024), 0);
	assert_int_equal(dmr_stream_write_data(w, 1, 8192, data, 512), -EINVAL);
	/* Zeros are not data. */
	assert_int_equal(dmr_stream_write_zero(w, 1, 8192, 1u << 20), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	dmr_stream_writer_free(w);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
	assert_int_equal(im.t.data_bytes, 3 * 1024);
	image_done(&im);
	buf_done(&b);

	/* The reader: a stream with more data than its header said is
	 * refused at the record that goes past, whatever its trailer says. */
	h.data_bytes = 1024;
	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_header(&b, &h);
	raw_extent(&b, DMR_STREAM_DATA, 0, 0, 0, data, 512);
	raw_extent(&b, DMR_STREAM_DATA, 1, 0, 0, data, 1024);
	raw_trailer(&b, 3, 1536, 0);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), -EBADMSG);
	assert_string_equal(im.error, "record 2: 1536 data bytes so far, more than the header's 1024");
	assert_int_equal(im.extents, 1);
	image_done(&im);
	buf_done(&b);
	/* Less than promised is fine; none promised, only zeros, too. */
	h.data_bytes = 0;
	raw_preamble(&b, DMR_STREAM_VERSION);
	raw_header(&b, &h);
	raw_range(&b, DMR_STREAM_UNMAP, 0, 0, DISK_SIZE);
	raw_trailer(&b, 2, 0, DISK_SIZE);
	assert_int_equal(read_stream(b.p, b.len, 0, &im), 0);
	image_done(&im);
	buf_done(&b);
}

static void test_type_names(void **state)
{
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_T_HEADER), "header");
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_DATA), "data");
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_ZERO), "zero");
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_UNMAP), "unmap");
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_T_DATA_ZSTD), "data_zstd");
	assert_string_equal(dmr_stream_type_name(DMR_STREAM_T_TRAILER), "trailer");
	assert_null(dmr_stream_type_name(0));
	assert_null(dmr_stream_type_name(7));
	assert_null(dmr_stream_type_name(UINT32_MAX));
}

/* The format is what docs/stream.md says it is, byte by byte: a stream
 * from this file's encoder reads, and a writer's equals it. */
static void test_format_bytes(void **state)
{
	struct dmr_stream_header h;
	struct dmr_stream_writer *w = NULL;
	struct buf b = { 0 }, c = { 0 };
	uint8_t data[1024];

	make_header(&h, 2, true);
	fill(data, sizeof(data), 1, false);
	assert_int_equal(dmr_stream_writer_new(&h, 0, sink, &b, &w), 0);
	assert_int_equal(dmr_stream_write_data(w, 1, 8192, data, sizeof(data)), 0);
	assert_int_equal(dmr_stream_write_unmap(w, 0, 0, 4096), 0);
	assert_int_equal(dmr_stream_write_zero(w, 0, 4096, 4096), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	dmr_stream_writer_free(w);

	raw_preamble(&c, 1);
	raw_header(&c, &h);
	raw_extent(&c, DMR_STREAM_DATA, 1, 0, 8192, data, sizeof(data));
	raw_range(&c, DMR_STREAM_UNMAP, 0, 0, 4096);
	raw_range(&c, DMR_STREAM_ZERO, 0, 4096, 4096);
	raw_trailer(&c, 4, 1024, 8192);
	assert_int_equal(b.len, c.len);
	assert_memory_equal(b.p, c.p, b.len);
	assert_memory_equal(b.p, "DMREPSTR\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", 16);
	buf_done(&b);
	buf_done(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_full),
		cmocka_unit_test(test_roundtrip_full_zstd),
		cmocka_unit_test(test_roundtrip_incremental),
		cmocka_unit_test(test_roundtrip_incremental_zstd),
		cmocka_unit_test(test_split_and_empty),
		cmocka_unit_test(test_format_bytes),
		cmocka_unit_test(test_writer_refusals),
		cmocka_unit_test(test_header_check),
		cmocka_unit_test(test_flip_every_bit),
		cmocka_unit_test(test_flip_named),
		cmocka_unit_test(test_resigned_mutations),
		cmocka_unit_test(test_trailer_checks),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_extent_refusals),
		cmocka_unit_test(test_record_shapes),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_payload_too_long),
		cmocka_unit_test(test_zstd_bomb),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_unknown_records),
		cmocka_unit_test(test_source_errors),
		cmocka_unit_test(test_data_bytes_bound),
		cmocka_unit_test(test_type_names),
	};

	return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
