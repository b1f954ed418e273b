/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmrepd - the dmrep agent.  Owns the thin pool, the VMs' stable devices
 * and the replication points; serves the control socket.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/core/agent.h"
#include "agent/core/authz.h"
#include "agent/guest/hooks.h"
#include "agent/engine/job.h"
#include "agent/engine/monitor.h"
#include "agent/engine/recovery.h"
#include "agent/engine/replica.h"
#include "agent/engine/replicate.h"
#include "agent/store/registry.h"
#include "agent/rpc/server.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "dm/dm.h"

#define DEFAULT_SOCKET "/run/dmrep/dmrepd.sock"
#define DEFAULT_STATE "/var/lib/dmrep"
#define DMREP_VERSION "0.1"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: dmrepd [OPTION]...\n"
		"The dmrep agent: owns a device-mapper thin pool, the VMs' stable devices and\n"
		"their replication points, and serves the control socket (docs/protocol.md).\n"
		"Runs as root, in the foreground.  Under systemd (Type=notify) it reports READY=1\n"
		"only once every device is back and interrupted operations are recovered, so\n"
		"a hypervisor unit ordered After=dmrepd.service finds /dev/dmrep/VM/DISK.\n"
		"\n"
		"  --socket PATH       control socket (default " DEFAULT_SOCKET ");\n"
		"                      its directory is created 0750 if missing, the socket is 0660;\n"
		"                      an existing directory must be root's, writable by no one\n"
		"                      else, and is given to --group if others may not search it\n"
		"  --state-dir DIR     durable state: pool.json, vms/, jobs/ (default " DEFAULT_STATE ")\n"
		"  --hook-dir DIR      failover hooks, run after a failover or test failover with\n"
		"                      the VM's network settings in the environment (default\n"
		"                      " DMR_HOOK_DIR_DEFAULT "; see docs/protocol.md)\n"
		"  --monitor-interval SECONDS\n"
		"                      how often to read the pool's and the classic COW stores'\n"
		"                      use between calls: a warning at 80%%, an error if the pool\n"
		"                      leaves read-write mode, overflowed points marked invalid\n"
		"                      (default %d; 0: only when points are listed or used)\n"
		"  --group NAME        members of this group may use VMs and points; other users\n"
		"                      who can reach the socket may only read (32769 otherwise)\n"
		"  --idle-timeout SECONDS\n"
		"                      close a connection that sent no complete request and read\n"
		"                      no reply for this long, unless a request of it runs or\n"
		"                      waits for a job (default %d; 1-86400)\n"
		"  --max-clients-per-uid N\n"
		"                      connections one user may hold (default %d; 1-%d); all\n"
		"                      users but root together hold at most %d, root is never\n"
		"                      refused below %d; a connection over a limit gets one line,\n"
		"                      32777 and why, and is closed\n"
		"  --image-dir DIR     disk image files a member may name, or create with\n"
		"                      NAME=PATH:SIZE (repeatable; the resolved path must be inside)\n"
		"  --socket-dir DIR    QMP and guest-agent sockets a member may name (repeatable)\n"
		"  --shim-dir DIR      exec shims a member may name (repeatable; the executable and\n"
		"                      every directory above it owned by root, writable by no one else)\n"
		"  --foreground        log to stderr; stop cleanly on SIGTERM or SIGINT, letting\n"
		"                      any operation in flight finish or roll back (the default:\n"
		"                      dmrepd never forks)\n"
		"  --log-level LEVEL   error, warning, notice, info (default) or debug\n"
		"  -h, --help          this help\n"
		"  --version           the version\n"
		"\n"
		"Who may do what.  The socket is 0660, group --group.  root may do everything.\n"
		"A member of --group is trusted with the VMs and points: list, show, add and\n"
		"remove VMs, retention, points, failovers, jobs.  It is not trusted with root:\n"
		"whatever makes the agent open, create, connect to or run something a member\n"
		"names is limited to the directories above (none given: root-only), and pool\n"
		"create, network settings (the hooks run as root), cow_devices and force on\n"
		"points are root-only.  Paths are opened once and judged by what they resolve\n"
		"to; refusals are 32769 naming the rule.  Anyone else may only read.\n"
		"\n"
		"Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on a usage error.\n",
		DMR_MONITOR_INTERVAL_DEFAULT, DMR_SERVER_IDLE_SEC, DMR_SERVER_PER_UID,
		DMR_SERVER_MAX_CLIENTS, DMR_SERVER_MAX_CLIENTS, DMR_SERVER_MAX_CONNECTIONS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "group", required_argument, NULL, 'g' },
		{ "hook-dir", required_argument, NULL, 'H' },
		{ "image-dir", required_argument, NULL, 'I' },
		{ "shim-dir", required_argument, NULL, 'S' },
		{ "socket-dir", required_argument, NULL, 'Q' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "monitor-interval", required_argument, NULL, 'M' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "idle-timeout", required_argument, NULL, 'T' },
		{ "max-clients-per-uid", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct dmr_agent a = { 0 };
	struct dmr_server *srv = NULL;
	struct dmr_monitor *mon = NULL;
	struct dmr_replicator *repl = NULL;
	unsigned monitor_s = DMR_MONITOR_INTERVAL_DEFAULT;
	enum dmr_log_level level = DMR_LOG_INFO;
	const char *sock = DEFAULT_SOCKET, *state = DEFAULT_STATE, *group = NULL;
	const char *hook_dir = DMR_HOOK_DIR_DEFAULT;
	sigset_t mask;
	int sfd = -1, c, r, status = 1;

	dmr_log_set_ident("dmrepd");
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'd':
			state = optarg;
			break;
		case 'g':
			group = optarg;
			break;
		case 'H':
			hook_dir = optarg;
			break;
		case 'I':
		case 'S':
		case 'Q':
			r = dmr_authz_add_dir(dmr_authz_conf(),
					      c == 'I' ? DMR_AUTHZ_IMAGE :
					      c == 'S' ? DMR_AUTHZ_SHIM : DMR_AUTHZ_SOCKET, optarg);
			if (r < 0) {
				fprintf(stderr, "dmrepd: bad directory '%s': %s\n", optarg, strerror(-r));
				return 2;
			}
			break;
		case 'f':
			break;
		case 'M': {
			uint64_t v;

			/* A day at most: a longer watch is no watch. */
			if (dmr_parse_u64(optarg, &v) < 0 || v > 86400) {
				fprintf(stderr, "dmrepd: bad --monitor-interval '%s' (seconds, 0-86400)\n",
					optarg);
				return 2;
			}
			monitor_s = (unsigned)v;
			break;
		}
		case 'T': {
			uint64_t v;

			if (dmr_parse_u64(optarg, &v) < 0 || v < 1 || v > 86400) {
				fprintf(stderr, "dmrepd: bad --idle-timeout '%s' (seconds, 1-86400)\n",
					optarg);
				return 2;
			}
			a.idle_timeout_usec = v * 1000000;
			break;
		}
		case 'U': {
			uint64_t v;

			if (dmr_parse_u64(optarg, &v) < 0 || v < 1 || v > DMR_SERVER_MAX_CLIENTS) {
				fprintf(stderr, "dmrepd: bad --max-clients-per-uid '%s' (1-%d)\n", optarg,
					DMR_SERVER_MAX_CLIENTS);
				return 2;
			}
			a.max_clients_per_uid = (unsigned)v;
			break;
		}
		case 'l':
			if (dmr_log_parse_level(optarg, &level) < 0) {
				fprintf(stderr, "dmrepd: bad --log-level '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("dmrepd " DMREP_VERSION "\n");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dmrepd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (sock[0] != '/' || state[0] != '/' || hook_dir[0] != '/') {
		fprintf(stderr, "dmrepd: --socket, --state-dir and --hook-dir must be absolute paths\n");
		return 2;
	}
	dmr_log_set_level(level);
	if (geteuid() != 0) {
		log_error("dmrepd must run as root (it drives device-mapper)");
		return 1;
	}
	if (group) {
		struct group *gr = getgrnam(group);

		if (!gr) {
			log_error("no group '%s'", group);
			return 2;
		}
		a.have_group = true;
		a.group = gr->gr_gid;
	}
	a.state_dir = strdup(state);
	a.socket_path = strdup(sock);
	a.hook_dir = strdup(hook_dir);
	if (!a.state_dir || !a.socket_path || !a.hook_dir) {
		log_error("out of memory");
		goto out;
	}
	/* Before anything can fork (hooks, shims): they must not inherit it. */
	r = dmr_notify_init();
	if (r < 0)
		log_warning("NOTIFY_SOCKET unusable (%s): no readiness notification",
			    strerror(-r));
	/* One malloc arena: glibc gives threads arenas of their own, up to
	 * eight per CPU, each a 64 MiB mapping that MCL_FUTURE counts as
	 * locked; the agent's threads allocate little. */
	(void)mallopt(M_ARENA_MAX, 1);
	/* The failover window must not wait on page faults.  Not MCL_ONFAULT:
	 * a page first touched inside the window (a thread's stack, a
	 * calloc'ed ioctl buffer) would fault there.  What this costs stays
	 * bounded because job threads are joined as they end and their
	 * stacks are small (job.c). */
	if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		log_notice("mlockall: %s (the failover window may page)", strerror(errno));

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Job threads inherit the mask: only the loop sees these signals. */
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		log_error("signals: %s", strerror(errno));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);

	r = dmr_mkdir_p(state, 0700);
	if (r < 0) {
		log_error("state directory %s: %s", state, strerror(-r));
		goto out;
	}
	r = dmr_jobs_open(&a);
	if (r < 0) {
		log_error("jobs in %s/jobs: %s", state, strerror(-r));
		goto out;
	}
	/* The catalog, then the pool and the recovery of interrupted
	 * operations, before anyone can call in. */
	r = dmr_registry_open(&a);
	if (r == 0)
		r = dmr_recovery_run(&a);
	/* What a send killed mid-way left: the pool's metadata snapshot,
	 * a point's read-only device. */
	if (r == 0)
		dmr_replica_recover(&a);
	if (r < 0) {
		log_error("state in %s: %s", state, strerror(-r));
		goto out_jobs;
	}
	r = dmr_server_open(&a, &srv);
	if (r < 0) {
		log_error("socket %s: %s%s", sock, strerror(-r),
			  r == -EADDRINUSE ? " (another dmrepd answers there)" : "");
		goto out_reg;
	}
	if (monitor_s && (r = dmr_monitor_start(&a, monitor_s, &mon)) < 0)
		log_error("cannot start the space monitor: %s (use is read only when points "
			  "are listed or used)", strerror(-r));
	/* Continuous replication's cycles, once recovery is done: a cycle
	 * takes points and reads them. */
	if ((r = dmr_replicate_start(&a, &repl)) < 0)
		log_error("cannot start the replication scheduler: %s (no cycle runs but with "
			  "vm replicate --now)", strerror(-r));
	log_notice("ready: socket %s, state %s", sock, state);
	r = dmr_notify("READY=1");
	if (r < 0)
		log_warning("cannot tell the service manager we are ready: %s", strerror(-r));
	r = dmr_server_run(srv, sfd);
	if (r < 0)
		log_error("event loop: %s", strerror(-r));
	else
		status = 0;
	log_notice("stopping: waiting for running jobs");
	(void)dmr_notify("STOPPING=1");
	/* No new callers from here; jobs in flight finish or roll back. */
	dmr_server_free(srv);
	dmr_monitor_stop(mon);
	/* No cycle starts from here; one in flight sees a.stopping and
	 * kills its COMMAND. */
	dmr_replicate_stop(repl);
	a.stopping = 1;
out_reg:
	/* Jobs first: they use the catalog. */
	dmr_jobs_close(&a);
	dmr_registry_close(&a);
	goto out;
out_jobs:
	dmr_jobs_close(&a);
out:
	if (sfd >= 0)
		close(sfd);
	free(a.state_dir);
	free(a.socket_path);
	free(a.hook_dir);
	dmr_notify_done();
	dmr_authz_clear(dmr_authz_conf());
	return status;
}
