/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AddVirtualSystem, GetVirtualSystem, ListVirtualSystems,
 * RemoveVirtualSystem, SetRetentionPolicy: the handlers.  The add job and
 * the removal's device work are agent/engine/vm.c's. */
#include <inttypes.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "agent/engine/retention.h"
#include "agent/core/authz.h"
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/engine/vm.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/log.h"
#include "common/path.h"
#include "common/util.h"
#include "dm/name.h"

static int parse_disk(struct dmr_call *c, struct json_object *jd, struct dmr_disk *d,
		      bool in_place, uint64_t *import_bytes, int *ret_fd)
{
	enum dmr_peer_class peer = dmr_authz_peer(c->uid, c->privileged);
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	char fdname[DMR_PATH_FD_NAME_MAX], why[256] = "";
	struct json_object *v;
	const char *name, *path;
	struct dmr_vm_source src = { 0 };
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
				(in_place ? O_RDWR : O_RDONLY) | O_NONBLOCK, &fd, &resolved, why,
				sizeof(why));
	if (r == -EACCES && why[0])
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED, "disk %s: %s", name, why);
	if (r < 0 && r != -ENOENT && r != -EINVAL)
		return dmr_call_fail(c, r == -EACCES ? DMR_RC_ACCESS_DENIED : DMR_RC_INVALID_PARAMETER,
				     "disk %s: cannot open %s: %s", name, path, strerror(-r));
	if (r == 0) {
		dmr_path_fd_name(fd, fdname);
		r = dmr_vm_source_probe(fdname, &src);
		size = src.size;
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
		if (in_place) {
			/* Disks in place (classic): the new disk will be a
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
		if (src.dmrep_own)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "disk %s: %s is a device dmrep itself owns", name, path);
		if (src.in_use)
			return dmr_call_fail(c, DMR_RC_IN_USE, "disk %s: %s is in use", name, path);
		d->size_bytes = size;
		/* Root's path as given (/dev/vg0/lv outlives a reboot, dm-3
		 * may not); a member's as resolved, inside its --image-dir. */
		d->source = peer == DMR_PEER_ROOT ? strdup(path) : DMR_TAKE_PTR(resolved);
		if (!d->source)
			return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		/* A sparse file needs only its allocated blocks; a device
		 * may be full. */
		*import_bytes += src.is_block ? size :
				 (fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : size);
	}
	if (in_place && !d->source)
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
	enum dmr_peer_class peer = dmr_authz_peer(c->uid, c->privileged);
	_cleanup_free_ char *qmp_path = NULL, *qga_path = NULL, *shim_cmd = NULL;
	char why[256] = "";
	const char *what = NULL;
	int *fds = NULL;
	const char *name, *backend = "thin", *qmp = NULL, *qga = NULL, *shim = NULL;
	const char *libvirt = NULL, *libvirt_uri = NULL;
	uint64_t import_bytes = 0, free_bytes = 0, keep = 0, age = 0, id, cow = 0;
	uint64_t max_points = DMR_CLASSIC_MAX_POINTS_DEFAULT;
	char dm[DMR_DM_NAME_SIZE];
	struct dmr_pool *pool = NULL;
	const struct dmr_backend *be;
	bool in_place;
	size_t n;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_array(c, "disks", true, &disks)) ||
	    (rc = dmr_param_string(c, "backend", false, &backend)) ||
	    (rc = dmr_param_string(c, "qmp", false, &qmp)) ||
	    (rc = dmr_param_string(c, "qga", false, &qga)) ||
	    (rc = dmr_param_string(c, "exec_shim", false, &shim)) ||
	    (rc = dmr_param_string(c, "libvirt", false, &libvirt)) ||
	    (rc = dmr_param_string(c, "libvirt_uri", false, &libvirt_uri)) ||
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
	be = dmr_vm_backend_named(backend);
	if (!be)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "backend must be thin or classic");
	in_place = dmr_vm_backend_in_place(be);
	if (!in_place && (json_object_object_get_ex(c->params, "cow_size", NULL) ||
			 json_object_object_get_ex(c->params, "max_points", NULL)))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_size and max_points are for the classic backend");
	if (cow % 4096 || (in_place && cow && cow < (1u << 20)))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_size must be a multiple of 4096 and at least 1 MiB");
	if ((qmp && qmp[0] != '/') || (qga && qga[0] != '/'))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "qmp and qga must be absolute socket paths");
	/* One hypervisor per VM: the shim that pauses it is the one that
	 * resumes it. */
	if (libvirt && (qmp || shim))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "libvirt is the VM's hypervisor: not with qmp or exec_shim");
	if (libvirt_uri && !libvirt)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "libvirt_uri needs libvirt (the domain)");
	if (libvirt && !dmr_vm_libvirt_valid(libvirt, false))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "libvirt must be a domain name or "
				     "UUID: 1 to %d printable characters, no '/'", DMR_VM_LIBVIRT_MAX);
	if (libvirt_uri && !dmr_vm_libvirt_valid(libvirt_uri, true))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "libvirt_uri must be 1 to %d "
				     "printable characters, no blank", DMR_VM_LIBVIRT_MAX);
	n = json_object_array_length(disks);
	if (n == 0 || n > DMR_VM_DISKS_MAX)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "a VM needs 1 to %d disks",
				     DMR_VM_DISKS_MAX);
	if (dmr_vm_backend_needs_pool(be) && (rc = dmr_ops_need_pool(c, &pool)))
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
		dmr_vm_fds_close(fds, n);
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	}
	vm->qmp = DMR_TAKE_PTR(qmp_path);
	vm->qga = DMR_TAKE_PTR(qga_path);
	vm->exec_shim = DMR_TAKE_PTR(shim_cmd);
	if ((libvirt && !(vm->libvirt = strdup(libvirt))) ||
	    (libvirt_uri && !(vm->libvirt_uri = strdup(libvirt_uri)))) {
		dmr_vm_fds_close(fds, n);
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	}
	vm->n_disks = n;
	dmr_uuid_new(vm->uuid);
	vm->next_point_id = 1;
	vm->keep_last = keep;
	vm->max_age_sec = age;
	vm->importing = true;
	vm->max_points = max_points;
	for (size_t i = 0; i < n; i++) {
		if ((rc = parse_disk(c, json_object_array_get_idx(disks, i), &vm->disks[i], in_place,
				     &import_bytes, &fds[i])))
			goto fail_fds;
		for (size_t k = 0; k < i; k++) {
			if (dmr_streq(vm->disks[k].name, vm->disks[i].name)) {
				rc = dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "disk name %s given twice",
						   vm->disks[i].name);
				goto fail_fds;
			}
			/* In place, one device cannot be two disks. */
			if (in_place && same_file(vm->disks[k].source, fds[k], vm->disks[i].source,
						 fds[i])) {
				rc = dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						   "disks %s and %s are the same device",
						   vm->disks[k].name, vm->disks[i].name);
				goto fail_fds;
			}
		}
	}
	for (size_t i = 0; in_place && i < n; i++) {
		uint64_t d = cow ? cow : dmr_vm_default_cow(be, vm->disks[i].size_bytes);

		if (d > vm->cow_size)
			vm->cow_size = d;
	}
	/* Refuse before anything is written: the import would run the
	 * pool out of space half-way (and the pool errors, not queues). */
	r = dmr_vm_add_room(reg, be, &free_bytes);
	if (r < 0) {
		rc = dmr_call_fail(c, dmr_rc_from_errno(r), "cannot read pool usage: %s", strerror(-r));
		goto fail_fds;
	}
	if (import_bytes > free_bytes) {
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

		r = ids ? dmr_vm_add_ids(reg, be, n, ids) : -ENOMEM;
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

	r = dmr_vm_add_start(c->agent, name, peer, DMR_TAKE_PTR(fds), n, import_bytes, &id);
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
	dmr_vm_fds_close(fds, n);
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
	_cleanup_free_ char *why = NULL;
	struct dmr_vm *vm;
	const char *name;
	bool force;
	int rc, r = 0;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) || (rc = dmr_param_bool(c, "force", false, &force)) ||
	    (rc = dmr_ops_need_storage_to_free(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if ((vm->state != DMR_VM_REPLICATING && vm->state != DMR_VM_COMMITTED) || vm->test_failover)
		r = -DMR_E_STATE;
	else
		r = dmr_vm_may_remove(vm, force, &why);
	pthread_mutex_unlock(&reg->lock);
	if (r == -DMR_E_STATE && !why) {
		rc = dmr_call_fail(c, DMR_RC_INVALID_STATE,
				   "VM %s is %s%s: revert, commit or stop the test first", name,
				   dmr_vm_state_name(vm->state), vm->test_failover ? " (test failover)" : "");
		goto out;
	}
	if (r == 0)
		r = dmr_vm_destroy(reg, vm, &why);
	if (r < 0) {
		rc = why ? dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why) :
			   dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		goto out;
	}
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
	if ((rc = dmr_ops_need_storage_to_free(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
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
