/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/dm.c - every device-mapper task dmrep runs goes through task_run():
 * it builds the task from a struct task_spec, owns its lifetime, the udev
 * cookie, errno and the process-wide lock, logs at debug level, and hands
 * the finished task to a collector that copies results out.  libdevmapper's
 * 1/0 convention ends here: everything exported returns 0 or -errno.
 */
#include "dm/dm.h"

#include <assert.h>
#include <errno.h>
#include <libdevmapper.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/testhook.h"
#include "common/util.h"
#include "dm/name.h"

static pthread_mutex_t dm_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t dm_once = PTHREAD_ONCE_INIT;

/* libdevmapper's own messages ("reload ioctl on X failed: ...") are for
 * debugging; the caller decides what is an error and logs it once. */
__attribute__((format(printf, 5, 6))) static void libdm_log(int level, const char *file, int line,
							    int dm_errno_or_class, const char *f,
							    ...)
{
	char buf[512];
	va_list ap;

	(void)level;
	(void)dm_errno_or_class;
	va_start(ap, f);
	vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	log_debug("libdevmapper %s:%d: %s", file, line, buf);
}

static void dm_setup(void)
{
	dm_log_with_errno_init(libdm_log);
}

int dmr_dm_init(void)
{
	pthread_once(&dm_once, dm_setup);
	return 0;
}

/* One udev cookie shared by the tasks of a group (dmr_dm_create_group,
 * dmr_dm_remove_group): each task adds itself to it, and the group waits
 * once, after its last task, for udev to have handled every device.
 * used: some task set it, so the wait is due (with udev sync off too: the
 * wait is where libdevmapper makes or removes the nodes itself). */
struct udev_group {
	uint32_t cookie;
	bool used;
};

struct task_spec {
	int type;               /* DM_DEVICE_* */
	const char *what;       /* for the debug log */
	const char *name;
	const char *uuid;
	const char *newname;
	const struct dmr_table *table;
	unsigned flags;         /* DMR_DM_* */
	bool cookie;            /* wait for udev (create, resume, remove, rename) */
	struct udev_group *group; /* with cookie: the group's, waited on by the group */
	bool inactive;          /* query the inactive table */
	uint64_t sector;
	const char *message;
};

typedef int (*collect_fn)(struct dm_task *dmt, void *userdata);

/* Map a failed task to a negative errno.  The kernel answers ENXIO for a
 * name it does not know; callers think in ENOENT. */
static int task_errno(struct dm_task *dmt)
{
	int e = dmt ? dm_task_get_errno(dmt) : 0;

	if (e == ENXIO || e == ENODEV)
		return -ENOENT;
	if (e > 0)
		return -e;
	return -EIO;
}

static int task_run(const struct task_spec *s, collect_fn collect, void *userdata)
{
	struct dm_task *dmt = NULL;
	uint32_t cookie = 0;
	bool cookie_set = false;
	int r = 0;

	dmr_dm_init();
	pthread_mutex_lock(&dm_lock);
	dmt = dm_task_create(s->type);
	if (!dmt) {
		r = -ENOMEM;
		goto out;
	}
	if ((s->name && !dm_task_set_name(dmt, s->name)) ||
	    (s->uuid && !dm_task_set_uuid(dmt, s->uuid)) ||
	    (s->newname && !dm_task_set_newname(dmt, s->newname)) ||
	    ((s->flags & DMR_DM_READONLY) && !dm_task_set_ro(dmt)) ||
	    ((s->flags & DMR_DM_NOFLUSH) && !dm_task_no_flush(dmt)) ||
	    ((s->flags & DMR_DM_SKIP_LOCKFS) && !dm_task_skip_lockfs(dmt)) ||
	    (s->inactive && !dm_task_query_inactive_table(dmt)) ||
	    (s->message && (!dm_task_set_sector(dmt, s->sector) ||
			    !dm_task_set_message(dmt, s->message)))) {
		r = -ENOMEM;
		goto out;
	}
	if (s->table) {
		for (size_t i = 0; i < s->table->count; i++) {
			const struct dmr_target *t = &s->table->targets[i];

			if (!dm_task_add_target(dmt, t->start, t->length, t->type, t->params)) {
				r = -ENOMEM;
				goto out;
			}
		}
	}
	if (s->cookie) {
		if (!dm_task_set_cookie(dmt, s->group ? &s->group->cookie : &cookie, 0)) {
			r = -EIO;
			goto out;
		}
		if (s->group)
			s->group->used = true;
		else
			cookie_set = true;
	}
	if (!dm_task_run(dmt)) {
		r = task_errno(dmt);
		log_debug_errno(r, "dm %s %s: %m", s->what, s->name ? s->name : "");
		goto out;
	}
	log_debug("dm %s %s: ok", s->what, s->name ? s->name : "");
	if (collect)
		r = collect(dmt, userdata);
out:
	/* A set cookie is waited on whether or not the task ran: libdevmapper
	 * completes it itself on failure, and the wait releases it.  A
	 * group's is waited on by the group (group_wait). */
	if (cookie_set)
		(void)dm_udev_wait(cookie);
	if (dmt)
		dm_task_destroy(dmt);
	pthread_mutex_unlock(&dm_lock);
	return r;
}

/* The group's one wait, under the lock as every task's own wait is. */
static void group_wait(struct udev_group *g)
{
	if (!g->used)
		return;
	pthread_mutex_lock(&dm_lock);
	(void)dm_udev_wait(g->cookie);
	pthread_mutex_unlock(&dm_lock);
	log_debug("dm group: udev done");
	g->used = false;
	g->cookie = 0;
}

static int collect_version(struct dm_task *dmt, void *userdata)
{
	struct { char *buf; size_t len; } *v = userdata;

	return dm_task_get_driver_version(dmt, v->buf, v->len) ? 0 : -EIO;
}

int dmr_dm_driver_version(char *buf, size_t len)
{
	struct { char *buf; size_t len; } v = { buf, len };
	struct task_spec s = { .type = DM_DEVICE_VERSION, .what = "version" };

	if (!buf || len == 0)
		return -EINVAL;
	return task_run(&s, collect_version, &v);
}

int dmr_dm_create(const char *name, const char *uuid, const struct dmr_table *table,
		  unsigned flags)
{
	struct task_spec s = { .type = DM_DEVICE_CREATE, .what = "create", .name = name,
			       .uuid = uuid, .table = table, .flags = flags & DMR_DM_READONLY,
			       .cookie = true };

	if (dmr_name_dm_valid(name) < 0 || !table || table->count == 0)
		return -EINVAL;
	/* Every device dmrep makes carries its prefix: udev rules and
	 * ownership checks key on it. */
	if (!dmr_name_uuid_is_ours(uuid))
		return -EPERM;
	return task_run(&s, NULL, NULL);
}

int dmr_dm_create_group(size_t n, const char *const *names, const char *const *uuids,
			const struct dmr_table *const *tables, unsigned flags)
{
	struct udev_group g = { 0 };
	size_t made = 0;
	int r = 0;

	if (n == 0 || !names || !uuids || !tables)
		return -EINVAL;
	/* Every refusal before the first task: all or nothing. */
	for (size_t i = 0; i < n; i++) {
		if (dmr_name_dm_valid(names[i]) < 0 || !tables[i] || tables[i]->count == 0)
			return -EINVAL;
		if (!dmr_name_uuid_is_ours(uuids[i]))
			return -EPERM;
	}
	for (; made < n; made++) {
		struct task_spec s = { .type = DM_DEVICE_CREATE, .what = "create", .name = names[made],
				       .uuid = uuids[made], .table = tables[made],
				       .flags = flags & DMR_DM_READONLY, .cookie = true,
				       .group = &g };
		char hook[48];

		/* The lab fails the k-th create (DMREP_TEST_FAIL_AT=create-group:K)
		 * to see the rollback leave nothing behind. */
		snprintf(hook, sizeof(hook), "create-group:%zu", made);
		r = dmr_test_fail(hook);
		if (r == 0)
			r = task_run(&s, NULL, NULL);
		if (r < 0) {
			log_debug_errno(r, "dm create group: %s (%zu of %zu): %m", names[made],
					made + 1, n);
			break;
		}
	}
	/* udev is done with the ones made before any goes: a rule's reader
	 * (blkid) would make the remove busy. */
	group_wait(&g);
	if (r < 0 && made > 0) {
		int q = dmr_dm_remove_group(made, names, 20);

		if (q < 0)
			log_debug_errno(q, "dm create group: rollback: %m");
	}
	return r;
}

int dmr_dm_remove_group(size_t n, const char *const *names, unsigned retries)
{
	_cleanup_free_ int *res = NULL;
	int r = 0;

	if (n == 0)
		return 0;
	if (!names)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (names[i] && dmr_name_dm_valid(names[i]) < 0)
			return -EINVAL;
	res = malloc(n * sizeof(*res));
	if (!res)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		res[i] = names[i] ? -EBUSY : 0; /* to do */
	for (unsigned pass = 0;; pass++) {
		struct udev_group g = { 0 };
		bool busy = false;

		for (size_t i = 0; i < n; i++) {
			struct task_spec s = { .type = DM_DEVICE_REMOVE, .what = "remove",
					       .name = names[i], .cookie = true, .group = &g };

			if (res[i] != -EBUSY)
				continue;
			res[i] = task_run(&s, NULL, NULL);
			if (res[i] == -ENOENT)
				res[i] = 0; /* gone already: what was asked */
			busy = busy || res[i] == -EBUSY;
		}
		group_wait(&g);
		if (!busy || pass >= retries)
			break;
		/* Someone (blkid from a udev rule, a reader) holds one open
		 * for a moment: wait rather than force. */
		usleep(100 * 1000);
	}
	for (size_t i = 0; i < n && r == 0; i++)
		r = res[i];
	return r;
}

int dmr_dm_load(const char *name, const struct dmr_table *table, unsigned flags)
{
	struct task_spec s = { .type = DM_DEVICE_RELOAD, .what = "reload", .name = name,
			       .table = table, .flags = flags & DMR_DM_READONLY };

	if (dmr_name_dm_valid(name) < 0 || !table || table->count == 0)
		return -EINVAL;
	return task_run(&s, NULL, NULL);
}

int dmr_dm_clear(const char *name)
{
	struct task_spec s = { .type = DM_DEVICE_CLEAR, .what = "clear", .name = name };

	if (dmr_name_dm_valid(name) < 0)
		return -EINVAL;
	return task_run(&s, NULL, NULL);
}

int dmr_dm_suspend(const char *name, unsigned flags)
{
	struct task_spec s = { .type = DM_DEVICE_SUSPEND, .what = "suspend", .name = name,
			       .flags = flags & (DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS) };

	if (dmr_name_dm_valid(name) < 0)
		return -EINVAL;
	return task_run(&s, NULL, NULL);
}

int dmr_dm_resume(const char *name)
{
	struct task_spec s = { .type = DM_DEVICE_RESUME, .what = "resume", .name = name,
			       .cookie = true };

	if (dmr_name_dm_valid(name) < 0)
		return -EINVAL;
	return task_run(&s, NULL, NULL);
}

int dmr_dm_resume_retry(const char *name)
{
	int r = dmr_dm_resume(name);

	return r < 0 ? dmr_dm_resume(name) : 0;
}

int dmr_dm_remove(const char *name, unsigned retries)
{
	struct task_spec s = { .type = DM_DEVICE_REMOVE, .what = "remove", .name = name,
			       .cookie = true };
	int r;

	if (dmr_name_dm_valid(name) < 0)
		return -EINVAL;
	for (unsigned i = 0;; i++) {
		r = task_run(&s, NULL, NULL);
		if (r != -EBUSY || i >= retries)
			return r;
		/* Someone (blkid from a udev rule, a reader) holds it open
		 * for a moment: wait rather than force. */
		usleep(100 * 1000);
	}
}

int dmr_dm_rename(const char *name, const char *new_name)
{
	struct task_spec s = { .type = DM_DEVICE_RENAME, .what = "rename", .name = name,
			       .newname = new_name, .cookie = true };

	if (dmr_name_dm_valid(name) < 0 || dmr_name_dm_valid(new_name) < 0)
		return -EINVAL;
	return task_run(&s, NULL, NULL);
}

static int collect_info(struct dm_task *dmt, void *userdata)
{
	struct dmr_dm_info *out = userdata;
	struct dm_info info;
	const char *name, *uuid;

	if (!dm_task_get_info(dmt, &info))
		return -EIO;
	memset(out, 0, sizeof(*out));
	out->exists = info.exists;
	if (!info.exists)
		return 0;
	out->suspended = info.suspended;
	out->live_table = info.live_table;
	out->inactive_table = info.inactive_table;
	out->read_only = info.read_only;
	out->open_count = info.open_count;
	out->major = info.major;
	out->minor = info.minor;
	out->event_nr = info.event_nr;
	out->target_count = (uint32_t)info.target_count;
	name = dm_task_get_name(dmt);
	uuid = dm_task_get_uuid(dmt);
	snprintf(out->name, sizeof(out->name), "%s", name ? name : "");
	snprintf(out->uuid, sizeof(out->uuid), "%s", uuid ? uuid : "");
	return 0;
}

int dmr_dm_info(const char *name, struct dmr_dm_info *ret_info)
{
	struct task_spec s = { .type = DM_DEVICE_INFO, .what = "info", .name = name };
	struct dmr_dm_info info;
	int r;

	if (dmr_name_dm_valid(name) < 0 || !ret_info)
		return -EINVAL;
	r = task_run(&s, collect_info, &info);
	if (r == -ENOENT) {
		memset(&info, 0, sizeof(info));
		r = 0;
	}
	if (r == 0)
		*ret_info = info;
	return r;
}

int dmr_dm_owned(const char *name)
{
	struct dmr_dm_info info;
	int r = dmr_dm_info(name, &info);

	if (r < 0)
		return r;
	if (!info.exists)
		return -ENOENT;
	return dmr_name_uuid_is_ours(info.uuid) ? 0 : -EPERM;
}

int dmr_dm_check_uuid(const char *name, const char *uuid)
{
	struct dmr_dm_info info;
	int r;

	if (dmr_name_uuid_valid(uuid) < 0)
		return -EINVAL;
	r = dmr_dm_info(name, &info);
	if (r < 0)
		return r;
	if (!info.exists)
		return -ENOENT;
	return strcmp(info.uuid, uuid) == 0 ? 0 : -EEXIST;
}

static int collect_table(struct dm_task *dmt, void *userdata)
{
	struct dmr_table **out = userdata;
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	void *next = NULL;

	if (!t)
		return -ENOMEM;
	do {
		uint64_t start, length;
		char *type = NULL, *params = NULL;
		int r;

		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (!type)
			break; /* no table */
		r = dmr_table_append_at(t, start, length, type, params ? params : "");
		if (r < 0)
			return r;
	} while (next);
	*out = t;
	t = NULL;
	return 0;
}

/* A task whose answer is one line per target (table, status). */
static int task_lines(struct task_spec *s, struct dmr_table **ret)
{
	struct dmr_table *t = NULL;
	int r;

	if (dmr_name_dm_valid(s->name) < 0 || !ret)
		return -EINVAL;
	r = task_run(s, collect_table, &t);
	if (r == 0)
		*ret = t;
	return r;
}

int dmr_dm_table(const char *name, bool inactive, struct dmr_table **ret_table)
{
	struct task_spec s = { .type = DM_DEVICE_TABLE, .what = "table", .name = name,
			       .inactive = inactive };

	return task_lines(&s, ret_table);
}

int dmr_dm_status(const char *name, struct dmr_table **ret_status)
{
	struct task_spec s = { .type = DM_DEVICE_STATUS, .what = "status", .name = name };

	return task_lines(&s, ret_status);
}

int dmr_dm_target_status(const char *name, const char *type, char **ret_params)
{
	_cleanup_table_ struct dmr_table *st = NULL;
	char *p;
	int r;

	assert(type && ret_params);
	r = dmr_dm_status(name, &st);
	if (r < 0)
		return r;
	if (st->count != 1 || !dmr_streq(st->targets[0].type, type))
		return -EPROTO;
	p = strdup(st->targets[0].params ? st->targets[0].params : "");
	if (!p)
		return -ENOMEM;
	*ret_params = p;
	return 0;
}

static int collect_message(struct dm_task *dmt, void *userdata)
{
	char **out = userdata;
	const char *resp = dm_task_get_message_response(dmt);

	if (!out)
		return 0;
	*out = NULL;
	if (resp && *resp && !(*out = strdup(resp)))
		return -ENOMEM;
	return 0;
}

int dmr_dm_message(const char *name, uint64_t sector, const char *message, char **ret_response)
{
	struct task_spec s = { .type = DM_DEVICE_TARGET_MSG, .what = "message", .name = name,
			       .sector = sector, .message = message };
	char *resp = NULL;
	int r;

	if (dmr_name_dm_valid(name) < 0 || !message || !*message)
		return -EINVAL;
	log_debug("dm message %s: %s", name, message);
	r = task_run(&s, collect_message, ret_response ? &resp : NULL);
	if (r == 0 && ret_response)
		*ret_response = resp;
	return r;
}

struct name_list {
	char (*names)[DMR_DM_NAME_SIZE];
	size_t n, cap;
};

static int collect_names(struct dm_task *dmt, void *userdata)
{
	struct name_list *l = userdata;
	struct dm_names *names = dm_task_get_names(dmt);
	unsigned next = 0;

	if (!names)
		return -EIO;
	if (!names->dev)
		return 0;
	do {
		names = (struct dm_names *)((char *)names + next);
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 16;
			char(*nn)[DMR_DM_NAME_SIZE] = realloc(l->names, cap * sizeof(*nn));

			if (!nn)
				return -ENOMEM;
			l->names = nn;
			l->cap = cap;
		}
		snprintf(l->names[l->n++], 128, "%s", names->name);
		next = names->next;
	} while (next);
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dmr_dm_entry *)a)->name, ((const struct dmr_dm_entry *)b)->name);
}

int dmr_dm_list(const char *uuid_prefix, struct dmr_dm_entry **ret_entries, size_t *ret_count)
{
	struct task_spec s = { .type = DM_DEVICE_LIST, .what = "list" };
	struct name_list l = { 0 };
	_cleanup_free_ struct dmr_dm_entry *e = NULL;
	size_t n = 0;
	int r;

	if (!ret_entries || !ret_count)
		return -EINVAL;
	r = task_run(&s, collect_names, &l);
	if (r < 0)
		goto out;
	e = calloc(l.n ? l.n : 1, sizeof(*e));
	if (!e) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		struct dmr_dm_info info;

		/* A device may go away between the list and its info. */
		if (dmr_dm_info(l.names[i], &info) < 0 || !info.exists)
			continue;
		if (uuid_prefix && *uuid_prefix && strncmp(info.uuid, uuid_prefix, strlen(uuid_prefix)))
			continue;
		snprintf(e[n].name, sizeof(e[n].name), "%s", info.name);
		snprintf(e[n].uuid, sizeof(e[n].uuid), "%s", info.uuid);
		e[n].major = info.major;
		e[n].minor = info.minor;
		n++;
	}
	qsort(e, n, sizeof(*e), entry_cmp);
	*ret_entries = e;
	e = NULL;
	*ret_count = n;
out:
	free(l.names);
	return r;
}

static int collect_versions(struct dm_task *dmt, void *userdata)
{
	const char *want = userdata;
	struct dm_versions *v = dm_task_get_versions(dmt), *last;

	if (!v)
		return -EIO;
	do {
		if (strcmp(v->name, want) == 0)
			return 0;
		last = v;
		v = (struct dm_versions *)((char *)v + v->next);
	} while (last != v);
	return -ENOENT;
}

int dmr_dm_has_target(const char *target_type)
{
	struct task_spec s = { .type = DM_DEVICE_LIST_VERSIONS, .what = "targets" };

	if (!target_type || !*target_type)
		return -EINVAL;
	return task_run(&s, collect_versions, (void *)target_type);
}

int dmr_dm_path(const char *name, char *buf, size_t len)
{
	int k;

	if (dmr_name_dm_valid(name) < 0 || !buf)
		return -EINVAL;
	k = snprintf(buf, len, "%s/%s", dm_dir(), name);
	if (k < 0 || (size_t)k >= len)
		return -ENAMETOOLONG;
	return 0;
}
