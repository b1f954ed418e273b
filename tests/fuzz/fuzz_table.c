/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_table - live tables as the kernel prints them, read back by
 * recovery and activation to tell which device is which: a linear
 * target's device (dmr_table_linear_dev, dm/table.c), a thin volume's pool
 * and id (dmr_thin_table_id, snapshots/thin.c), a classic origin's and
 * view's device (dmr_classic_table_is_origin_of, _is_view_of,
 * snapshots/classic.c).  Input: the target type, a newline, its params.
 *
 * Checked: what a parser takes is what the kernel would print for what it
 * took (MAJ:MIN and numbers in decimal, no sign, no leading zero, nothing
 * around them; a thin target's external origin may follow its id): a table
 * that is not the kernel's never passes for a device it is not.
 */
#include <inttypes.h>

#include "dm/table.h"
#include "snapshots/classic.h"
#include "snapshots/pool.h"
#include "snapshots/thin.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_pool pool = { .major = 253, .minor = 3 };
	struct dmr_table t = { 0 };
	struct dmr_target tg = { .length = 8 };
	char *s = fuzz_strndup(data, size), *nl = strchr(s, '\n'), want[128];
	uint32_t maj, min, id;

	if (!nl || (size_t)(nl - s) >= sizeof(tg.type)) {
		free(s);
		return 0;
	}
	*nl = '\0';
	memcpy(tg.type, s, (size_t)(nl - s) + 1);
	tg.params = nl + 1;
	t.count = t.cap = 1;
	t.targets = &tg;

	if (dmr_table_linear_dev(&t, &maj, &min) == 0) {
		snprintf(want, sizeof(want), "%" PRIu32 ":%" PRIu32 " 0", maj, min);
		FUZZ_CHECK(strcmp(tg.params, want) == 0);
	}
	if (dmr_thin_table_id(&pool, &t, &id) == 0) {
		/* A thin target may name an external origin after the id. */
		size_t n = (size_t)snprintf(want, sizeof(want), "253:3 %" PRIu32, id);

		FUZZ_CHECK(strncmp(tg.params, want, n) == 0);
		FUZZ_CHECK(tg.params[n] == '\0' || tg.params[n] == ' ');
	}
	for (uint32_t m = 0; m < 3; m++) {
		snprintf(want, sizeof(want), "%" PRIu32 ":%" PRIu32, 253u, m);
		if (dmr_classic_table_is_origin_of(&t, 253, m))
			FUZZ_CHECK(strcmp(tg.params, want) == 0);
		strcat(want, " 0");
		if (dmr_classic_table_is_view_of(&t, 253, m))
			FUZZ_CHECK(strcmp(tg.params, want) == 0);
	}
	free(s);
	return 0;
}
