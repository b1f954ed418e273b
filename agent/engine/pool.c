/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreatePool's and GetPoolStatus's work (agent/engine/pool.h). */
#include "agent/engine/pool.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/statvfs.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "agent/engine/recovery.h"
#include "agent/engine/vm.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/name.h"
#include "dm/table.h"
#include "snapshots/delta.h"
#include "snapshots/ident.h"

#define MIB(b) ((b) >> 20)

/*
 * Can the filesystems under the pool's files hold them full?  Files on the
 * same filesystem add up.  Unless sparse: then refused (-ENOSPC) with the
 * numbers.  With sparse, *ret_warning (malloc()ed, or NULL when nothing
 * is overcommitted) says what happens when it fills.
 */
static int pool_room(const struct dmr_pool_spec *spec, char **ret_warning, char **ret_why)
{
	uint64_t meta_new = spec->meta_size ? spec->meta_size :
			    dmr_pool_default_meta_size(spec->data_size);
	uint64_t grow[2], fs[2], need, avail;
	const char *path[2] = { spec->data_path, spec->meta_path };
	struct statvfs sv;
	int r;

	*ret_warning = NULL;
	if ((r = dmr_pool_file_growth(path[0], spec->data_size, &grow[0], &fs[0])) < 0 ||
	    (r = dmr_pool_file_growth(path[1], meta_new, &grow[1], &fs[1])) < 0)
		return dmr_why_set(ret_why, -EINVAL, "cannot look at the pool's paths: %s",
				   strerror(-r));
	for (size_t k = 0; k < 2; k++) {
		_cleanup_free_ char *dir = NULL;
		char *slash;

		if (!fs[k] || (k == 1 && fs[1] == fs[0]))
			continue; /* a block device, or counted with the data */
		need = grow[k] + (k == 0 && fs[1] == fs[0] ? grow[1] : 0);
		dir = strdup(path[k]);
		if (!dir)
			return dmr_why_set(ret_why, -ENOMEM, "out of memory");
		/* A file still to be made: its directory's filesystem. */
		slash = strrchr(dir, '/');
		if (access(path[k], F_OK) < 0 && slash)
			slash[slash == dir] = '\0';
		if (statvfs(dir, &sv) < 0)
			return dmr_why_set(ret_why, -errno, "cannot read free space of %s: %s", dir,
					   strerror(errno));
		avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		if (need <= avail)
			continue;
		if (!spec->sparse)
			return dmr_why_set(ret_why, -ENOSPC,
					   "the filesystem of %s has %" PRIu64 " MiB free, the pool's "
					   "files need %" PRIu64 " MiB more: give smaller sizes, or "
					   "--sparse to overcommit it", path[k], MIB(avail), MIB(need));
		if (asprintf(ret_warning, "sparse pool: the filesystem of %s has %" PRIu64 " MiB "
			     "free, the pool's files may grow by %" PRIu64 " MiB; if it fills, writes "
			     "to new blocks fail, the pool turns read-only (needs_check) and no point "
			     "can be made", path[k], MIB(avail), MIB(need)) < 0)
			*ret_warning = NULL;
	}
	return 0;
}

int dmr_pool_make(struct dmr_registry *reg, struct dmr_pool_spec *spec, bool force,
		  char **ret_warning, char **ret_why)
{
	_cleanup_free_ char *what = NULL, *warning = NULL;
	const char *data = spec->data_path, *meta = spec->meta_path;
	struct dmr_pool *pool = NULL;
	int r;

	assert(reg);
	assert(spec);
	assert(ret_warning);
	assert(ret_why);
	if ((r = pool_room(spec, &warning, ret_why)) < 0)
		return r;
	r = dmr_pool_create(spec, force, &pool, &what);
	if (r == -EEXIST && what)
		return dmr_why_set(ret_why, -EINVAL,
				   "refusing to overwrite: found %s; use --force to override", what);
	if (r == -EBUSY)
		return dmr_why_set(ret_why, r, "the data or metadata device is in use");
	if (r == -EOPNOTSUPP)
		return dmr_why_set(ret_why, r, "the filesystem cannot preallocate the "
				   "pool's files (fallocate): give --sparse to use sparse files");
	if (r == -ENOSPC)
		return dmr_why_set(ret_why, r, "no room for the pool's files: %s", strerror(-r));
	if (r < 0)
		return dmr_why_set(ret_why, r, "cannot create the pool: %s", strerror(-r));

	/* What the paths are now, checked before every later activation:
	 * after a reboot /dev/loopN or /dev/sdX may be another device. */
	for (size_t k = 0; k < 2; k++) {
		struct dmr_ident *id = calloc(1, sizeof(*id));

		if (id && dmr_ident_read(k ? meta : data, id) == 0) {
			dmr_ident_free(reg->pool_ident[k]);
			reg->pool_ident[k] = id;
		} else {
			free(id);
		}
	}
	pthread_mutex_lock(&reg->lock);
	reg->pool_spec.data_path = strdup(data);
	reg->pool_spec.meta_path = strdup(meta);
	reg->pool_spec.block_sectors = pool->spec.block_sectors;
	reg->pool = pool;
	reg->have_pool = true;
	reg->tid = 0;
	reg->next_vol_id = 1;
	r = reg->pool_spec.data_path && reg->pool_spec.meta_path ? dmr_reg_pool_save(reg) : -ENOMEM;
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		return dmr_why_set(ret_why, r,
				   "pool made but its state not saved: %s", strerror(-r));
	*ret_warning = DMR_TAKE_PTR(warning);
	return 0;
}

static const char *health_advice(enum dmr_pool_health h);

/* Why a pool is down and what to do, as recovery recorded them (a path it
 * did not foresee still gets words). */
static const char *down_reason(const struct dmr_registry *reg)
{
	return reg->pool_down_reason ? reg->pool_down_reason :
	       "it could not be activated at start (see the agent's log)";
}

static const char *down_advice(const struct dmr_registry *reg)
{
	return reg->pool_down_advice ? reg->pool_down_advice :
	       "fix the pool's devices, then restart dmrepd";
}

int dmr_pool_down_why(struct dmr_registry *reg, char **ret_why)
{
	assert(reg && ret_why);
	return dmr_why_set(ret_why, -DMR_E_STATE, "the pool is down: %s; %s", down_reason(reg),
			   down_advice(reg));
}

/* What every GetPoolStatus answer holds, up or down. */
static void status_common(struct dmr_registry *reg, struct json_object *o, bool active)
{
	pthread_mutex_lock(&reg->lock);
	json_object_object_add(o, "data_path", json_object_new_string(reg->pool_spec.data_path));
	json_object_object_add(o, "meta_path", json_object_new_string(reg->pool_spec.meta_path));
	json_object_object_add(o, "catalog_transaction_id", json_object_new_int64((int64_t)reg->tid));
	pthread_mutex_unlock(&reg->lock);
	json_object_object_add(o, "device", json_object_new_string("/dev/mapper/" DMR_POOL_DM_NAME));
	json_object_object_add(o, "active", json_object_new_boolean(active));
}

/* GetPoolStatus of a pool that is down: what is known without the kernel. */
static int status_down_json(struct dmr_registry *reg, struct json_object **ret, char **ret_why)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return dmr_why_set(ret_why, -ENOMEM, "out of memory");
	status_common(reg, o, false);
	json_object_object_add(o, "reason", json_object_new_string(down_reason(reg)));
	json_object_object_add(o, "advice", json_object_new_string(down_advice(reg)));
	json_object_object_add(o, "mode", json_object_new_string("down"));
	json_object_object_add(o, "health", json_object_new_string(
		dmr_status_thin_pool_health_name(DMR_POOL_FAIL)));
	*ret = o;
	return 0;
}

int dmr_pool_status_json(struct dmr_registry *reg, struct json_object **ret, char **ret_why)
{
	struct dmr_pool *pool = reg->pool;
	struct dmr_thin_pool_status st;
	struct json_object *o;
	uint64_t bb;
	const char *mode;
	int r;

	assert(ret);
	assert(ret_why);
	if (!pool)
		return status_down_json(reg, ret, ret_why);
	r = dmr_pool_status(pool, &st);
	if (r < 0)
		return dmr_why_set(ret_why, r, "cannot read pool status: %s", strerror(-r));
	bb = dmr_pool_block_bytes(pool);
	mode = st.fail ? "fail" : st.out_of_data_space ? "out_of_data_space" :
	       st.read_only ? "ro" : "rw";
	o = json_object_new_object();
	if (!o)
		return dmr_why_set(ret_why, -ENOMEM, "out of memory");
	status_common(reg, o, true);
	json_object_object_add(o, "transaction_id", json_object_new_int64((int64_t)st.transaction_id));
	json_object_object_add(o, "block_size_bytes", json_object_new_int64((int64_t)bb));
	json_object_object_add(o, "data_used_blocks", json_object_new_int64((int64_t)st.used_data_blocks));
	json_object_object_add(o, "data_total_blocks", json_object_new_int64((int64_t)st.total_data_blocks));
	json_object_object_add(o, "data_used_bytes", json_object_new_int64((int64_t)(st.used_data_blocks * bb)));
	json_object_object_add(o, "data_size_bytes", json_object_new_int64((int64_t)(st.total_data_blocks * bb)));
	json_object_object_add(o, "meta_used_blocks", json_object_new_int64((int64_t)st.used_meta_blocks));
	json_object_object_add(o, "meta_total_blocks", json_object_new_int64((int64_t)st.total_meta_blocks));
	json_object_object_add(o, "mode", json_object_new_string(mode));
	json_object_object_add(o, "needs_check", json_object_new_boolean(st.needs_check));
	/* One word for scripts, and what to do about it. */
	json_object_object_add(o, "health", json_object_new_string(
		dmr_status_thin_pool_health_name(dmr_status_thin_pool_health(&st))));
	json_object_object_add(o, "advice", json_object_new_string(
		health_advice(dmr_status_thin_pool_health(&st))));
	json_object_object_add(o, "no_space_policy",
			       json_object_new_string(st.no_space == DMR_NO_SPACE_ERROR ? "error" : "queue"));
	*ret = o;
	return 0;
}

/* ---- health: may an operation use the pool? ---------------------------- */

/* The repair job running now (0: none).  One pool per agent. */
static _Atomic uint64_t repair_job;

/* The refusal a pool in this status gives (0: none). */
static int health_refusal(const struct dmr_thin_pool_status *st, bool to_free, char **ret_why)
{
	switch (dmr_status_thin_pool_health(st)) {
	case DMR_POOL_OK:
		return 0;
	case DMR_POOL_OUT_OF_DATA_SPACE:
		if (to_free)
			return 0;
		return dmr_why_set(ret_why, -ENOSPC, "the pool is out of data space: remove points "
				   "or VMs, or grow its data device");
	case DMR_POOL_FAIL:
		return dmr_why_set(ret_why, -DMR_E_STATE, "the pool failed (its metadata device "
				   "failed): fix the device, then run 'dmrep pool repair'");
	case DMR_POOL_OUT_OF_METADATA_SPACE:
		return dmr_why_set(ret_why, -DMR_E_STATE, "the pool ran out of metadata space "
				   "(%" PRIu64 "/%" PRIu64 " blocks) and is read-only: grow its "
				   "metadata device, then run 'dmrep pool repair'",
				   st->used_meta_blocks, st->total_meta_blocks);
	case DMR_POOL_NEEDS_CHECK:
	case DMR_POOL_READ_ONLY:
		break;
	}
	return dmr_why_set(ret_why, -DMR_E_STATE, "the pool is read-only (%s): a metadata "
			   "operation failed; run 'dmrep pool repair'",
			   st->needs_check ? "needs_check" : "read_only");
}

int dmr_pool_usable(struct dmr_registry *reg, bool to_free, char **ret_why)
{
	struct dmr_thin_pool_status st;
	uint64_t job = repair_job;
	int r;

	assert(reg && reg->pool);
	assert(ret_why);
	if (job == UINT64_MAX)
		return dmr_why_set(ret_why, -EBUSY, "the pool is being repaired: try again once "
				   "the repair ends");
	if (job)
		return dmr_why_set(ret_why, -EBUSY, "the pool is being repaired (job %" PRIu64
				   "): try again once it ends", job);
	r = dmr_pool_status(reg->pool, &st);
	if (r < 0)
		return dmr_why_set(ret_why, -DMR_E_STATE, "the pool's status cannot be read (%s): "
				   "run 'dmrep pool repair'", strerror(-r));
	return health_refusal(&st, to_free, ret_why);
}

int dmr_pool_job_explain(struct dmr_registry *reg, struct dmr_job *job, int r)
{
	_cleanup_free_ char *why = NULL;
	struct dmr_thin_pool_status st;
	int q;

	assert(reg && job);
	/* No pool, or one a repair holds: the operation's own error stands. */
	if (r >= 0 || !reg->pool || repair_job)
		return r;
	/* Only a health the kernel reports replaces the error: a status
	 * that cannot be read now (no memory, say) proves nothing about the
	 * operation that failed. */
	if (dmr_pool_status(reg->pool, &st) < 0)
		return r;
	q = health_refusal(&st, false, &why);
	if (q == 0)
		return r;
	dmr_job_replace_error(job, dmr_rc_from_errno(q), "%s", why ? why : strerror(-q));
	return q;
}

/* What to do about a pool in this health, for GetPoolStatus. */
static const char *health_advice(enum dmr_pool_health h)
{
	switch (h) {
	case DMR_POOL_OK:
		return "";
	case DMR_POOL_OUT_OF_DATA_SPACE:
		return "remove points or VMs, or grow the data device";
	case DMR_POOL_OUT_OF_METADATA_SPACE:
		return "grow the metadata device (a file: make it larger), then run "
		       "'dmrep pool repair', which rewrites the metadata into the room added";
	case DMR_POOL_FAIL:
	case DMR_POOL_NEEDS_CHECK:
	case DMR_POOL_READ_ONLY:
		break;
	}
	return "fix the metadata device, then run 'dmrep pool repair'";
}

/* ---- RepairPool ---------------------------------------------------------
 *
 * As lvm2's `lvconvert --repair` (which wants the pool and its thin
 * volumes inactive): nothing may use the metadata while it is checked and
 * rewritten.  dmrep cannot close what a guest holds open, so the stable
 * devices stay as they are (linear over the volumes' devices, the guest's
 * descriptors valid) and the volumes' devices below them are reloaded to
 * `error` of the same size: the guest's I/O fails, as it already did on the
 * failed pool, instead of hanging.  Then the pool's dm device goes (its
 * loops stay), the metadata is copied to a backup file, checked, repaired
 * from the backup into a spare file of the same size, the spare copied
 * over the metadata device and checked again, the pool brought back and
 * every volume's device reloaded with its own table.
 *
 * STATE/pool-repair.json, written before each step that changes something,
 * holds the step and the volumes' tables, so that recovery after a crash
 * (dmr_pool_repair_recover_*) finishes the copy of a repaired metadata that
 * was cut short and reloads the volumes' devices: a crash before the copy
 * leaves the old metadata in place (the repair can be run again), after it
 * the pool comes up on the repaired one.
 */

struct saved_dev {
	char name[DMR_DM_NAME_SIZE];
	uint64_t length;
	char *params; /* "MAJ:MIN ID" of the pool it was on */
	uint32_t id;  /* its thin id, ID above */
	bool read_only;
};

struct repair {
	struct dmr_agent *agent;
	size_t n_vms;
	char **vms;   /* whose busy locks the job holds */
	size_t n_devs;
	struct saved_dev *devs;
	char *intent, *backup, *spare;
	/* Once the repaired metadata is on the metadata device: the thin ids
	 * it holds (thin_ls on the spare), ascending.  A volume not among
	 * them was lost with the pool's last transactions. */
	bool swapped;
	size_t n_ids;
	uint32_t *ids;
};

static void repair_free(void *p)
{
	struct repair *rp = p;

	if (!rp)
		return;
	for (size_t i = 0; i < rp->n_vms; i++) {
		dmr_vm_busy_release(rp->agent, rp->vms[i]);
		free(rp->vms[i]);
	}
	free(rp->vms);
	for (size_t i = 0; i < rp->n_devs; i++)
		free(rp->devs[i].params);
	free(rp->devs);
	free(rp->ids);
	free(rp->intent);
	free(rp->backup);
	free(rp->spare);
	free(rp);
	repair_job = 0;
}

static void json_putp(struct json_object **o)
{
	json_object_put(*o);
}

static int intent_write(const struct repair *rp, const char *step)
{
	_cleanup_(json_putp) struct json_object *o = json_object_new_object();
	_cleanup_(json_putp) struct json_object *a = json_object_new_array();
	const char *txt;

	if (!o || !a)
		return -ENOMEM;
	for (size_t i = 0; i < rp->n_devs; i++) {
		struct json_object *d = json_object_new_object();

		if (!d)
			return -ENOMEM;
		json_object_object_add(d, "name", json_object_new_string(rp->devs[i].name));
		json_object_object_add(d, "length", json_object_new_int64((int64_t)rp->devs[i].length));
		json_object_object_add(d, "params", json_object_new_string(rp->devs[i].params));
		json_object_object_add(d, "read_only", json_object_new_boolean(rp->devs[i].read_only));
		json_object_array_add(a, d);
	}
	json_object_object_add(o, "step", json_object_new_string(step));
	json_object_object_add(o, "backup", json_object_new_string(rp->backup));
	json_object_object_add(o, "spare", json_object_new_string(rp->spare));
	json_object_object_add(o, "devices", json_object_get(a));
	txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	return dmr_write_file_atomic(rp->intent, txt, strlen(txt), 0600);
}

static int reload(const char *name, struct dmr_table *t, bool read_only)
{
	int r;

	if ((r = dmr_dm_load(name, t, read_only ? DMR_DM_READONLY : 0)) < 0)
		return r;
	if ((r = dmr_dm_suspend(name, DMR_DM_NOFLUSH)) < 0) {
		(void)dmr_dm_clear(name);
		return r;
	}
	return dmr_dm_resume_retry(name);
}

/* The saved table of d, on the pool's devno now. */
static int restore_dev(const struct dmr_pool *pool, const struct saved_dev *d)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	const char *rest = strchr(d->params, ' ');
	_cleanup_free_ char *params = NULL;
	char devno[32];

	if (!t)
		return -ENOMEM;
	if (!rest)
		return -EINVAL;
	dmr_pool_devno(pool, devno);
	if (asprintf(&params, "%s%s", devno, rest) < 0)
		return -ENOMEM;
	if (dmr_table_append(t, d->length, "thin", params) < 0)
		return -ENOMEM;
	return reload(d->name, t, d->read_only);
}

static int volumes_to_error(struct repair *rp, struct dmr_pool *pool)
{
	_cleanup_free_ struct dmr_dm_entry *devs = NULL;
	size_t n = 0;
	char devno[32];
	int r;

	dmr_pool_devno(pool, devno);
	if ((r = dmr_dm_list(DMR_UUID_PREFIX, &devs, &n)) < 0)
		return r;
	rp->devs = calloc(n ? n : 1, sizeof(*rp->devs));
	if (!rp->devs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		_cleanup_table_ struct dmr_table *t = NULL;
		struct saved_dev *d = &rp->devs[rp->n_devs];
		struct dmr_dm_info info;
		uint32_t id;

		/* Which thin id from the UUID: a failed pool's thin devices
		 * print "Fail" for their table, not "MAJ:MIN ID".  One on
		 * `error` already is an earlier repair's that a crash cut
		 * short on a pool that stayed failed (a failed pool takes no
		 * new thin table): it comes back with the others. */
		if (!dmr_backend_pool_volume(devs[i].uuid, &id) ||
		    dmr_dm_table(devs[i].name, false, &t) < 0 || t->count != 1 ||
		    (!dmr_streq(t->targets[0].type, "thin") && !dmr_streq(t->targets[0].type, "error")) ||
		    dmr_dm_info(devs[i].name, &info) < 0)
			continue;
		snprintf(d->name, sizeof(d->name), "%s", devs[i].name);
		d->length = t->targets[0].length;
		d->id = id;
		d->read_only = info.read_only;
		if (asprintf(&d->params, "%s %" PRIu32, devno, id) < 0) {
			d->params = NULL;
			return -ENOMEM;
		}
		rp->n_devs++;
	}
	/* Recorded before the first table changes: recovery reloads them. */
	if ((r = intent_write(rp, "volumes-error")) < 0)
		return r;
	for (size_t i = 0; i < rp->n_devs; i++) {
		_cleanup_table_ struct dmr_table *t = dmr_table_new();

		if (!t || dmr_table_add_error(t, rp->devs[i].length) < 0)
			return -ENOMEM;
		if ((r = reload(rp->devs[i].name, t, false)) < 0) {
			log_debug("repair: %s to error: %s", rp->devs[i].name, strerror(-r));
			return r;
		}
	}
	return 0;
}

/* A device whose volume the repaired metadata lost takes no thin table
 * (the pool has no such id): it goes, or, held open (a stable device on
 * a lost live volume), stays on `error`, as I/O to it would fail. */
static bool lost_dev_down(const char *name, uint32_t id, const uint32_t *ids, size_t n)
{
	int r;

	if (dmr_delta_ids_has(ids, n, id))
		return false;
	r = dmr_dm_remove(name, 10);
	if (r < 0)
		log_error("pool repair: %s's volume %" PRIu32 " is not in the repaired metadata; "
			  "the device stays on error: %s", name, id, strerror(-r));
	else
		log_notice("pool repair: %s's volume %" PRIu32 " is not in the repaired metadata: "
			   "device removed", name, id);
	return true;
}

static int volumes_back(const struct repair *rp, struct dmr_pool *pool)
{
	int first = 0;

	for (size_t i = 0; i < rp->n_devs; i++) {
		int r;

		if (rp->swapped && lost_dev_down(rp->devs[i].name, rp->devs[i].id, rp->ids, rp->n_ids))
			continue;
		r = restore_dev(pool, &rp->devs[i]);

		if (r < 0) {
			log_error("pool repair: cannot reload %s: %s", rp->devs[i].name, strerror(-r));
			if (!first)
				first = r;
		}
	}
	return first;
}

/* Copy bytes from src to dst (created if a missing file) and make it
 * durable.  A block device's page cache is dropped first: the kernel
 * wrote the metadata below it. */
static int copy_bytes(const char *src, const char *dst, uint64_t bytes)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int out = -1;
	_cleanup_free_ char *buf = malloc(1u << 20);
	uint64_t done = 0;

	if (in < 0)
		return -errno;
	if (!buf)
		return -ENOMEM;
	(void)ioctl(in, BLKFLSBUF, 0);
	out = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	while (done < bytes) {
		size_t want = bytes - done < (1u << 20) ? (size_t)(bytes - done) : 1u << 20;
		ssize_t k = pread(in, buf, want, (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		for (ssize_t w = 0; w < k;) {
			ssize_t m = pwrite(out, buf + w, (size_t)(k - w), (off_t)(done + (uint64_t)w));

			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0)
				return m < 0 ? -errno : -EIO;
			w += m;
		}
		done += (uint64_t)k;
	}
	if (fsync(out) < 0)
		return -errno;
	(void)ioctl(out, BLKFLSBUF, 0);
	return 0;
}

static int run_check(const char *path, char *err, size_t size)
{
	const char *argv[] = { "thin_check", "-q", path, NULL };
	_cleanup_free_ char *out = NULL;
	size_t len;

	return dmr_delta_run_tool(argv, &out, &len, err, size);
}

static int repair_fn(struct dmr_job *job, void *userdata)
{
	struct repair *rp = userdata;
	struct dmr_registry *reg = rp->agent->reg;
	struct dmr_pool *pool = reg->pool;
	uint64_t bytes = pool->meta_sectors * 512u;
	uint64_t t0 = dmr_now_usec();
	char err[256];
	int r, rc;

	/* A step done: recorded, then where a lab test crashes the agent. */
#define STEP(name) do { dmr_job_add_step(job, name, dmr_now_usec() - t0); \
		dmr_test_hook("repair:" name); t0 = dmr_now_usec(); } while (0)
	dmr_job_set_result(job, "backup", json_object_new_string(rp->backup));
	/* The metadata as it is, kept, before anything changes: a failed or
	 * read-only pool writes no metadata, so the copy is its last commit
	 * (and a metadata device that still fails is found here, nothing
	 * changed).  The repair reads this copy, never the device, so a
	 * crash in the copy back below is finished from the spare. */
	if ((r = copy_bytes(pool->meta_dev, rp->backup, bytes)) < 0) {
		(void)unlink(rp->backup);
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "cannot read the metadata device %s "
				  "(%s): make it work again, then run 'dmrep pool repair'",
				  pool->meta_dev, strerror(-r));
		return -DMR_E_STATE;
	}
	STEP("backup");
	if ((r = volumes_to_error(rp, pool)) < 0) {
		(void)volumes_back(rp, pool);
		(void)unlink(rp->intent);
		return dmr_job_fail(job, r, "cannot take the volumes' devices off the pool");
	}
	STEP("volumes-error");
	if ((r = dmr_pool_deactivate(pool)) < 0) {
		(void)volumes_back(rp, pool);
		(void)unlink(rp->intent);
		return dmr_job_fail(job, r, "cannot take the pool's device down");
	}
	dmr_job_set_percent(job, 20);
	STEP("pool-down");
	r = run_check(rp->backup, err, sizeof(err));
	dmr_job_set_result(job, "thin_check_before", json_object_new_string(r == 0 ? "clean" : err));
	(void)unlink(rp->spare);
	{
		const char *argv[] = { "thin_repair", "-i", rp->backup, "-o", rp->spare, NULL };
		_cleanup_close_ int fd = open(rp->spare, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		_cleanup_free_ char *out = NULL;
		size_t len;

		r = fd < 0 ? -errno : ftruncate(fd, (off_t)bytes) < 0 ? -errno : 0;
		if (r == 0 && (r = dmr_delta_run_tool(argv, &out, &len, err, sizeof(err))) < 0) {
			rc = dmr_job_fail(job, r, "thin_repair cannot repair the metadata (%s); the "
					  "pool is back on it as it was", err);
			goto up;
		}
		if (r < 0) {
			rc = dmr_job_fail(job, r, "cannot make the spare metadata %s", rp->spare);
			goto up;
		}
	}
	if ((r = run_check(rp->spare, err, sizeof(err))) < 0) {
		rc = dmr_job_fail(job, r, "the repaired metadata does not pass thin_check (%s)", err);
		goto up;
	}
	/* What it holds: the catalog is made to match it below. */
	if ((r = dmr_delta_thin_ids(rp->spare, &rp->ids, &rp->n_ids)) < 0) {
		rc = dmr_job_fail(job, r, "cannot list the volumes of the repaired metadata "
				  "(thin_ls); the pool is back on it as it was");
		goto up;
	}
	dmr_job_set_percent(job, 50);
	STEP("repaired");
	if ((r = intent_write(rp, "swapping")) < 0) {
		rc = dmr_job_fail(job, r, "cannot record the repair's step");
		goto up;
	}
	if ((r = copy_bytes(rp->spare, pool->meta_dev, bytes)) < 0) {
		/* Recovery finishes this copy from the spare at the next start. */
		rc = dmr_job_fail(job, r, "cannot write the repaired metadata onto %s: restart the "
				  "agent to finish it", pool->meta_dev);
		return rc;
	}
	rp->swapped = true;
	(void)intent_write(rp, "swapped");
	r = run_check(pool->meta_dev, err, sizeof(err));
	dmr_job_set_result(job, "thin_check_after", json_object_new_string(r == 0 ? "clean" : err));
	STEP("swapped");
	rc = 0;
up:
	if ((r = dmr_pool_reactivate(pool)) < 0)
		return dmr_job_fail(job, r, "cannot bring the pool back (its volumes stay on "
				    "error; restart the agent to retry)");
	dmr_job_set_percent(job, 80);
	STEP("pool-up");
	if ((r = volumes_back(rp, pool)) < 0)
		return dmr_job_fail(job, r, "cannot bring every volume's device back: restart the "
				    "agent to retry");
	STEP("volumes-back");
	if (rp->swapped) {
		/* The repaired metadata is the pool's last commit: what the
		 * kernel had accepted after it (a batch whose commit failed
		 * with the device) is not there, and the catalog follows. */
		struct dmr_thin_pool_status st;

		if ((r = dmr_pool_status(pool, &st)) < 0 || st.fail)
			return dmr_job_fail(job, r < 0 ? r : -EIO, "the repaired pool's status "
					    "cannot be read: restart the agent to finish the repair");
		if ((r = dmr_recovery_reconcile_repaired(reg, rp->ids, rp->n_ids,
							 st.transaction_id)) < 0)
			return dmr_job_fail(job, r, "cannot bring the catalog in step with the "
					    "repaired metadata: restart the agent to finish it");
		dmr_job_set_result(job, "transaction_id", json_object_new_int64((int64_t)st.transaction_id));
		STEP("reconciled");
	}
	(void)unlink(rp->intent);
	(void)unlink(rp->spare);
#undef STEP
	if (rc == 0) {
		_cleanup_free_ char *why = NULL;

		repair_job = 0; /* the check below is the callers' */
		if ((r = dmr_pool_usable(reg, false, &why)) < 0) {
			dmr_job_set_error(job, dmr_rc_from_errno(r), "repaired, but %s", why);
			return r;
		}
		log_notice("pool repaired; the old metadata is kept in %s", rp->backup);
	}
	return rc;
}

int dmr_pool_repair_start(struct dmr_agent *a, uint64_t *ret_id, char **ret_why)
{
	struct dmr_registry *reg = a->reg;
	struct repair *rp;
	struct dmr_thin_pool_status st;
	uint64_t expected = 0, id;
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int r;

	assert(a && ret_id && ret_why);
	/* A pool that never came up at start is not one a repair can take
	 * offline and back: it needs its devices fixed and a restart. */
	if (!reg->pool)
		return dmr_pool_down_why(reg, ret_why);
	r = dmr_pool_status(reg->pool, &st);
	if (r == 0 && dmr_status_thin_pool_health(&st) == DMR_POOL_OK)
		return dmr_why_set(ret_why, -DMR_E_STATE, "the pool is healthy: nothing to repair");
	if (r == 0 && dmr_status_thin_pool_health(&st) == DMR_POOL_OUT_OF_DATA_SPACE)
		return dmr_why_set(ret_why, -DMR_E_STATE, "the pool is out of data space, its "
				   "metadata intact: remove points or grow its data device");
	/* thin_repair rewrites full metadata only into a larger device: the
	 * new size is read now (a file's loop takes its file's size). */
	if (r == 0 && dmr_status_thin_pool_health(&st) == DMR_POOL_OUT_OF_METADATA_SPACE) {
		uint64_t bytes = 0;
		int q = dmr_pool_meta_refresh(reg->pool, &bytes);

		if (q < 0)
			return dmr_why_set(ret_why, -DMR_E_STATE, "cannot read the size of the "
					   "metadata device %s: %s", reg->pool_spec.meta_path,
					   strerror(-q));
		if (bytes <= st.total_meta_blocks * DMR_POOL_META_BLOCK_BYTES)
			return dmr_why_set(ret_why, -DMR_E_STATE, "the pool ran out of metadata "
					   "space (%" PRIu64 "/%" PRIu64 " blocks): grow its metadata "
					   "device %s first (it is %" PRIu64 " bytes); the repair "
					   "rewrites the metadata into the room added",
					   st.used_meta_blocks, st.total_meta_blocks,
					   reg->pool_spec.meta_path, bytes);
	}
	/* From here new operations on the pool are refused (32774). */
	if (!atomic_compare_exchange_strong(&repair_job, &expected, UINT64_MAX))
		return dmr_why_set(ret_why, -EBUSY, "the pool is being repaired already");
	rp = calloc(1, sizeof(*rp));
	if (!rp) {
		repair_job = 0;
		return dmr_why_set(ret_why, -ENOMEM, "out of memory");
	}
	rp->agent = a;
	pthread_mutex_lock(&reg->lock);
	rp->vms = calloc(reg->n_vms ? reg->n_vms : 1, sizeof(*rp->vms));
	r = rp->vms ? 0 : -ENOMEM;
	for (size_t v = 0; r == 0 && v < reg->n_vms; v++) {
		const char *name = reg->vms[v]->name;

		if (!dmr_vm_needs_pool(reg->vms[v]))
			continue;
		if (dmr_vm_busy_acquire(a, name) < 0) {
			r = dmr_why_set(ret_why, -EBUSY, "another operation holds VM %s: try again "
					"once it ends", name);
			break;
		}
		if (!(rp->vms[rp->n_vms] = strdup(name))) {
			dmr_vm_busy_release(a, name);
			r = -ENOMEM;
			break;
		}
		rp->n_vms++;
	}
	pthread_mutex_unlock(&reg->lock);
	/* The backup is never overwritten: one per repair, by its time. */
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	if (r == 0 && (asprintf(&rp->intent, "%s/pool-repair.json", reg->state_dir) < 0 ||
		       asprintf(&rp->spare, "%s/pool-meta.spare", reg->state_dir) < 0 ||
		       asprintf(&rp->backup, "%s/pool-meta.backup-%s", reg->state_dir, stamp) < 0))
		r = -ENOMEM;
	if (r < 0) {
		repair_free(rp);
		return *ret_why ? r : dmr_why_set(ret_why, r, "cannot start the repair: %s", strerror(-r));
	}
	r = dmr_job_start(a, "RepairPool", NULL, repair_fn, rp, repair_free, &id);
	if (r < 0) {
		repair_free(rp);
		return dmr_why_set(ret_why, r, "cannot start the job: %s", strerror(-r));
	}
	/* The placeholder becomes the id, unless the job ended already. */
	expected = UINT64_MAX;
	(void)atomic_compare_exchange_strong(&repair_job, &expected, id);
	*ret_id = id;
	return 0;
}

/* ---- a repair a crash interrupted -------------------------------------- */

static int intent_load(struct dmr_registry *reg, char **ret_path, struct json_object **ret)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	struct json_object *o = NULL, *v;
	size_t len;
	int r;

	if (asprintf(&path, "%s/pool-repair.json", reg->state_dir) < 0)
		return -ENOMEM;
	if ((r = dmr_read_file(path, 1u << 20, &buf, &len)) < 0)
		return r;
	if ((r = dmr_json_parse_object(buf, len, &o)) < 0)
		return r;
	if (!json_object_object_get_ex(o, "step", &v) || !json_object_is_type(v, json_type_string) ||
	    !json_object_object_get_ex(o, "spare", &v) || !json_object_is_type(v, json_type_string) ||
	    !json_object_object_get_ex(o, "devices", &v) || !json_object_is_type(v, json_type_array)) {
		json_object_put(o);
		return -EBADMSG;
	}
	*ret_path = DMR_TAKE_PTR(path);
	*ret = o;
	return 0;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
	       json_object_get_string(v) : NULL;
}

void dmr_pool_repair_recover_pre(struct dmr_registry *reg)
{
	_cleanup_(json_putp) struct json_object *o = NULL;
	_cleanup_free_ char *path = NULL;
	const char *spare, *txt;
	struct stat sb;
	int r;

	assert(reg);
	if (!reg->have_pool || intent_load(reg, &path, &o) < 0)
		return;
	if (!dmr_streq(jstr(o, "step"), "swapping"))
		return;
	/* The repaired metadata's copy was cut short: the metadata device
	 * holds part of it.  The spare is whole (checked before the copy). */
	spare = jstr(o, "spare");
	if (stat(spare, &sb) < 0 || (r = copy_bytes(spare, reg->pool_spec.meta_path,
						    (uint64_t)sb.st_size)) < 0) {
		log_error("pool repair: cannot finish writing the repaired metadata from %s onto %s: %s",
			  spare, reg->pool_spec.meta_path, strerror(errno));
		return;
	}
	json_object_object_add(o, "step", json_object_new_string("swapped"));
	txt = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if ((r = dmr_write_file_atomic(path, txt, strlen(txt), 0600)) < 0)
		log_error("pool repair: cannot record its step: %s", strerror(-r));
	log_notice("pool repair: the repaired metadata written onto %s", reg->pool_spec.meta_path);
}

void dmr_pool_repair_recover_post(struct dmr_registry *reg)
{
	_cleanup_(json_putp) struct json_object *o = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_free_ uint32_t *ids = NULL;
	struct json_object *devs;
	struct dmr_thin_pool_status st;
	bool all = true, swapped;
	size_t n_ids = 0;
	int r;

	assert(reg);
	if (!reg->have_pool || intent_load(reg, &path, &o) < 0)
		return;
	if (!reg->pool) {
		log_error("pool repair interrupted and the pool not active: its volumes stay down");
		return;
	}
	/* On the repaired metadata (_pre finished a copy cut short): what
	 * it holds, from the spare, which stays until the repair is done. */
	swapped = dmr_streq(jstr(o, "step"), "swapped");
	if (swapped && (r = dmr_delta_thin_ids(jstr(o, "spare"), &ids, &n_ids)) < 0) {
		log_error("pool repair interrupted: cannot list the volumes of the repaired "
			  "metadata %s: %s; its volumes stay on error", jstr(o, "spare"), strerror(-r));
		return;
	}
	json_object_object_get_ex(o, "devices", &devs);
	for (size_t i = 0; i < json_object_array_length(devs); i++) {
		struct json_object *d = json_object_array_get_idx(devs, i), *v;
		_cleanup_table_ struct dmr_table *t = NULL;
		const char *name = jstr(d, "name"), *params = jstr(d, "params");
		struct saved_dev sd = { .length = 0 };
		const char *idp = params ? strchr(params, ' ') : NULL;
		uint32_t id = 0;
		int end = 0;

		if (!name || !params || strlen(name) >= sizeof(sd.name) || !idp ||
		    sscanf(idp, " %" SCNu32 "%n", &id, &end) != 1 || idp[end] != '\0' ||
		    !json_object_object_get_ex(d, "length", &v) || !json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) <= 0) {
			all = false;
			continue;
		}
		/* Gone (a reboot: activation makes it) or not an error table
		 * (never changed): nothing to do. */
		if (dmr_dm_owned(name) < 0 || dmr_dm_table(name, false, &t) < 0 || t->count != 1 ||
		    !dmr_streq(t->targets[0].type, "error"))
			continue;
		if (swapped && lost_dev_down(name, id, ids, n_ids))
			continue;
		snprintf(sd.name, sizeof(sd.name), "%s", name);
		sd.length = (uint64_t)json_object_get_int64(v);
		sd.params = (char *)params;
		sd.read_only = json_object_object_get_ex(d, "read_only", &v) &&
			       json_object_get_boolean(v);
		if ((r = restore_dev(reg->pool, &sd)) < 0) {
			log_error("pool repair: cannot reload %s: %s", name, strerror(-r));
			all = false;
		}
	}
	if (!all) {
		/* A pool still failed takes no thin table: they stay on
		 * error (as I/O on the failed pool would) until the repair,
		 * which takes them with the others. */
		log_error("pool repair interrupted: some volumes' devices stay on error until "
			  "'dmrep pool repair' completes");
		return;
	}
	if (swapped) {
		if ((r = dmr_pool_status(reg->pool, &st)) < 0 || st.fail) {
			log_error("pool repair interrupted: the repaired pool's status cannot be read");
			return;
		}
		if (dmr_recovery_reconcile_repaired(reg, ids, n_ids, st.transaction_id) < 0)
			return;
	}
	(void)unlink(path);
	if (jstr(o, "spare"))
		(void)unlink(jstr(o, "spare"));
	log_notice("pool repair interrupted by a restart: the volumes' devices are back%s%s",
		   jstr(o, "backup") ? "; the old metadata is kept in " : "",
		   jstr(o, "backup") ? jstr(o, "backup") : "");
}
