/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/store/ident_json.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/util.h"

static void add_str(struct json_object *o, const char *key, const char *s)
{
	if (s)
		json_object_object_add(o, key, json_object_new_string(s));
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	if (v)
		json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

struct json_object *dmr_ident_json(const struct dmr_ident *id)
{
	struct json_object *o = json_object_new_object();
	char devno[32];

	if (!o)
		return NULL;
	json_object_object_add(o, "kind", json_object_new_string(id->is_block ? "block" : "file"));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)id->size_bytes));
	add_u64(o, "inode", id->inode);
	add_str(o, "loop_file", id->loop_file);
	add_u64(o, "loop_inode", id->loop_inode);
	add_str(o, "dm_uuid", id->dm_uuid);
	add_str(o, "wwid", id->wwid);
	add_str(o, "serial", id->serial);
	add_u64(o, "partition", id->part_nr);
	add_u64(o, "partition_start", id->part_start);
	if (id->n_by_id) {
		struct json_object *a = json_object_new_array();

		for (size_t i = 0; a && i < id->n_by_id; i++)
			json_object_array_add(a, json_object_new_string(id->by_id[i]));
		json_object_object_add(o, "by_id", a);
	}
	if (id->is_block) {
		snprintf(devno, sizeof(devno), "%" PRIu32 ":%" PRIu32, id->major, id->minor);
		json_object_object_add(o, "devno", json_object_new_string(devno));
	}
	return o;
}

/* An optional string of at most DMR_IDENT_STR_MAX bytes. */
static int opt_str(struct json_object *o, const char *key, char **ret)
{
	struct json_object *v;
	const char *s;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -EBADMSG;
	s = json_object_get_string(v);
	if (!s[0] || json_object_get_string_len(v) >= DMR_IDENT_STR_MAX ||
	    strlen(s) != (size_t)json_object_get_string_len(v))
		return -EBADMSG;
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static int opt_u64(struct json_object *o, const char *key, uint64_t max, uint64_t *ret)
{
	struct json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EBADMSG;
	n = json_object_get_int64(v);
	if (n < 0 || (uint64_t)n > max)
		return -EBADMSG;
	*ret = (uint64_t)n;
	return 0;
}

int dmr_ident_from_json(struct json_object *o, struct dmr_ident **ret)
{
	_cleanup_free_ char *kind = NULL;
	struct dmr_ident *id;
	struct json_object *a;
	uint64_t part = 0;
	int r;

	if (!json_object_is_type(o, json_type_object))
		return -EBADMSG;
	id = calloc(1, sizeof(*id));
	if (!id)
		return -ENOMEM;
	if ((r = opt_str(o, "kind", &kind)) < 0 ||
	    (r = opt_u64(o, "size_bytes", INT64_MAX, &id->size_bytes)) < 0 ||
	    (r = opt_u64(o, "inode", INT64_MAX, &id->inode)) < 0 ||
	    (r = opt_str(o, "loop_file", &id->loop_file)) < 0 ||
	    (r = opt_u64(o, "loop_inode", INT64_MAX, &id->loop_inode)) < 0 ||
	    (r = opt_str(o, "dm_uuid", &id->dm_uuid)) < 0 ||
	    (r = opt_str(o, "wwid", &id->wwid)) < 0 ||
	    (r = opt_str(o, "serial", &id->serial)) < 0 ||
	    (r = opt_u64(o, "partition", UINT32_MAX, &part)) < 0 ||
	    (r = opt_u64(o, "partition_start", INT64_MAX, &id->part_start)) < 0)
		goto fail;
	r = -EBADMSG;
	if (!dmr_streq(kind, "block") && !dmr_streq(kind, "file"))
		goto fail;
	id->is_block = dmr_streq(kind, "block");
	id->part_nr = (uint32_t)part;
	if (json_object_object_get_ex(o, "by_id", &a) && a) {
		size_t n;

		if (!json_object_is_type(a, json_type_array) ||
		    (n = json_object_array_length(a)) > DMR_IDENT_BY_ID_MAX)
			goto fail;
		id->by_id = calloc(n ? n : 1, sizeof(*id->by_id));
		if (!id->by_id) {
			r = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *v = json_object_array_get_idx(a, i);
			const char *s;

			if (!json_object_is_type(v, json_type_string))
				goto fail;
			s = json_object_get_string(v);
			if (!s[0] || strlen(s) >= DMR_IDENT_STR_MAX || strchr(s, '/'))
				goto fail;
			if (!(id->by_id[i] = strdup(s))) {
				r = -ENOMEM;
				goto fail;
			}
			id->n_by_id = i + 1;
		}
	}
	*ret = id;
	return 0;
fail:
	dmr_ident_free(id);
	return r;
}
