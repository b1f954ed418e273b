/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/core/agent.h - the agent's process-wide context, shared by the server,
 * the method handlers and the job workers.
 */
#ifndef DMR_AGENT_AGENT_H
#define DMR_AGENT_AGENT_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct dmr_jobs;
struct dmr_registry;

struct dmr_agent {
	char *state_dir;   /* --state-dir, default /var/lib/dmrep */
	char *socket_path; /* --socket, default /run/dmrep/dmrepd.sock */
	char *hook_dir;    /* --hook-dir, default /etc/dmrep/failover.d */
	bool have_group;   /* --group given */
	gid_t group;       /* members may call mutating methods */
	/* The control socket (agent/rpc/server.h); 0: the defaults there. */
	uint64_t idle_timeout_usec;   /* --idle-timeout */
	unsigned max_clients_per_uid; /* --max-clients-per-uid */
	struct dmr_jobs *jobs;
	struct dmr_registry *reg; /* VMs, pool, points (agent/store/registry.h) */
	volatile sig_atomic_t stopping;
};

#endif
