/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreateReplicationPoint, ListReplicationPoints, DestroyReplicationPoint. */
#include <inttypes.h>

#include "agent/engine/job.h"
#include "agent/engine/monitor.h"
#include "agent/engine/point.h"
#include "agent/engine/retention.h"
#include "agent/rpc/handlers.h"
#include "agent/rpc/ops.h"
#include "agent/guest/qga.h"
#include "agent/guest/shim.h"
#include "common/rc.h"
#include "common/log.h"
#include "common/util.h"

#define DMR_LABEL_MAX 256

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* cow_devices: {"DISK": "/dev/...", ...} for a classic VM: every key a disk
 * of the VM, every device checked (dmr_point_cow_device_check), none
 * twice.  *ret gets one entry per disk (NULL: a store file). */
static int cow_devices_parse(struct dmr_call *c, const struct dmr_vm *vm, struct json_object *o,
			     bool force, char ***ret)
{
	char **devs;

	if (!dmr_point_takes_cow_devices(vm))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "cow_devices is for VMs on the classic backend");
	devs = calloc(vm->n_disks, sizeof(*devs));
	if (!devs)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_foreach(o, disk, jpath) {
		_cleanup_free_ char *what = NULL;
		const char *path;
		size_t i = 0;
		int r;

		while (i < vm->n_disks && !dmr_streq(vm->disks[i].name, disk))
			i++;
		if (i == vm->n_disks || !json_object_is_type(jpath, json_type_string)) {
			free_strv(devs, vm->n_disks);
			return dmr_call_fail(c, i == vm->n_disks ? DMR_RC_INVALID_PARAMETER :
					     DMR_RC_INCORRECT_TYPE, "cow_devices: %s is not a disk of %s "
					     "with a path", disk, vm->name);
		}
		path = json_object_get_string(jpath);
		for (size_t k = 0; k < vm->n_disks; k++)
			if (devs[k] && dmr_streq(devs[k], path)) {
				free_strv(devs, vm->n_disks);
				return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						     "cow_devices: %s given twice", path);
			}
		r = dmr_point_cow_device_check(vm, path, force, &what);
		if (r < 0) {
			free_strv(devs, vm->n_disks);
			if (r == -EBUSY)
				return dmr_call_fail(c, DMR_RC_IN_USE, "COW device %s is in use", path);
			if (r == -EEXIST)
				return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
						     "COW device %s carries %s (--force to overwrite)",
						     path, what ? what : "a signature");
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
					     "COW device %s: %s", path,
					     r == -ENOSPC ? "smaller than 1 MiB" :
					     r == -EINVAL ? "not an absolute path to another device" :
					     strerror(-r));
		}
		devs[i] = strdup(path);
		if (!devs[i]) {
			free_strv(devs, vm->n_disks);
			return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
		}
	}
	*ret = devs;
	return 0;
}

int dmr_h_create_point(struct dmr_call *c)
{
	struct json_object *cowdevs = NULL;
	char **devs = NULL;
	size_t n_devs = 0;
	bool force = false;
	const char *name, *consistency = "crash", *label = "";
	_cleanup_free_ char *qga = NULL;
	bool has_qga, can_freeze;
	uint64_t id;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_string(c, "consistency", false, &consistency)) ||
	    (rc = dmr_param_string(c, "label", false, &label)))
		return rc;
	if (!dmr_streq(consistency, "crash") && !dmr_streq(consistency, "application"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "consistency must be crash or application");
	if (strlen(label) > DMR_LABEL_MAX)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "label longer than %d bytes", DMR_LABEL_MAX);
	for (const unsigned char *p = (const unsigned char *)label; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "label has control characters");
	if ((rc = dmr_param_bool(c, "force", false, &force)))
		return rc;
	if (json_object_object_get_ex(c->params, "cow_devices", &cowdevs) &&
	    !json_object_is_type(cowdevs, json_type_object))
		return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "cow_devices must be an object");
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_need_up(c, name)) ||
	    (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	{
		struct dmr_registry *reg = c->agent->reg;
		_cleanup_free_ char *why = NULL;
		struct dmr_vm *vm;

		pthread_mutex_lock(&reg->lock);
		vm = dmr_reg_vm_find(reg, name);
		pthread_mutex_unlock(&reg->lock);
		/* The busy lock keeps vm's fields still for the checks. */
		if (cowdevs && (rc = cow_devices_parse(c, vm, cowdevs, force, &devs))) {
			dmr_vm_busy_release(c->agent, name);
			return rc;
		}
		n_devs = vm->n_disks;
		/* Storage once more: the pool may have gone down meanwhile. */
		if (!(rc = dmr_ops_need_storage(c, name))) {
			r = dmr_point_room(reg, vm, (const char *const *)devs, &why);
			if (r < 0)
				rc = dmr_call_fail(c, r == -EDQUOT || r == -ENOSPC ? DMR_RC_NO_SPACE :
						   dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
		}
		if (rc) {
			dmr_vm_busy_release(c->agent, name);
			free_strv(devs, n_devs);
			return rc;
		}
	}
	{
		struct dmr_registry *reg = c->agent->reg;
		enum dmr_vm_state st;
		struct dmr_vm *vm;

		pthread_mutex_lock(&reg->lock);
		vm = dmr_reg_vm_find(reg, name);
		st = vm->state;
		has_qga = vm->qga;
		if (has_qga)
			qga = strdup(vm->qga);
		/* Without --qga, a libvirt domain is frozen through libvirt. */
		can_freeze = has_qga || dmr_shim_vm_can_freeze(vm);
		pthread_mutex_unlock(&reg->lock);
		if (dmr_streq(consistency, "application") && !can_freeze) {
			dmr_vm_busy_release(c->agent, name);
			free_strv(devs, n_devs);
			return dmr_call_fail(c, DMR_RC_UNAVAILABLE,
					     "VM %s has no guest agent (vm add --qga SOCKET or --libvirt "
					     "DOMAIN) to freeze it", name);
		}
		/* A recovered VM runs on a point's overlay: its live
		 * volumes are no longer what it writes to. */
		if (st != DMR_VM_REPLICATING && st != DMR_VM_COMMITTED) {
			dmr_vm_busy_release(c->agent, name);
			free_strv(devs, n_devs);
			return dmr_call_fail(c, DMR_RC_INVALID_STATE,
					     "VM %s is %s: points are taken while replicating",
					     name, dmr_vm_state_name(st));
		}
	}

	r = dmr_point_job_start(c->agent, name, dmr_streq(consistency, "application"), qga, label,
				devs, n_devs, &id);
	if (r < 0) {
		dmr_vm_busy_release(c->agent, name);
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot start the job: %s", strerror(-r));
	}
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}

int dmr_h_list_points(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct json_object *a;
	struct dmr_vm *vm;
	const char *name;
	int rc;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	/* Classic points: the kernel says whether each is still valid. */
	dmr_monitor_refresh(reg, name);
	a = json_object_new_array();
	if (!a)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	for (size_t i = 0; vm && i < vm->n_points; i++) {
		/* A point still being made is not offered. */
		if (vm->points[i].pending_tid)
			continue;
		struct json_object *o = dmr_point_api_json(&vm->points[i], vm->n_disks);

		if (o)
			dmr_point_api_extras(vm, &vm->points[i], o);
		if (o)
			json_object_array_add(a, o);
	}
	pthread_mutex_unlock(&reg->lock);
	if (!vm) {
		json_object_put(a);
		return dmr_call_fail(c, DMR_RC_NOT_FOUND, "no VM named %s", name);
	}
	json_object_object_add(c->reply, "points", a);
	return DMR_RC_OK;
}

int dmr_h_destroy_point(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct dmr_point *pt;
	struct dmr_vm *vm;
	const char *name;
	uint64_t point;
	size_t idx = 0;
	int rc, r = 0;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) || (rc = dmr_param_u64(c, "point", true, &point)) ||
	    (rc = dmr_ops_need_storage_to_free(c, name)) || (rc = dmr_ops_vm_acquire(c, name)))
		return rc;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	pt = dmr_vm_point_find(vm, point);
	if (!pt || pt->pending_tid)
		r = -ENOENT;
	else if (point == vm->failover_point || point == vm->test_point ||
		 dmr_point_pinned(vm, point))
		r = -EBUSY;
	else
		idx = (size_t)(pt - vm->points);
	pthread_mutex_unlock(&reg->lock);
	if (r == -ENOENT) {
		rc = dmr_call_fail(c, DMR_RC_NOT_FOUND, "VM %s has no point %" PRIu64, name, point);
		goto out;
	}
	if (r == -EBUSY) {
		rc = dmr_call_fail(c, DMR_RC_IN_USE, "point %" PRIu64 " is in use by a failover%s", point,
				   dmr_point_pinned(vm, point) ?
				   " (a committed failover's disks stack on it)" : "");
		goto out;
	}
	/* The busy lock keeps idx valid. */
	if (r == 0)
		r = dmr_retention_drop_points(reg, vm, &idx, 1, "remove");
	if (r == -DMR_E_NOT_DURABLE)
		rc = dmr_call_fail(c, DMR_RC_FAILED, "point %" PRIu64 " removed from the catalog, but "
				   "the state directory cannot be synced: its volumes are kept until it "
				   "can", point);
	else
		rc = r < 0 ? dmr_call_fail(c, dmr_rc_from_errno(r), "cannot remove point %" PRIu64
					   ": %s", point, strerror(-r)) : DMR_RC_OK;
out:
	dmr_vm_busy_release(c->agent, name);
	return rc;
}
