/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_repl - a VM state file's "replication" object
 * (agent/store/repl.c): parsed, written and parsed again to the same text
 * (dmr_repl_state_parse, dmr_repl_state_json), and the health and lag
 * arithmetic on what was taken at a few instants (before the lag's start,
 * at it, far after it).  Input: the object as JSON.
 */
#include "agent/store/repl.h"
#include "common/json.h"
#include "tests/fuzz/fuzz.h"

static char *save(const struct dmr_repl *r)
{
	return fuzz_json_text(dmr_repl_state_json(r), JSON_C_TO_STRING_PLAIN);
}

static int load(const char *text, size_t len, struct dmr_repl *r)
{
	struct json_object *o = NULL;
	const char *field = NULL;
	int e;

	if (dmr_json_parse_object(text, len, &o) < 0)
		return -EBADMSG;
	e = dmr_repl_state_parse(o, r, &field);
	json_object_put(o);
	FUZZ_CHECK(e == 0 || field);
	return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_repl r = { 0 }, again = { 0 };
	uint64_t now[] = { 0, 1, 0, 0, UINT64_MAX / 2, UINT64_MAX };
	char *a, *b;

	if (load((const char *)data, size, &r) < 0)
		return 0;
	now[2] = r.acked_usec;
	now[3] = r.last_success_usec + (uint64_t)r.interval_sec * 3000000u;
	for (size_t i = 0; i < sizeof(now) / sizeof(now[0]); i++) {
		enum dmr_repl_health h = dmr_repl_health(&r, now[i]);
		int64_t lag = dmr_repl_lag_sec(&r, now[i]);

		FUZZ_CHECK(dmr_repl_health_name(h));
		FUZZ_CHECK(lag >= -1);
		FUZZ_CHECK(!r.to || h != DMR_REPL_OFF);
	}
	a = save(&r);
	FUZZ_CHECK(load(a, strlen(a), &again) == 0);
	b = save(&again);
	FUZZ_CHECK(strcmp(a, b) == 0);
	if (dmr_repl_interrupted(&again)) {
		free(b);
		b = save(&again);
		dmr_repl_clear(&r);
		FUZZ_CHECK(load(b, strlen(b), &r) == 0);
	}
	free(a);
	free(b);
	dmr_repl_clear(&r);
	dmr_repl_clear(&again);
	return 0;
}
