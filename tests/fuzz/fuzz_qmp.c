/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_qmp - what QEMU's QMP socket sends (agent/guest/qmp.c and the
 * JSON-lines transport under it): the input is everything the hypervisor
 * says, over a real socket (tests/fuzz/peer.h), while the client connects
 * (greeting, qmp_capabilities: id 1) and runs query-status (2), stop (3),
 * cont (4), human-monitor-command (5), a command with arguments (6) and
 * system_reset (7), as the agent does.  Checked: errors are the documented
 * ones, and what the client keeps of QEMU's words is one printable line.
 */
#include "agent/guest/qmp.h"
#include "tests/fuzz/peer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dmr_qmp *q = NULL;
	struct json_object *args, *ret = NULL;
	char *status = NULL, *out = NULL;
	bool running;
	int r, v[3];

	if (!peer_start(&peer, data, size))
		return 0;
	r = dmr_qmp_connect(peer.path, 5000, &q);
	peer_check_rc(r);
	if (r == 0) {
		dmr_qmp_version(q, &v[0], &v[1], &v[2]);
		r = dmr_qmp_query_status(q, &running, &status);
		peer_check_rc(r);
		FUZZ_CHECK(r < 0 || status);
		free(status);
		peer_check_rc(dmr_qmp_stop(q));
		check_line(dmr_qmp_last_error(q));
		check_line(dmr_qmp_last_error_class(q));
		peer_check_rc(dmr_qmp_cont(q));
		r = dmr_qmp_hmp(q, "info block", &out);
		peer_check_rc(r);
		FUZZ_CHECK(r < 0 || out);
		free(out);
		args = peer_args("device", "drive0");
		peer_check_rc(dmr_qmp_execute(q, "block-job-cancel", args, 5000, &ret));
		json_object_put(ret);
		json_object_put(args);
		peer_check_rc(dmr_qmp_system_reset(q));
		check_line(dmr_qmp_last_error(q));
		check_line(dmr_qmp_last_event(q));
		dmr_qmp_free(q);
	}
	peer_end(&peer);
	return 0;
}
