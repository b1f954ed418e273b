/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz_retention - the retention arithmetic: which points a policy drops
 * (dmr_vm_retention_victims, agent/store/registry.c, applied by
 * agent/engine/retention.c), on VMs built from the input: the policy
 * (keep_last, max_age_sec, up to their bounds), the clock, the points
 * (creation times, valid, pending, uuids), the points in use (failover,
 * test, a committed layer, the replica's acknowledged base).
 *
 * Checked: indexes newest first, each once; never a pending point, one in
 * use or pinned, nor the latest valid point; a point goes only for a
 * reason: beyond keep_last valid points, or older than max_age_sec.
 */
#include <string.h>

#include "agent/store/registry.h"
#include "tests/fuzz/fuzz.h"

#define POINTS_MAX 40

struct input {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct input *in, size_t bytes)
{
	uint64_t v = 0;

	for (size_t i = 0; i < bytes; i++) {
		v = v << 8;
		if (in->left) {
			v |= *in->p++;
			in->left--;
		}
	}
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct dmr_point points[POINTS_MAX];
	uint32_t vol[POINTS_MAX];
	struct dmr_layer layer = { 0 };
	struct dmr_vm vm = { 0 };
	size_t *idx = NULL, n = 0, latest = SIZE_MAX;
	uint64_t now, t;
	uint8_t flags;
	bool seen[POINTS_MAX] = { false };

	if (size < 8)
		return 0;
	memset(points, 0, sizeof(points));
	flags = (uint8_t)take(&in, 1);
	vm.keep_last = take(&in, 1);
	if (flags & 1)
		vm.keep_last = take(&in, 4) % (DMR_KEEP_LAST_MAX + 1);
	vm.max_age_sec = take(&in, 2);
	if (flags & 2)
		vm.max_age_sec = take(&in, 8) % (DMR_SECONDS_MAX + 1);
	if (flags & 4)
		vm.max_age_sec = take(&in, 8); /* past the bound: an old file's */
	now = take(&in, 8);
	vm.role = flags & 8 ? DMR_VM_REPLICA : DMR_VM_PRIMARY;
	vm.n_points = take(&in, 1) % (POINTS_MAX + 1);
	vm.points = points;
	t = take(&in, 8);
	for (size_t i = 0; i < vm.n_points; i++) {
		uint8_t pf = (uint8_t)take(&in, 1);
		struct dmr_point *p = &points[i];

		p->id = i + 1;
		t += take(&in, pf & 0x80 ? 8 : 2) * (pf & 0x40 ? 1000000u : 1u);
		p->created_usec = t;
		p->valid = !(pf & 1);
		p->pending_tid = pf & 2 ? 7 : 0;
		snprintf(p->uuid, sizeof(p->uuid), "00000000-0000-4000-8000-%012zu", i);
		vol[i] = (uint32_t)i + 1;
		p->vol_ids = &vol[i];
	}
	if (vm.n_points) {
		vm.failover_point = take(&in, 1) % (vm.n_points + 2);
		vm.test_point = take(&in, 1) % (vm.n_points + 2);
		layer.point = take(&in, 1) % (vm.n_points + 2);
		if (layer.point) {
			vm.layers = &layer;
			vm.n_layers = 1;
		}
		t = take(&in, 1) % (vm.n_points + 1);
		if (t)
			memcpy(vm.repl.acked_uuid, points[t - 1].uuid, sizeof(vm.repl.acked_uuid));
	}
	vm.n_disks = 1;

	FUZZ_CHECK(dmr_vm_retention_victims(&vm, now, &idx, &n) == 0);
	FUZZ_CHECK(n <= vm.n_points);
	for (size_t i = vm.n_points; i-- > 0;)
		if (points[i].valid && !points[i].pending_tid) {
			latest = i;
			break;
		}
	for (size_t k = 0; k < n; k++) {
		size_t i = idx[k], valid_newer = 0;
		const struct dmr_point *p = &points[i];
		bool old;

		FUZZ_CHECK(i < vm.n_points && !seen[i]);
		seen[i] = true;
		FUZZ_CHECK(k == 0 || idx[k - 1] > i);
		FUZZ_CHECK(i != latest && !p->pending_tid);
		FUZZ_CHECK(p->id != vm.failover_point && p->id != vm.test_point);
		FUZZ_CHECK(!vm.n_layers || p->id != layer.point);
		FUZZ_CHECK(vm.role == DMR_VM_REPLICA || strcmp(p->uuid, vm.repl.acked_uuid));
		for (size_t j = i; j < vm.n_points; j++)
			valid_newer += points[j].valid && !points[j].pending_tid;
		old = vm.max_age_sec && vm.max_age_sec <= UINT64_MAX / 1000000u &&
		      now > p->created_usec && now - p->created_usec > vm.max_age_sec * 1000000u;
		FUZZ_CHECK(old || (vm.keep_last && valid_newer > vm.keep_last));
	}
	free(idx);
	return 0;
}
