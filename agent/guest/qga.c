/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/guest/qga.h"

#include <assert.h>
#include <inttypes.h>
#include <sys/random.h>

#include "agent/guest/qmp.h"
#include "common/log.h"
#include "common/util.h"

/* The byte guest-sync-delimited puts before its reply, and the byte that
 * resets the agent's JSON parser: invalid anywhere in UTF-8 JSON. */
#define QGA_SENTINEL 0xFFu

struct dmr_qga {
	struct dmr_jsonl *chan;
	bool synced;
	uint64_t rand_state;
	bool has_error;
	char error_desc[1024];
	char cmd[256];
};

/* A sync id: positive and within 31 bits, which every agent's int
 * parsing takes; random so that a stale reply to an abandoned sync (ours
 * or another client's) cannot pass for this one. */
static int64_t next_sync_id(struct dmr_qga *g)
{
	uint64_t x = g->rand_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	g->rand_state = x;
	return (int64_t)(x % 0x7ffffffeu) + 1;
}

static int qga_sync(struct dmr_qga *g, uint64_t deadline)
{
	int64_t id = next_sync_id(g);
	int n, r;

	g->synced = false;
	n = snprintf(g->cmd, sizeof(g->cmd),
		     "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":%" PRId64 "}}\n",
		     id);
	if (n < 0 || (size_t)n >= sizeof(g->cmd))
		return -EINVAL;
	r = dmr_jsonl_send(g->chan, g->cmd, (size_t)n, deadline);
	if (r < 0)
		return log_debug_errno(r, "qga: sending guest-sync-delimited: %m");

	for (;;) {
		struct json_object *o = NULL, *v;
		char *line, *ff;
		size_t len;
		bool match;

		r = dmr_jsonl_skip_past(g->chan, QGA_SENTINEL, deadline);
		if (r >= 0)
			r = dmr_jsonl_read_line(g->chan, deadline, &line, &len);
		if (r < 0)
			return log_debug_errno(r, "qga: guest-sync-delimited: %m");
		/* Several sentinels in a row: the reply follows the last. */
		ff = memrchr(line, QGA_SENTINEL, len);
		if (ff) {
			len -= (size_t)(ff + 1 - line);
			line = ff + 1;
		}
		if (dmr_jsonl_parse_line(g->chan, line, len, &o) < 0) {
			log_debug("qga: skipping garbage after a sentinel: %.120s", line);
			continue;
		}
		match = json_object_object_get_ex(o, "return", &v) &&
			json_object_is_type(v, json_type_int) && json_object_get_int64(v) == id;
		json_object_put(o);
		if (match) {
			g->synced = true;
			return 0;
		}
		log_debug("qga: skipping a stale reply: %.120s", line);
	}
}

static int qga_exec(struct dmr_qga *g, const char *command, struct json_object *arguments,
		    uint64_t deadline, struct json_object **ret_return)
{
	_cleanup_free_ char *heap = NULL;
	const char *msg;
	size_t len;
	int r, n;

	if (!dmr_qapi_name_valid(command) || (arguments && !json_object_is_type(arguments, json_type_object)))
		return -EINVAL;
	g->has_error = false;
	g->error_desc[0] = '\0';

	if (!g->synced) {
		r = qga_sync(g, deadline);
		if (r < 0)
			return r;
	}

	if (arguments) {
		const char *a = json_object_to_json_string_ext(arguments, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE);

		if (!a || asprintf(&heap, "{\"execute\":\"%s\",\"arguments\":%s}\n", command, a) < 0) {
			heap = NULL;
			return -ENOMEM;
		}
		msg = heap;
		len = strlen(heap);
	} else {
		n = snprintf(g->cmd, sizeof(g->cmd), "{\"execute\":\"%s\"}\n", command);
		if (n < 0 || (size_t)n >= sizeof(g->cmd))
			return -EINVAL;
		msg = g->cmd;
		len = (size_t)n;
	}

	/* Until a reply is read whole, the channel is out of step: whatever
	 * interrupts this call leaves the next one a resync to do. */
	g->synced = false;
	r = dmr_jsonl_send(g->chan, msg, len, deadline);
	if (r < 0)
		return log_debug_errno(r, "qga: sending %s: %m", command);

	for (;;) {
		struct json_object *o = NULL, *v;
		char *line;
		size_t llen;

		r = dmr_jsonl_read_line(g->chan, deadline, &line, &llen);
		if (r < 0)
			return log_debug_errno(r, "qga: %s: %m", command);
		if (strspn(line, " \t") == llen)
			continue;
		r = dmr_jsonl_parse_line(g->chan, line, llen, &o);
		if (r < 0)
			return log_debug_errno(r, "qga: %s: not a JSON object: %.120s", command, line);
		if (json_object_object_get_ex(o, "error", &v)) {
			struct json_object *d;

			g->has_error = true;
			/* The guest's words reach the operator's terminal
			 * (job errors) and the log: escaped, and cut on a
			 * character boundary. */
			dmr_cescape(g->error_desc, sizeof(g->error_desc),
				    json_object_object_get_ex(v, "desc", &d) &&
				    json_object_is_type(d, json_type_string) ?
				    json_object_get_string(d) : "");
			json_object_put(o);
			g->synced = true;
			return log_debug_errno(-EIO, "qga: %s: %s", command, g->error_desc);
		}
		if (!json_object_object_get_ex(o, "return", &v)) {
			json_object_put(o);
			return log_debug_errno(-EPROTO, "qga: %s: reply with neither return nor error",
					       command);
		}
		g->synced = true;
		if (ret_return)
			*ret_return = json_object_get(v);
		json_object_put(o);
		return 0;
	}
}

void dmr_qga_free(struct dmr_qga *g)
{
	dmr_jsonl_free(g ? g->chan : NULL);
	free(g);
}

int dmr_qga_connect(const char *path, int timeout_ms, struct dmr_qga **ret_qga)
{
	uint64_t deadline = dmr_deadline_from_ms(timeout_ms);
	_cleanup_qga_ struct dmr_qga *g = NULL;
	int r;

	assert(ret_qga);
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	if (getrandom(&g->rand_state, sizeof(g->rand_state), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(g->rand_state))
		/* Unpredictability is not needed, only a low chance of
		 * meeting a stale id again. */
		g->rand_state = dmr_now_usec() ^ ((uint64_t)getpid() << 32);
	if (!g->rand_state)
		g->rand_state = 0x9e3779b97f4a7c15ull;
	r = dmr_jsonl_connect(path, deadline, &g->chan);
	if (r < 0)
		return r;
	r = qga_sync(g, deadline);
	if (r < 0)
		return r;
	*ret_qga = DMR_TAKE_PTR(g);
	return 0;
}

int dmr_qga_sync(struct dmr_qga *g, int timeout_ms)
{
	assert(g);
	return qga_sync(g, dmr_deadline_from_ms(timeout_ms));
}

int dmr_qga_execute(struct dmr_qga *g, const char *command, struct json_object *arguments,
		    int timeout_ms, struct json_object **ret_return)
{
	assert(g);
	return qga_exec(g, command, arguments, dmr_deadline_from_ms(timeout_ms), ret_return);
}

const char *dmr_qga_last_error(const struct dmr_qga *g)
{
	assert(g);
	return g->has_error ? g->error_desc : NULL;
}

int dmr_qga_ping(struct dmr_qga *g, int timeout_ms)
{
	return dmr_qga_execute(g, "guest-ping", NULL, timeout_ms, NULL);
}

static int exec_int(struct dmr_qga *g, const char *command, int timeout_ms, int *ret_count)
{
	struct json_object *ret = NULL;
	int r;

	r = dmr_qga_execute(g, command, NULL, timeout_ms, &ret);
	if (r < 0)
		return r;
	if (!json_object_is_type(ret, json_type_int)) {
		json_object_put(ret);
		return log_debug_errno(-EPROTO, "qga: %s did not return a number", command);
	}
	if (ret_count)
		*ret_count = json_object_get_int(ret);
	json_object_put(ret);
	return 0;
}

int dmr_qga_fsfreeze_freeze(struct dmr_qga *g, int timeout_ms, int *ret_count)
{
	return exec_int(g, "guest-fsfreeze-freeze", timeout_ms, ret_count);
}

int dmr_qga_fsfreeze_thaw(struct dmr_qga *g, int timeout_ms, int *ret_count)
{
	return exec_int(g, "guest-fsfreeze-thaw", timeout_ms, ret_count);
}

int dmr_qga_fsfreeze_status(struct dmr_qga *g, int timeout_ms, bool *ret_frozen)
{
	struct json_object *ret = NULL;
	const char *s;
	int r;

	assert(g && ret_frozen);
	r = dmr_qga_execute(g, "guest-fsfreeze-status", NULL, timeout_ms, &ret);
	if (r < 0)
		return r;
	s = json_object_is_type(ret, json_type_string) ? json_object_get_string(ret) : NULL;
	if (dmr_streq(s, "frozen") || dmr_streq(s, "thawed")) {
		*ret_frozen = dmr_streq(s, "frozen");
		r = 0;
	} else
		r = log_debug_errno(-EPROTO, "qga: unexpected fsfreeze status %s",
				    json_object_to_json_string(ret));
	json_object_put(ret);
	return r;
}
