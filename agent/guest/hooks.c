/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/guest/hooks.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define HOOKS_MAX 64
#define ENV_MAX 128

struct env {
	char *v[ENV_MAX];
	size_t n;
};

__attribute__((format(printf, 2, 3))) static int env_add(struct env *e, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int k;

	if (e->n + 1 >= ENV_MAX)
		return -E2BIG;
	va_start(ap, fmt);
	k = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (k < 0)
		return -ENOMEM;
	e->v[e->n++] = s;
	e->v[e->n] = NULL;
	return 0;
}

static void env_free(struct env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
}

/* "a b c" from a JSON array of strings. */
static char *join(struct json_object *nic, const char *key)
{
	struct json_object *arr;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	if (json_object_object_get_ex(nic, key, &arr) && json_object_is_type(arr, json_type_array))
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			fprintf(f, "%s%s", i ? " " : "",
				json_object_get_string(json_object_array_get_idx(arr, i)));
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static int build_env(struct env *e, const char *vm, uint64_t point, bool test,
		     struct json_object *network)
{
	size_t nics = network ? json_object_array_length(network) : 0;
	int r;

	if ((r = env_add(e, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")) ||
	    (r = env_add(e, "DMREP_OPERATION=%s", test ? "test-failover" : "failover")) ||
	    (r = env_add(e, "DMREP_VM=%s", vm)) || (r = env_add(e, "DMREP_POINT=%" PRIu64, point)) ||
	    (r = env_add(e, "DMREP_TEST=%d", test ? 1 : 0)) ||
	    (r = env_add(e, "DMREP_NETWORK=%s",
			 network ? json_object_to_json_string_ext(network, JSON_C_TO_STRING_PLAIN) : "[]")) ||
	    (r = env_add(e, "DMREP_NICS=%zu", nics)))
		return r;
	for (size_t i = 0; i < nics; i++) {
		struct json_object *nic = json_object_array_get_idx(network, i), *mac;
		static const char *const keys[] = { "addresses", "gateways", "dns" };
		static const char *const vars[] = { "ADDRESSES", "GATEWAYS", "DNS" };

		if (!json_object_object_get_ex(nic, "mac", &mac))
			return -EINVAL;
		if ((r = env_add(e, "DMREP_NIC%zu_MAC=%s", i, json_object_get_string(mac))))
			return r;
		for (size_t k = 0; k < 3; k++) {
			_cleanup_free_ char *v = join(nic, keys[k]);

			if (!v)
				return -ENOMEM;
			if ((r = env_add(e, "DMREP_NIC%zu_%s=%s", i, vars[k], v)))
				return r;
		}
	}
	return 0;
}

/* Longer than any error a job keeps (engine/job.c): the report loses
 * nothing. */
#define ERROR_MAX 1024

__attribute__((format(printf, 2, 3))) static void report_error(const struct dmr_hooks_report *rep,
							       const char *fmt, ...)
{
	char msg[ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rep->error(rep->userdata, msg);
}

static bool name_ok(const char *n)
{
	if (!*n)
		return false;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
		      *n == '_' || *n == '-'))
			return false;
	return true;
}

/* Root's alone: a hook runs as root. */
static bool safe(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* In the child, between fork and execve (async-signal-safe calls only):
 * a hook gets stdin, stdout and stderr, nothing else of the agent's.
 * Other modules' descriptors opened without O_CLOEXEC (libdevmapper's
 * control node, a VM's monitor socket) would be the hook's to use. */
static void close_from_3(void)
{
	struct rlimit rl;

#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
		return;
#endif
	/* Before Linux 5.9: every descriptor the limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > (1u << 20))
		rl.rlim_cur = 1u << 20;
	for (int fd = 3; fd < (int)rl.rlim_cur; fd++)
		(void)close(fd);
}

/* Run one hook; its exit status (0..255), 128+signal, or -errno. */
static int run_one(const char *path, char *const *envp)
{
	uint64_t deadline = dmr_now_usec() + (uint64_t)DMR_HOOK_TIMEOUT_SEC * 1000000;
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		sigset_t none;

		/* Its own process group, so a timeout kills what it started. */
		(void)setpgid(0, 0);
		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		if (fd < 0 || dup2(fd, STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
			_exit(126);
		close_from_3();
		execve(path, (char *const[]){ (char *)path, NULL }, envp);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (dmr_now_usec() >= deadline) {
			(void)kill(-pid, SIGKILL);
			(void)kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int dmr_hooks_run(const struct dmr_hooks_report *rep, const char *dir, const char *vm,
		  uint64_t point, bool test, struct json_object *network)
{
	struct env env = { .n = 0 };
	char *names[HOOKS_MAX];
	size_t n = 0;
	struct json_object *results;
	struct stat st;
	DIR *d;
	struct dirent *de;
	int r = 0;

	assert(rep && rep->step && rep->results && rep->error);
	if (!dir)
		return 0;
	assert(vm);
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0; /* no hooks configured */
		r = -errno;
		report_error(rep, "hook directory %s: %s", dir, strerror(-r));
		return r;
	}
	if (fstat(dirfd(d), &st) < 0 || !safe(&st)) {
		closedir(d);
		report_error(rep, "hook directory %s is not root's alone: no hook was run", dir);
		return -EPERM;
	}
	while ((de = readdir(d)) && n < HOOKS_MAX) {
		if (!name_ok(de->d_name) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
			continue;
		if (!safe(&st)) {
			r = -EPERM;
			report_error(rep, "hook %s/%s is not root's alone: no hook was run", dir,
				     de->d_name);
			break;
		}
		if (!(names[n] = strdup(de->d_name))) {
			r = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (r == 0 && n > 0) {
		qsort(names, n, sizeof(*names), cmp_str);
		r = build_env(&env, vm, point, test, network);
		if (r < 0)
			report_error(rep, "cannot prepare the hooks' environment: %s", strerror(-r));
	}
	results = json_object_new_array();
	for (size_t i = 0; r == 0 && i < n; i++) {
		_cleanup_free_ char *path = NULL;
		struct json_object *o = json_object_new_object();
		char step[64];
		uint64_t t0 = dmr_now_usec(), dt;
		int x;

		if (asprintf(&path, "%s/%s", dir, names[i]) < 0) {
			path = NULL;
			r = -ENOMEM;
			json_object_put(o);
			break;
		}
		x = run_one(path, env.v);
		dt = dmr_now_usec() - t0;
		snprintf(step, sizeof(step), "hook:%s", names[i]);
		rep->step(rep->userdata, step, dt);
		json_object_object_add(o, "name", json_object_new_string(names[i]));
		json_object_object_add(o, "exit_status", x >= 0 ? json_object_new_int(x) : NULL);
		json_object_object_add(o, "usec", json_object_new_int64((int64_t)dt));
		json_object_array_add(results, o);
		log_info("VM %s: hook %s: %s %d in %" PRIu64 " ms", vm, names[i],
			 x >= 0 ? "exit" : "error", x, dt / 1000);
		if (x == -ETIMEDOUT) {
			report_error(rep, "failover hook %s ran past %d s and was killed", names[i],
				     DMR_HOOK_TIMEOUT_SEC);
			r = -ETIMEDOUT;
		} else if (x < 0) {
			report_error(rep, "failover hook %s: %s", names[i], strerror(-x));
			r = x;
		} else if (x != 0) {
			report_error(rep, "failover hook %s exited %d", names[i], x);
			r = -EIO;
		}
	}
	if (results)
		rep->results(rep->userdata, results);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	env_free(&env);
	return r;
}
