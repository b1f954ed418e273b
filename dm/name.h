/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dm/name.h - name rules.
 *
 * dm device names: 1..127 bytes, no '/', not "." or "..", printable ASCII
 * with no whitespace (the kernel allows more; dmrep is stricter so names are
 * safe in paths, udev and shells).  UUIDs: 1..128 bytes, same charset.
 * dmrep object names (VMs, disks, point labels used in names): what lvm2
 * allows, [A-Za-z0-9+_.-], no leading '-', not "." or "..", 1..max bytes.
 */
#ifndef DMR_DM_NAME_H
#define DMR_DM_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define DMR_DM_NAME_MAX 127
#define DMR_DM_UUID_MAX 128
/* Buffer sizes for a name or UUID and its NUL: size every such buffer so. */
#define DMR_DM_NAME_SIZE (DMR_DM_NAME_MAX + 1)
#define DMR_DM_UUID_SIZE (DMR_DM_UUID_MAX + 1)
/* "/dev/mapper/NAME" and its NUL. */
#define DMR_DM_PATH_SIZE (sizeof("/dev/mapper/") + DMR_DM_NAME_MAX)
/* VM and disk names: short enough that "dmrep-VM:test:DISK" and the UUIDs
 * built from them fit the kernel's limits (agent/store/registry.c asserts it). */
#define DMR_OBJ_NAME_MAX 48
/* Every device dmrep makes has a UUID with this prefix. */
#define DMR_UUID_PREFIX "DMREP-"
/* The thin target's device ids are 24 bits. */
#define DMR_THIN_DEV_ID_MAX ((1u << 24) - 1)

int dmr_name_dm_valid(const char *name);   /* 0 or -EINVAL */
int dmr_name_uuid_valid(const char *uuid); /* 0 or -EINVAL */
/* lvm2-style object name of at most max bytes. */
int dmr_name_obj_valid(const char *name, size_t max);
/* UUID is one dmrep may create or touch (valid and starts with DMREP-). */
bool dmr_name_uuid_is_ours(const char *uuid);

#endif
