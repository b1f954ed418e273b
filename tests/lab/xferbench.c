/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xferbench - where a full send's data step spends its time, measured on a
 * block device in the lab (tests/lab/bench-send.sh drives it; not a test:
 * no TAP, and not named lab_* so run-all does not run it alone).
 *
 *   xferbench DEV [QUEUE_DEPTH]
 *
 * Prints one line per stage, the device read whole as one DATA extent:
 *   pread   synchronous O_DIRECT 1 MiB reads (what dd iflag=direct does)
 *   xfer    dmr_xfer_read, a callback that does nothing (skip_zero off)
 *   xferz   dmr_xfer_read with skip_zero (the full send's zero grains)
 *   stream  dmr_xfer_read with skip_zero into a stream writer to /dev/null
 *   writer  the stream writer alone over the same bytes, from memory
 *   xxh3, memcpy, clock: one hash pass, one copy, dmr_now_usec per MiB
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/stream.h"
#include "common/util.h"
#include "snapshots/xfer.h"

#define MiB (1024u * 1024u)
#define BB (64u * 1024u)

struct bench {
	struct dmr_stream_writer *w;
	int out;
	uint64_t data, zero;
};

static int nop_chunk(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct bench *b = userdata;

	if (buf)
		b->data += len;
	else
		b->zero += len;
	return 0;
}

static int to_null(void *userdata, const void *buf, size_t len)
{
	struct bench *b = userdata;
	const char *p = buf;
	size_t left = len;

	while (left) {
		ssize_t k = write(b->out, p, left);

		if (k <= 0)
			return -EIO;
		p += k;
		left -= (size_t)k;
	}
	return (int)len;
}

static int stream_chunk(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct bench *b = userdata;

	nop_chunk(userdata, offset, buf, len, zero);
	return buf ? dmr_stream_write_data(b->w, 0, offset, buf, len) : 0;
}

static double secs(uint64_t t0)
{
	return (double)(dmr_now_usec() - t0) / 1e6;
}

static void header(struct dmr_stream_header *h, uint64_t size)
{
	memset(h, 0, sizeof(*h));
	h->version = DMR_STREAM_VERSION;
	snprintf(h->vm, sizeof(h->vm), "bench");
	snprintf(h->vm_uuid, sizeof(h->vm_uuid), "00000000-0000-4000-8000-000000000001");
	snprintf(h->point_uuid, sizeof(h->point_uuid), "00000000-0000-4000-8000-000000000002");
	h->block_bytes = BB;
	h->data_bytes = size;
	h->n_disks = 1;
	snprintf(h->disks[0].name, sizeof(h->disks[0].name), "vda");
	h->disks[0].size_bytes = size;
}

int main(int argc, char **argv)
{
	struct dmr_extent ext;
	struct dmr_stream_header h;
	struct bench b = { .out = -1 };
	unsigned qd = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
	uint64_t size, t0;
	void *buf;
	int fd, r;

	if (argc < 2) {
		fprintf(stderr, "usage: xferbench DEV [QUEUE_DEPTH]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0 || posix_memalign(&buf, 4096, MiB)) {
		perror(argv[1]);
		return 1;
	}
	size = size / BB * BB;
	t0 = dmr_now_usec();
	for (uint64_t off = 0; off < size; off += MiB)
		if (pread(fd, buf, MiB, (off_t)off) <= 0) {
			perror("pread");
			return 1;
		}
	printf("pread  %7.3f s  %" PRIu64 " MiB\n", secs(t0), size / MiB);
	ext = (struct dmr_extent){ .begin = 0, .length = size / BB, .kind = DMR_EXTENT_DATA };

	t0 = dmr_now_usec();
	r = dmr_xfer_read(argv[1], &ext, 1, BB, qd, false, nop_chunk, &b);
	printf("xfer   %7.3f s  r=%d data=%" PRIu64 "\n", secs(t0), r, b.data);

	b.data = b.zero = 0;
	t0 = dmr_now_usec();
	r = dmr_xfer_read(argv[1], &ext, 1, BB, qd, true, nop_chunk, &b);
	printf("xferz  %7.3f s  r=%d data=%" PRIu64 " zero=%" PRIu64 "\n", secs(t0), r, b.data,
	       b.zero);

	b.out = open("/dev/null", O_WRONLY);
	header(&h, size);
	b.data = b.zero = 0;
	t0 = dmr_now_usec();
	r = dmr_stream_writer_new(&h, 0, to_null, &b, &b.w);
	if (r == 0)
		r = dmr_xfer_read(argv[1], &ext, 1, BB, qd, true, stream_chunk, &b);
	if (r == 0)
		r = dmr_stream_writer_finish(b.w, NULL);
	printf("stream %7.3f s  r=%d data=%" PRIu64 "\n", secs(t0), r, b.data);
	dmr_stream_writer_free(b.w);

	/* The writer alone: the same number of bytes from one buffer. */
	memset(buf, 0x5a, MiB);
	t0 = dmr_now_usec();
	r = dmr_stream_writer_new(&h, 0, to_null, &b, &b.w);
	for (uint64_t off = 0; r == 0 && off < size; off += MiB)
		r = dmr_stream_write_data(b.w, 0, off, buf, MiB);
	if (r == 0)
		r = dmr_stream_writer_finish(b.w, NULL);
	printf("writer %7.3f s  r=%d\n", secs(t0), r);
	dmr_stream_writer_free(b.w);

	/* Its parts: one XXH3 pass, one copy. */
	{
		XXH3_state_t *st = XXH3_createState();
		void *dst = malloc(MiB);

		XXH3_64bits_reset(st);
		t0 = dmr_now_usec();
		for (uint64_t off = 0; off < size; off += MiB)
			XXH3_64bits_update(st, buf, MiB);
		printf("xxh3   %7.3f s  %016llx\n", secs(t0), (unsigned long long)XXH3_64bits_digest(st));
		t0 = dmr_now_usec();
		for (uint64_t off = 0; off < size; off += MiB)
			memcpy(dst, buf, MiB);
		printf("memcpy %7.3f s\n", secs(t0));
		t0 = dmr_now_usec();
		for (uint64_t off = 0; off < size; off += MiB)
			(void)dmr_now_usec();
		printf("clock  %7.3f s  (%" PRIu64 " calls)\n", secs(t0), size / MiB);
		XXH3_freeState(st);
		free(dst);
	}
	return 0;
}
