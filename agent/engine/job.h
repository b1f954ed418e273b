/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/engine/job.h - asynchronous jobs shaped like CIM_ConcreteJob, and the
 * per-VM "one operation at a time" lock.
 *
 * A job runs its function on a worker thread.  Jobs are numbered from a
 * counter persisted in STATE/jobs/, and each job's JSON (the shape of
 * `dmrep job show` in CONTRACT.md) is written atomically to
 * STATE/jobs/ID.json on every state change, so jobs survive a restart.  A job
 * found running (3/4) when the agent starts is marked 10 (exception) with
 * "agent restarted while the job ran" unless crash recovery says otherwise.
 */
#ifndef DMR_AGENT_JOB_H
#define DMR_AGENT_JOB_H

#include <json-c/json.h>
#include <stdint.h>

#include "agent/core/agent.h"

enum dmr_job_state {
	DMR_JOB_NEW = 2,
	DMR_JOB_STARTING = 3,
	DMR_JOB_RUNNING = 4,
	DMR_JOB_COMPLETED = 7,
	DMR_JOB_TERMINATED = 8,
	DMR_JOB_EXCEPTION = 10,
};

struct dmr_job;

/* Returns 0 or a negative errno.  A job that fails sets its error with
 * dmr_job_set_error (code + description); otherwise the code is derived from
 * the errno with dmr_rc_from_errno and the description from strerror. */
typedef int (*dmr_job_fn)(struct dmr_job *job, void *userdata);

int dmr_jobs_open(struct dmr_agent *a);  /* load STATE/jobs, mark stale */
/* Wait for running jobs to end (SIGTERM path), then free. */
void dmr_jobs_close(struct dmr_agent *a);
/* A job record through the loader and the writer, on a buffer (tests and
 * tests/fuzz/fuzz_job.c): text[0..len) read as dmr_jobs_open reads a
 * STATE/jobs/ID.json, then written back as the agent writes it, into
 * *ret_text (malloc()ed).  -EILSEQ, -EBADMSG: not JSON in UTF-8; -EINVAL: not
 * a record the loader takes; -ENOMEM. */
int dmr_job_record_load(const char *text, size_t len, char **ret_text);

/*
 * Start fn(job, userdata) on a worker thread.  vm may be NULL.  If vm is
 * given, the caller must already hold the VM's busy lock
 * (dmr_vm_busy_acquire); the job takes it over and releases it when it ends.
 * free_userdata (may be NULL) runs after fn.  *ret_id is the job's number.
 */
int dmr_job_start(struct dmr_agent *a, const char *method, const char *vm,
		  dmr_job_fn fn, void *userdata, void (*free_userdata)(void *),
		  uint64_t *ret_id);

void dmr_job_set_percent(struct dmr_job *job, unsigned percent);
/* Record a finished step and how long it took. */
void dmr_job_add_step(struct dmr_job *job, const char *name, uint64_t usec);
void dmr_job_set_guest_paused(struct dmr_job *job, uint64_t usec);
/* A point's I/O stall: how long its volumes were suspended, first suspend
 * to last resume.  The job's JSON has `suspended_usec` once this is
 * called (point jobs call it as they start, with 0). */
void dmr_job_set_suspended(struct dmr_job *job, uint64_t usec);
void dmr_job_set_error(struct dmr_job *job, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The cause found after a consequence was recorded (a replication
 * cycle's broken pipe, then the receiver's refusal that broke it): the
 * job's error replaced. */
void dmr_job_replace_error(struct dmr_job *job, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The error recorded so far: its code (0: none) and its line in buf. */
int dmr_job_get_error(struct dmr_job *job, char *buf, size_t size);
/* Record an error from a negative errno: the code from dmr_rc_from_errno,
 * the description "<fmt>: <strerror>".  Returns negerrno, so that
 * `return dmr_job_fail(job, r, "cannot record the point");` reads as one. */
int dmr_job_fail(struct dmr_job *job, int negerrno, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
uint64_t dmr_job_id(const struct dmr_job *job);
/* Add a field to the job's JSON (e.g. "point": 5); takes ownership of val. */
void dmr_job_set_result(struct dmr_job *job, const char *key, struct json_object *val);

/* The job's JSON (CONTRACT.md shape), a new reference; -ENOENT if unknown. */
int dmr_job_get_json(struct dmr_agent *a, uint64_t id, struct json_object **ret);
int dmr_jobs_list_json(struct dmr_agent *a, struct json_object **ret_array);

/* One operation per VM: -EBUSY if another holds it. */
int dmr_vm_busy_acquire(struct dmr_agent *a, const char *vm);
void dmr_vm_busy_release(struct dmr_agent *a, const char *vm);

#endif
