/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "agent/engine/monitor.h"
#include "agent/store/registry.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/util.h"
#include "dm/name.h"
#include "snapshots/pool.h"

struct dmr_monitor {
	struct dmr_agent *agent;
	unsigned interval_s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct dmr_pool_watch pool;
	struct dmr_fs_watch fs[2]; /* under the pool's data, metadata file */
};

void dmr_pool_watch_init(struct dmr_pool_watch *w)
{
	*w = (struct dmr_pool_watch){ .mode = -1 };
}

const char *dmr_pool_watch_mode_name(int mode)
{
	switch (mode) {
	case 0: return "read-write";
	case 1: return "out of data space (writes to unprovisioned blocks fail)";
	case 2: return "read-only (metadata trouble: no new points, no failover overlays)";
	case 3: return "failed";
	}
	return "unknown";
}

static unsigned pct(uint64_t used, uint64_t total)
{
	return total ? (unsigned)(used * 100 / total) : 0;
}

/* Warn once at DMR_MONITOR_WARN_PCT; say it again only after use fell
 * below DMR_MONITOR_REARM_PCT, so a pool hovering at the mark does not
 * flood the log. */
static bool crossed(bool *warned, unsigned p)
{
	if (*warned) {
		if (p < DMR_MONITOR_REARM_PCT)
			*warned = false;
		return false;
	}
	if (p < DMR_MONITOR_WARN_PCT)
		return false;
	*warned = true;
	return true;
}

unsigned dmr_pool_watch_update(struct dmr_pool_watch *w, const struct dmr_thin_pool_status *st,
			       unsigned *ret_data_pct, unsigned *ret_meta_pct)
{
	unsigned ev = 0, dp, mp;
	int mode;

	dp = pct(st->used_data_blocks, st->total_data_blocks);
	mp = pct(st->used_meta_blocks, st->total_meta_blocks);
	if (crossed(&w->data_warned, dp))
		ev |= DMR_WATCH_DATA_HIGH;
	if (crossed(&w->meta_warned, mp))
		ev |= DMR_WATCH_META_HIGH;
	mode = st->fail ? 3 : st->read_only ? 2 : st->out_of_data_space ? 1 : 0;
	/* The first reading sets the baseline; only a pool found in
	 * trouble is worth a line then. */
	if (mode != w->mode && (w->mode >= 0 || mode != 0))
		ev |= DMR_WATCH_MODE;
	w->mode = mode;
	*ret_data_pct = dp;
	*ret_meta_pct = mp;
	return ev;
}

static void watch_pool(struct dmr_monitor *m)
{
	struct dmr_registry *reg = m->agent->reg;
	struct dmr_thin_pool_status st;
	struct dmr_pool *pool;
	unsigned ev, dp, mp;
	int r;

	/* The pool, once made or activated, lives as long as the agent. */
	pthread_mutex_lock(&reg->lock);
	pool = reg->pool;
	pthread_mutex_unlock(&reg->lock);
	if (!pool)
		return;
	r = dmr_pool_status(pool, &st);
	if (r < 0) {
		log_debug("monitor: pool status: %s", strerror(-r));
		return;
	}
	ev = dmr_pool_watch_update(&m->pool, &st, &dp, &mp);
	if (ev & DMR_WATCH_DATA_HIGH)
		log_warning("pool data is %u%% full (%" PRIu64 " of %" PRIu64 " blocks): extend it "
			    "or remove points before writes fail", dp, st.used_data_blocks,
			    st.total_data_blocks);
	if (ev & DMR_WATCH_META_HIGH)
		log_warning("pool metadata is %u%% full (%" PRIu64 " of %" PRIu64 " blocks)", mp,
			    st.used_meta_blocks, st.total_meta_blocks);
	if (ev & DMR_WATCH_MODE) {
		if (m->pool.mode == 0)
			log_notice("pool is read-write again");
		else
			log_error("pool is %s", dmr_pool_watch_mode_name(m->pool.mode));
	}
}

unsigned dmr_fs_watch_update(struct dmr_fs_watch *w, uint64_t free_bytes, uint64_t grow_bytes)
{
	if (!w->warned && free_bytes < grow_bytes) {
		w->warned = true;
		return DMR_WATCH_FS_LOW;
	}
	if (w->warned && free_bytes >= grow_bytes + grow_bytes / 16) {
		w->warned = false;
		return DMR_WATCH_FS_OK;
	}
	return 0;
}

/* The filesystems under the pool's files (a pool on block devices has
 * none); two files on one filesystem are counted together, once. */
static void watch_pool_fs(struct dmr_monitor *m)
{
	struct dmr_registry *reg = m->agent->reg;
	/* Two locals, not an array: _cleanup_free_ on an array frees only
	 * its first element. */
	_cleanup_free_ char *data = NULL, *meta = NULL;
	uint64_t grow[2] = { 0, 0 }, fs[2] = { 0, 0 };
	const char *path[2];

	pthread_mutex_lock(&reg->lock);
	if (reg->pool && reg->pool_spec.data_path && reg->pool_spec.meta_path) {
		data = strdup(reg->pool_spec.data_path);
		meta = strdup(reg->pool_spec.meta_path);
	}
	pthread_mutex_unlock(&reg->lock);
	path[0] = data;
	path[1] = meta;
	if (!path[0] || !path[1])
		return;
	for (size_t k = 0; k < 2; k++)
		if (dmr_pool_file_growth(path[k], 0, &grow[k], &fs[k]) < 0)
			fs[k] = 0;
	if (fs[0] && fs[0] == fs[1]) {
		grow[0] += grow[1];
		fs[1] = 0;
	}
	for (size_t k = 0; k < 2; k++) {
		struct statvfs sv;
		uint64_t avail;
		unsigned ev;

		if (!fs[k] || statvfs(path[k], &sv) < 0)
			continue;
		avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		ev = dmr_fs_watch_update(&m->fs[k], avail, grow[k]);
		if (ev & DMR_WATCH_FS_LOW)
			log_warning("the filesystem of %s has %" PRIu64 " MiB free, less than the %" PRIu64
				    " MiB the pool's sparse files may still grow by: once it is full, "
				    "writes to new blocks fail and the pool turns read-only; free space "
				    "there", path[k], avail >> 20, grow[k] >> 20);
		if (ev & DMR_WATCH_FS_OK)
			log_notice("the filesystem of %s can hold the pool's files again (%" PRIu64
				   " MiB free, %" PRIu64 " MiB to grow)", path[k], avail >> 20,
				   grow[k] >> 20);
	}
}

void dmr_monitor_refresh(struct dmr_registry *reg, const char *vm_name)
{
	const struct dmr_backend *be = NULL;
	struct dmr_vm *vm;

	assert(reg && vm_name);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	if (vm)
		be = dmr_backend_of(vm);
	pthread_mutex_unlock(&reg->lock);
	/* By name: the backend finds the VM again under its own lock. */
	if (be)
		be->refresh(reg, vm_name);
}

static void watch_vms(struct dmr_monitor *m)
{
	struct dmr_registry *reg = m->agent->reg;
	char (*names)[DMR_OBJ_NAME_MAX + 1] = NULL;
	size_t n = 0;

	pthread_mutex_lock(&reg->lock);
	if (reg->n_vms)
		names = calloc(reg->n_vms, sizeof(*names));
	for (size_t v = 0; names && v < reg->n_vms; v++)
		if (strlen(reg->vms[v]->name) <= DMR_OBJ_NAME_MAX)
			strcpy(names[n++], reg->vms[v]->name);
	pthread_mutex_unlock(&reg->lock);
	/* Each VM by name: one removed meanwhile is simply not found. */
	for (size_t i = 0; i < n; i++)
		dmr_monitor_refresh(reg, names[i]);
	free(names);
}

static void *monitor_main(void *p)
{
	struct dmr_monitor *m = p;
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		pthread_mutex_unlock(&m->lock);
		watch_pool(m);
		watch_pool_fs(m);
		watch_vms(m);
		pthread_mutex_lock(&m->lock);
		at.tv_sec += m->interval_s;
		while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &at) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int dmr_monitor_start(struct dmr_agent *a, unsigned interval_s, struct dmr_monitor **ret_mon)
{
	pthread_condattr_t ca;
	struct dmr_monitor *m;
	int r;

	if (!interval_s)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->agent = a;
	m->interval_s = interval_s;
	dmr_pool_watch_init(&m->pool);
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&m->thread, NULL, monitor_main, m);
	if (r != 0) {
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return -r;
	}
	*ret_mon = m;
	return 0;
}

void dmr_monitor_stop(struct dmr_monitor *m)
{
	if (!m)
		return;
	dmr_threads_stop(&m->lock, &m->cond, &m->stop);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
