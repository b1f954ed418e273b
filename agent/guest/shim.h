/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/shim.h - the hypervisor shim: how the agent asks the hypervisor
 * running a VM for the guest's state and pauses, resumes or resets it.
 *
 * Kinds:
 *   "qmp"   target is QEMU's QMP socket path.  pause = stop (QEMU drains
 *           and flushes its own block I/O before answering), resume = cont,
 *           reset = system_reset, status = query-status.  The shim
 *           connects on its first operation and keeps that connection for
 *           its lifetime, so the failover engine's status, pause and resume
 *           each cost one command round trip, with nothing formatted or
 *           connected in between.  A kept connection found dead (QEMU
 *           restarted, monitor reset) is reconnected once and the command
 *           retried: all four commands are harmless to repeat.  Since QEMU
 *           serves one QMP client at a time, free the shim as soon as the
 *           operation that needed it is over.
 *   "exec"  target is a command line, run as `COMMAND VERB VM` with VERB
 *           one of pause, resume, reset, status.  COMMAND is split on
 *           blanks into argv; there is no shell and no quoting (put
 *           anything fancier in a script).  Its first word must be an
 *           absolute path (the agent is privileged: no $PATH lookup).  It
 *           runs with stdin on /dev/null, the agent's stderr and
 *           environment, in its own process group, which is killed with
 *           SIGKILL at the timeout.  Exit status 0 is success.  For status,
 *           the first word it prints on stdout (case-insensitive) is the
 *           state: running; paused or suspended; stopped, shutoff or
 *           shutdown (not running); unknown.  The agent must not ignore or
 *           reap SIGCHLD itself, or the exit status is lost.
 *   "libvirt"  target is a libvirt domain (name or UUID) on a URI (default
 *           qemu:///system; agent/guest/libvirt.h): pause = virDomainSuspend,
 *           resume = virDomainResume, reset = virDomainReset, status =
 *           virDomainGetState; the only kind that also freezes and thaws
 *           the guest's filesystems (virDomainFSFreeze / virDomainFSThaw,
 *           through the domain's guest agent channel).  Its calls are not
 *           bounded by the shim's timeout (libvirt takes none).
 *   "none"  the VM does not run under a hypervisor the agent controls:
 *           status is NOT_RUNNING, and pause, resume and reset succeed
 *           without doing anything (there is nothing to pause).
 *
 * Errors (negative errnos, see common/rc.h):
 *   -EHOSTUNREACH  the hypervisor is unreachable or dead (no QMP socket,
 *                  connection refused or closed) or COMMAND cannot be run
 *   -ETIMEDOUT     no answer / COMMAND still running at the timeout
 *   -EIO           QEMU answered with an error, or COMMAND exited non-zero
 *                  or was killed; dmr_shim_last_error() says which
 *   -EPROTO        an answer that could not be understood (also: status
 *                  output that is none of the words above)
 *   -EINVAL        (dmr_shim_new) an unknown kind, a missing target or VM
 *                  name, an exec COMMAND without an absolute path
 *
 * A shim is not thread-safe: one thread uses it at a time.
 */
#ifndef DMR_AGENT_SHIM_H
#define DMR_AGENT_SHIM_H

#include "agent/store/registry.h"
#include "common/util.h"

enum dmr_guest_status {
	DMR_GUEST_UNKNOWN,     /* the hypervisor said something else, e.g. a
				* migration is under way */
	DMR_GUEST_RUNNING,     /* the guest's CPUs run */
	DMR_GUEST_PAUSED,      /* the guest exists but its CPUs are stopped */
	DMR_GUEST_NOT_RUNNING, /* shut off, or no hypervisor to ask */
};
#define DMR_GUEST_SHUTOFF DMR_GUEST_NOT_RUNNING

/* Default timeout of each operation (a QMP stop waits for QEMU's in-flight
 * I/O to drain, which a slow backend can stretch). */
#define DMR_SHIM_TIMEOUT_MS 30000
/* A QMP connect and greeting take microseconds unless another client
 * holds the monitor: waiting longer does not help. */
#define DMR_SHIM_CONNECT_TIMEOUT_MS 5000

struct dmr_shim;

/* kind: "qmp", "exec" or "none"; target: the QMP socket path or the exec
 * COMMAND (ignored for none); vm: the VM's name, passed to COMMAND.
 * Nothing is connected or run here. */
int dmr_shim_new(const char *kind, const char *target, const char *vm, struct dmr_shim **ret);
void dmr_shim_free(struct dmr_shim *s);
DMR_DEFINE_FREEP(struct dmr_shim *, dmr_shim_free)
#define _cleanup_shim_ _cleanup_(dmr_shim_freep)

/* A libvirt domain's shim: uri NULL for the default. */
int dmr_shim_new_libvirt(const char *uri, const char *domain, const char *vm,
			 struct dmr_shim **ret);

/* The shim VM's record names: its QMP socket, else its exec COMMAND, else
 * its libvirt domain, else none.  Caller keeps vm (reg->lock or its busy
 * lock); nothing is connected. */
int dmr_shim_new_for_vm(const struct dmr_vm *vm, struct dmr_shim **ret);
/* Does the VM name a hypervisor (a shim other than none)? */
bool dmr_shim_vm_has_hypervisor(const struct dmr_vm *vm);
/* Does its shim freeze filesystems (libvirt), for application points
 * without a --qga socket of its own? */
bool dmr_shim_vm_can_freeze(const struct dmr_vm *vm);

/* The timeout of each later operation (and, capped at
 * DMR_SHIM_CONNECT_TIMEOUT_MS, of a QMP connect); must be positive. */
int dmr_shim_set_timeout(struct dmr_shim *s, int timeout_ms);

/* "qmp", "exec", "libvirt" or "none". */
const char *dmr_shim_kind(const struct dmr_shim *s);

int dmr_shim_status(struct dmr_shim *s, enum dmr_guest_status *ret_status);
int dmr_shim_pause(struct dmr_shim *s);
int dmr_shim_resume(struct dmr_shim *s);
int dmr_shim_reset(struct dmr_shim *s);
/* Freeze the guest's filesystems (*ret_count: how many) and thaw them:
 * -EOPNOTSUPP for a kind that cannot (all but libvirt). */
int dmr_shim_fsfreeze(struct dmr_shim *s, int *ret_count);
int dmr_shim_fsthaw(struct dmr_shim *s);

/* One line on why the last operation failed (QEMU's error description,
 * COMMAND's exit status, ...); "" after a success. */
const char *dmr_shim_last_error(const struct dmr_shim *s);

/* "running", "paused", "not-running", "unknown". */
const char *dmr_guest_status_to_string(enum dmr_guest_status st);

/* The guest status a QMP run state ("running", "paused", "prelaunch",
 * "shutdown", "inmigrate", ...) stands for. */
enum dmr_guest_status dmr_guest_status_from_qmp(const char *runstate);

#endif
