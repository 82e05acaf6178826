"""Property: snapshot -> restore reproduces random datasets of every type with TTLs, in every mode and through
both restore paths of rdb snapshots (per namespace via a scratch server, and the whole file via a restart)."""
from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings

from cutover_testlib import RedisServer, free_port, run_module, start_redis_server, wait_for_port
from test_redis_restore import datasets, write_value
from test_redis_snapshot import logical_state

import cutover_redis_restore
import cutover_redis_snapshot

NAMESPACES = ["tts:*", "ai:*", "safety:*"]
PROPERTY_SETTINGS = settings(max_examples=15, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple[RedisServer, RedisServer]]:
    source = start_redis_server(tmp_path_factory.mktemp("prop-source"))
    target = start_redis_server(tmp_path_factory.mktemp("prop-target"))
    try:
        yield source, target
    finally:
        source.stop()
        target.stop()


def load(client: redis.Redis, dataset: dict) -> None:
    client.flushall()
    for (prefix, name), ((kind, value), ttl) in dataset.items():
        key = prefix.encode() + name
        write_value(client, key, kind, value)
        if ttl:
            client.pexpire(key, ttl)


def take(server: RedisServer, dest: Path, mode: str) -> dict[str, Any]:
    extra = {"replica_sync_delay": 0} if mode == "replica" else {}
    return run_module(cutover_redis_snapshot.main, dict(redis=server.options, dest=str(dest),
                                                        snapshot_id=uuid.uuid4().hex, mode=mode,
                                                        namespaces=NAMESPACES, **extra))["snapshot"]


@pytest.mark.parametrize("mode", ["rdb", "replica"])
@PROPERTY_SETTINGS
@given(dataset=datasets)
def test_rdb_snapshots_restore_random_datasets_per_namespace(servers, tmp_path, mode, dataset):
    source, target = servers
    load(source.client(), dataset)
    target.client().flushall()
    expected = logical_state(source.client())

    shot = take(source, tmp_path, mode)
    result = run_module(cutover_redis_restore.main, dict(redis=target.options, src=shot["path"], policy="overwrite"))

    assert shot["keys"] == len(dataset) == result["restored"] == result["missing_before"]
    assert logical_state(target.client()) == expected


class DaemonRedis:
    """A daemonized redis-server restarted by the whole_rdb restore (stop: SHUTDOWN NOSAVE, start: its config)."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "redis.conf"
        self.pid_file = directory / "redis.pid"
        self.config.write_text("\n".join(["port %d" % self.port, "bind 127.0.0.1", "dir %s" % directory,
                                          'save ""', "appendonly no", "daemonize yes",
                                          "pidfile %s" % self.pid_file, "logfile %s" % (directory / "redis.log")]))
        subprocess.run(self.start_command, check=True)
        wait_for_port(self.port)

    @property
    def start_command(self) -> list[str]:
        return ["/usr/bin/redis-server", str(self.config)]

    @property
    def stop_command(self) -> list[str]:
        return ["/usr/bin/redis-cli", "-p", str(self.port), "shutdown", "nosave"]

    def stop(self) -> None:
        subprocess.run(self.stop_command, capture_output=True, check=False)
        deadline = time.monotonic() + 10
        while self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[DaemonRedis]:
    server = DaemonRedis(tmp_path_factory.mktemp("prop-daemon"))
    try:
        yield server
    finally:
        server.stop()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset=datasets)
def test_whole_rdb_restore_reproduces_random_datasets(servers, daemon, tmp_path, dataset):
    source, _target = servers
    load(source.client(), dataset)
    expected = logical_state(source.client())
    shot = take(source, tmp_path, "rdb")
    redis.Redis(port=daemon.port).set("tts:only-before", "replaced by the restore")

    result = run_module(cutover_redis_restore.main, dict(
        redis={"host": "127.0.0.1", "port": daemon.port}, src=shot["path"], policy="whole_rdb",
        stop_command=daemon.stop_command, start_command=daemon.start_command))

    assert result["restored"] == len(dataset)
    assert logical_state(redis.Redis(port=daemon.port)) == expected
    for previous in result["whole_rdb"]["previous"]:
        Path(previous).unlink()
