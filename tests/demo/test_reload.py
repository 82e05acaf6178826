"""Graceful reload: a component's master replaces its worker on SIGHUP without refusing a single connection.

The component runs as the process manager runs it - ``<app>/<c>/current/venv/bin/python <app>/<c>/current/service.py
--config <app>/<c>/config.json`` - from deployed release copies that each carry their own ``venv`` link, while
threads send steady traffic at it; ``current`` is switched and the master gets SIGHUP.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .harness import RELEASES, deploy_release, free_port, http_get, service_config

EXIT_LISTEN = 4
START_TIMEOUT_S = 20.0
TRAFFIC_THREADS = 8
# Every /speak is a cache miss that takes this long: requests are in flight at any moment, also in the old worker
# when it is asked to stop.
SYNTHESIS_MS = 100


def switch_current(component_dir: Path, release_dir: Path) -> None:
    """Point ``current`` at a release atomically, as cutover_release does (new link, then rename over)."""
    staged = component_dir / "current.new"
    staged.symlink_to(release_dir.relative_to(component_dir))
    os.replace(staged, component_dir / "current")


def install(app_root: Path, release: str, component: str, venv: Path, name: str | None = None) -> Path:
    """A deployed copy of the release's component, as <app_root>/<component>/releases/<name (default: release)>,
    with ``venv`` linking to the given environment."""
    name = name or release
    built = deploy_release(release, component, app_root.parent / ("build-%s" % name))
    release_dir = app_root / component / "releases" / name
    release_dir.parent.mkdir(parents=True, exist_ok=True)
    built.rename(release_dir)
    (release_dir / "venv").symlink_to(venv)
    return release_dir


def wall_clock() -> str:
    """Now as the service log stamps it (to read a failure beside the log)."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + ",%03d" % (now % 1 * 1000)


def alive(pid: int) -> bool:
    """True while a process (not a zombie) has pid."""
    try:
        return Path("/proc/%d/stat" % pid).read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("%s within %.0f s" % (what, timeout))
        time.sleep(0.05)


@dataclass
class Master:
    """A component's master process, started with the process manager's command line."""

    process: subprocess.Popen
    port: int
    component_dir: Path
    log_path: Path
    workers_seen: set[int] = field(default_factory=set)

    def health(self) -> dict[str, Any]:
        body = http_get(self.port, "/healthz", timeout=5).json()
        self.workers_seen.add(body["pid"])
        return body

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_master(component_dir: Path, component: str, redis_port: int, log_path: Path) -> Master:
    for _ in range(3):
        port = free_port()
        config = component_dir / "config.json"
        config.write_text(json.dumps(service_config(component, port, redis_port, component_dir / "MAINTENANCE",
                                                    settings={"synthesis_ms": SYNTHESIS_MS})))
        current = component_dir / "current"
        with open(log_path, "ab") as log:
            process = subprocess.Popen([str(current / "venv" / "bin" / "python"), str(current / "service.py"),
                                        "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=component_dir)
        master = Master(process, port, component_dir, log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if master.health()["master_pid"] == process.pid:
                    return master
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        if process.poll() != EXIT_LISTEN:
            master.stop()
            raise AssertionError("the master did not serve (exit %s):\n%s" % (process.returncode, master.log()))
    raise AssertionError("no free port in 3 attempts")


class Traffic:
    """Threads sending /speak (new texts: slow misses) and, every fourth request, /healthz back to back; every
    failure is kept with its reason."""

    def __init__(self, port: int):
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.worker_pids: set[int] = set()
        self.releases: set[str] = set()
        self.threads = [threading.Thread(target=self.send_forever, args=(index,)) for index in range(TRAFFIC_THREADS)]

    def send_forever(self, index: int) -> None:
        count = 0
        while not self.stopping.is_set():
            count += 1
            if count % 4 == 1:
                path, params = "/healthz", None
            else:
                path, params = "/speak", {"text": "reload-%d-%d" % (index, count)}
            try:
                reply = http_get(self.port, path, params, timeout=10)
                outcome = "ok" if reply.status == 200 else "http %d: %r" % (reply.status, reply.body[:200])
            except (OSError, http.client.HTTPException) as exc:
                outcome = "%s: %s" % (type(exc).__name__, exc)
                reply = None
            with self.lock:
                self.outcomes["ok" if outcome == "ok" else "failed"] += 1
                if outcome != "ok":
                    self.failures.append("%s %s %s" % (wall_clock(), path, outcome))
                elif path == "/healthz":
                    body = reply.json()
                    self.worker_pids.add(body["pid"])
                    self.releases.add(body["release"])

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *unused: Any) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def settle(self, seconds: float) -> None:
        """Let traffic run on for a while (and at least some requests be answered meanwhile)."""
        before = self.outcomes["ok"]
        time.sleep(seconds)
        wait_for(lambda: self.outcomes["ok"] > before + TRAFFIC_THREADS, 10, "traffic did not flow")


@pytest.fixture
def tts_dir(tmp_path: Path, release_venvs: dict[str, Path]) -> Path:
    """<app>/tts with the legacy and migrated releases installed (each with its venv), current -> legacy."""
    def venv_of(release: str) -> Path:
        return release_venvs[hashlib.sha256((RELEASES / release / "tts" / "requirements.txt").read_bytes()).hexdigest()]

    app_root = tmp_path / "app"
    component_dir = app_root / "tts"
    install(app_root, "legacy", "tts", venv_of("legacy"))
    install(app_root, "migrated", "tts", venv_of("migrated"))
    # A release whose venv lacks its client library: its worker exits 3 at once.
    install(app_root, "legacy", "tts", venv_of("migrated"), name="legacy-wrong-venv")
    switch_current(component_dir, component_dir / "releases" / "legacy")
    return component_dir


@pytest.fixture
def tts_master(tts_dir: Path, tmp_path: Path, redis_server) -> Iterator[Master]:
    master = start_master(tts_dir, "tts", redis_server.port, tmp_path / "tts.log")
    try:
        yield master
    finally:
        ran_to_the_end = master.process.poll() is None
        code = master.stop()
        wait_for(lambda: not any(alive(pid) for pid in master.workers_seen), 5, "workers outlived their master")
    assert code == 0 or not ran_to_the_end, "SIGTERM must stop the master cleanly:\n" + master.log()


def test_sighup_after_a_switch_hands_over_to_the_new_release_without_a_failed_request(tts_master: Master) -> None:
    before = tts_master.health()
    assert (before["release"], before["redis_client"], before["master_pid"]) == (
        "legacy", "aioredis", tts_master.process.pid)
    old_worker = before["pid"]

    with Traffic(tts_master.port) as traffic:
        traffic.settle(0.5)
        switch_current(tts_master.component_dir, tts_master.component_dir / "releases" / "migrated")
        tts_master.process.send_signal(signal.SIGHUP)
        wait_for(lambda: tts_master.health()["release"] == "migrated", START_TIMEOUT_S, "migrated did not serve")
        wait_for(lambda: not alive(old_worker), 10, "the old worker did not stop")
        traffic.settle(0.5)

    assert traffic.failures == [], "%d of %d requests failed: %s\nmaster log:\n%s" % (
        len(traffic.failures), sum(traffic.outcomes.values()), traffic.failures[:5], tts_master.log())
    after = tts_master.health()
    assert (after["release"], after["redis_client"], after["master_pid"]) == (
        "migrated", "redis.asyncio", tts_master.process.pid)
    assert after["pid"] not in (old_worker, tts_master.process.pid) and alive(after["pid"])
    assert traffic.worker_pids == {old_worker, after["pid"]}, "the traffic spanned the handover"
    assert traffic.releases == {"legacy", "migrated"}
    assert traffic.outcomes["ok"] > 50, traffic.outcomes
    assert tts_master.process.poll() is None
    assert "reload: worker %d serves; stopping worker %d gracefully" % (after["pid"], old_worker) in tts_master.log()


def test_a_new_worker_that_cannot_start_leaves_the_old_one_serving(tts_master: Master) -> None:
    old_worker = tts_master.health()["pid"]
    wrong_venv = tts_master.component_dir / "releases" / "legacy-wrong-venv"

    with Traffic(tts_master.port) as traffic:
        traffic.settle(0.3)
        switch_current(tts_master.component_dir, wrong_venv)
        tts_master.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in tts_master.log(), START_TIMEOUT_S, "the master did not report the failure")
        traffic.settle(0.3)

    assert traffic.failures == [], "%s\nmaster log:\n%s" % (traffic.failures[:5], tts_master.log())
    assert traffic.worker_pids == {old_worker}
    health = tts_master.health()
    assert (health["pid"], health["release"], health["status"]) == (old_worker, "legacy", "ok")
    log = tts_master.log()
    assert "Redis client library aioredis is not installed" in log
    assert "exited with code 3 before serving; worker %d keeps serving" % old_worker in log
    assert tts_master.process.poll() is None

    # The master still reloads once current names a release that starts.
    switch_current(tts_master.component_dir, tts_master.component_dir / "releases" / "migrated")
    tts_master.process.send_signal(signal.SIGHUP)
    wait_for(lambda: tts_master.health()["release"] == "migrated", START_TIMEOUT_S, "migrated did not serve")
    wait_for(lambda: not alive(old_worker), 10, "the old worker did not stop")


def test_a_worker_stops_by_itself_when_its_master_is_killed(tts_master: Master) -> None:
    worker = tts_master.health()["pid"]
    tts_master.process.kill()
    tts_master.process.wait()
    wait_for(lambda: not alive(worker), 10, "the worker outlived its killed master")
    assert "the master is gone: shutting down" in tts_master.log()
