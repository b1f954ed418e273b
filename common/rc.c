/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "common/rc.h"

#include <errno.h>

int dmr_rc_from_errno(int negerrno)
{
	switch (-negerrno) {
	case 0:
		return DMR_RC_OK;
	case EINVAL:
	case ENAMETOOLONG:
	case ERANGE:
		return DMR_RC_INVALID_PARAMETER;
	case ENOENT:
	case ENXIO:
	case ENODEV:
		return DMR_RC_NOT_FOUND;
	case EBUSY:
	case EEXIST:
		return DMR_RC_IN_USE;
	case DMR_E_STATE:
		return DMR_RC_INVALID_STATE;
	case EPERM:
	case EACCES:
		return DMR_RC_ACCESS_DENIED;
	case EOPNOTSUPP:
		return DMR_RC_NOT_SUPPORTED;
	case ETIMEDOUT:
		return DMR_RC_TIMEOUT;
	case ENOSPC:
	case ENOMEM:
	case EDQUOT:
	case EFBIG:
		return DMR_RC_NO_SPACE;
	case EHOSTUNREACH:
	case ECONNREFUSED:
	case ENOTCONN:
	case ECONNRESET:
	case EPIPE:
		return DMR_RC_UNAVAILABLE;
	default:
		return DMR_RC_FAILED;
	}
}

const char *dmr_rc_name(int rc)
{
	switch (rc) {
	case DMR_RC_OK: return "completed";
	case DMR_RC_JOB_STARTED: return "job started";
	case DMR_RC_FAILED: return "failed";
	case DMR_RC_ACCESS_DENIED: return "access denied";
	case DMR_RC_NOT_SUPPORTED: return "not supported";
	case DMR_RC_STATUS_UNKNOWN: return "status unknown";
	case DMR_RC_TIMEOUT: return "timeout";
	case DMR_RC_INVALID_PARAMETER: return "invalid parameter";
	case DMR_RC_IN_USE: return "system in use";
	case DMR_RC_INVALID_STATE: return "invalid state for this operation";
	case DMR_RC_INCORRECT_TYPE: return "incorrect data type";
	case DMR_RC_UNAVAILABLE: return "system not available";
	case DMR_RC_NO_SPACE: return "out of memory or space";
	case DMR_RC_NOT_FOUND: return "not found";
	default: return "unknown return code";
	}
}

int dmr_rc_exit_status(int rc)
{
	if (rc == DMR_RC_OK || rc == DMR_RC_JOB_STARTED)
		return 0;
	if (rc >= DMR_RC_FAILED && rc <= DMR_RC_NOT_FOUND)
		return rc - 32767;
	return 1;
}
