"""Keys of 100 MB+ go through every mode without the module holding them in memory, and keys of a Redis
module type (a real module, built here with gcc from tests/fixtures/cutover_testtype.c) are refused."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, run_module, start_redis_server

import cutover_redis_snapshot

TESTS_DIR = Path(__file__).resolve().parents[1]
BIG = 120 * 1024 * 1024


# --- module types ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module_library(tmp_path_factory) -> str:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        pytest.skip("no C compiler to build the test Redis module")
    library = tmp_path_factory.mktemp("module") / "cutover_testtype.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library),
                    str(TESTS_DIR / "fixtures" / "cutover_testtype.c")], check=True, capture_output=True)
    return str(library)


@pytest.fixture
def module_server(tmp_path, module_library) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path / "redis", extra=["--loadmodule", module_library])
    try:
        client = server.client()
        client.execute_command("cuttest.set", "tts:counter", 42)
        client.set("tts:plain", "v")
        client.set("ai:plain", "v")
        assert client.type("tts:counter") == b"cuttest01"
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("mode, extra", [("logical", {}), ("rdb", {}), ("replica", {"replica_sync_delay": 0})])
def test_a_module_type_key_is_refused_by_name_and_nothing_is_written(module_server, tmp_path, mode, extra):
    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_redis_snapshot.main, dict(redis=module_server.options, dest=str(tmp_path / "snaps"),
                                                     snapshot_id="run1", mode=mode, **extra))

    message = failure.value.result["msg"]
    assert "key 'tts:counter' holds a value of the Redis module type 'cuttest01'" in message
    assert "was not written (nothing was left behind)" in message
    assert os.listdir(tmp_path / "snaps") == []


def test_logical_mode_snapshots_namespaces_without_module_keys(module_server, tmp_path):
    result = run_module(cutover_redis_snapshot.main, dict(redis=module_server.options, dest=str(tmp_path / "snaps"),
                                                          snapshot_id="run1", namespaces=["ai:*"]))
    assert result["snapshot"]["namespaces"] == {"ai:*": 1}


# --- big keys ------------------------------------------------------------------------------------------------

# Runs one module in a fresh process and reports its peak RSS growth over the idle interpreter with the
# module imported (the kernel's VmHWM, reset after import by writing 5 to /proc/self/clear_refs).
MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from cutover_testlib import run_module
    import cutover_redis_restore, cutover_redis_snapshot

    def status_kb(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    start_kb = status_kb("VmRSS")
    module = {"snapshot": cutover_redis_snapshot, "restore": cutover_redis_restore}[sys.argv[2]]
    result = run_module(module.main, json.loads(sys.argv[3]))
    print(json.dumps({"growth_mb": (status_kb("VmHWM") - start_kb) / 1024.0, "result": result}))
""")


def probe(kind: str, args: dict) -> dict:
    completed = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(TESTS_DIR), kind, json.dumps(args)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def big_servers(tmp_path_factory) -> Iterator[tuple[RedisServer, RedisServer]]:
    source = start_redis_server(tmp_path_factory.mktemp("big-source"))
    target = start_redis_server(tmp_path_factory.mktemp("big-target"))
    try:
        client = source.client()
        chunk = os.urandom(8 * 1024 * 1024)
        client.set("tts:big", b"")
        for _ in range(BIG // len(chunk)):
            client.append("tts:big", chunk)
        client.pexpire("tts:big", 3_600_000)
        pipe = client.pipeline(transaction=False)
        for start in range(0, 100_000, 20_000):
            pipe.hset("tts:bighash", mapping={b"field-%d" % i: os.urandom(100) for i in range(start, start + 20_000)})
        pipe.execute()
        for i in range(50):
            client.set("tts:small:%d" % i, i)
        yield source, target
    finally:
        source.stop()
        target.stop()


def digest_of(client: redis.Redis, key: str) -> str:
    digest = hashlib.sha256()
    length = client.strlen(key)
    for start in range(0, length, 8 * 1024 * 1024):
        digest.update(client.getrange(key, start, start + 8 * 1024 * 1024 - 1))
    return digest.hexdigest()


@pytest.mark.parametrize("mode", ["logical", "rdb"])
def test_a_120_mb_key_streams_through_snapshot_and_restore_in_flat_memory(big_servers, tmp_path, mode):
    source, target = big_servers
    client, target_client = source.client(), target.client()
    target_client.flushall()
    expected = (digest_of(client, "tts:big"), client.execute_command("PEXPIRETIME", "tts:big"),
                sorted(client.hgetall("tts:bighash").items()))

    shot = probe("snapshot", dict(redis=source.options, dest=str(tmp_path / "snaps"), snapshot_id="big", mode=mode,
                                  namespaces=["tts:*"], verify="full" if mode == "logical" else "checksum"))
    restored = probe("restore", dict(redis=target.options, src=shot["result"]["snapshot"]["path"]))

    assert shot["result"]["snapshot"]["keys"] == 52 and restored["result"]["restored"] == 52
    if mode == "logical":  # compared key by key with the source, the big ones by digest in a scratch server
        assert shot["result"]["verification"]["same"] == 52
    assert (digest_of(target_client, "tts:big"), target_client.execute_command("PEXPIRETIME", "tts:big"),
            sorted(target_client.hgetall("tts:bighash").items())) == expected
    # The values weigh 130 MB; the modules stream them: their memory grows by a few buffers only (seen: 6-10 MB).
    assert shot["growth_mb"] < 30, shot["growth_mb"]
    assert restored["growth_mb"] < 30, restored["growth_mb"]
