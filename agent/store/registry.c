/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/store/registry.h"
#include "agent/store/ident_json.h"

#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "dm/name.h"

#define STATE_FILE_MAX (16u << 20)

/* ---- names ------------------------------------------------------------ */

/*
 * dm names: "dmrep-VM:DISK", and "dmrep-VM:test:DISK" for a test
 * failover's view.  ':' never occurs in VM or disk names, so a name splits
 * back one way only: VM a-b's disk c (dmrep-a-b:c) is not VM a's disk b-c
 * (dmrep-a:b-c), VM x's test view of y (dmrep-x:test:y) is not VM x-test's
 * disk y (dmrep-x-test:y), and no VM's name is the pool's or a classic
 * store's (dmrep-pool, dmrep-snap-N: no ':').  lvm2's doubled '-' would
 * need up to 2 * 2 * DMR_OBJ_NAME_MAX bytes; this needs no escaping.
 * Older agents named them "dmrep-VM-DISK" and "dmrep-VM-test-DISK": the
 * UUIDs (unchanged) find those at start, and recovery renames them
 * (agent/engine/recovery.c).
 */
#define DISK_NAME_FMT "dmrep-%s:%s"
#define TEST_NAME_FMT "dmrep-%s:test:%s"
#define DISK_UUID_FMT DMR_UUID_PREFIX "disk-%s:%s"
#define TEST_UUID_FMT DMR_UUID_PREFIX "test-%s:%s"
#define FMT_FIXED(fmt) (sizeof(fmt) - 1 - 4) /* without the two "%s" */
_Static_assert(FMT_FIXED(TEST_NAME_FMT) + 2 * DMR_OBJ_NAME_MAX <= DMR_DM_NAME_MAX &&
	       FMT_FIXED(DISK_NAME_FMT) <= FMT_FIXED(TEST_NAME_FMT),
	       "the longest VM and disk names must fit a dm name");
_Static_assert(FMT_FIXED(TEST_UUID_FMT) + 2 * DMR_OBJ_NAME_MAX <= DMR_DM_UUID_MAX &&
	       FMT_FIXED(DISK_UUID_FMT) == FMT_FIXED(TEST_UUID_FMT),
	       "the longest VM and disk names must fit a dm UUID");

/* The names are what make the result unambiguous: check them here, not
 * only where they came in (a state file edited by hand). */
static int dm_id(char *buf, size_t len, const char *fmt, const char *vm, const char *disk)
{
	int n;

	if (dmr_name_obj_valid(vm, DMR_OBJ_NAME_MAX) < 0 ||
	    dmr_name_obj_valid(disk, DMR_OBJ_NAME_MAX) < 0)
		return -EINVAL;
	n = snprintf(buf, len, fmt, vm, disk);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int dmr_vm_disk_dm_name(const char *vm, const char *disk, char buf[DMR_DM_NAME_SIZE])
{
	return dm_id(buf, DMR_DM_NAME_MAX + 1, DISK_NAME_FMT, vm, disk);
}

int dmr_vm_disk_dm_uuid(const char *vm, const char *disk, char buf[DMR_DM_UUID_SIZE])
{
	/* The udev rule splits the UUID at ':' into /dev/dmrep/VM/DISK. */
	return dm_id(buf, DMR_DM_UUID_MAX + 1, DISK_UUID_FMT, vm, disk);
}

int dmr_vm_test_dm_name(const char *vm, const char *disk, char buf[DMR_DM_NAME_SIZE])
{
	return dm_id(buf, DMR_DM_NAME_MAX + 1, TEST_NAME_FMT, vm, disk);
}

int dmr_vm_test_dm_uuid(const char *vm, const char *disk, char buf[DMR_DM_UUID_SIZE])
{
	return dm_id(buf, DMR_DM_UUID_MAX + 1, TEST_UUID_FMT, vm, disk);
}

const char *dmr_vm_state_name(enum dmr_vm_state s)
{
	switch (s) {
	case DMR_VM_REPLICATING: return "replicating";
	case DMR_VM_FAILOVER_IN_PROGRESS: return "failover-in-progress";
	case DMR_VM_RECOVERED: return "recovered";
	case DMR_VM_COMMITTED: return "committed";
	}
	return "unknown";
}

const char *dmr_vm_role_name(enum dmr_vm_role r)
{
	return r == DMR_VM_REPLICA ? "replica" : "primary";
}

static int vm_state_parse(const char *s, enum dmr_vm_state *ret)
{
	for (int i = DMR_VM_REPLICATING; i <= DMR_VM_COMMITTED; i++)
		if (dmr_streq(s, dmr_vm_state_name((enum dmr_vm_state)i))) {
			*ret = (enum dmr_vm_state)i;
			return 0;
		}
	return -EINVAL;
}

/* ---- memory ----------------------------------------------------------- */

static void point_done(struct dmr_point *p)
{
	free(p->label);
	free(p->vol_ids);
}

void dmr_vm_free(struct dmr_vm *vm)
{
	if (!vm)
		return;
	for (size_t i = 0; i < vm->n_disks; i++) {
		free(vm->disks[i].name);
		free(vm->disks[i].source);
		free(vm->disks[i].base_dev);
		dmr_ident_free(vm->disks[i].ident);
	}
	for (size_t i = 0; i < vm->n_layers; i++)
		free(vm->layers[i].ids);
	free(vm->layers);
	for (size_t i = 0; i < vm->n_points; i++)
		point_done(&vm->points[i]);
	free(vm->disks);
	free(vm->points);
	free(vm->overlay_ids);
	free(vm->test_ids);
	free(vm->doomed);
	dmr_repl_clear(&vm->repl);
	free(vm->name);
	free(vm->backend);
	free(vm->qmp);
	free(vm->qga);
	free(vm->exec_shim);
	free(vm->libvirt);
	free(vm->libvirt_uri);
	json_object_put(vm->network);
	free(vm->down_reason);
	free(vm);
}

struct dmr_vm *dmr_reg_vm_find(struct dmr_registry *reg, const char *name)
{
	for (size_t i = 0; i < reg->n_vms; i++)
		if (dmr_streq(reg->vms[i]->name, name))
			return reg->vms[i];
	return NULL;
}

int dmr_reg_vm_insert(struct dmr_registry *reg, struct dmr_vm *vm)
{
	struct dmr_vm **n;

	if (dmr_reg_vm_find(reg, vm->name))
		return -EEXIST;
	n = realloc(reg->vms, (reg->n_vms + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	reg->vms = n;
	reg->vms[reg->n_vms++] = vm;
	return 0;
}

static int vm_path(const struct dmr_registry *reg, const char *name, char **ret)
{
	return asprintf(ret, "%s/vms/%s.json", reg->state_dir, name) < 0 ? -ENOMEM : 0;
}

int dmr_reg_vm_delete(struct dmr_registry *reg, const char *name)
{
	_cleanup_free_ char *path = NULL;

	for (size_t i = 0; i < reg->n_vms; i++) {
		if (!dmr_streq(reg->vms[i]->name, name))
			continue;
		int r;

		if (vm_path(reg, name, &path) < 0)
			return -ENOMEM;
		/* Synced, or a power loss brings the VM back. */
		r = dmr_unlink_durable(path);
		if (r < 0 && r != -DMR_E_NOT_DURABLE)
			return r;
		dmr_vm_free(reg->vms[i]);
		memmove(&reg->vms[i], &reg->vms[i + 1], (reg->n_vms - i - 1) * sizeof(*reg->vms));
		reg->n_vms--;
		return r;
	}
	return -ENOENT;
}

struct dmr_point *dmr_vm_point_find(struct dmr_vm *vm, uint64_t id)
{
	for (size_t i = 0; i < vm->n_points; i++)
		if (vm->points[i].id == id)
			return &vm->points[i];
	return NULL;
}

void dmr_vm_point_drop(struct dmr_vm *vm, size_t i)
{
	point_done(&vm->points[i]);
	memmove(&vm->points[i], &vm->points[i + 1], (vm->n_points - i - 1) * sizeof(*vm->points));
	vm->n_points--;
}

/* ---- JSON: API shapes ------------------------------------------------- */

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

struct json_object *dmr_point_api_json(const struct dmr_point *p, size_t n_disks)
{
	struct json_object *o = json_object_new_object(), *ids;
	char ts[32] = "";

	if (!o)
		return NULL;
	(void)dmr_format_rfc3339(p->created_usec, ts);
	json_object_object_add(o, "id", json_object_new_int64((int64_t)p->id));
	json_object_object_add(o, "uuid", json_object_new_string(p->uuid));
	json_object_object_add(o, "created", json_object_new_string(ts));
	json_object_object_add(o, "consistency",
			       json_object_new_string(p->application ? "application" : "crash"));
	json_object_object_add(o, "label", json_object_new_string(p->label ? p->label : ""));
	json_object_object_add(o, "valid", json_object_new_boolean(p->valid && !p->pending_tid));
	/* The per-disk thin ids let an operator (or a test) activate a
	 * point's snapshot read-only with dmsetup to inspect it. */
	ids = json_object_new_array();
	for (size_t i = 0; ids && i < n_disks; i++)
		json_object_array_add(ids, json_object_new_int64(p->vol_ids[i]));
	/* "thin_ids" is the historical name (they are COW store numbers on
	 * a classic VM); "volume_ids" says what they are. */
	json_object_object_add(o, "volume_ids", json_object_get(ids));
	json_object_object_add(o, "thin_ids", ids);
	return o;
}

/* "replication" of vm show: the replica's side (what it received), or the
 * primary's (off until continuous replication is set, issue 15). */
static struct json_object *replication_api_json(const struct dmr_vm *vm)
{
	struct json_object *o = json_object_new_object();
	const struct dmr_point *newest = NULL;
	char ts[32] = "";

	if (!o)
		return NULL;
	for (size_t i = vm->n_points; i-- > 0;)
		if (vm->points[i].valid && !vm->points[i].pending_tid) {
			newest = &vm->points[i];
			break;
		}
	/* CONTRACT.md's shape, from the settings and what the cycles learned
	 * (agent/store/repl.h). */
	{
		const struct dmr_repl *rp = &vm->repl;
		uint64_t now = dmr_realtime_usec();
		int64_t lag = dmr_repl_lag_sec(rp, now);
		char ok_ts[32] = "";

		if (rp->last_success_usec)
			(void)dmr_format_rfc3339(rp->last_success_usec, ok_ts);
		json_object_object_add(o, "state",
				       json_object_new_string(dmr_repl_health_name(dmr_repl_health(rp, now))));
		json_object_object_add(o, "interval", json_object_new_int64(rp->to ? rp->interval_sec : 0));
		json_object_object_add(o, "to", json_object_new_string(rp->to ? rp->to : ""));
		json_object_object_add(o, "last_success",
				       rp->last_success_usec ? json_object_new_string(ok_ts) : NULL);
		json_object_object_add(o, "lag_seconds", lag >= 0 ? json_object_new_int64(lag) : NULL);
		json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)rp->bytes_sent));
		json_object_object_add(o, "last_error",
				       json_object_new_string(rp->last_error ? rp->last_error : ""));
		json_object_object_add(o, "acknowledged",
				       rp->acked_uuid[0] ? json_object_new_string(rp->acked_uuid) : NULL);
		json_object_object_add(o, "failures", json_object_new_int64(rp->failures));
		json_object_object_add(o, "paused", json_object_new_boolean(rp->paused));
	}
	if (vm->role == DMR_VM_REPLICA) {
		uint64_t now = dmr_realtime_usec();

		if (vm->last_received_usec)
			(void)dmr_format_rfc3339(vm->last_received_usec, ts);
		json_object_object_add(o, "last_received",
				       vm->last_received_usec ? json_object_new_string(ts) : NULL);
		json_object_object_add(o, "newest_point_age_seconds",
				       newest ? json_object_new_int64((int64_t)((now > newest->created_usec ?
						now - newest->created_usec : 0) / 1000000)) : NULL);
	}
	return o;
}

struct json_object *dmr_vm_api_json(const struct dmr_vm *vm)
{
	struct json_object *o = json_object_new_object();
	struct json_object *disks = json_object_new_array();

	if (!o || !disks) {
		json_object_put(o);
		json_object_put(disks);
		return NULL;
	}
	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "uuid", json_object_new_string(vm->uuid));
	json_object_object_add(o, "role", json_object_new_string(dmr_vm_role_name(vm->role)));
	json_object_object_add(o, "state", json_object_new_string(dmr_vm_state_name(vm->state)));
	json_object_object_add(o, "test_failover", json_object_new_boolean(vm->test_failover));
	json_object_object_add(o, "backend", json_object_new_string(vm->backend));
	json_object_object_add(o, "replication", replication_api_json(vm));
	for (size_t i = 0; i < vm->n_disks; i++) {
		struct json_object *d = json_object_new_object();
		char dev[256];

		snprintf(dev, sizeof(dev), "/dev/dmrep/%s/%s", vm->name, vm->disks[i].name);
		json_object_object_add(d, "name", json_object_new_string(vm->disks[i].name));
		json_object_object_add(d, "device", json_object_new_string(dev));
		json_object_object_add(d, "size_bytes",
				       json_object_new_int64((int64_t)vm->disks[i].size_bytes));
		if (vm->failover_point && vm->overlay_ids) {
			char tgt[32];

			snprintf(tgt, sizeof(tgt), "point:%" PRIu64, vm->failover_point);
			json_object_object_add(d, "target", json_object_new_string(tgt));
		} else if (vm->disks[i].thin_id == 0 && vm->role == DMR_VM_REPLICA) {
			/* A replica before a failover: points only, no live
			 * volume and no /dev/dmrep/VM/DISK yet (README). */
			json_object_object_add(d, "target", json_object_new_string("none"));
		} else {
			json_object_object_add(d, "target", json_object_new_string("live"));
		}
		json_object_object_add(d, "thin_id", json_object_new_int64(vm->disks[i].thin_id));
		if (vm->disks[i].ident)
			json_object_object_add(d, "identity", dmr_ident_json(vm->disks[i].ident));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "failover_point",
			       vm->failover_point ? json_object_new_int64((int64_t)vm->failover_point) : NULL);
	json_object_object_add(o, "test_point",
			       vm->test_point ? json_object_new_int64((int64_t)vm->test_point) : NULL);
	json_object_object_add(o, "points", json_object_new_int64((int64_t)vm->n_points));
	json_object_object_add(o, "importing", json_object_new_boolean(vm->importing));
	json_object_object_add(o, "qmp", str_or_null(vm->qmp));
	json_object_object_add(o, "qga", str_or_null(vm->qga));
	json_object_object_add(o, "exec_shim", str_or_null(vm->exec_shim));
	json_object_object_add(o, "libvirt", str_or_null(vm->libvirt));
	json_object_object_add(o, "libvirt_uri", vm->libvirt ? json_object_new_string(
		vm->libvirt_uri ? vm->libvirt_uri : DMR_VM_LIBVIRT_DEFAULT_URI) : NULL);
	json_object_object_add(o, "keep_last", json_object_new_int64((int64_t)vm->keep_last));
	json_object_object_add(o, "max_age", json_object_new_int64((int64_t)vm->max_age_sec));
	json_object_object_add(o, "network", vm->network ? json_object_get(vm->network) :
							    json_object_new_array());
	if (dmr_streq(vm->backend, "classic")) {
		json_object_object_add(o, "cow_size", json_object_new_int64((int64_t)vm->cow_size));
		json_object_object_add(o, "max_points", json_object_new_int64((int64_t)vm->max_points));
		json_object_object_add(o, "layers", json_object_new_int64((int64_t)vm->n_layers));
	}
	json_object_object_add(o, "down_reason", str_or_null(vm->down_reason));
	return o;
}

/* ---- JSON: state files ------------------------------------------------ */

static struct json_object *ids_json(const uint32_t *ids, size_t n)
{
	struct json_object *a;

	if (!ids)
		return NULL;
	a = json_object_new_array();
	for (size_t i = 0; a && i < n; i++)
		json_object_array_add(a, json_object_new_int64(ids[i]));
	return a;
}

struct json_object *dmr_vm_state_json(const struct dmr_vm *vm)
{
	struct json_object *o = json_object_new_object();
	struct json_object *disks = json_object_new_array();
	struct json_object *points = json_object_new_array();

	if (!o || !disks || !points) {
		json_object_put(o);
		json_object_put(disks);
		json_object_put(points);
		return NULL;
	}
	json_object_object_add(o, "schema", json_object_new_int(DMR_STATE_SCHEMA));
	json_object_object_add(o, "name", json_object_new_string(vm->name));
	/* Every VM is made with one; a record without (a test's) gets one
	 * when loaded, as a file from before uuids does. */
	if (vm->uuid[0])
		json_object_object_add(o, "uuid", json_object_new_string(vm->uuid));
	json_object_object_add(o, "role", json_object_new_string(dmr_vm_role_name(vm->role)));
	json_object_object_add(o, "last_received_usec",
			       json_object_new_int64((int64_t)vm->last_received_usec));
	/* Absent while replication was never set: files stay as they were. */
	if (vm->repl.to || vm->repl.acked_uuid[0])
		json_object_object_add(o, "replication", dmr_repl_state_json(&vm->repl));
	json_object_object_add(o, "backend", json_object_new_string(vm->backend));
	json_object_object_add(o, "state", json_object_new_string(dmr_vm_state_name(vm->state)));
	json_object_object_add(o, "test_failover", json_object_new_boolean(vm->test_failover));
	json_object_object_add(o, "qmp", str_or_null(vm->qmp));
	json_object_object_add(o, "qga", str_or_null(vm->qga));
	if (vm->network)
		json_object_object_add(o, "network", json_object_get(vm->network));
	json_object_object_add(o, "exec_shim", str_or_null(vm->exec_shim));
	if (vm->libvirt) {
		json_object_object_add(o, "libvirt", json_object_new_string(vm->libvirt));
		json_object_object_add(o, "libvirt_uri", str_or_null(vm->libvirt_uri));
	}
	json_object_object_add(o, "next_point_id", json_object_new_int64((int64_t)vm->next_point_id));
	json_object_object_add(o, "keep_last", json_object_new_int64((int64_t)vm->keep_last));
	json_object_object_add(o, "max_age_sec", json_object_new_int64((int64_t)vm->max_age_sec));
	json_object_object_add(o, "import_tid", json_object_new_int64((int64_t)vm->import_tid));
	json_object_object_add(o, "importing", json_object_new_boolean(vm->importing));
	json_object_object_add(o, "failover_point", json_object_new_int64((int64_t)vm->failover_point));
	json_object_object_add(o, "test_point", json_object_new_int64((int64_t)vm->test_point));
	json_object_object_add(o, "intent", json_object_new_string(vm->intent));
	json_object_object_add(o, "intent_point", json_object_new_int64((int64_t)vm->intent_point));
	json_object_object_add(o, "intent_guest_ran", json_object_new_boolean(vm->intent_guest_ran));
	json_object_object_add(o, "overlay_ids", ids_json(vm->overlay_ids, vm->n_disks));
	json_object_object_add(o, "test_ids", ids_json(vm->test_ids, vm->n_disks));
	json_object_object_add(o, "cow_size", json_object_new_int64((int64_t)vm->cow_size));
	json_object_object_add(o, "max_points", json_object_new_int64((int64_t)vm->max_points));
	{
		struct json_object *layers = json_object_new_array();

		for (size_t l = 0; layers && l < vm->n_layers; l++) {
			struct json_object *jl = json_object_new_object();

			json_object_object_add(jl, "point", json_object_new_int64((int64_t)vm->layers[l].point));
			json_object_object_add(jl, "since", json_object_new_int64((int64_t)vm->layers[l].since));
			json_object_object_add(jl, "ids", ids_json(vm->layers[l].ids, vm->n_disks));
			json_object_array_add(layers, jl);
		}
		json_object_object_add(o, "layers", layers);
	}
	if (vm->n_doomed)
		json_object_object_add(o, "doomed_ids", ids_json(vm->doomed, vm->n_doomed));
	for (size_t i = 0; i < vm->n_disks; i++) {
		const struct dmr_disk *d = &vm->disks[i];
		struct json_object *jd = json_object_new_object();

		json_object_object_add(jd, "name", json_object_new_string(d->name));
		json_object_object_add(jd, "size_bytes", json_object_new_int64((int64_t)d->size_bytes));
		json_object_object_add(jd, "thin_id", json_object_new_int64(d->thin_id));
		json_object_object_add(jd, "source", str_or_null(d->source));
		if (d->ident)
			json_object_object_add(jd, "identity", dmr_ident_json(d->ident));
		json_object_array_add(disks, jd);
	}
	json_object_object_add(o, "disks", disks);
	for (size_t i = 0; i < vm->n_points; i++) {
		const struct dmr_point *p = &vm->points[i];
		struct json_object *jp = json_object_new_object();
		struct json_object *ids = json_object_new_array();

		json_object_object_add(jp, "id", json_object_new_int64((int64_t)p->id));
		if (p->uuid[0])
			json_object_object_add(jp, "uuid", json_object_new_string(p->uuid));
		json_object_object_add(jp, "created_usec", json_object_new_int64((int64_t)p->created_usec));
		json_object_object_add(jp, "consistency",
				       json_object_new_string(p->application ? "application" : "crash"));
		json_object_object_add(jp, "label", json_object_new_string(p->label ? p->label : ""));
		json_object_object_add(jp, "valid", json_object_new_boolean(p->valid));
		json_object_object_add(jp, "pending_tid", json_object_new_int64((int64_t)p->pending_tid));
		for (size_t k = 0; k < vm->n_disks; k++)
			json_object_array_add(ids, json_object_new_int64(p->vol_ids[k]));
		json_object_object_add(jp, "thin_ids", ids);
		json_object_array_add(points, jp);
	}
	json_object_object_add(o, "points", points);
	return o;
}

/* The field a state file was refused for, for the one log line that says
 * why (the loader runs in one thread at start; unit tests read it too). */
static const char *bad_field;

static int bad(const char *key)
{
	bad_field = key;
	return -EBADMSG;
}

/* An optional uuid (absent in files from before uuids): taken if valid,
 * made if absent (*made set), -EBADMSG if present and not a uuid. */
static int get_uuid(struct json_object *o, char buf[DMR_UUID_STR_SIZE], bool *made)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, "uuid", &v)) {
		dmr_uuid_new(buf);
		*made = true;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string) || !dmr_uuid_valid(json_object_get_string(v)))
		return bad("uuid");
	memcpy(buf, json_object_get_string(v), DMR_UUID_STR_SIZE);
	return 0;
}

static int get_str(struct json_object *o, const char *key, bool nullable, char **ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return bad(key);
	if (!v && nullable) {
		*ret = NULL;
		return 0;
	}
	/* A NUL inside would cut the string short of what was checked. */
	if (!json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return bad(key);
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
}

bool dmr_vm_libvirt_valid(const char *s, bool uri)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, DMR_VM_LIBVIRT_MAX + 1);
	if (n == 0 || n > DMR_VM_LIBVIRT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e ||
		    s[i] == (uri ? ' ' : '/'))
			return false;
	return true;
}

/* libvirt and libvirt_uri: absent (a file from before them) or null is
 * none; else as dmr_vm_libvirt_valid. */
static int get_libvirt(struct json_object *o, const char *key, bool uri, char **ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !v) {
		*ret = NULL;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v) ||
	    !dmr_vm_libvirt_valid(json_object_get_string(v), uri))
		return bad(key);
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
}

/* A number 0..max.  json-c saturates at INT64_MAX without a word, so that
 * value is never taken at face value. */
static int get_u64_max(struct json_object *o, const char *key, uint64_t max, uint64_t *ret)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return bad(key);
	x = json_object_get_int64(v);
	if (x < 0 || x == INT64_MAX || (uint64_t)x > max)
		return bad(key);
	*ret = (uint64_t)x;
	return 0;
}

static int get_u64(struct json_object *o, const char *key, uint64_t *ret)
{
	return get_u64_max(o, key, INT64_MAX, ret);
}

static int get_bool(struct json_object *o, const char *key, bool *ret)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
		return bad(key);
	*ret = json_object_get_boolean(v);
	return 0;
}

static int get_vol_id(struct json_object *v, uint32_t *ret)
{
	int64_t x;

	if (!json_object_is_type(v, json_type_int))
		return -EBADMSG;
	x = json_object_get_int64(v);
	if (x < 0 || x > DMR_THIN_DEV_ID_MAX)
		return -EBADMSG;
	*ret = (uint32_t)x;
	return 0;
}

/* An array of n thin ids (any length up to max if n is 0), or null
 * (-> NULL). */
static int get_ids_n(struct json_object *o, const char *key, size_t n, size_t max,
		     uint32_t **ret, size_t *ret_n)
{
	struct json_object *a;
	_cleanup_free_ uint32_t *ids = NULL;
	size_t len;

	if (!json_object_object_get_ex(o, key, &a))
		return bad(key);
	if (!a) {
		*ret = NULL;
		return 0;
	}
	if (!json_object_is_type(a, json_type_array))
		return bad(key);
	len = json_object_array_length(a);
	if (n ? len != n : len > max)
		return bad(key);
	ids = calloc(len ? len : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		if (get_vol_id(json_object_array_get_idx(a, i), &ids[i]) < 0)
			return bad(key);
	*ret = DMR_TAKE_PTR(ids);
	if (ret_n)
		*ret_n = len;
	return 0;
}

static int get_ids(struct json_object *o, const char *key, size_t n, uint32_t **ret)
{
	return get_ids_n(o, key, n, 0, ret, NULL);
}

/* Failover network settings as SetFailoverNetworkAdapterSettings stores
 * them (agent/rpc/ops_network.c): the hooks read them without more checks. */
static bool network_valid(struct json_object *net)
{
	size_t n = json_object_array_length(net);

	if (n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		struct json_object *nic = json_object_array_get_idx(net, i), *v;
		static const char *const lists[] = { "addresses", "gateways", "dns" };

		if (!json_object_is_type(nic, json_type_object) ||
		    !json_object_object_get_ex(nic, "mac", &v) || !json_object_is_type(v, json_type_string))
			return false;
		for (size_t k = 0; k < DMR_ARRAY_SIZE(lists); k++) {
			if (!json_object_object_get_ex(nic, lists[k], &v))
				continue;
			if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > 16)
				return false;
			for (size_t e = 0; e < json_object_array_length(v); e++)
				if (!json_object_is_type(json_object_array_get_idx(v, e), json_type_string))
					return false;
		}
	}
	return true;
}

int dmr_vm_from_state_json(struct json_object *o, struct dmr_vm **ret_vm)
{
	_cleanup_(dmr_vm_freep) struct dmr_vm *vm = calloc(1, sizeof(*vm));
	_cleanup_free_ char *state = NULL;
	struct json_object *disks, *points;
	uint64_t schema;
	int r;

	if (!vm)
		return -ENOMEM;
	bad_field = NULL;
	if (!json_object_is_type(o, json_type_object))
		return -EBADMSG;
	if (get_u64(o, "schema", &schema) < 0 || schema != DMR_STATE_SCHEMA)
		return -EPROTONOSUPPORT;
	if ((r = get_str(o, "name", false, &vm->name)) < 0 ||
	    (r = get_str(o, "backend", false, &vm->backend)) < 0 ||
	    (r = get_str(o, "state", false, &state)) < 0 ||
	    (r = get_bool(o, "test_failover", &vm->test_failover)) < 0 ||
	    (r = get_str(o, "qmp", true, &vm->qmp)) < 0 ||
	    (r = get_str(o, "qga", true, &vm->qga)) < 0 ||
	    (r = get_str(o, "exec_shim", true, &vm->exec_shim)) < 0 ||
	    (r = get_libvirt(o, "libvirt", false, &vm->libvirt)) < 0 ||
	    (r = get_libvirt(o, "libvirt_uri", true, &vm->libvirt_uri)) < 0 ||
	    (vm->libvirt_uri && !vm->libvirt && (r = bad("libvirt_uri")) < 0) ||
	    (r = get_u64(o, "next_point_id", &vm->next_point_id)) < 0 ||
	    (r = get_u64_max(o, "keep_last", DMR_KEEP_LAST_MAX, &vm->keep_last)) < 0 ||
	    (r = get_u64_max(o, "max_age_sec", DMR_SECONDS_MAX, &vm->max_age_sec)) < 0 ||
	    (r = get_u64(o, "import_tid", &vm->import_tid)) < 0 ||
	    (r = get_bool(o, "importing", &vm->importing)) < 0)
		return r;
	if ((r = get_u64(o, "failover_point", &vm->failover_point)) < 0 ||
	    (r = get_u64(o, "test_point", &vm->test_point)) < 0 ||
	    (r = get_u64(o, "intent_point", &vm->intent_point)) < 0)
		return r;
	{
		_cleanup_free_ char *intent = NULL;

		if ((r = get_str(o, "intent", false, &intent)) < 0)
			return r;
		if (strlen(intent) >= sizeof(vm->intent))
			return bad("intent");
		strcpy(vm->intent, intent);
	}
	{
		struct json_object *v;

		/* Absent in older files: then no guest is resumed by recovery
		 * that it cannot tell it paused. */
		if (json_object_object_get_ex(o, "intent_guest_ran", &v) && v &&
		    (r = get_bool(o, "intent_guest_ran", &vm->intent_guest_ran)) < 0)
			return r;
	}
	{
		struct json_object *net;

		/* Absent in files written before network settings existed. */
		if (json_object_object_get_ex(o, "network", &net) && net) {
			if (!json_object_is_type(net, json_type_array) || !network_valid(net))
				return bad("network");
			vm->network = json_object_get(net);
		}
	}
	if (vm_state_parse(state, &vm->state) < 0)
		return bad("state");
	if ((r = get_uuid(o, vm->uuid, &vm->uuids_made)) < 0)
		return r;
	{
		struct json_object *v;

		/* Absent in files from before replication: a primary. */
		if (json_object_object_get_ex(o, "role", &v)) {
			_cleanup_free_ char *role = NULL;

			if ((r = get_str(o, "role", false, &role)) < 0)
				return r;
			if (dmr_streq(role, "replica"))
				vm->role = DMR_VM_REPLICA;
			else if (!dmr_streq(role, "primary"))
				return bad("role");
		}
		if (json_object_object_get_ex(o, "last_received_usec", &v) &&
		    (r = get_u64(o, "last_received_usec", &vm->last_received_usec)) < 0)
			return r;
		/* Absent in files from before continuous replication: off. */
		if (json_object_object_get_ex(o, "replication", &v) && v) {
			const char *field = NULL;

			if ((r = dmr_repl_state_parse(v, &vm->repl, &field)) < 0)
				return r == -EBADMSG ? bad(field ? field : "replication") : r;
		}
	}
	if (dmr_name_obj_valid(vm->name, DMR_OBJ_NAME_MAX) < 0)
		return bad("name");
	if (!json_object_object_get_ex(o, "disks", &disks) ||
	    !json_object_is_type(disks, json_type_array))
		return bad("disks");
	if (!json_object_object_get_ex(o, "points", &points) ||
	    !json_object_is_type(points, json_type_array))
		return bad("points");

	/* n_disks is set once disks holds that many: dmr_vm_free walks it. */
	if (json_object_array_length(disks) == 0 || json_object_array_length(disks) > DMR_VM_DISKS_MAX)
		return bad("disks");
	vm->disks = calloc(json_object_array_length(disks), sizeof(*vm->disks));
	if (!vm->disks)
		return -ENOMEM;
	vm->n_disks = json_object_array_length(disks);
	for (size_t i = 0; i < vm->n_disks; i++) {
		struct json_object *jd = json_object_array_get_idx(disks, i), *v;
		struct dmr_disk *d = &vm->disks[i];

		if (!json_object_is_type(jd, json_type_object))
			return bad("disks");
		if ((r = get_str(jd, "name", false, &d->name)) < 0 ||
		    (r = get_u64_max(jd, "size_bytes", DMR_SIZE_MAX, &d->size_bytes)) < 0 ||
		    (r = get_str(jd, "source", true, &d->source)) < 0)
			return r;
		if (!json_object_object_get_ex(jd, "thin_id", &v) || get_vol_id(v, &d->thin_id) < 0)
			return bad("thin_id");
		if (dmr_name_obj_valid(d->name, DMR_OBJ_NAME_MAX) < 0)
			return bad("name");
		if (d->size_bytes % 512 || d->size_bytes == 0)
			return bad("size_bytes");
		/* Absent in files written before identities were recorded. */
		if (json_object_object_get_ex(jd, "identity", &v) && v &&
		    (r = dmr_ident_from_json(v, &d->ident)) < 0)
			return r;
	}

	vm->points = calloc(json_object_array_length(points) ?: 1, sizeof(*vm->points));
	if (!vm->points)
		return -ENOMEM;
	vm->n_points = json_object_array_length(points);
	for (size_t i = 0; i < vm->n_points; i++) {
		struct json_object *jp = json_object_array_get_idx(points, i), *ids;
		struct dmr_point *p = &vm->points[i];
		_cleanup_free_ char *cons = NULL;

		if (!json_object_is_type(jp, json_type_object))
			return bad("points");
		if ((r = get_u64(jp, "id", &p->id)) < 0 ||
		    (r = get_u64(jp, "created_usec", &p->created_usec)) < 0 ||
		    (r = get_str(jp, "consistency", false, &cons)) < 0 ||
		    (r = get_str(jp, "label", false, &p->label)) < 0 ||
		    (r = get_bool(jp, "valid", &p->valid)) < 0 ||
		    (r = get_u64(jp, "pending_tid", &p->pending_tid)) < 0)
			return r;
		if (!dmr_streq(cons, "crash") && !dmr_streq(cons, "application"))
			return bad("consistency");
		if ((r = get_uuid(jp, p->uuid, &vm->uuids_made)) < 0)
			return r;
		p->application = dmr_streq(cons, "application");
		/* The API never takes one: the label goes to terminals. */
		for (const unsigned char *c = (const unsigned char *)p->label; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				return bad("label");
		if (!json_object_object_get_ex(jp, "thin_ids", &ids) ||
		    !json_object_is_type(ids, json_type_array) ||
		    json_object_array_length(ids) != vm->n_disks)
			return bad("thin_ids");
		p->vol_ids = calloc(vm->n_disks, sizeof(uint32_t));
		if (!p->vol_ids)
			return -ENOMEM;
		for (size_t k = 0; k < vm->n_disks; k++)
			if (get_vol_id(json_object_array_get_idx(ids, k), &p->vol_ids[k]) < 0)
				return bad("thin_ids");
		if (p->id >= vm->next_point_id || (i > 0 && p->id <= vm->points[i - 1].id))
			return bad("id");
	}
	if ((r = get_ids(o, "overlay_ids", vm->n_disks, &vm->overlay_ids)) < 0 ||
	    (r = get_ids(o, "test_ids", vm->n_disks, &vm->test_ids)) < 0)
		return r;
	/* The classic backend's fields are absent in files written before
	 * it existed (thin VMs only). */
	if (json_object_object_get_ex(o, "cow_size", NULL) &&
	    ((r = get_u64_max(o, "cow_size", DMR_SIZE_MAX, &vm->cow_size)) < 0 ||
	     (r = get_u64_max(o, "max_points", DMR_CLASSIC_MAX_POINTS_MAX, &vm->max_points)) < 0))
		return r;
	{
		struct json_object *layers;

		if (json_object_object_get_ex(o, "layers", &layers) && layers) {
			size_t n;

			/* The type first: json-c aborts on the length of
			 * anything but an array. */
			if (!json_object_is_type(layers, json_type_array))
				return bad("layers");
			n = json_object_array_length(layers);
			vm->layers = calloc(n ? n : 1, sizeof(*vm->layers));
			if (!vm->layers)
				return -ENOMEM;
			for (size_t l = 0; l < n; l++) {
				struct json_object *jl = json_object_array_get_idx(layers, l);
				struct dmr_layer *ly = &vm->layers[l];

				if (!json_object_is_type(jl, json_type_object))
					return bad("layers");
				vm->n_layers = l + 1;
				if ((r = get_u64(jl, "point", &ly->point)) < 0 ||
				    (r = get_u64(jl, "since", &ly->since)) < 0 ||
				    (r = get_ids(jl, "ids", vm->n_disks, &ly->ids)) < 0)
					return r;
				if (!ly->ids || (l > 0 && ly->since <= vm->layers[l - 1].since))
					return bad("layers");
			}
		}
	}
	/* Absent unless volumes were left to remove. */
	if (json_object_object_get_ex(o, "doomed_ids", NULL) &&
	    (r = get_ids_n(o, "doomed_ids", 0, (size_t)DMR_THIN_DEV_ID_MAX, &vm->doomed,
			   &vm->n_doomed)) < 0)
		return r;
	if (!dmr_streq(vm->backend, "thin") && !dmr_streq(vm->backend, "classic"))
		return bad("backend");
	*ret_vm = DMR_TAKE_PTR(vm);
	return 0;
}

static int save_json(const char *path, struct json_object *o)
{
	const char *s;
	int r;

	if (!o)
		return -ENOMEM;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	r = s ? dmr_write_file_atomic(path, s, strlen(s), 0600) : -ENOMEM;
	json_object_put(o);
	return r;
}

int dmr_reg_vm_save(struct dmr_registry *reg, const struct dmr_vm *vm)
{
	_cleanup_free_ char *path = NULL;

	if (vm_path(reg, vm->name, &path) < 0)
		return -ENOMEM;
	return save_json(path, dmr_vm_state_json(vm));
}

int dmr_reg_pool_save(struct dmr_registry *reg)
{
	_cleanup_free_ char *path = NULL;
	struct json_object *o;

	if (asprintf(&path, "%s/pool.json", reg->state_dir) < 0)
		return -ENOMEM;
	/* Left alone for the operator, whatever happens. */
	if (reg->pool_unreadable)
		return -EBADMSG;
	if (!reg->have_pool) {
		if (unlink(path) < 0 && errno != ENOENT)
			return dmr_negerrno();
		return 0;
	}
	o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "schema", json_object_new_int(DMR_STATE_SCHEMA));
	json_object_object_add(o, "data_path", json_object_new_string(reg->pool_spec.data_path));
	json_object_object_add(o, "meta_path", json_object_new_string(reg->pool_spec.meta_path));
	json_object_object_add(o, "block_sectors", json_object_new_int64(reg->pool_spec.block_sectors));
	json_object_object_add(o, "transaction_id", json_object_new_int64((int64_t)reg->tid));
	json_object_object_add(o, "next_thin_id", json_object_new_int64(reg->next_vol_id));
	if (reg->pool_ident[0])
		json_object_object_add(o, "data_identity", dmr_ident_json(reg->pool_ident[0]));
	if (reg->pool_ident[1])
		json_object_object_add(o, "meta_identity", dmr_ident_json(reg->pool_ident[1]));
	return save_json(path, o);
}

static int pool_load(struct dmr_registry *reg)
{
	_cleanup_free_ char *path = NULL, *buf = NULL;
	struct json_object *o = NULL;
	uint64_t schema, bs, next;
	size_t len = 0;
	int r;

	if (asprintf(&path, "%s/pool.json", reg->state_dir) < 0)
		return -ENOMEM;
	r = dmr_read_file(path, STATE_FILE_MAX, &buf, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	r = dmr_json_parse_object(buf, len, &o);
	if (r < 0)
		return r;
	r = -EBADMSG;
	bad_field = NULL;
	if (get_u64(o, "schema", &schema) < 0 || schema != DMR_STATE_SCHEMA)
		goto out;
	if (get_str(o, "data_path", false, &reg->pool_spec.data_path) < 0 ||
	    get_str(o, "meta_path", false, &reg->pool_spec.meta_path) < 0 ||
	    get_u64(o, "block_sectors", &bs) < 0 || get_u64(o, "transaction_id", &reg->tid) < 0 ||
	    get_u64(o, "next_thin_id", &next) < 0 || bs == 0 || bs > UINT32_MAX ||
	    next > DMR_THIN_DEV_ID_MAX)
		goto out;
	reg->pool_spec.block_sectors = (uint32_t)bs;
	reg->next_vol_id = (uint32_t)next;
	{
		static const char *const keys[2] = { "data_identity", "meta_identity" };
		struct json_object *v;

		/* Absent in files written before identities were recorded. */
		for (size_t k = 0; k < 2; k++)
			if (json_object_object_get_ex(o, keys[k], &v) && v &&
			    dmr_ident_from_json(v, &reg->pool_ident[k]) < 0)
				goto out;
	}
	reg->have_pool = true;
	r = 0;
out:
	json_object_put(o);
	return r;
}

/* ---- thin ids and transactions ---------------------------------------- */

static bool id_in(const uint32_t *ids, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool vol_id_used(struct dmr_registry *reg, uint32_t id)
{
	for (size_t v = 0; v < reg->n_vms; v++) {
		const struct dmr_vm *vm = reg->vms[v];

		for (size_t i = 0; i < vm->n_disks; i++)
			if (vm->disks[i].thin_id == id ||
			    (vm->overlay_ids && vm->overlay_ids[i] == id) ||
			    (vm->test_ids && vm->test_ids[i] == id))
				return true;
		for (size_t p = 0; p < vm->n_points; p++)
			for (size_t i = 0; i < vm->n_disks; i++)
				if (vm->points[p].vol_ids[i] == id)
					return true;
		for (size_t l = 0; l < vm->n_layers; l++)
			if (id_in(vm->layers[l].ids, vm->n_disks, id))
				return true;
		/* Not listed any more, but its volume may still exist. */
		if (id_in(vm->doomed, vm->n_doomed, id))
			return true;
	}
	return false;
}

int dmr_reg_alloc_vol_ids(struct dmr_registry *reg, size_t n, uint32_t *ids)
{
	/* A monotonic counter that wraps at 2^24 and skips ids in use: ids
	 * are not reused right after a delete, so a stale reference (a crash
	 * between a delete and the catalog write) never names a new volume.
	 * Id 0 is never handed out, so 0 can mean "none" in the catalog. */
	uint32_t id = reg->next_vol_id ? reg->next_vol_id : 1;

	for (size_t k = 0; k < n; k++) {
		uint32_t tries = 0;

		while (vol_id_used(reg, id) || id_in(ids, k, id)) {
			id = id >= DMR_THIN_DEV_ID_MAX ? 1 : id + 1;
			if (++tries >= DMR_THIN_DEV_ID_MAX)
				return -ENOSPC;
		}
		ids[k] = id;
		id = id >= DMR_THIN_DEV_ID_MAX ? 1 : id + 1;
	}
	reg->next_vol_id = id;
	return 0;
}

void dmr_reg_txn_begin(struct dmr_registry *reg, uint64_t *ret_old, uint64_t *ret_new)
{
	pthread_mutex_lock(&reg->txn_lock);
	pthread_mutex_lock(&reg->lock);
	*ret_old = reg->tid;
	*ret_new = reg->tid + 1;
	pthread_mutex_unlock(&reg->lock);
}

int dmr_reg_txn_end(struct dmr_registry *reg, bool done, uint64_t new_tid)
{
	int r = 0;

	if (done) {
		pthread_mutex_lock(&reg->lock);
		reg->tid = new_tid;
		r = dmr_reg_pool_save(reg);
		pthread_mutex_unlock(&reg->lock);
	}
	pthread_mutex_unlock(&reg->txn_lock);
	return r;
}

/* ---- retention -------------------------------------------------------- */

int dmr_vm_retention_victims(const struct dmr_vm *vm, uint64_t now_usec,
			     size_t **ret_idx, size_t *ret_n)
{
	_cleanup_free_ size_t *idx = NULL;
	size_t n = 0, latest = SIZE_MAX, valid_seen = 0;

	if (vm->n_points)
		idx = calloc(vm->n_points, sizeof(*idx));
	if (vm->n_points && !idx)
		return -ENOMEM;
	for (size_t i = vm->n_points; i-- > 0;)
		if (vm->points[i].valid && !vm->points[i].pending_tid) {
			latest = i;
			break;
		}
	/* Walk newest to oldest: a valid point beyond keep_last, or older
	 * than max_age, goes; the latest valid point always stays, because
	 * failover without --point must find one. */
	for (size_t i = vm->n_points; i-- > 0;) {
		const struct dmr_point *p = &vm->points[i];
		bool drop = false, pinned = false;

		if (p->pending_tid)
			continue;
		if (p->valid)
			valid_seen++;
		/* A point a failover or test runs on is in use; so is one a
		 * committed classic layer stacks on. */
		if (p->id == vm->failover_point || p->id == vm->test_point)
			continue;
		for (size_t l = 0; l < vm->n_layers; l++)
			if (vm->layers[l].point == p->id)
				pinned = true;
		/* A primary's acknowledged point is the next cycle's base
		 * (agent/store/repl.h): dropping it would turn every later
		 * cycle into a full send, or a resync. */
		if (vm->role != DMR_VM_REPLICA && vm->repl.acked_uuid[0] &&
		    strcmp(p->uuid, vm->repl.acked_uuid) == 0)
			pinned = true;
		if (pinned)
			continue;
		if (vm->keep_last && valid_seen > vm->keep_last)
			drop = true;
		/* An age past what microseconds can count is never reached
		 * (the product would wrap to a fraction of a second). */
		if (vm->max_age_sec && vm->max_age_sec <= UINT64_MAX / 1000000u &&
		    now_usec > p->created_usec &&
		    now_usec - p->created_usec > vm->max_age_sec * 1000000ull)
			drop = true;
		if (i == latest)
			drop = false;
		if (drop)
			idx[n++] = i;
	}
	*ret_idx = DMR_TAKE_PTR(idx);
	*ret_n = n;
	return 0;
}

int dmr_reg_points_doom(struct dmr_registry *reg, struct dmr_vm *vm, const size_t *idx, size_t n)
{
	uint32_t *d;
	size_t add = 0;

	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < vm->n_disks; i++)
			add += vm->points[idx[k]].vol_ids[i] != 0;
	d = realloc(vm->doomed, (vm->n_doomed + add + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	vm->doomed = d;
	/* idx is newest first, so dropping in that order keeps the lower
	 * indexes valid. */
	for (size_t k = 0; k < n; k++) {
		const struct dmr_point *p = &vm->points[idx[k]];

		for (size_t i = 0; i < vm->n_disks; i++)
			if (p->vol_ids[i] && !id_in(vm->doomed, vm->n_doomed, p->vol_ids[i]))
				vm->doomed[vm->n_doomed++] = p->vol_ids[i];
		dmr_vm_point_drop(vm, idx[k]);
	}
	return dmr_reg_vm_save(reg, vm);
}

int dmr_reg_doomed_forget(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			  size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < vm->n_doomed; i++)
		if (!id_in(ids, n, vm->doomed[i]))
			vm->doomed[k++] = vm->doomed[i];
	if (k == vm->n_doomed)
		return 0;
	vm->n_doomed = k;
	return dmr_reg_vm_save(reg, vm);
}

/* ---- open, reconcile with the kernel, close --------------------------- */

/* Remember a VM file left out, for ListVirtualSystems. */
static void unloadable_add(struct dmr_registry *reg, const char *file, int r)
{
	struct json_object *o = json_object_new_object();
	char why[128];

	snprintf(why, sizeof(why), "%s%s%s", r == -EILSEQ ? "not UTF-8" :
		 r == -EPROTONOSUPPORT ? "unknown schema" : strerror(-r),
		 bad_field ? ": field " : "", bad_field ? bad_field : "");
	if (!reg->unloadable)
		reg->unloadable = json_object_new_array();
	if (!o || !reg->unloadable) {
		json_object_put(o);
		return;
	}
	json_object_object_add(o, "file", json_object_new_string(file));
	json_object_object_add(o, "error", json_object_new_string(why));
	json_object_array_add(reg->unloadable, o);
}

static int vms_load(struct dmr_registry *reg)
{
	_cleanup_free_ char *dir = NULL;
	DIR *d;
	struct dirent *de;

	if (asprintf(&dir, "%s/vms", reg->state_dir) < 0)
		return -ENOMEM;
	d = opendir(dir);
	if (!d)
		return dmr_negerrno();
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *buf = NULL;
		struct dmr_vm *vm = NULL;
		struct json_object *o;
		size_t len = strlen(de->d_name), blen = 0;
		int r;

		/* Temp files of an interrupted atomic write are not state. */
		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0 ||
		    strstr(de->d_name, ".tmp."))
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
		o = NULL;
		bad_field = NULL;
		r = dmr_read_file(path, STATE_FILE_MAX, &buf, &blen);
		if (r == 0)
			r = dmr_json_parse_object(buf, blen, &o);
		if (r == 0)
			r = dmr_vm_from_state_json(o, &vm);
		json_object_put(o);
		if (r == 0 && (strncmp(de->d_name, vm->name, len - 5) != 0 ||
			       strlen(vm->name) != len - 5))
			r = bad("name");
		if (r == 0)
			r = dmr_reg_vm_insert(reg, vm);
		if (r == 0 && vm->uuids_made) {
			/* A file from before uuids: the ones just made must be
			 * the ones every later start and every stream sees. */
			int k = dmr_reg_vm_save(reg, vm);

			if (k < 0)
				log_warning_errno(k, "cannot save %s with its new uuids: %m", path);
			vm->uuids_made = false;
		}
		if (r < 0) {
			dmr_vm_free(vm);
			/* Never delete or rewrite what we cannot read: an
			 * operator may repair it by hand. */
			log_error("state file %s is unreadable (%s%s%s); VM left out, file left alone",
				  path, r == -EILSEQ ? "not UTF-8" :
				  r == -EPROTONOSUPPORT ? "unknown schema" : strerror(-r),
				  bad_field ? ": field " : "", bad_field ? bad_field : "");
			unloadable_add(reg, de->d_name, r);
			continue;
		}
	}
	closedir(d);
	return 0;
}

int dmr_registry_open(struct dmr_agent *a)
{
	struct dmr_registry *reg;
	_cleanup_free_ char *vmdir = NULL;
	int r;

	reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	pthread_mutex_init(&reg->lock, NULL);
	pthread_mutex_init(&reg->txn_lock, NULL);
	a->reg = reg;
	reg->state_dir = strdup(a->state_dir);
	if (!reg->state_dir)
		return -ENOMEM;
	if (asprintf(&vmdir, "%s/vms", a->state_dir) < 0)
		return -ENOMEM;
	r = dmr_mkdir_p(vmdir, 0700);
	if (r < 0)
		return log_error_errno(r, "cannot create %s: %s", vmdir, strerror(-r));
	r = pool_load(reg);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		/* Not a reason to stop (a service manager would restart the
		 * agent in a loop): classic VMs and status are served, thin
		 * storage answers "not available" until it is repaired. */
		log_error("pool state %s/pool.json is unreadable (%s%s%s): thin VMs unavailable, "
			  "file left alone", reg->state_dir,
			  r == -EILSEQ ? "not UTF-8" : strerror(-r), bad_field ? ": field " : "",
			  bad_field ? bad_field : "");
		dmr_pool_spec_done(&reg->pool_spec);
		reg->pool_spec.data_path = strdup("(pool.json unreadable)");
		reg->pool_spec.meta_path = strdup("(pool.json unreadable)");
		reg->have_pool = reg->pool_unreadable = true;
		if (asprintf(&reg->pool_down_reason, "its state file %s/pool.json is unreadable (%s)",
			     reg->state_dir, r == -EILSEQ ? "not UTF-8" : strerror(-r)) < 0)
			reg->pool_down_reason = NULL;
		reg->pool_down_advice = strdup("restore pool.json from a backup (the agent "
					       "never rewrites a bad one), then restart dmrepd");
		if (!reg->pool_spec.data_path || !reg->pool_spec.meta_path ||
		    !reg->pool_down_reason || !reg->pool_down_advice)
			return -ENOMEM;
	}
	r = vms_load(reg);
	if (r < 0)
		return log_error_errno(r, "cannot read VM state: %s", strerror(-r));
	return 0;
}

void dmr_registry_close(struct dmr_agent *a)
{
	struct dmr_registry *reg = a->reg;

	if (!reg)
		return;
	for (size_t i = 0; i < reg->n_vms; i++)
		dmr_vm_free(reg->vms[i]);
	free(reg->vms);
	json_object_put(reg->unloadable);
	dmr_pool_free(reg->pool);
	dmr_pool_spec_done(&reg->pool_spec);
	dmr_ident_free(reg->pool_ident[0]);
	dmr_ident_free(reg->pool_ident[1]);
	free(reg->pool_down_reason);
	free(reg->pool_down_advice);
	free(reg->state_dir);
	pthread_mutex_destroy(&reg->lock);
	pthread_mutex_destroy(&reg->txn_lock);
	free(reg);
	a->reg = NULL;
}
