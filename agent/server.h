/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/server.h - the control socket: a Unix stream socket carrying one
 * JSON object per line in each direction (docs/protocol.md).
 *
 * One thread runs an epoll loop over the listening socket, every client and
 * a stop descriptor.  Clients are non-blocking with their own input and
 * output buffers, so a slow or stuck client never blocks another.  Handlers
 * run on the loop thread (long work is a job on its own thread).  The
 * caller's identity comes from SO_PEERCRED and SO_PEERGROUPS: root and
 * members of --group are privileged; anyone else may call only the read
 * methods and gets 32769 for the rest.  What a member may name is then
 * judged by agent/authz.h (dmr_authz_method here, the paths in handlers).
 */
#ifndef DMR_AGENT_SERVER_H
#define DMR_AGENT_SERVER_H

#include "agent/agent.h"
#include "agent/method.h"

/* Largest request line; a longer one gets 32773 and the client is closed. */
#define DMR_SERVER_MAX_REQUEST (1u << 20)
/* A client that lets this much output pile up unread is dropped. */
#define DMR_SERVER_MAX_PENDING (8u << 20)
#define DMR_SERVER_MAX_CLIENTS 256

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
 * Returns 0, or a negative errno if the loop itself failed. */
int dmr_server_run(struct dmr_server *s, int stop_fd);

/* Close every client and the socket, and unlink it. NULL is fine. */
void dmr_server_free(struct dmr_server *s);

#endif
