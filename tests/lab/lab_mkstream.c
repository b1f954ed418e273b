/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_mkstream - write a replication stream of known data to stdout with
 * common/stream.h's writer, for tests/lab/t-96-receive.sh: the receiver
 * tested on streams whose every byte the test knows.
 *
 *   lab_mkstream --vm NAME --vm-uuid UUID --point UUID [--base UUID]
 *                [--label TEXT] [--zstd] --disk NAME:BYTES...
 *                [--data DISK:OFFSET:LEN:HEX | --zero DISK:OFFSET:LEN |
 *                 --unmap DISK:OFFSET:LEN]...
 *
 * --data writes LEN bytes of the byte 0xHEX at OFFSET of disk index DISK
 * (the lab's `bytes HEX` pattern); records go out in the order given.
 * Exit status 0, or 1 with the reason on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/stream.h"

#define OPS_MAX 256

struct op {
	char kind;              /* 'd', 'z', 'u' */
	uint32_t disk;
	uint64_t offset, len;
	unsigned byte;
};

static int write_all(void *userdata, const void *buf, size_t len)
{
	const char *p = buf;
	size_t left = len;

	while (left > 0) {
		ssize_t n = write(STDOUT_FILENO, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		left -= (size_t)n;
	}
	return (int)len;
}

static void die(const char *what)
{
	fprintf(stderr, "lab_mkstream: %s\n", what);
	exit(1);
}

int main(int argc, char **argv)
{
	static struct dmr_stream_header h;
	static struct op ops[OPS_MAX];
	struct dmr_stream_writer *w = NULL;
	struct timespec ts;
	unsigned flags = 0;
	size_t n_ops = 0;
	int r;

	h.version = DMR_STREAM_VERSION;
	h.block_bytes = 64u << 10;
	clock_gettime(CLOCK_REALTIME, &ts);
	h.created_usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--zstd")) {
			flags |= DMR_STREAM_W_ZSTD;
			continue;
		}
		if (!v)
			die("an option lacks its value");
		i++;
		if (!strcmp(o, "--vm")) {
			snprintf(h.vm, sizeof(h.vm), "%s", v);
		} else if (!strcmp(o, "--vm-uuid")) {
			snprintf(h.vm_uuid, sizeof(h.vm_uuid), "%s", v);
		} else if (!strcmp(o, "--point")) {
			snprintf(h.point_uuid, sizeof(h.point_uuid), "%s", v);
		} else if (!strcmp(o, "--base")) {
			snprintf(h.base_uuid, sizeof(h.base_uuid), "%s", v);
		} else if (!strcmp(o, "--label")) {
			snprintf(h.label, sizeof(h.label), "%s", v);
		} else if (!strcmp(o, "--disk")) {
			struct dmr_stream_disk *d = &h.disks[h.n_disks];
			const char *colon = strrchr(v, ':');

			if (h.n_disks >= DMR_STREAM_DISKS_MAX || !colon ||
			    (size_t)(colon - v) > DMR_STREAM_NAME_MAX)
				die("bad --disk");
			memcpy(d->name, v, (size_t)(colon - v));
			d->size_bytes = strtoull(colon + 1, NULL, 0);
			h.n_disks++;
		} else if (!strcmp(o, "--data") || !strcmp(o, "--zero") || !strcmp(o, "--unmap")) {
			struct op *p = &ops[n_ops];
			int k;

			if (n_ops >= OPS_MAX)
				die("too many records");
			p->kind = o[2];
			k = p->kind == 'd' ?
			    sscanf(v, "%" SCNu32 ":%" SCNu64 ":%" SCNu64 ":%x", &p->disk, &p->offset,
				   &p->len, &p->byte) :
			    sscanf(v, "%" SCNu32 ":%" SCNu64 ":%" SCNu64, &p->disk, &p->offset, &p->len);
			if (k != (p->kind == 'd' ? 4 : 3))
				die("bad extent");
			if (p->kind == 'd')
				h.data_bytes += p->len;
			n_ops++;
		} else {
			die("unknown option");
		}
	}
	r = dmr_stream_writer_new(&h, flags, write_all, NULL, &w);
	if (r < 0) {
		const char *why = NULL;

		(void)dmr_stream_header_check(&h, &why);
		fprintf(stderr, "lab_mkstream: header: %s (%s)\n", strerror(-r), why ? why : "?");
		return 1;
	}
	for (size_t k = 0; k < n_ops; k++) {
		struct op *p = &ops[k];

		if (p->kind == 'd') {
			char *buf = malloc(p->len ? p->len : 1);

			if (!buf)
				die("out of memory");
			memset(buf, (int)p->byte, p->len);
			r = dmr_stream_write_data(w, p->disk, p->offset, buf, p->len);
			free(buf);
		} else if (p->kind == 'z') {
			r = dmr_stream_write_zero(w, p->disk, p->offset, p->len);
		} else {
			r = dmr_stream_write_unmap(w, p->disk, p->offset, p->len);
		}
		if (r < 0) {
			fprintf(stderr, "lab_mkstream: record %zu: %s\n", k, strerror(-r));
			return 1;
		}
	}
	r = dmr_stream_writer_finish(w, NULL);
	dmr_stream_writer_free(w);
	if (r < 0) {
		fprintf(stderr, "lab_mkstream: trailer: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
