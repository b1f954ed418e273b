/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/replicate.c - continuous replication: settings, the
 * scheduler, and the ReplicationCycle job (agent/engine/replicate.h).
 *
 * A cycle, with the VM's busy lock:
 *   1. the settings read, the cycle recorded as running (saved: a restart
 *      counts it failed), the base resolved: the acknowledged point when
 *      this host still holds it, none for a first cycle, and a resync
 *      required (the cycle fails) when the acknowledged point is gone;
 *   2. a point taken as `point create` takes it (agent/engine/point.c,
 *      retention after it, which keeps the acknowledged point);
 *   3. COMMAND started by /bin/sh -c in its own process group, stdin a
 *      pipe, stdout and stderr captured (their last 64 KiB) by a thread
 *      that also kills the group past the cycle's timeout or when the
 *      agent stops;
 *   4. the stream written into the pipe (agent/engine/send.c), at most
 *      --bandwidth bytes a second, and the pipe closed;
 *   5. COMMAND reaped, its answer read: acknowledged only with exit status
 *      0 and the receiver's JSON with return 0 and the uuid sent;
 *   6. the outcome saved in the catalog, then the job ends.
 * Nothing here touches a device but through the point and send code, so
 * a crash anywhere leaves what those leave (which recovery handles) and a
 * cycle marked running, which the next start counts as a failure.
 */
#include "agent/engine/replicate.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/backend/backend.h"
#include "agent/engine/job.h"
#include "agent/guest/shim.h"
#include "agent/engine/point.h"
#include "agent/engine/hashes.h"
#include "agent/engine/replica.h"
#include "agent/store/registry.h"
#include "agent/store/repl.h"
#include "common/json.h"
#include "common/log.h"
#include "common/rc.h"
#include "common/testhook.h"
#include "common/thread.h"
#include "common/util.h"
#include "dm/name.h"

/* ---- the pure parts -------------------------------------------------------- */

const char *dmr_replicate_last_line(const char *buf, size_t len, size_t *ret_len)
{
	size_t end = len;

	for (;;) {
		size_t b;

		while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r' ||
				   buf[end - 1] == ' ' || buf[end - 1] == '\t'))
			end--;
		if (end == 0)
			break;
		b = end;
		while (b > 0 && buf[b - 1] != '\n')
			b--;
		*ret_len = end - b;
		return buf + b;
	}
	*ret_len = 0;
	return NULL;
}

static int ack_object(struct json_object *o, const char *uuid, int *ret_rc, char **ret_why);

int dmr_replicate_ack_check(const char *buf, size_t len, const char *uuid, int *ret_rc,
			    char **ret_why)
{
	struct json_object *o = NULL;
	const char *line;
	size_t n;
	int r;

	assert(uuid && ret_rc);
	*ret_rc = 0;
	line = dmr_replicate_last_line(buf, len, &n);
	if (!line) {
		return dmr_why_set(ret_why, -EBADMSG,
				   "COMMAND printed nothing on stdout (the receiver's JSON answer is "
				   "expected there)");
	}
	if (dmr_json_parse_object(line, n, &o) < 0) {
		return dmr_why_set(ret_why, -EBADMSG,
				   "the last line of COMMAND's stdout is not the receiver's JSON answer");
	}
	r = ack_object(o, uuid, ret_rc, ret_why);
	json_object_put(o);
	return r;
}

static int ack_object(struct json_object *o, const char *uuid, int *ret_rc, char **ret_why)
{
	struct json_object *v = NULL;
	int64_t rc;

	if (!json_object_object_get_ex(o, "return", &v) || !json_object_is_type(v, json_type_int)) {
		return dmr_why_set(ret_why, -EBADMSG,
				   "the receiver's answer has no \"return\" code");
	}
	rc = json_object_get_int64(v);
	if (rc != 0) {
		const char *e = "";
		char esc[4 * DMR_REPL_ERROR_MAX + 1];

		if (json_object_object_get_ex(o, "error", &v) && json_object_is_type(v, json_type_string))
			e = json_object_get_string(v);
		*ret_rc = rc > 0 && rc < 65536 ? (int)rc : DMR_RC_FAILED;
		dmr_cescape(esc, DMR_REPL_ERROR_MAX, e);
		return dmr_why_set(ret_why, -EBADMSG,
				   "the receiver answered %" PRId64 ": %s",
				   rc, *e ? esc : dmr_rc_name((int)rc));
	}
	if (!json_object_object_get_ex(o, "uuid", &v) || !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), uuid) != 0) {
		char esc[4 * DMR_UUID_STR_SIZE + 1] = "";

		if (v && json_object_is_type(v, json_type_string))
			dmr_cescape(esc, sizeof(esc), json_object_get_string(v));
		return dmr_why_set(ret_why, -EBADMSG,
				   "the receiver acknowledged %s%s, not the point sent (%s)",
				   *esc ? "uuid " : "no uuid", esc, uuid);
	}
	return 0;
}

uint64_t dmr_replicate_timeout_sec(uint32_t interval_sec)
{
	uint64_t t = (uint64_t)interval_sec * DMR_REPLICATE_TIMEOUT_INTERVALS;

	return t < DMR_REPLICATE_TIMEOUT_MIN_SEC ? DMR_REPLICATE_TIMEOUT_MIN_SEC : t;
}

/* ---- settings ---------------------------------------------------------------- */

/* The VM as a replicating primary can be (reg->lock held). */
static int primary_check(struct dmr_registry *reg, struct dmr_vm *vm, char **ret_why)
{
	const struct dmr_backend *be = dmr_backend_of(vm);

	if (vm->role == DMR_VM_REPLICA) {
		dmr_why_set(ret_why, 0, "VM %s is a replica: it receives its points from its primary and "
			    "replicates nothing until a failover there is committed", vm->name);
		return -DMR_E_STATE;
	}
	if (!be->point_extents) {
		return dmr_why_set(ret_why, -EOPNOTSUPP,
				   "%s", be->stream_unsupported ? be->stream_unsupported :
				   "this VM's backend cannot send points");
	}
	(void)reg;
	return 0;
}

static int set_error(struct dmr_repl *rp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_error(struct dmr_repl *rp, const char *fmt, ...)
{
	char raw[DMR_REPL_ERROR_MAX + 1], line[DMR_REPL_ERROR_MAX + 1];
	va_list ap;
	char *s;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* One line, printable, within the state file's bound. */
	dmr_cescape(line, sizeof(line), raw);
	s = strdup(line);
	if (!s)
		return -ENOMEM;
	free(rp->last_error);
	rp->last_error = s;
	return 0;
}

int dmr_replicate_configure(struct dmr_agent *a, const char *name,
			    const struct dmr_replicate_settings *s, char **ret_why)
{
	struct dmr_registry *reg = a->reg;
	struct dmr_repl old, *rp;
	struct dmr_vm *vm;
	char *to = NULL;
	int r;

	assert(a && name && s);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm) {
		r = dmr_why_set(ret_why, -ENOENT, "no VM named %s", name);
		goto out;
	}
	if ((r = primary_check(reg, vm, ret_why)) < 0)
		goto out;
	rp = &vm->repl;
	if (!rp->to && !s->to) {
		r = dmr_why_set(ret_why, -DMR_E_STATE, "VM %s does not replicate: --to COMMAND first", name);
		goto out;
	}
	if (s->to && dmr_repl_to_valid(s->to) < 0) {
		r = dmr_why_set(ret_why, -EINVAL, "--to: one command line of 1 to %u bytes, no control characters",
				DMR_REPL_TO_MAX);
		goto out;
	}
	if (s->interval_sec && dmr_repl_interval_valid(s->interval_sec) < 0) {
		r = dmr_why_set(ret_why, -EINVAL, "--interval: %u to %u seconds", DMR_REPL_INTERVAL_MIN,
				DMR_REPL_INTERVAL_MAX);
		goto out;
	}
	if (s->bandwidth > (int64_t)(1ull << 40)) {
		r = dmr_why_set(ret_why, -EINVAL, "--bandwidth: at most 1T bytes per second");
		goto out;
	}
	if ((s->consistency == 1 || (s->consistency < 0 && rp->application)) && !vm->qga &&
	    !dmr_shim_vm_can_freeze(vm)) {
		r = dmr_why_set(ret_why, -EINVAL, "VM %s has no guest agent (vm add --qga SOCKET or "
				"--libvirt DOMAIN) for application consistency", name);
		goto out;
	}
	if (s->to && !(to = strdup(s->to))) {
		r = -ENOMEM;
		goto out;
	}
	old = *rp;
	if (old.to)
		old.to = strdup(old.to);
	if (old.last_error)
		old.last_error = strdup(old.last_error);
	if ((rp->to && !old.to) || (rp->last_error && !old.last_error)) {
		free(old.to);
		free(old.last_error);
		free(to);
		r = -ENOMEM;
		goto out;
	}
	if (to) {
		if (!rp->to || strcmp(rp->to, to) != 0) {
			/* Another COMMAND may reach another replica: what
			 * the old one acknowledged says nothing of it.  With
			 * no COMMAND before, an acknowledged point can only be
			 * a commit's on a replica (failover.c): the point the
			 * old primary shares, kept so that the first cycle
			 * back is incremental (docs/failback.md). */
			bool paused = rp->paused, keep = !rp->to && rp->acked_uuid[0];
			char acked[DMR_UUID_STR_SIZE];
			uint64_t acked_usec = rp->acked_usec;

			snprintf(acked, sizeof(acked), "%s", rp->acked_uuid);
			dmr_repl_clear(rp);
			if (keep) {
				snprintf(rp->acked_uuid, sizeof(rp->acked_uuid), "%s", acked);
				rp->acked_usec = acked_usec;
			}
			rp->paused = paused;
			rp->set_usec = dmr_realtime_usec();
			rp->interval_sec = DMR_REPL_INTERVAL_DEFAULT;
			rp->to = to;
		} else {
			free(to);
		}
		to = NULL;
	}
	if (s->interval_sec)
		rp->interval_sec = s->interval_sec;
	if (s->consistency >= 0)
		rp->application = s->consistency == 1;
	if (s->zstd >= 0)
		rp->zstd = s->zstd == 1;
	if (s->bandwidth >= 0)
		rp->bandwidth = (uint64_t)s->bandwidth;
	r = dmr_reg_vm_save(reg, vm);
	if (r < 0) {
		/* Not saved: not set either. */
		dmr_repl_clear(rp);
		*rp = old;
		dmr_why_set(ret_why, 0, "cannot save VM %s's state: %s", name, strerror(-r));
	} else {
		free(old.to);
		free(old.last_error);
		log_info("VM %s: replication to '%s' every %u s (%s, %s, bandwidth %" PRIu64 ")", name,
			 rp->to, rp->interval_sec, rp->application ? "application" : "crash",
			 rp->zstd ? "zstd" : "uncompressed", rp->bandwidth);
	}
out:
	pthread_mutex_unlock(&reg->lock);
	return r;
}

int dmr_replicate_act(struct dmr_agent *a, const char *name, enum dmr_replicate_action act,
		      char **ret_why)
{
	struct dmr_registry *reg = a->reg;
	struct dmr_repl old;
	struct dmr_vm *vm;
	int r;

	assert(a && name);
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm) {
		r = dmr_why_set(ret_why, -ENOENT, "no VM named %s", name);
		goto out;
	}
	if (vm->role == DMR_VM_REPLICA) {
		r = primary_check(reg, vm, ret_why);
		goto out;
	}
	if (!vm->repl.to && act != DMR_REPLICATE_OFF) {
		r = dmr_why_set(ret_why, -DMR_E_STATE, "VM %s does not replicate (vm replicate %s --to COMMAND)", name, name);
		goto out;
	}
	old = vm->repl;
	switch (act) {
	case DMR_REPLICATE_PAUSE:
	case DMR_REPLICATE_RESUME:
		vm->repl.paused = act == DMR_REPLICATE_PAUSE;
		r = dmr_reg_vm_save(reg, vm);
		if (r < 0)
			vm->repl.paused = old.paused;
		break;
	case DMR_REPLICATE_OFF:
		if (!old.to) {
			r = 0; /* off already */
			break;
		}
		memset(&vm->repl, 0, sizeof(vm->repl));
		r = dmr_reg_vm_save(reg, vm);
		if (r < 0)
			vm->repl = old;
		else {
			free(old.to);
			free(old.last_error);
		}
		break;
	default:
		r = -EINVAL;
	}
	if (r < 0)
		dmr_why_set(ret_why, 0, "cannot save VM %s's state: %s", name, strerror(-r));
	else
		log_info("VM %s: replication %s", name, act == DMR_REPLICATE_PAUSE ? "paused" :
			 act == DMR_REPLICATE_RESUME ? "resumed" : "off");
out:
	pthread_mutex_unlock(&reg->lock);
	return r;
}

/* ---- capturing COMMAND's output ---------------------------------------------------- */

/* The last DMR_REPLICATE_CAPTURE_MAX bytes of a stream. */
struct tail {
	char buf[DMR_REPLICATE_CAPTURE_MAX];
	size_t len;
	bool cut;       /* bytes before these were dropped */
};

/* Not inlined: a caller's smaller buffer makes the n >= cap branch look
 * out of bounds to the compiler. */
__attribute__((noinline)) static void tail_add(struct tail *t, const char *p, size_t n)
{
	const size_t cap = sizeof(t->buf);

	if (n >= cap) {
		memcpy(t->buf, p + n - cap, cap);
		t->cut = t->cut || t->len > 0 || n > cap;
		t->len = cap;
		return;
	}
	if (t->len + n > cap) {
		size_t drop = t->len + n - cap;

		memmove(t->buf, t->buf + drop, t->len - drop);
		t->len -= drop;
		t->cut = true;
	}
	memcpy(t->buf + t->len, p, n);
	t->len += n;
}

struct child;
static void big_add(struct child *c, const char *p, size_t n);

struct child {
	struct dmr_agent *a;
	pid_t pid;
	int out_fd, err_fd;
	struct tail out, err;
	/* With big_max: all of stdout (a hash reply), at most big_max bytes
	 * (big_over past them), instead of its tail. */
	char *big;
	size_t big_len, big_max;
	bool big_over;
	uint64_t deadline;      /* dmr_now_usec() past which the group is killed */
	volatile bool timed_out, stopped, reaped;
	uint64_t reaped_usec;
	pthread_t thread;
};

static void big_add(struct child *c, const char *p, size_t n)
{
	if (c->big_over || c->big_len + n > c->big_max) {
		c->big_over = true;
		return;
	}
	if (c->big_len + n + 1 > 0 && !c->big) {
		c->big = malloc(c->big_max + 1);
		if (!c->big) {
			c->big_over = true;
			return;
		}
	}
	memcpy(c->big + c->big_len, p, n);
	c->big_len += n;
}

static void child_kill(struct child *c)
{
	(void)kill(-c->pid, SIGKILL);
	(void)kill(c->pid, SIGKILL);
}

/* Kill the group past the deadline or when the agent stops; true if so. */
static bool child_watch(struct child *c)
{
	if (c->timed_out || c->stopped)
		return true;
	if (dmr_now_usec() >= c->deadline) {
		c->timed_out = true;
		child_kill(c);
		return true;
	}
	if (c->a->stopping) {
		c->stopped = true;
		child_kill(c);
		return true;
	}
	return false;
}

/* Drain stdout and stderr until both end.  A descendant that left the
 * group and keeps them open is not waited for past 2 s after COMMAND is
 * reaped. */
static void *capture_main(void *p)
{
	struct child *c = p;
	char buf[16384];

	while (c->out_fd >= 0 || c->err_fd >= 0) {
		struct pollfd pf[2] = { { .fd = c->out_fd, .events = POLLIN },
					{ .fd = c->err_fd, .events = POLLIN } };
		int k = poll(pf, 2, 500);

		if (k < 0 && errno != EINTR)
			break;
		for (int i = 0; k > 0 && i < 2; i++) {
			int *fd = i == 0 ? &c->out_fd : &c->err_fd;
			ssize_t n;

			if (*fd < 0 || !pf[i].revents)
				continue;
			n = read(*fd, buf, sizeof(buf));
			if (n > 0 && i == 0 && c->big_max)
				big_add(c, buf, (size_t)n);
			else if (n > 0)
				tail_add(i == 0 ? &c->out : &c->err, buf, (size_t)n);
			else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(*fd);
				*fd = -1;
			}
		}
		(void)child_watch(c);
		if (c->reaped && dmr_now_usec() - c->reaped_usec > 2000000)
			break;
	}
	return NULL;
}

/* In the child, between fork and execve: async-signal-safe calls only. */
_Noreturn static void exec_child(char *const *argv, int in_fd, int out_fd, int err_fd)
{
	struct rlimit rl;
	sigset_t none;

	(void)setpgid(0, 0);
	/* The agent's threads block signals and ignore SIGPIPE; COMMAND
	 * starts with the defaults. */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	(void)signal(SIGPIPE, SIG_DFL);
	/* Above stderr first: an agent started with 0..2 closed has pipes
	 * there. */
	in_fd = fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
	out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
	err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
	if (in_fd < 0 || out_fd < 0 || err_fd < 0 || dup2(in_fd, STDIN_FILENO) < 0 ||
	    dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
		_exit(126);
	/* Nothing of the agent's but the three: descriptors other modules
	 * opened without O_CLOEXEC (libdevmapper's control node) too. */
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
	{
		if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > (1u << 20))
			rl.rlim_cur = 1u << 20;
		for (int fd = 3; fd < (int)rl.rlim_cur; fd++)
			(void)close(fd);
	}
	execve("/bin/sh", argv, environ);
	_exit(127);
}

/* Start COMMAND; *ret_in: the write end of its stdin. */
static int child_start(struct child *c, const char *cmd, int *ret_in)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	/* Built before the fork: the child only calls what is safe there. */
	char *const argv[] = { (char *)"sh", (char *)"-c", (char *)cmd, NULL };
	int r;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	c->pid = fork();
	if (c->pid < 0) {
		r = -errno;
		goto fail;
	}
	if (c->pid == 0)
		exec_child(argv, in[0], out[1], err[1]);
	/* Also here, so that a kill right away finds the group. */
	(void)setpgid(c->pid, c->pid);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	c->out_fd = out[0];
	c->err_fd = err[0];
	r = pthread_create(&c->thread, NULL, capture_main, c);
	if (r != 0) {
		close(c->out_fd);
		close(c->err_fd);
		c->out_fd = c->err_fd = -1;
		close(in[1]);
		child_kill(c);
		(void)waitpid(c->pid, NULL, 0);
		return -r;
	}
	*ret_in = in[1];
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
	}
	return r;
}

/* Reap COMMAND (the deadline and a->stopping still kill it), then let the
 * capture end.  The wait status, or -1 if someone else reaped it. */
static int child_wait(struct child *c)
{
	int status = -1;

	for (;;) {
		pid_t w = waitpid(c->pid, &status, WNOHANG);

		if (w == c->pid)
			break;
		if (w < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		(void)child_watch(c);
		usleep(20000);
	}
	c->reaped_usec = dmr_now_usec();
	c->reaped = true;
	pthread_join(c->thread, NULL);
	if (c->out_fd >= 0)
		close(c->out_fd);
	if (c->err_fd >= 0)
		close(c->err_fd);
	c->out_fd = c->err_fd = -1;
	return status;
}

/* A captured stream as a job field: lines kept, every other control
 * character and byte that is not UTF-8 escaped. */
static struct json_object *tail_json(const struct tail *t)
{
	size_t cap = 4 * t->len + 64, o = 0;
	_cleanup_free_ char *out = malloc(cap), *line = malloc(t->len + 1);
	struct json_object *j;
	size_t b = 0;

	if (!out || !line)
		return NULL;
	if (t->cut)
		o += (size_t)snprintf(out, cap, "[...]\n");
	while (b < t->len) {
		size_t e = b;

		while (e < t->len && t->buf[e] != '\n')
			e++;
		memcpy(line, t->buf + b, e - b);
		line[e - b] = '\0';
		/* A NUL inside ends the line there: the rest is not text. */
		dmr_cescape(out + o, cap - o, line);
		o += strlen(out + o);
		if (e < t->len && o + 1 < cap)
			out[o++] = '\n';
		out[o] = '\0';
		b = e + 1;
	}
	out[o] = '\0';
	j = json_object_new_string(out);
	return j;
}

/* The last non-empty line of stderr, one printable line (for last_error). */
static void tail_last_line(const struct tail *t, char *buf, size_t size)
{
	_cleanup_free_ char *line = NULL;
	const char *l;
	size_t n;

	buf[0] = '\0';
	l = dmr_replicate_last_line(t->buf, t->len, &n);
	if (!l || !(line = strndup(l, n > 400 ? 400 : n)))
		return;
	dmr_cescape(buf, size, line);
}

/* ---- the cycle ------------------------------------------------------------- */

struct cycle_ctx {
	struct dmr_agent *a;
	char *vm;
};

static void cycle_ctx_free(void *p)
{
	struct cycle_ctx *c = p;

	if (!c)
		return;
	free(c->vm);
	free(c);
}

/* The cycle's outcome into the catalog and saved (reg->lock not held).
 * ok: acknowledged (uuid, its creation time, bytes); else failures++ and
 * why; refused: the receiver refuses for good (32775); resync: the base
 * is gone.  Only while the VM still replicates to the same COMMAND. */
static void cycle_record(struct dmr_registry *reg, const char *name, const char *to, bool ok,
			 const char *uuid, uint64_t created, uint64_t bytes, bool refused,
			 bool resync, const char *why, int sent)
{
	struct dmr_vm *vm;
	int r;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm || !vm->repl.to || strcmp(vm->repl.to, to) != 0) {
		/* Turned off or pointed elsewhere meanwhile: this cycle's
		 * answer is not about the replica now set. */
		if (vm && vm->repl.cycle_running) {
			vm->repl.cycle_running = false;
			(void)dmr_reg_vm_save(reg, vm);
		}
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	vm->repl.cycle_running = false;
	/* sent: 1 the point went whole and its answer is missing (uuid),
	 * 0 that doubt is over, -1 as it was. */
	if (sent == 1 && uuid)
		snprintf(vm->repl.sent_uuid, sizeof(vm->repl.sent_uuid), "%s", uuid);
	else if (sent == 0)
		vm->repl.sent_uuid[0] = '\0';
	if (ok) {
		snprintf(vm->repl.acked_uuid, sizeof(vm->repl.acked_uuid), "%s", uuid);
		vm->repl.acked_usec = created;
		vm->repl.last_success_usec = dmr_realtime_usec();
		vm->repl.bytes_sent += bytes;
		vm->repl.failures = 0;
		vm->repl.refused = false;
		vm->repl.resync_required = false;
		free(vm->repl.last_error);
		vm->repl.last_error = NULL;
	} else {
		if (vm->repl.failures < UINT32_MAX)
			vm->repl.failures++;
		if (refused)
			vm->repl.refused = true;
		if (resync)
			vm->repl.resync_required = true;
		(void)set_error(&vm->repl, "%s", why ? why : "the cycle failed");
	}
	r = dmr_reg_vm_save(reg, vm);
	pthread_mutex_unlock(&reg->lock);
	if (r < 0)
		log_error("VM %s: cannot save the replication cycle's outcome: %s (the next start "
			  "sees the cycle as interrupted)", name, strerror(-r));
}

/* The uuid and creation time of point `point` of VM name ("" and 0 if it
 * is gone). */
static void point_identity(struct dmr_registry *reg, const char *name, uint64_t point,
			   char uuid[DMR_UUID_STR_SIZE], uint64_t *ret_created)
{
	struct dmr_vm *vm;
	struct dmr_point *pt;

	uuid[0] = '\0';
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	pt = vm ? dmr_vm_point_find(vm, point) : NULL;
	if (pt) {
		snprintf(uuid, DMR_UUID_STR_SIZE, "%s", pt->uuid);
		*ret_created = pt->created_usec;
	}
	pthread_mutex_unlock(&reg->lock);
}

static int cycle_job(struct dmr_job *job, void *userdata)
{
	struct cycle_ctx *ctx = userdata;
	struct dmr_agent *a = ctx->a;
	struct dmr_registry *reg = a->reg;
	_cleanup_free_ char *to = NULL, *qga = NULL, *why = NULL;
	char acked[DMR_UUID_STR_SIZE] = "", uuid[DMR_UUID_STR_SIZE] = "", line[512];
	char sent[DMR_UUID_STR_SIZE] = "";
	uint64_t base = 0, point = 0, created = 0, bytes = 0, bandwidth = 0, t0, sent_base = 0;
	bool application = false, zstd = false, trying_sent = false, can_freeze = false;
	uint32_t interval = DMR_REPL_INTERVAL_DEFAULT;
	struct child *ch = NULL;
	struct dmr_vm *vm;
	int r, in_fd = -1, status, rc = 0, send_r;

	/* 1. Settings, the cycle recorded as running, the base. */
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, ctx->vm);
	r = vm ? primary_check(reg, vm, &why) : -ENOENT;
	if (r == 0 && !vm->repl.to) {
		dmr_why_set(&why, 0, "VM %s does not replicate", ctx->vm);
		r = -DMR_E_STATE;
	}
	if (r == 0) {
		to = strdup(vm->repl.to);
		qga = vm->qga ? strdup(vm->qga) : NULL;
		can_freeze = vm->qga || dmr_shim_vm_can_freeze(vm);
		application = vm->repl.application;
		zstd = vm->repl.zstd;
		bandwidth = vm->repl.bandwidth;
		interval = vm->repl.interval_sec;
		snprintf(acked, sizeof(acked), "%s", vm->repl.acked_uuid);
		snprintf(sent, sizeof(sent), "%s", vm->repl.sent_uuid);
		vm->repl.last_attempt_usec = dmr_realtime_usec();
		vm->repl.cycle_running = true;
		if (!to || (vm->qga && !qga))
			r = -ENOMEM;
		for (size_t i = 0; i < vm->n_points; i++) {
			const struct dmr_point *pt = &vm->points[i];

			if (pt->pending_tid || !pt->valid)
				continue;
			if (acked[0] && strcmp(pt->uuid, acked) == 0)
				base = pt->id;
			if (sent[0] && strcmp(pt->uuid, sent) == 0)
				sent_base = pt->id;
		}
		/* A point sent whole whose answer was lost: the replica's
		 * latest, likely; tried once as the base. */
		if (sent_base && sent_base != base) {
			base = sent_base;
			trying_sent = true;
			snprintf(acked, sizeof(acked), "%s", sent);
		} else if (sent[0]) {
			vm->repl.sent_uuid[0] = '\0';
		}
		if (r == 0)
			r = dmr_reg_vm_save(reg, vm);
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		if (why)
			dmr_job_set_error(job, dmr_rc_from_errno(r), "%s", why);
		return r;
	}
	dmr_job_set_result(job, "to", json_object_new_string(to));
	if (acked[0] && !base) {
		snprintf(line, sizeof(line), "the point the replica acknowledged last (%s) is gone "
			 "here: no common point is left, a resync is required", acked);
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, true, line, -1);
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "%s", line);
		return -DMR_E_STATE;
	}
	if (application && !can_freeze) {
		snprintf(line, sizeof(line), "VM %s has no guest agent for an application-consistent "
			 "point", ctx->vm);
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false, line, -1);
		dmr_job_set_error(job, DMR_RC_INVALID_PARAMETER, "%s", line);
		return -EINVAL;
	}

	/* 2. The point. */
	t0 = dmr_now_usec();
	r = dmr_point_make(job, reg, ctx->vm, application, qga, "replication", &point);
	if (r < 0) {
		char e[400];

		(void)dmr_job_get_error(job, e, sizeof(e));
		snprintf(line, sizeof(line), "cannot take the cycle's point: %s", *e ? e : strerror(-r));
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false, line, -1);
		return r;
	}
	dmr_job_add_step(job, "point", dmr_now_usec() - t0);
	point_identity(reg, ctx->vm, point, uuid, &created);
	if (!uuid[0]) {
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false,
			     "the cycle's point is gone", -1);
		return dmr_job_fail(job, -ENOENT, "the cycle's point %" PRIu64 " is gone", point);
	}
	if (base)
		dmr_job_set_result(job, "base_uuid", json_object_new_string(acked));
	if (trying_sent) {
		dmr_job_set_result(job, "base_unacknowledged", json_object_new_boolean(true));
		log_info("VM %s: the answer to point %s was lost: trying it as the base", ctx->vm, sent);
	}

	/* 3. COMMAND. */
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false, "out of memory", -1);
		return -ENOMEM;
	}
	ch->a = a;
	ch->out_fd = ch->err_fd = -1;
	ch->deadline = dmr_now_usec() + dmr_replicate_timeout_sec(interval) * 1000000;
	r = child_start(ch, to, &in_fd);
	if (r < 0) {
		snprintf(line, sizeof(line), "cannot start COMMAND: %s", strerror(-r));
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false, line, -1);
		free(ch);
		return dmr_job_fail(job, r, "cannot start COMMAND");
	}
	dmr_test_hook("cycle:started");

	/* 4. The stream, then the pipe closed (by the send). */
	t0 = dmr_now_usec();
	send_r = dmr_replica_send_to_fd(a, job, ctx->vm, point, base, zstd, bandwidth, in_fd,
					&bytes);
	dmr_job_add_step(job, "stream", dmr_now_usec() - t0);

	/* 5. COMMAND's answer. */
	t0 = dmr_now_usec();
	status = child_wait(ch);
	dmr_job_add_step(job, "acknowledge", dmr_now_usec() - t0);
	dmr_job_set_result(job, "stderr", tail_json(&ch->err));
	dmr_job_set_result(job, "exit_status",
			   json_object_new_int(status < 0 ? -1 : WIFEXITED(status) ?
					       WEXITSTATUS(status) : 128 + WTERMSIG(status)));
	{
		size_t n;
		const char *l = dmr_replicate_last_line(ch->out.buf, ch->out.len, &n);
		_cleanup_free_ char *raw = l ? strndup(l, n > 1024 ? 1024 : n) : NULL;
		char esc[4 * 1024 + 1];

		if (raw)
			dmr_job_set_result(job, "answer",
					   json_object_new_string(dmr_cescape(esc, sizeof(esc), raw)));
	}
	free(why);
	why = NULL;
	r = dmr_replicate_ack_check(ch->out.buf, ch->out.len, uuid, &rc, &why);
	if (ch->timed_out) {
		snprintf(line, sizeof(line), "COMMAND did not finish within %" PRIu64 " s: its "
			 "process group was killed", dmr_replicate_timeout_sec(interval));
		cycle_record(reg, ctx->vm, to, false, uuid, 0, 0, false, false, line,
			     send_r == 0 ? 1 : -1);
		dmr_job_replace_error(job, DMR_RC_TIMEOUT, "%s", line);
		r = -ETIMEDOUT;
	} else if (ch->stopped) {
		/* Not recorded: the start after this one counts it. */
		dmr_job_replace_error(job, DMR_RC_FAILED, "the agent is stopping: COMMAND killed");
		r = -ECANCELED;
	} else if (rc) {
		/* The receiver's own refusal explains whatever broke here. */
		bool refused = rc == DMR_RC_INVALID_STATE;
		int doubt = -1;

		if (refused && trying_sent) {
			/* The guess was wrong: the replica does not hold the
			 * point whose answer was lost; the next cycle goes
			 * from the acknowledged one. */
			refused = false;
			doubt = 0;
		} else if (!refused && send_r == 0 && rc != DMR_RC_INVALID_PARAMETER) {
			/* Answered with an error after the whole stream (its
			 * agent gone: 32777): it may hold the point. */
			doubt = 1;
		}
		cycle_record(reg, ctx->vm, to, false, uuid, 0, 0, refused, false, why, doubt);
		dmr_job_replace_error(job, rc, "%s", why);
		r = -EREMOTEIO;
	} else if (send_r < 0) {
		char e[200];
		int code = dmr_job_get_error(job, e, sizeof(e));

		snprintf(line, sizeof(line), "%s", *e ? e : strerror(-send_r));
		if (status != 0) {
			char last[256];

			tail_last_line(&ch->err, last, sizeof(last));
			if (last[0])
				snprintf(line + strlen(line), sizeof(line) - strlen(line),
					 "; COMMAND: %s", last);
		}
		cycle_record(reg, ctx->vm, to, false, NULL, 0, 0, false, false, line, -1);
		dmr_job_replace_error(job, code ? code : DMR_RC_FAILED, "%s", line);
		r = send_r;
	} else if (status != 0) {
		char last[256];

		tail_last_line(&ch->err, last, sizeof(last));
		if (status < 0)
			snprintf(line, sizeof(line), "COMMAND's exit status is unknown");
		else if (WIFEXITED(status))
			snprintf(line, sizeof(line), "COMMAND exited with status %d%s%s",
				 WEXITSTATUS(status), last[0] ? ": " : "", last);
		else
			snprintf(line, sizeof(line), "COMMAND was killed by signal %d%s%s",
				 WTERMSIG(status), last[0] ? ": " : "", last);
		cycle_record(reg, ctx->vm, to, false, uuid, 0, 0, false, false, line, 1);
		dmr_job_replace_error(job, DMR_RC_FAILED, "%s", line);
		r = -EIO;
	} else if (r < 0) {
		cycle_record(reg, ctx->vm, to, false, uuid, 0, 0, false, false, why, 1);
		dmr_job_replace_error(job, DMR_RC_FAILED, "%s", why ? why : "no acknowledgement");
	} else {
		/* 6. Acknowledged: saved before the job ends. */
		dmr_test_hook("cycle:acknowledged");
		cycle_record(reg, ctx->vm, to, true, uuid, created, bytes, false, false, NULL, 0);
		dmr_job_set_result(job, "acknowledged", json_object_new_string(uuid));
		log_info("VM %s: cycle acknowledged: point %" PRIu64 " (%s), %" PRIu64 " bytes%s",
			 ctx->vm, point, uuid, bytes, base ? " as an incremental" : "");
	}
	if (r < 0 && r != -ECANCELED) {
		char e[512];

		(void)dmr_job_get_error(job, e, sizeof(e));
		log_warning("VM %s: replication cycle failed: %s", ctx->vm, e);
	}
	free(ch);
	return r < 0 ? r : 0;
}

static int resync_job(struct dmr_job *job, void *userdata);
static int verify_job(struct dmr_job *job, void *userdata);

static int kind_start(struct dmr_agent *a, const char *vm, enum dmr_replicate_kind kind,
		      uint64_t *ret_job)
{
	struct cycle_ctx *c = calloc(1, sizeof(*c));
	int r;

	if (!c || !(c->vm = strdup(vm))) {
		free(c);
		return -ENOMEM;
	}
	c->a = a;
	r = dmr_job_start(a, kind == DMR_REPLICATE_RESYNC ? "Resynchronize" :
			  kind == DMR_REPLICATE_VERIFY ? "VerifyReplica" : "ReplicationCycle", vm,
			  kind == DMR_REPLICATE_RESYNC ? resync_job :
			  kind == DMR_REPLICATE_VERIFY ? verify_job : cycle_job, c, cycle_ctx_free,
			  ret_job);
	if (r < 0)
		cycle_ctx_free(c);
	return r;
}

static int cycle_start(struct dmr_agent *a, const char *vm, uint64_t *ret_job)
{
	return kind_start(a, vm, DMR_REPLICATE_CYCLE, ret_job);
}

/* ---- resync and verify ------------------------------------------------------ */

/* What a resync or a verify reads of the VM, once (reg->lock taken). */
struct rs_settings {
	char *to, *qga;
	char vm_uuid[DMR_UUID_STR_SIZE], acked[DMR_UUID_STR_SIZE];
	uint64_t acked_id, bandwidth;
	uint32_t interval;
	bool application, zstd;
};

static void rs_settings_clear(struct rs_settings *st)
{
	free(st->to);
	free(st->qga);
	st->to = st->qga = NULL;
}

/* The VM replicates and is a primary; for a resync the cycle is recorded
 * as running (a stop of the agent counts it failed, as a cycle's). */
static int rs_settings_read(struct dmr_job *job, struct dmr_registry *reg, const char *name,
			    bool running, struct rs_settings *st)
{
	_cleanup_free_ char *why = NULL;
	struct dmr_vm *vm;
	int r;

	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	r = vm ? primary_check(reg, vm, &why) : dmr_why_set(&why, -ENOENT, "no VM named %s", name);
	if (r == 0 && !vm->repl.to)
		r = dmr_why_set(&why, -DMR_E_STATE, "VM %s does not replicate", name);
	if (r == 0) {
		st->to = strdup(vm->repl.to);
		st->qga = vm->qga ? strdup(vm->qga) : NULL;
		if (!st->to || (vm->qga && !st->qga))
			r = -ENOMEM;
		snprintf(st->vm_uuid, sizeof(st->vm_uuid), "%s", vm->uuid);
		snprintf(st->acked, sizeof(st->acked), "%s", vm->repl.acked_uuid);
		st->bandwidth = vm->repl.bandwidth;
		st->interval = vm->repl.interval_sec;
		st->application = vm->repl.application;
		st->zstd = vm->repl.zstd;
		for (size_t i = 0; st->acked[0] && i < vm->n_points; i++)
			if (vm->points[i].valid && !vm->points[i].pending_tid &&
			    strcmp(vm->points[i].uuid, st->acked) == 0)
				st->acked_id = vm->points[i].id;
		if (running && r == 0) {
			vm->repl.last_attempt_usec = dmr_realtime_usec();
			vm->repl.cycle_running = true;
			r = dmr_reg_vm_save(reg, vm);
		}
	}
	pthread_mutex_unlock(&reg->lock);
	if (r < 0) {
		dmr_job_set_error(job, dmr_rc_from_errno(r), "%s", why ? why : strerror(-r));
		return r;
	}
	dmr_job_set_result(job, "to", json_object_new_string(st->to));
	return 0;
}

/* How COMMAND ended, one line, when it did not answer as it should. */
static void command_outcome(const struct child *ch, int status, char *line, size_t size)
{
	char last[256];

	tail_last_line(&ch->err, last, sizeof(last));
	if (ch->timed_out)
		snprintf(line, size, "COMMAND did not finish in time: its process group was killed");
	else if (status < 0)
		snprintf(line, size, "COMMAND's exit status is unknown");
	else if (WIFEXITED(status))
		snprintf(line, size, "COMMAND exited with status %d%s%s", WEXITSTATUS(status),
			 last[0] ? ": " : "", last);
	else
		snprintf(line, size, "COMMAND was killed by signal %d%s%s", WTERMSIG(status),
			 last[0] ? ": " : "", last);
}

/* Run COMMAND once with a hash request on its stdin and read the
 * replica's hashes of the point uuid ("": its newest) from its stdout.
 * expect_blocks bounds the reply (our own point's blocks).  0 and *ret,
 * else the job's error set (the receiver's code when it answered one). */
static int rs_ask_hashes(struct dmr_agent *a, struct dmr_job *job, const char *vm,
			 const struct rs_settings *st, const char *uuid, uint64_t expect_blocks,
			 struct dmr_hashes *ret)
{
	struct dmr_hash_request q = { 0 };
	uint8_t req[DMR_HASHREQ_MAX];
	_cleanup_free_ char *why = NULL;
	struct child *ch = calloc(1, sizeof(*ch));
	uint64_t t0 = dmr_now_usec();
	int r, n, in_fd = -1, status, rc = 0;
	char line[512];

	if (!ch)
		return dmr_job_fail(job, -ENOMEM, "cannot ask for the replica's hashes");
	snprintf(q.vm, sizeof(q.vm), "%s", vm);
	snprintf(q.vm_uuid, sizeof(q.vm_uuid), "%s", st->vm_uuid);
	snprintf(q.point_uuid, sizeof(q.point_uuid), "%s", uuid ? uuid : "");
	n = dmr_hashreq_encode(&q, req, sizeof(req));
	if (n < 0) {
		free(ch);
		return dmr_job_fail(job, n, "cannot make the hash request");
	}
	ch->a = a;
	ch->out_fd = ch->err_fd = -1;
	ch->deadline = dmr_now_usec() + dmr_replicate_timeout_sec(st->interval) * 1000000;
	/* Room for the replica's reply if its disks are up to twice ours:
	 * a larger one is refused (its disks differ anyway). */
	ch->big_max = (1u << 20) + 34 * (expect_blocks < DMR_HASHES_BLOCKS_MAX ?
					 2 * expect_blocks : DMR_HASHES_BLOCKS_MAX);
	r = child_start(ch, st->to, &in_fd);
	if (r < 0) {
		free(ch);
		return dmr_job_fail(job, r, "cannot start COMMAND");
	}
	{
		const uint8_t *p = req;
		size_t left = (size_t)n;

		/* Well within a pipe's buffer: a write never waits here. */
		while (left > 0) {
			ssize_t k = write(in_fd, p, left);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			p += k;
			left -= (size_t)k;
		}
		close(in_fd);
	}
	status = child_wait(ch);
	dmr_job_add_step(job, "hash-exchange", dmr_now_usec() - t0);
	dmr_job_set_result(job, "hash_stderr", tail_json(&ch->err));
	if (ch->stopped) {
		r = -ECANCELED;
		dmr_job_set_error(job, DMR_RC_FAILED, "the agent is stopping: COMMAND killed");
	} else if (ch->big_over) {
		r = -EFBIG;
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "the replica's hash reply is longer than "
				  "%zu bytes: its disks are not this VM's", ch->big_max);
	} else {
		r = dmr_hashes_parse_reply(ch->big ? ch->big : "", ch->big_len, ret, &rc, &why);
		if (r < 0 && rc)
			dmr_job_set_error(job, rc, "%s", why);
		else if (r < 0 && (ch->timed_out || status != 0)) {
			command_outcome(ch, status, line, sizeof(line));
			dmr_job_set_error(job, DMR_RC_FAILED, "%s", line);
		} else if (r < 0) {
			dmr_job_set_error(job, DMR_RC_FAILED, "%s", why ? why : "no hash reply");
		}
	}
	free(ch->big);
	free(ch);
	return r;
}

/* Do our point's hashes and the replica's describe the same disks? */
static int rs_same_geometry(struct dmr_job *job, const struct dmr_hashes *mine,
			    const struct dmr_hashes *theirs)
{
	if (mine->n_disks != theirs->n_disks) {
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "the replica's point has %" PRIu32
				  " disk(s), this VM %" PRIu32, theirs->n_disks, mine->n_disks);
		return -DMR_E_STATE;
	}
	if (mine->block_bytes != theirs->block_bytes) {
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "the replica's pool blocks are %" PRIu32
				  " bytes, this host's %" PRIu32 ": the hashes cannot be compared",
				  theirs->block_bytes, mine->block_bytes);
		return -DMR_E_STATE;
	}
	for (uint32_t i = 0; i < mine->n_disks; i++)
		if (strcmp(mine->disks[i].name, theirs->disks[i].name) != 0 ||
		    mine->disks[i].size_bytes != theirs->disks[i].size_bytes) {
			dmr_job_set_error(job, DMR_RC_INVALID_STATE, "the replica's disk %" PRIu32
					  " is %s of %" PRIu64 " bytes, this VM's %s of %" PRIu64
					  " bytes", i, theirs->disks[i].name,
					  theirs->disks[i].size_bytes, mine->disks[i].name,
					  mine->disks[i].size_bytes);
			return -DMR_E_STATE;
		}
	return 0;
}

int dmr_replicate_diff_extents(const struct dmr_hash_disk *a, const struct dmr_hash_disk *b,
			       struct dmr_extent **ret_ext, size_t *ret_n)
{
	struct dmr_extent *ext = NULL;
	size_t n = 0, cap = 0;
	uint64_t k = 0;

	assert(a && b && ret_ext && ret_n && a->n == b->n);
	while (k < a->n) {
		uint64_t e;

		if (a->h[k] == b->h[k]) {
			k++;
			continue;
		}
		for (e = k + 1; e < a->n && a->h[e] != b->h[e]; e++)
			;
		if (n == cap) {
			struct dmr_extent *x = realloc(ext, (cap = cap ? 2 * cap : 16) * sizeof(*x));

			if (!x) {
				free(ext);
				return -ENOMEM;
			}
			ext = x;
		}
		ext[n++] = (struct dmr_extent){ .begin = k, .length = e - k, .kind = DMR_EXTENT_DATA };
		k = e;
	}
	*ret_ext = ext;
	*ret_n = n;
	return 0;
}

static uint64_t hashes_total(const struct dmr_hashes *hs)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < hs->n_disks; i++)
		t += hs->disks[i].n;
	return t;
}

/* Per disk: its name, blocks, differing blocks and the first offsets
 * (bytes) of those.  *ret_diff: differing blocks in all. */
#define RS_FIRST_MAX 8u
static struct json_object *rs_diff_json(const struct dmr_hashes *mine, const struct dmr_hashes *theirs,
					uint64_t *ret_diff)
{
	struct json_object *arr = json_object_new_array();

	*ret_diff = 0;
	for (uint32_t i = 0; arr && i < mine->n_disks; i++) {
		uint64_t first[RS_FIRST_MAX];
		uint64_t d = dmr_hashes_diff(&mine->disks[i], &theirs->disks[i], first, RS_FIRST_MAX);
		struct json_object *o = json_object_new_object(), *f = json_object_new_array();

		for (uint64_t k = 0; f && k < d && k < RS_FIRST_MAX; k++)
			json_object_array_add(f, json_object_new_int64((int64_t)(first[k] *
										  mine->block_bytes)));
		json_object_object_add(o, "name", json_object_new_string(mine->disks[i].name));
		json_object_object_add(o, "blocks", json_object_new_int64((int64_t)mine->disks[i].n));
		json_object_object_add(o, "differing", json_object_new_int64((int64_t)d));
		json_object_object_add(o, "first_offsets", f);
		json_object_array_add(arr, o);
		*ret_diff += d;
	}
	return arr;
}

#define rs_ctx cycle_ctx

/* Resynchronize: a point, its hashes and the replica's newest point's,
 * then a stream of only the blocks that differ, onto that point. */
static int resync_job(struct dmr_job *job, void *userdata)
{
	struct rs_ctx *ctx = userdata;
	struct dmr_agent *a = ctx->a;
	struct dmr_registry *reg = a->reg;
	struct rs_settings st = { 0 };
	struct dmr_hashes *mine = calloc(1, sizeof(*mine)), *theirs = calloc(1, sizeof(*theirs));
	struct dmr_extent *ext[DMR_STREAM_DISKS_MAX] = { 0 };
	size_t n_ext[DMR_STREAM_DISKS_MAX] = { 0 };
	_cleanup_free_ char *why = NULL;
	char uuid[DMR_UUID_STR_SIZE] = "", line[512], e[400];
	uint64_t point = 0, created = 0, bytes = 0, diff = 0, t0;
	struct child *ch = NULL;
	int r, in_fd = -1, status, rc = 0, send_r;

	if (!mine || !theirs) {
		free(mine);
		free(theirs);
		return dmr_job_fail(job, -ENOMEM, "cannot resync");
	}
	r = rs_settings_read(job, reg, ctx->vm, true, &st);
	if (r < 0)
		goto out_norecord;
	if (st.application && !st.qga) {
		dmr_job_set_error(job, DMR_RC_INVALID_PARAMETER, "VM %s has no guest agent for an "
				  "application-consistent point", ctx->vm);
		r = -EINVAL;
		goto out;
	}
	/* 1. A point, as a cycle takes one. */
	t0 = dmr_now_usec();
	r = dmr_point_make(job, reg, ctx->vm, st.application, st.qga, "resync", &point);
	if (r < 0)
		goto out;
	dmr_job_add_step(job, "point", dmr_now_usec() - t0);
	point_identity(reg, ctx->vm, point, uuid, &created);
	if (!uuid[0]) {
		r = dmr_job_fail(job, -ENOENT, "the resync's point %" PRIu64 " is gone", point);
		goto out;
	}
	dmr_job_set_result(job, "point", json_object_new_int64((int64_t)point));
	dmr_job_set_result(job, "uuid", json_object_new_string(uuid));
	/* 2. Its hashes, then the replica's newest point's. */
	r = dmr_hashes_of_point(a, job, ctx->vm, point, mine);
	if (r < 0)
		goto out;
	r = rs_ask_hashes(a, job, ctx->vm, &st, NULL, hashes_total(mine), theirs);
	if (r < 0)
		goto out;
	r = rs_same_geometry(job, mine, theirs);
	if (r < 0)
		goto out;
	dmr_job_set_result(job, "base_uuid", json_object_new_string(theirs->uuid));
	dmr_job_set_result(job, "disks", rs_diff_json(mine, theirs, &diff));
	dmr_job_set_result(job, "blocks_differing", json_object_new_int64((int64_t)diff));
	for (uint32_t i = 0; i < mine->n_disks && r == 0; i++)
		r = dmr_replicate_diff_extents(&mine->disks[i], &theirs->disks[i], &ext[i], &n_ext[i]);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot resync");
		goto out;
	}
	/* 3. The differing blocks as an incremental onto the replica's point. */
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		r = dmr_job_fail(job, -ENOMEM, "cannot resync");
		goto out;
	}
	ch->a = a;
	ch->out_fd = ch->err_fd = -1;
	ch->deadline = dmr_now_usec() + dmr_replicate_timeout_sec(st.interval) * 1000000;
	r = child_start(ch, st.to, &in_fd);
	if (r < 0) {
		dmr_job_fail(job, r, "cannot start COMMAND");
		goto out;
	}
	t0 = dmr_now_usec();
	send_r = dmr_replica_send_blocks(a, job, ctx->vm, point, theirs->uuid, ext, n_ext,
					 mine->block_bytes, st.zstd, st.bandwidth, in_fd, &bytes);
	dmr_job_add_step(job, "stream", dmr_now_usec() - t0);
	status = child_wait(ch);
	dmr_job_set_result(job, "stderr", tail_json(&ch->err));
	r = dmr_replicate_ack_check(ch->out.buf, ch->out.len, uuid, &rc, &why);
	if (ch->stopped) {
		dmr_job_replace_error(job, DMR_RC_FAILED, "the agent is stopping: COMMAND killed");
		r = -ECANCELED;
	} else if (rc) {
		dmr_job_replace_error(job, rc, "%s", why);
		r = -EREMOTEIO;
	} else if (send_r < 0) {
		r = send_r;
	} else if (ch->timed_out || status != 0) {
		command_outcome(ch, status, line, sizeof(line));
		dmr_job_replace_error(job, DMR_RC_FAILED, "%s", line);
		r = -EIO;
	} else if (r < 0) {
		dmr_job_replace_error(job, DMR_RC_FAILED, "%s", why ? why : "no acknowledgement");
	} else {
		/* Acknowledged: the new point is common; cycles go on. */
		cycle_record(reg, ctx->vm, st.to, true, uuid, created, bytes, false, false, NULL, 0);
		dmr_job_set_result(job, "acknowledged", json_object_new_string(uuid));
		dmr_job_set_result(job, "bytes", json_object_new_int64((int64_t)bytes));
		log_info("VM %s: resynchronized onto the replica's point %s: %" PRIu64 " blocks "
			 "differed, point %" PRIu64 " (%s) sent in %" PRIu64 " bytes", ctx->vm,
			 theirs->uuid, diff, point, uuid, bytes);
		goto done;
	}
out:
	if (r != -ECANCELED) {
		(void)dmr_job_get_error(job, e, sizeof(e));
		snprintf(line, sizeof(line), "resync failed: %s", *e ? e : strerror(-r));
		cycle_record(reg, ctx->vm, st.to ? st.to : "", false, NULL, 0, 0, false, false, line, -1);
		log_warning("VM %s: %s", ctx->vm, line);
	}
out_norecord:
done:
	if (ch)
		free(ch->big);
	free(ch);
	for (uint32_t i = 0; i < DMR_STREAM_DISKS_MAX; i++)
		free(ext[i]);
	dmr_hashes_clear(mine);
	dmr_hashes_clear(theirs);
	free(mine);
	free(theirs);
	rs_settings_clear(&st);
	return r < 0 ? r : 0;
}

/* VerifyReplica: the hashes of the newest common point (the acknowledged
 * one) on both sides; nothing changes. */
static int verify_job(struct dmr_job *job, void *userdata)
{
	struct rs_ctx *ctx = userdata;
	struct dmr_agent *a = ctx->a;
	struct rs_settings st = { 0 };
	struct dmr_hashes *mine = calloc(1, sizeof(*mine)), *theirs = calloc(1, sizeof(*theirs));
	uint64_t diff = 0;
	int r;

	if (!mine || !theirs) {
		free(mine);
		free(theirs);
		return dmr_job_fail(job, -ENOMEM, "cannot verify");
	}
	r = rs_settings_read(job, a->reg, ctx->vm, false, &st);
	if (r == 0 && !st.acked_id) {
		dmr_job_set_error(job, DMR_RC_INVALID_STATE, "VM %s has no common point with its "
				  "replica to verify (%s): %s", ctx->vm,
				  st.acked[0] ? "the acknowledged one is gone here" :
				  "nothing acknowledged yet", st.acked[0] ? "resync first" :
				  "run a cycle first");
		r = -DMR_E_STATE;
	}
	if (r == 0) {
		dmr_job_set_result(job, "point", json_object_new_int64((int64_t)st.acked_id));
		dmr_job_set_result(job, "uuid", json_object_new_string(st.acked));
		r = dmr_hashes_of_point(a, job, ctx->vm, st.acked_id, mine);
	}
	if (r == 0)
		r = rs_ask_hashes(a, job, ctx->vm, &st, st.acked, hashes_total(mine), theirs);
	if (r == 0 && strcmp(theirs->uuid, st.acked) != 0) {
		dmr_job_set_error(job, DMR_RC_FAILED, "the replica hashed point %s, not %s",
				  theirs->uuid, st.acked);
		r = -EBADMSG;
	}
	if (r == 0)
		r = rs_same_geometry(job, mine, theirs);
	if (r == 0) {
		dmr_job_set_result(job, "disks", rs_diff_json(mine, theirs, &diff));
		dmr_job_set_result(job, "blocks_differing", json_object_new_int64((int64_t)diff));
		dmr_job_set_result(job, "blocks", json_object_new_int64((int64_t)hashes_total(mine)));
		if (diff) {
			dmr_job_set_error(job, DMR_RC_FAILED, "%" PRIu64 " block(s) of point %s differ "
					  "between this host and the replica", diff, st.acked);
			log_warning("VM %s: verify: %" PRIu64 " block(s) of point %s differ on the "
				    "replica", ctx->vm, diff, st.acked);
			r = -EIO;
		} else {
			log_info("VM %s: verify: point %s is the same on the replica", ctx->vm,
				 st.acked);
		}
	}
	dmr_hashes_clear(mine);
	dmr_hashes_clear(theirs);
	free(mine);
	free(theirs);
	rs_settings_clear(&st);
	return r;
}

int dmr_replicate_now(struct dmr_agent *a, const char *name, uint64_t *ret_job, char **ret_why)
{
	return dmr_replicate_run(a, name, DMR_REPLICATE_CYCLE, ret_job, ret_why);
}

int dmr_replicate_run(struct dmr_agent *a, const char *name, enum dmr_replicate_kind kind,
		      uint64_t *ret_job, char **ret_why)
{
	struct dmr_registry *reg = a->reg;
	struct dmr_vm *vm;
	int r;

	assert(a && name && ret_job);
	r = dmr_vm_busy_acquire(a, name);
	if (r == -EBUSY)
		dmr_why_set(ret_why, 0, "VM %s is busy with another operation (a cycle, or another job)", name);
	if (r < 0)
		return r;
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	if (!vm) {
		r = dmr_why_set(ret_why, -ENOENT, "no VM named %s", name);
	} else if ((r = primary_check(reg, vm, ret_why)) == 0 && !vm->repl.to) {
		r = dmr_why_set(ret_why, -DMR_E_STATE, "VM %s does not replicate (vm replicate %s --to COMMAND)", name, name);
	}
	pthread_mutex_unlock(&reg->lock);
	if (r == 0)
		r = kind_start(a, name, kind, ret_job);
	if (r < 0)
		dmr_vm_busy_release(a, name);
	return r;
}

/* ---- the scheduler --------------------------------------------------------------- */

struct seen {
	char *name;
	enum dmr_repl_health health;
	bool live;
};

struct dmr_replicator {
	struct dmr_agent *a;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	struct seen *seen;
	size_t n_seen;
};

/* The health last logged for name (a new entry: off). */
static struct seen *seen_get(struct dmr_replicator *s, const char *name)
{
	struct seen *n;

	for (size_t i = 0; i < s->n_seen; i++)
		if (strcmp(s->seen[i].name, name) == 0)
			return &s->seen[i];
	n = realloc(s->seen, (s->n_seen + 1) * sizeof(*n));
	if (!n)
		return NULL;
	s->seen = n;
	n = &s->seen[s->n_seen];
	n->name = strdup(name);
	if (!n->name)
		return NULL;
	n->health = DMR_REPL_OFF;
	s->n_seen++;
	return n;
}

struct due {
	char name[DMR_OBJ_NAME_MAX + 1];
	bool due;
};

static void tick(struct dmr_replicator *s)
{
	struct dmr_registry *reg = s->a->reg;
	struct due *d = NULL;
	size_t n = 0;
	uint64_t now = dmr_realtime_usec();

	for (size_t i = 0; i < s->n_seen; i++)
		s->seen[i].live = false;
	pthread_mutex_lock(&reg->lock);
	if (reg->n_vms)
		d = calloc(reg->n_vms, sizeof(*d));
	for (size_t v = 0; d && v < reg->n_vms; v++) {
		struct dmr_vm *vm = reg->vms[v];
		const struct dmr_repl *rp = &vm->repl;
		enum dmr_repl_health h;
		struct seen *sn;

		if (vm->role == DMR_VM_REPLICA || strlen(vm->name) > DMR_OBJ_NAME_MAX)
			continue;
		h = dmr_repl_health(rp, now);
		sn = seen_get(s, vm->name);
		if (sn) {
			sn->live = true;
			if (sn->health != h) {
				if (h == DMR_REPL_OK || h == DMR_REPL_OFF || h == DMR_REPL_PAUSED)
					log_info("VM %s: replication health %s (was %s)", vm->name,
						 dmr_repl_health_name(h), dmr_repl_health_name(sn->health));
				else
					log_warning("VM %s: replication health %s (was %s)%s%s",
						    vm->name, dmr_repl_health_name(h),
						    dmr_repl_health_name(sn->health),
						    rp->last_error ? ": " : "",
						    rp->last_error ? rp->last_error : "");
				sn->health = h;
			}
		}
		if (!rp->to || rp->paused || rp->resync_required)
			continue;
		strcpy(d[n].name, vm->name);
		d[n].due = !rp->last_attempt_usec ||
			   now >= rp->last_attempt_usec + (uint64_t)rp->interval_sec * 1000000 ||
			   now < rp->last_attempt_usec; /* the clock went back */
		n++;
	}
	pthread_mutex_unlock(&reg->lock);
	/* VMs gone: forget them, so one added again under the name starts
	 * from off. */
	for (size_t i = 0; i < s->n_seen;)
		if (!s->seen[i].live) {
			free(s->seen[i].name);
			s->seen[i] = s->seen[--s->n_seen];
		} else {
			i++;
		}
	for (size_t i = 0; i < n && !s->a->stopping; i++) {
		uint64_t job;
		int r;

		if (!d[i].due)
			continue;
		/* Busy (a cycle still running, or any other operation): the
		 * next tick tries again; nothing failed. */
		if (dmr_vm_busy_acquire(s->a, d[i].name) < 0)
			continue;
		r = cycle_start(s->a, d[i].name, &job);
		if (r < 0) {
			dmr_vm_busy_release(s->a, d[i].name);
			log_error("VM %s: cannot start a replication cycle: %s", d[i].name,
				  strerror(-r));
		} else {
			log_debug("VM %s: replication cycle job %" PRIu64, d[i].name, job);
		}
	}
	free(d);
}

static void *sched_main(void *p)
{
	struct dmr_replicator *s = p;
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		pthread_mutex_unlock(&s->lock);
		tick(s);
		pthread_mutex_lock(&s->lock);
		at.tv_sec += DMR_REPLICATE_TICK_SEC;
		while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &at) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int dmr_replicate_start(struct dmr_agent *a, struct dmr_replicator **ret)
{
	struct dmr_registry *reg = a->reg;
	struct dmr_replicator *s;
	pthread_condattr_t ca;
	int r;

	assert(a && ret);
	/* Cycles a stopped agent left running: failed, and said so. */
	pthread_mutex_lock(&reg->lock);
	for (size_t v = 0; v < reg->n_vms; v++) {
		struct dmr_vm *vm = reg->vms[v];

		if (dmr_repl_interrupted(&vm->repl)) {
			log_warning("VM %s: a replication cycle was interrupted by the agent's stop; "
				    "counted as failed", vm->name);
			r = dmr_reg_vm_save(reg, vm);
			if (r < 0)
				log_error("VM %s: cannot save its state: %s", vm->name, strerror(-r));
		}
	}
	pthread_mutex_unlock(&reg->lock);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->a = a;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	r = pthread_create(&s->thread, NULL, sched_main, s);
	if (r != 0) {
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -r;
	}
	*ret = s;
	return 0;
}

void dmr_replicate_stop(struct dmr_replicator *s)
{
	if (!s)
		return;
	dmr_threads_stop(&s->lock, &s->cond, &s->stop);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	for (size_t i = 0; i < s->n_seen; i++)
		free(s->seen[i].name);
	free(s->seen);
	free(s);
}
