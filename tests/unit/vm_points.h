/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/unit/vm_points.h - the points a test VM is given: ids 1..npoints an
 * hour apart, all valid, labelled "x", disk i of point p on volume
 * 100 + p * n_disks + i (so every volume id is distinct).  Shared by the
 * state-file and catalog tests, whose VMs differ only in their disks.
 * Call after vm->n_disks is set.  test_make_vm: a VM with every path
 * field set, replicating, ndisks disks vda.. of 1 MiB (thin ids 1..)
 * and npoints points.
 */
#ifndef DMR_TESTS_UNIT_VM_POINTS_H
#define DMR_TESTS_UNIT_VM_POINTS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/store/registry.h"

static inline void test_vm_add_points(struct dmr_vm *vm, size_t npoints)
{
	size_t ndisks = vm->n_disks;

	vm->n_points = npoints;
	vm->points = calloc(npoints + 1, sizeof(*vm->points));
	assert_non_null(vm->points);
	for (size_t p = 0; p < npoints; p++) {
		vm->points[p].id = p + 1;
		vm->points[p].created_usec = 1700000000000000ull + p * 3600000000ull;
		vm->points[p].label = strdup("x");
		vm->points[p].valid = true;
		vm->points[p].vol_ids = calloc(ndisks, sizeof(uint32_t));
		for (size_t i = 0; i < ndisks; i++)
			vm->points[p].vol_ids[i] = (uint32_t)(100 + p * ndisks + i);
	}
	vm->next_point_id = npoints + 1;
}

static inline struct dmr_vm *test_make_vm(const char *name, bool classic, size_t ndisks, size_t npoints)
{
	struct dmr_vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	vm->name = strdup(name);
	vm->backend = strdup(classic ? "classic" : "thin");
	vm->qmp = strdup("/run/qemu/x.qmp");
	vm->qga = strdup("/run/qemu/x.qga");
	vm->exec_shim = strdup("/usr/local/bin/shim");
	vm->libvirt = strdup("web-01");
	vm->libvirt_uri = strdup("qemu+ssh://root@b/system");
	vm->n_disks = ndisks;
	vm->disks = calloc(ndisks, sizeof(*vm->disks));
	for (size_t i = 0; i < ndisks; i++) {
		char d[8];

		snprintf(d, sizeof(d), "vd%c", (char)('a' + i));
		vm->disks[i].name = strdup(d);
		vm->disks[i].size_bytes = 1 << 20;
		vm->disks[i].thin_id = classic ? 0 : (uint32_t)(i + 1);
		vm->disks[i].source = strdup(classic ? "/dev/null" : "/srv/x.img");
	}
	test_vm_add_points(vm, npoints);
	return vm;
}

#endif
