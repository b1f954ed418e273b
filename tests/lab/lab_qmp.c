/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_qmp - drive a real QEMU or qemu-ga through dmrep's own clients, for
 * tests/lab/t-40-qmp.sh.
 *
 *   lab_qmp SOCKET status           print "GUEST QMP-RUNSTATE" (guest status
 *                                   as the shim maps it, QEMU's run state)
 *   lab_qmp SOCKET pause|resume|reset   through the qmp shim
 *   lab_qmp SOCKET hmp 'CMDLINE'    print human-monitor-command's output
 *   lab_qmp SOCKET bench N          N shim pause+resume rounds on one
 *                                   connection; print the round trips
 *   lab_qmp SOCKET hold MS          connect, print "connected", keep the
 *                                   connection MS ms
 *   lab_qmp --qga SOCKET sync|ping|fsfreeze-status|freeze|thaw|hold MS
 *
 * Every call waits at most LAB_QMP_TIMEOUT_MS (default 10000) ms.
 * Exit status 0 on success; otherwise 1 and one line on stderr.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/guest/qga.h"
#include "agent/guest/qmp.h"
#include "agent/guest/shim.h"
#include "common/util.h"

static int timeout_ms = 10000;

static int fail(const char *what, int r, const char *detail)
{
	fprintf(stderr, "lab_qmp: %s: %s%s%s\n", what, strerror(-r), detail && detail[0] ? ": " : "",
		detail ? detail : "");
	return 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void print_stats(const char *name, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("%-8s n=%zu min=%" PRIu64 "us median=%" PRIu64 "us p90=%" PRIu64 "us max=%" PRIu64 "us\n",
	       name, n, v[0], v[n / 2], v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1], v[n - 1]);
}

static int bench(const char *sock, long rounds)
{
	_cleanup_free_ uint64_t *stop = NULL, *cont = NULL, *window = NULL;
	struct dmr_shim *s = NULL;
	enum dmr_guest_status st;
	uint64_t t0, t1, t2;
	int r;

	if (rounds < 1 || rounds > 100000)
		return fail("bench", -EINVAL, "rounds");
	stop = calloc((size_t)rounds, sizeof(*stop));
	cont = calloc((size_t)rounds, sizeof(*cont));
	window = calloc((size_t)rounds, sizeof(*window));
	if (!stop || !cont || !window)
		return fail("bench", -ENOMEM, NULL);
	r = dmr_shim_new("qmp", sock, "lab", &s);
	if (r < 0)
		return fail("shim", r, NULL);
	dmr_shim_set_timeout(s, timeout_ms);
	/* The failover engine's order: status (which connects), then the
	 * window: pause, nothing, resume. */
	t0 = dmr_now_usec();
	r = dmr_shim_status(s, &st);
	if (r < 0 || st != DMR_GUEST_RUNNING) {
		dmr_shim_free(s);
		return fail("status", r < 0 ? r : -EBADFD, r < 0 ? NULL : "the guest is not running");
	}
	printf("connect+status %" PRIu64 "us\n", dmr_now_usec() - t0);
	for (long i = 0; i < rounds; i++) {
		t0 = dmr_now_usec();
		r = dmr_shim_pause(s);
		t1 = dmr_now_usec();
		if (r >= 0)
			r = dmr_shim_resume(s);
		t2 = dmr_now_usec();
		if (r < 0) {
			fail("pause/resume", r, dmr_shim_last_error(s));
			dmr_shim_free(s);
			return 1;
		}
		stop[i] = t1 - t0;
		cont[i] = t2 - t1;
		window[i] = t2 - t0;
	}
	dmr_shim_free(s);
	print_stats("stop", stop, (size_t)rounds);
	print_stats("cont", cont, (size_t)rounds);
	print_stats("window", window, (size_t)rounds);
	return 0;
}

static void hold(const char *ms)
{
	long v = ms ? strtol(ms, NULL, 10) : 1000;
	struct timespec ts = { v / 1000, (v % 1000) * 1000000L };

	printf("connected\n");
	fflush(stdout);
	while (nanosleep(&ts, &ts) < 0)
		;
}

static int qmp_main(const char *sock, const char *verb, const char *arg)
{
	struct dmr_shim *s = NULL;
	int r;

	if (dmr_streq(verb, "hmp")) {
		struct dmr_qmp *q = NULL;
		char *out = NULL;

		if (!arg)
			return fail("hmp", -EINVAL, "no command line");
		r = dmr_qmp_connect(sock, timeout_ms, &q);
		if (r < 0)
			return fail("connect", r, NULL);
		r = dmr_qmp_hmp(q, arg, &out);
		if (r < 0) {
			fail("hmp", r, dmr_qmp_last_error(q));
			dmr_qmp_free(q);
			return 1;
		}
		fputs(out, stdout);
		free(out);
		dmr_qmp_free(q);
		return 0;
	}
	if (dmr_streq(verb, "bench"))
		return bench(sock, arg ? strtol(arg, NULL, 10) : 100);
	if (dmr_streq(verb, "hold")) {
		struct dmr_qmp *q = NULL;

		r = dmr_qmp_connect(sock, timeout_ms, &q);
		if (r < 0)
			return fail("connect", r, NULL);
		hold(arg);
		dmr_qmp_free(q);
		return 0;
	}

	r = dmr_shim_new("qmp", sock, "lab", &s);
	if (r < 0)
		return fail("shim", r, NULL);
	dmr_shim_set_timeout(s, timeout_ms);
	if (dmr_streq(verb, "status")) {
		struct dmr_qmp *q = NULL;
		enum dmr_guest_status st;
		char *runstate = NULL;
		bool running;

		r = dmr_shim_status(s, &st);
		/* Free the shim first: QEMU serves one QMP client at a time. */
		dmr_shim_free(s);
		if (r < 0)
			return fail("status", r, NULL);
		r = dmr_qmp_connect(sock, timeout_ms, &q);
		if (r >= 0)
			r = dmr_qmp_query_status(q, &running, &runstate);
		dmr_qmp_free(q);
		if (r < 0)
			return fail("query-status", r, NULL);
		printf("%s %s\n", dmr_guest_status_to_string(st), runstate);
		free(runstate);
		return 0;
	}
	if (dmr_streq(verb, "pause"))
		r = dmr_shim_pause(s);
	else if (dmr_streq(verb, "resume"))
		r = dmr_shim_resume(s);
	else if (dmr_streq(verb, "reset"))
		r = dmr_shim_reset(s);
	else
		r = -EINVAL;
	if (r < 0)
		fail(verb, r, dmr_shim_last_error(s));
	dmr_shim_free(s);
	return r < 0;
}

static int qga_main(const char *sock, const char *verb, const char *arg)
{
	struct dmr_qga *g = NULL;
	bool frozen;
	int r, n = 0;

	r = dmr_qga_connect(sock, timeout_ms, &g);
	if (r < 0)
		return fail("qga connect", r, NULL);
	if (dmr_streq(verb, "hold")) {
		hold(arg);
		r = 0;
	} else if (dmr_streq(verb, "sync"))
		r = dmr_qga_sync(g, timeout_ms);
	else if (dmr_streq(verb, "ping"))
		r = dmr_qga_ping(g, timeout_ms);
	else if (dmr_streq(verb, "fsfreeze-status")) {
		r = dmr_qga_fsfreeze_status(g, timeout_ms, &frozen);
		if (r >= 0)
			printf("%s\n", frozen ? "frozen" : "thawed");
	} else if (dmr_streq(verb, "freeze") || dmr_streq(verb, "thaw")) {
		r = verb[0] == 'f' ? dmr_qga_fsfreeze_freeze(g, timeout_ms, &n)
				   : dmr_qga_fsfreeze_thaw(g, timeout_ms, &n);
		if (r >= 0)
			printf("%d\n", n);
	} else
		r = -EINVAL;
	if (r < 0)
		fail(verb, r, dmr_qga_last_error(g));
	dmr_qga_free(g);
	return r < 0;
}

int main(int argc, char **argv)
{
	const char *t = getenv("LAB_QMP_TIMEOUT_MS");

	if (t && atoi(t) > 0)
		timeout_ms = atoi(t);
	if (argc >= 4 && dmr_streq(argv[1], "--qga"))
		return qga_main(argv[2], argv[3], argc >= 5 ? argv[4] : NULL);
	if (argc >= 3 && argv[1][0] != '-')
		return qmp_main(argv[1], argv[2], argc >= 4 ? argv[3] : NULL);
	fprintf(stderr, "usage: lab_qmp SOCKET status|pause|resume|reset|hmp CMDLINE|bench N|hold MS\n"
			"       lab_qmp --qga SOCKET sync|ping|fsfreeze-status|freeze|thaw|hold MS\n");
	return 2;
}
