/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/copy.h - the copier that imports an image file or a device into
 * a thin volume.
 *
 * Writes go to the destination with O_DIRECT through libaio, many at once
 * (the queue depth), so a thin device sees a deep queue of large, aligned
 * writes instead of page-cache writeback.  Reads use the same ring, with
 * O_DIRECT when the source allows it and buffered otherwise.
 *
 * Buffers belong to the kernel from io_submit until io_getevents returns
 * them; io_cancel is not relied on (most drivers ignore it).  So on any
 * error or cancellation the copier stops submitting and reaps every I/O in
 * flight before it frees a buffer or returns.
 */
#ifndef DMR_SNAPSHOTS_COPY_H
#define DMR_SNAPSHOTS_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMR_COPY_QUEUE_DEPTH_MIN 16u
#define DMR_COPY_QUEUE_DEPTH_DEFAULT 32u
#define DMR_COPY_QUEUE_DEPTH_MAX 1024u
#define DMR_COPY_BLOCK_SIZE_DEFAULT (1u << 20)
#define DMR_COPY_BLOCK_SIZE_MAX (64u << 20)
/* All-zero detection works in units of this size (the thin pool's block
 * size, DMR_POOL_BLOCK_SECTORS), or of the block size if smaller. */
#define DMR_COPY_ZERO_GRAIN (64u << 10)

struct dmr_copy_opts {
	unsigned queue_depth; /* I/Os in flight: >= 16; 0 means 32 */
	size_t block_size;    /* bytes per I/O: a multiple of 4096; 0 means 1 MiB */
	/*
	 * Leave all-zero data unwritten: holes of a regular-file source are
	 * skipped without being read (SEEK_DATA/SEEK_HOLE), and of what is
	 * read, leading and trailing runs of all-zero 64 KiB grains of each
	 * block are not written (a block that is all zero not at all).
	 * Precondition: the destination already reads as zeros wherever it is
	 * not written, as a fresh thin volume or a new sparse file does.
	 */
	bool skip_zero;
};

struct dmr_copy_stats {
	uint64_t bytes_read;    /* read from the source */
	uint64_t bytes_written; /* written to the destination */
	uint64_t bytes_skipped; /* not written: holes and zero data */
};

/*
 * Progress: done_bytes of total_bytes are settled (written, or skipped).
 * Called when done_bytes has grown by about 2% of the total since the last
 * call, and once more with done_bytes == total_bytes after the destination
 * is synced.  A negative return cancels the copy: dmr_copy_run drains and
 * returns that value, also from the final call.
 */
typedef int (*dmr_copy_progress_fn)(uint64_t done_bytes, uint64_t total_bytes, void *userdata);

/*
 * Copy the first length bytes of src (block device or regular file) to
 * dst, then fdatasync dst.
 *
 * length must be a multiple of 512 and at most the size of src (-EINVAL
 * otherwise).  dst is opened O_WRONLY|O_DIRECT and must accept it (-EINVAL
 * from a filesystem that does not); a block-device dst smaller than length
 * gives -ENOSPC, a regular-file dst shorter than length is first extended
 * (sparsely) to length.  src and dst must not be the same file or device.
 * src is opened with O_DIRECT when possible, buffered otherwise.
 *
 * opts may be NULL for the defaults; progress may be NULL.  On success
 * *ret_stats (may be NULL) gets the counts, and bytes_written +
 * bytes_skipped == length.  On failure the destination holds a partial copy
 * and nothing is in flight any more.
 */
int dmr_copy_run(const char *src, const char *dst, uint64_t length,
		 const struct dmr_copy_opts *opts, dmr_copy_progress_fn progress,
		 void *userdata, struct dmr_copy_stats *ret_stats);

#endif
