/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/status.h - pure parsers of the kernel's status lines (the params part
 * of `dmsetup status`, without "start length type").  They accept exactly
 * what Documentation/admin-guide/device-mapper/ says the kernel prints and
 * return -EINVAL on anything else; they never read past the string.
 */
#ifndef DMR_DM_STATUS_H
#define DMR_DM_STATUS_H

#include <stdbool.h>
#include <stdint.h>

struct dmr_snapshot_status {
	bool invalid;        /* "Invalid" */
	bool overflow;       /* "Overflow" */
	bool merge_failed;   /* "Merge failed" */
	uint64_t used_sectors;     /* allocated COW sectors */
	uint64_t total_sectors;    /* COW device size */
	uint64_t metadata_sectors; /* of used, how many are metadata */
};
int dmr_status_parse_snapshot(const char *params, struct dmr_snapshot_status *ret);

enum dmr_no_space_policy { DMR_NO_SPACE_QUEUE, DMR_NO_SPACE_ERROR };

struct dmr_thin_pool_status {
	bool fail;           /* "Fail", or "Error" (then error too) */
	bool error;          /* "Error": the kernel could not read its metadata */
	uint64_t transaction_id;
	uint64_t used_meta_blocks, total_meta_blocks;
	uint64_t used_data_blocks, total_data_blocks;
	bool has_held_root;
	uint64_t held_root;
	bool read_only;      /* "ro" */
	bool out_of_data_space; /* "out_of_data_space" */
	bool discard_passdown;
	enum dmr_no_space_policy no_space;
	bool needs_check;
	uint64_t metadata_low_watermark; /* 0 if the kernel is too old to say */
};
int dmr_status_parse_thin_pool(const char *params, struct dmr_thin_pool_status *ret);

/* What a parsed thin-pool status says of the pool's health, worst first:
 * fail (every I/O errors), out_of_metadata_space (read-only or needs_check
 * with every metadata block used: the kernel ran out of metadata and
 * switched the pool to read-only; the metadata device must grow before a
 * repair has room to rewrite it), needs_check (a metadata operation
 * failed: the metadata must be checked and repaired offline), read_only
 * (no metadata change possible), out_of_data_space (writes to new blocks
 * fail), ok. */
enum dmr_pool_health {
	DMR_POOL_OK,
	DMR_POOL_FAIL,
	DMR_POOL_NEEDS_CHECK,
	DMR_POOL_READ_ONLY,
	DMR_POOL_OUT_OF_DATA_SPACE,
	DMR_POOL_OUT_OF_METADATA_SPACE,
};
enum dmr_pool_health dmr_status_thin_pool_health(const struct dmr_thin_pool_status *st);
/* "ok", "fail", "needs_check", "read_only", "out_of_data_space",
 * "out_of_metadata_space". */
const char *dmr_status_thin_pool_health_name(enum dmr_pool_health h);

struct dmr_thin_status {
	bool fail;
	uint64_t mapped_sectors;
	bool has_highest;
	uint64_t highest_mapped_sector;
};
int dmr_status_parse_thin(const char *params, struct dmr_thin_status *ret);

#endif
