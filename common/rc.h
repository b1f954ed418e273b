/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common/rc.h - WMI return codes (Msvm_ReplicationService) and their mapping
 * from negative errnos.  These numbers exist only at the API edge: below it
 * every function returns 0 or a negative errno.
 *
 * errno conventions inside dmrep (so the edge maps them right):
 *   -EINVAL      bad parameter                  -> 32773
 *   -ENOENT      VM / point / job / file absent -> 32779
 *   -EBUSY       another operation holds it     -> 32774
 *   -EBADFD      object in the wrong state      -> 32775
 *   -EPERM/-EACCES                              -> 32769
 *   -EOPNOTSUPP                                 -> 32770
 *   -ETIMEDOUT                                  -> 32772
 *   -ENOSPC/-ENOMEM/-EDQUOT                     -> 32778
 *   -EHOSTUNREACH/-ECONNREFUSED/-ENOTCONN       -> 32777 (agent/hypervisor)
 *   anything else                               -> 32768
 */
#ifndef DMR_AGENT_RC_H
#define DMR_AGENT_RC_H

enum dmr_rc {
	DMR_RC_OK = 0,
	DMR_RC_JOB_STARTED = 4096,
	DMR_RC_FAILED = 32768,
	DMR_RC_ACCESS_DENIED = 32769,
	DMR_RC_NOT_SUPPORTED = 32770,
	DMR_RC_STATUS_UNKNOWN = 32771,
	DMR_RC_TIMEOUT = 32772,
	DMR_RC_INVALID_PARAMETER = 32773,
	DMR_RC_IN_USE = 32774,
	DMR_RC_INVALID_STATE = 32775,
	DMR_RC_INCORRECT_TYPE = 32776,
	DMR_RC_UNAVAILABLE = 32777,
	DMR_RC_NO_SPACE = 32778,
	DMR_RC_NOT_FOUND = 32779,
};

#define DMR_E_STATE EBADFD

int dmr_rc_from_errno(int negerrno);
/* Short name ("invalid parameter") for messages. */
const char *dmr_rc_name(int rc);
/* The client's exit status for a return code: 0 for 0 and 4096,
 * rc - 32767 for 32768..32779, 1 for anything else. */
int dmr_rc_exit_status(int rc);

#endif
