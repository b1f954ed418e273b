/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AddVirtualSystem, GetVirtualSystem, ListVirtualSystems,
 * RemoveVirtualSystem, SetRetentionPolicy. */
#include <inttypes.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "agent/engine/retention.h"
#include "agent/core/authz.h"
#include "agent/backend/backend.h"
#include "agent/backend/classic.h"
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/log.h"
#include "common/path.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/name.h"
#include "snapshots/copy.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"
#include "snapshots/thin.h"

/* Is path a dm device whose UUID is ours (a stable, point or pool device)?
 * Importing one of those into the pool would copy dmrep into itself. */
static bool path_is_dmrep_device(const char *path)
{
	_cleanup_free_ struct dmr_dm_entry *devs = NULL;
	size_t n = 0;
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	if (dmr_dm_list(DMR_UUID_PREFIX, &devs, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (devs[i].major == major(st.st_rdev) && devs[i].minor == minor(st.st_rdev))
			return true;
	return false;
}

struct add_ctx {
	struct dmr_registry *reg;
	char *vm;
	uint64_t total_bytes; /* of all imports, for percent_complete */
	uint64_t done_bytes;  /* of finished disks */
	struct dmr_job *job;
	enum dmr_peer_class peer; /* who asked: the rules new files follow */
	/* Per disk, the source as opened and judged by the handler (-1: a new
	 * disk): the job uses these, never the path again. */
	size_t n_fds;
	int *fds;
};

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; fds && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
}

static void add_ctx_free(void *p)
{
	struct add_ctx *ctx = p;

	close_fds(ctx->fds, ctx->n_fds);
	free(ctx->vm);
	free(ctx);
}

static int import_progress(uint64_t done, uint64_t total, void *userdata)
{
	struct add_ctx *ctx = userdata;

	if (ctx->total_bytes)
		dmr_job_set_percent(ctx->job, (unsigned)((ctx->done_bytes + done) * 99 / ctx->total_bytes));
	return 0;
}

/* Remove a file this job created, if the path still names it. */
static void unlink_made(const char *path, int fd)
{
	struct stat a, b;

	if (fd >= 0 && fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino)
		(void)unlink(path);
}

/* A new, empty image file for a classic disk, sparse: created inside the
 * caller's --image-dir (agent/core/authz.h), O_EXCL|O_NOFOLLOW; *ret_fd holds it. */
static int create_image(enum dmr_peer_class peer, const char *path, uint64_t size, int *ret_fd,
			char *why, size_t len)
{
	_cleanup_close_ int fd = -1;
	int r;

	r = dmr_authz_disk_create(dmr_authz_conf(), peer, path, &fd, NULL, why, len);
	if (r < 0)
		return r;
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		r = dmr_negerrno();
		unlink_made(path, fd);
		return r;
	}
	*ret_fd = DMR_TAKE_FD(fd);
	return 0;
}

/* A classic disk on an image file: its loop over the descriptor the
 * handler judged, not over whatever the path names by now. */
static int attach_from_fd(struct dmr_disk *d, int fd)
{
	char name[DMR_PATH_FD_NAME_MAX];
	struct stat st;
	char *dev = NULL;
	int r;

	if (d->base_dev || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return 0; /* a block device: the source is a root-given device path */
	dmr_path_fd_name(fd, name);
	r = dmr_loop_find(name, &dev);
	if (r == -ENOENT)
		r = dmr_loop_attach(name, false, &dev);
	if (r < 0)
		return r;
	d->base_dev = dev;
	return 0;
}

/* Undo a VM whose creation failed or was interrupted: devices, volumes,
 * catalog entry.  The import source was only read, so nothing is lost. */
static void add_rollback(struct dmr_registry *reg, struct dmr_vm *vm, bool volumes_made)
{
	_cleanup_free_ uint32_t *ids = calloc(vm->n_disks, sizeof(uint32_t));

	if (dmr_vm_is_classic(vm)) {
		/* In place: only our devices go; the disks are untouched. */
		(void)dmr_classic_vm_teardown(reg, vm);
		pthread_mutex_lock(&reg->lock);
		(void)dmr_reg_vm_delete(reg, vm->name);
		pthread_mutex_unlock(&reg->lock);
		return;
	}

	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if (ids)
			ids[i] = vm->disks[i].thin_id;
		/* Only this VM's own device: one with its name and another
		 * UUID (another VM's, an older agent's) is left alone. */
		if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name) < 0 ||
		    dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid) < 0)
			continue;
		if (dmr_dm_check_uuid(name, uuid) == 0)
			(void)dmr_dm_remove(name, 20);
	}
	if (volumes_made && ids)
		(void)dmr_backend_of(vm)->remove(reg, vm, vm->n_disks, ids);
	pthread_mutex_lock(&reg->lock);
	(void)dmr_reg_vm_delete(reg, vm->name);
	pthread_mutex_unlock(&reg->lock);
}

static int add_job(struct dmr_job *job, void *userdata)
{
	struct add_ctx *ctx = userdata;
	struct dmr_registry *reg = ctx->reg;
	_cleanup_free_ uint32_t *ids = NULL;
	struct dmr_vm *vm;
	uint64_t old_tid, new_tid, t0;
	bool volumes_made = false;
	int r;

	ctx->job = job;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	pthread_mutex_unlock(&reg->lock);
	if (!vm)
		return -ENOENT;
	if (dmr_vm_is_classic(vm)) {
		_cleanup_free_ bool *made = calloc(vm->n_disks, sizeof(bool));

		t0 = dmr_now_usec();
		r = made ? 0 : -ENOMEM;
		/* NAME=PATH:SIZE with no PATH yet: the disk is a new file. */
		for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
			char why[256] = "";

			if (ctx->fds[i] < 0) {
				r = create_image(ctx->peer, vm->disks[i].source, vm->disks[i].size_bytes,
						 &ctx->fds[i], why, sizeof(why));
				made[i] = r == 0;
				if (r < 0) {
					dmr_job_set_error(job, r == -EACCES ? DMR_RC_ACCESS_DENIED :
							  dmr_rc_from_errno(r), "cannot create %s: %s",
							  vm->disks[i].source, why[0] ? why : strerror(-r));
					break;
				}
			}
			r = attach_from_fd(&vm->disks[i], ctx->fds[i]);
			if (r < 0)
				dmr_job_fail(job, r, "cannot attach %s",
						  vm->disks[i].source);
		}
		if (r == 0) {
			r = dmr_classic_vm_create(reg, vm);
			if (r < 0)
				dmr_job_fail(job, r, "cannot make the stable devices");
		}
		if (r < 0) {
			/* Files made here held nothing: they go too. */
			(void)dmr_classic_vm_teardown(reg, vm);
			for (size_t i = 0; made && i < vm->n_disks; i++)
				if (made[i])
					unlink_made(vm->disks[i].source, ctx->fds[i]);
			goto fail;
		}
		dmr_job_add_step(job, "activate", dmr_now_usec() - t0);
		goto done;
	}
	ids = calloc(vm->n_disks, sizeof(*ids));
	if (!ids) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < vm->n_disks; i++)
		ids[i] = vm->disks[i].thin_id;

	t0 = dmr_now_usec();
	dmr_reg_txn_begin(reg, &old_tid, &new_tid);
	pthread_mutex_lock(&reg->lock);
	vm->import_tid = new_tid;
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		r = dmr_thin_create_batch(reg->pool, vm->n_disks, ids, old_tid, new_tid);
	volumes_made = r == 0;
	if (dmr_reg_txn_end(reg, r == 0, new_tid) < 0 && r == 0)
		r = -EIO;
	if (r < 0) {
		dmr_job_fail(job, r, "cannot create thin volumes");
		goto fail;
	}
	dmr_job_add_step(job, "create-volumes", dmr_now_usec() - t0);

	t0 = dmr_now_usec();
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0)
			goto fail;
		r = dmr_thin_activate(reg->pool, name, uuid, ids[i], vm->disks[i].size_bytes / 512,
				      false);
		if (r < 0) {
			dmr_job_fail(job, r, "cannot activate %s", name);
			goto fail;
		}
	}
	dmr_job_add_step(job, "activate", dmr_now_usec() - t0);

	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct dmr_disk *d = &vm->disks[i];
		struct dmr_copy_opts opts = { .queue_depth = 32, .block_size = 1u << 20,
					      .skip_zero = true };
		struct dmr_copy_stats stats;
		char name[DMR_DM_NAME_SIZE], dev[DMR_DM_PATH_SIZE], step[128], src[DMR_PATH_FD_NAME_MAX];

		if (!d->source || ctx->fds[i] < 0)
			continue;
		t0 = dmr_now_usec();
		(void)dmr_vm_disk_dm_name(vm->name, d->name, name);
		snprintf(dev, sizeof(dev), "/dev/mapper/%s", name);
		/* The source the handler opened and judged, reopened through
		 * its descriptor (O_DIRECT needs an open of its own). */
		dmr_path_fd_name(ctx->fds[i], src);
		r = dmr_copy_run(src, dev, d->size_bytes, &opts, import_progress, ctx, &stats);
		if (r < 0) {
			dmr_job_fail(job, r, "import of %s from %s failed",
					  d->name, d->source);
			goto fail;
		}
		ctx->done_bytes += d->size_bytes;
		snprintf(step, sizeof(step), "import-%s", d->name);
		dmr_job_add_step(job, step, dmr_now_usec() - t0);
		log_info("VM %s: imported %s: %" PRIu64 " bytes written, %" PRIu64 " zero bytes skipped",
			 vm->name, d->name, stats.bytes_written, stats.bytes_skipped);
	}

done:
	pthread_mutex_lock(&reg->lock);
	vm->importing = false;
	vm->import_tid = 0;
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot save VM state");
		goto fail;
	}
	dmr_job_set_percent(job, 100);
	dmr_job_set_result(job, "vm", json_object_new_string(vm->name));
	return 0;

fail:
	add_rollback(reg, vm, volumes_made);
	return r < 0 ? r : -EIO;
}

static int parse_disk(struct dmr_call *c, struct json_object *jd, struct dmr_disk *d,
		      bool classic, uint64_t *import_bytes, int *ret_fd)
{
	enum dmr_peer_class peer = dmr_authz_peer(c->uid, c->privileged);
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	char fdname[DMR_PATH_FD_NAME_MAX], why[256] = "";
	struct json_object *v;
	const char *name, *path;
	bool is_block = false;
	uint64_t size = 0, want = 0;
	int r;

	if (!json_object_is_type(jd, json_type_object))
		return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "each disk must be an object");
	if (!json_object_object_get_ex(jd, "name", &v) || !json_object_is_type(v, json_type_string) ||
	    !json_object_object_get_ex(jd, "path", &v) || !json_object_is_type(v, json_type_string))
		return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "each disk needs string name and path");
	json_object_object_get_ex(jd, "name", &v);
	name = json_object_get_string(v);
	json_object_object_get_ex(jd, "path", &v);
	path = json_object_get_string(v);
	if (json_object_object_get_ex(jd, "size_bytes", &v) && v) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0)
			return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "size_bytes must be a positive integer");
		want = (uint64_t)json_object_get_int64(v);
		if (want > DMR_SIZE_MAX)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "size_bytes is out of range (at most %llu)", DMR_SIZE_MAX);
	}
	if (dmr_name_obj_valid(name, DMR_OBJ_NAME_MAX) < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "invalid disk name: use 1-%d of [A-Za-z0-9+_.-], not starting with '-'",
				     DMR_OBJ_NAME_MAX);
	if (path[0] != '/' || strstr(path, "/../") || strlen(path) >= 4096)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "disk %s: path must be absolute", name);

	/* Opened once, here: every check below and the job's import or loop
	 * use this descriptor (agent/core/authz.h), not the path. */
	r = dmr_authz_disk_open(dmr_authz_conf(), peer, path,
				(classic ? O_RDWR : O_RDONLY) | O_NONBLOCK, &fd, &resolved, why,
				sizeof(why));
	if (r == -EACCES && why[0])
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED, "disk %s: %s", name, why);
	if (r < 0 && r != -ENOENT && r != -EINVAL)
		return dmr_call_fail(c, r == -EACCES ? DMR_RC_ACCESS_DENIED : DMR_RC_INVALID_PARAMETER,
				     "disk %s: cannot open %s: %s", name, path, strerror(-r));
	if (r == 0) {
		dmr_path_fd_name(fd, fdname);
		r = dmr_probe_path_kind(fdname, &is_block, &size);
		if (r < 0)
			r = -EINVAL;
	}
	if (r == -ENOENT) {
		_cleanup_free_ char *newpath = NULL;

		if (!want)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: %s does not exist; give NAME=PATH:SIZE for an empty disk",
					     name, path);
		r = dmr_authz_disk_new_ok(dmr_authz_conf(), peer, path, &newpath, why, sizeof(why));
		if (r == -EACCES)
			return dmr_call_fail(c, DMR_RC_ACCESS_DENIED, "disk %s: %s", name, why);
		if (r < 0)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "disk %s: %s: %s", name, path,
					     strerror(-r));
		if (want % 512)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: size must be a multiple of 512", name);
		d->size_bytes = want;
		if (classic) {
			/* Classic disks live in place: the new disk will be a
			 * file (made by the job, once everything is checked). */
			d->source = DMR_TAKE_PTR(newpath);
		}
	} else if (r < 0) {
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "disk %s: %s is not a block device or regular file", name, path);
	} else {
		struct stat st;

		if (want && want != size)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: %s exists with size %" PRIu64 ", not %" PRIu64,
					     name, path, size, want);
		if (size == 0 || size % 512 || size > DMR_SIZE_MAX)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: %s has size %" PRIu64 ", not a non-zero multiple of 512 "
					     "up to %llu", name, path, size, DMR_SIZE_MAX);
		if (path_is_dmrep_device(fdname))
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: %s is a device dmrep itself owns", name, path);
		if (dmr_probe_in_use(fdname) == -EBUSY)
			return dmr_call_fail(c, DMR_RC_IN_USE, "disk %s: %s is in use", name, path);
		d->size_bytes = size;
		/* Root's path as given (/dev/vg0/lv outlives a reboot, dm-3
		 * may not); a member's as resolved, inside its --image-dir. */
		d->source = peer == DMR_PEER_ROOT ? strdup(path) : DMR_TAKE_PTR(resolved);
		if (!d->source)
			return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		/* A sparse file needs only its allocated blocks; a device
		 * may be full. */
		*import_bytes += is_block ? size :
				 (fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : size);
	}
	if (classic && !d->source)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	d->name = strdup(name);
	if (!d->name)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	*ret_fd = DMR_TAKE_FD(fd);
	return 0;
}

/* Do two disks name the same file or device (or the same new path)?  By
 * their descriptors where they exist. */
static bool same_file(const char *a, int fa, const char *b, int fb)
{
	struct stat sa, sb;

	if (dmr_streq(a, b))
		return true;
	if (fa < 0 || fb < 0 || fstat(fa, &sa) < 0 || fstat(fb, &sb) < 0)
		return false;
	if (S_ISBLK(sa.st_mode) && S_ISBLK(sb.st_mode))
		return sa.st_rdev == sb.st_rdev;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void vm_freep(struct dmr_vm **vm)
{
	dmr_vm_free(*vm);
}

int dmr_h_add_vm(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	_cleanup_(vm_freep) struct dmr_vm *vm = NULL;
	struct json_object *disks;
	struct add_ctx *ctx;
	enum dmr_peer_class peer = dmr_authz_peer(c->uid, c->privileged);
	_cleanup_free_ char *qmp_path = NULL, *qga_path = NULL, *shim_cmd = NULL;
	char why[256] = "";
	const char *what = NULL;
	int *fds = NULL;
	const char *name, *backend = "thin", *qmp = NULL, *qga = NULL, *shim = NULL;
	uint64_t import_bytes = 0, free_bytes = 0, keep = 0, age = 0, id, cow = 0;
	uint64_t max_points = DMR_CLASSIC_MAX_POINTS_DEFAULT;
	char dm[DMR_DM_NAME_SIZE];
	struct dmr_pool *pool = NULL;
	bool classic;
	size_t n;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_array(c, "disks", true, &disks)) ||
	    (rc = dmr_param_string(c, "backend", false, &backend)) ||
	    (rc = dmr_param_string(c, "qmp", false, &qmp)) ||
	    (rc = dmr_param_string(c, "qga", false, &qga)) ||
	    (rc = dmr_param_string(c, "exec_shim", false, &shim)) ||
	    (rc = dmr_param_u64_range(c, "keep_last", false, 0, DMR_KEEP_LAST_MAX, &keep)) ||
	    (rc = dmr_param_u64_range(c, "max_age", false, 0, DMR_SECONDS_MAX, &age)) ||
	    (rc = dmr_param_u64_range(c, "cow_size", false, 0, DMR_SIZE_MAX, &cow)) ||
	    (rc = dmr_param_u64_range(c, "max_points", false, 1, DMR_CLASSIC_MAX_POINTS_MAX,
				      &max_points)))
		return rc;
	/* /dev/dmrep/VM-test/DISK is a test failover's (CONTRACT): a VM of
	 * that name would share those links with VM's test views. */
	if (dmr_endswith(name, "-test"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "invalid VM name %s: a name ending in -test is a test failover's",
				     name);
	if (!dmr_streq(backend, "thin") && !dmr_streq(backend, "classic"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "backend must be thin or classic");
	classic = dmr_streq(backend, "classic");
	if (!classic && (json_object_object_get_ex(c->params, "cow_size", NULL) ||
			 json_object_object_get_ex(c->params, "max_points", NULL)))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_size and max_points are for the classic backend");
	if (cow % 4096 || (classic && cow && cow < (1u << 20)))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_size must be a multiple of 4096 and at least 1 MiB");
	if ((qmp && qmp[0] != '/') || (qga && qga[0] != '/'))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "qmp and qga must be absolute socket paths");
	n = json_object_array_length(disks);
	if (n == 0 || n > DMR_VM_DISKS_MAX)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "a VM needs 1 to %d disks",
				     DMR_VM_DISKS_MAX);
	if (!classic && (rc = dmr_ops_need_pool(c, &pool)))
		return rc;
	/* What root will connect to or run for this VM, judged now by the
	 * caller's rules (agent/core/authz.h); a member's is stored resolved. */
	r = 0;
	if (qmp)
		r = dmr_authz_socket(dmr_authz_conf(), peer, (what = qmp), &qmp_path, why, sizeof(why));
	if (r == 0 && qga)
		r = dmr_authz_socket(dmr_authz_conf(), peer, (what = qga), &qga_path, why, sizeof(why));
	if (r == 0 && shim)
		r = dmr_authz_shim(dmr_authz_conf(), peer, (what = shim), &shim_cmd, why, sizeof(why));
	if (r == -EACCES && why[0])
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED, "%s", why);
	if (r < 0)
		return dmr_call_fail(c, r == -ENOMEM ? DMR_RC_NO_SPACE : DMR_RC_INVALID_PARAMETER,
				     "%s: %s", what, strerror(-r));

	vm = calloc(1, sizeof(*vm));
	fds = malloc(n * sizeof(*fds));
	if (fds)
		for (size_t i = 0; i < n; i++)
			fds[i] = -1;
	if (!vm || !fds || !(vm->disks = calloc(n, sizeof(*vm->disks))) ||
	    !(vm->points = calloc(1, sizeof(*vm->points))) || !(vm->name = strdup(name)) ||
	    !(vm->backend = strdup(backend))) {
		close_fds(fds, n);
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	}
	vm->qmp = DMR_TAKE_PTR(qmp_path);
	vm->qga = DMR_TAKE_PTR(qga_path);
	vm->exec_shim = DMR_TAKE_PTR(shim_cmd);
	vm->n_disks = n;
	vm->next_point_id = 1;
	vm->keep_last = keep;
	vm->max_age_sec = age;
	vm->importing = true;
	vm->max_points = max_points;
	for (size_t i = 0; i < n; i++) {
		if ((rc = parse_disk(c, json_object_array_get_idx(disks, i), &vm->disks[i], classic,
				     &import_bytes, &fds[i])))
			goto fail_fds;
		for (size_t k = 0; k < i; k++) {
			if (dmr_streq(vm->disks[k].name, vm->disks[i].name)) {
				rc = dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "disk name %s given twice",
						   vm->disks[i].name);
				goto fail_fds;
			}
			/* In place, one device cannot be two disks. */
			if (classic && same_file(vm->disks[k].source, fds[k], vm->disks[i].source,
						 fds[i])) {
				rc = dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						   "disks %s and %s are the same device",
						   vm->disks[k].name, vm->disks[i].name);
				goto fail_fds;
			}
		}
	}
	for (size_t i = 0; classic && i < n; i++) {
		uint64_t d = cow ? cow : dmr_classic_default_cow(vm->disks[i].size_bytes);

		if (d > vm->cow_size)
			vm->cow_size = d;
	}
	/* Refuse before anything is written: the import would run the
	 * pool out of space half-way (and the pool errors, not queues). */
	r = classic ? 0 : dmr_pool_free_bytes(pool, &free_bytes);
	if (r < 0) {
		rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot read pool usage: %s", strerror(-r));
		goto fail_fds;
	}
	if (!classic && import_bytes > free_bytes) {
		rc = dmr_call_fail(c, DMR_RC_NO_SPACE,
				   "the pool has %" PRIu64 " bytes free, the import needs up to %" PRIu64,
				   free_bytes, import_bytes);
		goto fail_fds;
	}

	if (dmr_vm_busy_acquire(c->agent, name) < 0) {
		rc = dmr_call_fail(c, DMR_RC_IN_USE, "another operation holds VM %s", name);
		goto fail_fds;
	}
	/* A device that has one of the new VM's names already is someone
	 * else's: refuse before anything is made (and so never undone). */
	r = dmr_vm_dm_check(vm, dm);
	if (r < 0) {
		dmr_vm_busy_release(c->agent, name);
		if (r == -EEXIST)
			rc = dmr_call_fail(c, DMR_RC_IN_USE,
					   "%s exists and is not VM %s's (another UUID): left alone",
					   dm, name);
		else
			rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot check for %s's devices: %s",
					   name, strerror(-r));
		goto fail_fds;
	}
	pthread_mutex_lock(&reg->lock);
	r = dmr_reg_vm_find(reg, name) ? -EEXIST : 0;
	if (r == 0) {
		_cleanup_free_ uint32_t *ids = calloc(n, sizeof(*ids));

		r = ids ? (classic ? 0 : dmr_reg_alloc_vol_ids(reg, n, ids)) : -ENOMEM;
		for (size_t i = 0; r == 0 && i < n; i++)
			vm->disks[i].thin_id = ids[i];
	}
	if (r == 0)
		r = dmr_reg_vm_save(reg, vm);
	/* Not durable: the file is there all the same, so is the VM (the
	 * job's last save makes it durable, or recovery undoes the import). */
	if (r == 0 || r == -DMR_E_NOT_DURABLE)
		r = dmr_reg_vm_insert(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_vm_busy_release(c->agent, name);
		if (r == -EEXIST)
			rc = dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "a VM named %s exists", name);
		else
			rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot record VM %s: %s", name,
					   strerror(-r));
		goto fail_fds;
	}
	vm = NULL; /* the registry owns it now */

	ctx = calloc(1, sizeof(*ctx));
	if (ctx && !(ctx->vm = strdup(name))) {
		free(ctx);
		ctx = NULL;
	}
	r = ctx ? 0 : -ENOMEM;
	if (!ctx)
		close_fds(fds, n);
	if (ctx) {
		ctx->reg = reg;
		ctx->total_bytes = import_bytes;
		ctx->peer = peer;
		ctx->fds = fds;
		ctx->n_fds = n;
		r = dmr_job_start(c->agent, "AddVirtualSystem", name, add_job, ctx, add_ctx_free, &id);
	}
	if (r < 0) {
		pthread_mutex_lock(&reg->lock);
		(void)dmr_reg_vm_delete(reg, name);
		pthread_mutex_unlock(&reg->lock);
		dmr_vm_busy_release(c->agent, name);
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot start the job: %s", strerror(-r));
	}
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	json_object_object_add(c->reply, "vm", json_object_new_string(name));
	return DMR_RC_JOB_STARTED;
fail_fds:
	close_fds(fds, n);
	return rc;
}

int dmr_h_get_vm(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct json_object *o = NULL;
	const char *name;
	struct dmr_vm *vm;
	int rc;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (vm)
		o = dmr_vm_api_json(vm);
	pthread_mutex_unlock(&reg->lock);
	if (!vm)
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no VM named %s", name);
	if (!o)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_add(c->reply, "vm", o);
	return DMR_RC_OK;
}

int dmr_h_list_vms(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct json_object *a = json_object_new_array();

	if (!a)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	pthread_mutex_lock(&reg->lock);
	for (size_t i = 0; i < reg->n_vms; i++) {
		struct json_object *o = dmr_vm_api_json(reg->vms[i]);

		if (o)
			json_object_array_add(a, o);
	}
	/* State files left out at start, and why: the operator repairs them. */
	if (reg->unloadable)
		json_object_object_add(c->reply, "unloadable", json_object_get(reg->unloadable));
	pthread_mutex_unlock(&reg->lock);
	json_object_object_add(c->reply, "vms", a);
	return DMR_RC_OK;
}

int dmr_h_remove_vm(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	_cleanup_free_ uint32_t *ids = NULL;
	struct dmr_vm *vm;
	const char *name;
	size_t nids = 0, layers = 0;
	bool force;
	int rc, r = 0;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) || (rc = dmr_param_bool(c, "force", false, &force)) ||
	    (rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if ((vm->state != DMR_VM_REPLICATING && vm->state != DMR_VM_COMMITTED) || vm->test_failover)
		r = -DMR_E_STATE;
	/* A committed classic VM's data lives in its layers' COW stores, not
	 * on its disks: removing them loses it, so only when told to. */
	else if (dmr_vm_is_classic(vm) && vm->n_layers > 0 && !force)
		layers = vm->n_layers;
	if (r == 0) {
		ids = calloc(vm->n_disks * (vm->n_points + 1), sizeof(*ids));
		if (!ids)
			r = -ENOMEM;
		for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
			ids[nids++] = vm->disks[i].thin_id;
			for (size_t p = 0; p < vm->n_points; p++)
				ids[nids++] = vm->points[p].vol_ids[i];
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (r == -DMR_E_STATE) {
		rc = dmr_call_fail(c, DMR_RC_INVALID_STATE,
				   "VM %s is %s%s: revert, commit or stop the test first", name,
				   dmr_vm_state_name(vm->state), vm->test_failover ? " (test failover)" : "");
		goto out;
	}
	if (layers > 0) {
		rc = dmr_call_fail(c, DMR_RC_INVALID_STATE,
				   "VM %s's committed data lives in %zu layer%s of COW stores, not on its "
				   "disks: copy each /dev/dmrep/%s/DISK out, then vm remove --force",
				   name, layers, layers == 1 ? "" : "s", name);
		goto out;
	}
	if (r < 0) {
		rc = dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		goto out;
	}
	if (dmr_vm_is_classic(vm)) {
		r = dmr_classic_vm_teardown(reg, vm);
		if (r < 0) {
			rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot remove VM %s's devices%s: %s",
					   name, r == -EBUSY ? " (is the VM running?)" : "", strerror(-r));
			goto out;
		}
		goto forget;
	}
	/* Devices first: one that is open (the VM still runs) stops the
	 * removal before any volume is deleted. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		char dm[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
		struct dmr_dm_info info;

		(void)dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, dm);
		(void)dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid);
		if (dmr_dm_info(dm, &info) < 0 || !info.exists)
			continue;
		if (!dmr_streq(info.uuid, uuid)) {
			rc = dmr_call_fail(c, DMR_RC_IN_USE, "%s is not VM %s's device (another UUID)",
					   dm, name);
			goto out;
		}
		if (info.open_count > 0) {
			rc = dmr_call_fail(c, DMR_RC_IN_USE, "%s is open (is the VM running?)", dm);
			goto out;
		}
		r = dmr_dm_remove(dm, 5);
		if (r < 0) {
			rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot remove %s: %s", dm, strerror(-r));
			goto out;
		}
	}
	r = dmr_backend_of(vm)->remove(reg, vm, nids, ids);
	if (r < 0) {
		rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot delete the VM's volumes: %s",
				   strerror(-r));
		goto out;
	}
forget:
	pthread_mutex_lock(&reg->lock);
	r = dmr_reg_vm_delete(reg, name);
	pthread_mutex_unlock(&reg->lock);
	if (r == -DMR_E_NOT_DURABLE)
		rc = dmr_call_fail(c, DMR_RC_FAILED, "VM %s removed, but the state directory cannot "
				   "be synced: it may come back after a power loss", name);
	else
		rc = r < 0 ? dmr_call_fail(c, dmr_rc_from_errno(r), "cannot delete the state file: %s",
					   strerror(-r)) : DMR_RC_OK;
out:
	dmr_vm_busy_release(c->agent, name);
	return rc;
}

int dmr_h_set_retention(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	uint64_t keep = 0, age = 0;
	bool has_keep, has_age;
	struct dmr_vm *vm;
	const char *name;
	size_t dropped = 0;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	has_keep = json_object_object_get_ex(c->params, "keep_last", NULL);
	has_age = json_object_object_get_ex(c->params, "max_age", NULL);
	if ((rc = dmr_param_u64_range(c, "keep_last", false, 0, DMR_KEEP_LAST_MAX, &keep)) ||
	    (rc = dmr_param_u64_range(c, "max_age", false, 0, DMR_SECONDS_MAX, &age)))
		return rc;
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (has_keep)
		vm->keep_last = keep;
	if (has_age)
		vm->max_age_sec = age;
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		r = dmr_retention_apply(reg, vm, &dropped);
	dmr_vm_busy_release(c->agent, name);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot apply retention: %s", strerror(-r));
	json_object_object_add(c->reply, "dropped", json_object_new_int64((int64_t)dropped));
	return DMR_RC_OK;
}
