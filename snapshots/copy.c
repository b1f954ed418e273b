/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/copy.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"

/* O_DIRECT needs buffers aligned to the logical block size; a page covers
 * every device we meet. */
#define BUF_ALIGN 4096u
#define SECTOR 512u
/* Report progress every 1/PROGRESS_STEPS of the total. */
#define PROGRESS_STEPS 50u

enum slot_state {
	SLOT_FREE,
	SLOT_READ,
	SLOT_WRITE,
};

/* One buffer and the I/O that owns it.  A slot goes FREE -> READ (maybe
 * resubmitted for the rest of a short read) -> WRITE -> FREE, or READ ->
 * FREE when its block is all zero. */
struct slot {
	struct iocb iocb;
	uint8_t *buf;
	uint64_t off;  /* of the block, in source and destination alike */
	size_t len;    /* of the block */
	size_t got;    /* read so far */
	size_t woff;   /* the part of the block that is written */
	size_t wlen;
	enum slot_state state;
};

struct copier {
	const char *src_path;
	uint64_t length;
	size_t bs, grain;
	unsigned nslots;
	bool skip_zero;
	dmr_copy_progress_fn progress;
	void *userdata;

	int src_fd;          /* opened first, O_DIRECT if the source took it */
	int src_buf_fd;      /* buffered fallback, opened when needed */
	bool src_direct;     /* reads go to src_fd (else src_buf_fd) */
	int dst_fd;

	io_context_t ctx;
	uint8_t *mem;
	struct slot *slots;
	unsigned *free_idx;
	unsigned nfree;
	struct slot **pending; /* prepared but refused with EAGAIN */
	unsigned npending;
	struct io_event *events;
	unsigned inflight;
	bool reap_failed;

	uint64_t next;       /* offset of the next block to start */
	bool holes;          /* SEEK_DATA/SEEK_HOLE usable on the source */
	uint64_t data_end;   /* [next, data_end) is known to be data */
	uint64_t done;       /* settled bytes: written or skipped */
	uint64_t next_report, report_step;
	struct dmr_copy_stats st;
};

static size_t min_size(size_t a, uint64_t b)
{
	return b < a ? (size_t)b : a;
}

/* Zero test without a zero buffer: the first 16 bytes are zero and every
 * byte equals the one 16 before it. */
static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < 16 && i < n; i++)
		if (p[i])
			return false;
	return n <= 16 || memcmp(p, p + 16, n - 16) == 0;
}

static struct slot *slot_get(struct copier *c)
{
	struct slot *s = &c->slots[c->free_idx[--c->nfree]];

	s->got = s->woff = s->wlen = 0;
	return s;
}

static void slot_put(struct copier *c, struct slot *s)
{
	s->state = SLOT_FREE;
	c->free_idx[c->nfree++] = (unsigned)(s - c->slots);
}

static void settle(struct copier *c, uint64_t n)
{
	c->done += n;
}

static void skip(struct copier *c, uint64_t n)
{
	c->st.bytes_skipped += n;
	settle(c, n);
}

static int submit_now(struct copier *c, struct slot *s)
{
	struct iocb *p = &s->iocb;
	int r;

	do
		r = io_submit(c->ctx, 1, &p);
	while (r == -EINTR);
	if (r == 1) {
		c->inflight++;
		return 0;
	}
	/* libaio returns -errno; 0 would mean it took nothing. */
	return r < 0 ? r : -EAGAIN;
}

/* Submit a prepared slot.  A ring that is momentarily full (EAGAIN with
 * I/O in flight) parks the slot until a completion frees room. */
static int submit(struct copier *c, struct slot *s)
{
	int r;

	if (c->npending == 0) {
		r = submit_now(c, s);
		if (r != -EAGAIN || c->inflight == 0)
			return r;
	}
	c->pending[c->npending++] = s;
	return 0;
}

static int flush_pending(struct copier *c)
{
	while (c->npending > 0) {
		int r = submit_now(c, c->pending[0]);

		if (r == -EAGAIN && c->inflight > 0)
			return 0;
		if (r < 0) {
			/* Not in flight: the slots are ours to free. */
			for (unsigned i = 0; i < c->npending; i++)
				slot_put(c, c->pending[i]);
			c->npending = 0;
			return r;
		}
		memmove(c->pending, c->pending + 1, --c->npending * sizeof(*c->pending));
	}
	return 0;
}

static int src_read_fd(struct copier *c)
{
	return c->src_direct ? c->src_fd : c->src_buf_fd;
}

/* Some sources accept O_DIRECT at open and refuse it per I/O (9p, FUSE,
 * an odd tail on a 4K-sector device); reads go buffered from here on.
 * Reads already in flight on the direct fd finish there. */
static int src_go_buffered(struct copier *c)
{
	if (!c->src_direct)
		return -EINVAL;
	c->src_buf_fd = open(c->src_path, O_RDONLY | O_CLOEXEC);
	if (c->src_buf_fd < 0)
		return dmr_negerrno();
	(void)posix_fadvise(c->src_buf_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	c->src_direct = false;
	log_debug("copy: %s refused a direct read; reading buffered", c->src_path);
	return 0;
}

static int submit_read(struct copier *c, struct slot *s)
{
	s->state = SLOT_READ;
	io_prep_pread(&s->iocb, src_read_fd(c), s->buf + s->got, s->len - s->got,
		      (long long)(s->off + s->got));
	return submit(c, s);
}

/*
 * The next block to read, on the block-size grid, or *ret_len = 0 at the
 * end.  With hole skipping, blocks that lie wholly inside a hole of the
 * source are counted as skipped here and never read.
 */
static int next_block(struct copier *c, uint64_t *ret_off, size_t *ret_len)
{
	while (c->next < c->length) {
		uint64_t off = c->next, data, hole;
		size_t len = min_size(c->bs, c->length - off);

		if (c->holes && off >= c->data_end) {
			data = (uint64_t)lseek(c->src_fd, (off_t)off, SEEK_DATA);
			if (data == (uint64_t)-1) {
				if (errno == ENXIO) {
					data = c->length; /* only hole up to EOF */
				} else if (errno == EINVAL || errno == EOPNOTSUPP) {
					c->holes = false; /* read everything */
					data = off;
				} else {
					return dmr_negerrno();
				}
			}
			if (data >= off + len) {
				/* Whole blocks of hole: jump to the block
				 * holding the next data (off is on the grid,
				 * so this is past the current block). */
				uint64_t to = data >= c->length ? c->length : data - data % c->bs;

				skip(c, to - off);
				c->next = to;
				continue;
			}
			if (c->holes) {
				hole = (uint64_t)lseek(c->src_fd, (off_t)data, SEEK_HOLE);
				if (hole == (uint64_t)-1)
					return dmr_negerrno();
				c->data_end = hole;
			}
		}
		c->next = off + len;
		*ret_off = off;
		*ret_len = len;
		return 0;
	}
	*ret_len = 0;
	return 0;
}

static int fill(struct copier *c)
{
	int r;

	r = flush_pending(c);
	if (r < 0)
		return r;
	while (c->npending == 0 && c->nfree > 0) {
		struct slot *s;
		uint64_t off;
		size_t len;

		r = next_block(c, &off, &len);
		if (r < 0 || len == 0)
			return r;
		s = slot_get(c);
		s->off = off;
		s->len = len;
		r = submit_read(c, s);
		if (r < 0) {
			slot_put(c, s);
			return r;
		}
	}
	return 0;
}

/* Which part of a fully read block must be written: with skip_zero, the
 * span from the first to the last grain that is not all zero. */
static void write_span(struct copier *c, struct slot *s)
{
	size_t g = c->grain, first, end;

	if (!c->skip_zero) {
		s->woff = 0;
		s->wlen = s->len;
		return;
	}
	for (first = 0; first < s->len; first += g)
		if (!all_zero(s->buf + first, min_size(g, s->len - first)))
			break;
	if (first >= s->len) {
		s->woff = s->wlen = 0;
		return;
	}
	/* Grains start on multiples of g from the block start; the last one
	 * may be short (the tail).  first is non-zero, so this stops. */
	end = s->len;
	for (;;) {
		size_t start = ((end - 1) / g) * g;

		if (!all_zero(s->buf + start, end - start))
			break;
		end = start;
	}
	s->woff = first;
	s->wlen = end - first;
}

static int read_done(struct copier *c, struct slot *s, long res)
{
	int r;

	if (res == -EINVAL && c->src_direct) {
		r = src_go_buffered(c);
		return r < 0 ? r : submit_read(c, s);
	}
	if (res < 0)
		return (int)res;
	if (res == 0) {
		/* The source shrank under us. */
		log_debug("copy: %s ended at %" PRIu64 ", expected %" PRIu64, c->src_path,
			  s->off + s->got, c->length);
		return -EIO;
	}
	if ((size_t)res > s->len - s->got)
		return -EIO;
	s->got += (size_t)res;
	c->st.bytes_read += (uint64_t)res;
	if (s->got < s->len) {
		/* Short read: fetch the rest; a direct fd cannot continue at
		 * an unaligned offset. */
		if (c->src_direct && s->got % SECTOR) {
			r = src_go_buffered(c);
			if (r < 0)
				return r;
		}
		return submit_read(c, s);
	}

	write_span(c, s);
	if (s->wlen == 0) {
		skip(c, s->len);
		slot_put(c, s);
		return 0;
	}
	c->st.bytes_skipped += s->len - s->wlen;
	s->state = SLOT_WRITE;
	io_prep_pwrite(&s->iocb, c->dst_fd, s->buf + s->woff, s->wlen, (long long)(s->off + s->woff));
	return submit(c, s);
}

static int write_done(struct copier *c, struct slot *s, long res)
{
	if (res < 0)
		return (int)res;
	if ((size_t)res != s->wlen) {
		log_debug("copy: short write at %" PRIu64 ": %ld of %zu bytes", s->off + s->woff, res,
			  s->wlen);
		return -EIO;
	}
	c->st.bytes_written += s->wlen;
	settle(c, s->len);
	slot_put(c, s);
	return 0;
}

/* One completion.  While draining after an error (go_on false) the slot is
 * just taken back.  On error the slot is freed here: it is no longer in
 * flight. */
static int complete(struct copier *c, struct io_event *ev, bool go_on)
{
	struct slot *s = (struct slot *)(void *)((char *)ev->obj - offsetof(struct slot, iocb));
	/* The kernel's res is a signed long carried in an unsigned field. */
	long res = (long)ev->res;
	enum slot_state was = s->state;
	int r;

	c->inflight--;
	if (!go_on) {
		slot_put(c, s);
		return 0;
	}
	r = was == SLOT_READ ? read_done(c, s, res) : write_done(c, s, res);
	if (r < 0) {
		log_debug_errno(r, "copy: %s at %" PRIu64 " failed: %m",
				was == SLOT_READ ? "read" : "write", s->off);
		/* Every failing path leaves the slot neither in flight
		 * nor parked: it is ours again. */
		slot_put(c, s);
	}
	return r;
}

static int report(struct copier *c)
{
	int r;

	if (!c->progress || c->done >= c->length || c->done < c->next_report)
		return 0;
	r = c->progress(c->done, c->length, c->userdata);
	c->next_report = c->done + c->report_step;
	return r < 0 ? r : 0;
}

/*
 * The loop: keep the ring full, reap, repeat.  After the first error (or a
 * cancel) nothing new is submitted, but the loop goes on reaping until
 * nothing is in flight, so that every buffer is back before it returns.
 */
static int pump(struct copier *c)
{
	int err = 0;

	for (;;) {
		int n;

		if (!err)
			err = fill(c);
		if (!err)
			err = report(c);
		if (err && c->npending) {
			for (unsigned i = 0; i < c->npending; i++)
				slot_put(c, c->pending[i]);
			c->npending = 0;
		}
		if (c->inflight == 0)
			break;
		n = io_getevents(c->ctx, 1, c->nslots, c->events, NULL);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			/* Cannot learn which buffers are back: they must
			 * never be freed (see dmr_copy_run). */
			log_debug_errno(n, "copy: io_getevents failed with %u in flight: %m",
					c->inflight);
			c->reap_failed = true;
			return err ? err : n;
		}
		for (int i = 0; i < n; i++) {
			int r = complete(c, &c->events[i], err == 0);

			if (r < 0 && !err)
				err = r;
		}
	}
	return err;
}

static int open_src(struct copier *c, struct stat *st)
{
	uint64_t size;

	c->src_fd = open(c->src_path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	c->src_direct = c->src_fd >= 0;
	if (c->src_fd < 0 && errno == EINVAL) {
		log_debug("copy: %s refuses O_DIRECT; reading buffered", c->src_path);
		c->src_fd = open(c->src_path, O_RDONLY | O_CLOEXEC);
	}
	if (c->src_fd < 0)
		return dmr_negerrno();
	if (!c->src_direct) {
		c->src_buf_fd = c->src_fd;
		(void)posix_fadvise(c->src_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	if (fstat(c->src_fd, st) < 0)
		return dmr_negerrno();
	if (S_ISBLK(st->st_mode)) {
		if (ioctl(c->src_fd, BLKGETSIZE64, &size) < 0)
			return dmr_negerrno();
	} else if (S_ISREG(st->st_mode)) {
		size = (uint64_t)st->st_size;
	} else {
		return -EINVAL;
	}
	if (c->length > size) {
		log_debug("copy: %s has %" PRIu64 " bytes, fewer than %" PRIu64, c->src_path, size,
			  c->length);
		return -EINVAL;
	}
	c->holes = c->skip_zero && S_ISREG(st->st_mode);
	return 0;
}

static int open_dst(struct copier *c, const char *dst, const struct stat *src_st)
{
	struct stat st;
	uint64_t size;

	c->dst_fd = open(dst, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (c->dst_fd < 0)
		return dmr_negerrno();
	if (fstat(c->dst_fd, &st) < 0)
		return dmr_negerrno();
	if (S_ISBLK(st.st_mode)) {
		if (S_ISBLK(src_st->st_mode) && st.st_rdev == src_st->st_rdev)
			return -EINVAL;
		if (ioctl(c->dst_fd, BLKGETSIZE64, &size) < 0)
			return dmr_negerrno();
		if (size < c->length)
			return -ENOSPC;
	} else if (S_ISREG(st.st_mode)) {
		if (S_ISREG(src_st->st_mode) && st.st_dev == src_st->st_dev &&
		    st.st_ino == src_st->st_ino)
			return -EINVAL;
		/* Skipped blocks past the end must read as zeros too. */
		if ((uint64_t)st.st_size < c->length && ftruncate(c->dst_fd, (off_t)c->length) < 0)
			return dmr_negerrno();
	} else {
		return -EINVAL;
	}
	return 0;
}

static int setup_ring(struct copier *c)
{
	uint64_t blocks = (c->length + c->bs - 1) / c->bs;
	void *mem;
	int r;

	/* No more buffers than blocks: a small copy needs little memory. */
	if (blocks < c->nslots)
		c->nslots = blocks ? (unsigned)blocks : 1;
	r = posix_memalign(&mem, BUF_ALIGN, (size_t)c->nslots * c->bs);
	if (r)
		return -r;
	c->mem = mem;
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	c->free_idx = calloc(c->nslots, sizeof(*c->free_idx));
	c->pending = calloc(c->nslots, sizeof(*c->pending));
	c->events = calloc(c->nslots, sizeof(*c->events));
	if (!c->slots || !c->free_idx || !c->pending || !c->events)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nslots; i++) {
		c->slots[i].buf = c->mem + (size_t)i * c->bs;
		c->free_idx[i] = c->nslots - 1 - i;
	}
	c->nfree = c->nslots;
	r = io_setup((int)c->nslots, &c->ctx);
	if (r < 0) {
		c->ctx = 0;
		return r;
	}
	return 0;
}

static void copier_done(struct copier *c)
{
	if (c->ctx)
		(void)io_destroy(c->ctx);
	if (c->reap_failed && c->inflight > 0) {
		/* io_destroy waits for in-flight I/O on current kernels, but
		 * the kernel may still own these buffers on others: leaking
		 * them is the only safe choice in this can't-happen case. */
		log_debug("copy: leaking %zu bytes of I/O buffers still owned by the kernel",
			  (size_t)c->nslots * c->bs);
	} else {
		free(c->mem);
		free(c->slots);
	}
	free(c->free_idx);
	free(c->pending);
	free(c->events);
	if (c->src_buf_fd >= 0 && c->src_buf_fd != c->src_fd)
		close(c->src_buf_fd);
	if (c->src_fd >= 0)
		close(c->src_fd);
	if (c->dst_fd >= 0)
		close(c->dst_fd);
}

static int check_opts(const struct dmr_copy_opts *opts, unsigned *ret_depth, size_t *ret_bs)
{
	unsigned depth = opts && opts->queue_depth ? opts->queue_depth : DMR_COPY_QUEUE_DEPTH_DEFAULT;
	size_t bs = opts && opts->block_size ? opts->block_size : DMR_COPY_BLOCK_SIZE_DEFAULT;

	if (depth < DMR_COPY_QUEUE_DEPTH_MIN || depth > DMR_COPY_QUEUE_DEPTH_MAX)
		return -EINVAL;
	if (bs % BUF_ALIGN || bs > DMR_COPY_BLOCK_SIZE_MAX)
		return -EINVAL;
	*ret_depth = depth;
	*ret_bs = bs;
	return 0;
}

int dmr_copy_run(const char *src, const char *dst, uint64_t length,
		 const struct dmr_copy_opts *opts, dmr_copy_progress_fn progress,
		 void *userdata, struct dmr_copy_stats *ret_stats)
{
	struct copier c = {
		.src_path = src,
		.length = length,
		.skip_zero = opts && opts->skip_zero,
		.progress = progress,
		.userdata = userdata,
		.src_fd = -1,
		.src_buf_fd = -1,
		.dst_fd = -1,
	};
	struct stat src_st;
	uint64_t t0 = dmr_now_usec(), usec;
	int r;

	if (!src || !dst || length % SECTOR)
		return -EINVAL;
	r = check_opts(opts, &c.nslots, &c.bs);
	if (r < 0)
		return r;
	c.grain = c.bs < DMR_COPY_ZERO_GRAIN ? c.bs : DMR_COPY_ZERO_GRAIN;
	c.report_step = length / PROGRESS_STEPS ? length / PROGRESS_STEPS : 1;
	c.next_report = c.report_step;

	r = open_src(&c, &src_st);
	if (r >= 0)
		r = open_dst(&c, dst, &src_st);
	if (r >= 0)
		r = setup_ring(&c);
	if (r >= 0) {
		log_debug("copy: %s -> %s, %" PRIu64 " bytes, %u x %zu bytes in flight, source %s%s",
			  src, dst, length, c.nslots, c.bs, c.src_direct ? "direct" : "buffered",
			  c.skip_zero ? ", skipping zeros" : "");
		r = pump(&c);
	}
	if (r >= 0 && fdatasync(c.dst_fd) < 0)
		r = dmr_negerrno();
	copier_done(&c);
	if (r < 0) {
		log_debug_errno(r, "copy: %s -> %s failed: %m", src, dst);
		return r;
	}
	if (progress) {
		r = progress(length, length, userdata);
		if (r < 0)
			return r;
	}
	usec = dmr_now_usec() - t0;
	log_debug("copy: %s -> %s done: %" PRIu64 " read, %" PRIu64 " written, %" PRIu64
		  " skipped in %" PRIu64 " ms (%" PRIu64 " MiB/s)",
		  src, dst, c.st.bytes_read, c.st.bytes_written, c.st.bytes_skipped, usec / 1000,
		  usec ? (length >> 20) * 1000000 / usec : 0);
	if (ret_stats)
		*ret_stats = c.st;
	return 0;
}
