/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/json.h - parsing JSON that comes from outside (state files, job
 * records): one object, the whole text, valid UTF-8.
 *
 * json-c's own JSON_TOKENER_VALIDATE_UTF8 is set too, but it lets overlong
 * forms and surrogates through, so the text is checked first with
 * dmr_utf8_valid (common/util.h).
 */
#ifndef DMR_COMMON_JSON_H
#define DMR_COMMON_JSON_H

#include <json-c/json.h>
#include <stddef.h>

/* Parse buf[0..len) as one JSON object, nothing but whitespace after it.
 * -EILSEQ: not UTF-8; -EBADMSG: not JSON, or not one object; -ENOMEM. */
int dmr_json_parse_object(const char *buf, size_t len, struct json_object **ret_obj);

#endif
