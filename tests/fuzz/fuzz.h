/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/fuzz/fuzz.h - helpers shared by the libFuzzer targets (included by
 * them; not a library).  A target checks the contract of the parser it
 * drives with FUZZ_CHECK: a broken promise aborts, and libFuzzer keeps the
 * input as a crash, as it does a sanitizer's report.
 */
#ifndef DMR_TESTS_FUZZ_H
#define DMR_TESTS_FUZZ_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define FUZZ_CHECK(x)                                                                  \
	do {                                                                           \
		if (!(x)) {                                                            \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                       \
		}                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* data[0..size) as a NUL-terminated string (a NUL inside ends it early, as
 * it would for a C caller). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* The text of o (a writer's object, which must not be NULL), malloc()ed;
 * o is put. */
static inline char *fuzz_json_text(struct json_object *o, int flags)
{
	char *s;

	FUZZ_CHECK(o);
	s = strdup(json_object_to_json_string_ext(o, flags));
	FUZZ_CHECK(s);
	json_object_put(o);
	return s;
}

/* A round trip's two writes: the same text (both shown when not); both
 * freed. */
static inline void fuzz_same_text(char *first, char *second)
{
	if (strcmp(first, second))
		fprintf(stderr, "first:\n%s\nsecond:\n%s\n", first, second);
	FUZZ_CHECK(strcmp(first, second) == 0);
	free(first);
	free(second);
}

/* Quiet: the parsers log every refusal at debug, the agent a bad state
 * file as an error, and a fuzzer makes millions of them. */
static inline void fuzz_quiet(void)
{
	dmr_log_set_level((enum dmr_log_level)(DMR_LOG_ERR - 1));
}

#endif
