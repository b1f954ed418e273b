/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_delta - the XML that thin_dump and thin_delta print, as
 * snapshots/delta.c parses it to choose the blocks a send reads
 * (dmr_delta_parse_dump, dmr_delta_parse_delta).  The first byte picks the
 * parser and the volume's size in blocks; the rest is the tool's output.
 * Checked: the extents are what delta.h promises (sorted, apart, adjacent
 * ones of one kind merged, non-empty, within the volume).  A first byte
 * 0xff picks instead the parser of thin_ls's ids (dmr_delta_parse_ids,
 * which the pool's repair reads): ascending, apart, below 2^24.
 */
#include "snapshots/delta.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t max_blocks[] = { 16, 64, 1024, UINT64_MAX / 2 };
	struct dmr_extent *ext = NULL;
	size_t n = 0;
	uint64_t max;
	int r;

	if (size < 1)
		return 0;
	if (data[0] == 0xff) {
		uint32_t *ids = NULL;

		if (dmr_delta_parse_ids((const char *)data + 1, size - 1, &ids, &n) == 0) {
			FUZZ_CHECK(n == 0 || ids);
			for (size_t i = 0; i < n; i++) {
				FUZZ_CHECK(ids[i] < (1u << 24));
				FUZZ_CHECK(i == 0 || ids[i - 1] < ids[i]);
			}
		}
		free(ids);
		return 0;
	}
	max = max_blocks[(data[0] >> 1) % 4];
	if (data[0] & 1)
		r = dmr_delta_parse_delta((const char *)data + 1, size - 1, max, &ext, &n);
	else
		r = dmr_delta_parse_dump((const char *)data + 1, size - 1, max, &ext, &n);
	if (r == 0) {
		FUZZ_CHECK(n == 0 || ext);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(ext[i].length > 0);
			FUZZ_CHECK(ext[i].begin < max && ext[i].length <= max - ext[i].begin);
			FUZZ_CHECK(ext[i].kind == DMR_EXTENT_DATA || ext[i].kind == DMR_EXTENT_UNMAPPED);
			if (i > 0) {
				uint64_t end = ext[i - 1].begin + ext[i - 1].length;

				FUZZ_CHECK(end <= ext[i].begin);
				FUZZ_CHECK(end < ext[i].begin || ext[i - 1].kind != ext[i].kind);
			}
		}
	}
	free(ext);
	return 0;
}
