# -*- coding: utf-8 -*-
# The process manager of a host's components (supervisord over its XML-RPC socket, or systemd through systemctl)
# driven for several services at once: stop them together and wait until their processes are gone, start them
# together and wait until each answers its health check, or reload them (SIGHUP to a master that replaces its
# worker) and wait until a new worker answers and the old one is gone. Stdlib only: runs on every managed host.
from __future__ import annotations

import configparser
import http.client
import json
import os
import socket
import subprocess
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ansible.module_utils.cutover_events import utc_timestamp

MANAGERS = ("supervisor", "systemd")
# The process-manager options of every module that drives services; plugins/doc_fragments/cutover_service_manager.py
# mirrors it.
SERVICE_MANAGER_SPEC: dict[str, dict[str, Any]] = {
    "manager": {"type": "str", "choices": list(MANAGERS), "default": "systemd"},
    "supervisor_config": {"type": "path"},
}
SERVICE_MANAGER_REQUIRED_IF = [("manager", "supervisor", ["supervisor_config"])]


def service_manager_argument_spec() -> dict[str, dict[str, Any]]:
    """A copy of the process-manager options, to merge into a module's own argument spec."""
    return {name: dict(spec) for name, spec in SERVICE_MANAGER_SPEC.items()}
POLL_S = 0.05
HEALTH_HEADERS = {"X-Cutover-Probe": "1"}
RELOAD_SIGNAL = "HUP"


class ServiceError(Exception):
    """A service could not be driven; the message names the service and what the manager said."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket (the serverurl supervisorctl itself uses)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._path, self._timeout)


def supervisor_server_url(config_path: str) -> str:
    """The serverurl of supervisorctl in a supervisord config (its [supervisorctl] or [unix_http_server])."""
    parser = configparser.RawConfigParser()
    if not parser.read(config_path):
        raise ServiceError("cannot read the supervisord config %s" % config_path)
    if parser.has_option("supervisorctl", "serverurl"):
        return parser.get("supervisorctl", "serverurl")
    if parser.has_option("unix_http_server", "file"):
        return "unix://" + parser.get("unix_http_server", "file")
    raise ServiceError("%s has neither [supervisorctl] serverurl nor [unix_http_server] file" % config_path)


def supervisor_proxy(config_path: str, timeout: float = 10.0) -> Any:
    url = supervisor_server_url(config_path)
    if url.startswith("unix://"):
        return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(url[len("unix://"):], timeout))
    return xmlrpc.client.ServerProxy(url.rstrip("/") + "/RPC2")


def process_gone(pid: int | None) -> bool:
    """True when no process runs under pid (a zombie counts as gone: it serves nothing)."""
    if not pid:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def process_age_s(pid: int | None) -> float | None:
    """Seconds since the process started (from /proc, to the clock tick), or None when it is gone."""
    if not pid:
        return None
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            start_ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, up_s - start_ticks / os.sysconf("SC_CLK_TCK"))


class Supervisor:
    name = "supervisor"

    def __init__(self, config_path: str) -> None:
        self._config_path = config_path
        self._rpc = supervisor_proxy(config_path)

    def _call(self, what: str, call: Any) -> Any:
        try:
            return call()
        except xmlrpc.client.Fault as exc:
            raise ServiceError("supervisord (%s) refused to %s: %s" % (self._config_path, what, exc.faultString))
        except OSError as exc:
            raise ServiceError("cannot reach supervisord (%s) to %s: %s" % (self._config_path, what, exc))

    def _infos(self, services: list[str]) -> dict[str, dict[str, Any]]:
        infos = self._call("read %s" % ", ".join(services), lambda: self._rpc.system.multicall(
            [{"methodName": "supervisor.getProcessInfo", "params": [service]} for service in services]))
        for service, info in zip(services, infos):
            if isinstance(info, dict) and "faultString" in info:
                raise ServiceError("supervisord (%s) has no program %s: %s"
                                   % (self._config_path, service, info["faultString"]))
        return dict(zip(services, infos))

    def pids(self, services: list[str]) -> dict[str, int | None]:
        """service -> pid of its process while it starts or runs (None when it does not)."""
        return {service: info["pid"] if info["statename"] in ("RUNNING", "STARTING") and info["pid"] else None
                for service, info in self._infos(services).items()}

    def up(self, service: str) -> bool | None:
        """True once the service runs (past supervisord's startsecs), False while it starts, None once it gave up."""
        state = self._infos([service])[service]["statename"]
        return True if state == "RUNNING" else None if state in ("FATAL", "EXITED", "STOPPED") else False

    def _multicall(self, method: str, services: list[str], tolerated: tuple[str, ...], argument: Any = False) -> None:
        answers = self._call("%s %s" % (method, ", ".join(services)), lambda: self._rpc.system.multicall(
            [{"methodName": method, "params": [service, argument]} for service in services]))
        for service, answer in zip(services, answers):
            if isinstance(answer, dict) and "faultString" in answer and \
                    not any(name in answer["faultString"] for name in tolerated):
                raise ServiceError("supervisord (%s) could not %s %s: %s"
                                   % (self._config_path, method.split(".")[-1], service, answer["faultString"]))

    def stop(self, services: list[str]) -> None:
        self._multicall("supervisor.stopProcess", services, ("NOT_RUNNING",))

    def start(self, services: list[str]) -> None:
        self._multicall("supervisor.startProcess", services, ("ALREADY_STARTED",))

    def reload(self, services: list[str]) -> None:
        """Send each service's process the reload signal (SIGHUP), as ``supervisorctl signal HUP`` does."""
        self._multicall("supervisor.signalProcess", services, (), RELOAD_SIGNAL)

    def log_tail(self, service: str) -> str:
        try:
            text = self._rpc.supervisor.tailProcessStdoutLog(service, 0, 1200)[0]
        except (xmlrpc.client.Fault, OSError):
            return ""
        return " | ".join(line for line in text.splitlines()[-6:] if line.strip())


class Systemd:
    name = "systemd"

    def __init__(self, systemctl: str = "systemctl") -> None:
        self._systemctl = systemctl

    def _run(self, argv: list[str]) -> str:
        try:
            done = subprocess.run([self._systemctl] + argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError("systemctl %s: %s" % (" ".join(argv), exc))
        if done.returncode != 0:
            raise ServiceError("systemctl %s failed (rc %d): %s" % (" ".join(argv), done.returncode,
                                                                     (done.stderr or done.stdout).strip()))
        return done.stdout

    def pids(self, services: list[str]) -> dict[str, int | None]:
        result = {}
        for service in services:
            pid = int(self._run(["show", "--property=MainPID", "--value", service]).strip() or 0)
            result[service] = pid or None
        return result

    def up(self, service: str) -> bool | None:
        state = self._run(["show", "--property=ActiveState", "--value", service]).strip()
        return True if state == "active" else None if state in ("failed", "inactive") else False

    def stop(self, services: list[str]) -> None:
        self._run(["stop", "--no-block"] + services)

    def start(self, services: list[str]) -> None:
        self._run(["start", "--no-block"] + services)

    def reload(self, services: list[str]) -> None:
        """Run each unit's ExecReload (e.g. ``kill -HUP $MAINPID``)."""
        self._run(["reload", "--no-block"] + services)

    def log_tail(self, service: str) -> str:
        return ""


def manager(kind: str, supervisor_config: str | None = None) -> Supervisor | Systemd:
    if kind == "supervisor":
        if not supervisor_config:
            raise ServiceError("supervisor_config is required when the service manager is supervisor")
        return Supervisor(supervisor_config)
    if kind == "systemd":
        return Systemd()
    raise ServiceError("service manager must be one of %s, got %r" % (", ".join(MANAGERS), kind))


def stop_services(handle: Supervisor | Systemd, services: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Stop every service at once; wait until each old process is gone. service -> {pid, stopped_at, was_running}."""
    before = handle.pids(services)
    running = [service for service in services if before[service]]
    if running:
        handle.stop(running)
    gone: dict[str, dict[str, Any]] = {service: {"pid": None, "stopped_at": utc_timestamp(), "was_running": False}
                                       for service in services if not before[service]}
    deadline = time.monotonic() + timeout
    while len(gone) < len(services):
        for service in running:
            if service not in gone and process_gone(before[service]):
                gone[service] = {"pid": before[service], "stopped_at": utc_timestamp(), "was_running": True}
        if len(gone) < len(services):
            if time.monotonic() > deadline:
                left = [service for service in services if service not in gone]
                raise ServiceError("%s still running %g s after the stop" % (", ".join(left), timeout))
            time.sleep(POLL_S)
    return gone


def health_answer(url: str, timeout: float) -> int | None:
    return health_reading(url, timeout)[0]


def health_reading(url: str, timeout: float) -> tuple[int | None, int | None]:
    """(HTTP status, ``pid`` of the JSON body) of a health URL; None for what it did not tell."""
    try:
        with urlopen(Request(url, headers=HEALTH_HEADERS), timeout=timeout) as response:
            status, body = response.status, response.read()
    except HTTPError as exc:
        status, body = exc.code, exc.read()
    except (URLError, OSError, http.client.HTTPException):
        return None, None
    try:
        pid = json.loads(body).get("pid")
    except (ValueError, AttributeError):
        pid = None
    return status, pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def wait_healthy(url: str, deadline: float) -> float | None:
    """Seconds until url answered 200, or None when the deadline passed first."""
    started = time.monotonic()
    while True:
        if health_answer(url, timeout=min(5.0, max(deadline - time.monotonic(), 0.2))) == 200:
            return round(time.monotonic() - started, 3)
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)


def wait_up(handle: Supervisor | Systemd, service: str, deadline: float) -> float | None:
    """Seconds until the manager runs the service (for a service without a health URL), None if it gave up."""
    started = time.monotonic()
    while True:
        state = handle.up(service)
        if state:
            return round(time.monotonic() - started, 3)
        if state is None or time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)


def start_services(handle: Supervisor | Systemd, health_urls: dict[str, str | None], timeout: float
                   ) -> dict[str, dict[str, Any]]:
    """Start every service at once, then wait for each to answer its health URL (concurrently), or for one
    without a URL until the manager runs it.

    service -> {pid, ready_s}; raises ServiceError naming the services that did not come up, with their log tail.
    """
    services = list(health_urls)
    handle.start(services)
    started = time.monotonic()
    deadline = started + timeout

    def ready_after(service: str) -> float | None:
        url = health_urls[service]
        return wait_healthy(url, deadline) if url else wait_up(handle, service, deadline)

    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        ready = dict(zip(services, pool.map(ready_after, services)))
    silent = [service for service in services if ready[service] is None]
    if silent:
        raise ServiceError("; ".join(silent_message(handle, service, health_urls[service], timeout)
                                     for service in silent))
    pids = handle.pids(services)
    return {service: {"pid": pids[service], "ready_s": ready[service]} for service in services}


def worker_pids(health_urls: dict[str, str], timeout: float = 5.0) -> dict[str, int]:
    """service -> pid of the worker answering its health URL; ServiceError naming those that tell none."""
    readings = {service: health_reading(url, timeout) for service, url in health_urls.items()}
    silent = ["%s: %s %s" % (service, health_urls[service],
                             "did not answer" if status is None else "answered HTTP %d without a pid" % status)
              for service, (status, pid) in readings.items() if pid is None]
    if silent:
        raise ServiceError("cannot reload without the serving worker's pid (%s)" % "; ".join(silent))
    return {service: pid for service, (_, pid) in readings.items() if pid is not None}


def reload_services(handle: Supervisor | Systemd, health_urls: dict[str, str], timeout: float
                    ) -> dict[str, dict[str, Any]]:
    """Send every service the reload signal at once, then wait (concurrently) until each health URL answers 200
    from another worker and the old worker is gone.

    service -> {pid_before, pid, ready_s} (worker pids; ready_s until the new worker answered 200); raises
    ServiceError naming the services whose new worker did not take over, with their log tail.
    """
    services = list(health_urls)
    old = worker_pids(health_urls)
    handle.reload(services)
    deadline = time.monotonic() + timeout

    def took_over(service: str) -> dict[str, Any]:
        return wait_new_worker(health_urls[service], old[service], deadline)

    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        outcomes = dict(zip(services, pool.map(took_over, services)))
    late = [service for service in services if outcomes[service]["problem"]]
    if late:
        raise ServiceError("; ".join("%s %s within %g s after the reload signal%s" % (
            service, outcomes[service]["problem"], timeout, log_note(handle, service)) for service in late))
    return {service: {"pid_before": old[service], "pid": outcomes[service]["pid"],
                      "ready_s": outcomes[service]["ready_s"]} for service in services}


def wait_new_worker(url: str, old_pid: int, deadline: float) -> dict[str, Any]:
    """Wait until url answers 200 from a pid other than old_pid and old_pid is gone: {pid, ready_s, problem}."""
    started = time.monotonic()
    new_pid, ready_s = None, None
    while True:
        if new_pid is None:
            status, pid = health_reading(url, timeout=min(5.0, max(deadline - time.monotonic(), 0.2)))
            if status == 200 and pid is not None and pid != old_pid:
                new_pid, ready_s = pid, round(time.monotonic() - started, 3)
        if new_pid is not None and process_gone(old_pid):
            return {"pid": new_pid, "ready_s": ready_s, "problem": None}
        if time.monotonic() > deadline:
            problem = ("still answers %s from worker %d: no new worker took over" % (url, old_pid)
                       if new_pid is None else "has worker %d serving, but the old worker %d still runs"
                       % (new_pid, old_pid))
            return {"pid": new_pid, "ready_s": ready_s, "problem": problem}
        time.sleep(POLL_S)


def log_note(handle: Supervisor | Systemd, service: str) -> str:
    tail = handle.log_tail(service)
    return " (last log lines: %s)" % tail if tail else ""


def silent_message(handle: Supervisor | Systemd, service: str, url: str | None, timeout: float) -> str:
    what = "did not answer %s within %g s" % (url, timeout) if url else "did not come up"
    return "%s %s%s" % (service, what, log_note(handle, service))


def maintenance_path(app_root: str, component: str) -> str:
    return os.path.join(app_root, component, "MAINTENANCE")


def set_maintenance(app_root: str, component: str, on: bool, note: str = "") -> bool:
    """Put the component in (or take it out of) maintenance mode; True when that changed something."""
    path = maintenance_path(app_root, component)
    if on == os.path.exists(path):
        return False
    if on:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as flag:
            flag.write(note + "\n")
    else:
        os.unlink(path)
    return True
