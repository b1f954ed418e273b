/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_stream - look into and damage replication streams (docs/stream.md),
 * for the lab's send/receive tests.
 *
 *   lab_stream dump FILE
 *     Reads FILE ("-": stdin) with common/stream.h's reader and prints one
 *     JSON object per line for each record it took, in order:
 *       {"index": N, "type": "header"|"data"|"data_zstd"|"zero"|"unmap"|
 *        "trailer"|"unknown", "type_code": N, "flags": N,
 *        "record_offset": BYTE, "payload_offset": BYTE, "payload_length": N}
 *     and for an extent also "disk": INDEX, "disk_name": NAME, "offset":
 *     BYTES, "length": BYTES (on the disk; a data_zstd record's length is
 *     the decompressed one).  The last line is
 *       {"ok": true, "header": {...}, "totals": {...}}
 *     or, for a stream the reader refused,
 *       {"ok": false, "errno": "EBADMSG", "error": "record 7: checksum mismatch"}
 *     (the records before the refusal are still listed).
 *     Exit status 0 for a good stream, 1 for a refused one, 2 for a usage
 *     or I/O error.
 *
 *   lab_stream flip FILE BYTE_OFFSET BIT
 *     Flips bit BIT (0-7, 0 the least significant) of byte BYTE_OFFSET of
 *     FILE in place.  Exit status 0, or 2.
 *
 *   lab_stream sample FILE
 *     Writes a small stream (VM "sample", disks vda and vdb of 8 MiB, a
 *     few data, zstd, zero and unmap records) to FILE: a known stream for
 *     checking dump and flip, and a reader, without an agent.
 *
 *   lab_stream forge KIND TEMPLATE OUT
 *     Writes to OUT a small stream that is well-formed but for exactly one
 *     field: the header of TEMPLATE (a real stream: its VM, VM uuid, base,
 *     block size, disks), a new point uuid, a label "forge KIND", one DATA
 *     record of 4 KiB of 0xf0 at offset 0 of disk 0, and the trailer;
 *     every record checksummed as common/stream.c's writer does (xxh3 of
 *     the record's framing and payload; the trailer's counts and the xxh3
 *     of everything before it).  KIND:
 *       good        nothing wrong (a reader takes it: the control)
 *       past-end    the data record is 8 KiB at 4 KiB before disk 0's end
 *       disk-slash  disk 0's name has a '/' ("x/" in front of it)
 *       disk-size   disk 0's size is 2^60 bytes (past DMR_STREAM_SIZE_MAX)
 *       disk-huge   disk 0's size is 2^50 bytes (DMR_STREAM_SIZE_MAX: the
 *                   reader takes it; a replica whose disk is smaller must
 *                   not)
 *     Written here, byte by byte, not by the writer: the writer refuses
 *     such a header or extent (dmr_stream_header_check), and a receiver's
 *     checks must not lean on the sender's.  Exit status 0, or 2.
 *
 * A test finds what to damage with dump (the payload_offset of a data
 * record, of the header, of the trailer) and damages it with flip.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <xxhash.h>

#include "common/stream.h"

static void print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

static ssize_t fd_read(void *userdata, void *buf, size_t len)
{
	ssize_t n = read(*(int *)userdata, buf, len);

	return n < 0 ? -errno : n;
}

struct dump {
	struct dmr_stream_reader *r;     /* NULL while the header is read */
};

static void on_record(void *userdata, const struct dmr_stream_rec_info *info)
{
	struct dump *d = userdata;
	const char *name = dmr_stream_type_name(info->type);
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "index", json_object_new_int64((int64_t)info->index));
	json_object_object_add(o, "type", json_object_new_string(name ? name : "unknown"));
	json_object_object_add(o, "type_code", json_object_new_int64(info->type));
	json_object_object_add(o, "flags", json_object_new_int64(info->flags));
	json_object_object_add(o, "record_offset", json_object_new_int64((int64_t)info->offset));
	json_object_object_add(o, "payload_offset",
			       json_object_new_int64((int64_t)info->payload_offset));
	json_object_object_add(o, "payload_length", json_object_new_int64((int64_t)info->payload_len));
	if (info->rec) {
		json_object_object_add(o, "disk", json_object_new_int64(info->rec->disk));
		/* The reader exists once the header is read, and extents
		 * come only after it. */
		if (d->r)
			json_object_object_add(o, "disk_name",
					       json_object_new_string(dmr_stream_reader_header(d->r)
									      ->disks[info->rec->disk].name));
		json_object_object_add(o, "offset", json_object_new_int64((int64_t)info->rec->offset));
		json_object_object_add(o, "length", json_object_new_int64((int64_t)info->rec->length));
	}
	print_json(o);
}

static const char *errno_name(int e)
{
	switch (e) {
	case EBADMSG:
		return "EBADMSG";
	case ENODATA:
		return "ENODATA";
	case EPROTONOSUPPORT:
		return "EPROTONOSUPPORT";
	case EIO:
		return "EIO";
	case ENOMEM:
		return "ENOMEM";
	default:
		return "other";
	}
}

static struct json_object *header_json(const struct dmr_stream_header *h)
{
	struct json_object *o = json_object_new_object(), *disks = json_object_new_array();

	json_object_object_add(o, "version", json_object_new_int64(h->version));
	json_object_object_add(o, "vm", json_object_new_string(h->vm));
	json_object_object_add(o, "vm_uuid", json_object_new_string(h->vm_uuid));
	json_object_object_add(o, "point_uuid", json_object_new_string(h->point_uuid));
	json_object_object_add(o, "base_uuid", json_object_new_string(h->base_uuid));
	json_object_object_add(o, "created_usec", json_object_new_int64((int64_t)h->created_usec));
	json_object_object_add(o, "consistency",
			       json_object_new_string(h->application ? "application" : "crash"));
	json_object_object_add(o, "label", json_object_new_string(h->label));
	json_object_object_add(o, "block_bytes", json_object_new_int64(h->block_bytes));
	json_object_object_add(o, "data_bytes", json_object_new_int64((int64_t)h->data_bytes));
	for (uint32_t i = 0; i < h->n_disks; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "name", json_object_new_string(h->disks[i].name));
		json_object_object_add(d, "size_bytes",
				       json_object_new_int64((int64_t)h->disks[i].size_bytes));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	return o;
}

static int refused(int e, const char *why)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "errno", json_object_new_string(errno_name(-e)));
	json_object_object_add(o, "error", json_object_new_string(why));
	print_json(o);
	return 1;
}

static int dump(const char *path)
{
	struct dump d = { NULL };
	struct dmr_stream_rec rec;
	struct dmr_stream_totals t;
	struct json_object *o, *to;
	int fd, e;

	fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "lab_stream: %s: %s\n", path, strerror(errno));
		return 2;
	}
	e = dmr_stream_reader_new_trace(fd_read, &fd, on_record, &d, &d.r);
	if (e < 0)
		return refused(e, dmr_stream_reader_error(NULL));
	while ((e = dmr_stream_read_next(d.r, &rec)) == 1)
		;
	if (e < 0) {
		e = refused(e, dmr_stream_reader_error(d.r));
		dmr_stream_reader_free(d.r);
		return e;
	}
	dmr_stream_reader_totals(d.r, &t);
	o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "header", header_json(dmr_stream_reader_header(d.r)));
	to = json_object_new_object();
	json_object_object_add(to, "records", json_object_new_int64((int64_t)t.records));
	json_object_object_add(to, "data_bytes", json_object_new_int64((int64_t)t.data_bytes));
	json_object_object_add(to, "zero_bytes", json_object_new_int64((int64_t)t.zero_bytes));
	json_object_object_add(to, "stream_bytes", json_object_new_int64((int64_t)t.stream_bytes));
	json_object_object_add(o, "totals", to);
	print_json(o);
	dmr_stream_reader_free(d.r);
	if (fd > 0)
		close(fd);
	return 0;
}

static int fd_write(void *userdata, const void *buf, size_t len)
{
	const char *p = buf;
	size_t left = len;

	while (left) {
		ssize_t n = write(*(int *)userdata, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		left -= (size_t)n;
	}
	return (int)len;
}

static int sample(const char *path)
{
	struct dmr_stream_header h = { .n_disks = 2, .block_bytes = 64u << 10,
				       .created_usec = 1796000000000000ull };
	struct dmr_stream_writer *w = NULL;
	static unsigned char data[256u << 10];
	int fd, e;

	strcpy(h.vm, "sample");
	strcpy(h.label, "lab_stream sample");
	dmr_uuid_new(h.vm_uuid);
	dmr_uuid_new(h.point_uuid);
	strcpy(h.disks[0].name, "vda");
	strcpy(h.disks[1].name, "vdb");
	h.disks[0].size_bytes = h.disks[1].size_bytes = 8u << 20;
	h.data_bytes = sizeof(data);
	uint64_t x = 88172645463325252ull;

	/* Half that compresses (a DATA_ZSTD record), half that does not
	 * (xorshift: a plain DATA record). */
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (unsigned char)(i < sizeof(data) / 2 ? i % 251 : x);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "lab_stream: %s: %s\n", path, strerror(errno));
		return 2;
	}
	if ((e = dmr_stream_writer_new(&h, DMR_STREAM_W_ZSTD, fd_write, &fd, &w)) < 0 ||
	    (e = dmr_stream_write_data(w, 0, 0, data, sizeof(data) / 2)) < 0 ||
	    (e = dmr_stream_write_data(w, 1, 1u << 20, data + sizeof(data) / 2, sizeof(data) / 2)) < 0 ||
	    (e = dmr_stream_write_zero(w, 0, 4u << 20, 1u << 20)) < 0 ||
	    (e = dmr_stream_write_unmap(w, 1, 0, 64u << 10)) < 0 ||
	    (e = dmr_stream_writer_finish(w, NULL)) < 0 || close(fd) < 0) {
		fprintf(stderr, "lab_stream: writing %s: %s\n", path, strerror(e < 0 ? -e : errno));
		dmr_stream_writer_free(w);
		return 2;
	}
	dmr_stream_writer_free(w);
	return 0;
}

static int flip(const char *path, const char *off_s, const char *bit_s)
{
	unsigned long long off;
	unsigned long bit;
	unsigned char b;
	struct stat st;
	char *end;
	int fd;

	errno = 0;
	off = strtoull(off_s, &end, 10);
	if (errno || !*off_s || *end || *off_s == '-')
		goto usage;
	bit = strtoul(bit_s, &end, 10);
	if (!*bit_s || *end || bit > 7)
		goto usage;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "lab_stream: %s: %s\n", path, strerror(errno));
		return 2;
	}
	if (off >= (unsigned long long)st.st_size) {
		fprintf(stderr, "lab_stream: %s has %lld bytes, no byte %llu\n", path,
			(long long)st.st_size, off);
		return 2;
	}
	if (pread(fd, &b, 1, (off_t)off) != 1) {
		fprintf(stderr, "lab_stream: reading %s: %s\n", path, strerror(errno));
		return 2;
	}
	b ^= (unsigned char)(1u << bit);
	if (pwrite(fd, &b, 1, (off_t)off) != 1 || close(fd) < 0) {
		fprintf(stderr, "lab_stream: writing %s: %s\n", path, strerror(errno));
		return 2;
	}
	return 0;
usage:
	fprintf(stderr, "lab_stream: flip FILE BYTE_OFFSET BIT (BIT 0-7)\n");
	return 2;
}

/* --- forge: a stream written byte by byte (docs/stream.md) -------------- */

#define F_REC_HDR 16u           /* type u32, flags u32, payload length u64 */
#define F_SUM 8u
#define F_DATA_LEN 4096u

struct forge {
	int fd;
	XXH3_state_t *sum;      /* the preamble, then each record's checksum: the trailer's */
	uint64_t bytes, records, data_bytes;
	int err;
};

static void le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void f_out(struct forge *f, const void *buf, size_t len)
{
	if (f->err)
		return;
	if (fd_write(&f->fd, buf, len) < 0) {
		f->err = errno ? errno : EIO;
		return;
	}
	f->bytes += len;
}

/* One record: framing, payload, xxh3 of both (as stream.c's w_record). */
static void f_record(struct forge *f, uint32_t type, const uint8_t *payload, size_t len)
{
	static uint8_t rec[F_REC_HDR + (16u << 10) + F_SUM];

	if (len > sizeof(rec) - F_REC_HDR - F_SUM) {
		f->err = E2BIG;
		return;
	}
	le(rec, type, 4);
	le(rec + 4, 0, 4);
	le(rec + 8, len, 8);
	memcpy(rec + F_REC_HDR, payload, len);
	le(rec + F_REC_HDR + len, XXH3_64bits(rec, F_REC_HDR + len), 8);
	XXH3_64bits_update(f->sum, rec + F_REC_HDR + len, F_SUM);
	f_out(f, rec, F_REC_HDR + len + F_SUM);
	f->records++;
}

/* The header payload as stream.c's header_encode lays it out. */
static size_t f_header(const struct dmr_stream_header *h, uint8_t *buf)
{
	uint8_t *p = buf;
	size_t n;

	memcpy(p, h->vm_uuid, 36), p += 36;
	memcpy(p, h->point_uuid, 36), p += 36;
	if (h->base_uuid[0])
		memcpy(p, h->base_uuid, 36);
	else
		memset(p, 0, 36);
	p += 36;
	le(p, h->created_usec, 8), p += 8;
	le(p, h->block_bytes, 4), p += 4;
	le(p, h->application ? 1 : 0, 4), p += 4;
	le(p, h->data_bytes, 8), p += 8;
	n = strlen(h->vm);
	le(p, n, 2), p += 2;
	memcpy(p, h->vm, n), p += n;
	n = strlen(h->label);
	le(p, n, 2), p += 2;
	memcpy(p, h->label, n), p += n;
	le(p, h->n_disks, 4), p += 4;
	for (uint32_t i = 0; i < h->n_disks; i++) {
		n = strlen(h->disks[i].name);
		le(p, n, 2), p += 2;
		memcpy(p, h->disks[i].name, n), p += n;
		le(p, h->disks[i].size_bytes, 8), p += 8;
	}
	return (size_t)(p - buf);
}

static int forge(const char *kind, const char *template, const char *out)
{
	static struct dmr_stream_header h;
	static uint8_t buf[64u << 10];
	struct dmr_stream_reader *r = NULL;
	struct forge f = { -1, NULL, 0, 0, 0, 0 };
	uint64_t offset = 0, len = F_DATA_LEN;
	uint8_t pre[12], *p;
	int fd, e;

	if (strcmp(kind, "good") && strcmp(kind, "past-end") && strcmp(kind, "disk-slash") &&
	    strcmp(kind, "disk-size") && strcmp(kind, "disk-huge")) {
		fprintf(stderr, "lab_stream: forge: no kind %s (good, past-end, disk-slash, disk-size,"
			" disk-huge)\n", kind);
		return 2;
	}
	fd = open(template, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "lab_stream: %s: %s\n", template, strerror(errno));
		return 2;
	}
	e = dmr_stream_reader_new(fd_read, &fd, &r);
	if (e < 0) {
		fprintf(stderr, "lab_stream: %s: %s\n", template, dmr_stream_reader_error(NULL));
		close(fd);
		return 2;
	}
	h = *dmr_stream_reader_header(r);
	dmr_stream_reader_free(r);
	close(fd);

	dmr_uuid_new(h.point_uuid);
	snprintf(h.label, sizeof(h.label), "forge %s", kind);
	if (strcmp(kind, "past-end") == 0) {
		len = 2 * F_DATA_LEN;
		offset = h.disks[0].size_bytes - F_DATA_LEN;
	} else if (strcmp(kind, "disk-slash") == 0) {
		char *name = h.disks[0].name;
		size_t n = strnlen(name, DMR_STREAM_NAME_MAX - 2);

		memmove(name + 2, name, n);
		name[0] = 'x';
		name[1] = '/';
		name[n + 2] = '\0';
	} else if (strcmp(kind, "disk-size") == 0) {
		h.disks[0].size_bytes = 1ull << 60;
	} else if (strcmp(kind, "disk-huge") == 0) {
		h.disks[0].size_bytes = DMR_STREAM_SIZE_MAX;
	}
	h.data_bytes = len;

	f.fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	f.sum = XXH3_createState();
	if (f.fd < 0 || !f.sum) {
		fprintf(stderr, "lab_stream: %s: %s\n", out, strerror(f.fd < 0 ? errno : ENOMEM));
		XXH3_freeState(f.sum);
		return 2;
	}
	XXH3_64bits_reset(f.sum);
	memcpy(pre, "DMREPSTR", 8);
	le(pre + 8, DMR_STREAM_VERSION, 4);
	XXH3_64bits_update(f.sum, pre, sizeof(pre));
	f_out(&f, pre, sizeof(pre));
	f_record(&f, DMR_STREAM_T_HEADER, buf, f_header(&h, buf));

	/* DATA: disk u32, pad u32, offset u64, the bytes. */
	p = buf;
	le(p, 0, 4);
	le(p + 4, 0, 4);
	le(p + 8, offset, 8);
	memset(p + 16, 0xf0, len);
	f_record(&f, DMR_STREAM_DATA, buf, 16 + len);
	f.data_bytes += len;

	/* TRAILER: records (the header's too, not its own), data bytes, zero
	 * bytes, the stream's bytes with its own, the chained checksums. */
	le(buf, f.records, 8);
	le(buf + 8, f.data_bytes, 8);
	le(buf + 16, 0, 8);
	le(buf + 24, f.bytes + F_REC_HDR + 40 + F_SUM, 8);
	le(buf + 32, XXH3_64bits_digest(f.sum), 8);
	f_record(&f, DMR_STREAM_T_TRAILER, buf, 40);
	XXH3_freeState(f.sum);
	if (f.err || close(f.fd) < 0) {
		fprintf(stderr, "lab_stream: writing %s: %s\n", out, strerror(f.err ? f.err : errno));
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "dump") == 0)
		return dump(argv[2]);
	if (argc == 3 && strcmp(argv[1], "sample") == 0)
		return sample(argv[2]);
	if (argc == 5 && strcmp(argv[1], "flip") == 0)
		return flip(argv[2], argv[3], argv[4]);
	if (argc == 5 && strcmp(argv[1], "forge") == 0)
		return forge(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: lab_stream dump FILE | flip FILE BYTE_OFFSET BIT | sample FILE |"
		" forge KIND TEMPLATE OUT\n");
	return 2;
}
