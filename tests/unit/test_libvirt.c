/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: the libvirt shim (agent/guest/libvirt.c through shim.h)
 * against libvirt's own test driver, test:///default: its domain "test"
 * runs at first; suspend, resume, reset, state, filesystems frozen and
 * thawed, a domain found by UUID, a missing domain, a daemon that is not
 * there, and what libvirt refuses, each with its errno and one line.  The
 * test driver keeps its state per process: one connection sees what
 * another did.  Also the VM record's side: which shim a VM gets, and what
 * a domain or URI may be. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/guest/libvirt.h"
#include "agent/guest/shim.h"
#include "agent/store/registry.h"
#include "common/util.h"

#define URI "test:///default"
#define TEST_UUID "6695eb01-f6a4-8304-79aa-97f2502e193f"

static enum dmr_guest_status status_of(struct dmr_shim *s)
{
	enum dmr_guest_status st = DMR_GUEST_UNKNOWN;

	assert_int_equal(dmr_shim_status(s, &st), 0);
	return st;
}

static void test_verbs(void **state)
{
	_cleanup_shim_ struct dmr_shim *s = NULL;

	(void)state;
	assert_int_equal(dmr_shim_new_libvirt(URI, "test", "web", &s), 0);
	assert_string_equal(dmr_shim_kind(s), "libvirt");
	assert_int_equal(status_of(s), DMR_GUEST_RUNNING);
	assert_int_equal(dmr_shim_pause(s), 0);
	assert_int_equal(status_of(s), DMR_GUEST_PAUSED);
	assert_string_equal(dmr_shim_last_error(s), "");
	/* Paused already: libvirt refuses a second suspend; the line says
	 * which call, which domain, and libvirt's reason. */
	assert_int_equal(dmr_shim_pause(s), -EIO);
	assert_non_null(strstr(dmr_shim_last_error(s), "virDomainSuspend test (" URI ")"));
	assert_non_null(strstr(dmr_shim_last_error(s), "not running"));
	assert_int_equal(dmr_shim_resume(s), 0);
	assert_string_equal(dmr_shim_last_error(s), "");
	assert_int_equal(status_of(s), DMR_GUEST_RUNNING);
	assert_int_equal(dmr_shim_reset(s), 0);
	assert_int_equal(status_of(s), DMR_GUEST_RUNNING);
}

static void test_freeze(void **state)
{
	_cleanup_shim_ struct dmr_shim *s = NULL, *q = NULL;
	int n = -1;

	(void)state;
	assert_int_equal(dmr_shim_new_libvirt(URI, "test", "web", &s), 0);
	/* The test driver's guest has two filesystems, / and /boot. */
	assert_int_equal(dmr_shim_fsfreeze(s, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(dmr_shim_fsthaw(s), 0);
	/* Only libvirt freezes through the shim: the others have --qga. */
	assert_int_equal(dmr_shim_new("qmp", "/nonexistent/qmp", "web", &q), 0);
	n = -1;
	assert_int_equal(dmr_shim_fsfreeze(q, &n), -EOPNOTSUPP);
	assert_int_equal(n, -1);
	assert_int_equal(dmr_shim_fsthaw(q), -EOPNOTSUPP);
	assert_non_null(strstr(dmr_shim_last_error(q), "freezes no filesystem"));
}

static void test_lookup(void **state)
{
	_cleanup_shim_ struct dmr_shim *s = NULL, *m = NULL, *d = NULL;
	enum dmr_guest_status st = DMR_GUEST_RUNNING;

	(void)state;
	/* By UUID as well as by name: one domain, so one state. */
	assert_int_equal(dmr_shim_new_libvirt(URI, TEST_UUID, "web", &s), 0);
	assert_int_equal(dmr_shim_pause(s), 0);
	{
		_cleanup_shim_ struct dmr_shim *byname = NULL;

		assert_int_equal(dmr_shim_new_libvirt(URI, "test", "web", &byname), 0);
		assert_int_equal(status_of(byname), DMR_GUEST_PAUSED);
	}
	assert_int_equal(dmr_shim_resume(s), 0);

	/* No such domain: unreachable, as a QMP socket that is not there;
	 * the out-parameter untouched. */
	assert_int_equal(dmr_shim_new_libvirt(URI, "nosuch", "web", &m), 0);
	assert_int_equal(dmr_shim_status(m, &st), -EHOSTUNREACH);
	assert_int_equal(st, DMR_GUEST_RUNNING);
	assert_non_null(strstr(dmr_shim_last_error(m), "no domain nosuch"));
	assert_int_equal(dmr_shim_pause(m), -EHOSTUNREACH);

	/* No daemon for a URI (nothing listens for "nosuch:///"): the same. */
	assert_int_equal(dmr_shim_new_libvirt("nosuch:///system", "test", "web", &d), 0);
	assert_int_equal(dmr_shim_pause(d), -EHOSTUNREACH);
	assert_non_null(strstr(dmr_shim_last_error(d), "cannot connect to libvirt"));
}

/* libvirt prints every error on stderr unless told not to: the agent's
 * stderr is its log, and the error is the job's reason already. */
static void test_quiet(void **state)
{
	_cleanup_shim_ struct dmr_shim *m = NULL, *s = NULL;
	char path[] = "/tmp/dmrep-test-libvirt.XXXXXX", buf[4096];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	enum dmr_guest_status st;
	ssize_t n;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	(void)unlink(path);
	fflush(stderr);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	assert_int_equal(dmr_shim_new_libvirt(URI, "nosuch", "web", &m), 0);
	assert_int_equal(dmr_shim_status(m, &st), -EHOSTUNREACH);
	assert_int_equal(dmr_shim_new_libvirt(URI, "test", "web", &s), 0);
	assert_int_equal(dmr_shim_resume(s), -EIO); /* it runs */
	fflush(stderr);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	/* libvirt's own format is "libvirt: DRIVER error : MESSAGE". */
	if (strstr(buf, " error : "))
		fprintf(stderr, "libvirt printed: %s", buf);
	assert_null(strstr(buf, " error : "));
	assert_non_null(strstr(dmr_shim_last_error(s), "virDomainResume test"));
}

static void test_new(void **state)
{
	struct dmr_shim *s = (struct dmr_shim *)1;
	char big[DMR_VM_LIBVIRT_MAX + 2];

	(void)state;
	assert_int_equal(dmr_shim_new_libvirt(URI, "", "web", &s), -EINVAL);
	assert_int_equal(dmr_shim_new_libvirt(URI, "a/b", "web", &s), -EINVAL);
	assert_int_equal(dmr_shim_new_libvirt("test:///default x", "test", "web", &s), -EINVAL);
	assert_int_equal(dmr_shim_new_libvirt(URI, "test", "", &s), -EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(dmr_shim_new_libvirt(URI, big, "web", &s), -EINVAL);
	assert_ptr_equal(s, (struct dmr_shim *)1);
	big[DMR_VM_LIBVIRT_MAX] = '\0';
	assert_true(dmr_vm_libvirt_valid(big, false));
	assert_false(dmr_vm_libvirt_valid("web\n", false));
	assert_false(dmr_vm_libvirt_valid("w\xc3\xa9", false));
	assert_true(dmr_vm_libvirt_valid("qemu+ssh://root@b/system?keyfile=/k", true));
	assert_false(dmr_vm_libvirt_valid(NULL, true));
}

static void test_states(void **state)
{
	(void)state;
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_RUNNING), DMR_GUEST_RUNNING);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_BLOCKED), DMR_GUEST_RUNNING);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_PAUSED), DMR_GUEST_PAUSED);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_SHUTOFF), DMR_GUEST_NOT_RUNNING);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_CRASHED), DMR_GUEST_NOT_RUNNING);
	/* Being shut down, or in the guest's own S3: nothing to assume. */
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_SHUTDOWN), DMR_GUEST_UNKNOWN);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_PMSUSPENDED), DMR_GUEST_UNKNOWN);
	assert_int_equal(dmr_guest_status_from_libvirt(VIR_DOMAIN_NOSTATE), DMR_GUEST_UNKNOWN);
	assert_int_equal(dmr_guest_status_from_libvirt(99), DMR_GUEST_UNKNOWN);
}

/* Which shim a VM's record gives: one hypervisor per VM. */
static void test_for_vm(void **state)
{
	struct dmr_vm vm = { .name = (char *)"web" };
	_cleanup_shim_ struct dmr_shim *s = NULL;

	(void)state;
	assert_false(dmr_shim_vm_has_hypervisor(&vm));
	assert_false(dmr_shim_vm_can_freeze(&vm));
	assert_int_equal(dmr_shim_new_for_vm(&vm, &s), 0);
	assert_string_equal(dmr_shim_kind(s), "none");
	dmr_shim_free(s);
	s = NULL;
	vm.libvirt = (char *)"test";
	vm.libvirt_uri = (char *)URI;
	assert_true(dmr_shim_vm_has_hypervisor(&vm));
	assert_true(dmr_shim_vm_can_freeze(&vm));
	assert_int_equal(dmr_shim_new_for_vm(&vm, &s), 0);
	assert_string_equal(dmr_shim_kind(s), "libvirt");
	assert_int_equal(status_of(s), DMR_GUEST_RUNNING);
	dmr_shim_free(s);
	s = NULL;
	vm.libvirt = NULL;
	vm.libvirt_uri = NULL;
	vm.qmp = (char *)"/run/x.qmp";
	assert_true(dmr_shim_vm_has_hypervisor(&vm));
	assert_false(dmr_shim_vm_can_freeze(&vm));
	assert_int_equal(dmr_shim_new_for_vm(&vm, &s), 0);
	assert_string_equal(dmr_shim_kind(s), "qmp");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_freeze),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_quiet),
		cmocka_unit_test(test_new),
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_for_vm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
