/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_load - many clients at once on dmrepd's socket, for
 * tests/lab/t-66-load.sh (issue 16, item 3).
 *
 *   lab_load -s SOCKET -t SECONDS -c CLIENTS -v VM[,VM...] [-f VM]
 *            [-w PERMILLE] [-i IDLE] [-n NOREAD] [-H HALF]
 *
 * CLIENTS threads, each on its own connection, send requests one at a time
 * until SECONDS are up: reads (ListVirtualSystems, GetVirtualSystem,
 * ListReplicationPoints, ListJobs, GetPoolStatus) and, PERMILLE of the time
 * (default 50), a CreateReplicationPoint on one of the VMs.  With -f, one
 * more thread fails VM over and reverts it, again and again, waiting for
 * each job (GetJob's long poll).  IDLE connections connect and send
 * nothing; HALF send half a request line and nothing more; NOREAD send
 * requests as fast as the socket takes them and never read a reply (the
 * agent must drop them at its 8 MiB cap, slowing nobody).
 *
 * Every reply is checked: one JSON object on one line, the request's id
 * echoed, an integer "return", an "error" line with every code but 0 and
 * 4096, the reads answered 0 with their result field, a point answered
 * 4096 with a job, or 32774 (the VM busy) or 32775 (not in a state to take
 * one); no reply within 60 s is a failure too.  A point the agent took on
 * the failover VM while one of its failover jobs held it is "mixed": one
 * accepted while this client believes a failover runs is checked against
 * the agent itself, GetJob of that failover job right after.  The agent
 * ends a job and releases its VM in one step (agent/engine/job.c), so a
 * job still running then held the VM when the point was accepted; one
 * that ended had released it (the client's belief lags the agent's end by
 * one long-poll reply, and points sent in that gap are taken rightly).
 *
 * Output, for the test to check:
 *   load: reads N p50_us N p99_us N
 *   load: reads-during-failover N p50_us N p99_us N
 *   load: points N accepted N busy N state N
 *   load: failovers N
 *   load: noread N dropped N
 *   load: bad N
 *   load: mixed N
 * and up to 20 lines "bad: ..." saying what was wrong.  Exit status 0 when
 * it ran (the checks are the test's), 1 when it could not run.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define MAX_SAMPLES 200000
#define REPLY_TIMEOUT_MS 60000
#define MAX_LINE (16u << 20)

static const char *sock_path;
static char **vms;
static size_t n_vms;
static const char *fo_vm;
static int permille = 50;
static uint64_t deadline_us;

static atomic_int n_bad, n_mixed, n_points, n_accepted, n_busy, n_state, n_failovers;
static atomic_int fo_active;          /* a failover job of fo_vm holds it */
static _Atomic uint64_t fo_since_us;  /* when it was accepted */
static _Atomic int64_t fo_job;        /* its job id */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t *lat, *lat_fo;        /* microseconds */
static size_t n_lat, n_lat_fo;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	va_list ap;
	int n = atomic_fetch_add(&n_bad, 1);

	if (n >= 20)
		return;
	pthread_mutex_lock(&lock);
	fputs("bad: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&lock);
}

static int connect_agent(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	int64_t next_id;
};

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One reply line, parsed; NULL with why on failure. */
static struct json_object *read_reply(struct conn *c, const char **why)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;

		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			struct json_tokener *tok = json_tokener_new();
			struct json_object *o = NULL;

			if (tok) {
				o = json_tokener_parse_ex(tok, c->buf, (int)n);
				if (o && tok->char_offset != (int)n) {
					json_object_put(o);
					o = NULL;
				}
				json_tokener_free(tok);
			}
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				*why = "a reply line that is not one JSON object";
				return NULL;
			}
			return o;
		}
		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *b;

			if (cap > MAX_LINE) {
				*why = "a reply line over 16 MiB";
				return NULL;
			}
			b = realloc(c->buf, cap);
			if (!b) {
				*why = "out of memory";
				return NULL;
			}
			c->buf = b;
			c->cap = cap;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int r = poll(&p, 1, REPLY_TIMEOUT_MS);

		if (r == 0) {
			*why = "no reply within 60 s";
			return NULL;
		}
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			*why = got == 0 ? "the agent closed the connection" : "recv failed";
			return NULL;
		}
		c->len += (size_t)got;
	}
}

/* Send METHOD with PARAMS (owned), read its reply, check the envelope;
 * the reply (caller frees) or NULL (counted bad). */
static struct json_object *call(struct conn *c, const char *method, struct json_object *params,
				uint64_t *ret_us)
{
	struct json_object *req = json_object_new_object(), *rep, *v;
	const char *line, *why = NULL;
	int64_t id = ++c->next_id;
	uint64_t t0;
	int code;

	json_object_object_add(req, "id", json_object_new_int64(id));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params)
		json_object_object_add(req, "params", params);
	line = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	t0 = now_us();
	if (send_all(c->fd, line, strlen(line)) < 0 || send_all(c->fd, "\n", 1) < 0) {
		bad("%s: send failed: %s", method, strerror(errno));
		json_object_put(req);
		return NULL;
	}
	json_object_put(req);
	rep = read_reply(c, &why);
	if (ret_us)
		*ret_us = now_us() - t0;
	if (!rep) {
		bad("%s: %s", method, why);
		return NULL;
	}
	if (!json_object_object_get_ex(rep, "id", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != id) {
		bad("%s: the reply's id is not the request's (%s)", method,
		    json_object_to_json_string(rep));
		json_object_put(rep);
		return NULL;
	}
	if (!json_object_object_get_ex(rep, "return", &v) || !json_object_is_type(v, json_type_int)) {
		bad("%s: no integer return (%s)", method, json_object_to_json_string(rep));
		json_object_put(rep);
		return NULL;
	}
	code = json_object_get_int(v);
	if (code != 0 && code != 4096 &&
	    (!json_object_object_get_ex(rep, "error", &v) || !json_object_is_type(v, json_type_string) ||
	     !json_object_get_string_len(v) || strchr(json_object_get_string(v), '\n'))) {
		bad("%s: return %d without a one-line error (%s)", method, code,
		    json_object_to_json_string(rep));
		json_object_put(rep);
		return NULL;
	}
	return rep;
}

static int rc_of(struct json_object *rep)
{
	return json_object_get_int(json_object_object_get(rep, "return"));
}

static struct json_object *vm_params(const char *vm)
{
	struct json_object *p = json_object_new_object();

	json_object_object_add(p, "vm", json_object_new_string(vm));
	return p;
}

/* Is job still running, as the agent says now (GetJob, no wait)?  A reply
 * that does not tell counts as running: never hides a mix. */
static bool job_running(struct conn *c, int64_t job)
{
	struct json_object *p = json_object_new_object(), *rep, *j, *st;
	bool running = true;

	json_object_object_add(p, "job", json_object_new_int64(job));
	rep = call(c, "GetJob", p, NULL);
	if (rep && rc_of(rep) == 0 && json_object_object_get_ex(rep, "job", &j) &&
	    json_object_object_get_ex(j, "job_state", &st))
		running = json_object_get_int(st) < 7;
	json_object_put(rep);
	return running;
}

static void sample(uint64_t us)
{
	pthread_mutex_lock(&lock);
	if (atomic_load(&fo_active)) {
		if (n_lat_fo < MAX_SAMPLES)
			lat_fo[n_lat_fo++] = us;
	} else if (n_lat < MAX_SAMPLES) {
		lat[n_lat++] = us;
	}
	pthread_mutex_unlock(&lock);
}

struct read_kind {
	const char *method, *field;
	bool per_vm;
};

static const struct read_kind reads[] = {
	{ "ListVirtualSystems", "vms", false },
	{ "GetVirtualSystem", "vm", true },
	{ "ListReplicationPoints", "points", true },
	{ "ListJobs", "jobs", false },
	{ "GetPoolStatus", NULL, false },
};

static void *client(void *arg)
{
	struct conn c = { .fd = -1 };
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;

	c.fd = connect_agent();
	if (c.fd < 0) {
		bad("client %u: cannot connect: %s", (unsigned)(uintptr_t)arg, strerror(-c.fd));
		return NULL;
	}
	while (now_us() < deadline_us) {
		const char *vm = vms[(size_t)rand_r(&seed) % n_vms];
		struct json_object *rep;
		uint64_t us, t_send;

		if ((unsigned)rand_r(&seed) % 1000u < (unsigned)permille) {
			t_send = now_us();
			rep = call(&c, "CreateReplicationPoint", vm_params(vm), &us);
			if (!rep)
				break;
			atomic_fetch_add(&n_points, 1);
			switch (rc_of(rep)) {
			case 4096:
				atomic_fetch_add(&n_accepted, 1);
				/* Taken while a failover job of the VM held it? */
				if (fo_vm && strcmp(vm, fo_vm) == 0 && atomic_load(&fo_active) &&
				    t_send > atomic_load(&fo_since_us) &&
				    job_running(&c, atomic_load(&fo_job))) {
					atomic_fetch_add(&n_mixed, 1);
					bad("a point of %s was taken while its failover ran (%s)", vm,
					    json_object_to_json_string(rep));
				}
				break;
			case 32774:
				atomic_fetch_add(&n_busy, 1);
				break;
			case 32775:
				atomic_fetch_add(&n_state, 1);
				break;
			default:
				bad("CreateReplicationPoint %s: %s", vm, json_object_to_json_string(rep));
			}
			json_object_put(rep);
			continue;
		}
		const struct read_kind *k = &reads[(size_t)rand_r(&seed) % (sizeof(reads) / sizeof(reads[0]))];

		rep = call(&c, k->method, k->per_vm ? vm_params(vm) : NULL, &us);
		if (!rep)
			break;
		if (rc_of(rep) != 0 || (k->field && !json_object_object_get_ex(rep, k->field, NULL)))
			bad("%s %s: %s", k->method, k->per_vm ? vm : "", json_object_to_json_string(rep));
		else
			sample(us);
		json_object_put(rep);
	}
	close(c.fd);
	free(c.buf);
	return NULL;
}

/* A job to its end (GetJob's long poll, 30 s at a time): its job_state. */
static int wait_job(struct conn *c, int64_t job)
{
	while (now_us() < deadline_us + 600000000u) {
		struct json_object *p = json_object_new_object(), *rep, *j, *st;
		int s;

		json_object_object_add(p, "job", json_object_new_int64(job));
		json_object_object_add(p, "wait", json_object_new_int(30));
		rep = call(c, "GetJob", p, NULL);
		if (!rep)
			return -1;
		if (rc_of(rep) != 0 || !json_object_object_get_ex(rep, "job", &j) ||
		    !json_object_object_get_ex(j, "job_state", &st)) {
			bad("GetJob %" PRId64 ": %s", job, json_object_to_json_string(rep));
			json_object_put(rep);
			return -1;
		}
		s = json_object_get_int(st);
		if (s >= 7 && s != 7)
			bad("job %" PRId64 " ended in state %d: %s", job, s, json_object_to_json_string(j));
		json_object_put(rep);
		if (s >= 7)
			return s;
	}
	return -1;
}

/* METHOD on fo_vm until it is accepted (a point may hold the VM a moment),
 * then to its end; 0 when it completed. */
static int fo_step(struct conn *c, const char *method)
{
	for (;;) {
		struct json_object *rep = call(c, method, vm_params(fo_vm), NULL);
		int code;
		int64_t job;

		if (!rep)
			return -1;
		code = rc_of(rep);
		if (code == 32774) {
			json_object_put(rep);
			if (now_us() >= deadline_us)
				return -1;
			usleep(20000);
			continue;
		}
		if (code != 4096) {
			bad("%s %s: %s", method, fo_vm, json_object_to_json_string(rep));
			json_object_put(rep);
			return -1;
		}
		job = json_object_get_int64(json_object_object_get(rep, "job"));
		json_object_put(rep);
		atomic_store(&fo_job, job);
		atomic_store(&fo_since_us, now_us());
		atomic_store(&fo_active, 1);
		code = wait_job(c, job);
		atomic_store(&fo_active, 0);
		return code == 7 ? 0 : -1;
	}
}

static void *failovers(void *arg)
{
	struct conn c = { .fd = connect_agent() };

	(void)arg;
	if (c.fd < 0) {
		bad("failover client: cannot connect: %s", strerror(-c.fd));
		return NULL;
	}
	while (now_us() < deadline_us) {
		if (fo_step(&c, "InitiateFailover") < 0)
			break;
		if (fo_step(&c, "RevertFailover") < 0) {
			bad("the revert of %s did not complete", fo_vm);
			break;
		}
		atomic_fetch_add(&n_failovers, 1);
	}
	close(c.fd);
	free(c.buf);
	return NULL;
}

/* NOREAD clients: requests as fast as their sockets take them, no reply
 * read, until the deadline; 1 in closed[i] for one the agent closed (a
 * send failed).  After the run dropped() tells the others. */
static void noread_fill(const int *fd, int n, bool *closed)
{
	static const char req[] = "{\"id\":1,\"method\":\"ListJobs\"}\n";
	struct pollfd p[1024];

	for (int i = 0; i < n; i++)
		if (fd[i] >= 0)
			(void)fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK);
	while (now_us() < deadline_us) {
		int k = 0;

		for (int i = 0; i < n; i++) {
			if (fd[i] < 0 || closed[i])
				continue;
			for (;;) {
				ssize_t w = send(fd[i], req, sizeof(req) - 1, MSG_NOSIGNAL);

				if (w < 0 && errno != EINTR) {
					if (errno != EAGAIN && errno != EWOULDBLOCK)
						closed[i] = true;
					break;
				}
			}
			if (!closed[i])
				p[k++] = (struct pollfd){ .fd = fd[i], .events = POLLOUT };
		}
		(void)poll(p, (nfds_t)k, 200);
	}
}

/* Dropped by the agent before UNTIL: it still answers what the client
 * sent before the deadline, 16 requests a turn, until the replies left
 * unread pass its cap (under ASan that takes a minute). */
static bool dropped(int fd, uint64_t until)
{
	char buf[65536];

	while (now_us() < until) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 1000) <= 0)
			continue;
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
	return false;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("load: %s %zu p50_us %" PRIu64 " p99_us %" PRIu64 "\n", what, n, n ? v[n / 2] : 0,
	       n ? v[(n * 99) / 100] : 0);
}

static int split_vms(char *list)
{
	for (char *s = strtok(list, ","); s; s = strtok(NULL, ",")) {
		char **n = realloc(vms, (n_vms + 1) * sizeof(*vms));

		if (!n)
			return -ENOMEM;
		vms = n;
		vms[n_vms++] = s;
	}
	return n_vms ? 0 : -EINVAL;
}

int main(int argc, char **argv)
{
	int seconds = 0, clients = 0, idle = 0, noread = 0, half = 0, o, n_drop = 0;
	int *held = NULL, *nr = NULL;
	bool *nr_closed = NULL;
	pthread_t *th, fo;

	while ((o = getopt(argc, argv, "s:t:c:v:f:w:i:n:H:")) != -1) {
		switch (o) {
		case 's': sock_path = optarg; break;
		case 't': seconds = atoi(optarg); break;
		case 'c': clients = atoi(optarg); break;
		case 'v':
			if (split_vms(optarg) < 0)
				return 1;
			break;
		case 'f': fo_vm = optarg; break;
		case 'w': permille = atoi(optarg); break;
		case 'i': idle = atoi(optarg); break;
		case 'n': noread = atoi(optarg); break;
		case 'H': half = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: lab_load -s SOCKET -t SECONDS -c CLIENTS -v VM[,VM...] "
					"[-f VM] [-w PERMILLE] [-i IDLE] [-n NOREAD] [-H HALF]\n");
			return 1;
		}
	}
	if (!sock_path || seconds <= 0 || clients <= 0 || clients > 1024 || !n_vms || idle < 0 ||
	    noread < 0 || half < 0 || idle + half > 1024 || noread > 1024 || permille < 0 || permille > 1000) {
		fprintf(stderr, "lab_load: -s, -t, -c and -v are required (see the source's head)\n");
		return 1;
	}
	lat = calloc(MAX_SAMPLES, sizeof(*lat));
	lat_fo = calloc(MAX_SAMPLES, sizeof(*lat_fo));
	th = calloc((size_t)clients, sizeof(*th));
	held = calloc((size_t)(idle + half + 1), sizeof(*held));
	nr = calloc((size_t)(noread + 1), sizeof(*nr));
	nr_closed = calloc((size_t)(noread + 1), sizeof(*nr_closed));
	if (!lat || !lat_fo || !th || !held || !nr || !nr_closed)
		return 1;
	deadline_us = now_us() + (uint64_t)seconds * 1000000u;
	/* The misbehaving ones first, so that everyone else runs beside them. */
	for (int i = 0; i < idle + half; i++) {
		held[i] = connect_agent();
		if (held[i] < 0) {
			bad("an idle client cannot connect: %s", strerror(-held[i]));
			continue;
		}
		if (i >= idle && send_all(held[i], "{\"id\":1,\"meth", 13) < 0)
			bad("a half-line client cannot send");
	}
	for (int i = 0; i < noread; i++)
		nr[i] = connect_agent();
	for (int i = 0; i < clients; i++)
		if (pthread_create(&th[i], NULL, client, (void *)(uintptr_t)(i + 1)) != 0)
			return 1;
	if (fo_vm && pthread_create(&fo, NULL, failovers, NULL) != 0)
		return 1;
	/* The no-read clients fill their sockets from here. */
	for (int i = 0; i < noread; i++)
		if (nr[i] < 0)
			bad("a no-read client cannot connect: %s", strerror(-nr[i]));
	noread_fill(nr, noread, nr_closed);
	for (int i = 0; i < noread; i++)
		if (nr[i] >= 0 && (nr_closed[i] || dropped(nr[i], deadline_us + 180000000u)))
			n_drop++;
	for (int i = 0; i < clients; i++)
		pthread_join(th[i], NULL);
	if (fo_vm)
		pthread_join(fo, NULL);
	for (int i = 0; i < idle + half; i++)
		if (held[i] >= 0)
			close(held[i]);
	for (int i = 0; i < noread; i++)
		if (nr[i] >= 0)
			close(nr[i]);
	report("reads", lat, n_lat);
	report("reads-during-failover", lat_fo, n_lat_fo);
	printf("load: points %d accepted %d busy %d state %d\n", atomic_load(&n_points),
	       atomic_load(&n_accepted), atomic_load(&n_busy), atomic_load(&n_state));
	printf("load: failovers %d\n", atomic_load(&n_failovers));
	printf("load: noread %d dropped %d\n", noread, n_drop);
	printf("load: bad %d\n", atomic_load(&n_bad));
	printf("load: mixed %d\n", atomic_load(&n_mixed));
	free(lat);
	free(lat_fo);
	free(th);
	free(held);
	free(nr);
	free(nr_closed);
	free(vms);
	return 0;
}
