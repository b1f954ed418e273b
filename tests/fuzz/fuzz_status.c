/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_status - the kernel's status lines (dm/status.h) as dmrep reads them
 * for a thin pool, a thin volume and a classic snapshot (snapshots/pool.c,
 * snapshots/classic.c).  The first byte picks the parser, the rest is the
 * line.  Checked: what a parser accepts holds together (used <= total,
 * metadata within used).
 */
#include "dm/status.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	s = fuzz_strndup(data + 1, size - 1);
	switch (data[0] % 3) {
	case 0: {
		struct dmr_thin_pool_status st;

		if (dmr_status_parse_thin_pool(s, &st) == 0 && !st.fail) {
			FUZZ_CHECK(st.used_meta_blocks <= st.total_meta_blocks);
			FUZZ_CHECK(st.used_data_blocks <= st.total_data_blocks);
		}
		break;
	}
	case 1: {
		struct dmr_thin_status st;

		(void)dmr_status_parse_thin(s, &st);
		break;
	}
	default: {
		struct dmr_snapshot_status st;

		if (dmr_status_parse_snapshot(s, &st) == 0 && !st.invalid && !st.overflow &&
		    !st.merge_failed) {
			FUZZ_CHECK(st.used_sectors <= st.total_sectors);
			FUZZ_CHECK(st.metadata_sectors <= st.used_sectors);
		}
		break;
	}
	}
	free(s);
	return 0;
}
