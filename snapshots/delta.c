/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshots/delta.h"

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

/* thin_dump / thin_delta print one element a line, a few dozen bytes
 * each; anything longer is not their output. */
#define LINE_MAX_BYTES 1024u
#define NAME_MAX_BYTES 32u
#define ATTRS_MAX 16u
/* A fully fragmented 16 TiB volume of 64 KiB blocks dumps about 16 GiB
 * of XML as single mappings; the real ones are ranges.  256 MiB is far
 * past any volume we make and still bounded. */
#define TOOL_OUT_MAX (256u << 20)
#define TOOL_ERR_MAX 1024u
/* The tools read the metadata device once; minutes mean something hangs,
 * and the metadata snapshot (a pool-wide lock) must come back. */
#define TOOL_TIMEOUT_MS (600 * 1000)

extern char **environ;

/* The pool holds one metadata snapshot: one tool run at a time in this
 * process.  held_leak: our release failed, so the snapshot the kernel
 * holds is ours, released before the next reserve. */
static pthread_mutex_t delta_lock = PTHREAD_MUTEX_INITIALIZER;
static bool held_leak;

/* ---- the parsers ---- */

struct attr {
	const char *key, *val;
	size_t klen, vlen;
};

struct elem {
	char name[NAME_MAX_BYTES];
	bool closing;     /* </name> */
	bool empty;       /* <name .../> */
	struct attr attrs[ATTRS_MAX];
	unsigned nattrs;
};

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* One line, p[0..n) (no newline), as one element: `<name a="v" ...>`,
 * `<name .../>` or `</name>`, surrounded by blanks.  Values are not
 * unescaped: the ones we read are numbers. */
static int parse_elem(const char *p, size_t n, struct elem *e)
{
	size_t i = 0, k;

	memset(e, 0, sizeof(*e));
	while (i < n && is_space(p[i]))
		i++;
	if (i >= n || p[i++] != '<')
		return -EBADMSG;
	if (i < n && p[i] == '/') {
		e->closing = true;
		i++;
	}
	for (k = 0; i < n && is_name_char(p[i]); i++) {
		if (k + 1 >= sizeof(e->name))
			return -EBADMSG;
		e->name[k++] = p[i];
	}
	if (k == 0)
		return -EBADMSG;
	for (;;) {
		struct attr *a;
		bool sep = false;

		while (i < n && is_space(p[i])) {
			i++;
			sep = true;
		}
		if (i >= n)
			return -EBADMSG;
		if (p[i] == '>' || p[i] == '/')
			break;
		if (!sep || e->closing || e->nattrs >= ATTRS_MAX)
			return -EBADMSG;
		a = &e->attrs[e->nattrs++];
		a->key = p + i;
		while (i < n && is_name_char(p[i]))
			i++;
		a->klen = (size_t)(p + i - a->key);
		if (a->klen == 0 || i + 1 >= n || p[i] != '=' || p[i + 1] != '"')
			return -EBADMSG;
		i += 2;
		a->val = p + i;
		while (i < n && p[i] != '"') {
			if (p[i] == '<' || p[i] == '>' || (unsigned char)p[i] < 0x20)
				return -EBADMSG;
			i++;
		}
		if (i >= n)
			return -EBADMSG;
		a->vlen = (size_t)(p + i - a->val);
		i++;
	}
	if (p[i] == '/') {
		if (e->closing)
			return -EBADMSG;
		e->empty = true;
		i++;
	}
	if (i >= n || p[i++] != '>')
		return -EBADMSG;
	while (i < n && is_space(p[i]))
		i++;
	return i == n ? 0 : -EBADMSG;
}

static bool elem_is(const struct elem *e, const char *name)
{
	return strcmp(e->name, name) == 0;
}

static const struct attr *elem_attr(const struct elem *e, const char *key)
{
	size_t kl = strlen(key);
	const struct attr *found = NULL;

	for (unsigned i = 0; i < e->nattrs; i++)
		if (e->attrs[i].klen == kl && memcmp(e->attrs[i].key, key, kl) == 0) {
			if (found)
				return NULL; /* twice: not what the tools print */
			found = &e->attrs[i];
		}
	return found;
}

/* Strict decimal: digits only, no sign, no blanks, no overflow. */
static int attr_u64(const struct elem *e, const char *key, uint64_t *ret)
{
	const struct attr *a = elem_attr(e, key);
	uint64_t v = 0;

	if (!a || a->vlen == 0 || a->vlen > 20)
		return -EBADMSG;
	for (size_t i = 0; i < a->vlen; i++) {
		unsigned d = (unsigned char)a->val[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

struct extents {
	struct dmr_extent *v;
	size_t n, cap;
	uint64_t pos;       /* end of the last range seen, of any kind */
	uint64_t max_blocks;
};

/* One range from the tool, in order.  send false: a range that is checked
 * (bounds, order) but needs nothing sent ("same"). */
static int extents_add(struct extents *x, uint64_t begin, uint64_t length, bool send,
		       enum dmr_extent_kind kind)
{
	struct dmr_extent *last = x->n ? &x->v[x->n - 1] : NULL;

	if (length == 0 || begin > x->max_blocks || length > x->max_blocks - begin) {
		log_debug("delta: range %" PRIu64 "+%" PRIu64 " outside a volume of %" PRIu64
			  " blocks", begin, length, x->max_blocks);
		return -EBADMSG;
	}
	if (begin < x->pos) {
		log_debug("delta: range %" PRIu64 "+%" PRIu64 " overlaps or precedes one ending at %"
			  PRIu64, begin, length, x->pos);
		return -EBADMSG;
	}
	x->pos = begin + length;
	if (!send)
		return 0;
	if (last && last->kind == kind && last->begin + last->length == begin) {
		last->length += length;
		return 0;
	}
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 64;
		struct dmr_extent *v = reallocarray(x->v, cap, sizeof(*v));

		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	x->v[x->n++] = (struct dmr_extent){ .begin = begin, .length = length, .kind = kind };
	return 0;
}

static void extents_done(struct extents *x)
{
	free(x->v);
	x->v = NULL;
}

static void extents_hand_over(struct extents *x, struct dmr_extent **ret_ext, size_t *ret_n)
{
	if (x->n == 0) {
		free(x->v);
		x->v = NULL;
	}
	*ret_ext = x->v;
	*ret_n = x->n;
	x->v = NULL;
}

/* The next line of buf[*off..len), without its newline; a last line need
 * not end in one.  0 at the end, 1 with a line, -EBADMSG if too long or
 * with a NUL. */
static int next_line(const char *buf, size_t len, size_t *off, const char **ret_p,
		     size_t *ret_n)
{
	const char *p = buf + *off, *nl;
	size_t rest = len - *off, n;

	if (rest == 0)
		return 0;
	nl = memchr(p, '\n', rest < LINE_MAX_BYTES + 1 ? rest : LINE_MAX_BYTES + 1);
	n = nl ? (size_t)(nl - p) : rest;
	if (n > LINE_MAX_BYTES || memchr(p, '\0', n))
		return -EBADMSG;
	*off += nl ? n + 1 : n;
	*ret_p = p;
	*ret_n = n;
	return 1;
}

static bool blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_space(p[i]))
			return false;
	return true;
}

/* The next element of the tool's output, blank lines skipped: 1 and *e,
 * 0 at the end, or -EBADMSG (both parsers' loop). */
static int next_elem(const char *buf, size_t len, size_t *off, struct elem *e)
{
	for (;;) {
		const char *p;
		size_t n;
		int r = next_line(buf, len, off, &p, &n);

		if (r <= 0)
			return r;
		if (blank(p, n))
			continue;
		r = parse_elem(p, n, e);
		return r < 0 ? r : 1;
	}
}

/*
 * thin_dump --dev-id ID:
 *   <superblock ...>
 *     <device dev_id="2" mapped_blocks="15" ...>
 *       <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
 *       <single_mapping origin_block="20" data_block="10" time="0"/>
 *     </device>
 *   </superblock>
 * No <device>: the id is not in the pool.
 */
int dmr_delta_parse_dump(const char *buf, size_t len, uint64_t max_blocks,
			 struct dmr_extent **ret_ext, size_t *ret_n)
{
	enum { TOP, SUPER, DEVICE, DEVICE_DONE, END } st = TOP;
	struct extents x = { .max_blocks = max_blocks };
	unsigned devices = 0;
	size_t off = 0;
	int r;

	if (!buf || !ret_ext || !ret_n)
		return -EINVAL;
	for (;;) {
		struct elem e;
		uint64_t b, l;

		r = next_elem(buf, len, &off, &e);
		if (r <= 0)
			break;
		r = -EBADMSG;
		if (st == TOP && elem_is(&e, "superblock") && !e.closing && !e.empty)
			st = SUPER;
		else if (st == TOP && elem_is(&e, "superblock") && e.empty)
			st = END;
		else if ((st == SUPER || st == DEVICE_DONE) && elem_is(&e, "superblock") && e.closing)
			st = END;
		else if (st == SUPER && elem_is(&e, "device") && !e.closing) {
			devices++;
			st = e.empty ? DEVICE_DONE : DEVICE;
		} else if (st == DEVICE && elem_is(&e, "device") && e.closing)
			st = DEVICE_DONE;
		else if (st == DEVICE && elem_is(&e, "range_mapping") && e.empty) {
			if (attr_u64(&e, "origin_begin", &b) < 0 || attr_u64(&e, "length", &l) < 0)
				break;
			r = extents_add(&x, b, l, true, DMR_EXTENT_DATA);
			if (r < 0)
				break;
		} else if (st == DEVICE && elem_is(&e, "single_mapping") && e.empty) {
			if (attr_u64(&e, "origin_block", &b) < 0)
				break;
			r = extents_add(&x, b, 1, true, DMR_EXTENT_DATA);
			if (r < 0)
				break;
		} else {
			log_debug("delta: unexpected element <%s%s> in thin_dump's output",
				  e.closing ? "/" : "", e.name);
			break;
		}
		r = 0;
	}
	if (r == 0 && st != END) {
		log_debug("delta: thin_dump's output ends early");
		r = -EBADMSG;
	}
	if (r == 0 && devices != 1)
		r = devices == 0 ? -ENOENT : -EBADMSG;
	if (r < 0) {
		extents_done(&x);
		return r;
	}
	extents_hand_over(&x, ret_ext, ret_n);
	return 0;
}

static int diff_kind(const struct elem *e, bool *ret_send, enum dmr_extent_kind *ret_kind)
{
	if (elem_is(e, "same")) {
		*ret_send = false;
		*ret_kind = DMR_EXTENT_DATA;
	} else if (elem_is(e, "different") || elem_is(e, "right_only")) {
		*ret_send = true;
		*ret_kind = DMR_EXTENT_DATA;
	} else if (elem_is(e, "left_only")) {
		*ret_send = true;
		*ret_kind = DMR_EXTENT_UNMAPPED;
	} else {
		return -EBADMSG;
	}
	return 0;
}

/*
 * thin_delta --snap1 A --snap2 B:
 *   <superblock ...>
 *     <diff left="A" right="B">
 *       <same begin="0" length="5"/>
 *       <different begin="5" length="1"/>
 *       <left_only begin="20" length="1"/>
 *       <right_only begin="200" length="1"/>
 *     </diff>
 *   </superblock>
 * With --verbose each kind is an element holding <range begin= length=
 * .../> lines; both forms are read.
 */
int dmr_delta_parse_delta(const char *buf, size_t len, uint64_t max_blocks,
			  struct dmr_extent **ret_ext, size_t *ret_n)
{
	enum { TOP, SUPER, DIFF, KIND, DIFF_DONE, END } st = TOP;
	struct extents x = { .max_blocks = max_blocks };
	char kind_name[NAME_MAX_BYTES] = "";
	enum dmr_extent_kind kind = DMR_EXTENT_DATA;
	bool send = false;
	size_t off = 0;
	int r;

	if (!buf || !ret_ext || !ret_n)
		return -EINVAL;
	for (;;) {
		struct elem e;
		uint64_t b, l;

		r = next_elem(buf, len, &off, &e);
		if (r <= 0)
			break;
		r = -EBADMSG;
		if (st == TOP && elem_is(&e, "superblock") && !e.closing && !e.empty)
			st = SUPER;
		else if (st == DIFF_DONE && elem_is(&e, "superblock") && e.closing)
			st = END;
		else if (st == SUPER && elem_is(&e, "diff") && !e.closing) {
			if (attr_u64(&e, "left", &b) < 0 || attr_u64(&e, "right", &l) < 0)
				break;
			st = e.empty ? DIFF_DONE : DIFF;
		} else if (st == DIFF && elem_is(&e, "diff") && e.closing)
			st = DIFF_DONE;
		else if (st == DIFF && !e.closing && diff_kind(&e, &send, &kind) == 0) {
			if (!e.empty) {
				/* --verbose: ranges follow. */
				snprintf(kind_name, sizeof(kind_name), "%s", e.name);
				st = KIND;
			} else {
				if (attr_u64(&e, "begin", &b) < 0 || attr_u64(&e, "length", &l) < 0)
					break;
				r = extents_add(&x, b, l, send, kind);
				if (r < 0)
					break;
			}
		} else if (st == KIND && elem_is(&e, "range") && e.empty) {
			if (attr_u64(&e, "begin", &b) < 0 || attr_u64(&e, "length", &l) < 0)
				break;
			r = extents_add(&x, b, l, send, kind);
			if (r < 0)
				break;
		} else if (st == KIND && e.closing && elem_is(&e, kind_name))
			st = DIFF;
		else {
			log_debug("delta: unexpected element <%s%s> in thin_delta's output",
				  e.closing ? "/" : "", e.name);
			break;
		}
		r = 0;
	}
	if (r == 0 && st != END) {
		log_debug("delta: thin_delta's output ends early");
		r = -EBADMSG;
	}
	if (r < 0) {
		extents_done(&x);
		return r;
	}
	extents_hand_over(&x, ret_ext, ret_n);
	return 0;
}

/* ---- running the tools ---- */

/* The tool's path: $PATH first, then where the packages put them (the
 * agent may run with a minimal PATH).  Looked up before fork: the child
 * of a threaded process only execs. */
static int find_tool(const char *name, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = NULL;
	static const char *const fallback[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
	char *save = NULL;

	if (path && (dirs = strdup(path)))
		for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
			/* A relative entry would run whatever the cwd holds. */
			if (d[0] != '/')
				continue;
			if ((size_t)snprintf(buf, size, "%s/%s", d, name) < size &&
			    access(buf, X_OK) == 0)
				return 0;
		}
	for (size_t i = 0; i < DMR_ARRAY_SIZE(fallback); i++)
		if ((size_t)snprintf(buf, size, "%s/%s", fallback[i], name) < size &&
		    access(buf, X_OK) == 0)
			return 0;
	log_debug("delta: %s not found", name);
	return -ENOEXEC;
}

static int elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

/* Read the child's stdout (into *out, at most TOOL_OUT_MAX) and stderr (the
 * first TOOL_ERR_MAX bytes) until both close. */
static int drain(int out_fd, int err_fd, char **out, size_t *out_len, char *err, size_t *err_len)
{
	struct pollfd pfd[2] = { { .fd = out_fd, .events = POLLIN }, { .fd = err_fd, .events = POLLIN } };
	size_t cap = 0;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		int left = TOOL_TIMEOUT_MS - elapsed_ms(&t0), n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(pfd, 2, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return dmr_negerrno();
		if (pfd[0].fd >= 0 && pfd[0].revents) {
			ssize_t k;

			if (cap - *out_len < 65536) {
				size_t ncap = cap ? cap * 2 : 256 * 1024;
				char *nb;

				if (ncap > TOOL_OUT_MAX + 1)
					ncap = TOOL_OUT_MAX + 1;
				if (ncap <= *out_len) {
					log_debug("delta: the tool printed more than %u bytes",
						  TOOL_OUT_MAX);
					return -EFBIG;
				}
				nb = realloc(*out, ncap);
				if (!nb)
					return -ENOMEM;
				*out = nb;
				cap = ncap;
			}
			k = read(out_fd, *out + *out_len, cap - *out_len);
			if (k < 0 && errno != EINTR && errno != EAGAIN)
				return dmr_negerrno();
			if (k == 0)
				pfd[0].fd = -1;
			if (k > 0)
				*out_len += (size_t)k;
			if (*out_len > TOOL_OUT_MAX) {
				log_debug("delta: the tool printed more than %u bytes", TOOL_OUT_MAX);
				return -EFBIG;
			}
		}
		if (pfd[1].fd >= 0 && pfd[1].revents) {
			char tmp[512];
			ssize_t k = read(err_fd, tmp, sizeof(tmp));

			if (k < 0 && errno != EINTR && errno != EAGAIN)
				return dmr_negerrno();
			if (k == 0)
				pfd[1].fd = -1;
			for (ssize_t i = 0; i < k && *err_len < TOOL_ERR_MAX; i++)
				err[(*err_len)++] = tmp[i];
		}
	}
	return 0;
}

/* The first line of what the tool said on stderr, printable. */
static void first_line(const char *err, size_t len, char *buf, size_t size)
{
	char line[TOOL_ERR_MAX + 1];
	size_t n = 0;

	while (n < len && err[n] != '\n' && err[n] != '\0')
		n++;
	memcpy(line, err, n);
	line[n] = '\0';
	dmr_cescape(buf, size, line);
}

/*
 * Run argv[0] (a name looked up in PATH) with argv, no shell, stdin
 * /dev/null; its stdout into *ret_out (NUL-terminated, *ret_len bytes),
 * the first line of its stderr into err[err_size].  0 only if it exited 0.
 */
int dmr_delta_run_tool(const char *const *argv, char **ret_out, size_t *ret_len, char *err,
		       size_t err_size)
{
	char path[256];
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	_cleanup_free_ char *out = NULL;
	char errbuf[TOOL_ERR_MAX];
	size_t out_len = 0, err_len = 0;
	_cleanup_close_ int null_fd = -1;
	sigset_t all;
	pid_t pid;
	int status, r;

	err[0] = '\0';
	r = find_tool(argv[0], path, sizeof(path));
	if (r < 0)
		return r;
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		return dmr_negerrno();
	if (pipe2(out_pipe, O_CLOEXEC) < 0)
		return dmr_negerrno();
	if (pipe2(err_pipe, O_CLOEXEC) < 0) {
		r = dmr_negerrno();
		close(out_pipe[0]);
		close(out_pipe[1]);
		return r;
	}
	sigfillset(&all);
	pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls from here: the parent may have
		 * threads.  dup2 clears O_CLOEXEC on the copies. */
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		sigaction(SIGPIPE, &dfl, NULL);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		if (dup2(null_fd, 0) < 0 || dup2(out_pipe[1], 1) < 0 || dup2(err_pipe[1], 2) < 0)
			_exit(126);
#ifdef SYS_close_range
		/* Nothing else of the agent's reaches the tool, CLOEXEC or not. */
		(void)syscall(SYS_close_range, 3u, ~0u, 0u);
#endif
		execve(path, (char *const *)argv, environ);
		_exit(127);
	}
	r = pid < 0 ? dmr_negerrno() : 0;
	close(out_pipe[1]);
	close(err_pipe[1]);
	if (r == 0)
		r = drain(out_pipe[0], err_pipe[0], &out, &out_len, errbuf, &err_len);
	close(out_pipe[0]);
	close(err_pipe[0]);
	if (pid < 0)
		return r;
	if (r < 0)
		(void)kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return r < 0 ? r : dmr_negerrno();
	first_line(errbuf, err_len, err, err_size);
	if (r < 0)
		return r;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_debug("delta: %s %s: %s: %s", argv[0],
			  WIFEXITED(status) ? "failed" : "was killed",
			  WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "cannot run" : "stderr",
			  err);
		return WIFEXITED(status) && WEXITSTATUS(status) >= 126 ? -ENOEXEC : -EIO;
	}
	if (!out && !(out = strdup("")))
		return -ENOMEM;
	out[out_len] = '\0'; /* room: drain keeps one byte past the bound */
	*ret_out = DMR_TAKE_PTR(out);
	*ret_len = out_len;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The kernel's dev_id is 24 bits (dm-thin.c MAX_DEV_ID). */
#define THIN_ID_MAX ((1u << 24) - 1)

int dmr_delta_parse_ids(const char *buf, size_t len, uint32_t **ret_ids, size_t *ret_n)
{
	_cleanup_free_ uint32_t *ids = NULL;
	size_t n = 0, cap = 0, off = 0;

	assert(buf || len == 0);
	assert(ret_ids && ret_n);
	while (off < len) {
		const char *p = buf + off, *end = memchr(p, '\n', len - off);
		size_t k = end ? (size_t)(end - p) : len - off;
		uint64_t v = 0;
		size_t i = 0, digits = 0;

		off += k + (end ? 1 : 0);
		while (i < k && is_space(p[i]))
			i++;
		for (; i < k && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
			v = v * 10 + (uint64_t)(p[i] - '0');
			if (v > THIN_ID_MAX)
				return -EBADMSG;
		}
		while (i < k && is_space(p[i]))
			i++;
		if (i != k)
			return -EBADMSG;
		if (digits == 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			uint32_t *m;

			/* At most one line per id: THIN_ID_MAX + 1 of them. */
			if (ncap > (size_t)THIN_ID_MAX + 1)
				ncap = (size_t)THIN_ID_MAX + 1;
			if (n == ncap)
				return -EBADMSG;
			m = reallocarray(ids, ncap, sizeof(*ids));
			if (!m)
				return -ENOMEM;
			ids = m;
			cap = ncap;
		}
		ids[n++] = (uint32_t)v;
	}
	if (n > 1)
		qsort(ids, n, sizeof(*ids), cmp_u32);
	for (size_t i = 1; i < n; i++)
		if (ids[i] == ids[i - 1])
			return -EBADMSG;
	*ret_ids = n ? DMR_TAKE_PTR(ids) : NULL;
	*ret_n = n;
	return 0;
}

bool dmr_delta_ids_has(const uint32_t *ids, size_t n, uint32_t id)
{
	return n && bsearch(&id, ids, n, sizeof(*ids), cmp_u32);
}

int dmr_delta_thin_ids(const char *meta_path, uint32_t **ret_ids, size_t *ret_n)
{
	const char *argv[] = { "thin_ls", "--no-headers", "-o", "DEV", meta_path, NULL };
	_cleanup_free_ char *out = NULL;
	char err[256];
	size_t len = 0;
	int r;

	assert(meta_path && ret_ids && ret_n);
	r = dmr_delta_run_tool(argv, &out, &len, err, sizeof(err));
	if (r < 0)
		return r;
	r = dmr_delta_parse_ids(out, len, ret_ids, ret_n);
	if (r < 0)
		log_debug_errno(r, "delta: the output of thin_ls on %s refused: %m", meta_path);
	return r;
}

static int release_locked(const struct dmr_pool *pool)
{
	int r = dmr_pool_message(pool, "release_metadata_snap");

	held_leak = r < 0;
	if (r < 0)
		log_debug_errno(r, "delta: release_metadata_snap failed: %m");
	return r;
}

int dmr_delta_extents(const struct dmr_pool *pool, uint32_t base_id, uint32_t id,
		      uint64_t max_blocks, struct dmr_extent **ret_ext, size_t *ret_n)
{
	_cleanup_free_ char *out = NULL;
	char ids[2][16], err[256];
	size_t len = 0;
	int r, rr;

	if (!pool || !ret_ext || !ret_n || base_id == id)
		return -EINVAL;
	snprintf(ids[0], sizeof(ids[0]), "%" PRIu32, base_id);
	snprintf(ids[1], sizeof(ids[1]), "%" PRIu32, id);
	pthread_mutex_lock(&delta_lock);
	if (held_leak)
		(void)release_locked(pool);
	r = dmr_pool_message(pool, "reserve_metadata_snap");
	if (r < 0) {
		pthread_mutex_unlock(&delta_lock);
		log_debug_errno(r, "delta: reserve_metadata_snap failed: %m");
		return r;
	}
	if (base_id == 0) {
		const char *argv[] = { "thin_dump", "--metadata-snap", "--dev-id", ids[1],
				       pool->meta_dev, NULL };

		r = dmr_delta_run_tool(argv, &out, &len, err, sizeof(err));
	} else {
		const char *argv[] = { "thin_delta", "--metadata-snap", "--snap1", ids[0],
				       "--snap2", ids[1], pool->meta_dev, NULL };

		r = dmr_delta_run_tool(argv, &out, &len, err, sizeof(err));
		/* 0.9.0 says "Unable to find mapping tree for snap1 (9)". */
		if (r == -EIO && dmr_startswith(err, "Unable to find mapping tree"))
			r = -ENOENT;
	}
	/* Always, whatever the tool did: the pool holds one snapshot. */
	rr = release_locked(pool);
	pthread_mutex_unlock(&delta_lock);
	if (r < 0)
		return r;
	if (rr < 0)
		return rr;
	if (base_id == 0)
		r = dmr_delta_parse_dump(out, len, max_blocks, ret_ext, ret_n);
	else
		r = dmr_delta_parse_delta(out, len, max_blocks, ret_ext, ret_n);
	if (r < 0)
		log_debug_errno(r, "delta: the output of %s for %" PRIu32 " %" PRIu32
				" refused: %m", base_id ? "thin_delta" : "thin_dump", base_id, id);
	return r;
}

int dmr_delta_release_stale(const struct dmr_pool *pool)
{
	struct dmr_thin_pool_status st;
	int r;

	if (!pool)
		return -EINVAL;
	pthread_mutex_lock(&delta_lock);
	r = dmr_pool_status(pool, &st);
	if (r == 0 && st.has_held_root) {
		log_debug("delta: releasing a metadata snapshot left held (root %" PRIu64 ")",
			  st.held_root);
		r = release_locked(pool);
	}
	pthread_mutex_unlock(&delta_lock);
	return r;
}
