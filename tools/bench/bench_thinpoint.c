/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_thinpoint - the cost of making a point in a thin pool, for `make
 * bench` (tools/bench/points, in the lab): one thin snapshot of an active
 * volume, made as the agent makes one (snapshots/thin.c,
 * dmr_thin_snapshot_group with one disk): suspend the volume (flush, lockfs),
 * `create_snap NEW ORIGIN` and `set_transaction_id OLD OLD+1` to the pool,
 * resume (waiting for udev).  dmr_thin_snapshot_group itself only talks to
 * the pool named dmrep-pool; the bench's pool has its own name, so the same
 * steps are done here through dm/dm.h.
 *
 *   bench_thinpoint make  POOL THIN ORIGIN_ID FIRST_ID COUNT
 *       make COUNT points (ids FIRST_ID..) and keep them; prints
 *       `made=N first_us=N median_us=N last_median_us=N` (the median of
 *       the last min(5, N)).
 *   bench_thinpoint probe POOL THIN ORIGIN_ID ID REPS
 *       REPS times: make the point ID (timed), then delete it again (not
 *       timed), so that every rep sees the same number of snapshots;
 *       prints `reps=N median_us=N min_us=N`.
 *
 * POOL and THIN are dm names; ORIGIN_ID is the thin id live under THIN.
 * The pool's transaction id is read from its status and moved by one per
 * change.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "dm/dm.h"
#include "dm/status.h"
#include "dm/table.h"

#define LAST_K 5

static int pool_tid(const char *pool, uint64_t *ret_tid)
{
	_cleanup_table_ struct dmr_table *st = NULL;
	struct dmr_thin_pool_status ps;
	int r;

	r = dmr_dm_status(pool, &st);
	if (r < 0)
		return r;
	if (st->count != 1 || !dmr_streq(st->targets[0].type, "thin-pool"))
		return -EPROTO;
	r = dmr_status_parse_thin_pool(st->targets[0].params, &ps);
	if (r < 0)
		return r;
	if (ps.fail || ps.read_only || ps.out_of_data_space)
		return -EIO;
	*ret_tid = ps.transaction_id;
	return 0;
}

static int pool_msg(const char *pool, const char *fmt, ...) _printf_(2, 3);
static int pool_msg(const char *pool, const char *fmt, ...)
{
	char msg[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -EINVAL;
	return dmr_dm_message(pool, 0, msg, NULL);
}

/* One point: the steps of dmr_thin_snapshot_group for one volume, with
 * its rollback (delete the snapshot, keep the transaction id, resume). */
static int make_point(const char *pool, const char *thin, uint32_t origin, uint32_t id,
		      uint64_t *tid, uint64_t *ret_usec)
{
	uint64_t t0 = dmr_now_usec();
	int r, q;

	r = dmr_dm_suspend(thin, 0);
	if (r < 0)
		return r;
	r = pool_msg(pool, "create_snap %" PRIu32 " %" PRIu32, id, origin);
	if (r == 0) {
		r = pool_msg(pool, "set_transaction_id %" PRIu64 " %" PRIu64, *tid, *tid + 1);
		if (r < 0)
			(void)pool_msg(pool, "delete %" PRIu32, id);
		else
			(*tid)++;
	}
	q = dmr_dm_resume(thin);
	if (q < 0)
		q = dmr_dm_resume(thin);
	if (r == 0)
		r = q;
	*ret_usec = dmr_now_usec() - t0;
	return r;
}

static int drop_point(const char *pool, uint32_t id, uint64_t *tid)
{
	int r = pool_msg(pool, "delete %" PRIu32, id);

	if (r < 0)
		return r;
	r = pool_msg(pool, "set_transaction_id %" PRIu64 " %" PRIu64, *tid, *tid + 1);
	if (r == 0)
		(*tid)++;
	return r;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

static uint64_t median(const uint64_t *v, size_t n)
{
	uint64_t *c = malloc(n * sizeof(*c));
	uint64_t m;

	if (!c)
		return 0;
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_u64);
	m = c[(n - 1) / 2];
	free(c);
	return m;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *ret)
{
	uint64_t v;
	int r = dmr_parse_u64(s, &v);

	if (r < 0)
		return r;
	if (v > max)
		return -ERANGE;
	*ret = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_free_ uint64_t *times = NULL;
	const char *pool, *thin;
	uint32_t origin, id, count;
	uint64_t tid;
	bool probe;
	int r = 0;

	if (argc != 7 || (!dmr_streq(argv[1], "make") && !dmr_streq(argv[1], "probe")) ||
	    parse_u32(argv[4], DMR_THIN_DEV_ID_MAX, &origin) < 0 ||
	    parse_u32(argv[5], DMR_THIN_DEV_ID_MAX, &id) < 0 ||
	    parse_u32(argv[6], 100000, &count) < 0 || count == 0 ||
	    (uint64_t)id + count - 1 > DMR_THIN_DEV_ID_MAX) {
		fprintf(stderr, "usage: bench_thinpoint make POOL THIN ORIGIN_ID FIRST_ID COUNT\n"
				"       bench_thinpoint probe POOL THIN ORIGIN_ID ID REPS\n");
		return 2;
	}
	probe = dmr_streq(argv[1], "probe");
	pool = argv[2];
	thin = argv[3];
	times = calloc(count, sizeof(*times));
	if (!times)
		return 1;
	r = pool_tid(pool, &tid);
	if (r < 0) {
		fprintf(stderr, "bench_thinpoint: %s: %s\n", pool, strerror(-r));
		return 1;
	}
	for (uint32_t k = 0; k < count; k++) {
		uint32_t new_id = probe ? id : id + k;

		r = make_point(pool, thin, origin, new_id, &tid, &times[k]);
		if (r < 0) {
			fprintf(stderr, "bench_thinpoint: point %" PRIu32 " of %" PRIu32 ": %s\n",
				new_id, origin, strerror(-r));
			return 1;
		}
		if (probe) {
			r = drop_point(pool, new_id, &tid);
			if (r < 0) {
				fprintf(stderr, "bench_thinpoint: delete %" PRIu32 ": %s\n", new_id,
					strerror(-r));
				return 1;
			}
		}
	}
	if (probe) {
		uint64_t min = times[0];

		for (uint32_t k = 1; k < count; k++)
			if (times[k] < min)
				min = times[k];
		printf("reps=%" PRIu32 " median_us=%" PRIu64 " min_us=%" PRIu64 "\n", count,
		       median(times, count), min);
	} else {
		uint32_t k = count < LAST_K ? count : LAST_K;

		printf("made=%" PRIu32 " first_us=%" PRIu64 " median_us=%" PRIu64
		       " last_median_us=%" PRIu64 "\n",
		       count, times[0], median(times, count), median(times + count - k, k));
	}
	return 0;
}
