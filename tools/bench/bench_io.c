/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_io - write throughput and latency of a block device, for `make
 * bench` (tools/bench/points, in the lab): what a guest's random writes
 * cost through a stable device with 0, 4 or 8 classic snapshots or 0, 100
 * or 1000 thin snapshots under it.
 *
 *   bench_io DEVICE SECONDS [QD]
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

struct slot {
	struct iocb iocb;
	void *buf;
	uint64_t t_submit; /* ns */
	bool busy;         /* submitted, not yet returned by io_getevents */
};

struct bench {
	int fd;
	io_context_t ctx;
	uint64_t nblocks;
	uint64_t rng;
	unsigned qd;
	struct slot *slots;
	unsigned inflight;
	uint64_t *lat; /* ns, of writes completed inside the window */
	size_t nlat, caplat;
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

static int record(struct bench *b, uint64_t ns)
{
	if (b->nlat == b->caplat) {
		size_t cap = b->caplat ? b->caplat * 2 : 65536;
		uint64_t *p = realloc(b->lat, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		b->lat = p;
		b->caplat = cap;
	}
	b->lat[b->nlat++] = ns;
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
			int r = record(b, t - s->t_submit);

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

static void report(struct bench *b, uint64_t seconds)
{
	double s = (double)seconds;
	uint64_t p50 = 0, p99 = 0;

	if (b->nlat > 0) {
		qsort(b->lat, b->nlat, sizeof(*b->lat), cmp_u64);
		p50 = b->lat[(b->nlat - 1) / 2];
		/* The smallest latency at or above 99 % of the writes. */
		p99 = b->lat[(b->nlat * 99 + 99) / 100 - 1];
	}
	printf("iops=%.0f mib_s=%.1f p50_us=%" PRIu64 " p99_us=%" PRIu64 " ops=%zu\n",
	       (double)b->nlat / s, (double)b->nlat * IO_SIZE / (1024.0 * 1024.0) / s,
	       (p50 + 500) / 1000, (p99 + 500) / 1000, b->nlat);
}

static int setup(struct bench *b, const char *path)
{
	uint64_t size = 0;
	int r;

	b->fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (b->fd < 0)
		return dmr_negerrno();
	r = device_size(b->fd, &size);
	if (r < 0)
		return r;
	b->nblocks = size / IO_SIZE;
	if (b->nblocks == 0)
		return -ENOSPC;
	b->slots = calloc(b->qd, sizeof(*b->slots));
	if (!b->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < b->qd; i++) {
		r = posix_memalign(&b->slots[i].buf, IO_SIZE, IO_SIZE);
		if (r != 0)
			return -r;
		/* Not zeros: nothing on the way may treat the data specially. */
		for (size_t k = 0; k < IO_SIZE / sizeof(uint64_t); k++)
			((uint64_t *)b->slots[i].buf)[k] = next_rand(&b->rng);
	}
	r = io_setup((int)b->qd, &b->ctx);
	if (r < 0) {
		b->ctx = 0;
		return r;
	}
	return 0;
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
	free(b->lat);
	if (b->fd >= 0)
		close(b->fd);
}

int main(int argc, char **argv)
{
	struct bench b = { .fd = -1, .rng = SEED, .qd = DEFAULT_QD };
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t seconds, qd = DEFAULT_QD;
	bool leak = false;
	int r, q;

	if (argc < 3 || argc > 4 || dmr_parse_u64(argv[2], &seconds) < 0 || seconds == 0 ||
	    seconds > 86400 ||
	    (argc == 4 && (dmr_parse_u64(argv[3], &qd) < 0 || qd == 0 || qd > MAX_QD))) {
		fprintf(stderr, "usage: bench_io DEVICE SECONDS [QD]   (QD 1..%u, default %u)\n",
			MAX_QD, DEFAULT_QD);
		return 2;
	}
	b.qd = (unsigned)qd;
	/* No SA_RESTART: io_getevents returns EINTR and the loop stops. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	r = setup(&b, argv[1]);
	if (r < 0) {
		fprintf(stderr, "bench_io: %s: %s\n", argv[1], strerror(-r));
		teardown(&b, false);
		return 1;
	}
	r = run(&b, seconds);
	q = drain(&b, &leak);
	if (q < 0 && r == 0) {
		fprintf(stderr, "bench_io: write failed: %s\n", strerror(-q));
		r = q;
	}
	if (r == 0)
		report(&b, seconds);
	teardown(&b, leak);
	return r < 0 ? 1 : 0;
}
