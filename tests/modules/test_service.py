"""cutover_service (module_utils/cutover_services.py) against a real supervisord running tiny real HTTP services,
and, for state reloaded, the demo's tts component (master and workers, on the session's redis-server) run with the
command line the demo stack gives supervisord.

Every test starts its own supervisord (config and unix socket under tmp_path) and stops it, and every process it
ran, by pid in the fixture's teardown - even when the test failed - then checks with pgrep that nothing is left.
The helpers here (service script, supervisord harness) are shared with test_rollback_module.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from supervisor.xmlrpc import SupervisorTransport

import cutover_service
from ansible.module_utils.cutover_events import check_event
from cutover_testlib import ROOT, ModuleFailed, free_port, run_module

SUPERVISORD = str(Path(sys.executable).parent / "supervisord")
SOCKET_NAME = "sv.sock"
UNIX_SOCKET_MAX = 107  # sun_path holds 108 bytes with the NUL

# A stdlib HTTP service. Modes: serve (/healthz answers 503 "starting" until --delay passed, then 200 with
# {status, release, pid}; 503 "maintenance" without the probe header while --maintenance exists; status comes from
# --config when it holds one), silent (accepts connections, never answers), exit (logs and exits 3 at once),
# stubborn (serves but ignores SIGTERM).
SERVICE_SOURCE = r'''
import argparse, json, os, signal, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = %(release)r


def healthz(handler, args, ready_at):
    if args.maintenance and os.path.exists(args.maintenance) and not handler.headers.get("X-Cutover-Probe"):
        return 503, {"status": "maintenance", "release": RELEASE}
    if time.monotonic() < ready_at:
        return 503, {"status": "starting", "release": RELEASE}
    status = "ok"
    if args.config and os.path.exists(args.config):
        with open(args.config) as config:
            status = json.load(config).get("status", "ok")
    return 200, {"status": status, "release": RELEASE, "pid": os.getpid()}


def serve(args):
    ready_at = time.monotonic() + args.delay

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            code, body = healthz(self, args, ready_at) if self.path == "/healthz" else (404, {"status": "not found"})
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *unused):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("release %%s serving on port %%d (pid %%d)" %% (RELEASE, args.port, os.getpid()), flush=True)
    server.serve_forever()


def silent(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("warming up the model cache on port %%d, not answering yet" %% port, flush=True)
    held = []
    while True:
        held.append(listener.accept()[0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--mode", choices=("serve", "silent", "exit", "stubborn"), default="serve")
    parser.add_argument("--config")
    parser.add_argument("--maintenance")
    parser.add_argument("--marker", default="")
    args = parser.parse_args()
    if args.mode == "exit":
        print("cannot read config /etc/toy/missing.json: No such file or directory", flush=True)
        sys.exit(3)
    if args.mode == "silent":
        silent(args.port)
    if args.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(args)


main()
'''


def write_service(path: Path, release: str = "test") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SERVICE_SOURCE % {"release": release})
    return path


@dataclass
class Program:
    """One supervisord program: a service script run with the test's interpreter, or ``argv`` as given (which
    must then carry the test's marker, e.g. in a path)."""

    name: str
    script: Path
    port: int
    mode: str = "serve"
    delay: float = 0.0
    autostart: bool = True
    startsecs: int = 0
    stopwaitsecs: int = 3
    extra: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)

    def command(self, marker: str) -> str:
        if self.argv:
            return " ".join(self.argv)
        return " ".join([sys.executable, str(self.script), "--port", str(self.port), "--mode", self.mode,
                         "--delay", str(self.delay), "--marker", marker] + self.extra)

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port


@dataclass
class Supervisord:
    """A real supervisord owned by one test."""

    directory: Path
    config: Path
    process: subprocess.Popen
    marker: str
    programs: dict[str, Program]

    @property
    def rpc(self) -> Any:
        transport = SupervisorTransport(serverurl="unix://%s" % (self.directory / SOCKET_NAME))
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def info(self, name: str) -> dict[str, Any]:
        return self.rpc.supervisor.getProcessInfo(name)

    def statename(self, name: str) -> str:
        return self.info(name)["statename"]

    def pid(self, name: str) -> int | None:
        """pid of the program's process while supervisord runs it, else None."""
        info = self.info(name)
        return info["pid"] if info["statename"] in ("RUNNING", "STARTING") and info["pid"] else None

    def pids(self) -> dict[str, int | None]:
        return {name: self.pid(name) for name in self.programs}

    def start(self, name: str) -> int:
        self.rpc.supervisor.startProcess(name, True)
        return self.pid(name)

    def stop(self, name: str) -> None:
        self.rpc.supervisor.stopProcess(name, True)

    def base_url(self, name: str) -> str:
        return self.programs[name].base_url


def supervisord_config(directory: Path, programs: list[Program], marker: str) -> str:
    lines = ["[unix_http_server]", "file=%s" % (directory / SOCKET_NAME), "chmod=0700",
             "[supervisord]", "logfile=%s" % (directory / "supervisord.log"),
             "pidfile=%s" % (directory / "supervisord.pid"), "childlogdir=%s" % directory, "nodaemon=true",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
             "[supervisorctl]", "serverurl=unix://%s" % (directory / SOCKET_NAME)]
    for program in programs:
        lines += ["[program:%s]" % program.name, "command=%s" % program.command(marker),
                  "autostart=%s" % str(program.autostart).lower(), "autorestart=false",
                  "startsecs=%d" % program.startsecs, "startretries=0", "stopsignal=TERM",
                  "stopwaitsecs=%d" % program.stopwaitsecs, "redirect_stderr=true",
                  "stdout_logfile=%s" % (directory / ("%s.log" % program.name))]
    return "\n".join(lines) + "\n"


def health(url: str, probe: bool = True) -> tuple[int | None, dict[str, Any]]:
    """(HTTP status, JSON body) of url, (None, {}) when nothing answers."""
    headers = {"X-Cutover-Probe": "1"} if probe else {}
    try:
        with urlopen(Request(url, headers=headers), timeout=2) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except OSError:
        return None, {}


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("%s within %.0f s" % (what, timeout))
        time.sleep(0.05)


def start_supervisord(directory: Path, programs: list[Program], marker: str) -> Supervisord:
    directory.mkdir(parents=True)
    socket_path = directory / SOCKET_NAME
    assert len(str(socket_path)) <= UNIX_SOCKET_MAX, "unix socket path too long: %s" % socket_path
    config = directory / "supervisord.conf"
    config.write_text(supervisord_config(directory, programs, marker))
    with open(directory / "supervisord.stderr", "wb") as stderr:
        process = subprocess.Popen([SUPERVISORD, "-n", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
    supervisor = Supervisord(directory, config, process, marker, {program.name: program for program in programs})

    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError("supervisord exited: %s" % (directory / "supervisord.stderr").read_text())
        try:
            return supervisor.rpc.supervisor.getState()["statename"] == "RUNNING"
        except OSError:
            return False
    try:
        wait_until(answering, 10, "supervisord did not answer on %s" % socket_path)
        for program in programs:
            if program.autostart:  # answering at all: a program with a start delay answers 503 at first
                wait_until(lambda: health(program.base_url + "/healthz")[0] is not None, 10,
                           "%s did not answer /healthz" % program.name)
    except BaseException:
        stop_supervisord(supervisor)
        raise
    return supervisor


def cmdline(pid: int) -> bytes:
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes()
    except OSError:
        return b""


def leftovers(marker: str) -> list[int]:
    """pids of processes whose command line carries the marker (pgrep never lists itself)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def stop_supervisord(supervisor: Supervisord) -> list[int]:
    """Stop supervisord's programs, then supervisord, by pid; return the strays a pgrep sweep had to kill.

    supervisord handles one signal or child exit per turn of its one-second loop, so a graceful shutdown costs a
    second per program: the programs get their SIGTERM from here, and once none runs, supervisord (with nothing
    left to stop or orphan) is killed outright. A process carrying the test's marker that supervisord did not
    know about is killed too, and returned so the caller can fail on it.
    """
    try:
        children = [info["pid"] for info in supervisor.rpc.supervisor.getAllProcessInfo() if info["pid"]]
    except (OSError, xmlrpc.client.Error):
        children = []
    ours = [pid for pid in children if supervisor.marker.encode() in cmdline(pid)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(running(pid) for pid in ours), 5, "programs ignored SIGTERM")
    for pid in ours:
        if running(pid) and supervisor.marker.encode() in cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    if supervisor.process.poll() is None:
        supervisor.process.kill()
    supervisor.process.wait(timeout=10)
    strays = [pid for pid in leftovers(supervisor.marker) if supervisor.marker.encode() in cmdline(pid)]
    for pid in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return strays


@contextlib.contextmanager
def running_supervisord(directory: Path, programs: list[Program], marker: str) -> Iterator[Supervisord]:
    supervisor = start_supervisord(directory, programs, marker)
    try:
        yield supervisor
    finally:
        strays = stop_supervisord(supervisor)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not leftovers(marker), 5, "killed processes still listed")
        assert strays == [], "processes of this test escaped supervisord and had to be killed: %s" % strays
        assert leftovers(marker) == [], "nothing of this test may be left running"


def new_marker() -> str:
    return "cutover-test-%s" % uuid.uuid4().hex[:12]


def supervisor_dir(tmp_path: Path, marker: str) -> Path:
    return tmp_path / marker[-12:]


def running(pid: int) -> bool:
    """True while a process (not a zombie) has pid."""
    try:
        return Path("/proc/%d/stat" % pid).read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def assert_reaped(pid: int) -> None:
    """The process is gone at once (a zombie at most, as the module documents) and reaped soon after."""
    assert not running(pid), "pid %d still runs" % pid
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), 3, "supervisord did not reap pid %d" % pid)


def assert_entries_fit(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        check_event(entry["event"], entry["data"], entry["ts"])


# ------------------------------------------------------------------------------------------------------ fixture

BETA_DELAY = 0.5


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisord]:
    marker = new_marker()
    script = write_service(tmp_path / "service.py")
    programs = [Program("cutover-alpha", script, free_port()),
                Program("cutover-beta", script, free_port(), delay=BETA_DELAY),
                Program("cutover-silent", script, free_port(), mode="silent", autostart=False),
                Program("cutover-crasher", script, free_port(), mode="exit", autostart=False, startsecs=1),
                Program("cutover-stubborn", script, free_port(), mode="stubborn", autostart=False, stopwaitsecs=1)]
    with running_supervisord(supervisor_dir(tmp_path, marker), programs, marker) as started:
        yield started


def service_spec(supervisor: Supervisord, program: str, with_url: bool = True) -> dict[str, Any]:
    spec = {"name": program.replace("cutover-", ""), "service": program}
    if with_url:
        spec["base_url"] = supervisor.base_url(program) + "/"
    return spec


def drive(supervisor: Supervisord, programs: list[str], state: str, check_mode: bool = False, with_url: bool = True,
          **options: Any) -> dict:
    args = {"services": [service_spec(supervisor, program, with_url) for program in programs], "state": state,
            "manager": "supervisor", "supervisor_config": str(supervisor.config), "host_label": "toy1", **options}
    return run_module(cutover_service.main, args, check_mode=check_mode)


def by_event(entries: list[dict[str, Any]], event: str) -> dict[str, dict[str, Any]]:
    return {entry["component"]: entry for entry in entries if entry["event"] == event}


# -------------------------------------------------------------------------------------------------------- tests

def test_stopped_stops_every_service_and_journals_the_old_pids(supervisor):
    before = {name: supervisor.pid(name) for name in ("cutover-alpha", "cutover-beta")}
    assert all(before.values())

    result = drive(supervisor, ["cutover-alpha", "cutover-beta"], "stopped", reason="probe tts/latency failed")

    for name, pid in before.items():
        assert_reaped(pid)
        assert supervisor.statename(name) == "STOPPED" and supervisor.pid(name) is None
        assert health(supervisor.base_url(name) + "/healthz") == (None, {}), "nothing answers on the port"
    assert result["changed"] is True
    stopped = by_event(result["journal"], "component.stopped")
    assert [entry["event"] for entry in result["journal"]] == ["component.stopped"] * 2
    assert {name: (entry["data"]["service"], entry["data"]["pid"], entry["data"]["reason"], entry["host"])
            for name, entry in stopped.items()} == {
        "alpha": ("cutover-alpha", before["cutover-alpha"], "probe tts/latency failed", "toy1"),
        "beta": ("cutover-beta", before["cutover-beta"], "probe tts/latency failed", "toy1")}
    assert result["services"]["alpha"] == {"service": "cutover-alpha", "pid_before": before["cutover-alpha"],
                                           "pid": None, "stopped_at": stopped["alpha"]["ts"]}
    assert_entries_fit(result["journal"])

    again = drive(supervisor, ["cutover-alpha", "cutover-beta"], "stopped")
    assert again["changed"] is False and again["journal"] == []
    assert again["services"]["alpha"]["pid_before"] is None


def test_started_starts_the_stopped_services_and_journals_the_new_pids_once_healthy(supervisor):
    old = {name: supervisor.pid(name) for name in ("cutover-alpha", "cutover-beta")}
    for name in old:
        supervisor.stop(name)

    result = drive(supervisor, ["cutover-alpha", "cutover-beta"], "started")

    new = {name: supervisor.pid(name) for name in old}
    assert all(new.values()) and all(new[name] != old[name] for name in old)
    for name, pid in new.items():
        assert running(pid) and supervisor.statename(name) == "RUNNING"
        assert health(supervisor.base_url(name) + "/healthz") == (200, {"status": "ok", "release": "test", "pid": pid})
    assert result["changed"] is True
    started = by_event(result["journal"], "component.started")
    assert [entry["event"] for entry in result["journal"]] == ["component.started"] * 2
    assert {name: (entry["data"]["service"], entry["data"]["pid"]) for name, entry in started.items()} == {
        "alpha": ("cutover-alpha", new["cutover-alpha"]), "beta": ("cutover-beta", new["cutover-beta"])}
    # beta answers 503 "starting" for BETA_DELAY seconds after its start: ready_s counts until the first 200
    assert started["beta"]["data"]["ready_s"] >= BETA_DELAY * 0.9
    assert started["alpha"]["data"]["ready_s"] >= 0
    assert result["services"]["beta"] == {"service": "cutover-beta", "pid_before": None, "pid": new["cutover-beta"],
                                          "ready_s": started["beta"]["data"]["ready_s"]}
    assert_entries_fit(result["journal"])


def test_restarted_replaces_the_processes(supervisor):
    old = supervisor.pid("cutover-alpha")
    result = drive(supervisor, ["cutover-alpha"], "restarted")
    new = supervisor.pid("cutover-alpha")
    assert new and new != old
    assert_reaped(old)
    # a restart journals its start only: component.stopped means a component stopped serving
    assert [(entry["event"], entry["data"]["pid"]) for entry in result["journal"]] == [("component.started", new)]
    assert result["changed"] is True and result["services"]["alpha"]["pid"] == new
    assert health(supervisor.base_url("cutover-alpha") + "/healthz")[1]["pid"] == new
    assert_entries_fit(result["journal"])


def test_started_when_already_running_changes_nothing(supervisor):
    before = supervisor.pids()
    result = drive(supervisor, ["cutover-alpha", "cutover-beta"], "started")
    assert result["changed"] is False and result["journal"] == []
    assert supervisor.pids() == before
    assert result["services"]["alpha"]["pid"] == result["services"]["alpha"]["pid_before"] == before["cutover-alpha"]


def test_check_mode_changes_nothing(supervisor):
    before = supervisor.pids()
    for state, changed in (("stopped", True), ("restarted", True), ("started", False)):
        result = drive(supervisor, ["cutover-alpha", "cutover-beta"], state, check_mode=True)
        assert (result["changed"], result["journal"]) == (changed, [])
        assert result["services"]["alpha"] == {"service": "cutover-alpha", "pid_before": before["cutover-alpha"]}
        assert supervisor.pids() == before
    supervisor.stop("cutover-alpha")
    result = drive(supervisor, ["cutover-alpha", "cutover-beta"], "started", check_mode=True)
    assert result["changed"] is True and supervisor.pid("cutover-alpha") is None
    assert supervisor.pid("cutover-beta") == before["cutover-beta"]


def test_a_service_that_never_answers_fails_naming_it_its_url_and_its_log(supervisor):
    url = supervisor.base_url("cutover-silent") + "/healthz"
    started = time.monotonic()
    with pytest.raises(ModuleFailed) as failure:
        drive(supervisor, ["cutover-alpha", "cutover-silent"], "started", timeout=1)
    assert time.monotonic() - started < 8, "the wait has a deadline"
    message = failure.value.result["msg"]
    assert message.startswith("cutover-silent did not answer %s within 1 s" % url)
    assert "(last log lines: warming up the model cache on port %d, not answering yet)" % \
        supervisor.programs["cutover-silent"].port in message
    assert "cutover-alpha" not in message, "only the silent service is named"
    assert supervisor.statename("cutover-silent") == "RUNNING", "a silent service is left for a human to look at"


def test_a_service_that_exits_at_once_fails_naming_it_and_its_log(supervisor):
    with pytest.raises(ModuleFailed) as failure:
        drive(supervisor, ["cutover-crasher"], "started", timeout=1)
    message = failure.value.result["msg"]
    assert message.startswith("cutover-crasher did not answer %s/healthz within 1 s"
                              % supervisor.base_url("cutover-crasher"))
    assert "cannot read config /etc/toy/missing.json: No such file or directory" in message
    assert supervisor.pid("cutover-crasher") is None, "nothing runs: %s" % supervisor.statename("cutover-crasher")


def test_a_service_without_health_url_that_exits_at_once_is_not_reported_started(supervisor):
    with pytest.raises(ModuleFailed) as failure:
        drive(supervisor, ["cutover-crasher"], "started", with_url=False, timeout=3)
    assert "cutover-crasher" in failure.value.result["msg"]
    assert supervisor.statename("cutover-crasher") == "FATAL"


def test_a_stop_that_does_not_finish_in_time_fails_naming_the_service(supervisor):
    pid = supervisor.start("cutover-stubborn")
    # it ignores SIGTERM once it serves (supervisord counts it running before Python got that far)
    wait_until(lambda: health(supervisor.base_url("cutover-stubborn") + "/healthz")[0] == 200, 10, "stubborn serves")
    with pytest.raises(ModuleFailed) as failure:
        drive(supervisor, ["cutover-stubborn"], "stopped", timeout=0.3)
    message = failure.value.result["msg"]
    assert message.startswith("cutover-stubborn still running ") and message.endswith(" s after the stop")
    wait_until(lambda: not running(pid), 5, "supervisord did not kill the stubborn process")


def test_an_unknown_program_fails_naming_it_and_changes_nothing(supervisor):
    before = supervisor.pids()
    args = {"services": [service_spec(supervisor, "cutover-alpha"), {"name": "nosuch", "service": "cutover-nosuch"}],
            "manager": "supervisor", "supervisor_config": str(supervisor.config)}
    for state in ("stopped", "restarted", "started", "reloaded"):
        with pytest.raises(ModuleFailed) as failure:
            run_module(cutover_service.main, dict(args, state=state))
        assert failure.value.result["msg"].startswith("supervisord (%s) has no program cutover-nosuch: BAD_NAME"
                                                      % supervisor.config)
        assert supervisor.pids() == before


BAD_OPTIONS = [
    ({"timeout": 0}, "timeout must be > 0, got 0.0"),
    ({"services": [{"name": "alpha", "port": 1}]}, "services[0] has unknown field(s) port; allowed: name, service, "
                                                   "base_url, health, restart"),
    ({"services": [{"name": "alpha", "restart": "bounce"}]},
     "services[0] (alpha).restart must be one of restart, reload, got 'bounce'"),
    ({"services": [{"name": "alpha", "service": "cutover-alpha", "restart": "reload"}]},
     "services[0] (alpha) has restart: reload but no base_url; the worker pid is read from its health URL"),
    ({"services": [{"service": "cutover-alpha"}]}, "services[0].name must be the component name"),
    ({"state": "running"}, "value of state must be one of: stopped, started, restarted, reloaded, got: running"),
    ({"supervisor_config": None}, "manager is supervisor but all of the following are missing: supervisor_config"),
    ({"supervisor_config": "/nonexistent/supervisord.conf"},
     "cannot read the supervisord config /nonexistent/supervisord.conf"),
]


def test_bad_options_are_refused_naming_the_option_before_anything_changes(supervisor):
    before = supervisor.pids()
    for options, message in BAD_OPTIONS:
        args = {"services": [service_spec(supervisor, "cutover-alpha")], "state": "stopped", "manager": "supervisor",
                "supervisor_config": str(supervisor.config), **options}
        with pytest.raises(ModuleFailed) as failure:
            run_module(cutover_service.main, {key: value for key, value in args.items() if value is not None})
        assert message in failure.value.result["msg"]
        assert supervisor.pids() == before


# ------------------------------------------------------------------------------------------------- state reloaded

TOY_SOURCE = ROOT / "demo" / "releases" / "migrated" / "tts"
PROJECT_VENV = Path(sys.executable).parent.parent  # holds redis-py (redis.asyncio), not aioredis
TRAFFIC_THREADS = 4


def install_toy_release(component_dir: Path, source: Path, release: str) -> Path:
    """Deploy a copy of a demo release's component as cutover_release does, its ``venv`` linking the project's."""
    target = component_dir / "releases" / release
    shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    (target / ".cutover").mkdir()
    (target / ".cutover" / "release.json").write_text(json.dumps({"release": release, "component": "tts"}))
    (target / "venv").symlink_to(PROJECT_VENV)
    return target


def switch_current(component_dir: Path, release: str) -> None:
    staged = component_dir / "current.new"
    staged.symlink_to(Path("releases") / release)
    os.replace(staged, component_dir / "current")


@dataclass
class Toy:
    """The demo's tts under supervisord: its component dir, program and health URL."""

    supervisor: Supervisord
    component_dir: Path
    service: str = "cutover-tts"

    @property
    def health_url(self) -> str:
        return self.supervisor.base_url(self.service) + "/healthz"

    def health(self) -> dict[str, Any]:
        status, body = health(self.health_url)
        assert status == 200, (status, body)
        return body

    def spec(self, restart: str = "reload") -> dict[str, Any]:
        return {"name": "tts", "service": self.service, "base_url": self.supervisor.base_url(self.service),
                "restart": restart, "kind": "service", "namespaces": ["tts:*"]}

    def drive(self, state: str = "reloaded", check_mode: bool = False, **options: Any) -> dict:
        args = {"services": [self.spec()], "state": state, "manager": "supervisor",
                "supervisor_config": str(self.supervisor.config), "host_label": "toy1", **options}
        return run_module(cutover_service.main, args, check_mode=check_mode)


@pytest.fixture
def toy(tmp_path: Path, redis_server) -> Iterator[Toy]:
    """tts releases r1 and r2 (the migrated code) and legacy-no-aioredis (the legacy code on a venv without its
    client library: its worker exits 3), current -> r1, run by supervisord as the demo stack runs it."""
    marker = new_marker()
    component_dir = tmp_path / marker / "tts"  # the marker in every path of the command lines, for the sweep
    install_toy_release(component_dir, TOY_SOURCE, "r1")
    install_toy_release(component_dir, TOY_SOURCE, "r2")
    install_toy_release(component_dir, ROOT / "demo" / "releases" / "legacy" / "tts", "legacy-no-aioredis")
    switch_current(component_dir, "r1")
    port = free_port()
    config = {"component": "tts", "listen_port": port, "redis": {"host": "127.0.0.1", "port": redis_server.port},
              "maintenance_file": str(component_dir / "MAINTENANCE"), "metrics_interval_s": 3600.0,
              "settings": {"synthesis_ms": 50}}
    (component_dir / "config.json").write_text(json.dumps(config))
    current = component_dir / "current"
    program = Program("cutover-tts", current / "service.py", port, stopwaitsecs=10,
                      argv=[str(current / "venv" / "bin" / "python"), str(current / "service.py"),
                            "--config", str(component_dir / "config.json")])
    with running_supervisord(supervisor_dir(tmp_path, marker), [program], marker) as started:
        toy = Toy(started, component_dir)
        wait_until(lambda: health(toy.health_url)[0] == 200, 20, "tts did not serve")
        yield toy


class Traffic:
    """Threads sending /speak (new texts: slow misses) and /healthz back to back; failures kept with their reason."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.stopping = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self.worker_pids: set[int] = set()
        self.threads = [threading.Thread(target=self.send_forever, args=(index,)) for index in range(TRAFFIC_THREADS)]

    def send_forever(self, index: int) -> None:
        count = 0
        while not self.stopping.is_set():
            count += 1
            path = "/healthz" if count % 3 == 1 else "/speak?text=reload-%d-%d" % (index, count)
            status, body = None, {}
            try:
                with urlopen(self.base_url + path, timeout=10) as response:
                    status, raw = response.status, response.read()
                body = json.loads(raw) if path == "/healthz" else {}
            except HTTPError as exc:
                status = exc.code
            except (OSError, ValueError) as exc:
                self.failures.append("%s %s: %s" % (path, type(exc).__name__, exc))
                continue
            if status != 200:
                self.failures.append("%s answered %s" % (path, status))
                continue
            self.answered += 1
            if body:
                self.worker_pids.add(body["pid"])

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        wait_until(lambda: self.answered >= 2 * TRAFFIC_THREADS, 10, "traffic did not flow")
        return self

    def __exit__(self, *unused: Any) -> None:
        answered = self.answered
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: self.answered >= answered + 2 * TRAFFIC_THREADS, 10, "traffic did not flow on")
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_reloaded_hands_over_to_a_worker_of_the_new_release_without_a_failed_request(toy):
    master = toy.supervisor.pid(toy.service)
    before = toy.health()
    assert (before["release"], before["master_pid"]) == ("r1", master) and before["pid"] != master

    switch_current(toy.component_dir, "r2")
    with Traffic(toy.supervisor.base_url(toy.service)) as traffic:
        result = toy.drive(timeout=20)

    after = toy.health()
    assert (after["release"], after["master_pid"]) == ("r2", master), "nothing restarted the master"
    assert after["pid"] not in (before["pid"], master) and running(after["pid"])
    assert not running(before["pid"]), "the old worker is gone when the module returns"
    assert toy.supervisor.pid(toy.service) == master and toy.supervisor.statename(toy.service) == "RUNNING"
    assert traffic.failures == [] and traffic.answered > 20, (traffic.answered, traffic.failures[:5])
    assert traffic.worker_pids == {before["pid"], after["pid"]}, "the traffic spanned the handover"
    row = result["services"]["tts"]
    assert row == {"service": "cutover-tts", "action": "reload", "pid_before": master, "pid": master,
                   "worker_pid_before": before["pid"], "worker_pid": after["pid"], "ready_s": row["ready_s"]}
    assert 0 < row["ready_s"] < 20
    assert result["changed"] is True
    # nothing stopped serving: the journal has the new worker's start only
    started = {"service": "cutover-tts", "pid": master, "worker_pid": after["pid"], "ready_s": row["ready_s"]}
    assert [(entry["event"], entry["component"], entry["host"], entry["data"]) for entry in result["journal"]] == [
        ("component.started", "tts", "toy1", started)]
    assert_entries_fit(result["journal"])


def test_reloaded_in_check_mode_reads_the_worker_pid_and_signals_nothing(toy):
    master, before = toy.supervisor.pid(toy.service), toy.health()
    switch_current(toy.component_dir, "r2")

    result = toy.drive(check_mode=True)

    assert (result["changed"], result["journal"]) == (True, [])
    assert result["services"] == {"tts": {"service": "cutover-tts", "pid_before": master, "action": "reload",
                                          "worker_pid_before": before["pid"]}}
    time.sleep(0.5)  # a HUP would have started a worker of r2 by now
    assert (toy.health()["pid"], toy.health()["release"]) == (before["pid"], "r1")
    assert toy.supervisor.pid(toy.service) == master


def test_a_reload_whose_new_worker_cannot_start_fails_naming_why_and_leaves_the_old_worker_serving(toy):
    before = toy.health()
    switch_current(toy.component_dir, "legacy-no-aioredis")
    started = time.monotonic()

    with Traffic(toy.supervisor.base_url(toy.service)) as traffic:
        with pytest.raises(ModuleFailed) as failure:
            toy.drive(timeout=3)

    assert time.monotonic() - started < 10, "the wait has a deadline"
    message = failure.value.result["msg"]
    assert message.startswith("cutover-tts still answers %s from worker %d: no new worker took over within 3 s after "
                              "the reload signal (last log lines: " % (toy.health_url, before["pid"])), message
    assert "exited with code 3 before serving; worker %d keeps serving" % before["pid"] in message
    assert traffic.failures == [] and traffic.worker_pids == {before["pid"]}, traffic.failures[:5]
    after = toy.health()
    assert (after["pid"], after["release"], after["status"]) == (before["pid"], "r1", "ok")
    assert toy.supervisor.statename(toy.service) == "RUNNING"


def test_reloaded_restarts_a_service_whose_spec_says_restart_and_starts_a_stopped_one(supervisor):
    old = supervisor.pid("cutover-alpha")
    supervisor.stop("cutover-beta")

    check = drive(supervisor, ["cutover-alpha", "cutover-beta"], "reloaded", check_mode=True)
    assert check["changed"] is True and supervisor.pid("cutover-alpha") == old
    assert {name: row["action"] for name, row in check["services"].items()} == {"alpha": "restart", "beta": "start"}

    result = drive(supervisor, ["cutover-alpha", "cutover-beta"], "reloaded")

    new = {name: supervisor.pid(name) for name in ("cutover-alpha", "cutover-beta")}
    assert all(new.values()) and new["cutover-alpha"] != old
    assert_reaped(old)
    rows = result["services"]
    assert (rows["alpha"]["action"], rows["alpha"]["pid_before"], rows["alpha"]["pid"]) == (
        "restart", old, new["cutover-alpha"])
    assert (rows["beta"]["action"], rows["beta"]["pid_before"], rows["beta"]["pid"]) == (
        "start", None, new["cutover-beta"])
    assert sorted((entry["event"], entry["component"], entry["data"]["pid"]) for entry in result["journal"]) == [
        ("component.started", "alpha", new["cutover-alpha"]), ("component.started", "beta", new["cutover-beta"])]
    assert_entries_fit(result["journal"])


def test_a_reload_service_that_tells_no_worker_pid_is_refused_before_anything_changes(supervisor):
    before = supervisor.pids()
    cases = {
        "/nowhere": "cutover-alpha: %s/nowhere answered HTTP 404 without a pid",
        "/healthz": "cutover-alpha: %s/healthz did not answer",
    }
    for health_path, expected in cases.items():
        base_url = supervisor.base_url("cutover-alpha")
        if health_path == "/healthz":
            base_url = "http://127.0.0.1:%d" % free_port()  # nothing listens there
        args = {"services": [{"name": "alpha", "service": "cutover-alpha", "base_url": base_url,
                              "health": health_path, "restart": "reload"}],
                "state": "reloaded", "manager": "supervisor", "supervisor_config": str(supervisor.config)}
        for check_mode in (True, False):
            with pytest.raises(ModuleFailed) as failure:
                run_module(cutover_service.main, args, check_mode=check_mode)
            assert failure.value.result["msg"] == "cannot reload without the serving worker's pid (%s)" % (
                expected % base_url)
        assert supervisor.pids() == before
