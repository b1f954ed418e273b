/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the hash exchange of a resync and a verify (common/hashes.c):
 * the request (round trip, truncation, checksum, bounds, trailing bytes,
 * versions), the reply (round trip; truncated, oversize, corrupt, wrong
 * checksum, the receiver's refusal), the block diff and its extents
 * (agent/engine/replicate.c), and the stream header's resync flag
 * (common/stream.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include <cmocka.h>

#include "agent/engine/replicate.h"
#include "common/hashes.h"
#include "common/stream.h"
#include "snapshots/delta.h"

#define UUID_A "0b6f6c1e-3a51-4c1b-9a8e-1f2d3c4b5a69"
#define UUID_B "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"

static int make_req(uint8_t *buf, const char *point)
{
	struct dmr_hash_request q = { 0 };

	strcpy(q.vm, "web");
	strcpy(q.vm_uuid, UUID_A);
	strcpy(q.point_uuid, point);
	return dmr_hashreq_encode(&q, buf, DMR_HASHREQ_MAX);
}

static void test_request_round_trip(void **state)
{
	uint8_t buf[DMR_HASHREQ_MAX];
	struct dmr_hash_request q;
	const char *why = NULL;
	uint64_t plen = 0;
	int n;

	(void)state;
	n = make_req(buf, UUID_B);
	assert_true(n > (int)DMR_HASHREQ_PEEK);
	assert_true(dmr_hashreq_is(buf, (size_t)n, &plen));
	assert_int_equal(plen, (uint64_t)n - DMR_HASHREQ_PEEK - 8);
	assert_int_equal(dmr_hashreq_parse(buf, (size_t)n, &q, &why), 0);
	assert_string_equal(q.vm, "web");
	assert_string_equal(q.vm_uuid, UUID_A);
	assert_string_equal(q.point_uuid, UUID_B);
	/* The newest: no point uuid. */
	n = make_req(buf, "");
	assert_int_equal(dmr_hashreq_parse(buf, (size_t)n, &q, &why), 0);
	assert_string_equal(q.point_uuid, "");
	/* Not a request: a stream's preamble with a header record. */
	memcpy(buf + 12, "\1\0\0\0", 4);
	assert_false(dmr_hashreq_is(buf, (size_t)n, NULL));
	/* Too short to tell. */
	assert_false(dmr_hashreq_is(buf, DMR_HASHREQ_PEEK - 1, NULL));
}

static void test_request_refusals(void **state)
{
	uint8_t buf[DMR_HASHREQ_MAX + 8], bad[DMR_HASHREQ_MAX + 8];
	struct dmr_hash_request q = { 0 };
	const char *why = NULL;
	int n;

	(void)state;
	n = make_req(buf, UUID_B);
	/* Truncated anywhere. */
	for (int k = 0; k < n; k++)
		assert_int_equal(dmr_hashreq_parse(buf, (size_t)k, &q, &why), -EBADMSG);
	/* Followed by anything. */
	memcpy(bad, buf, (size_t)n);
	bad[n] = 0;
	assert_int_equal(dmr_hashreq_parse(bad, (size_t)n + 1, &q, &why), -EBADMSG);
	/* Every bit flipped past the magic and type is caught (checksum,
	 * version, flags, length). */
	for (int i = 8; i < n; i++) {
		if (i >= 12 && i < 16)
			continue; /* the type: then it is not a request at all */
		memcpy(bad, buf, (size_t)n);
		bad[i] ^= 0x10;
		assert_true(dmr_hashreq_parse(bad, (size_t)n, &q, &why) < 0);
	}
	/* A payload length past the bound. */
	memcpy(bad, buf, (size_t)n);
	bad[12 + 8] = 0xff;
	bad[12 + 9] = 0xff;
	assert_int_equal(dmr_hashreq_parse(bad, (size_t)n, &q, &why), -EBADMSG);
	assert_string_equal(why, "request payload length out of bounds");
	/* A newer stream version. */
	memcpy(bad, buf, (size_t)n);
	bad[8] = 9;
	assert_int_equal(dmr_hashreq_parse(bad, (size_t)n, &q, &why), -EPROTONOSUPPORT);
	/* Bad names and uuids are never encoded. */
	memset(&q, 0, sizeof(q));
	strcpy(q.vm, "../x");
	strcpy(q.vm_uuid, UUID_A);
	assert_int_equal(dmr_hashreq_encode(&q, buf, sizeof(buf)), -EINVAL);
	strcpy(q.vm, "web");
	strcpy(q.point_uuid, "not-a-uuid");
	assert_int_equal(dmr_hashreq_encode(&q, buf, sizeof(buf)), -EINVAL);
}

/* hs: 2 disks (1 MiB + 8 KiB cut block, 192 KiB) of 64 KiB blocks. */
static void fill(struct dmr_hashes *hs)
{
	memset(hs, 0, sizeof(*hs));
	strcpy(hs->vm, "web");
	strcpy(hs->uuid, UUID_B);
	hs->block_bytes = 65536;
	hs->n_disks = 2;
	strcpy(hs->disks[0].name, "vda");
	hs->disks[0].size_bytes = (1u << 20) + 8192;
	strcpy(hs->disks[1].name, "vdb");
	hs->disks[1].size_bytes = 3 * 65536;
	for (int d = 0; d < 2; d++) {
		hs->disks[d].n = dmr_hashes_blocks(hs->disks[d].size_bytes, 65536);
		hs->disks[d].h = malloc(hs->disks[d].n * 8);
		for (uint64_t k = 0; k < hs->disks[d].n; k++)
			hs->disks[d].h[k] = 0x0123456789abcdefull * (k + 1) + (uint64_t)d;
	}
}

/* The reply as COMMAND's stdout prints it: a banner, the lines, the
 * answer. */
static char *stdout_of(const struct dmr_hashes *hs, size_t *ret_len, const char *sum_override)
{
	char *body = NULL, *out, sum[17];
	size_t blen = 0;
	uint64_t s = 0;
	int n;

	assert_int_equal(dmr_hashes_format(hs, &body, &blen, &s), 0);
	snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)s);
	out = malloc(blen + 512);
	n = snprintf(out, 512, "Welcome to lab2\n");
	memcpy(out + n, body, blen);
	n += (int)blen;
	n += snprintf(out + n, 400, "{\"return\": 0, \"point\": 3, \"hashes_of\": \"%s\", "
		      "\"bytes\": %zu, \"checksum\": \"%s\"}\n", hs->uuid, blen,
		      sum_override ? sum_override : sum);
	free(body);
	*ret_len = (size_t)n;
	return out;
}

static void test_reply_round_trip(void **state)
{
	struct dmr_hashes a, b;
	char *why = NULL, *out;
	size_t len;
	int rc = -1;

	(void)state;
	fill(&a);
	assert_int_equal(a.disks[0].n, 17);
	out = stdout_of(&a, &len, NULL);
	assert_int_equal(dmr_hashes_parse_reply(out, len, &b, &rc, &why), 0);
	assert_int_equal(rc, 0);
	assert_string_equal(b.vm, "web");
	assert_string_equal(b.uuid, UUID_B);
	assert_int_equal(b.block_bytes, 65536);
	assert_int_equal(b.n_disks, 2);
	for (int d = 0; d < 2; d++) {
		assert_string_equal(b.disks[d].name, a.disks[d].name);
		assert_int_equal(b.disks[d].size_bytes, a.disks[d].size_bytes);
		assert_int_equal(b.disks[d].n, a.disks[d].n);
		assert_memory_equal(b.disks[d].h, a.disks[d].h, a.disks[d].n * 8);
		assert_int_equal(dmr_hashes_diff(&a.disks[d], &b.disks[d], NULL, 0), 0);
	}
	dmr_hashes_clear(&b);
	free(out);
	dmr_hashes_clear(&a);
}

static int parse(const char *buf, size_t len, int *rc, char **why)
{
	struct dmr_hashes b;
	int r;

	free(*why);
	*why = NULL;
	r = dmr_hashes_parse_reply(buf, len, &b, rc, why);
	dmr_hashes_clear(&b);
	return r;
}

static void test_reply_refusals(void **state)
{
	struct dmr_hashes a;
	char *why = NULL, *out, *p;
	size_t len;
	int rc = 0;

	(void)state;
	fill(&a);
	out = stdout_of(&a, &len, NULL);
	/* Nothing, or no answer line. */
	assert_int_equal(parse("", 0, &rc, &why), -EBADMSG);
	assert_int_equal(parse("hello\n", 6, &rc, &why), -EBADMSG);
	/* A stream's answer (a point received), not a hash reply. */
	assert_int_equal(parse("{\"return\": 0, \"point\": 1, \"uuid\": \"" UUID_A "\"}\n", 70,
			       &rc, &why), -EBADMSG);
	/* Cut anywhere before the answer's end: never taken. */
	for (size_t k = 0; k + 2 < len; k += 7)
		assert_int_equal(parse(out, k, &rc, &why), -EBADMSG);
	/* A hash digit changed: the checksum catches it. */
	p = strstr(out, "\"xxh3\": \"") + 9;
	*p = *p == '0' ? '1' : '0';
	assert_int_equal(parse(out, len, &rc, &why), -EBADMSG);
	assert_non_null(strstr(why, "checksum"));
	free(out);
	/* The wrong checksum in the answer. */
	out = stdout_of(&a, &len, "0000000000000000");
	assert_int_equal(parse(out, len, &rc, &why), -EBADMSG);
	free(out);
	/* A receiver's refusal: its code and line. */
	assert_int_equal(parse("{\"return\": 32779, \"error\": \"no VM named web here\"}\n", 50,
			       &rc, &why), -EBADMSG);
	assert_int_equal(rc, 32779);
	assert_non_null(strstr(why, "no VM named web here"));
	/* Oversize counts: a disk whose size claims more blocks than a reply
	 * may carry, refused before anything is allocated; a hash count that
	 * is not the size in blocks; a bad block size. */
	{
		static const char *bodies[] = {
			"{\"dmrep_hashes\": 1, \"vm\": \"web\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 65536, \"disks\": 1}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 1125899906842624, \"xxh3\": \"00\"}\n",
			"{\"dmrep_hashes\": 1, \"vm\": \"web\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 65536, \"disks\": 1}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 131072, \"xxh3\": \"0123456789abcdef\"}\n",
			"{\"dmrep_hashes\": 1, \"vm\": \"web\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 4096, \"disks\": 1}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 4096, \"xxh3\": \"0123456789abcdef\"}\n",
			"{\"dmrep_hashes\": 1, \"vm\": \"web\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 65536, \"disks\": 2}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 65536, \"xxh3\": \"0123456789abcdef\"}\n",
			"{\"dmrep_hashes\": 1, \"vm\": \"web\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 65536, \"disks\": 1}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 65536, \"xxh3\": \"0123456789ABCDEF\"}\n",
			"{\"dmrep_hashes\": 1, \"vm\": \"../x\", \"uuid\": \"" UUID_B "\", \"block_bytes\": 65536, \"disks\": 1}\n"
			"{\"disk\": 0, \"name\": \"vda\", \"size_bytes\": 65536, \"xxh3\": \"0123456789abcdef\"}\n",
		};
		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			char buf[2048];
			size_t bl = strlen(bodies[i]);
			int n = snprintf(buf, sizeof(buf), "%s{\"return\": 0, \"hashes_of\": \"%s\", "
					 "\"bytes\": %zu, \"checksum\": \"%016llx\"}\n", bodies[i],
					 UUID_B, bl,
					 (unsigned long long)XXH3_64bits(bodies[i], bl));

			assert_int_equal(parse(buf, (size_t)n, &rc, &why), -EBADMSG);
			assert_non_null(strstr(why, "corrupt"));
		}
	}
	/* "bytes" larger than what precedes the answer. */
	assert_int_equal(parse("{\"return\": 0, \"hashes_of\": \"" UUID_B "\", \"bytes\": 99, "
			       "\"checksum\": \"0000000000000000\"}\n", 104, &rc, &why), -EBADMSG);
	free(why);
	dmr_hashes_clear(&a);
}

static void test_diff_extents(void **state)
{
	uint64_t ha[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, hb[10];
	struct dmr_hash_disk a = { .n = 10, .h = ha }, b = { .n = 10, .h = hb };
	struct dmr_extent *ext = NULL;
	uint64_t first[2];
	size_t n = 99;

	(void)state;
	memcpy(hb, ha, sizeof(ha));
	assert_int_equal(dmr_replicate_diff_extents(&a, &b, &ext, &n), 0);
	assert_int_equal(n, 0);
	assert_null(ext);
	hb[0] = 0;
	hb[3] = 0;
	hb[4] = 0;
	hb[9] = 0;
	assert_int_equal(dmr_hashes_diff(&a, &b, first, 2), 4);
	assert_int_equal(first[0], 0);
	assert_int_equal(first[1], 3);
	assert_int_equal(dmr_replicate_diff_extents(&a, &b, &ext, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ext[0].begin, 0);
	assert_int_equal(ext[0].length, 1);
	assert_int_equal(ext[1].begin, 3);
	assert_int_equal(ext[1].length, 2);
	assert_int_equal(ext[2].begin, 9);
	assert_int_equal(ext[2].length, 1);
	assert_int_equal(ext[2].kind, DMR_EXTENT_DATA);
	free(ext);
}

struct mem {
	uint8_t buf[65536];
	size_t len, off;
};

static int mem_write(void *u, const void *p, size_t n)
{
	struct mem *m = u;

	memcpy(m->buf + m->len, p, n);
	m->len += n;
	return (int)n;
}

static ssize_t mem_read(void *u, void *p, size_t n)
{
	struct mem *m = u;

	if (n > m->len - m->off)
		n = m->len - m->off;
	memcpy(p, m->buf + m->off, n);
	m->off += n;
	return (ssize_t)n;
}

static void test_header_resync_flag(void **state)
{
	static struct dmr_stream_header h;
	static struct mem m;
	struct dmr_stream_writer *w = NULL;
	struct dmr_stream_reader *r = NULL;
	struct dmr_stream_rec rec;
	const char *why = NULL;

	(void)state;
	memset(&h, 0, sizeof(h));
	h.version = DMR_STREAM_VERSION;
	strcpy(h.vm, "web");
	strcpy(h.vm_uuid, UUID_A);
	strcpy(h.point_uuid, UUID_B);
	h.block_bytes = 65536;
	h.n_disks = 1;
	strcpy(h.disks[0].name, "vda");
	h.disks[0].size_bytes = 1 << 20;
	/* A resync needs a base. */
	h.resync = true;
	assert_int_equal(dmr_stream_header_check(&h, &why), -EBADMSG);
	strcpy(h.base_uuid, "11111111-2222-4333-8444-555555555555");
	assert_int_equal(dmr_stream_header_check(&h, &why), 0);
	assert_int_equal(dmr_stream_writer_new(&h, 0, mem_write, &m, &w), 0);
	assert_int_equal(dmr_stream_writer_finish(w, NULL), 0);
	dmr_stream_writer_free(w);
	assert_int_equal(dmr_stream_reader_new(mem_read, &m, &r), 0);
	assert_true(dmr_stream_reader_header(r)->resync);
	assert_int_equal(dmr_stream_read_next(r, &rec), 0);
	dmr_stream_reader_free(r);
	/* Not a hash request. */
	assert_false(dmr_hashreq_is(m.buf, m.len, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_request_refusals),
		cmocka_unit_test(test_reply_round_trip),
		cmocka_unit_test(test_reply_refusals),
		cmocka_unit_test(test_diff_extents),
		cmocka_unit_test(test_header_resync_flag),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
