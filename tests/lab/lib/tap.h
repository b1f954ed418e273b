/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tap.h - TAP output for the C lab tests (lab_dm, lab_snap), the C side of
 * tests/lab/lib/tap.sh: check() prints `ok - DESC` or `not ok - DESC` and
 * counts it in n_pass / n_fail, diag() a `# ...` comment.  Included by one
 * .c file each (the counters are that program's); the shell test that runs
 * the program (lab_run_c in tests/lab/lib/inittest.sh) counts its lines.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static unsigned n_pass, n_fail;

__attribute__((format(printf, 2, 3))) static inline void check(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf(cond ? "ok - " : "not ok - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (cond)
		n_pass++;
	else
		n_fail++;
}

__attribute__((format(printf, 1, 2))) static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}
