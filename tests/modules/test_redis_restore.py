"""cutover_redis_restore against real redis-servers: policies, integrity refusals, expiry, check mode."""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings, strategies as st

from cutover_testlib import ModuleFailed, RedisServer, run_module, start_redis_server
from test_redis_snapshot import (  # noqa: F401 - target/target_server are fixtures
    LONG_TTL_MS,
    add_acl_user,
    logical_state,
    populate_every_type,
    snapshot_args,
    target,
    target_server,
)

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils.cutover_snapshot import (
    DATA_FILE_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE_NAME,
    MANIFEST_FORMAT,
    SnapshotWriter,
)

COUNTS = ("restored", "kept_existing", "expired", "deleted", "missing_before", "kept_streams")


def take_snapshot(server: RedisServer, dest: Path, namespaces: list[str], snapshot_id: str = "run1") -> Path:
    result = run_module(cutover_redis_snapshot.main, snapshot_args(server, dest, snapshot_id, namespaces=namespaces))
    return Path(result["snapshot"]["path"])


def restore(server_options: dict[str, Any], src: Path, check_mode: bool = False, diff: bool = False,
            **options: Any) -> dict[str, Any]:
    return run_module(cutover_redis_restore.main, dict(redis=server_options, src=str(src), **options),
                      check_mode=check_mode, diff=diff)


def counts_of(result: dict[str, Any]) -> dict[str, Any]:
    return {name: result[name] for name in COUNTS + ("namespaces", "changed")}


# --- a source with namespaces a:* and b:*, then a target that moved on since the snapshot -----------------

def seed_source(client: redis.Redis) -> None:
    for i in range(1, 6):
        client.set("a:%d" % i, "snap-a%d" % i)
    client.hset("a:hash", mapping={"f": "snap"})
    for i in range(1, 4):
        client.set("b:%d" % i, "snap-b%d" % i)


def move_target_on(client: redis.Redis) -> None:
    """Newer writes, lost keys and extra keys since the snapshot; also keys outside the restored namespace."""
    client.set("a:1", "newer-a1")        # newer write
    client.delete("a:2", "a:hash")      # lost
    client.set("a:9", "extra-a9")        # not in the snapshot
    client.set("b:1", "newer-b1")        # other namespace: must stay untouched
    client.delete("b:2")
    client.set("c:1", "outside every namespace")


EXPECTED = {
    "missing_only": ({"restored": 2, "kept_existing": 4, "expired": 0, "deleted": 0, "missing_before": 2,
                      "kept_streams": 0},
                     {b"a:1": b"newer-a1", b"a:2": b"snap-a2", b"a:9": b"extra-a9"}),
    "overwrite": ({"restored": 6, "kept_existing": 0, "expired": 0, "deleted": 0, "missing_before": 2,
                   "kept_streams": 0},
                  {b"a:1": b"snap-a1", b"a:2": b"snap-a2", b"a:9": b"extra-a9"}),
    "replace_all": ({"restored": 6, "kept_existing": 0, "expired": 0, "deleted": 1, "missing_before": 2,
                     "kept_streams": 0},
                    {b"a:1": b"snap-a1", b"a:2": b"snap-a2", b"a:9": None}),
    "revert": ({"restored": 6, "kept_existing": 0, "expired": 0, "deleted": 1, "missing_before": 2,
                "kept_streams": 0},
               {b"a:1": b"snap-a1", b"a:2": b"snap-a2", b"a:9": None}),
}


@pytest.mark.parametrize("user", ["default", "noscript"])
@pytest.mark.parametrize("policy", ["missing_only", "overwrite", "replace_all", "revert"])
def test_policy_semantics_on_a_target_that_moved_on(redis_server, tmp_path, policy, user):
    client = redis_server.client()
    seed_source(client)
    src = take_snapshot(redis_server, tmp_path, ["a:*", "b:*"])
    move_target_on(client)
    options = redis_server.options if user == "default" else add_acl_user(redis_server, user, ["+@all", "-@scripting"])
    untouched = {key: client.get(key) for key in (b"b:1", b"b:2", b"b:3", b"c:1")}
    before = logical_state(client)

    planned = restore(options, src, check_mode=True, policy=policy, namespaces=["a:*"])
    assert logical_state(client) == before, "check mode must not write"
    result = restore(options, src, policy=policy, namespaces=["a:*"])

    expected_counts, expected_values = EXPECTED[policy]
    assert {name: result[name] for name in COUNTS} == expected_counts
    assert result["namespaces"] == {"a:*": expected_counts}
    assert counts_of(planned) == counts_of(result)
    assert result["changed"] is True and result["policy"] == policy
    for key, value in expected_values.items():
        assert client.get(key) == value, key
    assert client.hgetall("a:hash") == {b"f": b"snap"}
    assert {key: client.get(key) for key in untouched} == untouched
    assert result["snapshot"]["id"] == "run1"


def test_missing_only_twice_changes_nothing_the_second_time(redis_server, target, tmp_path):
    populate_every_type(redis_server.client(), "tts:", ttl_ms=LONG_TTL_MS)
    src = take_snapshot(redis_server, tmp_path, ["tts:*"])
    first = restore(target.options, src)
    state = logical_state(target.client())

    second = restore(target.options, src)

    assert first["changed"] is True and first["restored"] == 12
    assert second["changed"] is False
    assert (second["restored"], second["kept_existing"], second["missing_before"]) == (0, 12, 0)
    assert logical_state(target.client()) == state


def test_replace_all_deletes_only_keys_owned_by_the_selected_namespace(redis_server, tmp_path):
    client = redis_server.client()
    client.set("tts:a1", "snap")
    client.set("tts:b1", "snap")
    src = take_snapshot(redis_server, tmp_path, ["tts:a*", "tts:*"])
    client.set("tts:a2", "extra in tts:a*")
    client.set("tts:b2", "extra in tts:*")

    planned = restore(redis_server.options, src, check_mode=True, policy="replace_all", namespaces=["tts:*"])
    result = restore(redis_server.options, src, policy="replace_all", namespaces=["tts:*"])

    # tts:a2 matches tts:* too, but belongs to the earlier pattern tts:a*, which was not selected.
    assert result["deleted"] == planned["deleted"] == 1
    assert client.exists("tts:b2") == 0 and client.get("tts:a2") == b"extra in tts:a*"
    assert client.get("tts:a1") == b"snap" and client.get("tts:b1") == b"snap"


def test_expired_records_are_skipped_and_counted(redis_server, target, tmp_path):
    client = redis_server.client()
    for i in range(5):
        client.set("tts:short%d" % i, "x", px=300)
        client.set("tts:long%d" % i, "y", px=LONG_TTL_MS)
    client.set("tts:forever", "z")
    src = take_snapshot(redis_server, tmp_path, ["tts:*"])
    time.sleep(0.4)

    planned = restore(target.options, src, check_mode=True)
    result = restore(target.options, src)

    assert (result["expired"], result["restored"], result["missing_before"]) == (5, 6, 6)
    assert counts_of(planned) == counts_of(result)
    assert sorted(target.client().keys()) == sorted([b"tts:long%d" % i for i in range(5)] + [b"tts:forever"])


def test_absolute_expiry_is_kept_exactly_on_a_later_restore(redis_server, target, tmp_path):
    client = redis_server.client()
    keys = populate_every_type(client, "ai:", ttl_ms=120_000)
    expiries = {key: client.execute_command("PEXPIRETIME", key) for key in keys}
    src = take_snapshot(redis_server, tmp_path, ["ai:*"])
    time.sleep(0.3)

    restore(target.options, src)

    target_client = target.client()
    for key in keys:
        assert target_client.execute_command("PEXPIRETIME", key) == expiries[key]
        assert target_client.pttl(key) <= 120_000 - 300


def test_unknown_namespace_is_refused_naming_what_the_snapshot_has(redis_server, tmp_path):
    client = redis_server.client()
    seed_source(client)
    src = take_snapshot(redis_server, tmp_path, ["a:*", "b:*"])
    client.flushall()

    with pytest.raises(ModuleFailed) as failure:
        restore(redis_server.options, src, namespaces=["a:*", "tts:*"])

    assert failure.value.result["msg"] == ("namespaces 'tts:*' are not in the snapshot, which holds: 'a:*', 'b:*'")
    assert client.dbsize() == 0


# --- integrity refusals -----------------------------------------------------------------------------------

def flip_byte(src: Path) -> None:
    data = bytearray((src / DATA_FILE_NAME).read_bytes())
    data[len(data) // 2] ^= 0x40
    (src / DATA_FILE_NAME).write_bytes(bytes(data))


def truncate(src: Path) -> None:
    data = (src / DATA_FILE_NAME).read_bytes()
    (src / DATA_FILE_NAME).write_bytes(data[:len(data) - 50])


def truncate_and_fix_manifest(src: Path) -> None:
    """Truncated data with a manifest doctored to match its checksum: the record walk must still catch it."""
    data = (src / DATA_FILE_NAME).read_bytes()[:-30]
    (src / DATA_FILE_NAME).write_bytes(data)
    manifest = json.loads((src / MANIFEST_FILE_NAME).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (src / MANIFEST_FILE_NAME).write_text(json.dumps(manifest))


def random_file(src: Path) -> None:
    size = (src / DATA_FILE_NAME).stat().st_size
    (src / DATA_FILE_NAME).write_bytes(os.urandom(size))


def rdb_file(src: Path) -> None:
    (src / DATA_FILE_NAME).write_bytes(b"REDIS0010\xfa\tredis-ver\x067.0.15" + os.urandom(200))


def edit_manifest(**changes: Any) -> Callable[[Path], None]:
    def apply(src: Path) -> None:
        manifest = json.loads((src / MANIFEST_FILE_NAME).read_text())
        manifest.update(changes)
        (src / MANIFEST_FILE_NAME).write_text(json.dumps(manifest))
    return apply


def garbage_manifest(src: Path) -> None:
    (src / MANIFEST_FILE_NAME).write_text("{not json")


def no_manifest(src: Path) -> None:
    (src / MANIFEST_FILE_NAME).unlink()


DAMAGE = {
    "flipped byte": (flip_byte, "checksum mismatch"),
    "truncated": (truncate, "checksum mismatch: .* truncated"),
    "truncated, manifest doctored": (truncate_and_fix_manifest, "truncated"),
    "random file": (random_file, "is not a cutover snapshot data file"),
    "rdb file": (rdb_file, r"is not a cutover snapshot data file \(magic b'REDIS001'"),
    "unknown format version": (edit_manifest(format_version=99), "format version 99"),
    "foreign manifest": (edit_manifest(format="something-else"), "is not a cutover snapshot manifest"),
    "counts edited": (edit_manifest(namespaces={"tts:*": 13}), "record count mismatch"),
    "data file outside": (edit_manifest(data_file="../../etc/passwd"), "not a plain file name"),
    "garbage manifest": (garbage_manifest, "is not readable JSON"),
    "no manifest": (no_manifest, "has no manifest.json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("policy", ["missing_only", "replace_all"])
def test_damaged_or_foreign_snapshots_are_refused_and_redis_is_untouched(redis_server, tmp_path, damage, policy):
    client = redis_server.client()
    populate_every_type(client, "tts:")
    src = take_snapshot(redis_server, tmp_path, ["tts:*"])
    client.delete("tts:str", "tts:stream")
    client.set("tts:extra", "would be deleted by replace_all")
    before = logical_state(client)
    apply, message = DAMAGE[damage]
    apply(src)

    with pytest.raises(ModuleFailed, match=message) as failure:
        restore(redis_server.options, src, policy=policy)

    assert failure.value.result["msg"].startswith("refusing to restore: ")
    assert failure.value.result["msg"].endswith("nothing was changed")
    assert logical_state(client) == before


def test_redis_refusing_a_restore_stops_with_the_counts_so_far(redis_server, tmp_path):
    client = redis_server.client()
    client.set("tts:good", "v")
    good_payload = client.dump("tts:good")
    client.flushall()
    src = tmp_path / "forged"
    src.mkdir()
    writer = SnapshotWriter(str(src / DATA_FILE_NAME), "forged", "logical", "2026-11-25T22:21:14.123Z", ["tts:*"])
    writer.add_batch(0, [b"tts:1", b"tts:2", b"tts:3"], [-1, -1, -1], [good_payload, good_payload, good_payload])
    writer.add_batch(0, [b"tts:x"], [-1], [good_payload])
    size, sha256 = writer.finish()
    (src / MANIFEST_FILE_NAME).write_text(json.dumps({
        "format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION, "snapshot_id": "forged", "mode": "logical",
        "created_at": "2026-11-25T22:21:14.123Z", "namespaces": {"tts:*": 4}, "keys": 4,
        "data_file": DATA_FILE_NAME, "bytes": size, "sha256": sha256}))
    # A Redis user that may write tts:1..tts:9 only: the fourth RESTORE is refused mid-way.
    client.execute_command("ACL", "SETUSER", "digits", "reset", "on", ">pw", "resetchannels", "-@all", "+ping",
                           "+info", "+client|setname", "+time", "+exists", "+restore", "~tts:[0-9]")

    with pytest.raises(ModuleFailed, match="restore into .* stopped: .*(NOPERM|No permissions)") as failure:
        restore(dict(redis_server.options, user="digits", password="pw"), src, batch_size=2)

    assert failure.value.result["restored"] == 3
    assert sorted(client.keys()) == [b"tts:1", b"tts:2", b"tts:3"]
    assert client.get("tts:1") == b"v"


def test_diff_reports_counts_never_keys_or_values(redis_server, tmp_path):
    client = redis_server.client()
    seed_source(client)
    src = take_snapshot(redis_server, tmp_path, ["a:*", "b:*"])
    move_target_on(client)

    result = restore(redis_server.options, src, diff=True, policy="replace_all")

    assert result["diff"]["before"] == {"a:*": {"missing_snapshot_keys": 2}, "b:*": {"missing_snapshot_keys": 1}}
    assert result["diff"]["after"]["a:*"] == {"restored": 6, "kept_existing": 0, "kept_streams": 0, "deleted": 1}
    text = json.dumps(result["diff"])
    assert "snap-" not in text and "a:1" not in text and "extra" not in text


def test_password_never_appears_in_restore_results(tmp_path):
    password = "r3store-Secret"
    server = start_redis_server(tmp_path / "redis", password=password)
    try:
        client = server.client()
        populate_every_type(client, "tts:")
        src = take_snapshot(server, tmp_path / "snaps", ["tts:*"])
        client.delete("tts:str")
        url = "redis://:%s@127.0.0.1:%d/0" % (password, server.port)
        results = [restore(server.options, src, check_mode=True), restore({"url": url}, src, diff=True)]
        with pytest.raises(ModuleFailed) as refused:
            restore({"url": url.replace(password, "wrong")}, src)
        restored_value = client.get("tts:str")
    finally:
        server.stop()
    assert [result["restored"] for result in results] == [1, 1] and restored_value == b"hello"
    for text in [json.dumps(result) for result in results] + [json.dumps(refused.value.result)]:
        assert password not in text


# --- property: snapshot -> restore is the identity on every type, with TTLs -----------------------------

binary = st.binary(min_size=0, max_size=12)
members = st.binary(min_size=1, max_size=8)
ttls = st.one_of(st.none(), st.integers(min_value=60_000, max_value=10**9))
values = st.one_of(
    st.tuples(st.just("string"), binary),
    st.tuples(st.just("hash"), st.dictionaries(members, binary, min_size=1, max_size=6)),
    st.tuples(st.just("list"), st.lists(binary, min_size=1, max_size=6)),
    st.tuples(st.just("set"), st.sets(members, min_size=1, max_size=6)),
    st.tuples(st.just("zset"), st.dictionaries(members, st.floats(allow_nan=False, width=32), min_size=1, max_size=6)),
    st.tuples(st.just("stream"), st.tuples(st.lists(st.dictionaries(members, binary, min_size=1, max_size=3),
                                                    min_size=1, max_size=4),
                                           st.integers(min_value=0, max_value=4))),
)
datasets = st.dictionaries(st.tuples(st.sampled_from(["tts:", "ai:", "safety:"]), members), st.tuples(values, ttls),
                           max_size=12)


def write_value(client: redis.Redis, key: bytes, kind: str, value: Any) -> None:
    if kind == "string":
        client.set(key, value)
    elif kind == "hash":
        client.hset(key, mapping=value)
    elif kind == "list":
        client.rpush(key, *value)
    elif kind == "set":
        client.sadd(key, *value)
    elif kind == "zset":
        client.zadd(key, value)
    else:
        entries, delivered = value
        for fields in entries:
            client.xadd(key, fields)
        client.xgroup_create(key, b"g", id="0")
        if delivered:
            client.xreadgroup(b"g", b"c", {key: ">"}, count=delivered)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset=datasets)
def test_snapshot_then_restore_reproduces_random_datasets(redis_server, target_server, tmp_path, dataset):
    source, destination = redis_server.client(), target_server.client()
    source.flushall()
    destination.flushall()
    for (prefix, name), ((kind, value), ttl) in dataset.items():
        key = prefix.encode() + name
        write_value(source, key, kind, value)
        if ttl:
            source.pexpire(key, ttl)
    expected = logical_state(source)
    snapshot_id = uuid.uuid4().hex

    snapshot = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, snapshot_id,
                                                                     namespaces=["tts:*", "ai:*", "safety:*"]))
    result = restore(target_server.options, Path(snapshot["snapshot"]["path"]))

    assert snapshot["snapshot"]["keys"] == len(dataset) == result["restored"] == result["missing_before"]
    assert logical_state(destination) == expected
