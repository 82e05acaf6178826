"""Fixtures of the demo service tests: the two release venvs, deployed releases, a service launcher."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import RELEASES, Launcher, RedisServer, ensure_venv, start_redis_server


@pytest.fixture(scope="session")
def release_venvs() -> dict[str, Path]:
    """{sha256 of requirements.txt: venv} for the legacy and the migrated environments."""
    venvs = {}
    for release in ("legacy", "migrated"):
        requirements = RELEASES / release / "tts" / "requirements.txt"
        venvs[hashlib.sha256(requirements.read_bytes()).hexdigest()] = ensure_venv(requirements)
    return venvs


@pytest.fixture(scope="session")
def app_root(tmp_path_factory) -> Path:
    """Where releases are deployed (copied dereferenced), shared by the whole session."""
    return tmp_path_factory.mktemp("app")


@pytest.fixture
def launcher(tmp_path: Path, app_root: Path, release_venvs: dict[str, Path]) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, app_root, release_venvs)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory, app_root: Path, release_venvs: dict[str, Path]) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("services"), app_root, release_venvs)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A password-protected redis-server of this test's own (the test may stop it)."""
    server = start_redis_server(tmp_path / "private-redis", password="pw-Not-In-Logs-93")
    yield server
    server.stop()
