/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/receive.c - ReceiveReplicationPoint (agent/engine/replica.h):
 * a stream read from a descriptor becomes a point of a replica VM.
 *
 * The order, each step durable before the next (crash steps in brackets,
 * DMREP_TEST_CRASH_AT):
 *   1. the header read and judged (dmr_receive_check): a refusal changes
 *      nothing
 *   2. the volume ids recorded as doomed in the VM's state, and a VM not
 *      known here created as an importing replica [receive:recorded]: a
 *      crash from here on makes recovery remove the volumes (and the VM)
 *   3. the volumes made by the backend [receive:volumes]
 *   4. the records written [receive:data], up to the trailer, which the
 *      reader checks with every checksum [receive:trailer]; the writers'
 *      fdatasync makes the data (and the pool's metadata) durable
 *   5. the point recorded with those volumes, the ids out of doomed and
 *      the VM no longer importing, in one save [receive:point-saved]
 * Any failure before 5 removes the volumes and puts the catalog back; a
 * replica VM the failed stream was creating goes whole.
 */
#include "agent/engine/replica.h"

#include <assert.h>
#include <inttypes.h>
#include <poll.h>
#include <unistd.h>

#include "agent/backend/backend.h"
#include "agent/engine/hashes.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "agent/engine/receive.h"
#include "agent/engine/retention.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/stream.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/name.h"
#include "snapshots/xfer.h"

/* A sender that goes quiet this long (a dead link that TCP has not seen
 * yet) fails the receive; the agent's stop is seen within a poll. */
#define RECV_IDLE_USEC (600ull * 1000000)
#define RECV_POLL_MS 250
#define RECV_QUEUE_DEPTH 32u

struct recv_ctx {
	struct dmr_agent *a;
	struct dmr_registry *reg;
	char *vm;
	int fd;
	struct dmr_job *job;
	uint64_t bytes_in;   /* read from fd */
	/* The first bytes, read to tell a hash request from a stream
	 * (peek_request), handed to the stream reader first. */
	uint8_t peek[DMR_HASHREQ_MAX];
	size_t peek_len, peek_off;
};

static void recv_ctx_free(void *p)
{
	struct recv_ctx *ctx = p;

	if (!ctx)
		return;
	if (ctx->fd >= 0)
		close(ctx->fd);
	free(ctx->vm);
	free(ctx);
}

/* The reader's input: the descriptor, polled so that a stopping agent
 * (SIGTERM) and a silent sender end the receive instead of a blocked read. */
static ssize_t fd_read(void *userdata, void *buf, size_t len)
{
	struct recv_ctx *ctx = userdata;
	uint64_t idle_since = dmr_now_usec();

	if (ctx->peek_off < ctx->peek_len) {
		size_t n = ctx->peek_len - ctx->peek_off;

		if (n > len)
			n = len;
		memcpy(buf, ctx->peek + ctx->peek_off, n);
		ctx->peek_off += n;
		return (ssize_t)n;
	}
	for (;;) {
		struct pollfd pfd = { .fd = ctx->fd, .events = POLLIN };
		ssize_t n;
		int q;

		if (ctx->a->stopping)
			return -ECANCELED;
		q = poll(&pfd, 1, RECV_POLL_MS);
		if (q < 0 && errno != EINTR)
			return dmr_negerrno();
		if (q <= 0) {
			if (dmr_now_usec() - idle_since > RECV_IDLE_USEC)
				return -ETIMEDOUT;
			continue;
		}
		n = read(ctx->fd, buf, len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return dmr_negerrno();
		ctx->bytes_in += (uint64_t)n;
		return n;
	}
}

/* A stream error as the job's: corrupt, truncated or trailing input is
 * the stream's fault (32773), with the reader's line. */
static int stream_fail(struct dmr_job *job, struct dmr_stream_reader *rd, int r)
{
	/* NULL: why this thread's dmr_stream_reader_new failed. */
	const char *why = dmr_stream_reader_error(rd);

	switch (r) {
	case -EBADMSG:
		dmr_job_set_error(job, DMR_RC_INVALID_PARAMETER, "the stream is corrupt: %s",
				  why ? why : "bad record");
		return -EINVAL;
	case -ENODATA:
		dmr_job_set_error(job, DMR_RC_INVALID_PARAMETER, "the stream is truncated: %s",
				  why ? why : "input ended early");
		return -EINVAL;
	case -EPROTONOSUPPORT:
		dmr_job_set_error(job, DMR_RC_NOT_SUPPORTED, "%s (this agent reads version %u)",
				  why ? why : "a newer stream format", DMR_STREAM_VERSION);
		return -EOPNOTSUPP;
	case -ECANCELED:
		dmr_job_set_error(job, DMR_RC_FAILED, "the agent is stopping: receive rolled back");
		return r;
	case -ETIMEDOUT:
		dmr_job_set_error(job, DMR_RC_TIMEOUT, "no data from the sender for %llu s",
				  (unsigned long long)(RECV_IDLE_USEC / 1000000));
		return r;
	default:
		return dmr_job_fail(job, r, "cannot read the stream");
	}
}

/* What every field of a header must also be for the catalog: names as
 * the agent's (dm names are made of them), sizes within its bounds. */
static int header_fits_catalog(const struct dmr_stream_header *h, char **ret_why)
{
	if (dmr_name_obj_valid(h->vm, DMR_OBJ_NAME_MAX) < 0)
		return asprintf(ret_why, "the stream's VM name is not a valid name here") < 0 ?
		       -ENOMEM : -EINVAL;
	if (h->n_disks == 0 || h->n_disks > DMR_VM_DISKS_MAX)
		return asprintf(ret_why, "the stream has %" PRIu32 " disks", h->n_disks) < 0 ?
		       -ENOMEM : -EINVAL;
	for (uint32_t i = 0; i < h->n_disks; i++) {
		if (dmr_name_obj_valid(h->disks[i].name, DMR_OBJ_NAME_MAX) < 0)
			return asprintf(ret_why, "the stream's disk %" PRIu32 " has an invalid name",
					i) < 0 ? -ENOMEM : -EINVAL;
		if (h->disks[i].size_bytes == 0 || h->disks[i].size_bytes % 512 ||
		    h->disks[i].size_bytes > DMR_SIZE_MAX)
			return asprintf(ret_why, "the stream's disk %s has a bad size %" PRIu64,
					h->disks[i].name, h->disks[i].size_bytes) < 0 ? -ENOMEM : -EINVAL;
	}
	return 0;
}

/* A new replica VM as the stream's header describes it: no live volume
 * (thin_id 0), importing until its first point is recorded. */
static int replica_new(const struct dmr_stream_header *h, struct dmr_vm **ret_vm)
{
	_cleanup_(dmr_vm_freep) struct dmr_vm *vm = calloc(1, sizeof(*vm));

	if (!vm || !(vm->name = strdup(h->vm)) || !(vm->backend = strdup("thin")) ||
	    !(vm->disks = calloc(h->n_disks, sizeof(*vm->disks))))
		return -ENOMEM;
	snprintf(vm->uuid, sizeof(vm->uuid), "%s", h->vm_uuid);
	vm->role = DMR_VM_REPLICA;
	vm->state = DMR_VM_REPLICATING;
	vm->next_point_id = 1;
	vm->importing = true;
	for (uint32_t i = 0; i < h->n_disks; i++) {
		if (!(vm->disks[i].name = strdup(h->disks[i].name)))
			return -ENOMEM;
		vm->n_disks = i + 1;
		vm->disks[i].size_bytes = h->disks[i].size_bytes;
	}
	*ret_vm = DMR_TAKE_PTR(vm);
	return 0;
}

/* ids[0..n) into vm->doomed (caller holds reg->lock). */
static int doomed_add(struct dmr_vm *vm, const uint32_t *ids, size_t n)
{
	uint32_t *d = realloc(vm->doomed, (vm->n_doomed + n) * sizeof(*d));

	if (!d)
		return -ENOMEM;
	vm->doomed = d;
	memcpy(vm->doomed + vm->n_doomed, ids, n * sizeof(*ids));
	vm->n_doomed += n;
	return 0;
}

/* ids[0..n) out of vm->doomed, in memory only (caller holds reg->lock). */
static void doomed_drop(struct dmr_vm *vm, const uint32_t *ids, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < vm->n_doomed; i++) {
		bool ours = false;

		for (size_t j = 0; j < n && !ours; j++)
			ours = vm->doomed[i] == ids[j];
		if (!ours)
			vm->doomed[k++] = vm->doomed[i];
	}
	vm->n_doomed = k;
}

/* Step 2: the ids recorded before their volumes exist.  *ret_vm is the
 * VM (made here if *ret_created). */
static int record_intent(struct recv_ctx *ctx, const struct dmr_stream_header *h,
			 uint64_t free_bytes, uint32_t *ids, uint64_t *ret_base,
			 struct dmr_vm **ret_vm, bool *ret_created)
{
	struct dmr_registry *reg = ctx->reg;
	_cleanup_(dmr_vm_freep) struct dmr_vm *fresh = NULL;
	_cleanup_free_ char *why = NULL;
	struct dmr_vm *vm;
	uint64_t base = 0;
	int r;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	r = dmr_receive_check(h, ctx->vm, vm, free_bytes, &base, &why);
	if (r < 0) {
		pthread_mutex_unlock(&reg->lock);
		dmr_job_set_error(ctx->job, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
		return r;
	}
	r = dmr_reg_alloc_vol_ids(reg, h->n_disks, ids);
	if (r == 0 && !vm) {
		r = replica_new(h, &fresh);
		if (r == 0)
			r = doomed_add(fresh, ids, h->n_disks);
		if (r == 0 && (r = dmr_reg_vm_insert(reg, fresh)) == 0)
			vm = DMR_TAKE_PTR(fresh);
		if (r == 0 && (r = dmr_reg_vm_save(reg, vm)) < 0)
			(void)dmr_reg_vm_delete(reg, vm->name);
		*ret_created = true;
	} else if (r == 0) {
		r = doomed_add(vm, ids, h->n_disks);
		if (r == 0 && (r = dmr_reg_vm_save(reg, vm)) < 0) {
			doomed_drop(vm, ids, h->n_disks);
			(void)dmr_reg_vm_save(reg, vm);
		}
		*ret_created = false;
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return dmr_job_fail(ctx->job, r, "cannot record the receive");
	*ret_base = base;
	*ret_vm = vm;
	return 0;
}

/* Step 5: the point, with its volumes, in one save. */
static int record_point(struct recv_ctx *ctx, struct dmr_vm *vm, const struct dmr_stream_header *h,
			const uint32_t *ids, uint64_t *ret_id)
{
	struct dmr_registry *reg = ctx->reg;
	struct dmr_point *np, *pt;
	size_t n = vm->n_disks;
	bool was_importing = vm->importing;
	int r;

	pthread_mutex_lock(&reg->lock);
	np = realloc(vm->points, (vm->n_points + 1) * sizeof(*vm->points));
	if (!np) {
		pthread_mutex_unlock(&reg->lock);
		return -ENOMEM;
	}
	vm->points = np;
	pt = &vm->points[vm->n_points];
	memset(pt, 0, sizeof(*pt));
	pt->id = vm->next_point_id;
	snprintf(pt->uuid, sizeof(pt->uuid), "%s", h->point_uuid);
	pt->created_usec = h->created_usec;
	pt->application = h->application;
	pt->valid = true;
	pt->label = strdup(h->label);
	pt->vol_ids = malloc(n * sizeof(uint32_t));
	if (!pt->label || !pt->vol_ids) {
		free(pt->label);
		free(pt->vol_ids);
		pthread_mutex_unlock(&reg->lock);
		return -ENOMEM;
	}
	memcpy(pt->vol_ids, ids, n * sizeof(uint32_t));
	vm->n_points++;
	vm->next_point_id++;
	doomed_drop(vm, ids, n);
	vm->importing = false;
	vm->last_received_usec = dmr_realtime_usec();
	r = dmr_reg_vm_save(reg, vm);
	if (r < 0 && r != -DMR_E_NOT_DURABLE) {
		/* The file still lists the ids as doomed: memory goes back to
		 * that, and the caller removes the volumes. */
		dmr_vm_point_drop(vm, vm->n_points - 1);
		vm->next_point_id--;
		(void)doomed_add(vm, ids, n);
		vm->importing = was_importing;
	} else {
		/* Not durable: the file holds the point; a power loss may
		 * bring back the doomed ids, and recovery then removes the
		 * volumes: the point is lost, never half there. */
		r = 0;
		*ret_id = pt->id;
	}
	pthread_mutex_unlock(&reg->lock);
	return r;
}

struct writers {
	size_t n;
	struct dmr_xfer_writer **w;
};

static void writers_abort(struct writers *ws)
{
	for (size_t i = 0; ws->w && i < ws->n; i++)
		dmr_xfer_writer_abort(ws->w[i]);
	free(ws->w);
	ws->w = NULL;
}

/* Steps 3 and 4. */
static int write_stream(struct recv_ctx *ctx, struct dmr_stream_reader *rd, struct dmr_vm *vm,
			uint64_t base, const uint32_t *ids, bool *ret_gone)
{
	const struct dmr_backend *be = dmr_backend_of(vm);
	const struct dmr_stream_header *h = dmr_stream_reader_header(rd);
	_cleanup_free_ char (*paths)[DMR_DM_PATH_SIZE] = calloc(vm->n_disks, sizeof(*paths));
	struct writers ws = { .n = vm->n_disks };
	uint64_t t0 = dmr_now_usec(), written = 0;
	bool first = true;
	int r;

	if (!paths || !(ws.w = calloc(ws.n, sizeof(*ws.w))))
		return dmr_job_fail(ctx->job, -ENOMEM, "cannot receive");
	r = dmr_test_fail("receive:volumes");
	if (r == 0)
		r = be->receive_make(ctx->reg, vm, base, ids, paths);
	if (r < 0) {
		free(ws.w);
		return dmr_job_fail(ctx->job, r, "cannot make the point's volumes");
	}
	dmr_job_add_step(ctx->job, "volumes", dmr_now_usec() - t0);
	dmr_test_hook("receive:volumes");
	for (size_t i = 0; r == 0 && i < ws.n; i++) {
		r = dmr_xfer_writer_open(paths[i], vm->disks[i].size_bytes, RECV_QUEUE_DEPTH, &ws.w[i]);
		if (r < 0)
			dmr_job_fail(ctx->job, r, "cannot open %s for disk %s", paths[i],
				     vm->disks[i].name);
	}

	t0 = dmr_now_usec();
	while (r == 0) {
		struct dmr_stream_rec rec;

		r = dmr_stream_read_next(rd, &rec);
		if (r <= 0) {
			if (r < 0)
				stream_fail(ctx->job, rd, r);
			break;
		}
		r = 0;
		/* SIGTERM: the job rolls back rather than finish a long stream. */
		if (ctx->a->stopping) {
			r = stream_fail(ctx->job, NULL, -ECANCELED);
			break;
		}
		if (rec.disk >= ws.n) {
			r = dmr_job_fail(ctx->job, -EINVAL, "a record names disk %" PRIu32, rec.disk);
			break;
		}
		if (rec.type == DMR_STREAM_DATA)
			r = dmr_xfer_write(ws.w[rec.disk], rec.offset, rec.data, rec.length);
		else if (base)
			/* An incremental's zero and unmapped extents overwrite
			 * what the base snapshot holds there. */
			r = dmr_xfer_zero(ws.w[rec.disk], rec.offset, rec.length);
		/* A full stream's new volume reads as zeros already. */
		if (r < 0) {
			dmr_job_fail(ctx->job, r, "cannot write disk %s", vm->disks[rec.disk].name);
			break;
		}
		if (rec.type == DMR_STREAM_DATA) {
			written += rec.length;
			if (h->data_bytes)
				dmr_job_set_percent(ctx->job, (unsigned)(written * 95 / h->data_bytes));
		}
		if (first) {
			first = false;
			dmr_test_hook("receive:data");
		}
	}
	assert(r <= 0);
	if (r == 0) {
		dmr_test_hook("receive:trailer");
		/* Every writer closed (and synced), even after a failing one. */
		for (size_t i = 0; i < ws.n; i++) {
			int q = dmr_xfer_writer_close(ws.w[i]);

			ws.w[i] = NULL;
			if (q < 0 && r == 0)
				r = dmr_job_fail(ctx->job, q, "cannot write disk %s durably",
						 vm->disks[i].name);
		}
	}
	writers_abort(&ws);
	if (r == 0) {
		dmr_job_add_step(ctx->job, "data", dmr_now_usec() - t0);
		t0 = dmr_now_usec();
		r = be->receive_done(ctx->reg, vm, ids);
		if (r < 0)
			dmr_job_fail(ctx->job, r, "cannot take down the received volumes' devices");
		else
			dmr_job_add_step(ctx->job, "devices-down", dmr_now_usec() - t0);
	}
	if (r < 0) {
		int q = be->remove(ctx->reg, vm, vm->n_disks, ids);

		if (q < 0)
			log_error("VM %s: the failed receive's volumes are not removed (%s): "
				  "the next start removes them", vm->name, strerror(-q));
		*ret_gone = q == 0;
		return r;
	}
	log_info("VM %s: received %" PRIu64 " data bytes", vm->name, written);
	return 0;
}

/* Put the catalog back after a failure: the ids out of doomed if their
 * volumes are gone (volumes_gone), a VM the receive created deleted
 * (left importing if its volumes are not gone: recovery removes both). */
static void unrecord(struct recv_ctx *ctx, struct dmr_vm *vm, bool created, const uint32_t *ids,
		     bool volumes_gone)
{
	struct dmr_registry *reg = ctx->reg;

	if (!volumes_gone)
		return;
	pthread_mutex_lock(&reg->lock);
	if (created)
		(void)dmr_reg_vm_delete(reg, vm->name);
	else
		(void)dmr_reg_doomed_forget(reg, vm, ids, vm->n_disks);
	pthread_mutex_unlock(&reg->lock);
}

/* Read up to n more bytes into the peek buffer (fewer only at the end of
 * the input): how many it holds, or -errno. */
static int peek_fill(struct recv_ctx *ctx, size_t want)
{
	while (ctx->peek_len < want) {
		ssize_t k;

		ctx->peek_off = ctx->peek_len; /* fd_read reads the descriptor */
		k = fd_read(ctx, ctx->peek + ctx->peek_len, want - ctx->peek_len);
		if (k < 0)
			return (int)k;
		if (k == 0)
			break;
		ctx->peek_len += (size_t)k;
	}
	ctx->peek_off = 0;
	return (int)ctx->peek_len;
}

/* A hash request (common/hashes.h) instead of a stream: the point it
 * names is picked here, under this job's busy lock, and the job ends with
 * "hash_request" set: the client then asks HashReplicaPoint for that
 * point's hashes on its stdout (a receive's descriptor is its stdin).
 * 1: it was one (the job's outcome set), 0: a stream (the bytes peeked
 * are read by the stream reader first), -errno. */
static int peek_request(struct recv_ctx *ctx)
{
	struct dmr_registry *reg = ctx->reg;
	struct dmr_hash_request q;
	_cleanup_free_ char *why = NULL;
	const char *bad = NULL;
	uint64_t plen = 0, id = 0;
	struct dmr_vm *vm;
	uint8_t extra;
	int r;

	r = peek_fill(ctx, DMR_HASHREQ_PEEK);
	if (r < 0)
		return stream_fail(ctx->job, NULL, r);
	if (!dmr_hashreq_is(ctx->peek, ctx->peek_len, &plen))
		return 0;
	if (plen > DMR_HASHREQ_MAX - DMR_HASHREQ_PEEK - 8) {
		dmr_job_set_error(ctx->job, DMR_RC_INVALID_PARAMETER,
				  "the hash request is corrupt: payload length out of bounds");
		return -EINVAL;
	}
	r = peek_fill(ctx, DMR_HASHREQ_PEEK + (size_t)plen + 8);
	if (r < 0)
		return stream_fail(ctx->job, NULL, r);
	/* Nothing may follow the request. */
	ctx->peek_off = ctx->peek_len;
	r = (int)fd_read(ctx, &extra, 1);
	if (r < 0)
		return stream_fail(ctx->job, NULL, r);
	r = r > 0 ? -EBADMSG : dmr_hashreq_parse(ctx->peek, ctx->peek_len, &q, &bad);
	if (r == -EPROTONOSUPPORT) {
		dmr_job_set_error(ctx->job, DMR_RC_NOT_SUPPORTED, "hash request: %s", bad);
		return -EOPNOTSUPP;
	}
	if (r < 0) {
		dmr_job_set_error(ctx->job, DMR_RC_INVALID_PARAMETER, "the hash request is corrupt: %s",
				  bad ? bad : "bytes after the request");
		return -EINVAL;
	}
	if (!dmr_streq(q.vm, ctx->vm)) {
		dmr_job_set_error(ctx->job, DMR_RC_INVALID_PARAMETER,
				  "the hash request is of VM %s, not %s", q.vm, ctx->vm);
		return -EINVAL;
	}
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	if (!vm)
		r = dmr_why_set(&why, -ENOENT, "no VM named %s here to hash", ctx->vm);
	else if (!dmr_streq(vm->uuid, q.vm_uuid))
		r = dmr_why_set(&why, -DMR_E_STATE, "the hash request is of VM uuid %s; VM %s here "
				"is uuid %s", q.vm_uuid, ctx->vm, vm->uuid);
	else
		r = dmr_hashes_pick(vm, q.point_uuid, &id, &why);
	if (r == 0) {
		const struct dmr_point *pt = dmr_vm_point_find(vm, id);

		dmr_job_set_result(ctx->job, "hash_request", json_object_new_string(pt->uuid));
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_job_set_error(ctx->job, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
		return r;
	}
	dmr_job_add_step(ctx->job, "hash-request", 0);
	dmr_job_set_percent(ctx->job, 100);
	return 1;
}

static int receive_job(struct dmr_job *job, void *userdata)
{
	struct recv_ctx *ctx = userdata;
	struct dmr_registry *reg = ctx->reg;
	const struct dmr_backend *thin = dmr_backend_named("thin");
	struct dmr_stream_reader *rd = NULL;
	const struct dmr_stream_header *h;
	_cleanup_free_ uint32_t *ids = NULL;
	_cleanup_free_ char *why = NULL;
	struct dmr_vm *vm = NULL;
	uint64_t base = 0, free_bytes = 0, point = 0, t0 = dmr_now_usec();
	bool created = false, gone = false;
	size_t dropped = 0;
	int r;

	ctx->job = job;
	r = peek_request(ctx);
	if (r != 0)
		return r < 0 ? r : 0;
	r = dmr_stream_reader_new(fd_read, ctx, &rd);
	if (r < 0) {
		r = stream_fail(job, rd, r);
		goto out;
	}
	h = dmr_stream_reader_header(rd);
	dmr_job_add_step(job, "header", dmr_now_usec() - t0);
	if ((r = header_fits_catalog(h, &why)) < 0) {
		dmr_job_set_error(job, DMR_RC_INVALID_PARAMETER, "%s", why ? why : strerror(-r));
		goto out;
	}
	/* Replicas live in the pool: without it nothing is received. */
	if (!reg->pool) {
		_cleanup_free_ char *down = NULL;

		r = reg->have_pool ? dmr_pool_down_why(reg, &down) :
				     dmr_why_set(&down, -DMR_E_STATE, "no pool: create one with "
						 "'dmrep pool create'");
		dmr_job_set_error(job, dmr_rc_from_errno(r), "%s", down ? down : strerror(-r));
		goto out;
	}
	if (!thin || thin->add_room(reg, &free_bytes) < 0) {
		dmr_job_set_error(job, DMR_RC_UNAVAILABLE, "the pool is not active");
		r = -ENODEV;
		goto out;
	}
	if (!(ids = calloc(h->n_disks, sizeof(*ids)))) {
		r = dmr_job_fail(job, -ENOMEM, "cannot receive");
		goto out;
	}
	r = dmr_test_fail("receive:record");
	if (r == 0)
		r = record_intent(ctx, h, free_bytes, ids, &base, &vm, &created);
	else
		dmr_job_fail(job, r, "cannot record the receive");
	if (r < 0)
		goto out;
	dmr_test_hook("receive:recorded");

	r = write_stream(ctx, rd, vm, base, ids, &gone);
	if (r < 0) {
		unrecord(ctx, vm, created, ids, gone);
		goto out;
	}
	t0 = dmr_now_usec();
	r = record_point(ctx, vm, h, ids, &point);
	if (r < 0) {
		int q = dmr_backend_of(vm)->remove(reg, vm, vm->n_disks, ids);

		dmr_job_fail(job, r, "cannot record the point");
		unrecord(ctx, vm, created, ids, q == 0);
		goto out;
	}
	dmr_job_add_step(job, "point", dmr_now_usec() - t0);
	dmr_test_hook("receive:point-saved");
	/* A replica keeps what its own retention says (vm set). */
	if (dmr_retention_apply(reg, vm, &dropped) < 0)
		log_warning("VM %s: retention after the receive failed", vm->name);
	dmr_job_set_result(job, "point", json_object_new_int64((int64_t)point));
	dmr_job_set_result(job, "uuid", json_object_new_string(h->point_uuid));
	dmr_job_set_result(job, "bytes", json_object_new_int64((int64_t)ctx->bytes_in));
	dmr_job_set_percent(job, 100);
	log_info("VM %s: point %" PRIu64 " (%s) received, %" PRIu64 " stream bytes", vm->name, point,
		 h->point_uuid, ctx->bytes_in);
out:
	dmr_stream_reader_free(rd);
	/* The pool failing under the write says what to do better than the
	 * errno the write met. */
	if (r < 0)
		r = dmr_pool_job_explain(reg, job, r);
	return r;
}

int dmr_replica_receive_start(struct dmr_agent *a, const char *vm, int fd, uint64_t *ret_job,
			      char **ret_why)
{
	struct recv_ctx *ctx;
	int r;

	assert(a && vm && ret_job && ret_why);
	if (dmr_name_obj_valid(vm, DMR_OBJ_NAME_MAX) < 0) {
		if (fd >= 0)
			close(fd);
		*ret_why = strdup("invalid VM name");
		return -EINVAL;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx || !(ctx->vm = strdup(vm))) {
		free(ctx);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	ctx->a = a;
	ctx->reg = a->reg;
	ctx->fd = fd;
	/* The VM's one-operation lock, also for a VM not here yet: its name
	 * is then held until the first point makes it (or it goes). */
	r = dmr_vm_busy_acquire(a, vm);
	if (r < 0) {
		if (r == -EBUSY && asprintf(ret_why, "VM %s is busy with another operation", vm) < 0)
			*ret_why = NULL;
		recv_ctx_free(ctx);
		return r;
	}
	r = dmr_job_start(a, "ReceiveReplicationPoint", vm, receive_job, ctx, recv_ctx_free, ret_job);
	if (r < 0) {
		dmr_vm_busy_release(a, vm);
		recv_ctx_free(ctx);
	}
	return r;
}
