/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <uuid/uuid.h>

#include "common/uuid.h"

void dmr_uuid_new(char buf[DMR_UUID_STR_SIZE])
{
	uuid_t u;

	/* Random, not time-based: a uuid must not tell which host or when. */
	uuid_generate_random(u);
	uuid_unparse_lower(u, buf);
}

bool dmr_uuid_valid(const char *s)
{
	bool nonzero = false;

	if (!s || strlen(s) != DMR_UUID_STR_SIZE - 1)
		return false;
	for (size_t i = 0; i < DMR_UUID_STR_SIZE - 1; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
			continue;
		}
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		if (c != '0')
			nonzero = true;
	}
	return nonzero;
}
