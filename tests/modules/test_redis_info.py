"""cutover_redis_info against a real redis-server."""
from __future__ import annotations

import pytest

import cutover_redis_info
from cutover_testlib import ModuleFailed, run_module, start_redis_server


def test_counts_keys_per_namespace_first_pattern_wins(redis_server):
    client = redis_server.client()
    client.mset({"tts:a": b"1", "tts:b": b"2", "safety:x": b"block", "other": b"?"})
    result = run_module(cutover_redis_info.main, {"redis": redis_server.options, "namespaces": ["tts:*", "*"]})
    assert result["namespaces"] == {"tts:*": 2, "*": 2}
    assert result["keys"] == 4
    assert result["changed"] is False
    assert result["healthy"] is True and result["problems"] == []


def test_too_old_and_memory_pressure_are_problems(redis_server):
    client = redis_server.client()
    client.set("big", b"x" * 1_500_000)
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", str(int(used * 1.05)))
    try:
        result = run_module(cutover_redis_info.main, {
            "redis": redis_server.options, "min_version": "99.0.0", "memory_high_water": 0.5})
    finally:
        client.config_set("maxmemory", "0")
    assert result["healthy"] is False
    assert any("older than the required 99.0.0" in problem for problem in result["problems"])
    assert any("maxmemory" in problem for problem in result["problems"])
    assert result["maxmemory_mb"] == round(int(used * 1.05) / 1048576, 2)
    assert result["headroom_mb"] < result["maxmemory_mb"]


def test_unreachable_server_names_the_endpoint(tmp_path):
    server = start_redis_server(tmp_path / "gone")
    port = server.port
    server.stop()
    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_redis_info.main, {"redis": {"host": "127.0.0.1", "port": port, "socket_timeout": 1}})
    assert "redis://127.0.0.1:%d/0 is unreachable" % port in failure.value.result["msg"]


def test_wrong_password_is_refused_without_echoing_it(tmp_path):
    server = start_redis_server(tmp_path / "auth", password="right-password")
    try:
        with pytest.raises(ModuleFailed) as failure:
            run_module(cutover_redis_info.main, {"redis": {"host": "127.0.0.1", "port": server.port,
                                                           "password": "wrong-password-123"}})
    finally:
        server.stop()
    message = failure.value.result["msg"]
    assert "refused the credentials" in message or "unreachable" in message
    assert "wrong-password-123" not in str(failure.value.result)


def test_bad_high_water_is_refused(redis_server):
    with pytest.raises(ModuleFailed, match="memory_high_water"):
        run_module(cutover_redis_info.main, {"redis": redis_server.options, "memory_high_water": 3})
