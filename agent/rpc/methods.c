/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/methods.c - the method table, and the param accessors every handler
 * uses so that a wrong JSON type is always 32776 and a missing required
 * param always 32773, with the key named.
 */
#include "agent/rpc/method.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent/rpc/handlers.h"
#include "common/rc.h"
#include "common/util.h"

const struct dmr_method dmr_methods[] = {
	{ "CreatePool", true, dmr_h_create_pool, false, false },
	{ "GetPoolStatus", false, dmr_h_get_pool_status, true, false },
	{ "RepairPool", true, dmr_h_repair_pool, false, false },
	{ "AddVirtualSystem", true, dmr_h_add_vm, false, false },
	{ "GetVirtualSystem", false, dmr_h_get_vm, false, false },
	{ "ListVirtualSystems", false, dmr_h_list_vms, false, false },
	{ "RemoveVirtualSystem", true, dmr_h_remove_vm, false, false },
	{ "SetRetentionPolicy", true, dmr_h_set_retention, false, false },
	{ "SetFailoverNetworkAdapterSettings", true, dmr_h_set_network, false, false },
	{ "CreateReplicationPoint", true, dmr_h_create_point, false, false },
	{ "ListReplicationPoints", false, dmr_h_list_points, true, false },
	{ "DestroyReplicationPoint", true, dmr_h_destroy_point, false, false },
	{ "InitiateFailover", true, dmr_h_initiate_failover, false, false },
	{ "RevertFailover", true, dmr_h_revert_failover, false, false },
	{ "CommitFailover", true, dmr_h_commit_failover, false, false },
	{ "TestReplicaSystem", true, dmr_h_test_replica, false, false },
	{ "StopTestReplicaSystem", true, dmr_h_stop_test, false, false },
	{ "SendReplicationPoint", true, dmr_h_send_point, false, true },
	{ "ReceiveReplicationPoint", true, dmr_h_receive_point, false, true },
	{ "HashReplicaPoint", true, dmr_h_hash_point, false, true },
	{ "DemoteVirtualSystem", true, dmr_h_demote_vm, false, false },
	{ "SetReplication", true, dmr_h_set_replication, false, false },
	{ "StartReplicationCycle", true, dmr_h_start_replication_cycle, false, false },
	{ "GetJob", false, dmr_h_get_job, false, false },
	{ "ListJobs", false, dmr_h_list_jobs, false, false },
	{ NULL, false, NULL, false, false },
};

const struct dmr_method *dmr_method_find(const char *name)
{
	if (!name)
		return NULL;
	for (const struct dmr_method *m = dmr_methods; m->name; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

int dmr_call_fail(struct dmr_call *call, int rc, const char *fmt, ...)
{
	char raw[sizeof(call->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* One line, always, and nothing a terminal acts on: the message may
	 * quote what the caller sent.  Cut on a character boundary. */
	raw[dmr_utf8_cut(raw, strlen(raw))] = '\0';
	dmr_cescape(call->error, sizeof(call->error), raw);
	return rc;
}

static int get(struct dmr_call *call, const char *key, bool required, json_type type,
	       const char *type_name, struct json_object **ret)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(call->params, key, &v) || !v) {
		if (required)
			return dmr_call_fail(call, DMR_RC_INVALID_PARAMETER, "missing param '%s'", key);
		return -ENOENT;
	}
	if (!json_object_is_type(v, type))
		return dmr_call_fail(call, DMR_RC_INCORRECT_TYPE, "param '%s' must be %s", key,
				     type_name);
	*ret = v;
	return 0;
}

/* -ENOENT (optional and absent) means "go on" to the handler: 0. */
#define GO_ON(r) ((r) == -ENOENT ? 0 : (r))

int dmr_param_string(struct dmr_call *call, const char *key, bool required, const char **ret)
{
	struct json_object *v = NULL;
	int r = get(call, key, required, json_type_string, "a string", &v);

	/* A NUL inside would cut the string short of what was checked. */
	if (r == 0 && strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return dmr_call_fail(call, DMR_RC_INVALID_PARAMETER, "param '%s' holds a NUL", key);
	if (r == 0)
		*ret = json_object_get_string(v);
	return GO_ON(r);
}

int dmr_param_u64_range(struct dmr_call *call, const char *key, bool required, uint64_t min,
			uint64_t max, uint64_t *ret)
{
	struct json_object *v = NULL;
	int r = get(call, key, required, json_type_int, "a non-negative integer", &v);

	if (r == 0) {
		int64_t x = json_object_get_int64(v);

		/* json-c saturates at INT64_MAX, and its errno is only what
		 * the parse happened to leave: that value is taken as "too
		 * large", never at face value. */
		if (x < 0 || x == INT64_MAX || (uint64_t)x < min || (uint64_t)x > max)
			return dmr_call_fail(call, DMR_RC_INVALID_PARAMETER,
					     "param '%s' is out of range (%" PRIu64 " to %" PRIu64 ")",
					     key, min, max);
		*ret = (uint64_t)x;
	}
	return GO_ON(r);
}

int dmr_param_u64(struct dmr_call *call, const char *key, bool required, uint64_t *ret)
{
	return dmr_param_u64_range(call, key, required, 0, INT64_MAX - 1, ret);
}

int dmr_param_bool(struct dmr_call *call, const char *key, bool required, bool *ret)
{
	struct json_object *v = NULL;
	int r = get(call, key, required, json_type_boolean, "true or false", &v);

	if (r == 0)
		*ret = json_object_get_boolean(v);
	return GO_ON(r);
}

int dmr_param_array(struct dmr_call *call, const char *key, bool required, struct json_object **ret)
{
	struct json_object *v = NULL;
	int r = get(call, key, required, json_type_array, "an array", &v);

	if (r == 0)
		*ret = v;
	return GO_ON(r);
}
