/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_io - write throughput and latency of a block device, for `make
 * bench` (tools/bench/points, in the lab): what a guest's random writes
 * cost through a stable device with 0, 4 or 8 classic snapshots or 0, 100
 * or 1000 thin snapshots under it; and (tools/bench/run) what one more
 * device layer costs, two devices measured in alternation.
 *
 *   bench_io DEVICE SECONDS [QD]
 *   bench_io --alternate DEVICE_A DEVICE_B ROUNDS [QD]
 *
 * libaio, O_DIRECT, 4 KiB writes at random 4 KiB-aligned offsets over the
 * whole device, QD (default 32) always in flight.  The offsets come from a
 * fixed-seed PRNG, so every run writes the same sequence of blocks.  After
 * a warm-up of WARMUP_USEC, counts for SECONDS every write that completes
 * (latency = submit to completion, CLOCK_MONOTONIC), then stops submitting
 * and waits for every write still in flight (a buffer belongs to the kernel
 * until io_getevents hands its iocb back; io_cancel is not used: for block
 * devices it does nothing).  Prints one line:
 *
 *   iops=N mib_s=N.N p50_us=N p99_us=N ops=N
 *
 * --alternate: the same writes, but the submitting switches between the two
 * devices every SLICE_USEC (both over the same blocks, e.g. a device and a
 * linear layer over it): a round is four slices, A B A B, or B A B A in
 * every other round.  A slice ends by waiting for its writes in flight, so
 * each device's time is its slices' time, drains included, for both alike.
 * Slicing this fine puts both devices under the same machine: on a shared
 * host (TCG, other guests) the load drifts by tens of percent over seconds,
 * which separate runs of each would measure instead of the devices.  After
 * one uncounted round of warm-up, prints one line per round, then the
 * totals:
 *
 *   round=K a_iops=N a_p99_us=N b_iops=N b_p99_us=N
 *   a_iops=N a_p50_us=N a_p99_us=N b_iops=N b_p50_us=N b_p99_us=N rounds=N
 *
 * Any failed or short write, or a failed io_getevents, ends the run with an
 * error on stderr and exit status 1 (after the drain).  THIS WRITES OVER
 * THE DEVICE'S DATA.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libaio.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include "common/util.h"

#define IO_SIZE 4096u
#define DEFAULT_QD 32u
#define MAX_QD 1024u
#define WARMUP_USEC 1000000u
/* io_getevents wakes at least this often to check the clock and signals. */
#define POLL_NSEC 100000000L
#define SEED 0x9e3779b97f4a7c15ull
#define SLICE_USEC 250000u
#define SLICES_PER_ROUND 4

struct slot {
	struct iocb iocb;
	void *buf;
	uint64_t t_submit; /* ns */
	int dev;           /* which device it was written to */
	bool busy;         /* submitted, not yet returned by io_getevents */
};

struct lat {
	uint64_t *v; /* ns */
	size_t n, cap;
};

struct bench {
	int fd;       /* the device being written now */
	int fds[2];
	int dev;      /* index of fd in fds */
	io_context_t ctx;
	uint64_t nblocks;
	uint64_t rng;
	unsigned qd;
	struct slot *slots;
	unsigned inflight;
	struct lat lat[2]; /* of writes completed inside the window, per device */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: fast, and the same sequence on every run. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static int device_size(int fd, uint64_t *ret_bytes)
{
	struct stat st;
	uint64_t size = 0;

	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			return dmr_negerrno();
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		return -ENOTBLK;
	}
	*ret_bytes = size;
	return 0;
}

static int record(struct lat *l, uint64_t ns)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		uint64_t *p = realloc(l->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = ns;
	return 0;
}

/* Submit every free slot, each to a new random block.  io_submit may take
 * fewer than asked (or refuse with EAGAIN while the ring is full): the rest
 * stay free and go with the next call.  Refused with nothing in flight is
 * an error (nothing would ever free room). */
static int submit_free(struct bench *b)
{
	struct iocb *batch[MAX_QD];
	struct slot *which[MAX_QD];
	unsigned n = 0;
	uint64_t t;
	int r;

	for (unsigned i = 0; i < b->qd; i++) {
		struct slot *s = &b->slots[i];
		uint64_t blk;

		if (s->busy)
			continue;
		blk = next_rand(&b->rng) % b->nblocks;
		io_prep_pwrite(&s->iocb, b->fd, s->buf, IO_SIZE, (long long)(blk * IO_SIZE));
		s->iocb.data = s;
		s->dev = b->dev;
		batch[n] = &s->iocb;
		which[n] = s;
		n++;
	}
	if (n == 0)
		return 0;
	t = now_ns();
	do
		r = io_submit(b->ctx, n, batch);
	while (r == -EINTR);
	if (r == -EAGAIN)
		r = 0;
	if (r < 0)
		return r; /* libaio returns -errno; none of the batch is in flight */
	if (r == 0 && b->inflight == 0)
		return -EAGAIN;
	for (int i = 0; i < r; i++) {
		which[i]->t_submit = t;
		which[i]->busy = true;
	}
	b->inflight += (unsigned)r;
	return 0;
}

/*
 * Reap completions (waiting at most POLL_NSEC, or for good with wait_all).
 * Each returned iocb gives its slot back.  A write that failed (res < 0)
 * or wrote less than IO_SIZE makes the result negative; the slot is still
 * returned.  Completions at or after measuring_from and before until are
 * counted.  Returns the number reaped or a negative errno.
 */
static int reap(struct bench *b, uint64_t measure_from, uint64_t until, int *io_err)
{
	struct io_event ev[MAX_QD];
	struct timespec ts = { .tv_sec = 0, .tv_nsec = POLL_NSEC };
	uint64_t t;
	int n;

	n = io_getevents(b->ctx, 1, b->inflight, ev, &ts);
	if (n == -EINTR)
		return 0;
	if (n < 0)
		return n;
	t = now_ns();
	for (int i = 0; i < n; i++) {
		struct slot *s = ev[i].data;
		long res = (long)ev[i].res;

		if (!s || s < b->slots || s >= b->slots + b->qd || !s->busy)
			return -EPROTO; /* not ours: cannot happen */
		s->busy = false;
		b->inflight--;
		if (res < 0) {
			if (*io_err == 0)
				*io_err = (int)res;
			continue;
		}
		if ((unsigned long)res != IO_SIZE) {
			if (*io_err == 0)
				*io_err = -EIO; /* short write */
			continue;
		}
		if (t >= measure_from && t < until) {
			int r = record(&b->lat[s->dev], t - s->t_submit);

			if (r < 0 && *io_err == 0)
				*io_err = r;
		}
	}
	return n;
}

/* Wait for every write still in flight.  If io_getevents itself fails, the
 * buffers cannot be known free: io_destroy waits for the kernel to finish
 * with them, and they are never freed (*ret_leak). */
static int drain(struct bench *b, bool *ret_leak)
{
	int io_err = 0;

	while (b->inflight > 0) {
		int n = reap(b, UINT64_MAX, 0, &io_err);

		if (n < 0) {
			fprintf(stderr, "bench_io: io_getevents while draining: %s\n", strerror(-n));
			*ret_leak = true;
			return n;
		}
	}
	return io_err;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;

	return a < c ? -1 : a > c;
}

static int run(struct bench *b, uint64_t seconds)
{
	uint64_t t0 = now_ns();
	uint64_t from = t0 + (uint64_t)WARMUP_USEC * 1000u;
	uint64_t until = from + seconds * 1000000000u;
	int io_err = 0, r;

	r = submit_free(b);
	while (r == 0) {
		int n;

		if (interrupted) {
			r = -EINTR;
			break;
		}
		n = reap(b, from, until, &io_err);
		if (n < 0) {
			r = n;
			break;
		}
		if (io_err < 0 || now_ns() >= until)
			break;
		r = submit_free(b);
	}
	if (r < 0)
		fprintf(stderr, "bench_io: %s\n", strerror(-r));
	else if (io_err < 0)
		fprintf(stderr, "bench_io: write failed: %s\n", strerror(-io_err));
	return r < 0 ? r : io_err;
}

/* The smallest latency at or above 99 % (50 %) of v[0..n), sorted in place. */
static uint64_t pct(uint64_t *v, size_t n, unsigned p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(n * p + 99) / 100 - 1];
}

static void report(struct bench *b, uint64_t seconds)
{
	struct lat *l = &b->lat[0];
	double s = (double)seconds;
	uint64_t p50 = 0, p99 = 0;

	if (l->n > 0) {
		qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
		p50 = l->v[(l->n - 1) / 2];
		/* The smallest latency at or above 99 % of the writes. */
		p99 = l->v[(l->n * 99 + 99) / 100 - 1];
	}
	printf("iops=%.0f mib_s=%.1f p50_us=%" PRIu64 " p99_us=%" PRIu64 " ops=%zu\n",
	       (double)l->n / s, (double)l->n * IO_SIZE / (1024.0 * 1024.0) / s,
	       (p50 + 500) / 1000, (p99 + 500) / 1000, l->n);
}

/*
 * One slice on device dev: writes for SLICE_USEC, then a wait for those
 * still in flight.  Completions count (count) from the slice's start to the
 * drain's end, which is also the time added to *busy_ns.  An io_getevents
 * failure sets *ret_leak (see drain).
 */
static int slice(struct bench *b, int dev, bool count, uint64_t *busy_ns, bool *ret_leak)
{
	uint64_t t0 = now_ns(), until = t0 + (uint64_t)SLICE_USEC * 1000u;
	uint64_t from = count ? t0 : UINT64_MAX;
	int io_err = 0, r;

	b->dev = dev;
	b->fd = b->fds[dev];
	r = submit_free(b);
	while (r == 0 && io_err == 0 && now_ns() < until) {
		int n;

		if (interrupted) {
			r = -EINTR;
			break;
		}
		n = reap(b, from, UINT64_MAX, &io_err);
		if (n < 0) {
			r = n;
			break;
		}
		r = submit_free(b);
	}
	while (b->inflight > 0) {
		int n = reap(b, from, UINT64_MAX, &io_err);

		if (n < 0) {
			*ret_leak = true;
			if (r == 0)
				r = n;
			break;
		}
	}
	*busy_ns += now_ns() - t0;
	if (r < 0)
		fprintf(stderr, "bench_io: %s\n", strerror(-r));
	else if (io_err < 0)
		fprintf(stderr, "bench_io: write failed: %s\n", strerror(-io_err));
	return r < 0 ? r : io_err;
}

static int alternate(struct bench *b, uint64_t rounds, bool *ret_leak)
{
	uint64_t busy[2] = { 0, 0 };
	uint64_t *tmp = NULL;
	size_t ntmp = 0;
	int r = 0;

	/* Round 0 is the warm-up. */
	for (uint64_t k = 0; k <= rounds && r == 0; k++) {
		uint64_t rb[2] = { 0, 0 };
		size_t start[2] = { b->lat[0].n, b->lat[1].n };
		uint64_t p99[2];

		for (int i = 0; i < SLICES_PER_ROUND && r == 0; i++)
			r = slice(b, (int)((i + k) % 2), k > 0, &rb[(i + k) % 2], ret_leak);
		if (r < 0 || k == 0)
			continue;
		for (int d = 0; d < 2; d++) {
			size_t n = b->lat[d].n - start[d];

			if (n > ntmp) {
				uint64_t *p = realloc(tmp, n * sizeof(*p));

				if (!p) {
					r = -ENOMEM;
					break;
				}
				tmp = p;
				ntmp = n;
			}
			memcpy(tmp, b->lat[d].v + start[d], n * sizeof(*tmp));
			p99[d] = pct(tmp, n, 99);
			busy[d] += rb[d];
		}
		if (r < 0)
			break;
		printf("round=%" PRIu64 " a_iops=%.0f a_p99_us=%" PRIu64 " b_iops=%.0f b_p99_us=%" PRIu64 "\n",
		       k, (double)(b->lat[0].n - start[0]) * 1e9 / (double)rb[0], (p99[0] + 500) / 1000,
		       (double)(b->lat[1].n - start[1]) * 1e9 / (double)rb[1], (p99[1] + 500) / 1000);
	}
	free(tmp);
	if (r < 0)
		return r;
	{
		size_t na = b->lat[0].n, nb = b->lat[1].n;
		uint64_t a50 = pct(b->lat[0].v, na, 50), a99 = pct(b->lat[0].v, na, 99);
		uint64_t b50 = pct(b->lat[1].v, nb, 50), b99 = pct(b->lat[1].v, nb, 99);

		printf("a_iops=%.0f a_p50_us=%" PRIu64 " a_p99_us=%" PRIu64 " b_iops=%.0f b_p50_us=%" PRIu64
		       " b_p99_us=%" PRIu64 " rounds=%" PRIu64 "\n",
		       (double)na * 1e9 / (double)busy[0], (a50 + 500) / 1000, (a99 + 500) / 1000,
		       (double)nb * 1e9 / (double)busy[1], (b50 + 500) / 1000, (b99 + 500) / 1000, rounds);
	}
	return 0;
}

static int open_dev(const char *path, int *ret_fd, uint64_t *ret_blocks)
{
	uint64_t size = 0;
	int fd, r;

	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return dmr_negerrno();
	r = device_size(fd, &size);
	if (r == 0 && size / IO_SIZE == 0)
		r = -ENOSPC;
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	*ret_blocks = size / IO_SIZE;
	return 0;
}

/* paths[0..npaths): the devices, written over their common size. */
static int setup(struct bench *b, const char *const *paths, int npaths)
{
	int r;

	for (int d = 0; d < npaths; d++) {
		uint64_t blocks;

		r = open_dev(paths[d], &b->fds[d], &blocks);
		if (r < 0) {
			fprintf(stderr, "bench_io: %s: %s\n", paths[d], strerror(-r));
			return r;
		}
		if (d == 0 || blocks < b->nblocks)
			b->nblocks = blocks;
	}
	b->dev = 0;
	b->fd = b->fds[0];
	b->slots = calloc(b->qd, sizeof(*b->slots));
	if (!b->slots) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < b->qd; i++) {
		r = -posix_memalign(&b->slots[i].buf, IO_SIZE, IO_SIZE);
		if (r < 0)
			goto fail;
		/* Not zeros: nothing on the way may treat the data specially. */
		for (size_t k = 0; k < IO_SIZE / sizeof(uint64_t); k++)
			((uint64_t *)b->slots[i].buf)[k] = next_rand(&b->rng);
	}
	r = io_setup((int)b->qd, &b->ctx);
	if (r < 0) {
		b->ctx = 0;
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "bench_io: setup: %s\n", strerror(-r));
	return r;
}

static void teardown(struct bench *b, bool leak)
{
	if (b->ctx)
		io_destroy(b->ctx); /* waits for anything still in flight */
	if (b->slots && !leak)
		for (unsigned i = 0; i < b->qd; i++)
			free(b->slots[i].buf);
	if (!leak)
		free(b->slots);
	for (int d = 0; d < 2; d++) {
		free(b->lat[d].v);
		if (b->fds[d] >= 0)
			close(b->fds[d]);
	}
}

static int usage(void)
{
	fprintf(stderr,
		"usage: bench_io DEVICE SECONDS [QD]\n"
		"       bench_io --alternate DEVICE_A DEVICE_B ROUNDS [QD]   (QD 1..%u, default %u)\n",
		MAX_QD, DEFAULT_QD);
	return 2;
}

int main(int argc, char **argv)
{
	struct bench b = { .fd = -1, .fds = { -1, -1 }, .rng = SEED, .qd = DEFAULT_QD };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t count, qd = DEFAULT_QD;
	bool alt = argc > 1 && !strcmp(argv[1], "--alternate");
	int first = alt ? 2 : 1, ndev = alt ? 2 : 1;
	bool leak = false;
	int r, q;

	if (argc < first + ndev + 1 || argc > first + ndev + 2 ||
	    dmr_parse_u64(argv[first + ndev], &count) < 0 || count == 0 || count > 86400 ||
	    (argc == first + ndev + 2 &&
	     (dmr_parse_u64(argv[first + ndev + 1], &qd) < 0 || qd == 0 || qd > MAX_QD)))
		return usage();
	b.qd = (unsigned)qd;
	/* No SA_RESTART: io_getevents returns EINTR and the loop stops. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	r = setup(&b, (const char *const *)argv + first, ndev);
	if (r < 0) {
		teardown(&b, false);
		return 1;
	}
	if (alt) {
		r = alternate(&b, count, &leak);
	} else {
		r = run(&b, count);
		q = drain(&b, &leak);
		if (q < 0 && r == 0) {
			fprintf(stderr, "bench_io: write failed: %s\n", strerror(-q));
			r = q;
		}
		if (r == 0)
			report(&b, count);
	}
	teardown(&b, leak);
	return r < 0 ? 1 : 0;
}
