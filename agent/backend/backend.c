/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/backend/backend.h"

#include <assert.h>

#include "common/util.h"

/* The one place that reads a VM's backend name (the state file's
 * "backend"); everything else calls through the table. */
const struct dmr_backend *dmr_backend_of(const struct dmr_vm *vm)
{
	assert(vm);
	return dmr_streq(vm->backend, "classic") ? &dmr_backend_classic : &dmr_backend_thin;
}
