/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/log.h - leveled logging to stderr.
 *
 * Library code (dm/, snapshots/) logs at debug level only; the agent logs
 * each error once, where it is handled.
 */
#ifndef DMR_COMMON_LOG_H
#define DMR_COMMON_LOG_H

#include <errno.h>

#include "common/util.h"

enum dmr_log_level {
	DMR_LOG_ERR = 3,
	DMR_LOG_WARNING = 4,
	DMR_LOG_NOTICE = 5,
	DMR_LOG_INFO = 6,
	DMR_LOG_DEBUG = 7,
};

void dmr_log_set_level(enum dmr_log_level level);
enum dmr_log_level dmr_log_get_level(void);
/* "err", "warning", "notice", "info", "debug" (or 3..7); -EINVAL otherwise. */
int dmr_log_parse_level(const char *s, enum dmr_log_level *ret_level);
/* Prefix every line with this identifier ("dmrepd"); NULL for none. */
void dmr_log_set_ident(const char *ident);

void dmr_log_printf(enum dmr_log_level level, const char *file, int line,
		    const char *fmt, ...) _printf_(4, 5);

#define dmr_log(level, ...)                                                    \
	do {                                                                   \
		if ((level) <= dmr_log_get_level())                            \
			dmr_log_printf(level, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
#define log_debug(...) dmr_log(DMR_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) dmr_log(DMR_LOG_INFO, __VA_ARGS__)
#define log_notice(...) dmr_log(DMR_LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) dmr_log(DMR_LOG_WARNING, __VA_ARGS__)
#define log_error(...) dmr_log(DMR_LOG_ERR, __VA_ARGS__)

/* Log at level and return r (a negative errno), for one-line error returns.
 * As in systemd, "%m" in the format prints strerror(-r): errno is set to -r
 * for the call (and left so). */
#define log_full_errno(level, r, ...)                                          \
	({                                                                     \
		int _e = (r);                                                  \
		errno = _e < 0 ? -_e : _e;                                     \
		dmr_log(level, __VA_ARGS__);                                   \
		_e;                                                            \
	})
#define log_debug_errno(r, ...) log_full_errno(DMR_LOG_DEBUG, r, __VA_ARGS__)
#define log_info_errno(r, ...) log_full_errno(DMR_LOG_INFO, r, __VA_ARGS__)
#define log_notice_errno(r, ...) log_full_errno(DMR_LOG_NOTICE, r, __VA_ARGS__)
#define log_warning_errno(r, ...) log_full_errno(DMR_LOG_WARNING, r, __VA_ARGS__)
#define log_error_errno(r, ...) log_full_errno(DMR_LOG_ERR, r, __VA_ARGS__)

#endif
