/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the libaio copier (snapshots/copy.h) on real files in a
 * scratch directory that takes O_DIRECT - plain and sparse sources, holes
 * and zero blocks skipped and counted, the destination kept sparse, odd
 * tails, progress, cancel, bad arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "snapshots/copy.h"
#include "tests/unit/copy_files.h"

struct fx {
	struct scratch s;
	char src[4200], dst[4200];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (!scratch_make(&f->s, "copy")) {
		free(f);
		return -1;
	}
	scratch_path(&f->s, "src", f->src, sizeof(f->src));
	scratch_path(&f->s, "dst", f->dst, sizeof(f->dst));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	scratch_remove(&f->s);
	free(f);
	return 0;
}

/* An empty destination file: the copier extends it to the length. */
static void make_empty_dst(struct fx *f)
{
	int fd = file_make_sparse(f->dst, 0);

	assert_true(fd >= 0);
	close(fd);
}

static void test_plain_random(void **state)
{
	struct fx *f = *state;
	const uint64_t len = 5 * MiB + 3 * 512;
	struct dmr_copy_opts o = { .queue_depth = 16, .block_size = MiB, .skip_zero = false };
	struct dmr_copy_stats st;
	int fd;

	fd = file_make_sparse(f->src, len);
	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, len, 1), 0);
	close(fd);
	make_empty_dst(f);

	assert_int_equal(dmr_copy_run(f->src, f->dst, len, &o, NULL, NULL, &st), 0);
	assert_int_equal(files_diff(f->src, f->dst, len), -1);
	assert_int_equal(st.bytes_read, len);
	assert_int_equal(st.bytes_written, len);
	assert_int_equal(st.bytes_skipped, 0);
}

/*
 * 20 MiB + 1.5 KiB, on 1 MiB blocks:
 *   block 0       random
 *   blocks 1-3    hole
 *   block 4       explicit zeros (allocated, read, not written)
 *   block 5       zeros but 4 KiB random at 128 KiB (one 64 KiB grain)
 *   blocks 6-15   hole
 *   block 16      hole but 4 KiB random at 100 KiB (grain 64-128 KiB)
 *   blocks 17-19  hole
 *   block 20      1.5 KiB random tail
 */
#define SPARSE_LEN (20 * MiB + 1536)
#define SPARSE_WRITTEN (MiB + 64 * KiB + 64 * KiB + 1536)
/* Holes the copier must skip without reading: blocks 1-3, 6-15, 17-19. */
#define SPARSE_HOLE_BYTES (16 * MiB)

static void make_sparse_src(struct fx *f)
{
	int fd = file_make_sparse(f->src, SPARSE_LEN);

	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, MiB, 2), 0);
	assert_int_equal(file_put_zeros(fd, 4 * MiB, MiB), 0);
	assert_int_equal(file_put_zeros(fd, 5 * MiB, MiB), 0);
	assert_int_equal(file_put_random(fd, 5 * MiB + 128 * KiB, 4 * KiB, 3), 0);
	assert_int_equal(file_put_random(fd, 16 * MiB + 100 * KiB, 4 * KiB, 4), 0);
	assert_int_equal(file_put_random(fd, 20 * MiB, 1536, 5), 0);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void test_sparse_skip_zero(void **state)
{
	struct fx *f = *state;
	struct dmr_copy_opts o = { .queue_depth = 32, .block_size = MiB, .skip_zero = true };
	struct dmr_copy_stats st;
	uint64_t alloc;

	make_sparse_src(f);
	make_empty_dst(f);
	assert_int_equal(dmr_copy_run(f->src, f->dst, SPARSE_LEN, &o, NULL, NULL, &st), 0);
	assert_int_equal(files_diff(f->src, f->dst, SPARSE_LEN), -1);

	assert_int_equal(st.bytes_written, SPARSE_WRITTEN);
	assert_int_equal(st.bytes_skipped, SPARSE_LEN - SPARSE_WRITTEN);
	assert_int_equal(st.bytes_written + st.bytes_skipped, SPARSE_LEN);
	/* Holes are never read; what is read is whole blocks with data. */
	assert_true(st.bytes_read <= SPARSE_LEN - SPARSE_HOLE_BYTES);
	assert_true(st.bytes_read >= 4 * MiB + 1536);

	/* The destination stays thin: allocated no more than written, plus
	 * the filesystem's rounding of the tail and its extent blocks. */
	alloc = file_alloc_bytes(f->dst);
	print_message("sparse: written %llu, dst allocated %llu\n",
		      (unsigned long long)st.bytes_written, (unsigned long long)alloc);
	assert_true(alloc <= SPARSE_WRITTEN + 64 * KiB);
	assert_true(alloc >= SPARSE_WRITTEN - 1536);
}

static void test_sparse_without_skip(void **state)
{
	struct fx *f = *state;
	struct dmr_copy_opts o = { .queue_depth = 16, .block_size = MiB, .skip_zero = false };
	struct dmr_copy_stats st;

	make_sparse_src(f);
	make_empty_dst(f);
	assert_int_equal(dmr_copy_run(f->src, f->dst, SPARSE_LEN, &o, NULL, NULL, &st), 0);
	assert_int_equal(files_diff(f->src, f->dst, SPARSE_LEN), -1);
	assert_int_equal(st.bytes_read, SPARSE_LEN);
	assert_int_equal(st.bytes_written, SPARSE_LEN);
	assert_int_equal(st.bytes_skipped, 0);
	/* Every byte was written, zeros included: fully allocated. */
	assert_true(file_alloc_bytes(f->dst) >= SPARSE_LEN);
}

/* skip_zero onto a destination that already holds data would be wrong
 * (the precondition says it reads zeros), but skip_zero=false must
 * overwrite stale data everywhere. */
static void test_overwrite_stale(void **state)
{
	struct fx *f = *state;
	const uint64_t len = 3 * MiB;
	struct dmr_copy_opts o = { .queue_depth = 16, .block_size = 256 * KiB };
	int fd;

	fd = file_make_sparse(f->src, len); /* all hole: reads zeros */
	assert_true(fd >= 0);
	close(fd);
	fd = file_make_sparse(f->dst, len);
	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, len, 6), 0);
	close(fd);
	assert_int_equal(dmr_copy_run(f->src, f->dst, len, &o, NULL, NULL, NULL), 0);
	assert_int_equal(files_diff(f->src, f->dst, len), -1);
}

static void test_odd_tails(void **state)
{
	struct fx *f = *state;
	static const uint64_t lens[] = {
		512, 4096 + 512, 64 * KiB - 512, 64 * KiB + 512, 3 * 64 * KiB - 512,
		17 * 64 * KiB + 7 * 512,
	};
	const uint64_t src_len = 2 * MiB;
	int fd;

	/* Data with zero stretches so the trim logic meets the tails too. */
	fd = file_make_sparse(f->src, src_len);
	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, 1000 * KiB, 7), 0);
	assert_int_equal(file_put_zeros(fd, 64 * KiB, 64 * KiB), 0);
	assert_int_equal(file_put_zeros(fd, 17 * 64 * KiB, 3 * 512), 0);
	close(fd);

	for (size_t i = 0; i < DMR_ARRAY_SIZE(lens); i++) {
		for (int skip = 0; skip < 2; skip++) {
			struct dmr_copy_opts o = { .queue_depth = 16, .block_size = 64 * KiB,
						   .skip_zero = skip };
			struct dmr_copy_stats st;

			make_empty_dst(f);
			assert_int_equal(dmr_copy_run(f->src, f->dst, lens[i], &o, NULL, NULL, &st), 0);
			assert_int_equal(files_diff(f->src, f->dst, lens[i]), -1);
			assert_int_equal(st.bytes_written + st.bytes_skipped, lens[i]);
			/* The copy covers length, not the source's size. */
			{
				struct stat sb;

				assert_int_equal(stat(f->dst, &sb), 0);
				assert_int_equal((uint64_t)sb.st_size, lens[i]);
			}
		}
	}
}

struct prog {
	uint64_t last, total;
	unsigned calls;
	bool monotonic;
	unsigned cancel_at; /* 0: never */
	int cancel_with;
};

static int on_progress(uint64_t done, uint64_t total, void *userdata)
{
	struct prog *p = userdata;

	if (done < p->last || done > total)
		p->monotonic = false;
	p->last = done;
	p->total = total;
	p->calls++;
	if (p->cancel_at && p->calls >= p->cancel_at)
		return p->cancel_with;
	return 0;
}

static void test_progress(void **state)
{
	struct fx *f = *state;
	const uint64_t len = 64 * MiB;
	struct dmr_copy_opts o = { .queue_depth = 32, .block_size = 256 * KiB, .skip_zero = true };
	struct prog p = { .monotonic = true };
	int fd;

	fd = file_make_sparse(f->src, len);
	assert_true(fd >= 0);
	for (uint64_t off = 0; off < len; off += 4 * MiB)
		assert_int_equal(file_put_random(fd, off, 512 * KiB, off), 0);
	close(fd);
	make_empty_dst(f);

	assert_int_equal(dmr_copy_run(f->src, f->dst, len, &o, on_progress, &p, NULL), 0);
	assert_true(p.monotonic);
	assert_int_equal(p.last, len);
	assert_int_equal(p.total, len);
	/* Every ~2% and once at the end: bounded, and more than once. */
	assert_true(p.calls >= 2);
	assert_true(p.calls <= 52);
	assert_int_equal(files_diff(f->src, f->dst, len), -1);
}

static void test_cancel(void **state)
{
	struct fx *f = *state;
	const uint64_t len = 48 * MiB;
	struct dmr_copy_opts o = { .queue_depth = 16, .block_size = MiB };
	struct prog p = { .monotonic = true, .cancel_at = 2, .cancel_with = -ECANCELED };
	struct dmr_copy_stats st = { .bytes_read = 12345 };
	long long d1, d2;
	int fd;

	fd = file_make_sparse(f->src, len);
	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, len, 8), 0);
	close(fd);
	make_empty_dst(f);

	assert_int_equal(dmr_copy_run(f->src, f->dst, len, &o, on_progress, &p, &st), -ECANCELED);
	assert_int_equal(p.calls, 2);
	assert_true(p.last < len);
	/* Untouched on failure. */
	assert_int_equal(st.bytes_read, 12345);
	/* Nothing lands after the return: the copy drained before it. */
	d1 = files_diff(f->src, f->dst, len);
	usleep(100 * 1000);
	d2 = files_diff(f->src, f->dst, len);
	assert_true(d1 >= 0);
	assert_int_equal(d1, d2);
}

static void test_cancel_at_end(void **state)
{
	struct fx *f = *state;
	const uint64_t len = MiB;
	struct prog p = { .monotonic = true, .cancel_at = 1, .cancel_with = -EINTR };
	int fd;

	fd = file_make_sparse(f->src, len);
	assert_true(fd >= 0);
	assert_int_equal(file_put_random(fd, 0, len, 9), 0);
	close(fd);
	make_empty_dst(f);
	/* One block: the only call is the final one, and it still cancels. */
	assert_int_equal(dmr_copy_run(f->src, f->dst, len, NULL, on_progress, &p, NULL), -EINTR);
	assert_int_equal(p.last, len);
}

static void test_zero_length(void **state)
{
	struct fx *f = *state;
	struct prog p = { .monotonic = true };
	struct dmr_copy_stats st;
	int fd;

	fd = file_make_sparse(f->src, 4096);
	assert_true(fd >= 0);
	close(fd);
	make_empty_dst(f);
	assert_int_equal(dmr_copy_run(f->src, f->dst, 0, NULL, on_progress, &p, &st), 0);
	assert_int_equal(st.bytes_read + st.bytes_written + st.bytes_skipped, 0);
	assert_int_equal(p.calls, 1);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct dmr_copy_opts o;
	char missing[4300];
	int fd;

	fd = file_make_sparse(f->src, MiB);
	assert_true(fd >= 0);
	close(fd);
	make_empty_dst(f);

	assert_int_equal(dmr_copy_run(f->src, f->dst, 1000, NULL, NULL, NULL, NULL), -EINVAL);
	o = (struct dmr_copy_opts){ .queue_depth = 8 };
	assert_int_equal(dmr_copy_run(f->src, f->dst, MiB, &o, NULL, NULL, NULL), -EINVAL);
	o = (struct dmr_copy_opts){ .block_size = 6000 };
	assert_int_equal(dmr_copy_run(f->src, f->dst, MiB, &o, NULL, NULL, NULL), -EINVAL);
	o = (struct dmr_copy_opts){ .block_size = 128 * MiB };
	assert_int_equal(dmr_copy_run(f->src, f->dst, MiB, &o, NULL, NULL, NULL), -EINVAL);
	/* Longer than the source. */
	assert_int_equal(dmr_copy_run(f->src, f->dst, 2 * MiB, NULL, NULL, NULL, NULL), -EINVAL);
	/* Onto itself. */
	assert_int_equal(dmr_copy_run(f->src, f->src, MiB, NULL, NULL, NULL, NULL), -EINVAL);
	snprintf(missing, sizeof(missing), "%s/missing", f->s.dir);
	assert_int_equal(dmr_copy_run(missing, f->dst, MiB, NULL, NULL, NULL, NULL), -ENOENT);
	assert_int_equal(dmr_copy_run(f->src, missing, MiB, NULL, NULL, NULL, NULL), -ENOENT);
	/* Neither block device nor regular file. */
	assert_int_equal(dmr_copy_run("/dev/zero", f->dst, MiB, NULL, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(dmr_copy_run(f->src, f->s.dir, MiB, NULL, NULL, NULL, NULL) < 0, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sparse_skip_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sparse_without_skip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overwrite_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_tails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_at_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
