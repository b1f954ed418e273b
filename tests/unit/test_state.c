/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests: state files and numbers from outside.
 *  - hostile VM files, pool file and job records: every field with a wrong
 *    type, missing, huge numbers, huge arrays, bytes that are not UTF-8;
 *    nothing aborts, the bad file is left out with one log line naming it,
 *    the rest loads;
 *  - retention and point removal record the catalog before the volumes go
 *    (the pool's delete is mocked: it reads the state file as a crash would
 *    leave it), leftovers are retried, their ids never handed out again;
 *  - the atomic write and the VM file's removal fsync the directory, and a
 *    failed directory fsync is "changed but not durable";
 *  - every bounded number at its bounds, and retention with a --max-age
 *    whose microseconds would wrap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "agent/engine/retention.h"
#include "agent/core/agent.h"
#include "agent/rpc/handlers.h"
#include "agent/engine/job.h"
#include "agent/rpc/method.h"
#include "agent/rpc/ops.h"
#include "common/rc.h"
#include "agent/store/registry.h"
#include "common/json.h"
#include "common/util.h"
#include "dm/dm.h"
#include "tests/unit/bare_registry.h"
#include "tests/unit/vm_points.h"

/* ---- mocks ------------------------------------------------------------ */

static char state_dir[64];
static int delete_calls, delete_fail;
static uint32_t deleted[256];
static size_t n_deleted;
static const char *watch_vm;   /* its state file is read on each delete */
static bool fail_dir_fsync;
static int dir_fsyncs;

/* No dm device exists here: the volumes being deleted have none up (a
 * volume's own device goes before the volume, agent/backend/thin.c). */
int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret);
int __wrap_dmr_dm_info(const char *name, struct dmr_dm_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	return 0;
}

int __wrap_dmr_thin_delete_batch(const void *pool, size_t n, const uint32_t *ids, uint64_t o,
				 uint64_t nt);
int __real_fsync(int fd);
int __wrap_fsync(int fd);

static struct json_object *read_state(const char *vm)
{
	char path[256];
	_cleanup_free_ char *buf = NULL;
	struct json_object *o = NULL;
	size_t len;

	snprintf(path, sizeof(path), "%s/vms/%s.json", state_dir, vm);
	if (dmr_read_file(path, 1 << 24, &buf, &len) < 0)
		return NULL;
	assert_int_equal(dmr_json_parse_object(buf, len, &o), 0);
	return o;
}

static bool json_has_id(struct json_object *a, uint32_t id)
{
	for (size_t i = 0; a && i < json_object_array_length(a); i++)
		if (json_object_get_int64(json_object_array_get_idx(a, i)) == id)
			return true;
	return false;
}

/* The pool's delete: what a crash right now would leave on disk must
 * list none of these volumes' points, and must name them as doomed. */
int __wrap_dmr_thin_delete_batch(const void *pool, size_t n, const uint32_t *ids, uint64_t o,
				 uint64_t nt)
{
	(void)pool;
	(void)o;
	(void)nt;
	delete_calls++;
	if (watch_vm) {
		struct json_object *st = read_state(watch_vm), *pts, *doomed = NULL;

		assert_non_null(st);
		assert_true(json_object_object_get_ex(st, "points", &pts));
		json_object_object_get_ex(st, "doomed_ids", &doomed);
		for (size_t k = 0; k < n; k++) {
			for (size_t p = 0; p < json_object_array_length(pts); p++) {
				struct json_object *tids;

				json_object_object_get_ex(json_object_array_get_idx(pts, p), "thin_ids",
							  &tids);
				if (json_has_id(tids, ids[k]))
					fail_msg("volume %u deleted while the catalog lists its point",
						 ids[k]);
			}
			if (!json_has_id(doomed, ids[k]))
				fail_msg("volume %u deleted before the catalog recorded it", ids[k]);
		}
		json_object_put(st);
	}
	if (delete_fail)
		return -EIO;
	for (size_t k = 0; k < n && n_deleted < DMR_ARRAY_SIZE(deleted); k++)
		deleted[n_deleted++] = ids[k];
	return 0;
}

int __wrap_fsync(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		dir_fsyncs++;
		if (fail_dir_fsync) {
			errno = EIO;
			return -1;
		}
	}
	return __real_fsync(fd);
}

/* ---- helpers ---------------------------------------------------------- */

static int setup(void **st)
{
	(void)st;
	snprintf(state_dir, sizeof(state_dir), "/tmp/dmrep-test-state.XXXXXX");
	assert_non_null(mkdtemp(state_dir));
	delete_calls = delete_fail = 0;
	n_deleted = 0;
	watch_vm = NULL;
	fail_dir_fsync = false;
	dir_fsyncs = 0;
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	return test_rm_rf(state_dir);
}

static void write_text(const char *rel, const char *text, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", state_dir, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(dmr_write_all(fd, text, len), 0);
	close(fd);
}

/* A thin VM with every optional field set, or a classic one with a
 * committed layer: between them, every field a VM file has. */
static char *template_text(bool classic)
{
	struct dmr_vm *vm = test_make_vm("t", classic, 2, 3);
	struct json_object *o;
	char *text;

	if (classic) {
		vm->cow_size = 8 << 20;
		vm->max_points = 8;
		vm->n_layers = 1;
		vm->layers = calloc(1, sizeof(*vm->layers));
		vm->layers[0].point = 1;
		vm->layers[0].since = 2;
		vm->layers[0].ids = calloc(2, sizeof(uint32_t));
		vm->layers[0].ids[0] = 300;
		vm->layers[0].ids[1] = 301;
	} else {
		vm->overlay_ids = calloc(2, sizeof(uint32_t));
		vm->test_ids = calloc(2, sizeof(uint32_t));
		vm->n_doomed = 2;
		vm->doomed = calloc(2, sizeof(uint32_t));
		vm->doomed[0] = 900;
		vm->doomed[1] = 901;
		vm->network = json_tokener_parse("[{\"mac\": \"52:54:00:12:34:56\", \"addresses\": "
						 "[\"10.0.0.5/24\"], \"gateways\": [\"10.0.0.1\"], "
						 "\"dns\": []}]");
	}
	o = dmr_vm_state_json(vm);
	text = strdup(json_object_to_json_string(o));
	json_object_put(o);
	dmr_vm_free(vm);
	return text;
}

static int load_text(const char *text, size_t len)
{
	struct json_object *o = NULL;
	struct dmr_vm *vm = NULL;
	int r = dmr_json_parse_object(text, len, &o);

	if (r == 0)
		r = dmr_vm_from_state_json(o, &vm);
	json_object_put(o);
	if (r == 0)
		assert_non_null(vm);
	else
		assert_null(vm);
	dmr_vm_free(vm);
	return r;
}

/* The object in root that holds the fields of kind k. */
static struct json_object *container(struct json_object *root, int k)
{
	static const char *const arrays[] = { NULL, "disks", "points", "layers", "network" };
	struct json_object *a;

	if (k == 0)
		return root;
	if (!json_object_object_get_ex(root, arrays[k], &a) || !json_object_is_type(a, json_type_array) ||
	    json_object_array_length(a) == 0)
		return NULL;
	return json_object_array_get_idx(a, 0);
}

static bool in_list(const char *const *list, const char *key)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(list[i], key) == 0)
			return true;
	return false;
}

/* ---- item: hostile VM files ------------------------------------------ */

static void test_every_field_wrong(void **st)
{
	static const char *const wrong[] = {
		"\"x\"", "7", "-1", "99999999999999999999999", "18446744073709551615", "1.5",
		"1e400", "true", "null", "[]", "{}", "[1,2,3]", "[{}]", "{\"a\":1}",
		"\"\\u0000\"", "\"\\u001b[2J\"",
	};
	/* Fields a file may leave out, and fields that may be null. */
	static const char *const optional[] = { "intent_guest_ran", "network", "cow_size", "layers",
						"doomed_ids", "addresses", "gateways", "dns",
						/* from before replication: made or defaulted */
						"uuid", "role", "last_received_usec",
						/* from before the libvirt shim */
						"libvirt", "libvirt_uri", NULL };
	static const char *const nullable[] = { "qmp", "qga", "exec_shim", "libvirt", "libvirt_uri",
						"network", "overlay_ids",
						"test_ids", "source", "intent_guest_ran", "layers",
						"doomed_ids", NULL };
	size_t variants = 0;

	(void)st;
	for (int classic = 0; classic < 2; classic++) {
		_cleanup_free_ char *tmpl = template_text(classic);

		assert_int_equal(load_text(tmpl, strlen(tmpl)), 0);
		for (int k = 0; k < 5; k++) {
			struct json_object *t = json_tokener_parse(tmpl), *c = container(t, k);

			if (!c) {
				json_object_put(t);
				continue;
			}
			json_object_object_foreach(c, key, orig) {
				json_type ot = json_object_get_type(orig);

				for (size_t w = 0; w <= DMR_ARRAY_SIZE(wrong); w++) {
					struct json_object *copy = json_tokener_parse(tmpl);
					struct json_object *cc = container(copy, k), *nv = NULL;
					const char *text;
					bool must_refuse;
					int r;

					if (w < DMR_ARRAY_SIZE(wrong)) {
						nv = json_tokener_parse(wrong[w]);
						json_object_object_add(cc, key, nv);
						must_refuse = json_object_get_type(nv) != ot &&
							      !(json_object_is_type(nv, json_type_null) &&
								in_list(nullable, key));
						/* A number json-c saturated is never taken. */
						if (ot == json_type_int && w >= 3 && w <= 4)
							must_refuse = true;
						if (ot == json_type_int && w == 2)
							must_refuse = true;
					} else {
						json_object_object_del(cc, key);
						must_refuse = !in_list(optional, key);
					}
					text = json_object_to_json_string(copy);
					r = load_text(text, strlen(text));
					if (must_refuse && r == 0)
						fail_msg("%s VM: %s = %s loaded", classic ? "classic" : "thin",
							 key, w < DMR_ARRAY_SIZE(wrong) ? wrong[w] : "(absent)");
					json_object_put(copy);
					variants++;
				}
			}
			json_object_put(t);
		}
	}
	/* Every field of both shapes was tried with every value. */
	assert_true(variants > 40 * DMR_ARRAY_SIZE(wrong));
}

static void test_huge_arrays_and_bytes(void **st)
{
	_cleanup_free_ char *tmpl = template_text(false);
	static const char *const keys[] = { "disks", "points", "layers", "network", "doomed_ids",
					    "overlay_ids" };
	char *p;

	(void)st;
	for (size_t k = 0; k < DMR_ARRAY_SIZE(keys); k++) {
		struct json_object *o = json_tokener_parse(tmpl), *a = json_object_new_array();
		const char *text;

		for (int i = 0; i < 100000; i++)
			json_object_array_add(a, strcmp(keys[k], "doomed_ids") &&
					      strcmp(keys[k], "overlay_ids") ?
					      json_object_new_object() : json_object_new_int(i + 1000));
		json_object_object_add(o, keys[k], a);
		text = json_object_to_json_string(o);
		/* doomed_ids may be long (ids of many points); the rest not. */
		if (strcmp(keys[k], "doomed_ids") == 0)
			assert_int_equal(load_text(text, strlen(text)), 0);
		else
			assert_int_not_equal(load_text(text, strlen(text)), 0);
		json_object_put(o);
	}
	/* Bytes that are not UTF-8, or an overlong '/': not a state file. */
	p = strstr(tmpl, "\"label\": \"x\"");
	assert_non_null(p);
	assert_int_equal(load_text(tmpl, strlen(tmpl)), 0);
	p[10] = (char)0xc3; /* a lead byte before '"' */
	assert_int_equal(load_text(tmpl, strlen(tmpl)), -EILSEQ);
	p[10] = (char)0xc0; /* "\xc0\xaf": an overlong '/' json-c lets through */
	p[11] = (char)0xaf;
	assert_int_equal(load_text(tmpl, strlen(tmpl)), -EILSEQ);
}

/* Literal hostile files beside good ones, through the loader at start. */
static void test_registry_open_hostile_dir(void **st)
{
	struct dmr_agent a = { .state_dir = state_dir };
	_cleanup_free_ char *tmpl = template_text(false), *log = NULL;
	static const struct {
		const char *name, *key, *value; /* the template with key = value */
	} bad[] = {
		{ "h1", "layers", "{}" },          { "h2", "disks", "{}" },
		{ "h3", "points", "7" },           { "h4", "keep_last", "99999999999999999999" },
		{ "h5", "max_age_sec", "3162240001" }, { "h6", "network", "[{\"mac\": 1}]" },
		{ "h7", "intent_guest_ran", "\"yes\"" }, { "h8", "doomed_ids", "{}" },
		{ "h9", "next_point_id", "1e99" }, { "h10", "overlay_ids", "[1]" },
		{ "h11", "cow_size", "\"big\"" },  { "h12", "name", "\"h12\\u0000x\"" },
	};
	static const struct {
		const char *name, *text;
	} lit[] = {
		{ "l1", "[]" },
		{ "l2", "" },
		{ "l3", "{\"schema\": 1}" },
		{ "l4", "{\"schema\": 1, \"name\": \"l4\", \"layers\": {}" },
		{ "l5", "{\"schema\": 1, \"name\": \"l5\xc3\x28\"}" },
		{ "l6", "null" },
		{ "l7", "{\"schema\": 99999999999999999999999999}" },
	};
	struct json_object *o;
	char rel[64], logpath[128];
	int saved, fd, r;

	(void)st;
	snprintf(rel, sizeof(rel), "vms");
	snprintf(logpath, sizeof(logpath), "%s/vms", state_dir);
	assert_int_equal(dmr_mkdir_p(logpath, 0700), 0);
	for (int g = 0; g < 2; g++) {
		const char *text;

		o = json_tokener_parse(tmpl);
		json_object_object_add(o, "name", json_object_new_string(g ? "good2" : "good1"));
		json_object_object_add(o, "intent", json_object_new_string(""));
		text = json_object_to_json_string(o);
		snprintf(rel, sizeof(rel), "vms/good%d.json", g + 1);
		write_text(rel, text, strlen(text));
		json_object_put(o);
	}
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad); i++) {
		const char *text;

		o = json_tokener_parse(tmpl);
		json_object_object_add(o, "name", json_object_new_string(bad[i].name));
		json_object_object_add(o, bad[i].key, json_tokener_parse(bad[i].value));
		text = json_object_to_json_string(o);
		snprintf(rel, sizeof(rel), "vms/%s.json", bad[i].name);
		write_text(rel, text, strlen(text));
		json_object_put(o);
	}
	for (size_t i = 0; i < DMR_ARRAY_SIZE(lit); i++) {
		snprintf(rel, sizeof(rel), "vms/%s.json", lit[i].name);
		write_text(rel, lit[i].text, strlen(lit[i].text));
	}

	/* The log, to check each bad file is named, once. */
	snprintf(logpath, sizeof(logpath), "%s/log", state_dir);
	fflush(stderr);
	saved = dup(2);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	close(fd);
	r = dmr_registry_open(&a);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(r, 0);
	assert_int_equal(a.reg->n_vms, 2);
	assert_non_null(dmr_reg_vm_find(a.reg, "good1"));
	assert_non_null(dmr_reg_vm_find(a.reg, "good2"));
	assert_int_equal(dmr_read_file(logpath, 1 << 20, &log, NULL), 0);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(bad) + DMR_ARRAY_SIZE(lit); i++) {
		const char *n = i < DMR_ARRAY_SIZE(bad) ? bad[i].name : lit[i - DMR_ARRAY_SIZE(bad)].name;
		char needle[96];
		const char *hit;

		snprintf(needle, sizeof(needle), "/vms/%s.json is unreadable", n);
		hit = strstr(log, needle);
		if (!hit)
			fail_msg("no log line for %s:\n%s", n, log);
		assert_null(strstr(hit + 1, needle));
	}
	/* The field is named where one is to blame. */
	assert_non_null(strstr(log, "h1.json is unreadable (Bad message: field layers)"));
	assert_non_null(strstr(log, "l5.json is unreadable (not UTF-8)"));
	/* ListVirtualSystems says which files were left out, and why. */
	{
		struct dmr_call c = { .agent = &a, .privileged = true };
		struct json_object *u, *e;

		c.params = json_object_new_object();
		c.reply = json_object_new_object();
		assert_int_equal(dmr_h_list_vms(&c), DMR_RC_OK);
		assert_true(json_object_object_get_ex(c.reply, "unloadable", &u));
		assert_int_equal(json_object_array_length(u), DMR_ARRAY_SIZE(bad) + DMR_ARRAY_SIZE(lit));
		for (size_t i = 0; i < json_object_array_length(u); i++) {
			e = json_object_array_get_idx(u, i);
			if (!strcmp(json_object_get_string(json_object_object_get(e, "file")), "h1.json"))
				assert_string_equal(json_object_get_string(json_object_object_get(e, "error")),
						    "Bad message: field layers");
		}
		json_object_put(c.params);
		json_object_put(c.reply);
	}
	dmr_registry_close(&a);
}

/* A bad pool.json: the agent still starts, serves the VMs, never
 * rewrites the file. */
static void test_pool_file_hostile(void **st)
{
	struct dmr_agent a = { .state_dir = state_dir };
	static const char pool[] = "{\"schema\": 1, \"data_path\": 5, \"meta_path\": \"/m\", "
				   "\"block_sectors\": 128, \"transaction_id\": 0, \"next_vol_id\": 1}";
	_cleanup_free_ char *tmpl = template_text(false), *back = NULL;
	char path[128];

	(void)st;
	snprintf(path, sizeof(path), "%s/vms", state_dir);
	assert_int_equal(dmr_mkdir_p(path, 0700), 0);
	{
		struct json_object *o = json_tokener_parse(tmpl);
		const char *text;

		json_object_object_add(o, "name", json_object_new_string("good"));
		text = json_object_to_json_string(o);
		write_text("vms/good.json", text, strlen(text));
		json_object_put(o);
	}
	write_text("pool.json", pool, strlen(pool));
	assert_int_equal(dmr_registry_open(&a), 0);
	assert_int_equal(a.reg->n_vms, 1);
	assert_true(a.reg->pool_unreadable);
	assert_null(a.reg->pool);
	assert_int_not_equal(dmr_reg_pool_save(a.reg), 0);
	snprintf(path, sizeof(path), "%s/pool.json", state_dir);
	assert_int_equal(dmr_read_file(path, 4096, &back, NULL), 0);
	assert_string_equal(back, pool);
	dmr_registry_close(&a);
}

static void test_job_records_hostile(void **st)
{
	struct dmr_agent a = { .state_dir = state_dir };
	struct json_object *o, *v;
	static const struct {
		uint64_t id;
		const char *text;
		bool loads;
	} recs[] = {
		{ 1, "{\"id\": 1, \"method\": \"X\", \"job_state\": 7}", true },
		{ 2, "{\"id\": 2, \"method\": \"X\", \"job_state\": 99}", false },
		{ 3, "{\"id\": 3, \"method\": \"X\", \"job_state\": 7, \"vm\": 5}", false },
		{ 4, "{\"id\": 4, \"method\": \"X\", \"job_state\": 7, \"vm\": \"a\\n<0>b\"}", false },
		{ 5, "{\"id\": 5, \"method\": 7, \"job_state\": 7}", false },
		{ 6, "[5]", false },
		{ 7, "{\"id\": 7, \"method\": \"X\", \"job_state\": 7, \"steps\": {}}", true },
		{ 8, "{\"id\": 8, \"method\": \"X\", \"job_state\": 7, \"steps\": [1, \"s\", "
		     "{\"name\": 5, \"usec\": 1}, {\"name\": \"ok\", \"usec\": -1}]}", true },
		{ 9, "{\"id\": 9, \"method\": \"X\xc0\xaf\", \"job_state\": 7}", false },
		{ 10, "{\"id\": 10, \"method\": \"X\", \"job_state\": 10, \"error_code\": "
		      "99999999999999999999, \"error_description\": \"\\u001b[2Jgone\"}", true },
		{ 11, "{\"id\": 11, \"method\": \"X\", \"job_state\": 7, \"percent_complete\": {}}", true },
		{ 12, "{\"id\": 12, \"method\": \"X\", \"job_state\": 7, \"started\": 5}", true },
	};
	char path[128];

	(void)st;
	snprintf(path, sizeof(path), "%s/jobs", state_dir);
	assert_int_equal(dmr_mkdir_p(path, 0700), 0);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(recs); i++) {
		char rel[64];

		snprintf(rel, sizeof(rel), "jobs/%llu.json", (unsigned long long)recs[i].id);
		write_text(rel, recs[i].text, strlen(recs[i].text));
	}
	/* An id past what a JSON number holds exactly: left out. */
	{
		static const char huge[] = "{\"id\": 99999999999999999999, \"method\": \"X\", "
					   "\"job_state\": 7}";

		write_text("jobs/99999999999999999999.json", huge, strlen(huge));
	}
	assert_int_equal(dmr_jobs_open(&a), 0);
	for (size_t i = 0; i < DMR_ARRAY_SIZE(recs); i++) {
		int r = dmr_job_get_json(&a, recs[i].id, &o);

		if (recs[i].loads != (r == 0))
			fail_msg("job record %llu: %s", (unsigned long long)recs[i].id,
				 r == 0 ? "loaded" : "left out");
		if (r == 0)
			json_object_put(o);
	}
	assert_int_equal(dmr_job_get_json(&a, 10, &o), 0);
	assert_true(json_object_object_get_ex(o, "error_description", &v));
	assert_string_equal(json_object_get_string(v), "\\x1b[2Jgone");
	json_object_put(o);
	dmr_jobs_close(&a);
}

/* ---- item: retention order, directory fsyncs -------------------------- */

static void test_retention_catalog_first(void **st)
{
	struct dmr_registry *reg = test_bare_registry(state_dir);
	struct dmr_vm *vm = test_make_vm("r", false, 2, 5);
	struct json_object *o, *pts;
	size_t dropped = 0;
	uint32_t ids[1];

	(void)st;
	vm->keep_last = 2;
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_reg_vm_save(reg, vm), 0);
	watch_vm = "r";

	/* The delete fails: the points are gone from the catalog, their
	 * volumes are recorded as still to remove. */
	delete_fail = 1;
	assert_int_not_equal(dmr_retention_apply(reg, vm, &dropped), 0);
	assert_int_equal(delete_calls, 1);
	assert_int_equal(vm->n_points, 2);
	assert_int_equal(vm->n_doomed, 6);
	o = read_state("r");
	assert_true(json_object_object_get_ex(o, "points", &pts));
	assert_int_equal(json_object_array_length(pts), 2);
	assert_true(json_object_object_get_ex(o, "doomed_ids", &pts));
	assert_int_equal(json_object_array_length(pts), 6);
	json_object_put(o);
	/* Their ids are not handed out while their volumes may exist. */
	reg->next_vol_id = 100;
	assert_int_equal(dmr_reg_alloc_vol_ids(reg, 1, ids), 0);
	assert_true(ids[0] >= 106);

	/* The next run removes them, then forgets them. */
	delete_fail = 0;
	assert_int_equal(dmr_retention_apply(reg, vm, &dropped), 0);
	assert_int_equal(dropped, 0);
	assert_int_equal(delete_calls, 2);
	assert_int_equal(n_deleted, 6);
	for (size_t i = 0; i < 6; i++) {
		bool seen = false;

		for (size_t k = 0; k < n_deleted; k++)
			seen = seen || deleted[k] == 100 + i;
		assert_true(seen);
	}
	assert_int_equal(vm->n_doomed, 0);
	o = read_state("r");
	assert_false(json_object_object_get_ex(o, "doomed_ids", NULL));
	json_object_put(o);

	/* One more point over the limit: recorded, then deleted, in one go. */
	vm->keep_last = 1;
	n_deleted = 0;
	assert_int_equal(dmr_retention_apply(reg, vm, &dropped), 0);
	assert_int_equal(dropped, 1);
	assert_int_equal(n_deleted, 2);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->points[0].id, 5);
	test_bare_free(reg);
}

/* A catalog that is written but not durable: the volumes wait. */
static void test_retention_not_durable(void **st)
{
	struct dmr_registry *reg = test_bare_registry(state_dir);
	struct dmr_vm *vm = test_make_vm("n", false, 1, 3);
	size_t dropped = 0;

	(void)st;
	vm->keep_last = 1;
	assert_int_equal(dmr_reg_vm_insert(reg, vm), 0);
	assert_int_equal(dmr_reg_vm_save(reg, vm), 0);
	fail_dir_fsync = true;
	assert_int_equal(dmr_retention_apply(reg, vm, &dropped), -DMR_E_NOT_DURABLE);
	assert_int_equal(delete_calls, 0);
	assert_int_equal(vm->n_points, 1);
	assert_int_equal(vm->n_doomed, 2);
	fail_dir_fsync = false;
	watch_vm = "n";
	assert_int_equal(dmr_retention_apply(reg, vm, &dropped), 0);
	assert_int_equal(delete_calls, 1);
	assert_int_equal(vm->n_doomed, 0);
	test_bare_free(reg);
}

static void test_atomic_write_and_delete_sync(void **st)
{
	struct dmr_registry *reg = test_bare_registry(state_dir);
	_cleanup_free_ char *back = NULL;
	char path[128];

	(void)st;
	snprintf(path, sizeof(path), "%s/f", state_dir);
	assert_int_equal(dmr_write_file_atomic(path, "one", 3, 0600), 0);
	/* The rename happened, the directory fsync did not: changed, and
	 * said so, not reported as if nothing had been written. */
	fail_dir_fsync = true;
	assert_int_equal(dmr_write_file_atomic(path, "two", 3, 0600), -DMR_E_NOT_DURABLE);
	assert_int_equal(dmr_read_file(path, 64, &back, NULL), 0);
	assert_string_equal(back, "two");
	fail_dir_fsync = false;

	/* Removing a VM syncs vms/ after the unlink. */
	assert_int_equal(dmr_reg_vm_insert(reg, test_make_vm("gone", false, 1, 0)), 0);
	assert_int_equal(dmr_reg_vm_save(reg, reg->vms[0]), 0);
	dir_fsyncs = 0;
	assert_int_equal(dmr_reg_vm_delete(reg, "gone"), 0);
	assert_int_equal(dir_fsyncs, 1);
	snprintf(path, sizeof(path), "%s/vms/gone.json", state_dir);
	assert_int_equal(access(path, F_OK), -1);
	/* And says so when that sync fails. */
	assert_int_equal(dmr_reg_vm_insert(reg, test_make_vm("gone2", false, 1, 0)), 0);
	assert_int_equal(dmr_reg_vm_save(reg, reg->vms[0]), 0);
	fail_dir_fsync = true;
	assert_int_equal(dmr_reg_vm_delete(reg, "gone2"), -DMR_E_NOT_DURABLE);
	assert_int_equal(reg->n_vms, 0);
	test_bare_free(reg);
}

/* ---- item: numbers at their bounds ------------------------------------ */

static void test_retention_max_age_wraps(void **st)
{
	struct dmr_vm *vm = test_make_vm("w", false, 1, 5);
	uint64_t now = vm->points[4].created_usec + 3600000000ull;
	_cleanup_free_ size_t *idx = NULL;
	size_t n = 99;

	(void)st;
	/* (2^64 / 10^6 + 1) s: times 10^6 wraps to about 0.55 s. */
	vm->max_age_sec = UINT64_MAX / 1000000u + 1;
	assert_int_equal(dmr_vm_retention_victims(vm, now, &idx, &n), 0);
	assert_int_equal(n, 0);
	free(idx);
	idx = NULL;
	/* At the boundary: a point exactly max_age old stays, one a
	 * microsecond older goes. */
	vm->max_age_sec = 3 * 3600;
	assert_int_equal(dmr_vm_retention_victims(vm, vm->points[0].created_usec +
						  3 * 3600000000ull, &idx, &n), 0);
	assert_int_equal(n, 0);
	free(idx);
	idx = NULL;
	assert_int_equal(dmr_vm_retention_victims(vm, vm->points[0].created_usec +
						  3 * 3600000000ull + 1, &idx, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(idx[0], 0);
	dmr_vm_free(vm);
}

static int call(struct dmr_agent *a, int (*fn)(struct dmr_call *), const char *params)
{
	struct dmr_call c = { .agent = a, .uid = 0, .privileged = true };
	int rc;

	c.params = json_tokener_parse(params);
	c.reply = json_object_new_object();
	assert_non_null(c.params);
	rc = fn(&c);
	if (rc == DMR_RC_INVALID_PARAMETER) {
		/* One line that says why. */
		assert_true(c.error[0] != '\0');
		assert_null(strchr(c.error, '\n'));
	}
	json_object_put(c.params);
	json_object_put(c.reply);
	return rc;
}

static void test_param_bounds(void **st)
{
	struct dmr_agent a = { .state_dir = state_dir };
	char p[512];

	(void)st;
	assert_int_equal(dmr_registry_open(&a), 0);
	assert_int_equal(dmr_jobs_open(&a), 0);
#define RET(...) (snprintf(p, sizeof(p), __VA_ARGS__), call(&a, dmr_h_set_retention, p))
	/* In range: on to the lookup (no such VM); past it: 32773. */
	assert_int_equal(RET("{\"vm\": \"v\", \"max_age\": %llu}", DMR_SECONDS_MAX), DMR_RC_NOT_FOUND);
	assert_int_equal(RET("{\"vm\": \"v\", \"max_age\": %llu}", DMR_SECONDS_MAX + 1),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(RET("{\"vm\": \"v\", \"max_age\": 18446744073709552}"),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(RET("{\"vm\": \"v\", \"max_age\": 99999999999999999999}"),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(RET("{\"vm\": \"v\", \"max_age\": 9223372036854775807}"),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(RET("{\"vm\": \"v\", \"keep_last\": %llu}", DMR_KEEP_LAST_MAX),
			 DMR_RC_NOT_FOUND);
	assert_int_equal(RET("{\"vm\": \"v\", \"keep_last\": %llu}", DMR_KEEP_LAST_MAX + 1),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(RET("{\"vm\": \"v\", \"keep_last\": 0, \"max_age\": 0}"), DMR_RC_NOT_FOUND);
#undef RET
#define ADD(...) (snprintf(p, sizeof(p), __VA_ARGS__), call(&a, dmr_h_add_vm, p))
	/* Thin without a pool is refused after the numbers (32775). */
	assert_int_equal(ADD("{\"vm\": \"v\", \"disks\": [{\"name\": \"a\", \"path\": \"/x\"}], "
			     "\"keep_last\": %llu, \"max_age\": %llu}", DMR_KEEP_LAST_MAX,
			     DMR_SECONDS_MAX), DMR_RC_INVALID_STATE);
	assert_int_equal(ADD("{\"vm\": \"v\", \"disks\": [{\"name\": \"a\", \"path\": \"/x\"}], "
			     "\"max_age\": %llu}", DMR_SECONDS_MAX + 1), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(ADD("{\"vm\": \"v\", \"backend\": \"classic\", \"disks\": [{\"name\": "
			     "\"a\", \"path\": \"/x\"}], \"cow_size\": %llu}", DMR_SIZE_MAX + 4096),
			 DMR_RC_INVALID_PARAMETER);
	assert_int_equal(ADD("{\"vm\": \"v\", \"backend\": \"classic\", \"disks\": [{\"name\": "
			     "\"a\", \"path\": \"/x\"}], \"max_points\": 65}"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(ADD("{\"vm\": \"v\", \"backend\": \"classic\", \"disks\": [{\"name\": "
			     "\"a\", \"path\": \"/x\"}], \"max_points\": 0}"), DMR_RC_INVALID_PARAMETER);
	assert_int_equal(ADD("{\"vm\": \"v\", \"backend\": \"classic\", \"disks\": [{\"name\": "
			     "\"a\", \"path\": \"/nonexistent/x\", \"size_bytes\": %llu}]}",
			     DMR_SIZE_MAX + 512), DMR_RC_INVALID_PARAMETER);
#undef ADD
	snprintf(p, sizeof(p), "{\"data\": \"/nonexistent/d\", \"meta\": \"/nonexistent/m\", "
		 "\"data_size\": %llu}", DMR_SIZE_MAX + 512);
	assert_int_equal(call(&a, dmr_h_create_pool, p), DMR_RC_INVALID_PARAMETER);
	snprintf(p, sizeof(p), "{\"data\": \"/nonexistent/d\", \"meta\": \"/nonexistent/m\", "
		 "\"meta_size\": 99999999999999999999}");
	assert_int_equal(call(&a, dmr_h_create_pool, p), DMR_RC_INVALID_PARAMETER);
	/* Ids are unbounded but for json-c's silent saturation. */
	assert_int_equal(call(&a, dmr_h_get_job, "{\"job\": 9223372036854775806}"), DMR_RC_NOT_FOUND);
	assert_int_equal(call(&a, dmr_h_get_job, "{\"job\": 99999999999999999999}"),
			 DMR_RC_INVALID_PARAMETER);
	dmr_jobs_close(&a);
	dmr_registry_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_field_wrong, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_arrays_and_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registry_open_hostile_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_file_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_records_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_catalog_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_not_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_and_delete_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_max_age_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_param_bounds, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
