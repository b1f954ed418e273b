/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench_create - where the time of activating N thin volumes goes, for
 * issue 13 (InitiateFailover's `volumes-up` step grows by about 100 ms a
 * device in the lab).  Runs in the lab on thin volumes that exist in a
 * pool (tools/bench/run makes them by hand with create_thin messages).
 *
 *   bench_create MODE POOLDEV N FIRST_ID SECTORS
 *
 * Activates thin volumes FIRST_ID .. FIRST_ID+N-1 of POOLDEV (major:minor)
 * as devices bc-I (uuid DMREP-bench-bc-I), times it, removes them again
 * (one cookie, waited, untimed) and prints one line of microseconds.
 *
 *   group  as dm/dm.c's dmr_dm_create_group does it: one DM_DEVICE_CREATE
 *          task with its table per device (libdevmapper: create, load,
 *          resume), all on one udev cookie, one dm_udev_wait at the end;
 *          prints `group N ioctls_us wait_us`;
 *   split  the same three ioctls as separate libdevmapper tasks (create
 *          with no table, reload, resume on the group's cookie), so that
 *          each is timed alone; prints
 *          `split N create_us load_us resume_us wait_us`;
 *   splitq split's three ioctls with no udev synchronisation, for a run
 *          with udev's exec queue stopped (`udevadm control
 *          --stop-exec-queue`): the kernel's cost alone, no rule running
 *          beside it; prints `splitq N create_us load_us resume_us
 *          first_create_us last_create_us` (the first and the last
 *          device's create: does a create cost more with more devices?);
 *   nosync no udev synchronisation at all (libdevmapper makes the nodes
 *          itself, as `dmsetup --noudevsync` does); prints
 *          `nosync N ioctls_us settle_us`, settle being `udevadm settle`
 *          afterwards: the udev work that still happens, just not waited on.
 *
 * With BENCH_CREATE_TARGET=linear, POOLDEV is any block device and device
 * I is `linear POOLDEV I*SECTORS` instead of `thin POOLDEV FIRST_ID+I`:
 * what a table load costs without the thin target's constructor.
 *
 * A benchmark tool, not a test; it exits non-zero only when a task fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libdevmapper.h>

#include "dm/name.h"

#define MAX_DEVS 256

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The target type of every table: "thin", or "linear" (BENCH_CREATE_TARGET). */
static const char *target = "thin";

/* One task; table NULL for none; cookie NULL for none.  The time spent in
 * dm_task_run is added to *acc. */
static int run(int type, const char *name, const char *uuid, const char *table,
	       uint64_t sectors, uint32_t *cookie, uint64_t *acc)
{
	struct dm_task *dmt = dm_task_create(type);
	uint64_t t0;
	int ok = 0;

	if (!dmt)
		return -ENOMEM;
	if (!dm_task_set_name(dmt, name) || (uuid && !dm_task_set_uuid(dmt, uuid)) ||
	    (table && !dm_task_add_target(dmt, 0, sectors, target, table)) ||
	    (cookie && !dm_task_set_cookie(dmt, cookie, 0)))
		goto out;
	t0 = now_us();
	ok = dm_task_run(dmt);
	*acc += now_us() - t0;
out:
	dm_task_destroy(dmt);
	if (!ok)
		fprintf(stderr, "bench_create: task %d on %s failed\n", type, name);
	return ok ? 0 : -EIO;
}

static int remove_all(unsigned n)
{
	uint32_t cookie = 0;
	uint64_t ignored = 0;
	char name[DMR_DM_NAME_SIZE];
	int r = 0;

	for (unsigned i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "bc-%u", i);
		if (run(DM_DEVICE_REMOVE, name, NULL, NULL, 0, &cookie, &ignored) < 0)
			r = -EIO;
	}
	(void)dm_udev_wait(cookie);
	return r;
}

int main(int argc, char **argv)
{
	const char *mode, *pool;
	unsigned n, first;
	uint64_t sectors, t_create = 0, t_load = 0, t_resume = 0, t_wait = 0;
	uint32_t cookie = 0;
	char name[DMR_DM_NAME_SIZE], uuid[DMR_DM_UUID_SIZE], table[128];
	int r = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: bench_create group|split|splitq|nosync POOLDEV N FIRST_ID SECTORS\n");
		return 2;
	}
	mode = argv[1];
	pool = argv[2];
	n = (unsigned)strtoul(argv[3], NULL, 10);
	first = (unsigned)strtoul(argv[4], NULL, 10);
	sectors = strtoull(argv[5], NULL, 10);
	if (n == 0 || n > MAX_DEVS || sectors == 0)
		return 2;
	if (getenv("BENCH_CREATE_TARGET") && !strcmp(getenv("BENCH_CREATE_TARGET"), "linear"))
		target = "linear";
	bool split = !strcmp(mode, "split") || !strcmp(mode, "splitq");
	bool nosync = !strcmp(mode, "nosync") || !strcmp(mode, "splitq");
	uint64_t first_create = 0, last_create = 0;

	if (nosync)
		dm_udev_set_sync_support(0);

	for (unsigned i = 0; i < n && r == 0; i++) {
		snprintf(name, sizeof(name), "bc-%u", i);
		snprintf(uuid, sizeof(uuid), "DMREP-bench-bc-%u", i);
		if (!strcmp(target, "linear"))
			snprintf(table, sizeof(table), "%s %" PRIu64, pool, i * sectors);
		else
			snprintf(table, sizeof(table), "%s %u", pool, first + i);
		if (split) {
			uint64_t before = t_create;

			r = run(DM_DEVICE_CREATE, name, uuid, NULL, 0, NULL, &t_create);
			if (i == 0)
				first_create = t_create - before;
			last_create = t_create - before;
			if (r == 0)
				r = run(DM_DEVICE_RELOAD, name, NULL, table, sectors, NULL, &t_load);
			if (r == 0)
				r = run(DM_DEVICE_RESUME, name, NULL, NULL, 0, nosync ? NULL : &cookie,
					&t_resume);
		} else {
			r = run(DM_DEVICE_CREATE, name, uuid, table, sectors, nosync ? NULL : &cookie,
				&t_create);
		}
	}
	if (!strcmp(mode, "splitq")) {
		printf("splitq %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", n,
		       t_create, t_load, t_resume, first_create, last_create);
		fflush(stdout);
		/* The caller starts udev's queue again and removes the devices. */
		return r < 0 ? 1 : 0;
	}
	if (!nosync) {
		uint64_t t0 = now_us();

		(void)dm_udev_wait(cookie);
		t_wait = now_us() - t0;
	} else {
		uint64_t t0 = now_us();

		if (system("udevadm settle") != 0)
			r = -EIO;
		t_wait = now_us() - t0;
	}
	if (split)
		printf("split %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", n, t_create,
		       t_load, t_resume, t_wait);
	else
		printf("%s %u %" PRIu64 " %" PRIu64 "\n", mode, n, t_create, t_wait);
	if (nosync)
		dm_udev_set_sync_support(1);
	if (remove_all(n) < 0)
		r = -EIO;
	return r < 0 ? 1 : 0;
}
