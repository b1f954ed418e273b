/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/guest/qmp.h"

#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "agent/core/authz.h"
#include "common/log.h"
#include "common/path.h"
#include "common/util.h"

/* ---- transport ---------------------------------------------------------- */

#define JSONL_INITIAL_BUF (64u * 1024u)

struct dmr_jsonl {
	int fd;
	bool dead;
	struct json_tokener *tok; /* the lines' parser */
	char *buf;
	size_t cap;
	size_t start;   /* first byte not yet handed out */
	size_t end;     /* one past the last byte received */
	size_t scanned; /* bytes from start already known to hold no newline */
};

uint64_t dmr_deadline_from_ms(int timeout_ms)
{
	if (timeout_ms < 0)
		return DMR_DEADLINE_NEVER;
	return dmr_now_usec() + (uint64_t)timeout_ms * 1000u;
}

/* poll()'s timeout for a deadline: rounded up, so that a wait never ends
 * just before the deadline and spins; -ETIMEDOUT once it has passed. */
static int poll_ms(uint64_t deadline, int *ret_ms)
{
	uint64_t now, left;

	if (deadline == DMR_DEADLINE_NEVER) {
		*ret_ms = -1;
		return 0;
	}
	now = dmr_now_usec();
	if (now >= deadline)
		return -ETIMEDOUT;
	left = (deadline - now + 999) / 1000;
	*ret_ms = left > INT_MAX ? INT_MAX : (int)left;
	return 0;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int ms, r;

		r = poll_ms(deadline, &ms);
		if (r < 0)
			return r;
		r = poll(&p, 1, ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return dmr_negerrno();
		}
		if (r > 0)
			return 0; /* readable, writable, or an error the I/O call reports */
	}
}

/* The peer is gone, or was never there: the caller sees the hypervisor (or
 * guest agent) as unreachable, whatever the exact socket errno was. */
static bool errno_is_unreachable(int e)
{
	return e == ENOENT || e == ECONNREFUSED || e == ECONNRESET || e == EPIPE ||
	       e == ENOTCONN || e == ENOTSOCK || e == EPROTOTYPE || e == ENOTDIR ||
	       e == ECONNABORTED || e == EHOSTUNREACH;
}

/* The negative errno r as the caller sees it. */
static int unreachable_or(int r)
{
	return errno_is_unreachable(-r) ? -EHOSTUNREACH : r;
}

bool dmr_qapi_name_valid(const char *s)
{
	if (!s || !s[0])
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

int dmr_jsonl_connect(const char *path, uint64_t deadline, struct dmr_jsonl **ret_chan)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1, pfd = -1;
	_cleanup_free_ char *buf = NULL;
	struct json_tokener *tok;
	struct dmr_jsonl *c;
	int r;

	assert(ret_chan);
	if (!path || !path[0])
		return -EINVAL;
	/* Resolved and judged once (agent/core/authz.h), then reached through
	 * that descriptor: a socket swapped after the check is not the one
	 * connected to. */
	r = dmr_authz_socket_open(dmr_authz_conf(), path, &pfd);
	if (r < 0) {
		if (r == -EACCES)
			log_debug("jsonl: %s: no longer resolves inside a --socket-dir", path);
		else
			log_debug_errno(r, "jsonl: %s: %m", path);
		return unreachable_or(r);
	}
	dmr_path_fd_name(pfd, sa.sun_path);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return dmr_negerrno();

	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		r = errno;
		if (r == EINTR)
			continue;
		if (r == EAGAIN) {
			/* A Unix listener with a full backlog refuses a
			 * non-blocking connect instead of queueing it. */
			int ms;

			r = poll_ms(deadline, &ms);
			if (r < 0)
				return log_debug_errno(r, "qmp: %s: backlog stays full", path);
			(void)poll(NULL, 0, ms < 0 || ms > 10 ? 10 : ms);
			continue;
		}
		if (r == EINPROGRESS) {
			socklen_t sl = sizeof(r);

			r = wait_fd(fd, POLLOUT, deadline);
			if (r < 0)
				return r;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &sl) < 0)
				return dmr_negerrno();
			if (r == 0)
				break;
		}
		return unreachable_or(log_debug_errno(-r, "jsonl: connect %s: %m", path));
	}

	buf = malloc(JSONL_INITIAL_BUF);
	tok = json_tokener_new_ex(64);
	c = calloc(1, sizeof(*c));
	if (!buf || !tok || !c) {
		if (tok)
			json_tokener_free(tok);
		free(c);
		return -ENOMEM;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	c->tok = tok;
	c->buf = DMR_TAKE_PTR(buf);
	c->cap = JSONL_INITIAL_BUF;
	c->fd = DMR_TAKE_FD(fd);
	*ret_chan = c;
	return 0;
}

void dmr_jsonl_free(struct dmr_jsonl *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	json_tokener_free(c->tok);
	free(c->buf);
	free(c);
}

static int chan_fail(struct dmr_jsonl *c, int r)
{
	c->dead = true;
	return r;
}

/* After a send or recv (op) that failed with errno: 0 when it is worth
 * trying again (interrupted, or the socket became ready for events), else
 * the error, with the channel dead unless the deadline passed. */
static int chan_retry(struct dmr_jsonl *c, const char *op, short events, uint64_t deadline)
{
	int e = errno;

	if (e == EINTR)
		return 0;
	if (e != EAGAIN)
		return chan_fail(c, unreachable_or(log_debug_errno(-e, "jsonl: %s: %m", op)));
	return wait_fd(c->fd, events, deadline);
}

int dmr_jsonl_send(struct dmr_jsonl *c, const void *buf, size_t len, uint64_t deadline)
{
	const char *p = buf;
	int r;

	assert(c && (buf || len == 0));
	if (c->dead)
		return -EHOSTUNREACH;
	while (len > 0) {
		ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k >= 0) {
			p += k;
			len -= (size_t)k;
			continue;
		}
		r = chan_retry(c, "send", POLLOUT, deadline);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Receive more input after c->end, making room first. */
static int chan_fill(struct dmr_jsonl *c, uint64_t deadline)
{
	ssize_t k;
	int r;

	if (c->start > 0 && (c->end == c->cap || c->start >= c->cap / 2)) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == c->cap) {
		/* Room for the longest allowed line and its newline. */
		size_t ncap = c->cap * 2 > DMR_JSONL_MAX_LINE + 1 ? DMR_JSONL_MAX_LINE + 1 : c->cap * 2;
		char *nbuf;

		if (ncap <= c->cap)
			return chan_fail(c, -EPROTO);
		nbuf = realloc(c->buf, ncap);
		if (!nbuf)
			return -ENOMEM;
		c->buf = nbuf;
		c->cap = ncap;
	}
	for (;;) {
		/* Read first, poll only when nothing is there: data that
		 * already arrived wins over a deadline that just passed. */
		k = recv(c->fd, c->buf + c->end, c->cap - c->end, MSG_DONTWAIT);
		if (k > 0) {
			c->end += (size_t)k;
			return 0;
		}
		if (k == 0) {
			log_debug("jsonl: peer closed the connection");
			return chan_fail(c, -EHOSTUNREACH);
		}
		r = chan_retry(c, "recv", POLLIN, deadline);
		if (r < 0)
			return r;
	}
}

int dmr_jsonl_read_line(struct dmr_jsonl *c, uint64_t deadline, char **ret_line, size_t *ret_len)
{
	int r;

	assert(c && ret_line && ret_len);
	if (c->dead)
		return -EHOSTUNREACH;
	for (;;) {
		char *line = c->buf + c->start;
		size_t avail = c->end - c->start;
		char *nl = memchr(line + c->scanned, '\n', avail - c->scanned);

		if (nl) {
			size_t len = (size_t)(nl - line);

			*nl = '\0';
			if (len > 0 && line[len - 1] == '\r')
				line[--len] = '\0';
			c->start += (size_t)(nl - line) + 1;
			c->scanned = 0;
			*ret_line = line;
			*ret_len = len;
			return 0;
		}
		c->scanned = avail;
		if (avail > DMR_JSONL_MAX_LINE)
			return log_debug_errno(chan_fail(c, -EPROTO),
					       "jsonl: a line longer than %u bytes", DMR_JSONL_MAX_LINE);
		r = chan_fill(c, deadline);
		if (r < 0)
			return r;
	}
}

int dmr_jsonl_skip_past(struct dmr_jsonl *c, unsigned char sentinel, uint64_t deadline)
{
	int r;

	assert(c);
	if (c->dead)
		return -EHOSTUNREACH;
	for (;;) {
		char *p = memchr(c->buf + c->start, sentinel, c->end - c->start);

		if (p) {
			c->start = (size_t)(p - c->buf) + 1;
			c->scanned = 0;
			return 0;
		}
		/* Nothing here is worth keeping: garbage is bounded by the
		 * deadline, not by memory. */
		c->start = c->end = c->scanned = 0;
		r = chan_fill(c, deadline);
		if (r < 0)
			return r;
	}
}

int dmr_jsonl_parse_line(struct dmr_jsonl *c, const char *line, size_t len,
			 struct json_object **ret_obj)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t end;

	assert(c && line && ret_obj);
	tok = c->tok;
	/* What the hypervisor or the guest sends reaches logs and job
	 * errors: UTF-8 or nothing (json-c's own check, set on every
	 * tokener here, lets overlong forms through). */
	if (len > INT_MAX || !dmr_utf8_valid(line, len))
		return -EPROTO;
	json_tokener_reset(tok);
	o = json_tokener_parse_ex(tok, line, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		return -EPROTO;
	}
	for (end = json_tokener_get_parse_end(tok); end < len; end++)
		if (!isspace((unsigned char)line[end])) {
			json_object_put(o);
			return -EPROTO;
		}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EPROTO;
	}
	*ret_obj = o;
	return 0;
}

/* ---- QMP ---------------------------------------------------------------- */

#define QMP_DEFAULT_TIMEOUT_MS 30000

struct dmr_qmp {
	struct dmr_jsonl *chan;
	uint64_t next_id;
	int timeout_ms;
	int version[3];
	bool has_error;
	char error_class[64];
	char error_desc[1024];
	char last_event[64];
	unsigned n_events;
	char cmd[256]; /* a command without arguments, formatted in place */
};

/* Text from the hypervisor, kept for logs and job errors: escaped, cut
 * on a character boundary. */
static void copy_str(char *dst, size_t size, const char *src)
{
	dmr_cescape(dst, size, src ? src : "");
}

/* After -EPROTO the stream cannot be trusted to be in step any more. */
static int qmp_drop(struct dmr_qmp *q, int r)
{
	dmr_jsonl_free(q->chan);
	q->chan = NULL;
	return r;
}

static void record_event(struct dmr_qmp *q, struct json_object *ev)
{
	q->n_events++;
	copy_str(q->last_event, sizeof(q->last_event), json_object_get_string(ev));
	log_debug("qmp: event %s skipped", q->last_event);
}

static void record_error(struct dmr_qmp *q, struct json_object *err)
{
	struct json_object *v;

	q->has_error = true;
	copy_str(q->error_class, sizeof(q->error_class),
		 json_object_object_get_ex(err, "class", &v) ? json_object_get_string(v) : "");
	copy_str(q->error_desc, sizeof(q->error_desc),
		 json_object_object_get_ex(err, "desc", &v) ? json_object_get_string(v) : "");
}

/* Read lines until the reply to id (or, if id is 0, the greeting). */
static int qmp_read_reply(struct dmr_qmp *q, uint64_t id, uint64_t deadline,
			  struct json_object **ret_return)
{
	for (;;) {
		struct json_object *o = NULL, *v, *rv, *ev;
		char *line;
		size_t len;
		int r;

		r = dmr_jsonl_read_line(q->chan, deadline, &line, &len);
		if (r < 0)
			return r;
		if (strspn(line, " \t") == len)
			continue;
		r = dmr_jsonl_parse_line(q->chan, line, len, &o);
		if (r < 0)
			return log_debug_errno(qmp_drop(q, r), "qmp: not a JSON object: %.120s", line);
		if (json_object_object_get_ex(o, "event", &ev)) {
			record_event(q, ev);
			json_object_put(o);
			continue;
		}
		if (id == 0) {
			r = json_object_object_get_ex(o, "QMP", &v) ? 0 : -EPROTO;
			if (r == 0)
				*ret_return = json_object_get(v);
			json_object_put(o);
			return r < 0 ? qmp_drop(q, r) : 0;
		}
		if (json_object_object_get_ex(o, "id", &v)) {
			if (!json_object_is_type(v, json_type_int) ||
			    (uint64_t)json_object_get_int64(v) != id) {
				log_debug("qmp: skipping the reply to another command (id %s)",
					  json_object_to_json_string(v));
				json_object_put(o);
				continue;
			}
		} else if (!json_object_object_get_ex(o, "error", NULL)) {
			/* Only replies to commands sent without an id lack
			 * one, and this client sends none. */
			log_debug("qmp: skipping a reply without id");
			json_object_put(o);
			continue;
		}
		/* An error without id is QEMU refusing input it could not
		 * even parse far enough to find the id: that is our command. */
		if (json_object_object_get_ex(o, "error", &v)) {
			record_error(q, v);
			json_object_put(o);
			return log_debug_errno(-EIO, "qmp: error reply: %s: %s", q->error_class,
					       q->error_desc);
		}
		if (!json_object_object_get_ex(o, "return", &rv)) {
			json_object_put(o);
			return log_debug_errno(qmp_drop(q, -EPROTO),
					       "qmp: reply with neither return nor error");
		}
		if (ret_return)
			*ret_return = json_object_get(rv);
		json_object_put(o);
		return 0;
	}
}

/* json-c leaves val's reference with the caller when adding fails. */
static int obj_add(struct json_object *o, const char *key, struct json_object *val)
{
	if (json_object_object_add(o, key, val) < 0) {
		json_object_put(val);
		return -ENOMEM;
	}
	return 0;
}

static int qmp_exec(struct dmr_qmp *q, const char *command, struct json_object *arguments,
		    uint64_t deadline, struct json_object **ret_return)
{
	struct json_object *reply = NULL;
	const char *msg;
	size_t len;
	uint64_t id;
	int r, n;

	if (!dmr_qapi_name_valid(command))
		return -EINVAL;
	q->has_error = false;
	q->error_class[0] = q->error_desc[0] = '\0';
	if (!q->chan)
		return -EHOSTUNREACH;

	id = q->next_id++;
	if (!arguments) {
		n = snprintf(q->cmd, sizeof(q->cmd), "{\"execute\":\"%s\",\"id\":%" PRIu64 "}\n",
			     command, id);
		if (n < 0 || (size_t)n >= sizeof(q->cmd))
			return -EINVAL;
		r = dmr_jsonl_send(q->chan, q->cmd, (size_t)n, deadline);
	} else {
		struct json_object *o = json_object_new_object();
		struct json_object *name = json_object_new_string(command);
		struct json_object *jid = json_object_new_int64((int64_t)id);
		_cleanup_free_ char *line = NULL;

		if (!o || !name || !jid) {
			json_object_put(o);
			json_object_put(name);
			json_object_put(jid);
			return -ENOMEM;
		}
		if (obj_add(o, "execute", name) < 0 ||
		    obj_add(o, "arguments", json_object_get(arguments)) < 0 ||
		    obj_add(o, "id", jid) < 0) {
			json_object_put(o);
			return -ENOMEM;
		}
		msg = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							JSON_C_TO_STRING_NOSLASHESCAPE);
		len = msg ? strlen(msg) : 0;
		line = msg ? malloc(len + 2) : NULL;
		if (line) {
			memcpy(line, msg, len);
			line[len++] = '\n';
		}
		json_object_put(o);
		if (!line)
			return -ENOMEM;
		r = dmr_jsonl_send(q->chan, line, len, deadline);
	}
	if (r < 0)
		return log_debug_errno(r, "qmp: sending %s: %m", command);

	r = qmp_read_reply(q, id, deadline, &reply);
	if (r < 0)
		return log_debug_errno(r, "qmp: %s: %m", command);
	if (ret_return)
		*ret_return = reply;
	else
		json_object_put(reply);
	return 0;
}

static void parse_version(struct dmr_qmp *q, struct json_object *greeting)
{
	static const char *const keys[] = { "major", "minor", "micro" };
	struct json_object *v, *qemu;

	if (!json_object_object_get_ex(greeting, "version", &v) ||
	    !json_object_object_get_ex(v, "qemu", &qemu))
		return;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(keys); i++)
		if (json_object_object_get_ex(qemu, keys[i], &v))
			q->version[i] = json_object_get_int(v);
}

void dmr_qmp_free(struct dmr_qmp *q)
{
	dmr_jsonl_free(q ? q->chan : NULL);
	free(q);
}

int dmr_qmp_connect(const char *path, int timeout_ms, struct dmr_qmp **ret_qmp)
{
	_cleanup_qmp_ struct dmr_qmp *q = NULL;
	uint64_t deadline = dmr_deadline_from_ms(timeout_ms);
	struct json_object *greeting = NULL;
	int r;

	assert(ret_qmp);
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->next_id = 1;
	q->timeout_ms = timeout_ms;
	r = dmr_jsonl_connect(path, deadline, &q->chan);
	if (r < 0)
		return r;
	r = qmp_read_reply(q, 0, deadline, &greeting);
	if (r < 0)
		return log_debug_errno(r, "qmp: %s: no greeting: %m", path);
	parse_version(q, greeting);
	json_object_put(greeting);
	r = qmp_exec(q, "qmp_capabilities", NULL, deadline, NULL);
	if (r < 0)
		return r;
	log_debug("qmp: connected to %s (QEMU %d.%d.%d)", path, q->version[0], q->version[1],
		  q->version[2]);
	*ret_qmp = DMR_TAKE_PTR(q);
	return 0;
}

void dmr_qmp_set_timeout(struct dmr_qmp *q, int timeout_ms)
{
	assert(q);
	q->timeout_ms = timeout_ms;
}

void dmr_qmp_version(const struct dmr_qmp *q, int *ret_major, int *ret_minor, int *ret_micro)
{
	assert(q && ret_major && ret_minor && ret_micro);
	*ret_major = q->version[0];
	*ret_minor = q->version[1];
	*ret_micro = q->version[2];
}

int dmr_qmp_execute(struct dmr_qmp *q, const char *command, struct json_object *arguments,
		    int timeout_ms, struct json_object **ret_return)
{
	assert(q);
	if (arguments && !json_object_is_type(arguments, json_type_object))
		return -EINVAL;
	return qmp_exec(q, command, arguments, dmr_deadline_from_ms(timeout_ms), ret_return);
}

const char *dmr_qmp_last_error(const struct dmr_qmp *q)
{
	assert(q);
	return q->has_error ? q->error_desc : NULL;
}

const char *dmr_qmp_last_error_class(const struct dmr_qmp *q)
{
	assert(q);
	return q->has_error ? q->error_class : NULL;
}

const char *dmr_qmp_last_event(const struct dmr_qmp *q)
{
	assert(q);
	return q->n_events > 0 ? q->last_event : NULL;
}

unsigned dmr_qmp_event_count(const struct dmr_qmp *q)
{
	assert(q);
	return q->n_events;
}

int dmr_qmp_query_status(struct dmr_qmp *q, bool *ret_running, char **ret_status)
{
	struct json_object *ret = NULL, *status, *running;
	char *s = NULL;
	int r;

	r = dmr_qmp_execute(q, "query-status", NULL, q->timeout_ms, &ret);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(ret, "status", &status) ||
	    !json_object_is_type(status, json_type_string) ||
	    !json_object_object_get_ex(ret, "running", &running) ||
	    !json_object_is_type(running, json_type_boolean)) {
		json_object_put(ret);
		return log_debug_errno(-EPROTO, "qmp: query-status without status or running");
	}
	if (ret_status) {
		s = strdup(json_object_get_string(status));
		if (!s) {
			json_object_put(ret);
			return -ENOMEM;
		}
		*ret_status = s;
	}
	if (ret_running)
		*ret_running = json_object_get_boolean(running);
	json_object_put(ret);
	return 0;
}

int dmr_qmp_stop(struct dmr_qmp *q)
{
	return dmr_qmp_execute(q, "stop", NULL, q->timeout_ms, NULL);
}

int dmr_qmp_cont(struct dmr_qmp *q)
{
	return dmr_qmp_execute(q, "cont", NULL, q->timeout_ms, NULL);
}

int dmr_qmp_system_reset(struct dmr_qmp *q)
{
	return dmr_qmp_execute(q, "system_reset", NULL, q->timeout_ms, NULL);
}

int dmr_qmp_hmp(struct dmr_qmp *q, const char *command_line, char **ret_output)
{
	struct json_object *args, *ret = NULL;
	char *s;
	int r;

	assert(q && ret_output);
	if (!command_line)
		return -EINVAL;
	args = json_object_new_object();
	if (!args)
		return -ENOMEM;
	if (obj_add(args, "command-line", json_object_new_string(command_line)) < 0) {
		json_object_put(args);
		return -ENOMEM;
	}
	r = dmr_qmp_execute(q, "human-monitor-command", args, q->timeout_ms, &ret);
	json_object_put(args);
	if (r < 0)
		return r;
	if (!json_object_is_type(ret, json_type_string)) {
		json_object_put(ret);
		return log_debug_errno(-EPROTO, "qmp: human-monitor-command returned no string");
	}
	s = strdup(json_object_get_string(ret));
	json_object_put(ret);
	if (!s)
		return -ENOMEM;
	*ret_output = s;
	return 0;
}
