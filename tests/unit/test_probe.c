/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests: safety probes (snapshots/probe.h) - libblkid on files that
 * carry ext4 (mkfs.ext4), swap (mkswap), an LVM2 PV label, a LUKS1 header
 * and a dos partition table (written by hand), a clean and an empty file,
 * conflicting signatures; path kinds; in-use checks through a loop device
 * and an exclusive opener (those need root and /dev/loop-control). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/util.h"
#include "snapshots/loop.h"
#include "snapshots/probe.h"

#define IMG_SIZE (8u << 20)

struct fx {
	char dir[64];
	char img[96];
	char *loop; /* attached by a test; detached by teardown */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int fd;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/var/tmp/dmr-probe-XXXXXX");
	if (!mkdtemp(f->dir)) {
		snprintf(f->dir, sizeof(f->dir), "/tmp/dmr-probe-XXXXXX");
		if (!mkdtemp(f->dir))
			return -1;
	}
	snprintf(f->img, sizeof(f->img), "%s/img", f->dir);
	fd = open(f->img, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, IMG_SIZE) < 0)
		return -1;
	close(fd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];

	if (f->loop) {
		(void)dmr_loop_detach(f->loop);
		free(f->loop);
	}
	unlink(f->img);
	snprintf(p, sizeof(p), "%s/fifo", f->dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/empty", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void put(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* Run a tool from /sbin or /usr/sbin quietly; false if it is not there. */
static bool run_tool(const char *tool, const char *const *args)
{
	char path[64];
	const char *argv[8];
	size_t n = 0;
	pid_t pid;
	int status;

	snprintf(path, sizeof(path), "/usr/sbin/%s", tool);
	if (access(path, X_OK) < 0) {
		snprintf(path, sizeof(path), "/sbin/%s", tool);
		if (access(path, X_OK) < 0)
			return false;
	}
	argv[n++] = path;
	while (*args && n < DMR_ARRAY_SIZE(argv) - 1)
		argv[n++] = *args++;
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	return true;
}

static char *probe(const char *path)
{
	char *what = (char *)"untouched";

	assert_int_equal(dmr_probe_signatures(path, &what), 0);
	assert_true(!what || strcmp(what, "untouched") != 0);
	return what;
}

static void test_clean(void **state)
{
	struct fx *f = *state;

	assert_null(probe(f->img));
}

static void test_empty_file(void **state)
{
	struct fx *f = *state;
	char p[128];
	int fd;

	snprintf(p, sizeof(p), "%s/empty", f->dir);
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_null(probe(p));
}

static void test_ext4(void **state)
{
	struct fx *f = *state;
	const char *args[] = { "-q", "-F", f->img, NULL };
	_cleanup_free_ char *what = NULL;

	if (!run_tool("mkfs.ext4", args))
		skip();
	what = probe(f->img);
	assert_non_null(what);
	assert_string_equal(what, "ext4 filesystem");
}

static void test_swap(void **state)
{
	struct fx *f = *state;
	const char *args[] = { f->img, NULL };
	_cleanup_free_ char *what = NULL;

	if (!run_tool("mkswap", args))
		skip();
	what = probe(f->img);
	assert_non_null(what);
	assert_string_equal(what, "swap (other)");
}

/* LVM2's label checksum: CRC-32 (reflected 0xedb88320) seeded with
 * 0xf597a6cf and no final xor, over the label from offset_xl to the end of
 * the 512-byte sector. */
static uint32_t lvm_crc(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xf597a6cfu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ ((crc & 1u) ? 0xedb88320u : 0u);
	}
	return crc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_lvm2(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *what = NULL;
	uint8_t label[512];

	/* A PV label in sector 1: "LABELONE", sector_xl = 1, crc_xl,
	 * offset_xl = 32, "LVM2 001", then the 32-character PV UUID. */
	memset(label, 0, sizeof(label));
	memcpy(label, "LABELONE", 8);
	label[8] = 1;
	put_le32(label + 20, 32);
	memcpy(label + 24, "LVM2 001", 8);
	memcpy(label + 32, "dmrepTESTpvUUIDabcdefghijklmnop0", 32);
	put_le32(label + 16, lvm_crc(label + 20, sizeof(label) - 20));
	put(f->img, 512, label, sizeof(label));

	what = probe(f->img);
	assert_non_null(what);
	assert_string_equal(what, "LVM2_member (raid)");
}

static void test_lvm2_bad_checksum(void **state)
{
	struct fx *f = *state;
	uint8_t label[512];

	/* The same label with a wrong checksum is noise, as for lvm2. */
	memset(label, 0, sizeof(label));
	memcpy(label, "LABELONE", 8);
	label[8] = 1;
	put_le32(label + 16, 0xdeadbeef);
	put_le32(label + 20, 32);
	memcpy(label + 24, "LVM2 001", 8);
	put(f->img, 512, label, sizeof(label));
	assert_null(probe(f->img));
}

static void test_luks1(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *what = NULL;
	uint8_t hdr[592];

	/* LUKS1 phdr: magic "LUKS\xba\xbe", big-endian version 1, cipher
	 * name/mode, hash, payload offset, key bytes, digest, salt,
	 * iterations, UUID at 168. */
	memset(hdr, 0, sizeof(hdr));
	memcpy(hdr, "LUKS\xba\xbe", 6);
	hdr[7] = 1;
	memcpy(hdr + 8, "aes", 3);
	memcpy(hdr + 40, "xts-plain64", 11);
	memcpy(hdr + 72, "sha256", 6);
	hdr[106] = 0x10; /* payload offset 4096 sectors */
	hdr[111] = 64;   /* key bytes */
	memcpy(hdr + 168, "3f1d3c1e-8f3a-4d8e-9b1a-0123456789ab", 36);
	put(f->img, 0, hdr, sizeof(hdr));

	what = probe(f->img);
	assert_non_null(what);
	assert_string_equal(what, "crypto_LUKS (crypto)");
}

static void test_dos_partition_table(void **state)
{
	struct fx *f = *state;
	_cleanup_free_ char *what = NULL;
	uint8_t mbr[512];

	/* One primary Linux partition, LBA 2048, 8192 sectors. */
	memset(mbr, 0, sizeof(mbr));
	mbr[440] = 0x78; /* disk identifier, as fdisk writes one */
	mbr[441] = 0x56;
	mbr[446 + 4] = 0x83;
	put_le32(mbr + 446 + 8, 2048);
	put_le32(mbr + 446 + 12, 8192);
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	put(f->img, 0, mbr, sizeof(mbr));

	what = probe(f->img);
	assert_non_null(what);
	assert_string_equal(what, "dos partition table");
}

static void test_ambivalent(void **state)
{
	struct fx *f = *state;
	const char *args[] = { "-q", "-F", f->img, NULL };
	_cleanup_free_ char *what = NULL;
	static const uint8_t pvd[7] = { 0x01, 'C', 'D', '0', '0', '1', 0x01 };
	static const uint8_t term[7] = { 0xff, 'C', 'D', '0', '0', '1', 0x01 };

	/* ext4 at 1 KiB plus an ISO 9660 volume descriptor set at 32 KiB:
	 * two filesystems that exclude each other, and neither claims to
	 * have wiped the other's area (as LVM and LUKS do). */
	if (!run_tool("mkfs.ext4", args))
		skip();
	put(f->img, 32768, pvd, sizeof(pvd));
	put(f->img, 32768 + 2048, term, sizeof(term));
	what = probe(f->img);
	assert_non_null(what);
	print_message("ambivalent: %s\n", what);
	assert_true(dmr_startswith(what, "ambivalent signatures: "));
	assert_non_null(strstr(what, "ext4 filesystem"));
	assert_non_null(strstr(what, "iso9660 filesystem"));
}

static void test_probe_errors(void **state)
{
	struct fx *f = *state;
	char *what = (char *)"untouched";
	char p[128];

	snprintf(p, sizeof(p), "%s/missing", f->dir);
	assert_int_equal(dmr_probe_signatures(p, &what), -ENOENT);
	assert_int_equal(dmr_probe_signatures(f->dir, &what), -EINVAL);
	assert_int_equal(dmr_probe_signatures("/dev/null", &what), -EINVAL);
	assert_string_equal(what, "untouched");
}

static void test_path_kind(void **state)
{
	struct fx *f = *state;
	bool is_block = true;
	uint64_t size = 1;
	char p[128];

	assert_int_equal(dmr_probe_path_kind(f->img, &is_block, &size), 0);
	assert_false(is_block);
	assert_int_equal(size, IMG_SIZE);

	is_block = true;
	size = 1;
	assert_int_equal(dmr_probe_path_kind("/dev/null", &is_block, &size), -EINVAL);
	assert_int_equal(dmr_probe_path_kind(f->dir, &is_block, &size), -EINVAL);
	snprintf(p, sizeof(p), "%s/missing", f->dir);
	assert_int_equal(dmr_probe_path_kind(p, &is_block, &size), -ENOENT);
	snprintf(p, sizeof(p), "%s/fifo", f->dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(dmr_probe_path_kind(p, &is_block, &size), -EINVAL);
	/* Untouched on failure. */
	assert_true(is_block);
	assert_int_equal(size, 1);
	assert_int_equal(dmr_probe_path_kind(f->img, NULL, NULL), 0);
	assert_int_equal(dmr_probe_in_use(p), -EINVAL);
}

/* A block device to look at, if the machine has one we may open. */
static const char *some_block_device(void)
{
	static const char *const cands[] = { "/dev/loop0", "/dev/vda", "/dev/sda", "/dev/nvme0n1" };
	struct stat st;

	for (size_t i = 0; i < DMR_ARRAY_SIZE(cands); i++)
		if (stat(cands[i], &st) == 0 && S_ISBLK(st.st_mode) && access(cands[i], R_OK) == 0)
			return cands[i];
	return NULL;
}

static void test_path_kind_block(void **state)
{
	const char *dev = some_block_device();
	bool is_block = false;

	if (!dev)
		skip();
	assert_int_equal(dmr_probe_path_kind(dev, &is_block, NULL), 0);
	assert_true(is_block);
}

static bool can_loop(void)
{
	return geteuid() == 0 && access("/dev/loop-control", W_OK) == 0;
}

/* In use through a loop: the file while attached, the loop device while
 * someone holds it exclusively; free again after detach. */
static void test_in_use_loop(void **state)
{
	struct fx *f = *state;
	_cleanup_close_ int excl = -1;
	int r;

	if (!can_loop())
		skip();
	assert_int_equal(dmr_probe_in_use(f->img), 0);
	r = dmr_loop_attach(f->img, false, &f->loop);
	if (r == -ENXIO || r == -ENODEV)
		skip(); /* no loop driver in this kernel */
	assert_int_equal(r, 0);

	assert_int_equal(dmr_probe_in_use(f->img), -EBUSY);
	assert_int_equal(dmr_probe_in_use(f->loop), 0);
	excl = open(f->loop, O_RDONLY | O_EXCL | O_CLOEXEC);
	assert_true(excl >= 0);
	assert_int_equal(dmr_probe_in_use(f->loop), -EBUSY);
	close(DMR_TAKE_FD(excl));
	assert_int_equal(dmr_probe_in_use(f->loop), 0);

	/* The probe reads through the loop as well as through the file. */
	assert_null(probe(f->loop));

	assert_int_equal(dmr_loop_detach(f->loop), 0);
	free(f->loop);
	f->loop = NULL;
	assert_int_equal(dmr_probe_in_use(f->img), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ext4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lvm2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lvm2_bad_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_luks1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dos_partition_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ambivalent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_kind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_kind_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_use_loop, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
