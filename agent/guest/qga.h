/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/qga.h - a client for qemu-guest-agent on a Unix stream socket: the
 * host end of the guest's virtio-serial chardev, or a qemu-ga started with
 * `-m unix-listen -p SOCKET`.
 *
 * The guest agent sends no greeting and its replies carry nothing to match
 * them with a request (old agents echo no "id"), and whatever a previous
 * client or a timed-out command left in the channel is still in it.  So
 * the channel is trusted only after a resynchronisation: a 0xFF byte (which
 * makes the agent's JSON parser drop any partial input), then
 * {"execute":"guest-sync-delimited","arguments":{"id":RANDOM}}; the agent
 * answers with a 0xFF byte and {"return": RANDOM}.  Everything before that
 * 0xFF, and any reply after a 0xFF that does not carry RANDOM (the answer
 * to an earlier, abandoned sync), is discarded.  Since the agent handles
 * requests in order, the next line after a successful sync answers the
 * next request.  dmr_qga_connect() syncs; any call after a timeout or a
 * garbled reply syncs again first, within that call's own timeout.
 *
 * Errors (negative errnos, see common/rc.h):
 *   -EHOSTUNREACH  no socket, nobody listening, or the peer closed: there
 *                  is no guest agent to talk to
 *   -ETIMEDOUT     no answer in time: no agent runs in the guest (a
 *                  virtio-serial chardev accepts connections anyway),
 *                  another client holds the agent (qemu-ga in unix-listen
 *                  mode serves one connection at a time, the next one
 *                  waits), or the command itself takes longer
 *   -EPROTO        a reply that is not a JSON object, or has neither
 *                  "return" nor "error", or an unexpected return value
 *   -EIO           the agent answered with {"error": {...}}; the "desc" is
 *                  in dmr_qga_last_error() until the next command
 *
 * A handle is not thread-safe: one thread uses it at a time.  Keep it only
 * as long as needed: while it is open, no one else can reach the agent.
 */
#ifndef DMR_AGENT_QGA_H
#define DMR_AGENT_QGA_H

#include <json-c/json.h>
#include <stdbool.h>

#include "common/util.h"

struct dmr_qga;

/* Connect to the agent's socket and resynchronise, within timeout_ms
 * (negative: no timeout). */
int dmr_qga_connect(const char *path, int timeout_ms, struct dmr_qga **ret_qga);
void dmr_qga_free(struct dmr_qga *g);
DMR_DEFINE_FREEP(struct dmr_qga *, dmr_qga_free)
#define _cleanup_qga_ _cleanup_(dmr_qga_freep)

/* Resynchronise now (guest-sync-delimited with a fresh random id). */
int dmr_qga_sync(struct dmr_qga *g, int timeout_ms);

/*
 * Run command with arguments (a JSON object or NULL; not consumed), after
 * a resynchronisation if the channel is not in step.  On success
 * *ret_return (may be NULL) is a new reference to the "return" value.
 */
int dmr_qga_execute(struct dmr_qga *g, const char *command, struct json_object *arguments,
		    int timeout_ms, struct json_object **ret_return);

/* The "desc" of the error reply behind the last -EIO, else NULL. */
const char *dmr_qga_last_error(const struct dmr_qga *g);

int dmr_qga_ping(struct dmr_qga *g, int timeout_ms);

/* guest-fsfreeze-freeze: *ret_count (may be NULL) is the number of
 * filesystems frozen.  A freeze that fails or times out may have frozen
 * some filesystems: thaw regardless. */
int dmr_qga_fsfreeze_freeze(struct dmr_qga *g, int timeout_ms, int *ret_count);

/* guest-fsfreeze-thaw: *ret_count (may be NULL) is the number thawed. */
int dmr_qga_fsfreeze_thaw(struct dmr_qga *g, int timeout_ms, int *ret_count);

/* guest-fsfreeze-status: true if "frozen", false if "thawed"; -EPROTO for
 * anything else. */
int dmr_qga_fsfreeze_status(struct dmr_qga *g, int timeout_ms, bool *ret_frozen);

#endif
