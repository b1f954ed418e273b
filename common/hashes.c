/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/hashes.c - the hash request and reply of a resync and a verify
 * (common/hashes.h; the format is docs/stream.md's "Hash requests").
 */
#include "common/hashes.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/json.h"
#include "common/util.h"

#define MAGIC "DMREPSTR"
#define PREAMBLE_LEN 12u
#define REC_HDR_LEN 16u
#define UUID_LEN 36u
#define PAYLOAD_FIXED (4u + 2u * UUID_LEN + 2u)
#define PAYLOAD_MAX (PAYLOAD_FIXED + DMR_STREAM_NAME_MAX)
#define BLOCK_MIN (64u << 10)
#define BLOCK_MAX (1u << 30)
/* A reply line: the head, or a disk's at most this much more than its
 * hashes. */
#define LINE_EXTRA 1024u

static void le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

/* The agent's name rule (dm/name.c's dmr_name_obj_valid, as stream.c
 * repeats it: common/ may not include dm/). */
static bool name_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n == 0 || n > max || s[0] == '-' || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '+' || c == '-'))
			return false;
	}
	return true;
}

/* ---- the request -------------------------------------------------------- */

/* payload: version u32, vm uuid[36], point uuid[36] (zeros: the newest),
 * vm name u16 length + bytes. */
int dmr_hashreq_encode(const struct dmr_hash_request *q, uint8_t *buf, size_t size)
{
	size_t vn, plen, n;
	uint8_t *p;

	assert(q && buf);
	vn = strnlen(q->vm, sizeof(q->vm));
	if (!name_ok(q->vm, DMR_STREAM_NAME_MAX) || !dmr_uuid_valid(q->vm_uuid) ||
	    (q->point_uuid[0] && !dmr_uuid_valid(q->point_uuid)))
		return -EINVAL;
	plen = PAYLOAD_FIXED + vn;
	n = PREAMBLE_LEN + REC_HDR_LEN + plen + 8;
	if (size < n)
		return -ENOBUFS;
	memcpy(buf, MAGIC, 8);
	le32(buf + 8, DMR_STREAM_VERSION);
	p = buf + PREAMBLE_LEN;
	le32(p, DMR_HASHREQ_TYPE);
	le32(p + 4, 0);
	le64(p + 8, plen);
	p += REC_HDR_LEN;
	le32(p, DMR_HASHREQ_VERSION), p += 4;
	memcpy(p, q->vm_uuid, UUID_LEN), p += UUID_LEN;
	if (q->point_uuid[0])
		memcpy(p, q->point_uuid, UUID_LEN);
	else
		memset(p, 0, UUID_LEN);
	p += UUID_LEN;
	p[0] = (uint8_t)vn;
	p[1] = (uint8_t)(vn >> 8);
	p += 2;
	memcpy(p, q->vm, vn), p += vn;
	le64(p, XXH3_64bits(buf + PREAMBLE_LEN, REC_HDR_LEN + plen));
	return (int)n;
}

bool dmr_hashreq_is(const uint8_t *buf, size_t len, uint64_t *ret_payload)
{
	if (len < DMR_HASHREQ_PEEK || memcmp(buf, MAGIC, 8) != 0 ||
	    get_le(buf + PREAMBLE_LEN, 4) != DMR_HASHREQ_TYPE)
		return false;
	if (ret_payload)
		*ret_payload = get_le(buf + PREAMBLE_LEN + 8, 8);
	return true;
}

int dmr_hashreq_parse(const uint8_t *buf, size_t len, struct dmr_hash_request *ret,
		      const char **ret_why)
{
	static const uint8_t zeros[UUID_LEN];
	struct dmr_hash_request q = { 0 };
	const uint8_t *p;
	uint64_t plen, vn, ver;

	assert(buf && ret && ret_why);
	if (!dmr_hashreq_is(buf, len, &plen))
		return *ret_why = "not a hash request", -EBADMSG;
	if (get_le(buf + 8, 4) == 0)
		return *ret_why = "stream format version 0", -EBADMSG;
	if (get_le(buf + 8, 4) > DMR_STREAM_VERSION)
		return *ret_why = "a newer stream format", -EPROTONOSUPPORT;
	if (get_le(buf + PREAMBLE_LEN + 4, 4) != 0)
		return *ret_why = "flags on the request record", -EBADMSG;
	if (plen < PAYLOAD_FIXED || plen > PAYLOAD_MAX)
		return *ret_why = "request payload length out of bounds", -EBADMSG;
	if (len != PREAMBLE_LEN + REC_HDR_LEN + plen + 8)
		return *ret_why = len < PREAMBLE_LEN + REC_HDR_LEN + plen + 8 ?
				  "request truncated" : "bytes after the request", -EBADMSG;
	if (XXH3_64bits(buf + PREAMBLE_LEN, REC_HDR_LEN + plen) !=
	    get_le(buf + PREAMBLE_LEN + REC_HDR_LEN + plen, 8))
		return *ret_why = "request checksum mismatch", -EBADMSG;
	p = buf + PREAMBLE_LEN + REC_HDR_LEN;
	ver = get_le(p, 4);
	if (ver == 0 || ver > DMR_HASHREQ_VERSION)
		return *ret_why = "hash request version not known here", -EPROTONOSUPPORT;
	p += 4;
	memcpy(q.vm_uuid, p, UUID_LEN), p += UUID_LEN;
	if (memcmp(p, zeros, UUID_LEN) != 0)
		memcpy(q.point_uuid, p, UUID_LEN);
	p += UUID_LEN;
	vn = get_le(p, 2), p += 2;
	if (vn != plen - PAYLOAD_FIXED)
		return *ret_why = "request VM name length", -EBADMSG;
	memcpy(q.vm, p, vn);
	q.vm[vn] = '\0';
	if (memchr(p, '\0', vn) || !name_ok(q.vm, DMR_STREAM_NAME_MAX))
		return *ret_why = "request VM name", -EBADMSG;
	if (!dmr_uuid_valid(q.vm_uuid))
		return *ret_why = "request VM uuid", -EBADMSG;
	if (q.point_uuid[0] && !dmr_uuid_valid(q.point_uuid))
		return *ret_why = "request point uuid", -EBADMSG;
	*ret = q;
	return 0;
}

/* ---- the reply ----------------------------------------------------------- */

uint64_t dmr_hashes_blocks(uint64_t size, uint64_t block)
{
	return block ? size / block + (size % block != 0) : 0;
}

void dmr_hashes_clear(struct dmr_hashes *hs)
{
	if (!hs)
		return;
	for (uint32_t i = 0; i < hs->n_disks && i < DMR_STREAM_DISKS_MAX; i++) {
		free(hs->disks[i].h);
		hs->disks[i].h = NULL;
	}
	hs->n_disks = 0;
}

static const char hexd[] = "0123456789abcdef";

int dmr_hashes_format(const struct dmr_hashes *hs, char **ret_buf, size_t *ret_len,
		      uint64_t *ret_sum)
{
	size_t cap = LINE_EXTRA, o;
	char *buf;

	assert(hs && ret_buf && ret_len && ret_sum);
	if (hs->n_disks < 1 || hs->n_disks > DMR_STREAM_DISKS_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < hs->n_disks; i++)
		cap += LINE_EXTRA + 16 * hs->disks[i].n;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	o = (size_t)snprintf(buf, cap, "{\"dmrep_hashes\": 1, \"vm\": \"%s\", \"uuid\": \"%s\", "
			     "\"block_bytes\": %" PRIu32 ", \"disks\": %" PRIu32 "}\n", hs->vm,
			     hs->uuid, hs->block_bytes, hs->n_disks);
	for (uint32_t i = 0; i < hs->n_disks; i++) {
		const struct dmr_hash_disk *d = &hs->disks[i];

		o += (size_t)snprintf(buf + o, cap - o, "{\"disk\": %" PRIu32 ", \"name\": \"%s\", "
				      "\"size_bytes\": %" PRIu64 ", \"xxh3\": \"", i, d->name,
				      d->size_bytes);
		for (uint64_t k = 0; k < d->n; k++) {
			for (int s = 60; s >= 0; s -= 4)
				buf[o++] = hexd[(d->h[k] >> s) & 15];
		}
		o += (size_t)snprintf(buf + o, cap - o, "\"}\n");
	}
	*ret_sum = XXH3_64bits(buf, o);
	*ret_buf = buf;
	*ret_len = o;
	return 0;
}

/* The last non-empty line of buf[0..len): its start and length. */
static const char *last_line(const char *buf, size_t len, size_t *ret_n)
{
	size_t e = len, b;

	while (e > 0 && (buf[e - 1] == '\n' || buf[e - 1] == '\r' || buf[e - 1] == ' '))
		e--;
	if (e == 0)
		return NULL;
	b = e;
	while (b > 0 && buf[b - 1] != '\n')
		b--;
	*ret_n = e - b;
	return buf + b;
}

static bool get_str(struct json_object *o, const char *k, const char **ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return false;
	*ret = json_object_get_string(v);
	return true;
}

static bool get_u64(struct json_object *o, const char *k, uint64_t max, uint64_t *ret)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return false;
	x = json_object_get_int64(v);
	if (x < 0 || (uint64_t)x > max)
		return false;
	*ret = (uint64_t)x;
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool hex64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		int d = hexval(s[i]);

		if (d < 0)
			return false;
		v = (v << 4) | (uint64_t)d;
	}
	*ret = v;
	return true;
}

/* One line of the reply: [b, e) without its newline, as an object. */
static int line_object(const char *b, const char *e, struct json_object **ret)
{
	return dmr_json_parse_object(b, (size_t)(e - b), ret);
}

static int parse_disk(struct json_object *o, uint32_t i, uint32_t block, uint64_t *total,
		      struct dmr_hash_disk *d, const char **why)
{
	const char *name, *hex;
	uint64_t idx, n;

	if (!get_u64(o, "disk", DMR_STREAM_DISKS_MAX, &idx) || idx != i)
		return *why = "a disk line out of order", -EBADMSG;
	if (!get_str(o, "name", &name) || !name_ok(name, DMR_STREAM_NAME_MAX))
		return *why = "a disk's name", -EBADMSG;
	if (!get_u64(o, "size_bytes", DMR_STREAM_SIZE_MAX, &d->size_bytes) || !d->size_bytes ||
	    d->size_bytes % 512)
		return *why = "a disk's size", -EBADMSG;
	n = dmr_hashes_blocks(d->size_bytes, block);
	/* Bounded before the array is made. */
	if (n > DMR_HASHES_BLOCKS_MAX - *total)
		return *why = "more blocks than a reply may carry", -EBADMSG;
	if (!get_str(o, "xxh3", &hex) || strlen(hex) != 16 * n)
		return *why = "a disk's hash count is not its size in blocks", -EBADMSG;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->h = malloc(n * sizeof(*d->h) + 1);
	if (!d->h)
		return *why = "out of memory", -ENOMEM;
	for (uint64_t k = 0; k < n; k++)
		if (!hex64(hex + 16 * k, &d->h[k]))
			return *why = "a hash that is not 16 lower-case hex digits", -EBADMSG;
	d->n = n;
	*total += n;
	return 0;
}

/* The reply body rep[0..len): the head line, then the disk lines. */
static int parse_body(const char *rep, size_t len, struct dmr_hashes *hs, const char **why)
{
	const char *p = rep, *end = rep + len, *nl, *s;
	struct json_object *o = NULL;
	uint64_t v, n_disks, block, total = 0;
	int r;

	nl = memchr(p, '\n', len);
	if (!nl || (r = line_object(p, nl, &o)) < 0)
		return *why = "the reply's head is not a JSON object", -EBADMSG;
	r = -EBADMSG;
	if (!get_u64(o, "dmrep_hashes", 1000, &v) || v != 1)
		*why = "not a hash reply of version 1";
	else if (!get_str(o, "vm", &s) || !name_ok(s, DMR_STREAM_NAME_MAX))
		*why = "the reply's VM name";
	else if ((snprintf(hs->vm, sizeof(hs->vm), "%s", s), !get_str(o, "uuid", &s)) ||
		 !dmr_uuid_valid(s))
		*why = "the reply's point uuid";
	else if ((snprintf(hs->uuid, sizeof(hs->uuid), "%s", s),
		  !get_u64(o, "block_bytes", BLOCK_MAX, &block)) || block < BLOCK_MIN ||
		 block % BLOCK_MIN)
		*why = "the reply's block size";
	else if (!get_u64(o, "disks", DMR_STREAM_DISKS_MAX, &n_disks) || n_disks < 1)
		*why = "the reply's disk count";
	else
		r = 0;
	json_object_put(o);
	if (r < 0)
		return r;
	hs->block_bytes = (uint32_t)block;
	p = nl + 1;
	for (uint32_t i = 0; i < n_disks; i++) {
		nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
		if (!nl)
			return *why = "the reply ends before its last disk", -EBADMSG;
		o = NULL;
		if (line_object(p, nl, &o) < 0)
			return *why = "a disk line is not a JSON object", -EBADMSG;
		hs->n_disks = i + 1;
		r = parse_disk(o, i, hs->block_bytes, &total, &hs->disks[i], why);
		json_object_put(o);
		if (r < 0)
			return r;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(hs->disks[j].name, hs->disks[i].name))
				return *why = "two disks of one name", -EBADMSG;
		p = nl + 1;
	}
	if (p != end)
		return *why = "lines after the last disk", -EBADMSG;
	return 0;
}

int dmr_hashes_parse_reply(const char *buf, size_t len, struct dmr_hashes *ret, int *ret_rc,
			   char **ret_why)
{
	struct json_object *o = NULL;
	const char *line, *s, *why = NULL;
	uint64_t bytes, sum;
	size_t n;
	int r;

	assert(buf && ret && ret_rc);
	*ret_rc = 0;
	memset(ret, 0, sizeof(*ret));
	line = last_line(buf, len, &n);
	if (!line)
		return dmr_why_set(ret_why, -EBADMSG, "COMMAND printed nothing on stdout (the "
				   "receiver's hash reply is expected there)");
	if (dmr_json_parse_object(line, n, &o) < 0)
		return dmr_why_set(ret_why, -EBADMSG, "the last line of COMMAND's stdout is not the "
				   "receiver's JSON answer");
	if (!get_u64(o, "return", 65535, &bytes)) {
		json_object_put(o);
		return dmr_why_set(ret_why, -EBADMSG, "the receiver's answer has no \"return\" code");
	}
	if (bytes != 0) {
		char esc[4 * 400 + 1] = "";

		*ret_rc = (int)bytes;
		if (get_str(o, "error", &s))
			dmr_cescape(esc, 400, s);
		json_object_put(o);
		return dmr_why_set(ret_why, -EBADMSG, "the receiver answered %d: %s", *ret_rc, esc);
	}
	if (!get_str(o, "hashes_of", &s) || !get_u64(o, "bytes", (uint64_t)(line - buf), &bytes) ||
	    !get_str(o, "checksum", &s) || strlen(s) != 16 || !hex64(s, &sum)) {
		json_object_put(o);
		return dmr_why_set(ret_why, -EBADMSG, "the receiver's answer is not a hash reply's "
				   "(an older dmrep there, or a stream's answer)");
	}
	json_object_put(o);
	if (XXH3_64bits(line - bytes, bytes) != sum)
		return dmr_why_set(ret_why, -EBADMSG, "the hash reply's checksum does not match");
	r = parse_body(line - bytes, bytes, ret, &why);
	if (r < 0) {
		dmr_hashes_clear(ret);
		return dmr_why_set(ret_why, r == -ENOMEM ? -ENOMEM : -EBADMSG,
				   "the hash reply is corrupt: %s", why ? why : "bad line");
	}
	return 0;
}

uint64_t dmr_hashes_diff(const struct dmr_hash_disk *a, const struct dmr_hash_disk *b,
			 uint64_t *first, size_t max_first)
{
	uint64_t n = a->n < b->n ? a->n : b->n, diff = 0;

	for (uint64_t k = 0; k < n; k++)
		if (a->h[k] != b->h[k]) {
			if (diff < max_first)
				first[diff] = k;
			diff++;
		}
	return diff + (a->n > b->n ? a->n - b->n : b->n - a->n);
}
