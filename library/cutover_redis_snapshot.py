#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_redis_snapshot
short_description: Take, verify, list and prune verified, streamed snapshots of Redis
description:
  - Writes a snapshot of Redis to C(<dest>/<snapshot_id>/) - a data file plus a C(manifest.json) with
    per-namespace key counts and the sha256 of the data file - in one of three modes (O(mode)).
  - The snapshot is built in a hidden directory beside its final place, checked, and only then moved into
    place in one rename; files are mode 0600, the directory 0700. An existing snapshot is never overwritten.
  - Memory stays flat however many keys there are and however big they are - data is streamed in batches,
    payloads larger than 8 MiB are streamed on their own, and no list of all keys is kept.
  - Keys holding values of Redis module types are refused with a message naming the key and the module type.
  - Also lists the snapshots of O(dest) (O(state=list)) and prunes them (O(state=pruned)), keeping the
    O(keep) newest and every id in O(protect).
  - Runs on the Redis host (modes C(rdb) and, for O(verify=full), any mode), or on any host that can reach
    Redis (modes C(logical) and C(replica)); imports only the standard library and redis-py there.
version_added: "0.1.0"
author: cutover
options:
  dest:
    description:
      - Directory that holds snapshots; the snapshot goes to C(<dest>/<snapshot_id>/).
      - Created with mode 0700 when absent.
    type: path
    required: true
  snapshot_id:
    description:
      - Name of the snapshot, the run id of the migration it guards. Letters, digits, C(.), C(_) and C(-).
      - Required unless O(state) is C(list) or C(pruned).
    type: str
  run_id:
    description: Run id recorded in the manifest (default O(snapshot_id)).
    type: str
  namespaces:
    description:
      - Redis glob patterns (SCAN MATCH syntax) that select the keys, e.g. C(tts:*) or C(ai_service_alerts).
      - A key belongs to the first pattern (in list order) that matches it.
      - Mode C(logical) writes only these keys; modes C(rdb) and C(replica) keep the whole server and
        count these namespaces (in database O(redis.db)) in the manifest.
    type: list
    elements: str
    default: ['*']
  mode:
    description:
      - C(logical) - SCAN + DUMP + PEXPIRETIME per namespace, one server-side Lua call per page (or a pipeline
        when the Redis user may not run scripts). Works on managed Redis; restores per namespace.
      - C(rdb) - BGSAVE, then the RDB file is copied, hashed and parsed while the fork writes it. Needs the Redis
        host's filesystem (O(rdb_path) or CONFIG GET). The fastest; keeps the whole server.
      - C(replica) - receives the RDB over the replication protocol (REPLCONF rdb-only + SYNC, as
        C(redis-cli --rdb) does), copied, hashed and parsed as it arrives. For hosts whose data directory you
        cannot read. See O(replica_transfer) and O(replica_sync_delay).
    type: str
    choices: [logical, rdb, replica]
    default: logical
  batch_size:
    description: Keys per SCAN page and per round trip (1 to 100000).
    type: int
    default: 1000
  state:
    description:
      - C(present) creates the snapshot unless one with this id exists and verifies, which is then returned
        unchanged. An existing snapshot that does not verify makes the module fail; it is never replaced.
      - C(verified) only verifies an existing snapshot (no Redis connection, unless O(verify=full)); for a logical
        snapshot that includes every DUMP payload's own CRC-64, as a restore checks it.
      - An existing snapshot whose manifest names another snapshot id (or another run than O(run_id), when given)
        is refused, never taken for this one.
      - C(list) returns every snapshot of O(dest) (cheap checks only), oldest first.
      - C(pruned) deletes snapshots beyond the O(keep) newest, never one named in O(protect) and never a
        directory that is not a well-formed cutover snapshot; also removes staging directories that
        snapshots which died left behind more than 6 hours ago.
    type: str
    choices: [present, verified, list, pruned]
    default: present
  verify:
    description:
      - C(checksum) - re-read the data file, check its sha256, its structure and its key counts.
      - C(full) - also load the snapshot into a scratch redis-server (on this host, see
        O(redis_server_binary)) and compare every key's type, value and absolute expiry with the source
        Redis; differing keys are reported by name (never by value). Fails when more than
        O(verify_max_differences) keys differ.
    type: str
    choices: [checksum, full]
    default: checksum
  verify_ttl_tolerance_ms:
    description: With O(verify=full), two absolute expiries this close (ms) count as equal.
    type: int
    default: 5
  verify_max_differences:
    description:
      - With O(verify=full), how many keys may differ (changed, added or deleted on the source since the
        snapshot) before verification fails. 0 suits a quiet source; a live one needs some room. Keys that
        expired since the snapshot are no difference (RV(verification.expired_since)).
    type: int
    default: 0
  min_free_mb:
    description:
      - Refuse to start when the filesystem of O(dest) has less free space than the estimated snapshot
        size (Redis C(used_memory_dataset)) plus this many MiB.
    type: int
    default: 64
  rdb_path:
    description:
      - Mode C(rdb) - the RDB file Redis saves (C(dir)/C(dbfilename) of its config). Default - asked from Redis
        with CONFIG GET, which the Redis user must then be allowed.
    type: path
  replica_transfer:
    description:
      - Mode C(replica) - C(diskless) asks Redis to stream the RDB from its fork straight to the socket; Redis
        first waits C(repl-diskless-sync-delay) seconds (5 by default) for more replicas, unless
        O(replica_sync_delay) lowers it.
      - C(disk) does not announce the EOF capability, so Redis starts a disk BGSAVE at once (no delay) and
        sends the file - it writes Redis's own RDB file on the Redis host.
    type: str
    choices: [diskless, disk]
    default: diskless
  replica_sync_delay:
    description:
      - Mode C(replica), diskless - set C(repl-diskless-sync-delay) to this many seconds for the moment this
        SYNC waits, and put the old value back as soon as the transfer starts. Needs ACL
        C(+config|get +config|set). Default - leave the server's setting (the wait is reported as C(sync_wait_ms)).
    type: int
  timeout:
    description: Seconds a BGSAVE or a replication transfer may take before the module gives up.
    type: int
    default: 3600
  redis_server_binary:
    description: redis-server used for the scratch server of O(verify=full). Default - found on PATH.
    type: path
  scratch_dir:
    description: Where the scratch server's private directory is made (default - the system temp dir).
    type: path
  keep:
    description: With O(state=pruned), how many of the newest snapshots stay.
    type: int
  protect:
    description:
      - With O(state=pruned), snapshot ids that are never deleted, e.g. the snapshot a pending rollback needs.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - cutover_redis
  - action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be written (keys per namespace by SCAN, the path, the estimated size) or
      deleted; writes and deletes nothing.
  diff_mode:
    support: partial
    details: Reports counts only, never values.
  platform:
    platforms: posix
notes:
  - Restore with M(cutover_redis_restore). Absolute expiry is kept exactly with Redis 7.0+ (PEXPIRETIME) in
    mode C(logical); older servers give PTTL plus the server clock, exact to a few milliseconds. Modes C(rdb)
    and C(replica) keep Redis's own absolute expiries.
  - The least-privilege ACL each mode needs is in docs/SNAPSHOTS.md.
  - Redis Cluster is not supported.
seealso:
  - module: cutover_redis_restore
"""

EXAMPLES = r"""
- name: Snapshot the caches before migrating
  cutover_redis_snapshot:
    redis:
      host: 127.0.0.1
      password: "{{ redis_password }}"
    dest: /var/lib/cutover/snapshots
    snapshot_id: "{{ cutover_run_id }}"
    namespaces: ['tts:*', 'ai:*', 'safety:*', 'security:*', 'ai_service_alerts']
  register: snap

- name: Whole-server snapshot from the Redis host's own RDB, verified key by key against Redis
  cutover_redis_snapshot:
    redis: "{{ cutover_redis }}"
    mode: rdb
    dest: /var/lib/cutover/snapshots
    snapshot_id: "{{ cutover_run_id }}"
    verify: full
  become: true

- name: Snapshot a Redis whose files we cannot read, over the replication protocol, without the 5 s wait
  cutover_redis_snapshot:
    redis: "{{ cutover_redis }}"
    mode: replica
    replica_sync_delay: 0
    dest: /var/lib/cutover/snapshots
    snapshot_id: "{{ cutover_run_id }}"

- name: Keep the 5 newest snapshots and the one the pending rollback needs
  cutover_redis_snapshot:
    dest: /var/lib/cutover/snapshots
    state: pruned
    keep: 5
    protect: ["{{ cutover_run_id }}"]
"""

RETURN = r"""
snapshot:
  description: The snapshot (in check mode, what would be written; C(sha256) is then null).
  returned: when O(state) is C(present) or C(verified)
  type: dict
  contains:
    id:
      description: Snapshot id.
      type: str
      sample: 20261125T222114Z
    run_id:
      description: Run id recorded in the manifest (O(run_id)).
      type: str
      sample: 20261125T222114Z
    source:
      description:
        - The Redis the snapshot was taken from, as C(redis://host:port/db) (never credentials). The manifest also
          records C(source_server) - this address, the database, and Redis's C(run_id) and C(tcp_port) from INFO -
          which M(cutover_redis_restore) O(cutover_redis_restore#module:expect) compares.
      type: str
      sample: redis://127.0.0.1:6379/0
    path:
      description: Snapshot directory.
      type: str
      sample: /var/lib/cutover/snapshots/20261125T222114Z
    manifest:
      description: Path of C(manifest.json).
      type: str
    data_file:
      description: Path of the data file (C(keys.cutsnap), or C(dump.rdb) for modes C(rdb) and C(replica)).
      type: str
    mode:
      description: Capture mode.
      type: str
      sample: logical
    keys:
      description: Keys of the namespaces in the snapshot.
      type: int
      sample: 15230
    namespaces:
      description: Keys per pattern, in the order given.
      type: dict
      sample: {"tts:*": 15000, "ai_service_alerts": 1}
    vanished:
      description: Keys listed by SCAN that were gone (deleted or expired) when dumped; not written (logical).
      type: int
      sample: 0
    expired:
      description: Keys in the RDB whose expiry had passed when it was taken (rdb, replica); Redis drops them on load.
      type: int
      sample: 0
    bytes:
      description: Size of the data file.
      type: int
    sha256:
      description: sha256 of the data file.
      type: str
    verified:
      description: True once the data file was re-read and matched its sha256 and key counts.
      type: bool
    created_at:
      description: When the capture started (UTC, ISO 8601).
      type: str
      sample: "2026-11-25T22:21:14.123Z"
verification:
  description:
    - With O(verify=full), how the snapshot compares with the source, key by key. C(expired_since) counts the
      snapshot keys whose expiry passed before they could be compared (gone from the scratch server, or from the
      source once their time came); they are not differences.
  returned: when O(verify=full)
  type: dict
  sample: {"compared": 15230, "same": 15228, "expired_since": 0, "differences": 2,
           "by_reason": {"value": 1, "ttl": 0, "missing_in_source": 1, "extra_in_source": 0},
           "differing_keys": [{"key": "tts:audio:9", "reason": "value"}], "ttl_tolerance_ms": 5}
capture:
  description: How the data was captured (modes rdb and replica) - method, sync wait, diskless delay.
  returned: when a snapshot was written in mode C(rdb) or C(replica)
  type: dict
  sample: {"capture": "replication, diskless", "sync_wait_ms": 12, "diskless_sync_delay_s": 0}
snapshots:
  description: The snapshots of O(dest), oldest first, with C(state) C(ok), C(damaged) or C(foreign).
  returned: when O(state) is C(list) or C(pruned)
  type: list
  elements: dict
removed:
  description: Paths deleted (or, in check mode, that would be deleted) by O(state=pruned).
  returned: when O(state=pruned)
  type: list
  elements: str
kept:
  description: Why each remaining snapshot stays (O(state=pruned)).
  returned: when O(state=pruned)
  type: list
  elements: str
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_redis import (
    RedisError,
    ResponseError,
    connect_or_fail,
    describe_endpoint,
    redis_connection_argument_spec,
)
from ansible.module_utils.cutover_snapshot import (
    DATA_FILE_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE_NAME,
    MANIFEST_FORMAT,
    RDB_FILE_NAME,
    RDB_MODES,
    ServerClock,
    SnapshotDirectory,
    SnapshotError,
    SnapshotReader,
    SnapshotWriter,
    open_private,
    check_data_file,
    ensure_private_dir,
    free_bytes,
    list_snapshots,
    prune_plan,
    remove_snapshot,
    scripting_allowed,
    server_version,
    snapshot_summary,
    stale_partials,
    utc_now_iso,
    valid_snapshot_id,
    verify_snapshot,
)
from ansible.module_utils.cutover_rdb import RdbError
from ansible.module_utils.cutover_snapshot_logical import (
    BigKeyFetcher,
    LuaCapture,
    PipelineCapture,
    count_keys,
    write_records,
)
from ansible.module_utils.cutover_snapshot_rdb import capture_bgsave, capture_replica, rdb_location
from ansible.module_utils.cutover_snapshot_scratch import (
    Comparison,
    ScratchServer,
    compare_snapshot,
    find_redis_server,
    load_logical_into,
)

MIB = 1024 * 1024
MAX_BATCH_SIZE = 100000
MAX_NAMESPACES = 65535
STALE_PARTIAL_S = 6 * 3600
IDLESS_STATES = ("list", "pruned")


def build_argument_spec() -> dict[str, Any]:
    spec = redis_connection_argument_spec()
    spec.update(
        dest={"type": "path", "required": True},
        snapshot_id={"type": "str"},
        run_id={"type": "str"},
        namespaces={"type": "list", "elements": "str", "default": ["*"]},
        mode={"type": "str", "choices": ["logical", "rdb", "replica"], "default": "logical"},
        batch_size={"type": "int", "default": 1000},
        state={"type": "str", "choices": ["present", "verified", "list", "pruned"], "default": "present"},
        verify={"type": "str", "choices": ["checksum", "full"], "default": "checksum"},
        verify_ttl_tolerance_ms={"type": "int", "default": 5},
        verify_max_differences={"type": "int", "default": 0},
        min_free_mb={"type": "int", "default": 64},
        rdb_path={"type": "path"},
        replica_transfer={"type": "str", "choices": ["diskless", "disk"], "default": "diskless"},
        replica_sync_delay={"type": "int"},
        timeout={"type": "int", "default": 3600},
        redis_server_binary={"type": "path"},
        scratch_dir={"type": "path"},
        keep={"type": "int"},
        protect={"type": "list", "elements": "str", "default": []},
    )
    return spec


def option_problems(params: dict[str, Any]) -> list[str]:
    """Messages for every invalid option, each naming the option and what is allowed."""
    problems = []
    state = params["state"]
    if state not in IDLESS_STATES:
        if params["snapshot_id"] is None:
            problems.append("snapshot_id is required when state is %s" % state)
        elif not valid_snapshot_id(params["snapshot_id"]):
            problems.append("snapshot_id %r is invalid: use letters, digits, '.', '_' and '-' (not '.' or '..')"
                            % params["snapshot_id"])
    patterns = params["namespaces"]
    if not patterns or any(not pattern for pattern in patterns):
        problems.append("namespaces must be a non-empty list of non-empty Redis glob patterns")
    elif len(set(patterns)) != len(patterns):
        duplicates = sorted({pattern for pattern in patterns if patterns.count(pattern) > 1})
        problems.append("namespaces lists a pattern more than once: %s" % ", ".join(duplicates))
    elif len(patterns) > MAX_NAMESPACES:
        problems.append("namespaces may hold at most %d patterns" % MAX_NAMESPACES)
    if not 1 <= params["batch_size"] <= MAX_BATCH_SIZE:
        problems.append("batch_size must be between 1 and %d, got %d" % (MAX_BATCH_SIZE, params["batch_size"]))
    for name in ("min_free_mb", "verify_ttl_tolerance_ms", "verify_max_differences"):
        if params[name] < 0:
            problems.append("%s must be 0 or more, got %d" % (name, params[name]))
    if params["timeout"] < 1:
        problems.append("timeout must be at least 1 second, got %d" % params["timeout"])
    if params["replica_sync_delay"] is not None and (params["mode"] != "replica" or params["replica_transfer"] != "diskless"):
        problems.append("replica_sync_delay applies only to mode replica with replica_transfer diskless")
    elif params["replica_sync_delay"] is not None and params["replica_sync_delay"] < 0:
        problems.append("replica_sync_delay must be 0 or more seconds, got %d" % params["replica_sync_delay"])
    if params["rdb_path"] and params["mode"] != "rdb":
        problems.append("rdb_path applies only to mode rdb")
    if state == "pruned" and (params["keep"] is None or params["keep"] < 0):
        problems.append("state pruned needs keep, the number of newest snapshots to keep (0 or more)")
    if params["protect"] and state != "pruned":
        problems.append("protect applies only to state pruned")
    return problems


# ---------------------------------------------------------------------------------------------------
# Planning (check mode) and the free-space check

def estimated_snapshot_bytes(client: Any) -> int:
    """Upper estimate of the data file size: the dataset's memory (DUMP payloads and RDB files are smaller)."""
    memory = client.info("memory")
    return int(memory.get("used_memory_dataset", memory.get("used_memory", 0)))


def free_space_problem(client: Any, dest: str, min_free_mb: int) -> str | None:
    estimate = estimated_snapshot_bytes(client)
    available = free_bytes(dest)
    if available >= estimate + min_free_mb * MIB:
        return None
    return ("refusing to snapshot: the filesystem of dest %s has %.1f MiB free, the snapshot needs about "
            "%.1f MiB (Redis used_memory_dataset) plus min_free_mb %d MiB"
            % (dest, available / MIB, estimate / MIB, min_free_mb))


def planned_snapshot(module: AnsibleModule, client: Any, directory: str) -> dict[str, Any]:
    """What check mode reports: the snapshot that would be written (keys counted by SCAN)."""
    params = module.params
    try:
        counts: dict[str, Any] = count_keys(client, params["namespaces"], params["batch_size"])
    except ResponseError as exc:  # e.g. an rdb/replica user without +scan: counts unknown until the RDB is read
        module.warn("cannot count the keys in check mode (%s); the snapshot reports them once taken" % exc)
        counts = dict.fromkeys(params["namespaces"])
    known = [count for count in counts.values() if count is not None]
    data_file = RDB_FILE_NAME if params["mode"] in RDB_MODES else DATA_FILE_NAME
    return {
        "id": params["snapshot_id"],
        "run_id": params["run_id"] or params["snapshot_id"],
        "source": describe_endpoint(params["redis"]),
        "path": directory,
        "manifest": os.path.join(directory, MANIFEST_FILE_NAME),
        "data_file": os.path.join(directory, data_file),
        "mode": params["mode"],
        "keys": sum(known) if len(known) == len(counts) else None,
        "namespaces": counts,
        "vanished": 0,
        "expired": 0,
        "bytes": None,
        "estimated_bytes": estimated_snapshot_bytes(client),
        "sha256": None,
        "verified": False,
        "created_at": None,
    }


# ---------------------------------------------------------------------------------------------------
# Writing

def source_identity(client: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Which server and database the snapshot comes from: the address as given and Redis's own view of itself
    (its run_id changes when it restarts; a restore with expect.same_server compares either)."""
    info = client.info("server")
    return {"endpoint": describe_endpoint(options), "db": int(client.connection_pool.connection_kwargs.get("db") or 0),
            "redis_run_id": info.get("run_id"), "tcp_port": int(info.get("tcp_port") or 0)}


def base_manifest(params: dict[str, Any], created_at: str, version: tuple[str, tuple[int, ...]],
                  source: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "snapshot_id": params["snapshot_id"],
        "run_id": params["run_id"] or params["snapshot_id"],
        "mode": params["mode"],
        "created_at": created_at,
        "source": source["endpoint"],
        "source_server": source,
        "redis_version": version[0],
    }


def choose_capture(module: AnsibleModule, client: Any, use_pexpiretime: bool) -> Any:
    if scripting_allowed(client, ResponseError):
        return LuaCapture(client, use_pexpiretime)
    module.warn("this Redis user may not run Lua scripts; snapshotting with pipelined SCAN + DUMP, "
                "which is slower and may count keys deleted meanwhile as vanished")
    return PipelineCapture(client, use_pexpiretime)


def write_logical_snapshot(module: AnsibleModule, client: Any, staging: SnapshotDirectory,
                           version: tuple[str, tuple[int, ...]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Capture, write, re-read and check the data file, then write the manifest (all in the staging dir)."""
    params = module.params
    use_pexpiretime = version[1] >= (7, 0)
    capture = choose_capture(module, client, use_pexpiretime)
    source = source_identity(client, params["redis"])
    created_at = utc_now_iso()
    data_path = staging.file_path(DATA_FILE_NAME)
    writer = SnapshotWriter(data_path, params["snapshot_id"], params["mode"], created_at, params["namespaces"])
    try:
        vanished = write_records(writer, capture, params["namespaces"], params["batch_size"])
        size, sha256 = writer.finish()
    finally:
        writer.close()
        capture.close()
    namespaces = dict(zip(writer.namespaces, writer.counts))
    check_data_file(data_path, sha256, namespaces, params["snapshot_id"])
    manifest = dict(
        base_manifest(params, created_at, version, source),
        completed_at=utc_now_iso(),
        capture=capture.name,
        expiry_source="PEXPIRETIME" if use_pexpiretime else "PTTL + server TIME (Redis < 7.0, exact to a few ms)",
        namespaces=namespaces,
        keys=sum(writer.counts),
        vanished=vanished,
        rdb_version=writer.rdb_version,
        data_file=DATA_FILE_NAME,
        bytes=size,
        sha256=sha256,
        verified=True,
        verified_at=utc_now_iso(),
    )
    return manifest, {}


def write_rdb_snapshot(module: AnsibleModule, client: Any, staging: SnapshotDirectory,
                       version: tuple[str, tuple[int, ...]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Capture Redis's RDB (BGSAVE or SYNC) into the staging dir, parsed and hashed on the way in."""
    params = module.params
    source = source_identity(client, params["redis"])
    created_at = utc_now_iso()
    data_path = staging.file_path(RDB_FILE_NAME)
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)  # from redis.db or the URL's path
    with open_private(data_path) as out:
        if params["mode"] == "rdb":
            capture = capture_bgsave(client, rdb_location(client, params["rdb_path"]), out, params["namespaces"], db,
                                     params["timeout"])
        else:
            capture = capture_replica(client, out, params["namespaces"], db, params["timeout"],
                                      params["replica_transfer"] == "diskless", params["replica_sync_delay"])
        out.flush()
        os.fsync(out.fileno())
    if os.path.getsize(data_path) != capture.bytes:
        raise SnapshotError("%s holds %d bytes after fsync, %d were written" % (data_path, os.path.getsize(data_path),
                                                                              capture.bytes))
    summary = capture.summary
    namespaces = dict(zip(params["namespaces"], summary.namespace_counts))
    manifest = dict(
        base_manifest(params, created_at, version, source),
        completed_at=utc_now_iso(),
        capture=capture.details["capture"],
        rdb_redis_version=summary.aux.get("redis-ver"),
        rdb_version=summary.rdb_version,
        db=db,
        namespaces=namespaces,
        keys=sum(namespaces.values()),
        rdb_keys=summary.keys,
        databases={str(number): count for number, count in sorted(summary.databases.items())},
        expires={str(number): count for number, count in sorted(summary.expires.items())},
        expired=summary.expired,
        functions=summary.functions,
        used_memory=int(summary.aux.get("used-mem", 0) or 0),
        data_file=RDB_FILE_NAME,
        bytes=capture.bytes,
        sha256=capture.sha256,
        rdb_checksum=summary.checksum,
        verified=True,
        verified_at=utc_now_iso(),
    )
    return manifest, capture.details


def verify_full(module: AnsibleModule, client: Any, directory: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Load the snapshot into a scratch redis-server and compare it, key by key, with the source."""
    params = module.params
    version = server_version(client)
    use_pexpiretime = version[1] >= (7, 0)
    scripting = scripting_allowed(client, ResponseError)
    data_path = os.path.join(directory, manifest["data_file"])
    rdb = manifest["mode"] in RDB_MODES
    databases = max([int(db) for db in manifest.get("databases", {})] + [0]) + 1
    memory = int(manifest.get("used_memory") or 0) or 3 * manifest["bytes"]
    scratch_db = int(manifest["db"]) if rdb else 0
    comparison = Comparison(ttl_tolerance_ms=params["verify_ttl_tolerance_ms"])
    source_big = BigKeyFetcher(client, use_pexpiretime, None if use_pexpiretime else ServerClock(client))
    with ScratchServer(find_redis_server(params["redis_server_binary"]), params["scratch_dir"],
                       data_path if rdb else None, databases, memory, params["timeout"]) as scratch_server:
        scratch = scratch_server.client(scratch_db)
        clock = ServerClock(client)
        if not rdb:
            with SnapshotReader(data_path) as reader:
                reader.read_header()
                load_logical_into(scratch, reader.batches(params["batch_size"], big_threshold=8 << 20),
                                  ServerClock(scratch))
        try:
            compare_snapshot(client, scratch, list(manifest["namespaces"]), manifest["keys"], params["batch_size"],
                             comparison, scripting, use_pexpiretime, clock, source_big)
        finally:
            source_big.close()
    return comparison.as_dict()


def differences_problem(params: dict[str, Any], verification: dict[str, Any]) -> str | None:
    if verification["differences"] <= params["verify_max_differences"]:
        return None
    sample = ", ".join("%s (%s)" % (item["key"], item["reason"]) for item in verification["differing_keys"])
    return ("verify full: %d keys differ between the snapshot and Redis (verify_max_differences %d): %s; by reason %s"
            % (verification["differences"], params["verify_max_differences"], sample, verification["by_reason"]))


def create_snapshot(module: AnsibleModule, directory: str) -> dict[str, Any]:
    params = module.params
    client = connect_or_fail(module, params["redis"])
    try:
        version = server_version(client)
        problem = free_space_problem(client, params["dest"], params["min_free_mb"])
        if problem:
            module.fail_json(msg=problem)
        if module.check_mode:
            return {"changed": True, "snapshot": planned_snapshot(module, client, directory)}
    except RedisError as exc:
        module.fail_json(msg="Redis failed while planning snapshot %s: %s" % (directory, exc))
    try:
        ensure_private_dir(params["dest"])
        staging = SnapshotDirectory(params["dest"], params["snapshot_id"])
    except OSError as exc:
        module.fail_json(msg="cannot write a snapshot into dest %s: %s" % (params["dest"], exc))
    result: dict[str, Any] = {"changed": True}
    try:
        if params["mode"] in RDB_MODES:
            manifest, details = write_rdb_snapshot(module, client, staging, version)
            result["capture"] = details
        else:
            manifest, _details = write_logical_snapshot(module, client, staging, version)
        if params["verify"] == "full":
            verification = verify_full(module, client, staging.temp_path, manifest)
            manifest["verification"] = verification
            result["verification"] = verification
            problem = differences_problem(params, verification)
            if problem:
                raise SnapshotError(problem)
        staging.write_manifest(manifest)
        staging.commit()
    except (SnapshotError, RdbError, OSError, RedisError) as exc:
        staging.discard()
        module.fail_json(msg="snapshot %s was not written (nothing was left behind): %s" % (directory, exc), **result)
    except BaseException:
        staging.discard()
        raise
    result["snapshot"] = snapshot_summary(directory, manifest, verified=True)
    return result


def existing_snapshot(module: AnsibleModule, directory: str) -> dict[str, Any]:
    """Verify the snapshot already at ``directory``; it is returned as is, never rewritten."""
    params = module.params
    try:
        manifest, _reader = verify_snapshot(directory)
    except SnapshotError as exc:
        module.fail_json(msg="snapshot %s exists but does not verify, so it was left untouched: %s" % (directory, exc))
    wanted_run = params["run_id"] or manifest.get("run_id")
    if manifest["snapshot_id"] != params["snapshot_id"] or manifest.get("run_id") != wanted_run:
        module.fail_json(msg="%s holds snapshot %r of run %r, not snapshot %r of run %r; it was left untouched - move "
                             "it away or choose another snapshot_id"
                             % (directory, manifest["snapshot_id"], manifest.get("run_id"), params["snapshot_id"],
                                wanted_run))
    if params["state"] == "present":
        requested = list(params["namespaces"])
        if list(manifest["namespaces"]) != requested or manifest["mode"] != params["mode"]:
            module.fail_json(msg="snapshot %s already exists with mode %s and namespaces %s, not mode %s and "
                                 "namespaces %s; it is never overwritten - choose another snapshot_id"
                                 % (directory, manifest["mode"], list(manifest["namespaces"]),
                                    params["mode"], requested))
    result: dict[str, Any] = {"changed": False, "snapshot": snapshot_summary(directory, manifest, verified=True)}
    if params["verify"] == "full":
        client = connect_or_fail(module, params["redis"])
        try:
            result["verification"] = verify_full(module, client, directory, manifest)
        except (SnapshotError, RedisError, OSError) as exc:
            module.fail_json(msg="verify full of snapshot %s failed: %s" % (directory, exc))
        problem = differences_problem(params, result["verification"])
        if problem:
            module.fail_json(msg=problem, **result)
    return result


# ---------------------------------------------------------------------------------------------------
# Housekeeping

def list_result(module: AnsibleModule) -> dict[str, Any]:
    return {"changed": False, "snapshots": list_snapshots(module.params["dest"])}


def prune(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    snapshots = list_snapshots(params["dest"])
    doomed, reasons = prune_plan(snapshots, params["keep"], params["protect"])
    partials = stale_partials(params["dest"], STALE_PARTIAL_S)
    removed = [entry["path"] for entry in doomed] + partials
    if not module.check_mode:
        try:
            for path in removed:
                remove_snapshot(path)
        except OSError as exc:
            module.fail_json(msg="pruning %s stopped at %s: %s" % (params["dest"], path, exc))
    remaining = [entry for entry in snapshots if entry["path"] not in removed]
    result = {"changed": bool(removed), "removed": removed, "kept": reasons, "snapshots": remaining}
    if module._diff:
        result["diff"] = {"before": {"snapshots": [entry["id"] for entry in snapshots]},
                          "after": {"snapshots": [entry["id"] for entry in remaining]}}
    return result


def with_diff(module: AnsibleModule, result: dict[str, Any]) -> dict[str, Any]:
    if module._diff:
        snapshot = result["snapshot"]
        after = {"snapshot": snapshot["id"], "keys": snapshot["keys"], "namespaces": snapshot["namespaces"]}
        result["diff"] = {"before": after if not result["changed"] else {}, "after": after}
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)
    params = module.params
    problems = option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    if params["state"] == "list":
        module.exit_json(**list_result(module))
    if params["state"] == "pruned":
        module.exit_json(**prune(module))
    directory = os.path.join(params["dest"], params["snapshot_id"])
    if os.path.lexists(directory):
        result = existing_snapshot(module, directory)
    elif params["state"] == "verified":
        module.fail_json(msg="state=verified: there is no snapshot %r in %s" % (params["snapshot_id"], params["dest"]))
    else:
        result = create_snapshot(module, directory)
    module.exit_json(**with_diff(module, result))


if __name__ == "__main__":
    main()
