/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_stream - the replication stream reader (common/stream.c,
 * docs/stream.md), fed from a buffer through its read callback.
 *
 * Byte 0: bit 0 set, the harness first recomputes what a mutation breaks
 * before anything is parsed: every record's XXH3 checksum, and in a
 * trailer the record count, the stream's length and the chain, walking the
 * framing as docs/stream.md lays it out.  The fuzzer then gets past the
 * checksums to the fields behind them; the reader checks everything
 * itself either way (the harness only makes inputs, it never skips a
 * check).  Bits 1-3: how many bytes each read returns at most (1 to 4096),
 * for short reads.  Checked: every extent the reader hands out is within
 * its disk, a multiple of 512, DATA with its bytes; at the end the totals
 * are what was handed out.  And a round trip with the writer: a stream the
 * reader took whole is written again from what it handed out (the header,
 * the extents in order; bit 4: compressed) and read back to the same
 * header and the same extents (the writer may split a DATA extent).
 */
#include <xxhash.h>

#include "common/stream.h"
#include "tests/fuzz/fuzz.h"

struct src {
	const uint8_t *p;
	size_t left, chunk;
};

static ssize_t src_read(void *userdata, void *buf, size_t len)
{
	struct src *s = userdata;
	size_t n = len < s->left ? len : s->left;

	if (n > s->chunk)
		n = s->chunk;
	memcpy(buf, s->p, n);
	s->p += n;
	s->left -= n;
	return (ssize_t)n;
}

/* What a reader handed out, kept for the round trip (DATA bytes copied,
 * up to COPY_MAX in all). */
#define COPY_MAX (16u << 20)
struct kept {
	struct dmr_stream_rec *recs;
	size_t n, cap;
	size_t copied;
	bool whole;   /* every record kept */
};

struct sink {
	uint8_t *buf;
	size_t len, cap;
};

static int sink_write(void *userdata, const void *buf, size_t len)
{
	struct sink *k = userdata;

	if (k->len + len > k->cap) {
		size_t cap = (k->len + len) * 2;
		uint8_t *b = realloc(k->buf, cap);

		FUZZ_CHECK(b);
		k->buf = b;
		k->cap = cap;
	}
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
	return (int)len;
}

static void keep(struct kept *kp, const struct dmr_stream_rec *rec)
{
	struct dmr_stream_rec *r;

	if (!kp->whole)
		return;
	if (rec->type == DMR_STREAM_DATA && kp->copied + rec->length > COPY_MAX) {
		kp->whole = false;
		return;
	}
	if (kp->n == kp->cap) {
		kp->cap = kp->cap ? 2 * kp->cap : 16;
		kp->recs = realloc(kp->recs, kp->cap * sizeof(*kp->recs));
		FUZZ_CHECK(kp->recs);
	}
	r = &kp->recs[kp->n++];
	*r = *rec;
	if (rec->type == DMR_STREAM_DATA) {
		void *d = malloc(rec->length);

		FUZZ_CHECK(d);
		memcpy(d, rec->data, rec->length);
		r->data = d;
		kp->copied += rec->length;
	}
}

static void kept_free(struct kept *kp)
{
	for (size_t i = 0; i < kp->n; i++)
		if (kp->recs[i].type == DMR_STREAM_DATA)
			free((void *)kp->recs[i].data);
	free(kp->recs);
}

static void same_header(const struct dmr_stream_header *a, const struct dmr_stream_header *b)
{
	FUZZ_CHECK(!strcmp(a->vm, b->vm) && !strcmp(a->vm_uuid, b->vm_uuid));
	FUZZ_CHECK(!strcmp(a->point_uuid, b->point_uuid) && !strcmp(a->base_uuid, b->base_uuid));
	FUZZ_CHECK(a->created_usec == b->created_usec && a->application == b->application);
	FUZZ_CHECK(!strcmp(a->label, b->label) && a->block_bytes == b->block_bytes);
	FUZZ_CHECK(a->data_bytes == b->data_bytes && a->n_disks == b->n_disks);
	for (uint32_t i = 0; i < a->n_disks; i++)
		FUZZ_CHECK(!strcmp(a->disks[i].name, b->disks[i].name) &&
			   a->disks[i].size_bytes == b->disks[i].size_bytes);
}

/* Write what the reader handed out, read it back: the same. */
static void round_trip(const struct dmr_stream_header *h, const struct kept *kp, bool zstd)
{
	struct dmr_stream_writer *w = NULL;
	struct dmr_stream_reader *r = NULL;
	struct dmr_stream_rec rec;
	struct sink out = { 0 };
	struct src in;
	size_t i = 0;
	uint64_t done = 0; /* of kp->recs[i], bytes matched so far */
	int k;

	FUZZ_CHECK(dmr_stream_writer_new(h, zstd ? DMR_STREAM_W_ZSTD : 0, sink_write, &out, &w) == 0);
	for (size_t j = 0; j < kp->n; j++) {
		const struct dmr_stream_rec *x = &kp->recs[j];

		if (x->type == DMR_STREAM_DATA)
			k = dmr_stream_write_data(w, x->disk, x->offset, x->data, x->length);
		else if (x->type == DMR_STREAM_ZERO)
			k = dmr_stream_write_zero(w, x->disk, x->offset, x->length);
		else
			k = dmr_stream_write_unmap(w, x->disk, x->offset, x->length);
		FUZZ_CHECK(k == 0);
	}
	FUZZ_CHECK(dmr_stream_writer_finish(w, NULL) == 0);
	dmr_stream_writer_free(w);

	in.p = out.buf;
	in.left = out.len;
	in.chunk = SIZE_MAX;
	FUZZ_CHECK(dmr_stream_reader_new(src_read, &in, &r) == 0);
	same_header(h, dmr_stream_reader_header(r));
	while ((k = dmr_stream_read_next(r, &rec)) == 1) {
		const struct dmr_stream_rec *x;

		FUZZ_CHECK(i < kp->n);
		x = &kp->recs[i];
		FUZZ_CHECK(rec.type == x->type && rec.disk == x->disk);
		FUZZ_CHECK(rec.offset == x->offset + done && rec.length <= x->length - done);
		if (x->type == DMR_STREAM_DATA)
			FUZZ_CHECK(!memcmp(rec.data, (const uint8_t *)x->data + done, rec.length));
		done += rec.length;
		if (done == x->length) {
			i++;
			done = 0;
		}
	}
	FUZZ_CHECK(k == 0 && i == kp->n && done == 0);
	dmr_stream_reader_free(r);
	free(out.buf);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Checksums, trailer counts and chain made right for buf[0..n). */
static void fixup(uint8_t *buf, size_t n)
{
	uint8_t *chain = malloc(12 + 8 * (n / 24 + 1));
	size_t off = 12, c = 12;
	uint64_t records = 0;

	FUZZ_CHECK(chain);
	if (n < 12) {
		free(chain);
		return;
	}
	memcpy(chain, buf, 12);
	while (n - off >= 24) {
		uint32_t type = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
				(uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;
		uint64_t len = get64(buf + off + 8);

		if (len > n - off - 24)
			break;
		if (type == DMR_STREAM_T_TRAILER && len == 40) {
			put64(buf + off + 16, records);
			put64(buf + off + 16 + 24, (uint64_t)(off + 24 + len));
			put64(buf + off + 16 + 32, XXH3_64bits(chain, c));
		}
		put64(buf + off + 16 + len, XXH3_64bits(buf + off, 16 + len));
		memcpy(chain + c, buf + off + 16 + len, 8);
		c += 8;
		records++;
		off += 24 + len;
	}
	free(chain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_stream_reader *r = NULL;
	const struct dmr_stream_header *h;
	struct dmr_stream_totals t;
	struct dmr_stream_rec rec;
	struct kept kp = { .whole = true };
	uint64_t data_bytes = 0, zero_bytes = 0;
	uint8_t *buf;
	struct src s;
	int k;

	if (size < 1 || size > (8u << 20))
		return 0;
	buf = malloc(size);
	FUZZ_CHECK(buf);
	memcpy(buf, data + 1, size - 1);
	if (data[0] & 1)
		fixup(buf, size - 1);
	s.p = buf;
	s.left = size - 1;
	s.chunk = (size_t[]){ 4096, 1, 7, 12, 24, 512, 1000, 4095 }[(data[0] >> 1) & 7];
	if (dmr_stream_reader_new(src_read, &s, &r) < 0) {
		FUZZ_CHECK(dmr_stream_reader_error(NULL));
		free(buf);
		return 0;
	}
	h = dmr_stream_reader_header(r);
	FUZZ_CHECK(dmr_stream_header_check(h, NULL) == 0);
	while ((k = dmr_stream_read_next(r, &rec)) == 1) {
		FUZZ_CHECK(rec.disk < h->n_disks);
		FUZZ_CHECK(rec.length > 0 && rec.offset % 512 == 0 && rec.length % 512 == 0);
		FUZZ_CHECK(rec.offset < h->disks[rec.disk].size_bytes &&
			   rec.length <= h->disks[rec.disk].size_bytes - rec.offset);
		if (rec.type == DMR_STREAM_DATA) {
			FUZZ_CHECK(rec.data && rec.length <= DMR_STREAM_RECORD_MAX);
			/* Every byte handed out is readable (ASan). */
			{
				volatile uint8_t first = ((const uint8_t *)rec.data)[0];
				volatile uint8_t last = ((const uint8_t *)rec.data)[rec.length - 1];

				(void)first;
				(void)last;
			}
			data_bytes += rec.length;
		} else {
			FUZZ_CHECK(rec.type == DMR_STREAM_ZERO || rec.type == DMR_STREAM_UNMAP);
			zero_bytes += rec.length;
		}
		FUZZ_CHECK(data_bytes <= h->data_bytes);
		keep(&kp, &rec);
	}
	if (k == 0) {
		dmr_stream_reader_totals(r, &t);
		FUZZ_CHECK(t.data_bytes == data_bytes && t.zero_bytes == zero_bytes);
		FUZZ_CHECK(t.stream_bytes == size - 1);
		FUZZ_CHECK(dmr_stream_read_next(r, &rec) == 0);
		if (kp.whole)
			round_trip(h, &kp, data[0] & 16);
	} else {
		FUZZ_CHECK(k < 0 && dmr_stream_reader_error(r));
		FUZZ_CHECK(dmr_stream_read_next(r, &rec) == k);
	}
	kept_free(&kp);
	dmr_stream_reader_free(r);
	free(buf);
	return 0;
}
