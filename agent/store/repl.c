/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/store/repl.c - continuous replication settings, their state file
 * object and the health arithmetic (agent/store/repl.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/store/repl.h"
#include "common/util.h"

void dmr_repl_clear(struct dmr_repl *r)
{
	if (!r)
		return;
	free(r->to);
	free(r->last_error);
	memset(r, 0, sizeof(*r));
}

const char *dmr_repl_health_name(enum dmr_repl_health h)
{
	switch (h) {
	case DMR_REPL_OFF:
		return "off";
	case DMR_REPL_OK:
		return "ok";
	case DMR_REPL_WARNING:
		return "warning";
	case DMR_REPL_CRITICAL:
		return "critical";
	case DMR_REPL_PAUSED:
		return "paused";
	case DMR_REPL_RESYNC_REQUIRED:
		return "resync-required";
	}
	return "unknown";
}

int64_t dmr_repl_lag_sec(const struct dmr_repl *r, uint64_t now_usec)
{
	if (!r->acked_uuid[0])
		return -1;
	return now_usec > r->acked_usec ? (int64_t)((now_usec - r->acked_usec) / 1000000) : 0;
}

enum dmr_repl_health dmr_repl_health(const struct dmr_repl *r, uint64_t now_usec)
{
	uint64_t iv = (uint64_t)r->interval_sec * 1000000, since;
	int64_t lag;

	if (!r->to)
		return DMR_REPL_OFF;
	if (r->paused)
		return DMR_REPL_PAUSED;
	if (r->resync_required)
		return DMR_REPL_RESYNC_REQUIRED;
	lag = dmr_repl_lag_sec(r, now_usec);
	if (r->refused || r->failures >= DMR_REPL_CRITICAL_FAILURES ||
	    (lag >= 0 && (uint64_t)lag > (uint64_t)DMR_REPL_CRITICAL_INTERVALS * r->interval_sec))
		return DMR_REPL_CRITICAL;
	/* Late: nothing acknowledged within two intervals of the last success
	 * (or of the setting, before the first). */
	since = r->last_success_usec ? r->last_success_usec : r->set_usec;
	if (r->failures > 0 || (since && now_usec > since && now_usec - since > 2 * iv))
		return DMR_REPL_WARNING;
	return DMR_REPL_OK;
}

bool dmr_repl_interrupted(struct dmr_repl *r)
{
	char *e;

	if (!r->cycle_running)
		return false;
	r->cycle_running = false;
	if (!r->to)
		return true;
	if (r->failures < UINT32_MAX)
		r->failures++;
	e = strdup("a cycle was interrupted: the agent stopped during it");
	if (e) {
		free(r->last_error);
		r->last_error = e;
	}
	return true;
}

int dmr_repl_to_valid(const char *to)
{
	size_t n;

	if (!to)
		return -EINVAL;
	n = strlen(to);
	if (n == 0 || n > DMR_REPL_TO_MAX)
		return -EINVAL;
	/* One shell command line: a newline would hide a second command
	 * from whoever reads vm show; control bytes have no place in it. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)to[i] < 0x20 || to[i] == 0x7f)
			return -EINVAL;
	return 0;
}

int dmr_repl_interval_valid(uint64_t sec)
{
	return sec >= DMR_REPL_INTERVAL_MIN && sec <= DMR_REPL_INTERVAL_MAX ? 0 : -EINVAL;
}

struct json_object *dmr_repl_state_json(const struct dmr_repl *r)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "to", r->to ? json_object_new_string(r->to) : NULL);
	json_object_object_add(o, "interval_sec", json_object_new_int64(r->interval_sec));
	json_object_object_add(o, "application", json_object_new_boolean(r->application));
	json_object_object_add(o, "zstd", json_object_new_boolean(r->zstd));
	json_object_object_add(o, "bandwidth", json_object_new_int64((int64_t)r->bandwidth));
	json_object_object_add(o, "paused", json_object_new_boolean(r->paused));
	json_object_object_add(o, "acked_uuid", json_object_new_string(r->acked_uuid));
	json_object_object_add(o, "acked_usec", json_object_new_int64((int64_t)r->acked_usec));
	json_object_object_add(o, "last_success_usec",
			       json_object_new_int64((int64_t)r->last_success_usec));
	json_object_object_add(o, "last_attempt_usec",
			       json_object_new_int64((int64_t)r->last_attempt_usec));
	json_object_object_add(o, "set_usec", json_object_new_int64((int64_t)r->set_usec));
	json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)r->bytes_sent));
	json_object_object_add(o, "failures", json_object_new_int64(r->failures));
	json_object_object_add(o, "resync_required", json_object_new_boolean(r->resync_required));
	json_object_object_add(o, "refused", json_object_new_boolean(r->refused));
	json_object_object_add(o, "last_error",
			       r->last_error ? json_object_new_string(r->last_error) : NULL);
	json_object_object_add(o, "cycle_running", json_object_new_boolean(r->cycle_running));
	json_object_object_add(o, "sent_uuid", json_object_new_string(r->sent_uuid));
	return o;
}

static int p_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *ret,
		 const char **field)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		goto bad;
	x = json_object_get_int64(v);
	if (x < 0 || x == INT64_MAX || (uint64_t)x > max)
		goto bad;
	*ret = (uint64_t)x;
	return 0;
bad:
	*field = key;
	return -EBADMSG;
}

static int p_bool(struct json_object *o, const char *key, bool *ret, const char **field)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean)) {
		*field = key;
		return -EBADMSG;
	}
	*ret = json_object_get_boolean(v);
	return 0;
}

/* A string or null, at most max bytes, no NUL inside; *ret malloc()ed. */
static int p_str(struct json_object *o, const char *key, size_t max, char **ret,
		 const char **field)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		goto bad;
	if (!v) {
		*ret = NULL;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string) ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v) ||
	    (size_t)json_object_get_string_len(v) > max)
		goto bad;
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
bad:
	*field = key;
	return -EBADMSG;
}

int dmr_repl_state_parse(struct json_object *o, struct dmr_repl *ret, const char **ret_field)
{
	struct dmr_repl r = { 0 };
	const char *field = NULL;
	struct json_object *v;
	uint64_t x;
	int e;

	if (!json_object_is_type(o, json_type_object)) {
		field = "replication";
		e = -EBADMSG;
		goto fail;
	}
	if ((e = p_str(o, "to", DMR_REPL_TO_MAX, &r.to, &field)) < 0)
		goto fail;
	if (r.to && dmr_repl_to_valid(r.to) < 0) {
		field = "to";
		e = -EBADMSG;
		goto fail;
	}
	if ((e = p_u64(o, "interval_sec", DMR_REPL_INTERVAL_MAX, &x, &field)) < 0)
		goto fail;
	r.interval_sec = (uint32_t)x;
	if (r.to && dmr_repl_interval_valid(x) < 0) {
		field = "interval_sec";
		e = -EBADMSG;
		goto fail;
	}
	if ((e = p_bool(o, "application", &r.application, &field)) < 0 ||
	    (e = p_bool(o, "zstd", &r.zstd, &field)) < 0 ||
	    (e = p_u64(o, "bandwidth", 1ull << 40, &r.bandwidth, &field)) < 0 ||
	    (e = p_bool(o, "paused", &r.paused, &field)) < 0)
		goto fail;
	if (!json_object_object_get_ex(o, "acked_uuid", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    (json_object_get_string_len(v) != 0 && !dmr_uuid_valid(json_object_get_string(v)))) {
		field = "acked_uuid";
		e = -EBADMSG;
		goto fail;
	}
	memcpy(r.acked_uuid, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	if ((e = p_u64(o, "acked_usec", INT64_MAX, &r.acked_usec, &field)) < 0 ||
	    (e = p_u64(o, "last_success_usec", INT64_MAX, &r.last_success_usec, &field)) < 0 ||
	    (e = p_u64(o, "last_attempt_usec", INT64_MAX, &r.last_attempt_usec, &field)) < 0 ||
	    (e = p_u64(o, "set_usec", INT64_MAX, &r.set_usec, &field)) < 0 ||
	    (e = p_u64(o, "bytes_sent", INT64_MAX, &r.bytes_sent, &field)) < 0 ||
	    (e = p_u64(o, "failures", UINT32_MAX, &x, &field)) < 0)
		goto fail;
	r.failures = (uint32_t)x;
	if ((e = p_bool(o, "resync_required", &r.resync_required, &field)) < 0 ||
	    (e = p_bool(o, "refused", &r.refused, &field)) < 0 ||
	    (e = p_str(o, "last_error", DMR_REPL_ERROR_MAX, &r.last_error, &field)) < 0)
		goto fail;
	/* Absent in files from before them: no cycle was running, no answer
	 * is missing. */
	if (json_object_object_get_ex(o, "sent_uuid", &v) &&
	    (!json_object_is_type(v, json_type_string) ||
	     (json_object_get_string_len(v) != 0 && !dmr_uuid_valid(json_object_get_string(v))))) {
		field = "sent_uuid";
		e = -EBADMSG;
		goto fail;
	}
	if (v && json_object_is_type(v, json_type_string))
		memcpy(r.sent_uuid, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	if (json_object_object_get_ex(o, "cycle_running", NULL) &&
	    (e = p_bool(o, "cycle_running", &r.cycle_running, &field)) < 0)
		goto fail;
	dmr_repl_clear(ret);
	*ret = r;
	return 0;
fail:
	dmr_repl_clear(&r);
	if (ret_field)
		*ret_field = field;
	return e;
}
