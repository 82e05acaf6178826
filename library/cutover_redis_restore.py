#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_redis_restore
short_description: Restore Redis keys from a cutover snapshot by policy
description:
  - Restores the keys of a snapshot written by M(cutover_redis_snapshot) into Redis, per namespace,
    keeping each key's absolute expiry (C(RESTORE ... ABSTTL)).
  - Before touching Redis it checks the snapshot end to end - manifest present and parseable, format
    version known, data file sha256 equal to the manifest's, record count per namespace equal - and
    refuses with a message naming the problem otherwise, changing nothing.
  - Records whose absolute expiry has passed (on the target server's clock) are skipped and counted as
    C(expired).
  - Keys are sent in batches of O(batch_size), one server-side Lua call per batch with the next batch
    already on the wire; a Redis user that may not run scripts gets pipelined RESTORE commands instead.
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
    type: str
    choices: [missing_only, overwrite, replace_all]
    default: missing_only
  namespaces:
    description:
      - Patterns of the snapshot to restore (each must be one of the snapshot's namespaces, written
        exactly as in its manifest). Default - all of them.
      - A key belongs to the first pattern of the snapshot that matches it, for C(replace_all) too.
    type: list
    elements: str
  batch_size:
    description: Records per round trip (1 to 100000).
    type: int
    default: 1000
extends_documentation_fragment:
  - cutover_redis
  - action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes the same counts with EXISTS (and SCAN for C(replace_all)) and writes nothing; its
      C(missing_before) is the data-loss audit.
  diff_mode:
    support: full
    details: Counts per namespace only, never keys or values.
  platform:
    platforms: posix
notes:
  - The target must run Redis 5.0 or later (RESTORE ABSTTL) and understand the RDB version of the snapshot
    (C(rdb_version) in the manifest); Redis refuses payloads from a newer RDB version.
  - C(replace_all) keeps a 64-bit fingerprint per restored key in memory (about 70 bytes per key) to know
    which keys to delete; the other policies stream in constant memory.
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
"""

RETURN = r"""
policy:
  description: The policy applied.
  returned: always
  type: str
  sample: missing_only
restored:
  description: Keys written from the snapshot (in check mode, that would be written).
  returned: always
  type: int
  sample: 120
kept_existing:
  description: Snapshot keys left alone because Redis already had them (C(missing_only) only).
  returned: always
  type: int
  sample: 14880
expired:
  description: Records skipped because their absolute expiry has passed.
  returned: always
  type: int
  sample: 3
deleted:
  description: Keys deleted because the snapshot does not hold them (C(replace_all) only).
  returned: always
  type: int
  sample: 0
missing_before:
  description: Unexpired snapshot keys that Redis did not have before the restore.
  returned: always
  type: int
  sample: 120
namespaces:
  description: The same counts per selected pattern.
  returned: always
  type: dict
  sample: {"tts:*": {"restored": 120, "kept_existing": 14880, "expired": 3, "deleted": 0, "missing_before": 120}}
snapshot:
  description: Which snapshot was restored.
  returned: always
  type: dict
  contains:
    id:
      description: Snapshot id.
      type: str
    sha256:
      description: Verified sha256 of its data file.
      type: str
"""

import os
from collections import deque
from itertools import compress
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_redis import (
    RedisError,
    ResponseError,
    connect_or_fail,
    describe_endpoint,
    redis_connection_argument_spec,
)
from ansible.module_utils.cutover_snapshot import (
    NO_EXPIRY,
    Batch,
    ServerClock,
    SnapshotError,
    SnapshotReader,
    belongs_filter,
    scripting_allowed,
    server_version,
    verify_snapshot,
)

MAX_BATCH_SIZE = 100000
COUNT_NAMES = ("restored", "kept_existing", "expired", "deleted", "missing_before")

# Restores one batch of one namespace atomically. KEYS: the keys; ARGV[1]: 'replace' or 'keep'; then per
# key its absolute expiry in unix ms (0: none) and its DUMP payload. One Redis call per key: without
# REPLACE, RESTORE itself answers BUSYKEY for a key that exists (a newer write, kept); with REPLACE, one
# EXISTS per 1000 keys counts what was there before.
# Reply: restored, kept, missing before, expired[, error of the RESTORE that failed].
RESTORE_SCRIPT = """
local replace = ARGV[1] == 'replace'
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local live, expired = {}, 0
for i = 1, #KEYS do
  local expiry = tonumber(ARGV[2 * i])
  if expiry ~= 0 and expiry <= now_ms then
    expired = expired + 1
  else
    live[#live + 1] = i
  end
end
local present = 0
if replace then
  for first = 1, #live, 1000 do
    local chunk = {}
    for j = first, math.min(first + 999, #live) do chunk[#chunk + 1] = KEYS[live[j]] end
    present = present + redis.call('EXISTS', unpack(chunk))
  end
end
local restored, kept = 0, 0
for _, i in ipairs(live) do
  local reply
  if replace then
    reply = redis.pcall('RESTORE', KEYS[i], ARGV[2 * i], ARGV[2 * i + 1], 'REPLACE', 'ABSTTL')
  else
    reply = redis.pcall('RESTORE', KEYS[i], ARGV[2 * i], ARGV[2 * i + 1], 'ABSTTL')
  end
  if type(reply) == 'table' and reply.err then
    if replace or string.sub(reply.err, 1, 7) ~= 'BUSYKEY' then
      return {restored, kept, replace and #live - present or restored, expired, reply.err}
    end
    kept = kept + 1
  else
    restored = restored + 1
  end
end
return {restored, kept, replace and #live - present or restored, expired}
"""

class RestoreFailed(Exception):
    """Redis refused a RESTORE; counts so far stay in the tally."""


class Tally:
    """Counts per namespace pattern."""

    def __init__(self, patterns: list[str]):
        self.by_pattern = {pattern: dict.fromkeys(COUNT_NAMES, 0) for pattern in patterns}

    def add(self, pattern: str, **counts: int) -> None:
        for name, value in counts.items():
            self.by_pattern[pattern][name] += value

    def totals(self) -> dict[str, int]:
        return {name: sum(counts[name] for counts in self.by_pattern.values()) for name in COUNT_NAMES}


def build_argument_spec() -> dict[str, Any]:
    spec = redis_connection_argument_spec()
    spec.update(
        src={"type": "path", "required": True},
        policy={"type": "str", "choices": ["missing_only", "overwrite", "replace_all"], "default": "missing_only"},
        namespaces={"type": "list", "elements": "str"},
        batch_size={"type": "int", "default": 1000},
    )
    return spec


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


def acquire_connection(client: Any) -> Any:
    pool = client.connection_pool
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 requires a command name
        return pool.get_connection("EVAL")


class LuaRestorer:
    """One RESTORE_SCRIPT call per batch, with the next batch sent before the previous reply is read so
    that building batches here overlaps with restoring them in Redis."""

    def __init__(self, client: Any, replace: bool, on_done: Callable[[int, int, int, int, int], None]):
        self._client = client
        self._connection = acquire_connection(client)
        self._mode = "replace" if replace else "keep"
        self._on_done = on_done
        self._in_flight: deque[int] = deque()

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        args: list[Any] = [self._mode] * (2 * len(keys) + 1)
        args[1::2] = [expiry if expiry > 0 else 0 for expiry in expiries]
        args[2::2] = payloads
        self._connection.send_command("EVAL", RESTORE_SCRIPT, len(keys), *keys, *args)
        self._in_flight.append(namespace_index)
        self._collect(keep=1)

    def finish(self) -> None:
        self._collect(keep=0)

    def _collect(self, keep: int) -> None:
        """Read replies until ``keep`` batches are in flight; on a failed RESTORE read them all, then raise."""
        failure = None
        while len(self._in_flight) > (0 if failure else keep):
            namespace_index = self._in_flight.popleft()
            reply = self._connection.read_response()
            restored, kept, missing, expired = (int(value) for value in reply[:4])
            self._on_done(namespace_index, restored, kept, missing, expired)
            if len(reply) > 4 and failure is None:
                failure = _text(reply[4])
        if failure:
            raise RestoreFailed(failure)

    def close(self) -> None:
        """Give the connection back; one with unread replies (after an error) is dropped, not reused."""
        if self._connection is None:
            return
        if self._in_flight:
            self._connection.disconnect()
        self._client.connection_pool.release(self._connection)
        self._connection = None


class PipelineRestorer:
    """EXISTS + RESTORE per key in one pipeline per batch, for Redis users that may not run scripts."""

    def __init__(self, client: Any, replace: bool, on_done: Callable[[int, int, int, int, int], None]):
        self._client = client
        self._replace = replace
        self._on_done = on_done

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        pipeline = self._client.pipeline(transaction=False)
        pipeline.exists(*keys)
        for key, expiry, payload in zip(keys, expiries, payloads):
            pipeline.restore(key, expiry if expiry > 0 else 0, payload, replace=self._replace, absttl=True)
        replies = pipeline.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):
            raise replies[0]
        restored = kept = 0
        failure = None
        for reply in replies[1:]:
            if not isinstance(reply, Exception):
                restored += 1
            elif str(reply).startswith("BUSYKEY"):  # the key exists: a newer write, which wins
                kept += 1
            elif failure is None:
                failure = reply
        self._on_done(namespace_index, restored, kept, len(keys) - int(replies[0]), 0)
        if failure is not None:
            raise RestoreFailed(str(failure))

    def finish(self) -> None:
        return None

    def close(self) -> None:
        return None


class ExistenceCounter:
    """Check mode: the counts a restore would produce, from EXISTS alone."""

    def __init__(self, client: Any, replace: bool, on_done: Callable[[int, int, int, int, int], None]):
        self._client = client
        self._replace = replace
        self._on_done = on_done

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        present = int(self._client.exists(*keys))
        missing = len(keys) - present
        if self._replace:
            self._on_done(namespace_index, len(keys), 0, missing, 0)
        else:
            self._on_done(namespace_index, missing, present, missing, 0)

    def finish(self) -> None:
        return None

    def close(self) -> None:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def drop_expired(batch: Batch, now_ms: int) -> tuple[Batch, int]:
    """The batch without records whose absolute expiry is at or before ``now_ms``, and how many those were."""
    index, keys, expiries, payloads = batch
    if not any(0 <= expiry <= now_ms for expiry in expiries):
        return batch, 0
    live = [expiry == NO_EXPIRY or expiry > now_ms for expiry in expiries]
    kept = (index, list(compress(keys, live)), list(compress(expiries, live)), list(compress(payloads, live)))
    return kept, len(keys) - len(kept[1])


def choose_restorer(module: AnsibleModule, client: Any) -> type:
    if module.check_mode:
        return ExistenceCounter
    if scripting_allowed(client, ResponseError):
        return LuaRestorer
    module.warn("this Redis user may not run Lua scripts; restoring with pipelined EXISTS + RESTORE (slower)")
    return PipelineRestorer


def restore_records(module: AnsibleModule, client: Any, manifest: dict[str, Any], patterns: list[str],
                    selected: list[str], tally: Tally) -> set[int]:
    """Stream the data file into Redis; returns fingerprints of the restored keys (for replace_all only)."""
    params = module.params
    replace = params["policy"] != "missing_only"
    keep_fingerprints = params["policy"] == "replace_all"
    fingerprints: set[int] = set()
    chosen = [pattern in selected for pattern in patterns]

    def on_done(index: int, restored: int, kept: int, missing: int, expired: int) -> None:
        tally.add(patterns[index], restored=restored, kept_existing=kept, missing_before=missing, expired=expired)

    restorer = choose_restorer(module, client)(client, replace, on_done)
    clock = ServerClock(client)
    data_path = os.path.join(params["src"], manifest["data_file"])
    try:
        with SnapshotReader(data_path) as reader:
            reader.read_header()
            for batch in reader.batches(params["batch_size"], chosen):
                (index, keys, expiries, payloads), expired = drop_expired(batch, clock.now_ms())
                if expired:
                    tally.add(patterns[index], expired=expired)
                if keys:
                    restorer.submit(index, keys, expiries, payloads)
                if keep_fingerprints:
                    fingerprints.update(map(hash, keys))
            restorer.finish()
    finally:
        restorer.close()
    if reader.sha256 != manifest["sha256"]:
        raise SnapshotError("the data file changed while it was being restored (sha256 %s, manifest %s)"
                            % (reader.sha256, manifest["sha256"]))
    return fingerprints


def delete_extra_keys(client: Any, patterns: list[str], selected: list[str], fingerprints: set[int],
                      batch_size: int, check_mode: bool, tally: Tally) -> None:
    """replace_all: delete keys of the selected namespaces that the snapshot does not hold.

    ``fingerprints`` are Python hashes of the restored keys: a collision only spares a key, never deletes one.
    """
    for pattern in selected:
        belongs = belongs_filter(patterns, patterns.index(pattern))
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor, match=pattern, count=batch_size)
            extra = [key for key in keys if hash(key) not in fingerprints and belongs(key)]
            if extra:
                tally.add(pattern, deleted=len(extra) if check_mode else int(client.unlink(*extra)))
            if int(cursor) == 0:
                break


def run_restore(module: AnsibleModule, client: Any, manifest: dict[str, Any], patterns: list[str],
                selected: list[str]) -> dict[str, Any]:
    params = module.params
    tally = Tally(selected)
    try:
        fingerprints = restore_records(module, client, manifest, patterns, selected, tally)
        if params["policy"] == "replace_all":
            delete_extra_keys(client, patterns, selected, fingerprints, params["batch_size"], module.check_mode, tally)
    except (RestoreFailed, RedisError, SnapshotError, OSError) as exc:
        module.fail_json(msg="restore into %s stopped: %s (snapshot rdb_version %s from Redis %s)"
                             % (describe_endpoint(params["redis"]), exc, manifest.get("rdb_version"),
                                manifest.get("redis_version")),
                         **restore_result(module, manifest, tally))
    return restore_result(module, manifest, tally)


def restore_result(module: AnsibleModule, manifest: dict[str, Any], tally: Tally) -> dict[str, Any]:
    totals = tally.totals()
    result: dict[str, Any] = dict(
        totals,
        changed=totals["restored"] + totals["deleted"] > 0,
        policy=module.params["policy"],
        namespaces=tally.by_pattern,
        snapshot={"id": manifest["snapshot_id"], "sha256": manifest["sha256"]},
    )
    if module._diff:
        result["diff"] = {
            "before": {pattern: {"missing_snapshot_keys": counts["missing_before"]}
                       for pattern, counts in tally.by_pattern.items()},
            "after": {pattern: {"restored": counts["restored"], "kept_existing": counts["kept_existing"],
                                "deleted": counts["deleted"]}
                      for pattern, counts in tally.by_pattern.items()},
        }
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=build_argument_spec(), supports_check_mode=True)
    params = module.params
    if not 1 <= params["batch_size"] <= MAX_BATCH_SIZE:
        module.fail_json(msg="batch_size must be between 1 and %d, got %d" % (MAX_BATCH_SIZE, params["batch_size"]))
    try:
        manifest, reader = verify_snapshot(params["src"])
    except SnapshotError as exc:
        module.fail_json(msg="refusing to restore: %s; nothing was changed" % exc)
    if manifest["mode"] != "logical":
        module.fail_json(msg="refusing to restore: snapshot mode %r is not supported (only 'logical'); nothing "
                             "was changed" % manifest["mode"])
    patterns = reader.namespaces
    selected, problem = selected_patterns(params["namespaces"], patterns)
    if problem:
        module.fail_json(msg=problem)
    client = connect_or_fail(module, params["redis"])
    try:
        version = server_version(client)
    except RedisError as exc:
        module.fail_json(msg="cannot read INFO server from Redis at %s (the Redis user needs INFO): %s"
                             % (describe_endpoint(params["redis"]), exc))
    if version[1] < (5, 0):
        module.fail_json(msg="Redis %s at %s lacks RESTORE ABSTTL; cutover_redis_restore needs Redis 5.0 or later"
                             % (version[0], describe_endpoint(params["redis"])))
    module.exit_json(**run_restore(module, client, manifest, patterns, selected))


if __name__ == "__main__":
    main()
