"""Snapshot integrity against real redis-servers (issue 8): a restore refuses a snapshot that is not the one asked
for (snapshot id, run, source server), checks every DUMP payload's own CRC-64 before its first write, `whole_rdb`
checks that Redis can load the file before it stops Redis and never leaves a target emptier than it found it, and
`verify: full` counts keys that expired while it ran as expired, not as differences."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, run_module, start_redis_server
from test_redis_snapshot import (  # noqa: F401 - target/target_server are fixtures
    LONG_TTL_MS,
    logical_state,
    populate_every_type,
    snapshot_args,
    snapshot_records,
    target,
    target_server,
)
from test_restore_rdb import source, supervised, take, whole  # noqa: F401 - source/supervised are fixtures

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils import cutover_snapshot_scratch
from ansible.module_utils.cutover_rdb import Crc64Check, payload_intact
from ansible.module_utils.cutover_snapshot import DATA_FILE_NAME, MANIFEST_FILE_NAME, RDB_FILE_NAME


def snapshot(server: RedisServer, dest: Path, snapshot_id: str, **options: Any) -> dict[str, Any]:
    return run_module(cutover_redis_snapshot.main, snapshot_args(server, dest, snapshot_id, **options))["snapshot"]


def restore(options: dict[str, Any], src: Path | str, check_mode: bool = False, **extra: Any) -> dict[str, Any]:
    return run_module(cutover_redis_restore.main, dict(redis=options, src=str(src), **extra), check_mode=check_mode)


def reseal(src: Path, data_file: str = DATA_FILE_NAME) -> None:
    """Make the manifest's sha256 and size match the (doctored) data file again, as a careless tool would."""
    data = (src / data_file).read_bytes()
    manifest = json.loads((src / MANIFEST_FILE_NAME).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (src / MANIFEST_FILE_NAME).write_text(json.dumps(manifest))


def flip_inside(path: Path, marker: bytes) -> None:
    """Flip one bit inside the first occurrence of ``marker`` (a value stored raw in the file)."""
    data = bytearray(path.read_bytes())
    at = data.index(marker)
    data[at + len(marker) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# --- 1. the snapshot asked for, and no other ------------------------------------------------------------

def test_the_manifest_records_the_source_server_as_redis_reports_it(redis_server, tmp_path):
    redis_server.client().set("tts:1", "x")

    snapshot(redis_server, tmp_path, "run1", run_id="20261204T100000Z")

    manifest = json.loads((tmp_path / "run1" / MANIFEST_FILE_NAME).read_text())
    info = redis_server.client().info("server")
    assert manifest["run_id"] == "20261204T100000Z"
    assert manifest["source_server"] == {"endpoint": "redis://127.0.0.1:%d/0" % redis_server.port, "db": 0,
                                         "redis_run_id": info["run_id"], "tcp_port": redis_server.port}


@pytest.mark.parametrize("policy", ["replace_all", "missing_only"])
def test_a_foreign_runs_snapshot_copied_under_our_id_is_refused_and_redis_is_untouched(redis_server, tmp_path,
                                                                                         policy):
    client = redis_server.client()
    for i in range(5):
        client.set("tts:foreign%d" % i, "from another run")
    snapshot(redis_server, tmp_path, "20261101T000000Z")
    client.flushall()
    for i in range(5):
        client.set("tts:ours%d" % i, "this run's own data")
    snapshot(redis_server, tmp_path / "ours", "20261204T100000Z")
    shutil.rmtree(tmp_path / "ours" / "20261204T100000Z")
    shutil.copytree(tmp_path / "20261101T000000Z", tmp_path / "ours" / "20261204T100000Z")
    before = logical_state(client)

    with pytest.raises(ModuleFailed, match="refusing to restore: .*20261101T000000Z") as failure:
        restore(redis_server.options, tmp_path / "ours" / "20261204T100000Z", policy=policy)

    assert failure.value.result["msg"].endswith("nothing was changed")
    assert logical_state(client) == before


def test_expect_names_every_difference_of_id_run_and_source(redis_server, target, tmp_path):
    redis_server.client().set("tts:1", "snapshot value")
    src = Path(snapshot(redis_server, tmp_path, "20261204T100000Z")["path"])
    target.client().set("tts:1", "target value")
    expect = {"snapshot_id": "20261205T090000Z", "run_id": "20261205T090000Z",
              "source": "redis://10.0.0.9:6379/0"}

    with pytest.raises(ModuleFailed) as failure:
        restore(target.options, src, policy="overwrite", expect=expect)

    message = failure.value.result["msg"]
    assert message.startswith("refusing to restore: snapshot %s is not the one asked for: " % src)
    assert "snapshot id is '20261204T100000Z', expected '20261205T090000Z'" in message
    assert "run id is '20261204T100000Z', expected '20261205T090000Z'" in message
    assert ("taken from redis://127.0.0.1:%d/0, expected redis://10.0.0.9:6379/0" % redis_server.port) in message
    assert target.client().get("tts:1") == b"target value"


def test_same_server_accepts_the_source_however_it_is_addressed_and_refuses_another(redis_server, target, tmp_path):
    client = redis_server.client()
    client.set("tts:1", "snapshot value")
    src = Path(snapshot(redis_server, tmp_path, "20261204T100000Z")["path"])
    client.set("tts:1", "newer")
    expect = {"snapshot_id": "20261204T100000Z", "run_id": "20261204T100000Z", "same_server": True}

    with pytest.raises(ModuleFailed, match="snapshot .* was taken from redis://127.0.0.1:%d/0 .*this restore writes to "
                                           "redis://127.0.0.1:%d/0" % (redis_server.port, target.port)):
        restore(target.options, src, policy="overwrite", expect=expect)
    with pytest.raises(ModuleFailed, match="taken from redis://127.0.0.1:%d/0 .*writes to redis://127.0.0.1:%d/3"
                                           % (redis_server.port, redis_server.port)):
        restore(dict(redis_server.options, db=3), src, policy="overwrite", expect=expect)
    assert target.client().dbsize() == 0 and redis.Redis(port=redis_server.port, db=3).dbsize() == 0

    by_name = restore(dict(redis_server.options, host="localhost"), src, policy="overwrite", expect=expect)

    assert by_name["restored"] == 1 and client.get("tts:1") == b"snapshot value"
    assert by_name["snapshot"]["run_id"] == "20261204T100000Z"


def test_an_existing_snapshot_dir_holding_another_snapshot_is_not_taken_for_ours(redis_server, tmp_path):
    redis_server.client().set("tts:1", "x")
    snapshot(redis_server, tmp_path, "20261101T000000Z")
    shutil.copytree(tmp_path / "20261101T000000Z", tmp_path / "20261204T100000Z")

    with pytest.raises(ModuleFailed, match="holds snapshot '20261101T000000Z'.*run '20261101T000000Z'"):
        snapshot(redis_server, tmp_path, "20261204T100000Z")


# --- 2. every payload's own checksum before the first write -------------------------------------------

def test_the_crc64_check_agrees_with_redis_on_real_dump_payloads(redis_server):
    client = redis_server.client()
    populate_every_type(client, "tts:", ttl_ms=LONG_TTL_MS)
    client.set("tts:big", os.urandom(300_000))
    payloads = [client.dump(key) for key in client.keys("tts:*")]
    check = Crc64Check()
    for payload in payloads:
        check.update(payload)
    damaged = bytearray(payloads[3])
    damaged[len(damaged) // 3] ^= 0x10

    assert check.residue == 0 and all(payload_intact(payload) for payload in payloads)
    assert not payload_intact(bytes(damaged)) and not payload_intact(payloads[0][:9])
    with pytest.raises(redis.ResponseError, match="checksum"):  # Redis agrees: it refuses the same payload
        client.restore("tts:copy", 0, bytes(damaged))


@pytest.mark.parametrize("policy", ["missing_only", "overwrite", "replace_all", "revert"])
def test_one_damaged_payload_with_the_sha256_resealed_is_refused_before_the_first_write(redis_server, target,
                                                                                        tmp_path, policy):
    source = redis_server.client()
    for i in range(150):
        source.set("tts:%03d" % i, "value-%03d-%s" % (i, "abcdefghij"))
    src = Path(snapshot(redis_server, tmp_path, "run1", namespaces=["tts:*"])["path"])
    last_key = snapshot_records(src)[-1][1]
    flip_inside(src / DATA_FILE_NAME, source.get(last_key))
    reseal(src)
    for i in range(51):
        target.client().set("tts:%03d" % (i * 2), "target's own")
    before = logical_state(target.client())

    with pytest.raises(ModuleFailed, match="refusing to restore: .*payload of key %r .*CRC-64" % last_key) as failure:
        restore(target.options, src, policy=policy, batch_size=10)

    assert failure.value.result["msg"].endswith("nothing was changed")
    assert logical_state(target.client()) == before and target.client().dbsize() == 51


def test_a_payload_too_new_for_the_target_is_refused_before_the_first_write(redis_server, target, tmp_path):
    source = redis_server.client()
    for i in range(20):
        source.set("tts:%02d" % i, "v")
    src = Path(snapshot(redis_server, tmp_path, "run1")["path"])
    last_key = snapshot_records(src)[-1][1]
    data = bytearray((src / DATA_FILE_NAME).read_bytes())
    payload = source.dump(last_key)
    at = data.index(last_key + payload) + len(last_key)
    newer = payload[:-10] + (11).to_bytes(2, "little")
    newer += _crc64(newer).to_bytes(8, "little")  # a Redis 7.2 payload, intact
    data[at:at + len(payload)] = newer
    (src / DATA_FILE_NAME).write_bytes(bytes(data))
    reseal(src)

    with pytest.raises(ModuleFailed, match="refusing to restore: the payload of key %r is RDB version 11 .*loads RDB "
                                           "versions up to 10" % last_key):
        restore(target.options, src, policy="overwrite", batch_size=5)

    assert target.client().dbsize() == 0


def _crc64(data: bytes) -> int:
    """Redis's CRC-64 (Jones, reflected, init 0), bit by bit: the reference the fast check is tested against."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
    return crc


def test_the_reference_crc64_matches_redis_check_value():
    assert _crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    message = os.urandom(70_000) + b"tail"
    check = Crc64Check()
    check.update(message[:12345])
    check.update(message[12345:] + _crc64(message).to_bytes(8, "little"))
    assert check.residue == 0


# --- 3. whole_rdb: loadable before Redis is stopped; never emptier than before ------------------------

def in_memory_keys(target: Any, count: int = 40) -> dict[bytes, tuple]:
    """Keys a supervised Redis without persistence holds in memory only (nothing saved since)."""
    client = target.client()
    for i in range(count):
        client.set("precious:%d" % i, "only in memory %d" % i)
    assert client.info("persistence")["rdb_changes_since_last_save"] > 0
    return logical_state(client)


def test_whole_rdb_refuses_an_rdb_redis_cannot_load_before_stopping_redis(source, supervised, tmp_path):
    source.client().set("tts:marker", "a value stored raw in the RDB")
    src = take(source, tmp_path / "snaps")
    flip_inside(src / RDB_FILE_NAME, b"a value stored raw in the RDB")
    reseal(src, RDB_FILE_NAME)
    target = supervised()
    before = in_memory_keys(target)
    pid = target.pid()

    for check_mode in (True, False):
        with pytest.raises(ModuleFailed, match="refusing to restore: Redis cannot load %s: .*RDB CRC error"
                                               % (src / RDB_FILE_NAME)) as failure:
            whole(target, src, check_mode=check_mode)
        assert failure.value.result["msg"].endswith("nothing was changed")

    assert target.pid() == pid and logical_state(target.client()) == before
    assert [name for name in os.listdir(target.data) if "cutover" in name] == []


def test_whole_rdb_refuses_a_snapshot_with_more_databases_than_the_target_has(tmp_path, supervised):
    wide = start_redis_server(tmp_path / "wide", extra=["--databases", "32"])
    try:
        redis.Redis(port=wide.port, db=20).set("db20:key", "a 16-database Redis cannot load this")
        src = take(wide, tmp_path / "snaps")
    finally:
        wide.stop()
    target = supervised()
    before = in_memory_keys(target)
    pid = target.pid()

    with pytest.raises(ModuleFailed, match="refusing to restore: the snapshot holds keys in database 20 and the "
                                           "target has databases 0-15"):
        whole(target, src)

    assert target.pid() == pid and logical_state(target.client()) == before


def test_whole_rdb_checks_with_a_scratch_server_where_redis_check_rdb_is_missing(source, supervised, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(cutover_snapshot_scratch, "CHECK_RDB_BINARIES", ())
    monkeypatch.setenv("PATH", "/nonexistent")
    source.client().set("tts:marker", "a value stored raw in the RDB")
    src = take(source, tmp_path / "snaps")
    good = tmp_path / "intact" / "run1"
    shutil.copytree(src, good)
    flip_inside(src / RDB_FILE_NAME, b"a value stored raw in the RDB")
    reseal(src, RDB_FILE_NAME)
    target = supervised()
    before = in_memory_keys(target)
    pid = target.pid()

    with pytest.raises(ModuleFailed, match="refusing to restore: Redis cannot load .*scratch redis-server exited"):
        whole(target, src, redis_server_binary="/usr/bin/redis-server")
    with pytest.raises(ModuleFailed, match="refusing to restore: cannot check that Redis can load .*redis-check-rdb "
                                           "\\(redis-tools\\) is not installed, and redis_server_binary .* is not an "
                                           "executable file"):
        whole(target, good, redis_server_binary=str(tmp_path / "no-such-redis-server"))
    assert target.pid() == pid and logical_state(target.client()) == before

    result = whole(target, good, redis_server_binary="/usr/bin/redis-server")
    assert result["restored"] == 1 and target.client().get("tts:marker") == b"a value stored raw in the RDB"


def failing_once(tmp_path: Path, command: list[str]) -> list[str]:
    """An argv that fails the first time it runs (as a Redis that does not come up would) and runs ``command`` after."""
    script = tmp_path / "start_once_failing.py"
    marker = tmp_path / "start_failed_once"
    script.write_text("import os, subprocess, sys\n"
                      "if not os.path.exists(%r):\n"
                      "    open(%r, 'w').close()\n"
                      "    sys.exit('ERROR: simulated start failure')\n"
                      "sys.exit(subprocess.call(sys.argv[1:]))\n" % (str(marker), str(marker)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [sys.executable, str(script), *command]


def test_a_failed_swap_gives_an_in_memory_only_target_its_data_back(source, supervised, tmp_path):
    populate_every_type(source.client(), "tts:")
    src = take(source, tmp_path / "snaps")
    target = supervised()
    before = in_memory_keys(target)

    with pytest.raises(ModuleFailed, match="whole_rdb restore failed: .*simulated start failure.*the previous data "
                                           "was put back and Redis was started again on it"):
        run_module(cutover_redis_restore.main, dict(
            redis=target.options, src=str(src), policy="whole_rdb", stop_command=target.ctl("stop", "redis"),
            start_command=failing_once(tmp_path, target.ctl("start", "redis")), start_timeout=30))

    assert logical_state(target.client()) == before


# --- 4. verify: full on a dataset whose keys expire while it runs ---------------------------------------

@pytest.mark.parametrize("mode", ["logical", "rdb"])
def test_verify_full_counts_keys_expiring_during_verification_as_expired(source, tmp_path, mode):
    client = source.client()
    rng = random.Random(8)
    pipeline = client.pipeline(transaction=False)
    for i in range(20_000):
        pipeline.set("tts:%d" % i, "x" * 40, px=rng.randint(100, 3000))
    for i in range(200):
        pipeline.set("ai:%d" % i, "kept")
    pipeline.execute()

    result = run_module(cutover_redis_snapshot.main, dict(redis=source.options, dest=str(tmp_path / "snaps"),
                                                          snapshot_id="run1", mode=mode, namespaces=["tts:*", "ai:*"],
                                                          verify="full"))

    verification = result["verification"]
    assert verification["differences"] == 0, verification
    assert verification["expired_since"] > 0
    assert verification["same"] + verification["expired_since"] == result["snapshot"]["keys"]
    assert verification["same"] >= 200


def test_verify_full_still_names_real_differences_next_to_expiring_keys(source, tmp_path):
    client = source.client()
    for i in range(3000):
        client.set("tts:short%d" % i, "x", px=random.randint(50, 800))
    client.set("tts:changed", "before")
    client.set("tts:deleted", "before")
    run_module(cutover_redis_snapshot.main, dict(redis=source.options, dest=str(tmp_path), snapshot_id="run1",
                                                 namespaces=["tts:*"]))
    client.set("tts:changed", "after")
    client.delete("tts:deleted")
    client.set("tts:new", "written since")

    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_redis_snapshot.main, dict(redis=source.options, dest=str(tmp_path), snapshot_id="run1",
                                                     namespaces=["tts:*"], state="verified", verify="full"))

    verification = failure.value.result["verification"]
    assert verification["by_reason"] == {"value": 1, "ttl": 0, "missing_in_source": 1, "extra_in_source": 1}
    assert verification["same"] + verification["expired_since"] + 2 == failure.value.result["snapshot"]["keys"]
