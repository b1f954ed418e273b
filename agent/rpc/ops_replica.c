/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SendReplicationPoint, ReceiveReplicationPoint: replication streams
 * between hosts (docs/stream.md; their jobs are agent/engine/send.c's and
 * receive.c's).  The client hands over its stdout or stdin with the
 * request (SCM_RIGHTS, agent/rpc/server.c), and the job writes or reads
 * the stream there.
 */
#include <fcntl.h>

#include "agent/engine/hashes.h"
#include "agent/engine/replica.h"
#include "agent/rpc/handlers.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/util.h"

/* A descriptor handed to a root agent, a pool written (CONTRACT.md §3):
 * root's alone, not the group's. */
static int root_only(struct dmr_call *c)
{
	if (c->uid == 0)
		return 0;
	return dmr_call_fail(c, DMR_RC_ACCESS_DENIED,
			     "point send and point receive are root-only: they hand descriptors "
			     "to the agent and write the pool (uid %u)", (unsigned)c->uid);
}

/* Is the descriptor open for writing (send) or reading (receive)?  A
 * stream the job could never write or read is refused up front. */
static int fd_mode(struct dmr_call *c, bool write)
{
	int fl = fcntl(c->fd, F_GETFL);
	int acc = fl & O_ACCMODE;

	if (fl < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "the descriptor passed is not open");
	if (write ? acc == O_RDONLY : acc == O_WRONLY)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "the descriptor passed is not open for %s",
				     write ? "writing (the stream goes there)" :
					     "reading (the stream comes from there)");
	return 0;
}

/* The job's refusal before it started: its errno's code, its line. */
static int start_failed(struct dmr_call *c, int r, const char *why, const char *what)
{
	return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : what);
}

int dmr_h_send_point(struct dmr_call *c)
{
	struct dmr_send_req req = { .fd = -1 };
	_cleanup_free_ char *why = NULL;
	const char *name, *compress = NULL;
	uint64_t point = 0, base = 0, id = 0;
	int rc, r;

	if ((rc = root_only(c)) || (rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_u64_range(c, "point", false, 1, INT64_MAX - 1, &point)) ||
	    (rc = dmr_param_u64_range(c, "base", false, 1, INT64_MAX - 1, &base)) ||
	    (rc = dmr_param_string(c, "compress", false, &compress)))
		return rc;
	if (compress && !dmr_streq(compress, "zstd"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "compress must be zstd");
	if (c->fd < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "SendReplicationPoint writes the stream to a descriptor passed "
				     "with the request");
	if ((rc = fd_mode(c, true)))
		return rc;
	/* A send only reads the pool: a pool out of data space still sends
	 * its points away (to a host with room). */
	if ((rc = dmr_ops_need_storage_to_free(c, name)) || (rc = dmr_ops_need_up(c, name)))
		return rc;
	req.vm = name;
	req.point = point;
	req.base = base;
	req.zstd = compress != NULL;
	req.fd = DMR_TAKE_FD(c->fd);
	r = dmr_replica_send_start(c->agent, &req, &id, &why);
	if (r < 0)
		return start_failed(c, r, why, strerror(-r));
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}

int dmr_h_receive_point(struct dmr_call *c)
{
	_cleanup_free_ char *why = NULL;
	struct dmr_pool *pool;
	const char *name;
	uint64_t id = 0;
	int rc, r;

	if ((rc = root_only(c)) || (rc = dmr_ops_vm_name(c, "vm", &name)))
		return rc;
	if (c->fd < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "ReceiveReplicationPoint reads the stream from a descriptor "
				     "passed with the request");
	if ((rc = fd_mode(c, false)))
		return rc;
	/* A received point is volumes in this host's pool. */
	if ((rc = dmr_ops_need_pool(c, &pool)) || (rc = dmr_ops_need_up(c, name)))
		return rc;
	r = dmr_replica_receive_start(c->agent, name, DMR_TAKE_FD(c->fd), &id, &why);
	if (r < 0)
		return start_failed(c, r, why, strerror(-r));
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}

/* HashReplicaPoint {vm, uuid?}: the block hashes of one point of VM (its
 * newest valid one without uuid) written to the descriptor passed (the
 * client's stdout) as common/hashes.h's reply; what `point receive VM
 * --hashes` and a receive that got a hash request run. */
int dmr_h_hash_point(struct dmr_call *c)
{
	_cleanup_free_ char *why = NULL;
	const char *name, *uuid = NULL;
	uint64_t id = 0;
	int rc, r;

	if ((rc = root_only(c)) || (rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_string(c, "uuid", false, &uuid)))
		return rc;
	if (uuid && !dmr_uuid_valid(uuid))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "uuid: not a point uuid");
	if (c->fd < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "HashReplicaPoint writes the hashes to a descriptor passed with "
				     "the request");
	if ((rc = fd_mode(c, true)))
		return rc;
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_need_up(c, name)))
		return rc;
	r = dmr_hashes_start(c->agent, name, uuid, DMR_TAKE_FD(c->fd), &id, &why);
	if (r < 0)
		return start_failed(c, r, why, strerror(-r));
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}
