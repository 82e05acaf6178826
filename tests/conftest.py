"""pytest fixtures over tests/cutover_testlib.py: a real redis-server per session and the module runner."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from cutover_testlib import (  # noqa: F401 - re-exported for tests that import them from conftest
    ROOT, ModuleFailed, RedisServer, free_port, run_module, start_redis_server, wait_for_port,
)


@pytest.fixture(scope="session")
def redis_session_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_session_server: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, emptied before each test."""
    redis_session_server.client().flushall()
    yield redis_session_server


@pytest.fixture
def module_runner() -> Callable[..., dict[str, Any]]:
    return run_module


os.environ.setdefault("ANSIBLE_LOCAL_TEMP", str(Path("/tmp") / "cutover-ansible-tmp"))
