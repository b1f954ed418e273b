/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/notify.h - the systemd readiness protocol (sd_notify), without
 * libsystemd: one datagram "READY=1" (or "STOPPING=1", "STATUS=...") to
 * the socket that the service manager names in $NOTIFY_SOCKET.
 *
 * dmrepd runs as Type=notify so that units which open /dev/dmrep/VM/DISK
 * can order themselves After=dmrepd.service and find their devices there:
 * READY=1 is sent only once the catalog is loaded, every device is back and
 * interrupted operations are recovered.
 */
#ifndef DMR_COMMON_NOTIFY_H
#define DMR_COMMON_NOTIFY_H

/*
 * Take $NOTIFY_SOCKET for this process and remove it from the environment,
 * so that children (failover hooks, shim commands) cannot speak for the
 * agent.  Returns 1 if a socket was named, 0 if not, -EINVAL if the name is
 * neither an absolute path nor "@abstract", -ENOMEM.
 */
int dmr_notify_init(void);

/*
 * Send state (e.g. "READY=1") to the socket dmr_notify_init() took.
 * 0 on success or when there is no socket, a negative errno otherwise.
 */
int dmr_notify(const char *state);

/* Forget the socket (for tests). */
void dmr_notify_done(void);

#endif
