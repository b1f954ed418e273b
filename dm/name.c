/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dm/name.h"

#include <errno.h>
#include <string.h>

#include "dm/dm.h"

/* Printable ASCII without whitespace and without '/': safe in paths, udev
 * rules and shell words (quoted). */
static int charset_ok(const char *s, size_t max)
{
	size_t n;

	if (!s)
		return -EINVAL;
	n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '/')
			return -EINVAL;
	}
	return 0;
}

int dmr_name_dm_valid(const char *name)
{
	if (charset_ok(name, DMR_DM_NAME_MAX) < 0)
		return -EINVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	return 0;
}

int dmr_name_uuid_valid(const char *uuid)
{
	return charset_ok(uuid, DMR_DM_UUID_MAX);
}

int dmr_name_obj_valid(const char *name, size_t max)
{
	size_t n;

	if (!name)
		return -EINVAL;
	n = strnlen(name, max + 1);
	if (n == 0 || n > max || name[0] == '-')
		return -EINVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '_' || ch == '.' || ch == '-'))
			return -EINVAL;
	}
	return 0;
}

bool dmr_name_uuid_is_ours(const char *uuid)
{
	return dmr_name_uuid_valid(uuid) == 0 &&
	       strncmp(uuid, DMR_UUID_PREFIX, strlen(DMR_UUID_PREFIX)) == 0 &&
	       uuid[strlen(DMR_UUID_PREFIX)] != '\0';
}
