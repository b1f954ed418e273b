/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AddVirtualSystem's job and RemoveVirtualSystem's work (agent/engine/vm.h). */
#include "agent/engine/vm.h"

#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "agent/engine/pool.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/probe.h"

int dmr_vm_dm_check(const struct dmr_vm *vm, char ret_name[DMR_DM_NAME_SIZE])
{
	assert(vm);
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[2][DMR_DM_NAME_SIZE], uuid[2][DMR_DM_UUID_SIZE];
		int r;

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name[0])) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid[0])) < 0 ||
		    (r = dmr_vm_test_dm_name(vm->name, vm->disks[i].name, name[1])) < 0 ||
		    (r = dmr_vm_test_dm_uuid(vm->name, vm->disks[i].name, uuid[1])) < 0)
			return r;
		for (size_t k = 0; k < 2; k++) {
			r = dmr_dm_check_uuid(name[k], uuid[k]);
			if (r == -EEXIST)
				memcpy(ret_name, name[k], sizeof(name[k]));
			if (r < 0 && r != -ENOENT)
				return r;
		}
	}
	return 0;
}

bool dmr_vm_needs_pool(const struct dmr_vm *vm)
{
	return vm && dmr_backend_of(vm)->needs_pool;
}

int dmr_vm_may_remove(const struct dmr_vm *vm, bool force, char **ret_why)
{
	assert(vm);
	assert(ret_why);
	return dmr_backend_of(vm)->may_remove(vm, force, ret_why);
}

const struct dmr_backend *dmr_vm_backend_named(const char *name)
{
	return dmr_backend_named(name);
}

bool dmr_vm_backend_in_place(const struct dmr_backend *b)
{
	assert(b);
	return b->in_place;
}

bool dmr_vm_backend_needs_pool(const struct dmr_backend *b)
{
	assert(b);
	return b->needs_pool;
}

int dmr_vm_add_room(struct dmr_registry *reg, const struct dmr_backend *b, uint64_t *ret_free)
{
	assert(reg && b && ret_free);
	return b->add_room(reg, ret_free);
}

int dmr_vm_add_ids(struct dmr_registry *reg, const struct dmr_backend *b, size_t n,
		   uint32_t *ret_ids)
{
	assert(reg && b && (n == 0 || ret_ids));
	return b->add_ids(reg, n, ret_ids);
}

uint64_t dmr_vm_default_cow(const struct dmr_backend *b, uint64_t disk_bytes)
{
	assert(b);
	return b->default_cow(disk_bytes);
}

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

int dmr_vm_source_probe(const char *path, struct dmr_vm_source *ret)
{
	struct dmr_vm_source s = { 0 };
	int r;

	assert(path);
	assert(ret);
	r = dmr_probe_path_kind(path, &s.is_block, &s.size);
	if (r < 0)
		return -EINVAL;
	s.dmrep_own = path_is_dmrep_device(path);
	s.in_use = dmr_probe_in_use(path) == -EBUSY;
	*ret = s;
	return 0;
}

struct add_ctx {
	struct dmr_registry *reg;
	char *vm;
	uint64_t total_bytes; /* of all imports, for percent_complete */
	struct dmr_job *job;
	enum dmr_peer_class peer; /* who asked: the rules new files follow */
	/* Per disk, the source as opened and judged by the handler (-1: a new
	 * disk): the job uses these, never the path again. */
	size_t n_fds;
	int *fds;
};

void dmr_vm_fds_close(int *fds, size_t n)
{
	for (size_t i = 0; fds && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
}

static void add_ctx_free(void *p)
{
	struct add_ctx *ctx = p;

	dmr_vm_fds_close(ctx->fds, ctx->n_fds);
	free(ctx->vm);
	free(ctx);
}

static void report_step(void *userdata, const char *name, uint64_t usec)
{
	struct add_ctx *ctx = userdata;

	dmr_job_add_step(ctx->job, name, usec);
}

static void report_imported(void *userdata, uint64_t bytes)
{
	struct add_ctx *ctx = userdata;

	if (ctx->total_bytes)
		dmr_job_set_percent(ctx->job, (unsigned)(bytes * 99 / ctx->total_bytes));
}

static void report_fail(void *userdata, int negerrno, const char *what)
{
	struct add_ctx *ctx = userdata;

	(void)dmr_job_fail(ctx->job, negerrno, "%s", what);
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

/* Undo a VM whose creation failed or was interrupted: devices and volumes
 * (if its backend made them: created), catalog entry.  The import source
 * was only read, so nothing is lost. */
static void add_rollback(struct dmr_registry *reg, struct dmr_vm *vm, bool created)
{
	const struct dmr_backend *b = dmr_backend_of(vm);
	_cleanup_free_ uint32_t *ids = calloc(vm->n_disks, sizeof(uint32_t));

	if (created) {
		(void)b->teardown(reg, vm, NULL);
		for (size_t i = 0; ids && i < vm->n_disks; i++)
			ids[i] = b->live_id(vm, i);
		if (ids)
			(void)b->remove(reg, vm, vm->n_disks, ids);
	}
	pthread_mutex_lock(&reg->lock);
	(void)dmr_reg_vm_delete(reg, vm->name);
	pthread_mutex_unlock(&reg->lock);
}

static int add_job(struct dmr_job *job, void *userdata)
{
	struct add_ctx *ctx = userdata;
	struct dmr_registry *reg = ctx->reg;
	const struct dmr_backend_report rep = { .userdata = ctx, .step = report_step,
						.imported = report_imported, .fail = report_fail };
	_cleanup_free_ bool *made = NULL;
	bool created = false;
	struct dmr_vm *vm;
	int r;

	ctx->job = job;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	pthread_mutex_unlock(&reg->lock);
	if (!vm)
		return -ENOENT;
	made = calloc(vm->n_disks, sizeof(bool));
	r = made ? 0 : -ENOMEM;
	/* NAME=PATH:SIZE with no PATH yet (a classic disk, in place): the
	 * disk is a new file. */
	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		char why[256] = "";

		if (ctx->fds[i] >= 0 || !vm->disks[i].source)
			continue;
		r = create_image(ctx->peer, vm->disks[i].source, vm->disks[i].size_bytes,
				 &ctx->fds[i], why, sizeof(why));
		made[i] = r == 0;
		if (r < 0)
			dmr_job_set_error(job, dmr_rc_from_errno(r), "cannot create %s: %s",
					  vm->disks[i].source, why[0] ? why : strerror(-r));
	}
	if (r == 0) {
		r = dmr_backend_of(vm)->create(reg, vm, ctx->fds, &rep);
		if (r < 0 && dmr_vm_needs_pool(vm))
			r = dmr_pool_job_explain(reg, job, r);
	}
	if (r < 0) {
		/* Files made here held nothing: they go too. */
		for (size_t i = 0; made && i < vm->n_disks; i++)
			if (made[i])
				unlink_made(vm->disks[i].source, ctx->fds[i]);
		goto fail;
	}
	created = true;

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
	add_rollback(reg, vm, created);
	return r < 0 ? r : -EIO;
}

int dmr_vm_add_start(struct dmr_agent *a, const char *name, enum dmr_peer_class peer, int *fds,
		     size_t n, uint64_t import_bytes, uint64_t *ret_id)
{
	struct add_ctx *ctx;

	assert(a);
	assert(name);
	ctx = calloc(1, sizeof(*ctx));
	if (ctx && !(ctx->vm = strdup(name))) {
		free(ctx);
		ctx = NULL;
	}
	if (!ctx) {
		dmr_vm_fds_close(fds, n);
		return -ENOMEM;
	}
	ctx->reg = a->reg;
	ctx->total_bytes = import_bytes;
	ctx->peer = peer;
	ctx->fds = fds;
	ctx->n_fds = n;
	return dmr_job_start(a, "AddVirtualSystem", name, add_job, ctx, add_ctx_free, ret_id);
}

int dmr_vm_destroy(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why)
{
	const struct dmr_backend *b = dmr_backend_of(vm);
	_cleanup_free_ uint32_t *ids = NULL;
	size_t nids = 0;
	int r;

	assert(reg);
	assert(vm);
	assert(ret_why);
	pthread_mutex_lock(&reg->lock);
	ids = calloc(vm->n_disks * (vm->n_points + 1), sizeof(*ids));
	for (size_t i = 0; ids && i < vm->n_disks; i++) {
		ids[nids++] = b->live_id(vm, i);
		for (size_t p = 0; p < vm->n_points; p++)
			ids[nids++] = vm->points[p].vol_ids[i];
	}
	pthread_mutex_unlock(&reg->lock);
	if (!ids) {
		*ret_why = strdup("out of memory");
		return -ENOMEM;
	}
	/* Devices first: one that is open (the VM still runs) stops the
	 * removal before any volume is deleted. */
	r = b->teardown(reg, vm, ret_why);
	if (r < 0)
		return r;
	r = b->remove(reg, vm, nids, ids);
	if (r < 0 && asprintf(ret_why, "cannot delete the VM's volumes: %s", strerror(-r)) < 0)
		*ret_why = NULL;
	return r;
}
