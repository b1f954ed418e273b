/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Status line parsers.  Formats, from the kernel's
 * Documentation/admin-guide/device-mapper/:
 *
 *   snapshot:  <sectors_allocated>/<total_sectors> <metadata_sectors>
 *              | "Invalid" | "Overflow" | "Merge failed"
 *   thin-pool: <transaction id> <used metadata blocks>/<total metadata blocks>
 *              <used data blocks>/<total data blocks> <held metadata root>
 *              ro|rw|out_of_data_space [no_]discard_passdown
 *              [error|queue]_if_no_space needs_check|- [metadata_low_watermark]
 *              | "Fail"
 *   thin:      <nr mapped sectors> <highest mapped sector> (highest may be
 *              "-" when nothing is mapped) | "Fail"
 *
 * Every parser walks the words of a private copy with a bounded tokenizer
 * and requires each word in turn: anything missing, extra or malformed is
 * -EINVAL and *ret is left untouched.
 */
#include "dm/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_MAX 4096

/* Unsigned decimal, the whole word, no sign, no overflow. */
static int word_u64(const char *w, uint64_t *ret)
{
	uint64_t v = 0;

	if (!w || !*w)
		return -EINVAL;
	for (const char *p = w; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*ret = v;
	return 0;
}

/* "A/B" */
static int word_pair(const char *w, uint64_t *a, uint64_t *b)
{
	char buf[64];
	const char *slash;
	size_t n;

	if (!w || !(slash = strchr(w, '/')))
		return -EINVAL;
	n = (size_t)(slash - w);
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, w, n);
	buf[n] = '\0';
	if (word_u64(buf, a) < 0 || word_u64(slash + 1, b) < 0)
		return -EINVAL;
	return 0;
}

struct words {
	char buf[STATUS_MAX];
	char *w[16];
	size_t n;
};

/* Split on single or repeated spaces; -EINVAL if too long or too many. */
static int split(const char *params, struct words *ws)
{
	size_t len;
	char *p, *save = NULL;

	if (!params)
		return -EINVAL;
	len = strnlen(params, STATUS_MAX);
	if (len >= STATUS_MAX)
		return -EINVAL;
	memcpy(ws->buf, params, len + 1);
	ws->n = 0;
	for (p = strtok_r(ws->buf, " \t\n", &save); p; p = strtok_r(NULL, " \t\n", &save)) {
		if (ws->n == sizeof(ws->w) / sizeof(ws->w[0]))
			return -EINVAL;
		ws->w[ws->n++] = p;
	}
	return 0;
}

int dmr_status_parse_snapshot(const char *params, struct dmr_snapshot_status *ret)
{
	struct dmr_snapshot_status st = { 0 };
	struct words ws;

	if (!ret || split(params, &ws) < 0)
		return -EINVAL;
	if (ws.n == 1 && strcmp(ws.w[0], "Invalid") == 0)
		st.invalid = true;
	else if (ws.n == 1 && strcmp(ws.w[0], "Overflow") == 0)
		st.overflow = true;
	else if (ws.n == 2 && strcmp(ws.w[0], "Merge") == 0 && strcmp(ws.w[1], "failed") == 0)
		st.merge_failed = true;
	else if (ws.n == 2) {
		if (word_pair(ws.w[0], &st.used_sectors, &st.total_sectors) < 0 ||
		    word_u64(ws.w[1], &st.metadata_sectors) < 0 ||
		    st.used_sectors > st.total_sectors || st.metadata_sectors > st.used_sectors)
			return -EINVAL;
	} else
		return -EINVAL;
	*ret = st;
	return 0;
}

int dmr_status_parse_thin_pool(const char *params, struct dmr_thin_pool_status *ret)
{
	struct dmr_thin_pool_status st = { 0 };
	struct words ws;
	const char *w;

	if (!ret || split(params, &ws) < 0)
		return -EINVAL;
	if (ws.n == 1 && strcmp(ws.w[0], "Fail") == 0) {
		st.fail = true;
		*ret = st;
		return 0;
	}
	/* pool_status() prints "Error" when it cannot read the metadata (the
	 * first status after a metadata device failed, before "Fail"). */
	if (ws.n == 1 && strcmp(ws.w[0], "Error") == 0) {
		st.fail = st.error = true;
		*ret = st;
		return 0;
	}
	if (ws.n < 8 || ws.n > 9)
		return -EINVAL;
	if (word_u64(ws.w[0], &st.transaction_id) < 0 ||
	    word_pair(ws.w[1], &st.used_meta_blocks, &st.total_meta_blocks) < 0 ||
	    word_pair(ws.w[2], &st.used_data_blocks, &st.total_data_blocks) < 0)
		return -EINVAL;
	w = ws.w[3];
	if (strcmp(w, "-") != 0) {
		if (word_u64(w, &st.held_root) < 0)
			return -EINVAL;
		st.has_held_root = true;
	}
	w = ws.w[4];
	if (strcmp(w, "ro") == 0)
		st.read_only = true;
	else if (strcmp(w, "out_of_data_space") == 0)
		st.out_of_data_space = true;
	else if (strcmp(w, "rw") != 0)
		return -EINVAL;
	w = ws.w[5];
	if (strcmp(w, "discard_passdown") == 0)
		st.discard_passdown = true;
	else if (strcmp(w, "no_discard_passdown") != 0)
		return -EINVAL;
	w = ws.w[6];
	if (strcmp(w, "error_if_no_space") == 0)
		st.no_space = DMR_NO_SPACE_ERROR;
	else if (strcmp(w, "queue_if_no_space") == 0)
		st.no_space = DMR_NO_SPACE_QUEUE;
	else
		return -EINVAL;
	w = ws.w[7];
	if (strcmp(w, "needs_check") == 0)
		st.needs_check = true;
	else if (strcmp(w, "-") != 0)
		return -EINVAL;
	if (ws.n == 9 && word_u64(ws.w[8], &st.metadata_low_watermark) < 0)
		return -EINVAL;
	if (st.used_meta_blocks > st.total_meta_blocks || st.used_data_blocks > st.total_data_blocks)
		return -EINVAL;
	*ret = st;
	return 0;
}

enum dmr_pool_health dmr_status_thin_pool_health(const struct dmr_thin_pool_status *st)
{
	if (!st || st->fail)
		return DMR_POOL_FAIL;
	if ((st->needs_check || st->read_only) && st->total_meta_blocks &&
	    st->used_meta_blocks >= st->total_meta_blocks)
		return DMR_POOL_OUT_OF_METADATA_SPACE;
	if (st->needs_check)
		return DMR_POOL_NEEDS_CHECK;
	if (st->read_only)
		return DMR_POOL_READ_ONLY;
	if (st->out_of_data_space)
		return DMR_POOL_OUT_OF_DATA_SPACE;
	return DMR_POOL_OK;
}

const char *dmr_status_thin_pool_health_name(enum dmr_pool_health h)
{
	switch (h) {
	case DMR_POOL_OK:
		return "ok";
	case DMR_POOL_FAIL:
		return "fail";
	case DMR_POOL_NEEDS_CHECK:
		return "needs_check";
	case DMR_POOL_READ_ONLY:
		return "read_only";
	case DMR_POOL_OUT_OF_DATA_SPACE:
		return "out_of_data_space";
	case DMR_POOL_OUT_OF_METADATA_SPACE:
		return "out_of_metadata_space";
	}
	return "fail";
}

int dmr_status_parse_thin(const char *params, struct dmr_thin_status *ret)
{
	struct dmr_thin_status st = { 0 };
	struct words ws;

	if (!ret || split(params, &ws) < 0)
		return -EINVAL;
	if (ws.n == 1 && strcmp(ws.w[0], "Fail") == 0) {
		st.fail = true;
		*ret = st;
		return 0;
	}
	if (ws.n != 2 || word_u64(ws.w[0], &st.mapped_sectors) < 0)
		return -EINVAL;
	if (strcmp(ws.w[1], "-") != 0) {
		if (word_u64(ws.w[1], &st.highest_mapped_sector) < 0)
			return -EINVAL;
		st.has_highest = true;
	}
	*ret = st;
	return 0;
}
