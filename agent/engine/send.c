/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/send.c - SendReplicationPoint: a point of a VM written as a
 * replication stream (common/stream.h, docs/stream.md) to the descriptor
 * the client handed over (agent/engine/replica.h).
 *
 * The job, with the VM's busy lock (nothing of the VM changes meanwhile):
 *   send:extents  every disk's extents of the point, whole (mapped blocks)
 *                 or against the base (snapshots/delta.h: the pool's
 *                 metadata snapshot is held only while the tool runs)
 *   send:data     the header, then disk by disk: the point's volume up as
 *                 a read-only hidden device, its extents read with O_DIRECT
 *                 (snapshots/xfer.h) and written as DATA / ZERO / UNMAP
 *                 records, the device removed
 *   send:trailer  the counts and the whole stream's checksum
 * Nothing is written to the pool and no catalog entry changes, so a crash
 * anywhere leaves at most a read-only device of a point's volume
 * (dmr_replica_recover removes it) and a metadata snapshot held
 * (dmr_replica_recover releases it); the reader sees a stream without its
 * trailer, which it refuses.
 */
#include "agent/engine/replica.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "common/log.h"
#include "common/path.h"
#include "common/rc.h"
#include "common/stream.h"
#include "common/testhook.h"
#include "common/util.h"
#include "snapshots/delta.h"
#include "snapshots/xfer.h"

struct send_ctx {
	struct dmr_agent *a;
	char *vm;
	uint64_t point, base;
	bool zstd;
	int fd;
	/* What the data phase counts, for percent_complete. */
	struct dmr_stream_writer *w;
	uint32_t disk;
	uint64_t done_bytes, data_bytes;
	uint64_t percent_usec;  /* when percent_complete was last set */
	uint64_t percent_gap;   /* usec until the next may be */
	bool first_chunk;
	/* The data step's parts, for the log: devices up, read, down. */
	uint64_t up_usec, read_usec, down_usec;
	bool fifo, sock, nonblock;
	/* --bandwidth of a replication cycle: a token bucket in bytes per
	 * second (0: no cap), refilled in write_fd. */
	uint64_t rate;
	double tokens;
	uint64_t tokens_usec;
	uint64_t stream_bytes;  /* the stream's size once finished */
	/* A resync's (dmr_replica_send_blocks): the extents to send, given,
	 * against the replica's point of uuid resync_base (not one of ours). */
	const char *resync_base;
	struct dmr_extent *const *given;
	const size_t *n_given;
	uint64_t given_block;
};

static void send_ctx_free(void *p)
{
	struct send_ctx *c = p;

	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->vm);
	free(c);
}

/* ---- writing to the descriptor ----------------------------------------- */

/* Wait until fd takes more, a->stopping checked twice a second: a reader
 * that stalls does not hold a SIGTERM (pipes and sockets; a file never
 * waits). */
static int wait_writable(struct send_ctx *c)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		int k;

		if (c->a->stopping)
			return -ECANCELED;
		k = poll(&p, 1, 500);
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0 && (p.revents & (POLLERR | POLLHUP)) && !(p.revents & POLLOUT))
			return -EPIPE;
		if (k > 0)
			return 0;
	}
}

/* One write that does not block where the descriptor allows it: a socket
 * with MSG_DONTWAIT; a pipe through a non-blocking open of its own
 * (nonblock_open), else with RWF_NOWAIT where the kernel has it for pipes,
 * else a plain write (which a reader that stalls can hold). */
static ssize_t write_some(struct send_ctx *c, const void *p, size_t len)
{
	if (c->nonblock)
		return write(c->fd, p, len);
	if (c->sock)
		return send(c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (c->fifo) {
		struct iovec iov = { (void *)p, len };
		ssize_t k = pwritev2(c->fd, &iov, 1, -1, RWF_NOWAIT);

		if (k >= 0 || errno != EOPNOTSUPP)
			return k;
		c->fifo = false; /* no RWF_NOWAIT on pipes here: plain writes */
	}
	return write(c->fd, p, len);
}

/* A pipe reopened through /proc/self/fd as a new open file description of
 * our own, O_NONBLOCK: setting that flag on the one we were handed would
 * change it for every process that shares it (the client's shell, the
 * next command writing to the same pipe).  Not possible (no reader left:
 * ENXIO; no /proc): the descriptor as it is. */
static void nonblock_open(struct send_ctx *c)
{
	char name[DMR_PATH_FD_NAME_MAX];
	int fd;

	dmr_path_fd_name(c->fd, name);
	fd = open(name, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		log_debug("VM %s: cannot reopen the stream's pipe non-blocking: %s", c->vm,
			  strerror(errno));
		return;
	}
	close(c->fd);
	c->fd = fd;
	c->nonblock = true;
}

/* How much the bucket lets through now (all of want without a cap): it
 * fills at c->rate bytes a second up to one second's worth (at least
 * 64 KiB, so a low cap still moves whole chunks), and a writer that finds
 * it empty sleeps until there is some, a->stopping checked twice a
 * second. */
#define BUCKET_MIN 65536.0
static int bucket_take(struct send_ctx *c, size_t want, size_t *ret_n)
{
	double cap;

	if (!c->rate) {
		*ret_n = want;
		return 0;
	}
	cap = (double)c->rate > BUCKET_MIN ? (double)c->rate : BUCKET_MIN;
	for (;;) {
		uint64_t now = dmr_now_usec();

		if (c->a->stopping)
			return -ECANCELED;
		if (!c->tokens_usec) {
			c->tokens_usec = now;
			c->tokens = cap;
		}
		c->tokens += (double)(now - c->tokens_usec) * (double)c->rate / 1e6;
		c->tokens_usec = now;
		if (c->tokens > cap)
			c->tokens = cap;
		if (c->tokens >= 1.0) {
			*ret_n = want < (size_t)c->tokens ? want : (size_t)c->tokens;
			c->tokens -= (double)*ret_n;
			return 0;
		}
		{
			uint64_t need = (uint64_t)((1.0 - c->tokens) * 1e6 / (double)c->rate) + 1;

			usleep(need > 500000 ? 500000 : (useconds_t)need);
		}
	}
}

/* The stream writer's output: all of buf, or -errno (-EPIPE: the reader
 * went away; -ECANCELED: the agent stops). */
static int write_fd(void *userdata, const void *buf, size_t len)
{
	struct send_ctx *c = userdata;
	const char *p = buf;
	size_t left = len;

	while (left > 0) {
		size_t n;
		ssize_t k;
		int q;

		if (c->a->stopping)
			return -ECANCELED;
		if ((q = bucket_take(c, left, &n)) < 0)
			return q;
		k = write_some(c, p, n);
		if (c->rate && (k < 0 || (size_t)k < n))
			c->tokens += (double)(n - (k > 0 ? (size_t)k : 0)); /* not sent: back */
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_writable(c);

			if (r < 0)
				return r;
			continue;
		}
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		p += k;
		left -= (size_t)k;
	}
	return (int)len;
}

/* ---- the data phase ---------------------------------------------------- */

/* Bounds of the time between two percent_complete updates. */
#define PERCENT_GAP_MIN_USEC 1000000u
#define PERCENT_GAP_MAX_USEC 10000000u

struct chunk_ctx {
	struct send_ctx *c;
	struct dmr_job *job;
	bool full;
};

static int on_chunk(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct chunk_ctx *k = userdata;
	struct send_ctx *c = k->c;
	int r;

	if (c->a->stopping)
		return -ECANCELED;
	if (buf) {
		r = dmr_stream_write_data(c->w, c->disk, offset, buf, len);
		c->done_bytes += len;
	} else if (zero) {
		/* Zero grains in a full send: the replica's new volume reads
		 * zeros there already.  In an incremental they overwrite
		 * what the base had. */
		r = k->full ? 0 : dmr_stream_write_zero(c->w, c->disk, offset, len);
		c->done_bytes += len;
	} else {
		r = dmr_stream_write_unmap(c->w, c->disk, offset, len);
	}
	if (r < 0)
		return r;
	if (c->first_chunk) {
		/* Mid-stream, with the point's device up. */
		c->first_chunk = false;
		dmr_test_hook("send:data");
	}
	/* Every change of percent_complete is a durable write of the job's
	 * record (two fsyncs, here in the data loop), which on a loaded or
	 * slow disk costs far more than the chunk it reports: at most once
	 * a second, and never so often that those writes take more than
	 * about 2% of the send (a 512 MiB send in a loaded lab: 60 record
	 * writes, 120 fsyncs, when twice a second; 12 and 24 so). */
	if (c->data_bytes) {
		uint64_t now = dmr_now_usec();

		if (c->percent_usec == 0) {
			c->percent_usec = now;
			c->percent_gap = PERCENT_GAP_MIN_USEC;
		} else if (now - c->percent_usec >= c->percent_gap) {
			uint64_t cost;

			dmr_job_set_percent(k->job, (unsigned)(c->done_bytes * 99 / c->data_bytes));
			c->percent_usec = dmr_now_usec();
			cost = c->percent_usec - now;
			c->percent_gap = cost * 50 < PERCENT_GAP_MIN_USEC ? PERCENT_GAP_MIN_USEC :
					 cost * 50 > PERCENT_GAP_MAX_USEC ? PERCENT_GAP_MAX_USEC :
					 cost * 50;
		}
	}
	return 0;
}

uint64_t dmr_send_data_bytes(const struct dmr_extent *ext, size_t n, uint64_t block_bytes,
			     uint64_t disk_bytes)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t b, e;

		if (ext[i].kind != DMR_EXTENT_DATA)
			continue;
		b = ext[i].begin * block_bytes;
		e = (ext[i].begin + ext[i].length) * block_bytes;
		if (b >= disk_bytes)
			continue;
		if (e > disk_bytes)
			e = disk_bytes;
		sum += e - b;
	}
	return sum;
}

static void free_extents(struct dmr_extent **ext, size_t n)
{
	for (size_t i = 0; ext && i < n; i++)
		free(ext[i]);
	free(ext);
}

/* The job's failure, said once, for what went wrong where. */
static int send_fail(struct dmr_job *job, int r, const char *what)
{
	if (r == -EPIPE)
		dmr_job_set_error(job, DMR_RC_FAILED,
				  "%s: the stream's reader went away (broken pipe)", what);
	else if (r == -ECANCELED)
		dmr_job_set_error(job, DMR_RC_FAILED, "%s: the agent is stopping", what);
	else
		dmr_job_fail(job, r, "%s", what);
	return r;
}

static int send_run(struct dmr_job *job, struct send_ctx *c)
{
	struct dmr_registry *reg = c->a->reg;
	struct dmr_stream_header *h = NULL;
	struct dmr_extent **ext = NULL;
	size_t *n_ext = NULL, n = 0;
	struct dmr_stream_totals tot = { 0 };
	struct chunk_ctx k = { .c = c, .job = job, .full = c->base == 0 && !c->resync_base };
	const struct dmr_backend *be;
	char uuid[DMR_UUID_STR_SIZE];
	uint64_t block_bytes = 0, t0;
	struct dmr_vm *vm;
	struct stat st;
	int r = 0;

	if (fstat(c->fd, &st) == 0) {
		c->fifo = S_ISFIFO(st.st_mode);
		c->sock = S_ISSOCK(st.st_mode);
	}
	if (c->fifo)
		nonblock_open(c);
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, c->vm);
	if (vm) {
		/* The busy lock keeps the VM and its points as they are. */
		struct dmr_point *pt = dmr_vm_point_find(vm, c->point);
		struct dmr_point *bp = c->base ? dmr_vm_point_find(vm, c->base) : NULL;

		n = vm->n_disks;
		h->version = DMR_STREAM_VERSION;
		snprintf(h->vm, sizeof(h->vm), "%s", vm->name);
		snprintf(h->vm_uuid, sizeof(h->vm_uuid), "%s", vm->uuid);
		if (pt) {
			snprintf(h->point_uuid, sizeof(h->point_uuid), "%s", pt->uuid);
			h->created_usec = pt->created_usec;
			h->application = pt->application;
			snprintf(h->label, sizeof(h->label), "%s", pt->label ? pt->label : "");
		}
		if (bp)
			snprintf(h->base_uuid, sizeof(h->base_uuid), "%s", bp->uuid);
		if (c->resync_base) {
			snprintf(h->base_uuid, sizeof(h->base_uuid), "%s", c->resync_base);
			h->resync = true;
		}
		h->n_disks = (uint32_t)n;
		for (size_t i = 0; i < n && i < DMR_STREAM_DISKS_MAX; i++) {
			snprintf(h->disks[i].name, sizeof(h->disks[i].name), "%s", vm->disks[i].name);
			h->disks[i].size_bytes = vm->disks[i].size_bytes;
		}
		if (!pt || (c->base && !bp))
			vm = NULL;
	}
	pthread_mutex_unlock(&reg->lock);
	snprintf(uuid, sizeof(uuid), "%s", h->point_uuid);
	if (!vm) {
		free(h);
		return dmr_job_fail(job, -ENOENT, "VM %s or its point is gone", c->vm);
	}
	be = dmr_backend_of(vm);

	/* Every disk's extents before the first byte: the header carries
	 * what the data records will weigh, for the receiver's room check. */
	t0 = dmr_now_usec();
	ext = calloc(n, sizeof(*ext));
	n_ext = calloc(n, sizeof(*n_ext));
	if (!ext || !n_ext) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t bb = 0;

		r = dmr_test_fail("send:extents");
		if (r == 0 && c->given) {
			bb = c->given_block;
			n_ext[i] = c->n_given[i];
			if (n_ext[i] && !(ext[i] = malloc(n_ext[i] * sizeof(**ext))))
				r = -ENOMEM;
			else if (n_ext[i])
				memcpy(ext[i], c->given[i], n_ext[i] * sizeof(**ext));
		} else if (r == 0) {
			r = be->point_extents(reg, vm, c->base, c->point, i, &ext[i], &n_ext[i], &bb);
		}
		if (r < 0) {
			if (r == -EBUSY)
				dmr_job_set_error(job, DMR_RC_IN_USE, "the pool holds a metadata "
						  "snapshot that is not dmrep's: cannot read its "
						  "mappings");
			else
				send_fail(job, r, "cannot read which blocks to send");
			goto out;
		}
		block_bytes = bb;
		h->data_bytes += dmr_send_data_bytes(ext[i], n_ext[i], bb, vm->disks[i].size_bytes);
	}
	h->block_bytes = (uint32_t)block_bytes;
	c->data_bytes = h->data_bytes;
	dmr_job_add_step(job, "extents", dmr_now_usec() - t0);
	dmr_test_hook("send:extents");

	t0 = dmr_now_usec();
	r = dmr_stream_writer_new(h, c->zstd ? DMR_STREAM_W_ZSTD : 0, write_fd, c, &c->w);
	if (r < 0) {
		send_fail(job, r, "cannot write the stream's header");
		goto out;
	}
	c->first_chunk = true;
	for (size_t i = 0; i < n; i++) {
		char path[DMR_DM_PATH_SIZE];
		uint64_t t1, t2;
		int q;

		c->disk = (uint32_t)i;
		if (n_ext[i] == 0)
			continue; /* nothing of this disk differs: no device */
		if (c->a->stopping) {
			r = send_fail(job, -ECANCELED, "send abandoned");
			goto out;
		}
		t1 = dmr_now_usec();
		r = be->point_read_up(reg, vm, c->point, i, path);
		t2 = dmr_now_usec();
		c->up_usec += t2 - t1;
		if (r < 0) {
			send_fail(job, r, "cannot activate the point's volume for reading");
			goto out;
		}
		r = dmr_xfer_read(path, ext[i], n_ext[i], block_bytes, 0, true, on_chunk, &k);
		t1 = dmr_now_usec();
		c->read_usec += t1 - t2;
		q = be->point_read_down(reg, vm, c->point, i);
		c->down_usec += dmr_now_usec() - t1;
		if (q < 0)
			log_error("VM %s: cannot remove the device of point %" PRIu64 "'s %s: %s",
				  c->vm, c->point, vm->disks[i].name, strerror(-q));
		if (r < 0) {
			char what[160];

			snprintf(what, sizeof(what), "cannot send disk %s", vm->disks[i].name);
			send_fail(job, r, what);
			goto out;
		}
	}
	dmr_job_add_step(job, "data", dmr_now_usec() - t0);

	t0 = dmr_now_usec();
	dmr_test_hook("send:trailer");
	r = dmr_test_fail("send:trailer");
	if (r == 0)
		r = dmr_stream_writer_finish(c->w, &tot);
	if (r < 0) {
		send_fail(job, r, "cannot write the stream's trailer");
		goto out;
	}
	dmr_job_add_step(job, "trailer", dmr_now_usec() - t0);
	dmr_job_set_result(job, "point", json_object_new_int64((int64_t)c->point));
	dmr_job_set_result(job, "uuid", json_object_new_string(uuid));
	if (c->base)
		dmr_job_set_result(job, "base", json_object_new_int64((int64_t)c->base));
	dmr_job_set_result(job, "bytes", json_object_new_int64((int64_t)tot.stream_bytes));
	dmr_job_set_result(job, "data_bytes", json_object_new_int64((int64_t)tot.data_bytes));
	c->stream_bytes = tot.stream_bytes;
	log_info("VM %s: point %" PRIu64 " sent (base %" PRIu64 "): %" PRIu64 " bytes, %" PRIu64
		 " of data; devices up %.2f s, read %.2f s, down %.2f s", c->vm, c->point, c->base,
		 tot.stream_bytes, tot.data_bytes, (double)c->up_usec / 1e6,
		 (double)c->read_usec / 1e6, (double)c->down_usec / 1e6);
out:
	dmr_stream_writer_free(c->w);
	c->w = NULL;
	free_extents(ext, n);
	free(n_ext);
	free(h);
	/* The reader sees the end of the stream now, not when the client
	 * goes. */
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return r;
}

static int send_job(struct dmr_job *job, void *userdata)
{
	struct send_ctx *c = userdata;
	int r = send_run(job, c);

	if (r == 0)
		dmr_job_set_percent(job, 100);
	else /* a pool that failed under the read: its refusal */
		r = dmr_pool_job_explain(c->a->reg, job, r);
	return r;
}

/* A send from the caller's job, which holds the VM's busy lock as
 * SendReplicationPoint's does (c->vm is only read). */
static int send_in_job(struct dmr_job *job, struct send_ctx *c, uint64_t *ret_bytes)
{
	int r = send_run(job, c);

	if (c->fd >= 0)
		close(c->fd);
	if (r == 0 && ret_bytes)
		*ret_bytes = c->stream_bytes;
	return r;
}

int dmr_replica_send_to_fd(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			   uint64_t point, uint64_t base, bool zstd, uint64_t bandwidth, int fd,
			   uint64_t *ret_bytes)
{
	struct send_ctx c = { .a = a, .vm = (char *)vm, .point = point, .base = base,
			      .zstd = zstd, .fd = fd, .rate = bandwidth };

	assert(a && job && vm && point);
	return send_in_job(job, &c, ret_bytes);
}

int dmr_replica_send_blocks(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			    uint64_t point, const char *base_uuid, struct dmr_extent *const *ext,
			    const size_t *n_ext, uint64_t block_bytes, bool zstd, uint64_t bandwidth,
			    int fd, uint64_t *ret_bytes)
{
	struct send_ctx c = { .a = a, .vm = (char *)vm, .point = point, .zstd = zstd, .fd = fd,
			      .rate = bandwidth, .resync_base = base_uuid, .given = ext,
			      .n_given = n_ext, .given_block = block_bytes };

	assert(a && job && vm && point && base_uuid && ext && n_ext && block_bytes);
	return send_in_job(job, &c, ret_bytes);
}

/* ---- starting it -------------------------------------------------------- */

/* The latest valid point (0: none). */
static uint64_t latest_valid(const struct dmr_vm *vm)
{
	for (size_t i = vm->n_points; i-- > 0;)
		if (vm->points[i].valid && !vm->points[i].pending_tid)
			return vm->points[i].id;
	return 0;
}

int dmr_replica_send_check(const struct dmr_vm *vm, uint64_t *point, uint64_t base,
			   char **ret_why)
{
	const struct dmr_backend *be = dmr_backend_of(vm);
	struct dmr_point *pt, *bp;

	if (!be->point_extents) {
		return dmr_why_set(ret_why, -EOPNOTSUPP,
				   "%s", be->stream_unsupported ? be->stream_unsupported :
				   "this VM's backend cannot send points");
	}
	if (*point == 0 && !(*point = latest_valid(vm))) {
		return dmr_why_set(ret_why, -ENOENT, "VM %s has no valid point to send", vm->name);
	}
	pt = dmr_vm_point_find((struct dmr_vm *)vm, *point);
	if (!pt || pt->pending_tid) {
		return dmr_why_set(ret_why, -ENOENT,
				   "VM %s has no point %" PRIu64, vm->name, *point);
	}
	if (!pt->valid) {
		return dmr_why_set(ret_why, -EINVAL,
				   "point %" PRIu64 " of VM %s is not valid", *point, vm->name);
	}
	if (!base)
		return 0;
	bp = dmr_vm_point_find((struct dmr_vm *)vm, base);
	if (!bp || bp->pending_tid) {
		return dmr_why_set(ret_why, -ENOENT,
				   "VM %s has no point %" PRIu64 " to send against",
				   vm->name, base);
	}
	if (base >= *point) {
		return dmr_why_set(ret_why, -EINVAL,
				   "the base point %" PRIu64 " is not older than point %" PRIu64, base,
				   *point);
	}
	if (!bp->valid) {
		return dmr_why_set(ret_why, -EINVAL,
				   "the base point %" PRIu64 " of VM %s is not valid",
				   base, vm->name);
	}
	return 0;
}

int dmr_replica_send_start(struct dmr_agent *a, const struct dmr_send_req *req,
			   uint64_t *ret_job, char **ret_why)
{
	_cleanup_close_ int fd = req ? req->fd : -1;
	struct dmr_registry *reg;
	struct send_ctx *c;
	uint64_t point;
	struct dmr_vm *vm;
	int r;

	assert(a && req && ret_job);
	if (!req->vm)
		return -EINVAL;
	reg = a->reg;
	r = dmr_vm_busy_acquire(a, req->vm);
	if (r == -EBUSY)
		dmr_why_set(ret_why, 0, "VM %s is busy with another operation", req->vm);
	if (r < 0)
		return r;
	point = req->point;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, req->vm);
	if (!vm) {
		r = dmr_why_set(ret_why, -ENOENT, "no VM named %s", req->vm);
	} else {
		r = dmr_replica_send_check(vm, &point, req->base, ret_why);
		if (r == 0 && dmr_backend_of(vm)->needs_pool && !reg->pool)
			r = dmr_pool_down_why(reg, ret_why);
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_vm_busy_release(a, req->vm);
		return r;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->vm = strdup(req->vm))) {
		free(c);
		dmr_vm_busy_release(a, req->vm);
		return -ENOMEM;
	}
	c->a = a;
	c->point = point;
	c->base = req->base;
	c->zstd = req->zstd;
	c->fd = DMR_TAKE_FD(fd);
	r = dmr_job_start(a, "SendReplicationPoint", req->vm, send_job, c, send_ctx_free, ret_job);
	if (r < 0) {
		send_ctx_free(c);
		dmr_vm_busy_release(a, req->vm);
		dmr_why_set(ret_why, 0, "cannot start the job: %s", strerror(-r));
	}
	return r;
}

/* ---- at start ----------------------------------------------------------- */

void dmr_replica_recover(struct dmr_agent *a)
{
	struct dmr_registry *reg = a->reg;
	int r;

	if (!reg)
		return;
	if (reg->pool) {
		r = dmr_delta_release_stale(reg->pool);
		if (r < 0)
			log_error("cannot release the pool's metadata snapshot a stopped agent "
				  "left held: %s (point send may fail until it is)", strerror(-r));
	}
	/* A send killed mid-way leaves a point's volume up read-only: no
	 * other path brings a point's own volume up, so every one that is
	 * up now is such a leftover. */
	for (size_t v = 0; v < reg->n_vms; v++) {
		struct dmr_vm *vm = reg->vms[v];
		const struct dmr_backend *be = dmr_backend_of(vm);

		if (!be->point_read_down || (be->needs_pool && !reg->pool))
			continue;
		for (size_t p = 0; p < vm->n_points; p++)
			for (size_t i = 0; i < vm->n_disks; i++) {
				r = be->point_read_down(reg, vm, vm->points[p].id, i);
				if (r < 0)
					log_error("VM %s: cannot remove the device a send left of point "
						  "%" PRIu64 "'s %s: %s", vm->name, vm->points[p].id,
						  vm->disks[i].name, strerror(-r));
			}
	}
}
