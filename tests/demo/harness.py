"""Helpers for the demo service tests: release venvs, deployed release copies, real service processes."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cutover_testlib import RedisServer, free_port, start_redis_server  # noqa: F401 - used by the tests too

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
RELEASES = DEMO / "releases"
VENV_CACHE = ROOT / ".cache" / "venvs"
BASE_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
PROJECT_PYTHON = str(ROOT / ".venv" / "bin" / "python")
COMPONENTS = ("monitoring", "ai", "tts", "security", "safety")
FAULTY_RELEASES = {
    "faulty-pool-exhaustion": "tts",
    "faulty-bytes-str": "tts",
    "faulty-safety-fail-open": "safety",
    "faulty-alerts-lost": "monitoring",
    "faulty-connection-leak": "security",
    "faulty-host-override": "tts",
    "faulty-ttl-px": "tts",
    "faulty-pool-swallow": "ai",
    "faulty-client-per-request": "monitoring",
    "faulty-reply-format": "ai",
    "faulty-validator-accepts": "validator",
}
START_TIMEOUT_S = 20.0
EXIT_LISTEN = 4  # a service's exit code when its port is taken
PORT_ATTEMPTS = 3

# The component functions the tests compare against (re-exported), imported without writing
# __pycache__ into demo/: a release copy must hold only its source.
_write_bytecode = sys.dont_write_bytecode
sys.dont_write_bytecode = True
sys.path.append(str(DEMO))
from toyservice.components.ai import generate_reply, reply_key  # noqa: E402,F401
from toyservice.components.safety import verdict_key  # noqa: E402,F401
from toyservice.components.tts import audio_key, synthesize_audio  # noqa: E402,F401
from toyservice.config import ConfigError, parse_config  # noqa: E402,F401

sys.dont_write_bytecode = _write_bytecode


# ---- release environments -------------------------------------------------------------------------

def venv_key(requirements: bytes, interpreter: str) -> str:
    version = subprocess.run([interpreter, "-c", "import sys; print(sys.version)"], check=True,
                             capture_output=True).stdout
    return hashlib.sha256(requirements + b"\0" + interpreter.encode() + b"\0" + version).hexdigest()


def ensure_venv(requirements_file: Path) -> Path:
    """The venv for a requirements.txt, built once into .cache/venvs/<key> (temp dir, then rename)."""
    requirements = requirements_file.read_bytes()
    final = VENV_CACHE / venv_key(requirements, BASE_PYTHON)
    if (final / "bin" / "python").exists():
        return final
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=final.name[:16] + ".building-", dir=VENV_CACHE))
    try:
        subprocess.run([BASE_PYTHON, "-m", "venv", str(building)], check=True, capture_output=True)
        pip = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--no-input",
                              "--disable-pip-version-check", "-q", "-r", str(requirements_file)],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError("pip install -r %s failed:\n%s" % (requirements_file, pip.stderr[-3000:]))
        try:
            building.rename(final)
        except OSError:
            if not (final / "bin" / "python").exists():  # lost a race to another session: use theirs
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final


# ---- deployed releases ------------------------------------------------------------------------------

def deploy_release(release: str, component: str, app_root: Path) -> Path:
    """Copy a release's component dereferenced, as cutover_release does, and write its .cutover/release.json."""
    source = RELEASES / release / component
    target = app_root / component / "releases" / release
    if not target.exists():
        shutil.copytree(source, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
        (target / ".cutover").mkdir()
        info = {"release": release, "component": component, "installed_at": "2026-01-01T00:00:00.000Z"}
        (target / ".cutover" / "release.json").write_text(json.dumps(info))
    return target


# ---- HTTP -------------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, path: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> Reply:
    target = path + ("?" + urlencode(params) if params else "")
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                     time.monotonic() - started)
    finally:
        conn.close()


# ---- service processes ------------------------------------------------------------------------------

@dataclass
class Service:
    """A component running as a real process from a deployed release copy."""

    component: str
    release: str
    port: int
    config_path: Path
    log_path: Path
    maintenance_file: Path
    process: subprocess.Popen
    exit_code: int | None = field(default=None)

    def get(self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None, **params: str) -> Reply:
        return http_get(self.port, path, params, headers, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, deadline: float) -> bool:
        """True once this process answers /healthz; False if it could not bind its port (taken meanwhile)."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if self.process.returncode == EXIT_LISTEN:
                    return False
                raise AssertionError("%s/%s exited with %s:\n%s" % (self.release, self.component,
                                                                    self.process.returncode, self.log()))
            try:
                # Another process may have grabbed the port between free_port() and bind: check that our
                # process (the master) runs the worker that answers.
                if self.get("/healthz", timeout=2).json()["master_pid"] == self.process.pid:
                    return True
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError("%s/%s not ready in %.0fs:\n%s" % (self.release, self.component, START_TIMEOUT_S,
                                                                self.log()))

    def stop(self) -> int:
        """SIGTERM, wait for a graceful exit (kill after 10 s); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.exit_code = self.process.returncode
        return self.exit_code


def service_config(component: str, port: int, redis_port: int, maintenance_file: Path,
                   password: str | None = None, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "component": component,
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "redis": {"host": "127.0.0.1", "port": redis_port, "db": 0, "username": None, "password": password},
        "pool_size": 20,
        "maintenance_file": str(maintenance_file),
        "alerts_stream": "ai_service_alerts",
        "metrics_interval_s": 3600.0,
        "settings": {},
    }
    config.update(overrides)
    return config


class Launcher:
    """Starts services from deployed releases with their release's venv; stops them all at teardown."""

    def __init__(self, work_dir: Path, app_root: Path, venvs: dict[str, Path]):
        self.work_dir = work_dir
        self.app_root = app_root
        self.venvs = venvs
        self.services: list[Service] = []

    def python_for(self, release: str, component: str) -> str:
        requirements = (RELEASES / release / component / "requirements.txt").read_bytes()
        return str(self.venvs[hashlib.sha256(requirements).hexdigest()] / "bin" / "python")

    def spawn(self, release: str, component: str, redis_port: int, from_source: bool = False,
              **overrides: Any) -> Service:
        """Start a component from its deployed copy (or, with from_source, straight from demo/releases)."""
        release_dir = RELEASES / release / component if from_source else deploy_release(release, component,
                                                                                         self.app_root)
        port = free_port()
        name = "%s-%s-%d" % (release, component, port)
        maintenance_file = self.work_dir / ("%s.MAINTENANCE" % name)
        config_path = self.work_dir / ("%s.json" % name)
        config_path.write_text(json.dumps(service_config(component, port, redis_port, maintenance_file, **overrides)))
        log_path = self.work_dir / ("%s.log" % name)
        with open(log_path, "wb") as log:
            process = subprocess.Popen([self.python_for(release, component), str(release_dir / "service.py"),
                                        "--config", str(config_path)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir)
        service = Service(component, release, port, config_path, log_path, maintenance_file, process)
        self.services.append(service)
        return service

    def start(self, release: str, component: str, redis_port: int, **overrides: Any) -> Service:
        return self.start_many([(release, component)], redis_port, **overrides)[0]

    def start_many(self, wanted: list[tuple[str, str]], redis_port: int, **overrides: Any) -> list[Service]:
        """Start several services in parallel and wait until each answers /healthz (new port if one was taken)."""
        services = [self.spawn(release, component, redis_port, **overrides) for release, component in wanted]
        deadline = time.monotonic() + START_TIMEOUT_S
        for index, service in enumerate(services):
            for _ in range(PORT_ATTEMPTS):
                if service.wait_ready(deadline):
                    break
                service = services[index] = self.spawn(service.release, service.component, redis_port, **overrides)
            else:
                raise AssertionError("%s/%s found no free port in %d attempts" % (
                    service.release, service.component, PORT_ATTEMPTS))
        return services

    def stop_all(self) -> None:
        for service in self.services:
            service.stop()


def run_python(python: str, script: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 60, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input_text)


def run_seed(redis_port: int, *args: str) -> dict[str, Any]:
    result = run_python(PROJECT_PYTHON, DEMO / "seed.py", "--port", str(redis_port), *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def client_count(redis_client: Any, name: str) -> int:
    """Connections Redis reports under a client name (CLIENT LIST)."""
    return sum(1 for entry in redis_client.client_list() if entry.get("name") == name)
