"""cutover_redis_restore options `restart_redis` and `rollback_step` (rollback step 4) and policy `none`, against a
real redis-server run as program cutover-redis of a real supervisord, and a logical snapshot of it.

Redis saves on SIGTERM (save points on, no background save during a test), so a restart keeps its keys. Every test
starts its own supervisord and Redis and stops both by pid in teardown, then checks with pgrep that nothing carrying
the test's marker (Redis's data folder is named after it, and Redis keeps its command line) is left.
"""
from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES, TIMESTAMP_PATTERN, check_event
from cutover_testlib import free_port, run_module
from test_redis_snapshot import LONG_TTL_MS, logical_state, populate_every_type
from test_service import (
    Program, Supervisord, assert_reaped, leftovers, new_marker, running, running_supervisord, supervisor_dir,
    wait_until,
)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PROGRAM = "cutover-redis"
HOST = "redis-1"
SNAPSHOT_ID = "20261204T100000Z"
NAMESPACES = ["tts:*", "safety:*"]


@dataclass
class RedisProgram(Program):
    """redis-server as a supervisord program: saves on SIGTERM, keeps its command line (with the marker) in ps."""

    data_dir: Path = Path()
    password: str = ""

    def command(self, marker: str) -> str:
        assert marker in str(self.data_dir), "pgrep finds Redis by the marker in its --dir"
        return " ".join([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                         "--dbfilename", "dump.rdb", "--save", "'3600 1'", "--appendonly", "no",
                         "--daemonize", "no", "--set-proc-title", "no", "--requirepass", self.password,
                         # lets a test move `dir` to make a save fail (loopback only)
                         "--enable-protected-configs", "local",
                         "--logfile", str(self.data_dir / "redis.log")])


@dataclass
class SupervisedRedis:
    supervisor: Supervisord
    options: dict[str, Any]  # the modules' `redis` option
    marker: str

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.options["port"], password=self.options["password"])

    def pid(self) -> int | None:
        """Redis's pid as supervisord reports it."""
        return self.supervisor.pid(PROGRAM)

    def restart_option(self, policy: str) -> dict[str, Any]:
        return {"policy": policy, "service": PROGRAM, "manager": "supervisor",
                "supervisor_config": str(self.supervisor.config), "timeout": 20}


def answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def supervised_redis(tmp_path: Path) -> Iterator[SupervisedRedis]:
    marker = new_marker()
    data_dir = tmp_path / marker
    data_dir.mkdir()
    program = RedisProgram(PROGRAM, Path(REDIS_SERVER), free_port(), autostart=False, stopwaitsecs=10,
                           data_dir=data_dir, password="pw-%s" % uuid.uuid4().hex)
    with running_supervisord(supervisor_dir(tmp_path, marker), [program], marker) as supervisor:
        supervisor.start(PROGRAM)
        started = SupervisedRedis(supervisor, {"host": "127.0.0.1", "port": program.port,
                                               "password": program.password}, marker)
        wait_until(lambda: answers(started.client()), 10, "Redis under supervisord did not answer PING")
        assert leftovers(marker) == [started.pid()], "the teardown's pgrep sweep sees Redis"
        yield started


def seed(client: redis.Redis) -> dict[str, list[bytes]]:
    """Keys of every type in both namespaces, tts ones with a TTL; namespace -> its keys."""
    return {"tts:*": populate_every_type(client, "tts:", ttl_ms=LONG_TTL_MS),
            "safety:*": populate_every_type(client, "safety:")}


def take_snapshot(server: SupervisedRedis, dest: Path) -> Path:
    result = run_module(cutover_redis_snapshot.main, {"redis": server.options, "dest": str(dest),
                                                      "snapshot_id": SNAPSHOT_ID, "namespaces": NAMESPACES})
    return Path(result["snapshot"]["path"])


def restore(server: SupervisedRedis, src: Path, policy: str, restart_policy: str, check_mode: bool = False,
            ) -> dict[str, Any]:
    result = run_module(cutover_redis_restore.main, {
        "redis": server.options, "src": str(src), "policy": policy,
        "restart_redis": server.restart_option(restart_policy), "rollback_step": True, "host_label": HOST},
        check_mode=check_mode)
    assert server.options["password"] not in json.dumps(result), "the Redis password never appears in a result"
    return result


def assert_step_4(result: dict[str, Any]) -> None:
    """The result holds one rollback.step entry: step 4 of this host, ok, detailed as the result."""
    [entry] = result["journal"]
    check_event(entry["event"], entry["data"], entry["ts"])
    assert (entry["event"], entry["component"], entry["host"]) == ("rollback.step", None, HOST)
    step = entry["data"]
    assert (step["step"], step["name"], step["status"], step["detail"]) == (
        4, ROLLBACK_STEP_NAMES[4], "ok", result["detail"])
    assert TIMESTAMP_PATTERN.match(step["started_at"]) and step["started_at"] <= step["ended_at"]


def restarted(server: SupervisedRedis, old_pid: int) -> int:
    """The new pid supervisord runs Redis under, after asserting the old process is gone."""
    new_pid = server.pid()
    assert new_pid and new_pid != old_pid and running(new_pid)
    assert_reaped(old_pid)
    assert server.client().info("server")["process_id"] == new_pid
    return new_pid


NO_RESTORE = "no data restored (restore policy none)"


# -------------------------------------------------------------------------------------------------------- tests

def test_policy_none_with_restart_never_leaves_redis_alone_and_journals_step_4(supervised_redis, tmp_path):
    client = supervised_redis.client()
    seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    pid, before = supervised_redis.pid(), logical_state(client)

    result = restore(supervised_redis, src, "none", "never")

    assert supervised_redis.pid() == pid and client.info("server")["process_id"] == pid
    assert logical_state(client) == before
    assert result["detail"] == "Redis not restarted (restart policy never); %s" % NO_RESTORE
    assert result["changed"] is False
    assert (result["policy"], result["restored"], result["snapshot"]) == ("none", 0, None)
    assert_step_4(result)


def test_restart_always_restarts_redis_through_supervisord_and_keeps_its_keys(supervised_redis, tmp_path):
    client = supervised_redis.client()
    keys = seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    pid, before = supervised_redis.pid(), logical_state(client)

    result = restore(supervised_redis, src, "none", "always")

    restarted(supervised_redis, pid)
    after = logical_state(client)
    assert len(after) == sum(map(len, keys.values())) and after == before, "every key, value and expiry survived"
    assert result["detail"] == "Redis restarted (restart policy always); %s" % NO_RESTORE
    assert result["changed"] is True and result["restored"] == 0
    assert_step_4(result)


def test_if_unhealthy_leaves_a_healthy_redis_running(supervised_redis, tmp_path):
    client = supervised_redis.client()
    keys = seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    pid, before = supervised_redis.pid(), logical_state(client)

    result = restore(supervised_redis, src, "missing_only", "if_unhealthy")

    assert supervised_redis.pid() == pid
    assert logical_state(client) == before
    total = sum(map(len, keys.values()))
    assert result["detail"] == ("Redis healthy, not restarted (restart policy if_unhealthy); missing_only from "
                                "snapshot %s: 0 restored, %d newer kept, 0 expired, 0 deleted" % (SNAPSHOT_ID, total))
    assert result["changed"] is False
    assert_step_4(result)


def test_missing_only_after_a_restart_restores_exactly_the_missing_keys(supervised_redis, tmp_path):
    client = supervised_redis.client()
    keys = seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    snapshot_state = logical_state(client)
    lost = [keys["tts:*"][0], keys["tts:*"][3], keys["safety:*"][1]]
    newer = keys["safety:*"][0]
    assert client.type(newer) == b"string"
    client.delete(*lost)
    client.set(newer, b"written after the snapshot")
    pid = supervised_redis.pid()

    result = restore(supervised_redis, src, "missing_only", "always")

    restarted(supervised_redis, pid)
    total = sum(map(len, keys.values()))
    assert (result["restored"], result["missing_before"], result["kept_existing"]) == (3, 3, total - 3)
    assert result["namespaces"]["tts:*"]["restored"] == 2 and result["namespaces"]["safety:*"]["restored"] == 1
    after = logical_state(client)
    assert len(after) == total
    assert {key: after[key] for key in lost} == {key: snapshot_state[key] for key in lost}, \
        "lost keys are back with their values and absolute expiries"
    assert client.get(newer) == b"written after the snapshot", "a newer write is kept"
    assert result["detail"] == ("Redis restarted (restart policy always); missing_only from snapshot %s: 3 restored, "
                                "%d newer kept, 0 expired, 0 deleted" % (SNAPSHOT_ID, total - 3))
    assert result["changed"] is True
    assert_step_4(result)


def test_check_mode_with_restart_always_restarts_and_restores_nothing(supervised_redis, tmp_path):
    client = supervised_redis.client()
    keys = seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    client.delete(keys["tts:*"][0])
    pid, before = supervised_redis.pid(), logical_state(client)

    planned_none = restore(supervised_redis, src, "none", "always", check_mode=True)
    planned = restore(supervised_redis, src, "missing_only", "always", check_mode=True)

    assert supervised_redis.pid() == pid and client.info("server")["process_id"] == pid
    assert logical_state(client) == before
    assert planned_none["changed"] is True
    assert planned_none["detail"] == "Redis would be restarted (restart policy always); %s" % NO_RESTORE
    assert planned["changed"] is True and planned["restored"] == 1
    assert planned["detail"].startswith("Redis would be restarted (restart policy always); missing_only from snapshot")


def test_if_unhealthy_restarts_a_redis_whose_last_save_failed(supervised_redis, tmp_path):
    client = supervised_redis.client()
    keys = seed(client)
    src = take_snapshot(supervised_redis, tmp_path / "snapshots")
    pid, before = supervised_redis.pid(), logical_state(client)
    data_dir = client.config_get("dir")["dir"]
    # A background save into a folder that vanished fails; Redis then refuses writes until a save works again.
    gone = tmp_path / "vanished"
    gone.mkdir()
    client.config_set("dir", str(gone))
    gone.rmdir()
    client.bgsave()
    wait_until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", 10, "the BGSAVE did not fail")
    client.config_set("dir", data_dir)  # the save on shutdown works again; the status stays failed until then
    with pytest.raises(redis.ResponseError, match="MISCONF"):
        client.set("tts:refused", b"x")

    result = restore(supervised_redis, src, "none", "if_unhealthy")

    restarted(supervised_redis, pid)
    assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"
    assert logical_state(client) == before and len(before) == sum(map(len, keys.values()))
    assert client.set("tts:accepted", b"x") is True, "writes are accepted again"
    assert result["detail"] == ("Redis restarted (it was unhealthy: its last save or AOF write failed); %s"
                                % NO_RESTORE)
    assert result["changed"] is True
    assert_step_4(result)
