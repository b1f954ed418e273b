/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/testhook.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

void dmr_test_hook(const char *step)
{
#if DMR_TEST_HOOKS
	const char *at = getenv("DMREP_TEST_CRASH_AT");
	const char *hold = getenv("DMREP_TEST_HOLD_AT");
	const char *hold_file = getenv("DMREP_TEST_HOLD_FILE");

	if (at && strcmp(at, step) == 0) {
		log_notice("test hook: killing the agent at %s", step);
		raise(SIGKILL);
	}
	/* Hold the operation here until the test removes the file: the lab
	 * checks what callers see while an operation is under way (32774,
	 * failover-in-progress, a writer blocked on a frozen filesystem).
	 * The cap keeps a test that dies before releasing it from wedging
	 * the agent. */
	if (hold && hold_file && strcmp(hold, step) == 0) {
		log_notice("test hook: holding %s while %s exists", step, hold_file);
		for (int i = 0; i < 300 * 20 && access(hold_file, F_OK) == 0; i++)
			usleep(50000);
		log_notice("test hook: %s goes on", step);
	}
#else
	(void)step;
#endif
}

/* The lab drives every rollback path on a real kernel with this: a
 * preload that fails on the second disk, a suspend phase that fails with
 * every device suspended and its new table loaded, a point that fails
 * while the guest is frozen. */
int dmr_test_fail(const char *step)
{
#if DMR_TEST_HOOKS
	const char *at = getenv("DMREP_TEST_FAIL_AT");

	if (at && strcmp(at, step) == 0) {
		log_notice("test hook: failing %s", step);
		return -EIO;
	}
#else
	(void)step;
#endif
	return 0;
}


unsigned dmr_test_limit(const char *name, unsigned dflt)
{
#if DMR_TEST_HOOKS
	const char *v = getenv(name);
	char *end;
	unsigned long n;

	if (!v || !*v)
		return dflt;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n == 0 || n > dflt || v[0] == '-')
		return dflt;
	log_notice("test hook: %s=%lu", name, n);
	return (unsigned)n;
#else
	(void)name;
	return dflt;
#endif
}
