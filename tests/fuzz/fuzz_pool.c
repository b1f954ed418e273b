/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_pool - the pool's state file (STATE/pool.json), read by the
 * registry's own loader at start (dmr_registry_open, agent/store/registry.c:
 * the file is read from a state directory, as the agent reads it; no device
 * is touched there) and checked as a round trip with its writer: a file
 * the loader takes, written again (dmr_reg_pool_save) and loaded again, is
 * taken and written the same; a file it refuses leaves the pool marked
 * unreadable, never half-read, and is not rewritten.
 *
 * The state directory is in /dev/shm (tmpfs), so that the writer's fsyncs
 * cost nothing.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "agent/store/registry.h"
#include "common/util.h"
#include "tests/fuzz/fuzz.h"

static char dir[64], pool_json[96];

/* At exit: the state directory goes (pool.json, an empty vms/). */
static void remove_dir(void)
{
	char vms[96];

	snprintf(vms, sizeof(vms), "%s/vms", dir);
	(void)unlink(pool_json);
	(void)rmdir(vms);
	(void)rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet();
	snprintf(dir, sizeof(dir), "/dev/shm/dmrep-fuzz-pool.XXXXXX");
	FUZZ_CHECK(mkdtemp(dir));
	snprintf(pool_json, sizeof(pool_json), "%s/pool.json", dir);
	atexit(remove_dir);
	return 0;
}

static char *read_back(void)
{
	char *buf = NULL;
	size_t len = 0;

	FUZZ_CHECK(dmr_read_file(pool_json, 1u << 20, &buf, &len) == 0);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_agent a = { .state_dir = dir };
	struct dmr_registry *reg;
	char *first, *second;

	if (size > (64u << 10))
		return 0;
	FUZZ_CHECK(dmr_write_file_atomic(pool_json, data, size, 0600) == 0);
	FUZZ_CHECK(dmr_registry_open(&a) == 0);
	reg = a.reg;
	if (!reg->have_pool || reg->pool_unreadable) {
		/* Refused (or empty): left alone. */
		dmr_registry_close(&a);
		first = read_back();
		FUZZ_CHECK(strlen(first) == size || memchr(data, 0, size));
		FUZZ_CHECK(!memcmp(first, data, strlen(first)));
		free(first);
		return 0;
	}
	FUZZ_CHECK(reg->pool_spec.block_sectors > 0 && reg->next_vol_id <= DMR_THIN_DEV_ID_MAX);
	FUZZ_CHECK(dmr_reg_pool_save(reg) == 0);
	dmr_registry_close(&a);
	first = read_back();

	FUZZ_CHECK(dmr_registry_open(&a) == 0);
	reg = a.reg;
	if (!reg->have_pool || reg->pool_unreadable)
		fprintf(stderr, "written pool.json does not load:\n%s\n", first);
	FUZZ_CHECK(reg->have_pool && !reg->pool_unreadable);
	FUZZ_CHECK(dmr_reg_pool_save(reg) == 0);
	dmr_registry_close(&a);
	second = read_back();
	fuzz_same_text(first, second);
	return 0;
}
