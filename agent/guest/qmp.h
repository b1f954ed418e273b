/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/qmp.h - a native client for QEMU's machine protocol (QMP) on a Unix
 * stream socket, and the JSON-lines transport it shares with agent/guest/qga.c.
 *
 * Protocol handled: the greeting ({"QMP": {"version": ...}}), capabilities
 * negotiation (qmp_capabilities), then commands carrying an integer "id"
 * that the reply echoes.  Asynchronous events ({"event": ...}) may arrive
 * before, between or after replies; they are skipped (the last one's name
 * is kept, for tests and diagnostics).  A reply whose id is not the one
 * awaited (the late reply of a command that timed out earlier) is skipped
 * too, so a handle stays usable after -ETIMEDOUT.
 *
 * Errors (negative errnos, see common/rc.h):
 *   -EHOSTUNREACH  no socket, nobody listening, the peer closed or reset
 *                  the connection: the hypervisor is unreachable or dead
 *   -ETIMEDOUT     no (complete) answer within the timeout
 *   -EPROTO        the peer sent something that is not QMP: a line that is
 *                  not a JSON object, no greeting, a line over
 *                  DMR_JSONL_MAX_LINE bytes, a reply with neither "return"
 *                  nor "error"
 *   -EIO           QEMU answered the command with {"error": {...}}; the
 *                  error's "desc" and "class" are in dmr_qmp_last_error()
 *                  and dmr_qmp_last_error_class() until the next command
 *   -EINVAL        a command name that is not a QMP identifier
 *   -EACCES        the socket exists but may not be opened
 * After -EHOSTUNREACH or -EPROTO the connection is dead: every later call
 * returns -EHOSTUNREACH.  Reconnecting is the caller's job (agent/guest/shim.c
 * does it).  Note that QEMU serves one client per QMP socket at a time:
 * while another client is connected, a connect is accepted by the kernel
 * but the greeting never comes, which gives -ETIMEDOUT.
 *
 * Every read waits with poll() against a deadline fixed when the call
 * starts, so a peer that trickles events cannot stretch a call past its
 * timeout.  The socket is SOCK_CLOEXEC and written with MSG_NOSIGNAL: a
 * peer that went away gives -EHOSTUNREACH, never SIGPIPE.
 *
 * Allocation: the line buffer, the JSON tokener and the command buffer are
 * allocated at connect.  A command without arguments (stop, cont,
 * system_reset, query-status) is formatted into the preallocated buffer
 * and its reply read into the line buffer; only json-c's parse of the
 * reply allocates (a few small objects), which json-c cannot avoid.
 *
 * A handle is not thread-safe: one thread uses it at a time.
 */
#ifndef DMR_AGENT_QMP_H
#define DMR_AGENT_QMP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

/* ---- JSON-lines transport over a Unix stream socket ---------------------
 * Shared by the QMP and QGA clients: connect with a deadline, send all of a
 * buffer, read newline-terminated lines (split across reads or several per
 * read), skip raw input up to a sentinel byte.  Deadlines are absolute
 * CLOCK_MONOTONIC microseconds (dmr_now_usec()); DMR_DEADLINE_NEVER waits
 * for ever. */

/* A line longer than this (without its newline) is -EPROTO. */
#define DMR_JSONL_MAX_LINE (1u << 20)
#define DMR_DEADLINE_NEVER UINT64_MAX

struct dmr_jsonl;

/* The deadline timeout_ms from now; a negative timeout_ms is "never". */
uint64_t dmr_deadline_from_ms(int timeout_ms);

/* Connect to the Unix socket at path before deadline.  -EHOSTUNREACH if
 * the socket is absent or nobody listens, -EINVAL for a relative path,
 * -ETIMEDOUT if the listener's backlog stays full, -EACCES if path is inside
 * a --socket-dir but no longer resolves inside one (agent/core/authz.h).  The
 * path is resolved once and connected to through that descriptor. */
int dmr_jsonl_connect(const char *path, uint64_t deadline, struct dmr_jsonl **ret_chan);
void dmr_jsonl_free(struct dmr_jsonl *c);

/* Send all of buf.  -EHOSTUNREACH if the peer is gone. */
int dmr_jsonl_send(struct dmr_jsonl *c, const void *buf, size_t len, uint64_t deadline);

/* Next line, without its "\n" (and a "\r" before it), NUL-terminated, in
 * the channel's buffer: valid until the next call on the channel.
 * -EHOSTUNREACH at end of input, -EPROTO for a line over the limit. */
int dmr_jsonl_read_line(struct dmr_jsonl *c, uint64_t deadline, char **ret_line, size_t *ret_len);

/* Discard input up to and including the next byte equal to sentinel. */
int dmr_jsonl_skip_past(struct dmr_jsonl *c, unsigned char sentinel, uint64_t deadline);

/* Parse one line (read from c, or any text) as a JSON object with the
 * channel's strict parser.  -EPROTO unless the whole line is exactly one
 * JSON object (whitespace around it is fine) in valid UTF-8.  *ret_obj is
 * a new reference. */
int dmr_jsonl_parse_line(struct dmr_jsonl *c, const char *line, size_t len,
			 struct json_object **ret_obj);

/* Whether s is a command name QMP and the guest agent take (QAPI: letters,
 * digits, '-' and '_'; not empty). */
bool dmr_qapi_name_valid(const char *s);

/* ---- QMP ---------------------------------------------------------------- */

struct dmr_qmp;

/*
 * Connect to the QMP socket at path, read the greeting and negotiate
 * capabilities, all within timeout_ms (negative: no timeout).  The same
 * timeout becomes the default of the convenience calls below.
 */
int dmr_qmp_connect(const char *path, int timeout_ms, struct dmr_qmp **ret_qmp);
void dmr_qmp_free(struct dmr_qmp *q);
DMR_DEFINE_FREEP(struct dmr_qmp *, dmr_qmp_free)
#define _cleanup_qmp_ _cleanup_(dmr_qmp_freep)

/* Timeout of the convenience calls (stop, cont, ...); negative: none. */
void dmr_qmp_set_timeout(struct dmr_qmp *q, int timeout_ms);

/* QEMU's version from the greeting (0.0.0 if it did not say). */
void dmr_qmp_version(const struct dmr_qmp *q, int *ret_major, int *ret_minor, int *ret_micro);

/*
 * Run command with arguments (a JSON object, or NULL for none; not
 * consumed) and wait up to timeout_ms for its reply.  On success
 * *ret_return (may be NULL) is a new reference to the reply's "return"
 * value.
 */
int dmr_qmp_execute(struct dmr_qmp *q, const char *command, struct json_object *arguments,
		    int timeout_ms, struct json_object **ret_return);

/* "desc" and "class" of the error reply that made the last command fail
 * with -EIO; NULL when the last command did not get an error reply. */
const char *dmr_qmp_last_error(const struct dmr_qmp *q);
const char *dmr_qmp_last_error_class(const struct dmr_qmp *q);

/* Name of the last event skipped ("STOP", "RESUME", "RESET", ...) or NULL
 * if none came yet, and how many events were skipped in all. */
const char *dmr_qmp_last_event(const struct dmr_qmp *q);
unsigned dmr_qmp_event_count(const struct dmr_qmp *q);

/* query-status: whether the guest's CPUs run, and the run state ("running",
 * "paused", "prelaunch", "shutdown", ...).  ret_status may be NULL; else
 * it is a new string for the caller to free. */
int dmr_qmp_query_status(struct dmr_qmp *q, bool *ret_running, char **ret_status);

/* stop, cont, system_reset.  stop also drains QEMU's block I/O before it
 * returns. */
int dmr_qmp_stop(struct dmr_qmp *q);
int dmr_qmp_cont(struct dmr_qmp *q);
int dmr_qmp_system_reset(struct dmr_qmp *q);

/* human-monitor-command: run an HMP command line; *ret_output is its text
 * output (HMP reports most of its own errors there, not as QMP errors). */
int dmr_qmp_hmp(struct dmr_qmp *q, const char *command_line, char **ret_output);

#endif
