/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/authz.h"
#include "agent/rc.h"
#include "common/log.h"
#include "common/util.h"

struct client {
	int fd;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	bool privileged;
	char *in;
	size_t in_len, in_cap;
	char *out;
	size_t out_len, out_off;
	bool closing;  /* flush what is queued, then close */
	bool want_out; /* EPOLLOUT armed */
	bool dead;     /* drop now: gone, or its unread output hit the cap */
	bool discarding; /* inside an oversized request: drop up to its '\n' */
};

struct dmr_server {
	struct dmr_agent *a;
	const struct dmr_method *methods;
	int lfd;
	int epfd;
	char *path;
	struct client *clients[DMR_SERVER_MAX_CLIENTS];
	size_t n_clients;
};

static void client_free(struct dmr_server *s, struct client *c)
{
	if (!c)
		return;
	if (c->fd >= 0) {
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	for (size_t i = 0; i < s->n_clients; i++)
		if (s->clients[i] == c) {
			s->clients[i] = s->clients[--s->n_clients];
			break;
		}
	free(c->in);
	free(c->out);
	free(c);
}

/* Is the peer root or in --group (primary or supplementary, as the kernel
 * recorded them when it connected: SO_PEERGROUPS, not /proc, which a pid
 * reuse could fool)? */
static bool peer_privileged(const struct dmr_agent *a, int fd, const struct ucred *cr)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (cr->uid == 0)
		return true;
	if (!a->have_group)
		return false;
	if (cr->gid == a->group)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == a->group)
			return true;
	return false;
}

static int stale_socket_check(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	_cleanup_close_ int fd = -1;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return -EADDRINUSE;
	/* Nobody answers: a leftover of a crashed agent. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int dmr_server_open(struct dmr_agent *a, struct dmr_server **ret_server)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN };
	_cleanup_free_ char *dir = NULL;
	struct dmr_server *s;
	mode_t old;
	char *slash;
	int r;

	if (!a || !a->socket_path || !ret_server)
		return -EINVAL;
	if (strlen(a->socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (a->socket_path[0] != '/')
		return -EINVAL;
	dir = strdup(a->socket_path);
	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	*slash = '\0';
	if (*dir && access(dir, F_OK) < 0) {
		r = dmr_mkdir_p(dir, 0750);
		if (r < 0)
			return r;
		if (a->have_group && chown(dir, 0, a->group) < 0)
			return -errno;
		if (chmod(dir, 0750) < 0)
			return -errno;
	}
	r = stale_socket_check(a->socket_path);
	if (r < 0)
		return r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->a = a;
	s->methods = dmr_methods;
	s->epfd = -1;
	s->path = strdup(a->socket_path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (!s->path || s->lfd < 0) {
		r = s->path ? -errno : -ENOMEM;
		goto fail;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->socket_path);
	/* The socket is born 0660, never briefly wider. */
	old = umask(0117);
	r = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old);
	if (r < 0)
		goto fail;
	if ((a->have_group && chown(a->socket_path, 0, a->group) < 0) ||
	    chmod(a->socket_path, 0660) < 0 || listen(s->lfd, 64) < 0) {
		r = -errno;
		(void)unlink(a->socket_path);
		goto fail;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	ev.data.ptr = NULL; /* NULL: the listening socket */
	if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev) < 0) {
		r = -errno;
		(void)unlink(a->socket_path);
		goto fail;
	}
	*ret_server = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s->path);
	free(s);
	return r;
}

void dmr_server_set_methods(struct dmr_server *s, const struct dmr_method *methods)
{
	s->methods = methods ? methods : dmr_methods;
}

void dmr_server_free(struct dmr_server *s)
{
	if (!s)
		return;
	while (s->n_clients)
		client_free(s, s->clients[0]);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->path)
		(void)unlink(s->path);
	free(s->path);
	free(s);
}

static int client_arm(struct dmr_server *s, struct client *c, bool want_out)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0),
				  .data.ptr = c };

	if (c->want_out == want_out)
		return 0;
	c->want_out = want_out;
	return epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

/* Write what is queued; 0, or -errno when the client is gone. */
static int client_flush(struct dmr_server *s, struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return client_arm(s, c, true);
			return -errno;
		}
		c->out_off += (size_t)k;
	}
	c->out_off = c->out_len = 0;
	return client_arm(s, c, false);
}

static int client_queue(struct client *c, const char *text)
{
	size_t n = strlen(text);

	if (c->out_len - c->out_off + n + 1 > DMR_SERVER_MAX_PENDING)
		return -ENOBUFS;
	if (c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	{
		char *o = realloc(c->out, c->out_len + n + 1);

		if (!o)
			return -ENOMEM;
		c->out = o;
	}
	memcpy(c->out + c->out_len, text, n);
	c->out[c->out_len + n] = '\n';
	c->out_len += n + 1;
	return 0;
}

static int reply(struct client *c, struct json_object *id, int rc, const char *error,
		 struct json_object *fields)
{
	struct json_object *o = json_object_new_object();
	int r;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "id", json_object_get(id));
	json_object_object_add(o, "return", json_object_new_int(rc));
	if (fields) {
		json_object_object_foreach(fields, k, v) {
			if (strcmp(k, "id") && strcmp(k, "return") && strcmp(k, "error"))
				json_object_object_add(o, k, json_object_get(v));
		}
	}
	if (rc != DMR_RC_OK && rc != DMR_RC_JOB_STARTED)
		json_object_object_add(o, "error",
				       json_object_new_string(error && *error ? error : dmr_rc_name(rc)));
	r = client_queue(c, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return r;
}

static const char *param_vm(struct json_object *params)
{
	struct json_object *v;

	if (params && json_object_object_get_ex(params, "vm", &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static int handle_line(struct dmr_server *s, struct client *c, const char *line, size_t len)
{
	struct json_tokener *tok;
	struct json_object *req = NULL, *id = NULL, *m = NULL, *params = NULL, *own_params = NULL;
	const struct dmr_method *method = NULL;
	struct dmr_call call = { 0 };
	char why[sizeof(call.error) - 16];
	const char *name;
	uint64_t t0 = dmr_now_usec();
	int rc, r;

	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	req = json_tokener_parse_ex(tok, line, (int)len);
	if (req && tok->char_offset < (int)len) {
		/* Trailing junk after the object. */
		for (size_t i = (size_t)tok->char_offset; i < len; i++)
			if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
				json_object_put(req);
				req = NULL;
				break;
			}
	}
	json_tokener_free(tok);
	if (!req || !json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return reply(c, NULL, DMR_RC_INVALID_PARAMETER, "malformed request: not a JSON object",
			     NULL);
	}
	(void)json_object_object_get_ex(req, "id", &id);
	if (!json_object_object_get_ex(req, "method", &m) || !json_object_is_type(m, json_type_string)) {
		r = reply(c, id, m ? DMR_RC_INCORRECT_TYPE : DMR_RC_INVALID_PARAMETER,
			  m ? "'method' must be a string" : "missing 'method'", NULL);
		goto out;
	}
	name = json_object_get_string(m);
	for (const struct dmr_method *x = s->methods; x->name; x++)
		if (strcmp(x->name, name) == 0)
			method = x;
	if (!method) {
		r = reply(c, id, DMR_RC_NOT_SUPPORTED, "unknown method", NULL);
		goto out;
	}
	if (json_object_object_get_ex(req, "params", &params) && params &&
	    !json_object_is_type(params, json_type_object)) {
		r = reply(c, id, DMR_RC_INCORRECT_TYPE, "'params' must be an object", NULL);
		goto out;
	}
	if (!params)
		params = own_params = json_object_new_object();
	call.agent = s->a;
	call.uid = c->uid;
	call.gid = c->gid;
	call.pid = c->pid;
	call.privileged = c->privileged;
	call.params = params;
	call.reply = json_object_new_object();
	if (!params || !call.reply) {
		r = -ENOMEM;
		goto out_call;
	}
	if (method->mutating && !c->privileged)
		rc = dmr_call_fail(&call, DMR_RC_ACCESS_DENIED,
				   "%s needs root or the agent's group (uid %u)", method->name,
				   (unsigned)c->uid);
	else if ((rc = dmr_authz_method(dmr_authz_conf(), dmr_authz_peer(c->uid, c->privileged),
					method->name, method->mutating, params, why, sizeof(why))))
		(void)dmr_call_fail(&call, rc, "%s (uid %u)", why, (unsigned)c->uid);
	else
		rc = method->fn(&call);
	r = reply(c, id, rc, call.error, call.reply);
	{
		const char *vm = param_vm(params);
		enum dmr_log_level lvl = method->mutating || (rc && rc != DMR_RC_JOB_STARTED) ?
						 DMR_LOG_INFO : DMR_LOG_DEBUG;

		if (lvl <= dmr_log_get_level())
			dmr_log(lvl, "%s%s%s uid %u: %d%s%s (%" PRIu64 " ms)", method->name,
				vm ? " VM " : "", vm ? vm : "", (unsigned)c->uid, rc,
				call.error[0] ? ": " : "", call.error, (dmr_now_usec() - t0) / 1000);
	}
out_call:
	json_object_put(call.reply);
	json_object_put(own_params);
out:
	json_object_put(req);
	return r;
}

/* Take every complete line out of the input buffer. */
static int client_process(struct dmr_server *s, struct client *c)
{
	size_t start = 0;
	int r = 0;

	while (!c->closing && start < c->in_len) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl)
			break;
		len = (size_t)(nl - (c->in + start));
		if (len > DMR_SERVER_MAX_REQUEST) {
			r = reply(c, NULL, DMR_RC_INVALID_PARAMETER, "request larger than 1 MiB", NULL);
			start += len + 1;
			continue;
		}
		if (len > 0)
			r = handle_line(s, c, c->in + start, len);
		start += len + 1;
		if (r < 0)
			break;
	}
	if (start) {
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
	}
	if (r == 0 && !c->closing && c->in_len > DMR_SERVER_MAX_REQUEST) {
		/* Answer now, and drop the rest of the line as it comes:
		 * the client is still writing it and would never read a
		 * reply sent just before a close. */
		r = reply(c, NULL, DMR_RC_INVALID_PARAMETER, "request larger than 1 MiB", NULL);
		c->discarding = true;
		c->in_len = 0;
	}
	return r;
}

static void client_read(struct dmr_server *s, struct client *c)
{
	for (;;) {
		ssize_t k;

		if (c->in_cap - c->in_len < 65536) {
			size_t cap = c->in_cap ? c->in_cap * 2 : 65536;
			char *n;

			if (cap > DMR_SERVER_MAX_REQUEST + 131072)
				cap = DMR_SERVER_MAX_REQUEST + 131072;
			if (cap <= c->in_len) {
				/* Full and no line end: client_process closes it. */
				break;
			}
			n = realloc(c->in, cap);
			if (!n) {
				c->closing = true;
				return;
			}
			c->in = n;
			c->in_cap = cap;
		}
		k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (k <= 0) {
			/* EOF: answer what is complete, then go. */
			(void)client_process(s, c);
			c->closing = true;
			return;
		}
		if (c->discarding) {
			char *nl = memchr(c->in + c->in_len, '\n', (size_t)k);

			if (!nl)
				continue;
			k -= nl + 1 - (c->in + c->in_len);
			memmove(c->in, nl + 1, (size_t)k);
			c->in_len = 0;
			c->discarding = false;
		}
		c->in_len += (size_t)k;
		if (client_process(s, c) < 0) {
			c->dead = true;
			return;
		}
		if (c->closing)
			return;
	}
	if (client_process(s, c) < 0)
		c->dead = true;
}

static void accept_clients(struct dmr_server *s)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
		struct ucred cr;
		socklen_t len = sizeof(cr);
		struct client *c;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warning("accept: %s", strerror(errno));
			return;
		}
		if (s->n_clients == DMR_SERVER_MAX_CLIENTS ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || !(c = calloc(1, sizeof(*c)))) {
			log_warning("refusing a client: %s",
				    s->n_clients == DMR_SERVER_MAX_CLIENTS ? "too many clients" : strerror(errno));
			close(fd);
			continue;
		}
		c->fd = fd;
		c->uid = cr.uid;
		c->gid = cr.gid;
		c->pid = cr.pid;
		c->privileged = peer_privileged(s->a, fd, &cr);
		ev.data.ptr = c;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		s->clients[s->n_clients++] = c;
	}
}

int dmr_server_run(struct dmr_server *s, int stop_fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	static char stop_tag;

	if (stop_fd >= 0) {
		ev.data.ptr = &stop_tag;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
			return -errno;
	}
	while (!s->a->stopping) {
		struct epoll_event evs[32];
		int n = epoll_wait(s->epfd, evs, 32, 1000);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (evs[i].data.ptr == &stop_tag) {
				s->a->stopping = 1;
				continue;
			}
			if (!c) {
				accept_clients(s);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				client_read(s, c);
			/* A client whose unread replies passed the cap
			 * (client_queue: -ENOBUFS) is dropped, not waited on. */
			if (c->dead || client_flush(s, c) < 0 || (c->closing && c->out_len == 0))
				client_free(s, c);
		}
	}
	if (stop_fd >= 0)
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, stop_fd, NULL);
	return 0;
}
