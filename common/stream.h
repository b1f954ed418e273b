/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/stream.h - the replication stream: one point of a VM (all its
 * disks), whole or as the difference from a base point, as a sequence of
 * checksummed records (docs/stream.md is the format; this is its codec).
 *
 *   magic "DMREPSTR" and u32 version       fixed, so a newer stream is
 *                                          refused before anything is parsed
 *   HEADER    VM, its uuid, the point (uuid, time, consistency, label), the
 *             base point's uuid (an incremental), the pool block size, the
 *             disks (name, size)
 *   DATA      disk, offset, bytes          (DATA_ZSTD: the bytes compressed)
 *   ZERO      disk, offset, length         reads as zeros on the replica
 *   UNMAP     disk, offset, length         unmapped on the sender: zeros too
 *   TRAILER   record counts, data bytes, the checksum of the stream before it
 *
 * Every record: a type, flags (DMR_STREAM_F_OPTIONAL: a reader that does
 * not know the type skips it), the payload's length, the payload and the
 * xxh3-64 (libxxhash) of all of that.  All numbers little-endian.
 *
 * Pure: no dm, no VM catalog; it reads and writes through callbacks so
 * that the reader is fuzzed on buffers (tests/unit/test_stream.c).
 * Everything a reader takes is untrusted: lengths, offsets and counts are
 * bounded before they are used, and the reader's memory is bounded by
 * DMR_STREAM_RECORD_MAX whatever the stream claims.
 */
#ifndef DMR_COMMON_STREAM_H
#define DMR_COMMON_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/uuid.h"

/* The format this code writes; a reader takes this and older ones. */
#define DMR_STREAM_VERSION 1u
/* Largest payload of any record (a data record carries at most this many
 * bytes of disk; a compressed one at most this many compressed bytes). */
#define DMR_STREAM_RECORD_MAX (4u << 20)
/* Largest DATA payload a writer makes from one call (callers split). */
#define DMR_STREAM_DATA_MAX (1u << 20)
#define DMR_STREAM_DISKS_MAX 64u
/* Names (VM, disk) and the label: what the agent's name rules allow fit. */
#define DMR_STREAM_NAME_MAX 128u
#define DMR_STREAM_LABEL_MAX 256u
/* Sizes and offsets: bytes, multiples of 512, below 1 PiB (as the catalog's
 * DMR_SIZE_MAX, agent/store/registry.h). */
#define DMR_STREAM_SIZE_MAX (1ull << 50)

/* Writer flags. */
#define DMR_STREAM_W_ZSTD 1u    /* compress data records with libzstd */

/* Record flag: may be skipped by a reader that does not know the type. */
#define DMR_STREAM_F_OPTIONAL 1u

struct dmr_stream_disk {
	char name[DMR_STREAM_NAME_MAX + 1];
	uint64_t size_bytes;
};

struct dmr_stream_header {
	uint32_t version;                        /* reader: the stream's */
	char vm[DMR_STREAM_NAME_MAX + 1];
	char vm_uuid[DMR_UUID_STR_SIZE];
	char point_uuid[DMR_UUID_STR_SIZE];
	char base_uuid[DMR_UUID_STR_SIZE];       /* "" for a full stream */
	uint64_t created_usec;                   /* CLOCK_REALTIME */
	bool application;                        /* consistency */
	/* A resync (header flag bit 1): base_uuid is the replica's point
	 * whose block hashes the sender compared, and the stream carries
	 * the blocks that differ from it; it needs a base. */
	bool resync;
	char label[DMR_STREAM_LABEL_MAX + 1];
	uint32_t block_bytes;                    /* the sender's pool block */
	/* Disk bytes the DATA records will carry at most, over every disk:
	 * the receiver's room check before it writes anything (the trailer's
	 * data_bytes may be lower, never higher: -EBADMSG). */
	uint64_t data_bytes;
	uint32_t n_disks;
	struct dmr_stream_disk disks[DMR_STREAM_DISKS_MAX];
};

enum dmr_stream_rec_type {
	DMR_STREAM_DATA = 2,
	DMR_STREAM_ZERO = 3,
	DMR_STREAM_UNMAP = 4,
};
/* The other record types on the wire (docs/stream.md); a reader hands a
 * DATA_ZSTD record out as DMR_STREAM_DATA, its bytes decompressed. */
#define DMR_STREAM_T_HEADER 1u
#define DMR_STREAM_T_DATA_ZSTD 5u
#define DMR_STREAM_T_TRAILER 6u
/* "header", "data", "zero", "unmap", "data_zstd", "trailer"; NULL for a
 * type this version does not know. */
const char *dmr_stream_type_name(uint32_t type);

/* One extent, as the reader hands it out. */
struct dmr_stream_rec {
	enum dmr_stream_rec_type type;
	uint32_t disk;          /* index into the header's disks */
	uint64_t offset;        /* bytes, multiple of 512 */
	uint64_t length;        /* bytes, multiple of 512, > 0, within the disk */
	const void *data;       /* DATA: length bytes (decompressed), owned by
				 * the reader until its next call */
};

/* What the trailer says, and the reader has checked, at the end. */
struct dmr_stream_totals {
	uint64_t records;       /* every record before the trailer, header too */
	uint64_t data_bytes;    /* disk bytes in DATA records */
	uint64_t zero_bytes;    /* disk bytes in ZERO and UNMAP records */
	uint64_t stream_bytes;  /* the whole stream, trailer included */
};

/* Return how many bytes were written (all of them, or -errno). */
typedef int (*dmr_stream_write_fn)(void *userdata, const void *buf, size_t len);
/* Read up to len bytes: how many (0 at the end of the input) or -errno. */
typedef ssize_t (*dmr_stream_read_fn)(void *userdata, void *buf, size_t len);

struct dmr_stream_writer;
struct dmr_stream_reader;

/* Check a header as a writer and a reader do: names (dmr_name_obj_valid's
 * rules: [A-Za-z0-9._+-], not starting with '-', not "." or ".."; the rule
 * is repeated in stream.c, as common/ may not include dm/), distinct disk
 * names, uuids (a base that is not the point's own), sizes (multiples of
 * 512, 0 < size <= DMR_STREAM_SIZE_MAX), 1..DMR_STREAM_DISKS_MAX disks, a
 * block size that is a multiple of 64 KiB from 64 KiB to 1 GiB (dm-thin's
 * rule), data_bytes no more than the disks' sizes together, a label of
 * printable characters (no C0 control, no DEL; valid UTF-8).  -EBADMSG if
 * not, and *ret_why (static, may be NULL) names the field. */
int dmr_stream_header_check(const struct dmr_stream_header *h, const char **ret_why);

/* Write the magic, version and header (checked first: -EINVAL). */
int dmr_stream_writer_new(const struct dmr_stream_header *h, unsigned flags,
			  dmr_stream_write_fn write, void *userdata,
			  struct dmr_stream_writer **ret_writer);
/* One extent of disk `disk`: DATA (len bytes of buf, split into records of
 * at most DMR_STREAM_DATA_MAX), or ZERO / UNMAP (buf NULL).  Offsets and
 * lengths multiples of 512, within the disk, and DATA no more in all than
 * the header's data_bytes: -EINVAL otherwise. */
int dmr_stream_write_data(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
			  const void *buf, size_t len);
int dmr_stream_write_zero(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
			  uint64_t len);
int dmr_stream_write_unmap(struct dmr_stream_writer *w, uint32_t disk, uint64_t offset,
			   uint64_t len);
/* The trailer; after it the writer writes nothing more.  *ret_totals (may
 * be NULL) gets what it counted. */
int dmr_stream_writer_finish(struct dmr_stream_writer *w, struct dmr_stream_totals *ret_totals);
void dmr_stream_writer_free(struct dmr_stream_writer *w);

/* Read the magic, version and header: -EPROTONOSUPPORT for a version
 * newer than DMR_STREAM_VERSION, -EBADMSG for anything corrupt or out of
 * bounds, -ENODATA for input that ends early, -errno from read. */
int dmr_stream_reader_new(dmr_stream_read_fn read, void *userdata,
			  struct dmr_stream_reader **ret_reader);
/* Where each record lay, for tools and tests (tests/lab/lab_stream.c). */
struct dmr_stream_rec_info {
	uint64_t index;                    /* 0 is the header */
	uint32_t type, flags;              /* as on the wire */
	uint64_t offset;                   /* of the record's first byte */
	uint64_t payload_offset;
	uint64_t payload_len;
	const struct dmr_stream_rec *rec;  /* an extent's, else NULL */
};
/* Called for every record once it checked out, skipped ones and the
 * trailer too (the trailer after the end of the input was checked). */
typedef void (*dmr_stream_trace_fn)(void *userdata, const struct dmr_stream_rec_info *info);
/* dmr_stream_reader_new, with trace (may be NULL) called as above. */
int dmr_stream_reader_new_trace(dmr_stream_read_fn read, void *userdata,
				dmr_stream_trace_fn trace, void *trace_userdata,
				struct dmr_stream_reader **ret_reader);
const struct dmr_stream_header *dmr_stream_reader_header(const struct dmr_stream_reader *r);
/* The next extent into *ret_rec: 1; or 0 at the end, once the trailer's
 * counts and whole-stream checksum check out and the input has ended
 * (bytes after the trailer: -EBADMSG).  Unknown optional records are
 * skipped; an unknown record without the flag is -EBADMSG.  A data
 * extent past its disk's end, an offset or length not a multiple of 512,
 * more DATA bytes than the header's data_bytes, a record checksum that
 * does not match: -EBADMSG.  Input that ends
 * early: -ENODATA.  After an error every later call returns it again.
 * A caller must not act on what a stream said until this returned 0: a
 * stream is only good once its trailer is. */
int dmr_stream_read_next(struct dmr_stream_reader *r, struct dmr_stream_rec *ret_rec);
/* After read_next returned 0: the trailer's totals (checked). */
void dmr_stream_reader_totals(const struct dmr_stream_reader *r, struct dmr_stream_totals *ret);
/* What was wrong, in one line, after an error (static or the reader's).
 * With r NULL: why the calling thread's last dmr_stream_reader_new (or
 * _new_trace) failed, as there is no reader to ask then. */
const char *dmr_stream_reader_error(const struct dmr_stream_reader *r);
void dmr_stream_reader_free(struct dmr_stream_reader *r);

#endif
