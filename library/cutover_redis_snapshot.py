#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_redis_snapshot
short_description: Take a verified, streamed snapshot of Redis namespaces
description:
  - Writes every key of the given Redis namespaces (glob patterns) to C(<dest>/<snapshot_id>/) as a
    data file of C(DUMP) payloads with their absolute expiry, plus a C(manifest.json) with per-namespace
    key counts and the sha256 of the data file.
  - The snapshot is built in a hidden directory beside its final place, re-read and checked (sha256 and
    record count per namespace), and only then moved into place in one rename; files are mode 0600, the
    directory 0700. An existing snapshot is never overwritten.
  - Memory stays flat however many keys there are - keys are streamed in batches of O(batch_size) and no
    list of all keys is kept. Overlapping patterns need no set of seen keys either, since a key belongs to
    the first pattern (in list order) that matches it and later patterns skip it.
  - Keys created while the snapshot runs may or may not be in it (SCAN semantics); keys deleted or expired
    between being listed and being dumped are counted as C(vanished) and not written.
  - Runs on the host that can reach Redis; imports only the standard library and redis-py there.
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
      - Name of the snapshot, usually the run id. Letters, digits, C(.), C(_) and C(-) only.
    type: str
    required: true
  namespaces:
    description:
      - Redis glob patterns (SCAN MATCH syntax) that select the keys, e.g. C(tts:*) or C(ai_service_alerts).
      - Order matters when patterns overlap - a key is counted under the first pattern that matches it.
    type: list
    elements: str
    default: ['*']
  mode:
    description:
      - How the data is captured. C(logical) - SCAN + DUMP + PEXPIRETIME, per batch in one server-side
        Lua round trip, or a pipeline when the Redis user may not run scripts.
    type: str
    choices: [logical]
    default: logical
  batch_size:
    description: Keys per SCAN page and per round trip (1 to 100000).
    type: int
    default: 1000
  state:
    description:
      - C(present) creates the snapshot unless one with this id exists and verifies, which is then
        returned unchanged. An existing snapshot that does not verify makes the module fail; it is never
        replaced.
      - C(verified) only verifies an existing snapshot (no Redis connection is made).
    type: str
    choices: [present, verified]
    default: present
  min_free_mb:
    description:
      - Refuse to start when the filesystem of O(dest) has less free space than the estimated snapshot
        size (Redis C(used_memory_dataset)) plus this many MiB.
    type: int
    default: 64
extends_documentation_fragment:
  - cutover_redis
  - action_common_attributes
attributes:
  check_mode:
    support: full
    details: Connects and counts with SCAN what would be written; writes nothing.
  diff_mode:
    support: partial
    details: Reports counts only, never values.
  platform:
    platforms: posix
notes:
  - Restore with M(cutover_redis_restore). Absolute expiry is kept exactly with Redis 7.0+ (PEXPIRETIME);
    older servers give PTTL plus the server clock, exact to a few milliseconds (the manifest says which).
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

- name: Check that the snapshot on disk is still intact
  cutover_redis_snapshot:
    dest: /var/lib/cutover/snapshots
    snapshot_id: "{{ cutover_run_id }}"
    state: verified
"""

RETURN = r"""
snapshot:
  description: The snapshot (in check mode, what would be written; C(sha256) is then null).
  returned: always
  type: dict
  contains:
    id:
      description: Snapshot id.
      type: str
      sample: 20261125T222114Z
    path:
      description: Snapshot directory.
      type: str
      sample: /var/lib/cutover/snapshots/20261125T222114Z
    manifest:
      description: Path of C(manifest.json).
      type: str
    data_file:
      description: Path of the data file.
      type: str
    mode:
      description: Capture mode.
      type: str
      sample: logical
    keys:
      description: Keys written.
      type: int
      sample: 15230
    namespaces:
      description: Keys per pattern, in the order given.
      type: dict
      sample: {"tts:*": 15000, "ai_service_alerts": 1}
    vanished:
      description: Keys listed by SCAN that were gone (deleted or expired) when dumped; not written.
      type: int
      sample: 0
    bytes:
      description: Size of the data file.
      type: int
    sha256:
      description: sha256 of the data file.
      type: str
    verified:
      description: True once the data file was re-read and matched its sha256 and per-namespace counts.
      type: bool
    created_at:
      description: When the capture started (UTC, ISO 8601).
      type: str
      sample: "2026-11-25T22:21:14.123Z"
"""

import itertools
import os
from typing import Any, Iterator

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
    ServerClock,
    SnapshotDirectory,
    SnapshotError,
    SnapshotWriter,
    belongs_filter,
    check_data_file,
    ensure_private_dir,
    free_bytes,
    scripting_allowed,
    server_version,
    snapshot_summary,
    utc_now_iso,
    valid_snapshot_id,
    verify_snapshot,
)

MIB = 1024 * 1024
MAX_BATCH_SIZE = 100000
MAX_NAMESPACES = 65535

# One SCAN page, then DUMP and absolute expiry of each key, atomically in one round trip.
# Reply: cursor, vanished count, then key, expiry (unix ms or -1), payload for each key dumped.
CAPTURE_SCRIPT = """
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local use_pexpiretime = ARGV[4] == '1'
local now_ms = 0
if not use_pexpiretime then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local out = {page[1], 0}
local vanished = 0
for _, key in ipairs(page[2]) do
  local payload = redis.call('DUMP', key)
  local expiry = -2
  if payload then
    if use_pexpiretime then
      expiry = redis.call('PEXPIRETIME', key)
    else
      local ttl = redis.call('PTTL', key)
      expiry = ttl
      if ttl >= 0 then expiry = now_ms + ttl end
    end
  end
  if expiry == -2 then
    vanished = vanished + 1
  else
    out[#out + 1] = key
    out[#out + 1] = expiry
    out[#out + 1] = payload
  end
end
out[2] = vanished
return out
"""

# (keys, absolute expiries, payloads, vanished) of one SCAN page
Page = tuple[list[bytes], list[int], list[bytes], int]


def build_argument_spec() -> dict[str, Any]:
    spec = redis_connection_argument_spec()
    spec.update(
        dest={"type": "path", "required": True},
        snapshot_id={"type": "str", "required": True},
        namespaces={"type": "list", "elements": "str", "default": ["*"]},
        mode={"type": "str", "choices": ["logical"], "default": "logical"},
        batch_size={"type": "int", "default": 1000},
        state={"type": "str", "choices": ["present", "verified"], "default": "present"},
        min_free_mb={"type": "int", "default": 64},
    )
    return spec


def option_problems(params: dict[str, Any]) -> list[str]:
    """Messages for every invalid option, each naming the option and what is allowed."""
    problems = []
    if not valid_snapshot_id(params["snapshot_id"]):
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
    if params["min_free_mb"] < 0:
        problems.append("min_free_mb must be 0 or more, got %d" % params["min_free_mb"])
    return problems


def scan_page(client: Any, cursor: int, pattern: str, count: int) -> tuple[int, list[bytes]]:
    """One SCAN MATCH page: (next cursor, keys)."""
    next_cursor, keys = client.scan(cursor, match=pattern, count=count)
    return int(next_cursor), keys


def keep_own_keys(page: Page, belongs) -> Page:
    keys, expiries, payloads, vanished = page
    mask = [belongs(key) for key in keys]
    if all(mask):
        return page
    return (list(itertools.compress(keys, mask)), list(itertools.compress(expiries, mask)),
            list(itertools.compress(payloads, mask)), vanished)


class LuaCapture:
    """SCAN + DUMP + expiry of a page in one atomic script call: nothing can vanish inside a page."""

    name = "lua"

    def __init__(self, client: Any, use_pexpiretime: bool):
        self._script = client.register_script(CAPTURE_SCRIPT)
        self._use_pexpiretime = "1" if use_pexpiretime else "0"

    def pages(self, pattern: str, count: int) -> Iterator[Page]:
        cursor = b"0"
        while True:
            reply = self._script(keys=[], args=[cursor, pattern, count, self._use_pexpiretime])
            cursor = reply[0]
            yield reply[2::3], reply[3::3], reply[4::3], int(reply[1])
            if cursor in (b"0", 0):
                return


class PipelineCapture:
    """SCAN, then one pipeline of DUMP + expiry per page, for Redis users that may not run scripts."""

    name = "pipeline"

    def __init__(self, client: Any, use_pexpiretime: bool):
        self._client = client
        self._expiry_command = "PEXPIRETIME" if use_pexpiretime else "PTTL"
        self._clock = None if use_pexpiretime else ServerClock(client)

    def pages(self, pattern: str, count: int) -> Iterator[Page]:
        cursor = 0
        while True:
            cursor, keys = scan_page(self._client, cursor, pattern, count)
            if keys:
                yield self._dump(keys)
            if cursor == 0:
                return

    def _dump(self, keys: list[bytes]) -> Page:
        pipeline = self._client.pipeline(transaction=False)
        for key in keys:
            pipeline.dump(key)
            pipeline.execute_command(self._expiry_command, key)
        replies = pipeline.execute()
        now_ms = self._clock.now_ms() if self._clock else 0
        kept_keys, expiries, payloads = [], [], []
        for key, payload, expiry in zip(keys, replies[0::2], replies[1::2]):
            if payload is None or expiry == -2:
                continue
            if self._clock and expiry >= 0:
                expiry += now_ms
            kept_keys.append(key)
            expiries.append(int(expiry))
            payloads.append(payload)
        return kept_keys, expiries, payloads, len(keys) - len(kept_keys)


def write_records(writer: SnapshotWriter, capture: Any, patterns: list[str], batch_size: int) -> int:
    """Stream every namespace into the writer; returns the number of vanished keys."""
    vanished = 0
    for index, pattern in enumerate(patterns):
        belongs = belongs_filter(patterns, index) if index else None
        for page in capture.pages(pattern, batch_size):
            if belongs:
                page = keep_own_keys(page, belongs)
            keys, expiries, payloads, page_vanished = page
            vanished += page_vanished
            writer.add_batch(index, keys, expiries, payloads)
    return vanished


def count_keys(client: Any, patterns: list[str], batch_size: int) -> dict[str, int]:
    """What a snapshot would hold per pattern, by SCAN only (check mode)."""
    counts = {}
    for index, pattern in enumerate(patterns):
        belongs = belongs_filter(patterns, index)
        cursor, total = 0, 0
        while True:
            cursor, keys = scan_page(client, cursor, pattern, batch_size)
            total += sum(1 for key in keys if belongs(key))
            if cursor == 0:
                break
        counts[pattern] = total
    return counts


def estimated_snapshot_bytes(client: Any) -> int:
    """Upper estimate of the data file size: the dataset's memory (DUMP payloads are usually smaller)."""
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


def choose_capture(module: AnsibleModule, client: Any, use_pexpiretime: bool) -> Any:
    if scripting_allowed(client, ResponseError):
        return LuaCapture(client, use_pexpiretime)
    module.warn("this Redis user may not run Lua scripts; snapshotting with pipelined SCAN + DUMP, "
                "which is slower and may count keys deleted meanwhile as vanished")
    return PipelineCapture(client, use_pexpiretime)


def build_manifest(params: dict[str, Any], writer: SnapshotWriter, source: dict[str, Any],
                   vanished: int, size: int, sha256: str) -> dict[str, Any]:
    return dict(
        source,
        format=MANIFEST_FORMAT,
        format_version=FORMAT_VERSION,
        snapshot_id=params["snapshot_id"],
        mode=params["mode"],
        namespaces=dict(zip(writer.namespaces, writer.counts)),
        keys=sum(writer.counts),
        vanished=vanished,
        rdb_version=writer.rdb_version,
        data_file=DATA_FILE_NAME,
        bytes=size,
        sha256=sha256,
        verified=True,
        verified_at=utc_now_iso(),
    )


def write_logical_snapshot(module: AnsibleModule, client: Any, staging: SnapshotDirectory,
                           version: tuple[str, tuple[int, ...]]) -> dict[str, Any]:
    """Capture, write, re-read and check the data file, then write the manifest (all in the staging dir)."""
    params = module.params
    use_pexpiretime = version[1] >= (7, 0)
    capture = choose_capture(module, client, use_pexpiretime)
    created_at = utc_now_iso()
    data_path = staging.file_path(DATA_FILE_NAME)
    writer = SnapshotWriter(data_path, params["snapshot_id"], params["mode"], created_at, params["namespaces"])
    try:
        vanished = write_records(writer, capture, params["namespaces"], params["batch_size"])
        size, sha256 = writer.finish()
    finally:
        writer.close()
    check_data_file(data_path, sha256, dict(zip(writer.namespaces, writer.counts)), params["snapshot_id"])
    source = {
        "created_at": created_at,
        "completed_at": utc_now_iso(),
        "source": describe_endpoint(params["redis"]),
        "redis_version": version[0],
        "capture": capture.name,
        "expiry_source": "PEXPIRETIME" if use_pexpiretime else "PTTL + server TIME (Redis < 7.0, exact to a few ms)",
    }
    manifest = build_manifest(params, writer, source, vanished, size, sha256)
    staging.write_manifest(manifest)
    return manifest


def existing_snapshot(module: AnsibleModule, directory: str) -> dict[str, Any]:
    """Verify the snapshot already at ``directory``; it is returned as is, never rewritten."""
    params = module.params
    try:
        manifest, _reader = verify_snapshot(directory)
    except SnapshotError as exc:
        module.fail_json(msg="snapshot %s exists but does not verify, so it was left untouched: %s" % (directory, exc))
    if params["state"] == "present":
        requested = list(params["namespaces"])
        if list(manifest["namespaces"]) != requested or manifest["mode"] != params["mode"]:
            module.fail_json(msg="snapshot %s already exists with mode %s and namespaces %s, not mode %s and "
                                 "namespaces %s; it is never overwritten - choose another snapshot_id"
                                 % (directory, manifest["mode"], list(manifest["namespaces"]),
                                    params["mode"], requested))
    return {"changed": False, "snapshot": snapshot_summary(directory, manifest, verified=True)}


def planned_snapshot(directory: str, params: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """What check mode reports: the snapshot that would be written."""
    return {
        "id": params["snapshot_id"],
        "path": directory,
        "manifest": os.path.join(directory, MANIFEST_FILE_NAME),
        "data_file": os.path.join(directory, DATA_FILE_NAME),
        "mode": params["mode"],
        "keys": sum(counts.values()),
        "namespaces": counts,
        "vanished": 0,
        "bytes": None,
        "sha256": None,
        "verified": False,
        "created_at": None,
    }


def create_snapshot(module: AnsibleModule, directory: str) -> dict[str, Any]:
    params = module.params
    client = connect_or_fail(module, params["redis"])
    try:
        version = server_version(client)
        problem = free_space_problem(client, params["dest"], params["min_free_mb"])
        if problem:
            module.fail_json(msg=problem)
        if module.check_mode:
            counts = count_keys(client, params["namespaces"], params["batch_size"])
            return {"changed": True, "snapshot": planned_snapshot(directory, params, counts)}
    except RedisError as exc:
        module.fail_json(msg="Redis failed while planning snapshot %s: %s" % (directory, exc))
    try:
        ensure_private_dir(params["dest"])
        staging = SnapshotDirectory(params["dest"], params["snapshot_id"])
    except OSError as exc:
        module.fail_json(msg="cannot write a snapshot into dest %s: %s" % (params["dest"], exc))
    try:
        manifest = write_logical_snapshot(module, client, staging, version)
        staging.commit()
    except (SnapshotError, OSError, RedisError) as exc:
        staging.discard()
        module.fail_json(msg="snapshot %s was not written (nothing was left behind): %s" % (directory, exc))
    except BaseException:
        staging.discard()
        raise
    return {"changed": True, "snapshot": snapshot_summary(directory, manifest, verified=True)}


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
