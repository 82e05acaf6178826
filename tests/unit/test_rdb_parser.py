"""The streaming RDB parser (module_utils/cutover_rdb.py) against RDB files written by a real redis-server."""
from __future__ import annotations

import hashlib
import io
import os
from typing import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings, strategies as st

from cutover_testlib import RedisServer, start_redis_server

from ansible.module_utils.cutover_rdb import (
    READ_CHUNK,
    FileChunks,
    RdbError,
    RdbScanner,
    Tee,
    lzf_decompress,
    module_type_name,
    read_rdb_header,
)
from ansible.module_utils.cutover_snapshot import pattern_classifier, pattern_matcher

# Encodings Redis picks by size: small ones are listpacks/intsets, big ones hash tables and skiplists.
SMALL_AND_BIG = ["hash-max-listpack-entries", "128", "set-max-intset-entries", "512", "list-compress-depth", "1",
                 "list-max-listpack-size", "8"]


@pytest.fixture(scope="module")
def rdb_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = start_redis_server(tmp_path_factory.mktemp("rdb-parser"),
                                extra=["--" + name if index % 2 == 0 else name for index, name in enumerate(SMALL_AND_BIG)])
    try:
        yield server
    finally:
        server.stop()


def saved_rdb(server: RedisServer) -> bytes:
    server.client().save()
    return (server.directory / "dump.rdb").read_bytes()


def scan(data: bytes, patterns: list[str] | None = None, db: int = 0, now_ms: int | None = None, chunk: int = 0):
    """Parse ``data``, fed in ``chunk``-sized pieces when given (to cross every buffer boundary)."""
    class Pieces:
        def __init__(self) -> None:
            self.offset = 0

        def read_chunk(self, size: int) -> bytes:
            size = min(size, chunk) if chunk else size
            piece = data[self.offset:self.offset + size]
            self.offset += len(piece)
            return piece
    patterns = patterns or []
    keys: list[tuple[int, bytes, int]] = []
    scanner = RdbScanner(Pieces(), pattern_matcher(patterns) if patterns else None, len(patterns), db, now_ms,
                         lambda index, key, expiry: keys.append((index, key, expiry)))
    return scanner.scan(), keys


def fill_every_encoding(client: redis.Redis) -> dict[bytes, int]:
    """Keys of every type in every encoding Redis 7.0 writes; returns key -> absolute expiry (or -1)."""
    pipe = client.pipeline(transaction=False)
    pipe.set("s:small", "v")
    pipe.set("s:int", 12345)
    pipe.set("s:compressible", "abc" * 400)  # LZF-compressed value
    pipe.set("s:random", os.urandom(3 * READ_CHUNK))  # larger than the read buffer
    pipe.set("s:" + "k" * 100, "long key name")  # 14-bit length
    pipe.set("s:" + "x" * 60 + "yz" * 30, "compressible key name")  # LZF-compressed key name
    pipe.set(123456, "integer key name")
    pipe.hset("h:small", mapping={"a": "1", "b": "2"})
    pipe.hset("h:big", mapping={"f%d" % i: "v" * (i % 50) for i in range(300)})
    pipe.sadd("z:intset", 1, 2, 3)
    pipe.sadd("z:set", *["m%d" % i for i in range(600)])
    pipe.zadd("q:small", {"a": 1.5, "b": -2})
    pipe.zadd("q:big", {"m%d" % i: i / 3 for i in range(300)})
    pipe.rpush("l:small", "a", "b")
    pipe.rpush("l:compressed", *["item-%d" % i * 5 for i in range(500)])  # quicklist, LZF-compressed nodes
    pipe.execute()
    for n in range(300):
        client.xadd("x:stream", {"n": n})
    client.xgroup_create("x:stream", "g1", id="0")
    client.xreadgroup("g1", "alice", {"x:stream": ">"}, count=5)
    client.xreadgroup("g1", "bob", {"x:stream": ">"}, count=2)
    client.xgroup_create("x:stream", "g2", id="$")
    client.xadd("x:empty", {"a": 1})
    client.xtrim("x:empty", maxlen=0)
    client.pexpire("s:small", 600_000)
    client.pexpire("h:big", 600_000)
    return {key: client.execute_command("PEXPIRETIME", key) for key in client.scan_iter(count=1000)}


def test_every_type_and_encoding_is_walked_with_names_expiries_and_counts(rdb_server):
    client = rdb_server.client()
    expiries = fill_every_encoding(client)
    client.select(3)
    other_db = redis.Redis(port=rdb_server.port, db=3)
    other_db.set("db3:key", "v")
    data = saved_rdb(rdb_server)

    for chunk in (0, 7, 4093):
        summary, keys = scan(data, ["*"], chunk=chunk)
        assert summary.rdb_version == 10 and summary.aux["redis-ver"].startswith("7.0")
        assert summary.databases == {0: len(expiries), 3: 1}
        assert summary.expires == {0: 2}
        assert summary.namespace_counts == [len(expiries)]
        assert {key: expiry for _index, key, expiry in keys} == expiries
        assert summary.bytes == len(data) and summary.checksum == data[-8:].hex()


def test_namespace_counts_follow_first_match_and_redis_globs(rdb_server):
    client = rdb_server.client()
    client.flushall()
    fill_every_encoding(client)
    data = saved_rdb(rdb_server)
    patterns = ["s:k*", "s:*", "[hz]:*", "1?3*", "nothing:*"]

    summary, keys = scan(data, patterns)

    classify = pattern_classifier(patterns)
    expected = [0] * len(patterns)
    for key in client.scan_iter(count=1000):
        if classify(key) >= 0:
            expected[classify(key)] += 1
    assert summary.namespace_counts == expected == [1, 5, 4, 1, 0]
    assert all(classify(key) == index for index, key, _expiry in keys)


def test_expired_keys_are_counted_against_the_given_clock(rdb_server):
    client = rdb_server.client()
    client.flushall()
    client.set("a", 1, px=1_000)
    client.set("b", 1, px=600_000)
    client.set("c", 1)
    expiry_a = client.execute_command("PEXPIRETIME", "a")
    data = saved_rdb(rdb_server)

    assert scan(data, now_ms=expiry_a - 1)[0].expired == 0
    assert scan(data, now_ms=expiry_a)[0].expired == 1


def test_functions_are_counted(rdb_server):
    client = rdb_server.client()
    client.flushall()
    client.function_load("#!lua name=cutoverlib\nredis.register_function('noop', function() return 1 end)",
                         replace=True)
    try:
        summary, _keys = scan(saved_rdb(rdb_server), ["*"])
    finally:
        client.function_flush()
    assert summary.functions == 1 and summary.keys == 0


def test_tee_copies_and_hashes_exactly_what_it_parses(rdb_server, tmp_path):
    client = rdb_server.client()
    client.flushall()
    fill_every_encoding(client)
    data = saved_rdb(rdb_server)
    copy = io.BytesIO()

    tee = Tee(FileChunks(io.BytesIO(data)), hashlib.sha256(), copy)
    RdbScanner(tee).scan()

    assert copy.getvalue() == data and tee.bytes == len(data)
    assert tee.digest.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def good_rdb(rdb_server) -> bytes:
    client = rdb_server.client()
    client.flushall()
    fill_every_encoding(client)
    return saved_rdb(rdb_server)


@pytest.mark.parametrize("cut", [9, 100, 5000, -2000, -9, -1])
def test_truncated_files_are_refused(good_rdb, cut):
    with pytest.raises(RdbError, match="truncated"):
        scan(good_rdb[:cut])


@pytest.mark.parametrize("mangle, message", [
    (lambda data: b"CUTSNAP\x00" + data[8:], "not an RDB file"),
    (lambda data: b"REDIS0012" + data[9:], "RDB version 12 is not one this cutover reads"),
    (lambda data: data + b"junk", "unexpected bytes after its end marker"),
    (lambda data: data[:9] + b"\x08" + data[10:], "RDB object type 8"),
    (lambda data: data[:9] + b"\xf4" + data[10:], "unknown opcode 244"),
    (lambda data: b"", "too short"),
])
def test_damaged_or_foreign_files_are_refused(good_rdb, mangle, message):
    with pytest.raises(RdbError, match=message):
        scan(mangle(good_rdb))


def test_a_redis_74_hash_with_field_expiry_is_refused_by_name():
    data = b"REDIS0011\xfe\x00\x18\x03key\x00"  # type 24: hash with field expiry (Redis 7.4)
    with pytest.raises(RdbError, match="RDB object type 24 .*unknown to this cutover"):
        scan(data)


def test_read_rdb_header(tmp_path, good_rdb):
    (tmp_path / "good.rdb").write_bytes(good_rdb)
    (tmp_path / "bad.rdb").write_bytes(b"hello world")
    assert read_rdb_header(str(tmp_path / "good.rdb")) == 10
    with pytest.raises(RdbError, match="not an RDB file"):
        read_rdb_header(str(tmp_path / "bad.rdb"))


def test_lzf_strings_redis_compressed_decode(rdb_server):
    # A string's DUMP payload is its RDB type byte followed by the RDB string encoding: here LZF.
    client = rdb_server.client()
    value = b"hello cutover " * 50
    client.set("lzf", value)
    payload = client.dump("lzf")
    assert payload[1] == 0xC3  # RDB_ENCVAL << 6 | RDB_ENC_LZF

    assert RdbScanner(FileChunks(io.BytesIO(payload[1:])))._string() == value


def test_corrupt_lzf_is_refused():
    with pytest.raises(RdbError, match="corrupt LZF"):
        lzf_decompress(b"\x00a\xe0\xff", 10)


def test_module_type_names_decode_from_their_ids():
    charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    module_id = 0
    for char in "cuttest01":
        module_id = (module_id << 6) | charset.index(char)
    assert module_type_name((module_id << 10) | 3) == "cuttest01"


@pytest.fixture(scope="module")
def small_rdb(rdb_server) -> bytes:
    client = rdb_server.client()
    client.flushall()
    fill_every_encoding(client)
    client.delete("s:random")
    return saved_rdb(rdb_server)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True), chunk=st.sampled_from([0, 1, 13, 4096]))
def test_a_file_cut_anywhere_is_refused_as_truncated(small_rdb, fraction, chunk):
    cut = int(len(small_rdb) * fraction)
    with pytest.raises(RdbError):
        scan(small_rdb[:cut], ["*"], chunk=chunk)
