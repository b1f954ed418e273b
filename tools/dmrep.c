/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmrep - the client of dmrepd, for people and for scripts.
 *
 * With --json, stdout is exactly one JSON document, on failure too
 * ({"return": CODE, "error": "..."}); stderr always gets one line on
 * failure.  The exit status is 0 on success, else the WMI return code's
 * mapping (agent/rc.h: CODE - 32767, so 32779 exits 12).  Operations that
 * the agent runs as jobs are waited for where the contract says so (vm add,
 * point create, --wait).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/rc.h"
#include "common/util.h"

#define DEFAULT_SOCKET "/run/dmrep/dmrepd.sock"
#define REPLY_MAX (64u << 20)
#define REQUEST_TIMEOUT_MS 60000
#define POLL_INTERVAL_US 100000

static bool opt_json;
static const char *opt_socket;
static int sock_fd = -1;
static int64_t next_id = 1;
static char *inbuf;
static size_t in_len, in_cap;

static const char usage_text[] =
	"Usage: dmrep [--socket PATH] [--json] COMMAND ...\n"
	"\n"
	"  pool create --data PATH --meta PATH [--data-size SIZE] [--meta-size SIZE] [--force]\n"
	"  pool status\n"
	"  vm add VM --disk NAME=PATH[:SIZE] [--disk ...] [--backend thin|classic]\n"
	"         [--qmp SOCKET] [--qga SOCKET] [--exec-shim COMMAND]\n"
	"         [--keep-last N] [--max-age SECONDS]\n"
	"  vm list\n"
	"  vm show VM\n"
	"  vm remove VM\n"
	"  vm retention VM [--keep-last N] [--max-age SECONDS]\n"
	"  point create VM [--consistency crash|application] [--label TEXT]\n"
	"  point list VM\n"
	"  point remove VM POINT\n"
	"  failover start VM [--point POINT] [--test] [--guest resume|reset] [--wait]\n"
	"  failover revert VM [--wait]\n"
	"  failover commit VM [--wait]\n"
	"  failover stop-test VM [--wait]\n"
	"  job show JOB\n"
	"  job wait JOB [--timeout SECONDS]\n"
	"  job list\n"
	"\n"
	"Options for every command:\n"
	"  --socket PATH   the agent's socket (default: $DMREP_SOCKET, else " DEFAULT_SOCKET ")\n"
	"  --json          print exactly one JSON document on stdout, on failure too\n"
	"  -h, --help      this help; --version the version\n"
	"\n"
	"SIZE takes the suffixes K, M, G, T (powers of 1024).  NAME=PATH imports an\n"
	"existing image or block device (absolute path); NAME=PATH:SIZE with a PATH\n"
	"that does not exist makes an empty disk.  vm add and point create wait for\n"
	"their job; failover commands print the job number, or with --wait the\n"
	"finished job.  Without --point, failover start uses the latest valid point;\n"
	"--test shows the point at /dev/dmrep/VM-test/DISK instead of switching.\n"
	"\n"
	"Exit status: 0 on success, else the WMI return code - 32767: 1 failed,\n"
	"2 access denied, 3 not supported, 5 timeout, 6 invalid parameter (also\n"
	"usage errors), 7 in use, 8 invalid state, 9 incorrect type, 10 agent or\n"
	"hypervisor unreachable, 11 no space, 12 not found.\n";

/* ---- output ---------------------------------------------------------------- */

static void print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED |
							       JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Report a failure in the contract's shape and exit. */
__attribute__((noreturn, format(printf, 2, 3))) static void die(int rc, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	msg[strcspn(msg, "\n")] = '\0';
	if (opt_json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "return", json_object_new_int(rc));
		json_object_object_add(o, "error", json_object_new_string(msg));
		print_json(o);
		json_object_put(o);
	}
	fprintf(stderr, "dmrep: %s\n", msg);
	fflush(stdout);
	exit(dmr_rc_exit_status(rc) ?: 1);
}

__attribute__((noreturn, format(printf, 1, 2))) static void usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	die(DMR_RC_INVALID_PARAMETER, "%s (see dmrep --help)", msg);
}

/* ---- the connection ---------------------------------------------------------- */

static void connect_agent(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (sock_fd >= 0)
		return;
	if (strlen(opt_socket) >= sizeof(sa.sun_path))
		die(DMR_RC_INVALID_PARAMETER, "socket path too long: %s", opt_socket);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", opt_socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die(DMR_RC_FAILED, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		if (e == EACCES || e == EPERM)
			die(DMR_RC_ACCESS_DENIED, "may not open the agent's socket %s: %s", opt_socket,
			    strerror(e));
		die(DMR_RC_UNAVAILABLE, "cannot reach the agent at %s: %s", opt_socket, strerror(e));
	}
	sock_fd = fd;
}

/* One reply line, with a deadline. */
static struct json_object *read_reply(void)
{
	uint64_t deadline = dmr_now_usec() + (uint64_t)REQUEST_TIMEOUT_MS * 1000;

	for (;;) {
		char *nl = inbuf ? memchr(inbuf, '\n', in_len) : NULL;
		struct pollfd pfd = { .fd = sock_fd, .events = POLLIN };
		uint64_t now;
		ssize_t k;
		int r;

		if (nl) {
			struct json_object *o;
			size_t len = (size_t)(nl - inbuf);

			*nl = '\0';
			o = json_tokener_parse(inbuf);
			memmove(inbuf, nl + 1, in_len - len - 1);
			in_len -= len + 1;
			if (!o || !json_object_is_type(o, json_type_object))
				die(DMR_RC_FAILED, "the agent sent a malformed reply");
			return o;
		}
		if (in_len >= REPLY_MAX)
			die(DMR_RC_FAILED, "the agent's reply is larger than %u MiB", REPLY_MAX >> 20);
		if (in_cap - in_len < 65536) {
			size_t cap = in_cap ? in_cap * 2 : 65536;
			char *n = realloc(inbuf, cap);

			if (!n)
				die(DMR_RC_NO_SPACE, "out of memory");
			inbuf = n;
			in_cap = cap;
		}
		now = dmr_now_usec();
		if (now >= deadline)
			die(DMR_RC_TIMEOUT, "the agent did not answer within %d s", REQUEST_TIMEOUT_MS / 1000);
		r = poll(&pfd, 1, (int)((deadline - now) / 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(DMR_RC_FAILED, "poll: %s", strerror(errno));
		if (r == 0)
			continue;
		k = recv(sock_fd, inbuf + in_len, in_cap - in_len - 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die(DMR_RC_UNAVAILABLE, "the agent closed the connection%s%s", k < 0 ? ": " : "",
			    k < 0 ? strerror(errno) : "");
		in_len += (size_t)k;
	}
}

/* Call a method; returns the reply (caller puts it).  params is consumed. */
static struct json_object *call(const char *method, struct json_object *params)
{
	struct json_object *req = json_object_new_object(), *rep, *id;
	const char *text;
	int64_t my_id = next_id++;

	connect_agent();
	json_object_object_add(req, "id", json_object_new_int64(my_id));
	json_object_object_add(req, "method", json_object_new_string(method));
	json_object_object_add(req, "params", params ? params : json_object_new_object());
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (dmr_write_all(sock_fd, text, strlen(text)) < 0 || dmr_write_all(sock_fd, "\n", 1) < 0)
		die(DMR_RC_UNAVAILABLE, "cannot send to the agent: %s", strerror(errno));
	json_object_put(req);
	rep = read_reply();
	if (!json_object_object_get_ex(rep, "id", &id) || json_object_get_int64(id) != my_id)
		die(DMR_RC_FAILED, "the agent answered another request");
	return rep;
}

static int reply_rc(struct json_object *rep)
{
	struct json_object *v;

	if (!json_object_object_get_ex(rep, "return", &v) || !json_object_is_type(v, json_type_int))
		die(DMR_RC_FAILED, "the agent's reply has no return code");
	return json_object_get_int(v);
}

static const char *str_field(struct json_object *o, const char *k, const char *dflt)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, k, &v) && v && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return dflt;
}

static int64_t int_field(struct json_object *o, const char *k, int64_t dflt)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, k, &v) && v && json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	return dflt;
}

/* Call, and die on any code but 0 and 4096. */
static struct json_object *call_ok(const char *method, struct json_object *params)
{
	struct json_object *rep = call(method, params);
	int rc = reply_rc(rep);

	if (rc != DMR_RC_OK && rc != DMR_RC_JOB_STARTED)
		die(rc, "%s", str_field(rep, "error", dmr_rc_name(rc)));
	return rep;
}

/* Poll a job until it finishes (timeout_s 0: no limit); the job object. */
static struct json_object *wait_job(int64_t id, uint64_t timeout_s)
{
	uint64_t deadline = timeout_s ? dmr_now_usec() + timeout_s * 1000000 : 0;

	for (;;) {
		struct json_object *p = json_object_new_object(), *rep, *job;

		json_object_object_add(p, "job", json_object_new_int64(id));
		rep = call_ok("GetJob", p);
		if (!json_object_object_get_ex(rep, "job", &job) || !json_object_is_type(job, json_type_object))
			die(DMR_RC_FAILED, "the agent's GetJob reply has no job");
		if (int_field(job, "job_state", 0) >= 7) {
			json_object_get(job);
			json_object_put(rep);
			return job;
		}
		json_object_put(rep);
		if (deadline && dmr_now_usec() >= deadline)
			die(DMR_RC_TIMEOUT, "job %" PRId64 " did not finish within %" PRIu64 " s", id, timeout_s);
		usleep(POLL_INTERVAL_US);
	}
}

static int job_rc(struct json_object *job)
{
	return int_field(job, "job_state", 0) == 7 ? 0 : (int)int_field(job, "error_code", DMR_RC_FAILED);
}

/* A job the command waits for: die with its error if it failed. */
static struct json_object *wait_job_ok(struct json_object *rep)
{
	int64_t id = int_field(rep, "job", -1);
	struct json_object *job;
	int rc;

	if (id < 0)
		die(DMR_RC_FAILED, "the agent started a job but sent no job number");
	job = wait_job(id, 0);
	rc = job_rc(job);
	if (rc)
		die(rc ?: DMR_RC_FAILED, "%s", str_field(job, "error_description", "the job failed"));
	return job;
}

/* ---- human output -------------------------------------------------------------- */

static void print_job_human(struct json_object *j)
{
	struct json_object *steps;

	printf("job %" PRId64 ": %s %s: %s, %" PRId64 "%%", int_field(j, "id", 0), str_field(j, "method", "?"),
	       str_field(j, "vm", "-"), str_field(j, "state", "?"), int_field(j, "percent_complete", 0));
	if (int_field(j, "error_code", 0))
		printf(", error %" PRId64 ": %s", int_field(j, "error_code", 0),
		       str_field(j, "error_description", ""));
	printf("\n");
	if (json_object_object_get_ex(j, "steps", &steps) && json_object_is_type(steps, json_type_array))
		for (size_t i = 0; i < json_object_array_length(steps); i++) {
			struct json_object *s = json_object_array_get_idx(steps, i);

			printf("  %-12s %10.3f ms\n", str_field(s, "name", "?"),
			       (double)int_field(s, "usec", 0) / 1000.0);
		}
	if (int_field(j, "guest_paused_usec", 0))
		printf("  guest paused %.3f ms\n", (double)int_field(j, "guest_paused_usec", 0) / 1000.0);
}

static void print_vm_human(struct json_object *vm)
{
	struct json_object *disks, *fp;

	printf("%s: %s%s, backend %s", str_field(vm, "name", "?"), str_field(vm, "state", "?"),
	       json_object_get_boolean(json_object_object_get(vm, "test_failover")) ? " (test failover)" : "",
	       str_field(vm, "backend", "?"));
	if (json_object_object_get_ex(vm, "failover_point", &fp) && fp)
		printf(", failover point %" PRId64, json_object_get_int64(fp));
	printf("\n");
	if (json_object_object_get_ex(vm, "disks", &disks) && json_object_is_type(disks, json_type_array))
		for (size_t i = 0; i < json_object_array_length(disks); i++) {
			struct json_object *d = json_object_array_get_idx(disks, i);

			printf("  %-8s %-28s %12" PRId64 " bytes  %s\n", str_field(d, "name", "?"),
			       str_field(d, "device", "?"), int_field(d, "size_bytes", 0),
			       str_field(d, "target", "?"));
		}
}

static void print_object_human(struct json_object *o)
{
	json_object_object_foreach(o, k, v) {
		if (!v)
			printf("%s: -\n", k);
		else if (json_object_is_type(v, json_type_string))
			printf("%s: %s\n", k, json_object_get_string(v));
		else
			printf("%s: %s\n", k, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	}
}

/* ---- commands ---------------------------------------------------------------- */

struct cmd_args {
	int argc;
	char **argv;
};

/* getopt_long over a command's own arguments (argv[0] is the command). */
#define FOR_OPTS(a, shortopts, longopts, c) \
	for (optind = 1, opterr = 0; ((c) = getopt_long((a)->argc, (a)->argv, shortopts, longopts, NULL)) != -1;)

static void bad_option(const struct cmd_args *a)
{
	if (optopt)
		usage_error("%s: bad or incomplete option '-%c'", a->argv[0], optopt);
	usage_error("%s: bad or incomplete option '%s'", a->argv[0], a->argv[optind - 1]);
}

static uint64_t parse_size_or_die(const char *what, const char *s)
{
	uint64_t v;

	if (dmr_parse_size(s, &v) < 0 || v == 0)
		usage_error("%s: bad size '%s'", what, s);
	return v;
}

static uint64_t parse_u64_or_die(const char *what, const char *s)
{
	uint64_t v;

	if (dmr_parse_u64(s, &v) < 0)
		usage_error("%s: '%s' is not a number", what, s);
	return v;
}

static const char *positional(const struct cmd_args *a, int k, const char *what)
{
	if (optind + k >= a->argc)
		usage_error("%s: missing %s", a->argv[0], what);
	return a->argv[optind + k];
}

static void no_more(const struct cmd_args *a, int used)
{
	if (optind + used < a->argc)
		usage_error("%s: unexpected argument '%s'", a->argv[0], a->argv[optind + used]);
}

/* Print a successful plain reply (without its id). */
static void print_reply(struct json_object *rep)
{
	json_object_object_del(rep, "id");
	if (opt_json)
		print_json(rep);
	else
		print_object_human(rep);
}

static int cmd_pool(const struct cmd_args *a, const char *sub)
{
	static const struct option o[] = {
		{ "data", required_argument, NULL, 'd' }, { "meta", required_argument, NULL, 'm' },
		{ "data-size", required_argument, NULL, 'D' }, { "meta-size", required_argument, NULL, 'M' },
		{ "force", no_argument, NULL, 'f' }, { NULL, 0, NULL, 0 },
	};
	struct json_object *p = json_object_new_object(), *rep, *pool;
	int c;

	if (!strcmp(sub, "status")) {
		FOR_OPTS(a, "", o + 5, c) bad_option(a);
		no_more(a, 0);
		rep = call_ok("GetPoolStatus", p);
		if (!json_object_object_get_ex(rep, "pool", &pool))
			die(DMR_RC_FAILED, "the agent's reply has no pool");
		if (opt_json)
			print_json(pool);
		else
			print_object_human(pool);
		json_object_put(rep);
		return 0;
	}
	if (strcmp(sub, "create"))
		usage_error("pool: unknown command '%s'", sub);
	FOR_OPTS(a, "", o, c) {
		switch (c) {
		case 'd':
			json_object_object_add(p, "data", json_object_new_string(optarg));
			break;
		case 'm':
			json_object_object_add(p, "meta", json_object_new_string(optarg));
			break;
		case 'D':
			json_object_object_add(p, "data_size", json_object_new_int64((int64_t)parse_size_or_die("--data-size", optarg)));
			break;
		case 'M':
			json_object_object_add(p, "meta_size", json_object_new_int64((int64_t)parse_size_or_die("--meta-size", optarg)));
			break;
		case 'f':
			json_object_object_add(p, "force", json_object_new_boolean(true));
			break;
		default:
			bad_option(a);
		}
	}
	no_more(a, 0);
	if (!json_object_object_get_ex(p, "data", NULL) || !json_object_object_get_ex(p, "meta", NULL))
		usage_error("pool create: --data and --meta are required");
	rep = call_ok("CreatePool", p);
	print_reply(rep);
	json_object_put(rep);
	return 0;
}

static struct json_object *parse_disk(const char *spec)
{
	struct json_object *d = json_object_new_object();
	_cleanup_free_ char *copy = strdup(spec);
	char *eq, *colon;
	uint64_t size;

	if (!copy)
		die(DMR_RC_NO_SPACE, "out of memory");
	eq = strchr(copy, '=');
	if (!eq || eq == copy || !eq[1])
		usage_error("--disk wants NAME=PATH[:SIZE], not '%s'", spec);
	*eq = '\0';
	/* SIZE follows the last ':' only if it parses as one: paths may
	 * contain ':' themselves. */
	colon = strrchr(eq + 1, ':');
	if (colon && dmr_parse_size(colon + 1, &size) == 0) {
		if (size == 0)
			usage_error("--disk %s: size must not be 0", spec);
		*colon = '\0';
		json_object_object_add(d, "size_bytes", json_object_new_int64((int64_t)size));
	}
	if (!eq[1])
		usage_error("--disk wants NAME=PATH[:SIZE], not '%s'", spec);
	json_object_object_add(d, "name", json_object_new_string(copy));
	json_object_object_add(d, "path", json_object_new_string(eq + 1));
	return d;
}

static int cmd_vm(const struct cmd_args *a, const char *sub)
{
	static const struct option o[] = {
		{ "disk", required_argument, NULL, 'd' }, { "backend", required_argument, NULL, 'b' },
		{ "qmp", required_argument, NULL, 'q' }, { "qga", required_argument, NULL, 'g' },
		{ "exec-shim", required_argument, NULL, 'e' }, { "keep-last", required_argument, NULL, 'k' },
		{ "max-age", required_argument, NULL, 'a' }, { NULL, 0, NULL, 0 },
	};
	struct json_object *p = json_object_new_object(), *disks = json_object_new_array(), *rep, *v;
	bool add = !strcmp(sub, "add"), ret = !strcmp(sub, "retention");
	int c;

	FOR_OPTS(a, "", add ? o : ret ? o + 5 : o + 7, c) {
		switch (c) {
		case 'd':
			json_object_array_add(disks, parse_disk(optarg));
			break;
		case 'b':
			json_object_object_add(p, "backend", json_object_new_string(optarg));
			break;
		case 'q':
			json_object_object_add(p, "qmp", json_object_new_string(optarg));
			break;
		case 'g':
			json_object_object_add(p, "qga", json_object_new_string(optarg));
			break;
		case 'e':
			json_object_object_add(p, "exec_shim", json_object_new_string(optarg));
			break;
		case 'k':
			json_object_object_add(p, "keep_last", json_object_new_int64((int64_t)parse_u64_or_die("--keep-last", optarg)));
			break;
		case 'a':
			json_object_object_add(p, "max_age", json_object_new_int64((int64_t)parse_u64_or_die("--max-age", optarg)));
			break;
		default:
			bad_option(a);
		}
	}
	if (!strcmp(sub, "list")) {
		no_more(a, 0);
		json_object_put(disks);
		rep = call_ok("ListVirtualSystems", p);
		if (!json_object_object_get_ex(rep, "vms", &v))
			die(DMR_RC_FAILED, "the agent's reply has no vms");
		if (opt_json)
			print_json(v);
		else
			for (size_t i = 0; i < json_object_array_length(v); i++)
				print_vm_human(json_object_array_get_idx(v, i));
		json_object_put(rep);
		return 0;
	}
	json_object_object_add(p, "vm", json_object_new_string(positional(a, 0, "VM")));
	no_more(a, 1);
	if (add) {
		struct json_object *job, *out;

		if (json_object_array_length(disks) == 0)
			usage_error("vm add: at least one --disk NAME=PATH[:SIZE]");
		json_object_object_add(p, "disks", disks);
		rep = call_ok("AddVirtualSystem", p);
		job = wait_job_ok(rep);
		out = json_object_new_object();
		json_object_object_add(out, "return", json_object_new_int(0));
		json_object_object_add(out, "vm", json_object_new_string(a->argv[optind]));
		json_object_object_add(out, "job", json_object_new_int64(int_field(job, "id", 0)));
		if (opt_json)
			print_json(out);
		else
			printf("VM %s added\n", a->argv[optind]);
		json_object_put(out);
		json_object_put(job);
		json_object_put(rep);
		return 0;
	}
	json_object_put(disks);
	if (!strcmp(sub, "show")) {
		rep = call_ok("GetVirtualSystem", p);
		if (!json_object_object_get_ex(rep, "vm", &v))
			die(DMR_RC_FAILED, "the agent's reply has no vm");
		if (opt_json)
			print_json(v);
		else
			print_vm_human(v);
	} else if (!strcmp(sub, "remove")) {
		rep = call_ok("RemoveVirtualSystem", p);
		if (reply_rc(rep) == DMR_RC_JOB_STARTED)
			json_object_put(wait_job_ok(rep));
		json_object_object_add(rep, "return", json_object_new_int(0));
		print_reply(rep);
	} else if (ret) {
		rep = call_ok("SetRetentionPolicy", p);
		print_reply(rep);
	} else
		usage_error("vm: unknown command '%s'", sub);
	json_object_put(rep);
	return 0;
}

static int cmd_point(const struct cmd_args *a, const char *sub)
{
	static const struct option o[] = {
		{ "consistency", required_argument, NULL, 'c' }, { "label", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *p = json_object_new_object(), *rep, *v;
	bool create = !strcmp(sub, "create");
	int c;

	FOR_OPTS(a, "", create ? o : o + 2, c) {
		switch (c) {
		case 'c':
			json_object_object_add(p, "consistency", json_object_new_string(optarg));
			break;
		case 'l':
			json_object_object_add(p, "label", json_object_new_string(optarg));
			break;
		default:
			bad_option(a);
		}
	}
	json_object_object_add(p, "vm", json_object_new_string(positional(a, 0, "VM")));
	if (create) {
		struct json_object *job, *out;

		no_more(a, 1);
		rep = call_ok("CreateReplicationPoint", p);
		job = wait_job_ok(rep);
		out = json_object_new_object();
		json_object_object_add(out, "return", json_object_new_int(0));
		json_object_object_add(out, "point", json_object_new_int64(int_field(job, "point", 0)));
		if (opt_json)
			print_json(out);
		else
			printf("point %" PRId64 "\n", int_field(job, "point", 0));
		json_object_put(out);
		json_object_put(job);
	} else if (!strcmp(sub, "list")) {
		no_more(a, 1);
		rep = call_ok("ListReplicationPoints", p);
		if (!json_object_object_get_ex(rep, "points", &v))
			die(DMR_RC_FAILED, "the agent's reply has no points");
		if (opt_json)
			print_json(v);
		else {
			printf("%6s  %-20s  %-11s  %-5s  %s\n", "ID", "CREATED", "CONSISTENCY", "VALID", "LABEL");
			for (size_t i = 0; i < json_object_array_length(v); i++) {
				struct json_object *pt = json_object_array_get_idx(v, i);

				printf("%6" PRId64 "  %-20s  %-11s  %-5s  %s\n", int_field(pt, "id", 0),
				       str_field(pt, "created", "?"), str_field(pt, "consistency", "?"),
				       json_object_get_boolean(json_object_object_get(pt, "valid")) ? "yes" : "no",
				       str_field(pt, "label", ""));
			}
		}
	} else if (!strcmp(sub, "remove")) {
		no_more(a, 2);
		json_object_object_add(p, "point", json_object_new_int64((int64_t)parse_u64_or_die("POINT", positional(a, 1, "POINT"))));
		rep = call_ok("DestroyReplicationPoint", p);
		print_reply(rep);
	} else
		usage_error("point: unknown command '%s'", sub);
	json_object_put(rep);
	return 0;
}

static int cmd_failover(const struct cmd_args *a, const char *sub)
{
	static const struct option o[] = {
		{ "point", required_argument, NULL, 'p' }, { "test", no_argument, NULL, 't' },
		{ "guest", required_argument, NULL, 'g' }, { "wait", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct json_object *p = json_object_new_object(), *rep;
	bool start = !strcmp(sub, "start"), wait = false, test = false;
	const char *method;
	int c, rc;

	FOR_OPTS(a, "", start ? o : o + 3, c) {
		switch (c) {
		case 'w':
			wait = true;
			break;
		case 'p':
			json_object_object_add(p, "point", json_object_new_int64((int64_t)parse_u64_or_die("--point", optarg)));
			break;
		case 't':
			test = true;
			break;
		case 'g':
			json_object_object_add(p, "guest", json_object_new_string(optarg));
			break;
		default:
			bad_option(a);
		}
	}
	if (start)
		method = test ? "TestReplicaSystem" : "InitiateFailover";
	else if (!strcmp(sub, "revert"))
		method = "RevertFailover";
	else if (!strcmp(sub, "commit"))
		method = "CommitFailover";
	else if (!strcmp(sub, "stop-test"))
		method = "StopTestReplicaSystem";
	else
		usage_error("failover: unknown command '%s'", sub);
	if (test && json_object_object_get_ex(p, "guest", NULL))
		usage_error("failover start --test does not touch the guest: no --guest");
	json_object_object_add(p, "vm", json_object_new_string(positional(a, 0, "VM")));
	no_more(a, 1);
	rep = call_ok(method, p);
	if (!wait) {
		print_reply(rep);
		json_object_put(rep);
		return 0;
	}
	{
		int64_t id = int_field(rep, "job", -1);
		struct json_object *job;

		if (id < 0)
			die(DMR_RC_FAILED, "the agent started no job");
		job = wait_job(id, 0);
		rc = job_rc(job);
		if (opt_json)
			print_json(job);
		else
			print_job_human(job);
		if (rc)
			fprintf(stderr, "dmrep: %s\n", str_field(job, "error_description", "the job failed"));
		json_object_put(job);
	}
	json_object_put(rep);
	return dmr_rc_exit_status(rc);
}

static int cmd_job(const struct cmd_args *a, const char *sub)
{
	static const struct option o[] = {
		{ "timeout", required_argument, NULL, 't' }, { NULL, 0, NULL, 0 },
	};
	bool wait = !strcmp(sub, "wait");
	uint64_t timeout = 0;
	struct json_object *rep, *v;
	int c;

	FOR_OPTS(a, "", wait ? o : o + 1, c) {
		if (c == 't')
			timeout = parse_u64_or_die("--timeout", optarg);
		else
			bad_option(a);
	}
	if (!strcmp(sub, "list")) {
		no_more(a, 0);
		rep = call_ok("ListJobs", NULL);
		if (!json_object_object_get_ex(rep, "jobs", &v))
			die(DMR_RC_FAILED, "the agent's reply has no jobs");
		if (opt_json)
			print_json(v);
		else
			for (size_t i = 0; i < json_object_array_length(v); i++)
				print_job_human(json_object_array_get_idx(v, i));
		json_object_put(rep);
		return 0;
	}
	if (strcmp(sub, "show") && !wait)
		usage_error("job: unknown command '%s'", sub);
	{
		uint64_t id = parse_u64_or_die("JOB", positional(a, 0, "JOB"));
		struct json_object *job;

		no_more(a, 1);
		if (wait) {
			job = wait_job((int64_t)id, timeout);
		} else {
			struct json_object *p = json_object_new_object();

			json_object_object_add(p, "job", json_object_new_int64((int64_t)id));
			rep = call_ok("GetJob", p);
			job = json_object_get(json_object_object_get(rep, "job"));
			json_object_put(rep);
			if (!job)
				die(DMR_RC_FAILED, "the agent's reply has no job");
		}
		if (opt_json)
			print_json(job);
		else
			print_job_human(job);
		json_object_put(job);
	}
	return 0;
}

int main(int argc, char **argv)
{
	char **rest = calloc((size_t)argc + 1, sizeof(char *));
	struct cmd_args a;
	const char *group, *sub;
	int n = 0;
	bool dashdash = false;

	if (!rest)
		return 1;
	opt_socket = getenv("DMREP_SOCKET");
	if (!opt_socket || !*opt_socket)
		opt_socket = DEFAULT_SOCKET;
	/* --socket, --json, --help and --version may stand anywhere. */
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (dashdash) {
			rest[n++] = argv[i];
			continue;
		}
		if (!strcmp(s, "--")) {
			dashdash = true;
			rest[n++] = argv[i];
		} else if (!strcmp(s, "--json")) {
			opt_json = true;
		} else if (!strcmp(s, "--socket")) {
			if (i + 1 >= argc)
				usage_error("--socket needs a PATH");
			opt_socket = argv[++i];
		} else if (!strncmp(s, "--socket=", 9)) {
			opt_socket = s + 9;
		} else if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(s, "--version")) {
			printf("dmrep 0.1\n");
			return 0;
		} else {
			rest[n++] = argv[i];
		}
	}
	if (n < 1)
		usage_error("no command");
	group = rest[0];
	if (!strcmp(group, "--"))
		usage_error("no command");
	if (n < 2)
		usage_error("%s: missing a subcommand", group);
	sub = rest[1];
	/* The subcommand's own argv: "GROUP-SUB" then its arguments. */
	a.argc = n - 1;
	a.argv = rest + 1;
	if (!strcmp(group, "pool"))
		return cmd_pool(&a, sub);
	if (!strcmp(group, "vm"))
		return cmd_vm(&a, sub);
	if (!strcmp(group, "point"))
		return cmd_point(&a, sub);
	if (!strcmp(group, "failover"))
		return cmd_failover(&a, sub);
	if (!strcmp(group, "job"))
		return cmd_job(&a, sub);
	usage_error("unknown command '%s'", group);
}
