/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_delta - snapshots/delta.h and snapshots/xfer.h on a real pool: the
 * extents thin_dump / thin_delta report for known writes, a full and an
 * incremental send read with dmr_xfer_read and written with the xfer
 * writer into another volume (compared byte for byte with cmp), callers
 * serialised on the pool's one metadata snapshot, and a metadata snapshot
 * left held (reserved with dmsetup) released by dmr_delta_release_stale.
 *
 * Runs in the lab as root (tests/lab/t-03-delta.sh); prints TAP lines and
 * exits non-zero if a check failed.  Makes dmrep-pool (UUID DMREP-pool)
 * over sparse files in $LAB_SCRATCH/labdelta.PID and thin devices named
 * dmrtPID-*, all removed on every way out.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "dm/dm.h"
#include "dm/status.h"
#include "snapshots/delta.h"
#include "snapshots/loop.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"
#include "snapshots/xfer.h"
#include "lib/tap.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BB (64u * KiB)
/* 64 MiB and 50 KiB: the last pool block (1024) is partly on the disk. */
#define VOL_SECTORS (131072u + 100u)
#define VOL_BYTES ((uint64_t)VOL_SECTORS * 512u)
#define VOL_BLOCKS ((VOL_BYTES + BB - 1) / BB)

enum { VOL, SNAP_A, SNAP_B, RECV, BIG, BIG_RECV, NDEV };
static const char *const dev_tag[NDEV] = { "vol", "a", "b", "recv", "big", "bigrecv" };
static const uint32_t dev_id[NDEV] = { 1, 2, 3, 4, 5, 6 };
static uint64_t dev_sectors[NDEV] = { VOL_SECTORS, VOL_SECTORS, VOL_SECTORS, VOL_SECTORS };
static char dev_name[NDEV][64];
static char dev_path[NDEV][256];
static bool dev_up[NDEV];

static char work[512];
static struct dmr_pool *pool;
static uint64_t tid;

static void cleanup(void)
{
	char p[1024];

	for (int i = NDEV - 1; i >= 0; i--)
		if (dev_up[i]) {
			(void)dmr_dm_remove(dev_name[i], 5);
			dev_up[i] = false;
		}
	if (pool) {
		(void)dmr_pool_message(pool, "release_metadata_snap");
		(void)dmr_dm_remove(DMR_POOL_DM_NAME, 5);
		if (pool->data_is_loop)
			(void)dmr_loop_detach(pool->data_dev);
		if (pool->meta_is_loop)
			(void)dmr_loop_detach(pool->meta_dev);
		dmr_pool_free(pool);
		pool = NULL;
	}
	if (!work[0])
		return;
	snprintf(p, sizeof(p), "%s/data", work);
	unlink(p);
	snprintf(p, sizeof(p), "%s/meta", work);
	unlink(p);
	rmdir(work);
	work[0] = '\0';
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Run a program, its output to ours as comments' worth; exit status or -1. */
static int run(const char *const *argv)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		v = (x * 0x2545f4914f6cdd1dull) | 0x0101010101010101ull;
		memcpy(p + i, &v, 8);
	}
}

/* Write len bytes (random from seed, or zeros if seed is 0) at off of the
 * volume, O_DIRECT: one write is one bio. */
static int put_on(int dev, uint64_t off, size_t len, uint64_t seed)
{
	_cleanup_close_ int fd = open(dev_path[dev], O_WRONLY | O_DIRECT | O_CLOEXEC);
	void *b = NULL;
	int r = -1;

	if (fd < 0 || posix_memalign(&b, 4096, len))
		goto out;
	if (seed)
		fill_random(b, len, seed);
	else
		memset(b, 0, len);
	if (pwrite(fd, b, len, (off_t)off) == (ssize_t)len && fdatasync(fd) == 0)
		r = 0;
out:
	free(b);
	return r;
}

static int put(uint64_t off, size_t len, uint64_t seed)
{
	return put_on(VOL, off, len, seed);
}

static int discard(uint64_t off, uint64_t len)
{
	_cleanup_close_ int fd = open(dev_path[VOL], O_WRONLY | O_CLOEXEC);
	uint64_t range[2] = { off, len };

	return fd >= 0 && ioctl(fd, BLKDISCARD, range) == 0 ? 0 : -1;
}

static int activate(int i, bool ro)
{
	char uuid[128];
	int r;

	snprintf(uuid, sizeof(uuid), "DMREP-labtest-%d-%s", (int)getpid(), dev_tag[i]);
	r = dmr_thin_activate(pool, dev_name[i], uuid, dev_id[i], dev_sectors[i], ro);
	if (r == 0) {
		dev_up[i] = true;
		(void)dmr_dm_path(dev_name[i], dev_path[i], sizeof(dev_path[i]));
	}
	return r;
}

static int snapshot(int to)
{
	const char *names[1] = { dev_name[VOL] };
	uint32_t origin = dev_id[VOL], id = dev_id[to];
	int r = dmr_thin_snapshot_group(pool, 1, names, &origin, &id, tid, tid + 1, 0, NULL);

	if (r == 0)
		tid++;
	return r;
}

static bool held(void)
{
	struct dmr_thin_pool_status st;

	return dmr_pool_status(pool, &st) != 0 || st.has_held_root;
}

static uint64_t mapped_blocks(int i)
{
	_cleanup_free_ char *params = NULL;
	struct dmr_thin_status st;

	if (dmr_dm_target_status(dev_name[i], "thin", &params) < 0 ||
	    dmr_status_parse_thin(params, &st) < 0)
		return UINT64_MAX;
	return st.mapped_sectors / (BB / 512u);
}

static void show(const char *what, const struct dmr_extent *e, size_t n)
{
	char buf[1024];
	size_t k = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && k < sizeof(buf) - 64; i++)
		k += (size_t)snprintf(buf + k, sizeof(buf) - k, " %s%" PRIu64 "+%" PRIu64,
				      e[i].kind == DMR_EXTENT_DATA ? "" : "U", e[i].begin,
				      e[i].length);
	diag("%s:%s", what, buf);
}

static bool same_extents(const struct dmr_extent *e, size_t n, const struct dmr_extent *want,
			 size_t nw)
{
	if (n != nw)
		return false;
	for (size_t i = 0; i < n; i++)
		if (e[i].begin != want[i].begin || e[i].length != want[i].length ||
		    e[i].kind != want[i].kind)
			return false;
	return true;
}

static bool extents_are(uint32_t base, uint32_t id, const struct dmr_extent *want, size_t nw,
			const char *what)
{
	struct dmr_extent *e = NULL;
	size_t n = 0;
	int r = dmr_delta_extents(pool, base, id, VOL_BLOCKS, &e, &n);
	bool ok = r == 0 && same_extents(e, n, want, nw);

	if (r == 0)
		show(what, e, n);
	check(ok, "%s (%d)", what, r);
	check(!held(), "no metadata snapshot held after it");
	free(e);
	return ok;
}

/* The round trip's sink: what a receiver does with a stream. */
struct sink {
	struct dmr_xfer_writer *w;
	bool full;
	uint64_t data, zero_grains, unmapped;
};

static int to_writer(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct sink *s = userdata;

	if (buf) {
		s->data += len;
		return dmr_xfer_write(s->w, offset, buf, len);
	}
	if (zero)
		s->zero_grains += len;
	else
		s->unmapped += len;
	/* A full send skips zero grains: a new volume reads zeros there. */
	if (zero && s->full)
		return 0;
	return dmr_xfer_zero(s->w, offset, len);
}

static bool send_to(uint32_t base, int from, int to, const char *what, struct sink *s)
{
	struct dmr_extent *e = NULL;
	size_t n = 0;
	uint64_t t0 = dmr_now_usec(), usec;
	int r;

	uint64_t bytes = dev_sectors[from] * 512u, t1 = t0;

	r = dmr_delta_extents(pool, base, dev_id[from], (bytes + BB - 1) / BB, &e, &n);
	t1 = dmr_now_usec();
	if (r == 0)
		r = dmr_xfer_writer_open(dev_path[to], bytes, 0, &s->w);
	if (r == 0) {
		r = dmr_xfer_read(dev_path[from], e, n, BB, 0, true, to_writer, s);
		if (r == 0)
			r = dmr_xfer_writer_close(s->w);
		else
			dmr_xfer_writer_abort(s->w);
	}
	usec = dmr_now_usec() - t1;
	free(e);
	check(r == 0, "%s: %" PRIu64 " bytes of data, %" PRIu64 " of zero grains, %" PRIu64
	      " unmapped; extents in %" PRIu64 " ms, data in %" PRIu64 " ms (%" PRIu64
	      " MiB/s) (%d)", what, s->data, s->zero_grains, s->unmapped, (t1 - t0) / 1000,
	      usec / 1000, usec ? (s->data >> 20) * 1000000 / usec : 0, r);
	return r == 0;
}

static bool send(uint32_t base, int from, const char *what, struct sink *s)
{
	return send_to(base, from, RECV, what, s);
}

static bool devices_equal(int a, int b)
{
	const char *argv[] = { "cmp", dev_path[a], dev_path[b], NULL };

	return run(argv) == 0;
}

struct racer {
	int rc;
	unsigned bad;
};

static void *race(void *arg)
{
	struct racer *rc = arg;

	for (int k = 0; k < 3; k++) {
		struct dmr_extent *e = NULL;
		size_t n = 0;
		int r = dmr_delta_extents(pool, k % 2 ? dev_id[SNAP_A] : 0, dev_id[SNAP_B],
					  VOL_BLOCKS, &e, &n);

		if (r < 0 && !rc->rc)
			rc->rc = r;
		if (r == 0 && n == 0)
			rc->bad++;
		free(e);
	}
	return NULL;
}

int main(void)
{
	const char *scratch = getenv("LAB_SCRATCH");
	struct dmr_pool_spec spec = { 0 };
	char data[600], meta[600];
	uint32_t ids[2] = { dev_id[VOL], dev_id[RECV] };
	int r;

	for (int i = 0; i < NDEV; i++)
		snprintf(dev_name[i], sizeof(dev_name[i]), "dmrt%d-%s", (int)getpid(), dev_tag[i]);
	snprintf(work, sizeof(work), "%s/labdelta.%d", scratch && *scratch ? scratch : "/var/tmp",
		 (int)getpid());
	if (mkdir(work, 0700) < 0) {
		work[0] = '\0';
		check(false, "scratch directory");
		return 1;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);

	snprintf(data, sizeof(data), "%s/data", work);
	snprintf(meta, sizeof(meta), "%s/meta", work);
	spec.data_path = data;
	spec.meta_path = meta;
	spec.data_size = 256ull * MiB;
	spec.meta_size = 16ull * MiB;
	spec.block_sectors = DMR_POOL_BLOCK_SECTORS;
	spec.sparse = true;
	r = dmr_pool_create(&spec, false, &pool, NULL);
	check(r == 0, "a pool of 64 KiB blocks over sparse files (%d)", r);
	if (r < 0)
		return 1;
	check(dmr_delta_release_stale(pool) == 0 && !held(),
	      "release_stale with nothing held: 0, nothing held");

	r = dmr_thin_create_batch(pool, 2, ids, tid, tid + 1);
	if (r == 0) {
		tid++;
		r = activate(VOL, false);
	}
	if (r == 0)
		r = activate(RECV, false);
	check(r == 0, "two thin volumes of %" PRIu64 " blocks, the last one partial (%d)",
	      (uint64_t)VOL_BLOCKS, r);
	if (r < 0)
		return 1;

	/* ---- known blocks, snapshot A ---- */
	r = put(0, 10 * BB, 11);
	r = r ?: put(20 * BB, BB, 12);
	r = r ?: put(100 * BB, 4 * BB, 13);
	r = r ?: put(300 * BB, BB, 0);              /* written zeros: mapped */
	r = r ?: put(1024 * BB, 4096, 14);          /* in the partial block */
	r = r ?: snapshot(SNAP_A);
	r = r ?: activate(SNAP_A, true);
	check(r == 0, "blocks 0-9, 20, 100-103, 300 (zeros), 1024 (4 KiB) written; snapshot A");

	/* ---- changes, snapshot B ---- */
	r = put(5 * BB + 12 * KiB, 4096, 21);       /* 4 KiB: one pool block */
	r = r ?: put(7 * BB, BB, 0);                /* zeros over data */
	r = r ?: put(200 * BB, BB, 22);             /* new */
	r = r ?: discard(20 * BB, BB);
	r = r ?: discard(101 * BB, BB);
	r = r ?: snapshot(SNAP_B);
	r = r ?: activate(SNAP_B, true);
	check(r == 0, "4 KiB into block 5, zeros over 7, block 200 new, 20 and 101 discarded; "
		      "snapshot B");
	if (r < 0)
		return 1;

	/* ---- extents ---- */
	{
		static const struct dmr_extent full_a[] = {
			{ 0, 10, DMR_EXTENT_DATA }, { 20, 1, DMR_EXTENT_DATA },
			{ 100, 4, DMR_EXTENT_DATA }, { 300, 1, DMR_EXTENT_DATA },
			{ 1024, 1, DMR_EXTENT_DATA },
		};
		static const struct dmr_extent full_b[] = {
			{ 0, 10, DMR_EXTENT_DATA }, { 100, 1, DMR_EXTENT_DATA },
			{ 102, 2, DMR_EXTENT_DATA }, { 200, 1, DMR_EXTENT_DATA },
			{ 300, 1, DMR_EXTENT_DATA }, { 1024, 1, DMR_EXTENT_DATA },
		};
		static const struct dmr_extent a_to_b[] = {
			{ 5, 1, DMR_EXTENT_DATA }, { 7, 1, DMR_EXTENT_DATA },
			{ 20, 1, DMR_EXTENT_UNMAPPED }, { 101, 1, DMR_EXTENT_UNMAPPED },
			{ 200, 1, DMR_EXTENT_DATA },
		};
		static const struct dmr_extent b_to_a[] = {
			{ 5, 1, DMR_EXTENT_DATA }, { 7, 1, DMR_EXTENT_DATA },
			{ 20, 1, DMR_EXTENT_DATA }, { 101, 1, DMR_EXTENT_DATA },
			{ 200, 1, DMR_EXTENT_UNMAPPED },
		};
		struct dmr_extent *e = (void *)1;
		size_t n = 99;

		extents_are(0, dev_id[SNAP_A], full_a, DMR_ARRAY_SIZE(full_a), "full A");
		extents_are(0, dev_id[SNAP_B], full_b, DMR_ARRAY_SIZE(full_b), "full B");
		extents_are(dev_id[SNAP_A], dev_id[SNAP_B], a_to_b, DMR_ARRAY_SIZE(a_to_b),
			    "A to B: the 4 KiB write is exactly block 5; discards are unmapped");
		extents_are(dev_id[SNAP_B], dev_id[SNAP_A], b_to_a, DMR_ARRAY_SIZE(b_to_a),
			    "B to A: the other way round");
		extents_are(dev_id[SNAP_A], dev_id[VOL], a_to_b, DMR_ARRAY_SIZE(a_to_b),
			    "A to the live volume (a thin, not a snapshot)");
		extents_are(dev_id[SNAP_B], dev_id[VOL], NULL, 0, "B to the live volume: none");
		r = dmr_delta_extents(pool, 0, dev_id[SNAP_B], 1024, &e, &n);
		check(r == -EBADMSG && e == (void *)1 && n == 99,
		      "block 1024 mapped in a volume said to have 1024 blocks: -EBADMSG (%d)", r);
		check(!held(), "no metadata snapshot held after it");
		r = dmr_delta_extents(pool, 0, 99, VOL_BLOCKS, &e, &n);
		check(r == -ENOENT, "full of a thin id not in the pool: -ENOENT (%d)", r);
		r = dmr_delta_extents(pool, dev_id[SNAP_A], 99, VOL_BLOCKS, &e, &n);
		check(r == -ENOENT, "delta to a thin id not in the pool: -ENOENT (%d)", r);
		r = dmr_delta_extents(pool, 99, dev_id[SNAP_A], VOL_BLOCKS, &e, &n);
		check(r == -ENOENT, "delta from a thin id not in the pool: -ENOENT (%d)", r);
		check(!held(), "no metadata snapshot held after them");
	}

	/* ---- callers serialised on the one metadata snapshot ---- */
	{
		pthread_t th[4];
		struct racer rc[4] = { { 0 } };
		bool all = true;

		for (int i = 0; i < 4; i++)
			pthread_create(&th[i], NULL, race, &rc[i]);
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			all = all && rc[i].rc == 0 && rc[i].bad == 0;
		}
		check(all, "4 threads x 3 calls at once: all succeed (%d %d %d %d)", rc[0].rc,
		      rc[1].rc, rc[2].rc, rc[3].rc);
	}

	/* ---- round trip: full A, then A to B, into another volume ---- */
	{
		struct sink s = { .full = true };
		uint64_t m;

		if (send(0, SNAP_A, "full send of A into the receiver", &s)) {
			check(s.zero_grains == BB, "block 300 (zeros) is a zero grain: %" PRIu64,
			      s.zero_grains);
			check(s.data == 15 * (uint64_t)BB + (VOL_BYTES - 1024 * (uint64_t)BB),
			      "the partial block is cut at the disk's end");
			check(devices_equal(SNAP_A, RECV), "cmp: the receiver equals A");
			m = mapped_blocks(RECV);
			check(m == 16, "the receiver maps the 16 blocks of data, not the zeros: %" PRIu64,
			      m);
		}
		memset(&s, 0, sizeof(s));
		if (send(dev_id[SNAP_A], SNAP_B, "incremental A to B into the receiver", &s)) {
			check(s.data == 2 * (uint64_t)BB && s.zero_grains == BB &&
				      s.unmapped == 2 * (uint64_t)BB,
			      "blocks 5 and 200 data, 7 a zero grain, 20 and 101 unmapped");
			check(devices_equal(SNAP_B, RECV), "cmp: the receiver equals B");
			check(!devices_equal(SNAP_A, RECV), "and no longer A");
			/* B maps 16; the receiver has 7, 20 and 101 unmapped
			 * (zeroed by discarding) and 300 never written. */
			m = mapped_blocks(RECV);
			check(m == 14, "zero runs unmapped in the receiver: it maps %" PRIu64
			      " blocks, B %" PRIu64, m, mapped_blocks(SNAP_B));
		}
	}

	/* ---- a zero run with edges inside blocks ---- */
	{
		struct dmr_xfer_writer *w = NULL;
		uint64_t before = mapped_blocks(RECV), after;
		_cleanup_close_ int fd = -1;
		uint8_t *b = malloc(4 * BB);
		bool zeros = true, kept = true;

		r = dmr_xfer_writer_open(dev_path[RECV], VOL_BYTES, 0, &w);
		if (r == 0) {
			r = dmr_xfer_zero(w, 8 * KiB, 3 * BB - 16 * KiB);
			r = r ?: dmr_xfer_writer_close(w);
		}
		after = mapped_blocks(RECV);
		fd = open(dev_path[RECV], O_RDONLY | O_CLOEXEC);
		if (!b || fd < 0 || pread(fd, b, 4 * BB, 0) != (ssize_t)(4 * BB)) {
			zeros = kept = false;
		} else {
			for (uint64_t o = 8 * KiB; o < 3 * BB - 8 * KiB; o++)
				zeros = zeros && b[o] == 0;
			/* B's bytes around it: block 0's first 8 KiB, block 2's last. */
			kept = memchr(b, 0, 8) == NULL && memchr(b + 3 * BB - 8, 0, 8) == NULL;
		}
		free(b);
		check(r == 0 && zeros && kept && after == before - 1,
		      "zeroing 8 KiB into block 0 to 8 KiB before block 3: zeros there, the "
		      "edges kept, block 1 unmapped (%d, %" PRIu64 " -> %" PRIu64 " blocks)", r,
		      before, after);
	}

	/* ---- throughput: a volume full of data, sent whole ---- */
	{
		const char *env = getenv("LAB_DELTA_MB");
		uint64_t mb = env && *env ? strtoull(env, NULL, 10) : 64;
		uint32_t big[2] = { dev_id[BIG], dev_id[BIG_RECV] };
		struct sink s = { .full = true };
		uint64_t t0;

		dev_sectors[BIG] = dev_sectors[BIG_RECV] = mb * 2048u;
		r = dmr_thin_create_batch(pool, 2, big, tid, tid + 1);
		if (r == 0) {
			tid++;
			r = activate(BIG, false);
		}
		r = r ?: activate(BIG_RECV, false);
		t0 = dmr_now_usec();
		for (uint64_t i = 0; r == 0 && i < mb; i++)
			r = put_on(BIG, i * MiB, MiB, 100 + i);
		check(r == 0, "a %" PRIu64 " MiB volume written in %" PRIu64 " ms", mb,
		      (dmr_now_usec() - t0) / 1000);
		if (r == 0 && send_to(0, BIG, BIG_RECV, "full send of it", &s)) {
			check(s.data == mb * MiB, "all of it is data");
			bool eq;

			t0 = dmr_now_usec();
			eq = devices_equal(BIG, BIG_RECV);
			check(eq, "cmp: the copy is equal (%" PRIu64 " ms)", (dmr_now_usec() - t0) / 1000);
		}
	}

	/* ---- a metadata snapshot left held ---- */
	{
		const char *argv[] = { "dmsetup", "message", DMR_POOL_DM_NAME, "0",
				       "reserve_metadata_snap", NULL };
		struct dmr_extent *e = NULL;
		size_t n = 0;

		check(run(argv) == 0 && held(), "dmsetup reserves a metadata snapshot: held");
		r = dmr_delta_extents(pool, 0, dev_id[SNAP_A], VOL_BLOCKS, &e, &n);
		check(r == -EBUSY, "extents while someone else holds one: -EBUSY (%d)", r);
		check(held(), "and that one is left alone");
		r = dmr_delta_release_stale(pool);
		check(r == 0 && !held(), "release_stale releases it (%d)", r);
		r = dmr_delta_extents(pool, 0, dev_id[SNAP_A], VOL_BLOCKS, &e, &n);
		check(r == 0 && n == 5, "extents work again (%d, %zu extents)", r, n);
		free(e);
		check(!held(), "nothing held at the end");
	}

	cleanup();
	diag("%u passed, %u failed", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
