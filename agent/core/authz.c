/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/core/authz.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/rc.h"
#include "common/path.h"
#include "common/util.h"

static struct dmr_authz conf;

struct dmr_authz *dmr_authz_conf(void)
{
	return &conf;
}

int dmr_authz_add_dir(struct dmr_authz *az, enum dmr_authz_dir_kind kind, const char *dir)
{
	char *s = NULL;
	int r;

	if (!az || kind >= DMR_AUTHZ_KINDS)
		return -EINVAL;
	if (az->n[kind] >= DMR_AUTHZ_DIRS_MAX)
		return -E2BIG;
	r = dmr_path_canonical_dir(dir, &s);
	if (r < 0)
		return r;
	az->dirs[kind][az->n[kind]++] = s;
	return 0;
}

void dmr_authz_clear(struct dmr_authz *az)
{
	assert(az);
	for (size_t k = 0; k < DMR_AUTHZ_KINDS; k++) {
		for (size_t i = 0; i < az->n[k]; i++)
			free(az->dirs[k][i]);
		az->n[k] = 0;
	}
}

enum dmr_peer_class dmr_authz_peer(uid_t uid, bool privileged)
{
	if (uid == 0)
		return DMR_PEER_ROOT;
	return privileged ? DMR_PEER_MEMBER : DMR_PEER_OTHER;
}

/* Say why in why[len], return r. */
static int explain(int r, char *why, size_t len, const char *fmt, ...) _printf_(4, 5);
static int explain(int r, char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return r;
}

/* A method or parameter the peer's class may not use: the WMI code. */
#define deny(why, len, ...) explain(DMR_RC_ACCESS_DENIED, why, len, __VA_ARGS__)
/* A path or command that is not acceptable: -EACCES. */
#define refuse(why, len, ...) explain(-EACCES, why, len, __VA_ARGS__)

/* root's word is taken as given: its paths and commands are not judged. */
static int dup_as_given(const char *s, char **ret)
{
	char *d = strdup(s);

	if (!d)
		return -ENOMEM;
	*ret = d;
	return 0;
}

static const char *const *dirs(const struct dmr_authz *az, enum dmr_authz_dir_kind k)
{
	return (const char *const *)az->dirs[k];
}

/* The mutating methods a member may call; the rest are root's.  A method
 * added later is root-only until it is judged and listed here. */
static const char *const member_methods[] = {
	"AddVirtualSystem",   "RemoveVirtualSystem", "SetRetentionPolicy",
	"CreateReplicationPoint", "DestroyReplicationPoint", "InitiateFailover",
	"RevertFailover",     "CommitFailover",      "TestReplicaSystem",
	"StopTestReplicaSystem", "SetReplication",     "StartReplicationCycle",
};

static bool has(struct json_object *params, const char *key)
{
	struct json_object *v = NULL;

	return params && json_object_object_get_ex(params, key, &v) && v;
}

int dmr_authz_method(const struct dmr_authz *az, enum dmr_peer_class peer, const char *method,
		     bool mutating, struct json_object *params, char *why, size_t len)
{
	bool listed = false;

	assert(az && method && why);
	if (peer == DMR_PEER_ROOT || !mutating)
		return 0;
	if (peer != DMR_PEER_MEMBER)
		return deny(why, len, "%s needs root or the agent's group", method);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(member_methods); i++)
		if (dmr_streq(method, member_methods[i]))
			listed = true;
	if (!listed)
		return deny(why, len, "%s is root-only: it %s", method,
			    dmr_streq(method, "CreatePool") ?
				    "writes over the files or devices it is given" :
			    dmr_streq(method, "SetFailoverNetworkAdapterSettings") ?
				    "hands its settings to failover hooks that run as root" :
				    "is not one of the group's methods");
	/* The group may pause, resume, stop, retune and run cycles; COMMAND
	 * itself runs as root through a shell: root's to name. */
	if (dmr_streq(method, "SetReplication") && has(params, "to"))
		return deny(why, len, "setting --to is root-only: the agent runs COMMAND as root");
	if (dmr_streq(method, "CreateReplicationPoint")) {
		bool force = false;
		struct json_object *v;

		if (has(params, "cow_devices"))
			return deny(why, len, "cow_devices is root-only: a COW store's device is "
					      "zeroed at its start");
		if (json_object_object_get_ex(params, "force", &v) &&
		    json_object_is_type(v, json_type_boolean))
			force = json_object_get_boolean(v);
		if (force)
			return deny(why, len, "force is root-only: it writes over a signature");
	}
	if (dmr_streq(method, "AddVirtualSystem")) {
		struct json_object *disks, *uri;

		/* A URI names the driver and transport libvirt opens as root:
		 * qemu+ext:///...?command= runs a program, qemu+ssh:// reaches
		 * another host.  Only the default is a member's. */
		if (json_object_object_get_ex(params, "libvirt_uri", &uri) && uri &&
		    !(json_object_is_type(uri, json_type_string) &&
		      strcmp(json_object_get_string(uri), "qemu:///system") == 0))
			return deny(why, len, "libvirt_uri is root-only: libvirt opens it as root "
					      "(a member's VM uses qemu:///system)");
		if (has(params, "exec_shim") && az->n[DMR_AUTHZ_SHIM] == 0)
			return deny(why, len, "exec_shim is root-only (dmrepd has no --shim-dir)");
		if ((has(params, "qmp") || has(params, "qga")) && az->n[DMR_AUTHZ_SOCKET] == 0)
			return deny(why, len, "qmp and qga are root-only (dmrepd has no --socket-dir)");
		if (json_object_object_get_ex(params, "disks", &disks) &&
		    json_object_is_type(disks, json_type_array) &&
		    json_object_array_length(disks) > 0 && az->n[DMR_AUTHZ_IMAGE] == 0)
			return deny(why, len, "disk paths are root-only (dmrepd has no --image-dir)");
	}
	return 0;
}

int dmr_authz_disk_open(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			int flags, int *ret_fd, char **ret_resolved, char *why, size_t len)
{
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	assert(az && ret_fd && why);
	r = dmr_path_open(path, flags, &fd, &resolved);
	if (r < 0)
		return r;
	if (peer != DMR_PEER_ROOT) {
		if (!dmr_path_is_inside_any(resolved, dirs(az, DMR_AUTHZ_IMAGE), az->n[DMR_AUTHZ_IMAGE]))
			return refuse(why, len, "%s resolves to %s, outside every --image-dir (the "
						"group's disks are image files there)", path, resolved);
		if (fstat(fd, &st) < 0)
			return dmr_negerrno();
		if (!S_ISREG(st.st_mode))
			return refuse(why, len, "%s is not a regular file: block devices are root-only",
				      path);
		/* A hard link can bring any file of the same filesystem in. */
		if (st.st_nlink != 1)
			return refuse(why, len, "%s has %ju links: a member's image must have one",
				      path, (uintmax_t)st.st_nlink);
	}
	*ret_fd = DMR_TAKE_FD(fd);
	if (ret_resolved)
		*ret_resolved = DMR_TAKE_PTR(resolved);
	return 0;
}

int dmr_authz_source_open(const struct dmr_authz *az, const char *path, int flags, int *ret_fd)
{
	const char *const *d = dirs(az, DMR_AUTHZ_IMAGE);
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	assert(az && ret_fd);
	r = dmr_path_open(path, flags, &fd, &resolved);
	if (r < 0)
		return r;
	if (dmr_path_is_inside_any(path, d, az->n[DMR_AUTHZ_IMAGE])) {
		if (!dmr_path_is_inside_any(resolved, d, az->n[DMR_AUTHZ_IMAGE]))
			return -EACCES;
		if (fstat(fd, &st) < 0)
			return dmr_negerrno();
		if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
			return -EACCES;
	}
	*ret_fd = DMR_TAKE_FD(fd);
	return 0;
}

int dmr_authz_disk_new_ok(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			  char **ret_path, char *why, size_t len)
{
	_cleanup_free_ char *parent = NULL, *resolved = NULL;
	_cleanup_close_ int fd = -1;
	const char *base;
	char *slash, *s;
	int r;

	assert(az && ret_path && why);
	if (!path || path[0] != '/' || !(parent = strdup(path)))
		return -EINVAL;
	if (peer == DMR_PEER_ROOT)
		return dup_as_given(path, ret_path);
	slash = strrchr(parent, '/');
	*slash = '\0';
	base = path + (slash - parent) + 1;
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return -EINVAL;
	r = dmr_path_open(*parent ? parent : "/", O_PATH | O_DIRECTORY, &fd, &resolved);
	if (r < 0)
		return r;
	if (!dmr_path_is_inside_any(resolved, dirs(az, DMR_AUTHZ_IMAGE), az->n[DMR_AUTHZ_IMAGE]))
		return refuse(why, len, "%s is outside every --image-dir", path);
	if (asprintf(&s, "%s%s%s", resolved, dmr_streq(resolved, "/") ? "" : "/", base) < 0)
		return -ENOMEM;
	*ret_path = s;
	return 0;
}

int dmr_authz_disk_create(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			  int *ret_fd, char **ret_resolved, char *why, size_t len)
{
	size_t n = peer == DMR_PEER_ROOT ? 0 : az->n[DMR_AUTHZ_IMAGE];
	int r;

	assert(az && ret_fd && why);
	if (peer != DMR_PEER_ROOT && n == 0)
		return refuse(why, len, "%s: creating disks is root-only (no --image-dir)", path);
	r = dmr_path_create(path, O_RDWR, 0600, dirs(az, DMR_AUTHZ_IMAGE), n, ret_fd, ret_resolved);
	if (r == -EACCES)
		return refuse(why, len, "%s is outside every --image-dir", path);
	return r;
}

int dmr_authz_socket(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
		     char **ret_path, char *why, size_t len)
{
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	assert(az && ret_path && why);
	if (peer == DMR_PEER_ROOT)
		return dup_as_given(path, ret_path);
	r = dmr_path_open(path, O_PATH, &fd, &resolved);
	if (r < 0)
		return r;
	if (!dmr_path_is_inside_any(resolved, dirs(az, DMR_AUTHZ_SOCKET), az->n[DMR_AUTHZ_SOCKET]))
		return refuse(why, len, "%s resolves to %s, outside every --socket-dir", path,
			      resolved);
	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (!S_ISSOCK(st.st_mode))
		return refuse(why, len, "%s is not a socket", path);
	*ret_path = DMR_TAKE_PTR(resolved);
	return 0;
}

int dmr_authz_socket_open(const struct dmr_authz *az, const char *path, int *ret_fd)
{
	_cleanup_free_ char *resolved = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	assert(az && ret_fd);
	r = dmr_path_open(path, O_PATH, &fd, &resolved);
	if (r < 0)
		return r;
	/* Stored inside a --socket-dir (as a member's always is): whoever can
	 * write there must not be able to point root elsewhere since. */
	if (dmr_path_is_inside_any(path, dirs(az, DMR_AUTHZ_SOCKET), az->n[DMR_AUTHZ_SOCKET]) &&
	    !dmr_path_is_inside_any(resolved, dirs(az, DMR_AUTHZ_SOCKET), az->n[DMR_AUTHZ_SOCKET]))
		return -EACCES;
	*ret_fd = DMR_TAKE_FD(fd);
	return 0;
}

/* Root-owned and writable by no one else (a sticky directory keeps others
 * from renaming root's entries, so it may be world-writable). */
static bool root_only(const struct stat *st)
{
	if (st->st_uid != 0)
		return false;
	if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))
		return true;
	return !(st->st_mode & (S_IWGRP | S_IWOTH));
}

int dmr_authz_shim(const struct dmr_authz *az, enum dmr_peer_class peer, const char *command,
		   char **ret_command, char *why, size_t len)
{
	_cleanup_free_ char *exe = NULL, *resolved = NULL;
	_cleanup_close_ int fd = -1;
	char dir[PATH_MAX];
	const char *rest;
	struct stat st;
	char *s;
	int r;

	assert(az && ret_command && why);
	if (peer == DMR_PEER_ROOT)
		return dup_as_given(command, ret_command);
	while (*command && isspace((unsigned char)*command))
		command++;
	for (rest = command; *rest && !isspace((unsigned char)*rest); rest++)
		;
	exe = strndup(command, (size_t)(rest - command));
	if (!exe)
		return -ENOMEM;
	if (exe[0] != '/')
		return refuse(why, len, "exec_shim must start with an absolute path");
	r = dmr_path_open(exe, O_PATH, &fd, &resolved);
	if (r < 0)
		return r;
	if (!dmr_path_is_inside_any(resolved, dirs(az, DMR_AUTHZ_SHIM), az->n[DMR_AUTHZ_SHIM]))
		return refuse(why, len, "%s resolves to %s, outside every --shim-dir", exe, resolved);
	if (fstat(fd, &st) < 0)
		return dmr_negerrno();
	if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
		return refuse(why, len, "%s is not an executable file", resolved);
	if (!root_only(&st))
		return refuse(why, len, "%s runs as root: it must be owned by root and writable by "
					"no one else", resolved);
	/* Nor may anyone else rename a directory above it. */
	snprintf(dir, sizeof(dir), "%s", resolved);
	for (;;) {
		char *p = strrchr(dir, '/');
		bool top = p == dir;
		struct stat ds;

		if (top)
			p[1] = '\0';
		else
			*p = '\0';
		if (lstat(dir, &ds) < 0)
			return dmr_negerrno();
		if (!S_ISDIR(ds.st_mode) || !root_only(&ds))
			return refuse(why, len, "%s runs as root: %s above it must be owned by root "
						"and writable by no one else", exe, dir);
		if (top)
			break;
	}
	if (asprintf(&s, "%s%s", resolved, rest) < 0)
		return -ENOMEM;
	*ret_command = s;
	return 0;
}
