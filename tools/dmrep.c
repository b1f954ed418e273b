/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmrep - the client of dmrepd, for people and for scripts.
 *
 * One request per line to the agent's Unix socket, one reply per line back
 * (docs/protocol.md).  With --json, stdout is exactly one JSON document, on
 * failure too ({"return": CODE, "error": "..."}); stderr always gets one
 * line on failure.  The exit status is 0 on success, else the WMI return
 * code's mapping from common/rc.h (CODE - 32767, so 32779 exits 12).  Usage
 * errors are 32773, so a script sees one stable code for "you called me
 * wrong" whether the client or the agent noticed.
 *
 * The agent runs vm add and point create as jobs; the client waits for them
 * because their callers want the result (the VM exists, the point's number),
 * not a job.  Failover commands return the job unless --wait is given.
 *
 * point send and point receive hand the client's stdout or stdin to the
 * agent with the request (SCM_RIGHTS): the agent writes or reads the
 * stream there itself, so no data passes through this process.  point
 * send's stdout is the stream and nothing else: its summary and its
 * errors go to stderr, JSON there too with --json.
 *
 * A fatal error ends the process through fail(): this is a one-shot command,
 * so the kernel frees what is left, and every path reports in the same shape.
 * The success paths free everything, so a leak checker still watches them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/rc.h"
#include "common/util.h"

#define DMREP_VERSION "0.1"
#define DEFAULT_SOCKET "/run/dmrep/dmrepd.sock"
/* Job and point lists grow with history; 64 MiB is far beyond any sane
 * reply and still bounds what a broken agent can make us allocate. */
#define REPLY_MAX ((size_t)64 << 20)
/* Every method answers at once (long work runs as a job), so a minute
 * without a reply means the agent hangs, not that it is busy. */
#define REQUEST_TIMEOUT_USEC (60ULL * 1000000)
/* Job polling: quick at first (a point takes milliseconds), then gentler. */
#define POLL_FAST_USEC 50000
#define POLL_SLOW_USEC 100000
#define POLL_FAST_FOR_USEC 1000000
#define LONG_POLL_S 30

static bool opt_json;
static const char *opt_socket;
/* point send: stdout is the stream, so --json goes to stderr. */
static bool json_on_stderr;
/* metrics: what stdout says when the command fails (dmrep_up 0), so that
 * a scraped file tells the agent is down rather than going stale. */
static const char *fail_stdout;

static void json_putp(struct json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_putp)

/* ---- failure and output ------------------------------------------------------ */

static void print_json(struct json_object *o)
{
	fprintf(json_on_stderr ? stderr : stdout, "%s\n",
		json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* Exit status for a return code; never 0 for a failure, whatever the code. */
static int exit_status(int rc)
{
	int st = dmr_rc_exit_status(rc);

	return rc != DMR_RC_OK && st == 0 ? 1 : st;
}

/* Report a failure in the contract's shape (one JSON document with --json,
 * one line on stderr always) and exit with the code's status. */
__attribute__((noreturn)) _printf_(2, 3) static void fail(int rc, const char *fmt, ...)
{
	char raw[1024], msg[4 * sizeof(raw)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* "one line", and nothing the terminal acts on: an agent's message
	 * (a guest agent's error text in a job) could carry a newline or an
	 * escape sequence, or bytes that are not UTF-8. */
	raw[dmr_utf8_cut(raw, strlen(raw))] = '\0';
	dmr_cescape(msg, sizeof(msg), raw);
	if (opt_json) {
		_cleanup_json_ struct json_object *o = json_object_new_object();

		if (o) {
			json_object_object_add(o, "return", json_object_new_int(rc));
			json_object_object_add(o, "error", json_object_new_string(msg));
			print_json(o);
		}
	} else if (fail_stdout) {
		fputs(fail_stdout, stdout);
	}
	/* On stderr already as JSON (point send): one document there. */
	if (!(opt_json && json_on_stderr))
		fprintf(stderr, "dmrep: %s\n", msg);
	/* _exit, not exit: what the failed command still holds is the
	 * kernel's to free, and an atexit leak checker (SANITIZE=1) would
	 * only turn this exit status into its own.  stdout is flushed by
	 * hand for the same reason (a failed flush changes nothing: the
	 * status already says failure); stderr is unbuffered. */
	(void)fflush(stdout);
	_exit(exit_status(rc));
}

__attribute__((noreturn)) static void fail_oom(void)
{
	fail(DMR_RC_NO_SPACE, "out of memory");
}

__attribute__((noreturn)) _printf_(1, 2) static void usage_error(const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(DMR_RC_INVALID_PARAMETER, "%s (see dmrep --help)", msg);
}

static struct json_object *new_object(void)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		fail_oom();
	return o;
}

static void add(struct json_object *o, const char *key, struct json_object *v)
{
	if (!v || json_object_object_add(o, key, v) < 0)
		fail_oom();
}

static const char *str_field(struct json_object *o, const char *key, const char *dflt)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return dflt;
}

static int64_t int_field(struct json_object *o, const char *key, int64_t dflt)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	return dflt;
}

static bool bool_field(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

/* ---- the connection ------------------------------------------------------------ */

struct conn {
	int fd;
	int64_t next_id;
	char *buf; /* received bytes not yet consumed */
	size_t len, cap;
};

static struct conn agent = { .fd = -1, .next_id = 1 };

static void connect_agent(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (agent.fd >= 0)
		return;
	if (strlen(opt_socket) >= sizeof(sa.sun_path))
		usage_error("socket path too long: %s", opt_socket);
	memcpy(sa.sun_path, opt_socket, strlen(opt_socket) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail(dmr_rc_from_errno(dmr_negerrno()), "cannot make a socket: %m");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EACCES || errno == EPERM)
			fail(DMR_RC_ACCESS_DENIED, "may not open the agent's socket %s: %m", opt_socket);
		fail(DMR_RC_UNAVAILABLE, "cannot reach the agent at %s: %m", opt_socket);
	}
	agent.fd = DMR_TAKE_FD(fd);
}

/* Send the first bytes of p with descriptor fd attached (SCM_RIGHTS): the
 * agent takes it for the request line that starts here.  How many went. */
/* The request could not be sent: the agent may have refused the connection
 * (too many of them) and closed it before the request went out, its reason
 * still queued on the socket.  Say that reason if it is there; else that
 * the connection was lost.  Never returns. */
__attribute__((noreturn)) static void fail_lost(const char *what, int err)
{
	char line[1024];
	ssize_t k;

	do
		k = recv(agent.fd, line, sizeof(line) - 1, MSG_DONTWAIT);
	while (k < 0 && errno == EINTR);
	if (k > 0) {
		struct json_object *o, *v;
		char *nl;

		line[k] = '\0';
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		o = json_tokener_parse(line);
		if (o && json_object_is_type(o, json_type_object) &&
		    json_object_object_get_ex(o, "id", &v) && !v &&
		    json_object_object_get_ex(o, "return", &v) && json_object_is_type(v, json_type_int))
			fail(json_object_get_int(v), "%s",
			     str_field(o, "error", dmr_rc_name(json_object_get_int(v))));
		json_object_put(o);
	}
	errno = err;
	fail(DMR_RC_UNAVAILABLE, "%s: %m", what);
}

static size_t send_with_fd(const char *p, size_t n, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { (void *)p, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *h;
	ssize_t k;

	memset(&cm, 0, sizeof(cm));
	h = CMSG_FIRSTHDR(&mh);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	do
		k = sendmsg(agent.fd, &mh, MSG_NOSIGNAL);
	while (k < 0 && errno == EINTR);
	if (k <= 0)
		fail_lost("cannot hand the descriptor to the agent", k < 0 ? errno : EPIPE);
	return (size_t)k;
}

static void send_all(const char *p, size_t n)
{
	while (n > 0) {
		/* MSG_NOSIGNAL: an agent gone away is an error to report,
		 * not a SIGPIPE that kills us without a word. */
		ssize_t k = send(agent.fd, p, n, MSG_NOSIGNAL);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			fail_lost("lost the connection to the agent", errno);
		p += k;
		n -= (size_t)k;
	}
}

/* The next reply line, parsed; fails on a closed connection, an oversized
 * or malformed line, or a minute of silence. */
static struct json_object *read_reply(void)
{
	uint64_t deadline = dmr_now_usec() + REQUEST_TIMEOUT_USEC;
	size_t scanned = 0;

	for (;;) {
		char *nl = agent.len > scanned ? memchr(agent.buf + scanned, '\n', agent.len - scanned) : NULL;
		struct pollfd pfd = { .fd = agent.fd, .events = POLLIN };
		uint64_t now;
		ssize_t k;
		int r;

		if (nl) {
			size_t line = (size_t)(nl - agent.buf);
			struct json_object *o;

			*nl = '\0';
			o = json_tokener_parse(agent.buf);
			memmove(agent.buf, nl + 1, agent.len - line - 1);
			agent.len -= line + 1;
			if (!o || !json_object_is_type(o, json_type_object))
				fail(DMR_RC_FAILED, "the agent sent a malformed reply");
			return o;
		}
		scanned = agent.len;
		if (agent.len >= REPLY_MAX)
			fail(DMR_RC_FAILED, "the agent's reply is larger than %zu MiB", REPLY_MAX >> 20);
		if (agent.cap - agent.len < 65536) {
			size_t cap = agent.cap ? agent.cap * 2 : 65536;
			char *n;

			if (cap > REPLY_MAX + 1)
				cap = REPLY_MAX + 1;
			n = realloc(agent.buf, cap);
			if (!n)
				fail_oom();
			agent.buf = n;
			agent.cap = cap;
		}
		now = dmr_now_usec();
		if (now >= deadline)
			fail(DMR_RC_TIMEOUT, "the agent did not answer within %llu s",
			     REQUEST_TIMEOUT_USEC / 1000000);
		r = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail(DMR_RC_FAILED, "poll: %m");
		if (r == 0)
			continue;
		k = recv(agent.fd, agent.buf + agent.len, agent.cap - agent.len, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			fail_lost("lost the connection to the agent", errno);
		if (k == 0)
			fail(DMR_RC_UNAVAILABLE, "the agent closed the connection before answering");
		agent.len += (size_t)k;
	}
}

static int reply_rc(struct json_object *rep)
{
	struct json_object *v;

	if (!json_object_object_get_ex(rep, "return", &v) || !json_object_is_type(v, json_type_int))
		fail(DMR_RC_FAILED, "the agent's reply has no return code");
	return json_object_get_int(v);
}

/* Call a method (params consumed, may be NULL) and return its reply; any
 * return code but 0 and 4096 ends the process with the agent's error,
 * unless any_rc (the caller reads the code).  fd >= 0: handed to the agent
 * with the request (point send, receive). */
static struct json_object *call_any(const char *method, struct json_object *params, int fd, bool any_rc)
{
	_cleanup_json_ struct json_object *req = new_object();
	struct json_object *rep, *v;
	int64_t id = agent.next_id++;
	const char *text;
	int rc;

	add(req, "id", json_object_new_int64(id));
	add(req, "method", json_object_new_string(method));
	add(req, "params", params ? params : new_object());
	connect_agent();
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		fail_oom();
	{
		size_t len = strlen(text), off = fd >= 0 ? send_with_fd(text, len, fd) : 0;

		send_all(text + off, len - off);
	}
	send_all("\n", 1);
	rep = read_reply();
	rc = reply_rc(rep);
	/* An agent that refuses the connection itself (too many of them)
	 * says why with id null, and closes. */
	if (json_object_object_get_ex(rep, "id", &v) && !v && rc != DMR_RC_OK &&
	    rc != DMR_RC_JOB_STARTED)
		fail(rc, "%s", str_field(rep, "error", dmr_rc_name(rc)));
	/* One request at a time on this connection: a reply to anything
	 * else means the agent and we no longer agree on the stream. */
	if (int_field(rep, "id", -1) != id)
		fail(DMR_RC_FAILED, "the agent's reply does not match the request");
	if (!any_rc && rc != DMR_RC_OK && rc != DMR_RC_JOB_STARTED)
		fail(rc, "%s", str_field(rep, "error", dmr_rc_name(rc)));
	return rep;
}

static struct json_object *call_fd(const char *method, struct json_object *params, int fd)
{
	return call_any(method, params, fd, false);
}

static struct json_object *call(const char *method, struct json_object *params)
{
	return call_fd(method, params, -1);
}

/* The member key of a reply, with a reference of its own. */
static struct json_object *reply_member(struct json_object *rep, const char *key, enum json_type type)
{
	struct json_object *v;

	if (!json_object_object_get_ex(rep, key, &v) || !json_object_is_type(v, type))
		fail(DMR_RC_FAILED, "the agent's reply has no %s", key);
	return json_object_get(v);
}

/* ---- jobs ----------------------------------------------------------------------- */

#define JOB_COMPLETED 7

/* The job's outcome as a return code: 0 if it completed, else its error
 * code (32768 when a job ended badly without one). */
static int job_rc(struct json_object *job)
{
	int64_t code = int_field(job, "error_code", 0);

	if (int_field(job, "job_state", 0) == JOB_COMPLETED && code == 0)
		return DMR_RC_OK;
	return code > 0 && code <= INT32_MAX ? (int)code : DMR_RC_FAILED;
}

/* The job; with wait_s, once it has finished or wait_s has passed (the
 * agent's long poll). */
static struct json_object *get_job(uint64_t id, uint64_t wait_s)
{
	_cleanup_json_ struct json_object *rep = NULL;
	struct json_object *p = new_object();

	add(p, "job", json_object_new_int64((int64_t)id));
	if (wait_s)
		add(p, "wait", json_object_new_int64((int64_t)wait_s));
	rep = call("GetJob", p);
	return reply_member(rep, "job", json_type_object);
}

static void sleep_usec(uint64_t usec)
{
	struct timespec ts = { (time_t)(usec / 1000000), (long)(usec % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Poll a job until it has finished (job_state >= 7) and return it.  With
 * has_timeout, give up with 32772 after timeout_s seconds. */
/* On a terminal, a progress bar on stderr while a job runs (an import can
 * take minutes); never in --json mode or into a pipe or file. */
static void progress(struct json_object *job, bool done)
{
	static bool shown;
	int64_t pct = job ? int_field(job, "percent_complete", 0) : 0;
	char bar[31];

	if (opt_json || !isatty(STDERR_FILENO))
		return;
	if (done) {
		if (shown)
			fputs("\r\033[K", stderr);
		shown = false;
		return;
	}
	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	memset(bar, '#', (size_t)(pct * 30 / 100));
	memset(bar + pct * 30 / 100, ' ', (size_t)(30 - pct * 30 / 100));
	bar[30] = '\0';
	fprintf(stderr, "\r[%s] %3" PRId64 "%% %s", bar, pct, str_field(job, "method", ""));
	shown = true;
}

#define TIMEOUT_MAX_S (100ull * 366 * 86400)

static struct json_object *wait_job(uint64_t id, bool has_timeout, uint64_t timeout_s)
{
	uint64_t start = dmr_now_usec();

	for (;;) {
		/* Long polls, short enough for the progress bar and the
		 * timeout, and well within REQUEST_TIMEOUT_USEC. */
		uint64_t waited = dmr_now_usec() - start;
		uint64_t wait_s = !opt_json && isatty(STDERR_FILENO) ? 1 : LONG_POLL_S;
		struct json_object *job;

		if (has_timeout) {
			uint64_t left = waited >= timeout_s * 1000000 ? 0 : timeout_s * 1000000 - waited;

			if (wait_s > left / 1000000)
				wait_s = left / 1000000;
		}
		job = get_job(id, wait_s);

		if (int_field(job, "job_state", 0) >= JOB_COMPLETED) {
			progress(job, true);
			return job;
		}
		progress(job, false);
		json_object_put(job);
		waited = dmr_now_usec() - start;
		if (has_timeout && waited >= timeout_s * 1000000) {
			progress(NULL, true);
			fail(DMR_RC_TIMEOUT, "job %" PRIu64 " did not finish within %" PRIu64 " s", id,
			     timeout_s);
		}
		/* Less than a second left, or an agent that answered at
		 * once: poll. */
		sleep_usec(waited < POLL_FAST_FOR_USEC ? POLL_FAST_USEC : POLL_SLOW_USEC);
	}
}

static uint64_t reply_job_id(struct json_object *rep)
{
	int64_t id = int_field(rep, "job", -1);

	if (id < 0)
		fail(DMR_RC_FAILED, "the agent started a job but sent no job number");
	return (uint64_t)id;
}

/* Wait for the job a reply started; a failed job ends the process with the
 * job's own code and description, as if the call itself had failed. */
static struct json_object *wait_job_ok(struct json_object *rep)
{
	struct json_object *job = wait_job(reply_job_id(rep), false, 0);
	int rc = job_rc(job);

	if (rc != DMR_RC_OK) {
		const char *why = str_field(job, "error_description", "");

		fail(rc, "%s", *why ? why : dmr_rc_name(rc));
	}
	return job;
}

/* ---- human output ------------------------------------------------------------------ */

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_job_human(struct json_object *j, bool details)
{
	struct json_object *steps;

	printf("job %" PRId64 ": %s %s: %s, %" PRId64 "%%", int_field(j, "id", 0),
	       str_field(j, "method", "?"), or_dash(str_field(j, "vm", NULL)), str_field(j, "state", "?"),
	       int_field(j, "percent_complete", 0));
	if (int_field(j, "error_code", 0)) {
		const char *why = str_field(j, "error_description", "");
		_cleanup_free_ char *esc = malloc(4 * strlen(why) + 1);

		if (!esc)
			fail_oom();
		printf(", error %" PRId64 ": %s", int_field(j, "error_code", 0),
		       dmr_cescape(esc, 4 * strlen(why) + 1, why));
	}
	putchar('\n');
	if (!details)
		return;
	printf("  started  %s\n  finished %s\n", or_dash(str_field(j, "started", NULL)),
	       or_dash(str_field(j, "finished", NULL)));
	if (json_object_object_get_ex(j, "steps", &steps) && json_object_is_type(steps, json_type_array))
		for (size_t i = 0; i < json_object_array_length(steps); i++) {
			struct json_object *s = json_object_array_get_idx(steps, i);

			printf("  %-16s %12.3f ms\n", str_field(s, "name", "?"),
			       (double)int_field(s, "usec", 0) / 1000.0);
		}
	if (int_field(j, "guest_paused_usec", 0))
		printf("  guest paused     %12.3f ms\n", (double)int_field(j, "guest_paused_usec", 0) / 1000.0);
}

static void print_vm_human(struct json_object *vm)
{
	struct json_object *disks, *fp;

	printf("%s: %s%s, backend %s", str_field(vm, "name", "?"), str_field(vm, "state", "?"),
	       bool_field(vm, "test_failover") ? " (test failover)" : "", str_field(vm, "backend", "?"));
	if (json_object_object_get_ex(vm, "failover_point", &fp) && json_object_is_type(fp, json_type_int))
		printf(", failover point %" PRId64, json_object_get_int64(fp));
	putchar('\n');
	if (!json_object_object_get_ex(vm, "disks", &disks) || !json_object_is_type(disks, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(disks); i++) {
		struct json_object *d = json_object_array_get_idx(disks, i);

		printf("  %-8s %-32s %14" PRId64 " bytes  %s\n", str_field(d, "name", "?"),
		       str_field(d, "device", "?"), int_field(d, "size_bytes", 0), str_field(d, "target", "?"));
	}
}

/* "key: value" per member; nested values as compact JSON. */
static void print_members_human(struct json_object *o, const char *skip1, const char *skip2)
{
	json_object_object_foreach(o, k, v) {
		if (dmr_streq(k, skip1) || dmr_streq(k, skip2))
			continue;
		if (!v)
			printf("%s: -\n", k);
		else if (json_object_is_type(v, json_type_string))
			printf("%s: %s\n", k, json_object_get_string(v));
		else
			printf("%s: %s\n", k, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	}
}

/* ---- options and commands ------------------------------------------------------------ */

enum opt_kind {
	K_STRING, /* a string parameter */
	K_PATH,   /* a path, made absolute: the agent has another cwd */
	K_SHIM,   /* a command line whose first word is a path */
	K_SIZE,   /* bytes, with K M G T suffixes */
	K_U64,    /* a non-negative integer */
	K_FLAG,   /* true when given */
	K_DISK,   /* NAME=PATH[:SIZE], appended to an array */
	K_LIST,   /* a string appended to an array (repeatable) */
	K_MAP,    /* NAME=PATH into an object (repeatable; PATH made absolute) */
	K_CLIENT, /* the client's own (--test, --wait, --timeout) */
};

enum {
	O_DATA, O_META, O_DATA_SIZE, O_META_SIZE, O_FORCE, O_DISK, O_BACKEND, O_QMP, O_QGA,
	O_EXEC_SHIM, O_KEEP_LAST, O_MAX_AGE, O_CONSISTENCY, O_LABEL, O_POINT, O_TEST, O_GUEST,
	O_WAIT, O_TIMEOUT, O_MAC, O_ADDRESS, O_GATEWAY, O_DNS, O_CLEAR, O_COW_SIZE, O_MAX_POINTS,
	O_COW_DEV, O_SPARSE, O_BASE, O_COMPRESS, O_TO, O_INTERVAL, O_BANDWIDTH, O_NOW, O_RESYNC,
	O_VERIFY, O_PAUSE, O_RESUME, O_OFF, O_HASHES, O_POINT_UUID, O_LIBVIRT, O_LIBVIRT_URI,
	O__COUNT,
	/* Options of every command. */
	O_JSON = 0x100, O_SOCKET, O_HELP, O_VERSION,
};

struct opt_def {
	const char *name;
	enum opt_kind kind;
	const char *key;             /* the request parameter */
	const char *const *choices; /* NULL-terminated allowed values, or NULL */
};

static const char *const backends[] = { "thin", "classic", NULL };
static const char *const consistencies[] = { "crash", "application", NULL };
static const char *const guests[] = { "resume", "reset", NULL };
static const char *const compressors[] = { "zstd", NULL };

static const struct opt_def opt_defs[O__COUNT] = {
	[O_DATA] = { "data", K_PATH, "data", NULL },
	[O_META] = { "meta", K_PATH, "meta", NULL },
	[O_DATA_SIZE] = { "data-size", K_SIZE, "data_size", NULL },
	[O_META_SIZE] = { "meta-size", K_SIZE, "meta_size", NULL },
	[O_FORCE] = { "force", K_FLAG, "force", NULL },
	[O_SPARSE] = { "sparse", K_FLAG, "sparse", NULL },
	[O_DISK] = { "disk", K_DISK, "disks", NULL },
	[O_BACKEND] = { "backend", K_STRING, "backend", backends },
	[O_QMP] = { "qmp", K_PATH, "qmp", NULL },
	[O_QGA] = { "qga", K_PATH, "qga", NULL },
	[O_EXEC_SHIM] = { "exec-shim", K_SHIM, "exec_shim", NULL },
	[O_KEEP_LAST] = { "keep-last", K_U64, "keep_last", NULL },
	[O_MAX_AGE] = { "max-age", K_U64, "max_age", NULL },
	[O_CONSISTENCY] = { "consistency", K_STRING, "consistency", consistencies },
	[O_LABEL] = { "label", K_STRING, "label", NULL },
	[O_POINT] = { "point", K_U64, "point", NULL },
	[O_TEST] = { "test", K_CLIENT, NULL, NULL },
	[O_GUEST] = { "guest", K_STRING, "guest", guests },
	[O_WAIT] = { "wait", K_CLIENT, NULL, NULL },
	[O_TIMEOUT] = { "timeout", K_CLIENT, NULL, NULL },
	[O_MAC] = { "mac", K_STRING, "mac", NULL },
	[O_ADDRESS] = { "address", K_LIST, "addresses", NULL },
	[O_GATEWAY] = { "gateway", K_LIST, "gateways", NULL },
	[O_DNS] = { "dns", K_LIST, "dns", NULL },
	[O_CLEAR] = { "clear", K_FLAG, "clear", NULL },
	[O_COW_SIZE] = { "cow-size", K_SIZE, "cow_size", NULL },
	[O_MAX_POINTS] = { "max-points", K_U64, "max_points", NULL },
	[O_COW_DEV] = { "cow-dev", K_MAP, "cow_devices", NULL },
	[O_BASE] = { "base", K_U64, "base", NULL },
	[O_COMPRESS] = { "compress", K_STRING, "compress", compressors },
	/* A command line for the agent's shell, passed as given. */
	[O_TO] = { "to", K_STRING, "to", NULL },
	[O_INTERVAL] = { "interval", K_U64, "interval", NULL },
	[O_BANDWIDTH] = { "bandwidth", K_SIZE, "bandwidth", NULL },
	[O_NOW] = { "now", K_FLAG, "now", NULL },
	[O_RESYNC] = { "resync", K_FLAG, "resync", NULL },
	[O_VERIFY] = { "verify", K_FLAG, "verify", NULL },
	[O_PAUSE] = { "pause", K_FLAG, "pause", NULL },
	[O_RESUME] = { "resume", K_FLAG, "resume", NULL },
	[O_OFF] = { "off", K_FLAG, "off", NULL },
	[O_HASHES] = { "hashes", K_FLAG, "hashes", NULL },
	/* point receive --hashes --point UUID: a point by its uuid. */
	[O_POINT_UUID] = { "point", K_STRING, "uuid", NULL },
	[O_LIBVIRT] = { "libvirt", K_STRING, "libvirt", NULL },
	[O_LIBVIRT_URI] = { "libvirt-uri", K_STRING, "libvirt_uri", NULL },
};
_Static_assert(O__COUNT <= 64, "OPT() bits fit a uint64_t");

#define OPT(o) (1ull << (o))

struct invocation;

struct command {
	const char *group, *name;
	const char *synopsis; /* after "dmrep GROUP NAME " */
	const char *help;
	uint64_t opts;          /* OPT() bits it accepts */
	const char *pos[2];     /* positional argument names */
	const char *pos_key[2]; /* their request parameters */
	bool pos_u64[2];        /* positional is a number */
	const char *method;
	int (*run)(const struct command *cmd, struct invocation *inv);
};

struct invocation {
	struct json_object *params; /* owned; handed to call() */
	bool test, wait, has_timeout;
	uint64_t timeout;
	const char *pos[2];
};

/* ---- option values ---- */

static uint64_t parse_size_arg(const char *what, const char *s)
{
	uint64_t v;

	if (dmr_parse_size(s, &v) < 0 || v == 0 || v > INT64_MAX)
		usage_error("%s: bad size '%s' (a number with K, M, G or T)", what, s);
	return v;
}

static uint64_t parse_u64_arg(const char *what, const char *s)
{
	uint64_t v;

	/* JSON integers are int64 on the agent's side. */
	if (dmr_parse_u64(s, &v) < 0 || v > INT64_MAX)
		usage_error("%s: '%s' is not a non-negative integer", what, s);
	return v;
}

/*
 * An absolute form of path for the agent.  Only the directory is resolved
 * (realpath), not the last component: the file may not exist yet (a new
 * disk), and a symlink such as /dev/vg0/lv must stay the stable name rather
 * than become /dev/dm-N.  Absolute paths are passed as given.
 */
static char *absolute_path(const char *path)
{
	_cleanup_free_ char *d = NULL, *b = NULL, *dir = NULL, *cwd = NULL;
	const char *base;
	char *out;

	if (path[0] == '/') {
		out = strdup(path);
		if (!out)
			fail_oom();
		return out;
	}
	d = strdup(path);
	b = strdup(path);
	if (!d || !b)
		fail_oom();
	base = basename(b);
	dir = realpath(dirname(d), NULL);
	if (dir && strcmp(base, ".") && strcmp(base, "..") && strcmp(base, "/")) {
		if (asprintf(&out, "%s%s%s", dir, dmr_streq(dir, "/") ? "" : "/", base) < 0)
			fail_oom();
		return out;
	}
	/* A directory that does not exist either: the agent will say so
	 * about the path as the user meant it, relative to our cwd. */
	cwd = getcwd(NULL, 0);
	if (!cwd)
		fail(DMR_RC_FAILED, "cannot resolve %s: getcwd: %m", path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		fail_oom();
	return out;
}

/* A shim command line: its first word is a program path, which the agent
 * requires to be absolute; a relative one with a '/' is resolved here. */
static char *absolute_shim(const char *cmdline)
{
	size_t lead = strspn(cmdline, " \t"), len = strcspn(cmdline + lead, " \t");
	_cleanup_free_ char *word = strndup(cmdline + lead, len), *abs = NULL;
	char *out;

	if (!word)
		fail_oom();
	if (len == 0 || word[0] == '/' || !strchr(word, '/')) {
		out = strdup(cmdline);
		if (!out)
			fail_oom();
		return out;
	}
	abs = absolute_path(word);
	if (asprintf(&out, "%s%s", abs, cmdline + lead + len) < 0)
		fail_oom();
	return out;
}

/*
 * --disk NAME=PATH[:SIZE].  SIZE follows the last ':' only if what follows
 * parses as a size: paths may contain ':' themselves (by-path names do).
 */
static struct json_object *parse_disk(const char *spec)
{
	_cleanup_json_ struct json_object *d = new_object();
	_cleanup_free_ char *copy = strdup(spec), *path = NULL;
	char *eq, *colon;
	uint64_t size;

	if (!copy)
		fail_oom();
	eq = strchr(copy, '=');
	if (!eq || eq == copy || !eq[1])
		usage_error("--disk wants NAME=PATH[:SIZE], not '%s'", spec);
	*eq = '\0';
	colon = strrchr(eq + 1, ':');
	if (colon && colon > eq + 1 && dmr_parse_size(colon + 1, &size) == 0) {
		*colon = '\0';
		add(d, "size_bytes", json_object_new_int64((int64_t)parse_size_arg("--disk", colon + 1)));
	}
	path = absolute_path(eq + 1);
	add(d, "name", json_object_new_string(copy));
	add(d, "path", json_object_new_string(path));
	return DMR_TAKE_PTR(d);
}

static void check_choice(const struct opt_def *def, const char *val)
{
	char list[128] = "";

	for (const char *const *c = def->choices; *c; c++) {
		if (dmr_streq(*c, val))
			return;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", c == def->choices ? "" : "|",
			 *c);
	}
	usage_error("--%s must be %s, not '%s'", def->name, list, val);
}

static void apply_option(struct invocation *inv, int idx, const char *arg)
{
	const struct opt_def *def = &opt_defs[idx];
	struct json_object *disks;
	_cleanup_free_ char *s = NULL;
	char what[32];

	snprintf(what, sizeof(what), "--%s", def->name);
	switch (def->kind) {
	case K_STRING:
		if (def->choices)
			check_choice(def, arg);
		add(inv->params, def->key, json_object_new_string(arg));
		break;
	case K_PATH:
		s = absolute_path(arg);
		add(inv->params, def->key, json_object_new_string(s));
		break;
	case K_SHIM:
		s = absolute_shim(arg);
		add(inv->params, def->key, json_object_new_string(s));
		break;
	case K_SIZE:
		/* --bandwidth 0: no cap (a size elsewhere is never 0). */
		if (idx == O_BANDWIDTH && dmr_streq(arg, "0")) {
			add(inv->params, def->key, json_object_new_int64(0));
			break;
		}
		add(inv->params, def->key, json_object_new_int64((int64_t)parse_size_arg(what, arg)));
		break;
	case K_U64:
		add(inv->params, def->key, json_object_new_int64((int64_t)parse_u64_arg(what, arg)));
		break;
	case K_FLAG:
		add(inv->params, def->key, json_object_new_boolean(true));
		break;
	case K_LIST:
		if (!json_object_object_get_ex(inv->params, def->key, &disks)) {
			disks = json_object_new_array();
			add(inv->params, def->key, disks);
		}
		if (json_object_array_add(disks, json_object_new_string(arg)) < 0)
			fail_oom();
		break;
	case K_MAP: {
		const char *eq = strchr(arg, '=');
		_cleanup_free_ char *key = NULL;

		if (!eq || eq == arg || !eq[1])
			usage_error("%s: want NAME=PATH, got '%s'", what, arg);
		key = strndup(arg, (size_t)(eq - arg));
		s = absolute_path(eq + 1);
		if (!key)
			fail_oom();
		if (!json_object_object_get_ex(inv->params, def->key, &disks)) {
			disks = json_object_new_object();
			add(inv->params, def->key, disks);
		}
		if (json_object_object_get_ex(disks, key, NULL))
			usage_error("%s: %s given twice", what, key);
		add(disks, key, json_object_new_string(s));
		break;
	}
	case K_DISK:
		if (!json_object_object_get_ex(inv->params, def->key, &disks)) {
			disks = json_object_new_array();
			add(inv->params, def->key, disks);
		}
		if (json_object_array_add(disks, parse_disk(arg)) < 0)
			fail_oom();
		break;
	case K_CLIENT:
		if (idx == O_TEST)
			inv->test = true;
		else if (idx == O_WAIT)
			inv->wait = true;
		else if (idx == O_TIMEOUT) {
			inv->has_timeout = true;
			inv->timeout = parse_u64_arg("--timeout", arg);
			/* As the agent's durations: 100 years at most, so the
			 * microseconds below cannot wrap to an instant. */
			if (inv->timeout > TIMEOUT_MAX_S)
				usage_error("--timeout: at most %llu seconds", TIMEOUT_MAX_S);
		}
		break;
	}
}

/* ---- command bodies ---- */

/* Print a plain reply: with --json the reply without its id, else its
 * members but id and return. */
static void print_reply(struct json_object *rep)
{
	json_object_object_del(rep, "id");
	if (opt_json)
		print_json(rep);
	else
		print_members_human(rep, "return", NULL);
}

/* A method answered at once: print the reply.  Should the agent run it as
 * a job instead, wait for it, so the command means the same either way. */
static int run_simple(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));

	if (reply_rc(rep) == DMR_RC_JOB_STARTED) {
		json_object_put(wait_job_ok(rep));
		add(rep, "return", json_object_new_int(DMR_RC_OK));
	}
	print_reply(rep);
	return 0;
}

static int run_pool_create(const struct command *cmd, struct invocation *inv)
{
	if (!json_object_object_get_ex(inv->params, "data", NULL) ||
	    !json_object_object_get_ex(inv->params, "meta", NULL))
		usage_error("pool create: --data PATH and --meta PATH are required");
	return run_simple(cmd, inv);
}

static int run_pool_status(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *pool = reply_member(rep, "pool", json_type_object);

	if (opt_json)
		print_json(pool);
	else
		print_members_human(pool, NULL, NULL);
	return 0;
}

static int run_vm_add(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL, *out = NULL;
	const char *vm = inv->pos[0];

	if (!json_object_object_get_ex(inv->params, "disks", NULL))
		usage_error("vm add: at least one --disk NAME=PATH[:SIZE] is required");
	rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	job = wait_job_ok(rep);
	out = new_object();
	add(out, "return", json_object_new_int(DMR_RC_OK));
	add(out, "vm", json_object_new_string(vm));
	add(out, "job", json_object_new_int64(int_field(job, "id", (int64_t)reply_job_id(rep))));
	if (opt_json)
		print_json(out);
	else
		printf("VM %s added\n", vm);
	return 0;
}

static int run_vm_list(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *vms = reply_member(rep, "vms", json_type_array);
	struct json_object *bad;

	if (opt_json) {
		print_json(vms);
		return 0;
	}
	for (size_t i = 0; i < json_object_array_length(vms); i++)
		print_vm_human(json_object_array_get_idx(vms, i));
	/* VMs the agent could not load: said on stderr, the list stays the
	 * list. */
	if (json_object_object_get_ex(rep, "unloadable", &bad) && json_object_is_type(bad, json_type_array))
		for (size_t i = 0; i < json_object_array_length(bad); i++) {
			struct json_object *u = json_object_array_get_idx(bad, i);
			const char *f = str_field(u, "file", "?"), *why = str_field(u, "error", "");
			char ef[1024], ew[512];

			fprintf(stderr, "dmrep: state file %s is unreadable (%s): VM left out\n",
				dmr_cescape(ef, sizeof(ef), f), dmr_cescape(ew, sizeof(ew), why));
		}
	return 0;
}

static int run_vm_show(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *vm = reply_member(rep, "vm", json_type_object);

	if (opt_json)
		print_json(vm);
	else
		print_vm_human(vm);
	return 0;
}

static int run_vm_retention(const struct command *cmd, struct invocation *inv)
{
	if (!json_object_object_get_ex(inv->params, "keep_last", NULL) &&
	    !json_object_object_get_ex(inv->params, "max_age", NULL))
		usage_error("vm retention: give --keep-last N, --max-age SECONDS or both");
	return run_simple(cmd, inv);
}

static int run_point_create(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *job = wait_job_ok(rep), *out = new_object();
	int64_t point = int_field(job, "point", -1);

	if (point < 0)
		fail(DMR_RC_FAILED, "job %" PRId64 " completed without a point number", int_field(job, "id", 0));
	add(out, "return", json_object_new_int(DMR_RC_OK));
	add(out, "point", json_object_new_int64(point));
	if (opt_json)
		print_json(out);
	else
		printf("point %" PRId64 "\n", point);
	return 0;
}

static int run_point_list(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *pts = reply_member(rep, "points", json_type_array);

	if (opt_json) {
		print_json(pts);
		return 0;
	}
	printf("%6s  %-20s  %-11s  %-5s  %-4s  %s\n", "ID", "CREATED", "CONSISTENCY", "VALID", "COW",
	       "LABEL");
	for (size_t i = 0; i < json_object_array_length(pts); i++) {
		struct json_object *pt = json_object_array_get_idx(pts, i);
		char cow[8] = "-"; /* classic points say how full their store is */

		if (json_object_object_get_ex(pt, "cow_used_percent", NULL))
			snprintf(cow, sizeof(cow), "%" PRId64 "%%", int_field(pt, "cow_used_percent", 0));
		printf("%6" PRId64 "  %-20s  %-11s  %-5s  %-4s  %s\n", int_field(pt, "id", 0),
		       str_field(pt, "created", "?"), str_field(pt, "consistency", "?"),
		       bool_field(pt, "valid") ? "yes" : "no", cow, str_field(pt, "label", ""));
	}
	return 0;
}

/* Wait for a stream job (point send, receive) and end the process with
 * its error if it failed. */
static struct json_object *wait_stream_job(struct json_object *rep)
{
	struct json_object *job = wait_job(reply_job_id(rep), false, 0);
	int rc = job_rc(job);

	if (rc != DMR_RC_OK) {
		const char *why = str_field(job, "error_description", "");

		fail(rc, "job %" PRId64 ": %s", int_field(job, "id", 0), *why ? why : dmr_rc_name(rc));
	}
	return job;
}

static int run_point_send(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL, *out = new_object();
	const char *uuid;
	int64_t point, bytes;

	if (isatty(STDOUT_FILENO))
		fail(DMR_RC_INVALID_PARAMETER,
		     "stdout is a terminal: redirect it to a file or a pipe");
	rep = call_fd(cmd->method, DMR_TAKE_PTR(inv->params), STDOUT_FILENO);
	job = wait_stream_job(rep);
	point = int_field(job, "point", -1);
	bytes = int_field(job, "bytes", -1);
	uuid = str_field(job, "uuid", "");
	add(out, "return", json_object_new_int(DMR_RC_OK));
	add(out, "point", json_object_new_int64(point));
	add(out, "uuid", json_object_new_string(uuid));
	add(out, "bytes", json_object_new_int64(bytes));
	if (json_object_object_get_ex(job, "base", NULL))
		add(out, "base", json_object_new_int64(int_field(job, "base", 0)));
	/* More than the contract's shape: which job, and the disk bytes in
	 * the data records (what a change cost). */
	add(out, "data_bytes", json_object_new_int64(int_field(job, "data_bytes", 0)));
	add(out, "job", json_object_new_int64(int_field(job, "id", 0)));
	if (opt_json)
		print_json(out);
	else
		fprintf(stderr, "point %" PRId64 " (%s) sent%s: %" PRId64 " bytes\n", point, uuid,
			json_object_object_get_ex(job, "base", NULL) ? " as an incremental" : "",
			bytes);
	return 0;
}

static bool take_flag(struct json_object *params, const char *key)
{
	bool set = json_object_object_get_ex(params, key, NULL);

	json_object_object_del(params, key);
	return set;
}

/* The block hashes of a point of VM (uuid NULL: its newest) written by the
 * agent to our stdout (HashReplicaPoint), then the answer line
 * (docs/stream.md "Hash requests"), JSON with or without --json: a
 * resync's primary reads it. */
static int print_hashes(const char *vm, const char *uuid)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL, *out = new_object();
	struct json_object *params = new_object();

	add(params, "vm", json_object_new_string(vm));
	if (uuid)
		add(params, "uuid", json_object_new_string(uuid));
	fflush(stdout);
	rep = call_fd("HashReplicaPoint", params, STDOUT_FILENO);
	job = wait_stream_job(rep);
	add(out, "return", json_object_new_int(DMR_RC_OK));
	add(out, "point", json_object_new_int64(int_field(job, "point", 0)));
	add(out, "hashes_of", json_object_new_string(str_field(job, "hashes_of", "")));
	add(out, "bytes", json_object_new_int64(int_field(job, "bytes", 0)));
	add(out, "checksum", json_object_new_string(str_field(job, "checksum", "")));
	print_json(out);
	return 0;
}

static int run_point_receive(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL, *out = new_object();
	_cleanup_free_ char *vm = strdup(str_field(inv->params, "vm", ""));
	struct json_object *v;
	const char *uuid;
	int64_t point;

	if (!vm)
		fail_oom();
	if (take_flag(inv->params, "hashes")) {
		_cleanup_free_ char *want = json_object_object_get_ex(inv->params, "uuid", &v) ?
					    strdup(json_object_get_string(v)) : NULL;

		return print_hashes(vm, want);
	}
	if (json_object_object_get_ex(inv->params, "uuid", NULL))
		usage_error("point receive: --point goes with --hashes");
	if (isatty(STDIN_FILENO))
		fail(DMR_RC_INVALID_PARAMETER,
		     "stdin is a terminal: redirect it from a file or a pipe");
	rep = call_fd(cmd->method, DMR_TAKE_PTR(inv->params), STDIN_FILENO);
	job = wait_stream_job(rep);
	/* A resync's or a verify's hash request came instead of a stream. */
	if (json_object_object_get_ex(job, "hash_request", &v))
		return print_hashes(vm, json_object_get_string(v));
	point = int_field(job, "point", -1);
	uuid = str_field(job, "uuid", "");
	if (point < 0)
		fail(DMR_RC_FAILED, "job %" PRId64 " completed without a point number",
		     int_field(job, "id", 0));
	add(out, "return", json_object_new_int(DMR_RC_OK));
	add(out, "point", json_object_new_int64(point));
	add(out, "uuid", json_object_new_string(uuid));
	if (opt_json)
		print_json(out);
	else
		printf("point %" PRId64 " (%s) received\n", point, uuid);
	return 0;
}

/* Print a finished job; exit status by its outcome, with the reason on
 * stderr when it failed. */
static int finish_job(struct json_object *job)
{
	int rc = job_rc(job);

	if (opt_json)
		print_json(job);
	else
		print_job_human(job, true);
	if (rc != DMR_RC_OK) {
		const char *why = str_field(job, "error_description", "");
		_cleanup_free_ char *esc = malloc(4 * strlen(why) + 1);

		if (!esc)
			fail_oom();
		fprintf(stderr, "dmrep: job %" PRId64 " failed: %s\n", int_field(job, "id", 0),
			*why ? dmr_cescape(esc, 4 * strlen(why) + 1, why) : dmr_rc_name(rc));
	}
	return exit_status(rc);
}

static int run_failover(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL;
	const char *method = cmd->method;

	/* --guest goes along with --test too: the contract's synopsis allows
	 * the pair, and the agent checks the value either way. */
	if (inv->test)
		method = "TestReplicaSystem";
	rep = call(method, DMR_TAKE_PTR(inv->params));
	if (!inv->wait) {
		print_reply(rep);
		if (!opt_json)
			printf("(dmrep job wait %" PRIu64 " to follow it)\n", reply_job_id(rep));
		return 0;
	}
	job = wait_job(reply_job_id(rep), false, 0);
	return finish_job(job);
}


/* vm replicate: --now, --resync and --verify start a job
 * (StartReplicationCycle), as the failover commands do; the other forms
 * set or change replication (SetReplication) and answer at once. */
static int run_vm_replicate(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = NULL, *job = NULL;
	bool now = take_flag(inv->params, "now"), resync = take_flag(inv->params, "resync"),
	     verify = take_flag(inv->params, "verify");

	if (now + resync + verify > 1)
		usage_error("vm replicate: --now, --resync and --verify are one at a time");
	if (!now && !resync && !verify) {
		if (inv->wait)
			usage_error("vm replicate: --wait goes with --now, --resync or --verify");
		if (json_object_object_length(inv->params) < 2)
			usage_error("vm replicate: give --to COMMAND (and settings), --now, --pause, "
				    "--resume or --off");
		return run_simple(cmd, inv);
	}
	if (json_object_object_length(inv->params) > 1)
		usage_error("vm replicate: --%s takes no settings (only --wait)",
			    now ? "now" : resync ? "resync" : "verify");
	add(inv->params, "kind", json_object_new_string(now ? "cycle" : resync ? "resync" : "verify"));
	rep = call("StartReplicationCycle", DMR_TAKE_PTR(inv->params));
	if (!inv->wait) {
		print_reply(rep);
		if (!opt_json)
			printf("(dmrep job wait %" PRIu64 " to follow it)\n", reply_job_id(rep));
		return 0;
	}
	job = wait_job(reply_job_id(rep), false, 0);
	return finish_job(job);
}

static int run_job_show(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *job = reply_member(rep, "job", json_type_object);

	if (opt_json)
		print_json(job);
	else
		print_job_human(job, true);
	return 0;
}

static int run_job_wait(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *job =
		wait_job(parse_u64_arg("JOB", inv->pos[0]), inv->has_timeout, inv->timeout);

	return finish_job(job);
}

static int run_job_list(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *rep = call(cmd->method, DMR_TAKE_PTR(inv->params));
	_cleanup_json_ struct json_object *jobs = reply_member(rep, "jobs", json_type_array);

	if (opt_json) {
		print_json(jobs);
		return 0;
	}
	for (size_t i = 0; i < json_object_array_length(jobs); i++)
		print_job_human(json_object_array_get_idx(jobs, i), false);
	return 0;
}

/* ---- metrics ---------------------------------------------------------------------- */

/*
 * dmrep metrics: Prometheus' text exposition format (what node_exporter's
 * textfile collector reads), composed from the read methods a non-member
 * may call too: GetPoolStatus, ListVirtualSystems, ListReplicationPoints
 * per VM and ListJobs.  Composed in memory and printed at the end, so that
 * stdout holds the whole exposition or, on failure, only "dmrep_up 0".
 */

/* dm-thin's metadata block, in bytes (the kernel's fixed 4 KiB). */
#define THIN_META_BLOCK_BYTES 4096

static const char metrics_down[] =
	"# HELP dmrep_up Whether dmrep metrics could read everything from the agent.\n"
	"# TYPE dmrep_up gauge\n"
	"dmrep_up 0\n";

static const char *const repl_states[] = { "off", "ok", "warning", "critical", "paused",
					   "resync-required", NULL };
static const char *const pool_modes[] = { "rw", "ro", "out_of_data_space", "fail", NULL };

struct vm_metrics {
	const char *name;
	struct json_object *vm;     /* borrowed from the VM list */
	int64_t points;             /* -1: the list could not be read */
	int64_t oldest_usec, newest_valid_usec; /* 0: none */
	struct json_object *failover; /* borrowed: the newest finished InitiateFailover */
};

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the format wants it: backslash, quote, newline escaped. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* name{vm="VM"[,key="val"]} value; vm NULL: no labels. */
static void sample(FILE *f, const char *name, const char *vm, const char *key, const char *val, double v)
{
	fputs(name, f);
	if (vm) {
		fputs("{vm=\"", f);
		label_value(f, vm);
		fputc('"', f);
		if (key) {
			fprintf(f, ",%s=\"", key);
			label_value(f, val);
			fputc('"', f);
		}
		fputc('}', f);
	}
	/* Integers (bytes, counts) exactly, fractions to the microsecond. */
	if (v == (double)(int64_t)v)
		fprintf(f, " %" PRId64 "\n", (int64_t)v);
	else
		fprintf(f, " %.6f\n", v);
}

/* An RFC 3339 UTC time as the agent writes it, in µs; 0 if unreadable. */
static int64_t rfc3339_usec(const char *s)
{
	struct tm tm = { 0 };
	const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
	time_t t;

	if (!end || *end)
		return 0;
	t = timegm(&tm);
	return t < 0 ? 0 : (int64_t)t * 1000000;
}

static double age_s(int64_t now_usec, int64_t then_usec)
{
	return now_usec > then_usec ? (double)((now_usec - then_usec) / 1000000) : 0;
}

static struct json_object *repl_of(struct json_object *vm)
{
	struct json_object *r;

	return json_object_object_get_ex(vm, "replication", &r) && json_object_is_type(r, json_type_object) ?
		       r : NULL;
}

static void metrics_pool(FILE *f, struct json_object *pool)
{
	const char *mode = pool ? str_field(pool, "mode", "") : "";

	family(f, "dmrep_pool_up", "gauge", "Whether the thin pool exists and its status could be read.");
	sample(f, "dmrep_pool_up", NULL, NULL, NULL, pool != NULL);
	if (!pool)
		return;
	family(f, "dmrep_pool_data_used_bytes", "gauge", "Data space of the thin pool in use.");
	sample(f, "dmrep_pool_data_used_bytes", NULL, NULL, NULL, (double)int_field(pool, "data_used_bytes", 0));
	family(f, "dmrep_pool_data_size_bytes", "gauge", "Data space of the thin pool.");
	sample(f, "dmrep_pool_data_size_bytes", NULL, NULL, NULL, (double)int_field(pool, "data_size_bytes", 0));
	family(f, "dmrep_pool_metadata_used_bytes", "gauge", "Metadata space of the thin pool in use.");
	sample(f, "dmrep_pool_metadata_used_bytes", NULL, NULL, NULL,
	       (double)int_field(pool, "meta_used_blocks", 0) * THIN_META_BLOCK_BYTES);
	family(f, "dmrep_pool_metadata_size_bytes", "gauge", "Metadata space of the thin pool.");
	sample(f, "dmrep_pool_metadata_size_bytes", NULL, NULL, NULL,
	       (double)int_field(pool, "meta_total_blocks", 0) * THIN_META_BLOCK_BYTES);
	family(f, "dmrep_pool_mode", "gauge", "The thin pool's mode (1 for the current one).");
	for (const char *const *m = pool_modes; *m; m++) {
		fputs("dmrep_pool_mode{mode=\"", f);
		label_value(f, *m);
		fprintf(f, "\"} %d\n", dmr_streq(*m, mode));
	}
	family(f, "dmrep_pool_needs_check", "gauge", "Whether the pool's metadata needs a check (read-only).");
	sample(f, "dmrep_pool_needs_check", NULL, NULL, NULL, bool_field(pool, "needs_check"));
}

static void metrics_vms(FILE *f, struct vm_metrics *m, size_t n, int64_t now)
{
	family(f, "dmrep_vm_info", "gauge", "A protected VM: its role, backend and state as labels.");
	for (size_t i = 0; i < n; i++) {
		fputs("dmrep_vm_info{vm=\"", f);
		label_value(f, m[i].name);
		fputs("\",role=\"", f);
		label_value(f, str_field(m[i].vm, "role", ""));
		fputs("\",backend=\"", f);
		label_value(f, str_field(m[i].vm, "backend", ""));
		fputs("\",state=\"", f);
		label_value(f, str_field(m[i].vm, "state", ""));
		fputs("\"} 1\n", f);
	}
	family(f, "dmrep_vm_points", "gauge", "Replication points of the VM.");
	for (size_t i = 0; i < n; i++)
		if (m[i].points >= 0)
			sample(f, "dmrep_vm_points", m[i].name, NULL, NULL, (double)m[i].points);
	family(f, "dmrep_vm_newest_point_age_seconds", "gauge",
	       "Age of the VM's newest valid point (what a failover uses by default).");
	for (size_t i = 0; i < n; i++)
		if (m[i].newest_valid_usec)
			sample(f, "dmrep_vm_newest_point_age_seconds", m[i].name, NULL, NULL,
			       age_s(now, m[i].newest_valid_usec));
	family(f, "dmrep_vm_oldest_point_age_seconds", "gauge", "Age of the VM's oldest point.");
	for (size_t i = 0; i < n; i++)
		if (m[i].oldest_usec)
			sample(f, "dmrep_vm_oldest_point_age_seconds", m[i].name, NULL, NULL,
			       age_s(now, m[i].oldest_usec));
	family(f, "dmrep_vm_last_failover_guest_paused_seconds", "gauge",
	       "How long the guest was paused in the VM's newest finished failover (InitiateFailover).");
	for (size_t i = 0; i < n; i++)
		if (m[i].failover)
			sample(f, "dmrep_vm_last_failover_guest_paused_seconds", m[i].name, NULL, NULL,
			       (double)int_field(m[i].failover, "guest_paused_usec", 0) / 1e6);
	family(f, "dmrep_replication_state", "gauge", "The VM's replication health (1 for the current one).");
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = repl_of(m[i].vm);
		const char *st = r ? str_field(r, "state", NULL) : NULL;
		bool known = false;

		if (!st)
			continue;
		for (const char *const *s = repl_states; *s; s++) {
			known |= dmr_streq(*s, st);
			sample(f, "dmrep_replication_state", m[i].name, "state", *s, dmr_streq(*s, st));
		}
		if (!known) /* a state of a later agent */
			sample(f, "dmrep_replication_state", m[i].name, "state", st, 1);
	}
	family(f, "dmrep_replication_lag_seconds", "gauge",
	       "How far the replica is behind: the age of the newest point it acknowledged.");
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = repl_of(m[i].vm), *v;

		if (r && json_object_object_get_ex(r, "lag_seconds", &v) && json_object_is_type(v, json_type_int))
			sample(f, "dmrep_replication_lag_seconds", m[i].name, NULL, NULL,
			       (double)json_object_get_int64(v));
	}
	family(f, "dmrep_replication_sent_bytes_total", "counter", "Stream bytes the VM's replication sent.");
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = repl_of(m[i].vm);

		if (r && json_object_object_get_ex(r, "bytes_sent", NULL))
			sample(f, "dmrep_replication_sent_bytes_total", m[i].name, NULL, NULL,
			       (double)int_field(r, "bytes_sent", 0));
	}
	family(f, "dmrep_replica_newest_point_age_seconds", "gauge",
	       "On a replica: the age of the newest point received.");
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = repl_of(m[i].vm), *v;

		if (r && json_object_object_get_ex(r, "newest_point_age_seconds", &v) &&
		    json_object_is_type(v, json_type_int))
			sample(f, "dmrep_replica_newest_point_age_seconds", m[i].name, NULL, NULL,
			       (double)json_object_get_int64(v));
	}
}

/* A VM's points: their count, the oldest's and the newest valid one's time. */
static void vm_points(struct vm_metrics *m)
{
	struct json_object *p = new_object();
	_cleanup_json_ struct json_object *rep = NULL;
	struct json_object *pts;

	add(p, "vm", json_object_new_string(m->name));
	rep = call_any("ListReplicationPoints", p, -1, true);
	/* Removed since the VM list: left out, not a failure. */
	if (reply_rc(rep) == DMR_RC_NOT_FOUND)
		return;
	if (reply_rc(rep) != DMR_RC_OK)
		fail(reply_rc(rep), "%s", str_field(rep, "error", dmr_rc_name(reply_rc(rep))));
	if (!json_object_object_get_ex(rep, "points", &pts) || !json_object_is_type(pts, json_type_array))
		fail(DMR_RC_FAILED, "the agent's reply has no points");
	m->points = (int64_t)json_object_array_length(pts);
	for (size_t k = 0; k < json_object_array_length(pts); k++) {
		struct json_object *pt = json_object_array_get_idx(pts, k);
		int64_t t = rfc3339_usec(str_field(pt, "created", NULL));

		if (t && (!m->oldest_usec || t < m->oldest_usec))
			m->oldest_usec = t;
		if (t && bool_field(pt, "valid") && t > m->newest_valid_usec)
			m->newest_valid_usec = t;
	}
}

static int run_metrics(const struct command *cmd, struct invocation *inv)
{
	_cleanup_json_ struct json_object *pool_rep = NULL, *vms_rep = NULL, *jobs_rep = NULL;
	_cleanup_free_ struct vm_metrics *m = NULL;
	_cleanup_free_ char *text = NULL;
	struct json_object *pool = NULL, *vms, *jobs, *active;
	int64_t now = (int64_t)dmr_realtime_usec(), failed = 0, running = 0;
	size_t n, len = 0;
	FILE *f;

	fail_stdout = metrics_down;
	pool_rep = call_any("GetPoolStatus", DMR_TAKE_PTR(inv->params), -1, true);
	/* No pool (32775: classic VMs need none), or a pool down (answered,
	 * "active": false; 32777 from an older agent): said by dmrep_pool_up,
	 * not a failure of the command. */
	if (reply_rc(pool_rep) == DMR_RC_OK) {
		json_object_object_get_ex(pool_rep, "pool", &pool);
		/* A pool that is down has no usage to report: not up. */
		if (pool && json_object_object_get_ex(pool, "active", &active) &&
		    !json_object_get_boolean(active))
			pool = NULL;
	}
	else if (reply_rc(pool_rep) != DMR_RC_INVALID_STATE && reply_rc(pool_rep) != DMR_RC_UNAVAILABLE)
		fail(reply_rc(pool_rep), "%s", str_field(pool_rep, "error", dmr_rc_name(reply_rc(pool_rep))));
	vms_rep = call("ListVirtualSystems", NULL);
	if (!json_object_object_get_ex(vms_rep, "vms", &vms) || !json_object_is_type(vms, json_type_array))
		fail(DMR_RC_FAILED, "the agent's reply has no vms");
	jobs_rep = call("ListJobs", NULL);
	if (!json_object_object_get_ex(jobs_rep, "jobs", &jobs) || !json_object_is_type(jobs, json_type_array))
		fail(DMR_RC_FAILED, "the agent's reply has no jobs");
	n = json_object_array_length(vms);
	m = calloc(n ? n : 1, sizeof(*m));
	if (!m)
		fail_oom();
	for (size_t i = 0; i < n; i++) {
		m[i].vm = json_object_array_get_idx(vms, i);
		m[i].name = str_field(m[i].vm, "name", "");
		m[i].points = -1;
		vm_points(&m[i]);
	}
	/* Jobs come oldest first: the last finished failover of a VM wins. */
	for (size_t k = 0; k < json_object_array_length(jobs); k++) {
		struct json_object *j = json_object_array_get_idx(jobs, k);

		if (int_field(j, "job_state", 0) < JOB_COMPLETED) {
			running++;
			continue;
		}
		if (job_rc(j) != DMR_RC_OK)
			failed++;
		if (!dmr_streq(str_field(j, "method", ""), "InitiateFailover"))
			continue;
		for (size_t i = 0; i < n; i++)
			if (dmr_streq(m[i].name, str_field(j, "vm", NULL)))
				m[i].failover = j;
	}

	f = open_memstream(&text, &len);
	if (!f)
		fail_oom();
	family(f, "dmrep_up", "gauge", "Whether dmrep metrics could read everything from the agent.");
	sample(f, "dmrep_up", NULL, NULL, NULL, 1);
	metrics_pool(f, pool);
	metrics_vms(f, m, n, now);
	family(f, "dmrep_jobs_failed", "gauge",
	       "Finished jobs that failed, of those the agent keeps (its last 1000).");
	sample(f, "dmrep_jobs_failed", NULL, NULL, NULL, (double)failed);
	family(f, "dmrep_jobs_running", "gauge", "Jobs not finished yet.");
	sample(f, "dmrep_jobs_running", NULL, NULL, NULL, (double)running);
	if (fclose(f) != 0 || !text)
		fail_oom();
	if (opt_json) {
		_cleanup_json_ struct json_object *out = new_object();

		add(out, "return", json_object_new_int(DMR_RC_OK));
		add(out, "metrics", json_object_new_string(text));
		print_json(out);
	} else {
		fputs(text, stdout);
	}
	fail_stdout = NULL;
	return 0;
}

static const struct command commands[] = {
	{ "pool", "create", "--data PATH --meta PATH [--data-size SIZE] [--meta-size SIZE] [--force]\n"
	  "            [--sparse]",
	  "Make the thin pool on two files or block devices (files of SIZE are created);\n"
	  "--force overwrites a device that carries a signature.  Files are allocated in\n"
	  "full (fallocate), and refused (32778) if their filesystem cannot hold them;\n"
	  "--sparse leaves them sparse instead: when that filesystem fills, writes to\n"
	  "new blocks fail and the pool turns read-only (the agent warns before).",
	  OPT(O_DATA) | OPT(O_META) | OPT(O_DATA_SIZE) | OPT(O_META_SIZE) | OPT(O_FORCE) |
	  OPT(O_SPARSE), { NULL },
	  { NULL }, { false }, "CreatePool", run_pool_create },
	{ "pool", "status", "", "The pool's usage, mode and health (ok, fail, needs_check,\n"
	  "read_only, out_of_data_space, out_of_metadata_space) and what to do about\n"
	  "it.  A pool the agent could not activate at start is \"active\": false,\n"
	  "mode down, health fail, with its reason and advice.", 0, { NULL }, { NULL }, { false },
	  "GetPoolStatus", run_pool_status },
	{ "pool", "repair", "[--wait]",
	  "Bring a failed or read-only pool back (root only; after its metadata device\n"
	  "works again, or was grown when the pool ran out of metadata space): its\n"
	  "volumes' devices are switched to error, the metadata is backed up, checked\n"
	  "and rewritten with thin_repair (into the whole device), then everything is\n"
	  "brought back as it was.  Prints the job; with --wait the finished job (its\n"
	  "\"backup\" names the old metadata's copy).",
	  OPT(O_WAIT), { NULL }, { NULL }, { false }, "RepairPool", run_failover },
	{ "vm", "add",
	  "VM --disk NAME=PATH[:SIZE] [--disk ...] [--backend thin|classic]\n"
	  "            [--qmp SOCKET] [--qga SOCKET] [--exec-shim COMMAND]\n"
	  "            [--libvirt DOMAIN [--libvirt-uri URI]]\n"
	  "            [--keep-last N] [--max-age SECONDS] [--cow-size SIZE] [--max-points N]",
	  "Protect a VM.  Each --disk NAME=PATH imports an existing image or block device\n"
	  "(thin) or uses it in place (classic); NAME=PATH:SIZE with a PATH that does not\n"
	  "exist makes an empty disk.  SIZE is split at the last ':' only if it reads as a\n"
	  "size, so paths may contain ':'.  A VM name may not end in -test (a test\n"
	  "failover's devices are /dev/dmrep/VM-test/DISK).  --qmp, --exec-shim or\n"
	  "--libvirt name the hypervisor the agent pauses during a failover: --libvirt\n"
	  "a libvirt domain (name or UUID) on URI (default qemu:///system; another URI\n"
	  "is root-only), paused, resumed and reset through libvirt's API, and frozen\n"
	  "through it for application-consistent points when --qga is not given.\n"
	  "Classic only: --cow-size\n"
	  "is each point's COW store per disk (default a quarter of the disk, at least\n"
	  "8M), --max-points the cap on points (default 8).  Waits for the import;\n"
	  "prints the job.",
	  OPT(O_DISK) | OPT(O_BACKEND) | OPT(O_QMP) | OPT(O_QGA) | OPT(O_EXEC_SHIM) | OPT(O_KEEP_LAST) |
		  OPT(O_MAX_AGE) | OPT(O_COW_SIZE) | OPT(O_MAX_POINTS) | OPT(O_LIBVIRT) |
		  OPT(O_LIBVIRT_URI),
	  { "VM", NULL }, { "vm", NULL }, { false }, "AddVirtualSystem", run_vm_add },
	{ "vm", "list", "", "Every protected VM.", 0, { NULL }, { NULL }, { false }, "ListVirtualSystems",
	  run_vm_list },
	{ "vm", "show", "VM", "A VM's state and disks.", 0, { "VM", NULL }, { "vm", NULL }, { false },
	  "GetVirtualSystem", run_vm_show },
	{ "vm", "remove", "VM [--force]",
	  "Stop protecting a VM: removes its devices, volumes and points.  A classic VM\n"
	  "keeps its disks, but after a commit its data lives in the layers: it is\n"
	  "removed only with --force (copy /dev/dmrep/VM/DISK out first).",
	  OPT(O_FORCE), { "VM", NULL }, { "vm", NULL }, { false }, "RemoveVirtualSystem", run_simple },
	{ "vm", "retention", "VM [--keep-last N] [--max-age SECONDS]",
	  "Change how many points, and how old, a VM keeps; applied at once.  The latest\n"
	  "valid point is always kept.  N at most 1000000, SECONDS at most 3162240000\n"
	  "(100 years).",
	  OPT(O_KEEP_LAST) | OPT(O_MAX_AGE), { "VM", NULL }, { "vm", NULL }, { false }, "SetRetentionPolicy",
	  run_vm_retention },
	{ "vm", "network", "VM --mac MAC [--address IP[/PREFIX]]... [--gateway IP]... [--dns IP]... [--clear]",
	  "Set (or with --clear remove) the failover network settings of one NIC of the VM:\n"
	  "the addresses, gateways and DNS servers to use after a failover.  The agent's\n"
	  "failover hooks get them in their environment (dmrepd --hook-dir).",
	  OPT(O_MAC) | OPT(O_ADDRESS) | OPT(O_GATEWAY) | OPT(O_DNS) | OPT(O_CLEAR), { "VM", NULL },
	  { "vm", NULL }, { false }, "SetFailoverNetworkAdapterSettings", run_simple },
	{ "vm", "demote", "VM [--point POINT] [--force]",
	  "On the old primary, after the VM failed over to another host and was committed\n"
	  "there: make the VM here a replica of that host, so that it replicates back\n"
	  "incrementally.  The common point (the last point both hosts hold) is --point\n"
	  "if given (this host's id), else the last point the other host acknowledged\n"
	  "(vm replicate), else the newest valid point.  The points newer than it are\n"
	  "dropped: refused (32775, with their count) unless --force.  The live disks\n"
	  "(the data written here since, diverged) and /dev/dmrep/VM/DISK go; the\n"
	  "replication settings are cleared; the VM's latest point is then the common\n"
	  "point, the base of the other host's next incremental.  With no common point,\n"
	  "--force drops every point (the next stream must be full).  Refused while a\n"
	  "disk's device is open (32774), and unless --force while the hypervisor says\n"
	  "the guest runs or is paused (32775) or does not answer (32777): shut the\n"
	  "guest down first.  Prints {\"return\": 0, \"point\": POINT, \"uuid\": \"...\",\n"
	  "\"dropped\": N}.  Root only (32769).  Thin VMs only (classic: 32770).",
	  OPT(O_POINT) | OPT(O_FORCE), { "VM", NULL }, { "vm", NULL }, { false }, "DemoteVirtualSystem",
	  run_simple },
	{ "vm", "replicate",
	  "VM --to COMMAND [--interval SECONDS] [--consistency crash|application]\n"
	  "            [--compress zstd] [--bandwidth SIZE]\n"
	  "   or: dmrep vm replicate VM --now [--wait] | --resync [--wait] | --verify [--wait]\n"
	  "   or: dmrep vm replicate VM --pause | --resume | --off",
	  "Replicate the VM to another host every --interval seconds (default 300, at\n"
	  "least 30): each cycle takes a point (--consistency, default crash), starts\n"
	  "COMMAND as root through /bin/sh -c, writes the point's stream to its stdin\n"
	  "(incrementally from the last point the replica acknowledged) and counts it\n"
	  "acknowledged only when COMMAND exits 0 and the last line of its stdout is\n"
	  "the receiver's JSON with return 0 and the uuid sent; the usual COMMAND is\n"
	  "'ssh REPLICA dmrep --json point receive VM'.  Setting --to is root-only\n"
	  "(32769).  --bandwidth caps the bytes per second written to COMMAND (0: no\n"
	  "cap); --compress zstd compresses the data.  Settings may be changed later\n"
	  "without --to; a new --to forgets the acknowledged point (the next cycle is\n"
	  "full).  --now runs a cycle at once: prints {\"return\": 4096, \"job\": JOB},\n"
	  "or with --wait the finished job (method ReplicationCycle; its \"stderr\" holds\n"
	  "COMMAND's) and exits by its outcome.  --pause and --resume stop and restart\n"
	  "the cycles, --off ends replication (settings and acknowledged point\n"
	  "forgotten).  vm show's \"replication\" object has the health.  --resync and\n"
	  "--verify (docs/replication.md) are jobs as --now.  A replica VM: 32775.",
	  OPT(O_TO) | OPT(O_INTERVAL) | OPT(O_CONSISTENCY) | OPT(O_COMPRESS) | OPT(O_BANDWIDTH) |
		  OPT(O_NOW) | OPT(O_RESYNC) | OPT(O_VERIFY) | OPT(O_WAIT) | OPT(O_PAUSE) |
		  OPT(O_RESUME) | OPT(O_OFF),
	  { "VM", NULL }, { "vm", NULL }, { false }, "SetReplication", run_vm_replicate },
	{ "point", "create",
	  "VM [--consistency crash|application] [--label TEXT]\n"
	  "            [--cow-dev DISK=DEVICE ...] [--force]",
	  "Take a point over every disk of the VM at once; prints its number.  Classic\n"
	  "VMs: --cow-dev puts that disk's COW store on a block device instead of a file\n"
	  "(refused if it is in use or carries a signature, unless --force).",
	  OPT(O_CONSISTENCY) | OPT(O_LABEL) | OPT(O_COW_DEV) | OPT(O_FORCE),
	  { "VM", NULL }, { "vm", NULL }, { false }, "CreateReplicationPoint", run_point_create },
	{ "point", "list", "VM", "A VM's points, oldest first.", 0, { "VM", NULL }, { "vm", NULL }, { false },
	  "ListReplicationPoints", run_point_list },
	{ "point", "remove", "VM POINT", "Destroy a point.", 0, { "VM", "POINT" }, { "vm", "point" },
	  { false, true }, "DestroyReplicationPoint", run_simple },
	{ "point", "send", "VM [--point POINT] [--base POINT] [--compress zstd]   > STREAM",
	  "Write a replication stream of POINT (default: the latest valid point) to\n"
	  "stdout, for 'point receive' on another host.  With --base, only what differs\n"
	  "between that older point and POINT; without, the whole point (blocks never\n"
	  "written are not sent).  --compress zstd compresses the data.  The agent writes\n"
	  "the stream itself to the stdout it is handed, which must be a file or a pipe,\n"
	  "not a terminal (32773).  stdout carries the stream and nothing else: the\n"
	  "summary, and on failure the error, go to stderr (JSON there with --json:\n"
	  "{\"return\": 0, \"point\": POINT, \"uuid\": \"...\", \"bytes\": N}).  Root only\n"
	  "(32769).  Waits for the send; the VM takes no other operation meanwhile.\n"
	  "Thin VMs only (classic: 32770).",
	  OPT(O_POINT) | OPT(O_BASE) | OPT(O_COMPRESS), { "VM", NULL }, { "vm", NULL }, { false },
	  "SendReplicationPoint", run_point_send },
	{ "point", "receive", "VM [--hashes [--point UUID]]   < STREAM",
	  "Read a replication stream ('point send' on another host) from stdin and make\n"
	  "it a point of VM here; a VM not known here is created as a replica.  stdin\n"
	  "must be a file or a pipe, not a terminal (32773).  Prints {\"return\": 0,\n"
	  "\"point\": POINT, \"uuid\": \"...\"} with --json once the point is durable.\n"
	  "A stream that is corrupt, truncated or followed by anything is refused (32773),\n"
	  "so is one whose base is not the replica's latest point or that it holds\n"
	  "already (32775); nothing changes then.  Root only (32769).  --hashes [--point\n"
	  "UUID]: print the block hashes of the newest (or that) point instead\n"
	  "(docs/stream.md), as a resync's or verify's hash request on stdin does.",
	  OPT(O_HASHES) | OPT(O_POINT_UUID), { "VM", NULL }, { "vm", NULL }, { false }, "ReceiveReplicationPoint", run_point_receive },
	{ "failover", "start", "VM [--point POINT] [--test] [--guest resume|reset] [--wait]",
	  "Switch every disk of the VM to a point (default: the latest valid one) and reset\n"
	  "(default) or resume the guest.  --test instead shows the point at\n"
	  "/dev/dmrep/VM-test/DISK beside the running VM.  On a replica (the primary is\n"
	  "lost): /dev/dmrep/VM/DISK appear, a writable view of the point (never written\n"
	  "itself), with no hypervisor; the failover hooks may start the VM; revert takes\n"
	  "them away, commit makes this host the VM's primary.",
	  OPT(O_POINT) | OPT(O_TEST) | OPT(O_GUEST) | OPT(O_WAIT), { "VM", NULL }, { "vm", NULL }, { false },
	  "InitiateFailover", run_failover },
	{ "failover", "revert", "VM [--guest resume|reset] [--wait]",
	  "Go back to the live replica and drop the failover; reset (default) or resume\n"
	  "the guest, which now sees the live disks again.",
	  OPT(O_GUEST) | OPT(O_WAIT), { "VM", NULL }, { "vm", NULL }, { false }, "RevertFailover", run_failover },
	{ "failover", "commit", "VM [--wait]",
	  "Keep the failover for good: the point's timeline becomes the live one.  On a\n"
	  "replica, the VM becomes a primary here (role \"primary\"): it takes points,\n"
	  "can replicate back to the old primary once that is demoted (vm demote), and\n"
	  "refuses that host's streams (32775).", OPT(O_WAIT),
	  { "VM", NULL }, { "vm", NULL }, { false }, "CommitFailover", run_failover },
	{ "failover", "stop-test", "VM [--wait]", "Remove a test failover's devices.", OPT(O_WAIT),
	  { "VM", NULL }, { "vm", NULL }, { false }, "StopTestReplicaSystem", run_failover },
	{ "job", "show", "JOB", "A job's state, steps and timings.", 0, { "JOB", NULL }, { "job", NULL },
	  { true }, "GetJob", run_job_show },
	{ "job", "wait", "JOB [--timeout SECONDS]",
	  "Wait until the job has finished and print it; the exit status is the job's\n"
	  "outcome.  Past --timeout (at most 3162240000, 100 years): 32772.",
	  OPT(O_TIMEOUT), { "JOB", NULL }, { "job", NULL }, { true }, "GetJob", run_job_wait },
	{ "job", "list", "", "The agent's jobs.", 0, { NULL }, { NULL }, { false }, "ListJobs", run_job_list },
	{ "metrics", NULL, "",
	  "Print the agent's state in Prometheus' text exposition format, for\n"
	  "node_exporter's textfile collector: pool use, points and their age per VM,\n"
	  "the last failover's guest-paused window, failed jobs, replication health,\n"
	  "lag and bytes sent.  Only read methods: anyone who may open the socket may\n"
	  "run it.  When the agent cannot be read, stdout still says dmrep_up 0 (and\n"
	  "the exit status says why).  With --json: {\"return\": 0, \"metrics\": TEXT}.",
	  0, { NULL }, { NULL }, { false }, "GetPoolStatus", run_metrics },
};

static const char common_help[] =
	"Options of every command, anywhere on the line:\n"
	"  --socket PATH   the agent's socket (default: $DMREP_SOCKET, else " DEFAULT_SOCKET ")\n"
	"  --json          stdout is exactly one JSON document, on failure too:\n"
	"                  {\"return\": CODE, \"error\": \"...\"} (point send: on stderr)\n"
	"  -h, --help      usage (of the command, after one)\n"
	"  --version       the client's version\n";

static const char notes_help[] =
	"SIZE is a number of bytes with an optional suffix K, M, G or T (powers of 1024).\n"
	"Relative paths are made absolute here: the agent runs in another directory.\n"
	"vm add, point create, point send and point receive wait for their job.\n"
	"point send writes only the stream to stdout: its output, --json too, is on\n"
	"stderr.  failover commands print\n"
	"{\"return\": 4096, \"job\": JOB} at once; with --wait they print the finished job\n"
	"and exit by its outcome.  Interrupting a wait leaves the job running.\n"
	"\n"
	"Exit status: 0 on success, else the WMI return code - 32767:\n"
	"  1 failed (32768)            2 access denied (32769)   3 not supported (32770)\n"
	"  4 status unknown (32771)    5 timeout (32772)         6 invalid parameter (32773)\n"
	"  7 in use (32774)            8 invalid state (32775)   9 incorrect type (32776)\n"
	"  10 agent or hypervisor unreachable (32777)            11 no space (32778)\n"
	"  12 not found (32779)\n"
	"Usage errors (bad option, missing argument, bad size) are 32773, exit status 6.\n";

static void print_synopsis(const struct command *c)
{
	printf("  dmrep %s%s%s%s%s\n", c->group, c->name ? " " : "", c->name ? c->name : "",
	       *c->synopsis ? " " : "", c->synopsis);
}

/* What an option's value is called in the option list of --help. */
static const char *opt_value_name(int i)
{
	static char choices[128];
	const struct opt_def *d = &opt_defs[i];

	if (d->kind == K_FLAG || i == O_TEST || i == O_WAIT)
		return NULL;
	if (d->choices) {
		choices[0] = '\0';
		for (const char *const *c = d->choices; *c; c++)
			snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s",
				 c == d->choices ? "" : "|", *c);
		return choices;
	}
	switch (d->kind) {
	case K_PATH:
		return i == O_QMP || i == O_QGA ? "SOCKET" : "PATH";
	case K_SHIM:
		return "COMMAND";
	case K_SIZE:
		return "SIZE";
	case K_DISK:
		return "NAME=PATH[:SIZE]";
	case K_MAP:
		return "DISK=DEVICE";
	case K_LIST:
		return "IP";
	case K_U64:
		return i == O_POINT || i == O_BASE ? "POINT" : i == O_MAX_AGE || i == O_INTERVAL ? "SECONDS" : "N";
	case K_CLIENT:
		return "SECONDS"; /* --timeout */
	default:
		return i == O_TO ? "COMMAND" : i == O_MAC ? "MAC" : i == O_LIBVIRT ? "DOMAIN" :
		       i == O_LIBVIRT_URI ? "URI" : "TEXT";
	}
}

/* The command's options, one a line, from the option table itself (so
 * that --help cannot list what the command does not take, and shell
 * completion reads them here). */
static void print_options(const struct command *c)
{
	if (!c->opts)
		return;
	printf("Options of this command:\n");
	for (int i = 0; i < O__COUNT; i++)
		if (c->opts & OPT(i)) {
			const char *v = opt_value_name(i);

			printf("  --%s%s%s\n", opt_defs[i].name, v ? " " : "", v ? v : "");
		}
	putchar('\n');
}

/* Usage of one command, of a group's commands, or of everything. */
static void print_help(const char *group, const struct command *only)
{
	if (only) {
		printf("Usage:\n");
		print_synopsis(only);
		printf("\n%s\n\n", only->help);
		print_options(only);
		printf("%s", common_help);
		return;
	}
	printf("Usage: dmrep [--socket PATH] [--json] COMMAND ...\n\n");
	for (size_t i = 0; i < DMR_ARRAY_SIZE(commands); i++)
		if (!group || dmr_streq(group, commands[i].group))
			print_synopsis(&commands[i]);
	printf("\n%s\n%s", common_help, notes_help);
}

/* name NULL: the command of one word (dmrep metrics), if group is one. */
static const struct command *find_command(const char *group, const char *name)
{
	for (size_t i = 0; i < DMR_ARRAY_SIZE(commands); i++)
		if (dmr_streq(group, commands[i].group) &&
		    (name ? dmr_streq(name, commands[i].name) : !commands[i].name))
			return &commands[i];
	return NULL;
}

static bool known_group(const char *group)
{
	for (size_t i = 0; i < DMR_ARRAY_SIZE(commands); i++)
		if (dmr_streq(group, commands[i].group))
			return true;
	return false;
}

/*
 * Find the command before option parsing proper, which needs to know the
 * command's options: the first two words that are neither options nor the
 * argument of --socket.  Also notes --json (so even a usage error found
 * here is reported as JSON), --help and --version.
 */
static void prescan(int argc, char **argv, const char **group, const char **name, bool *help, bool *version)
{
	*group = *name = NULL;
	*help = *version = false;
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (dmr_streq(s, "--"))
			break;
		if (dmr_streq(s, "--json"))
			opt_json = true;
		else if (dmr_streq(s, "--help") || dmr_streq(s, "-h"))
			*help = true;
		else if (dmr_streq(s, "--version"))
			*version = true;
		else if (dmr_streq(s, "--socket"))
			i++;
		else if (s[0] == '-' && s[1])
			continue;
		else if (!*group)
			*group = s;
		else if (!*name)
			*name = s;
	}
}

int main(int argc, char **argv)
{
	struct option longopts[O__COUNT + 5];
	struct invocation inv = { 0 };
	const struct command *cmd;
	const char *group, *name;
	bool help, version;
	size_t n = 0, npos = 0;
	int c, r, words;
	char what[64];

	opt_socket = getenv("DMREP_SOCKET");
	if (!opt_socket || !*opt_socket)
		opt_socket = DEFAULT_SOCKET;

	prescan(argc, argv, &group, &name, &help, &version);
	json_on_stderr = group && name && dmr_streq(group, "point") && dmr_streq(name, "send") &&
			 !help;
	if (help && (!group || known_group(group))) {
		cmd = group ? find_command(group, NULL) : NULL;
		print_help(group, cmd ? cmd : group && name ? find_command(group, name) : NULL);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (version) {
		printf("dmrep " DMREP_VERSION "\n");
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (!group)
		usage_error("no command");
	if (!known_group(group))
		usage_error("unknown command '%s'", group);
	cmd = find_command(group, NULL);
	if (!cmd) {
		if (!name)
			usage_error("%s: missing a subcommand", group);
		cmd = find_command(group, name);
		if (!cmd)
			usage_error("unknown command '%s %s'", group, name);
	}
	words = cmd->name ? 2 : 1;
	snprintf(what, sizeof(what), "%s%s%s", group, cmd->name ? " " : "", cmd->name ? name : "");

	longopts[n++] = (struct option){ "json", no_argument, NULL, O_JSON };
	longopts[n++] = (struct option){ "socket", required_argument, NULL, O_SOCKET };
	longopts[n++] = (struct option){ "help", no_argument, NULL, O_HELP };
	longopts[n++] = (struct option){ "version", no_argument, NULL, O_VERSION };
	for (int i = 0; i < O__COUNT; i++)
		if (cmd->opts & OPT(i))
			longopts[n++] = (struct option){ opt_defs[i].name,
							 opt_defs[i].kind == K_FLAG || i == O_TEST || i == O_WAIT ?
								 no_argument : required_argument,
							 NULL, i };
	longopts[n] = (struct option){ NULL, 0, NULL, 0 };

	inv.params = new_object();
	opterr = 0; /* our own messages, in the contract's shape */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case O_JSON:
			opt_json = true;
			break;
		case O_SOCKET:
			opt_socket = optarg;
			break;
		case O_HELP:
		case 'h':
		case O_VERSION:
			break; /* handled by prescan */
		case ':':
			usage_error("%s: option '%s' needs an argument", what, argv[optind - 1]);
		case '?':
			if (optopt)
				usage_error("%s: unknown option '-%c'", what, optopt);
			usage_error("%s: unknown option '%s'", what, argv[optind - 1]);
		default:
			apply_option(&inv, c, optarg);
		}
	}
	/* getopt moved the words to the end, in order: GROUP NAME ARGS. */
	if (argc - optind < words || !dmr_streq(argv[optind], group) ||
	    (cmd->name && !dmr_streq(argv[optind + 1], name)))
		usage_error("%s: give the command before its options' values", what);
	for (int i = optind + words; i < argc; i++) {
		if (npos >= DMR_ARRAY_SIZE(cmd->pos) || !cmd->pos[npos])
			usage_error("%s: unexpected argument '%s'", what, argv[i]);
		inv.pos[npos++] = argv[i];
	}
	if (npos < DMR_ARRAY_SIZE(cmd->pos) && cmd->pos[npos])
		usage_error("%s: missing %s", what, cmd->pos[npos]);
	for (size_t i = 0; i < npos; i++)
		add(inv.params, cmd->pos_key[i],
		    cmd->pos_u64[i] ? json_object_new_int64((int64_t)parse_u64_arg(cmd->pos[i], inv.pos[i])) :
				      json_object_new_string(inv.pos[i]));

	r = cmd->run(cmd, &inv);
	json_putp(&inv.params);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		/* Scripts read stdout: a result that did not get there is a
		 * failure, even if the operation itself succeeded. */
		fprintf(stderr, "dmrep: cannot write the result: %m\n");
		return r ? r : exit_status(DMR_RC_FAILED);
	}
	return r;
}
