/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Threading model.
 *
 * - The loop thread (dmr_server_run) owns every struct client and does all
 *   socket I/O.  It answers on the spot what needs memory only: refusals
 *   (bad JSON, unknown method, a write method called by an unprivileged
 *   peer) and the read methods that are not marked slow (ListVirtualSystems,
 *   GetVirtualSystem, GetJob, ListJobs: they take the registry or job lock
 *   for a copy, nothing else), and it runs GetJob's long polls
 *   (DMR_RC_AGAIN, asked again every DMR_SERVER_POLL_MS).
 * - One writer thread runs the mutating methods, one at a time, in the order
 *   they arrived from all clients: the handlers keep the serialisation they
 *   had when the loop ran them (CreatePool tests have_pool unlocked, AddVM
 *   checks a name before it takes the VM's busy lock...), and take the VM
 *   busy lock, the registry lock and the job lock themselves, as before.
 *   Their udev waits, remove retries, blkid probes and fsyncs stall only the
 *   write methods queued behind them, never a read or another client's I/O.
 * - DMR_SERVER_READERS reader threads run the slow read methods
 *   (GetPoolStatus, ListReplicationPoints: kernel status), which already ran
 *   beside jobs under the registry's lock rules and so may run beside the
 *   writer too.
 * A worker never touches a struct client: it gets a copy of the request line
 * and of the caller's identity, answers into a scratch client of its own
 * (handle_line unchanged), and hands the reply lines back through s->done and
 * an eventfd.  While a client has a request with a worker or in a long poll,
 * the loop reads nothing more from it (replies stay in request order, and one
 * connection holds at most one worker), and it is not idle.  A client that
 * hangs up meanwhile keeps its slot (and its uid's count) until the worker
 * is done.  s->lock guards the lanes' queues, s->done and s->quit only.
 */
#include "agent/rpc/server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/core/authz.h"
#include "common/rc.h"
#include "common/log.h"
#include "common/thread.h"
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
	uint32_t events; /* what epoll watches for it */
	bool dead;     /* drop now: gone, or its unread output hit the cap */
	bool discarding; /* inside an oversized request: drop up to its '\n' */
	bool eof;      /* the peer sent its last byte */
	bool backlog;  /* complete lines left for its next turn */
	bool on_worker; /* a worker's scratch copy: never offload again */
	uint64_t active_usec; /* last complete request, reply, drained output */
	struct work *work; /* a worker has its request: read nothing more */
	char *park;    /* a long poll's request line (DMR_RC_AGAIN) */
	size_t park_len;
	uint64_t park_until;
	bool parked;   /* handle_line parked the request it ran */
	/* A descriptor the client passed (SCM_RIGHTS) for the request line
	 * that holds input byte pend_off; -1: none.  At most one. */
	int pend_fd;
	size_t pend_off;
};

/* A request on its way to a worker and back. */
struct work {
	struct work *next;
	struct client *c; /* the loop's: a worker never reads it */
	struct client me; /* the caller's identity; the reply lines */
	char *line;
	size_t len;
	int fd;           /* the request's descriptor, or -1 */
	int r;            /* handle_line's */
};

struct lane {
	struct dmr_server *s;
	struct work *head, **tail;
	pthread_t threads[DMR_SERVER_READERS];
	size_t n_threads;
};

struct dmr_server {
	struct dmr_agent *a;
	const struct dmr_method *methods;
	int lfd;
	int epfd;
	char *path;
	struct client *clients[DMR_SERVER_MAX_CONNECTIONS];
	size_t n_clients;
	uint64_t idle_usec;
	unsigned per_uid;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct lane writer, reader;
	struct work *done;
	int done_fd;  /* eventfd: something is on done */
	size_t n_parked; /* clients in a long poll */
	bool quit;
	uint64_t refused_logged_usec;
	unsigned refused;
};

static void work_free(struct work *w)
{
	if (!w)
		return;
	free(w->line);
	free(w->me.out);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

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
	assert(!c->work);
	if (c->park)
		s->n_parked--;
	if (c->pend_fd >= 0)
		close(c->pend_fd);
	free(c->in);
	free(c->out);
	free(c->park);
	free(c);
}

/* Drop a client; one whose request a worker still runs keeps its slot, its
 * descriptor closed, until the worker is done (collect_done frees it). */
static void client_drop(struct dmr_server *s, struct client *c)
{
	if (!c->work) {
		client_free(s, c);
		return;
	}
	if (c->fd >= 0) {
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->dead = true;
}

static bool client_busy(const struct client *c)
{
	return c->work || c->park;
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

/*
 * The socket's directory, made 0750 (group --group) when missing.  One that
 * exists (systemd's RuntimeDirectory= makes it root:root 0750 before we
 * start) must be root's and writable by no one else, or whoever may write
 * there could put their own socket in our place; if others may not search
 * it, it is given to --group so that members reach the socket.  Refusals
 * are logged here, where the reason is known.
 */
static int socket_dir_prepare(const struct dmr_agent *a, const char *dir)
{
	_cleanup_close_ int fd = -1;
	bool created = false;
	struct stat st;
	int r;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		r = dmr_mkdir_p(dir, 0750);
		if (r < 0)
			return r;
		created = true;
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != 0) {
		log_error("socket directory %s belongs to uid %u, not root: refusing it", dir,
			  (unsigned)st.st_uid);
		return -EPERM;
	}
	if ((st.st_mode & S_IWOTH) || ((st.st_mode & S_IWGRP) && st.st_gid != 0)) {
		log_error("socket directory %s is writable by others (mode %04o, group %u): "
			  "refusing it", dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);
		return -EPERM;
	}
	if (created && fchmod(fd, 0750) < 0)
		return -errno;
	if (a->have_group && (created || !(st.st_mode & S_IXOTH)) &&
	    (fchown(fd, 0, a->group) < 0 ||
	     fchmod(fd, created ? 0750 : ((st.st_mode & 0777 & ~S_IWGRP) | S_IRGRP | S_IXGRP)) < 0))
		return -errno;
	return 0;
}

/* Close and free what dmr_server_open made; the socket file stays (a
 * failed open must not unlink a socket it did not bind). */
static void server_release(struct dmr_server *s)
{
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->done_fd >= 0)
		close(s->done_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
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
	r = *dir ? socket_dir_prepare(a, dir) : 0;
	if (r < 0)
		return r;
	r = stale_socket_check(a->socket_path);
	if (r < 0)
		return r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->a = a;
	s->methods = dmr_methods;
	s->epfd = -1;
	s->idle_usec = a->idle_timeout_usec ? a->idle_timeout_usec :
					      (uint64_t)DMR_SERVER_IDLE_SEC * 1000000;
	s->per_uid = a->max_clients_per_uid ? a->max_clients_per_uid : DMR_SERVER_PER_UID;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->writer.s = s->reader.s = s;
	s->writer.tail = &s->writer.head;
	s->reader.tail = &s->reader.head;
	s->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
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
	ev.data.ptr = &s->done; /* a worker is done */
	if (s->done_fd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->done_fd, &ev) < 0) {
		r = -errno;
		(void)unlink(a->socket_path);
		goto fail;
	}
	*ret_server = s;
	return 0;
fail:
	server_release(s);
	return r;
}

void dmr_server_set_methods(struct dmr_server *s, const struct dmr_method *methods)
{
	assert(s);
	s->methods = methods ? methods : dmr_methods;
}

void dmr_server_free(struct dmr_server *s)
{
	if (!s)
		return;
	while (s->n_clients)
		client_free(s, s->clients[0]);
	if (s->path)
		(void)unlink(s->path);
	server_release(s);
}

/* Watch for input only while the client may send a request (not busy, not
 * at its end: a level-triggered EPOLLRDHUP would spin), for output while
 * some is queued. */
static int client_arm(struct dmr_server *s, struct client *c, bool want_out)
{
	bool want_in = !client_busy(c) && !c->eof && !c->closing;
	struct epoll_event ev = { .events = (want_in ? EPOLLIN | EPOLLRDHUP : 0) |
					    (want_out ? EPOLLOUT : 0),
				  .data.ptr = c };

	if (c->events == ev.events)
		return 0;
	c->events = ev.events;
	return epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno : 0;
}

/* Write what is queued; 0, or -errno when the client is gone. */
static int client_flush(struct dmr_server *s, struct client *c)
{
	if (c->fd < 0)
		return -EPIPE;
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
	if (c->out_len)
		c->active_usec = dmr_now_usec();
	c->out_off = c->out_len = 0;
	return client_arm(s, c, false);
}

/* Queue n bytes, and a newline if nl. */
static int client_append(struct client *c, const char *text, size_t n, bool nl)
{
	if (c->out_len - c->out_off + n + nl > DMR_SERVER_MAX_PENDING)
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
	if (nl)
		c->out[c->out_len + n] = '\n';
	c->out_len += n + nl;
	return 0;
}

static int client_queue(struct client *c, const char *text)
{
	return client_append(c, text, strlen(text), true);
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

/* Hand the request to a worker of lane l; the reply comes back through
 * collect_done. */
static int work_queue(struct dmr_server *s, struct lane *l, struct client *c, const char *line,
		      size_t len, int *fd)
{
	struct work *w = calloc(1, sizeof(*w));

	if (!w || !(w->line = malloc(len))) {
		free(w);
		return -ENOMEM;
	}
	memcpy(w->line, line, len);
	w->len = len;
	w->c = c;
	w->fd = *fd;
	*fd = -1;
	w->me.fd = -1;
	w->me.pend_fd = -1;
	w->me.uid = c->uid;
	w->me.gid = c->gid;
	w->me.pid = c->pid;
	w->me.privileged = c->privileged;
	w->me.on_worker = true;
	c->work = w;
	pthread_mutex_lock(&s->lock);
	*l->tail = w;
	l->tail = &w->next;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* A long poll: keep the line (a re-run passes c->park itself) and ask its
 * handler again from service_parked. */
static int park(struct dmr_server *s, struct client *c, const char *line, size_t len,
		uint64_t wait_usec)
{
	c->parked = true;
	if (c->park)
		return 0;
	c->park = malloc(len);
	if (!c->park)
		return -ENOMEM;
	s->n_parked++;
	memcpy(c->park, line, len);
	c->park_len = len;
	c->park_until = dmr_now_usec() + wait_usec;
	return 0;
}

/* One request line; fd_in (-1: none) is the descriptor that came with it,
 * taken: handed to the handler of a method that takes one, closed on every
 * other path. */
static int handle_line(struct dmr_server *s, struct client *c, const char *line, size_t len,
		       int fd_in)
{
	_cleanup_close_ int fd = fd_in;
	struct json_tokener *tok;
	struct json_object *req = NULL, *id = NULL, *m = NULL, *params = NULL, *own_params = NULL;
	const struct dmr_method *method = NULL;
	struct dmr_call call = { 0 };
	char why[sizeof(call.error) - 16];
	const char *name;
	uint64_t t0 = dmr_now_usec();
	int rc, r;

	/* Strings off the socket end up in logs, state files and replies:
	 * UTF-8 or nothing (json-c's check lets overlong forms through). */
	if (!dmr_utf8_valid(line, len))
		return reply(c, NULL, DMR_RC_INVALID_PARAMETER, "malformed request: not UTF-8", NULL);
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
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
	if (fd >= 0 && !method->takes_fd) {
		r = reply(c, id, DMR_RC_INVALID_PARAMETER, "this method takes no descriptor", NULL);
		goto out;
	}
	if (json_object_object_get_ex(req, "params", &params) && params &&
	    !json_object_is_type(params, json_type_object)) {
		r = reply(c, id, DMR_RC_INCORRECT_TYPE, "'params' must be an object", NULL);
		goto out;
	}
	/* Off the loop: writes that may be allowed (an unprivileged caller's
	 * is refused right here, below), and slow reads. */
	if (!c->on_worker && ((method->mutating && c->privileged) || method->slow)) {
		r = work_queue(s, method->mutating ? &s->writer : &s->reader, c, line, len, &fd);
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
	call.fd = -1;
	call.may_wait = !c->on_worker && !(c->park && dmr_now_usec() >= c->park_until);
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
	else if (method->takes_fd && fd < 0)
		rc = dmr_call_fail(&call, DMR_RC_INVALID_PARAMETER,
				   "%s needs a descriptor passed with its request (SCM_RIGHTS)",
				   method->name);
	else {
		call.fd = DMR_TAKE_FD(fd);
		rc = method->fn(&call);
		/* Not kept by the handler: ours to close. */
		if (call.fd >= 0)
			close(call.fd);
	}
	if (rc == DMR_RC_AGAIN) {
		assert(call.may_wait);
		r = park(s, c, line, len, call.wait_usec);
		goto out_call;
	}
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

/* Take the complete lines out of the input buffer, LINES_PER_TURN at most:
 * a client that pipelines thousands of requests (and perhaps never reads
 * the replies) gets its turn like the others, not the loop until its output
 * hits the cap (under ASan that was 28 s during which no other client got an
 * answer: t-66).  The rest is c->backlog, taken on the loop's next pass. */
#define LINES_PER_TURN 16
static int client_process(struct dmr_server *s, struct client *c)
{
	size_t start = 0;
	int r = 0, fd = -1;
	unsigned lines = 0;

	c->backlog = false;
	while (!c->closing && !client_busy(c) && start < c->in_len) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		size_t len;

		if (!nl)
			break;
		if (lines++ == LINES_PER_TURN) {
			c->backlog = true;
			break;
		}
		c->active_usec = dmr_now_usec();
		len = (size_t)(nl - (c->in + start));
		/* The descriptor goes with the line that holds the first
		 * byte it came with (lines before it end before that byte). */
		if (c->pend_fd >= 0 && c->pend_off <= start + len) {
			fd = c->pend_fd;
			c->pend_fd = -1;
		}
		if (len > DMR_SERVER_MAX_REQUEST) {
			r = reply(c, NULL, DMR_RC_INVALID_PARAMETER, "request larger than 1 MiB", NULL);
			start += len + 1;
			if (fd >= 0)
				close(fd);
			fd = -1;
			continue;
		}
		if (len > 0)
			r = handle_line(s, c, c->in + start, len, fd);
		else if (fd >= 0)
			close(fd);
		fd = -1;
		start += len + 1;
		if (r < 0)
			break;
	}
	if (start) {
		memmove(c->in, c->in + start, c->in_len - start);
		c->in_len -= start;
		if (c->pend_fd >= 0)
			c->pend_off -= start;
	}
	if (r == 0 && !c->closing && !client_busy(c) && c->in_len > DMR_SERVER_MAX_REQUEST) {
		/* Answer now, and drop the rest of the line as it comes:
		 * the client is still writing it and would never read a
		 * reply sent just before a close. */
		r = reply(c, NULL, DMR_RC_INVALID_PARAMETER, "request larger than 1 MiB", NULL);
		c->discarding = true;
		c->in_len = 0;
		if (c->pend_fd >= 0)
			close(c->pend_fd);
		c->pend_fd = -1;
	}
	/* At its end and nothing more to answer: flush, then close. */
	if (c->eof && !client_busy(c) && !c->backlog)
		c->closing = true;
	return r;
}

/*
 * Read what the client sent, and the descriptor that came with it (one at
 * most: SCM_RIGHTS, MSG_CMSG_CLOEXEC), which is kept in c->pend_fd for the
 * request line that holds the first byte it came with.  More than one in
 * a message, or a second one before the first one's line has ended: every
 * one of them closed, 32773 answered and the client closed (-2).  Else
 * recvmsg's count or -1 with errno.
 */
static ssize_t recv_fds(struct dmr_server *s, struct client *c)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { c->in + c->in_len, c->in_cap - c->in_len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	int fds[8], n = 0;
	bool bad = false;
	ssize_t k;

	k = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (k < 0)
		return k;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
		size_t m;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) {
			bad = true;
			continue;
		}
		m = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < m; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (n < (int)DMR_ARRAY_SIZE(fds))
				fds[n++] = fd;
			else
				close(fd);
		}
	}
	/* MSG_CTRUNC: the kernel had more than our room for one, and
	 * closed what did not fit. */
	if (bad || n > 1 || (mh.msg_flags & MSG_CTRUNC) || (n == 1 && c->pend_fd >= 0) ||
	    (n && k == 0)) {
		for (int i = 0; i < n; i++)
			close(fds[i]);
		if (c->pend_fd >= 0)
			close(c->pend_fd);
		c->pend_fd = -1;
		(void)reply(c, NULL, DMR_RC_INVALID_PARAMETER,
			    n > 1 || (mh.msg_flags & MSG_CTRUNC) || bad ?
				    "one descriptor at most with a request" :
				    "a second descriptor before the request line ended", NULL);
		c->closing = true;
		c->in_len = 0;
		return -2;
	}
	if (n == 1 && c->discarding) {
		/* It came with a request already refused as too large. */
		close(fds[0]);
	} else if (n == 1) {
		c->pend_fd = fds[0];
		c->pend_off = c->in_len;
	}
	return k;
}

static void client_read(struct dmr_server *s, struct client *c)
{
	if (client_busy(c))
		return;
	if (c->backlog || c->eof) {
		/* Its turn, from what it sent already: nothing more is read
		 * until that is answered. */
		if (c->backlog && client_process(s, c) < 0)
			c->dead = true;
		return;
	}
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
		k = recv_fds(s, c);
		if (k == -2)
			return; /* refused: closing */
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (k <= 0) {
			/* EOF: answer what is complete, then go. */
			c->eof = true;
			if (client_process(s, c) < 0)
				c->dead = true;
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
		if (c->closing || client_busy(c) || c->backlog)
			return;
	}
	if (client_process(s, c) < 0)
		c->dead = true;
}

/* Why a new connection of uid may not have a slot, or NULL: every uid but
 * root has its cap and all of them together theirs; root only the hard limit,
 * which the others can never reach. */
static const char *over_limit(const struct dmr_server *s, uid_t uid, char *buf, size_t size)
{
	size_t same = 0, others = 0;

	if (s->n_clients >= DMR_SERVER_MAX_CONNECTIONS)
		return "too many connections";
	if (uid == 0)
		return NULL;
	for (size_t i = 0; i < s->n_clients; i++) {
		same += s->clients[i]->uid == uid;
		others += s->clients[i]->uid != 0;
	}
	if (others >= DMR_SERVER_MAX_CLIENTS) {
		snprintf(buf, size, "too many connections (%u at most for all users but root)",
			 DMR_SERVER_MAX_CLIENTS);
		return buf;
	}
	if (same >= s->per_uid) {
		snprintf(buf, size, "too many connections from uid %u (%u at most)", (unsigned)uid,
			 s->per_uid);
		return buf;
	}
	return NULL;
}

/* Say why in one line (best effort: the socket buffer of a new connection
 * has room for it), and close.  Logged at most every 10 s. */
static void refuse(struct dmr_server *s, int fd, uid_t uid, const char *why)
{
	struct json_object *o = json_object_new_object();
	uint64_t now = dmr_now_usec();

	if (o) {
		const char *text;

		json_object_object_add(o, "id", NULL);
		json_object_object_add(o, "return", json_object_new_int(DMR_RC_UNAVAILABLE));
		json_object_object_add(o, "error", json_object_new_string(why));
		text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		if (text) {
			struct iovec iov[2] = { { (void *)text, strlen(text) }, { (void *)"\n", 1 } };
			struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

			(void)sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		json_object_put(o);
	}
	close(fd);
	s->refused++;
	if (now - s->refused_logged_usec >= 10000000 || !s->refused_logged_usec) {
		log_warning("refusing a client (uid %u): %s (%u refused since the last of these lines)",
			    (unsigned)uid, why, s->refused);
		s->refused_logged_usec = now;
		s->refused = 0;
	}
}

static void accept_clients(struct dmr_server *s)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
		struct ucred cr;
		socklen_t len = sizeof(cr);
		struct client *c;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		char why[128];
		const char *over;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warning_errno(dmr_negerrno(), "accept: %m");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
			log_warning_errno(dmr_negerrno(), "refusing a client: %m");
			close(fd);
			continue;
		}
		over = over_limit(s, cr.uid, why, sizeof(why));
		if (over) {
			refuse(s, fd, cr.uid, over);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			refuse(s, fd, cr.uid, "out of memory");
			continue;
		}
		c->fd = fd;
		c->pend_fd = -1;
		c->events = ev.events;
		c->active_usec = dmr_now_usec();
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

static void *worker_main(void *p)
{
	struct lane *l = p;
	struct dmr_server *s = l->s;
	uint64_t one = 1;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct work *w;

		while (!s->quit && !l->head)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->quit)
			break;
		w = l->head;
		l->head = w->next;
		if (!l->head)
			l->tail = &l->head;
		pthread_mutex_unlock(&s->lock);
		w->r = handle_line(s, &w->me, w->line, w->len, DMR_TAKE_FD(w->fd));
		pthread_mutex_lock(&s->lock);
		w->next = s->done;
		s->done = w;
		(void)!write(s->done_fd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* A worker's stack: the handlers' frames are a few KiB (16 KiB for a dm
 * ioctl buffer at most), and under mlockall every byte of it stays locked,
 * so not the 8 MiB default. */
#define WORKER_STACK (1u << 20)

static int lane_start(struct lane *l, size_t n)
{
	pthread_attr_t attr;
	int r = 0;

	assert(n <= DMR_SERVER_READERS);
	if (pthread_attr_init(&attr))
		return -ENOMEM;
	(void)pthread_attr_setstacksize(&attr, WORKER_STACK);
	for (; r == 0 && l->n_threads < n; l->n_threads++) {
		r = -pthread_create(&l->threads[l->n_threads], &attr, worker_main, l);
		if (r)
			break;
	}
	pthread_attr_destroy(&attr);
	return r;
}

/* Stop the workers once they finish what they run; drop what they never
 * started (those clients are closed unanswered, as on any stop). */
static void lanes_stop(struct dmr_server *s)
{
	struct lane *lanes[] = { &s->writer, &s->reader };

	dmr_threads_stop(&s->lock, &s->cond, &s->quit);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(lanes); i++) {
		for (size_t t = 0; t < lanes[i]->n_threads; t++)
			pthread_join(lanes[i]->threads[t], NULL);
		lanes[i]->n_threads = 0;
		while (lanes[i]->head) {
			struct work *w = lanes[i]->head;

			lanes[i]->head = w->next;
			w->c->work = NULL;
			work_free(w);
		}
		lanes[i]->tail = &lanes[i]->head;
	}
}

/* After a client's request ends (worker or long poll): go on with the
 * lines it sent meanwhile, write, or drop it. */
static void client_resume(struct dmr_server *s, struct client *c, int r)
{
	c->active_usec = dmr_now_usec();
	if (r < 0 || client_process(s, c) < 0)
		c->dead = true;
	if (c->dead || client_flush(s, c) < 0 || (c->closing && c->out_len == 0))
		client_drop(s, c);
}

/* Take the workers' answers to their clients; with resume false (the loop
 * stops) only queue them and write what the sockets take. */
static void collect_done(struct dmr_server *s, bool resume)
{
	struct work *w;
	uint64_t v;

	(void)!read(s->done_fd, &v, sizeof(v));
	pthread_mutex_lock(&s->lock);
	w = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->lock);
	while (w) {
		struct work *next = w->next;
		struct client *c = w->c;
		int r = w->r;

		c->work = NULL;
		if (c->dead) {
			client_free(s, c);
		} else {
			if (r == 0)
				r = client_append(c, w->me.out + w->me.out_off,
						  w->me.out_len - w->me.out_off, false);
			if (resume)
				client_resume(s, c, r);
			else if (r == 0)
				(void)client_flush(s, c);
		}
		work_free(w);
		w = next;
	}
}

/* Ask every long poll's handler again. */
static void service_parked(struct dmr_server *s)
{
	for (size_t i = s->n_clients; i-- > 0;) {
		struct client *c = s->clients[i];
		int r;

		if (!c->park)
			continue;
		c->parked = false;
		r = handle_line(s, c, c->park, c->park_len, -1);
		if (r == 0 && c->parked)
			continue;
		free(c->park);
		c->park = NULL;
		s->n_parked--;
		client_resume(s, c, r);
	}
}

/* Close the clients idle for s->idle_usec; the time until the next one
 * would be, in ms. */
static int sweep_idle(struct dmr_server *s)
{
	static const char idle_line[] = "{\"id\":null,\"return\":32772,\"error\":\"idle for too long: closed\"}\n";
	uint64_t now = dmr_now_usec(), next = 1000000;

	for (size_t i = s->n_clients; i-- > 0;) {
		struct client *c = s->clients[i];
		uint64_t idle = now - c->active_usec;

		if (client_busy(c) || c->dead)
			continue;
		if (idle < s->idle_usec) {
			if (s->idle_usec - idle < next)
				next = s->idle_usec - idle;
			continue;
		}
		log_debug("closing a client of uid %u: idle for %" PRIu64 " ms", (unsigned)c->uid,
			  idle / 1000);
		/* Say why to one that still reads (best effort). */
		if (c->out_len == 0)
			(void)send(c->fd, idle_line, sizeof(idle_line) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		client_drop(s, c);
	}
	return (int)(next / 1000) + 1;
}

int dmr_server_run(struct dmr_server *s, int stop_fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	static char stop_tag;
	uint64_t polled = 0;
	bool backlog = false;
	int r;

	assert(s);
	if (stop_fd >= 0) {
		ev.data.ptr = &stop_tag;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, stop_fd, &ev) < 0)
			return -errno;
	}
	s->quit = false;
	r = lane_start(&s->writer, 1);
	if (r == 0)
		r = lane_start(&s->reader, DMR_SERVER_READERS);
	while (r == 0 && !s->a->stopping) {
		struct epoll_event evs[32];
		bool done = false;
		int timeout = sweep_idle(s);
		int n;

		if (s->n_parked && timeout > DMR_SERVER_POLL_MS)
			timeout = DMR_SERVER_POLL_MS;
		if (backlog)
			timeout = 0; /* turns are waiting: look, do not wait */
		n = epoll_wait(s->epfd, evs, 32, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		for (int i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;

			if (evs[i].data.ptr == &stop_tag) {
				s->a->stopping = 1;
				continue;
			}
			if (evs[i].data.ptr == &s->done) {
				done = true; /* below: it may free clients of this batch */
				continue;
			}
			if (!c) {
				accept_clients(s);
				continue;
			}
			if (client_busy(c) && (evs[i].events & (EPOLLHUP | EPOLLERR)))
				c->dead = true; /* hung up while its request runs */
			else if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				client_read(s, c);
			/* A client whose unread replies passed the cap
			 * (client_queue: -ENOBUFS) is dropped, not waited on. */
			if (c->dead || client_flush(s, c) < 0 || (c->closing && c->out_len == 0))
				client_drop(s, c);
		}
		if (done)
			collect_done(s, true);
		/* The next turn of every client with lines left (backwards:
		 * a drop moves the last client into its slot). */
		backlog = false;
		for (size_t i = s->n_clients; i-- > 0;) {
			struct client *c = s->clients[i];

			if (!c->backlog || c->dead || client_busy(c))
				continue;
			if (client_process(s, c) < 0)
				c->dead = true;
			if (c->dead || client_flush(s, c) < 0 || (c->closing && c->out_len == 0))
				client_drop(s, c);
			else if (c->backlog)
				backlog = true;
		}
		if (s->n_parked && dmr_now_usec() - polled >= DMR_SERVER_POLL_MS * 1000) {
			polled = dmr_now_usec();
			service_parked(s);
		}
	}
	lanes_stop(s);
	collect_done(s, false);
	if (stop_fd >= 0)
		(void)epoll_ctl(s->epfd, EPOLL_CTL_DEL, stop_fd, NULL);
	return r;
}
