/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/backend/classic.h"

#include "agent/backend/backend.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include "agent/backend/identity.h"

#include "agent/core/authz.h"
#include "common/log.h"
#include "common/path.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/dm.h"
#include "snapshots/classic.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"

bool dmr_vm_is_classic(const struct dmr_vm *vm)
{
	return vm && dmr_streq(vm->backend, "classic");
}

int dmr_classic_dev_name(uint32_t id, char buf[DMR_DM_NAME_SIZE])
{
	return snprintf(buf, DMR_DM_NAME_SIZE, "dmrep-snap-%" PRIu32, id) >= DMR_DM_NAME_SIZE ? -ENAMETOOLONG : 0;
}

static void dev_uuid(uint32_t id, char buf[DMR_DM_UUID_SIZE])
{
	snprintf(buf, DMR_DM_UUID_SIZE, DMR_UUID_PREFIX "snap-%" PRIu32, id);
}

int dmr_classic_dev_path(uint32_t id, char buf[DMR_DM_PATH_SIZE])
{
	return snprintf(buf, DMR_DM_PATH_SIZE, "/dev/mapper/dmrep-snap-%" PRIu32, id) >= (int)DMR_DM_PATH_SIZE ?
		       -ENAMETOOLONG : 0;
}

static int store_path(const struct dmr_registry *reg, uint32_t id, char **ret)
{
	return asprintf(ret, "%s/cow/%" PRIu32 ".cow", reg->state_dir, id) < 0 ? -ENOMEM : 0;
}

uint64_t dmr_classic_default_cow(uint64_t disk_bytes)
{
	uint64_t b = disk_bytes / 4;

	if (b < (8u << 20))
		b = 8u << 20;
	return (b + 4095) & ~(uint64_t)4095;
}

static int test_name(const struct dmr_vm *vm, size_t i, char name[DMR_DM_NAME_SIZE], char uuid[DMR_DM_UUID_SIZE]);

bool dmr_classic_vm_owns(const struct dmr_vm *vm, const char *name)
{
	char buf[DMR_DM_NAME_SIZE], ubuf[DMR_DM_UUID_SIZE];

	for (size_t i = 0; i < vm->n_disks; i++) {
		uint32_t cand[2] = { vm->overlay_ids ? vm->overlay_ids[i] : 0,
				     vm->test_ids ? vm->test_ids[i] : 0 };

		if ((dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, buf) == 0 &&
		     dmr_streq(buf, name)) ||
		    (test_name(vm, i, buf, ubuf) == 0 && dmr_streq(buf, name)) ||
		    (dmr_classic_origin_dm_name(vm->name, vm->disks[i].name, buf, NULL) == 0 &&
		     dmr_streq(buf, name)))
			return true;
		for (size_t c = 0; c < 2; c++)
			if (cand[c] && dmr_classic_dev_name(cand[c], buf) == 0 && dmr_streq(buf, name))
				return true;
		for (size_t p = 0; p < vm->n_points; p++)
			if (dmr_classic_dev_name(vm->points[p].vol_ids[i], buf) == 0 &&
			    dmr_streq(buf, name))
				return true;
		for (size_t l = 0; l < vm->n_layers; l++)
			if (dmr_classic_dev_name(vm->layers[l].ids[i], buf) == 0 && dmr_streq(buf, name))
				return true;
	}
	return false;
}

static bool same_rdev(const char *a, dev_t rdev)
{
	struct stat st;

	return a && a[0] && stat(a, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == rdev;
}

static bool same_inode(const char *a, const char *b)
{
	struct stat sa, sb;

	return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/*
 * Is dev, about to be a disk's base, one of dmrep's own storage devices,
 * or held by a device that is not this VM's?  The pool's data and
 * metadata, a loop over a pool file or a file of the state directory (a
 * COW store), anything another dm device stacks on.  *ret_what says
 * which; 0 if none.
 */
static int storage_conflict(struct dmr_registry *reg, const struct dmr_vm *vm, const char *dev,
			    char **ret_what)
{
	_cleanup_free_ char *backing = NULL;
	struct dirent *de;
	struct stat st;
	char sys[96];
	bool held = false;
	DIR *d;
	int n = 0;

	*ret_what = NULL;
	if (stat(dev, &st) < 0)
		return dmr_negerrno();
	if (reg->pool && same_rdev(reg->pool->data_dev, st.st_rdev))
		n = asprintf(ret_what, "it is the pool's data device (%s)", reg->pool->data_dev);
	else if (reg->pool && same_rdev(reg->pool->meta_dev, st.st_rdev))
		n = asprintf(ret_what, "it is the pool's metadata device (%s)", reg->pool->meta_dev);
	else if (dmr_loop_backing_file(dev, &backing) == 0 &&
		 (same_inode(backing, reg->pool_spec.data_path) ||
		  same_inode(backing, reg->pool_spec.meta_path)))
		n = asprintf(ret_what, "it is a loop over the pool's file %s", backing);
	else if (backing && dmr_startswith(backing, reg->state_dir) &&
		 backing[strlen(reg->state_dir)] == '/')
		n = asprintf(ret_what, "it is a loop over %s, a file of dmrep's state directory "
			     "(a COW store)", backing);
	if (n < 0 || *ret_what)
		return n < 0 ? -ENOMEM : 0;

	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u/holders", major(st.st_rdev),
		 minor(st.st_rdev));
	d = opendir(sys);
	while (d && (de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *name = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&path, "/sys/block/%s/dm/name", de->d_name) < 0) {
			closedir(d);
			return -ENOMEM;
		}
		if (dmr_read_file(path, 256, &name, NULL) == 0)
			name[strcspn(name, "\n")] = '\0';
		held = true;
		if (name && dmr_classic_vm_owns(vm, name))
			continue;
		n = asprintf(ret_what, "it is held by %s %s", name ? "dm device" : "device",
			     name ? name : de->d_name);
		break;
	}
	if (d)
		closedir(d);
	if (n < 0)
		return -ENOMEM;
	/* Held only by this VM's devices: in use by them, as it should be. */
	if (!*ret_what && !held && dmr_probe_in_use(dev) == -EBUSY)
		return asprintf(ret_what, "it is in use (mounted, or opened exclusively)") < 0 ?
		       -ENOMEM : 0;
	return 0;
}

/* Does a live device of this VM (its origin device, a stable device an
 * older dmrep left on the disk, a point) stack on maj:min?  Then that
 * device is, unambiguously, the disk. */
static bool vm_stacks_on(const struct dmr_vm *vm, size_t i, uint32_t maj, uint32_t min)
{
	char name[DMR_DM_NAME_SIZE];

	if (dmr_classic_origin_dm_name(vm->name, vm->disks[i].name, name, NULL) == 0 &&
	    dmr_ident_table_uses(name, maj, min))
		return true;
	if (dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name) == 0 &&
	    dmr_ident_table_uses(name, maj, min))
		return true;
	for (size_t p = 0; p < vm->n_points; p++)
		if (dmr_classic_dev_name(vm->points[p].vol_ids[i], name) == 0 &&
		    dmr_ident_table_uses(name, maj, min))
			return true;
	return false;
}

/* Append to a malloc()ed message; on failure it stays as it was. */
static void msg_append(char **msg, const char *fmt, ...) _printf_(2, 3);
static void msg_append(char **msg, const char *fmt, ...)
{
	_cleanup_free_ char *tail = NULL;
	char *n;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&tail, fmt, ap);
	va_end(ap);
	if (r < 0) {
		tail = NULL;
		return;
	}
	if (asprintf(&n, "%s%s", *msg, tail) < 0)
		return;
	free(*msg);
	*msg = n;
}

/* Leave the VM down: say why once, in the log and in vm show. */
static int vm_down(struct dmr_vm *vm, const char *fmt, ...) _printf_(2, 3);
static int vm_down(struct dmr_vm *vm, const char *fmt, ...)
{
	va_list ap;
	int r;

	free(vm->down_reason);
	va_start(ap, fmt);
	r = vasprintf(&vm->down_reason, fmt, ap);
	va_end(ap);
	if (r < 0)
		vm->down_reason = NULL;
	log_error("VM %s: left down, nothing written: %s", vm->name,
		  vm->down_reason ? vm->down_reason : "(out of memory)");
	return -ESTALE;
}

static int disk_down(struct dmr_vm *vm, size_t i, const char *why)
{
	return vm_down(vm, "disk %s: %s is not the disk that was added: %s", vm->disks[i].name,
		       vm->disks[i].source, why);
}

/*
 * A COW store on a block device (point create --cow-dev) is a symlink to
 * the device's path, which after a reboot may name another device: what
 * the device was is kept beside it, STATE/cow-id/ID.json, and checked
 * before the point is activated.
 */
static int store_ident_path(const struct dmr_registry *reg, uint32_t id, bool mkdir_too,
			    char **ret)
{
	_cleanup_free_ char *dir = NULL;
	int r;

	if (asprintf(&dir, "%s/cow-id", reg->state_dir) < 0)
		return -ENOMEM;
	if (mkdir_too && (r = dmr_mkdir_p(dir, 0700)) < 0)
		return r;
	return asprintf(ret, "%s/%" PRIu32 ".json", dir, id) < 0 ? -ENOMEM : 0;
}

static int store_ident_save(struct dmr_registry *reg, uint32_t id, const struct dmr_ident *now)
{
	_cleanup_free_ char *path = NULL;
	struct json_object *o;
	const char *s;
	int r;

	if ((r = store_ident_path(reg, id, true, &path)) < 0)
		return r;
	o = dmr_ident_json(now);
	s = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY) : NULL;
	r = s ? dmr_write_file_atomic(path, s, strlen(s), 0600) : -ENOMEM;
	json_object_put(o);
	return r;
}

/* Record what device a new device store is on; a store without a record
 * is checked as unknown (never one of dmrep's own devices). */
static void store_ident_record(struct dmr_registry *reg, uint32_t id, const char *dev)
{
	struct dmr_ident now;
	int r = dmr_ident_read(dev, &now);

	if (r == 0) {
		r = store_ident_save(reg, id, &now);
		dmr_ident_done(&now);
	}
	if (r < 0)
		log_warning("COW store %" PRIu32 " on %s: its identity is not recorded: %s", id, dev,
			    strerror(-r));
}

static void store_ident_forget(struct dmr_registry *reg, uint32_t id)
{
	_cleanup_free_ char *path = NULL;

	if (store_ident_path(reg, id, false, &path) == 0)
		(void)unlink(path);
}

/* Before point p's store for disk i is activated: is a device store the
 * device it was made on, and none of dmrep's other devices?  0 (also for
 * a store file), -ESTALE with the VM left down, or a negative errno. */
static int store_check(struct dmr_registry *reg, struct dmr_vm *vm, size_t p, size_t i)
{
	uint32_t id = vm->points[p].vol_ids[i];
	_cleanup_free_ char *file = NULL, *rec_path = NULL, *buf = NULL, *why = NULL;
	_cleanup_(dmr_ident_done) struct dmr_ident now = { 0 };
	struct dmr_ident *rec = NULL;
	char target[PATH_MAX], name[DMR_DM_NAME_SIZE];
	struct json_object *o;
	struct stat st;
	ssize_t k;
	int r;

	if ((r = store_path(reg, id, &file)) < 0)
		return r;
	if (lstat(file, &st) < 0 || !S_ISLNK(st.st_mode))
		return 0;
	k = readlink(file, target, sizeof(target) - 1);
	if (k <= 0)
		return k < 0 ? dmr_negerrno() : -EINVAL;
	target[k] = '\0';
	if ((r = dmr_ident_read(target, &now)) < 0)
		return r; /* activation reports the missing device */
	if ((r = store_ident_path(reg, id, false, &rec_path)) < 0)
		return r;
	r = dmr_read_file(rec_path, 1u << 16, &buf, NULL);
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0) {
		o = json_tokener_parse(buf);
		r = o ? dmr_ident_from_json(o, &rec) : -EBADMSG;
		json_object_put(o);
		if (r < 0)
			return vm_down(vm, "point %" PRIu64 " of disk %s: the record of its COW store "
				       "device %s (%s) is unreadable", vm->points[p].id,
				       vm->disks[i].name, target, rec_path);
		r = dmr_ident_match(rec, &now, &why);
		dmr_ident_free(rec);
		if (r < 0 && r != -ESTALE)
			return r;
	}
	if (!why && (r = storage_conflict(reg, vm, target, &why)) < 0)
		return r;
	if (why)
		return vm_down(vm, "point %" PRIu64 " of disk %s: %s is not the COW store device it "
			       "was made on: %s", vm->points[p].id, vm->disks[i].name, target, why);
	/* No record (a store made before them): learnt once the point's live
	 * device shows it. */
	if (!buf && dmr_classic_dev_name(id, name) == 0 &&
	    dmr_ident_table_uses(name, now.major, now.minor) && store_ident_save(reg, id, &now) == 0)
		log_notice("VM %s: COW store %" PRIu32 " on %s: identity recorded", vm->name, id, target);
	return 0;
}

/*
 * The block device under disk i: the source itself, or the loop over an
 * image file (found again after a restart, attached after a reboot).
 * Before it is used, what is at the path is checked against the identity
 * recorded when the disk was added (-ESTALE and the VM left down if it is
 * another device), and is never one of dmrep's own devices.  adding: the
 * disk is being added now, so what is there is the disk: recorded.
 * *ret_learnt is set when an identity was recorded.
 */
static int disk_base(struct dmr_registry *reg, struct dmr_vm *vm, size_t i, bool adding,
		     const char **ret, bool *ret_learnt)
{
	struct dmr_disk *d = &vm->disks[i];
	_cleanup_free_ char *why = NULL, *conflict = NULL, *loop = NULL, *dev = NULL;
	_cleanup_(dmr_ident_done) struct dmr_ident now = { 0 };
	char src[DMR_PATH_FD_NAME_MAX];
	_cleanup_close_ int fd = -1;
	int r;

	if (d->base_dev) {
		*ret = d->base_dev;
		return 0;
	}
	/* Opened once and judged (agent/core/authz.h); the identity is read and
	 * the loop made through that descriptor. */
	r = dmr_authz_source_open(dmr_authz_conf(), d->source, O_RDONLY | O_NONBLOCK, &fd);
	if (r < 0)
		return r;
	dmr_path_fd_name(fd, src);
	r = dmr_ident_read(src, &now);
	if (r < 0)
		return r;
	/* A block device that is one of dmrep's own says so first; then
	 * what it is instead of the disk, and where the disk went if it is
	 * a file on a loop. */
	if (now.is_block && (r = storage_conflict(reg, vm, src, &conflict)) < 0)
		return r;
	if (d->ident && (r = dmr_ident_match(d->ident, &now, &why)) < 0 && r != -ESTALE)
		return r;
	if (why && d->ident->loop_file && dmr_loop_find(d->ident->loop_file, &loop) == 0)
		msg_append(&why, " (%s is on %s now)", d->ident->loop_file, loop);
	if (conflict && why)
		msg_append(&conflict, "; %s", why);
	if (conflict || why)
		return disk_down(vm, i, conflict ? conflict : why);
	if (now.is_block)
		dev = strdup(d->source);
	else if ((r = dmr_loop_find(src, &dev)) == -ENOENT)
		r = dmr_loop_attach(src, false, &dev);
	if (r < 0)
		return r;
	if (!dev)
		return -ENOMEM;
	if (!now.is_block && (r = storage_conflict(reg, vm, dev, &why)) < 0)
		return r;
	if (why)
		return disk_down(vm, i, why);
	if (!d->ident) {
		if (adding || !now.is_block || vm_stacks_on(vm, i, now.major, now.minor)) {
			d->ident = malloc(sizeof(*d->ident));
			if (!d->ident)
				return -ENOMEM;
			*d->ident = now;
			now = (struct dmr_ident){ 0 };
			*ret_learnt = true;
			if (!dmr_ident_strong(d->ident))
				log_warning("VM %s: disk %s: %s has no stable identity (no serial, WWID, "
					    "dm UUID or /dev/disk/by-id name): after a reboot only its "
					    "size is checked", vm->name, d->name, d->source);
		} else {
			log_warning("VM %s: disk %s: the identity of %s was never recorded (a state "
				    "file from an older dmrep): trusted by path, as it is none of "
				    "dmrep's own devices", vm->name, d->name, d->source);
		}
	}
	d->base_dev = DMR_TAKE_PTR(dev);
	*ret = d->base_dev;
	return 0;
}

/* The origin of a point of disk i with id `point` (UINT64_MAX: now). */
static int point_origin(const struct dmr_vm *vm, uint64_t point, size_t i, char buf[PATH_MAX])
{
	const struct dmr_layer *ly = NULL;

	for (size_t l = 0; l < vm->n_layers; l++)
		if (vm->layers[l].since <= point)
			ly = &vm->layers[l];
	if (ly)
		return dmr_classic_dev_path(ly->ids[i], buf);
	if (!vm->disks[i].base_dev)
		return -ENODEV;
	return snprintf(buf, PATH_MAX, "%s", vm->disks[i].base_dev) >= PATH_MAX ? -ENAMETOOLONG : 0;
}

int dmr_classic_origin(const struct dmr_vm *vm, size_t i, char buf[PATH_MAX])
{
	return point_origin(vm, UINT64_MAX, i, buf);
}

/* ---- the stack: the disk's origin device under the stable device ---------- */

/*
 * Disk i's writes go through a hidden device of its own, its origin
 * device, `snapshot-origin ORIGIN` (the base, or the top layer's view),
 * which copies them out to the points; the stable device is `linear` over
 * it, or over a view while the VM runs on one, so that a failover's pause
 * swaps linear tables only (backend.h).  Named after the disk: '@' never
 * occurs in VM or disk names, so the name is no stable device's
 * (dmrep-VM:DISK) nor test view's (dmrep-VM:test:DISK), nor a store's or
 * the pool's (no ':'); its UUID, DMREP-origin-, is hidden by udev
 * (56-dmrep.rules: neither a disk nor a test view).
 */
#define ORIGIN_NAME_FMT "dmrep-%s:%s@origin"
#define ORIGIN_UUID_FMT DMR_UUID_PREFIX "origin-%s:%s"
#define FMT_FIXED(fmt) (sizeof(fmt) - 1 - 4) /* without the two "%s" */
_Static_assert(FMT_FIXED(ORIGIN_NAME_FMT) + 2 * DMR_OBJ_NAME_MAX <= DMR_DM_NAME_MAX &&
	       FMT_FIXED(ORIGIN_UUID_FMT) + 2 * DMR_OBJ_NAME_MAX <= DMR_DM_UUID_MAX,
	       "the longest VM and disk names must fit an origin device's name and UUID");

int dmr_classic_origin_dm_name(const char *vm, const char *disk, char name[DMR_DM_NAME_SIZE],
			       char uuid[DMR_DM_UUID_SIZE])
{
	/* The names are what keep the result unambiguous (a state file
	 * edited by hand): checked here, as registry.c does. */
	if (dmr_name_obj_valid(vm, DMR_OBJ_NAME_MAX) < 0 ||
	    dmr_name_obj_valid(disk, DMR_OBJ_NAME_MAX) < 0)
		return -EINVAL;
	snprintf(name, DMR_DM_NAME_SIZE, ORIGIN_NAME_FMT, vm, disk);
	if (uuid)
		snprintf(uuid, DMR_DM_UUID_SIZE, ORIGIN_UUID_FMT, vm, disk);
	return 0;
}

static int origin_names(const struct dmr_vm *vm, size_t i, char name[DMR_DM_NAME_SIZE],
			char uuid[DMR_DM_UUID_SIZE])
{
	return dmr_classic_origin_dm_name(vm->name, vm->disks[i].name, name, uuid);
}

/* Is device name, with uuid, up: 1 (and its info), 0 if not, -EEXIST if
 * its name is another device's. */
static int dev_up(const char *name, const char *uuid, struct dmr_dm_info *ret_info)
{
	struct dmr_dm_info info;
	int r = dmr_dm_info(name, &info);

	if (r < 0)
		return r;
	if (!info.exists)
		return 0;
	if (!dmr_streq(info.uuid, uuid))
		return -EEXIST;
	*ret_info = info;
	return 1;
}

/* Disk i's origin now (dmr_classic_origin): its path and device number. */
static int origin_rdev(const struct dmr_vm *vm, size_t i, char path[PATH_MAX], dev_t *ret_rdev)
{
	struct stat st;
	int r = dmr_classic_origin(vm, i, path);

	if (r < 0)
		return r;
	if (stat(path, &st) < 0)
		return dmr_negerrno();
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	*ret_rdev = st.st_rdev;
	return 0;
}

/* Disk i's origin device, up over the catalog's origin: 0 and its
 * number; -ENOENT if it is not up, -ESTALE if it is over another origin
 * (a commit's new layer not taken up yet: showing it would show the data
 * from before the commit). */
static int origin_dev(const struct dmr_vm *vm, size_t i, uint32_t *ret_major, uint32_t *ret_minor)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE], path[PATH_MAX];
	struct dmr_dm_info info;
	dev_t rdev;
	int r;

	if ((r = origin_names(vm, i, name, uuid)) < 0 || (r = origin_rdev(vm, i, path, &rdev)) < 0)
		return r;
	if ((r = dev_up(name, uuid, &info)) <= 0)
		return r == 0 ? -ENOENT : r;
	if ((r = dmr_dm_table(name, false, &t)) < 0)
		return r;
	if (!dmr_classic_table_is_origin_of(t, major(rdev), minor(rdev)))
		return -ESTALE;
	*ret_major = info.major;
	*ret_minor = info.minor;
	return 0;
}

/*
 * Bring up disk i's origin device over the catalog's origin (*ret_made
 * set if it was made now).  One up over another origin (a commit moved
 * the disk onto a new layer, or a crash came before it followed) is
 * reloaded while nothing sits on it (the stable device shows the view
 * then), -EBUSY if something does.
 */
static int origin_up(const struct dmr_vm *vm, size_t i, bool *ret_made)
{
	_cleanup_table_ struct dmr_table *want = NULL, *live = NULL;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE], path[PATH_MAX];
	struct dmr_dm_info info;
	dev_t rdev;
	int r;

	if ((r = origin_names(vm, i, name, uuid)) < 0 ||
	    (r = origin_rdev(vm, i, path, &rdev)) < 0 ||
	    (r = dmr_classic_origin_table(path, vm->disks[i].size_bytes / 512, &want)) < 0 ||
	    (r = dev_up(name, uuid, &info)) < 0)
		return r;
	if (r == 0) {
		if ((r = dmr_dm_create(name, uuid, want, 0)) < 0)
			return r;
		*ret_made = true;
		return 0;
	}
	if (info.inactive_table)
		(void)dmr_dm_clear(name);
	if ((r = dmr_dm_table(name, false, &live)) < 0)
		return r;
	if (dmr_classic_table_is_origin_of(live, major(rdev), minor(rdev)))
		return info.suspended ? dmr_dm_resume_retry(name) : 0;
	if (info.open_count > 0) {
		log_debug("%s is open and not over %s: left as it is", name, path);
		return -EBUSY;
	}
	if ((r = dmr_dm_load(name, want, 0)) < 0)
		return r;
	if ((!info.suspended && (r = dmr_dm_suspend(name, 0)) < 0) || (r = dmr_dm_resume(name)) < 0) {
		(void)dmr_dm_clear(name);
		(void)dmr_dm_resume_retry(name);
		return r;
	}
	log_info("VM %s: %s moved onto %s", vm->name, name, path);
	return 0;
}

/* View id's device is up (views are made by views_make and activate). */
static int view_up(uint32_t id, struct dmr_dm_info *ret_info)
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	int r;

	if ((r = dmr_classic_dev_name(id, name)) < 0)
		return r;
	dev_uuid(id, uuid);
	r = dev_up(name, uuid, ret_info);
	return r == 0 ? -ENOENT : r < 0 ? r : 0;
}

int dmr_classic_volumes_up(const struct dmr_vm *vm, const uint32_t *ids)
{
	_cleanup_free_ bool *made = calloc(vm->n_disks ? vm->n_disks : 1, sizeof(bool));
	int r = 0;

	if (!made)
		return -ENOMEM;
	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		struct dmr_dm_info info;

		r = ids[i] == 0 ? origin_up(vm, i, &made[i]) : view_up(ids[i], &info);
	}
	if (r < 0)
		for (size_t i = 0; i < vm->n_disks; i++) {
			char name[DMR_DM_NAME_SIZE];

			if (made[i] && origin_names(vm, i, name, NULL) == 0)
				(void)dmr_dm_remove(name, 10);
		}
	return r;
}

/* The number of the device that shows id on disk i: its origin device
 * (id 0) or the view. */
static int shown_dev(const struct dmr_vm *vm, size_t i, uint32_t id, uint32_t *ret_major,
		     uint32_t *ret_minor)
{
	struct dmr_dm_info info;
	int r;

	if (id == 0)
		return origin_dev(vm, i, ret_major, ret_minor);
	if ((r = view_up(id, &info)) < 0)
		return r;
	*ret_major = info.major;
	*ret_minor = info.minor;
	return 0;
}

int dmr_classic_stable_table(const struct dmr_vm *vm, size_t i, uint32_t id,
			     struct dmr_table **ret_table)
{
	uint32_t maj, min;
	char dev[32];
	int r;

	/* By number: a name would be looked up again at every load. */
	if ((r = shown_dev(vm, i, id, &maj, &min)) < 0)
		return r;
	snprintf(dev, sizeof(dev), "%" PRIu32 ":%" PRIu32, maj, min);
	return dmr_classic_view_table(dev, vm->disks[i].size_bytes / 512, ret_table);
}

bool dmr_classic_table_shows(const struct dmr_vm *vm, size_t i, const struct dmr_table *t,
			     uint32_t id)
{
	uint32_t maj, min, want_maj, want_min;

	return dmr_table_linear_dev(t, &maj, &min) == 0 &&
	       shown_dev(vm, i, id, &want_maj, &want_min) == 0 && maj == want_maj &&
	       min == want_min;
}

/* Disk i's stable device, made on the device that shows id (up). */
static int stable_create(const struct dmr_vm *vm, size_t i, uint32_t id)
{
	_cleanup_table_ struct dmr_table *t = NULL;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
	int r;

	if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
	    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
	    (r = dmr_classic_stable_table(vm, i, id, &t)) < 0)
		return r;
	return dmr_dm_create(name, uuid, t, 0);
}

/*
 * A stable device an older dmrep made (`snapshot-origin ORIGIN`, the
 * origin's own target) moved onto the stack: the origin device is up over
 * the same ORIGIN (two snapshot-origin targets over one device for a
 * moment: both copy out through the kernel's one list of its snapshots),
 * then one swap with a flush; the guest runs on (its writes wait for the
 * flush; nothing is lost, the device is never removed).  A linear table is
 * the stack already (on the origin device or a view); any other is left
 * alone: 0.
 */
static int stable_move(const struct dmr_vm *vm, size_t i, const char *name)
{
	_cleanup_table_ struct dmr_table *live = NULL, *want = NULL;
	char path[PATH_MAX];
	uint32_t maj, min;
	dev_t rdev;
	int r;

	if ((r = dmr_dm_table(name, false, &live)) < 0)
		return r;
	if (dmr_table_linear_dev(live, &maj, &min) == 0)
		return 0;
	if ((r = origin_rdev(vm, i, path, &rdev)) < 0)
		return r;
	if (!dmr_classic_table_is_origin_of(live, major(rdev), minor(rdev))) {
		log_warning("VM %s: %s has a table dmrep does not know (not snapshot-origin %s): "
			    "left as it is", vm->name, name, path);
		return 0;
	}
	if ((r = dmr_classic_stable_table(vm, i, 0, &want)) < 0 || (r = dmr_dm_load(name, want, 0)) < 0)
		goto fail;
	if ((r = dmr_dm_suspend(name, 0)) < 0 || (r = dmr_dm_resume(name)) < 0) {
		(void)dmr_dm_clear(name);
		(void)dmr_dm_resume_retry(name);
		goto fail;
	}
	log_notice("VM %s: %s moved onto its origin device (linear over snapshot-origin %s)",
		   vm->name, name, path);
	return 0;
fail:
	(void)dmr_dm_clear(name);
	log_error("VM %s: cannot move %s onto the stack: %s", vm->name, name, strerror(-r));
	return r;
}

/*
 * The devices that carry the disks' snapshot-origin targets, suspended
 * while a point is made or removed (the kernel ties a snapshot to its
 * origin, and unties it, with the origin quiet): the origin devices, or a
 * stable device an older dmrep left with the target itself (not moved
 * yet; the origin device, if up, has no I/O then).  Missing ones are
 * named all the same (suspending skips them); -EEXIST if one is another
 * device than the VM's.
 */
static int origin_writers(const struct dmr_vm *vm, char (*names)[DMR_DM_NAME_SIZE])
{
	for (size_t i = 0; i < vm->n_disks; i++) {
		_cleanup_table_ struct dmr_table *t = NULL;
		char uuid[DMR_DM_UUID_SIZE];
		struct dmr_dm_info info;
		int r;

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, names[i])) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
		    (r = dev_up(names[i], uuid, &info)) < 0)
			return r;
		if (r > 0 && dmr_dm_table(names[i], false, &t) == 0 && dmr_classic_table_is_origin(t))
			continue;
		if ((r = origin_names(vm, i, names[i], uuid)) < 0 ||
		    (r = dev_up(names[i], uuid, &info)) < 0)
			return r;
	}
	return 0;
}

bool dmr_classic_point_pinned(const struct dmr_vm *vm, uint64_t point)
{
	for (size_t l = 0; l < vm->n_layers; l++)
		if (vm->layers[l].point == point)
			return true;
	return false;
}

/* Create dmrep-snap-ID (or name/uuid) as a snapshot of origin on store
 * id's (existing) file, unless it exists. */
static int snap_activate(struct dmr_registry *reg, uint32_t id, const char *origin,
			 uint64_t sectors, bool read_only, const char *name, const char *uuid)
{
	_cleanup_free_ char *file = NULL, *cow = NULL;
	_cleanup_table_ struct dmr_table *t = NULL;
	struct dmr_dm_info info;
	char nbuf[DMR_DM_NAME_SIZE], ubuf[DMR_DM_UUID_SIZE];
	int r;

	if (!name) {
		if ((r = dmr_classic_dev_name(id, nbuf)) < 0)
			return r;
		dev_uuid(id, ubuf);
		name = nbuf;
		uuid = ubuf;
	}
	if ((r = dmr_dm_info(name, &info)) < 0)
		return r;
	if (info.exists)
		return dmr_streq(info.uuid, uuid) ? 0 : -EEXIST;
	if ((r = store_path(reg, id, &file)) < 0 || (r = dmr_cow_attach(file, &cow)) < 0 ||
	    (r = dmr_classic_snap_table(origin, cow, sectors, &t)) < 0)
		return r;
	return dmr_dm_create(name, uuid, t, read_only ? DMR_DM_READONLY : 0);
}

static int test_name(const struct dmr_vm *vm, size_t i, char name[DMR_DM_NAME_SIZE], char uuid[DMR_DM_UUID_SIZE])
{
	int r = dmr_vm_test_dm_name(vm->name, vm->disks[i].name, name);

	return r < 0 ? r : dmr_vm_test_dm_uuid(vm->name, vm->disks[i].name, uuid);
}

int dmr_classic_vm_create(struct dmr_registry *reg, struct dmr_vm *vm)
{
	size_t made = 0;
	bool learnt = false;
	int r = 0;

	/* Every disk checked (and its identity recorded: the caller saves
	 * the VM) before any device is made. */
	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		const char *base;

		r = disk_base(reg, vm, i, true, &base, &learnt);
	}
	/* The origin devices, then the stable devices on them. */
	if (r == 0) {
		_cleanup_free_ uint32_t *live = calloc(vm->n_disks, sizeof(uint32_t));

		r = live ? dmr_classic_volumes_up(vm, live) : -ENOMEM;
	}
	for (; r == 0 && made < vm->n_disks; made++)
		r = stable_create(vm, made, 0);
	if (r < 0)
		(void)dmr_classic_vm_teardown(reg, vm);
	return r;
}

static int activate_points_below(struct dmr_registry *reg, struct dmr_vm *vm, size_t i,
				 uint64_t below)
{
	int r = 0;

	for (size_t p = 0; p < vm->n_points && vm->points[p].id < below; p++) {
		char origin[PATH_MAX];
		int q;

		if (vm->points[p].pending_tid)
			continue;
		q = point_origin(vm, vm->points[p].id, i, origin);
		if (q == 0)
			q = snap_activate(reg, vm->points[p].vol_ids[i], origin,
					  vm->disks[i].size_bytes / 512, true, NULL, NULL);
		if (q < 0) {
			log_debug("VM %s: point %" PRIu64 " of %s: %s", vm->name, vm->points[p].id,
				  vm->disks[i].name, strerror(-q));
			r = r ?: q;
		}
	}
	return r;
}

/* A view of point `point` for disk i in store id. */
static int view_activate(struct dmr_registry *reg, struct dmr_vm *vm, size_t i, uint64_t point,
			 uint32_t id, const char *name, const char *uuid)
{
	const struct dmr_point *p = dmr_vm_point_find(vm, point);
	char pdev[DMR_DM_PATH_SIZE];
	int r;

	if (!p)
		return -ENOENT;
	r = dmr_classic_dev_path(p->vol_ids[i], pdev);
	return r < 0 ? r : snap_activate(reg, id, pdev, vm->disks[i].size_bytes / 512, false, name, uuid);
}

int dmr_classic_vm_activate(struct dmr_registry *reg, struct dmr_vm *vm)
{
	_cleanup_free_ int *base_r = calloc(vm->n_disks, sizeof(int));
	bool learnt = false;
	int r = 0;

	if (!base_r)
		return -ENOMEM;
	/* Every disk is checked before anything is activated: one that is
	 * not the disk that was added leaves the whole VM down. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		const char *base;

		base_r[i] = disk_base(reg, vm, i, false, &base, &learnt);
		if (base_r[i] == -ESTALE)
			return -ESTALE;
		for (size_t p = 0; p < vm->n_points; p++) {
			int q = vm->points[p].pending_tid ? 0 : store_check(reg, vm, p, i);

			if (q == -ESTALE)
				return -ESTALE;
			if (q < 0)
				log_debug("VM %s: point %" PRIu64 " of %s: %s", vm->name,
					  vm->points[p].id, vm->disks[i].name, strerror(-q));
		}
	}
	if (learnt) {
		pthread_mutex_lock(&reg->lock);
		r = dmr_reg_vm_save(reg, vm);
		pthread_mutex_unlock(&reg->lock);
		if (r < 0)
			log_error("VM %s: cannot save its disks' identities: %s", vm->name,
				  strerror(-r));
		else
			log_notice("VM %s: its disks' identities are recorded", vm->name);
		r = 0;
	}
	free(vm->down_reason);
	vm->down_reason = NULL;
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];
		struct dmr_dm_info info;
		bool made = false;
		int q;

		if ((q = base_r[i]) < 0) {
			log_error("VM %s: disk %s: %s is not available: %s", vm->name,
				  vm->disks[i].name, vm->disks[i].source, strerror(-q));
			r = r ?: q;
			continue;
		}
		/* Dependency order: a layer's view needs its point; points
		 * taken after a commit need the layer below them. */
		for (size_t l = 0; l < vm->n_layers; l++) {
			q = activate_points_below(reg, vm, i, vm->layers[l].since);
			if (q == 0)
				q = view_activate(reg, vm, i, vm->layers[l].point, vm->layers[l].ids[i],
						  NULL, NULL);
			r = r ?: q;
		}
		r = r ?: activate_points_below(reg, vm, i, UINT64_MAX);
		if (vm->overlay_ids && vm->failover_point)
			r = r ?: view_activate(reg, vm, i, vm->failover_point, vm->overlay_ids[i], NULL,
					       NULL);
		if (vm->test_ids && vm->test_point && test_name(vm, i, name, uuid) == 0)
			r = r ?: view_activate(reg, vm, i, vm->test_point, vm->test_ids[i], name, uuid);

		/* The origin device always (a revert, a point need it), over
		 * the top layer. */
		if ((q = origin_up(vm, i, &made)) < 0) {
			if (origin_names(vm, i, name, NULL) == 0)
				log_error("VM %s: cannot activate %s: %s", vm->name, name, strerror(-q));
			r = r ?: q;
		}
		if ((q = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (q = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
		    (q = dmr_dm_info(name, &info)) < 0) {
			r = r ?: q;
			continue;
		}
		if (info.exists && !dmr_streq(info.uuid, uuid)) {
			log_error("VM %s: %s is another device (UUID %s): left alone", vm->name, name,
				  info.uuid);
			q = -EEXIST;
		} else if (info.exists) {
			q = stable_move(vm, i, name);
		} else {
			q = stable_create(vm, i, vm->state == DMR_VM_RECOVERED && vm->overlay_ids ?
					  vm->overlay_ids[i] : 0);
			if (q < 0)
				log_error("VM %s: cannot activate %s: %s", vm->name, name, strerror(-q));
		}
		r = r ?: q;
	}
	return r;
}

/* Remove name if it is the device with uuid; one with another UUID (not
 * the one meant: another VM's, a hand-made one) is refused, untouched. */
static int remove_dev(const char *name, const char *uuid)
{
	struct dmr_dm_info info;
	int r;

	if ((r = dmr_dm_info(name, &info)) < 0 || !info.exists)
		return r;
	if (!dmr_streq(info.uuid, uuid))
		return -EEXIST;
	if (info.open_count > 0)
		return -EBUSY;
	return dmr_dm_remove(name, 20);
}

static int remove_store_dev(uint32_t id)
{
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

	if (!id || dmr_classic_dev_name(id, name) < 0)
		return 0;
	dev_uuid(id, uuid);
	return remove_dev(name, uuid);
}

static int destroy_store(struct dmr_registry *reg, uint32_t id)
{
	_cleanup_free_ char *file = NULL;

	if (!id)
		return 0;
	store_ident_forget(reg, id);
	return store_path(reg, id, &file) < 0 ? -ENOMEM : dmr_cow_destroy(file);
}

int dmr_classic_vm_teardown(struct dmr_registry *reg, struct dmr_vm *vm)
{
	int r = 0;

	/* The stable devices first: one that is open stops everything. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if ((r = dmr_vm_disk_dm_name(vm->name, vm->disks[i].name, name)) < 0 ||
		    (r = dmr_vm_disk_dm_uuid(vm->name, vm->disks[i].name, uuid)) < 0 ||
		    (r = remove_dev(name, uuid)) < 0)
			return r;
		if (test_name(vm, i, name, uuid) == 0 && (r = remove_dev(name, uuid)) < 0)
			return r;
	}
	/* Then the origin devices they stood on, which stand on the layers. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE];

		if ((r = origin_names(vm, i, name, uuid)) < 0 || (r = remove_dev(name, uuid)) < 0)
			return r;
	}
	/* Then the reverse of the activation order. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		size_t l = vm->n_layers;

		if (vm->overlay_ids)
			r = r ?: remove_store_dev(vm->overlay_ids[i]);
		for (size_t p = vm->n_points; p-- > 0;) {
			while (l > 0 && vm->points[p].id < vm->layers[l - 1].since) {
				r = r ?: remove_store_dev(vm->layers[l - 1].ids[i]);
				l--;
			}
			r = r ?: remove_store_dev(vm->points[p].vol_ids[i]);
		}
		for (; l > 0; l--)
			r = r ?: remove_store_dev(vm->layers[l - 1].ids[i]);
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < vm->n_disks; i++) {
		if (vm->overlay_ids)
			r = r ?: destroy_store(reg, vm->overlay_ids[i]);
		if (vm->test_ids)
			r = r ?: destroy_store(reg, vm->test_ids[i]);
		for (size_t p = 0; p < vm->n_points; p++)
			r = r ?: destroy_store(reg, vm->points[p].vol_ids[i]);
		for (size_t l = 0; l < vm->n_layers; l++)
			r = r ?: destroy_store(reg, vm->layers[l].ids[i]);
		/* A loop dmrep put under an image file goes too. */
		if (vm->disks[i].base_dev && !dmr_streq(vm->disks[i].base_dev, vm->disks[i].source)) {
			(void)dmr_loop_detach(vm->disks[i].base_dev);
			free(vm->disks[i].base_dev);
			vm->disks[i].base_dev = NULL;
		}
	}
	return r;
}

static int cow_dir(struct dmr_registry *reg, char **ret)
{
	if (asprintf(ret, "%s/cow", reg->state_dir) < 0)
		return -ENOMEM;
	return dmr_mkdir_p(*ret, 0700);
}

static void add_unallocated(struct dmr_registry *reg, uint32_t id, uint64_t *sum)
{
	_cleanup_free_ char *file = NULL;
	uint64_t b = 0;

	if (id && store_path(reg, id, &file) == 0 && dmr_cow_unallocated(file, &b) == 0)
		*sum += b;
}

int dmr_classic_point_room(struct dmr_registry *reg, const struct dmr_vm *vm,
			   const char *const *devs, char **ret_why)
{
	_cleanup_free_ char *dir = NULL;
	uint64_t need, grow = 0, avail;
	struct statvfs sv;
	size_t n = 0;
	int r;

	for (size_t p = 0; p < vm->n_points; p++)
		n += !vm->points[p].pending_tid;
	if (n >= vm->max_points) {
		if (asprintf(ret_why, "VM %s has %zu points, its cap (each origin write is copied "
			     "to every point; remove one or raise --max-points)", vm->name, n) < 0)
			*ret_why = NULL;
		return -EDQUOT;
	}
	if ((r = cow_dir(reg, &dir)) < 0)
		return r;
	if (statvfs(dir, &sv) < 0)
		return dmr_negerrno();
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	/* Every store may fill up: the new ones, and what the sparse
	 * existing ones have not allocated yet. */
	for (size_t i = 0; i < vm->n_disks; i++) {
		for (size_t p = 0; p < vm->n_points; p++)
			add_unallocated(reg, vm->points[p].vol_ids[i], &grow);
		if (vm->overlay_ids)
			add_unallocated(reg, vm->overlay_ids[i], &grow);
		if (vm->test_ids)
			add_unallocated(reg, vm->test_ids[i], &grow);
	}
	need = grow;
	for (size_t i = 0; i < vm->n_disks; i++)
		if (!devs || !devs[i])
			need += vm->cow_size;
	if (need > avail) {
		if (asprintf(ret_why, "the COW stores of VM %s could need %" PRIu64 " bytes in %s, "
			     "which has %" PRIu64 " free", vm->name, need, dir, avail) < 0)
			*ret_why = NULL;
		return -ENOSPC;
	}
	return 0;
}

int dmr_classic_cow_device_check(const struct dmr_vm *vm, const char *path, bool force,
				 char **ret_what)
{
	struct stat st, ds;
	bool is_block = false;
	uint64_t size = 0;
	int r;

	if (path[0] != '/')
		return -EINVAL;
	r = dmr_probe_path_kind(path, &is_block, &size);
	if (r < 0)
		return r;
	if (!is_block)
		return -ENOTBLK;
	if (size < (1u << 20))
		return -ENOSPC;
	if (stat(path, &st) < 0)
		return dmr_negerrno();
	/* The VM's own disks are in use by it, but say so plainly. */
	for (size_t i = 0; i < vm->n_disks; i++)
		if (vm->disks[i].base_dev && stat(vm->disks[i].base_dev, &ds) == 0 &&
		    ds.st_rdev == st.st_rdev)
			return -EINVAL;
	return dmr_probe_unused_blank(path, force, ret_what);
}

int dmr_classic_point_make(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			   const char *const *devs, unsigned suspend_flags,
			   uint64_t *ret_suspend_usec)
{
	size_t n = vm->n_disks, made = 0;
	_cleanup_free_ char (*stable)[DMR_DM_NAME_SIZE] = calloc(n, sizeof(*stable));
	_cleanup_free_ char (*names)[DMR_DM_NAME_SIZE] = calloc(n, sizeof(*names));
	_cleanup_free_ char (*uuids)[DMR_DM_UUID_SIZE] = calloc(n, sizeof(*uuids));
	_cleanup_free_ const char **sp = calloc(n, sizeof(char *));
	_cleanup_free_ const char **np = calloc(n, sizeof(char *));
	_cleanup_free_ const char **up = calloc(n, sizeof(char *));
	_cleanup_free_ struct dmr_table **tables = calloc(n, sizeof(*tables));
	_cleanup_free_ char *dir = NULL;
	int r;

	if (!stable || !names || !uuids || !sp || !np || !up || !tables)
		return -ENOMEM;
	if ((r = cow_dir(reg, &dir)) < 0 || (r = origin_writers(vm, stable)) < 0)
		return r;
	/* Stores and tables before the origins are suspended. */
	for (; made < n; made++) {
		_cleanup_free_ char *file = NULL, *cow = NULL;
		char origin[PATH_MAX];

		if ((r = point_origin(vm, UINT64_MAX, made, origin)) < 0 ||
		    (r = dmr_classic_dev_name(ids[made], names[made])) < 0 ||
		    (r = store_path(reg, ids[made], &file)) < 0)
			break;
		dev_uuid(ids[made], uuids[made]);
		if (devs && devs[made]) {
			if ((r = dmr_cow_link_device(file, devs[made], &cow)) == 0)
				store_ident_record(reg, ids[made], devs[made]);
		} else {
			r = dmr_cow_create(file, vm->cow_size, &cow);
		}
		if (r < 0)
			break;
		r = dmr_classic_snap_table(origin, cow, vm->disks[made].size_bytes / 512, &tables[made]);
		if (r < 0) {
			made++; /* its store exists */
			break;
		}
		sp[made] = stable[made];
		np[made] = names[made];
		up[made] = uuids[made];
	}
	if (r == 0)
		r = dmr_classic_snapshot_group(n, sp, np, up, tables, suspend_flags, ret_suspend_usec);
	for (size_t i = 0; i < n; i++)
		dmr_table_free(tables[i]);
	if (r < 0)
		for (size_t i = 0; i < made; i++)
			(void)destroy_store(reg, ids[i]);
	return r;
}

int dmr_classic_views_make(struct dmr_registry *reg, const struct dmr_vm *vm, uint64_t point,
			   const uint32_t *ids, const char (*names)[DMR_DM_NAME_SIZE],
			   const char (*uuids)[DMR_DM_UUID_SIZE])
{
	const struct dmr_point *p = dmr_vm_point_find((struct dmr_vm *)vm, point);
	_cleanup_free_ char *dir = NULL;
	size_t made = 0;
	int r;

	if (!p)
		return -ENOENT;
	if ((r = cow_dir(reg, &dir)) < 0)
		return r;
	for (; made < vm->n_disks; made++) {
		_cleanup_free_ char *file = NULL, *cow = NULL;
		_cleanup_table_ struct dmr_table *t = NULL;
		char pdev[DMR_DM_PATH_SIZE], nbuf[DMR_DM_NAME_SIZE], ubuf[DMR_DM_UUID_SIZE];
		const char *name = names ? names[made] : nbuf, *uuid = uuids ? uuids[made] : ubuf;

		if (!names) {
			(void)dmr_classic_dev_name(ids[made], nbuf);
			dev_uuid(ids[made], ubuf);
		}
		if ((r = dmr_classic_dev_path(p->vol_ids[made], pdev)) < 0 ||
		    (r = store_path(reg, ids[made], &file)) < 0 ||
		    (r = dmr_cow_create(file, vm->cow_size, &cow)) < 0)
			break;
		/* The table load reads the store's metadata (none yet): out
		 * of any guest pause, here. */
		r = dmr_classic_snap_table(pdev, cow, vm->disks[made].size_bytes / 512, &t);
		if (r == 0)
			r = dmr_dm_create(name, uuid, t, 0);
		if (r < 0) {
			(void)destroy_store(reg, ids[made]);
			break;
		}
	}
	if (r < 0) {
		for (size_t i = 0; i < made; i++) {
			char nbuf[DMR_DM_NAME_SIZE], ubuf[DMR_DM_UUID_SIZE];

			if (!names) {
				(void)dmr_classic_dev_name(ids[i], nbuf);
				dev_uuid(ids[i], ubuf);
			}
			(void)remove_dev(names ? names[i] : nbuf, uuids ? uuids[i] : ubuf);
			(void)destroy_store(reg, ids[i]);
		}
	}
	return r;
}

int dmr_classic_delete(struct dmr_registry *reg, const struct dmr_vm *vm, size_t n,
		       const uint32_t *ids)
{
	_cleanup_free_ char (*stable)[DMR_DM_NAME_SIZE] = calloc(vm->n_disks, sizeof(*stable));
	_cleanup_free_ char (*names)[DMR_DM_NAME_SIZE] = calloc(n ? n : 1, sizeof(*names));
	_cleanup_free_ const char **sp = calloc(vm->n_disks, sizeof(char *));
	_cleanup_free_ const char **np = calloc(n ? n : 1, sizeof(char *));
	int r;

	if (!stable || !names || !sp || !np)
		return -ENOMEM;
	if ((r = origin_writers(vm, stable)) < 0)
		return r;
	for (size_t i = 0; i < vm->n_disks; i++)
		sp[i] = stable[i];
	for (size_t k = 0; k < n; k++) {
		char uuid[DMR_DM_UUID_SIZE];

		if (!ids[k] || dmr_classic_dev_name(ids[k], names[k]) < 0)
			continue;
		dev_uuid(ids[k], uuid);
		/* Missing is fine; another device under the name is not ours
		 * to remove (snap_remove skips NULL). */
		if (dmr_dm_check_uuid(names[k], uuid) != -EEXIST)
			np[k] = names[k];
	}
	r = dmr_classic_snap_remove(vm->n_disks, sp, n, np);
	if (r < 0) {
		log_debug("VM %s: removing snapshot devices: %s", vm->name, strerror(-r));
		return r;
	}
	for (size_t k = 0; k < n; k++) {
		int q = destroy_store(reg, ids[k]);

		if (q < 0)
			log_debug("VM %s: COW store %" PRIu32 ": %s", vm->name, ids[k], strerror(-q));
		r = r ?: q;
	}
	return r;
}

void dmr_classic_refresh(struct dmr_registry *reg, const char *vm_name)
{
	_cleanup_free_ uint64_t *pids = NULL;
	_cleanup_free_ uint32_t *ids = NULL;
	_cleanup_free_ unsigned *pct = NULL;
	_cleanup_free_ bool *bad = NULL;
	size_t np = 0, nd = 0;
	struct dmr_vm *vm;
	bool changed = false;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	if (vm && dmr_vm_is_classic(vm) && vm->n_points) {
		np = vm->n_points;
		nd = vm->n_disks;
		pids = calloc(np, sizeof(*pids));
		ids = calloc(np * nd, sizeof(*ids));
		pct = calloc(np, sizeof(*pct));
		bad = calloc(np, sizeof(*bad));
		for (size_t p = 0; pids && ids && pct && bad && p < np; p++) {
			pids[p] = vm->points[p].pending_tid ? 0 : vm->points[p].id;
			memcpy(&ids[p * nd], vm->points[p].vol_ids, nd * sizeof(*ids));
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (!pids || !ids || !pct || !bad)
		return;

	for (size_t p = 0; p < np; p++) {
		for (size_t i = 0; pids[p] && i < nd; i++) {
			struct dmr_snapshot_status st;
			char name[DMR_DM_NAME_SIZE];

			if (dmr_classic_dev_name(ids[p * nd + i], name) < 0 ||
			    dmr_classic_snap_status(name, &st) < 0)
				continue; /* not active: nothing to learn */
			if (st.invalid || st.overflow)
				bad[p] = true;
			else if (st.total_sectors) {
				unsigned u = (unsigned)(st.used_sectors * 100 / st.total_sectors);

				if (u > pct[p])
					pct[p] = u;
			}
		}
	}

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, vm_name);
	for (size_t k = 0; vm && k < np; k++) {
		struct dmr_point *pt = pids[k] ? dmr_vm_point_find(vm, pids[k]) : NULL;

		if (!pt)
			continue;
		if (bad[k] && pt->valid) {
			log_warning("VM %s: point %" PRIu64 " is invalid (its COW store overflowed or "
				    "failed): it is never offered for failover", vm->name, pt->id);
			pt->valid = false;
			changed = true;
		}
		pt->cow_pct = bad[k] ? 100 : pct[k];
		if (!bad[k] && pct[k] >= DMR_BACKEND_WARN_PCT && !pt->cow_warned) {
			log_warning("VM %s: point %" PRIu64 "'s COW store is %u%% full", vm->name, pt->id,
				    pct[k]);
			pt->cow_warned = true;
		}
	}
	if (vm && changed) {
		int r = dmr_reg_vm_save(reg, vm);

		if (r < 0)
			log_error("VM %s: cannot save state: %s", vm->name, strerror(-r));
	}
	pthread_mutex_unlock(&reg->lock);
}

/* ---- CommitFailover ---------------------------------------------------------- */

/*
 * Classic: the views become a layer, the origin of the origin devices and
 * of later points (classic.h).  Recorded (idempotently) before the origin
 * devices move onto it (`snapshot-origin VIEW`, reloaded while the stable
 * devices sit on the views, not on them) and the stable devices from
 * `linear VIEW` to `linear ORIGIN-DEVICE`, with the commit intent still
 * set: a crash in between is rolled forward, and no point is ever taken of
 * an origin whose writes bypass it.
 */
static void commit_layer(struct dmr_vm *vm, void *p)
{
	struct dmr_layer *nl, *top = vm->n_layers ? &vm->layers[vm->n_layers - 1] : NULL;
	int *r = p;

	if (!vm->overlay_ids || (top && top->point == vm->failover_point &&
				 !memcmp(top->ids, vm->overlay_ids, vm->n_disks * sizeof(uint32_t))))
		return;
	nl = realloc(vm->layers, (vm->n_layers + 1) * sizeof(*nl));
	if (!nl) {
		*r = -ENOMEM;
		return;
	}
	vm->layers = nl;
	nl[vm->n_layers].point = vm->failover_point;
	nl[vm->n_layers].since = vm->next_point_id;
	nl[vm->n_layers].ids = malloc(vm->n_disks * sizeof(uint32_t));
	if (!nl[vm->n_layers].ids) {
		*r = -ENOMEM;
		return;
	}
	memcpy(nl[vm->n_layers].ids, vm->overlay_ids, vm->n_disks * sizeof(uint32_t));
	vm->n_layers++;
}

static int classic_commit(struct dmr_registry *reg, const struct dmr_vm *vm, uint32_t *ret_ids)
{
	/* Zeros: 0 is every disk's live id. */
	_cleanup_free_ uint32_t *live = calloc(vm->n_disks, sizeof(uint32_t));
	struct dmr_vm *v;
	int r = 0, q = -ENOENT;

	if (!live)
		return -ENOMEM;
	pthread_mutex_lock(&reg->lock);
	v = dmr_reg_vm_find(reg, vm->name);
	if (v) {
		commit_layer(v, &r);
		q = dmr_reg_vm_save(reg, v);
	}
	pthread_mutex_unlock(&reg->lock);
	r = r ?: q;
	dmr_test_hook("commit:layer");
	/* 0 is the live id: the origin device, which volumes_up moves onto
	 * the new top layer first.  Same data, so the guest need not pause. */
	if (r == 0)
		r = dmr_backend_retarget(reg, vm, live);
	if (r < 0)
		return r;
	for (size_t i = 0; i < vm->n_disks; i++)
		ret_ids[i] = vm->disks[i].thin_id;
	return 0;
}

/* ---- the backend table ----------------------------------------------------- */

static uint32_t classic_live_id(const struct dmr_vm *vm, size_t i)
{
	return 0;
}

static int classic_volumes_up(struct dmr_registry *reg, const struct dmr_vm *vm,
			      const uint32_t *ids)
{
	return dmr_classic_volumes_up(vm, ids);
}

static int classic_stable_table(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
				uint32_t id, struct dmr_table **ret_table)
{
	return dmr_classic_stable_table(vm, i, id, ret_table);
}

static bool classic_table_shows(struct dmr_registry *reg, const struct dmr_vm *vm, size_t i,
				const struct dmr_table *t, uint32_t id)
{
	return dmr_classic_table_shows(vm, i, t, id);
}

/* No pool transaction: a pending classic point is resolved at start by
 * whether its devices exist; 1 only marks it pending. */
static void classic_point_txn_begin(struct dmr_registry *reg, uint64_t *ret_old, uint64_t *ret_new)
{
	*ret_old = 0;
	*ret_new = 1;
}

static int classic_point_txn_end(struct dmr_registry *reg, bool done, uint64_t new_tid)
{
	return 0;
}

static int classic_points_make(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			       const char *const *cow_devs, uint64_t old_tid, uint64_t new_tid,
			       unsigned suspend_flags, uint64_t *ret_suspend_usec)
{
	return dmr_classic_point_make(reg, vm, ids, cow_devs, suspend_flags, ret_suspend_usec);
}

static void classic_point_api_extras(const struct dmr_vm *vm, const struct dmr_point *pt,
				     struct json_object *o)
{
	json_object_object_add(o, "cow_used_percent", json_object_new_int((int)pt->cow_pct));
}

/* ---- recovery at start (agent/engine/recovery.c) ------------------------ */

static void classic_discard(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* The disks were used in place and are untouched. */
	log_notice("VM %s: creation was interrupted; removing it", vm->name);
	(void)dmr_classic_vm_teardown(reg, vm);
}

static bool classic_doomed_remove(struct dmr_registry *reg, struct dmr_vm *vm)
{
	/* Their stores go now (dmr_classic_delete skips missing ones). */
	log_notice("VM %s: removing %zu COW store(s) of dropped points", vm->name,
		   vm->n_doomed);
	if (dmr_classic_delete(reg, vm, vm->n_doomed, vm->doomed) < 0)
		return false;
	vm->n_doomed = 0;
	return true;
}

/* A pending point is kept if every one of its devices exists. */
/* Not in the pool: a repair of it changes nothing of a classic VM. */
static bool classic_repaired(struct dmr_vm *vm, const uint32_t *ids, size_t n)
{
	return false;
}

static int classic_settle(struct dmr_registry *reg, const struct dmr_vm *vm,
			  const struct dmr_point *p, uint64_t pool_tid)
{
	bool all = true;

	for (size_t i = 0; i < vm->n_disks; i++) {
		struct dmr_dm_info info;
		char name[DMR_DM_NAME_SIZE];

		all = all && dmr_classic_dev_name(p->vol_ids[i], name) == 0 &&
		      dmr_dm_info(name, &info) == 0 && info.exists;
	}
	if (all)
		return 1;
	(void)dmr_classic_delete(reg, vm, vm->n_disks, p->vol_ids);
	return 0;
}

static int classic_activate(struct dmr_registry *reg, struct dmr_vm *vm)
{
	int r = dmr_classic_vm_activate(reg, vm);

	if (r < 0)
		log_error("VM %s: not every device could be activated: %s", vm->name, strerror(-r));
	return r;
}

/* A committed classic VM's data lives in its layers' COW stores, not on
 * its disks: removing them loses it, so only when told to. */
static int classic_may_remove(const struct dmr_vm *vm, bool force, char **ret_why)
{
	size_t layers = vm->n_layers;

	if (layers == 0 || force)
		return 0;
	if (asprintf(ret_why, "VM %s's committed data lives in %zu layer%s of COW stores, not on "
		     "its disks: copy each /dev/dmrep/%s/DISK out, then vm remove --force",
		     vm->name, layers, layers == 1 ? "" : "s", vm->name) < 0)
		*ret_why = NULL;
	return -DMR_E_STATE;
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

static int classic_create(struct dmr_registry *reg, struct dmr_vm *vm, const int *fds,
			  const struct dmr_backend_report *rep)
{
	uint64_t t0 = dmr_now_usec();
	char what[512];
	int r = 0;

	for (size_t i = 0; r == 0 && i < vm->n_disks; i++) {
		r = attach_from_fd(&vm->disks[i], fds[i]);
		if (r < 0) {
			snprintf(what, sizeof(what), "cannot attach %s", vm->disks[i].source);
			rep->fail(rep->userdata, r, what);
		}
	}
	if (r == 0) {
		r = dmr_classic_vm_create(reg, vm);
		if (r < 0)
			rep->fail(rep->userdata, r, "cannot make the stable devices");
	}
	if (r < 0) {
		/* In place: only our devices go; the disks are untouched. */
		(void)dmr_classic_vm_teardown(reg, vm);
		return r;
	}
	rep->step(rep->userdata, "activate", dmr_now_usec() - t0);
	return 0;
}

static int classic_teardown(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why)
{
	int r = dmr_classic_vm_teardown(reg, vm);

	if (r < 0 && ret_why &&
	    asprintf(ret_why, "cannot remove VM %s's devices%s: %s", vm->name,
		     r == -EBUSY ? " (is the VM running?)" : "", strerror(-r)) < 0)
		*ret_why = NULL;
	return r;
}

/* Nothing is copied: the disks stay where they are. */
static int classic_add_room(struct dmr_registry *reg, uint64_t *ret_free)
{
	assert(reg && ret_free);
	*ret_free = UINT64_MAX;
	return 0;
}

/* A disk in place has no volume: its ids stay 0. */
static int classic_add_ids(struct dmr_registry *reg, size_t n, uint32_t *ret_ids)
{
	assert(reg && (n == 0 || ret_ids));
	return 0;
}

const struct dmr_backend dmr_backend_classic = {
	.name = "classic",
	.live_id = classic_live_id,
	.volumes_up = classic_volumes_up,
	.stable_table = classic_stable_table,
	.table_shows = classic_table_shows,
	.views_make = dmr_classic_views_make,
	.remove = dmr_classic_delete,
	.point_txn_begin = classic_point_txn_begin,
	.point_txn_end = classic_point_txn_end,
	.points_make = classic_points_make,
	.point_room = dmr_classic_point_room,
	.cow_device_check = dmr_classic_cow_device_check,
	.point_api_extras = classic_point_api_extras,
	.point_pinned = dmr_classic_point_pinned,
	.refresh = dmr_classic_refresh,
	.commit = classic_commit,
	.owns = dmr_classic_vm_owns,
	.needs_pool = false,
	.discard = classic_discard,
	.doomed_remove = classic_doomed_remove,
	.settle = classic_settle,
	.repaired = classic_repaired,
	.may_remove = classic_may_remove,
	.create = classic_create,
	.activate = classic_activate,
	.teardown = classic_teardown,
	.in_place = true,
	.add_room = classic_add_room,
	.add_ids = classic_add_ids,
	.default_cow = dmr_classic_default_cow,
	/* Replication between hosts: point_extents, point_read_up/down,
	 * receive_make/done NULL. */
	.stream_unsupported = "classic VMs cannot be replicated between hosts yet: their points "
			      "are snapshot targets in place, not volumes of a pool",
};
