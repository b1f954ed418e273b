/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_swap - the suspend/resume window of a table swap on N dm devices,
 * three ways, for `make bench` (tools/bench/run, in the lab):
 *
 *   parallel the floor of a group swap: one thread per device (created
 *            before, released together by a barrier), each with its own
 *            /dev/mapper/control descriptor, raw DM ioctls; every device
 *            suspended (noflush, no lockfs) before any resumes, as a
 *            failover of all disks or none needs; nothing of the agent's;
 *   window   agent/engine/window.c as the failover engine runs it: the same
 *            shape through the agent's code;
 *   libdm    libdevmapper through dm/dm.c, one device after the other
 *            (suspend all, resume all; resume waits on udev), as a naive
 *            agent would.
 *
 *   bench_swap MODE REPS TABLEFILE
 *
 * TABLEFILE has one line per device: NAME<TAB>TABLE_A<TAB>TABLE_B (single-
 * target tables as `dmsetup table` prints them).  Every rep loads the other
 * table as the inactive one (untimed, like the agent's preload), times the
 * window, then waits for udev to settle (untimed).  Prints the median and
 * the minimum window in microseconds: `MODE N median_us min_us`.  Devices
 * end on the table they started with when REPS is even, or when TABLE_A and
 * TABLE_B are the same (the old table's targets are still suspended and
 * destroyed and the new ones resumed, as in a retarget).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engine/window.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/ioctl.h"
#include "dm/table.h"

#define MAX_DEVS 256

struct dev {
	char name[128];
	struct dmr_table *tab[2];
};

static int parse_table(const char *text, struct dmr_table **ret)
{
	unsigned long long start, len;
	char type[DMR_TARGET_TYPE_MAX];
	int n = 0;
	struct dmr_table *t;
	int r;

	if (sscanf(text, "%llu %llu %15s %n", &start, &len, type, &n) != 3 || n == 0)
		return -EINVAL;
	t = dmr_table_new();
	if (!t)
		return -ENOMEM;
	r = dmr_table_append_at(t, start, len, type, text + n);
	if (r < 0) {
		dmr_table_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

static int load_devs(const char *path, struct dev *devs, size_t *ret_n)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[4096];
	size_t n = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *a, *b;
		int r;

		line[strcspn(line, "\n")] = '\0';
		a = strchr(line, '\t');
		b = a ? strchr(a + 1, '\t') : NULL;
		if (!a || !b || n == MAX_DEVS)
			return -EINVAL;
		*a++ = '\0';
		*b++ = '\0';
		if (strlen(line) >= sizeof(devs[n].name))
			return -ENAMETOOLONG;
		memcpy(devs[n].name, line, strlen(line) + 1);
		if ((r = parse_table(a, &devs[n].tab[0])) < 0 || (r = parse_table(b, &devs[n].tab[1])) < 0)
			return r;
		n++;
	}
	*ret_n = n;
	return n ? 0 : -EINVAL;
}

/* The parallel floor: thread i (0 is the caller) suspends then resumes
 * device i; the caller's clock runs from before the start barrier (the
 * wake-ups count, as window.c's broadcast does) to after the end one. */
struct par {
	size_t n;
	struct dev *devs;
	struct dmr_dm_ctl *ctl[MAX_DEVS];
	int result[MAX_DEVS];
	size_t arg[MAX_DEVS];
	pthread_t thread[MAX_DEVS];
	size_t started; /* threads 1..started exist */
	pthread_barrier_t start, mid, end;
	bool quit;
};

static struct par par;

static void par_one(size_t i)
{
	int r = dmr_dm_ctl_suspend(par.ctl[i], par.devs[i].name, DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS);

	pthread_barrier_wait(&par.mid);
	/* Only what was suspended is resumed: a device whose suspend failed
	 * keeps its table, and the run ends with the error. */
	if (r == 0)
		r = dmr_dm_ctl_resume(par.ctl[i], par.devs[i].name);
	par.result[i] = r;
	pthread_barrier_wait(&par.end);
}

static void *par_main(void *arg)
{
	size_t i = *(size_t *)arg;

	for (;;) {
		pthread_barrier_wait(&par.start);
		if (par.quit)
			return NULL;
		par_one(i);
	}
}

static int par_run(void)
{
	pthread_barrier_wait(&par.start);
	par_one(0);
	for (size_t i = 0; i < par.n; i++)
		if (par.result[i] < 0)
			return par.result[i];
	return 0;
}

/* Every descriptor and thread first; a failure half-way is fatal (the
 * process exits), so the threads already waiting need no release. */
static int par_setup(struct dev *devs, size_t n)
{
	int r;

	par.n = n;
	par.devs = devs;
	if (pthread_barrier_init(&par.start, NULL, (unsigned)n) ||
	    pthread_barrier_init(&par.mid, NULL, (unsigned)n) ||
	    pthread_barrier_init(&par.end, NULL, (unsigned)n))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r = dmr_dm_ctl_open(&par.ctl[i]);
		if (r < 0)
			return r;
		par.arg[i] = i;
		if (i > 0) {
			r = -pthread_create(&par.thread[i], NULL, par_main, &par.arg[i]);
			if (r < 0)
				return r;
			par.started = i;
		}
	}
	return 0;
}

static void par_free(void)
{
	par.quit = true;
	pthread_barrier_wait(&par.start);
	for (size_t i = 1; i <= par.started; i++)
		pthread_join(par.thread[i], NULL);
	for (size_t i = 0; i < par.n; i++)
		dmr_dm_ctl_close(par.ctl[i]);
	pthread_barrier_destroy(&par.start);
	pthread_barrier_destroy(&par.mid);
	pthread_barrier_destroy(&par.end);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static struct dev devs[MAX_DEVS];
	const char *names[MAX_DEVS];
	struct dmr_window *w = NULL;
	bool parallel;
	uint64_t *times;
	size_t n = 0;
	int reps, r = 0;

	if (argc != 4 || (strcmp(argv[1], "parallel") && strcmp(argv[1], "window") &&
			  strcmp(argv[1], "libdm"))) {
		fprintf(stderr, "usage: bench_swap parallel|window|libdm REPS TABLEFILE\n");
		return 2;
	}
	parallel = !strcmp(argv[1], "parallel");
	reps = atoi(argv[2]);
	if (reps < 1 || reps > 10000) {
		fprintf(stderr, "bench_swap: bad REPS\n");
		return 2;
	}
	r = load_devs(argv[3], devs, &n);
	if (r < 0) {
		fprintf(stderr, "bench_swap: %s: %s\n", argv[3], strerror(-r));
		return 1;
	}
	times = calloc((size_t)reps, sizeof(*times));
	if (!times)
		return 1;
	for (size_t i = 0; i < n; i++)
		names[i] = devs[i].name;
	if (!strcmp(argv[1], "window"))
		r = dmr_window_new(n, names, &w);
	else if (parallel)
		r = par_setup(devs, n);
	if (r < 0) {
		fprintf(stderr, "bench_swap: setup: %s\n", strerror(-r));
		return 1;
	}

	for (int k = 0; k < reps; k++) {
		uint64_t t0;

		for (size_t i = 0; i < n; i++) {
			r = dmr_dm_load(devs[i].name, devs[i].tab[(k + 1) % 2], 0);
			if (r < 0) {
				fprintf(stderr, "bench_swap: load %s: %s\n", devs[i].name, strerror(-r));
				return 1;
			}
		}
		t0 = dmr_now_usec();
		if (parallel) {
			r = par_run();
		} else if (w) {
			r = dmr_window_run(w, DMR_WIN_SUSPEND, NULL);
			if (r == 0)
				r = dmr_window_run(w, DMR_WIN_RESUME, NULL);
		} else {
			for (size_t i = 0; r == 0 && i < n; i++)
				r = dmr_dm_suspend(devs[i].name, DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS);
			for (size_t i = 0; r == 0 && i < n; i++)
				r = dmr_dm_resume(devs[i].name);
		}
		times[k] = dmr_now_usec() - t0;
		if (r < 0) {
			fprintf(stderr, "bench_swap: swap: %s\n", strerror(-r));
			return 1;
		}
		/* Every resume queues a change uevent; let udev finish them
		 * (untimed) so that the next rep runs on a quiet system, as a
		 * failover does, not beside the rules of the last one. */
		if (system("udevadm settle --timeout=120") != 0)
			fprintf(stderr, "bench_swap: udevadm settle failed\n");
	}
	dmr_window_free(w);
	if (parallel)
		par_free();
	qsort(times, (size_t)reps, sizeof(*times), cmp_u64);
	printf("%s %zu %" PRIu64 " %" PRIu64 "\n", argv[1], n, times[reps / 2], times[0]);
	for (size_t i = 0; i < n; i++) {
		dmr_table_free(devs[i].tab[0]);
		dmr_table_free(devs[i].tab[1]);
	}
	free(times);
	return 0;
}
