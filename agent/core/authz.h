/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/core/authz.h - who may make the agent (root) do what.
 *
 * Three kinds of peer, from the credentials the kernel recorded at connect
 * time (agent/rpc/server.c):
 *   root    uid 0: every method, any path, any command.
 *   member  a member of `dmrepd --group`: VMs and points (add, remove,
 *           retention, points, failovers, jobs).  Whatever names something
 *           root would open, create, connect to or run is limited to what
 *           root configured on dmrepd's command line:
 *             disks         image files resolving inside an --image-dir
 *                           (regular files with one link; NAME=PATH:SIZE
 *                           creates the file there, O_EXCL|O_NOFOLLOW);
 *                           block devices are root's
 *             qmp, qga      sockets resolving inside a --socket-dir, when
 *                           added and again at every connection
 *             exec_shim     an executable resolving inside a --shim-dir,
 *                           it and every directory above it owned by root
 *                           and writable by no one else
 *           and root-only: CreatePool, SetFailoverNetworkAdapterSettings
 *           (the settings go to hooks that run as root), cow_devices and
 *           force on CreateReplicationPoint, to on SetReplication (COMMAND
 *           runs as root), any method not listed as a
 *           member's.  No dir configured: that kind of path is root's.
 *   other   anyone else who can open the socket: read methods only.
 * A refusal is 32769 with one line naming the rule.
 *
 * Every path is opened once (common/path.h) and judged by what it resolved
 * to; the descriptor is what the agent then uses.
 */
#ifndef DMR_AGENT_AUTHZ_H
#define DMR_AGENT_AUTHZ_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum dmr_peer_class {
	DMR_PEER_OTHER,
	DMR_PEER_MEMBER,
	DMR_PEER_ROOT,
};

enum dmr_authz_dir_kind {
	DMR_AUTHZ_IMAGE,  /* --image-dir */
	DMR_AUTHZ_SHIM,   /* --shim-dir */
	DMR_AUTHZ_SOCKET, /* --socket-dir */
	DMR_AUTHZ_KINDS,
};

#define DMR_AUTHZ_DIRS_MAX 16

struct dmr_authz {
	char *dirs[DMR_AUTHZ_KINDS][DMR_AUTHZ_DIRS_MAX]; /* canonical */
	size_t n[DMR_AUTHZ_KINDS];
};

/* The agent's own configuration (filled by dmrepd before it serves). */
struct dmr_authz *dmr_authz_conf(void);

/* Add a directory (made canonical; -ENOTDIR, -E2BIG past DIRS_MAX). */
int dmr_authz_add_dir(struct dmr_authz *az, enum dmr_authz_dir_kind kind, const char *dir);
void dmr_authz_clear(struct dmr_authz *az);

enum dmr_peer_class dmr_authz_peer(uid_t uid, bool privileged);

/*
 * May `peer` call `method` (mutating or not) with these params?  Pure: 0,
 * or 32769 with the rule in why.  The paths themselves are judged by the
 * functions below when the handler opens them.
 */
int dmr_authz_method(const struct dmr_authz *az, enum dmr_peer_class peer, const char *method,
		     bool mutating, struct json_object *params, char *why, size_t len);

/*
 * A disk path: opened with flags (and O_CLOEXEC) once.  Root: as given.
 * Member: it must resolve inside an --image-dir and be a regular file with
 * one link (-EACCES, why says which).  Other errors: open()'s.
 */
int dmr_authz_disk_open(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			int flags, int *ret_fd, char **ret_resolved, char *why, size_t len);

/*
 * Reopen a VM's stored disk source (after a restart or reboot) with flags,
 * once.  A source inside an --image-dir (as a member's always is) must
 * still resolve inside one and be a regular file with one link: whoever
 * may write there must not be able to swap it for a link to a device
 * since (-EACCES).  Other sources open as they are.
 */
int dmr_authz_source_open(const struct dmr_authz *az, const char *path, int flags, int *ret_fd);

/*
 * May `peer` name a disk path that does not exist (an empty disk)?  Root:
 * yes, *ret_path is path; member: only if its directory resolves inside an
 * --image-dir, and *ret_path is that directory's resolved path and the
 * last component.
 */
int dmr_authz_disk_new_ok(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			  char **ret_path, char *why, size_t len);

/* Create the new image file for NAME=PATH:SIZE (O_RDWR, 0600, O_EXCL,
 * O_NOFOLLOW), inside an --image-dir for a member. */
int dmr_authz_disk_create(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
			  int *ret_fd, char **ret_resolved, char *why, size_t len);

/*
 * A QMP or guest-agent socket named at AddVirtualSystem.  Root: any
 * absolute path, stored as given.  Member: it must exist, be a socket and
 * resolve inside a --socket-dir; *ret_path is what it resolved to.
 */
int dmr_authz_socket(const struct dmr_authz *az, enum dmr_peer_class peer, const char *path,
		     char **ret_path, char *why, size_t len);

/*
 * At connection time: open path with O_PATH once; a path inside a
 * --socket-dir must still resolve inside it (-EACCES).  Connect through
 * dmr_path_fd_name() of *ret_fd, which reaches the very socket judged.
 */
int dmr_authz_socket_open(const struct dmr_authz *az, const char *path, int *ret_fd);

/*
 * An exec shim command line (its first word the executable).  Root: as
 * given.  Member: the executable must resolve inside a --shim-dir, be a
 * regular executable file, and it and every directory above it must be
 * owned by root and not writable by group or others (a sticky directory
 * excepted); *ret_command is the command with that resolved path.
 */
int dmr_authz_shim(const struct dmr_authz *az, enum dmr_peer_class peer, const char *command,
		   char **ret_command, char *why, size_t len);

#endif
