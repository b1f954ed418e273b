/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/xfer.h - the data path of a replication stream: reading the
 * extents of a point's volume to send them, and writing received extents
 * into a volume, both with O_DIRECT through libaio.
 *
 * As the copier (snapshots/copy.h): a buffer belongs to the kernel from
 * io_submit until io_getevents returns it; io_cancel is not relied on, so
 * on any error or cancellation every I/O in flight is reaped before a
 * buffer is freed or the function returns.
 */
#ifndef DMR_SNAPSHOTS_XFER_H
#define DMR_SNAPSHOTS_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshots/delta.h"

/* Bytes handed to the callback at most at once (the stream's
 * DMR_STREAM_DATA_MAX). */
#define DMR_XFER_CHUNK (1u << 20)

/* Called in offset order for every chunk of the extents: DATA chunks with
 * their bytes (buf, len, valid only during the call), runs of all-zero
 * 64 KiB grains inside data as zero runs (buf NULL, zero true), UNMAPPED
 * extents as zero runs with zero false.  A negative return stops the read
 * (drained) and is returned. */
typedef int (*dmr_xfer_chunk_fn)(void *userdata, uint64_t offset, const void *buf, size_t len,
				 bool zero);

/* Read extents ext[0..n) (in blocks of block_bytes) of the block device
 * at dev (opened O_RDONLY|O_DIRECT here), queue_depth reads in flight (0:
 * the copier's default), and hand them to fn in order.  skip_zero: all-
 * zero grains inside DATA extents are reported as zero runs (a full send
 * does not send them).  The last extent may end past the device's size
 * (a disk not a multiple of the block): it is cut there. */
int dmr_xfer_read(const char *dev, const struct dmr_extent *ext, size_t n, uint64_t block_bytes,
		  unsigned queue_depth, bool skip_zero, dmr_xfer_chunk_fn fn, void *userdata);

struct dmr_xfer_writer;

/* A writer to the block device dev (O_WRONLY|O_DIRECT), of size_bytes:
 * writes are queued (queue_depth in flight) from the caller's data
 * (copied into aligned buffers).  Zero runs read as zeros after: on a dm
 * thin volume (one thin target, discards on) the whole pool blocks in the
 * run are discarded, so they are unmapped, not allocated with zeros (an
 * unprovisioned thin block reads as zeros), and the edges BLKZEROOUT; on
 * another block device a hole is punched where it can (an unmap that
 * still reads zeros), else BLKZEROOUT; a file gets a hole. */
int dmr_xfer_writer_open(const char *dev, uint64_t size_bytes, unsigned queue_depth,
			 struct dmr_xfer_writer **ret_writer);
/* Queue a write of buf[0..len) at offset (multiples of 512, within the
 * device: -EINVAL).  The first error of an earlier write is returned by
 * the next call. */
int dmr_xfer_write(struct dmr_xfer_writer *w, uint64_t offset, const void *buf, size_t len);
int dmr_xfer_zero(struct dmr_xfer_writer *w, uint64_t offset, uint64_t len);
/* Wait for every write and fdatasync: 0 once all of it is durable, else
 * the first error.  Closes the writer either way. */
int dmr_xfer_writer_close(struct dmr_xfer_writer *w);
/* Abandon: reap what is in flight, close, no sync.  NULL is fine. */
void dmr_xfer_writer_abort(struct dmr_xfer_writer *w);

#endif
