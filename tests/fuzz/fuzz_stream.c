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
 * are what was handed out.
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
	}
	if (k == 0) {
		dmr_stream_reader_totals(r, &t);
		FUZZ_CHECK(t.data_bytes == data_bytes && t.zero_bytes == zero_bytes);
		FUZZ_CHECK(t.stream_bytes == size - 1);
		FUZZ_CHECK(dmr_stream_read_next(r, &rec) == 0);
	} else {
		FUZZ_CHECK(k < 0 && dmr_stream_reader_error(r));
		FUZZ_CHECK(dmr_stream_read_next(r, &rec) == k);
	}
	dmr_stream_reader_free(r);
	free(buf);
	return 0;
}
