/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <strings.h>

static enum dmr_log_level log_level = DMR_LOG_INFO;
static const char *log_ident;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void dmr_log_set_level(enum dmr_log_level level)
{
	log_level = level;
}

enum dmr_log_level dmr_log_get_level(void)
{
	return log_level;
}

void dmr_log_set_ident(const char *ident)
{
	log_ident = ident;
}

int dmr_log_parse_level(const char *s, enum dmr_log_level *ret_level)
{
	static const char *const names[] = {
		[DMR_LOG_ERR] = "err",	     [DMR_LOG_WARNING] = "warning",
		[DMR_LOG_NOTICE] = "notice", [DMR_LOG_INFO] = "info",
		[DMR_LOG_DEBUG] = "debug",
	};

	assert(ret_level);
	if (!s)
		return -EINVAL;
	for (int i = DMR_LOG_ERR; i <= DMR_LOG_DEBUG; i++) {
		if (strcasecmp(s, names[i]) == 0 || (s[0] == '0' + i && !s[1])) {
			*ret_level = (enum dmr_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "error") == 0) {
		*ret_level = DMR_LOG_ERR;
		return 0;
	}
	return -EINVAL;
}

void dmr_log_printf(enum dmr_log_level level, const char *file, int line,
		    const char *fmt, ...)
{
	static const char *const tags[] = {
		[DMR_LOG_ERR] = "error",     [DMR_LOG_WARNING] = "warning",
		[DMR_LOG_NOTICE] = "notice", [DMR_LOG_INFO] = "info",
		[DMR_LOG_DEBUG] = "debug",
	};
	int saved = errno;
	_cleanup_free_ char *msg = NULL, *esc = NULL;
	va_list ap;
	int n;

	/* A message is one record: whatever its arguments carry (a VM name
	 * off the socket, a guest agent's error text, a path from a state
	 * file), a newline, an escape sequence or a byte that is not UTF-8
	 * comes out escaped, so no argument can forge a record ("\n<0>...")
	 * or drive the terminal of whoever reads the log. */
	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		msg = NULL;
	else if ((esc = malloc(4 * (size_t)n + 1)))
		dmr_cescape(esc, 4 * (size_t)n + 1, msg);

	pthread_mutex_lock(&log_lock);
	/* "<N>" prefixes let journald keep the priority of stderr lines. */
	fprintf(stderr, "<%d>", (int)level);
	if (log_ident)
		fprintf(stderr, "%s: ", log_ident);
	fprintf(stderr, "%s: ", tags[level]);
	fputs(esc ? esc : "(out of memory formatting a message)", stderr);
	if (level == DMR_LOG_DEBUG)
		fprintf(stderr, " (%s:%d)", file, line);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
	errno = saved;
}
