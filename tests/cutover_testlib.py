"""Helpers shared by every test: real redis-servers on free loopback ports and an in-process module runner.

Importable as ``cutover_testlib`` from any test (tests/ is on sys.path); tests/conftest.py turns them into fixtures.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import time
import unittest.mock
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ansible.module_utils
import redis

ROOT = Path(__file__).resolve().parents[1]
# Make the project's module_utils importable as ansible.module_utils.cutover_* and its modules by name,
# exactly as Ansible resolves them at run time.
if str(ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))
if str(ROOT / "library") not in sys.path:
    sys.path.insert(0, str(ROOT / "library"))

from ansible.module_utils import _internal as module_utils_internal  # noqa: E402
from ansible.module_utils.common import warnings as ansible_warnings  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, closed: bool = False) -> None:
    """Wait until 127.0.0.1:port accepts connections (or, with closed=True, refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if not closed:
                    return
        except OSError:
            if closed:
                return
        time.sleep(0.05)
    raise TimeoutError("port %d did not %s within %.0fs" % (port, "close" if closed else "open", timeout))


@dataclass
class RedisServer:
    """A real redis-server on loopback, owned by the test session."""

    port: int
    directory: Path
    process: subprocess.Popen
    password: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        """The value of a module's ``redis`` option that reaches this server."""
        opts: dict[str, Any] = {"host": "127.0.0.1", "port": self.port}
        if self.password:
            opts["password"] = self.password
        return opts

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        wait_for_port(self.port, closed=True)


def start_redis_server(directory: Path, password: str | None = None, extra: list[str] | None = None) -> RedisServer:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(directory / "redis.log")]
    if password:
        args += ["--requirepass", password]
    args += extra or []
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return RedisServer(port=port, directory=directory, process=process, password=password)


class ModuleFailed(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__(result.get("msg"))
        self.result = result


def run_module(main: Callable[[], None], args: dict[str, Any], check_mode: bool = False,
               diff: bool = False) -> dict[str, Any]:
    """Run an Ansible module's main() in-process with real arguments; return its JSON result.

    Raises ModuleFailed when the module called fail_json.
    """
    # ansible-core keeps module warnings in process-wide dicts (one module run per process in real life):
    # an in-process run must start without the warnings of earlier runs.
    ansible_warnings._global_warnings.clear()
    ansible_warnings._global_deprecations.clear()
    full_args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    stdout = io.StringIO()
    # Importing controller code (ansible.errors, e.g. for the filter plugins) flips module_utils into
    # controller mode, where warnings go to the display instead of the result; a module runs as on a target.
    with patch_module_args(full_args), contextlib.redirect_stdout(stdout), \
            unittest.mock.patch.object(module_utils_internal, "is_controller", False):
        try:
            main()
        except SystemExit:
            pass
    result = json.loads(stdout.getvalue())
    if result.get("failed"):
        raise ModuleFailed(result)
    return result
