/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: who may make the agent do what (agent/core/authz.c) and paths
 * opened once (common/path.c): the method policy per peer, inside-dir
 * checks against prefixes, "..", symlinks in and out, a path swapped for a
 * symlink after the check, a stored disk source swapped before a restart,
 * files created with O_EXCL|O_NOFOLLOW, sockets re-judged when connected
 * to, exec shims that root would run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "agent/core/authz.h"
#include "common/rc.h"
#include "common/path.h"
#include "common/util.h"

static char T[PATH_MAX]; /* canonical temp dir: T/img, T/out, T/sock, T/shim */

static void tpath(char *buf, const char *rel)
{
	size_t n = strlen(T);

	assert_true(n + 1 + strlen(rel) < PATH_MAX);
	memcpy(buf, T, n);
	buf[n] = '/';
	strcpy(buf + n + 1, rel);
}

static void put(const char *rel, const char *text)
{
	char p[PATH_MAX];
	int fd;

	tpath(p, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void link_to(const char *target, const char *rel)
{
	char p[PATH_MAX];

	tpath(p, rel);
	(void)unlink(p);
	assert_int_equal(symlink(target, p), 0);
}

static int setup(void **state)
{
	char tmpl[] = "/tmp/dmr-authz-XXXXXX";
	const char *subs[] = { "img", "out", "sock", "shim" };

	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, T));
	for (size_t i = 0; i < DMR_ARRAY_SIZE(subs); i++) {
		char p[PATH_MAX];

		tpath(p, subs[i]);
		assert_int_equal(mkdir(p, 0755), 0);
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T);
	return system(cmd) == 0 ? 0 : -1;
}

static void conf(struct dmr_authz *az)
{
	char p[PATH_MAX];

	memset(az, 0, sizeof(*az));
	tpath(p, "img");
	assert_int_equal(dmr_authz_add_dir(az, DMR_AUTHZ_IMAGE, p), 0);
	tpath(p, "sock");
	assert_int_equal(dmr_authz_add_dir(az, DMR_AUTHZ_SOCKET, p), 0);
	tpath(p, "shim");
	assert_int_equal(dmr_authz_add_dir(az, DMR_AUTHZ_SHIM, p), 0);
}

static void test_inside(void **state)
{
	assert_true(dmr_path_is_inside("/srv/images/a.img", "/srv/images"));
	assert_true(dmr_path_is_inside("/srv/images/a.img", "/srv/images/"));
	assert_true(dmr_path_is_inside("/srv/images", "/srv/images"));
	assert_true(dmr_path_is_inside("/srv/images/d/e", "/srv/images"));
	assert_true(dmr_path_is_inside("/etc/passwd", "/"));
	assert_false(dmr_path_is_inside("/srv/images2/a.img", "/srv/images"));
	assert_false(dmr_path_is_inside("/srv/imag", "/srv/images"));
	assert_false(dmr_path_is_inside("/etc/nologin", "/srv/images"));
	assert_false(dmr_path_is_inside("srv/images/a", "/srv/images"));
	assert_false(dmr_path_is_inside(NULL, "/srv/images"));
}

static void test_method_policy(void **state)
{
	struct dmr_authz none = { 0 }, az;
	struct json_object *p;
	char why[256];

	conf(&az);
#define M(az_, peer, m, mut, json)                                                         \
	(p = json_tokener_parse(json), why[0] = '\0',                                      \
	 ({ int _r = dmr_authz_method(az_, peer, m, mut, p, why, sizeof(why));             \
	    json_object_put(p); _r; }))
	/* root: everything, whatever is configured */
	assert_int_equal(M(&none, DMR_PEER_ROOT, "CreatePool", true, "{\"data\":\"/x\"}"), 0);
	assert_int_equal(M(&none, DMR_PEER_ROOT, "AddVirtualSystem", true,
			   "{\"exec_shim\":\"/bin/sh\",\"qmp\":\"/x\",\"disks\":[{}]}"), 0);
	assert_int_equal(M(&none, DMR_PEER_ROOT, "CreateReplicationPoint", true,
			   "{\"cow_devices\":{\"vda\":\"/dev/sda\"},\"force\":true}"), 0);
	/* anyone else: reads only */
	assert_int_equal(M(&az, DMR_PEER_OTHER, "ListVirtualSystems", false, "{}"), 0);
	assert_int_equal(M(&az, DMR_PEER_OTHER, "InitiateFailover", true, "{}"),
			 DMR_RC_ACCESS_DENIED);
	/* a member: VMs and points */
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "InitiateFailover", true, "{\"vm\":\"a\"}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "DestroyReplicationPoint", true, "{}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "CreateReplicationPoint", true,
			   "{\"force\":false}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "GetJob", false, "{}"), 0);
	/* ... but nothing that names what root writes, runs or connects to */
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "CreatePool", true, "{}"), DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "root-only"));
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "SetFailoverNetworkAdapterSettings", true, "{}"),
			 DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "hooks"));
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "CreateReplicationPoint", true,
			   "{\"cow_devices\":{\"vda\":\"/dev/sda\"}}"), DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "cow_devices"));
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "CreateReplicationPoint", true,
			   "{\"force\":true}"), DMR_RC_ACCESS_DENIED);
	/* replication: a member tunes, pauses and runs cycles; COMMAND is
	 * root's to name (it runs as root) */
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "SetReplication", true,
			   "{\"vm\":\"a\",\"pause\":true}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "SetReplication", true,
			   "{\"vm\":\"a\",\"interval\":60}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "StartReplicationCycle", true,
			   "{\"vm\":\"a\"}"), 0);
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "SetReplication", true,
			   "{\"vm\":\"a\",\"to\":\"ssh b dmrep point receive a\"}"),
			 DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "--to is root-only"));
	assert_int_equal(M(&az, DMR_PEER_OTHER, "SetReplication", true, "{\"vm\":\"a\"}"),
			 DMR_RC_ACCESS_DENIED);
	/* a method nobody judged yet is root's */
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "RepairPool", true, "{}"), DMR_RC_ACCESS_DENIED);
	/* paths only where root configured a directory for them */
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"exec_shim\":\"/bin/sh\"}"), DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "--shim-dir"));
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"qga\":\"/run/x.sock\"}"), DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "--socket-dir"));
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"disks\":[{\"name\":\"vda\",\"path\":\"/etc/nologin\"}]}"),
			 DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "--image-dir"));
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"exec_shim\":\"/x\",\"qmp\":\"/y\",\"disks\":[{}]}"), 0);
	/* libvirt: a member's domain on the default URI; any other URI is
	 * root's (libvirt opens it as root: qemu+ext runs a program). */
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"libvirt\":\"web\"}"), 0);
	assert_int_equal(M(&none, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"libvirt\":\"web\",\"libvirt_uri\":\"qemu:///system\"}"), 0);
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"libvirt\":\"web\",\"libvirt_uri\":\"qemu+ext:///system?command=/bin/sh\"}"),
			 DMR_RC_ACCESS_DENIED);
	assert_non_null(strstr(why, "libvirt_uri is root-only"));
	assert_int_equal(M(&az, DMR_PEER_MEMBER, "AddVirtualSystem", true,
			   "{\"libvirt\":\"web\",\"libvirt_uri\":7}"), DMR_RC_ACCESS_DENIED);
	assert_int_equal(M(&none, DMR_PEER_ROOT, "AddVirtualSystem", true,
			   "{\"libvirt\":\"web\",\"libvirt_uri\":\"qemu+ssh://b/system\"}"), 0);
#undef M
	dmr_authz_clear(&az);
}

static void test_disk_open(void **state)
{
	_cleanup_free_ char *res = NULL;
	struct dmr_authz az;
	char p[PATH_MAX], q[PATH_MAX], why[256];
	int fd = -1;

	conf(&az);
	put("img/a.img", "inside");
	put("out/secret", "secret");
	/* inside, and a symlink that stays inside: judged by what it names */
	tpath(p, "img/a.img");
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, p, O_RDONLY, &fd, &res, why,
					     sizeof(why)), 0);
	assert_string_equal(res, p);
	close(fd);
	free(res);
	res = NULL;
	link_to("a.img", "img/in.img");
	tpath(q, "img/in.img");
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, q, O_RDONLY, &fd, &res, why,
					     sizeof(why)), 0);
	assert_string_equal(res, p);
	close(fd);
	/* out: by symlink, absolute symlink, "..", a directory prefix */
	fd = -1;
	link_to("../out/secret", "img/out.img");
	tpath(p, "img/out.img");
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, p, O_RDONLY, &fd, NULL, why,
					     sizeof(why)), -EACCES);
	assert_int_equal(fd, -1);
	assert_non_null(strstr(why, "--image-dir"));
	tpath(q, "out/secret");
	link_to(q, "img/abs.img");
	tpath(p, "img/abs.img");
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, p, O_RDONLY, &fd, NULL, why,
					     sizeof(why)), -EACCES);
	tpath(p, "img/../out/secret");
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, p, O_RDONLY, &fd, NULL, why,
					     sizeof(why)), -EACCES);
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, "/etc/passwd", O_RDONLY, &fd,
					     NULL, why, sizeof(why)), -EACCES);
	/* a hard link brings a file in from elsewhere */
	tpath(p, "img/hard.img");
	assert_int_equal(link(q, p), 0);
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, p, O_RDONLY, &fd, NULL, why,
					     sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "links"));
	/* root may name anything, a device too */
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_ROOT, "/dev/null", O_RDONLY, &fd, NULL,
					     why, sizeof(why)), 0);
	close(fd);
	/* a member may not, even with /dev as an image dir */
	assert_int_equal(dmr_authz_add_dir(&az, DMR_AUTHZ_IMAGE, "/dev"), 0);
	fd = -1;
	assert_int_equal(dmr_authz_disk_open(&az, DMR_PEER_MEMBER, "/dev/null", O_RDONLY, &fd, NULL,
					     why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "root-only"));
	dmr_authz_clear(&az);
}

/* The check and the use are one open: swapping the path for a symlink to a
 * file outside afterwards changes nothing the holder of the fd reaches. */
static void test_swap_after_check(void **state)
{
	const char *dirs[1];
	char p[PATH_MAX], dir[PATH_MAX], q[PATH_MAX], name[DMR_PATH_FD_NAME_MAX], buf[16] = "";
	int fd = -1, fd2;

	tpath(dir, "img");
	dirs[0] = dir;
	put("img/swap.img", "inside");
	put("out/secret", "secret");
	tpath(p, "img/swap.img");
	assert_int_equal(dmr_path_open_inside(p, O_RDONLY, dirs, 1, &fd, NULL), 0);
	tpath(q, "out/secret");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink(q, p), 0);
	/* What the path names now is outside: refused. */
	fd2 = -1;
	assert_int_equal(dmr_path_open_inside(p, O_RDONLY, dirs, 1, &fd2, NULL), -EACCES);
	assert_int_equal(fd2, -1);
	/* What was judged is still what the job reopens. */
	dmr_path_fd_name(fd, name);
	fd2 = open(name, O_RDONLY);
	assert_true(fd2 >= 0);
	assert_int_equal(read(fd2, buf, sizeof(buf) - 1), 6);
	assert_string_equal(buf, "inside");
	close(fd2);
	close(fd);
	unlink(p);
}

/* A stored source inside an --image-dir, reopened after a restart: swapped
 * since for a link to a device or a file outside, it is refused. */
static void test_source_reopen(void **state)
{
	struct dmr_authz az;
	char p[PATH_MAX], q[PATH_MAX];
	int fd = -1;

	conf(&az);
	put("img/vm.img", "disk");
	tpath(p, "img/vm.img");
	assert_int_equal(dmr_authz_source_open(&az, p, O_RDONLY, &fd), 0);
	close(fd);
	fd = -1;
	link_to("/dev/null", "img/vm.img");
	assert_int_equal(dmr_authz_source_open(&az, p, O_RDONLY, &fd), -EACCES);
	tpath(q, "out/other.img");
	put("out/other.img", "other");
	link_to(q, "img/vm.img");
	assert_int_equal(dmr_authz_source_open(&az, p, O_RDONLY, &fd), -EACCES);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(link(q, p), 0);
	assert_int_equal(dmr_authz_source_open(&az, p, O_RDONLY, &fd), -EACCES);
	assert_int_equal(fd, -1);
	/* root's sources elsewhere open as they are, devices too */
	assert_int_equal(dmr_authz_source_open(&az, "/dev/null", O_RDONLY, &fd), 0);
	close(fd);
	assert_int_equal(dmr_authz_source_open(&az, q, O_RDONLY, &fd), 0);
	close(fd);
	unlink(p);
	dmr_authz_clear(&az);
}

static void test_create(void **state)
{
	_cleanup_free_ char *res = NULL;
	struct dmr_authz az;
	char p[PATH_MAX], q[PATH_MAX], why[256];
	struct stat st;
	int fd = -1;

	conf(&az);
	tpath(p, "img/new.img");
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_MEMBER, p, &fd, &res, why,
					       sizeof(why)), 0);
	assert_string_equal(res, p);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600);
	close(fd);
	fd = -1;
	/* never over something that exists */
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_ROOT, p, &fd, NULL, why, sizeof(why)),
			 -EEXIST);
	/* a dangling symlink is not followed to create its target */
	tpath(q, "out/created");
	link_to(q, "img/dangling.img");
	tpath(p, "img/dangling.img");
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_ROOT, p, &fd, NULL, why, sizeof(why)),
			 -EEXIST);
	assert_int_equal(access(q, F_OK), -1);
	/* outside the image dirs, directly or through a directory symlink */
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_MEMBER, "/etc/nologin", &fd, NULL, why,
					       sizeof(why)), -EACCES);
	assert_int_equal(access("/etc/nologin", F_OK), -1);
	link_to("../out", "img/sub");
	tpath(p, "img/sub/x.img");
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_MEMBER, p, &fd, NULL, why,
					       sizeof(why)), -EACCES);
	tpath(q, "out/x.img");
	assert_int_equal(access(q, F_OK), -1);
	assert_int_equal(dmr_authz_disk_new_ok(&az, DMR_PEER_MEMBER, p, &res, why, sizeof(why)),
			 -EACCES);
	/* a member without any image dir creates nothing */
	dmr_authz_clear(&az);
	tpath(p, "img/none.img");
	assert_int_equal(dmr_authz_disk_create(&az, DMR_PEER_MEMBER, p, &fd, NULL, why,
					       sizeof(why)), -EACCES);
	assert_int_equal(access(p, F_OK), -1);
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	(void)unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static void test_socket(void **state)
{
	_cleanup_free_ char *res = NULL;
	struct dmr_authz az;
	char in[PATH_MAX], out[PATH_MAX], p[PATH_MAX], why[256];
	int l1, l2, fd = -1;

	conf(&az);
	tpath(in, "sock/vm.qmp");
	tpath(out, "out/other.qmp");
	l1 = listen_at(in);
	l2 = listen_at(out);
	assert_int_equal(dmr_authz_socket(&az, DMR_PEER_MEMBER, in, &res, why, sizeof(why)), 0);
	assert_string_equal(res, in);
	free(res);
	res = NULL;
	/* another VM's monitor, directly or by a symlink inside */
	assert_int_equal(dmr_authz_socket(&az, DMR_PEER_MEMBER, out, &res, why, sizeof(why)),
			 -EACCES);
	link_to(out, "sock/link.qmp");
	tpath(p, "sock/link.qmp");
	assert_int_equal(dmr_authz_socket(&az, DMR_PEER_MEMBER, p, &res, why, sizeof(why)),
			 -EACCES);
	put("sock/plain", "x");
	tpath(p, "sock/plain");
	assert_int_equal(dmr_authz_socket(&az, DMR_PEER_MEMBER, p, &res, why, sizeof(why)),
			 -EACCES);
	assert_non_null(strstr(why, "not a socket"));
	assert_null(res);
	/* root names any socket */
	assert_int_equal(dmr_authz_socket(&az, DMR_PEER_ROOT, out, &res, why, sizeof(why)), 0);
	/* At connection time: accepted at add time, then swapped for a link
	 * to another VM's monitor: refused; a root path outside: as is. */
	assert_int_equal(dmr_authz_socket_open(&az, in, &fd), 0);
	close(fd);
	assert_int_equal(unlink(in), 0);
	assert_int_equal(symlink(out, in), 0);
	assert_int_equal(dmr_authz_socket_open(&az, in, &fd), -EACCES);
	assert_int_equal(dmr_authz_socket_open(&az, out, &fd), 0);
	close(fd);
	close(l1);
	close(l2);
	dmr_authz_clear(&az);
}

static void test_shim(void **state)
{
	_cleanup_free_ char *cmd = NULL;
	struct dmr_authz az;
	char p[PATH_MAX], line[PATH_MAX + 32], why[256];

	conf(&az);
	put("shim/virsh-shim", "#!/bin/sh\nexit 0\n");
	tpath(p, "shim/virsh-shim");
	assert_int_equal(chmod(p, 0755), 0);
	/* T is mkdtemp's 0700 root directory in sticky /tmp: all root's */
	snprintf(line, sizeof(line), "%s --uri qemu:///system", p);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, line, &cmd, why, sizeof(why)), 0);
	assert_string_equal(cmd, line);
	free(cmd);
	cmd = NULL;
	/* writable by the group: anyone in it could make root run anything */
	assert_int_equal(chmod(p, 0775), 0);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, line, &cmd, why, sizeof(why)),
			 -EACCES);
	assert_non_null(strstr(why, "owned by root"));
	assert_int_equal(chmod(p, 0755), 0);
	assert_int_equal(chown(p, 65534, 65534), 0);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, line, &cmd, why, sizeof(why)),
			 -EACCES);
	assert_int_equal(chown(p, 0, 0), 0);
	/* a directory above it that others may write */
	tpath(p, "shim");
	assert_int_equal(chmod(p, 0777), 0);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, line, &cmd, why, sizeof(why)),
			 -EACCES);
	assert_int_equal(chmod(p, 0755), 0);
	/* outside the shim dir, or through a link out of it */
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, "/bin/sh -c id", &cmd, why,
					sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "--shim-dir"));
	link_to("/bin/sh", "shim/sh");
	tpath(p, "shim/sh");
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, p, &cmd, why, sizeof(why)), -EACCES);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, "sh -c id", &cmd, why, sizeof(why)),
			 -EACCES);
	/* a link inside resolves to the real file, which is what gets run */
	assert_int_equal(dmr_authz_add_dir(&az, DMR_AUTHZ_SHIM, "/usr/bin"), 0);
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_MEMBER, "/usr/bin/true x", &cmd, why,
					sizeof(why)), 0);
	assert_string_equal(cmd, "/usr/bin/true x");
	free(cmd);
	cmd = NULL;
	/* root runs what it names */
	assert_int_equal(dmr_authz_shim(&az, DMR_PEER_ROOT, "/bin/sh -c id", &cmd, why,
					sizeof(why)), 0);
	assert_string_equal(cmd, "/bin/sh -c id");
	dmr_authz_clear(&az);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inside),
		cmocka_unit_test(test_method_policy),
		cmocka_unit_test(test_disk_open),
		cmocka_unit_test(test_swap_after_check),
		cmocka_unit_test(test_source_reopen),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_socket),
		cmocka_unit_test(test_shim),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
