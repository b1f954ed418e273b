/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/store/repl.h - continuous replication of one VM, as the catalog
 * keeps it: what root set (`vm replicate --to`), what the cycles learned
 * (the last point the replica acknowledged, failures, bytes), and the
 * health derived from both.  Pure data and arithmetic: no process is run
 * and no device touched here (the cycles are agent/engine/replicate.c).
 *
 * Kept in the VM's state file under "replication" (absent in files from
 * before it: replication off), so the settings and the acknowledged base
 * survive a restart and a reboot.  Bounds are checked on load as on set.
 */
#ifndef DMR_AGENT_REPL_H
#define DMR_AGENT_REPL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/uuid.h"

#define DMR_REPL_INTERVAL_MIN 30u
#define DMR_REPL_INTERVAL_DEFAULT 300u
#define DMR_REPL_INTERVAL_MAX 86400u
/* COMMAND is run by /bin/sh -c as root: bounded, no NUL, no newline. */
#define DMR_REPL_TO_MAX 1024u
#define DMR_REPL_ERROR_MAX 512u
/* Failed (or late) cycles in a row before the health is critical. */
#define DMR_REPL_CRITICAL_FAILURES 3u
/* Lag past this many intervals: critical. */
#define DMR_REPL_CRITICAL_INTERVALS 3u

enum dmr_repl_health {
	DMR_REPL_OFF,
	DMR_REPL_OK,
	DMR_REPL_WARNING,
	DMR_REPL_CRITICAL,
	DMR_REPL_PAUSED,
	DMR_REPL_RESYNC_REQUIRED,
};

struct dmr_repl {
	/* Settings (root: vm replicate --to ...).  to == NULL: off. */
	char *to;
	uint32_t interval_sec;
	bool application;       /* --consistency application */
	bool zstd;              /* --compress zstd */
	uint64_t bandwidth;     /* bytes per second, 0: no cap */
	bool paused;

	/* What the cycles learned. */
	char acked_uuid[DMR_UUID_STR_SIZE];     /* "" : none yet (next cycle is full) */
	/* A point whose stream was written whole but whose answer never came
	 * (COMMAND died, the replica's agent died after the point was
	 * durable): the replica may hold it.  The next cycle tries it as its
	 * base; a refusal (32775) clears it and the one after goes from
	 * acked_uuid.  "": none. */
	char sent_uuid[DMR_UUID_STR_SIZE];
	uint64_t acked_usec;    /* that point's creation time (the lag's start) */
	uint64_t last_success_usec;             /* when it was acknowledged, 0: never */
	uint64_t last_attempt_usec;             /* when the last cycle started, 0: never */
	uint64_t set_usec;      /* when --to was set: a first cycle is late after it */
	uint64_t bytes_sent;
	uint32_t failures;      /* cycles in a row that failed */
	bool resync_required;   /* no common point left (the base is gone on a side) */
	/* The receiver refused for good (a promoted replica, 32775): critical
	 * at once, whatever the count, with last_error saying why. */
	bool refused;
	char *last_error;       /* one line, or NULL */
	/* A cycle started and has not ended: saved before COMMAND runs, so
	 * that an agent killed mid-cycle finds it at its next start and
	 * counts it failed (dmr_repl_interrupted). */
	bool cycle_running;
};

/* At start: a cycle that was running when the agent stopped is counted a
 * failure (failures++, last_error says so); true if r changed (save it). */
bool dmr_repl_interrupted(struct dmr_repl *r);

void dmr_repl_clear(struct dmr_repl *r);        /* frees, then all zero (off) */
const char *dmr_repl_health_name(enum dmr_repl_health h);

/* The health at now_usec (CLOCK_REALTIME): off, paused, resync-required,
 * then critical (refused, DMR_REPL_CRITICAL_FAILURES failures in a row, or
 * a lag past DMR_REPL_CRITICAL_INTERVALS intervals), warning (a failure, or
 * a cycle late: no success within two intervals of the last one, or of
 * the setting for the first), else ok.  The lag is the age of the newest
 * acknowledged point. */
enum dmr_repl_health dmr_repl_health(const struct dmr_repl *r, uint64_t now_usec);
/* The lag in seconds at now_usec, or -1 when no point was acknowledged. */
int64_t dmr_repl_lag_sec(const struct dmr_repl *r, uint64_t now_usec);

/* Checks of what a caller (or a state file) sets: 0 or -EINVAL. */
int dmr_repl_to_valid(const char *to);
int dmr_repl_interval_valid(uint64_t sec);

/* The state file's object, and back: -EBADMSG and *ret_field (a static
 * name) for a field of the wrong type or out of bounds; r untouched on
 * failure. */
struct json_object *dmr_repl_state_json(const struct dmr_repl *r);
int dmr_repl_state_parse(struct json_object *o, struct dmr_repl *r, const char **ret_field);

#endif
