/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/pool.h - the thin pool dmrep owns: one dm thin-pool device,
 * "dmrep-pool" (UUID DMREP-pool), over a data and a metadata device that are
 * block devices or sparse files attached to loop devices.
 *
 * The pool knows thin ids and transaction ids, nothing of VMs.  Every batch
 * of metadata changes (create_thin, create_snap, delete) is sent together
 * with `set_transaction_id OLD NEW`, so that after a crash between the
 * messages and the caller's catalog write the caller can tell, from the
 * kernel's transaction id, which of the two happened (as lvm2 does).
 */
#ifndef DMR_SNAPSHOTS_POOL_H
#define DMR_SNAPSHOTS_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "dm/status.h"

#define DMR_POOL_DM_NAME "dmrep-pool"
#define DMR_POOL_DM_UUID "DMREP-pool"
/* 64 KiB blocks: the kernel's minimum, best for snapshots (less copying on
 * first write to a shared block). */
#define DMR_POOL_BLOCK_SECTORS 128u
/* dm-thin's metadata block, in bytes (fixed by the kernel). */
#define DMR_POOL_META_BLOCK_BYTES 4096u

struct dmr_pool_spec {
	char *data_path;       /* block device or regular file */
	char *meta_path;
	uint64_t data_size;    /* bytes; for a file that does not exist yet */
	uint64_t meta_size;
	uint32_t block_sectors;
	/* dmr_pool_create only: leave files sparse (else their blocks are
	 * allocated up front, so a full filesystem cannot fail the pool). */
	bool sparse;
};

struct dmr_pool {
	struct dmr_pool_spec spec;
	char data_dev[64];     /* /dev/loopN or the block device */
	char meta_dev[64];
	bool data_is_loop, meta_is_loop;
	uint64_t data_sectors, meta_sectors;
	uint32_t major, minor; /* of dmrep-pool, for thin tables */
};

void dmr_pool_spec_done(struct dmr_pool_spec *spec);
void dmr_pool_free(struct dmr_pool *pool);

/* The metadata size for a data size when none is given: 1/1000 of it, at
 * least 8 MiB (the thin-provisioning docs' rule of thumb), at most 16 GiB. */
uint64_t dmr_pool_default_meta_size(uint64_t data_size);

/* Bytes a backing path may still take from its filesystem: a regular
 * file's unallocated part, a missing file's new_size, 0 for a block
 * device.  *ret_fs_dev is the st_dev of the filesystem it is (or will be)
 * on, 0 for a block device. */
int dmr_pool_file_growth(const char *path, uint64_t new_size, uint64_t *ret_bytes,
			 uint64_t *ret_fs_dev);

/*
 * Make a new pool: create missing files (data_size/meta_size) and, unless
 * spec->sparse, allocate every block of the files (fallocate; -EOPNOTSUPP
 * if the filesystem cannot, -ENOSPC if it cannot hold them), refuse
 * (-EEXIST, *ret_what names it) a device or file that carries any signature
 * unless force, refuse (-EBUSY) one in use, attach loops, zero the metadata
 * header so the kernel formats it, and create dmrep-pool with
 * error_if_no_space.  Transaction id starts at 0.
 * On failure everything made is undone; ret_what (may be NULL) gets a
 * malloc()ed description of a refused signature.
 */
int dmr_pool_create(const struct dmr_pool_spec *spec, bool force,
		    struct dmr_pool **ret_pool, char **ret_what);
/* Bring an existing pool up after a restart (attach loops, create the dm
 * device if absent).  Never formats anything: a metadata device whose
 * superblock is all zeroes, which the kernel would format as an empty
 * pool, is refused with -EUCLEAN (dmr_pool_reactivate too). */
int dmr_pool_activate(const struct dmr_pool_spec *spec, struct dmr_pool **ret_pool);

/* The pool's repair (agent/engine/pool.c): take its dm device down, its
 * data and metadata devices (loops) staying attached, so that the
 * metadata can be checked and rewritten offline (-EBUSY while a thin
 * device still uses it; absent is not an error); and bring it back over
 * the same devices, pool->major/minor refreshed (they may change). */
int dmr_pool_deactivate(const struct dmr_pool *pool);
/* Read the metadata device's size again (a file's loop first takes its
 * file's size: the file grown since), into pool->meta_sectors; *ret_bytes
 * (may be NULL) gets it.  The pool may be up: the kernel keeps using the
 * size it loaded until a repair rewrites the metadata for the new one. */
int dmr_pool_meta_refresh(struct dmr_pool *pool, uint64_t *ret_bytes);
int dmr_pool_reactivate(struct dmr_pool *pool);

int dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret);
/* "MAJ:MIN" of the pool device, for thin tables. */
void dmr_pool_devno(const struct dmr_pool *pool, char buf[32]);
uint64_t dmr_pool_block_bytes(const struct dmr_pool *pool);

/* One metadata message.  Serialised process-wide. */
int dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* set_transaction_id old new. */
int dmr_pool_set_transaction(const struct dmr_pool *pool, uint64_t old_id, uint64_t new_id);
/* delete id; a thin id that does not exist is not an error (idempotent). */
int dmr_pool_delete_thin(const struct dmr_pool *pool, uint32_t id);

/* Free data bytes (total - used), from the kernel. */
int dmr_pool_free_bytes(const struct dmr_pool *pool, uint64_t *ret_bytes);

#endif
