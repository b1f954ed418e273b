/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_qga - what the QEMU guest agent sends (agent/guest/qga.c): the input
 * is everything the guest says, over a real socket (tests/fuzz/peer.h),
 * while the client syncs (guest-sync-delimited and its 0xFF sentinel),
 * pings, asks the freeze status, freezes, thaws and runs a command with
 * arguments, as the agent does around an application-consistent point.
 *
 * The sync ids are random in the agent; here getrandom() is this file's,
 * so that they are the same every run and the seeds can hold them: with
 * every byte 0x01, the ids are 1148975592, 1612261732, 131682614,
 * 963488048, ...  Checked: errors are the documented ones, and what the
 * client keeps of the guest's words is one printable line.
 */
#include <sys/random.h>

#include "agent/guest/qga.h"
#include "tests/fuzz/peer.h"

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
	memset(buf, 1, len);
	return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_qga *g = NULL;
	struct json_object *args, *ret = NULL;
	bool frozen;
	int r, n;

	if (!peer_start(&peer, data, size))
		return 0;
	r = dmr_qga_connect(peer.path, 5000, &g);
	peer_check_rc(r);
	if (r == 0) {
		peer_check_rc(dmr_qga_ping(g, 5000));
		check_line(dmr_qga_last_error(g));
		peer_check_rc(dmr_qga_fsfreeze_status(g, 5000, &frozen));
		peer_check_rc(dmr_qga_fsfreeze_freeze(g, 5000, &n));
		peer_check_rc(dmr_qga_fsfreeze_thaw(g, 5000, &n));
		check_line(dmr_qga_last_error(g));
		args = peer_args("path", "/var/lib/app");
		peer_check_rc(dmr_qga_execute(g, "guest-exec", args, 5000, &ret));
		json_object_put(ret);
		json_object_put(args);
		check_line(dmr_qga_last_error(g));
		dmr_qga_free(g);
	}
	peer_end(&peer);
	return 0;
}
