"""cutover_redis_snapshot modes rdb and replica, verify full, and housekeeping, against real redis-servers."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, run_module, start_redis_server
from test_redis_snapshot import LONG_TTL_MS, logical_state, populate_every_type

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils.cutover_snapshot import MANIFEST_FILE_NAME, RDB_FILE_NAME

NAMESPACES = ["tts:*", "ai:*"]


def snapshot(server: RedisServer, dest: Path, snapshot_id: str, check_mode: bool = False, **options: Any) -> dict:
    return run_module(cutover_redis_snapshot.main, dict(redis=server.options, dest=str(dest), snapshot_id=snapshot_id,
                                                        **options), check_mode=check_mode)


def fill(client: redis.Redis) -> None:
    populate_every_type(client, "tts:")
    populate_every_type(client, "ai:", ttl_ms=LONG_TTL_MS)
    client.set("other:1", "outside the namespaces")


def config(client: redis.Redis, name: str) -> str:
    value = list(client.config_get(name).values())[0]
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def source(tmp_path) -> RedisServer:
    server = start_redis_server(tmp_path / "source")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target(tmp_path) -> RedisServer:
    server = start_redis_server(tmp_path / "target")
    try:
        yield server
    finally:
        server.stop()


def restore_all(target: RedisServer, src: str, **options: Any) -> dict:
    return run_module(cutover_redis_restore.main, dict(redis=target.options, src=src, policy="overwrite", **options))


@pytest.mark.parametrize("mode, options", [
    ("rdb", {}),
    ("replica", {"replica_sync_delay": 0}),
    ("replica", {"replica_transfer": "disk"}),
])
def test_mode_captures_every_type_counts_namespaces_and_restores_exactly(source, target, tmp_path, mode, options):
    client = source.client()
    fill(client)
    redis.Redis(port=source.port, db=2).set("db2:key", "v")
    expected = logical_state(client)

    result = snapshot(source, tmp_path / "snaps", "run1", mode=mode, namespaces=NAMESPACES, **options)

    shot = result["snapshot"]
    directory = tmp_path / "snaps" / "run1"
    data = (directory / RDB_FILE_NAME).read_bytes()
    manifest = json.loads((directory / MANIFEST_FILE_NAME).read_text())
    assert result["changed"] is True and shot["verified"] is True and shot["mode"] == mode
    assert shot["namespaces"] == {"tts:*": 12, "ai:*": 12} and shot["keys"] == 24
    assert manifest["databases"] == {"0": 25, "2": 1} and manifest["rdb_keys"] == 26
    assert manifest["expires"] == {"0": 12} and manifest["rdb_version"] == 10 and manifest["db"] == 0
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == shot["sha256"] and data.startswith(b"REDIS0010")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in directory.iterdir())
    assert sorted(os.listdir(tmp_path / "snaps")) == ["run1"]
    restored = restore_all(target, shot["path"])
    assert restored["restored"] == 24
    assert logical_state(target.client()) == {key: value for key, value in expected.items() if not key.startswith(b"other")}


def test_rdb_mode_reads_the_file_while_the_fork_writes_it(source, tmp_path):
    client = source.client()
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        pipe.set("tts:%d" % i, os.urandom(100))
    pipe.execute()
    client.config_set("rdb-key-save-delay", 300)  # microseconds per key: the BGSAVE takes about a second

    started = time.monotonic()
    result = snapshot(source, tmp_path / "snaps", "slow", mode="rdb")
    elapsed = time.monotonic() - started

    assert result["capture"]["capture"] == "bgsave, read while written"
    assert result["snapshot"]["keys"] == 3000 and elapsed >= 0.8
    data = (tmp_path / "snaps" / "slow" / RDB_FILE_NAME).read_bytes()
    assert data == (source.directory / "dump.rdb").read_bytes()  # the very file Redis saved


def test_rdb_mode_waits_for_a_save_already_running(source, tmp_path):
    client = source.client()
    for i in range(1000):
        client.set("k%d" % i, i)
    client.config_set("rdb-key-save-delay", 1000)
    client.bgsave()
    assert client.info("persistence")["rdb_bgsave_in_progress"] == 1
    client.config_set("rdb-key-save-delay", 0)

    result = snapshot(source, tmp_path / "snaps", "after", mode="rdb")

    assert result["snapshot"]["keys"] == 1000
    assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"


def test_replica_mode_sets_the_diskless_delay_for_its_sync_only(source, tmp_path):
    client = source.client()
    fill(client)
    assert config(client, "repl-diskless-sync-delay") == "5"

    result = snapshot(source, tmp_path / "snaps", "fast", mode="replica", replica_sync_delay=0)

    assert result["capture"]["sync_wait_ms"] < 2500
    assert result["capture"]["diskless_sync_delay_overridden"] is True
    assert config(client, "repl-diskless-sync-delay") == "5"


def test_replica_mode_waits_out_and_reports_the_server_delay(source, tmp_path):
    client = source.client()
    fill(client)
    client.config_set("repl-diskless-sync-delay", 1)

    result = snapshot(source, tmp_path / "snaps", "waited", mode="replica")

    capture = result["capture"]
    assert capture["capture"] == "replication, diskless" and capture["diskless_sync_delay_s"] == 1
    assert capture["sync_wait_ms"] >= 900 and capture["diskless_sync_delay_overridden"] is False


def test_replica_disk_transfer_skips_the_delay(source, tmp_path):
    client = source.client()
    fill(client)

    result = snapshot(source, tmp_path / "snaps", "disk", mode="replica", replica_transfer="disk")

    assert result["capture"]["capture"] == "replication, disk-based"
    assert result["capture"]["sync_wait_ms"] < 4000  # the diskless delay (5 s) does not apply
    assert config(client, "repl-diskless-sync-delay") == "5"


@pytest.mark.parametrize("mode", ["rdb", "replica"])
def test_second_run_and_check_mode_leave_an_rdb_snapshot_alone(source, tmp_path, mode):
    client = source.client()
    fill(client)
    options = {"mode": mode, "namespaces": NAMESPACES}
    if mode == "replica":
        options["replica_sync_delay"] = 0
    planned = snapshot(source, tmp_path / "snaps", "run1", check_mode=True, **options)
    assert planned["changed"] is True and planned["snapshot"]["namespaces"] == {"tts:*": 12, "ai:*": 12}
    assert planned["snapshot"]["sha256"] is None and not (tmp_path / "snaps").exists()
    first = snapshot(source, tmp_path / "snaps", "run1", **options)
    data = tmp_path / "snaps" / "run1" / RDB_FILE_NAME
    before = data.stat()
    client.set("tts:later", "x")

    again = snapshot(source, tmp_path / "snaps", "run1", **options)

    assert again["changed"] is False and again["snapshot"] == first["snapshot"]
    assert (data.stat().st_ino, data.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    data.write_bytes(bytes(damaged))
    with pytest.raises(ModuleFailed, match="does not verify.*checksum mismatch"):
        snapshot(source, tmp_path / "snaps", "run1", state="verified", **options)


def test_rdb_options_are_checked(source, tmp_path):
    with pytest.raises(ModuleFailed, match="replica_sync_delay applies only to mode replica with replica_transfer diskless"):
        snapshot(source, tmp_path / "snaps", "x", mode="rdb", replica_sync_delay=0)
    with pytest.raises(ModuleFailed, match="rdb_path applies only to mode rdb"):
        snapshot(source, tmp_path / "snaps", "x", mode="logical", rdb_path="/tmp/dump.rdb")
    with pytest.raises(ModuleFailed, match="timeout must be at least 1 second"):
        snapshot(source, tmp_path / "snaps", "x", timeout=0)
    assert not (tmp_path / "snaps").exists()


# --- verify: full ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["logical", "rdb", "replica"])
def test_verify_full_compares_every_key_and_names_the_ones_that_differ(source, tmp_path, mode):
    client = source.client()
    fill(client)
    options = {"mode": mode, "namespaces": NAMESPACES, "verify": "full"}
    if mode == "replica":
        options["replica_sync_delay"] = 0

    clean = snapshot(source, tmp_path / "snaps", "run1", **options)

    assert clean["verification"]["compared"] == 24 and clean["verification"]["same"] == 24
    assert clean["verification"]["differences"] == 0
    client.set("tts:str", "changed since")
    client.pexpire("tts:list", LONG_TTL_MS)
    client.delete("ai:hash")
    client.sadd("ai:set", "new member")
    client.set("tts:new", "written since")
    recheck = dict(options, state="verified")
    with pytest.raises(ModuleFailed) as failure:
        snapshot(source, tmp_path / "snaps", "run1", **recheck)

    verification = failure.value.result["verification"]
    assert verification["by_reason"] == {"value": 2, "ttl": 1, "missing_in_source": 1, "extra_in_source": 1}
    assert sorted((item["key"], item["reason"]) for item in verification["differing_keys"]) == [
        ("ai:hash", "missing_in_source"), ("ai:set", "value"), ("tts:list", "ttl"), ("tts:new", "extra_in_source"),
        ("tts:str", "value")]
    assert "changed since" not in json.dumps(failure.value.result)  # names, never values
    allowed = snapshot(source, tmp_path / "snaps", "run1", verify_max_differences=5, **recheck)
    assert allowed["verification"]["differences"] == 5


def test_verify_full_sees_equal_values_in_other_encodings_as_equal(source, tmp_path):
    client = source.client()
    client.sadd("tts:set", *["m%d" % i for i in range(200)])  # hash table encoding: DUMP order varies
    client.hset("tts:hash", mapping={"f%d" % i: i for i in range(200)})

    result = snapshot(source, tmp_path / "snaps", "enc", namespaces=["tts:*"], verify="full")

    assert result["verification"]["same"] == 2 and result["verification"]["differences"] == 0


# --- housekeeping ---------------------------------------------------------------------------------------

def test_list_and_prune_keep_the_newest_and_the_protected_and_never_foreign_dirs(source, tmp_path):
    client = source.client()
    client.set("tts:1", "x")
    dest = tmp_path / "snaps"
    for run_id in ("20261101T000000Z", "20261102T000000Z", "20261103T000000Z", "20261104T000000Z"):
        snapshot(source, dest, run_id, run_id=run_id)
        time.sleep(0.01)
    (dest / "notes").mkdir()
    (dest / "notes" / "readme.txt").write_text("an operator's folder")
    stale = dest / ".20261105T000000Z.partial-abc123"
    stale.mkdir()
    os.utime(stale, (time.time() - 7 * 3600,) * 2)
    fresh = dest / ".20261106T000000Z.partial-def456"
    fresh.mkdir()

    listed = run_module(cutover_redis_snapshot.main, {"dest": str(dest), "state": "list"})["snapshots"]
    assert [entry["id"] for entry in listed] == ["notes", "20261101T000000Z", "20261102T000000Z",
                                                "20261103T000000Z", "20261104T000000Z"]
    assert listed[0]["state"] == "foreign" and listed[1]["run_id"] == "20261101T000000Z"
    args = {"dest": str(dest), "state": "pruned", "keep": 1, "protect": ["20261102T000000Z"]}
    before = sorted(os.listdir(dest))
    planned = run_module(cutover_redis_snapshot.main, args, check_mode=True)
    assert sorted(os.listdir(dest)) == before and len(before) == 7  # check mode deletes nothing

    pruned = run_module(cutover_redis_snapshot.main, args)

    assert pruned["removed"] == planned["removed"] == [str(dest / "20261101T000000Z"), str(dest / "20261103T000000Z"),
                                                      str(stale)]
    assert sorted(os.listdir(dest)) == sorted(["20261102T000000Z", "20261104T000000Z", "notes", fresh.name])
    assert any("20261102T000000Z: protected" in reason for reason in pruned["kept"])
    again = run_module(cutover_redis_snapshot.main, args)
    assert again["changed"] is False and again["removed"] == []


def test_prune_needs_keep(tmp_path):
    with pytest.raises(ModuleFailed, match="state pruned needs keep"):
        run_module(cutover_redis_snapshot.main, {"dest": str(tmp_path), "state": "pruned"})
    with pytest.raises(ModuleFailed, match="snapshot_id is required when state is present"):
        run_module(cutover_redis_snapshot.main, {"dest": str(tmp_path)})
