#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_redis_restore
short_description: Restore Redis from a cutover snapshot, by namespace and policy or as a whole RDB
description:
  - Restores a snapshot written by M(cutover_redis_snapshot) into Redis.
  - Before touching Redis it checks the snapshot - manifest present and parseable, the snapshot the one asked for
    (O(expect); without it, the snapshot id must be the directory's name), format known, data file sha256 equal to
    the manifest's, structure and key counts as recorded, and for a logical snapshot every DUMP payload as RESTORE
    will check it (its CRC-64 and RDB version) - and refuses with a message naming the problem otherwise, changing
    nothing.
  - Policies C(missing_only), C(overwrite), C(replace_all) and C(revert) work per namespace with C(RESTORE ... ABSTTL),
    keeping each key's absolute expiry; records whose expiry has passed (on the target's clock) are skipped and
    counted as C(expired). Snapshots of mode C(logical) are read from their data file; snapshots of modes C(rdb)
    and C(replica) are loaded into a scratch redis-server on this host and restored from there.
  - Policy C(whole_rdb) puts the RDB of an C(rdb) or C(replica) snapshot where Redis loads its data from and
    restarts Redis with O(stop_command) and O(start_command) - the RDB file, or, when C(appendonly) is on, the
    base of a fresh AOF directory. Before it stops Redis it checks that the file loads (C(redis-check-rdb), else a
    scratch redis-server) into the databases the target has, and saves the target's data first when it is only in
    memory. The files it replaces are kept beside them (C(previous)). If Redis does not come back with the
    snapshot's keys, the previous files are put back and Redis is started again.
version_added: "0.1.0"
author: cutover
options:
  src:
    description: Snapshot directory, the one that holds C(manifest.json).
    type: path
    required: true
  policy:
    description:
      - C(missing_only) restores only keys absent from Redis; a key that exists is a newer write and is
        kept (C(kept_existing)). Never clobbers.
      - C(overwrite) restores every unexpired record, replacing what is there.
      - C(replace_all) is C(overwrite) plus, per selected namespace, deleting the keys that Redis holds but
        the snapshot does not (C(deleted)), so the namespace ends up equal to the snapshot. A snapshot key
        whose expiry has passed counts as not in the snapshot. Deletion runs after the restore, so a
        namespace never holds fewer snapshot keys than before.
      - C(revert) undoes what a run wrote to the selected namespaces and keeps what streams gained - for a
        rollback to a release that must read every key of its namespaces. Keys of the snapshot get their
        snapshot value and absolute expiry back; keys created since (present now, not in the snapshot, or whose
        snapshot expiry has passed) are deleted; a key that holds a stream now (append-only shared data such as
        C(ai_service_alerts)) is left as it is, so what was appended since is kept (C(kept_streams)) - a stream
        of the snapshot is restored only where it is missing, never truncated. It asks C(TYPE) of each batch
        of keys before restoring it.
      - C(whole_rdb) replaces the whole Redis dataset (every database, functions too) with an C(rdb) or
        C(replica) snapshot by swapping files and restarting Redis. Needs O(stop_command) and
        O(start_command); runs on the Redis host.
      - C(none) restores nothing; with O(restart_redis) the module then only restarts Redis when its policy asks
        (rollback step 4 when no rolled-back component owns a namespace, or the operator chose no restore).
    type: str
    choices: [missing_only, overwrite, replace_all, revert, whole_rdb, none]
    default: missing_only
  expect:
    description:
      - The snapshot asked for; a snapshot whose manifest says otherwise is refused before anything is touched,
        naming every difference (for example a directory of another run copied under this run's snapshot id).
      - Not used by policy C(none).
    type: dict
    suboptions:
      snapshot_id:
        description: The snapshot id the manifest must hold. Default - the name of the O(src) directory.
        type: str
      run_id:
        description: The run id the manifest must hold (the migrate run the snapshot guards).
        type: str
      source:
        description:
          - The Redis the snapshot must have been taken from, as C(redis://host:port/db) (the RV(snapshot.source)
            of M(cutover_redis_snapshot)); the scheme is not compared.
        type: str
      same_server:
        description:
          - The snapshot must have been taken from the server and database this restore writes to (O(redis)) -
            the same C(host:port/db), or the same Redis process (its INFO C(run_id), recorded in the manifest)
            reached at another address. A restart changes the run_id, so after one only the address counts.
        type: bool
        default: false
  namespaces:
    description:
      - Patterns of the snapshot to restore (each must be one of the snapshot's namespaces, written
        exactly as in its manifest). Default - all of them. Not used by C(whole_rdb).
      - A key belongs to the first pattern of the snapshot that matches it, for C(replace_all) too.
    type: list
    elements: str
  policies:
    description:
      - Per namespace, a policy that replaces O(policy) for that pattern - one of C(missing_only), C(overwrite),
        C(replace_all) and C(revert) - for example C(revert) for the caches a rolled-back release must read and
        C(missing_only) for the counters beside them. Each pattern must be one of the restored namespaces.
      - Namespaces of the same policy are restored together, one policy after the other; the result's
        RV(policies) says which policy each pattern got. Not used by C(whole_rdb) and C(none).
    type: dict
  batch_size:
    description: Records per round trip (1 to 100000).
    type: int
    default: 1000
  stop_command:
    description:
      - C(whole_rdb) - argv that stops Redis and returns once it has exited, e.g.
        C([systemctl, stop, redis-server]) or C([supervisorctl, -c, /etc/supervisord.conf, stop, redis]).
        Run without a shell.
    type: list
    elements: str
  start_command:
    description: C(whole_rdb) - argv that starts Redis again, e.g. C([systemctl, start, redis-server]).
    type: list
    elements: str
  rdb_path:
    description:
      - C(whole_rdb) - the RDB file Redis loads at start-up. Default - asked from Redis with CONFIG GET (dir,
        dbfilename, appenddirname, appendfilename), which the Redis user must then be allowed.
    type: path
  start_timeout:
    description:
      - C(whole_rdb) - seconds Redis gets to stop, and to start and load its data; also the limit of the load check
        and of the save of data that is only in memory.
    type: int
    default: 600
  redis_server_binary:
    description:
      - redis-server for the scratch server that serves an rdb snapshot's keys, and that checks a C(whole_rdb)
        file loads where C(redis-check-rdb) (redis-tools) is not installed. Default - found on PATH.
    type: path
  scratch_dir:
    description: Where the scratch server's private directory is made (default - the system temp dir).
    type: path
  restart_redis:
    description:
      - Restart Redis through its process manager before the restore - rollback step 4 of cutover ("restart Redis,
        restore data"). Not used with C(whole_rdb), which restarts Redis itself.
    type: dict
    suboptions:
      policy:
        description:
          - V(never); V(always); V(if_unhealthy) when Redis does not answer PING, is still loading, or its last
            save or AOF write failed.
        type: str
        choices: [never, if_unhealthy, always]
        default: never
      service:
        description: The Redis service (supervisor program or systemd unit).
        type: str
        default: redis-server
      manager:
        description: The process manager of Redis.
        type: str
        choices: [supervisor, systemd]
        default: systemd
      supervisor_config:
        description: supervisord config file, for O(restart_redis.manager=supervisor).
        type: path
      timeout:
        description: Seconds Redis gets to stop, and to start and load its data.
        type: int
        default: 60
  rollback_step:
    description:
      - Return the C(rollback.step) journal entry of step 4 (restart Redis, restore data) in RV(journal), with
        RV(detail) as its detail.
    type: bool
    default: false
  host_label:
    description: Host name written into the journal entry (usually C(inventory_hostname)).
    type: str
extends_documentation_fragment:
  - cutover_redis
  - action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes the same counts with EXISTS (and SCAN for C(replace_all) and C(revert), TYPE for C(revert))
      and writes nothing - its C(missing_before) is the data-loss audit; for rdb snapshots the key names are read
      from the RDB file itself. C(whole_rdb) checks the snapshot (that it loads, too) and reports what it would
      swap, without stopping Redis.
  diff_mode:
    support: full
    details: Counts per namespace only, never keys or values.
  platform:
    platforms: posix
notes:
  - The target must run Redis 5.0 or later (RESTORE ABSTTL) and understand the RDB version of the snapshot
    (C(rdb_version) in the manifest); Redis refuses payloads and files from a newer RDB version, and this
    module refuses them before changing anything.
  - C(replace_all) and C(revert) keep a 64-bit fingerprint per restored key in memory (about 70 bytes per key) to
    know which keys to delete; the other policies stream in constant memory.
  - Checking every payload's CRC-64 before the first write reads a logical snapshot's data file once more
    (about 100 MB/s in pure Python).
  - The least-privilege ACL each policy needs is in docs/SNAPSHOTS.md (C(revert) also needs C(+type); C(whole_rdb)
    needs C(+bgsave +time) when the target holds data that is not on disk).
  - Redis Cluster is not supported.
seealso:
  - module: cutover_redis_snapshot
"""

EXAMPLES = r"""
- name: Data-loss audit - which snapshot keys are missing now (writes nothing)
  cutover_redis_restore:
    src: "/var/lib/cutover/snapshots/{{ cutover_run_id }}"
  check_mode: true
  register: audit

- name: Bring back lost TTS and safety cache entries without clobbering newer writes
  cutover_redis_restore:
    redis:
      host: 127.0.0.1
      password: "{{ redis_password }}"
    src: "/var/lib/cutover/snapshots/{{ cutover_run_id }}"
    policy: missing_only
    namespaces: ['tts:*', 'safety:*']

- name: Rollback - revert what the run wrote to the AI and TTS caches, keep what the alerts stream gained
  cutover_redis_restore:
    redis: "{{ cutover_redis }}"
    src: "/var/lib/cutover/snapshots/{{ cutover_target_run_id }}"
    policy: revert
    namespaces: ['ai:*', 'tts:*', 'ai_service_alerts']
    expect:
      snapshot_id: "{{ cutover_target_run_id }}"
      run_id: "{{ cutover_target_run_id }}"
      same_server: true

- name: Put the whole server back as it was (rdb snapshot), restarting Redis through systemd
  cutover_redis_restore:
    redis: "{{ cutover_redis }}"
    src: "/var/lib/cutover/snapshots/{{ cutover_run_id }}"
    policy: whole_rdb
    stop_command: [systemctl, stop, redis-server]
    start_command: [systemctl, start, redis-server]
  become: true
"""

RETURN = r"""
policy:
  description: The policy applied.
  returned: always
  type: str
  sample: missing_only
restored:
  description: Keys written from the snapshot (in check mode, that would be written); for C(whole_rdb), keys Redis loaded.
  returned: always
  type: int
  sample: 120
kept_existing:
  description: Snapshot keys left alone because Redis already had them (C(missing_only) only).
  returned: always
  type: int
  sample: 14880
policies:
  description: The policy each restored pattern got (O(policy), or its entry in O(policies)).
  returned: when data was restored per namespace
  type: dict
  sample: {"ai:*": "revert", "monitoring:*": "missing_only"}
kept_streams:
  description: Keys left as they were because they hold a stream now (C(revert) only) - snapshot keys and keys
    created since.
  returned: always
  type: int
  sample: 1
expired:
  description: Records skipped because their absolute expiry has passed.
  returned: always
  type: int
  sample: 3
deleted:
  description: Keys deleted because the snapshot does not hold them (C(replace_all), C(revert)); for C(whole_rdb),
    the keys Redis held before the swap (all replaced).
  returned: always
  type: int
  sample: 0
missing_before:
  description: Unexpired snapshot keys that Redis did not have before the restore (not known for C(whole_rdb)).
  returned: always
  type: int
  sample: 120
namespaces:
  description: The same counts per selected pattern.
  returned: always
  type: dict
  sample: {"tts:*": {"restored": 120, "kept_existing": 14880, "expired": 3, "deleted": 0, "missing_before": 120,
                      "kept_streams": 0}}
snapshot:
  description: Which snapshot was restored.
  returned: always
  type: dict
  contains:
    id:
      description: Snapshot id.
      type: str
    run_id:
      description: Run id the manifest records.
      type: str
    source:
      description: The Redis the snapshot was taken from (C(redis://host:port/db)).
      type: str
    sha256:
      description: Verified sha256 of its data file.
      type: str
    mode:
      description: Mode of the snapshot.
      type: str
detail:
  description: What was done, in one line (whether Redis was restarted and why, and the counts).
  returned: always
  type: str
  sample: "Redis healthy, not restarted (policy if_unhealthy); missing_only from snapshot 20261204T190000Z: 12 restored, 380 newer kept, 0 expired, 0 deleted"
journal:
  description: With O(rollback_step), the C(rollback.step) entry of step 4 for cutover_journal O(entries).
  returned: always
  type: list
  elements: dict
whole_rdb:
  description:
    - For C(whole_rdb) - where the snapshot was put, the previous files kept aside, what Redis loaded, and how
      many keys were saved to disk before Redis was stopped because that was their only copy (C(saved_before_stop)).
  returned: when O(policy=whole_rdb)
  type: dict
  sample: {"loaded_from": "/var/lib/redis/dump.rdb", "previous": ["/var/lib/redis/dump.rdb.cutover-before-x"],
           "aof": false, "loaded": {"0": 15230}, "saved_before_stop": 0}
"""

import datetime
import os
import time
from typing import Any, Iterator

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import step_entry, utc_timestamp
from ansible.module_utils.cutover_services import ServiceError, manager, start_services, stop_services
from ansible.module_utils.cutover_redis import (
    RedisError,
    connect_or_fail,
    describe_endpoint,
    redis_connection_argument_spec,
)
from ansible.module_utils.cutover_rdb import FileChunks, RdbError, RdbScanner
from ansible.module_utils.cutover_snapshot import (
    BIG_PAYLOAD,
    RDB_MODES,
    ServerClock,
    SnapshotError,
    SnapshotReader,
    free_bytes,
    load_manifest,
    pattern_matcher,
    quick_check_rdb,
    server_version,
    verify_snapshot,
)
from ansible.module_utils.cutover_snapshot_logical import (
    COUNT_NAMES,
    ExistenceCounter,
    LuaCapture,
    PipelineRestorer,
    RestoreFailed,
    StreamKeeper,
    Tally,
    delete_extra_keys,
    restore_batches,
    restore_heads,
)
from ansible.module_utils.cutover_snapshot_rdb import (
    FileSwap,
    copy_hashed,
    database_count_problem,
    load_problem,
    loadable_rdb_version,
    loaded_keys,
    probe_client,
    redis_files,
    run_command,
    save_now,
    unsaved_keys,
    wait_for_down,
    wait_for_loaded,
)
from ansible.module_utils.cutover_snapshot_scratch import (
    RdbLoadCheck,
    ScratchServer,
    captured_batches,
    find_redis_server,
)

MAX_BATCH_SIZE = 100000
DELETING_POLICIES = ("replace_all", "revert")
NAMESPACE_POLICIES = ("missing_only", "overwrite", "replace_all", "revert")
MIB = 1024 * 1024
STAGING_MARGIN = 64 * MIB


def build_argument_spec() -> dict[str, Any]:
    spec = redis_connection_argument_spec()
    spec.update(
        src={"type": "path", "required": True},
        policy={"type": "str", "choices": ["missing_only", "overwrite", "replace_all", "revert", "whole_rdb", "none"],
                "default": "missing_only"},
        expect={"type": "dict", "options": {
            "snapshot_id": {"type": "str"},
            "run_id": {"type": "str"},
            "source": {"type": "str"},
            "same_server": {"type": "bool", "default": False},
        }},
        namespaces={"type": "list", "elements": "str"},
        policies={"type": "dict"},
        batch_size={"type": "int", "default": 1000},
        stop_command={"type": "list", "elements": "str"},
        start_command={"type": "list", "elements": "str"},
        rdb_path={"type": "path"},
        start_timeout={"type": "int", "default": 600},
        redis_server_binary={"type": "path"},
        scratch_dir={"type": "path"},
        restart_redis={"type": "dict", "options": {
            "policy": {"type": "str", "choices": ["never", "if_unhealthy", "always"], "default": "never"},
            "service": {"type": "str", "default": "redis-server"},
            "manager": {"type": "str", "choices": ["supervisor", "systemd"], "default": "systemd"},
            "supervisor_config": {"type": "path"},
            "timeout": {"type": "int", "default": 60},
        }},
        rollback_step={"type": "bool", "default": False},
        host_label={"type": "str"},
    )
    return spec


def option_problems(params: dict[str, Any]) -> list[str]:
    problems = []
    if not 1 <= params["batch_size"] <= MAX_BATCH_SIZE:
        problems.append("batch_size must be between 1 and %d, got %d" % (MAX_BATCH_SIZE, params["batch_size"]))
    whole = params["policy"] == "whole_rdb"
    if whole:
        for name in ("stop_command", "start_command"):
            if not params[name]:
                problems.append("policy whole_rdb needs %s, the argv that %s Redis (e.g. [systemctl, %s, "
                                "redis-server])" % (name, name.split("_")[0] + "s", name.split("_")[0]))
        if params["namespaces"] is not None:
            problems.append("namespaces does not apply to policy whole_rdb, which restores the whole server")
    else:
        for name in ("stop_command", "start_command", "rdb_path"):
            if params[name]:
                problems.append("%s applies only to policy whole_rdb" % name)
    if params["policies"] and params["policy"] in ("whole_rdb", "none"):
        problems.append("policies does not apply to policy %s" % params["policy"])
    for pattern, policy in (params["policies"] or {}).items():
        if policy not in NAMESPACE_POLICIES:
            problems.append("policies[%r] must be one of %s, got %r" % (pattern, ", ".join(NAMESPACE_POLICIES), policy))
    if params["start_timeout"] < 1:
        problems.append("start_timeout must be at least 1 second, got %d" % params["start_timeout"])
    return problems


def selected_patterns(requested: list[str] | None, available: list[str]) -> tuple[list[str], str | None]:
    """The patterns to restore, or a message naming what is not in the snapshot."""
    if requested is None:
        return list(available), None
    unknown = [pattern for pattern in requested if pattern not in available]
    if unknown:
        return [], ("namespaces %s are not in the snapshot, which holds: %s"
                    % (", ".join(map(repr, unknown)), ", ".join(map(repr, available))))
    if not requested:
        return [], "namespaces must not be empty (omit it to restore every namespace of the snapshot)"
    if len(set(requested)) != len(requested):
        return [], "namespaces lists a pattern more than once"
    return list(requested), None


def policy_groups(params: dict[str, Any], selected: list[str]) -> tuple[dict[str, list[str]], str | None]:
    """policy -> the selected patterns restored with it, or a message naming a policies entry not restored."""
    chosen = params["policies"] or {}
    strangers = [pattern for pattern in chosen if pattern not in selected]
    if strangers:
        return {}, ("policies names %s, which this restore does not restore (restored: %s)"
                    % (", ".join(map(repr, strangers)), ", ".join(map(repr, selected))))
    groups: dict[str, list[str]] = {}
    for pattern in selected:
        groups.setdefault(chosen.get(pattern, params["policy"]), []).append(pattern)
    return groups, None


def refuse(module: AnsibleModule, problem: Any, restarted: bool = False) -> None:
    module.fail_json(msg="refusing to restore: %s; %s" % (problem, "Redis was restarted, no key was written"
                                                          if restarted else "nothing was changed"))


def endpoint_address(endpoint: str | None) -> str:
    """``host:port/db`` of an endpoint written by describe_endpoint (TLS or not aside)."""
    return (endpoint or "").split("://", 1)[-1]


def same_server_problem(options: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """None when the snapshot comes from the server and database this restore writes to: the same address, or
    the same Redis process (INFO run_id, recorded at snapshot time) reached at another address."""
    target = describe_endpoint(options)
    source = manifest.get("source")
    if endpoint_address(source) == endpoint_address(target):
        return None
    recorded = (manifest.get("source_server") or {}).get("redis_run_id")
    try:
        current = probe_client(options).info("server").get("run_id")
    except RedisError:
        current = None
    same_db = endpoint_address(source).rsplit("/", 1)[-1] == endpoint_address(target).rsplit("/", 1)[-1]
    if recorded and current == recorded and same_db:
        return None
    return ("it was taken from %s (Redis run_id %s), this restore writes to %s (Redis run_id %s)"
            % (source, recorded or "not recorded", target, current or "unknown"))


def identity_problems(params: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """How the snapshot differs from the one asked for (option expect). Without expect.snapshot_id the id must be
    the directory's name, as cutover_redis_snapshot names them."""
    expect = params["expect"] or {}
    problems = []
    wanted_id = expect.get("snapshot_id") or os.path.basename(os.path.normpath(params["src"]))
    if manifest["snapshot_id"] != wanted_id:
        problems.append("its snapshot id is %r, expected %r" % (manifest["snapshot_id"], wanted_id))
    if expect.get("run_id") is not None and manifest.get("run_id") != expect["run_id"]:
        problems.append("its run id is %r, expected %r" % (manifest.get("run_id"), expect["run_id"]))
    if expect.get("source") and endpoint_address(manifest.get("source")) != endpoint_address(expect["source"]):
        problems.append("it was taken from %s, expected %s" % (manifest.get("source"), expect["source"]))
    if expect.get("same_server"):
        problem = same_server_problem(params["redis"], manifest)
        if problem:
            problems.append(problem)
    return problems


# ---------------------------------------------------------------------------------------------------
# Per-namespace restore (logical snapshots, and rdb snapshots through a scratch server)

def choose_restorer(module: AnsibleModule, client: Any, replace: bool, on_done: Any) -> Any:
    if module.check_mode:
        return ExistenceCounter(client, replace, on_done)
    return PipelineRestorer(client, replace, on_done)


def rdb_key_batches(data_path: str, manifest: dict[str, Any], patterns: list[str], chosen: list[bool],
                    batch_size: int) -> Iterator[tuple[int, list[bytes], list[int], list[bytes]]]:
    """Key names and expiries of the chosen namespaces, read from the RDB file itself (check mode)."""
    pending: dict[int, tuple[list[bytes], list[int]]] = {}
    ready: list[tuple[int, list[bytes], list[int], list[bytes]]] = []

    def on_key(index: int, key: bytes, expiry: int) -> None:
        if not chosen[index]:
            return
        keys, expiries = pending.setdefault(index, ([], []))
        keys.append(key)
        expiries.append(expiry)
        if len(keys) >= batch_size:
            ready.append((index, keys, expiries, [b""] * len(keys)))
            del pending[index]

    with open(data_path, "rb", buffering=0) as handle:
        scanner = RdbScanner(FileChunks(handle), pattern_matcher(patterns), len(patterns), int(manifest["db"]),
                             None, on_key)
        scanner.scan()  # the file verified moments ago; batches are yielded once it is read whole
    yield from ready
    for index, (keys, expiries) in pending.items():
        yield index, keys, expiries, [b""] * len(keys)


def restore_records(module: AnsibleModule, client: Any, manifest: dict[str, Any], patterns: list[str],
                    selected: list[str], tally: Tally) -> set[int] | None:
    """Stream the selected namespaces into Redis; returns fingerprints of the restored keys (replace_all)."""
    params = module.params
    replace = params["policy"] != "missing_only"
    fingerprints: set[int] | None = set() if params["policy"] in DELETING_POLICIES else None
    chosen = [pattern in selected for pattern in patterns]

    def on_done(index: int, restored: int, kept: int, missing: int, expired: int) -> None:
        tally.add(patterns[index], restored=restored, kept_existing=kept, missing_before=missing, expired=expired)

    def on_kept_streams(index: int, count: int) -> None:
        tally.add(patterns[index], kept_streams=count)

    clock = ServerClock(client)
    restorer = choose_restorer(module, client, replace, on_done)
    if params["policy"] == "revert":
        restorer = StreamKeeper(client, restorer, on_kept_streams)
    data_path = os.path.join(params["src"], manifest["data_file"])
    try:
        if manifest["mode"] not in RDB_MODES:
            with SnapshotReader(data_path) as reader:
                reader.read_header()
                if module.check_mode:
                    batches = reader.batches(params["batch_size"], chosen, BIG_PAYLOAD)
                else:
                    head, tail = restore_heads(replace)
                    batches = reader.prepared_batches(params["batch_size"], chosen, BIG_PAYLOAD, head, tail, clock.now_ms)
                restore_batches(restorer, batches, clock, patterns, tally, fingerprints)
            if reader.sha256 != manifest["sha256"]:
                raise SnapshotError("the data file changed while it was being restored (sha256 %s, manifest %s)"
                                    % (reader.sha256, manifest["sha256"]))
        elif module.check_mode:
            restore_batches(restorer, rdb_key_batches(data_path, manifest, patterns, chosen, params["batch_size"]),
                            clock, patterns, tally, fingerprints)
        else:
            restore_from_scratch(module, restorer, manifest, data_path, patterns, selected, tally, fingerprints, clock)
    finally:
        restorer.close()
    return fingerprints


def restore_from_scratch(module: AnsibleModule, restorer: Any, manifest: dict[str, Any], data_path: str,
                         patterns: list[str], selected: list[str], tally: Tally, fingerprints: set[int] | None,
                         clock: ServerClock) -> None:
    """Load the snapshot's RDB into a scratch redis-server and restore the selected namespaces from it."""
    params = module.params
    databases = max(int(db) for db in manifest["databases"] or {"0": 0}) + 1
    memory = int(manifest.get("used_memory") or 0) or 3 * manifest["bytes"]
    with ScratchServer(find_redis_server(params["redis_server_binary"]), params["scratch_dir"], data_path,
                       databases, memory) as scratch_server:
        capture = LuaCapture(scratch_server.client(int(manifest["db"])), use_pexpiretime=True)
        try:
            restore_batches(restorer, captured_batches(capture, patterns, selected, params["batch_size"]), clock,
                            patterns, tally, fingerprints)
        finally:
            capture.close()
    for pattern in selected:  # keys Redis dropped while loading the RDB had expired
        counts = tally.by_pattern[pattern]
        seen = counts["restored"] + counts["kept_existing"] + counts["kept_streams"] + counts["expired"]
        counts["expired"] += max(0, manifest["namespaces"][pattern] - seen)


def snapshot_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``snapshot`` value of the result: which snapshot was restored."""
    return {"id": manifest["snapshot_id"], "run_id": manifest.get("run_id"), "source": manifest.get("source"),
            "sha256": manifest["sha256"], "mode": manifest["mode"]}


def run_restore(module: AnsibleModule, client: Any, manifest: dict[str, Any], patterns: list[str],
                selected: list[str]) -> dict[str, Any]:
    params = module.params
    tally = Tally(selected)
    try:
        fingerprints = restore_records(module, client, manifest, patterns, selected, tally)
        if fingerprints is not None:
            delete_extra_keys(client, patterns, selected, fingerprints, params["batch_size"], module.check_mode, tally,
                              spare_streams=params["policy"] == "revert")
    except (RestoreFailed, RedisError, SnapshotError, RdbError, OSError) as exc:
        module.fail_json(msg="restore into %s stopped: %s (snapshot rdb_version %s from Redis %s)"
                             % (describe_endpoint(params["redis"]), exc, manifest.get("rdb_version"),
                                manifest.get("redis_version")),
                         **restore_result(module, manifest, tally))
    return restore_result(module, manifest, tally)


def restore_by_policy(module: AnsibleModule, client: Any, manifest: dict[str, Any], patterns: list[str],
                      groups: dict[str, list[str]]) -> dict[str, Any]:
    """Restore each group of namespaces with its policy; one result for them all, policy being O(policy)."""
    params = module.params
    base_policy = params["policy"]
    results = []
    for policy, selected in groups.items():
        params["policy"] = policy
        results.append(run_restore(module, client, manifest, patterns, selected))
    params["policy"] = base_policy
    if len(results) == 1 and not params["policies"]:
        return results[0]
    merged = dict(results[0], policy=base_policy, changed=any(result["changed"] for result in results),
                  namespaces={pattern: counts for result in results for pattern, counts in result["namespaces"].items()},
                  policies={pattern: policy for policy, selected in groups.items() for pattern in selected})
    for name in COUNT_NAMES:
        merged[name] = sum(result[name] for result in results)
    if module._diff:
        merged["diff"] = {side: {pattern: counts for result in results for pattern, counts in result["diff"][side].items()}
                          for side in ("before", "after")}
    return merged


def restore_result(module: AnsibleModule, manifest: dict[str, Any], tally: Tally) -> dict[str, Any]:
    totals = tally.totals()
    result: dict[str, Any] = dict(
        totals,
        changed=totals["restored"] + totals["deleted"] > 0,
        policy=module.params["policy"],
        namespaces=tally.by_pattern,
        snapshot=snapshot_facts(manifest),
    )
    if module._diff:
        result["diff"] = {
            "before": {pattern: {"missing_snapshot_keys": counts["missing_before"]}
                       for pattern, counts in tally.by_pattern.items()},
            "after": {pattern: {"restored": counts["restored"], "kept_existing": counts["kept_existing"],
                                "kept_streams": counts["kept_streams"], "deleted": counts["deleted"]}
                      for pattern, counts in tally.by_pattern.items()},
        }
    return result


# ---------------------------------------------------------------------------------------------------
# whole_rdb

def run_id_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def stage_snapshot(module: AnsibleModule, client: Any, manifest: dict[str, Any]) -> tuple[Any, str]:
    """Check the snapshot - that Redis can load it, with the target's databases - and copy it next to Redis's
    files, hashing it on the way: nothing is touched yet."""
    params = module.params
    try:
        data_path = quick_check_rdb(params["src"], manifest)
        files = redis_files(client, params["rdb_path"])
        version = server_version(client)
        databases_problem = database_count_problem(client, manifest)
    except (SnapshotError, RedisError) as exc:
        refuse(module, exc)
    if databases_problem:
        refuse(module, databases_problem)
    if manifest["rdb_version"] > loadable_rdb_version(version[1]):
        refuse(module, "the snapshot is RDB version %d (Redis %s) and the target runs Redis %s, which loads RDB "
                       "versions up to %d" % (manifest["rdb_version"], manifest.get("rdb_redis_version"), version[0],
                                              loadable_rdb_version(version[1])))
    if not os.path.isdir(files.directory):
        refuse(module, "Redis's data directory %s is not a directory on this host (run whole_rdb on the Redis "
                       "host, or give rdb_path)" % files.directory)
    needed = manifest["bytes"] + STAGING_MARGIN
    if free_bytes(files.directory) < needed:
        refuse(module, "%s has %.1f MiB free; staging the snapshot needs %.1f MiB"
                       % (files.directory, free_bytes(files.directory) / MIB, needed / MIB))
    staged = os.path.join(files.directory, ".cutover-restore-%s.rdb" % manifest["snapshot_id"])
    if os.path.lexists(staged):
        os.unlink(staged)  # ours, left by a run that died before the swap
    like = files.rdb_path if os.path.exists(files.rdb_path) else files.directory
    databases = max(int(db) for db in manifest["databases"] or {"0": 0}) + 1
    load_check = RdbLoadCheck(data_path, params["redis_server_binary"], params["scratch_dir"], databases,
                              int(manifest.get("used_memory") or 0) or 3 * manifest["bytes"], params["start_timeout"])
    try:
        try:
            sha256 = copy_hashed(data_path, staged, like)
        except OSError as exc:
            refuse(module, "cannot stage the snapshot in %s: %s" % (files.directory, exc))
        if sha256 != manifest["sha256"]:
            os.unlink(staged)
            refuse(module, "checksum mismatch: sha256 of %s is %s, the manifest says %s" % (data_path, sha256,
                                                                                           manifest["sha256"]))
        try:
            problem = load_check.problem()
        except SnapshotError as exc:
            os.unlink(staged)
            refuse(module, "cannot check that Redis can load %s: %s" % (data_path, exc))
    finally:
        load_check.cancel()
    if problem:
        os.unlink(staged)
        refuse(module, "Redis cannot load %s: %s" % (data_path, problem))
    return files, staged


def whole_result(manifest: dict[str, Any], restored: int, replaced: int, details: dict[str, Any]) -> dict[str, Any]:
    expired = max(0, manifest.get("rdb_keys", manifest["keys"]) - restored)
    return {"changed": True, "policy": "whole_rdb", "restored": restored, "kept_existing": 0, "expired": expired,
            "deleted": replaced, "missing_before": None, "namespaces": {},
            "snapshot": snapshot_facts(manifest), "whole_rdb": details}


def restore_whole(module: AnsibleModule, client: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    params = module.params
    files, staged = stage_snapshot(module, client, manifest)
    unsaved = unsaved_keys(client, files)
    planned = {"loaded_from": files.aof_dir if files.aof_enabled else files.rdb_path, "aof": files.aof_enabled,
               "previous": [], "loaded": None, "saved_before_stop": unsaved}
    if module.check_mode:
        os.unlink(staged)
        return whole_result(manifest, manifest.get("rdb_keys", manifest["keys"]), client.dbsize(), planned)
    if unsaved:  # its only copy is in memory: put it on disk, so a swap that fails can give it back
        try:
            save_now(client, params["start_timeout"])
        except (SnapshotError, RedisError) as exc:
            os.unlink(staged)
            refuse(module, "the target holds %d keys that are not on disk, and saving them before stopping Redis "
                           "failed (the Redis user needs +bgsave +time): %s" % (unsaved, exc))
    replaced = int(client.dbsize())
    pid = client.info("server").get("process_id")
    deadline = time.monotonic() + params["start_timeout"]
    probe = probe_client(params["redis"])
    swap = FileSwap(files, staged, "cutover-before-%s-%s" % (manifest["snapshot_id"], run_id_now()))
    try:
        run_command(params["stop_command"], params["start_timeout"], "stop_command")
        wait_for_down(probe, pid, deadline)
    except SnapshotError as exc:
        os.unlink(staged)
        module.fail_json(msg="whole_rdb restore stopped before any file was touched: %s" % exc)
    try:
        planned["loaded_from"] = swap.apply()
        run_command(params["start_command"], params["start_timeout"], "start_command")
        loaded = loaded_keys(wait_for_loaded(probe, time.monotonic() + params["start_timeout"]))
        problem = load_problem(manifest, loaded)
        if problem:
            raise SnapshotError(problem)
    except (SnapshotError, OSError, RedisError) as exc:
        module.fail_json(msg="whole_rdb restore failed: %s; %s" % (exc, put_back(module, swap)))
    planned.update(previous=swap.previous, loaded=loaded)
    return whole_result(manifest, sum(loaded.values()), replaced, planned)


def put_back(module: AnsibleModule, swap: FileSwap) -> str:
    """Undo a swap whose Redis did not come back right: stop it, move the previous files back, start it."""
    params = module.params
    probe = probe_client(params["redis"])
    try:
        try:
            run_command(params["stop_command"], params["start_timeout"], "stop_command")
        except SnapshotError:
            pass  # it may not have started at all
        wait_for_down(probe, None, time.monotonic() + params["start_timeout"])
        swap.undo()
        run_command(params["start_command"], params["start_timeout"], "start_command")
        wait_for_loaded(probe, time.monotonic() + params["start_timeout"])
    except (SnapshotError, OSError, RedisError) as exc:
        return ("putting the previous data back ALSO failed (%s): Redis's previous files are at %s - a human must "
                "look" % (exc, ", ".join(swap.previous) or "their usual place"))
    return "the previous data was put back and Redis was started again on it"


# ---------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------
# restart (rollback step 4)

def redis_health(options: dict[str, Any]) -> str | None:
    """None when Redis answers, has loaded its data and its last save and AOF write worked; else the problem."""
    try:
        info = probe_client(options).info("persistence")
    except RedisError as exc:
        return "no answer (%s)" % exc
    if info.get("loading"):
        return "still loading its data"
    if info.get("rdb_last_bgsave_status", "ok") != "ok" or info.get("aof_last_write_status", "ok") != "ok":
        return "its last save or AOF write failed"
    return None


def restart_if_needed(module: AnsibleModule) -> tuple[bool, str]:
    """Restart Redis when the restart policy asks for it: (restarted, a sentence saying what happened and why)."""
    restart = module.params["restart_redis"] or {"policy": "never"}
    if module.params["policy"] == "whole_rdb" or restart["policy"] == "never":
        return False, "Redis not restarted (%s)" % ("whole_rdb restarts it" if module.params["policy"] == "whole_rdb"
                                                     else "restart policy never")
    problem = redis_health(module.params["redis"])
    if restart["policy"] == "if_unhealthy" and problem is None:
        return False, "Redis healthy, not restarted (restart policy if_unhealthy)"
    why = "restart policy always" if restart["policy"] == "always" else "it was unhealthy: %s" % problem
    if module.check_mode:
        return True, "Redis would be restarted (%s)" % why
    try:
        handle = manager(restart["manager"], restart["supervisor_config"])
        stop_services(handle, [restart["service"]], restart["timeout"])
        start_services(handle, {restart["service"]: None}, restart["timeout"])
        wait_for_loaded(probe_client(module.params["redis"]), time.monotonic() + restart["timeout"])
    except (ServiceError, SnapshotError) as exc:
        module.fail_json(msg="restarting Redis (%s) failed: %s" % (why, exc))
    return True, "Redis restarted (%s)" % why


def describe_restore(result: dict[str, Any]) -> str:
    text = "%s from snapshot %s: %s restored, %s newer kept, %s expired, %s deleted" % (
        result["policy"], result["snapshot"]["id"], result["restored"], result["kept_existing"], result["expired"],
        result["deleted"])
    if result["policy"] == "revert" or "revert" in result.get("policies", {}).values():
        text += ", %s streams kept" % result["kept_streams"]
    if result.get("policies"):
        text += " (%s)" % ", ".join("%s %s" % item for item in sorted(result["policies"].items()))
    return text


def finish(module: AnsibleModule, result: dict[str, Any], restart: tuple[bool, str], started_at: str) -> None:
    restarted, restart_detail = restart
    detail = "%s; %s" % (restart_detail, describe_restore(result))
    journal = ([step_entry(4, started_at, "ok", detail, module.params["host_label"])]
               if module.params["rollback_step"] else [])
    module.exit_json(**dict(result, detail=detail, journal=journal, changed=result["changed"] or restarted))


def main() -> None:
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)
    params = module.params
    problems = option_problems(params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    started_at = utc_timestamp()
    if params["policy"] == "none":
        restarted, restart_detail = restart_if_needed(module)
        detail = "%s; no data restored (restore policy none)" % restart_detail
        journal = ([step_entry(4, started_at, "ok", detail, params["host_label"])] if params["rollback_step"] else [])
        module.exit_json(changed=restarted, policy="none", restored=0, kept_existing=0, expired=0, deleted=0,
                         missing_before=None, kept_streams=0, namespaces={}, snapshot=None, detail=detail,
                         journal=journal)
    whole = params["policy"] == "whole_rdb"
    checked = None
    try:
        manifest = load_manifest(params["src"])
        problems = identity_problems(params, manifest)
        if problems:
            refuse(module, "snapshot %s is not the one asked for: %s" % (params["src"], "; ".join(problems)))
        patterns = list(manifest["namespaces"])
        if not whole:
            manifest, checked = verify_snapshot(params["src"], manifest)
    except SnapshotError as exc:
        refuse(module, exc)
    if whole and manifest["mode"] not in RDB_MODES:
        refuse(module, "policy whole_rdb restores the RDB of an rdb or replica snapshot; snapshot %s is mode %s - "
                       "use missing_only, overwrite or replace_all" % (manifest["snapshot_id"], manifest["mode"]))
    selected, problem = selected_patterns(params["namespaces"], patterns)
    groups, policies_problem = policy_groups(params, selected) if not whole else ({}, None)
    if problem or policies_problem:
        module.fail_json(msg=problem or policies_problem)
    restarted = restart_if_needed(module)
    client = connect_or_fail(module, params["redis"])
    try:
        version = server_version(client)
    except RedisError as exc:
        module.fail_json(msg="cannot read INFO server from Redis at %s (the Redis user needs INFO): %s"
                             % (describe_endpoint(params["redis"]), exc))
    if whole:
        finish(module, restore_whole(module, client, manifest), restarted, started_at)
    if version[1] < (5, 0):
        module.fail_json(msg="Redis %s at %s lacks RESTORE ABSTTL; cutover_redis_restore needs Redis 5.0 or later"
                             % (version[0], describe_endpoint(params["redis"])))
    if isinstance(checked, SnapshotReader) and checked.newest_payload[0] > loadable_rdb_version(version[1]):
        newest, key = checked.newest_payload
        refuse(module, "the payload of key %r is RDB version %d and the target runs Redis %s, which loads RDB versions "
                       "up to %d" % (key[:200], newest, version[0], loadable_rdb_version(version[1])), restarted[0])
    finish(module, restore_by_policy(module, client, manifest, patterns, groups), restarted, started_at)


if __name__ == "__main__":
    main()
