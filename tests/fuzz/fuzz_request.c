/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_request - what a client sends on the control socket, through the
 * server's own line splitting and request handling (agent/rpc/server.c's
 * client_process and handle_line: UTF-8 and JSON checks, method lookup,
 * the caller's rights, agent/core/authz.h's rules, descriptors, the reply)
 * and the param accessors (agent/rpc/method.h), with the method table
 * stubbed: every real method's name and flags, a handler that reads its
 * params with each accessor and answers (and, for a write method, checks
 * that the caller is privileged).  No socket, no thread: the input
 * is the client's input buffer, the replies its output buffer.
 *
 * server.c is included, not linked, to reach its static line handler
 * without adding a test-only entry point to the agent.  Byte 0 picks the
 * caller (root, a --group member, anyone else) and whether a descriptor
 * came with the first line.  Checked: every reply is one line holding one
 * JSON object with an integer "return", one per request line at most.
 */
#include "agent/rpc/server.c"

#include <fcntl.h>

#include "tests/fuzz/fuzz.h"

static struct dmr_method stub[64];

static int stub_handler(struct dmr_call *call)
{
	static const char *const strings[] = { "vm", "name", "disk", "label", "path", "to" };
	static const char *const numbers[] = { "id", "point", "size_bytes", "job" };
	const char *s = NULL;
	struct json_object *a = NULL;
	uint64_t u = 0;
	bool b = false;
	int rc;

	for (size_t i = 0; i < DMR_ARRAY_SIZE(strings); i++)
		if ((rc = dmr_param_string(call, strings[i], i == 0 && call->privileged, &s)))
			return rc;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(numbers); i++)
		if ((rc = dmr_param_u64(call, numbers[i], false, &u)))
			return rc;
	if ((rc = dmr_param_u64_range(call, "keep_last", false, 1, 1000, &u)) ||
	    (rc = dmr_param_bool(call, "force", false, &b)) ||
	    (rc = dmr_param_array(call, "disks", false, &a)))
		return rc;
	if (s)
		json_object_object_add(call->reply, "echo", json_object_new_string(s));
	json_object_object_add(call->reply, "n", json_object_new_int64((int64_t)u));
	if (a && json_object_array_length(a) > 3)
		return dmr_call_fail(call, DMR_RC_INVALID_PARAMETER, "too many disks: '%s'",
				     json_object_to_json_string(a));
	return DMR_RC_OK;
}

/* A write method's handler runs for root and --group members only. */
static int stub_mutating(struct dmr_call *call)
{
	FUZZ_CHECK(call->privileged);
	return stub_handler(call);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t n = 0;

	fuzz_quiet();
	for (const struct dmr_method *m = dmr_methods; m->name && n + 1 < DMR_ARRAY_SIZE(stub); m++) {
		stub[n] = *m;
		stub[n++].fn = m->mutating ? stub_mutating : stub_handler;
	}
	return 0;
}

/* The replies: lines of JSON objects, each with an integer "return". */
static size_t check_replies(const struct client *c)
{
	size_t lines = 0, start = 0;

	FUZZ_CHECK(c->out_len == 0 || c->out[c->out_len - 1] == '\n');
	while (start < c->out_len) {
		const char *nl = memchr(c->out + start, '\n', c->out_len - start);
		size_t len = (size_t)(nl - (c->out + start));
		struct json_tokener *tok = json_tokener_new();
		struct json_object *o, *v;

		FUZZ_CHECK(nl && tok);
		o = json_tokener_parse_ex(tok, c->out + start, (int)len);
		FUZZ_CHECK(o && json_object_is_type(o, json_type_object));
		FUZZ_CHECK((size_t)json_tokener_get_parse_end(tok) == len);
		FUZZ_CHECK(json_object_object_get_ex(o, "return", &v) &&
			   json_object_is_type(v, json_type_int));
		FUZZ_CHECK(json_object_object_get_ex(o, "id", NULL));
		FUZZ_CHECK(dmr_utf8_valid(c->out + start, len));
		json_object_put(o);
		json_tokener_free(tok);
		start += len + 1;
		lines++;
	}
	return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_server s = { .methods = stub, .lfd = -1, .epfd = -1, .done_fd = -1 };
	struct client c = { .fd = -1, .pend_fd = -1, .on_worker = true };
	size_t requests = 0;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		c.privileged = true;
		break;
	case 1:
		c.uid = 1000;
		c.privileged = true;
		break;
	default:
		c.uid = 1000;
		break;
	}
	if (data[0] & 4)
		c.pend_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	c.in = malloc(size);
	FUZZ_CHECK(c.in);
	memcpy(c.in, data + 1, size - 1);
	c.in_len = c.in_cap = size - 1;
	for (size_t i = 0, start = 0; i < c.in_len; i++)
		if (c.in[i] == '\n') {
			requests += i > start;
			start = i + 1;
		}
	(void)client_process(&s, &c);
	FUZZ_CHECK(check_replies(&c) <= requests + 1);
	FUZZ_CHECK(!c.park && !c.work);
	if (c.pend_fd >= 0)
		close(c.pend_fd);
	free(c.in);
	free(c.out);
	return 0;
}
