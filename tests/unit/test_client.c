/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: the dmrep client binary ($DMREP_BIN, else the build's)
 * against a scripted fake agent - a thread on a temporary Unix socket that
 * answers canned replies per method and records every request.  Checks the
 * requests the commands send (disk specs with ':' in paths and sizes, size
 * suffixes, relative paths made absolute, --test, integer points), the
 * output shapes with and without --json, job waiting, failed jobs, and the
 * failure contract: one JSON document on stdout, one line on stderr, and
 * the exit status of the return code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "common/util.h"

/* A canned reply for one call of method (without "id"; the fake adds the
 * request's).  Entries of a method are used in order, the last one for
 * every further call.  "CLOSE" closes the connection instead. */
struct canned {
	const char *method;
	const char *reply;
};

struct fake_agent {
	char dir[48];
	char path[80];
	int listen_fd;
	int stop[2];
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	const struct canned *script;
	bool used[32];
	struct json_object *requests; /* array, under lock */
};

struct result {
	int status; /* exit status, or 128 + signal */
	char *out, *err;
};

/* The Makefile passes its $(BUILD)/bin/dmrep; run from the repo root. */
#ifndef DMR_CLIENT_BIN
#define DMR_CLIENT_BIN "build/bin/dmrep"
#endif

static const char *client_bin(void)
{
	const char *b = getenv("DMREP_BIN");

	return b && *b ? b : DMR_CLIENT_BIN;
}

/* ---- the fake agent -------------------------------------------------------- */

static const char *pick_reply(struct fake_agent *fa, const char *method)
{
	const char *last = NULL;

	for (size_t i = 0; fa->script[i].method; i++) {
		if (!dmr_streq(fa->script[i].method, method))
			continue;
		last = fa->script[i].reply;
		if (!fa->used[i]) {
			fa->used[i] = true;
			return last;
		}
	}
	return last;
}

/* Answer one request line; false to drop the connection. */
static bool fake_handle(struct fake_agent *fa, int fd, const char *line)
{
	struct json_object *req = json_tokener_parse(line), *id = NULL, *rep, *m;
	const char *method = NULL, *canned, *text;
	bool keep = true;

	if (req && json_object_object_get_ex(req, "method", &m))
		method = json_object_get_string(m);
	if (req)
		json_object_object_get_ex(req, "id", &id);
	pthread_mutex_lock(&fa->lock);
	json_object_array_add(fa->requests, req ? json_object_get(req) : json_object_new_string(line));
	canned = method ? pick_reply(fa, method) : NULL;
	pthread_mutex_unlock(&fa->lock);
	if (dmr_streq(canned, "CLOSE")) {
		keep = false;
	} else {
		rep = json_tokener_parse(canned ? canned : "{\"return\": 32770, \"error\": \"unscripted\"}");
		/* A canned "id" (null: a refused connection) is sent as is. */
		if (!json_object_object_get_ex(rep, "id", NULL))
			json_object_object_add(rep, "id", id ? json_object_get(id) : NULL);
		text = json_object_to_json_string_ext(rep, JSON_C_TO_STRING_PLAIN);
		if (dmr_write_all(fd, text, strlen(text)) < 0 || dmr_write_all(fd, "\n", 1) < 0)
			keep = false;
		json_object_put(rep);
	}
	json_object_put(req);
	return keep;
}

/* Serve one connection until the client closes it or we are stopped. */
static void fake_serve(struct fake_agent *fa, int fd)
{
	char buf[1 << 16];
	size_t len = 0;

	for (;;) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { fa->stop[0], POLLIN, 0 } };
		char *nl;
		ssize_t k;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		if (p[1].revents)
			return;
		if (!p[0].revents)
			continue;
		k = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (k <= 0)
			return;
		len += (size_t)k;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = '\0';
			if (!fake_handle(fa, fd, buf))
				return;
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		if (len == sizeof(buf) - 1)
			return;
	}
}

static void *fake_main(void *arg)
{
	struct fake_agent *fa = arg;

	for (;;) {
		struct pollfd p[2] = { { fa->listen_fd, POLLIN, 0 }, { fa->stop[0], POLLIN, 0 } };
		int c;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		c = accept4(fa->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		fake_serve(fa, c);
		close(c);
	}
	return NULL;
}

static void fake_start(struct fake_agent *fa, const struct canned *script)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	fa->script = script;
	memset(fa->used, 0, sizeof(fa->used));
	fa->requests = json_object_new_array();
	assert_non_null(fa->requests);
	fa->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fa->listen_fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fa->path);
	assert_int_equal(bind(fa->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fa->listen_fd, 8), 0);
	assert_int_equal(pipe2(fa->stop, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&fa->thread, NULL, fake_main, fa), 0);
	fa->running = true;
}

static void fake_stop(struct fake_agent *fa)
{
	if (!fa->running)
		return;
	(void)!write(fa->stop[1], "x", 1);
	pthread_join(fa->thread, NULL);
	close(fa->stop[0]);
	close(fa->stop[1]);
	close(fa->listen_fd);
	unlink(fa->path);
	json_object_put(fa->requests);
	fa->requests = NULL;
	fa->running = false;
}

static size_t n_requests(struct fake_agent *fa)
{
	size_t n;

	pthread_mutex_lock(&fa->lock);
	n = json_object_array_length(fa->requests);
	pthread_mutex_unlock(&fa->lock);
	return n;
}

/* Request k's params, checking its method; borrowed from fa->requests. */
static struct json_object *request_params(struct fake_agent *fa, size_t k, const char *method)
{
	struct json_object *req, *v;

	pthread_mutex_lock(&fa->lock);
	req = json_object_array_get_idx(fa->requests, k);
	pthread_mutex_unlock(&fa->lock);
	assert_non_null(req);
	assert_true(json_object_object_get_ex(req, "method", &v));
	assert_string_equal(json_object_get_string(v), method);
	assert_true(json_object_object_get_ex(req, "id", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_true(json_object_object_get_ex(req, "params", &v));
	assert_true(json_object_is_type(v, json_type_object));
	return v;
}

static size_t count_method(struct fake_agent *fa, const char *method)
{
	size_t n = 0;

	pthread_mutex_lock(&fa->lock);
	for (size_t i = 0; i < json_object_array_length(fa->requests); i++) {
		struct json_object *m;

		if (json_object_object_get_ex(json_object_array_get_idx(fa->requests, i), "method", &m) &&
		    dmr_streq(json_object_get_string(m), method))
			n++;
	}
	pthread_mutex_unlock(&fa->lock);
	return n;
}

/* ---- running the client ------------------------------------------------------- */

/* Run the client with args (NULL-terminated); socket_env: pass the fake's
 * socket in $DMREP_SOCKET rather than leaving it to the args. */
static void run_argv(struct fake_agent *fa, struct result *res, const char *socket_env, const char *const *args)
{
	char out_path[128], err_path[128];
	const char *argv[40];
	size_t n = 0, len;
	pid_t pid;
	int st;

	argv[n++] = client_bin();
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < DMR_ARRAY_SIZE(argv) - 1);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	snprintf(out_path, sizeof(out_path), "%s/out", fa->dir);
	snprintf(err_path, sizeof(err_path), "%s/err", fa->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
			_exit(126);
		if (socket_env)
			setenv("DMREP_SOCKET", socket_env, 1);
		else
			unsetenv("DMREP_SOCKET");
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	free(res->out);
	free(res->err);
	res->out = res->err = NULL;
	assert_int_equal(dmr_read_file(out_path, 1 << 20, &res->out, &len), 0);
	assert_int_equal(dmr_read_file(err_path, 1 << 20, &res->err, &len), 0);
	assert_int_not_equal(res->status, 127);
}

#define RUN_ENV(fa, res, env, ...)                                                   \
	do {                                                                         \
		const char *const _a[] = { __VA_ARGS__, NULL };                      \
		run_argv((fa), (res), (env), _a);                                   \
	} while (0)
/* The usual call: the fake's socket on the command line, at the end. */
#define RUN(fa, res, ...) RUN_ENV(fa, res, NULL, __VA_ARGS__, "--socket", (fa)->path)

/* text is exactly one line holding a JSON document equal to expected. */
static void assert_json_doc(const char *text, const char *expected)
{
	struct json_object *got, *want = json_tokener_parse(expected);
	const char *nl = strchr(text, '\n');
	bool eq;

	assert_non_null(want);
	if (!nl || nl[1] != '\0')
		fail_msg("not exactly one line: '%s'", text);
	got = json_tokener_parse(text);
	if (!got)
		fail_msg("not JSON: '%s'", text);
	eq = json_object_equal(got, want);
	if (!eq)
		fail_msg("got %s, want %s", json_object_to_json_string(got), json_object_to_json_string(want));
	json_object_put(got);
	json_object_put(want);
}

/* The failure contract with --json: {"return": rc, "error": ...} on stdout,
 * one "dmrep: " line on stderr, exit status rc - 32767. */
static void assert_failed(const struct result *res, int rc)
{
	struct json_object *o = json_tokener_parse(res->out), *v;
	const char *nl = strchr(res->out, '\n');

	if (!o)
		fail_msg("stdout is not JSON: '%s' (stderr '%s')", res->out, res->err);
	assert_true(nl && nl[1] == '\0');
	assert_int_equal(json_object_object_length(o), 2);
	assert_true(json_object_object_get_ex(o, "return", &v));
	assert_int_equal(json_object_get_int(v), rc);
	assert_true(json_object_object_get_ex(o, "error", &v));
	assert_true(json_object_is_type(v, json_type_string));
	assert_true(json_object_get_string_len(v) > 0);
	json_object_put(o);
	assert_int_equal(res->status, rc - 32767);
	assert_true(dmr_startswith(res->err, "dmrep: "));
	nl = strchr(res->err, '\n');
	assert_true(nl && nl[1] == '\0');
}

static const char *str_at(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		fail_msg("no string %s in %s", key, json_object_to_json_string(o));
	return json_object_get_string(v);
}

static int64_t int_at(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		fail_msg("no integer %s in %s", key, json_object_to_json_string(o));
	return json_object_get_int64(v);
}

struct state {
	struct fake_agent fa;
	struct result res;
};

static int setup(void **st)
{
	struct state *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	if (access(client_bin(), X_OK) < 0) {
		fprintf(stderr, "test_client: no client binary at %s (build it, or set DMREP_BIN)\n",
			client_bin());
		free(s);
		return -1;
	}
	snprintf(s->fa.dir, sizeof(s->fa.dir), "/tmp/dmr-client-XXXXXX");
	if (!mkdtemp(s->fa.dir)) {
		free(s);
		return -1;
	}
	snprintf(s->fa.path, sizeof(s->fa.path), "%s/sock", s->fa.dir);
	pthread_mutex_init(&s->fa.lock, NULL);
	*st = s;
	return 0;
}

static int teardown(void **st)
{
	struct state *s = *st;
	char p[128];

	fake_stop(&s->fa);
	snprintf(p, sizeof(p), "%s/out", s->fa.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/err", s->fa.dir);
	unlink(p);
	unlink(s->fa.path);
	rmdir(s->fa.dir);
	pthread_mutex_destroy(&s->fa.lock);
	free(s->res.out);
	free(s->res.err);
	free(s);
	return 0;
}

#define JOB_DONE(id, extra)                                                                   \
	"{\"return\": 0, \"job\": {\"id\": " #id ", \"method\": \"X\", \"vm\": \"web\", "   \
	"\"job_state\": 7, \"state\": \"completed\", \"percent_complete\": 100, "            \
	"\"error_code\": 0, \"error_description\": \"\"" extra "}}"
#define JOB_RUNNING(id)                                                                       \
	"{\"return\": 0, \"job\": {\"id\": " #id ", \"method\": \"X\", \"vm\": \"web\", "   \
	"\"job_state\": 4, \"state\": \"running\", \"percent_complete\": 30, "               \
	"\"error_code\": 0, \"error_description\": \"\"}}"

/* ---- tests ------------------------------------------------------------------------ */

static void test_vm_add_disks(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "AddVirtualSystem", "{\"return\": 4096, \"job\": 5, \"vm\": \"web\"}" },
		{ "GetJob", JOB_DONE(5, "") },
		{ NULL, NULL },
	};
	struct json_object *p, *disks, *d, *v;
	char cwd[PATH_MAX], want[PATH_MAX + 32];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "add", "web", "--disk", "vda=/img/a:b.raw", "--json", "--disk",
	    "vdb=rel.img:1G", "--disk", "vdc=/x:y:512K", "--disk", "vdd=tests/../new.img:4m", "--keep-last", "3",
	    "--max-age", "3600", "--qmp", "/run/q.sock", "--backend", "classic");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 0, \"vm\": \"web\", \"job\": 5}");
	assert_string_equal(s->res.err, "");

	p = request_params(&s->fa, 0, "AddVirtualSystem");
	assert_string_equal(str_at(p, "vm"), "web");
	assert_string_equal(str_at(p, "backend"), "classic");
	assert_string_equal(str_at(p, "qmp"), "/run/q.sock");
	assert_int_equal(int_at(p, "keep_last"), 3);
	assert_int_equal(int_at(p, "max_age"), 3600);
	assert_true(json_object_object_get_ex(p, "disks", &disks));
	assert_int_equal(json_object_array_length(disks), 4);
	/* ":b.raw" is no size: the whole thing is the path. */
	d = json_object_array_get_idx(disks, 0);
	assert_string_equal(str_at(d, "name"), "vda");
	assert_string_equal(str_at(d, "path"), "/img/a:b.raw");
	assert_false(json_object_object_get_ex(d, "size_bytes", &v));
	/* Relative: made absolute against our cwd; 1G in bytes. */
	d = json_object_array_get_idx(disks, 1);
	snprintf(want, sizeof(want), "%s/rel.img", cwd);
	assert_string_equal(str_at(d, "path"), want);
	assert_int_equal(int_at(d, "size_bytes"), 1073741824LL);
	/* Split at the last ':' only. */
	d = json_object_array_get_idx(disks, 2);
	assert_string_equal(str_at(d, "path"), "/x:y");
	assert_int_equal(int_at(d, "size_bytes"), 524288);
	/* The directory is resolved, so the agent gets no "..". */
	d = json_object_array_get_idx(disks, 3);
	snprintf(want, sizeof(want), "%s/new.img", cwd);
	assert_string_equal(str_at(d, "path"), want);
	assert_int_equal(int_at(d, "size_bytes"), 4 << 20);
	assert_int_equal(count_method(&s->fa, "GetJob"), 1);
	assert_int_equal(int_at(request_params(&s->fa, 1, "GetJob"), "job"), 5);
}

static void test_pool_create_sizes(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "CreatePool", "{\"return\": 0, \"pool\": {\"device\": \"/dev/mapper/dmrep-pool\"}}" },
		{ NULL, NULL },
	};
	struct json_object *p, *v;
	char cwd[PATH_MAX], want[PATH_MAX + 32];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "--json", "pool", "create", "--data", "/srv/pool.data", "--data-size", "20G",
	    "--meta", "no-such-dir-7f3a/pool.meta", "--meta-size", "64M", "--force");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 0, \"pool\": {\"device\": \"/dev/mapper/dmrep-pool\"}}");
	p = request_params(&s->fa, 0, "CreatePool");
	assert_string_equal(str_at(p, "data"), "/srv/pool.data");
	snprintf(want, sizeof(want), "%s/no-such-dir-7f3a/pool.meta", cwd);
	assert_string_equal(str_at(p, "meta"), want);
	assert_int_equal(int_at(p, "data_size"), 21474836480LL);
	assert_int_equal(int_at(p, "meta_size"), 67108864);
	assert_true(json_object_object_get_ex(p, "force", &v));
	assert_true(json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v));
}

static void test_failover_methods(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "TestReplicaSystem", "{\"return\": 4096, \"job\": 9}" },
		{ "InitiateFailover", "{\"return\": 4096, \"job\": 10}" },
		{ "RevertFailover", "{\"return\": 4096, \"job\": 11}" },
		{ "CommitFailover", "{\"return\": 4096, \"job\": 12}" },
		{ "StopTestReplicaSystem", "{\"return\": 4096, \"job\": 13}" },
		{ NULL, NULL },
	};
	struct json_object *p, *v;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "failover", "start", "web", "--test", "--point", "3", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 9}");
	p = request_params(&s->fa, 0, "TestReplicaSystem");
	assert_string_equal(str_at(p, "vm"), "web");
	assert_true(json_object_object_get_ex(p, "point", &v));
	assert_true(json_object_is_type(v, json_type_int));
	assert_int_equal(json_object_get_int64(v), 3);
	assert_false(json_object_object_get_ex(p, "guest", NULL));

	RUN(&s->fa, &s->res, "failover", "start", "--guest", "resume", "web", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 10}");
	p = request_params(&s->fa, 1, "InitiateFailover");
	assert_string_equal(str_at(p, "guest"), "resume");
	assert_false(json_object_object_get_ex(p, "point", NULL));

	RUN(&s->fa, &s->res, "failover", "revert", "web", "--guest", "resume", "--json");
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 11}");
	assert_string_equal(str_at(request_params(&s->fa, 2, "RevertFailover"), "guest"), "resume");
	RUN(&s->fa, &s->res, "failover", "commit", "web", "--json");
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 12}");
	RUN(&s->fa, &s->res, "failover", "stop-test", "web", "--json");
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 13}");
	assert_int_equal(s->res.status, 0);
	(void)request_params(&s->fa, 2, "RevertFailover");
	(void)request_params(&s->fa, 3, "CommitFailover");
	assert_string_equal(str_at(request_params(&s->fa, 4, "StopTestReplicaSystem"), "vm"), "web");
	/* Nothing was waited for. */
	assert_int_equal(count_method(&s->fa, "GetJob"), 0);
}

static void test_point_create_waits(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "CreateReplicationPoint", "{\"return\": 4096, \"job\": 21}" },
		{ "GetJob", JOB_RUNNING(21) },
		{ "GetJob", JOB_DONE(21, ", \"point\": 7") },
		{ NULL, NULL },
	};
	struct json_object *p;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web", "--label", "--json", "--json", "--consistency", "crash");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 0, \"point\": 7}");
	p = request_params(&s->fa, 0, "CreateReplicationPoint");
	assert_string_equal(str_at(p, "vm"), "web");
	/* An option's value may look like an option. */
	assert_string_equal(str_at(p, "label"), "--json");
	assert_string_equal(str_at(p, "consistency"), "crash");
	assert_int_equal(count_method(&s->fa, "GetJob"), 2);
	assert_int_equal(int_at(request_params(&s->fa, 2, "GetJob"), "job"), 21);

	/* Plainly: "point ID". */
	fake_stop(&s->fa);
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web");
	assert_int_equal(s->res.status, 0);
	assert_string_equal(s->res.out, "point 7\n");
	/* --cow-dev DISK=DEVICE: an object, paths made absolute. */
	fake_stop(&s->fa);
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web", "--cow-dev", "vda=/dev/vg0/c1", "--cow-dev",
	    "vdb=tests/../c2", "--force", "--json");
	assert_int_equal(s->res.status, 0);
	p = request_params(&s->fa, 0, "CreateReplicationPoint");
	{
		struct json_object *m;
		char cwd[PATH_MAX], want[PATH_MAX + 8];

		assert_non_null(getcwd(cwd, sizeof(cwd)));
		snprintf(want, sizeof(want), "%s/c2", cwd);
		assert_true(json_object_object_get_ex(p, "cow_devices", &m));
		assert_int_equal(json_object_object_length(m), 2);
		assert_string_equal(str_at(m, "vda"), "/dev/vg0/c1");
		assert_string_equal(str_at(m, "vdb"), want);
		assert_true(json_object_get_boolean(json_object_object_get(p, "force")));
	}
}

/* vm replicate: settings to SetReplication; --now to StartReplicationCycle,
 * answered with the job, or with --wait the finished job and its outcome. */
static void test_vm_replicate(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "SetReplication", "{\"return\": 0}" },
		{ "SetReplication", "{\"return\": 0}" },
		{ "StartReplicationCycle", "{\"return\": 4096, \"job\": 31}" },
		{ "StartReplicationCycle", "{\"return\": 4096, \"job\": 32}" },
		{ "GetJob", "{\"return\": 0, \"job\": {\"id\": 32, \"method\": \"ReplicationCycle\", "
			    "\"vm\": \"web\", \"job_state\": 10, \"state\": \"exception\", "
			    "\"error_code\": 32775, \"error_description\": \"the receiver refused\"}}" },
		{ "StartReplicationCycle", "{\"return\": 32770, \"error\": \"not supported\"}" },
		{ NULL, NULL },
	};
	struct json_object *p;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "replicate", "web", "--to", "ssh b dmrep --json point receive web",
	    "--interval", "60", "--bandwidth", "2M", "--compress", "zstd", "--consistency", "crash",
	    "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 0}");
	p = request_params(&s->fa, 0, "SetReplication");
	assert_string_equal(str_at(p, "vm"), "web");
	assert_string_equal(str_at(p, "to"), "ssh b dmrep --json point receive web");
	assert_int_equal(int_at(p, "interval"), 60);
	assert_int_equal(int_at(p, "bandwidth"), 2 << 20);
	assert_string_equal(str_at(p, "compress"), "zstd");
	RUN(&s->fa, &s->res, "vm", "replicate", "web", "--pause", "--json");
	assert_int_equal(s->res.status, 0);
	p = request_params(&s->fa, 1, "SetReplication");
	assert_true(json_object_get_boolean(json_object_object_get(p, "pause")));
	assert_false(json_object_object_get_ex(p, "now", NULL));
	RUN(&s->fa, &s->res, "vm", "replicate", "web", "--now", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 4096, \"job\": 31}");
	p = request_params(&s->fa, 2, "StartReplicationCycle");
	assert_string_equal(str_at(p, "kind"), "cycle");
	assert_false(json_object_object_get_ex(p, "now", NULL));
	/* --wait: the finished job, the exit status its outcome's. */
	RUN(&s->fa, &s->res, "vm", "replicate", "web", "--now", "--wait", "--json");
	assert_int_equal(s->res.status, 32775 - 32767);
	assert_non_null(strstr(s->res.out, "\"ReplicationCycle\""));
	RUN(&s->fa, &s->res, "vm", "replicate", "web", "--verify", "--json");
	assert_int_equal(s->res.status, 32770 - 32767);
	assert_string_equal(str_at(request_params(&s->fa, 5, "StartReplicationCycle"), "kind"), "verify");
}

static void test_point_create_job_fails(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "CreateReplicationPoint", "{\"return\": 4096, \"job\": 22}" },
		{ "GetJob", "{\"return\": 0, \"job\": {\"id\": 22, \"job_state\": 10, \"state\": \"exception\", "
			    "\"error_code\": 32775, \"error_description\": \"VM web is recovered\"}}" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web", "--json");
	assert_failed(&s->res, 32775);
	assert_json_doc(s->res.out, "{\"return\": 32775, \"error\": \"VM web is recovered\"}");
	assert_string_equal(s->res.err, "dmrep: VM web is recovered\n");
}

static void test_job_failed_without_code(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "AddVirtualSystem", "{\"return\": 4096, \"job\": 23}" },
		{ "GetJob", "{\"return\": 0, \"job\": {\"id\": 23, \"job_state\": 8, \"state\": \"terminated\", "
			    "\"error_code\": 0, \"error_description\": \"\"}}" },
		{ NULL, NULL },
	};

	/* A job that ended badly is a failure even without an error code. */
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "add", "web", "--disk", "vda=/a.img", "--json");
	assert_failed(&s->res, 32768);
}

static void test_failover_wait(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "RevertFailover", "{\"return\": 4096, \"job\": 4}" },
		{ "CommitFailover", "{\"return\": 4096, \"job\": 5}" },
		{ "GetJob", JOB_RUNNING(4) },
		{ "GetJob", "{\"return\": 0, \"job\": {\"id\": 4, \"method\": \"RevertFailover\", \"job_state\": 10, "
			    "\"state\": \"exception\", \"error_code\": 32777, "
			    "\"error_description\": \"the hypervisor did not answer\"}}" },
		{ "GetJob", JOB_DONE(5, ", \"guest_paused_usec\": 1234") },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	/* Failed: the job itself on stdout, the exit status by its code. */
	RUN(&s->fa, &s->res, "failover", "revert", "web", "--wait", "--json");
	assert_int_equal(s->res.status, 32777 - 32767);
	assert_json_doc(s->res.out,
			"{\"id\": 4, \"method\": \"RevertFailover\", \"job_state\": 10, \"state\": \"exception\", "
			"\"error_code\": 32777, \"error_description\": \"the hypervisor did not answer\"}");
	assert_true(dmr_startswith(s->res.err, "dmrep: "));
	assert_non_null(strstr(s->res.err, "the hypervisor did not answer"));
	assert_ptr_equal(strchr(s->res.err, '\n'), s->res.err + strlen(s->res.err) - 1);
	assert_int_equal(count_method(&s->fa, "GetJob"), 2);

	RUN(&s->fa, &s->res, "failover", "commit", "--wait", "--json", "web");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"id\": 5, \"method\": \"X\", \"vm\": \"web\", \"job_state\": 7, "
				    "\"state\": \"completed\", \"percent_complete\": 100, \"error_code\": 0, "
				    "\"error_description\": \"\", \"guest_paused_usec\": 1234}");
	assert_string_equal(s->res.err, "");
}

static void test_json_documents(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetVirtualSystem", "{\"return\": 0, \"vm\": {\"name\": \"web\", \"state\": \"replicating\", "
				      "\"test_failover\": false, \"backend\": \"thin\", \"disks\": [{\"name\": "
				      "\"vda\", \"device\": \"/dev/dmrep/web/vda\", \"size_bytes\": 4096, "
				      "\"target\": \"live\"}], \"failover_point\": null}}" },
		{ "ListVirtualSystems", "{\"return\": 0, \"vms\": [{\"name\": \"web\"}, {\"name\": \"db\"}]}" },
		{ "ListReplicationPoints", "{\"return\": 0, \"points\": [{\"id\": 1, \"created\": "
					   "\"2026-11-24T18:31:49Z\", \"consistency\": \"crash\", \"label\": \"a\", "
					   "\"valid\": true}, {\"id\": 2, \"created\": \"2026-11-24T18:32:49Z\", "
					   "\"consistency\": \"crash\", \"label\": \"\", \"valid\": false}]}" },
		{ "GetPoolStatus", "{\"return\": 0, \"pool\": {\"mode\": \"rw\", \"data_used_bytes\": 0}}" },
		{ "ListJobs", "{\"return\": 0, \"jobs\": []}" },
		{ "GetJob", JOB_DONE(3, "") },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "show", "web", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"name\": \"web\", \"state\": \"replicating\", \"test_failover\": false, "
				    "\"backend\": \"thin\", \"disks\": [{\"name\": \"vda\", \"device\": "
				    "\"/dev/dmrep/web/vda\", \"size_bytes\": 4096, \"target\": \"live\"}], "
				    "\"failover_point\": null}");
	assert_string_equal(str_at(request_params(&s->fa, 0, "GetVirtualSystem"), "vm"), "web");
	RUN(&s->fa, &s->res, "vm", "list", "--json");
	assert_json_doc(s->res.out, "[{\"name\": \"web\"}, {\"name\": \"db\"}]");
	RUN(&s->fa, &s->res, "point", "list", "web", "--json");
	assert_json_doc(s->res.out, "[{\"id\": 1, \"created\": \"2026-11-24T18:31:49Z\", \"consistency\": "
				    "\"crash\", \"label\": \"a\", \"valid\": true}, {\"id\": 2, \"created\": "
				    "\"2026-11-24T18:32:49Z\", \"consistency\": \"crash\", \"label\": \"\", "
				    "\"valid\": false}]");
	RUN(&s->fa, &s->res, "pool", "status", "--json");
	assert_json_doc(s->res.out, "{\"mode\": \"rw\", \"data_used_bytes\": 0}");
	RUN(&s->fa, &s->res, "job", "list", "--json");
	assert_json_doc(s->res.out, "[]");
	RUN(&s->fa, &s->res, "job", "show", "3", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"id\": 3, \"method\": \"X\", \"vm\": \"web\", \"job_state\": 7, "
				    "\"state\": \"completed\", \"percent_complete\": 100, \"error_code\": 0, "
				    "\"error_description\": \"\"}");
	assert_int_equal(int_at(request_params(&s->fa, 5, "GetJob"), "job"), 3);

	/* Without --json: text, not JSON. */
	RUN(&s->fa, &s->res, "point", "list", "web");
	assert_int_equal(s->res.status, 0);
	assert_non_null(strstr(s->res.out, "2026-11-24T18:32:49Z"));
	assert_null(json_tokener_parse(s->res.out));
}

static void test_point_remove_integer(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "DestroyReplicationPoint", "{\"return\": 0}" },
		{ NULL, NULL },
	};
	struct json_object *p;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "remove", "web", "12", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "{\"return\": 0}");
	p = request_params(&s->fa, 0, "DestroyReplicationPoint");
	assert_string_equal(str_at(p, "vm"), "web");
	assert_int_equal(int_at(p, "point"), 12);
}

static void test_agent_error(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetVirtualSystem", "{\"return\": 32779, \"error\": \"no VM named ghost\"}" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "show", "ghost", "--json");
	assert_failed(&s->res, 32779);
	assert_json_doc(s->res.out, "{\"return\": 32779, \"error\": \"no VM named ghost\"}");
	assert_string_equal(s->res.err, "dmrep: no VM named ghost\n");
	/* Without --json: nothing on stdout, the same line on stderr. */
	RUN(&s->fa, &s->res, "vm", "show", "ghost");
	assert_int_equal(s->res.status, 12);
	assert_string_equal(s->res.out, "");
	assert_string_equal(s->res.err, "dmrep: no VM named ghost\n");
}

static void test_unreachable(void **st)
{
	struct state *s = *st;
	static const struct canned none[] = { { NULL, NULL } };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dead[96];
	int fd;

	/* No such socket. */
	RUN_ENV(&s->fa, &s->res, NULL, "vm", "list", "--json", "--socket", "/nonexistent-dmrep/sock");
	assert_failed(&s->res, 32777);
	/* A socket nobody listens on (ECONNREFUSED). */
	snprintf(dead, sizeof(dead), "%s/dead", s->fa.dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", dead);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	RUN_ENV(&s->fa, &s->res, NULL, "--json", "job", "list", "--socket", dead);
	unlink(dead);
	assert_failed(&s->res, 32777);
	/* Plainly too: the exit status and the stderr line. */
	RUN_ENV(&s->fa, &s->res, NULL, "pool", "status", "--socket", "/nonexistent-dmrep/sock");
	assert_int_equal(s->res.status, 10);
	assert_string_equal(s->res.out, "");
	assert_true(dmr_startswith(s->res.err, "dmrep: "));

	/* $DMREP_SOCKET is the default socket. */
	fake_start(&s->fa, none);
	RUN_ENV(&s->fa, &s->res, s->fa.path, "job", "list", "--json");
	assert_failed(&s->res, 32770); /* the fake's "unscripted": it got there */
	assert_int_equal(count_method(&s->fa, "ListJobs"), 1);
}

/* An agent with no slot for us answers one line, id null, and closes:
 * its code and reason, not "the reply does not match". */
static void test_refused_connection(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "ListVirtualSystems", "{\"id\": null, \"return\": 32777, \"error\": "
					"\"too many connections from uid 1000 (16 at most)\"}" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "list");
	assert_int_equal(s->res.status, 32777 - 32767);
	assert_string_equal(s->res.err, "dmrep: too many connections from uid 1000 (16 at most)\n");
	RUN(&s->fa, &s->res, "vm", "list", "--json");
	assert_failed(&s->res, 32777);
}

/* job wait asks the agent to hold its answer (GetJob's "wait", a long
 * poll) instead of polling, and never past --timeout. */
static void test_job_wait_long_poll(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetJob", JOB_RUNNING(9) },
		{ "GetJob", JOB_DONE(9, "") },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "job", "wait", "9", "--json");
	assert_int_equal(s->res.status, 0);
	assert_int_equal(count_method(&s->fa, "GetJob"), 2);
	assert_int_equal(int_at(request_params(&s->fa, 0, "GetJob"), "wait"), 30);
	fake_stop(&s->fa);
	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "job", "wait", "9", "--timeout", "5", "--json");
	assert_int_equal(s->res.status, 0);
	/* The whole seconds left, rounded down. */
	assert_in_range(int_at(request_params(&s->fa, 0, "GetJob"), "wait"), 4, 5);
}

static void test_lost_connection(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "CreateReplicationPoint", "{\"return\": 4096, \"job\": 30}" },
		{ "GetJob", JOB_RUNNING(30) },
		{ "GetJob", "CLOSE" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web", "--json");
	assert_failed(&s->res, 32777);
}

static void test_usage_errors(void **st)
{
	struct state *s = *st;
	static const struct canned none[] = { { NULL, NULL } };
	static const char *const cases[][8] = {
		{ "vm", "add", "web", NULL },                                 /* no --disk */
		{ "vm", "add", "web", "--disk", "novalue", NULL },            /* no '=' */
		{ "pool", "create", "--data", "/a", "--meta", "/b", "--data-size", "12X" },
		{ "pool", "create", "--data", "/a", NULL },                   /* no --meta */
		{ "vm", "show", NULL },                                       /* missing VM */
		{ "vm", "show", "a", "b", NULL },                             /* extra argument */
		{ "point", "remove", "web", "latest", NULL },                 /* POINT not a number */
		{ "failover", "start", "web", "--point", "-1", NULL },
		{ "failover", "start", "web", "--guest", "reboot", NULL },
		{ "failover", "revert", "web", "--test", NULL },              /* start's option */
		{ "failover", "revert", "web", "--guest", "reboot", NULL },
		{ "failover", "commit", "web", "--guest", "resume", NULL },   /* no swap, no guest */
		{ "vm", "list", "--bogus", NULL },
		{ "job", "wait", "3", "--timeout", NULL },                    /* needs a value */
		{ "frobnicate", "now", NULL },
		{ "vm", NULL },
		{ "point", "create", "web", "--cow-dev", "/dev/x", NULL },   /* no DISK= */
		{ "point", "create", "web", "--cow-dev", "vda=", NULL },     /* no DEVICE */
		{ "point", "create", "web", "--cow-dev", "a=/x", "--cow-dev", "a=/y" }, /* twice */
		{ "vm", "replicate", "web", NULL },                           /* nothing to do */
		{ "vm", "replicate", "web", "--now", "--verify", NULL },      /* one at a time */
		{ "vm", "replicate", "web", "--now", "--interval", "60", NULL }, /* no settings */
		{ "vm", "replicate", "web", "--pause", "--wait", NULL },      /* --wait: jobs only */
		{ "vm", "replicate", "web", "--to", "x", "--bandwidth", "9Q", NULL },
		{ "vm", "replicate", "web", "--compress", "lz4", NULL },
		{ NULL },
	};

	fake_start(&s->fa, none);
	for (size_t i = 0; cases[i][0]; i++) {
		const char *args[12];
		size_t n = 0;

		for (size_t k = 0; k < DMR_ARRAY_SIZE(cases[i]) && cases[i][k]; k++)
			args[n++] = cases[i][k];
		args[n++] = "--json";
		args[n++] = "--socket";
		args[n++] = s->fa.path;
		args[n] = NULL;
		run_argv(&s->fa, &s->res, NULL, args);
		assert_failed(&s->res, 32773);
	}
	/* Nothing reached the agent. */
	assert_int_equal(n_requests(&s->fa), 0);
	/* Without --json: the status and the line, no stdout. */
	RUN(&s->fa, &s->res, "vm", "show");
	assert_int_equal(s->res.status, 6);
	assert_string_equal(s->res.out, "");
	assert_true(dmr_startswith(s->res.err, "dmrep: "));
}

static void test_job_wait_timeout(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetJob", JOB_RUNNING(8) },
		{ NULL, NULL },
	};
	uint64_t t0;

	fake_start(&s->fa, script);
	t0 = dmr_now_usec();
	RUN(&s->fa, &s->res, "job", "wait", "8", "--timeout", "1", "--json");
	assert_failed(&s->res, 32772);
	assert_true(dmr_now_usec() - t0 < 10 * 1000000ULL);
	assert_true(count_method(&s->fa, "GetJob") >= 2);
}

static void test_job_wait_done(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetJob", JOB_RUNNING(8) },
		{ "GetJob", JOB_DONE(8, "") },
		{ NULL, NULL },
	};
	struct json_object *job;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "job", "wait", "8", "--json");
	assert_int_equal(s->res.status, 0);
	job = json_tokener_parse(s->res.out);
	assert_non_null(job);
	assert_int_equal(int_at(job, "job_state"), 7);
	assert_int_equal(int_at(job, "id"), 8);
	json_object_put(job);
	assert_int_equal(count_method(&s->fa, "GetJob"), 2);
}

/* dmrep metrics: the exposition composed from the read methods; the
 * failover window is the newest finished InitiateFailover's; a VM gone
 * between the list and its points is left out; a pool missing is
 * dmrep_pool_up 0; the agent unreachable still prints dmrep_up 0. */
static void test_metrics(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetPoolStatus", "{\"return\": 0, \"pool\": {\"data_used_bytes\": 65536, \"data_size_bytes\": "
				   "1073741824, \"meta_used_blocks\": 10, \"meta_total_blocks\": 4096, "
				   "\"mode\": \"rw\", \"needs_check\": false}}" },
		{ "ListVirtualSystems", "{\"return\": 0, \"vms\": [{\"name\": \"web\", \"role\": \"primary\", "
					"\"backend\": \"thin\", \"state\": \"replicating\", \"replication\": "
					"{\"state\": \"ok\", \"lag_seconds\": 42, \"bytes_sent\": 1234}}, "
					"{\"name\": \"gone\", \"role\": \"primary\", \"backend\": \"thin\", "
					"\"state\": \"replicating\"}]}" },
		{ "ListJobs", "{\"return\": 0, \"jobs\": [{\"id\": 1, \"method\": \"InitiateFailover\", \"vm\": "
			      "\"web\", \"job_state\": 7, \"error_code\": 0, \"guest_paused_usec\": 1500000}, "
			      "{\"id\": 2, \"method\": \"InitiateFailover\", \"vm\": \"web\", \"job_state\": 10, "
			      "\"error_code\": 32777, \"guest_paused_usec\": 250000}, {\"id\": 3, \"method\": "
			      "\"TestReplicaSystem\", \"vm\": \"web\", \"job_state\": 7, \"error_code\": 0, "
			      "\"guest_paused_usec\": 9}, {\"id\": 4, \"method\": \"CreateReplicationPoint\", "
			      "\"vm\": \"web\", \"job_state\": 4}]}" },
		{ "ListReplicationPoints", "{\"return\": 0, \"points\": [{\"id\": 1, \"created\": "
					   "\"2020-01-01T00:00:00Z\", \"valid\": true}, {\"id\": 2, \"created\": "
					   "\"2020-01-02T00:00:00Z\", \"valid\": false}]}" },
		{ "ListReplicationPoints", "{\"return\": 32779, \"error\": \"no VM named gone\"}" },
		{ NULL, NULL },
	};
	static const struct canned nopool[] = {
		{ "GetPoolStatus", "{\"return\": 32775, \"error\": \"no pool\"}" },
		{ "ListVirtualSystems", "{\"return\": 0, \"vms\": []}" },
		{ "ListJobs", "{\"return\": 0, \"jobs\": []}" },
		{ NULL, NULL },
	};
	static const char *const want[] = {
		"# TYPE dmrep_up gauge\ndmrep_up 1\n",
		"dmrep_pool_up 1\n",
		"dmrep_pool_data_used_bytes 65536\n",
		"dmrep_pool_data_size_bytes 1073741824\n",
		"dmrep_pool_metadata_used_bytes 40960\n",
		"dmrep_pool_metadata_size_bytes 16777216\n",
		"dmrep_pool_mode{mode=\"rw\"} 1\n",
		"dmrep_pool_mode{mode=\"fail\"} 0\n",
		"dmrep_vm_info{vm=\"web\",role=\"primary\",backend=\"thin\",state=\"replicating\"} 1\n",
		"dmrep_vm_points{vm=\"web\"} 2\n",
		"# TYPE dmrep_vm_last_failover_guest_paused_seconds gauge\n",
		"dmrep_vm_last_failover_guest_paused_seconds{vm=\"web\"} 0.250000\n",
		"dmrep_replication_state{vm=\"web\",state=\"ok\"} 1\n",
		"dmrep_replication_state{vm=\"web\",state=\"critical\"} 0\n",
		"dmrep_replication_lag_seconds{vm=\"web\"} 42\n",
		"# TYPE dmrep_replication_sent_bytes_total counter\n",
		"dmrep_replication_sent_bytes_total{vm=\"web\"} 1234\n",
		"dmrep_jobs_failed 1\n",
		"dmrep_jobs_running 1\n",
	};
	const char *newest, *oldest;

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "metrics");
	assert_int_equal(s->res.status, 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(s->res.out, want[i]))
			fail_msg("metrics lack '%s' in:\n%s", want[i], s->res.out);
	assert_null(strstr(s->res.out, "vm=\"gone\"}"));
	/* The newest valid point is the first (the second is invalid), so
	 * its age is the oldest's, not a day less. */
	newest = strstr(s->res.out, "dmrep_vm_newest_point_age_seconds{vm=\"web\"} ");
	oldest = strstr(s->res.out, "dmrep_vm_oldest_point_age_seconds{vm=\"web\"} ");
	assert_non_null(newest);
	assert_non_null(oldest);
	assert_true(strtoll(strchr(newest, '}') + 2, NULL, 10) == strtoll(strchr(oldest, '}') + 2, NULL, 10));
	fake_stop(&s->fa);

	fake_start(&s->fa, nopool);
	RUN(&s->fa, &s->res, "metrics");
	assert_int_equal(s->res.status, 0);
	assert_non_null(strstr(s->res.out, "dmrep_pool_up 0\n"));
	assert_null(strstr(s->res.out, "dmrep_pool_data_used_bytes"));
	fake_stop(&s->fa);

	RUN_ENV(&s->fa, &s->res, NULL, "metrics", "--socket", "/nonexistent/dmrepd.sock");
	assert_int_equal(s->res.status, 10);
	assert_non_null(strstr(s->res.out, "# TYPE dmrep_up gauge\ndmrep_up 0\n"));
	assert_null(strstr(s->res.out, "dmrep_pool"));
}

static void test_help(void **st)
{
	struct state *s = *st;

	RUN_ENV(&s->fa, &s->res, NULL, "--help");
	assert_int_equal(s->res.status, 0);
	assert_non_null(strstr(s->res.out, "dmrep failover start VM"));
	assert_non_null(strstr(s->res.out, "dmrep job list"));
	assert_non_null(strstr(s->res.out, "32773"));
	RUN_ENV(&s->fa, &s->res, NULL, "vm", "add", "--help");
	assert_int_equal(s->res.status, 0);
	assert_non_null(strstr(s->res.out, "dmrep vm add VM --disk NAME=PATH[:SIZE]"));
	assert_null(strstr(s->res.out, "dmrep job list"));
	RUN_ENV(&s->fa, &s->res, NULL, "--version");
	assert_int_equal(s->res.status, 0);
	assert_true(dmr_startswith(s->res.out, "dmrep "));
}

/* A guest agent's or hook's words in a job error, or an agent's error with
 * control characters: the terminal gets them escaped, on one line. */
static void test_error_text_escaped(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "CreateReplicationPoint", "{\"return\": 4096, \"job\": 24}" },
		{ "GetJob", "{\"return\": 0, \"job\": {\"id\": 24, \"job_state\": 10, \"state\": "
			    "\"exception\", \"error_code\": 32777, \"error_description\": "
			    "\"guest: \\u001b]0;owned\\u0007\\u001b[2J\\u009b1m\\rx\"}}" },
		{ "GetVirtualSystem", "{\"return\": 32779, \"error\": \"no VM \\u001b[31mred\\nx\"}" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "point", "create", "web");
	assert_int_equal(s->res.status, 32777 - 32767);
	assert_string_equal(s->res.err, "dmrep: guest: \\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b1m\\x0dx\n");
	RUN(&s->fa, &s->res, "vm", "show", "web", "--json");
	assert_failed(&s->res, 32779);
	assert_string_equal(s->res.err, "dmrep: no VM \\x1b[31mred\\x0ax\n");
}

/* vm list: VMs the agent left out are named on stderr (escaped); the list
 * itself, and --json's document, stay as they were. */
static void test_vm_list_unloadable(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "ListVirtualSystems", "{\"return\": 0, \"vms\": [], \"unloadable\": [{\"file\": "
					"\"b\\u001b.json\", \"error\": \"Bad message: field layers\"}]}" },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "vm", "list");
	assert_int_equal(s->res.status, 0);
	assert_string_equal(s->res.err, "dmrep: state file b\\x1b.json is unreadable (Bad message: field "
			    "layers): VM left out\n");
	RUN(&s->fa, &s->res, "vm", "list", "--json");
	assert_int_equal(s->res.status, 0);
	assert_json_doc(s->res.out, "[]");
}

/* --timeout in seconds, as microseconds: bounded so they cannot wrap. */
static void test_timeout_bound(void **st)
{
	struct state *s = *st;
	static const struct canned script[] = {
		{ "GetJob", JOB_DONE(8, "") },
		{ NULL, NULL },
	};

	fake_start(&s->fa, script);
	RUN(&s->fa, &s->res, "job", "wait", "8", "--timeout", "3162240001", "--json");
	assert_failed(&s->res, 32773);
	assert_int_equal(count_method(&s->fa, "GetJob"), 0);
	/* 2^64 / 10^6 + 1 s: wrapped, that was a timeout of half a second. */
	RUN(&s->fa, &s->res, "job", "wait", "8", "--timeout", "18446744073710", "--json");
	assert_failed(&s->res, 32773);
	RUN(&s->fa, &s->res, "job", "wait", "8", "--timeout", "3162240000", "--json");
	assert_int_equal(s->res.status, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vm_add_disks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_create_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_create_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_create_job_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_failed_without_code, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover_wait, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_documents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_point_remove_integer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_agent_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_wait_long_poll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_replicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_wait_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_wait_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_text_escaped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_list_unloadable, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
