/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lab_dm - dm/ on the lab's real kernel (run by tests/lab/t-01-dm.sh).
 *
 * Device operations through dm/dm.c (create, load, clear, suspend, resume,
 * info, owned, table, status, message, rename, list, remove with retries),
 * the refusals (foreign UUIDs, names), a table swap seen through the data,
 * a thin pool and a classic snapshot with their status lines parsed by
 * dm/status.c, a fault injected with an error table, and the failover's
 * window (agent/engine/window.c over dm/ioctl.c): 16 devices suspended and resumed
 * from 16 threads at once, many times, while a writer thread does O_DIRECT
 * writes to every device, each swap checked through the data.
 *
 * Per-run name prefix, refuses to start on leftovers, tears down at exit.
 * TAP lines on stdout; exit status 0 iff every check passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/engine/window.h"
#include "common/util.h"
#include "dm/dm.h"
#include "dm/ioctl.h"
#include "dm/name.h"
#include "dm/status.h"
#include "snapshots/loop.h"
#include "lib/tap.h"

#define NDEV 16
#define DEV_SECTORS 2048 /* 1 MiB per device */

static char prefix[32];
static char work[512];
static char *loops[8];
static size_t n_loops;

static void name_of(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "%s%s", prefix, what);
}

static void uuid_of(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, DMR_UUID_PREFIX "labdm-%s%s", prefix, what);
}

/* A sparse file of mib MiB on a loop device, filled with byte b. */
static char *make_loop(const char *file, unsigned mib, int b)
{
	char path[600], *dev = NULL;
	_cleanup_close_ int fd = -1;
	static char buf[1 << 20];

	snprintf(path, sizeof(path), "%s/%s", work, file);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	memset(buf, b, sizeof(buf));
	for (unsigned i = 0; i < mib; i++)
		if (dmr_write_all(fd, buf, sizeof(buf)) < 0)
			return NULL;
	if (fsync(fd) < 0 || dmr_loop_attach(path, false, &dev) < 0)
		return NULL;
	loops[n_loops++] = dev;
	return dev;
}

/* First byte of sector s of a dm device, read with O_DIRECT. */
static int read_byte(const char *name, uint64_t sector)
{
	char path[256];
	void *buf;
	int fd, v = -1;

	if (dmr_dm_path(name, path, sizeof(path)) < 0 || posix_memalign(&buf, 4096, 4096))
		return -1;
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd >= 0 && pread(fd, buf, 4096, (off_t)(sector * 512)) == 4096)
		v = ((unsigned char *)buf)[0];
	if (fd >= 0)
		close(fd);
	free(buf);
	return v;
}

static int linear(const char *name, const char *dev, bool create, bool ours)
{
	_cleanup_table_ struct dmr_table *t = dmr_table_new();
	char uuid[129];

	if (!t || dmr_table_add_linear(t, DEV_SECTORS, dev, 0) < 0)
		return -ENOMEM;
	if (!create)
		return dmr_dm_load(name, t, 0);
	uuid_of(uuid, sizeof(uuid), name + strlen(prefix));
	return dmr_dm_create(name, ours ? uuid : "LVM-labdm-foreign", t, 0);
}

static void teardown(void)
{
	struct dmr_dm_entry *e = NULL;
	size_t n = 0;

	/* Everything with the prefix, top-down: thin and snapshot users before
	 * the pool and origins (two passes suffice for our stacks). */
	for (int pass = 0; pass < 3; pass++) {
		if (dmr_dm_list(NULL, &e, &n) < 0)
			break;
		for (size_t i = 0; i < n; i++) {
			struct dmr_dm_info info;

			if (strncmp(e[i].name, prefix, strlen(prefix)))
				continue;
			if (dmr_dm_info(e[i].name, &info) == 0 && info.suspended)
				(void)dmr_dm_resume(e[i].name);
			(void)dmr_dm_remove(e[i].name, 5);
		}
		free(e);
		e = NULL;
	}
	for (size_t i = 0; i < n_loops; i++) {
		(void)dmr_loop_detach(loops[i]);
		free(loops[i]);
	}
	if (work[0]) {
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
		if (system(cmd) != 0)
			fprintf(stderr, "lab_dm: cannot remove %s\n", work);
	}
}

/* ---- the window under load -------------------------------------------- */

struct load {
	char names[NDEV][64];
	volatile bool stop;
	unsigned long writes, errors;
};

static void *writer(void *p)
{
	struct load *l = p;
	int fds[NDEV];
	void *buf;

	if (posix_memalign(&buf, 4096, 4096))
		return NULL;
	memset(buf, 0x5a, 4096);
	for (int i = 0; i < NDEV; i++) {
		char path[256];

		(void)dmr_dm_path(l->names[i], path, sizeof(path));
		fds[i] = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	}
	while (!l->stop) {
		for (int i = 0; i < NDEV; i++) {
			/* Sector 8 onward: sector 0 carries each table's mark. */
			if (fds[i] < 0 || pwrite(fds[i], buf, 4096, 8 * 512 + (off_t)(l->writes % 64) * 4096) != 4096)
				l->errors++;
			l->writes++;
		}
	}
	for (int i = 0; i < NDEV; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(buf);
	return NULL;
}

static void test_window(const char *dev_a, const char *dev_b)
{
	struct load l = { 0 };
	const char *names[NDEV];
	struct dmr_window *w = NULL;
	pthread_t th;
	int res[NDEV];
	bool all_created = true, swaps_ok = true, none_left = true;
	uint64_t worst = 0;
	const int rounds = 20;

	for (int i = 0; i < NDEV; i++) {
		char what[16];

		snprintf(what, sizeof(what), "w%02d", i);
		name_of(l.names[i], sizeof(l.names[i]), what);
		names[i] = l.names[i];
		all_created = all_created && linear(l.names[i], dev_a, true, true) == 0;
	}
	check(all_created, "window: %d devices created on table A", NDEV);
	check(dmr_window_new(NDEV, names, &w) == 0, "window: prepared (one thread and fd per device)");
	if (!w || !all_created)
		return;
	check(pthread_create(&th, NULL, writer, &l) == 0, "window: O_DIRECT writer runs on every device");
	for (int r = 0; r < rounds; r++) {
		const char *to = r % 2 ? dev_a : dev_b;
		int want = r % 2 ? 0xa1 : 0xb2;
		uint64_t t0;

		for (int i = 0; i < NDEV; i++)
			swaps_ok = swaps_ok && linear(l.names[i], to, false, true) == 0;
		t0 = dmr_now_usec();
		swaps_ok = swaps_ok && dmr_window_run(w, DMR_WIN_SYNC, res) == 0 &&
			   dmr_window_run(w, DMR_WIN_SUSPEND, res) == 0 &&
			   dmr_window_run(w, DMR_WIN_RESUME, res) == 0 &&
			   dmr_window_run(w, DMR_WIN_FLUSHBUF, res) == 0;
		if (dmr_now_usec() - t0 > worst)
			worst = dmr_now_usec() - t0;
		for (int i = 0; i < NDEV; i++) {
			struct dmr_dm_info info;

			swaps_ok = swaps_ok && read_byte(l.names[i], 0) == want;
			none_left = none_left && dmr_dm_info(l.names[i], &info) == 0 && !info.suspended &&
				    !info.inactive_table;
		}
	}
	l.stop = true;
	pthread_join(th, NULL);
	check(swaps_ok, "window: %d parallel swaps of %d devices, every device on the new table each time",
	      rounds, NDEV);
	check(none_left, "window: no device left suspended or with an inactive table");
	check(l.writes > 0 && l.errors == 0, "window: %lu O_DIRECT writes during the swaps, %lu errors",
	      l.writes, l.errors);
	printf("# window: worst sync+suspend+resume+flushbuf of %d devices under load: %" PRIu64 " us\n",
	       NDEV, worst);
	dmr_window_free(w);
	for (int i = 0; i < NDEV; i++)
		(void)dmr_dm_remove(l.names[i], 10);
}

int main(void)
{
	char a[64], f[64], pool[64], thin[64], snap[64], ren[64], ver[64];
	const char *scratch = getenv("LAB_SCRATCH");
	struct dmr_dm_entry *e = NULL;
	struct dmr_dm_info info;
	char *dev_a, *dev_b, *dev_meta, *dev_data, *dev_cow, *resp = NULL;
	size_t n = 0;
	int r;

	snprintf(prefix, sizeof(prefix), "dmrt%d-", (int)getpid());
	/* Leftovers of an earlier run make every count below a lie. */
	if (dmr_dm_list(NULL, &e, &n) == 0) {
		bool left = false;

		for (size_t i = 0; i < n; i++)
			left = left || strncmp(e[i].name, "dmrt", 4) == 0;
		free(e);
		if (left) {
			check(false, "no leftover dmrt* devices before the test");
			return 1;
		}
	}
	snprintf(work, sizeof(work), "%s/labdm.%d", scratch && *scratch ? scratch : "/tmp", (int)getpid());
	if (mkdir(work, 0700) < 0) {
		work[0] = '\0';
		check(false, "scratch directory");
		return 1;
	}
	atexit(teardown);

	check(dmr_dm_driver_version(ver, sizeof(ver)) == 0, "driver version %s", ver);
	check(dmr_dm_has_target("thin-pool") == 0, "the kernel has thin-pool");
	check(dmr_dm_has_target("snapshot") == 0, "the kernel has snapshot");
	check(dmr_dm_has_target("nosuchtarget") == -ENOENT, "no 'nosuchtarget' target");

	dev_a = make_loop("a.img", 1, 0xa1);
	dev_b = make_loop("b.img", 1, 0xb2);
	check(dev_a && dev_b, "two loop devices with distinct bytes");
	if (!dev_a || !dev_b)
		return 1;

	/* ---- create, info, owned, refusals ---- */
	name_of(a, sizeof(a), "lin");
	check(linear(a, dev_a, true, true) == 0, "create a linear device with a DMREP- UUID");
	{
		char path[256];
		struct stat st;

		(void)dmr_dm_path(a, path, sizeof(path));
		check(stat(path, &st) == 0 && S_ISBLK(st.st_mode), "%s is a block device (udev made it)", path);
	}
	check(dmr_dm_info(a, &info) == 0 && info.exists && info.live_table && !info.suspended &&
		      !info.inactive_table && info.major > 0,
	      "info: exists, live table, not suspended, major %u", info.major);
	check(dmr_name_uuid_is_ours(info.uuid), "info reports its UUID %s", info.uuid);
	check(dmr_dm_owned(a) == 0, "dmrep owns it");
	check(read_byte(a, 0) == 0xa1, "it reads the first loop's bytes");
	name_of(f, sizeof(f), "foreign");
	check(linear(f, dev_a, true, false) == -EPERM, "create with a foreign UUID is refused");
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "dmsetup create %s --uuid LVM-labdm-%s --table '0 8 zero'", f, prefix);
		check(system(cmd) == 0, "a foreign device made with dmsetup");
		check(dmr_dm_owned(f) == -EPERM, "dmr_dm_owned says it is not ours");
		snprintf(cmd, sizeof(cmd), "dmsetup remove %s", f);
		check(system(cmd) == 0, "the foreign device removed with dmsetup");
	}
	check(dmr_dm_owned("dmrt-no-such-device") == -ENOENT, "owned on a missing device: -ENOENT");
	check(dmr_dm_info("dmrt-no-such-device", &info) == 0 && !info.exists, "info on a missing device: exists false");
	check(dmr_dm_suspend("dmrt-no-such-device", 0) == -ENOENT, "suspend of a missing device: -ENOENT");
	check(dmr_dm_create("bad/name", "DMREP-x", NULL, 0) == -EINVAL, "a name with '/' is refused");

	/* ---- load + clear, load + suspend + resume ---- */
	check(linear(a, dev_b, false, true) == 0, "load table B as the inactive table");
	check(dmr_dm_info(a, &info) == 0 && info.inactive_table, "info shows the inactive table");
	{
		struct dmr_table *t = NULL;
		struct stat st;
		char want[64] = "?";

		/* The kernel names devices by number in tables it returns. */
		if (stat(dev_b, &st) == 0)
			snprintf(want, sizeof(want), "%u:%u ", major(st.st_rdev), minor(st.st_rdev));
		check(dmr_dm_table(a, true, &t) == 0 && t && t->count == 1 &&
			      strncmp(t->targets[0].params, want, strlen(want)) == 0,
		      "the inactive table reads back with B (%s)", want);
		dmr_table_free(t);
	}
	check(read_byte(a, 0) == 0xa1, "the live table still reads A");
	check(dmr_dm_clear(a) == 0, "clear the inactive table");
	check(dmr_dm_info(a, &info) == 0 && !info.inactive_table, "no inactive table after clear");
	check(dmr_dm_resume(a) == 0 && read_byte(a, 0) == 0xa1, "a resume after clear keeps A live");
	check(linear(a, dev_b, false, true) == 0 && dmr_dm_suspend(a, DMR_DM_NOFLUSH | DMR_DM_SKIP_LOCKFS) == 0,
	      "load B and suspend (noflush, no lockfs)");
	check(dmr_dm_info(a, &info) == 0 && info.suspended, "info shows it suspended");
	check(dmr_dm_resume(a) == 0 && read_byte(a, 0) == 0xb2, "resume: table B is live");
	{
		struct dmr_table *t = NULL;

		check(dmr_dm_table(a, false, &t) == 0 && t && t->count == 1 &&
			      !strcmp(t->targets[0].type, "linear") && t->targets[0].length == DEV_SECTORS,
		      "the live table reads back: one linear target of %d sectors", DEV_SECTORS);
		dmr_table_free(t);
	}

	/* ---- a fault: an error table, then back ---- */
	{
		_cleanup_table_ struct dmr_table *t = dmr_table_new();

		check(dmr_table_add_error(t, DEV_SECTORS) == 0 && dmr_dm_load(a, t, 0) == 0 &&
			      dmr_dm_suspend(a, 0) == 0 && dmr_dm_resume(a) == 0,
		      "swap to an error table");
		check(read_byte(a, 0) == -1, "reads fail on the error table");
		check(linear(a, dev_a, false, true) == 0 && dmr_dm_suspend(a, 0) == 0 && dmr_dm_resume(a) == 0 &&
			      read_byte(a, 0) == 0xa1,
		      "swap back: A reads again");
	}

	/* ---- rename, list, busy remove ---- */
	name_of(ren, sizeof(ren), "renamed");
	check(dmr_dm_rename(a, ren) == 0, "rename");
	check(dmr_dm_info(a, &info) == 0 && !info.exists, "the old name is gone");
	check(dmr_dm_info(ren, &info) == 0 && info.exists, "the new name exists");
	r = dmr_dm_list(DMR_UUID_PREFIX "labdm-", &e, &n);
	{
		bool found = false;

		for (size_t i = 0; r == 0 && i < n; i++)
			found = found || !strcmp(e[i].name, ren);
		check(r == 0 && found, "list by UUID prefix finds it (%zu devices)", n);
		free(e);
	}
	{
		char path[256];
		int fd;

		(void)dmr_dm_path(ren, path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		check(dmr_dm_info(ren, &info) == 0 && info.open_count >= 1, "open count %d while held", info.open_count);
		check(dmr_dm_remove(ren, 2) == -EBUSY, "remove of an open device: -EBUSY after retries");
		if (fd >= 0)
			close(fd);
		check(dmr_dm_remove(ren, 10) == 0, "remove once closed");
		check(dmr_dm_info(ren, &info) == 0 && !info.exists, "gone");
	}

	/* ---- thin pool, thin volume, status ---- */
	dev_meta = make_loop("meta.img", 4, 0);
	dev_data = make_loop("data.img", 64, 0);
	name_of(pool, sizeof(pool), "pool");
	name_of(thin, sizeof(thin), "thin");
	if (dev_meta && dev_data) {
		_cleanup_table_ struct dmr_table *t = dmr_table_new();
		_cleanup_table_ struct dmr_table *tt = dmr_table_new();
		struct dmr_thin_pool_opts o = { .block_sectors = 128, .error_if_no_space = true };
		struct dmr_table *st = NULL;
		struct dmr_thin_pool_status ps;
		struct dmr_thin_status ts;
		char uuid[129], pooldev[32];

		uuid_of(uuid, sizeof(uuid), "pool");
		check(dmr_table_add_thin_pool(t, 64 * 2048, dev_meta, dev_data, &o) == 0 &&
			      dmr_dm_create(pool, uuid, t, 0) == 0,
		      "create a thin pool");
		check(dmr_dm_message(pool, 0, "create_thin 0", &resp) == 0, "message create_thin 0");
		free(resp);
		check(dmr_dm_message(pool, 0, "set_transaction_id 0 1", NULL) == 0, "message set_transaction_id 0 1");
		check(dmr_dm_message(pool, 0, "create_thin 0", NULL) == -EEXIST ||
			      dmr_dm_message(pool, 0, "create_thin 0", NULL) < 0,
		      "create_thin of an existing id fails");
		(void)dmr_dm_info(pool, &info);
		snprintf(pooldev, sizeof(pooldev), "%u:%u", info.major, info.minor);
		uuid_of(uuid, sizeof(uuid), "thin");
		check(dmr_table_add_thin(tt, 2048, pooldev, 0, NULL) == 0 && dmr_dm_create(thin, uuid, tt, 0) == 0,
		      "activate thin id 0 on %s", pooldev);
		{
			char path[256];
			int fd;
			void *buf = NULL;

			(void)dmr_dm_path(thin, path, sizeof(path));
			fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
			check(fd >= 0 && !posix_memalign(&buf, 4096, 65536) && memset(buf, 1, 65536) &&
				      pwrite(fd, buf, 65536, 0) == 65536,
			      "write 64 KiB to the thin volume");
			free(buf);
			if (fd >= 0)
				close(fd);
		}
		check(dmr_dm_status(pool, &st) == 0 && st && st->count == 1 &&
			      dmr_status_parse_thin_pool(st->targets[0].params, &ps) == 0,
		      "pool status parses: '%s'", st && st->count ? st->targets[0].params : "");
		check(ps.transaction_id == 1 && ps.used_data_blocks == 1 && ps.no_space == DMR_NO_SPACE_ERROR &&
			      !ps.fail && !ps.read_only,
		      "pool status: transaction 1, 1 data block used, error_if_no_space, rw");
		dmr_table_free(st);
		st = NULL;
		check(dmr_dm_status(thin, &st) == 0 && st && st->count == 1 &&
			      dmr_status_parse_thin(st->targets[0].params, &ts) == 0 && ts.mapped_sectors == 128,
		      "thin status parses: 128 sectors mapped");
		dmr_table_free(st);
		check(dmr_dm_remove(thin, 10) == 0 && dmr_dm_remove(pool, 10) == 0, "thin and pool removed");
	} else
		check(false, "loop devices for the pool");

	/* ---- classic snapshot status ---- */
	dev_cow = make_loop("cow.img", 2, 0);
	name_of(snap, sizeof(snap), "snap");
	if (dev_cow) {
		_cleanup_table_ struct dmr_table *t = dmr_table_new();
		struct dmr_snapshot_status ss;
		struct dmr_table *st = NULL;
		char uuid[129];

		uuid_of(uuid, sizeof(uuid), "snap");
		check(dmr_table_add_snapshot(t, DEV_SECTORS, dev_b, dev_cow, true, 16) == 0 &&
			      dmr_dm_create(snap, uuid, t, 0) == 0,
		      "create a persistent snapshot of B");
		check(dmr_dm_status(snap, &st) == 0 && st && st->count == 1 &&
			      dmr_status_parse_snapshot(st->targets[0].params, &ss) == 0 && !ss.invalid &&
			      ss.total_sectors == 4096,
		      "snapshot status parses: '%s'", st && st->count ? st->targets[0].params : "");
		dmr_table_free(st);
		check(read_byte(snap, 0) == 0xb2, "the snapshot reads B");
		check(dmr_dm_remove(snap, 10) == 0, "snapshot removed");
	}

	/* ---- the failover window under load ---- */
	test_window(dev_a, dev_b);

	printf("# %u passed, %u failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
