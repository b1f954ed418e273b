/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/hashes.c - block hashes of a point, and the HashReplicaPoint
 * job (agent/engine/hashes.h).
 *
 * Reads only, as a send: every disk's mapped blocks (the backend's
 * point_extents against no base), the point's volume up as a read-only
 * hidden device, read with O_DIRECT (snapshots/xfer.h), the device
 * removed.  A crash leaves what a killed send leaves (dmr_replica_recover
 * removes it).
 */
#include "agent/engine/hashes.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/util.h"
#include "snapshots/xfer.h"

/* The XXH3-64 of len zero bytes, streamed (a block may be 1 GiB). */
static uint64_t zero_hash(uint64_t len)
{
	static const uint8_t zeros[65536];
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	if (!st)
		return 0;
	XXH3_64bits_reset(st);
	while (len > 0) {
		size_t n = len > sizeof(zeros) ? sizeof(zeros) : (size_t)len;

		XXH3_64bits_update(st, zeros, n);
		len -= n;
	}
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

struct hash_ctx {
	struct dmr_agent *a;
	XXH3_state_t *st;
	uint64_t *h;
	uint64_t n, block, size;
	uint64_t cur;           /* the block being hashed, UINT64_MAX: none */
};

static void hash_feed(struct hash_ctx *k, uint64_t off, const void *buf, uint64_t len)
{
	static const uint8_t zeros[65536];

	while (len > 0) {
		uint64_t blk = off / k->block, end = (blk + 1) * k->block, take;

		if (end > k->size)
			end = k->size;
		if (blk >= k->n)
			return; /* past the disk: the xfer cuts there already */
		if (blk != k->cur) {
			XXH3_64bits_reset(k->st);
			k->cur = blk;
		}
		take = end - off < len ? end - off : len;
		if (buf) {
			XXH3_64bits_update(k->st, buf, (size_t)take);
			buf = (const uint8_t *)buf + take;
		} else {
			for (uint64_t z = take; z > 0;) {
				size_t m = z > sizeof(zeros) ? sizeof(zeros) : (size_t)z;

				XXH3_64bits_update(k->st, zeros, m);
				z -= m;
			}
		}
		off += take;
		len -= take;
		if (off == end) {
			k->h[blk] = XXH3_64bits_digest(k->st);
			k->cur = UINT64_MAX;
		}
	}
}

static int on_chunk(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct hash_ctx *k = userdata;

	if (k->a->stopping)
		return -ECANCELED;
	hash_feed(k, offset, buf, len);
	return 0;
}

int dmr_hashes_of_point(struct dmr_agent *a, struct dmr_job *job, const char *name,
			uint64_t point, struct dmr_hashes *ret)
{
	struct dmr_registry *reg = a->reg;
	const struct dmr_backend *be;
	struct hash_ctx k = { .a = a };
	uint64_t total = 0, zh = 0, zt = 0, t0 = dmr_now_usec();
	struct dmr_vm *vm;
	struct dmr_point *pt;
	int r = 0;

	assert(a && job && name && ret);
	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	pt = vm ? dmr_vm_point_find(vm, point) : NULL;
	if (pt) {
		snprintf(ret->vm, sizeof(ret->vm), "%s", vm->name);
		snprintf(ret->uuid, sizeof(ret->uuid), "%s", pt->uuid);
		ret->n_disks = vm->n_disks > DMR_STREAM_DISKS_MAX ? 0 : (uint32_t)vm->n_disks;
		for (uint32_t i = 0; i < ret->n_disks; i++) {
			snprintf(ret->disks[i].name, sizeof(ret->disks[i].name), "%s",
				 vm->disks[i].name);
			ret->disks[i].size_bytes = vm->disks[i].size_bytes;
		}
	}
	pthread_mutex_unlock(&reg->lock);
	/* The busy lock keeps vm and its points as they are from here. */
	if (!pt || !ret->n_disks)
		return dmr_job_fail(job, -ENOENT, "VM %s or its point %" PRIu64 " is gone", name, point);
	be = dmr_backend_of(vm);
	if (!be->point_extents || !be->point_read_up) {
		dmr_job_set_error(job, DMR_RC_NOT_SUPPORTED, "%s", be->stream_unsupported ?
				  be->stream_unsupported : "this VM's backend reads no points");
		return -EOPNOTSUPP;
	}
	k.st = XXH3_createState();
	if (!k.st)
		return dmr_job_fail(job, -ENOMEM, "cannot hash");
	for (uint32_t i = 0; i < ret->n_disks && r == 0; i++) {
		struct dmr_hash_disk *d = &ret->disks[i];
		_cleanup_free_ struct dmr_extent *ext = NULL;
		char path[DMR_DM_PATH_SIZE];
		uint64_t bb = 0;
		size_t n = 0;
		int q;

		r = be->point_extents(reg, vm, 0, point, i, &ext, &n, &bb);
		if (r < 0) {
			dmr_job_fail(job, r, "cannot read which blocks of disk %s are mapped", d->name);
			break;
		}
		if (ret->block_bytes && ret->block_bytes != bb) {
			r = dmr_job_fail(job, -EINVAL, "the pool's block size changed");
			break;
		}
		if (!ret->block_bytes) {
			ret->block_bytes = (uint32_t)bb;
			zh = zero_hash(bb);
		}
		d->n = dmr_hashes_blocks(d->size_bytes, bb);
		if (d->n > DMR_HASHES_BLOCKS_MAX - total) {
			dmr_job_set_error(job, DMR_RC_NOT_SUPPORTED, "the point has more than %llu "
					  "pool blocks: too many to hash in this version",
					  (unsigned long long)DMR_HASHES_BLOCKS_MAX);
			r = -EFBIG;
			break;
		}
		total += d->n;
		d->h = malloc(d->n * sizeof(*d->h) + 1);
		if (!d->h) {
			r = dmr_job_fail(job, -ENOMEM, "cannot hash");
			break;
		}
		/* Unmapped blocks read as zeros: hashed so without a read. */
		for (uint64_t b = 0; b < d->n; b++)
			d->h[b] = zh;
		if (d->size_bytes % bb) {
			zt = zero_hash(d->size_bytes % bb);
			d->h[d->n - 1] = zt;
		}
		if (n == 0)
			continue;
		r = be->point_read_up(reg, vm, point, i, path);
		if (r < 0) {
			dmr_job_fail(job, r, "cannot activate the point's volume of %s for reading",
				     d->name);
			break;
		}
		k.h = d->h;
		k.n = d->n;
		k.block = bb;
		k.size = d->size_bytes;
		k.cur = UINT64_MAX;
		r = dmr_xfer_read(path, ext, n, bb, 0, false, on_chunk, &k);
		q = be->point_read_down(reg, vm, point, i);
		if (q < 0)
			log_error("VM %s: cannot remove the device of point %" PRIu64 "'s %s: %s", name,
				  point, d->name, strerror(-q));
		if (r < 0)
			dmr_job_fail(job, r, "cannot read disk %s of point %" PRIu64, d->name, point);
	}
	XXH3_freeState(k.st);
	if (r < 0) {
		dmr_hashes_clear(ret);
		return r;
	}
	dmr_job_add_step(job, "hash", dmr_now_usec() - t0);
	log_info("VM %s: point %" PRIu64 " hashed: %" PRIu64 " blocks of %" PRIu32 " bytes in %.2f s",
		 name, point, total, ret->block_bytes, (double)(dmr_now_usec() - t0) / 1e6);
	return 0;
}

int dmr_hashes_pick(const struct dmr_vm *vm, const char *uuid, uint64_t *ret_id, char **ret_why)
{
	assert(vm && ret_id);
	for (size_t i = vm->n_points; i-- > 0;) {
		const struct dmr_point *pt = &vm->points[i];

		if (!pt->valid || pt->pending_tid)
			continue;
		if (uuid && uuid[0] && strcmp(pt->uuid, uuid) != 0)
			continue;
		*ret_id = pt->id;
		return 0;
	}
	if (uuid && uuid[0])
		return dmr_why_set(ret_why, -ENOENT, "VM %s has no valid point of uuid %s", vm->name,
				   uuid);
	return dmr_why_set(ret_why, -ENOENT, "VM %s has no valid point to hash", vm->name);
}

/* ---- HashReplicaPoint --------------------------------------------------- */

struct hjob {
	struct dmr_agent *a;
	char *vm;
	uint64_t point;
	int fd;
};

static void hjob_free(void *p)
{
	struct hjob *c = p;

	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->vm);
	free(c);
}

static int hjob_run(struct dmr_job *job, void *userdata)
{
	struct hjob *c = userdata;
	struct dmr_hashes *hs = calloc(1, sizeof(*hs));
	_cleanup_free_ char *buf = NULL;
	char sum_hex[17];
	uint64_t sum = 0;
	size_t len = 0;
	int r;

	if (!hs)
		return dmr_job_fail(job, -ENOMEM, "cannot hash");
	r = dmr_hashes_of_point(c->a, job, c->vm, c->point, hs);
	if (r == 0 && (r = dmr_hashes_format(hs, &buf, &len, &sum)) < 0)
		dmr_job_fail(job, r, "cannot format the hashes");
	if (r == 0 && (r = c->a->stopping ? -ECANCELED : dmr_write_all(c->fd, buf, len)) < 0)
		dmr_job_fail(job, r, "cannot write the hashes");
	if (r == 0) {
		snprintf(sum_hex, sizeof(sum_hex), "%016" PRIx64, sum);
		dmr_job_set_result(job, "point", json_object_new_int64((int64_t)c->point));
		dmr_job_set_result(job, "hashes_of", json_object_new_string(hs->uuid));
		dmr_job_set_result(job, "bytes", json_object_new_int64((int64_t)len));
		dmr_job_set_result(job, "checksum", json_object_new_string(sum_hex));
		dmr_job_set_percent(job, 100);
	}
	close(c->fd);
	c->fd = -1;
	dmr_hashes_clear(hs);
	free(hs);
	return r;
}

int dmr_hashes_start(struct dmr_agent *a, const char *name, const char *uuid, int fd,
		     uint64_t *ret_job, char **ret_why)
{
	_cleanup_close_ int fd_ = fd;
	struct dmr_registry *reg = a->reg;
	struct hjob *c = NULL;
	struct dmr_vm *vm;
	uint64_t point = 0;
	int r;

	assert(a && name && ret_job);
	r = dmr_vm_busy_acquire(a, name);
	if (r == -EBUSY)
		dmr_why_set(ret_why, 0, "VM %s is busy with another operation", name);
	if (r < 0)
		return r;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm)
		r = dmr_why_set(ret_why, -ENOENT, "no VM named %s", name);
	else
		r = dmr_hashes_pick(vm, uuid, &point, ret_why);
	pthread_mutex_unlock(&reg->lock);
	if (r == 0 && !(c = calloc(1, sizeof(*c))))
		r = -ENOMEM;
	if (r == 0 && !(c->vm = strdup(name))) {
		free(c);
		r = -ENOMEM;
	}
	if (r < 0) {
		dmr_vm_busy_release(a, name);
		return r;
	}
	c->a = a;
	c->point = point;
	c->fd = DMR_TAKE_FD(fd_);
	r = dmr_job_start(a, "HashReplicaPoint", name, hjob_run, c, hjob_free, ret_job);
	if (r < 0) {
		hjob_free(c);
		dmr_vm_busy_release(a, name);
		dmr_why_set(ret_why, 0, "cannot start the job: %s", strerror(-r));
	}
	return r;
}
