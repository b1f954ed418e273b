/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/unit/bare_registry.h - a registry without dmr_registry_open: its
 * locks, a state directory dir with vms/ made, no pool and no VM.  Shared
 * by the tests that drive the store or the engine directly; free with
 * test_bare_free (which frees the VMs inserted too).  test_rm_rf: a
 * test's temporary directory away, 0 or -1 as a cmocka teardown wants.
 */
#ifndef DMR_TESTS_UNIT_BARE_REGISTRY_H
#define DMR_TESTS_UNIT_BARE_REGISTRY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/store/registry.h"
#include "common/util.h"

static inline struct dmr_registry *test_bare_registry(const char *dir)
{
	struct dmr_registry *reg = calloc(1, sizeof(*reg));
	char path[128];

	assert_non_null(reg);
	pthread_mutex_init(&reg->lock, NULL);
	pthread_mutex_init(&reg->txn_lock, NULL);
	reg->state_dir = strdup(dir);
	snprintf(path, sizeof(path), "%s/vms", dir);
	assert_int_equal(dmr_mkdir_p(path, 0700), 0);
	return reg;
}

static inline int test_rm_rf(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static inline void test_bare_free(struct dmr_registry *reg)
{
	for (size_t i = 0; i < reg->n_vms; i++)
		dmr_vm_free(reg->vms[i]);
	free(reg->vms);
	free(reg->state_dir);
	pthread_mutex_destroy(&reg->lock);
	pthread_mutex_destroy(&reg->txn_lock);
	free(reg);
}

#endif
