/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/method.h - the control API's method table.
 *
 * The server (agent/rpc/server.c) parses one JSON request per line, checks the
 * caller's right to call the method (mutating methods: root or --group
 * members only, and a member only as agent/core/authz.h allows; others get
 * 32769), and calls the handler with a dmr_call.
 * The handler validates params (types: 32776; values: 32773), does the work
 * or starts a job, adds its result fields to call->reply, and returns a WMI
 * return code.  On a non-zero code it fills call->error with one line.
 * A request may carry one descriptor (SCM_RIGHTS, sent with the line's
 * first byte): only methods with takes_fd accept it (docs/protocol.md).
 */
#ifndef DMR_AGENT_METHOD_H
#define DMR_AGENT_METHOD_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/core/agent.h"

struct dmr_call {
	struct dmr_agent *agent;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	bool privileged;           /* root or member of --group (agent/core/authz.h) */
	struct json_object *params; /* a JSON object, never NULL */
	struct json_object *reply;  /* add result fields here */
	char error[512];            /* one line, set when returning non-zero */
	/* Long poll (GetJob's "wait"): with may_wait set, a handler whose
	 * answer is not ready yet may set wait_usec and return DMR_RC_AGAIN;
	 * the server calls it again every DMR_SERVER_POLL_MS until it
	 * answers, and once more with may_wait false when wait_usec has
	 * passed.  The client counts as busy, never idle, meanwhile. */
	bool may_wait;
	uint64_t wait_usec;
	/* The descriptor the client passed with the request (SCM_RIGHTS,
	 * close-on-exec), for a method with takes_fd; -1: none.  A handler
	 * that keeps it sets fd to -1; else the server closes it after the
	 * handler returns. */
	int fd;
};

/* A handler's "not yet" (see may_wait); never sent to a client. */
#define DMR_RC_AGAIN (-1)

typedef int (*dmr_method_fn)(struct dmr_call *call);

struct dmr_method {
	const char *name;
	bool mutating;
	dmr_method_fn fn;
	/* Reads the kernel or the disk (not only memory): answered from a
	 * reader thread, not on the event loop.  Mutating methods always
	 * run on the writer thread (agent/rpc/server.c). */
	bool slow;
	/* Takes a descriptor passed with the request (call->fd): refused
	 * with 32773 without one.  A descriptor sent to any other method is
	 * closed and the request refused with 32773. */
	bool takes_fd;
};

/* NULL-terminated table of every method (agent/rpc/methods.c). */
extern const struct dmr_method dmr_methods[];
const struct dmr_method *dmr_method_find(const char *name);

/* Set call->error (printf-style) and return rc: one line, control
 * characters and bytes that are not UTF-8 escaped (dmr_cescape), cut on a
 * character boundary. */
int dmr_call_fail(struct dmr_call *call, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Param accessors: 0 on success; -ENOENT if absent (and not required ->
 * *ret untouched); on a wrong JSON type they fail the call with 32776, on a
 * string holding a NUL or a number out of range with 32773.
 * They return the WMI code to return from the handler, or 0 to go on:
 *     if ((rc = dmr_param_string(call, "name", true, &name))) return rc;
 */
int dmr_param_string(struct dmr_call *call, const char *key, bool required,
		     const char **ret);
int dmr_param_u64(struct dmr_call *call, const char *key, bool required,
		  uint64_t *ret);
/* A number min..max: anything else (json-c's saturated INT64_MAX too)
 * fails the call with 32773 and the range. */
int dmr_param_u64_range(struct dmr_call *call, const char *key, bool required,
			uint64_t min, uint64_t max, uint64_t *ret);
int dmr_param_bool(struct dmr_call *call, const char *key, bool required,
		   bool *ret);
int dmr_param_array(struct dmr_call *call, const char *key, bool required,
		    struct json_object **ret);

#endif
