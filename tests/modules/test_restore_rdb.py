"""cutover_redis_restore with rdb/replica snapshots: policy whole_rdb (swap the file, restart Redis through a real
supervisord) with and without AOF, its rollback and refusals, and per-namespace policies via a scratch server."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, free_port, run_module, start_redis_server, wait_for_port
from test_redis_restore import COUNTS, EXPECTED, move_target_on, seed_source
from test_redis_snapshot import LONG_TTL_MS, logical_state, populate_every_type

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils.cutover_snapshot import MANIFEST_FILE_NAME, RDB_FILE_NAME

BIN = Path(sys.executable).parent


@dataclass
class SupervisedRedis:
    """A redis-server run by a real supervisord, as the demo runs it; stopped and started with supervisorctl."""

    port: int
    directory: Path
    data: Path
    supervisor_conf: Path

    def ctl(self, *args: str) -> list[str]:
        return [str(BIN / "supervisorctl"), "-c", str(self.supervisor_conf), *args]

    @property
    def options(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db)

    def pid(self) -> int:
        return int(self.client().info("server")["process_id"])


def supervised_redis(directory: Path, extra: list[str]) -> SupervisedRedis:
    data = directory / "data"
    data.mkdir(parents=True)
    port = free_port()
    redis_conf = directory / "redis.conf"
    redis_conf.write_text("\n".join(["port %d" % port, "bind 127.0.0.1", "dir %s" % data, 'save ""', "appendonly no",
                                     "daemonize no", "logfile %s" % (directory / "redis.log")] + extra) + "\n")
    supervisor_conf = directory / "supervisord.conf"
    supervisor_conf.write_text("\n".join([
        "[unix_http_server]", "file=%s/supervisor.sock" % directory, "chmod=0700",
        "[supervisord]", "logfile=%s/supervisord.log" % directory, "pidfile=%s/supervisord.pid" % directory,
        "childlogdir=%s" % directory, "nodaemon=false",
        "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]", "serverurl=unix://%s/supervisor.sock" % directory,
        "[program:redis]", "command=/usr/bin/redis-server %s" % redis_conf, "autorestart=unexpected", "startsecs=1",
        "startretries=1", "stopsignal=TERM", "stopwaitsecs=30", ""]))
    subprocess.run([str(BIN / "supervisord"), "-c", str(supervisor_conf)], check=True)
    wait_for_port(port)
    return SupervisedRedis(port, directory, data, supervisor_conf)


@pytest.fixture
def supervised(tmp_path) -> Iterator[Any]:
    started: list[SupervisedRedis] = []

    def start(extra: list[str] | None = None) -> SupervisedRedis:
        server = supervised_redis(tmp_path / ("supervised%d" % len(started)), extra or [])
        started.append(server)
        return server
    try:
        yield start
    finally:
        for server in started:
            subprocess.run(server.ctl("shutdown"), capture_output=True, check=False)
            wait_for_port(server.port, closed=True)


@pytest.fixture
def source(tmp_path) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path / "source")
    try:
        yield server
    finally:
        server.stop()


def take(server: Any, dest: Path, mode: str = "rdb", snapshot_id: str = "run1", **options: Any) -> Path:
    if mode == "replica":
        options.setdefault("replica_sync_delay", 0)
    result = run_module(cutover_redis_snapshot.main, dict(redis=server.options, dest=str(dest), snapshot_id=snapshot_id,
                                                          mode=mode, **options))
    return Path(result["snapshot"]["path"])


def whole(server: SupervisedRedis, src: Path, check_mode: bool = False, **options: Any) -> dict:
    args = dict(redis=server.options, src=str(src), policy="whole_rdb", stop_command=server.ctl("stop", "redis"),
                start_command=server.ctl("start", "redis"), start_timeout=30, **options)
    return run_module(cutover_redis_restore.main, args, check_mode=check_mode)


def every_db_state(port: int, databases: list[int]) -> dict[int, dict]:
    return {db: logical_state(redis.Redis(port=port, db=db)) for db in databases}


def test_whole_rdb_swaps_the_file_restarts_redis_and_keeps_the_previous_file(source, supervised, tmp_path):
    populate_every_type(source.client(), "tts:")
    populate_every_type(source.client(), "ai:", ttl_ms=LONG_TTL_MS)
    redis.Redis(port=source.port, db=4).set("db4:key", "v")
    expected = every_db_state(source.port, [0, 4])
    src = take(source, tmp_path / "snaps", namespaces=["tts:*", "ai:*"])
    target = supervised()
    target.client().set("newer:write", "made after the snapshot")
    target.client().save()
    previous_bytes = (target.data / "dump.rdb").read_bytes()
    pid_before = target.pid()

    result = whole(target, src)

    assert result["changed"] is True and result["policy"] == "whole_rdb"
    assert result["restored"] == 25 and result["deleted"] == 1
    assert target.pid() != pid_before
    assert every_db_state(target.port, [0, 4]) == expected
    assert target.client().exists("newer:write") == 0
    previous = result["whole_rdb"]["previous"]
    assert len(previous) == 1 and Path(previous[0]).read_bytes() == previous_bytes
    assert result["whole_rdb"]["loaded"] == {"0": 24, "4": 1} and result["whole_rdb"]["aof"] is False
    assert not [name for name in os.listdir(target.data) if name.startswith(".cutover-restore")]


def test_whole_rdb_with_appendonly_makes_the_snapshot_the_base_of_a_fresh_aof(source, supervised, tmp_path):
    populate_every_type(source.client(), "tts:", ttl_ms=LONG_TTL_MS)
    expected = logical_state(source.client())
    src = take(source, tmp_path / "snaps")
    target = supervised(["appendonly yes", "appendfsync always"])
    target.client().set("old:aof:key", "only in the old AOF")

    result = whole(target, src)

    assert result["whole_rdb"]["aof"] is True
    assert logical_state(target.client()) == expected
    old_aof = Path(result["whole_rdb"]["previous"][0])
    assert old_aof.name.startswith("appendonlydir.cutover-before-run1-") and any(old_aof.iterdir())
    manifest = (target.data / "appendonlydir" / "appendonly.aof.manifest").read_text()
    assert "appendonly.aof.1.base.rdb" in manifest and "type b" in manifest
    target.client().set("after:restore", "kept across a restart by the new AOF")
    subprocess.run(target.ctl("restart", "redis"), check=True, capture_output=True)
    wait_for_port(target.port)
    time.sleep(0.2)
    assert target.client().get("after:restore") == b"kept across a restart by the new AOF"
    assert logical_state(target.client(), "tts:*") == expected


def test_whole_rdb_puts_the_previous_data_back_when_redis_cannot_load_the_snapshot(tmp_path, supervised):
    source = start_redis_server(tmp_path / "wide")
    try:
        redis.Redis(port=source.port, db=5).set("db5:key", "a 4-database Redis cannot load this")
        src = take(source, tmp_path / "snaps")
    finally:
        source.stop()
    # A user that may not read the config (kept across restarts in redis.conf): the databases check cannot see that
    # the target has only 4, so the file (sound for redis-check-rdb) reaches Redis, which refuses to load it.
    target = supervised(["databases 4", "user swapper on >pw resetchannels -@all +ping +info +client|setname +dbsize"])
    target.client().set("precious", "still here after the failed restore")
    target.client().save()
    options = dict(target.options, user="swapper", password="pw")

    with pytest.raises(ModuleFailed, match="whole_rdb restore failed: .*the previous data was put back and Redis was "
                                           "started again on it") as failure:
        run_module(cutover_redis_restore.main, dict(
            redis=options, src=str(src), policy="whole_rdb", rdb_path=str(target.data / "dump.rdb"),
            stop_command=target.ctl("stop", "redis"), start_command=target.ctl("start", "redis"), start_timeout=30))

    assert target.client().get("precious") == b"still here after the failed restore"
    assert "start_command" in failure.value.result["msg"] or "did not come back" in failure.value.result["msg"]
    assert sorted(name for name in os.listdir(target.data) if "cutover" in name) == []


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


def newer_rdb_version(src: Path) -> None:
    data = b"REDIS0011" + (src / RDB_FILE_NAME).read_bytes()[9:]
    (src / RDB_FILE_NAME).write_bytes(data)
    manifest = json.loads((src / MANIFEST_FILE_NAME).read_text())
    manifest.update(rdb_version=11, sha256=hashlib.sha256(data).hexdigest())
    (src / MANIFEST_FILE_NAME).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, message", [
    (lambda src: flip_middle_byte(src / RDB_FILE_NAME), "checksum mismatch"),
    (lambda src: (src / RDB_FILE_NAME).write_bytes(b"CUTSNAP\x00" + b"\x00" * 100), "not an RDB file"),
    (newer_rdb_version, "target runs Redis 7.0.15, which loads RDB versions up to 10"),
    (lambda src: (src / MANIFEST_FILE_NAME).write_text("{"), "is not readable JSON"),
])
def test_whole_rdb_refuses_a_bad_snapshot_before_touching_redis(source, supervised, tmp_path, damage, message):
    source.client().set("tts:1", "snapshot value")
    src = take(source, tmp_path / "snaps")
    target = supervised()
    target.client().set("tts:1", "current value")
    pid = target.pid()
    damage(src)

    with pytest.raises(ModuleFailed, match=message) as failure:
        whole(target, src)

    assert failure.value.result["msg"].startswith("refusing to restore: ")
    assert target.pid() == pid and target.client().get("tts:1") == b"current value"
    assert [name for name in os.listdir(target.data) if "cutover" in name] == []


def test_whole_rdb_needs_an_rdb_snapshot_and_both_commands(source, supervised, tmp_path):
    source.client().set("tts:1", "x")
    logical = take(source, tmp_path / "snaps", mode="logical")
    target = supervised()
    with pytest.raises(ModuleFailed, match="policy whole_rdb restores the RDB of an rdb or replica snapshot"):
        whole(target, logical)
    with pytest.raises(ModuleFailed, match=r"policy whole_rdb needs start_command"):
        run_module(cutover_redis_restore.main, dict(redis=target.options, src=str(logical), policy="whole_rdb",
                                                    stop_command=target.ctl("stop", "redis")))
    with pytest.raises(ModuleFailed, match="stop_command applies only to policy whole_rdb"):
        run_module(cutover_redis_restore.main, dict(redis=target.options, src=str(logical),
                                                    stop_command=target.ctl("stop", "redis")))


def test_whole_rdb_check_mode_reports_and_leaves_redis_running(source, supervised, tmp_path):
    populate_every_type(source.client(), "tts:")
    src = take(source, tmp_path / "snaps")
    target = supervised()
    target.client().set("current", "x")
    pid = target.pid()

    planned = whole(target, src, check_mode=True)

    assert planned["changed"] is True and planned["restored"] == 12 and planned["deleted"] == 1
    assert planned["whole_rdb"]["loaded_from"] == str(target.data / "dump.rdb")
    assert target.pid() == pid and target.client().get("current") == b"x"
    assert [name for name in os.listdir(target.data) if "cutover" in name] == []


# --- per-namespace policies from rdb and replica snapshots (through a scratch server) ---------------------

@pytest.mark.parametrize("mode", ["rdb", "replica"])
@pytest.mark.parametrize("policy", ["missing_only", "overwrite", "replace_all"])
def test_policies_restore_namespaces_from_an_rdb_snapshot(source, tmp_path, mode, policy):
    client = source.client()
    seed_source(client)
    src = take(source, tmp_path / "snaps", mode=mode, namespaces=["a:*", "b:*"])
    move_target_on(client)
    untouched = {key: client.get(key) for key in (b"b:1", b"b:2", b"b:3", b"c:1")}
    args = dict(redis=source.options, src=str(src), policy=policy, namespaces=["a:*"])

    planned = run_module(cutover_redis_restore.main, args, check_mode=True)
    result = run_module(cutover_redis_restore.main, args)

    expected_counts, expected_values = EXPECTED[policy]
    assert {name: result[name] for name in COUNTS} == expected_counts
    assert {name: planned[name] for name in COUNTS} == expected_counts
    for key, value in expected_values.items():
        assert client.get(key) == value, key
    assert client.hgetall("a:hash") == {b"f": b"snap"}
    assert {key: client.get(key) for key in untouched} == untouched
    assert result["snapshot"]["mode"] == mode


def test_selective_restore_from_rdb_keeps_absolute_expiry_and_counts_expired(source, tmp_path):
    client = source.client()
    keys = populate_every_type(client, "ai:", ttl_ms=120_000)
    client.set("ai:short", "gone soon", px=300)
    expiries = {key: client.execute_command("PEXPIRETIME", key) for key in keys}
    src = take(source, tmp_path / "snaps", namespaces=["ai:*"])
    time.sleep(0.4)
    target = start_redis_server(tmp_path / "target")
    try:
        result = run_module(cutover_redis_restore.main, dict(redis=target.options, src=str(src)))
        restored = {key: target.client().execute_command("PEXPIRETIME", key) for key in keys}
        assert target.client().exists("ai:short") == 0
    finally:
        target.stop()
    assert result["restored"] == 12 and result["expired"] == 1
    assert restored == expiries
