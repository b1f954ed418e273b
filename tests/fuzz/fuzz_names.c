/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_names - the name and size rules every name from outside goes
 * through (dm/name.h, common/util.h's size, number and UTF-8 rules, the
 * device names built from a VM and a disk, agent/store/registry.h), and
 * the escaping of text on its way to a log.  Input: "VM:DISK" or any text.
 * Checked: a name the rules take builds device names and UUIDs that the
 * dm rules take and that are dmrep's own; escaped text is always one
 * printable line of valid UTF-8; a parsed number prints back to itself.
 */
#include <inttypes.h>

#include "agent/guest/qmp.h"
#include "agent/store/registry.h"
#include "agent/store/repl.h"
#include "common/util.h"
#include "dm/name.h"
#include "tests/fuzz/fuzz.h"

static void check_dm_name(const char *s)
{
	if (dmr_name_dm_valid(s) == 0) {
		FUZZ_CHECK(strlen(s) >= 1 && strlen(s) <= DMR_DM_NAME_MAX);
		FUZZ_CHECK(!strchr(s, '/') && strcmp(s, ".") && strcmp(s, ".."));
	}
	if (dmr_name_uuid_is_ours(s))
		FUZZ_CHECK(dmr_name_uuid_valid(s) == 0 && dmr_startswith(s, DMR_UUID_PREFIX));
	if (dmr_name_uuid_valid(s) == 0)
		FUZZ_CHECK(strlen(s) <= DMR_DM_UUID_MAX);
}

static void check_vm_disk(const char *vm, const char *disk)
{
	static const struct {
		int (*build)(const char *vm, const char *disk, char *buf);
		bool uuid;
	} names[] = {
		{ dmr_vm_disk_dm_name, false },
		{ dmr_vm_disk_dm_uuid, true },
		{ dmr_vm_test_dm_name, false },
		{ dmr_vm_test_dm_uuid, true },
	};
	bool ok = dmr_name_obj_valid(vm, DMR_OBJ_NAME_MAX) == 0 &&
		  dmr_name_obj_valid(disk, DMR_OBJ_NAME_MAX) == 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char buf[DMR_DM_UUID_SIZE > DMR_DM_NAME_SIZE ? DMR_DM_UUID_SIZE : DMR_DM_NAME_SIZE];
		int r = names[i].build(vm, disk, buf);

		FUZZ_CHECK((r == 0) == ok);
		if (r == 0)
			FUZZ_CHECK(names[i].uuid ? dmr_name_uuid_is_ours(buf) :
						   dmr_name_dm_valid(buf) == 0);
	}
}

static void check_text(const uint8_t *data, size_t size, const char *s)
{
	size_t len = strlen(s), cut;
	char small[24], big[4 * 256 + 1];

	for (size_t sz = 1; sz <= sizeof(small); sz += 7) {
		dmr_cescape(small, sz, s);
		FUZZ_CHECK(strlen(small) < sz);
		FUZZ_CHECK(dmr_utf8_valid(small, strlen(small)));
		for (const char *p = small; *p; p++)
			FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
		dmr_utf8_copy(small, sz, s);
		FUZZ_CHECK(strlen(small) < sz);
	}
	if (len <= 256) {
		dmr_cescape(big, sizeof(big), s);
		FUZZ_CHECK(dmr_utf8_valid(big, strlen(big)));
		/* Nothing is cut when the buffer is 4 * len + 1. */
		if (dmr_utf8_valid(s, len)) {
			bool plain = true;

			for (size_t i = 0; i < len; i++)
				plain = plain && (unsigned char)s[i] >= 0x20 && s[i] != 0x7f;
			/* C1 controls are escaped too: only plain ASCII compares. */
			for (size_t i = 0; i < len; i++)
				plain = plain && (unsigned char)s[i] < 0x80;
			if (plain)
				FUZZ_CHECK(strcmp(big, s) == 0);
		}
	}
	cut = dmr_utf8_cut(s, len);
	FUZZ_CHECK(cut <= len);
	if (dmr_utf8_valid(s, len))
		for (size_t n = 0; n <= len && n < 64; n++)
			FUZZ_CHECK(dmr_utf8_valid(s, dmr_utf8_cut(s, n)));
	(void)dmr_utf8_valid((const char *)data, size);
}

static void check_numbers(const char *s)
{
	uint64_t v, w;
	char buf[32];

	if (dmr_parse_u64(s, &v) == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, v);
		FUZZ_CHECK(dmr_parse_u64(buf, &w) == 0 && w == v);
	}
	if (dmr_parse_size(s, &v) == 0) {
		snprintf(buf, sizeof(buf), "%" PRIu64, v);
		FUZZ_CHECK(dmr_parse_size(buf, &w) == 0 && w == v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size), *colon;

	check_dm_name(s);
	check_text(data, size, s);
	check_numbers(s);
	(void)dmr_qapi_name_valid(s);
	(void)dmr_repl_to_valid(s);
	(void)dmr_name_obj_valid(s, DMR_OBJ_NAME_MAX);
	colon = strchr(s, ':');
	if (colon) {
		*colon = '\0';
		check_vm_disk(s, colon + 1);
	} else {
		check_vm_disk(s, s);
	}
	free(s);
	return 0;
}
