/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/guest/libvirt.h - a libvirt domain as the hypervisor of a VM, through
 * libvirt's public C API (never `virsh`, never the domain's private QMP
 * socket, whose use libvirt reports as tainting the domain).  Used by the
 * hypervisor shim's "libvirt" kind (agent/guest/shim.h), which is the only
 * caller.
 *
 *   pause   virDomainSuspend      resume   virDomainResume
 *   reset   virDomainReset        status   virDomainGetState
 *   freeze  virDomainFSFreeze     thaw     virDomainFSThaw (the domain's
 *           guest agent channel, driven by libvirt)
 *
 * The connection is opened on the first operation and kept (one open
 * costs a round trip to the daemon and its authentication); a connection
 * found dead is reopened once and the call retried, as the QMP shim does.
 * The domain is looked up by name, then by UUID.
 *
 * libvirt's calls take no timeout of ours: the daemon's own keepalive (5 s
 * interval, 5 missed) bounds a dead daemon; a live one that does not
 * answer blocks the caller (README says so).  libvirt's default error
 * printing to stderr is silenced once per process; each failure is kept
 * as one line (dmr_libvirt_last_error) and logged at debug.
 *
 * Errors: -EHOSTUNREACH the daemon cannot be reached or the domain does not
 * exist there; -EIO libvirt refused the operation (a domain not running,
 * ...); -EOPNOTSUPP the driver or the domain cannot do it (no guest agent
 * for a freeze); -ENOMEM.  Not thread-safe: one thread at a time.
 */
#ifndef DMR_AGENT_LIBVIRT_H
#define DMR_AGENT_LIBVIRT_H

#include "agent/guest/shim.h"

/* The URI when the VM names none, and what a domain and a URI may be:
 * DMR_VM_LIBVIRT_DEFAULT_URI, dmr_vm_libvirt_valid (agent/store/registry.h). */

struct dmr_libvirt;

/* uri (NULL: the default) and domain copied; nothing is connected. */
int dmr_libvirt_new(const char *uri, const char *domain, struct dmr_libvirt **ret);
void dmr_libvirt_free(struct dmr_libvirt *l);

int dmr_libvirt_status(struct dmr_libvirt *l, enum dmr_guest_status *ret_status);
int dmr_libvirt_suspend(struct dmr_libvirt *l);
int dmr_libvirt_resume(struct dmr_libvirt *l);
int dmr_libvirt_reset(struct dmr_libvirt *l);
/* *ret_count: the filesystems frozen. */
int dmr_libvirt_fsfreeze(struct dmr_libvirt *l, int *ret_count);
int dmr_libvirt_fsthaw(struct dmr_libvirt *l);

/* One line on why the last call failed; "" after a success. */
const char *dmr_libvirt_last_error(const struct dmr_libvirt *l);

/* The guest status a libvirt domain state (VIR_DOMAIN_*) stands for. */
enum dmr_guest_status dmr_guest_status_from_libvirt(int state);

#endif
