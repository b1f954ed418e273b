/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/xfer.h"

#include "snapshots/probe.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/log.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/copy.h"

/* O_DIRECT needs buffers aligned to the logical block size; a page covers
 * every device we meet. */
#define BUF_ALIGN 4096u
#define SECTOR 512u
#define GRAIN DMR_COPY_ZERO_GRAIN

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < 16 && i < n; i++)
		if (p[i])
			return false;
	return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

static int depth_of(unsigned queue_depth, unsigned *ret)
{
	unsigned d = queue_depth ? queue_depth : DMR_COPY_QUEUE_DEPTH_DEFAULT;

	if (d > DMR_COPY_QUEUE_DEPTH_MAX)
		return -EINVAL;
	*ret = d;
	return 0;
}

static int submit_one(io_context_t ctx, struct iocb *cb)
{
	int r;

	do
		r = io_submit(ctx, 1, &cb);
	while (r == -EINTR);
	/* libaio returns -errno; 0 would mean it took nothing. */
	return r == 1 ? 0 : r < 0 ? r : -EAGAIN;
}

/* ---- the reader ---- */

/* One entry of the in-order queue: a read of [off, off+len) into buf, or
 * (zrun) an unmapped extent waiting for the reads before it. */
struct rslot {
	struct iocb iocb;
	uint8_t *buf;
	uint64_t off;
	size_t len, got;
	bool done, zrun, inflight;
};

struct reader {
	int fd;
	uint64_t dev_size, bb;
	bool skip_zero;
	dmr_xfer_chunk_fn fn;
	void *userdata;

	io_context_t ctx;
	unsigned nslots;
	uint8_t *mem;
	struct rslot *slots;
	struct io_event *events;
	unsigned head, count;  /* the queue: slots[(head + i) % nslots], i < count */
	unsigned inflight;
	bool reap_failed;

	/* Where the next entry comes from: extent ei, from byte cur. */
	const struct dmr_extent *ext;
	size_t n, ei;
	uint64_t cur;

	/* A zero run not handed over yet (runs that touch are merged). */
	bool pz, pz_flag;
	uint64_t pz_off, pz_len;
};

/* The byte range of extent i, cut at the device's end ([b, b) if past). */
static void ext_bytes(const struct reader *r, size_t i, uint64_t *b, uint64_t *e)
{
	*b = r->ext[i].begin * r->bb;
	*e = (r->ext[i].begin + r->ext[i].length) * r->bb;
	if (*e > r->dev_size)
		*e = r->dev_size;
	if (*b > *e)
		*b = *e;
}

/* Move to the next extent that has bytes on the device. */
static void gen_skip_empty(struct reader *r)
{
	while (r->ei < r->n) {
		uint64_t b, e;

		ext_bytes(r, r->ei, &b, &e);
		if (r->cur < b)
			r->cur = b;
		if (r->cur < e)
			return;
		r->ei++;
	}
}

static int flush_zero(struct reader *r)
{
	int k;

	if (!r->pz)
		return 0;
	r->pz = false;
	k = r->fn(r->userdata, r->pz_off, NULL, (size_t)r->pz_len, r->pz_flag);
	return k < 0 ? k : 0;
}

static int emit_zero(struct reader *r, uint64_t off, uint64_t len, bool zero)
{
	int k;

	if (r->pz && r->pz_flag == zero && r->pz_off + r->pz_len == off &&
	    r->pz_len + len <= SIZE_MAX / 2) {
		r->pz_len += len;
		return 0;
	}
	k = flush_zero(r);
	if (k < 0)
		return k;
	r->pz = true;
	r->pz_flag = zero;
	r->pz_off = off;
	r->pz_len = len;
	return 0;
}

static int emit_data(struct reader *r, uint64_t off, const uint8_t *p, size_t len)
{
	int k = flush_zero(r);

	if (k < 0)
		return k;
	k = r->fn(r->userdata, off, p, len, false);
	return k < 0 ? k : 0;
}

/* A read chunk, in order: as it is, or with skip_zero cut into data and
 * zero runs on the 64 KiB grid of the device. */
static int emit_chunk(struct reader *r, const struct rslot *s)
{
	size_t pos = 0, run = 0; /* data run [run, pos) not handed over yet */
	int k;

	if (!r->skip_zero)
		return emit_data(r, s->off, s->buf, s->len);
	while (pos < s->len) {
		uint64_t abs = s->off + pos;
		size_t g = (size_t)(GRAIN - abs % GRAIN);

		if (g > s->len - pos)
			g = s->len - pos;
		if (all_zero(s->buf + pos, g)) {
			if (pos > run) {
				k = emit_data(r, s->off + run, s->buf + run, pos - run);
				if (k < 0)
					return k;
			}
			k = emit_zero(r, abs, g, true);
			if (k < 0)
				return k;
			run = pos + g;
		}
		pos += g;
	}
	return pos > run ? emit_data(r, s->off + run, s->buf + run, pos - run) : 0;
}

static int reader_submit(struct reader *r, struct rslot *s)
{
	int k;

	io_prep_pread(&s->iocb, r->fd, s->buf + s->got, s->len - s->got, (long long)(s->off + s->got));
	k = submit_one(r->ctx, &s->iocb);
	if (k == 0) {
		s->inflight = true;
		r->inflight++;
	}
	return k;
}

/* Queue what fits: reads for DATA, places for UNMAPPED extents behind
 * reads (handed over at once when nothing is before them). */
static int reader_fill(struct reader *r)
{
	for (;;) {
		const struct dmr_extent *x;
		struct rslot *s;
		uint64_t b, e;
		int k;

		gen_skip_empty(r);
		if (r->ei >= r->n || r->count >= r->nslots)
			return 0;
		x = &r->ext[r->ei];
		ext_bytes(r, r->ei, &b, &e);
		if (x->kind == DMR_EXTENT_UNMAPPED && r->count == 0) {
			k = emit_zero(r, r->cur, e - r->cur, false);
			if (k < 0)
				return k;
			r->cur = e;
			continue;
		}
		s = &r->slots[(r->head + r->count) % r->nslots];
		s->off = r->cur;
		s->got = 0;
		s->done = s->inflight = false;
		if (x->kind == DMR_EXTENT_UNMAPPED) {
			s->zrun = true;
			s->done = true;
			s->len = 0;
			s->got = e - r->cur; /* the run's length */
			r->cur = e;
			r->count++;
			continue;
		}
		s->zrun = false;
		s->len = e - r->cur < DMR_XFER_CHUNK ? (size_t)(e - r->cur) : DMR_XFER_CHUNK;
		k = reader_submit(r, s);
		if (k == -EAGAIN && r->inflight > 0)
			return 0; /* the ring is full: after a completion */
		if (k < 0)
			return k;
		r->cur += s->len;
		r->count++;
	}
}

static int reader_deliver(struct reader *r)
{
	while (r->count > 0) {
		struct rslot *s = &r->slots[r->head];
		int k;

		if (!s->done)
			return 0;
		k = s->zrun ? emit_zero(r, s->off, s->got, false) : emit_chunk(r, s);
		r->head = (r->head + 1) % r->nslots;
		r->count--;
		if (k < 0)
			return k;
	}
	return 0;
}

static int reader_complete(struct reader *r, struct io_event *ev, bool go_on)
{
	struct rslot *s = (struct rslot *)(void *)((char *)ev->obj - offsetof(struct rslot, iocb));
	long res = (long)ev->res;

	s->inflight = false;
	r->inflight--;
	if (!go_on)
		return 0;
	if (res < 0) {
		log_debug_errno((int)res, "xfer: read at %" PRIu64 " failed: %m", s->off + s->got);
		return (int)res;
	}
	if (res == 0 || (size_t)res > s->len - s->got) {
		log_debug("xfer: read at %" PRIu64 ": %ld bytes of %zu", s->off + s->got, res,
			  s->len - s->got);
		return -EIO;
	}
	s->got += (size_t)res;
	if (s->got < s->len) {
		/* A direct read cannot go on at an unaligned offset. */
		if (s->got % SECTOR)
			return -EIO;
		return reader_submit(r, s);
	}
	s->done = true;
	return 0;
}

static int reader_pump(struct reader *r)
{
	int err = 0;

	for (;;) {
		int n;

		if (!err)
			err = reader_fill(r);
		if (!err)
			err = reader_deliver(r);
		if (!err && r->count == 0) {
			gen_skip_empty(r);
			if (r->ei >= r->n)
				break;
		}
		if (r->inflight == 0) {
			if (err)
				break;
			continue;
		}
		n = io_getevents(r->ctx, 1, r->nslots, r->events, NULL);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			log_debug_errno(n, "xfer: io_getevents failed with %u in flight: %m",
					r->inflight);
			r->reap_failed = true;
			return err ? err : n;
		}
		for (int i = 0; i < n; i++) {
			int k = reader_complete(r, &r->events[i], err == 0);

			if (k < 0 && !err)
				err = k;
		}
	}
	return err ? err : flush_zero(r);
}

static int check_extents(const struct dmr_extent *ext, size_t n, uint64_t bb)
{
	uint64_t end = 0;

	for (size_t i = 0; i < n; i++) {
		const struct dmr_extent *x = &ext[i];

		if (x->length == 0 || x->begin < end || x->begin + x->length < x->begin ||
		    x->begin + x->length > UINT64_MAX / bb ||
		    (x->kind != DMR_EXTENT_DATA && x->kind != DMR_EXTENT_UNMAPPED))
			return -EINVAL;
		end = x->begin + x->length;
	}
	return 0;
}

int dmr_xfer_read(const char *dev, const struct dmr_extent *ext, size_t n, uint64_t block_bytes,
		  unsigned queue_depth, bool skip_zero, dmr_xfer_chunk_fn fn, void *userdata)
{
	struct reader r = {
		.fd = -1,
		.bb = block_bytes,
		.skip_zero = skip_zero,
		.fn = fn,
		.userdata = userdata,
		.ext = ext,
		.n = n,
	};
	uint64_t chunks = 0;
	bool blk;
	void *mem;
	int k;

	if (!dev || !fn || (n && !ext) || block_bytes == 0 || block_bytes % SECTOR)
		return -EINVAL;
	k = depth_of(queue_depth, &r.nslots);
	if (k < 0)
		return k;
	k = check_extents(ext, n, block_bytes);
	if (k < 0)
		return k;
	r.fd = open(dev, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (r.fd < 0)
		return dmr_negerrno();
	k = dmr_probe_fd_kind(r.fd, &blk, &r.dev_size);
	if (k < 0)
		goto out;
	/* No more buffers than chunks to read. */
	for (size_t i = 0; i < n && chunks < r.nslots; i++)
		if (ext[i].kind == DMR_EXTENT_DATA)
			chunks += (ext[i].length * block_bytes + DMR_XFER_CHUNK - 1) / DMR_XFER_CHUNK;
	if (chunks < r.nslots)
		r.nslots = chunks ? (unsigned)chunks : 1;
	k = posix_memalign(&mem, BUF_ALIGN, (size_t)r.nslots * DMR_XFER_CHUNK);
	if (k) {
		k = -k;
		goto out;
	}
	r.mem = mem;
	r.slots = calloc(r.nslots, sizeof(*r.slots));
	r.events = calloc(r.nslots, sizeof(*r.events));
	if (!r.slots || !r.events) {
		k = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < r.nslots; i++)
		r.slots[i].buf = r.mem + (size_t)i * DMR_XFER_CHUNK;
	k = io_setup((int)r.nslots, &r.ctx);
	if (k < 0) {
		r.ctx = 0;
		goto out;
	}
	k = reader_pump(&r);
out:
	if (r.ctx)
		(void)io_destroy(r.ctx);
	if (r.reap_failed && r.inflight > 0) {
		/* The kernel may still own these buffers: leak them. */
		log_debug("xfer: leaking %zu bytes of I/O buffers still owned by the kernel",
			  (size_t)r.nslots * DMR_XFER_CHUNK);
	} else {
		free(r.mem);
		free(r.slots);
	}
	free(r.events);
	close(r.fd);
	if (k < 0)
		log_debug_errno(k, "xfer: reading %s failed: %m", dev);
	return k;
}

/* ---- the writer ---- */

struct wslot {
	struct iocb iocb;
	uint8_t *buf;
	uint64_t off;
	size_t len;
	bool busy;
};

struct dmr_xfer_writer {
	int fd;
	bool blk;
	uint64_t size;
	io_context_t ctx;
	unsigned nslots;
	uint8_t *mem;
	struct wslot *slots;
	unsigned *free_idx;
	unsigned nfree;
	unsigned inflight;
	struct io_event *events;
	/* A dm thin volume with discards on: whole blocks of thin_grain
	 * bytes are zeroed by unmapping them (an unprovisioned block of a
	 * thin volume reads as zeros). */
	uint64_t thin_grain;
	int err;             /* the first error of a write */
	bool reap_failed;
	uint8_t *zeros;      /* DMR_XFER_CHUNK of zeros, for files */
};

static void writer_free(struct dmr_xfer_writer *w)
{
	if (w->ctx)
		(void)io_destroy(w->ctx);
	if (w->reap_failed && w->inflight > 0) {
		log_debug("xfer: leaking %zu bytes of I/O buffers still owned by the kernel",
			  (size_t)w->nslots * DMR_XFER_CHUNK);
	} else {
		free(w->mem);
		free(w->slots);
	}
	free(w->free_idx);
	free(w->events);
	free(w->zeros);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

static void note_err(struct dmr_xfer_writer *w, int r)
{
	if (r < 0 && !w->err)
		w->err = r;
}

/* Take back at least min completions (what is done beyond it too).  A
 * failed io_getevents leaves the buffers to the kernel for good. */
static int writer_reap(struct dmr_xfer_writer *w, unsigned min)
{
	int n;

	if (w->reap_failed)
		return -EIO;
	do
		n = io_getevents(w->ctx, (long)min, (long)w->nslots, w->events, NULL);
	while (n == -EINTR);
	if (n < 0) {
		log_debug_errno(n, "xfer: io_getevents failed with %u in flight: %m", w->inflight);
		w->reap_failed = true;
		note_err(w, n);
		return n;
	}
	for (int i = 0; i < n; i++) {
		struct io_event *ev = &w->events[i];
		struct wslot *s = (struct wslot *)(void *)((char *)ev->obj - offsetof(struct wslot, iocb));
		long res = (long)ev->res;

		if (res < 0) {
			log_debug_errno((int)res, "xfer: write at %" PRIu64 " failed: %m", s->off);
			note_err(w, (int)res);
		} else if ((size_t)res != s->len) {
			log_debug("xfer: short write at %" PRIu64 ": %ld of %zu bytes", s->off, res,
				  s->len);
			note_err(w, -EIO);
		}
		s->busy = false;
		w->inflight--;
		w->free_idx[w->nfree++] = (unsigned)(s - w->slots);
	}
	return 0;
}

static int writer_drain(struct dmr_xfer_writer *w)
{
	while (w->inflight > 0)
		if (writer_reap(w, w->inflight) < 0)
			return -EIO;
	return 0;
}

/* A small sysfs number of the block device devno, or 0. */
static uint64_t sysfs_u64(dev_t devno, const char *attr)
{
	char path[128];
	_cleanup_free_ char *buf = NULL;
	uint64_t v;
	size_t len;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(devno), minor(devno), attr);
	if (dmr_read_file(path, 64, &buf, &len) < 0)
		return 0;
	buf[strcspn(buf, "\n")] = '\0';
	return dmr_parse_u64(buf, &v) == 0 ? v : 0;
}

/* Is fd a dm device whose table is one thin target, with discards on?
 * Then the discard granularity is the pool's block. */
static uint64_t thin_grain_of(int fd)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	_cleanup_free_ char *name = NULL;
	char path[128];
	struct stat st;
	uint64_t g;
	size_t len;

	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
		return 0;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name", major(st.st_rdev),
		 minor(st.st_rdev));
	if (dmr_read_file(path, DMR_DM_NAME_SIZE + 1, &name, &len) < 0)
		return 0;
	name[strcspn(name, "\n")] = '\0';
	if (dmr_dm_table(name, false, &t) < 0 || t->count != 1 ||
	    strcmp(t->targets[0].type, "thin") != 0)
		return 0;
	g = sysfs_u64(st.st_rdev, "queue/discard_granularity");
	if (g == 0 || g % SECTOR || sysfs_u64(st.st_rdev, "queue/discard_max_bytes") == 0)
		return 0;
	return g;
}

int dmr_xfer_writer_open(const char *dev, uint64_t size_bytes, unsigned queue_depth,
			 struct dmr_xfer_writer **ret_writer)
{
	struct dmr_xfer_writer *w;
	uint64_t have;
	void *mem;
	int r;

	if (!dev || !ret_writer || size_bytes % SECTOR)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->size = size_bytes;
	r = depth_of(queue_depth, &w->nslots);
	if (r < 0)
		goto fail;
	w->fd = open(dev, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (w->fd < 0) {
		r = dmr_negerrno();
		goto fail;
	}
	r = dmr_probe_fd_kind(w->fd, &w->blk, &have);
	if (r < 0)
		goto fail;
	if (have < size_bytes) {
		if (w->blk) {
			log_debug("xfer: %s has %" PRIu64 " bytes, fewer than %" PRIu64, dev, have,
				  size_bytes);
			r = -ENOSPC;
			goto fail;
		}
		if (ftruncate(w->fd, (off_t)size_bytes) < 0) {
			r = dmr_negerrno();
			goto fail;
		}
	}
	if (w->blk)
		w->thin_grain = thin_grain_of(w->fd);
	r = posix_memalign(&mem, BUF_ALIGN, (size_t)w->nslots * DMR_XFER_CHUNK);
	if (r) {
		r = -r;
		goto fail;
	}
	w->mem = mem;
	w->slots = calloc(w->nslots, sizeof(*w->slots));
	w->free_idx = calloc(w->nslots, sizeof(*w->free_idx));
	w->events = calloc(w->nslots, sizeof(*w->events));
	if (!w->slots || !w->free_idx || !w->events) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < w->nslots; i++) {
		w->slots[i].buf = w->mem + (size_t)i * DMR_XFER_CHUNK;
		w->free_idx[i] = w->nslots - 1 - i;
	}
	w->nfree = w->nslots;
	r = io_setup((int)w->nslots, &w->ctx);
	if (r < 0) {
		w->ctx = 0;
		goto fail;
	}
	*ret_writer = w;
	return 0;
fail:
	log_debug_errno(r, "xfer: cannot open %s for writing: %m", dev);
	writer_free(w);
	return r;
}

static int check_range(const struct dmr_xfer_writer *w, uint64_t offset, uint64_t len)
{
	if (offset % SECTOR || len % SECTOR || offset > w->size || len > w->size - offset)
		return -EINVAL;
	return 0;
}

int dmr_xfer_write(struct dmr_xfer_writer *w, uint64_t offset, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int r;

	if (!w || (!buf && len))
		return -EINVAL;
	if (w->err)
		return w->err;
	r = check_range(w, offset, len);
	if (r < 0)
		return r;
	while (len > 0) {
		size_t piece = len < DMR_XFER_CHUNK ? len : DMR_XFER_CHUNK;
		struct wslot *s;

		while (w->nfree == 0)
			if (writer_reap(w, 1) < 0)
				return w->err;
		if (w->err)
			return w->err;
		s = &w->slots[w->free_idx[--w->nfree]];
		memcpy(s->buf, p, piece);
		s->off = offset;
		s->len = piece;
		io_prep_pwrite(&s->iocb, w->fd, s->buf, piece, (long long)offset);
		for (;;) {
			r = submit_one(w->ctx, &s->iocb);
			if (r != -EAGAIN || w->inflight == 0)
				break;
			/* The ring is full: wait for room. */
			if (writer_reap(w, 1) < 0)
				break;
		}
		if (r < 0) {
			w->free_idx[w->nfree++] = (unsigned)(s - w->slots);
			note_err(w, r);
			return w->err;
		}
		s->busy = true;
		w->inflight++;
		offset += piece;
		p += piece;
		len -= piece;
	}
	return 0;
}

/* Zeros written through the queue (a file that cannot punch holes). */
static int write_zeros(struct dmr_xfer_writer *w, uint64_t offset, uint64_t len)
{
	if (!w->zeros && !(w->zeros = calloc(1, DMR_XFER_CHUNK)))
		return -ENOMEM;
	while (len > 0) {
		size_t piece = len < DMR_XFER_CHUNK ? (size_t)len : DMR_XFER_CHUNK;
		int r = dmr_xfer_write(w, offset, w->zeros, piece);

		if (r < 0)
			return r;
		offset += piece;
		len -= piece;
	}
	return 0;
}

static int blk_ioctl_range(struct dmr_xfer_writer *w, unsigned long req, const char *what,
			   uint64_t offset, uint64_t len)
{
	uint64_t range[2] = { offset, len };
	int r;

	if (len == 0 || ioctl(w->fd, req, range) == 0)
		return 0;
	r = dmr_negerrno();
	log_debug_errno(r, "xfer: %s at %" PRIu64 "+%" PRIu64 " failed: %m", what, offset, len);
	note_err(w, r);
	return r;
}

/* On a thin volume: the whole blocks unmapped, the edges zeroed. */
static int thin_zero(struct dmr_xfer_writer *w, uint64_t offset, uint64_t len)
{
	uint64_t g = w->thin_grain, end = offset + len;
	uint64_t a = (offset + g - 1) / g * g, b = end / g * g;
	int r;

	if (a >= b)
		return blk_ioctl_range(w, BLKZEROOUT, "BLKZEROOUT", offset, len);
	r = blk_ioctl_range(w, BLKZEROOUT, "BLKZEROOUT", offset, a - offset);
	if (r == 0) {
		uint64_t range[2] = { a, b - a };

		if (ioctl(w->fd, BLKDISCARD, range) < 0) {
			/* Discards turned off since open: zeros it is. */
			log_debug_errno(dmr_negerrno(), "xfer: BLKDISCARD at %" PRIu64 "+%" PRIu64
					" failed: %m; writing zeros", a, b - a);
			r = blk_ioctl_range(w, BLKZEROOUT, "BLKZEROOUT", a, b - a);
		}
	}
	if (r == 0)
		r = blk_ioctl_range(w, BLKZEROOUT, "BLKZEROOUT", b, end - b);
	return r;
}

int dmr_xfer_zero(struct dmr_xfer_writer *w, uint64_t offset, uint64_t len)
{
	int r;

	if (!w)
		return -EINVAL;
	if (w->err)
		return w->err;
	r = check_range(w, offset, len);
	if (r < 0 || len == 0)
		return r;
	/* A queued write to the same range must not land after the zeros. */
	for (unsigned i = 0; i < w->nslots; i++) {
		const struct wslot *s = &w->slots[i];

		if (s->busy && s->off < offset + len && offset < s->off + s->len) {
			if (writer_drain(w) < 0)
				return w->err;
			break;
		}
	}
	if (w->err)
		return w->err;
	if (w->thin_grain)
		return thin_zero(w, offset, len);
	/* Unmap where the device can and still reads zeros after (no
	 * fallback inside: EOPNOTSUPP where it cannot); else BLKZEROOUT,
	 * which the kernel does the best way the device offers. */
	if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
		      (off_t)len) == 0)
		return 0;
	r = dmr_negerrno();
	if (r != -EOPNOTSUPP && r != -EINVAL && r != -ENODEV) {
		note_err(w, r);
		return r;
	}
	if (!w->blk)
		return write_zeros(w, offset, len);
	return blk_ioctl_range(w, BLKZEROOUT, "BLKZEROOUT", offset, len);
}

int dmr_xfer_writer_close(struct dmr_xfer_writer *w)
{
	int r;

	if (!w)
		return -EINVAL;
	(void)writer_drain(w);
	if (!w->err && fdatasync(w->fd) < 0)
		note_err(w, dmr_negerrno());
	r = w->err;
	writer_free(w);
	return r;
}

void dmr_xfer_writer_abort(struct dmr_xfer_writer *w)
{
	if (!w)
		return;
	(void)writer_drain(w);
	writer_free(w);
}
