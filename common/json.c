/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/json.h"

#include <assert.h>
#include <ctype.h>
#include <limits.h>

#include "common/util.h"

int dmr_json_parse_object(const char *buf, size_t len, struct json_object **ret_obj)
{
	struct json_tokener *tok;
	struct json_object *o;
	size_t end;

	assert(ret_obj);
	if (len > INT_MAX)
		return -EBADMSG;
	if (!dmr_utf8_valid(buf, len))
		return -EILSEQ;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, buf, (int)len);
	end = o && json_tokener_get_error(tok) == json_tokener_success ?
	      json_tokener_get_parse_end(tok) : 0;
	json_tokener_free(tok);
	if (!o)
		return -EBADMSG;
	for (; end < len; end++)
		if (!isspace((unsigned char)buf[end])) {
			json_object_put(o);
			return -EBADMSG;
		}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EBADMSG;
	}
	*ret_obj = o;
	return 0;
}
