/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/store/registry.h - the agent's catalog: the pool, the VMs, their disks and
 * replication points, in memory and in durable state files.
 *
 * Files under --state-dir (each one JSON document with "schema": 1, written
 * atomically: temp file, fsync, rename, fsync of the directory):
 *   pool.json        the pool's backing paths, block size, the transaction
 *                    id the catalog is in step with, the thin id counter
 *   vms/NAME.json    one VM: disks, points, retention, state
 * A VM file that does not parse (or is not UTF-8), has an unknown schema, or
 * holds a field of the wrong type or out of the bounds below leaves that VM
 * out: it is reported once in the log (with the field) and left alone, never
 * deleted or rewritten, and the agent serves the rest.  A bad pool.json
 * likewise: the thin VMs' storage is then unavailable (32777).
 *
 * Locking: reg->lock guards every structure below; hold it only for memory
 * work, never across dm calls.  Mutating operations on one VM are serialised
 * by the VM busy lock (agent/engine/job.h), so a VM pointer stays valid while it is
 * held.  Pool metadata batches are serialised by dmr_reg_txn_begin/_end.
 */
#ifndef DMR_AGENT_REGISTRY_H
#define DMR_AGENT_REGISTRY_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/core/agent.h"
#include "agent/store/repl.h"
#include "common/util.h"
#include "common/uuid.h"
#include "dm/name.h"
#include "snapshots/ident.h"
#include "snapshots/pool.h"

#define DMR_STATE_SCHEMA 1

/* Bounds of every number the API and the state files take: whatever is
 * computed from them (microseconds, sectors, progress) cannot overflow.
 * Sizes: 1 PiB; durations: 100 years of seconds. */
#define DMR_VM_DISKS_MAX 64
#define DMR_SIZE_MAX (1ull << 50)
#define DMR_SECONDS_MAX (100ull * 366 * 86400)
#define DMR_KEEP_LAST_MAX 1000000ull
#define DMR_CLASSIC_MAX_POINTS_MAX 64u
/* A per-VM cap on points: every origin write is copied to each point's
 * store, so write cost grows with the count (README, measured). */
#define DMR_CLASSIC_MAX_POINTS_DEFAULT 8u

enum dmr_vm_state {
	DMR_VM_REPLICATING,
	DMR_VM_FAILOVER_IN_PROGRESS,
	DMR_VM_RECOVERED,
	DMR_VM_COMMITTED,
};

struct dmr_point {
	uint64_t id;
	/* The same point has the same uuid on every host (docs/stream.md):
	 * made with the point, carried by its stream, kept by the replica. */
	char uuid[DMR_UUID_STR_SIZE];
	uint64_t created_usec;  /* CLOCK_REALTIME */
	bool application;       /* consistency: application (else crash) */
	char *label;
	bool valid;
	/* Non-zero while the point is being made: the pool transaction id
	 * that, once the kernel reports it, proves the snapshots exist. */
	uint64_t pending_tid;
	/* One per disk, in disk order: thin ids (thin backend), or the
	 * numbers of the points' COW stores (classic backend, from the same
	 * allocator, so they never collide).  The state file keeps the
	 * historical key "thin_ids". */
	uint32_t *vol_ids;
	/* Runtime only (classic): highest COW use seen, in percent, and
	 * whether the warning for it was logged. */
	unsigned cow_pct;
	bool cow_warned;
};

/* Classic backend: a committed failover.  The writable views (ids, one
 * per disk) of point `point` became the disks' origin for good; points
 * with an id >= since are snapshots of those views (agent/backend/classic.h). */
struct dmr_layer {
	uint64_t point;
	uint64_t since;
	uint32_t *ids;
};

struct dmr_disk {
	char *name;
	uint64_t size_bytes;
	uint32_t thin_id;       /* the live replica volume (thin; 0 for classic) */
	/* thin: imported from (informational), or NULL; classic: the block
	 * device or image file the disk lives on, in place. */
	char *source;
	char *base_dev;         /* runtime, classic: source's block device */
	/* classic: what source was when the disk was added (checked before
	 * every activation, agent/backend/classic.c); NULL if not known (a state
	 * file from before identities were recorded). */
	struct dmr_ident *ident;
};

enum dmr_vm_role {
	DMR_VM_PRIMARY,         /* made here (vm add): its disks are live here */
	DMR_VM_REPLICA,         /* made by a received stream: points only */
};

struct dmr_vm {
	char *name;
	/* Made with the VM and carried by its streams: a replica takes
	 * streams only for the VM of its own uuid, whatever the name. */
	char uuid[DMR_UUID_STR_SIZE];
	enum dmr_vm_role role;
	/* Replica: when the newest point arrived (CLOCK_REALTIME), 0: never. */
	uint64_t last_received_usec;
	/* Primary: continuous replication to another host (agent/store/repl.h);
	 * off (repl.to NULL) until root sets it. */
	struct dmr_repl repl;
	char *backend;          /* "thin" or "classic" */
	enum dmr_vm_state state;
	bool test_failover;
	char *qmp, *qga, *exec_shim;
	/* The libvirt domain (name or UUID) the guest is, and its URI (NULL:
	 * qemu:///system), or NULL (agent/guest/libvirt.h). */
	char *libvirt, *libvirt_uri;
	size_t n_disks;
	struct dmr_disk *disks;
	size_t n_points;
	struct dmr_point *points; /* oldest first */
	uint64_t next_point_id;
	uint64_t keep_last;     /* retention: 0 = no limit */
	uint64_t max_age_sec;   /* retention: 0 = no limit */
	/* Non-zero while AddVirtualSystem has not finished: the transaction
	 * id of the volumes' creation.  A VM left so by a crash is rolled
	 * back at start (its volumes are copies; the source is intact). */
	uint64_t import_tid;
	bool importing;

	/* Failover.  overlay_ids[i] is the writable thin snapshot of the
	 * failover point that disk i runs on while recovered (0: none);
	 * test_ids[i] likewise for a test failover's /dev/dmrep/VM-test/DISK.
	 * intent names an operation in flight ("initiate", "revert",
	 * "commit"), written before its first change, cleared after its last:
	 * crash recovery reads it with the live dm tables as the truth. */
	uint64_t failover_point;  /* 0: none */
	uint32_t *overlay_ids;
	uint64_t test_point;      /* 0: none */
	uint32_t *test_ids;
	char intent[16];
	uint64_t intent_point;
	bool intent_guest_ran;    /* the guest ran when the intent was written */

	/* Failover network settings (SetFailoverNetworkAdapterSettings): an
	 * array of {"mac", "addresses", "gateways", "dns"}, validated when
	 * set, or NULL.  Handed to the failover hooks (agent/guest/hooks.h). */
	struct json_object *network;

	/* Classic backend: bytes of each COW store (per disk, per point or
	 * view), the cap on points, the committed layers, oldest first. */
	uint64_t cow_size;
	uint64_t max_points;
	size_t n_layers;
	struct dmr_layer *layers;

	/* Runtime: uuids were missing from the state file and made at load
	 * (a file from before uuids): the loader saves the VM once. */
	bool uuids_made;
	/* Runtime: why the VM was left down at activation (a disk's device
	 * is not the disk that was added), or NULL. */
	char *down_reason;

	/* Volumes (ids, either backend) that the catalog no longer lists and
	 * that are still to be removed: points are dropped from the catalog,
	 * with their ids here, before their volumes are deleted, so a crash
	 * leaves at worst a volume to remove (done at start), never a listed
	 * point without one.  Still "in use" for the id allocator. */
	size_t n_doomed;
	uint32_t *doomed;
};

struct dmr_registry {
	pthread_mutex_t lock;
	pthread_mutex_t txn_lock;
	char *state_dir;
	bool have_pool;
	bool pool_unreadable;   /* pool.json is there but bad: never rewritten */
	struct dmr_pool_spec pool_spec;
	struct dmr_pool *pool;  /* active pool, or NULL if it could not start */
	/* What the pool's data and metadata paths were at pool create (NULL:
	 * not known); why the pool was left down or could not be activated
	 * at start, and what to do about it (both NULL while it is up, or
	 * when there is no pool). */
	struct dmr_ident *pool_ident[2];
	char *pool_down_reason;
	char *pool_down_advice;
	uint64_t tid;           /* pool transaction id the catalog matches */
	uint32_t next_vol_id;
	size_t n_vms;
	struct dmr_vm **vms;
	/* VM state files left out at start: [{"file", "error"}] (vm list). */
	struct json_object *unloadable;
};

/* Load the catalog: the state directory made if needed, pool.json and every
 * VM file read (bad ones left out, see above).  No device is touched: the
 * pool's activation and the recovery of what a crash left are
 * dmr_recovery_run()'s (agent/engine/recovery.h), next. */
int dmr_registry_open(struct dmr_agent *a);
void dmr_registry_close(struct dmr_agent *a);

/* Under reg->lock: look up a VM; NULL if absent. */
struct dmr_vm *dmr_reg_vm_find(struct dmr_registry *reg, const char *name);
/* Take ownership of vm (caller holds reg->lock); -EEXIST if the name is taken. */
int dmr_reg_vm_insert(struct dmr_registry *reg, struct dmr_vm *vm);
/* Unlink and free (caller holds reg->lock), and delete its state file (with
 * an fsync of vms/, so that it does not come back after a power loss).
 * -DMR_E_NOT_DURABLE: gone from memory and from vms/, but not durably. */
int dmr_reg_vm_delete(struct dmr_registry *reg, const char *name);
void dmr_vm_free(struct dmr_vm *vm);
DMR_DEFINE_FREEP(struct dmr_vm *, dmr_vm_free)
struct dmr_point *dmr_vm_point_find(struct dmr_vm *vm, uint64_t id);
/* A libvirt domain (name or UUID) or, with uri, a libvirt URI as a VM
 * records it: 1 to DMR_VM_LIBVIRT_MAX bytes of printable ASCII, no '/'
 * in a domain (libvirt refuses it in names), no blank in a URI.  Pure. */
#define DMR_VM_LIBVIRT_MAX 256
/* The URI of a VM that names none (CONTRACT.md §3). */
#define DMR_VM_LIBVIRT_DEFAULT_URI "qemu:///system"
bool dmr_vm_libvirt_valid(const char *s, bool uri);
/* Remove points[i] from the array (no dm work). */
void dmr_vm_point_drop(struct dmr_vm *vm, size_t i);

/* Write vms/NAME.json / pool.json (caller holds reg->lock).  As
 * dmr_write_file_atomic: on -DMR_E_NOT_DURABLE the file holds what memory
 * holds (keep it; roll nothing back), but do nothing irreversible that
 * needs it to survive a power loss. */
int dmr_reg_vm_save(struct dmr_registry *reg, const struct dmr_vm *vm);
int dmr_reg_pool_save(struct dmr_registry *reg);

/* Allocate n volume ids (thin ids, or classic COW store numbers: one
 * counter) not used by any VM (caller holds reg->lock). */
int dmr_reg_alloc_vol_ids(struct dmr_registry *reg, size_t n, uint32_t *ids);

/* Serialise a pool metadata batch: returns with txn_lock held and
 * *ret_old = current catalog tid, *ret_new = old + 1.  _end releases it;
 * with done, records new as the catalog's tid and saves pool.json. */
void dmr_reg_txn_begin(struct dmr_registry *reg, uint64_t *ret_old, uint64_t *ret_new);
int dmr_reg_txn_end(struct dmr_registry *reg, bool done, uint64_t new_tid);

/* Names of dm devices: a disk's stable device dmrep-VM:DISK (UUID
 * DMREP-disk-VM:DISK, /dev/dmrep/VM/DISK); a test failover's view of it
 * dmrep-VM:test:DISK (DMREP-test-VM:DISK, /dev/dmrep/VM-test/DISK).
 * Distinct VM/disk pairs always give distinct names; the longest names
 * fit.  -EINVAL for a VM or disk name dmr_name_obj_valid refuses. */
int dmr_vm_disk_dm_name(const char *vm, const char *disk, char buf[DMR_DM_NAME_SIZE]);
int dmr_vm_disk_dm_uuid(const char *vm, const char *disk, char buf[DMR_DM_UUID_SIZE]);
int dmr_vm_test_dm_name(const char *vm, const char *disk, char buf[DMR_DM_NAME_SIZE]);
int dmr_vm_test_dm_uuid(const char *vm, const char *disk, char buf[DMR_DM_UUID_SIZE]);
/* Whether those devices are the VM's own: dmr_vm_dm_check
 * (agent/engine/vm.h). */

/* JSON shapes of CONTRACT.md (new references). Caller holds reg->lock. */
struct json_object *dmr_vm_api_json(const struct dmr_vm *vm);
struct json_object *dmr_point_api_json(const struct dmr_point *p, size_t n_disks);
const char *dmr_vm_state_name(enum dmr_vm_state s);
const char *dmr_vm_role_name(enum dmr_vm_role r);

/* State-file round trip (exposed for unit tests). */
struct json_object *dmr_vm_state_json(const struct dmr_vm *vm);
int dmr_vm_from_state_json(struct json_object *o, struct dmr_vm **ret_vm);

/* Record points[idx[0..n)] (indexes newest first, as the retention
 * victims come) as dropped: out of the points, their ids into doomed; then
 * save.  The volumes are not touched (dmr_retention_drop_points deletes them).
 * Caller holds reg->lock. */
int dmr_reg_points_doom(struct dmr_registry *reg, struct dmr_vm *vm, const size_t *idx, size_t n);
/* Forget doomed ids[0..n) (their volumes are gone) and save. */
int dmr_reg_doomed_forget(struct dmr_registry *reg, struct dmr_vm *vm, const uint32_t *ids,
			  size_t n);

/* Retention: indexes of points that the VM's policy drops at time now,
 * never the latest valid point, nor (a primary's) the point the replica
 * acknowledged last (repl.acked_uuid).  *ret_idx malloc()ed (may be NULL if 0). */
int dmr_vm_retention_victims(const struct dmr_vm *vm, uint64_t now_usec,
			     size_t **ret_idx, size_t *ret_n);

#endif
