/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SetReplication, StartReplicationCycle: continuous replication of a
 * primary VM to another host (docs/replication.md; the scheduler and the
 * cycle job are agent/engine/replicate.c's).
 *
 *   SetReplication {vm, to?, interval?, consistency?, compress?, bandwidth?}
 *                  | {vm, pause: true} | {vm, resume: true} | {vm, off: true}
 *       -> {"return": 0}
 *   StartReplicationCycle {vm, kind?: "cycle" | "resync" | "verify"}
 *       -> {"return": 4096, "job": JOB}   (method ReplicationCycle,
 *                                          Resynchronize, VerifyReplica)
 */
#include "agent/engine/replicate.h"
#include "agent/rpc/handlers.h"
#include "agent/rpc/ops.h"
#include "agent/store/repl.h"
#include "common/rc.h"
#include "common/util.h"

int dmr_h_set_replication(struct dmr_call *c)
{
	struct dmr_replicate_settings s = { .consistency = -1, .zstd = -1, .bandwidth = -1 };
	const char *name, *to = NULL, *consistency = NULL, *compress = NULL;
	_cleanup_free_ char *why = NULL;
	bool pause = false, resume = false, off = false;
	uint64_t interval = 0, bandwidth = 0;
	bool has_bw, settings;
	int rc, r, actions;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_string(c, "to", false, &to)) ||
	    (rc = dmr_param_u64_range(c, "interval", false, DMR_REPL_INTERVAL_MIN,
				      DMR_REPL_INTERVAL_MAX, &interval)) ||
	    (rc = dmr_param_string(c, "consistency", false, &consistency)) ||
	    (rc = dmr_param_string(c, "compress", false, &compress)) ||
	    (rc = dmr_param_u64_range(c, "bandwidth", false, 0, 1ull << 40, &bandwidth)) ||
	    (rc = dmr_param_bool(c, "pause", false, &pause)) ||
	    (rc = dmr_param_bool(c, "resume", false, &resume)) ||
	    (rc = dmr_param_bool(c, "off", false, &off)))
		return rc;
	has_bw = json_object_object_get_ex(c->params, "bandwidth", NULL);
	settings = to || interval || consistency || compress || has_bw;
	actions = (int)pause + (int)resume + (int)off + (int)settings;
	if (actions != 1)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "give one of: settings (--to, --interval, --consistency, "
				     "--compress, --bandwidth), --pause, --resume, --off");
	/* COMMAND runs as root, through a shell: only root names it. */
	if (to && c->uid != 0)
		return dmr_call_fail(c, DMR_RC_ACCESS_DENIED,
				     "setting --to is root-only: the agent runs COMMAND as root "
				     "(uid %u)", (unsigned)c->uid);
	if (to && dmr_repl_to_valid(to) < 0)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "--to: one command line of 1 to %u bytes, no control characters",
				     DMR_REPL_TO_MAX);
	if (consistency && !dmr_streq(consistency, "crash") && !dmr_streq(consistency, "application"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "consistency must be crash or application");
	if (compress && !dmr_streq(compress, "zstd") && !dmr_streq(compress, "none"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "compress must be zstd (or none)");
	if (settings) {
		s.to = to;
		s.interval_sec = (uint32_t)interval;
		s.consistency = consistency ? dmr_streq(consistency, "application") : -1;
		s.zstd = compress ? dmr_streq(compress, "zstd") : -1;
		s.bandwidth = has_bw ? (int64_t)bandwidth : -1;
		r = dmr_replicate_configure(c->agent, name, &s, &why);
	} else {
		r = dmr_replicate_act(c->agent, name, pause ? DMR_REPLICATE_PAUSE :
				      resume ? DMR_REPLICATE_RESUME : DMR_REPLICATE_OFF, &why);
	}
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	return DMR_RC_OK;
}

int dmr_h_start_replication_cycle(struct dmr_call *c)
{
	_cleanup_free_ char *why = NULL;
	const char *name, *kind = "cycle";
	uint64_t id = 0;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) ||
	    (rc = dmr_param_string(c, "kind", false, &kind)))
		return rc;
	if (!dmr_streq(kind, "cycle") && !dmr_streq(kind, "resync") && !dmr_streq(kind, "verify"))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER,
				     "kind must be cycle, resync or verify");
	if ((rc = dmr_ops_need_storage(c, name)) || (rc = dmr_ops_need_up(c, name)))
		return rc;
	r = dmr_replicate_run(c->agent, name, dmr_streq(kind, "resync") ? DMR_REPLICATE_RESYNC :
			      dmr_streq(kind, "verify") ? DMR_REPLICATE_VERIFY : DMR_REPLICATE_CYCLE,
			      &id, &why);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
	json_object_object_add(c->reply, "job", json_object_new_int64((int64_t)id));
	return DMR_RC_JOB_STARTED;
}
