/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "agent/guest/libvirt.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "agent/store/registry.h"
#include "common/log.h"
#include "common/util.h"

struct dmr_libvirt {
	char *uri;
	char *domain;
	virConnectPtr conn; /* kept, or NULL */
	virDomainPtr dom;   /* of conn, or NULL */
	char error[512];
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

/* libvirt prints every error to stderr unless a handler takes them: the
 * agent says what failed once, where it is handled (set_error keeps it). */
static void silent(void *userdata, virErrorPtr err)
{
	(void)userdata;
	(void)err;
}

static void init(void)
{
	init_rc = virInitialize() < 0 ? -ENOMEM : 0;
	virSetErrorFunc(NULL, silent);
}

enum dmr_guest_status dmr_guest_status_from_libvirt(int state)
{
	switch (state) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED: /* running, waiting on a resource */
		return DMR_GUEST_RUNNING;
	case VIR_DOMAIN_PAUSED:
		return DMR_GUEST_PAUSED;
	case VIR_DOMAIN_SHUTOFF:
	case VIR_DOMAIN_CRASHED:
		return DMR_GUEST_NOT_RUNNING;
	default:
		/* NOSTATE, SHUTDOWN (being shut down: it may be gone before
		 * the swap ends), PMSUSPENDED (the guest's own S3, resumed
		 * by a wakeup, not by virDomainResume) and newer states. */
		return DMR_GUEST_UNKNOWN;
	}
}

int dmr_libvirt_new(const char *uri, const char *domain, struct dmr_libvirt **ret)
{
	struct dmr_libvirt *l;

	assert(domain && ret);
	if (!dmr_vm_libvirt_valid(domain, false) || (uri && !dmr_vm_libvirt_valid(uri, true)))
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->uri = strdup(uri ? uri : DMR_VM_LIBVIRT_DEFAULT_URI);
	l->domain = strdup(domain);
	if (!l->uri || !l->domain) {
		dmr_libvirt_free(l);
		return -ENOMEM;
	}
	*ret = l;
	return 0;
}

static void disconnect(struct dmr_libvirt *l)
{
	if (l->dom)
		(void)virDomainFree(l->dom);
	if (l->conn)
		(void)virConnectClose(l->conn);
	l->dom = NULL;
	l->conn = NULL;
}

void dmr_libvirt_free(struct dmr_libvirt *l)
{
	if (!l)
		return;
	disconnect(l);
	free(l->uri);
	free(l->domain);
	free(l);
}

const char *dmr_libvirt_last_error(const struct dmr_libvirt *l)
{
	assert(l);
	return l->error;
}

/* Error e (NULL: one libvirt did not say) as an errno, its
 * message kept. */
static int fail_with(struct dmr_libvirt *l, const char *what, virErrorPtr e)
{
	int code = e ? e->code : VIR_ERR_INTERNAL_ERROR, r;

	switch (code) {
	case VIR_ERR_NO_DOMAIN:
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_INVALID_CONN:
	case VIR_ERR_AUTH_FAILED:
	case VIR_ERR_AUTH_CANCELLED:
	case VIR_ERR_RPC:
	case VIR_ERR_SYSTEM_ERROR:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		r = -EHOSTUNREACH;
		break;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
	case VIR_ERR_OPERATION_UNSUPPORTED:
		r = -EOPNOTSUPP;
		break;
	case VIR_ERR_NO_MEMORY:
		r = -ENOMEM;
		break;
	default:
		r = -EIO;
	}
	snprintf(l->error, sizeof(l->error), "%s %s (%s): %s", what, l->domain, l->uri,
		 e && e->message ? e->message : "unknown libvirt error");
	log_debug("libvirt: %s", l->error);
	virResetLastError();
	return r;
}

static int fail(struct dmr_libvirt *l, const char *what)
{
	return fail_with(l, what, virGetLastError());
}

static int connect_domain(struct dmr_libvirt *l)
{
	if (init_rc < 0)
		return -ENOMEM;
	if (l->conn && virConnectIsAlive(l->conn) != 1)
		disconnect(l);
	if (!l->conn) {
		l->conn = virConnectOpen(l->uri);
		if (!l->conn)
			return fail(l, "cannot connect to libvirt for");
		/* The connection's own handler wins over the global one:
		 * its errors stay silent even if something else in the
		 * process sets a global handler that prints. */
		virConnSetErrorFunc(l->conn, NULL, silent);
	}
	if (!l->dom) {
		virError by_name = { 0 };
		int r;

		l->dom = virDomainLookupByName(l->conn, l->domain);
		if (l->dom)
			return 0;
		/* Not a name: maybe a UUID.  Not that either: the name's
		 * error is the one to report (a UUID lookup of a name says
		 * "invalid argument"). */
		(void)virCopyLastError(&by_name);
		virResetLastError();
		l->dom = virDomainLookupByUUIDString(l->conn, l->domain);
		if (l->dom) {
			virResetError(&by_name);
			return 0;
		}
		r = fail_with(l, "no domain", &by_name);
		virResetError(&by_name);
		/* Another error than "no such domain" is the daemon's. */
		return r == -EIO ? -EHOSTUNREACH : r;
	}
	return 0;
}

enum op { OP_STATE, OP_SUSPEND, OP_RESUME, OP_RESET, OP_FREEZE, OP_THAW };

static const char *const op_names[] = {
	[OP_STATE] = "virDomainGetState", [OP_SUSPEND] = "virDomainSuspend",
	[OP_RESUME] = "virDomainResume",  [OP_RESET] = "virDomainReset",
	[OP_FREEZE] = "virDomainFSFreeze", [OP_THAW] = "virDomainFSThaw",
};

/* One call on the domain; a kept connection that died since (the daemon
 * restarted) is reopened once and the call retried: each of these is
 * harmless to repeat.  *ret_value: the state, or the filesystems frozen. */
static int run(struct dmr_libvirt *l, enum op op, int *ret_value)
{
	(void)pthread_once(&init_once, init);
	l->error[0] = '\0';
	for (int attempt = 0;; attempt++) {
		bool kept = l->conn != NULL;
		int r, v = 0, reason;

		if ((r = connect_domain(l)) < 0)
			return r;
		switch (op) {
		case OP_STATE:
			r = virDomainGetState(l->dom, &v, &reason, 0);
			break;
		case OP_SUSPEND:
			r = virDomainSuspend(l->dom);
			break;
		case OP_RESUME:
			r = virDomainResume(l->dom);
			break;
		case OP_RESET:
			r = virDomainReset(l->dom, 0);
			break;
		case OP_FREEZE:
			r = v = virDomainFSFreeze(l->dom, NULL, 0, 0);
			break;
		case OP_THAW:
			r = virDomainFSThaw(l->dom, NULL, 0, 0);
			break;
		}
		if (r >= 0) {
			if (ret_value)
				*ret_value = v;
			return 0;
		}
		r = fail(l, op_names[op]);
		if (r != -EHOSTUNREACH || !kept || attempt > 0 || op == OP_FREEZE)
			return r;
		/* Not the domain's answer: the connection's.  A freeze is not
		 * retried: it may have frozen some filesystems already, and
		 * the caller thaws. */
		log_debug("libvirt %s: kept connection lost, reconnecting", l->domain);
		disconnect(l);
	}
}

int dmr_libvirt_status(struct dmr_libvirt *l, enum dmr_guest_status *ret_status)
{
	int state = 0, r;

	assert(l && ret_status);
	r = run(l, OP_STATE, &state);
	if (r < 0)
		return r;
	*ret_status = dmr_guest_status_from_libvirt(state);
	return 0;
}

int dmr_libvirt_suspend(struct dmr_libvirt *l)
{
	assert(l);
	return run(l, OP_SUSPEND, NULL);
}

int dmr_libvirt_resume(struct dmr_libvirt *l)
{
	assert(l);
	return run(l, OP_RESUME, NULL);
}

int dmr_libvirt_reset(struct dmr_libvirt *l)
{
	assert(l);
	return run(l, OP_RESET, NULL);
}

int dmr_libvirt_fsfreeze(struct dmr_libvirt *l, int *ret_count)
{
	int n = 0, r;

	assert(l && ret_count);
	r = run(l, OP_FREEZE, &n);
	if (r < 0)
		return r;
	*ret_count = n;
	return 0;
}

int dmr_libvirt_fsthaw(struct dmr_libvirt *l)
{
	assert(l);
	return run(l, OP_THAW, NULL);
}
