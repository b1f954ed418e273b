/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/guest/shim.h"

#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "agent/guest/libvirt.h"
#include "agent/guest/qmp.h"
#include "common/log.h"
#include "common/util.h"

extern char **environ;

enum shim_kind {
	SHIM_QMP,
	SHIM_EXEC,
	SHIM_NONE,
	SHIM_LIBVIRT,
};

static const char *const kind_names[] = {
	[SHIM_QMP] = "qmp",
	[SHIM_EXEC] = "exec",
	[SHIM_NONE] = "none",
	[SHIM_LIBVIRT] = "libvirt",
};

/* Status output kept from an exec COMMAND; the rest is read and dropped. */
#define EXEC_OUT_MAX 4096

struct dmr_shim {
	enum shim_kind kind;
	char *vm;
	char *target;
	int timeout_ms;
	struct dmr_qmp *qmp; /* kept connection, or NULL */
	struct dmr_libvirt *lv; /* libvirt: its domain (connected when used) */
	/* exec: COMMAND's words, then VERB and VM, then NULL; the VERB slot
	 * is filled in per call. */
	char **argv;
	size_t verb_slot;
	char error[512];
};

static const char *const guest_status_names[] = {
	[DMR_GUEST_UNKNOWN] = "unknown",
	[DMR_GUEST_RUNNING] = "running",
	[DMR_GUEST_PAUSED] = "paused",
	[DMR_GUEST_NOT_RUNNING] = "not-running",
};

const char *dmr_guest_status_to_string(enum dmr_guest_status st)
{
	if ((size_t)st >= DMR_ARRAY_SIZE(guest_status_names))
		return "unknown";
	return guest_status_names[st];
}

enum dmr_guest_status dmr_guest_status_from_qmp(const char *runstate)
{
	/* States in which the guest's CPUs are stopped but the guest is
	 * there to be resumed (or reset) on the same disks. */
	static const char *const paused[] = {
		"paused", "suspended", "prelaunch", "debug", "internal-error",
		"io-error", "watchdog", "guest-panicked",
	};

	if (dmr_streq(runstate, "running"))
		return DMR_GUEST_RUNNING;
	if (dmr_streq(runstate, "shutdown"))
		return DMR_GUEST_NOT_RUNNING;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(paused); i++)
		if (dmr_streq(runstate, paused[i]))
			return DMR_GUEST_PAUSED;
	/* inmigrate, postmigrate, finish-migrate, save-vm, restore-vm, colo
	 * and states newer than this code: QEMU is busy with the guest in a
	 * way a disk swap must not assume anything about. */
	return DMR_GUEST_UNKNOWN;
}

static int set_error(struct dmr_shim *s, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(struct dmr_shim *s, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof(s->error), fmt, ap);
	va_end(ap);
	log_debug("shim %s %s: %s", kind_names[s->kind], s->vm, s->error);
	return r;
}

/* Frees every word but the VERB slot, which points to a literal. */
static void free_argv(char **argv, size_t verb_slot)
{
	if (!argv)
		return;
	for (size_t i = 0; i < verb_slot; i++)
		free(argv[i]);
	free(argv[verb_slot + 1]);
	free(argv);
}

/* COMMAND's words + VERB + VM + NULL.  The VERB slot points to a literal,
 * set per call. */
static int split_command(const char *command, const char *vm, char ***ret_argv, size_t *ret_slot)
{
	size_t n = 0, i = 0;
	char **argv;
	const char *p;

	for (p = command; *p;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		n++;
		while (*p && !isspace((unsigned char)*p))
			p++;
	}
	if (n == 0)
		return -EINVAL;
	argv = calloc(n + 3, sizeof(char *));
	if (!argv)
		return -ENOMEM;
	for (p = command; *p;) {
		const char *w;

		while (*p && isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		w = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		argv[i] = strndup(w, (size_t)(p - w));
		if (!argv[i++])
			goto oom;
	}
	argv[n] = (char *)"status";
	argv[n + 1] = strdup(vm);
	if (!argv[n + 1])
		goto oom;
	if (argv[0][0] != '/') {
		free_argv(argv, n);
		return -EINVAL;
	}
	*ret_argv = argv;
	*ret_slot = n;
	return 0;
oom:
	free_argv(argv, n);
	return -ENOMEM;
}

void dmr_shim_free(struct dmr_shim *s)
{
	if (!s)
		return;
	dmr_qmp_free(s->qmp);
	dmr_libvirt_free(s->lv);
	free_argv(s->argv, s->verb_slot);
	free(s->target);
	free(s->vm);
	free(s);
}

int dmr_shim_new(const char *kind, const char *target, const char *vm, struct dmr_shim **ret)
{
	_cleanup_shim_ struct dmr_shim *s = NULL;
	enum shim_kind k;
	int r;

	assert(ret);
	if (dmr_streq(kind, "qmp"))
		k = SHIM_QMP;
	else if (dmr_streq(kind, "exec"))
		k = SHIM_EXEC;
	else if (dmr_streq(kind, "none"))
		k = SHIM_NONE;
	else if (dmr_streq(kind, "libvirt"))
		return dmr_shim_new_libvirt(NULL, target, vm, ret);
	else
		return -EINVAL;
	if (!vm || !vm[0] || (k != SHIM_NONE && (!target || !target[0])))
		return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->kind = k;
	s->timeout_ms = DMR_SHIM_TIMEOUT_MS;
	s->vm = strdup(vm);
	if (!s->vm)
		return -ENOMEM;
	if (k == SHIM_QMP) {
		s->target = strdup(target);
		if (!s->target)
			return -ENOMEM;
	} else if (k == SHIM_EXEC) {
		r = split_command(target, vm, &s->argv, &s->verb_slot);
		if (r < 0)
			return r;
	}
	*ret = DMR_TAKE_PTR(s);
	return 0;
}

int dmr_shim_new_libvirt(const char *uri, const char *domain, const char *vm,
			 struct dmr_shim **ret)
{
	_cleanup_shim_ struct dmr_shim *s = NULL;
	int r;

	assert(ret);
	if (!vm || !vm[0] || !domain || !domain[0])
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->kind = SHIM_LIBVIRT;
	s->timeout_ms = DMR_SHIM_TIMEOUT_MS;
	s->vm = strdup(vm);
	if (!s->vm)
		return -ENOMEM;
	if ((r = dmr_libvirt_new(uri, domain, &s->lv)) < 0)
		return r;
	*ret = DMR_TAKE_PTR(s);
	return 0;
}

int dmr_shim_new_for_vm(const struct dmr_vm *vm, struct dmr_shim **ret)
{
	assert(vm && ret);
	if (vm->qmp)
		return dmr_shim_new("qmp", vm->qmp, vm->name, ret);
	if (vm->exec_shim)
		return dmr_shim_new("exec", vm->exec_shim, vm->name, ret);
	if (vm->libvirt)
		return dmr_shim_new_libvirt(vm->libvirt_uri, vm->libvirt, vm->name, ret);
	return dmr_shim_new("none", NULL, vm->name, ret);
}

bool dmr_shim_vm_has_hypervisor(const struct dmr_vm *vm)
{
	assert(vm);
	return vm->qmp || vm->exec_shim || vm->libvirt;
}

bool dmr_shim_vm_can_freeze(const struct dmr_vm *vm)
{
	assert(vm);
	return vm->libvirt && !vm->qmp && !vm->exec_shim;
}

int dmr_shim_set_timeout(struct dmr_shim *s, int timeout_ms)
{
	assert(s);
	if (timeout_ms <= 0)
		return -EINVAL;
	s->timeout_ms = timeout_ms;
	if (s->qmp)
		dmr_qmp_set_timeout(s->qmp, timeout_ms);
	return 0;
}

const char *dmr_shim_kind(const struct dmr_shim *s)
{
	assert(s);
	return kind_names[s->kind];
}

const char *dmr_shim_last_error(const struct dmr_shim *s)
{
	assert(s);
	return s->error;
}

/* ---- qmp ------------------------------------------------------------------ */

static int qmp_connect(struct dmr_shim *s)
{
	int r;

	r = dmr_qmp_connect(s->target,
			    s->timeout_ms < DMR_SHIM_CONNECT_TIMEOUT_MS ? s->timeout_ms
									: DMR_SHIM_CONNECT_TIMEOUT_MS,
			    &s->qmp);
	if (r == -EACCES)
		return set_error(s, -EHOSTUNREACH, "refusing to connect to QMP at %s: it no longer "
				 "resolves inside a --socket-dir", s->target);
	if (r < 0)
		return set_error(s, r, "cannot connect to QMP at %s: %s", s->target, strerror(-r));
	dmr_qmp_set_timeout(s->qmp, s->timeout_ms);
	return 0;
}

static int qmp_run(struct dmr_shim *s, const char *command, struct json_object **ret_return)
{
	bool fresh = false;
	int r;

	for (;;) {
		if (!s->qmp) {
			r = qmp_connect(s);
			if (r < 0)
				return r;
			fresh = true;
		}
		r = dmr_qmp_execute(s->qmp, command, NULL, s->timeout_ms, ret_return);
		if (r == 0)
			return 0;
		if (r == -EIO)
			return set_error(s, r, "%s: %s", command, dmr_qmp_last_error(s->qmp));
		if (r == -ETIMEDOUT)
			/* The late reply carries an id the next command's
			 * wait skips: the connection stays usable. */
			return set_error(s, r, "%s: no answer from QEMU in %d ms", command,
					 s->timeout_ms);
		dmr_qmp_free(s->qmp);
		s->qmp = NULL;
		if (r != -EHOSTUNREACH || fresh)
			return set_error(s, r, "%s: %s", command, strerror(-r));
		/* A connection kept from an earlier operation died since:
		 * one new connection tells whether QEMU is still there. */
		log_debug("shim qmp %s: kept connection lost, reconnecting", s->vm);
	}
}

static int qmp_status(struct dmr_shim *s, enum dmr_guest_status *ret_status)
{
	struct json_object *ret = NULL, *st;
	int r;

	r = qmp_run(s, "query-status", &ret);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(ret, "status", &st) ||
	    !json_object_is_type(st, json_type_string)) {
		json_object_put(ret);
		return set_error(s, -EPROTO, "query-status: no status in the reply");
	}
	*ret_status = dmr_guest_status_from_qmp(json_object_get_string(st));
	json_object_put(ret);
	return 0;
}

/* ---- exec ----------------------------------------------------------------- */

static int pidfd_open_nocloexec(pid_t pid)
{
#ifdef SYS_pidfd_open
	/* pidfds are always close-on-exec. */
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* In the child, between fork and execve: async-signal-safe calls only. */
_Noreturn static void exec_child(char **argv, int out_fd, int err_fd)
{
	sigset_t none;
	int e, nul;

	(void)setpgid(0, 0);
	/* The agent's threads may block signals and ignore SIGPIPE; a shim
	 * command must start with the defaults. */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	(void)signal(SIGPIPE, SIG_DFL);
	/* An agent started with stdin or stdout closed gets pipes at fds
	 * 0..2: move them above stderr before stdin and stdout are set. */
	out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
	err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, 3);
	if (out_fd < 0 || err_fd < 0)
		_exit(127);
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nul < 0 || dup2(nul, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    fcntl(STDIN_FILENO, F_SETFD, 0) < 0 || fcntl(STDOUT_FILENO, F_SETFD, 0) < 0)
		goto fail;
#ifdef SYS_close_range
	/* Descriptors other modules opened without O_CLOEXEC must not leak
	 * into the command: mark everything above stderr close-on-exec. */
	(void)syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
#endif
	execve(argv[0], argv, environ);
fail:
	e = errno;
	(void)!write(err_fd, &e, sizeof(e));
	_exit(127);
}

static void kill_group(pid_t pid)
{
	(void)kill(-pid, SIGKILL);
	(void)kill(pid, SIGKILL);
}

/* Reap pid; true once it has exited (status in *ret_status). */
static bool reap(pid_t pid, bool block, int *ret_status)
{
	for (;;) {
		pid_t w = waitpid(pid, ret_status, block ? 0 : WNOHANG);

		if (w == pid)
			return true;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			/* ECHILD: someone else reaped it (see shim.h). */
			*ret_status = -1;
			return true;
		}
		return false;
	}
}

static int exec_run(struct dmr_shim *s, const char *verb, char *out, size_t out_size)
{
	uint64_t deadline = dmr_deadline_from_ms(s->timeout_ms);
	_cleanup_close_ int out_r = -1, out_w = -1, err_r = -1, err_w = -1, pidfd = -1;
	int fds[2], status = 0, child_errno = 0;
	bool exited = false;
	size_t got = 0;
	pid_t pid;

	s->argv[s->verb_slot] = (char *)verb;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return set_error(s, dmr_negerrno(), "pipe: %m");
	out_r = fds[0], out_w = fds[1];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return set_error(s, dmr_negerrno(), "pipe: %m");
	err_r = fds[0], err_w = fds[1];

	pid = fork();
	if (pid < 0)
		return set_error(s, dmr_negerrno(), "fork: %m");
	if (pid == 0)
		exec_child(s->argv, out_w, err_w);
	/* Also here, so that a timeout right away finds the group. */
	(void)setpgid(pid, pid);
	close(DMR_TAKE_FD(out_w));
	close(DMR_TAKE_FD(err_w));
	(void)fcntl(out_r, F_SETFL, O_NONBLOCK);
	pidfd = pidfd_open_nocloexec(pid);

	while (!exited) {
		struct pollfd p[2] = {
			{ .fd = pidfd, .events = POLLIN },
			{ .fd = out_r, .events = POLLIN },
		};
		uint64_t now = dmr_now_usec();
		int ms, k;

		if (now >= deadline) {
			kill_group(pid);
			(void)reap(pid, true, &status);
			return set_error(s, -ETIMEDOUT, "%s %s %s: killed after %d ms", s->argv[0],
					 verb, s->vm, s->timeout_ms);
		}
		ms = (int)((deadline - now + 999) / 1000);
		/* Without a pidfd (old kernel) the exit is noticed by
		 * polling waitpid every few milliseconds. */
		if (pidfd < 0 && ms > 5)
			ms = 5;
		k = poll(p, 2, ms);
		if (k < 0 && errno != EINTR) {
			int r = dmr_negerrno();

			kill_group(pid);
			(void)reap(pid, true, &status);
			return set_error(s, r, "poll: %s", strerror(-r));
		}
		if (k > 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			char sink[512];
			char *dst = got < out_size - 1 ? out + got : sink;
			size_t room = got < out_size - 1 ? out_size - 1 - got : sizeof(sink);
			ssize_t n = read(out_r, dst, room);

			if (n > 0 && dst != sink)
				got += (size_t)n;
			else if (n == 0)
				close(DMR_TAKE_FD(out_r)); /* poll ignores fd -1 */
		}
		exited = reap(pid, false, &status);
	}
	/* The command is gone; a background child of it may still hold the
	 * pipe, so take only what is already there. */
	while (out_r >= 0 && got < out_size - 1) {
		ssize_t n = read(out_r, out + got, out_size - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';

	if (read(err_r, &child_errno, sizeof(child_errno)) == (ssize_t)sizeof(child_errno))
		return set_error(s, -EHOSTUNREACH, "cannot run %s: %s", s->argv[0],
				 strerror(child_errno));
	if (status == -1)
		return set_error(s, -ECHILD, "%s %s %s: exit status lost", s->argv[0], verb, s->vm);
	if (WIFSIGNALED(status))
		return set_error(s, -EIO, "%s %s %s: killed by signal %d", s->argv[0], verb, s->vm,
				 WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		return set_error(s, -EIO, "%s %s %s: exit status %d", s->argv[0], verb, s->vm,
				 WEXITSTATUS(status));
	return 0;
}

static int exec_status(struct dmr_shim *s, enum dmr_guest_status *ret_status)
{
	static const struct {
		const char *word;
		enum dmr_guest_status status;
	} words[] = {
		{ "running", DMR_GUEST_RUNNING },	{ "paused", DMR_GUEST_PAUSED },
		{ "suspended", DMR_GUEST_PAUSED },	{ "stopped", DMR_GUEST_NOT_RUNNING },
		{ "shutoff", DMR_GUEST_NOT_RUNNING },	{ "shutdown", DMR_GUEST_NOT_RUNNING },
		{ "unknown", DMR_GUEST_UNKNOWN },
	};
	char out[EXEC_OUT_MAX];
	const char *w;
	size_t len;
	int r;

	r = exec_run(s, "status", out, sizeof(out));
	if (r < 0)
		return r;
	for (w = out; *w && isspace((unsigned char)*w); w++)
		;
	for (len = 0; w[len] && !isspace((unsigned char)w[len]); len++)
		;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(words); i++)
		if (len == strlen(words[i].word) && strncasecmp(w, words[i].word, len) == 0) {
			*ret_status = words[i].status;
			return 0;
		}
	return set_error(s, -EPROTO, "%s status %s: unexpected output \"%.*s\"", s->argv[0], s->vm,
			 (int)(len > 64 ? 64 : len), w);
}

/* ---- libvirt -------------------------------------------------------------- */

/* Its error line becomes the shim's. */
static int lv_done(struct dmr_shim *s, int r)
{
	if (r < 0)
		snprintf(s->error, sizeof(s->error), "%s", dmr_libvirt_last_error(s->lv));
	return r;
}

/* ---- operations ----------------------------------------------------------- */

static int run_verb(struct dmr_shim *s, const char *qmp_command, const char *verb,
		    int (*lv_op)(struct dmr_libvirt *))
{
	char out[64];

	assert(s);
	s->error[0] = '\0';
	switch (s->kind) {
	case SHIM_QMP:
		return qmp_run(s, qmp_command, NULL);
	case SHIM_EXEC:
		return exec_run(s, verb, out, sizeof(out));
	case SHIM_NONE:
		return 0;
	case SHIM_LIBVIRT:
		return lv_done(s, lv_op(s->lv));
	}
	return -EINVAL;
}

int dmr_shim_status(struct dmr_shim *s, enum dmr_guest_status *ret_status)
{
	assert(s && ret_status);
	s->error[0] = '\0';
	switch (s->kind) {
	case SHIM_QMP:
		return qmp_status(s, ret_status);
	case SHIM_EXEC:
		return exec_status(s, ret_status);
	case SHIM_NONE:
		*ret_status = DMR_GUEST_NOT_RUNNING;
		return 0;
	case SHIM_LIBVIRT:
		return lv_done(s, dmr_libvirt_status(s->lv, ret_status));
	}
	return -EINVAL;
}

int dmr_shim_pause(struct dmr_shim *s)
{
	return run_verb(s, "stop", "pause", dmr_libvirt_suspend);
}

int dmr_shim_resume(struct dmr_shim *s)
{
	return run_verb(s, "cont", "resume", dmr_libvirt_resume);
}

int dmr_shim_reset(struct dmr_shim *s)
{
	return run_verb(s, "system_reset", "reset", dmr_libvirt_reset);
}

int dmr_shim_fsfreeze(struct dmr_shim *s, int *ret_count)
{
	assert(s && ret_count);
	s->error[0] = '\0';
	if (s->kind != SHIM_LIBVIRT) {
		snprintf(s->error, sizeof(s->error), "the %s shim freezes no filesystem",
			 kind_names[s->kind]);
		return -EOPNOTSUPP;
	}
	return lv_done(s, dmr_libvirt_fsfreeze(s->lv, ret_count));
}

int dmr_shim_fsthaw(struct dmr_shim *s)
{
	assert(s);
	s->error[0] = '\0';
	if (s->kind != SHIM_LIBVIRT) {
		snprintf(s->error, sizeof(s->error), "the %s shim freezes no filesystem",
			 kind_names[s->kind]);
		return -EOPNOTSUPP;
	}
	return lv_done(s, dmr_libvirt_fsthaw(s->lv));
}
