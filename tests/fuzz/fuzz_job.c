/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_job - the job records the agent reads back at start
 * (STATE/jobs/ID.json, agent/engine/job.c), as a round trip with their
 * writer: what the loader takes, written and loaded again, is written the
 * same (dmr_job_record_load: load -> write -> load -> write).
 */
#include "agent/engine/job.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a = NULL, *b = NULL;

	if (dmr_job_record_load((const char *)data, size, &a) < 0)
		return 0;
	FUZZ_CHECK(dmr_job_record_load(a, strlen(a), &b) == 0);
	fuzz_same_text(a, b);
	return 0;
}
