/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: point send (agent/engine/send.c, agent/rpc/ops_replica.c,
 * the thin backend's point_extents / point_read_up / point_read_down) over
 * a faked pool, delta tool and data path (dmr_delta_extents, dmr_xfer_read,
 * dmr_thin_activate, dmr_dm_info, dmr_dm_remove_group):
 *  - a full send: the header (VM, uuids, disks, block size, data bytes),
 *    DATA records of the mapped blocks only, zero grains not sent; an
 *    incremental: zero grains inside changed blocks as ZERO records,
 *    blocks mapped in the base only as UNMAP; the stream reads back whole
 *    with the stream reader; the point's volumes up read-only during the
 *    send and down after; the job's results;
 *  - a reader that went away (EPIPE) and an agent that stops: the job
 *    fails with 32768 and says why, no device left up;
 *  - what to send: the latest valid point, a base that is not older or not
 *    there, a classic VM (32770's why), a busy VM;
 *  - the handlers' refusals: not root (32769), parameters (32776, 32773),
 *    no descriptor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/agent.h"
#include "agent/engine/job.h"
#include "agent/engine/replica.h"
#include "agent/rpc/handlers.h"
#include "agent/store/registry.h"
#include "common/rc.h"
#include "common/stream.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/delta.h"
#include "snapshots/pool.h"
#include "snapshots/xfer.h"
#include "tests/unit/bare_registry.h"
#include "tests/unit/vm_points.h"

#define BB 65536u

/* ---- fakes ------------------------------------------------------------ */

int __wrap_dmr_delta_extents(const struct dmr_pool *pool, uint32_t base_id, uint32_t id,
			     uint64_t max_blocks, struct dmr_extent **ret_ext, size_t *ret_n);
int __wrap_dmr_delta_release_stale(const struct dmr_pool *pool);
int __wrap_dmr_xfer_read(const char *dev, const struct dmr_extent *ext, size_t n,
			 uint64_t block_bytes, unsigned queue_depth, bool skip_zero,
			 dmr_xfer_chunk_fn fn, void *userdata);
int __wrap_dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
			     uint32_t id, uint64_t sectors, bool read_only);
int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret);
int __wrap_dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries);

/* The extents each volume id has (against a base or not). */
struct fake_ext {
	uint32_t base, id;
	struct dmr_extent ext[4];
	size_t n;
};
static struct fake_ext fakes[8];
static size_t n_fakes;
static int delta_calls, release_calls;
static uint64_t delta_max_blocks;
/* Block index (from the volume's start) that reads as an all-zero grain. */
static int64_t zero_block = -1;

/* The devices up (name, uuid, read-only), as dmr_dm_info answers. */
static char up[8][DMR_DM_NAME_SIZE], up_uuid[8][DMR_DM_UUID_SIZE];
static bool up_ro[8];
static size_t n_up;
static int activations, ro_activations;
static char read_dev[DMR_DM_PATH_SIZE];

int __wrap_dmr_delta_extents(const struct dmr_pool *pool, uint32_t base_id, uint32_t id,
			     uint64_t max_blocks, struct dmr_extent **ret_ext, size_t *ret_n)
{
	delta_calls++;
	delta_max_blocks = max_blocks;
	for (size_t i = 0; i < n_fakes; i++)
		if (fakes[i].id == id && fakes[i].base == base_id) {
			*ret_ext = NULL;
			*ret_n = fakes[i].n;
			if (fakes[i].n) {
				*ret_ext = malloc(fakes[i].n * sizeof(**ret_ext));
				memcpy(*ret_ext, fakes[i].ext, fakes[i].n * sizeof(**ret_ext));
			}
			return 0;
		}
	return -ENOENT;
}

int __wrap_dmr_delta_release_stale(const struct dmr_pool *pool)
{
	release_calls++;
	return 0;
}

int __wrap_dmr_xfer_read(const char *dev, const struct dmr_extent *ext, size_t n,
			 uint64_t block_bytes, unsigned queue_depth, bool skip_zero,
			 dmr_xfer_chunk_fn fn, void *userdata)
{
	static char buf[BB];

	snprintf(read_dev, sizeof(read_dev), "%s", dev);
	/* The device read is up, and read-only. */
	{
		bool found = false;

		for (size_t i = 0; i < n_up; i++)
			if (dmr_streq(dev + strlen("/dev/mapper/"), up[i]))
				found = up_ro[i];
		assert_true(found);
	}
	assert_true(skip_zero);
	for (size_t j = 0; j < n; j++)
		for (uint64_t b = ext[j].begin; b < ext[j].begin + ext[j].length; b++) {
			int r;

			if (ext[j].kind == DMR_EXTENT_UNMAPPED)
				r = fn(userdata, b * block_bytes, NULL, block_bytes, false);
			else if ((int64_t)b == zero_block)
				r = fn(userdata, b * block_bytes, NULL, block_bytes, true);
			else {
				memset(buf, (int)(0x40 + b), sizeof(buf));
				r = fn(userdata, b * block_bytes, buf, block_bytes, false);
			}
			if (r < 0)
				return r;
		}
	return 0;
}

int __wrap_dmr_thin_activate(const struct dmr_pool *pool, const char *name, const char *uuid,
			     uint32_t id, uint64_t sectors, bool read_only)
{
	assert_true(n_up < 8);
	activations++;
	ro_activations += read_only;
	snprintf(up[n_up], sizeof(up[0]), "%s", name);
	snprintf(up_uuid[n_up], sizeof(up_uuid[0]), "%s", uuid);
	up_ro[n_up++] = read_only;
	return 0;
}

int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (size_t i = 0; i < n_up; i++)
		if (dmr_streq(up[i], name)) {
			ret->exists = true;
			ret->read_only = up_ro[i];
			snprintf(ret->name, sizeof(ret->name), "%s", name);
			memcpy(ret->uuid, up_uuid[i], sizeof(ret->uuid));
		}
	return 0;
}

int __wrap_dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries)
{
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < n_up; i++)
			if (names[k] && dmr_streq(up[i], names[k])) {
				n_up--;
				memmove(up[i], up[n_up], sizeof(up[0]));
				memmove(up_uuid[i], up_uuid[n_up], sizeof(up_uuid[0]));
				up_ro[i] = up_ro[n_up];
				break;
			}
	return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static char state_dir[64];
static struct dmr_pool pool;

static int setup(void **st)
{
	(void)st;
	snprintf(state_dir, sizeof(state_dir), "/tmp/dmrep-test-send.XXXXXX");
	assert_non_null(mkdtemp(state_dir));
	n_fakes = 0;
	n_up = 0;
	delta_calls = release_calls = activations = ro_activations = 0;
	zero_block = -1;
	memset(&pool, 0, sizeof(pool));
	pool.spec.block_sectors = BB / 512;
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	return test_rm_rf(state_dir);
}

static void fake(uint32_t base, uint32_t id, size_t n, const struct dmr_extent *ext)
{
	assert_true(n_fakes < 8 && n <= 4);
	fakes[n_fakes].base = base;
	fakes[n_fakes].id = id;
	fakes[n_fakes].n = n;
	memcpy(fakes[n_fakes].ext, ext, n * sizeof(*ext));
	n_fakes++;
}

/* A thin VM "s", 2 disks of 1 MiB, points 1..npoints (vm_points.h: disk i
 * of point p on volume 100 + (p - 1) * 2 + i), with uuids. */
static struct dmr_registry *send_registry(struct dmr_agent *a, size_t npoints, bool classic)
{
	struct dmr_registry *reg = test_bare_registry(state_dir);
	struct dmr_vm *vm = test_make_vm("s", classic, 2, npoints);

	reg->pool = &pool;
	dmr_uuid_new(vm->uuid);
	for (size_t p = 0; p < npoints; p++)
		dmr_uuid_new(vm->points[p].uuid);
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	a->state_dir = state_dir;
	a->reg = reg;
	assert_int_equal(dmr_jobs_open(a), 0);
	return reg;
}

static void agent_done(struct dmr_agent *a)
{
	dmr_jobs_close(a);
	test_bare_free(a->reg);
}

static struct json_object *wait_job(struct dmr_agent *a, uint64_t id)
{
	struct json_object *o = NULL, *v;

	for (int k = 0; k < 5000; k++) {
		assert_int_equal(dmr_job_get_json(a, id, &o), 0);
		assert_true(json_object_object_get_ex(o, "job_state", &v));
		if (json_object_get_int(v) >= 7)
			break;
		json_object_put(o);
		o = NULL;
		usleep(1000);
	}
	assert_non_null(o);
	/* The job gave the VM back. */
	assert_int_equal(dmr_vm_busy_acquire(a, "s"), 0);
	dmr_vm_busy_release(a, "s");
	return o;
}

static int64_t job_int(struct json_object *job, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(job, key, &v));
	return json_object_get_int64(v);
}

static const char *job_str(struct json_object *job, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(job, key, &v));
	return json_object_get_string(v);
}

static ssize_t read_fd(void *userdata, void *buf, size_t len)
{
	ssize_t k = read(*(int *)userdata, buf, len);

	return k < 0 ? -errno : k;
}

/* Run a send of point `point` against base into a temporary file; the
 * job's record, the file open at its start in *ret_fd. */
static struct json_object *run_send(struct dmr_agent *a, uint64_t point, uint64_t base, bool zstd,
				    int *ret_fd)
{
	char path[96];
	_cleanup_free_ char *why = NULL;
	struct dmr_send_req req = { .vm = "s", .point = point, .base = base, .zstd = zstd };
	uint64_t id;
	int fd;

	snprintf(path, sizeof(path), "%s/stream", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	req.fd = dup(fd);
	assert_int_equal(dmr_replica_send_start(a, &req, &id, &why), 0);
	*ret_fd = fd;
	return wait_job(a, id);
}

struct rec {
	enum dmr_stream_rec_type type;
	uint32_t disk;
	uint64_t offset, length;
	unsigned char first;
};

/* Read the whole stream back (it must check out); its records. */
static size_t read_back(int fd, struct dmr_stream_header *ret_h, struct rec *recs, size_t max,
			struct dmr_stream_totals *tot)
{
	struct dmr_stream_reader *r = NULL;
	struct dmr_stream_rec rec;
	size_t n = 0;
	int q;

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(dmr_stream_reader_new(read_fd, &fd, &r), 0);
	*ret_h = *dmr_stream_reader_header(r);
	while ((q = dmr_stream_read_next(r, &rec)) == 1) {
		assert_true(n < max);
		recs[n].type = rec.type;
		recs[n].disk = rec.disk;
		recs[n].offset = rec.offset;
		recs[n].length = rec.length;
		recs[n].first = rec.data ? *(const unsigned char *)rec.data : 0;
		n++;
	}
	if (q != 0)
		fail_msg("the stream does not read back: %d %s", q, dmr_stream_reader_error(r));
	dmr_stream_reader_totals(r, tot);
	dmr_stream_reader_free(r);
	return n;
}

/* ---- the job ---------------------------------------------------------- */

static void test_full_send(void **st)
{
	struct dmr_agent a = { 0 };
	struct dmr_registry *reg = send_registry(&a, 2, false);
	struct dmr_vm *vm = reg->vms[0];
	/* Point 2: volumes 102, 103. */
	const struct dmr_extent d0[] = { { 0, 2, DMR_EXTENT_DATA } };
	const struct dmr_extent d1[] = { { 15, 1, DMR_EXTENT_DATA } };
	struct dmr_stream_header h;
	struct dmr_stream_totals tot;
	struct rec recs[16];
	struct json_object *job;
	struct stat sb;
	size_t n;
	int fd;

	(void)st;
	fake(0, 102, 1, d0);
	fake(0, 103, 1, d1);
	zero_block = 1; /* block 1 of disk 0 reads as zeros: not sent */
	job = run_send(&a, 0, 0, false, &fd);
	assert_int_equal(job_int(job, "job_state"), 7);
	assert_int_equal(job_int(job, "point"), 2); /* the latest valid */
	assert_string_equal(job_str(job, "uuid"), vm->points[1].uuid);
	assert_int_equal(delta_calls, 2);
	assert_int_equal(delta_max_blocks, (1u << 20) / BB);
	/* Each point volume read once, read-only, and down after. */
	assert_int_equal(activations, 2);
	assert_int_equal(ro_activations, 2);
	assert_int_equal(n_up, 0);
	assert_string_equal(read_dev, "/dev/mapper/dmrep-thin-103");

	n = read_back(fd, &h, recs, 16, &tot);
	assert_string_equal(h.vm, "s");
	assert_string_equal(h.vm_uuid, vm->uuid);
	assert_string_equal(h.point_uuid, vm->points[1].uuid);
	assert_string_equal(h.base_uuid, "");
	assert_string_equal(h.label, "x");
	assert_int_equal(h.created_usec, vm->points[1].created_usec);
	assert_int_equal(h.block_bytes, BB);
	assert_int_equal(h.n_disks, 2);
	assert_string_equal(h.disks[1].name, "vdb");
	assert_int_equal(h.disks[1].size_bytes, 1u << 20);
	/* The header's bound: every DATA extent; the data: what is not zero. */
	assert_int_equal(h.data_bytes, 3 * BB);
	assert_int_equal(n, 2);
	assert_int_equal(recs[0].type, DMR_STREAM_DATA);
	assert_int_equal(recs[0].disk, 0);
	assert_int_equal(recs[0].offset, 0);
	assert_int_equal(recs[0].length, BB);
	assert_int_equal(recs[0].first, 0x40);
	assert_int_equal(recs[1].type, DMR_STREAM_DATA);
	assert_int_equal(recs[1].disk, 1);
	assert_int_equal(recs[1].offset, 15 * BB);
	assert_int_equal(recs[1].first, 0x40 + 15);
	assert_int_equal(tot.data_bytes, 2 * BB);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(job_int(job, "bytes"), sb.st_size);
	assert_int_equal(tot.stream_bytes, sb.st_size);
	json_object_put(job);
	close(fd);
	agent_done(&a);
}

static void test_incremental_send(void **st)
{
	struct dmr_agent a = { 0 };
	struct dmr_registry *reg = send_registry(&a, 3, false);
	struct dmr_vm *vm = reg->vms[0];
	/* Point 3 (104, 105) against point 1 (100, 101). */
	const struct dmr_extent d0[] = { { 0, 2, DMR_EXTENT_DATA } };
	const struct dmr_extent d1[] = { { 3, 2, DMR_EXTENT_UNMAPPED } };
	struct dmr_stream_header h;
	struct dmr_stream_totals tot;
	struct rec recs[16];
	struct json_object *job;
	size_t n;
	int fd;

	(void)st;
	fake(100, 104, 1, d0);
	fake(101, 105, 1, d1);
	zero_block = 1;
	job = run_send(&a, 3, 1, true, &fd);
	assert_int_equal(job_int(job, "job_state"), 7);
	assert_int_equal(job_int(job, "base"), 1);
	assert_int_equal(n_up, 0);
	n = read_back(fd, &h, recs, 16, &tot);
	assert_string_equal(h.base_uuid, vm->points[0].uuid);
	assert_string_equal(h.point_uuid, vm->points[2].uuid);
	assert_int_equal(h.data_bytes, 2 * BB);
	/* DATA, then the zero grain inside the changed block as ZERO (it
	 * must overwrite the base), then the unmapped run. */
	assert_true(n >= 3);
	assert_int_equal(recs[0].type, DMR_STREAM_DATA);
	assert_int_equal(recs[0].first, 0x40);
	assert_int_equal(recs[1].type, DMR_STREAM_ZERO);
	assert_int_equal(recs[1].offset, BB);
	assert_int_equal(recs[1].length, BB);
	assert_int_equal(recs[n - 1].type, DMR_STREAM_UNMAP);
	assert_int_equal(recs[n - 1].disk, 1);
	assert_int_equal(tot.data_bytes, BB);
	json_object_put(job);
	close(fd);
	agent_done(&a);
}

/* A reader that went away: 32768, said so, no device left up. */
static void test_reader_gone(void **st)
{
	struct dmr_agent a = { 0 };
	const struct dmr_extent d[] = { { 0, 4, DMR_EXTENT_DATA } };
	struct dmr_send_req req = { .vm = "s", .point = 1 };
	_cleanup_free_ char *why = NULL;
	struct json_object *job;
	uint64_t id;
	int p[2];

	(void)st;
	send_registry(&a, 1, false);
	fake(0, 100, 1, d);
	fake(0, 101, 1, d);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	req.fd = p[1];
	assert_int_equal(dmr_replica_send_start(&a, &req, &id, &why), 0);
	job = wait_job(&a, id);
	assert_int_equal(job_int(job, "job_state"), 10);
	assert_int_equal(job_int(job, "error_code"), DMR_RC_FAILED);
	assert_non_null(strstr(job_str(job, "error_description"), "reader went away"));
	assert_int_equal(n_up, 0);
	json_object_put(job);
	agent_done(&a);
}

/* The agent stops (SIGTERM): the send is abandoned, devices down. */
static void test_stopping(void **st)
{
	struct dmr_agent a = { 0 };
	const struct dmr_extent d[] = { { 0, 4, DMR_EXTENT_DATA } };
	struct json_object *job;
	int fd;

	(void)st;
	send_registry(&a, 1, false);
	fake(0, 100, 1, d);
	fake(0, 101, 1, d);
	a.stopping = 1;
	job = run_send(&a, 1, 0, false, &fd);
	assert_int_equal(job_int(job, "job_state"), 10);
	assert_non_null(strstr(job_str(job, "error_description"), "agent is stopping"));
	assert_int_equal(n_up, 0);
	json_object_put(job);
	close(fd);
	a.stopping = 0;
	agent_done(&a);
}

/* A reader that holds the pipe open and never reads: the agent stopping
 * still ends the send (the pipe is written through a non-blocking open of
 * the agent's own), and the descriptor the client shares stays blocking. */
static void *stop_later(void *p)
{
	usleep(300000);
	((struct dmr_agent *)p)->stopping = 1;
	return NULL;
}

static void test_stalled_reader(void **st)
{
	struct dmr_agent a = { 0 };
	const struct dmr_extent d[] = { { 0, 16, DMR_EXTENT_DATA } };
	struct dmr_send_req req = { .vm = "s", .point = 1 };
	_cleanup_free_ char *why = NULL;
	struct json_object *job;
	pthread_t t;
	uint64_t id, t0;
	int p[2];

	(void)st;
	send_registry(&a, 1, false);
	fake(0, 100, 1, d);
	fake(0, 101, 1, d);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	req.fd = dup(p[1]);
	t0 = dmr_now_usec();
	assert_int_equal(dmr_replica_send_start(&a, &req, &id, &why), 0);
	assert_int_equal(pthread_create(&t, NULL, stop_later, &a), 0);
	job = wait_job(&a, id);
	pthread_join(t, NULL);
	assert_int_equal(job_int(job, "job_state"), 10);
	assert_non_null(strstr(job_str(job, "error_description"), "agent is stopping"));
	assert_true(dmr_now_usec() - t0 < 3000000);
	assert_int_equal(n_up, 0);
	assert_false(fcntl(p[1], F_GETFL) & O_NONBLOCK);
	json_object_put(job);
	close(p[0]);
	close(p[1]);
	a.stopping = 0;
	agent_done(&a);
}

/* A send killed mid-way left a point's device up: recovery removes it
 * and releases the pool's metadata snapshot. */
static void test_recover(void **st)
{
	struct dmr_agent a = { 0 };

	(void)st;
	send_registry(&a, 2, false);
	assert_int_equal(__wrap_dmr_thin_activate(&pool, "dmrep-thin-102", "DMREP-thin-102", 102, 2048,
						  true), 0);
	/* A live volume's device stays. */
	assert_int_equal(__wrap_dmr_thin_activate(&pool, "dmrep-thin-1", "DMREP-thin-1", 1, 2048,
						  false), 0);
	dmr_replica_recover(&a);
	assert_int_equal(release_calls, 1);
	assert_int_equal(n_up, 1);
	assert_string_equal(up[0], "dmrep-thin-1");
	agent_done(&a);
}

/* ---- what to send ----------------------------------------------------- */

static void test_send_check(void **st)
{
	struct dmr_agent a = { 0 };
	struct dmr_registry *reg = send_registry(&a, 4, false);
	struct dmr_vm *vm = reg->vms[0];
	struct dmr_send_req req = { .vm = "s", .fd = -1 };
	uint64_t point, id;
	char *why = NULL;

	(void)st;
	/* The latest valid point: not a pending one, not an invalid one. */
	vm->points[3].pending_tid = 9;
	vm->points[2].valid = false;
	point = 0;
	assert_int_equal(dmr_replica_send_check(vm, &point, 0, &why), 0);
	assert_int_equal(point, 2);
	point = 4;
	assert_int_equal(dmr_replica_send_check(vm, &point, 0, &why), -ENOENT);
	assert_non_null(strstr(why, "no point 4"));
	free(why);
	why = NULL;
	point = 3;
	assert_int_equal(dmr_replica_send_check(vm, &point, 0, &why), -EINVAL);
	free(why);
	why = NULL;
	point = 2;
	assert_int_equal(dmr_replica_send_check(vm, &point, 7, &why), -ENOENT);
	free(why);
	why = NULL;
	assert_int_equal(dmr_replica_send_check(vm, &point, 2, &why), -EINVAL);
	assert_non_null(strstr(why, "not older"));
	free(why);
	why = NULL;
	assert_int_equal(dmr_replica_send_check(vm, &point, 1, &why), 0);
	/* Through the start: a refusal takes the descriptor and gives the VM
	 * back. */
	req.point = 99;
	req.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_int_equal(dmr_replica_send_start(&a, &req, &id, &why), -ENOENT);
	free(why);
	why = NULL;
	assert_int_equal(fcntl(req.fd, F_GETFD), -1);
	assert_int_equal(dmr_vm_busy_acquire(&a, "s"), 0);
	/* A busy VM: 32774's errno. */
	req.point = 1;
	req.fd = -1;
	assert_int_equal(dmr_replica_send_start(&a, &req, &id, &why), -EBUSY);
	assert_non_null(why);
	free(why);
	why = NULL;
	dmr_vm_busy_release(&a, "s");
	req.vm = "nope";
	assert_int_equal(dmr_replica_send_start(&a, &req, &id, &why), -ENOENT);
	free(why);
	agent_done(&a);
}

static void test_classic_refused(void **st)
{
	struct dmr_agent a = { 0 };
	struct dmr_registry *reg = send_registry(&a, 1, true);
	uint64_t point = 0;
	char *why = NULL;

	(void)st;
	assert_int_equal(dmr_replica_send_check(reg->vms[0], &point, 0, &why), -EOPNOTSUPP);
	assert_non_null(strstr(why, "classic VMs cannot be replicated"));
	assert_int_equal(dmr_rc_from_errno(-EOPNOTSUPP), DMR_RC_NOT_SUPPORTED);
	free(why);
	agent_done(&a);
}

static void test_data_bytes(void **st)
{
	const struct dmr_extent e[] = {
		{ 0, 2, DMR_EXTENT_DATA },
		{ 4, 1, DMR_EXTENT_UNMAPPED },
		{ 15, 1, DMR_EXTENT_DATA }, /* past the disk's end: cut */
	};

	(void)st;
	assert_int_equal(dmr_send_data_bytes(e, 3, BB, 15 * BB + 4096), 2 * BB + 4096);
	assert_int_equal(dmr_send_data_bytes(e, 3, BB, 16 * BB), 3 * BB);
	assert_int_equal(dmr_send_data_bytes(e, 0, BB, 16 * BB), 0);
}

/* ---- the handlers' refusals ------------------------------------------- */

static int call(int (*fn)(struct dmr_call *), uid_t uid, const char *params, int fd, char *err)
{
	struct dmr_agent a = { 0 };
	struct dmr_call c = { .agent = &a, .uid = uid, .privileged = true, .fd = fd };
	int rc;

	c.params = json_tokener_parse(params);
	c.reply = json_object_new_object();
	assert_non_null(c.params);
	rc = fn(&c);
	snprintf(err, 512, "%s", c.error);
	json_object_put(c.params);
	json_object_put(c.reply);
	return rc;
}

static void test_handler_refusals(void **st)
{
	char err[512];

	(void)st;
	/* A group member, even with a descriptor: root only. */
	assert_int_equal(call(dmr_h_send_point, 1000, "{\"vm\": \"s\"}", 5, err), DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(err, "root-only"));
	assert_int_equal(call(dmr_h_receive_point, 1000, "{\"vm\": \"s\"}", 5, err),
			 DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(err, "root-only"));
	/* Types, then values. */
	assert_int_equal(call(dmr_h_send_point, 0, "{}", 5, err), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": 3}", 5, err), DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"a/b\"}", 5, err),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\", \"point\": \"1\"}", 5, err),
			 DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\", \"point\": 0}", 5, err),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\", \"base\": true}", 5, err),
			 DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\", \"compress\": 1}", 5, err),
			 DMR_RC_INCORRECT_TYPE);
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\", \"compress\": \"lz4\"}", 5, err),
			 DMR_RC_INVALID_PARAMETER);
	assert_string_equal(err, "compress must be zstd");
	/* A descriptor the stream could not go through. */
	{
		int ro = open("/dev/null", O_RDONLY | O_CLOEXEC), wo = open("/dev/null", O_WRONLY | O_CLOEXEC);

		assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\"}", ro, err),
				 DMR_RC_INVALID_PARAMETER);
		assert_non_null(strstr(err, "not open for writing"));
		assert_int_equal(call(dmr_h_receive_point, 0, "{\"vm\": \"s\"}", wo, err),
				 DMR_RC_INVALID_PARAMETER);
		assert_non_null(strstr(err, "not open for reading"));
		close(ro);
		close(wo);
	}
	/* No descriptor. */
	assert_int_equal(call(dmr_h_send_point, 0, "{\"vm\": \"s\"}", -1, err), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call(dmr_h_receive_point, 0, "{\"vm\": \"s\"}", -1, err),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(call(dmr_h_receive_point, 0, "{\"vm\": 1}", 5, err), DMR_RC_INCORRECT_TYPE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_send, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental_send, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stopping, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_classic_refused, setup, teardown),
		cmocka_unit_test(test_data_bytes),
		cmocka_unit_test(test_handler_refusals),
	};

	/* As the agent (dmrepd.c): a reader gone is EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
