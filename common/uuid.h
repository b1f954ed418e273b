/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/uuid.h - the uuids that name a VM and a replication point on every
 * host (docs/stream.md): random (libuuid's uuid_generate_random), kept in
 * state files and streams as the 36-character lower-case text form.
 */
#ifndef DMR_COMMON_UUID_H
#define DMR_COMMON_UUID_H

#include <stdbool.h>

/* 36 characters and the NUL. */
#define DMR_UUID_STR_SIZE 37

/* A new random uuid into buf. */
void dmr_uuid_new(char buf[DMR_UUID_STR_SIZE]);
/* Is s a uuid in the text form dmr_uuid_new writes (lower-case hex, dashes
 * at 8-4-4-4-12, not the nil uuid)?  NULL is not. */
bool dmr_uuid_valid(const char *s);

#endif
