/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * snapshots/delta.c and snapshots/xfer.c without a pool.
 *
 * The parsers on the LITERAL output of thin-provisioning-tools 0.9.0,
 * printed in the lab (Debian kernel 6.1) on a pool of 64 KiB blocks:
 * thin 1 got blocks 0-9, 20 and 100-103 written; snapshot 2 of it; then a
 * 4 KiB write into block 5, a write of block 200, discards of blocks 20
 * and 101; snapshot 3; empty thin 4.  Then malformed and out-of-bounds
 * output, which must be refused.
 *
 * dmr_delta_extents over fake thin_dump / thin_delta scripts in $PATH and
 * a wrapped dmr_pool_message (wrap.mk): the metadata snapshot is released
 * whatever the tool does.
 *
 * The extent reader and writer on files in a scratch directory that takes
 * O_DIRECT (tests/unit/copy_files.h), also under injected libaio faults
 * (io_submit and io_getevents wrapped as in test_copy_fault.c): every
 * failure is returned with nothing left in flight (submitted == reaped).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libaio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "snapshots/delta.h"
#include "snapshots/xfer.h"
#include "copy_files.h"

/* ---- literal output ---- */

static const char DUMP_2[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <device dev_id=\"2\" mapped_blocks=\"15\" transaction=\"0\" creation_time=\"1\" snap_time=\"1\">\n"
	"    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"10\" time=\"0\"/>\n"
	"    <single_mapping origin_block=\"20\" data_block=\"10\" time=\"0\"/>\n"
	"    <range_mapping origin_begin=\"100\" data_begin=\"11\" length=\"4\" time=\"0\"/>\n"
	"  </device>\n"
	"</superblock>\n";

static const char DUMP_3[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <device dev_id=\"3\" mapped_blocks=\"14\" transaction=\"0\" creation_time=\"2\" snap_time=\"2\">\n"
	"    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"5\" time=\"0\"/>\n"
	"    <single_mapping origin_block=\"5\" data_block=\"15\" time=\"1\"/>\n"
	"    <range_mapping origin_begin=\"6\" data_begin=\"6\" length=\"4\" time=\"0\"/>\n"
	"    <single_mapping origin_block=\"100\" data_block=\"11\" time=\"0\"/>\n"
	"    <range_mapping origin_begin=\"102\" data_begin=\"13\" length=\"2\" time=\"0\"/>\n"
	"    <single_mapping origin_block=\"200\" data_block=\"16\" time=\"1\"/>\n"
	"  </device>\n"
	"</superblock>\n";

/* --dev-id 9: not in the pool (exit status 0). */
static const char DUMP_9[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"</superblock>\n";

static const char DUMP_4[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <device dev_id=\"4\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"2\" snap_time=\"2\">\n"
	"  </device>\n"
	"</superblock>\n";

static const char DELTA_2_3[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <diff left=\"2\" right=\"3\">\n"
	"    <same begin=\"0\" length=\"5\"/>\n"
	"    <different begin=\"5\" length=\"1\"/>\n"
	"    <same begin=\"6\" length=\"4\"/>\n"
	"    <left_only begin=\"20\" length=\"1\"/>\n"
	"    <same begin=\"100\" length=\"1\"/>\n"
	"    <left_only begin=\"101\" length=\"1\"/>\n"
	"    <same begin=\"102\" length=\"2\"/>\n"
	"    <right_only begin=\"200\" length=\"1\"/>\n"
	"  </diff>\n"
	"</superblock>\n";

static const char DELTA_2_3_VERBOSE[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <diff left=\"2\" right=\"3\">\n"
	"    <same>\n"
	"      <range begin=\"0\" data_begin=\"0\" length=\"5\"/>\n"
	"    </same>\n"
	"    <different>\n"
	"      <range begin=\"5\" left_data_begin=\"5\" right_data_begin=\"15\" length=\"1\"/>\n"
	"    </different>\n"
	"    <same>\n"
	"      <range begin=\"6\" data_begin=\"6\" length=\"4\"/>\n"
	"    </same>\n"
	"    <left_only>\n"
	"      <range begin=\"20\" data_begin=\"10\" length=\"1\"/>\n"
	"    </left_only>\n"
	"    <same>\n"
	"      <range begin=\"100\" data_begin=\"11\" length=\"1\"/>\n"
	"    </same>\n"
	"    <left_only>\n"
	"      <range begin=\"101\" data_begin=\"12\" length=\"1\"/>\n"
	"    </left_only>\n"
	"    <same>\n"
	"      <range begin=\"102\" data_begin=\"13\" length=\"2\"/>\n"
	"    </same>\n"
	"    <right_only>\n"
	"      <range begin=\"200\" data_begin=\"16\" length=\"1\"/>\n"
	"    </right_only>\n"
	"  </diff>\n"
	"</superblock>\n";

static const char DELTA_3_2[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <diff left=\"3\" right=\"2\">\n"
	"    <same begin=\"0\" length=\"5\"/>\n"
	"    <different begin=\"5\" length=\"1\"/>\n"
	"    <same begin=\"6\" length=\"4\"/>\n"
	"    <right_only begin=\"20\" length=\"1\"/>\n"
	"    <same begin=\"100\" length=\"1\"/>\n"
	"    <right_only begin=\"101\" length=\"1\"/>\n"
	"    <same begin=\"102\" length=\"2\"/>\n"
	"    <left_only begin=\"200\" length=\"1\"/>\n"
	"  </diff>\n"
	"</superblock>\n";

static const char DELTA_2_2[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <diff left=\"2\" right=\"2\">\n"
	"    <same begin=\"0\" length=\"10\"/>\n"
	"    <same begin=\"20\" length=\"1\"/>\n"
	"    <same begin=\"100\" length=\"4\"/>\n"
	"  </diff>\n"
	"</superblock>\n";

static const char DELTA_4_3[] =
	"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
	"  <diff left=\"4\" right=\"3\">\n"
	"    <right_only begin=\"0\" length=\"10\"/>\n"
	"    <right_only begin=\"100\" length=\"1\"/>\n"
	"    <right_only begin=\"102\" length=\"2\"/>\n"
	"    <right_only begin=\"200\" length=\"1\"/>\n"
	"  </diff>\n"
	"</superblock>\n";

/* The lab's volume: 64 MiB of 64 KiB blocks. */
#define VOL_BLOCKS 1024u

#define D DMR_EXTENT_DATA
#define U DMR_EXTENT_UNMAPPED

static void expect(const struct dmr_extent *got, size_t n_got, const struct dmr_extent *want,
		   size_t n_want)
{
	assert_int_equal(n_got, n_want);
	for (size_t i = 0; i < n_want; i++) {
		assert_int_equal(got[i].begin, want[i].begin);
		assert_int_equal(got[i].length, want[i].length);
		assert_int_equal(got[i].kind, want[i].kind);
	}
}

static int dump(const char *s, uint64_t max, struct dmr_extent **ext, size_t *n)
{
	return dmr_delta_parse_dump(s, strlen(s), max, ext, n);
}

static int delta(const char *s, uint64_t max, struct dmr_extent **ext, size_t *n)
{
	return dmr_delta_parse_delta(s, strlen(s), max, ext, n);
}

static void test_dump_literal(void **state)
{
	static const struct dmr_extent want2[] = { { 0, 10, D }, { 20, 1, D }, { 100, 4, D } };
	/* Block 5 moved to another data block: still one run of the volume. */
	static const struct dmr_extent want3[] = {
		{ 0, 10, D }, { 100, 1, D }, { 102, 2, D }, { 200, 1, D },
	};
	struct dmr_extent *ext = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(dump(DUMP_2, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want2, DMR_ARRAY_SIZE(want2));
	free(ext);
	assert_int_equal(dump(DUMP_3, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want3, DMR_ARRAY_SIZE(want3));
	free(ext);
	/* Without the trailing newline too. */
	assert_int_equal(dmr_delta_parse_dump(DUMP_3, strlen(DUMP_3) - 1, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want3, DMR_ARRAY_SIZE(want3));
	free(ext);

	ext = (void *)1;
	assert_int_equal(dump(DUMP_4, VOL_BLOCKS, &ext, &n), 0);
	assert_null(ext);
	assert_int_equal(n, 0);

	ext = (void *)1;
	n = 99;
	assert_int_equal(dump(DUMP_9, VOL_BLOCKS, &ext, &n), -ENOENT);
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(n, 99);
}

static void test_dump_bounds(void **state)
{
	struct dmr_extent *ext = (void *)1;
	size_t n = 99;

	(void)state;
	/* Block 200 mapped in a volume of 200 blocks: refused. */
	assert_int_equal(dump(DUMP_3, 200, &ext, &n), -EBADMSG);
	assert_int_equal(dump(DUMP_2, 103, &ext, &n), -EBADMSG);
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(n, 99);
	assert_int_equal(dump(DUMP_2, 104, &ext, &n), 0);
	assert_int_equal(n, 3);
	free(ext);
	assert_int_equal(dump(DUMP_3, 201, &ext, &n), 0);
	assert_int_equal(n, 4);
	free(ext);
}

static void test_delta_literal(void **state)
{
	static const struct dmr_extent want23[] = {
		{ 5, 1, D }, { 20, 1, U }, { 101, 1, U }, { 200, 1, D },
	};
	static const struct dmr_extent want32[] = {
		{ 5, 1, D }, { 20, 1, D }, { 101, 1, D }, { 200, 1, U },
	};
	static const struct dmr_extent want43[] = {
		{ 0, 10, D }, { 100, 1, D }, { 102, 2, D }, { 200, 1, D },
	};
	struct dmr_extent *ext = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(delta(DELTA_2_3, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want23, DMR_ARRAY_SIZE(want23));
	free(ext);
	assert_int_equal(delta(DELTA_2_3_VERBOSE, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want23, DMR_ARRAY_SIZE(want23));
	free(ext);
	assert_int_equal(delta(DELTA_3_2, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want32, DMR_ARRAY_SIZE(want32));
	free(ext);
	assert_int_equal(delta(DELTA_4_3, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want43, DMR_ARRAY_SIZE(want43));
	free(ext);
	ext = (void *)1;
	assert_int_equal(delta(DELTA_2_2, VOL_BLOCKS, &ext, &n), 0);
	assert_null(ext);
	assert_int_equal(n, 0);

	/* Out of the volume, even a "same" range. */
	assert_int_equal(delta(DELTA_2_3, 200, &ext, &n), -EBADMSG);
	assert_int_equal(delta(DELTA_2_2, 103, &ext, &n), -EBADMSG);
	assert_int_equal(delta(DELTA_2_3, 201, &ext, &n), 0);
	free(ext);
}

static void test_merge(void **state)
{
	/* Touching ranges of kinds that map to one kind are merged;
	 * touching ones of different kinds are not. */
	static const char s[] =
		"<superblock uuid=\"\" time=\"2\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
		"  <diff left=\"2\" right=\"3\">\n"
		"    <different begin=\"0\" length=\"2\"/>\n"
		"    <right_only begin=\"2\" length=\"3\"/>\n"
		"    <left_only begin=\"5\" length=\"1\"/>\n"
		"    <left_only begin=\"6\" length=\"1\"/>\n"
		"    <different begin=\"7\" length=\"1\"/>\n"
		"    <same begin=\"8\" length=\"1\"/>\n"
		"    <different begin=\"9\" length=\"1\"/>\n"
		"  </diff>\n"
		"</superblock>\n";
	static const struct dmr_extent want[] = {
		{ 0, 5, D }, { 5, 2, U }, { 7, 1, D }, { 9, 1, D },
	};
	struct dmr_extent *ext = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(delta(s, 10, &ext, &n), 0);
	expect(ext, n, want, DMR_ARRAY_SIZE(want));
	free(ext);
	assert_int_equal(delta(s, 9, &ext, &n), -EBADMSG);
}

/* DUMP_2 with its mapping line replaced by line: what must be refused. */
static int dump_with(const char *line)
{
	char buf[8192];
	struct dmr_extent *ext = (void *)1;
	size_t n = 99;
	int r;

	snprintf(buf, sizeof(buf),
		 "<superblock uuid=\"\" time=\"2\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"0\">\n"
		 "  <device dev_id=\"2\" mapped_blocks=\"15\" transaction=\"0\" creation_time=\"1\" snap_time=\"1\">\n"
		 "    <range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"10\" time=\"0\"/>\n"
		 "%s\n"
		 "  </device>\n"
		 "</superblock>\n",
		 line);
	r = dump(buf, UINT64_MAX, &ext, &n);
	if (r == 0)
		free(ext);
	else {
		assert_ptr_equal(ext, (void *)1);
		assert_int_equal(n, 99);
	}
	return r;
}

static void test_dump_malformed(void **state)
{
	static const char *const bad[] = {
		"    <range_mapping origin_begin=\"1x\" data_begin=\"0\" length=\"10\" time=\"0\"/>",
		"    <range_mapping origin_begin=\"-1\" data_begin=\"0\" length=\"10\" time=\"0\"/>",
		"    <range_mapping origin_begin=\"+20\" data_begin=\"0\" length=\"10\" time=\"0\"/>",
		"    <range_mapping origin_begin=\" 20\" data_begin=\"0\" length=\"10\" time=\"0\"/>",
		"    <range_mapping origin_begin=\"\" data_begin=\"0\" length=\"10\" time=\"0\"/>",
		"    <range_mapping origin_begin=\"99999999999999999999\" data_begin=\"0\" length=\"1\"/>",
		"    <range_mapping origin_begin=\"18446744073709551615\" data_begin=\"0\" length=\"2\"/>",
		"    <range_mapping origin_begin=\"20\" data_begin=\"0\" length=\"0\" time=\"0\"/>",
		/* Overlaps, or goes back. */
		"    <range_mapping origin_begin=\"9\" data_begin=\"0\" length=\"2\" time=\"0\"/>",
		"    <single_mapping origin_block=\"3\" data_block=\"10\" time=\"0\"/>",
		/* Missing, doubled attributes. */
		"    <range_mapping origin_begin=\"20\" data_begin=\"0\" time=\"0\"/>",
		"    <single_mapping data_block=\"10\" time=\"0\"/>",
		"    <single_mapping origin_block=\"20\" origin_block=\"30\" time=\"0\"/>",
		/* Not one element a line, not an element, unknown ones. */
		"    <single_mapping origin_block=\"20\"/> <single_mapping origin_block=\"30\"/>",
		"    <single_mapping origin_block=\"20\" data_block=\"10\" time=\"0\"",
		"    <single_mapping origin_block=\"20\" data_block=\"10\" time=\"0\"/>junk",
		"    <single_mapping origin_block=\"20\"data_block=\"10\"/>",
		"    <single_mapping origin_block=20/>",
		"    <single_mapping origin_block=\"20/>",
		"    single_mapping origin_block=\"20\"/>",
		"    20",
		"    <def name=\"1\">",
		"    <ref name=\"1\"/>",
		"    <single_mapping origin_block=\"20\">",
		"    </single_mapping>",
		"    <device dev_id=\"3\">",
		"    </superblock>",
		"    <>",
		"    </>",
	};

	(void)state;
	assert_int_equal(dump_with("    <single_mapping origin_block=\"20\" data_block=\"10\" time=\"0\"/>"), 0);
	assert_int_equal(dump_with(""), 0);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		if (dump_with(bad[i]) != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
	}
}

/* thin_ls 0.9.0 --no-headers -o DEV on metadata holding thin ids 1, 12
 * and 3 (thin_restore'd here, and the same in the lab): right-aligned,
 * one trailing blank, in the metadata's order. */
static const char ls_literal[] = "  1 \n  3 \n 12 \n";

static void test_parse_ids(void **state)
{
	static const char *const bad[] = {
		"1\nx\n", "1 2\n", "-1\n", "16777216\n", "99999999999999999999\n",
		"3\n3\n", "1,2\n", "0x10\n", "1\n\0002\n",
	};
	uint32_t *ids = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(dmr_delta_parse_ids(ls_literal, strlen(ls_literal), &ids, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 3);
	assert_int_equal(ids[2], 12);
	free(ids);

	/* No thin volume at all (a pool just made), blank lines, no final
	 * newline, the highest id the kernel takes. */
	ids = (uint32_t *)1;
	assert_int_equal(dmr_delta_parse_ids("", 0, &ids, &n), 0);
	assert_int_equal(n, 0);
	assert_null(ids);
	assert_int_equal(dmr_delta_parse_ids("\n  \n16777215", 12, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 16777215);
	free(ids);

	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		size_t len = strlen(bad[i]);

		if (i == DMR_ARRAY_SIZE(bad) - 1)
			len = 4; /* a NUL inside a line */
		ids = (uint32_t *)1;
		n = 99;
		assert_int_equal(dmr_delta_parse_ids(bad[i], len, &ids, &n), -EBADMSG);
		/* Out-parameters untouched on failure. */
		assert_ptr_equal(ids, (uint32_t *)1);
		assert_int_equal(n, 99);
	}
}

/* The real tools on a metadata file: thin_restore makes it, thin_ls reads
 * it through dmr_delta_thin_ids.  Skipped where they are not installed. */
static void test_thin_ids_tool(void **state)
{
	static const char xml[] =
		"<superblock uuid=\"\" time=\"0\" transaction=\"7\" version=\"2\" "
		"data_block_size=\"128\" nr_data_blocks=\"1000\">\n"
		"  <device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n  </device>\n"
		"  <device dev_id=\"12\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n  </device>\n"
		"  <device dev_id=\"3\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n  </device>\n"
		"</superblock>\n";
	char dir[] = "/tmp/dmrep-ids-XXXXXX", x[64], m[64], cmd[256];
	uint32_t *ids = NULL;
	size_t n = 0;
	FILE *f;

	(void)state;
	if (system("command -v thin_restore >/dev/null && command -v thin_ls >/dev/null") != 0) {
		skip();
		return;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(x, sizeof(x), "%s/m.xml", dir);
	snprintf(m, sizeof(m), "%s/m.bin", dir);
	assert_non_null(f = fopen(x, "w"));
	assert_int_equal(fputs(xml, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "truncate -s 8M %s && thin_restore -q -i %s -o %s", m, x, m);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(dmr_delta_thin_ids(m, &ids, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 3);
	assert_int_equal(ids[2], 12);
	free(ids);
	/* Not metadata: the tool fails, nothing returned. */
	ids = NULL;
	assert_int_equal(dmr_delta_thin_ids(x, &ids, &n), -EIO);
	assert_null(ids);
	unlink(x);
	unlink(m);
	rmdir(dir);
}

static void test_structure(void **state)
{
	struct dmr_extent *ext = (void *)1;
	size_t n = 99;
	char *big;

	(void)state;
	/* Cut anywhere before the end: refused. */
	for (size_t cut = 0; cut < strlen(DUMP_2) - 1; cut++) {
		if (DUMP_2[cut] == '\n' || cut == 0)
			assert_int_not_equal(dmr_delta_parse_dump(DUMP_2, cut, VOL_BLOCKS, &ext, &n), 0);
	}
	for (size_t cut = 0; cut < strlen(DELTA_2_3) - 1; cut++) {
		if (DELTA_2_3[cut] == '\n' || cut == 0)
			assert_int_equal(dmr_delta_parse_delta(DELTA_2_3, cut, VOL_BLOCKS, &ext, &n),
					 -EBADMSG);
	}
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(dump("", VOL_BLOCKS, &ext, &n), -EBADMSG);
	assert_int_equal(delta("", VOL_BLOCKS, &ext, &n), -EBADMSG);
	/* One tool's output is not the other's. */
	assert_int_equal(dump(DELTA_2_3, VOL_BLOCKS, &ext, &n), -EBADMSG);
	assert_int_equal(delta(DUMP_2, VOL_BLOCKS, &ext, &n), -EBADMSG);
	/* Anything after the end. */
	{
		char buf[4096];

		snprintf(buf, sizeof(buf), "%s<superblock>\n", DUMP_2);
		assert_int_equal(dump(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
		snprintf(buf, sizeof(buf), "%sjunk\n", DELTA_2_3);
		assert_int_equal(delta(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
		/* Two devices. */
		snprintf(buf, sizeof(buf), "%s", DUMP_2);
		{
			char *end = strstr(buf, "</superblock>");
			const char *dev = "  <device dev_id=\"5\">\n  </device>\n</superblock>\n";

			memcpy(end, dev, strlen(dev) + 1);
		}
		assert_int_equal(dump(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
		/* A NUL inside. */
		memcpy(buf, DELTA_2_3, sizeof(DELTA_2_3));
		buf[120] = '\0';
		assert_int_equal(dmr_delta_parse_delta(buf, sizeof(DELTA_2_3) - 1, VOL_BLOCKS, &ext, &n),
				 -EBADMSG);
		/* A diff without its ids, a range kind the tool does not print. */
		snprintf(buf, sizeof(buf), "%s", DELTA_2_3);
		memcpy(strstr(buf, "left="), "lfet=", 5);
		assert_int_equal(delta(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
		snprintf(buf, sizeof(buf), "%s", DELTA_2_3);
		memcpy(strstr(buf, "<same"), "<sane", 5);
		assert_int_equal(delta(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
		/* A verbose kind closed by another. */
		snprintf(buf, sizeof(buf), "%s", DELTA_2_3_VERBOSE);
		memcpy(strstr(buf, "</same>"), "</diff>", 7);
		assert_int_equal(delta(buf, VOL_BLOCKS, &ext, &n), -EBADMSG);
	}
	/* A line past the bound, even a well-formed one. */
	big = malloc(8192);
	assert_non_null(big);
	memset(big, ' ', 8192);
	memcpy(big, DUMP_2, 120);
	memcpy(big + 4000, DUMP_2 + 120, sizeof(DUMP_2) - 120);
	assert_int_equal(dmr_delta_parse_dump(big, 4000 + sizeof(DUMP_2) - 121, VOL_BLOCKS, &ext, &n),
			 -EBADMSG);
	free(big);
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(n, 99);
	assert_int_equal(dmr_delta_parse_dump(NULL, 0, VOL_BLOCKS, &ext, &n), -EINVAL);
}

/* ---- dmr_delta_extents over fake tools ---- */

static char msgs[16][64];
static unsigned nmsgs;
static int reserve_rc, release_rc;
static bool status_held;

int __wrap_dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...);
int __wrap_dmr_pool_message(const struct dmr_pool *pool, const char *fmt, ...)
{
	char m[64];
	va_list ap;

	(void)pool;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (nmsgs < DMR_ARRAY_SIZE(msgs))
		snprintf(msgs[nmsgs++], sizeof(msgs[0]), "%s", m);
	if (strcmp(m, "reserve_metadata_snap") == 0)
		return reserve_rc;
	if (strcmp(m, "release_metadata_snap") == 0)
		return release_rc;
	return -EINVAL;
}

int __wrap_dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret);
int __wrap_dmr_pool_status(const struct dmr_pool *pool, struct dmr_thin_pool_status *ret)
{
	(void)pool;
	memset(ret, 0, sizeof(*ret));
	ret->has_held_root = status_held;
	ret->held_root = status_held ? 64 : 0;
	return 0;
}

static char bindir[4096];
static char *old_path;

/* A fake tool: prints file out (if any) to stdout, err to stderr, its
 * arguments into bindir/NAME.args, and exits rc. */
static void fake_tool(const char *name, const char *out, const char *err, int rc)
{
	char p[4200], o[4200];
	FILE *f;

	snprintf(o, sizeof(o), "%s/%s.out", bindir, name);
	f = fopen(o, "w");
	assert_non_null(f);
	fputs(out ? out : "", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/%s", bindir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\necho \"$@\" > '%s/%s.args'\ncat '%s'\n%s%s%sexit %d\n", bindir, name,
		o, err ? "echo '" : "", err ? err : "", err ? "' >&2\n" : "", rc);
	fclose(f);
	assert_int_equal(chmod(p, 0755), 0);
}

/* A fake tool of one shell line. */
static void fake_script(const char *name, const char *line)
{
	char p[4200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", bindir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", line);
	fclose(f);
	assert_int_equal(chmod(p, 0755), 0);
}

static void fake_args(const char *name, char *buf, size_t size)
{
	char p[4200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s.args", bindir, name);
	buf[0] = '\0';
	f = fopen(p, "r");
	if (!f)
		return;
	if (!fgets(buf, (int)size, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

static int tools_setup(void **state)
{
	char path[8192];

	(void)state;
	snprintf(bindir, sizeof(bindir), "%s/dmr-delta-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(bindir))
		return -1;
	old_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	snprintf(path, sizeof(path), "%s:%s", bindir, old_path ? old_path : "/usr/bin:/bin");
	setenv("PATH", path, 1);
	return 0;
}

static int tools_teardown(void **state)
{
	static const char *const names[] = { "thin_dump", "thin_delta", "thin_dump.out",
					     "thin_delta.out", "thin_dump.args", "thin_delta.args" };
	char p[4200];

	(void)state;
	for (size_t i = 0; i < DMR_ARRAY_SIZE(names); i++) {
		snprintf(p, sizeof(p), "%s/%s", bindir, names[i]);
		unlink(p);
	}
	rmdir(bindir);
	if (old_path)
		setenv("PATH", old_path, 1);
	free(old_path);
	return 0;
}

static void reset_msgs(void)
{
	nmsgs = 0;
	reserve_rc = release_rc = 0;
}

static void fake_pool(struct dmr_pool *pool)
{
	memset(pool, 0, sizeof(*pool));
	snprintf(pool->meta_dev, sizeof(pool->meta_dev), "/dev/fake-meta");
	pool->spec.block_sectors = 128;
}

static void test_extents_tools(void **state)
{
	static const struct dmr_extent want3[] = {
		{ 0, 10, D }, { 100, 1, D }, { 102, 2, D }, { 200, 1, D },
	};
	static const struct dmr_extent want23[] = {
		{ 5, 1, D }, { 20, 1, U }, { 101, 1, U }, { 200, 1, D },
	};
	struct dmr_pool pool;
	struct dmr_extent *ext = NULL;
	size_t n = 0;
	char args[512];

	(void)state;
	fake_pool(&pool);

	reset_msgs();
	fake_tool("thin_dump", DUMP_3, NULL, 0);
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want3, DMR_ARRAY_SIZE(want3));
	free(ext);
	fake_args("thin_dump", args, sizeof(args));
	assert_string_equal(args, "--metadata-snap --dev-id 3 /dev/fake-meta");
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[0], "reserve_metadata_snap");
	assert_string_equal(msgs[1], "release_metadata_snap");

	reset_msgs();
	fake_tool("thin_delta", DELTA_2_3, NULL, 0);
	assert_int_equal(dmr_delta_extents(&pool, 2, 3, VOL_BLOCKS, &ext, &n), 0);
	expect(ext, n, want23, DMR_ARRAY_SIZE(want23));
	free(ext);
	fake_args("thin_delta", args, sizeof(args));
	assert_string_equal(args, "--metadata-snap --snap1 2 --snap2 3 /dev/fake-meta");
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[1], "release_metadata_snap");

	/* Output out of the volume: refused, and released all the same. */
	reset_msgs();
	ext = (void *)1;
	assert_int_equal(dmr_delta_extents(&pool, 2, 3, 200, &ext, &n), -EBADMSG);
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[1], "release_metadata_snap");

	/* A volume not in the pool, as each tool says it. */
	reset_msgs();
	fake_tool("thin_dump", DUMP_9, NULL, 0);
	assert_int_equal(dmr_delta_extents(&pool, 0, 9, VOL_BLOCKS, &ext, &n), -ENOENT);
	assert_int_equal(nmsgs, 2);
	reset_msgs();
	fake_tool("thin_delta", NULL, "Unable to find mapping tree for snap2 (9)", 1);
	assert_int_equal(dmr_delta_extents(&pool, 2, 9, VOL_BLOCKS, &ext, &n), -ENOENT);
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[1], "release_metadata_snap");

	/* The tool fails, or prints half and fails: -EIO, released. */
	reset_msgs();
	fake_tool("thin_dump", DUMP_3, "no current metadata snap", 1);
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), -EIO);
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[1], "release_metadata_snap");

	/* Someone else's snapshot is held: -EBUSY, nothing to release. */
	reset_msgs();
	reserve_rc = -EBUSY;
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), -EBUSY);
	assert_int_equal(nmsgs, 1);

	/* Our release fails: the error, and the next call releases first. */
	reset_msgs();
	fake_tool("thin_dump", DUMP_3, NULL, 0);
	release_rc = -EIO;
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), -EIO);
	reset_msgs();
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), 0);
	free(ext);
	assert_int_equal(nmsgs, 3);
	assert_string_equal(msgs[0], "release_metadata_snap");
	assert_string_equal(msgs[1], "reserve_metadata_snap");
	assert_string_equal(msgs[2], "release_metadata_snap");

	assert_int_equal(dmr_delta_extents(&pool, 3, 3, VOL_BLOCKS, &ext, &n), -EINVAL);
}

static void test_extents_tool_misbehaves(void **state)
{
	struct dmr_pool pool;
	struct dmr_extent *ext = (void *)1;
	size_t n = 99;

	(void)state;
	fake_pool(&pool);

	/* Past the 256 MiB bound on stdout: stopped (killed), refused. */
	reset_msgs();
	fake_script("thin_dump", "exec head -c 300000000 /dev/zero");
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), -EFBIG);
	assert_int_equal(nmsgs, 2);
	assert_string_equal(msgs[1], "release_metadata_snap");

	/* Killed by a signal, after half its output. */
	reset_msgs();
	fake_script("thin_dump", "echo '<superblock uuid=\"\">'; kill -9 $$");
	assert_int_equal(dmr_delta_extents(&pool, 0, 3, VOL_BLOCKS, &ext, &n), -EIO);
	assert_int_equal(nmsgs, 2);

	/* Exit 0 with garbage: refused after the release. */
	reset_msgs();
	fake_script("thin_delta", "printf '<superblock>\\0</superblock>\\n'");
	assert_int_equal(dmr_delta_extents(&pool, 2, 3, VOL_BLOCKS, &ext, &n), -EBADMSG);
	assert_int_equal(nmsgs, 2);
	reset_msgs();
	fake_script("thin_delta", "true");
	assert_int_equal(dmr_delta_extents(&pool, 2, 3, VOL_BLOCKS, &ext, &n), -EBADMSG);
	assert_int_equal(nmsgs, 2);

	/* Much on stderr, nothing on stdout: no deadlock on either pipe. */
	reset_msgs();
	fake_script("thin_delta", "head -c 1000000 /dev/zero | tr '\\0' x >&2; exit 1");
	assert_int_equal(dmr_delta_extents(&pool, 2, 3, VOL_BLOCKS, &ext, &n), -EIO);
	assert_int_equal(nmsgs, 2);
	assert_ptr_equal(ext, (void *)1);
	assert_int_equal(n, 99);
}

static void test_release_stale(void **state)
{
	struct dmr_pool pool;

	(void)state;
	fake_pool(&pool);
	reset_msgs();
	status_held = false;
	assert_int_equal(dmr_delta_release_stale(&pool), 0);
	assert_int_equal(nmsgs, 0);
	status_held = true;
	assert_int_equal(dmr_delta_release_stale(&pool), 0);
	assert_int_equal(nmsgs, 1);
	assert_string_equal(msgs[0], "release_metadata_snap");
	status_held = false;
}

/* ---- libaio, wrapped: counts and faults ---- */

int __real_io_submit(io_context_t ctx, long nr, struct iocb *ios[]);
int __real_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout);
int __wrap_io_submit(io_context_t ctx, long nr, struct iocb *ios[]);
int __wrap_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout);

static struct {
	unsigned submitted, reaped, max_inflight;
	unsigned submit_calls, eagain_at, eintr_left;
	unsigned seen[2];   /* completions: 0 reads, 1 writes */
	bool fault;         /* turn completion fault_nth of fault_op into fault_res */
	int fault_op;       /* IO_CMD_PREAD (0) or IO_CMD_PWRITE */
	unsigned fault_nth;
	long fault_res;     /* > 0: shorten by this much; < 0: this error */
} aio;

int __wrap_io_submit(io_context_t ctx, long nr, struct iocb *ios[])
{
	int r;

	aio.submit_calls++;
	if (aio.eagain_at && aio.submit_calls == aio.eagain_at)
		return -EAGAIN;
	r = __real_io_submit(ctx, nr, ios);
	if (r > 0) {
		aio.submitted += (unsigned)r;
		if (aio.submitted - aio.reaped > aio.max_inflight)
			aio.max_inflight = aio.submitted - aio.reaped;
	}
	return r;
}

int __wrap_io_getevents(io_context_t ctx, long min_nr, long nr, struct io_event *events,
			struct timespec *timeout)
{
	int n;

	if (aio.eintr_left) {
		aio.eintr_left--;
		return -EINTR;
	}
	n = __real_io_getevents(ctx, min_nr, nr, events, timeout);
	for (int i = 0; i < n; i++) {
		int op = events[i].obj->aio_lio_opcode;
		unsigned k = op == IO_CMD_PWRITE;

		aio.reaped++;
		aio.seen[k]++;
		if (!aio.fault || op != aio.fault_op || aio.seen[k] != aio.fault_nth)
			continue;
		if (aio.fault_res < 0)
			events[i].res = (unsigned long)aio.fault_res;
		else
			events[i].res -= (unsigned long)aio.fault_res;
	}
	return n;
}

static void aio_reset(void)
{
	memset(&aio, 0, sizeof(aio));
}

/* ---- the reader and the writer on files ---- */

#define BB (64u * KiB)
#define FILE_BYTES (8u * MiB) /* 128 blocks */

struct call {
	uint64_t off, len;
	bool data, zero;
};

struct collect {
	struct call calls[4096];
	unsigned n;
	uint8_t *img;          /* what the calls say the volume holds */
	uint64_t next;         /* calls must come in order */
	int stop_after;        /* > 0: fail the nth call */
	struct dmr_xfer_writer *w;
	bool bad;
};

static int on_chunk(void *userdata, uint64_t offset, const void *buf, size_t len, bool zero)
{
	struct collect *c = userdata;

	if (offset < c->next || len == 0 || (buf && len > DMR_XFER_CHUNK) || (buf && zero))
		c->bad = true;
	c->next = offset + len;
	if (c->n < DMR_ARRAY_SIZE(c->calls))
		c->calls[c->n++] = (struct call){ offset, len, buf != NULL, zero };
	if (c->img && offset + len <= FILE_BYTES) {
		if (buf)
			memcpy(c->img + offset, buf, len);
		else
			memset(c->img + offset, 0, len);
	}
	if (c->w) {
		int r = buf ? dmr_xfer_write(c->w, offset, buf, len) : dmr_xfer_zero(c->w, offset, len);

		if (r < 0)
			return r;
	}
	if (c->stop_after > 0 && (int)c->n >= c->stop_after)
		return -ECANCELED;
	return 0;
}

static struct scratch scr;
static bool have_scratch;
static uint8_t *src_img;

static int files_setup(void **state)
{
	char p[4200];
	int fd;

	(void)state;
	have_scratch = scratch_make(&scr, "xfer");
	if (!have_scratch)
		return 0;
	src_img = malloc(FILE_BYTES);
	if (!src_img)
		return -1;
	fill_random(src_img, FILE_BYTES, 7);
	/* Zero grains: block 1 entirely, half of block 6 (the second 32 KiB
	 * of a 64 KiB grain: not a zero grain), blocks 16-18 (across the
	 * 1 MiB chunk boundary at block 16). */
	memset(src_img + 1 * BB, 0, BB);
	memset(src_img + 6 * BB + 32 * KiB, 0, 32 * KiB);
	memset(src_img + 16 * BB, 0, 3 * BB);
	scratch_path(&scr, "src", p, sizeof(p));
	fd = file_make_sparse(p, FILE_BYTES);
	if (fd < 0 || pwrite(fd, src_img, FILE_BYTES, 0) != (ssize_t)FILE_BYTES)
		return -1;
	close(fd);
	return 0;
}

static int files_teardown(void **state)
{
	(void)state;
	if (have_scratch)
		scratch_remove(&scr);
	free(src_img);
	return 0;
}

/* Data [0,3), unmapped [3,5), data [5,30) (crosses chunks), data
 * [100,136) (past the file's 128 blocks: cut). */
static const struct dmr_extent xext[] = {
	{ 0, 3, D }, { 3, 2, U }, { 5, 25, D }, { 100, 36, D },
};

static void check_img(const uint8_t *img, bool unmapped_zero)
{
	for (size_t i = 0; i < DMR_ARRAY_SIZE(xext); i++) {
		uint64_t b = xext[i].begin * BB, e = (xext[i].begin + xext[i].length) * BB;

		if (e > FILE_BYTES)
			e = FILE_BYTES;
		if (xext[i].kind == U) {
			for (uint64_t o = b; o < e; o++)
				if (img[o])
					fail_msg("unmapped byte %llu not zero", (unsigned long long)o);
			continue;
		}
		if (memcmp(img + b, src_img + b, e - b) != 0)
			fail_msg("extent %zu differs", i);
	}
	(void)unmapped_zero;
}

static void test_read(void **state)
{
	char src[4200];
	struct collect *c = calloc(1, sizeof(*c));
	static const unsigned depths[] = { 1, 3, 0 };

	(void)state;
	if (!have_scratch)
		skip();
	assert_non_null(c);
	scratch_path(&scr, "src", src, sizeof(src));
	c->img = malloc(FILE_BYTES);
	assert_non_null(c->img);
	for (size_t d = 0; d < DMR_ARRAY_SIZE(depths); d++) {
		for (int sz = 0; sz < 2; sz++) {
			uint64_t zero_true = 0, zero_false = 0, data = 0;

			memset(c->img, 0xee, FILE_BYTES);
			c->n = 0;
			c->next = 0;
			c->bad = false;
			assert_int_equal(dmr_xfer_read(src, xext, DMR_ARRAY_SIZE(xext), BB, depths[d],
						       sz == 1, on_chunk, c), 0);
			assert_false(c->bad);
			check_img(c->img, true);
			for (unsigned i = 0; i < c->n; i++) {
				if (c->calls[i].data)
					data += c->calls[i].len;
				else if (c->calls[i].zero)
					zero_true += c->calls[i].len;
				else
					zero_false += c->calls[i].len;
				/* Zero runs of one kind that touch are one. */
				if (i > 0 && !c->calls[i].data && !c->calls[i - 1].data &&
				    c->calls[i].zero == c->calls[i - 1].zero &&
				    c->calls[i - 1].off + c->calls[i - 1].len == c->calls[i].off)
					fail_msg("zero runs not merged at %llu",
						 (unsigned long long)c->calls[i].off);
			}
			assert_int_equal(zero_false, 2 * BB);
			assert_int_equal(data + zero_true, (3 + 25 + 28) * (uint64_t)BB);
			if (sz == 1) {
				/* Block 1 and blocks 16-18; block 6's half is data. */
				assert_int_equal(zero_true, 4 * (uint64_t)BB);
				assert_int_equal(c->calls[1].off, 1 * BB);
				assert_int_equal(c->calls[1].len, BB);
				assert_true(c->calls[1].zero);
				assert_true(c->calls[2].data);
				assert_false(c->calls[3].data);
				assert_false(c->calls[3].zero);
				assert_int_equal(c->calls[3].off, 3 * BB);
			} else {
				assert_int_equal(zero_true, 0);
			}
			/* The last call ends at the file's end. */
			assert_int_equal(c->calls[c->n - 1].off + c->calls[c->n - 1].len, FILE_BYTES);
		}
	}
	/* The callback stops the read: its error, after exactly that call. */
	c->n = 0;
	c->next = 0;
	c->stop_after = 3;
	assert_int_equal(dmr_xfer_read(src, xext, DMR_ARRAY_SIZE(xext), BB, 4, false, on_chunk, c),
			 -ECANCELED);
	assert_int_equal(c->n, 3);
	c->stop_after = 0;
	/* Nothing to read. */
	c->n = 0;
	assert_int_equal(dmr_xfer_read(src, NULL, 0, BB, 0, true, on_chunk, c), 0);
	assert_int_equal(c->n, 0);
	/* Extents entirely past the end: nothing either. */
	{
		static const struct dmr_extent past[] = { { 200, 5, D }, { 300, 5, U } };

		assert_int_equal(dmr_xfer_read(src, past, 2, BB, 0, true, on_chunk, c), 0);
		assert_int_equal(c->n, 0);
	}
	/* Unsorted, overlapping, empty extents; bad block sizes. */
	{
		static const struct dmr_extent unsorted[] = { { 5, 2, D }, { 1, 1, D } };
		static const struct dmr_extent overlap[] = { { 0, 2, D }, { 1, 1, U } };
		static const struct dmr_extent empty[] = { { 0, 0, D } };

		assert_int_equal(dmr_xfer_read(src, unsorted, 2, BB, 0, true, on_chunk, c), -EINVAL);
		assert_int_equal(dmr_xfer_read(src, overlap, 2, BB, 0, true, on_chunk, c), -EINVAL);
		assert_int_equal(dmr_xfer_read(src, empty, 1, BB, 0, true, on_chunk, c), -EINVAL);
		assert_int_equal(dmr_xfer_read(src, xext, 1, 100, 0, true, on_chunk, c), -EINVAL);
		assert_int_equal(dmr_xfer_read(src, xext, 1, BB, 5000, true, on_chunk, c), -EINVAL);
	}
	assert_int_equal(c->n, 0);
	free(c->img);
	free(c);
}

static void test_round_trip(void **state)
{
	char src[4200], dst[4200];
	struct collect *c = calloc(1, sizeof(*c));
	uint8_t *got = malloc(FILE_BYTES);
	int fd;

	(void)state;
	if (!have_scratch)
		skip();
	assert_non_null(c);
	assert_non_null(got);
	scratch_path(&scr, "src", src, sizeof(src));
	scratch_path(&scr, "dst", dst, sizeof(dst));
	for (int sz = 0; sz < 2; sz++) {
		/* The destination starts as garbage: zeros must be written. */
		memset(got, 0xa5, FILE_BYTES);
		fd = file_make_sparse(dst, FILE_BYTES);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, got, FILE_BYTES, 0), (ssize_t)FILE_BYTES);
		close(fd);
		memset(c, 0, sizeof(*c));
		assert_int_equal(dmr_xfer_writer_open(dst, FILE_BYTES, sz ? 2 : 0, &c->w), 0);
		assert_int_equal(dmr_xfer_read(src, xext, DMR_ARRAY_SIZE(xext), BB, 0, sz == 1,
					       on_chunk, c), 0);
		assert_int_equal(dmr_xfer_writer_close(c->w), 0);
		fd = open(dst, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, got, FILE_BYTES, 0), (ssize_t)FILE_BYTES);
		close(fd);
		check_img(got, true);
		/* Outside the extents: untouched. */
		for (uint64_t o = 30 * BB; o < 100 * BB; o++)
			if (got[o] != 0xa5)
				fail_msg("byte %llu outside the extents changed", (unsigned long long)o);
	}
	free(got);
	free(c);
}

static void test_writer_bounds(void **state)
{
	char dst[4200];
	struct dmr_xfer_writer *w = NULL;
	uint8_t buf[4096];

	(void)state;
	if (!have_scratch)
		skip();
	memset(buf, 1, sizeof(buf));
	scratch_path(&scr, "dst2", dst, sizeof(dst));
	close(file_make_sparse(dst, 0));
	/* A file grows to the size; a block device would be -ENOSPC. */
	assert_int_equal(dmr_xfer_writer_open(dst, 1 * MiB, 0, &w), 0);
	assert_int_equal(dmr_xfer_write(w, 100, buf, 512), -EINVAL);
	assert_int_equal(dmr_xfer_write(w, 0, buf, 100), -EINVAL);
	assert_int_equal(dmr_xfer_write(w, 1 * MiB - 512, buf, 1024), -EINVAL);
	assert_int_equal(dmr_xfer_write(w, 2 * MiB, buf, 512), -EINVAL);
	assert_int_equal(dmr_xfer_zero(w, 1 * MiB, 512), -EINVAL);
	assert_int_equal(dmr_xfer_zero(w, 512, 1 * MiB), -EINVAL);
	/* Unaligned memory, one sector, the last one: fine. */
	assert_int_equal(dmr_xfer_write(w, 1 * MiB - 512, buf + 1, 512), 0);
	assert_int_equal(dmr_xfer_write(w, 0, buf, 4096), 0);
	assert_int_equal(dmr_xfer_zero(w, 0, 512), 0);
	assert_int_equal(dmr_xfer_writer_close(w), 0);
	assert_int_equal(file_alloc_bytes(dst) > 0, true);
	{
		int fd = open(dst, O_RDONLY | O_CLOEXEC);
		uint8_t r[4096];

		assert_true(fd >= 0);
		assert_int_equal(pread(fd, r, 4096, 0), 4096);
		for (int i = 0; i < 512; i++)
			assert_int_equal(r[i], 0);
		for (int i = 512; i < 4096; i++)
			assert_int_equal(r[i], 1);
		assert_int_equal(pread(fd, r, 512, 1 * MiB - 512), 512);
		assert_int_equal(r[0], 1);
		close(fd);
	}
	/* Abort with writes in flight; NULL is fine. */
	assert_int_equal(dmr_xfer_writer_open(dst, 1 * MiB, 16, &w), 0);
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(dmr_xfer_write(w, (i % 256) * 4096, buf, 4096), 0);
	dmr_xfer_writer_abort(w);
	dmr_xfer_writer_abort(NULL);
	assert_int_equal(dmr_xfer_writer_open(dst, 1000, 0, &w), -EINVAL);
	assert_int_equal(dmr_xfer_writer_open("/nonexistent/x", 4096, 0, &w), -ENOENT);
}

/* Read xext of src (queue depth 4) into a writer on dst; the image the
 * callback saw in img.  Returns the read's result; *ret_close the close's
 * (or the abort's 1). */
static int fault_trip(const char *src, const char *dst, uint8_t *img, int *ret_close)
{
	struct collect *c = calloc(1, sizeof(*c));
	int r;

	assert_non_null(c);
	c->img = img;
	memset(img, 0xee, FILE_BYTES);
	assert_int_equal(dmr_xfer_writer_open(dst, FILE_BYTES, 4, &c->w), 0);
	r = dmr_xfer_read(src, xext, DMR_ARRAY_SIZE(xext), BB, 4, true, on_chunk, c);
	assert_false(c->bad);
	if (r == 0) {
		*ret_close = dmr_xfer_writer_close(c->w);
	} else {
		dmr_xfer_writer_abort(c->w);
		*ret_close = 1;
	}
	free(c);
	return r;
}

static void test_faults(void **state)
{
	char src[4200], dst[4200];
	uint8_t *img = malloc(FILE_BYTES);
	int rc;

	(void)state;
	if (!have_scratch)
		skip();
	assert_non_null(img);
	scratch_path(&scr, "src", src, sizeof(src));
	scratch_path(&scr, "dst", dst, sizeof(dst));
	close(file_make_sparse(dst, FILE_BYTES));

	/* Clean: never more in flight than asked, all reaped. */
	aio_reset();
	assert_int_equal(fault_trip(src, dst, img, &rc), 0);
	assert_int_equal(rc, 0);
	check_img(img, true);
	assert_int_equal(aio.submitted, aio.reaped);
	assert_true(aio.max_inflight <= 8);

	/* A read fails: its error, every other I/O reaped. */
	aio_reset();
	aio.fault = true;
	aio.fault_op = IO_CMD_PREAD;
	aio.fault_nth = 3;
	aio.fault_res = -EIO;
	assert_int_equal(fault_trip(src, dst, img, &rc), -EIO);
	assert_int_equal(aio.submitted, aio.reaped);

	/* A short read is finished, not delivered short. */
	aio_reset();
	aio.fault = true;
	aio.fault_op = IO_CMD_PREAD;
	aio.fault_nth = 2;
	aio.fault_res = 4096;
	assert_int_equal(fault_trip(src, dst, img, &rc), 0);
	assert_int_equal(rc, 0);
	check_img(img, true);
	assert_int_equal(aio.submitted, aio.reaped);
	assert_int_equal(files_diff(src, dst, 3 * BB), -1);

	/* A short read at an odd length cannot go on direct: -EIO. */
	aio_reset();
	aio.fault = true;
	aio.fault_op = IO_CMD_PREAD;
	aio.fault_nth = 2;
	aio.fault_res = 100;
	assert_int_equal(fault_trip(src, dst, img, &rc), -EIO);
	assert_int_equal(aio.submitted, aio.reaped);

	/* The ring full (EAGAIN) and interrupted waits: still exact. */
	aio_reset();
	aio.eagain_at = 3;
	aio.eintr_left = 2;
	assert_int_equal(fault_trip(src, dst, img, &rc), 0);
	assert_int_equal(rc, 0);
	check_img(img, true);
	assert_int_equal(aio.submitted, aio.reaped);

	/* A write fails: a later write or the close says so. */
	aio_reset();
	aio.fault = true;
	aio.fault_op = IO_CMD_PWRITE;
	aio.fault_nth = 2;
	aio.fault_res = -ENOSPC;
	rc = 0;
	{
		int r = fault_trip(src, dst, img, &rc);

		assert_true(r == -ENOSPC || (r == 0 && rc == -ENOSPC));
	}
	assert_int_equal(aio.submitted, aio.reaped);

	/* A short write: -EIO. */
	aio_reset();
	aio.fault = true;
	aio.fault_op = IO_CMD_PWRITE;
	aio.fault_nth = 1;
	aio.fault_res = 512;
	{
		int r = fault_trip(src, dst, img, &rc);

		assert_true(r == -EIO || (r == 0 && rc == -EIO));
	}
	assert_int_equal(aio.submitted, aio.reaped);

	/* The writer's first error sticks. */
	{
		struct dmr_xfer_writer *w = NULL;
		uint8_t buf[4096] = { 1 };

		aio_reset();
		aio.fault = true;
	aio.fault_op = IO_CMD_PWRITE;
		aio.fault_nth = 1;
		aio.fault_res = -EIO;
		assert_int_equal(dmr_xfer_writer_open(dst, FILE_BYTES, 1, &w), 0);
		assert_int_equal(dmr_xfer_write(w, 0, buf, 4096), 0);
		/* One slot: this write waits for the first, and sees it fail. */
		assert_int_equal(dmr_xfer_write(w, 4096, buf, 4096), -EIO);
		assert_int_equal(dmr_xfer_zero(w, 0, 4096), -EIO);
		assert_int_equal(dmr_xfer_writer_close(w), -EIO);
		assert_int_equal(aio.submitted, aio.reaped);
	}
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dump_literal),
		cmocka_unit_test(test_dump_bounds),
		cmocka_unit_test(test_delta_literal),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_dump_malformed),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_parse_ids),
		cmocka_unit_test(test_thin_ids_tool),
		cmocka_unit_test_setup_teardown(test_extents_tools, tools_setup, tools_teardown),
		cmocka_unit_test_setup_teardown(test_extents_tool_misbehaves, tools_setup,
						tools_teardown),
		cmocka_unit_test_setup_teardown(test_release_stale, tools_setup, tools_teardown),
		cmocka_unit_test_setup_teardown(test_read, files_setup, files_teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, files_setup, files_teardown),
		cmocka_unit_test_setup_teardown(test_writer_bounds, files_setup, files_teardown),
		cmocka_unit_test_setup_teardown(test_faults, files_setup, files_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
