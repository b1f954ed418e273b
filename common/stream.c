/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/stream.c - the replication stream's codec (common/stream.h;
 * docs/stream.md is the format byte by byte).
 *
 * The reader is written for hostile input: every length is compared with
 * its bound before anything is allocated or read for it, every record's
 * checksum is checked before its payload is parsed, every parsed field is
 * checked before it is handed out, and the first error sticks.  Its memory
 * is one record buffer (at most DMR_STREAM_RECORD_MAX and the record's
 * framing), one decompression buffer of DMR_STREAM_DATA_MAX and a zstd
 * context, whatever the stream claims.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "common/log.h"
#include "common/stream.h"
#include "common/util.h"
#include "common/uuid.h"

#define MAGIC "DMREPSTR"
#define MAGIC_LEN 8u
#define PREAMBLE_LEN (MAGIC_LEN + 4u)
/* type u32, flags u32, payload length u64 */
#define REC_HDR_LEN 16u
#define REC_SUM_LEN 8u
/* disk u32, pad u32, offset u64 (and the raw length u64 of DATA_ZSTD) */
#define EXT_HDR_LEN 16u
#define ZSTD_HDR_LEN 24u
#define RANGE_LEN 24u           /* ZERO, UNMAP: disk, pad, offset, length */
#define TRAILER_LEN 40u         /* four counts and the stream's xxh3 */
#define UUID_LEN 36u
/* The largest header payload a writer makes: the fixed fields, the VM and
 * the label at their longest, DMR_STREAM_DISKS_MAX disks with the longest
 * names.  A reader refuses a longer one before reading it. */
#define HEADER_FIXED_LEN (3u * UUID_LEN + 8u + 4u + 4u + 8u + 2u + 2u + 4u)
#define HEADER_DISK_LEN_MAX (2u + DMR_STREAM_NAME_MAX + 8u)
#define HEADER_MAX                                                             \
	(HEADER_FIXED_LEN + DMR_STREAM_NAME_MAX + DMR_STREAM_LABEL_MAX +        \
	 DMR_STREAM_DISKS_MAX * HEADER_DISK_LEN_MAX)
#define HEADER_F_APPLICATION 1u
/* A resync's stream (docs/stream.md): its base is a point of the
 * replica's whose block hashes the sender compared, not a common point. */
#define HEADER_F_RESYNC 2u
#define ZSTD_LEVEL 1
#define SECTOR 512u
#define BLOCK_MIN (64u << 10)
#define BLOCK_MAX (1u << 30)

/* --- little-endian helpers ---------------------------------------------- */

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

const char *dmr_stream_type_name(uint32_t type)
{
	switch (type) {
	case DMR_STREAM_T_HEADER:
		return "header";
	case DMR_STREAM_DATA:
		return "data";
	case DMR_STREAM_ZERO:
		return "zero";
	case DMR_STREAM_UNMAP:
		return "unmap";
	case DMR_STREAM_T_DATA_ZSTD:
		return "data_zstd";
	case DMR_STREAM_T_TRAILER:
		return "trailer";
	default:
		return NULL;
	}
}

/* --- the header's rules ------------------------------------------------- */

/* dm/name.h's dmr_name_obj_valid, which common/ may not include (the
 * layers, docs/architecture.md): the same characters and the same
 * exclusions, so that every VM and disk the agent accepts can be sent. */
static bool name_ok(const char *name, size_t max)
{
	size_t n = strnlen(name, max + 1);

	if (n == 0 || n > max || name[0] == '-')
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

/* What the agent takes as a label (no C0 controls, no DEL), and valid
 * UTF-8 so that it goes into JSON as it is. */
static bool label_ok(const char *label)
{
	size_t n = strnlen(label, DMR_STREAM_LABEL_MAX + 1);

	if (n > DMR_STREAM_LABEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f)
			return false;
	return dmr_utf8_valid(label, n);
}

static bool size_ok(uint64_t size)
{
	return size > 0 && size <= DMR_STREAM_SIZE_MAX && size % SECTOR == 0;
}

/* The check, and which disk it failed on (or -1). */
static int header_check(const struct dmr_stream_header *h, const char **ret_why, int *ret_disk)
{
	const char *why = NULL;
	uint64_t total = 0;
	int disk = -1;

	if (!name_ok(h->vm, DMR_STREAM_NAME_MAX))
		why = "vm name";
	else if (!dmr_uuid_valid(h->vm_uuid))
		why = "vm uuid";
	else if (!dmr_uuid_valid(h->point_uuid))
		why = "point uuid";
	else if (h->base_uuid[0] && !dmr_uuid_valid(h->base_uuid))
		why = "base uuid";
	else if (h->base_uuid[0] && strcmp(h->base_uuid, h->point_uuid) == 0)
		why = "base uuid (the point's own)";
	else if (h->resync && !h->base_uuid[0])
		why = "resync without a base";
	else if (!label_ok(h->label))
		why = "label";
	else if (h->block_bytes < BLOCK_MIN || h->block_bytes > BLOCK_MAX ||
		 h->block_bytes % BLOCK_MIN)
		why = "block size";
	else if (h->n_disks < 1 || h->n_disks > DMR_STREAM_DISKS_MAX)
		why = "disk count";
	for (uint32_t i = 0; !why && i < h->n_disks; i++) {
		/* At most 64 disks of 2^50 bytes: no overflow. */
		total += h->disks[i].size_bytes;
		disk = (int)i;
		if (!name_ok(h->disks[i].name, DMR_STREAM_NAME_MAX))
			why = "disk name";
		else if (!size_ok(h->disks[i].size_bytes))
			why = "disk size";
		for (uint32_t j = 0; !why && j < i; j++)
			if (strcmp(h->disks[i].name, h->disks[j].name) == 0)
				why = "disk name (a duplicate)";
	}
	/* The promise of data bytes can be kept: no more than the disks. */
	if (!why && h->data_bytes > total)
		why = "data bytes (more than the disks hold)";
	if (!why)
		return 0;
	if (ret_why)
		*ret_why = why;
	if (ret_disk)
		*ret_disk = disk;
	return -EBADMSG;
}

int dmr_stream_header_check(const struct dmr_stream_header *h, const char **ret_why)
{
	return header_check(h, ret_why, NULL);
}

/* The header payload (docs/stream.md):
 *   vm_uuid[36] point_uuid[36] base_uuid[36] (36 zero bytes: a full stream)
 *   created_usec u64, block_bytes u32, flags u32 (1: application),
 *   data_bytes u64 (the most the DATA records will carry)
 *   vm: u16 length + bytes, label: u16 length + bytes
 *   n_disks u32, then per disk: u16 length + name, size_bytes u64
 * Strings carry no NUL; nothing follows the last disk. */
static size_t header_encode(const struct dmr_stream_header *h, uint8_t *buf)
{
	uint8_t *p = buf;
	size_t n;

	memcpy(p, h->vm_uuid, UUID_LEN), p += UUID_LEN;
	memcpy(p, h->point_uuid, UUID_LEN), p += UUID_LEN;
	if (h->base_uuid[0])
		memcpy(p, h->base_uuid, UUID_LEN);
	else
		memset(p, 0, UUID_LEN);
	p += UUID_LEN;
	put_u64(p, h->created_usec), p += 8;
	put_u32(p, h->block_bytes), p += 4;
	put_u32(p, (h->application ? HEADER_F_APPLICATION : 0) |
		   (h->resync ? HEADER_F_RESYNC : 0)), p += 4;
	put_u64(p, h->data_bytes), p += 8;
	n = strlen(h->vm);
	put_u16(p, (uint16_t)n), p += 2;
	memcpy(p, h->vm, n), p += n;
	n = strlen(h->label);
	put_u16(p, (uint16_t)n), p += 2;
	memcpy(p, h->label, n), p += n;
	put_u32(p, h->n_disks), p += 4;
	for (uint32_t i = 0; i < h->n_disks; i++) {
		n = strlen(h->disks[i].name);
		put_u16(p, (uint16_t)n), p += 2;
		memcpy(p, h->disks[i].name, n), p += n;
		put_u64(p, h->disks[i].size_bytes), p += 8;
	}
	return (size_t)(p - buf);
}

struct cursor {
	const uint8_t *p;
	size_t left;
};

static bool take(struct cursor *c, void *dst, size_t n)
{
	if (c->left < n)
		return false;
	memcpy(dst, c->p, n);
	c->p += n;
	c->left -= n;
	return true;
}

static bool take_u16(struct cursor *c, uint16_t *v)
{
	uint8_t b[2];

	if (!take(c, b, 2))
		return false;
	*v = get_u16(b);
	return true;
}

static bool take_u32(struct cursor *c, uint32_t *v)
{
	uint8_t b[4];

	if (!take(c, b, 4))
		return false;
	*v = get_u32(b);
	return true;
}

static bool take_u64(struct cursor *c, uint64_t *v)
{
	uint8_t b[8];

	if (!take(c, b, 8))
		return false;
	*v = get_u64(b);
	return true;
}

/* A length-prefixed string into dst[max + 1]: the length bounded first,
 * no NUL inside (a NUL would hide the rest from every later check). */
static bool take_str(struct cursor *c, char *dst, size_t max)
{
	uint16_t n;

	if (!take_u16(c, &n) || n > max || !take(c, dst, n))
		return false;
	dst[n] = '\0';
	return memchr(dst, '\0', n) == NULL;
}

/* Parse; *ret_why names what is malformed.  The rules on the values are
 * header_check's, run after. */
static int header_decode(const uint8_t *buf, size_t len, struct dmr_stream_header *h,
			 const char **ret_why)
{
	struct cursor c = { buf, len };
	static const uint8_t zeros[UUID_LEN];
	uint8_t base[UUID_LEN];
	uint32_t flags;

	if (!take(&c, h->vm_uuid, UUID_LEN) || !take(&c, h->point_uuid, UUID_LEN) ||
	    !take(&c, base, UUID_LEN))
		goto short_;
	h->vm_uuid[UUID_LEN] = h->point_uuid[UUID_LEN] = '\0';
	if (memcmp(base, zeros, UUID_LEN) == 0) {
		h->base_uuid[0] = '\0';
	} else {
		memcpy(h->base_uuid, base, UUID_LEN);
		h->base_uuid[UUID_LEN] = '\0';
		/* "" would read as a full stream: the check must see it. */
		if (!h->base_uuid[0])
			h->base_uuid[0] = '?';
	}
	if (!take_u64(&c, &h->created_usec) || !take_u32(&c, &h->block_bytes) ||
	    !take_u32(&c, &flags))
		goto short_;
	if (flags & ~(HEADER_F_APPLICATION | HEADER_F_RESYNC)) {
		*ret_why = "unknown header flags";
		return -EBADMSG;
	}
	h->application = flags & HEADER_F_APPLICATION;
	h->resync = flags & HEADER_F_RESYNC;
	if (!take_u64(&c, &h->data_bytes))
		goto short_;
	if (!take_str(&c, h->vm, DMR_STREAM_NAME_MAX)) {
		*ret_why = "vm name";
		return -EBADMSG;
	}
	if (!take_str(&c, h->label, DMR_STREAM_LABEL_MAX)) {
		*ret_why = "label";
		return -EBADMSG;
	}
	if (!take_u32(&c, &h->n_disks))
		goto short_;
	if (h->n_disks < 1 || h->n_disks > DMR_STREAM_DISKS_MAX) {
		*ret_why = "disk count";
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < h->n_disks; i++) {
		if (!take_str(&c, h->disks[i].name, DMR_STREAM_NAME_MAX)) {
			*ret_why = "disk name";
			return -EBADMSG;
		}
		if (!take_u64(&c, &h->disks[i].size_bytes))
			goto short_;
	}
	if (c.left) {
		*ret_why = "bytes after the last disk";
		return -EBADMSG;
	}
	return 0;
short_:
	*ret_why = "ends inside a field";
	return -EBADMSG;
}

/* An extent within disk `size`, in sectors, not empty; no overflow. */
static bool extent_ok(uint64_t size, uint64_t offset, uint64_t len)
{
	return len > 0 && offset % SECTOR == 0 && len % SECTOR == 0 && offset <= size &&
	       len <= size - offset;
}

/* --- writer -------------------------------------------------------------- */

struct dmr_stream_writer {
	struct dmr_stream_header h;
	unsigned flags;
	dmr_stream_write_fn write;
	void *userdata;
	XXH3_state_t *stream_sum;       /* the preamble, then each record's checksum */
	XXH3_state_t *rec_sum;
	ZSTD_CCtx *cctx;
	uint8_t *buf;                   /* framing, small payloads, zstd output */
	size_t buf_size;
	struct dmr_stream_totals t;
	int err;                        /* sticky */
	bool finished;
};

static int w_out(struct dmr_stream_writer *w, const void *buf, size_t len)
{
	int r;

	if (len == 0)
		return 0;
	r = w->write(w->userdata, buf, len);
	if (r < 0)
		return r;
	if ((size_t)r != len)
		return -EIO;
	w->t.stream_bytes += len;
	return 0;
}

/* Where a record's payload is put together: after room for its framing. */
#define W_HEAD(w) ((w)->buf + REC_HDR_LEN)

/* One record: its first head_len bytes of payload at W_HEAD(w), then
 * `body` (the caller's data: written as it is, not copied), then the
 * checksum.  A record without a body goes in one write, one with a body
 * in three: no record costs a copy of the disk's bytes. */
static int w_record(struct dmr_stream_writer *w, uint32_t type, size_t head_len, const void *body,
		    size_t body_len)
{
	uint8_t *frame = w->buf, sum[REC_SUM_LEN];
	int r;

	if (w->err)
		return w->err;
	put_u32(frame, type);
	put_u32(frame + 4, 0);
	put_u64(frame + 8, (uint64_t)head_len + body_len);
	if (body_len == 0) {
		put_u64(sum, XXH3_64bits(frame, REC_HDR_LEN + head_len));
		memcpy(frame + REC_HDR_LEN + head_len, sum, sizeof(sum));
		if ((r = w_out(w, frame, REC_HDR_LEN + head_len + REC_SUM_LEN)) < 0)
			goto fail;
	} else {
		XXH3_64bits_reset(w->rec_sum);
		XXH3_64bits_update(w->rec_sum, frame, REC_HDR_LEN + head_len);
		XXH3_64bits_update(w->rec_sum, body, body_len);
		put_u64(sum, XXH3_64bits_digest(w->rec_sum));
		if ((r = w_out(w, frame, REC_HDR_LEN + head_len)) < 0 ||
		    (r = w_out(w, body, body_len)) < 0 || (r = w_out(w, sum, sizeof(sum))) < 0)
			goto fail;
	}
	/* The stream's checksum chains the records' own: every byte is
	 * hashed once, and a record lost, repeated or moved still changes
	 * it (docs/stream.md, the trailer). */
	XXH3_64bits_update(w->stream_sum, sum, sizeof(sum));
	w->t.records++;
	return 0;
fail:
	/* A record cut in the middle: nothing after it could be read. */
	w->err = r;
	return log_debug_errno(r, "stream: writing a record failed: %m");
}

int dmr_stream_writer_new(const struct dmr_stream_header *h, unsigned flags,
			  dmr_stream_write_fn write, void *userdata,
			  struct dmr_stream_writer **ret_writer)
{
	struct dmr_stream_writer *w;
	uint8_t pre[PREAMBLE_LEN];
	const char *why = NULL;
	size_t n;
	int r;

	if (!h || !write || !ret_writer || (flags & ~DMR_STREAM_W_ZSTD))
		return -EINVAL;
	if (header_check(h, &why, NULL) < 0)
		return log_debug_errno(-EINVAL, "stream: refusing to write a header with a bad %s", why);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->h = *h;
	w->h.version = DMR_STREAM_VERSION;
	w->flags = flags;
	w->write = write;
	w->userdata = userdata;
	/* The largest payload put together here: the header's, or a
	 * compressed record's (the trailer's and the others' are smaller). */
	w->buf_size = HEADER_MAX;
	if (flags & DMR_STREAM_W_ZSTD) {
		size_t bound = ZSTD_HDR_LEN + ZSTD_compressBound(DMR_STREAM_DATA_MAX);

		if (bound > w->buf_size)
			w->buf_size = bound;
		w->cctx = ZSTD_createCCtx();
	}
	w->buf_size += REC_HDR_LEN + REC_SUM_LEN;
	w->buf = malloc(w->buf_size);
	w->stream_sum = XXH3_createState();
	w->rec_sum = XXH3_createState();
	if (!w->buf || !w->stream_sum || !w->rec_sum || ((flags & DMR_STREAM_W_ZSTD) && !w->cctx)) {
		dmr_stream_writer_free(w);
		return -ENOMEM;
	}
	XXH3_64bits_reset(w->stream_sum);
	memcpy(pre, MAGIC, MAGIC_LEN);
	put_u32(pre + MAGIC_LEN, DMR_STREAM_VERSION);
	n = header_encode(&w->h, W_HEAD(w));
	XXH3_64bits_update(w->stream_sum, pre, sizeof(pre));
	if ((r = w_out(w, pre, sizeof(pre))) < 0 ||
	    (r = w_record(w, DMR_STREAM_T_HEADER, n, NULL, 0)) < 0) {
		dmr_stream_writer_free(w);
		return r;
	}
	*ret_writer = w;
	return 0;
}

static int w_check(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset, uint64_t len)
{
	if (!w || w->finished)
		return -EINVAL;
	if (w->err)
		return w->err;
	if (disk >= w->h.n_disks || !extent_ok(w->h.disks[disk].size_bytes, offset, len))
		return log_debug_errno(-EINVAL, "stream: extent %" PRIu64 "+%" PRIu64
				       " of disk %" PRIu32 " not in sectors or not within it",
				       offset, len, disk);
	return 0;
}

/* One DATA or DATA_ZSTD record of at most DMR_STREAM_DATA_MAX bytes. */
static int w_data_one(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
		      const uint8_t *buf, size_t len)
{
	uint8_t *head = W_HEAD(w);
	size_t n = 0;
	int r;

	put_u32(head, disk);
	put_u32(head + 4, 0);
	put_u64(head + 8, offset);
	/* Room for less than the raw bytes only: what does not shrink goes
	 * uncompressed (zstd says dstSize_tooSmall). */
	if (w->cctx)
		n = ZSTD_compressCCtx(w->cctx, head + ZSTD_HDR_LEN, len - 8 - 1, buf, len, ZSTD_LEVEL);
	if (w->cctx && !ZSTD_isError(n)) {
		put_u64(head + 16, len);
		r = w_record(w, DMR_STREAM_T_DATA_ZSTD, ZSTD_HDR_LEN + n, NULL, 0);
	} else {
		r = w_record(w, DMR_STREAM_DATA, EXT_HDR_LEN, buf, len);
	}
	if (r < 0)
		return r;
	w->t.data_bytes += len;
	return 0;
}

int dmr_stream_write_data(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
			  const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int r;

	if ((r = w_check(w, disk, offset, len)) < 0)
		return r;
	if (!buf)
		return -EINVAL;
	/* The header promised at most this much: a receiver checked its
	 * room against it, and its reader refuses more. */
	if (len > w->h.data_bytes - w->t.data_bytes)
		return log_debug_errno(-EINVAL, "stream: %zu more data bytes than the header's %" PRIu64,
				       len - (size_t)(w->h.data_bytes - w->t.data_bytes),
				       w->h.data_bytes);
	while (len) {
		size_t n = len < DMR_STREAM_DATA_MAX ? len : DMR_STREAM_DATA_MAX;

		if ((r = w_data_one(w, disk, offset, p, n)) < 0)
			return r;
		p += n;
		offset += n;
		len -= n;
	}
	return 0;
}

static int w_range(struct dmr_stream_writer *w, uint32_t type, uint32_t disk, uint64_t offset,
		   uint64_t len)
{
	uint8_t *p;
	int r;

	if ((r = w_check(w, disk, offset, len)) < 0)
		return r;
	p = W_HEAD(w);
	put_u32(p, disk);
	put_u32(p + 4, 0);
	put_u64(p + 8, offset);
	put_u64(p + 16, len);
	if ((r = w_record(w, type, RANGE_LEN, NULL, 0)) < 0)
		return r;
	w->t.zero_bytes += len;
	return 0;
}

int dmr_stream_write_zero(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset, uint64_t len)
{
	return w_range(w, DMR_STREAM_ZERO, disk, offset, len);
}

int dmr_stream_write_unmap(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
			   uint64_t len)
{
	return w_range(w, DMR_STREAM_UNMAP, disk, offset, len);
}

int dmr_stream_writer_finish(struct dmr_stream_writer *w, struct dmr_stream_totals *ret_totals)
{
	struct dmr_stream_totals t;
	uint8_t *p;
	int r;

	if (!w || w->finished)
		return -EINVAL;
	if (w->err)
		return w->err;
	/* The trailer counts itself in the stream's length (it is the end of
	 * it), not in the records; its sum chains those before it. */
	t = w->t;
	t.stream_bytes += REC_HDR_LEN + TRAILER_LEN + REC_SUM_LEN;
	p = W_HEAD(w);
	put_u64(p, t.records);
	put_u64(p + 8, t.data_bytes);
	put_u64(p + 16, t.zero_bytes);
	put_u64(p + 24, t.stream_bytes);
	put_u64(p + 32, XXH3_64bits_digest(w->stream_sum));
	if ((r = w_record(w, DMR_STREAM_T_TRAILER, TRAILER_LEN, NULL, 0)) < 0)
		return r;
	w->t.records--;         /* w_record counted the trailer */
	w->finished = true;
	if (ret_totals)
		*ret_totals = t;
	return 0;
}

void dmr_stream_writer_free(struct dmr_stream_writer *w)
{
	if (!w)
		return;
	ZSTD_freeCCtx(w->cctx);
	XXH3_freeState(w->stream_sum);
	XXH3_freeState(w->rec_sum);
	free(w->buf);
	free(w);
}

/* --- reader -------------------------------------------------------------- */

struct dmr_stream_reader {
	dmr_stream_read_fn read;
	void *userdata;
	dmr_stream_trace_fn trace;
	void *trace_userdata;
	struct dmr_stream_header h;
	XXH3_state_t *stream_sum;       /* the preamble, then each record's checksum */
	ZSTD_DCtx *dctx;                /* made at the first DATA_ZSTD */
	uint8_t *buf;                   /* the current record, framing and all */
	size_t buf_size;
	uint8_t *raw;                   /* decompressed data, DMR_STREAM_DATA_MAX */
	uint64_t pos;                   /* bytes consumed */
	uint64_t index;                 /* of the next record; 0 is the header */
	struct dmr_stream_totals t;     /* counted so far; the trailer's at the end */
	int err;                        /* sticky */
	bool done;
	char msg[320];
};

/* Why this thread's last dmr_stream_reader_new failed (its reader is gone). */
static _Thread_local char new_error[320];

_printf_(3, 4) static int r_fail(struct dmr_stream_reader *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->err = err;
	log_debug("stream: %s", r->msg);
	return err;
}

/* Exactly len bytes, or -ENODATA at an early end. */
static int r_in(struct dmr_stream_reader *r, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = r->read(r->userdata, p, len);

		if (n == -EINTR)
			continue;
		if (n < 0)
			return r_fail(r, (int)n, "reading the stream at byte %" PRIu64 ": %s", r->pos,
				      strerror((int)-n));
		if (n == 0)
			return r_fail(r, -ENODATA, "the stream ends early, at byte %" PRIu64, r->pos);
		if ((size_t)n > len)
			return r_fail(r, -EIO, "reading the stream: the source returned too much");
		p += n;
		len -= (size_t)n;
		r->pos += (uint64_t)n;
	}
	return 0;
}

/* Room for a record of payload len (bounded by the caller). */
static int r_room(struct dmr_stream_reader *r, size_t len)
{
	size_t need = REC_HDR_LEN + len + REC_SUM_LEN, size;
	uint8_t *b;

	if (need <= r->buf_size)
		return 0;
	size = r->buf_size ? r->buf_size : 64u << 10;
	while (size < need)
		size *= 2;
	if (size > REC_HDR_LEN + DMR_STREAM_RECORD_MAX + REC_SUM_LEN)
		size = REC_HDR_LEN + DMR_STREAM_RECORD_MAX + REC_SUM_LEN;
	b = realloc(r->buf, size);
	if (!b)
		return r_fail(r, -ENOMEM, "out of memory for a record of %zu bytes", len);
	r->buf = b;
	r->buf_size = size;
	return 0;
}

struct raw_rec {
	uint32_t type, flags;
	uint64_t offset;        /* in the stream */
	size_t len;
	const uint8_t *payload;
};

/* The next record, its checksum checked.  limit bounds its payload (less
 * than DMR_STREAM_RECORD_MAX for the header): checked before reading it. */
static int r_record(struct dmr_stream_reader *r, size_t limit, struct raw_rec *ret)
{
	uint64_t len, start = r->pos;
	uint32_t type;
	int e;

	if ((e = r_room(r, 0)) < 0 || (e = r_in(r, r->buf, REC_HDR_LEN)) < 0)
		return e;
	type = get_u32(r->buf);
	len = get_u64(r->buf + 8);
	if (len > limit)
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 " (byte %" PRIu64 "): payload length %" PRIu64
			      " is more than %zu", r->index, start, len, limit);
	if ((e = r_room(r, len)) < 0 || (e = r_in(r, r->buf + REC_HDR_LEN, len + REC_SUM_LEN)) < 0)
		return e;
	if (XXH3_64bits(r->buf, REC_HDR_LEN + len) != get_u64(r->buf + REC_HDR_LEN + len))
		return r_fail(r, -EBADMSG, "record %" PRIu64 " (byte %" PRIu64 "): checksum mismatch",
			      r->index, start);
	ret->type = type;
	ret->flags = get_u32(r->buf + 4);
	ret->offset = start;
	ret->len = len;
	ret->payload = r->buf + REC_HDR_LEN;
	return 0;
}

static void r_trace(struct dmr_stream_reader *r, const struct raw_rec *rr,
		    const struct dmr_stream_rec *rec)
{
	struct dmr_stream_rec_info info = {
		.index = r->index,
		.type = rr->type,
		.flags = rr->flags,
		.offset = rr->offset,
		.payload_offset = rr->offset + REC_HDR_LEN,
		.payload_len = rr->len,
		.rec = rec,
	};

	if (r->trace)
		r->trace(r->trace_userdata, &info);
}

/* A record is done: its checksum (already compared with its bytes) into
 * the stream's, and into the counts. */
static void r_count(struct dmr_stream_reader *r, const struct raw_rec *rr)
{
	XXH3_64bits_update(r->stream_sum, r->buf + REC_HDR_LEN + rr->len, REC_SUM_LEN);
	r->t.records++;
	r->index++;
}

int dmr_stream_reader_new_trace(dmr_stream_read_fn read, void *userdata,
				dmr_stream_trace_fn trace, void *trace_userdata,
				struct dmr_stream_reader **ret_reader)
{
	struct dmr_stream_reader *r;
	uint8_t pre[PREAMBLE_LEN];
	struct raw_rec rr;
	const char *why = NULL;
	uint32_t version;
	int disk = -1, e;

	if (!read || !ret_reader)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->read = read;
	r->userdata = userdata;
	r->trace = trace;
	r->trace_userdata = trace_userdata;
	r->stream_sum = XXH3_createState();
	if (!r->stream_sum) {
		e = -ENOMEM;
		goto fail;
	}
	XXH3_64bits_reset(r->stream_sum);
	if ((e = r_in(r, pre, sizeof(pre))) < 0)
		goto fail;
	if (memcmp(pre, MAGIC, MAGIC_LEN) != 0) {
		e = r_fail(r, -EBADMSG, "not a dmrep stream (no DMREPSTR at its start)");
		goto fail;
	}
	/* The version before anything else: a newer stream may have changed
	 * everything after it. */
	version = get_u32(pre + MAGIC_LEN);
	if (version > DMR_STREAM_VERSION) {
		e = r_fail(r, -EPROTONOSUPPORT,
			   "stream format version %" PRIu32 " is newer than this dmrep's %u", version,
			   DMR_STREAM_VERSION);
		goto fail;
	}
	if (version == 0) {
		e = r_fail(r, -EBADMSG, "stream format version 0 is not a version");
		goto fail;
	}
	XXH3_64bits_update(r->stream_sum, pre, sizeof(pre));
	if ((e = r_record(r, HEADER_MAX, &rr)) < 0)
		goto fail;
	if (rr.type != DMR_STREAM_T_HEADER || rr.flags != 0) {
		e = r_fail(r, -EBADMSG, "record 0: type %" PRIu32 " flags %" PRIu32 ", not a header",
			   rr.type, rr.flags);
		goto fail;
	}
	if (header_decode(rr.payload, rr.len, &r->h, &why) < 0 ||
	    header_check(&r->h, &why, &disk) < 0) {
		if (disk >= 0)
			e = r_fail(r, -EBADMSG, "header: disk %d: bad %s", disk, why);
		else
			e = r_fail(r, -EBADMSG, "header: bad %s", why);
		goto fail;
	}
	r->h.version = version;
	r_trace(r, &rr, NULL);
	r_count(r, &rr);
	*ret_reader = r;
	return 0;
fail:
	snprintf(new_error, sizeof(new_error), "%s", r->err ? r->msg : strerror(-e));
	dmr_stream_reader_free(r);
	return e;
}

int dmr_stream_reader_new(dmr_stream_read_fn read, void *userdata,
			  struct dmr_stream_reader **ret_reader)
{
	return dmr_stream_reader_new_trace(read, userdata, NULL, NULL, ret_reader);
}

const struct dmr_stream_header *dmr_stream_reader_header(const struct dmr_stream_reader *r)
{
	return &r->h;
}

/* Disk, pad and offset, then the extent's length: within the disk. */
static int r_extent(struct dmr_stream_reader *r, const struct raw_rec *rr, const char *what,
		    uint64_t len, struct dmr_stream_rec *rec)
{
	uint32_t disk = get_u32(rr->payload), pad = get_u32(rr->payload + 4);
	uint64_t offset = get_u64(rr->payload + 8);
	const struct dmr_stream_disk *d;

	if (pad != 0)
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": pad is not zero", r->index);
	if (disk >= r->h.n_disks)
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 ": %s extent for disk %" PRIu32
			      " of a stream with %" PRIu32 " disks",
			      r->index, what, disk, r->h.n_disks);
	d = &r->h.disks[disk];
	if (len == 0 || offset % SECTOR || len % SECTOR)
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 ": %s extent of disk %s not in 512-byte sectors"
			      " (offset %" PRIu64 " length %" PRIu64 ")",
			      r->index, what, d->name, offset, len);
	if (!extent_ok(d->size_bytes, offset, len))
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 ": %s extent past the end of disk %s (offset %" PRIu64
			      " length %" PRIu64 " size %" PRIu64 ")",
			      r->index, what, d->name, offset, len, d->size_bytes);
	rec->disk = disk;
	rec->offset = offset;
	rec->length = len;
	return 0;
}

static int r_zstd(struct dmr_stream_reader *r, const struct raw_rec *rr, struct dmr_stream_rec *rec)
{
	uint64_t raw = get_u64(rr->payload + 16), said;
	const uint8_t *z = rr->payload + ZSTD_HDR_LEN;
	size_t zlen = rr->len - ZSTD_HDR_LEN, n;
	int e;

	/* The claimed length is bounded before any byte is decompressed,
	 * and the output buffer is exactly that long: a bomb stops there. */
	if (raw > DMR_STREAM_DATA_MAX)
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 ": compressed data claims %" PRIu64
			      " bytes, more than %u", r->index, raw, DMR_STREAM_DATA_MAX);
	if ((e = r_extent(r, rr, "data", raw, rec)) < 0)
		return e;
	/* One standard frame (no legacy format, no skippable frame), with
	 * the content size ZSTD_compressCCtx writes, and that size the
	 * record's: anything else is not what a writer makes. */
	if (zlen < 4 || get_u32(z) != ZSTD_MAGICNUMBER || ZSTD_findFrameCompressedSize(z, zlen) != zlen)
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": compressed data is not one zstd frame",
			      r->index);
	said = ZSTD_getFrameContentSize(z, zlen);
	if (said == ZSTD_CONTENTSIZE_UNKNOWN || said == ZSTD_CONTENTSIZE_ERROR)
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": compressed data's frame does not say"
			      " its size", r->index);
	if (said != raw)
		return r_fail(r, -EBADMSG,
			      "record %" PRIu64 ": compressed data's frame says %" PRIu64
			      " bytes, its record %" PRIu64, r->index, said, raw);
	if (!r->dctx)
		r->dctx = ZSTD_createDCtx();
	if (!r->raw)
		r->raw = malloc(DMR_STREAM_DATA_MAX);
	if (!r->dctx || !r->raw)
		return r_fail(r, -ENOMEM, "out of memory for decompression");
	/* The frame's size is only what it says: decompress into exactly
	 * raw bytes, and the output must fill them. */
	n = ZSTD_decompressDCtx(r->dctx, r->raw, raw, z, zlen);
	if (ZSTD_isError(n))
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": compressed data does not decompress"
			      " to its %" PRIu64 " bytes (zstd: %s)", r->index, raw,
			      ZSTD_getErrorName(n));
	if (n != raw)
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": compressed data decompresses to %zu"
			      " bytes, not %" PRIu64, r->index, n, raw);
	rec->data = r->raw;
	return 0;
}

static int r_trailer(struct dmr_stream_reader *r, const struct raw_rec *rr)
{
	const uint8_t *p = rr->payload;
	uint64_t sum = XXH3_64bits_digest(r->stream_sum), end;
	struct dmr_stream_totals t;
	uint8_t extra;
	ssize_t n;

	if (rr->flags != 0 || rr->len != TRAILER_LEN)
		return r_fail(r, -EBADMSG, "record %" PRIu64 ": a trailer of %zu bytes, flags %" PRIu32,
			      r->index, rr->len, rr->flags);
	t.records = get_u64(p);
	t.data_bytes = get_u64(p + 8);
	t.zero_bytes = get_u64(p + 16);
	t.stream_bytes = get_u64(p + 24);
	end = r->pos;
	if (t.records != r->t.records || t.data_bytes != r->t.data_bytes ||
	    t.zero_bytes != r->t.zero_bytes)
		return r_fail(r, -EBADMSG,
			      "trailer: counts %" PRIu64 " records, %" PRIu64 " data bytes, %" PRIu64
			      " zero bytes; the stream had %" PRIu64 ", %" PRIu64 ", %" PRIu64,
			      t.records, t.data_bytes, t.zero_bytes, r->t.records, r->t.data_bytes,
			      r->t.zero_bytes);
	if (t.stream_bytes != end)
		return r_fail(r, -EBADMSG, "trailer: says %" PRIu64 " stream bytes, read %" PRIu64,
			      t.stream_bytes, end);
	if (get_u64(p + 32) != sum)
		return r_fail(r, -EBADMSG, "trailer: whole-stream checksum mismatch");
	/* The end of the input must be here: a stream with anything after
	 * its trailer is not the stream the sender finished. */
	do
		n = r->read(r->userdata, &extra, 1);
	while (n == -EINTR);
	if (n < 0)
		return r_fail(r, (int)n, "reading the stream after its trailer: %s",
			      strerror((int)-n));
	if (n > 0)
		return r_fail(r, -EBADMSG, "bytes after the trailer (at byte %" PRIu64 ")", end);
	t.stream_bytes = end;
	r->t = t;
	r_trace(r, rr, NULL);
	r->index++;
	r->done = true;
	return 0;
}

int dmr_stream_read_next(struct dmr_stream_reader *r, struct dmr_stream_rec *ret_rec)
{
	struct dmr_stream_rec rec;
	struct raw_rec rr;
	int e;

	if (!r || !ret_rec)
		return -EINVAL;
	for (;;) {
		if (r->err)
			return r->err;
		if (r->done)
			return 0;
		if ((e = r_record(r, DMR_STREAM_RECORD_MAX, &rr)) < 0)
			return e;
		memset(&rec, 0, sizeof(rec));
		switch (rr.type) {
		case DMR_STREAM_DATA:
		case DMR_STREAM_T_DATA_ZSTD:
		case DMR_STREAM_ZERO:
		case DMR_STREAM_UNMAP:
			if (rr.flags != 0)
				return r_fail(r, -EBADMSG, "record %" PRIu64 ": unknown flags %" PRIu32,
					      r->index, rr.flags);
			break;
		case DMR_STREAM_T_TRAILER:
			return r_trailer(r, &rr) < 0 ? r->err : 0;
		case DMR_STREAM_T_HEADER:
			return r_fail(r, -EBADMSG, "record %" PRIu64 ": a second header", r->index);
		default:
			if (!(rr.flags & DMR_STREAM_F_OPTIONAL))
				return r_fail(r, -EBADMSG,
					      "record %" PRIu64 ": unknown type %" PRIu32
					      " not marked optional", r->index, rr.type);
			/* A newer writer's record this reader may skip: it
			 * still counts, and is in the stream's checksum. */
			r_trace(r, &rr, NULL);
			r_count(r, &rr);
			continue;
		}
		if (rr.type == DMR_STREAM_DATA) {
			if (rr.len < EXT_HDR_LEN)
				return r_fail(r, -EBADMSG, "record %" PRIu64 ": data record of %zu bytes",
					      r->index, rr.len);
			if ((e = r_extent(r, &rr, "data", rr.len - EXT_HDR_LEN, &rec)) < 0)
				return e;
			rec.data = rr.payload + EXT_HDR_LEN;
		} else if (rr.type == DMR_STREAM_T_DATA_ZSTD) {
			if (rr.len <= ZSTD_HDR_LEN)
				return r_fail(r, -EBADMSG,
					      "record %" PRIu64 ": compressed data record of %zu bytes",
					      r->index, rr.len);
			if ((e = r_zstd(r, &rr, &rec)) < 0)
				return e;
		} else {
			if (rr.len != RANGE_LEN)
				return r_fail(r, -EBADMSG, "record %" PRIu64 ": %s record of %zu bytes",
					      r->index, dmr_stream_type_name(rr.type), rr.len);
			if ((e = r_extent(r, &rr, dmr_stream_type_name(rr.type),
					  get_u64(rr.payload + 16), &rec)) < 0)
				return e;
		}
		rec.type = rr.type == DMR_STREAM_T_DATA_ZSTD ? DMR_STREAM_DATA
							       : (enum dmr_stream_rec_type)rr.type;
		if (rec.type == DMR_STREAM_DATA) {
			/* No overflow: each record adds at most 4 MiB to what
			 * is at most the header's promise. */
			r->t.data_bytes += rec.length;
			if (r->t.data_bytes > r->h.data_bytes)
				return r_fail(r, -EBADMSG,
					      "record %" PRIu64 ": %" PRIu64 " data bytes so far, more than"
					      " the header's %" PRIu64, r->index, r->t.data_bytes,
					      r->h.data_bytes);
		} else if (__builtin_add_overflow(r->t.zero_bytes, rec.length, &r->t.zero_bytes))
			return r_fail(r, -EBADMSG, "record %" PRIu64 ": zero byte count overflows",
				      r->index);
		r_trace(r, &rr, &rec);
		r_count(r, &rr);
		*ret_rec = rec;
		return 1;
	}
}

void dmr_stream_reader_totals(const struct dmr_stream_reader *r, struct dmr_stream_totals *ret)
{
	*ret = r->t;
}

const char *dmr_stream_reader_error(const struct dmr_stream_reader *r)
{
	if (!r)
		return new_error[0] ? new_error : "no error";
	if (!r->err)
		return "no error";
	return r->msg;
}

void dmr_stream_reader_free(struct dmr_stream_reader *r)
{
	if (!r)
		return;
	ZSTD_freeDCtx(r->dctx);
	XXH3_freeState(r->stream_sum);
	free(r->buf);
	free(r->raw);
	free(r);
}
