/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dm/table.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dmr_table *dmr_table_new(void)
{
	return calloc(1, sizeof(struct dmr_table));
}

void dmr_table_free(struct dmr_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->count; i++)
		free(t->targets[i].params);
	free(t->targets);
	free(t);
}

uint64_t dmr_table_length(const struct dmr_table *t)
{
	if (!t || t->count == 0)
		return 0;
	return t->targets[t->count - 1].start + t->targets[t->count - 1].length;
}

/* A target type is a short word of [a-z0-9_-]. */
static bool type_ok(const char *type)
{
	size_t n = type ? strnlen(type, DMR_TARGET_TYPE_MAX) : 0;

	if (n == 0 || n >= DMR_TARGET_TYPE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((type[i] >= 'a' && type[i] <= 'z') || (type[i] >= '0' && type[i] <= '9') ||
		      type[i] == '-' || type[i] == '_'))
			return false;
	return true;
}

int dmr_table_append_at(struct dmr_table *t, uint64_t start, uint64_t length, const char *type,
			const char *params)
{
	struct dmr_target *tg;
	char *p;

	if (!t || length == 0 || !type_ok(type) || !params || strchr(params, '\n'))
		return -EINVAL;
	if (start > UINT64_MAX - length)
		return -ERANGE;
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 4;
		struct dmr_target *n = realloc(t->targets, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->targets = n;
		t->cap = cap;
	}
	p = strdup(params);
	if (!p)
		return -ENOMEM;
	tg = &t->targets[t->count++];
	tg->start = start;
	tg->length = length;
	snprintf(tg->type, sizeof(tg->type), "%s", type);
	tg->params = p;
	return 0;
}

int dmr_table_append(struct dmr_table *t, uint64_t length, const char *type, const char *params)
{
	if (!t)
		return -EINVAL;
	return dmr_table_append_at(t, dmr_table_length(t), length, type, params);
}

int dmr_table_format(const struct dmr_table *t, char **ret_text)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (!t || !ret_text)
		return -EINVAL;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < t->count; i++)
		fprintf(f, "%" PRIu64 " %" PRIu64 " %s %s\n", t->targets[i].start,
			t->targets[i].length, t->targets[i].type, t->targets[i].params);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return -ENOMEM;
	}
	*ret_text = buf;
	return 0;
}

/* A device argument: a path or MAJ:MIN, one word, not empty. */
static bool dev_ok(const char *dev)
{
	size_t n = dev ? strnlen(dev, 4096) : 0;

	if (n == 0 || n >= 4096)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)dev[i] <= 0x20 || dev[i] == 0x7f)
			return false;
	return true;
}

static int append_fmt(struct dmr_table *t, uint64_t length, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int append_fmt(struct dmr_table *t, uint64_t length, const char *type, const char *fmt, ...)
{
	char *params = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&params, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = dmr_table_append(t, length, type, params);
	free(params);
	return r;
}

int dmr_table_add_linear(struct dmr_table *t, uint64_t length, const char *dev, uint64_t offset)
{
	if (!dev_ok(dev))
		return -EINVAL;
	return append_fmt(t, length, "linear", "%s %" PRIu64, dev, offset);
}

int dmr_table_parse_u64(const char *s, uint64_t max, uint64_t *ret, const char **ret_end)
{
	uint64_t v = 0;
	size_t i = 0;

	assert(s && ret);
	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return -EINVAL;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > max || v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*ret = v;
	if (ret_end)
		*ret_end = s + i;
	return 0;
}

int dmr_table_parse_devno(const char *s, uint32_t *ret_major, uint32_t *ret_minor,
			  const char **ret_end)
{
	uint64_t a, b;
	const char *p;

	assert(s && ret_major && ret_minor);
	if (dmr_table_parse_u64(s, UINT32_MAX, &a, &p) < 0 || *p != ':' ||
	    dmr_table_parse_u64(p + 1, UINT32_MAX, &b, &p) < 0)
		return -EINVAL;
	*ret_major = (uint32_t)a;
	*ret_minor = (uint32_t)b;
	if (ret_end)
		*ret_end = p;
	return 0;
}

int dmr_table_linear_dev(const struct dmr_table *t, uint32_t *ret_major, uint32_t *ret_minor)
{
	uint32_t a, b;
	uint64_t off;
	const char *p;

	assert(ret_major && ret_minor);
	if (!t || t->count != 1 || !t->targets[0].params ||
	    strcmp(t->targets[0].type, "linear") != 0 || t->targets[0].start != 0)
		return -EINVAL;
	/* The kernel prints the device as MAJ:MIN and the offset in sectors. */
	if (dmr_table_parse_devno(t->targets[0].params, &a, &b, &p) < 0 || *p != ' ' ||
	    dmr_table_parse_u64(p + 1, UINT64_MAX, &off, &p) < 0 || *p != '\0' || off != 0)
		return -EINVAL;
	*ret_major = a;
	*ret_minor = b;
	return 0;
}

int dmr_table_add_error(struct dmr_table *t, uint64_t length)
{
	return dmr_table_append(t, length, "error", "");
}

int dmr_table_add_zero(struct dmr_table *t, uint64_t length)
{
	return dmr_table_append(t, length, "zero", "");
}

int dmr_table_add_snapshot_origin(struct dmr_table *t, uint64_t length, const char *origin_dev)
{
	if (!dev_ok(origin_dev))
		return -EINVAL;
	return append_fmt(t, length, "snapshot-origin", "%s", origin_dev);
}

static bool chunk_ok(uint32_t chunk)
{
	return chunk >= 8 && (chunk & (chunk - 1)) == 0;
}

int dmr_table_add_snapshot(struct dmr_table *t, uint64_t length, const char *origin_dev,
			   const char *cow_dev, bool persistent, uint32_t chunk_sectors)
{
	if (!dev_ok(origin_dev) || !dev_ok(cow_dev) || !chunk_ok(chunk_sectors))
		return -EINVAL;
	return append_fmt(t, length, "snapshot", "%s %s %s %" PRIu32, origin_dev, cow_dev,
			  persistent ? "P" : "N", chunk_sectors);
}

int dmr_table_add_snapshot_merge(struct dmr_table *t, uint64_t length, const char *origin_dev,
				 const char *cow_dev, uint32_t chunk_sectors)
{
	if (!dev_ok(origin_dev) || !dev_ok(cow_dev) || !chunk_ok(chunk_sectors))
		return -EINVAL;
	/* A merge needs the persistent exception store. */
	return append_fmt(t, length, "snapshot-merge", "%s %s P %" PRIu32, origin_dev, cow_dev,
			  chunk_sectors);
}

int dmr_table_add_thin_pool(struct dmr_table *t, uint64_t length, const char *meta_dev,
			    const char *data_dev, const struct dmr_thin_pool_opts *opts)
{
	const char *feat[3];
	unsigned nf = 0;

	if (!dev_ok(meta_dev) || !dev_ok(data_dev) || !opts)
		return -EINVAL;
	/* Documentation/admin-guide/device-mapper/thin-provisioning.rst:
	 * 64 KiB .. 1 GiB, a multiple of 64 KiB. */
	if (opts->block_sectors < 128 || opts->block_sectors > 2097152 || opts->block_sectors % 128)
		return -EINVAL;
	if (opts->skip_block_zeroing)
		feat[nf++] = "skip_block_zeroing";
	if (opts->error_if_no_space)
		feat[nf++] = "error_if_no_space";
	if (opts->read_only)
		feat[nf++] = "read_only";
	return append_fmt(t, length, "thin-pool", "%s %s %" PRIu32 " %" PRIu64 " %u%s%s%s%s%s%s",
			  meta_dev, data_dev, opts->block_sectors, opts->low_water_blocks, nf,
			  nf > 0 ? " " : "", nf > 0 ? feat[0] : "", nf > 1 ? " " : "",
			  nf > 1 ? feat[1] : "", nf > 2 ? " " : "", nf > 2 ? feat[2] : "");
}

int dmr_table_add_thin(struct dmr_table *t, uint64_t length, const char *pool_dev, uint32_t dev_id,
		       const char *external_origin)
{
	if (!dev_ok(pool_dev) || dev_id > DMR_THIN_DEV_ID_MAX ||
	    (external_origin && !dev_ok(external_origin)))
		return -EINVAL;
	if (external_origin)
		return append_fmt(t, length, "thin", "%s %" PRIu32 " %s", pool_dev, dev_id,
				  external_origin);
	return append_fmt(t, length, "thin", "%s %" PRIu32, pool_dev, dev_id);
}

int dmr_table_add_flakey(struct dmr_table *t, uint64_t length, const char *dev, uint64_t offset,
			 unsigned up_sec, unsigned down_sec, const char *mode)
{
	if (!dev_ok(dev) || (up_sec == 0 && down_sec == 0))
		return -EINVAL;
	if (!mode)
		return append_fmt(t, length, "flakey", "%s %" PRIu64 " %u %u", dev, offset, up_sec,
				  down_sec);
	if (strcmp(mode, "error_reads") && strcmp(mode, "drop_writes") && strcmp(mode, "error_writes"))
		return -EINVAL;
	return append_fmt(t, length, "flakey", "%s %" PRIu64 " %u %u 1 %s", dev, offset, up_sec,
			  down_sec, mode);
}

int dmr_table_add_delay(struct dmr_table *t, uint64_t length, const char *dev, uint64_t offset,
			unsigned delay_ms)
{
	if (!dev_ok(dev))
		return -EINVAL;
	return append_fmt(t, length, "delay", "%s %" PRIu64 " %u", dev, offset, delay_ms);
}
