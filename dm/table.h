/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/table.h - dm tables as data, and pure builders for the targets dmrep
 * uses.  Builders validate their arguments (no whitespace or empty device
 * paths, non-zero lengths, chunk sizes the kernel accepts) and return 0 or a
 * negative errno.  Lengths and offsets are in 512-byte sectors.
 */
#ifndef DMR_DM_TABLE_H
#define DMR_DM_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "dm/name.h"

#define DMR_TARGET_TYPE_MAX 16 /* DM_MAX_TYPE_NAME */

struct dmr_target {
	uint64_t start;
	uint64_t length;
	char type[DMR_TARGET_TYPE_MAX];
	char *params;
};

struct dmr_table {
	size_t count;
	size_t cap;
	struct dmr_target *targets;
};

struct dmr_table *dmr_table_new(void);
void dmr_table_free(struct dmr_table *t);
DMR_DEFINE_FREEP(struct dmr_table *, dmr_table_free)
#define _cleanup_table_ _cleanup_(dmr_table_freep)

/* Append a target after the last one (start = sum of lengths so far). */
int dmr_table_append(struct dmr_table *t, uint64_t length, const char *type,
		     const char *params);
/* Append with an explicit start (used when reading a table back). */
int dmr_table_append_at(struct dmr_table *t, uint64_t start, uint64_t length,
			const char *type, const char *params);
uint64_t dmr_table_length(const struct dmr_table *t);
/* "start length type params\n" per target, malloc()ed. */
int dmr_table_format(const struct dmr_table *t, char **ret_text);

int dmr_table_add_linear(struct dmr_table *t, uint64_t length,
			 const char *dev, uint64_t offset);
/* Is t, as the kernel reports it, one `linear MAJ:MIN 0` target (a
 * device stacked whole on another)?  0 and the device below, or -EINVAL. */
int dmr_table_linear_dev(const struct dmr_table *t, uint32_t *ret_major, uint32_t *ret_minor);
/* Table params as the kernel prints them (tests/fuzz/fuzz_table.c): a
 * decimal number (no sign, no space, no leading zero but "0" itself) of at
 * most max, or MAJ:MIN of two such numbers of 32 bits, at the start of s;
 * *ret_end (may be NULL) is the byte after it.  0, or -EINVAL (outputs
 * untouched): a table that is not the kernel's never passes for a device
 * it is not (sscanf's %u takes "+1", " 1" and 4294967297 for 1). */
int dmr_table_parse_u64(const char *s, uint64_t max, uint64_t *ret, const char **ret_end);
int dmr_table_parse_devno(const char *s, uint32_t *ret_major, uint32_t *ret_minor,
			  const char **ret_end);
int dmr_table_add_error(struct dmr_table *t, uint64_t length);
int dmr_table_add_zero(struct dmr_table *t, uint64_t length);
int dmr_table_add_snapshot_origin(struct dmr_table *t, uint64_t length,
				  const char *origin_dev);
/* persistent: P (survives reboot) or N; chunk_sectors a power of 2, >= 8. */
int dmr_table_add_snapshot(struct dmr_table *t, uint64_t length,
			   const char *origin_dev, const char *cow_dev,
			   bool persistent, uint32_t chunk_sectors);
int dmr_table_add_snapshot_merge(struct dmr_table *t, uint64_t length,
				 const char *origin_dev, const char *cow_dev,
				 uint32_t chunk_sectors);

struct dmr_thin_pool_opts {
	uint32_t block_sectors;  /* 128..2097152, multiple of 128 */
	uint64_t low_water_blocks;
	bool skip_block_zeroing;
	bool error_if_no_space;  /* error rather than queue when full */
	bool read_only;
};
int dmr_table_add_thin_pool(struct dmr_table *t, uint64_t length,
			    const char *meta_dev, const char *data_dev,
			    const struct dmr_thin_pool_opts *opts);
/* thin: dev_id is 24-bit; external_origin may be NULL. */
int dmr_table_add_thin(struct dmr_table *t, uint64_t length,
		       const char *pool_dev, uint32_t dev_id,
		       const char *external_origin);
/* flakey: up for up_sec, down for down_sec; mode "error_reads",
 * "drop_writes", "error_writes" or NULL (all I/O errors while down). */
int dmr_table_add_flakey(struct dmr_table *t, uint64_t length,
			 const char *dev, uint64_t offset, unsigned up_sec,
			 unsigned down_sec, const char *mode);
int dmr_table_add_delay(struct dmr_table *t, uint64_t length,
			const char *dev, uint64_t offset, unsigned delay_ms);

#endif
