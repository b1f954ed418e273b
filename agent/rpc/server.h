/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/rpc/server.h - the control socket: a Unix stream socket carrying one
 * JSON object per line in each direction (docs/protocol.md).
 *
 * One thread runs an epoll loop over the listening socket, every client and
 * a stop descriptor.  Clients are non-blocking with their own input and
 * output buffers, so a slow or stuck client never blocks another.  Only
 * handlers that read memory run on the loop thread; mutating methods run on
 * one writer thread and slow reads on reader threads (the threading model is
 * at the top of server.c), and long work is a job on its own thread.  The
 * caller's identity comes from SO_PEERCRED and SO_PEERGROUPS: root and
 * members of --group are privileged; anyone else may call only the read
 * methods and gets 32769 for the rest.  What a member may name is then
 * judged by agent/core/authz.h (dmr_authz_method here, the paths in handlers).
 *
 * Connections: every uid but root may hold at most max_clients_per_uid
 * (default DMR_SERVER_PER_UID), and all of them together at most
 * DMR_SERVER_MAX_CLIENTS; root is not counted against those, only against
 * the hard limit DMR_SERVER_MAX_CONNECTIONS, so it always finds a slot.  A
 * connection over a limit gets one line, {"id": null, "return": 32777,
 * "error": "..."}, and is closed.  A client that is idle (no request with a
 * worker, no long poll) for idle_timeout_usec (default
 * DMR_SERVER_IDLE_SEC) since its last complete request, reply or drained
 * output is closed: half a line or unread replies do not count as activity.
 */
#ifndef DMR_AGENT_SERVER_H
#define DMR_AGENT_SERVER_H

#include "agent/core/agent.h"
#include "agent/rpc/method.h"

/* Largest request line; a longer one gets 32773 and the client is closed. */
#define DMR_SERVER_MAX_REQUEST (1u << 20)
/* A client that lets this much output pile up unread is dropped. */
#define DMR_SERVER_MAX_PENDING (8u << 20)
/* Connections of every uid but root, together. */
#define DMR_SERVER_MAX_CLIENTS 256
/* Every connection, root's included: root has at least 256 of its own. */
#define DMR_SERVER_MAX_CONNECTIONS 512
#define DMR_SERVER_PER_UID 16
#define DMR_SERVER_IDLE_SEC 60
/* Threads for the slow read methods (struct dmr_method.slow). */
#define DMR_SERVER_READERS 2
/* How often a long poll (DMR_RC_AGAIN) asks its handler again. */
#define DMR_SERVER_POLL_MS 50

struct dmr_server;

/*
 * Make the socket's directory (0750, group --group, if it does not exist)
 * and the socket (0660, group --group) at a->socket_path, and listen.  A
 * stale socket is replaced; one that another process answers on is not
 * (-EADDRINUSE).
 */
int dmr_server_open(struct dmr_agent *a, struct dmr_server **ret_server);

/* Tests: answer from this method table instead of dmr_methods. */
void dmr_server_set_methods(struct dmr_server *s, const struct dmr_method *methods);

/* Serve until stop_fd (may be -1) becomes readable or a->stopping is set.
 * Starts the worker threads and, before it returns, waits for the requests
 * they run (queued ones are dropped, their clients closed).  Returns 0, or a
 * negative errno if the loop itself failed. */
int dmr_server_run(struct dmr_server *s, int stop_fd);

/* Close every client and the socket, and unlink it. NULL is fine. */
void dmr_server_free(struct dmr_server *s);

#endif
