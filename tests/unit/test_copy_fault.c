/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the copier under injected faults.  Linked with
 * --wrap=io_getevents,io_submit (tests/unit/wrap.mk): the wrappers pass
 * through to libaio, count every iocb submitted and reaped, and can turn a
 * chosen completion into an error, a short transfer or -EINVAL, make
 * io_getevents return -EINTR, or io_submit -EAGAIN.  Every failing copy
 * must return the error with nothing left in flight (submitted == reaped);
 * the recoverable ones must still produce an exact copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libaio.h>

#include "snapshots/copy.h"
#include "tests/unit/copy_files.h"

int __real_io_submit(io_context_t ctx, long nr, struct iocb *ios[]);
int __real_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout);
int __wrap_io_submit(io_context_t ctx, long nr, struct iocb *ios[]);
int __wrap_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout);

enum fault_kind {
	FAULT_NONE,
	FAULT_RES,   /* res = fault_res */
	FAULT_SHORT, /* res -= fault_short_by */
};

static struct {
	unsigned submitted, reaped, max_inflight;
	unsigned submit_calls, eagain_at, eintr_left;
	unsigned seen[2]; /* completions by op: 0 read, 1 write */
	enum fault_kind kind;
	int fault_op;     /* IO_CMD_PREAD or IO_CMD_PWRITE */
	unsigned fault_nth;
	long fault_res;
	unsigned long fault_short_by;
	unsigned faults_done;
} w;

int __wrap_io_submit(io_context_t ctx, long nr, struct iocb *ios[])
{
	int r;

	w.submit_calls++;
	if (w.eagain_at && w.submit_calls == w.eagain_at)
		return -EAGAIN;
	r = __real_io_submit(ctx, nr, ios);
	if (r > 0) {
		w.submitted += (unsigned)r;
		if (w.submitted - w.reaped > w.max_inflight)
			w.max_inflight = w.submitted - w.reaped;
	}
	return r;
}

int __wrap_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout)
{
	int n;

	if (w.eintr_left) {
		w.eintr_left--;
		return -EINTR;
	}
	n = __real_io_getevents(ctx, min_nr, nr, events, timeout);
	for (int i = 0; i < n; i++) {
		int op = events[i].obj->aio_lio_opcode;
		unsigned k = op == IO_CMD_PWRITE;

		w.reaped++;
		w.seen[k]++;
		if (w.kind == FAULT_NONE || op != w.fault_op || w.seen[k] != w.fault_nth)
			continue;
		if (w.kind == FAULT_RES)
			events[i].res = (unsigned long)w.fault_res;
		else
			events[i].res -= w.fault_short_by;
		w.faults_done++;
	}
	return n;
}

struct fx {
	struct scratch s;
	char src[4200], dst[4200];
};

#define LEN (32 * MiB)

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int fd;

	if (!f)
		return -1;
	if (!scratch_make(&f->s, "copyfault")) {
		free(f);
		return -1;
	}
	scratch_path(&f->s, "src", f->src, sizeof(f->src));
	scratch_path(&f->s, "dst", f->dst, sizeof(f->dst));
	fd = file_make_sparse(f->src, LEN);
	if (fd < 0 || file_put_random(fd, 0, LEN, 42) < 0)
		return -1;
	close(fd);
	fd = file_make_sparse(f->dst, 0);
	if (fd < 0)
		return -1;
	close(fd);
	memset(&w, 0, sizeof(w));
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

static const struct dmr_copy_opts opts = { .queue_depth = 16, .block_size = MiB, .skip_zero = true };

static void inject(enum fault_kind kind, int op, unsigned nth, long res)
{
	w.kind = kind;
	w.fault_op = op;
	w.fault_nth = nth;
	if (kind == FAULT_RES)
		w.fault_res = res;
	else
		w.fault_short_by = (unsigned long)res;
}

static void assert_drained(void)
{
	assert_true(w.submitted > 0);
	assert_int_equal(w.submitted, w.reaped);
}

static void expect_failure(struct fx *f, int want)
{
	struct dmr_copy_stats st = { .bytes_written = 777 };

	assert_int_equal(dmr_copy_run(f->src, f->dst, LEN, &opts, NULL, NULL, &st), want);
	assert_int_equal(w.faults_done, 1);
	assert_drained();
	assert_int_equal(st.bytes_written, 777);
}

static void expect_exact_copy(struct fx *f)
{
	struct dmr_copy_stats st;

	assert_int_equal(dmr_copy_run(f->src, f->dst, LEN, &opts, NULL, NULL, &st), 0);
	assert_drained();
	assert_int_equal(files_diff(f->src, f->dst, LEN), -1);
	assert_int_equal(st.bytes_read, LEN);
	assert_int_equal(st.bytes_written, LEN);
}

static void test_write_error(void **state)
{
	inject(FAULT_RES, IO_CMD_PWRITE, 5, -EIO);
	expect_failure(*state, -EIO);
}

static void test_write_enospc(void **state)
{
	/* What a thin pool with error_if_no_space answers when full. */
	inject(FAULT_RES, IO_CMD_PWRITE, 9, -ENOSPC);
	expect_failure(*state, -ENOSPC);
}

static void test_short_write(void **state)
{
	inject(FAULT_SHORT, IO_CMD_PWRITE, 3, 512);
	expect_failure(*state, -EIO);
}

static void test_read_error(void **state)
{
	inject(FAULT_RES, IO_CMD_PREAD, 7, -EIO);
	expect_failure(*state, -EIO);
}

static void test_first_write_error(void **state)
{
	inject(FAULT_RES, IO_CMD_PWRITE, 1, -EROFS);
	expect_failure(*state, -EROFS);
}

static void test_read_einval_goes_buffered(void **state)
{
	/* A source that took O_DIRECT at open but refuses it per I/O. */
	inject(FAULT_RES, IO_CMD_PREAD, 2, -EINVAL);
	expect_exact_copy(*state);
	assert_int_equal(w.faults_done, 1);
}

static void test_short_read_aligned(void **state)
{
	inject(FAULT_SHORT, IO_CMD_PREAD, 4, 4096);
	expect_exact_copy(*state);
	assert_int_equal(w.faults_done, 1);
}

static void test_short_read_unaligned(void **state)
{
	inject(FAULT_SHORT, IO_CMD_PREAD, 4, 100);
	expect_exact_copy(*state);
	assert_int_equal(w.faults_done, 1);
}

static void test_eintr(void **state)
{
	w.eintr_left = 3;
	expect_exact_copy(*state);
	assert_int_equal(w.eintr_left, 0);
}

static void test_submit_eagain(void **state)
{
	/* Refused while others are in flight: parked and resubmitted. */
	w.eagain_at = 6;
	expect_exact_copy(*state);
	assert_true(w.submit_calls > w.submitted);
}

static void test_queue_depth(void **state)
{
	struct fx *f = *state;
	struct dmr_copy_opts o = { .queue_depth = 32, .block_size = MiB };

	assert_int_equal(dmr_copy_run(f->src, f->dst, LEN, &o, NULL, NULL, NULL), 0);
	assert_drained();
	print_message("max in flight: %u\n", w.max_inflight);
	assert_true(w.max_inflight >= 16);
	assert_true(w.max_inflight <= 32);
}

static int cancel_third(uint64_t done, uint64_t total, void *userdata)
{
	unsigned *calls = userdata;

	return ++*calls >= 3 ? -ECANCELED : 0;
}

static void test_cancel_drains(void **state)
{
	struct fx *f = *state;
	unsigned calls = 0;

	assert_int_equal(dmr_copy_run(f->src, f->dst, LEN, &opts, cancel_third, &calls, NULL),
			 -ECANCELED);
	assert_int_equal(calls, 3);
	assert_drained();
	assert_true(w.max_inflight >= 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_write_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_einval_goes_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read_aligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read_unaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_drains, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
