/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/hashes.h - the block hash exchange of a resync and a verify
 * (docs/stream.md "Hash requests", docs/replication.md "Resync and
 * verify"): the in-band *request* a primary writes to COMMAND's stdin in
 * place of a stream, and the *reply* (block hashes of one point of the
 * replica) that comes back on COMMAND's stdout.
 *
 *   request   the stream's preamble ("DMREPSTR", version), one record of
 *             type DMR_HASHREQ_TYPE (checksummed as every stream record),
 *             then the end of the input
 *   reply     JSON lines: a head line, one line per disk with its hashes
 *             (XXH3-64 of every pool block, 16 hex digits each), then the
 *             receiver's answer line {"return": 0, "hashes_of": UUID,
 *             "bytes": N, "checksum": HEX}: N the reply's length before the
 *             answer, HEX the XXH3-64 of those N bytes
 *
 * Pure: no I/O, no catalog.  Both sides are untrusted input for the
 * other: every length, count and size is bounded before memory is taken
 * for it (tests/unit/test_hashes.c).
 */
#ifndef DMR_COMMON_HASHES_H
#define DMR_COMMON_HASHES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/stream.h"
#include "common/uuid.h"

/* The request's record type (never a record of a point's stream). */
#define DMR_HASHREQ_TYPE 7u
/* The request's format version, in its payload (the preamble's is the
 * stream's). */
#define DMR_HASHREQ_VERSION 1u
/* A whole request: preamble, framing, payload at its longest, checksum. */
#define DMR_HASHREQ_MAX (12u + 16u + 4u + 2u * 36u + 2u + DMR_STREAM_NAME_MAX + 8u)
/* Bytes a reader needs to tell a request from a stream: the preamble and
 * the first record's framing. */
#define DMR_HASHREQ_PEEK 28u
/* Blocks one reply may carry over every disk: 2^21 (128 GiB of disks in
 * 64 KiB pool blocks; more with larger blocks).  The reply is then at
 * most about 32 MiB. */
#define DMR_HASHES_BLOCKS_MAX (1ull << 21)

struct dmr_hash_request {
	char vm[DMR_STREAM_NAME_MAX + 1];
	char vm_uuid[DMR_UUID_STR_SIZE];
	char point_uuid[DMR_UUID_STR_SIZE];      /* "": the newest point */
};

/* The request's bytes into buf[0..size) (size >= DMR_HASHREQ_MAX): its
 * length, or -EINVAL (a name or uuid that is not valid). */
int dmr_hashreq_encode(const struct dmr_hash_request *q, uint8_t *buf, size_t size);
/* Do the first len bytes (at least DMR_HASHREQ_PEEK to say yes) start a
 * hash request rather than a stream?  *ret_payload: the payload length
 * the framing claims (unchecked). */
bool dmr_hashreq_is(const uint8_t *buf, size_t len, uint64_t *ret_payload);
/* Parse a whole request, buf[0..len) exactly: 0, or -EBADMSG with
 * *ret_why (static) saying what is wrong (-EPROTONOSUPPORT: a newer
 * version). */
int dmr_hashreq_parse(const uint8_t *buf, size_t len, struct dmr_hash_request *ret,
		      const char **ret_why);

struct dmr_hash_disk {
	char name[DMR_STREAM_NAME_MAX + 1];
	uint64_t size_bytes;
	uint64_t n;             /* blocks: dmr_hashes_blocks(size_bytes, block) */
	uint64_t *h;            /* n hashes, malloc()ed */
};

struct dmr_hashes {
	char vm[DMR_STREAM_NAME_MAX + 1];
	char uuid[DMR_UUID_STR_SIZE];            /* the point hashed */
	uint32_t block_bytes;
	uint32_t n_disks;
	struct dmr_hash_disk disks[DMR_STREAM_DISKS_MAX];
};

/* Blocks of block bytes in a disk of size bytes, the last one cut. */
uint64_t dmr_hashes_blocks(uint64_t size, uint64_t block);
/* Free the arrays (the struct is the caller's); accepts NULL. */
void dmr_hashes_clear(struct dmr_hashes *hs);

/* The reply's lines (head and disks, each ending in '\n') into a
 * malloc()ed buffer *ret_buf of *ret_len bytes; *ret_sum their XXH3-64. */
int dmr_hashes_format(const struct dmr_hashes *hs, char **ret_buf, size_t *ret_len,
		      uint64_t *ret_sum);

/* COMMAND's stdout buf[0..len) as a reply: the last non-empty line is the
 * answer; with return 0 the `bytes` bytes before it are the reply, whose
 * checksum must match, then parsed and checked (names, uuid, block size,
 * 1..64 disks, sizes, exactly dmr_hashes_blocks() hashes per disk, at most
 * DMR_HASHES_BLOCKS_MAX in all).  0 and *ret filled (clear it), or
 * -EBADMSG with *ret_rc the receiver's code when it answered one (else
 * 0) and *ret_why (malloc()ed) one line. */
int dmr_hashes_parse_reply(const char *buf, size_t len, struct dmr_hashes *ret, int *ret_rc,
			   char **ret_why);

/* Blocks of disk d that differ between a and b (same geometry, checked by
 * the caller): their count; up to max_first of their indices into first[]. */
uint64_t dmr_hashes_diff(const struct dmr_hash_disk *a, const struct dmr_hash_disk *b,
			 uint64_t *first, size_t max_first);

#endif
