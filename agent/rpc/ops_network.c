/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SetFailoverNetworkAdapterSettings: per VM and NIC (by MAC), the addresses,
 * gateways and DNS servers to use after a failover, for the hooks. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "common/util.h"

#define NICS_MAX 16
#define ENTRIES_MAX 16

/* "52:54:00:12:34:56", stored lower-case. */
static bool mac_ok(const char *s, char out[18])
{
	if (strlen(s) != 17)
		return false;
	for (size_t i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return false;
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[17] = '\0';
	return true;
}

/* An IPv4 or IPv6 address, with a prefix length if with_prefix. */
static bool ip_ok(const char *s, bool with_prefix)
{
	char buf[INET6_ADDRSTRLEN + 8];
	unsigned char bin[16];
	char *slash;
	bool v6;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash) {
		if (!with_prefix)
			return false;
		*slash++ = '\0';
	}
	v6 = strchr(buf, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, bin) != 1)
		return false;
	if (slash) {
		uint64_t len;

		if (dmr_parse_u64(slash, &len) < 0 || len > (v6 ? 128u : 32u))
			return false;
	}
	return true;
}

/* Copy params.<key> (an array of address strings) into nic. */
static int copy_list(struct dmr_call *c, const char *key, bool prefix, struct json_object *nic)
{
	struct json_object *arr = NULL, *out;
	int rc;

	if ((rc = dmr_param_array(c, key, false, &arr)))
		return rc;
	out = json_object_new_array();
	if (!out)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_add(nic, key, out);
	if (!arr)
		return 0;
	if (json_object_array_length(arr) > ENTRIES_MAX)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "at most %d %s", ENTRIES_MAX, key);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);

		if (!json_object_is_type(v, json_type_string))
			return dmr_call_fail(c, DMR_RC_INCORRECT_TYPE, "%s must be strings", key);
		if (!ip_ok(json_object_get_string(v), prefix))
			return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "%s: '%s' is not an IP address%s",
					     key, json_object_get_string(v), prefix ? " (with an optional /prefix)" : "");
		json_object_array_add(out, json_object_new_string(json_object_get_string(v)));
	}
	return 0;
}

int dmr_h_set_network(struct dmr_call *c)
{
	struct dmr_registry *reg = c->agent->reg;
	struct json_object *nic = NULL, *net = NULL;
	const char *name, *mac_in;
	bool clear = false;
	char mac[18];
	struct dmr_vm *vm;
	int rc, r;

	if ((rc = dmr_ops_vm_name(c, "vm", &name)) || (rc = dmr_param_string(c, "mac", true, &mac_in)) ||
	    (rc = dmr_param_bool(c, "clear", false, &clear)))
		return rc;
	if (!mac_ok(mac_in, mac))
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "mac must look like 52:54:00:12:34:56");
	nic = json_object_new_object();
	if (!nic)
		return dmr_call_fail(c, DMR_RC_NO_SPACE, "out of memory");
	json_object_object_add(nic, "mac", json_object_new_string(mac));
	if ((rc = copy_list(c, "addresses", true, nic)) || (rc = copy_list(c, "gateways", false, nic)) ||
	    (rc = copy_list(c, "dns", false, nic))) {
		json_object_put(nic);
		return rc;
	}
	if ((rc = dmr_ops_vm_acquire(c, name))) {
		json_object_put(nic);
		return rc;
	}
	pthread_mutex_lock(&reg->lock);
	vm = dmr_reg_vm_find(reg, name);
	/* A new array: the old one may be in a failover job's hands. */
	net = json_object_new_array();
	r = net ? 0 : -ENOMEM;
	for (size_t i = 0; r == 0 && vm->network && i < json_object_array_length(vm->network); i++) {
		struct json_object *old = json_object_array_get_idx(vm->network, i), *m;

		if (json_object_object_get_ex(old, "mac", &m) && dmr_streq(json_object_get_string(m), mac))
			continue;
		json_object_array_add(net, json_object_get(old));
	}
	if (r == 0 && !clear) {
		if (json_object_array_length(net) >= NICS_MAX)
			r = -E2BIG;
		else
			json_object_array_add(net, json_object_get(nic));
	}
	if (r == 0) {
		struct json_object *prev = vm->network;

		vm->network = net;
		r = dmr_reg_vm_save(reg, vm);
		if (r < 0 && r != -DMR_E_NOT_DURABLE) {
			vm->network = prev; /* nothing changed on disk: nor here */
			json_object_put(net);
		} else {
			json_object_put(prev);
			json_object_object_add(c->reply, "network", json_object_get(net));
		}
	} else {
		json_object_put(net);
	}
	pthread_mutex_unlock(&reg->lock);
	dmr_vm_busy_release(c->agent, name);
	json_object_put(nic);
	if (r == -E2BIG)
		return dmr_call_fail(c, DMR_RC_INVALID_PARAMETER, "at most %d NICs per VM", NICS_MAX);
	if (r < 0)
		return dmr_call_fail(c, dmr_rc_from_errno(r), "cannot save the settings: %s", strerror(-r));
	return DMR_RC_OK;
}
