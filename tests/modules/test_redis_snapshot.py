"""cutover_redis_snapshot against a real redis-server: every data type, TTLs, namespaces, integrity, memory."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from cutover_testlib import ModuleFailed, RedisServer, free_port, run_module, start_redis_server

import cutover_redis_restore
import cutover_redis_snapshot
from ansible.module_utils import cutover_snapshot_logical
from ansible.module_utils.cutover_snapshot import DATA_FILE_NAME, MANIFEST_FILE_NAME, SnapshotReader

TESTS_DIR = Path(__file__).resolve().parents[1]
LONG_TTL_MS = 600_000


# --- helpers shared with test_redis_restore.py -------------------------------------------------------

def populate_every_type(client: redis.Redis, prefix: str, ttl_ms: int | None = None) -> list[bytes]:
    """One key of every Redis 7 data type and main encoding under ``prefix``; returns the keys."""
    p = prefix.encode()
    client.set(p + b"str", b"hello")
    client.set(p + b"bin", bytes(range(256)) + b"\x00\r\n")
    client.set(p + b"int", 12345)
    client.hset(p + b"hash", mapping={b"f1": b"v1", b"\xff": b"\x00"})
    client.hset(p + b"bighash", mapping={b"field%d" % i: b"x" * (i % 90) for i in range(300)})
    client.rpush(p + b"list", b"a", b"b", b"\x00c")
    client.rpush(p + b"biglist", *[b"item%d" % i * 10 for i in range(500)])
    client.sadd(p + b"set", b"m1", b"m2", b"\xfe")
    client.sadd(p + b"intset", 1, 2, 3, 99)
    client.zadd(p + b"zset", {b"a": 1.5, b"b": -2, b"c": 1e300})
    client.zadd(p + b"bigzset", {b"member%d" % i: i / 7 for i in range(300)})
    stream = p + b"stream"
    for n in range(5):
        client.xadd(stream, {b"n": str(n).encode(), b"bin": b"\x00\xff"})
    client.xgroup_create(stream, b"workers", id="0")
    client.xreadgroup(b"workers", b"alice", {stream: ">"}, count=2)
    client.xreadgroup(b"workers", b"bob", {stream: ">"}, count=1)
    client.xgroup_create(stream, b"idle", id="$")
    keys = [p + name for name in (b"str", b"bin", b"int", b"hash", b"bighash", b"list", b"biglist", b"set",
                                  b"intset", b"zset", b"bigzset", b"stream")]
    if ttl_ms:
        for key in keys:
            client.pexpire(key, ttl_ms)
    return keys


def _stream_state(client: redis.Redis, key: bytes) -> tuple:
    info = client.xinfo_stream(key)
    groups = []
    for group in client.xinfo_groups(key):
        pending = client.xpending_range(key, group["name"], min="-", max="+", count=10_000)
        consumers = sorted((c["name"], c["pending"]) for c in client.xinfo_consumers(key, group["name"]))
        groups.append((group["name"], group["last-delivered-id"], group["pending"], group.get("entries-read"),
                       tuple((e["message_id"], e["consumer"], e["times_delivered"]) for e in pending),
                       tuple(consumers)))
    return (tuple(client.xrange(key)), info["last-generated-id"], info.get("entries-added"),
            info.get("max-deleted-entry-id"), tuple(sorted(groups)))


def value_of(client: redis.Redis, key: bytes) -> tuple:
    kind = client.type(key)
    readers = {
        b"string": lambda: client.get(key),
        b"hash": lambda: tuple(sorted(client.hgetall(key).items())),
        b"list": lambda: tuple(client.lrange(key, 0, -1)),
        b"set": lambda: tuple(sorted(client.smembers(key))),
        b"zset": lambda: tuple(client.zrange(key, 0, -1, withscores=True)),
        b"stream": lambda: _stream_state(client, key),
    }
    return kind, readers[kind]()


def logical_state(client: redis.Redis, match: str = "*") -> dict[bytes, tuple]:
    """Every key's type, value and absolute expiry (ms), comparable across servers."""
    return {key: value_of(client, key) + (client.execute_command("PEXPIRETIME", key),)
            for key in client.scan_iter(match=match, count=1000)}


def snapshot_args(server: RedisServer, dest: Path, snapshot_id: str = "run1", **extra: Any) -> dict[str, Any]:
    return dict(redis=server.options, dest=str(dest), snapshot_id=snapshot_id, **extra)


def snapshot_records(directory: Path) -> list[tuple[str, bytes, int, bytes]]:
    """(pattern, key, expiry, payload) of every record in a snapshot's data file."""
    with SnapshotReader(str(directory / DATA_FILE_NAME)) as reader:
        reader.read_header()
        return [(reader.namespaces[index], key, expiry, payload)
                for index, keys, expiries, payloads in reader.batches(1000)
                for key, expiry, payload in zip(keys, expiries, payloads)]


def add_acl_user(server: RedisServer, name: str, rules: list[str]) -> dict[str, Any]:
    """Create a real ACL user; returns the module's redis option for it."""
    server.client().acl_setuser(name, enabled=True, passwords=["+pw-" + name], keys=["~*"], reset=True,
                                commands=rules)
    return dict(server.options, user=name, password="pw-" + name)


@pytest.fixture(scope="module")
def target_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A second real redis-server for cross-server restores."""
    server = start_redis_server(tmp_path_factory.mktemp("redis-target"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target(target_server: RedisServer) -> RedisServer:
    target_server.client().flushall()
    return target_server


# --- tests ---------------------------------------------------------------------------------------------

def test_every_type_with_and_without_ttl_round_trips_to_another_server(redis_server, target, tmp_path):
    source = redis_server.client()
    plain = populate_every_type(source, "tts:")
    timed = populate_every_type(source, "ai:", ttl_ms=LONG_TTL_MS)
    expected = logical_state(source)

    result = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path,
                                                                   namespaces=["tts:*", "ai:*"]))

    snapshot = result["snapshot"]
    assert result["changed"] is True
    assert snapshot["namespaces"] == {"tts:*": len(plain), "ai:*": len(timed)}
    assert snapshot["keys"] == len(plain) + len(timed) and snapshot["vanished"] == 0
    assert snapshot["verified"] is True
    restored = run_module(cutover_redis_restore.main, {"redis": target.options, "src": snapshot["path"]})
    assert restored["restored"] == len(plain) + len(timed)
    assert logical_state(target.client()) == expected
    assert all(expected[key][2] > 0 for key in timed) and all(expected[key][2] == -1 for key in plain)


def test_manifest_and_files_describe_a_private_verified_snapshot(redis_server, tmp_path):
    populate_every_type(redis_server.client(), "tts:")
    dest = tmp_path / "snapshots"

    snapshot = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, dest))["snapshot"]

    directory = dest / "run1"
    data = (directory / DATA_FILE_NAME).read_bytes()
    manifest = json.loads((directory / MANIFEST_FILE_NAME).read_text())
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == snapshot["sha256"]
    assert manifest["bytes"] == len(data) == snapshot["bytes"]
    assert manifest["snapshot_id"] == "run1" and manifest["mode"] == "logical" and manifest["verified"] is True
    assert manifest["format_version"] == 1 and manifest["redis_version"].startswith("7.")
    assert manifest["rdb_version"] == 10 and manifest["expiry_source"] == "PEXPIRETIME"
    assert manifest["source"] == "redis://127.0.0.1:%d/0" % redis_server.port
    assert manifest["namespaces"] == {"*": 12} and manifest["keys"] == 12
    assert snapshot["path"] == str(directory) and snapshot["data_file"] == str(directory / DATA_FILE_NAME)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for name in (DATA_FILE_NAME, MANIFEST_FILE_NAME):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert sorted(os.listdir(dest)) == ["run1"], "no staging directory may be left behind"


def test_overlapping_patterns_capture_each_key_once_under_its_first_pattern(redis_server, tmp_path):
    client = redis_server.client()
    for i in range(120):
        client.set("tts:a%d" % i, i)
        client.set("tts:b%d" % i, i)
    for i in range(30):
        client.set("ai:%d" % i, i)
    client.xadd("ai_service_alerts", {"level": "warn"})
    patterns = ["tts:a*", "tts:*", "*", "ai:*", "ai_service_alerts"]

    snapshot = run_module(cutover_redis_snapshot.main,
                          snapshot_args(redis_server, tmp_path, namespaces=patterns, batch_size=7))["snapshot"]

    assert snapshot["namespaces"] == {"tts:a*": 120, "tts:*": 120, "*": 31, "ai:*": 0, "ai_service_alerts": 0}
    records = snapshot_records(tmp_path / "run1")
    keys = [key for _pattern, key, _expiry, _payload in records]
    assert len(keys) == len(set(keys)) == client.dbsize() == 271
    owners = {key: pattern for pattern, key, _expiry, _payload in records}
    assert owners[b"tts:a5"] == "tts:a*" and owners[b"tts:b5"] == "tts:*"
    assert owners[b"ai:3"] == "*" and owners[b"ai_service_alerts"] == "*"


def test_glob_classes_and_escapes_follow_redis_not_fnmatch(redis_server, tmp_path):
    client = redis_server.client()
    for key in ("a1", "a2", "b1", "[x]", "^1", "!1", "*star"):
        client.set(key, key)
    patterns = ["[^a]1", "[!]1", "\\[x\\]", "\\**", "*"]

    snapshot = run_module(cutover_redis_snapshot.main,
                          snapshot_args(redis_server, tmp_path, namespaces=patterns))["snapshot"]

    # Redis: [^a] negates (matches b1, ^1, !1); [!] is the literal '!' class; \ escapes.
    assert snapshot["namespaces"] == {"[^a]1": 3, "[!]1": 0, "\\[x\\]": 1, "\\**": 1, "*": 2}
    assert snapshot["keys"] == 7


def test_second_run_returns_the_existing_snapshot_and_leaves_the_file_alone(redis_server, tmp_path):
    client = redis_server.client()
    populate_every_type(client, "tts:")
    first = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path))
    data = tmp_path / "run1" / DATA_FILE_NAME
    before = data.stat()
    client.set("tts:new", "written after the snapshot")
    client.delete("tts:str")

    second = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path))

    assert second["changed"] is False
    assert second["snapshot"] == first["snapshot"]
    after = data.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == first["snapshot"]["sha256"]
    assert b"tts:new" not in data.read_bytes()


def test_same_id_with_other_namespaces_is_refused_not_overwritten(redis_server, tmp_path):
    redis_server.client().set("tts:1", "x")
    first = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, namespaces=["tts:*"]))

    with pytest.raises(ModuleFailed, match="never overwritten"):
        run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, namespaces=["ai:*"]))

    manifest = json.loads((tmp_path / "run1" / MANIFEST_FILE_NAME).read_text())
    assert manifest["namespaces"] == {"tts:*": 1} and manifest["sha256"] == first["snapshot"]["sha256"]


def test_existing_damaged_snapshot_is_refused_and_kept_as_is(redis_server, tmp_path):
    populate_every_type(redis_server.client(), "tts:")
    run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path))
    data = tmp_path / "run1" / DATA_FILE_NAME
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    data.write_bytes(bytes(damaged))

    for state in ("present", "verified"):
        with pytest.raises(ModuleFailed, match="does not verify.*checksum mismatch") as failure:
            run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, state=state))
        assert failure.value.result["msg"].count("left untouched") == 1

    assert data.read_bytes() == bytes(damaged)
    assert sorted(os.listdir(tmp_path)) == ["run1"]


def test_verified_state_checks_without_connecting(redis_server, tmp_path):
    redis_server.client().set("tts:1", "x")
    created = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path))
    unreachable = {"host": "127.0.0.1", "port": free_port(), "socket_timeout": 0.5}

    verified = run_module(cutover_redis_snapshot.main, dict(snapshot_args(redis_server, tmp_path, state="verified"),
                                                           redis=unreachable))

    assert verified["changed"] is False and verified["snapshot"] == created["snapshot"]
    with pytest.raises(ModuleFailed, match="no snapshot 'other'"):
        run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, "other", state="verified"))


def test_check_mode_counts_what_would_be_written_and_writes_nothing(redis_server, tmp_path):
    client = redis_server.client()
    populate_every_type(client, "tts:")
    populate_every_type(client, "ai:", ttl_ms=LONG_TTL_MS)
    dest = tmp_path / "snapshots"
    args = snapshot_args(redis_server, dest, namespaces=["tts:*", "*"])

    planned = run_module(cutover_redis_snapshot.main, args, check_mode=True, diff=True)

    assert planned["diff"] == {"before": {}, "after": {"snapshot": "run1", "keys": 24,
                                                       "namespaces": {"tts:*": 12, "*": 12}}}
    assert planned["changed"] is True
    assert planned["snapshot"]["namespaces"] == {"tts:*": 12, "*": 12} and planned["snapshot"]["keys"] == 24
    assert planned["snapshot"]["verified"] is False and planned["snapshot"]["sha256"] is None
    assert not dest.exists()
    real = run_module(cutover_redis_snapshot.main, args)
    assert real["snapshot"]["namespaces"] == planned["snapshot"]["namespaces"]
    again = run_module(cutover_redis_snapshot.main, args, check_mode=True)
    assert again["changed"] is False and again["snapshot"] == real["snapshot"]


def test_refuses_when_dest_lacks_free_space(redis_server, tmp_path):
    populate_every_type(redis_server.client(), "tts:")

    with pytest.raises(ModuleFailed, match=r"refusing to snapshot: .* min_free_mb 1000000000 MiB"):
        run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, min_free_mb=10**9))

    assert os.listdir(tmp_path) == []


def test_dest_that_is_not_a_directory_fails_cleanly(redis_server, tmp_path):
    redis_server.client().set("tts:1", "x")
    dest = tmp_path / "file"
    dest.write_text("not a directory")

    with pytest.raises(ModuleFailed, match="cannot write a snapshot into dest .*file"):
        run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, dest))

    assert dest.read_text() == "not a directory"


@pytest.mark.parametrize("bad, message", [
    ({"snapshot_id": ".."}, "snapshot_id '..' is invalid"),
    ({"snapshot_id": "a/b"}, "snapshot_id 'a/b' is invalid"),
    ({"snapshot_id": ""}, "snapshot_id '' is invalid"),
    ({"namespaces": []}, "namespaces must be a non-empty list"),
    ({"namespaces": ["tts:*", "ai:*", "tts:*"]}, "more than once: tts:\\*"),
    ({"batch_size": 0}, "batch_size must be between 1 and 100000, got 0"),
    ({"min_free_mb": -1}, "min_free_mb must be 0 or more"),
    ({"mode": "nosuch"}, "value of mode must be one of: logical, rdb, replica"),
])
def test_invalid_options_are_refused_before_anything_is_touched(redis_server, tmp_path, bad, message):
    dest = tmp_path / "snapshots"
    with pytest.raises(ModuleFailed, match=message):
        run_module(cutover_redis_snapshot.main, dict(snapshot_args(redis_server, dest), **bad))
    assert not dest.exists()


def test_keys_deleted_during_a_lua_snapshot_leave_a_consistent_snapshot(redis_server, tmp_path):
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for i in range(30_000):
        pipe.set("v:%d" % i, "value-%d" % i)
    pipe.execute()
    doomed = ["v:%d" % i for i in range(1, 30_000, 2)]
    deleter_client = redis_server.client()
    started = threading.Event()

    def delete_half() -> None:
        started.set()
        for start in range(0, len(doomed), 50):
            deleter_client.delete(*doomed[start:start + 50])

    deleter = threading.Thread(target=delete_half)
    deleter.start()
    started.wait()
    try:
        snapshot = run_module(cutover_redis_snapshot.main, snapshot_args(redis_server, tmp_path, batch_size=100))
    finally:
        deleter.join()

    records = snapshot_records(tmp_path / "run1")
    captured = {key for _pattern, key, _expiry, _payload in records}
    survivors = {b"v:%d" % i for i in range(0, 30_000, 2)}
    assert survivors <= captured, "keys present during the whole SCAN must be in the snapshot"
    assert captured <= survivors | {key.encode() for key in doomed}
    assert snapshot["snapshot"]["keys"] == len(records) == len(captured)
    assert snapshot["snapshot"]["vanished"] == 0  # SCAN and DUMP run in one atomic script per page


def test_keys_vanishing_between_scan_and_dump_are_counted_not_written(redis_server, tmp_path, monkeypatch):
    """Without Lua (ACL -@scripting) SCAN and DUMP are separate round trips: delete and expire keys in between."""
    admin = redis_server.client()
    for i in range(300):
        admin.set("tts:%d" % i, "v%d" % i)
    options = add_acl_user(redis_server, "noscript", ["+@all", "-@scripting"])
    real_scan_page = cutover_snapshot_logical.scan_page
    gone: set[bytes] = set()

    def scan_page_then_remove_some(client, cursor, pattern, count):
        next_cursor, keys = real_scan_page(client, cursor, pattern, count)
        for key in keys[0::3]:
            admin.delete(key)
            gone.add(key)
        for key in keys[1::3]:
            admin.pexpire(key, 1)
            gone.add(key)
        time.sleep(0.01)  # the expiring ones are now past their expiry
        return next_cursor, keys

    monkeypatch.setattr(cutover_snapshot_logical, "scan_page", scan_page_then_remove_some)
    result = run_module(cutover_redis_snapshot.main, dict(snapshot_args(redis_server, tmp_path, batch_size=50),
                                                          redis=options))

    snapshot = result["snapshot"]
    assert len(gone) >= 200 and snapshot["vanished"] == len(gone)
    captured = {key for _pattern, key, _expiry, _payload in snapshot_records(tmp_path / "run1")}
    assert captured == {b"tts:%d" % i for i in range(300)} - gone
    assert snapshot["keys"] == 300 - len(gone)
    manifest = json.loads((tmp_path / "run1" / MANIFEST_FILE_NAME).read_text())
    assert manifest["capture"] == "pipeline" and manifest["vanished"] == len(gone)
    assert "may not run Lua scripts" in json.dumps(result.get("warnings"))


@pytest.mark.parametrize("user", ["default", "noscript"])
def test_servers_before_7_0_get_pttl_plus_server_time(redis_server, target, tmp_path, monkeypatch, user):
    client = redis_server.client()
    keys = populate_every_type(client, "tts:", ttl_ms=LONG_TTL_MS)
    options = redis_server.options if user == "default" else add_acl_user(redis_server, user, ["+@all", "-@scripting"])
    monkeypatch.setattr(cutover_redis_snapshot, "server_version", lambda _client: ("6.2.14", (6, 2, 14)))

    snapshot = run_module(cutover_redis_snapshot.main, dict(snapshot_args(redis_server, tmp_path),
                                                            redis=options))["snapshot"]

    manifest = json.loads(Path(snapshot["manifest"]).read_text())
    assert manifest["expiry_source"].startswith("PTTL") and manifest["capture"] == ("lua" if user == "default" else "pipeline")
    run_module(cutover_redis_restore.main, {"redis": target.options, "src": snapshot["path"]})
    for key in keys:
        source_expiry = client.execute_command("PEXPIRETIME", key)
        assert abs(target.client().execute_command("PEXPIRETIME", key) - source_expiry) <= 5


def test_redis_failing_mid_snapshot_leaves_nothing_behind(redis_server, tmp_path):
    populate_every_type(redis_server.client(), "tts:")
    options = add_acl_user(redis_server, "nodump", ["+@all", "-dump"])

    with pytest.raises(ModuleFailed, match=r"was not written \(nothing was left behind\): .*can't run this command"):
        run_module(cutover_redis_snapshot.main, dict(snapshot_args(redis_server, tmp_path), redis=options))

    assert os.listdir(tmp_path) == []


def test_password_never_appears_in_results_or_manifest(tmp_path):
    password = "s3cret-Pa55"
    server = start_redis_server(tmp_path / "redis", password=password)
    try:
        populate_every_type(server.client(), "tts:")
        url = "redis://:%s@127.0.0.1:%d/0" % (password, server.port)
        results = [
            run_module(cutover_redis_snapshot.main, snapshot_args(server, tmp_path / "snaps", "a"), check_mode=True),
            run_module(cutover_redis_snapshot.main, snapshot_args(server, tmp_path / "snaps", "a")),
            run_module(cutover_redis_snapshot.main, dict(snapshot_args(server, tmp_path / "snaps", "b"),
                                                         redis={"url": url})),
        ]
        with pytest.raises(ModuleFailed) as refused:
            run_module(cutover_redis_snapshot.main, dict(snapshot_args(server, tmp_path / "snaps", "c"),
                                                         redis={"url": url.replace(password, password + "x")}))
    finally:
        server.stop()
    assert [result["snapshot"]["keys"] for result in results] == [12, 12, 12]
    for text in [json.dumps(result) for result in results] + [json.dumps(refused.value.result)]:
        assert password not in text
    for name in ("a", "b"):
        manifest_text = (tmp_path / "snaps" / name / MANIFEST_FILE_NAME).read_text()
        assert password not in manifest_text
        assert json.loads(manifest_text)["source"] == "redis://127.0.0.1:%d/0" % server.port


# Peak RSS of the snapshot alone. resource.getrusage's ru_maxrss cannot be used here: on Linux a child
# inherits its forking parent's peak (pytest's, after loading 200k keys) across exec. The kernel's own
# per-process peak (VmHWM) can be reset after warm-up instead (writing 5 to /proc/self/clear_refs).
MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from cutover_testlib import run_module
    import cutover_redis_snapshot

    def status_kb(field):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    args = json.loads(sys.argv[2])
    run_module(cutover_redis_snapshot.main, dict(args, snapshot_id="warmup", namespaces=["warm:*"]))
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    start_kb = status_kb("VmRSS")
    result = run_module(cutover_redis_snapshot.main, args)
    print(json.dumps({"growth_kb": status_kb("VmHWM") - start_kb, "keys": result["snapshot"]["keys"],
                      "bytes": result["snapshot"]["bytes"]}))
""")


def test_snapshot_of_200k_keys_keeps_memory_flat(redis_server, tmp_path):
    client = redis_server.client()
    value = os.urandom(200)
    pipe = client.pipeline(transaction=False)
    for i in range(200_000):
        pipe.set(b"tts:%d" % i, value)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    client.set("warm:1", "x")
    args = snapshot_args(redis_server, tmp_path, "big", namespaces=["tts:*"])

    started = time.monotonic()
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(TESTS_DIR), json.dumps(args)],
                           capture_output=True, text=True, timeout=120, check=True)
    elapsed = time.monotonic() - started

    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    assert measured["keys"] == 200_000
    assert measured["bytes"] > 45_000_000
    # Holding the data would cost > 45 MB; streaming needs a few batches and 1 MiB I/O buffers.
    assert measured["growth_kb"] < 20_000, measured
    assert elapsed < 60
