/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/job.c - jobs shaped like CIM_ConcreteJob, persisted under
 * STATE/jobs/ID.json, and the per-VM busy lock.
 *
 * A job's JSON file is rewritten atomically when the job starts, when its
 * percent changes and when it ends; nothing is written in between (steps and
 * results are kept in memory until then), so a failover's guest-paused
 * window never waits on an fsync.
 */
#include "agent/engine/job.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rc.h"
#include "common/json.h"
#include "common/log.h"
#include "common/testhook.h"
#include "common/util.h"

#define JOBS_KEEP 1000
#define JOB_FILE_MAX (1u << 20)
/* A job's thread stack.  mlockall (dmrepd.c) locks every page of it while
 * the thread lives; the default (RLIMIT_STACK, 8 MiB) is far more than a
 * job's calls use (their biggest frames hold a 16 KiB ioctl buffer and a
 * few PATH_MAX strings). */
#define JOB_STACK_SIZE (512u * 1024)
/* A record's numbers beyond these are a hostile or damaged file. */
#define JOB_ID_MAX (1ull << 53)

struct job_step {
	char name[32];
	uint64_t usec;
};

struct dmr_job {
	struct dmr_jobs *jobs;
	uint64_t id;
	char method[64];
	char *vm;
	enum dmr_job_state state;
	unsigned percent;
	int error_code;
	char error[512];
	uint64_t started, finished; /* realtime usec; 0: not yet */
	struct job_step *steps;
	size_t n_steps;
	uint64_t guest_paused_usec;
	/* A point's I/O stall (dmr_job_set_suspended); only point jobs
	 * have one, so only they carry the field. */
	uint64_t suspended_usec;
	bool has_suspended;
	struct json_object *results; /* extra fields, e.g. "point" */
	/* Only for jobs started by this process: */
	dmr_job_fn fn;
	void *userdata;
	void (*free_userdata)(void *);
	pthread_t thread;
	bool thread_started; /* a thread not joined yet */
	bool thread_done;    /* it touches nothing of the job from here on */
};

struct dmr_jobs {
	pthread_mutex_t lock;
	char *dir;
	uint64_t last_id;
	struct dmr_job **list; /* by id, ascending */
	size_t n, cap;
	size_t keep;           /* records kept: JOBS_KEEP, lower under a test hook */
	char **busy;           /* VM names with an operation running */
	size_t n_busy, cap_busy;
};

static const char *state_name(enum dmr_job_state s)
{
	switch (s) {
	case DMR_JOB_NEW:
		return "new";
	case DMR_JOB_STARTING:
		return "starting";
	case DMR_JOB_RUNNING:
		return "running";
	case DMR_JOB_COMPLETED:
		return "completed";
	case DMR_JOB_TERMINATED:
		return "terminated";
	case DMR_JOB_EXCEPTION:
		return "exception";
	}
	return "unknown";
}

static void job_free(struct dmr_job *j)
{
	if (!j)
		return;
	free(j->vm);
	free(j->steps);
	json_object_put(j->results);
	free(j);
}

static struct json_object *time_json(uint64_t usec)
{
	char buf[32];

	if (!usec || dmr_format_rfc3339(usec, buf) < 0)
		return NULL;
	return json_object_new_string(buf);
}

/* The job's JSON; caller holds the lock. */
static struct json_object *job_json(const struct dmr_job *j)
{
	struct json_object *o = json_object_new_object(), *steps;

	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_object_new_int64((int64_t)j->id));
	json_object_object_add(o, "method", json_object_new_string(j->method));
	json_object_object_add(o, "vm", j->vm ? json_object_new_string(j->vm) : NULL);
	json_object_object_add(o, "job_state", json_object_new_int(j->state));
	json_object_object_add(o, "state", json_object_new_string(state_name(j->state)));
	json_object_object_add(o, "percent_complete", json_object_new_int((int)j->percent));
	json_object_object_add(o, "error_code", json_object_new_int(j->error_code));
	json_object_object_add(o, "error_description", json_object_new_string(j->error));
	json_object_object_add(o, "started", time_json(j->started));
	json_object_object_add(o, "finished", time_json(j->finished));
	steps = json_object_new_array();
	for (size_t i = 0; steps && i < j->n_steps; i++) {
		struct json_object *s = json_object_new_object();

		json_object_object_add(s, "name", json_object_new_string(j->steps[i].name));
		json_object_object_add(s, "usec", json_object_new_int64((int64_t)j->steps[i].usec));
		json_object_array_add(steps, s);
	}
	json_object_object_add(o, "steps", steps);
	json_object_object_add(o, "guest_paused_usec",
			       json_object_new_int64((int64_t)j->guest_paused_usec));
	if (j->has_suspended)
		json_object_object_add(o, "suspended_usec",
				       json_object_new_int64((int64_t)j->suspended_usec));
	if (j->results) {
		json_object_object_foreach(j->results, k, v)
			json_object_object_add(o, k, json_object_get(v));
	}
	return o;
}

static int job_path(const struct dmr_jobs *js, uint64_t id, char *buf, size_t len)
{
	int k = snprintf(buf, len, "%s/%" PRIu64 ".json", js->dir, id);

	return k < 0 || (size_t)k >= len ? -ENAMETOOLONG : 0;
}

/* Persist the job (caller holds the lock).  A failure is logged: the job
 * itself goes on, only its record after a restart would be stale. */
static void job_save(struct dmr_jobs *js, const struct dmr_job *j)
{
	struct json_object *o = job_json(j);
	char path[4096];
	const char *text;
	int r;

	if (!o) {
		log_error("job %" PRIu64 ": out of memory", j->id);
		return;
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	r = job_path(js, j->id, path, sizeof(path));
	if (r == 0)
		r = dmr_write_file_atomic(path, text, strlen(text), 0600);
	if (r == -DMR_E_NOT_DURABLE)
		log_warning("job %" PRIu64 ": record written, but not durably (directory fsync failed)",
			    j->id);
	else if (r < 0)
		log_error("job %" PRIu64 ": cannot save its record: %s", j->id, strerror(-r));
	json_object_put(o);
}

static int json_get_u64(struct json_object *o, const char *k, uint64_t *ret)
{
	struct json_object *v;

	/* json-c saturates larger numbers at INT64_MAX without a word. */
	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0 || json_object_get_int64(v) == INT64_MAX)
		return -EINVAL;
	*ret = (uint64_t)json_object_get_int64(v);
	return 0;
}

/* Parse "2026-11-24T18:31:49Z" back to realtime usec; 0 if absent. */
static uint64_t parse_time(struct json_object *o, const char *k)
{
	struct json_object *v;
	struct tm tm = { 0 }, asked, back;
	const char *s, *end;
	time_t t;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return 0;
	asked = tm; /* timegm() normalises its argument too */
	t = timegm(&tm);
	/* timegm() normalises what strptime() let through (second 60, the
	 * 31st of a 30-day month): a time that is not the one written is
	 * not a time this agent wrote.  Found by tests/fuzz/fuzz_job.c
	 * ("9999-12-31T23:59:60Z" came back as year 10000). */
	if (t < 0 || !gmtime_r(&t, &back) || back.tm_year != asked.tm_year ||
	    back.tm_mon != asked.tm_mon || back.tm_mday != asked.tm_mday ||
	    back.tm_hour != asked.tm_hour || back.tm_min != asked.tm_min || back.tm_sec != asked.tm_sec)
		return 0;
	return (uint64_t)t * 1000000u;
}

/* A string without NUL or other control characters. */
static bool plain_text(struct json_object *v)
{
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int job_from_json(struct json_object *o, struct dmr_job **ret)
{
	struct dmr_job *j = calloc(1, sizeof(*j));
	struct json_object *v, *steps;
	uint64_t u;

	if (!j)
		return -ENOMEM;
	if (json_get_u64(o, "id", &j->id) < 0 || j->id == 0 || j->id > JOB_ID_MAX ||
	    !json_object_object_get_ex(o, "method", &v) || !json_object_is_type(v, json_type_string))
		goto bad;
	dmr_cescape(j->method, sizeof(j->method), json_object_get_string(v));
	if (json_object_object_get_ex(o, "vm", &v) && v) {
		/* A VM name, as the API checks them: anything else is not
		 * one of our records. */
		if (!json_object_is_type(v, json_type_string) || !plain_text(v) ||
		    !(j->vm = strdup(json_object_get_string(v))))
			goto bad;
	}
	if (json_get_u64(o, "job_state", &u) < 0 ||
	    (u != DMR_JOB_NEW && u != DMR_JOB_STARTING && u != DMR_JOB_RUNNING &&
	     u != DMR_JOB_COMPLETED && u != DMR_JOB_TERMINATED && u != DMR_JOB_EXCEPTION))
		goto bad;
	j->state = (enum dmr_job_state)u;
	if (json_get_u64(o, "percent_complete", &u) == 0 && u <= 100)
		j->percent = (unsigned)u;
	if (json_get_u64(o, "error_code", &u) == 0 && u <= INT_MAX)
		j->error_code = (int)u;
	if (json_object_object_get_ex(o, "error_description", &v) &&
	    json_object_is_type(v, json_type_string))
		dmr_cescape(j->error, sizeof(j->error), json_object_get_string(v));
	j->started = parse_time(o, "started");
	j->finished = parse_time(o, "finished");
	(void)json_get_u64(o, "guest_paused_usec", &j->guest_paused_usec);
	j->has_suspended = json_get_u64(o, "suspended_usec", &j->suspended_usec) == 0;
	if (json_object_object_get_ex(o, "steps", &steps) && json_object_is_type(steps, json_type_array)) {
		size_t n = json_object_array_length(steps);

		j->steps = calloc(n ? n : 1, sizeof(*j->steps));
		if (!j->steps)
			goto bad;
		for (size_t i = 0; i < n; i++) {
			struct json_object *s = json_object_array_get_idx(steps, i), *nm;

			if (!json_object_object_get_ex(s, "name", &nm) ||
			    !json_object_is_type(nm, json_type_string) ||
			    json_get_u64(s, "usec", &j->steps[j->n_steps].usec) < 0)
				continue;
			dmr_cescape(j->steps[j->n_steps].name, sizeof(j->steps[0].name),
				    json_object_get_string(nm));
			j->n_steps++;
		}
	}
	/* Result fields: whatever is not one of ours. */
	json_object_object_foreach(o, k, val) {
		static const char *const known[] = { "id", "method", "vm", "job_state", "state",
						     "percent_complete", "error_code",
						     "error_description", "started", "finished",
						     "steps", "guest_paused_usec", "suspended_usec",
						     NULL };
		bool ours = false;

		for (size_t i = 0; known[i]; i++)
			ours = ours || strcmp(k, known[i]) == 0;
		if (ours)
			continue;
		if (!j->results && !(j->results = json_object_new_object()))
			goto bad;
		json_object_object_add(j->results, k, json_object_get(val));
	}
	*ret = j;
	return 0;
bad:
	job_free(j);
	return -EINVAL;
}

int dmr_job_record_load(const char *text, size_t len, char **ret_text)
{
	struct json_object *o = NULL, *w;
	struct dmr_job *j = NULL;
	char *s;
	int r;

	assert(text && ret_text);
	r = dmr_json_parse_object(text, len, &o);
	if (r < 0)
		return r;
	r = job_from_json(o, &j);
	json_object_put(o);
	if (r < 0)
		return r;
	w = job_json(j);
	s = w ? strdup(json_object_to_json_string_ext(w, JSON_C_TO_STRING_PLAIN)) : NULL;
	json_object_put(w);
	job_free(j);
	if (!s)
		return -ENOMEM;
	*ret_text = s;
	return 0;
}

static int list_add(struct dmr_jobs *js, struct dmr_job *j)
{
	size_t i;

	if (js->n == js->cap) {
		size_t cap = js->cap ? js->cap * 2 : 64;
		struct dmr_job **n = realloc(js->list, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		js->list = n;
		js->cap = cap;
	}
	for (i = js->n; i > 0 && js->list[i - 1]->id > j->id; i--)
		js->list[i] = js->list[i - 1];
	js->list[i] = j;
	js->n++;
	return 0;
}

/* Persist the highest id handed out, before the job that has it is
 * written: job records are pruned (and an operator may remove them), and
 * an id must never name two jobs, across restarts too. */
static int save_last_id(struct dmr_jobs *js, uint64_t id)
{
	char path[4096], buf[32];
	int k = snprintf(path, sizeof(path), "%s/last-id", js->dir);

	if (k < 0 || (size_t)k >= sizeof(path))
		return -ENAMETOOLONG;
	k = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", id);
	return dmr_write_file_atomic(path, buf, (size_t)k, 0600);
}

/* Join the threads of jobs that have ended (caller holds the lock): until
 * joined, a thread's stack stays mapped, and locked by mlockall.  A thread
 * sets thread_done as its last act under the lock, so the join returns at
 * once and never waits for the lock we hold. */
static void reap(struct dmr_jobs *js)
{
	for (size_t i = 0; i < js->n; i++) {
		struct dmr_job *j = js->list[i];

		if (j->thread_started && j->thread_done) {
			pthread_join(j->thread, NULL);
			j->thread_started = false;
		}
	}
}

/* Drop the oldest finished jobs past js->keep (caller holds the lock);
 * a job whose thread is not reaped yet stays. */
static void prune(struct dmr_jobs *js)
{
	size_t i = 0;

	while (js->n > js->keep && i < js->n) {
		struct dmr_job *j = js->list[i];
		char path[4096];

		if (j->state < DMR_JOB_COMPLETED || j->thread_started) {
			i++;
			continue;
		}
		if (job_path(js, j->id, path, sizeof(path)) == 0)
			(void)unlink(path);
		job_free(j);
		memmove(&js->list[i], &js->list[i + 1], (js->n - i - 1) * sizeof(*js->list));
		js->n--;
	}
}

static void jobs_free(struct dmr_jobs *js)
{
	if (!js)
		return;
	for (size_t i = 0; i < js->n; i++)
		job_free(js->list[i]);
	dmr_strv_free(js->busy, js->n_busy);
	free(js->list);
	free(js->dir);
	pthread_mutex_destroy(&js->lock);
	free(js);
}

int dmr_jobs_open(struct dmr_agent *a)
{
	struct dmr_jobs *js;
	_cleanup_free_ char *last = NULL;
	char path[4096];
	DIR *d;
	struct dirent *de;
	int r;

	js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	pthread_mutex_init(&js->lock, NULL);
	js->keep = dmr_test_limit("DMREP_TEST_JOBS_KEEP", JOBS_KEEP);
	if (asprintf(&js->dir, "%s/jobs", a->state_dir) < 0) {
		js->dir = NULL;
		jobs_free(js);
		return -ENOMEM;
	}
	r = dmr_mkdir_p(js->dir, 0700);
	if (r < 0) {
		jobs_free(js);
		return r;
	}
	snprintf(path, sizeof(path), "%s/last-id", js->dir);
	if (dmr_read_file(path, 64, &last, NULL) == 0)
		(void)dmr_parse_u64(strtok(last, "\n") ?: "", &js->last_id);
	d = opendir(js->dir);
	if (!d) {
		r = -errno;
		jobs_free(js);
		return r;
	}
	while ((de = readdir(d))) {
		_cleanup_free_ char *text = NULL;
		struct json_object *o;
		struct dmr_job *j;
		uint64_t id;
		char idpart[32];
		size_t n = strlen(de->d_name), tlen = 0;

		if (n < 6 || n - 5 >= sizeof(idpart) || strcmp(de->d_name + n - 5, ".json"))
			continue;
		memcpy(idpart, de->d_name, n - 5);
		idpart[n - 5] = '\0';
		if (dmr_parse_u64(idpart, &id) < 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", js->dir, de->d_name);
		if (dmr_read_file(path, JOB_FILE_MAX, &text, &tlen) < 0)
			continue;
		o = NULL;
		j = NULL;
		if (dmr_json_parse_object(text, tlen, &o) < 0 || job_from_json(o, &j) < 0 ||
		    j->id != id) {
			log_warning("job record %s is unreadable; left alone", path);
			job_free(j);
			json_object_put(o);
			continue;
		}
		json_object_put(o);
		if (j->state < DMR_JOB_COMPLETED) {
			/* It ran in a process that is gone. */
			j->state = DMR_JOB_EXCEPTION;
			j->error_code = DMR_RC_FAILED;
			snprintf(j->error, sizeof(j->error), "agent restarted while the job ran");
			j->finished = dmr_realtime_usec();
			job_save(js, j);
		}
		if (j->id > js->last_id)
			js->last_id = j->id;
		if (list_add(js, j) < 0) {
			job_free(j);
			closedir(d);
			jobs_free(js);
			return -ENOMEM;
		}
	}
	closedir(d);
	prune(js);
	a->jobs = js;
	return 0;
}

void dmr_jobs_close(struct dmr_agent *a)
{
	struct dmr_jobs *js = a ? a->jobs : NULL;

	if (!js)
		return;
	/* Jobs end on their own (a failover finishes or rolls back); wait. */
	for (size_t i = 0; i < js->n; i++) {
		struct dmr_job *j;

		pthread_mutex_lock(&js->lock);
		j = i < js->n ? js->list[i] : NULL;
		pthread_mutex_unlock(&js->lock);
		if (j && j->thread_started) {
			pthread_join(j->thread, NULL);
			j->thread_started = false;
		}
	}
	jobs_free(js);
	a->jobs = NULL;
}

static bool busy_has(struct dmr_jobs *js, const char *vm, size_t *ret_i)
{
	for (size_t i = 0; i < js->n_busy; i++)
		if (strcmp(js->busy[i], vm) == 0) {
			if (ret_i)
				*ret_i = i;
			return true;
		}
	return false;
}

int dmr_vm_busy_acquire(struct dmr_agent *a, const char *vm)
{
	struct dmr_jobs *js = a->jobs;
	char *copy;
	int r = 0;

	if (!vm)
		return -EINVAL;
	pthread_mutex_lock(&js->lock);
	if (busy_has(js, vm, NULL)) {
		r = -EBUSY;
	} else if (js->n_busy == js->cap_busy) {
		size_t cap = js->cap_busy ? js->cap_busy * 2 : 8;
		char **n = realloc(js->busy, cap * sizeof(*n));

		if (!n)
			r = -ENOMEM;
		else {
			js->busy = n;
			js->cap_busy = cap;
		}
	}
	if (r == 0) {
		copy = strdup(vm);
		if (!copy)
			r = -ENOMEM;
		else
			js->busy[js->n_busy++] = copy;
	}
	pthread_mutex_unlock(&js->lock);
	return r;
}

static void busy_release_locked(struct dmr_jobs *js, const char *vm)
{
	size_t i;

	if (busy_has(js, vm, &i)) {
		free(js->busy[i]);
		js->busy[i] = js->busy[--js->n_busy];
	}
}

static void busy_release(struct dmr_jobs *js, const char *vm)
{
	if (!vm || !js)
		return;
	pthread_mutex_lock(&js->lock);
	busy_release_locked(js, vm);
	pthread_mutex_unlock(&js->lock);
}

void dmr_vm_busy_release(struct dmr_agent *a, const char *vm)
{
	if (a)
		busy_release(a->jobs, vm);
}

static void *job_thread(void *p)
{
	struct dmr_job *j = p;
	struct dmr_jobs *js = j->jobs;
	uint64_t t0 = dmr_now_usec();
	char line[1024];
	int r;

	pthread_mutex_lock(&js->lock);
	j->state = DMR_JOB_RUNNING;
	job_save(js, j);
	pthread_mutex_unlock(&js->lock);

	r = j->fn(j, j->userdata);
	if (j->free_userdata)
		j->free_userdata(j->userdata);
	j->userdata = NULL;

	/* One step: the job is seen ended only once the VM is free for the
	 * next operation (a caller that saw it end and went on was refused
	 * with 32774), and from the unlock on it may be reaped and pruned
	 * (j freed): the log line is made before. */
	pthread_mutex_lock(&js->lock);
	if (r < 0 && j->error_code == 0) {
		j->error_code = dmr_rc_from_errno(r);
		snprintf(j->error, sizeof(j->error), "%s", strerror(-r));
	}
	if (r < 0 || j->error_code) {
		j->state = DMR_JOB_EXCEPTION;
		if (j->error_code == 0)
			j->error_code = DMR_RC_FAILED;
	} else {
		j->state = DMR_JOB_COMPLETED;
		j->percent = 100;
	}
	j->finished = dmr_realtime_usec();
	job_save(js, j);
	snprintf(line, sizeof(line), "job %" PRIu64 " %s%s%s: %s (%d) in %" PRIu64 " ms%s%s", j->id,
		 j->method, j->vm ? " VM " : "", j->vm ? j->vm : "", state_name(j->state),
		 j->error_code, (dmr_now_usec() - t0) / 1000, j->error[0] ? ": " : "", j->error);
	if (j->vm)
		busy_release_locked(js, j->vm);
	j->thread_done = true;
	pthread_mutex_unlock(&js->lock);
	log_info("%s", line);
	return NULL;
}

int dmr_job_start(struct dmr_agent *a, const char *method, const char *vm, dmr_job_fn fn,
		  void *userdata, void (*free_userdata)(void *), uint64_t *ret_id)
{
	struct dmr_jobs *js = a->jobs;
	pthread_attr_t attr;
	struct dmr_job *j;
	bool listed = false;
	int r;

	if (!method || !fn || !ret_id)
		return -EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->jobs = js;
	snprintf(j->method, sizeof(j->method), "%s", method);
	if (vm && !(j->vm = strdup(vm))) {
		job_free(j);
		return -ENOMEM;
	}
	j->state = DMR_JOB_STARTING;
	j->fn = fn;
	j->userdata = userdata;
	j->free_userdata = free_userdata;
	j->started = dmr_realtime_usec();
	pthread_attr_init(&attr);
	(void)pthread_attr_setstacksize(&attr, JOB_STACK_SIZE);
	pthread_mutex_lock(&js->lock);
	/* Ended threads first: the new one reuses a cached stack. */
	reap(js);
	r = save_last_id(js, js->last_id + 1);
	if (r == 0) {
		j->id = ++js->last_id;
		r = list_add(js, j);
	}
	if (r == 0) {
		listed = true;
		job_save(js, j);
		r = -pthread_create(&j->thread, &attr, job_thread, j);
		if (r == 0)
			j->thread_started = true;
		else {
			/* Keep the record honest: the job never ran. */
			j->state = DMR_JOB_EXCEPTION;
			j->error_code = DMR_RC_FAILED;
			snprintf(j->error, sizeof(j->error), "cannot start a thread: %s", strerror(-r));
			j->finished = dmr_realtime_usec();
			j->userdata = NULL;
			job_save(js, j);
		}
	}
	if (r == 0)
		prune(js);
	pthread_mutex_unlock(&js->lock);
	pthread_attr_destroy(&attr);
	if (r < 0) {
		if (!listed)
			job_free(j);
		return r;
	}
	*ret_id = j->id;
	return 0;
}

void dmr_job_set_percent(struct dmr_job *job, unsigned percent)
{
	struct dmr_jobs *js = job->jobs;

	if (percent > 100)
		percent = 100;
	pthread_mutex_lock(&js->lock);
	if (percent != job->percent) {
		job->percent = percent;
		job_save(js, job);
	}
	pthread_mutex_unlock(&js->lock);
}

void dmr_job_add_step(struct dmr_job *job, const char *name, uint64_t usec)
{
	struct dmr_jobs *js = job->jobs;
	struct job_step *n;

	pthread_mutex_lock(&js->lock);
	n = realloc(job->steps, (job->n_steps + 1) * sizeof(*n));
	if (n) {
		job->steps = n;
		snprintf(n[job->n_steps].name, sizeof(n[0].name), "%s", name);
		n[job->n_steps].usec = usec;
		job->n_steps++;
	}
	pthread_mutex_unlock(&js->lock);
}

void dmr_job_set_guest_paused(struct dmr_job *job, uint64_t usec)
{
	pthread_mutex_lock(&job->jobs->lock);
	job->guest_paused_usec = usec;
	pthread_mutex_unlock(&job->jobs->lock);
}

void dmr_job_set_suspended(struct dmr_job *job, uint64_t usec)
{
	pthread_mutex_lock(&job->jobs->lock);
	job->suspended_usec = usec;
	job->has_suspended = true;
	pthread_mutex_unlock(&job->jobs->lock);
}

void dmr_job_set_error(struct dmr_job *job, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&job->jobs->lock);
	/* The first error is the one that explains the failure. */
	if (job->error_code == 0) {
		char raw[sizeof(job->error)];

		job->error_code = rc ? rc : DMR_RC_FAILED;
		va_start(ap, fmt);
		vsnprintf(raw, sizeof(raw), fmt, ap);
		va_end(ap);
		raw[strcspn(raw, "\n")] = '\0';
		/* It reaches terminals (job show, the client's stderr) and
		 * may quote a guest agent or a hook: no control character,
		 * no byte that is not UTF-8, not a character cut in two. */
		raw[dmr_utf8_cut(raw, strlen(raw))] = '\0';
		dmr_cescape(job->error, sizeof(job->error), raw);
	}
	pthread_mutex_unlock(&job->jobs->lock);
}

void dmr_job_replace_error(struct dmr_job *job, int rc, const char *fmt, ...)
{
	char raw[sizeof(job->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&job->jobs->lock);
	job->error_code = 0;
	pthread_mutex_unlock(&job->jobs->lock);
	dmr_job_set_error(job, rc, "%s", raw);
}

int dmr_job_get_error(struct dmr_job *job, char *buf, size_t size)
{
	int rc;

	pthread_mutex_lock(&job->jobs->lock);
	rc = job->error_code;
	if (size)
		snprintf(buf, size, "%s", job->error);
	pthread_mutex_unlock(&job->jobs->lock);
	return rc;
}

int dmr_job_fail(struct dmr_job *job, int negerrno, const char *fmt, ...)
{
	char what[sizeof(job->error)];
	va_list ap;

	assert(job);
	assert(negerrno < 0);
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	dmr_job_set_error(job, dmr_rc_from_errno(negerrno), "%s: %s", what, strerror(-negerrno));
	return negerrno;
}

uint64_t dmr_job_id(const struct dmr_job *job)
{
	return job->id;
}

void dmr_job_set_result(struct dmr_job *job, const char *key, struct json_object *val)
{
	pthread_mutex_lock(&job->jobs->lock);
	if (!job->results)
		job->results = json_object_new_object();
	if (job->results)
		json_object_object_add(job->results, key, val);
	else
		json_object_put(val);
	pthread_mutex_unlock(&job->jobs->lock);
}

int dmr_job_get_json(struct dmr_agent *a, uint64_t id, struct json_object **ret)
{
	struct dmr_jobs *js = a->jobs;
	struct json_object *o = NULL;
	int r = -ENOENT;

	pthread_mutex_lock(&js->lock);
	for (size_t i = 0; i < js->n; i++)
		if (js->list[i]->id == id) {
			o = job_json(js->list[i]);
			r = o ? 0 : -ENOMEM;
			break;
		}
	pthread_mutex_unlock(&js->lock);
	if (r == 0)
		*ret = o;
	return r;
}

int dmr_jobs_list_json(struct dmr_agent *a, struct json_object **ret_array)
{
	struct dmr_jobs *js = a->jobs;
	struct json_object *arr = json_object_new_array();

	if (!arr)
		return -ENOMEM;
	pthread_mutex_lock(&js->lock);
	for (size_t i = 0; i < js->n; i++) {
		struct json_object *o = job_json(js->list[i]);

		if (!o || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			pthread_mutex_unlock(&js->lock);
			json_object_put(arr);
			return -ENOMEM;
		}
	}
	pthread_mutex_unlock(&js->lock);
	*ret_array = arr;
	return 0;
}
