"""The snapshot file format, manifest checks and Redis glob translation (module_utils/cutover_snapshot.py)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible.module_utils.cutover_snapshot import (
    DATA_FILE_NAME,
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    MANIFEST_FILE_NAME,
    MANIFEST_FORMAT,
    READ_CHUNK,
    RECORD,
    TRAILER,
    ServerClock,
    SnapshotDirectory,
    SnapshotError,
    SnapshotReader,
    SnapshotWriter,
    belongs_filter,
    check_data_file,
    rdb_version_of,
    redis_glob_regex,
    valid_snapshot_id,
    verify_snapshot,
)

CREATED_AT = "2026-11-25T22:21:14.123Z"


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x95AC9329AC4BC9B5 if crc & 1 else 0)
        table.append(crc)
    return table


CRC64_TABLE = _crc64_table()


def dump_payload(body: bytes, rdb_version: int = 10) -> bytes:
    """``body`` framed as a DUMP payload: RDB version and Redis's CRC-64 (a plain table loop, the reference)."""
    framed = body + rdb_version.to_bytes(2, "little")
    crc = 0
    for byte in framed:
        crc = CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return framed + crc.to_bytes(8, "little")


BIG_PAYLOAD = dump_payload(os.urandom(READ_CHUNK * 2 + 17))
PAYLOAD_1, EMPTY_PAYLOAD, PAYLOAD_3 = dump_payload(b"payload-1"), dump_payload(b""), dump_payload(b"p3", 9)


def write_snapshot(directory: Path, batches: list[tuple[int, list[bytes], list[int], list[bytes]]],
                   namespaces: list[str] = ["tts:*", "ai:*"]) -> dict:
    """A snapshot directory written with the real writer, plus its manifest; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = SnapshotWriter(str(directory / DATA_FILE_NAME), "run1", "logical", CREATED_AT, namespaces)
    for batch in batches:
        writer.add_batch(*batch)
    size, sha256 = writer.finish()
    manifest = {"format": MANIFEST_FORMAT, "format_version": FORMAT_VERSION, "snapshot_id": "run1",
                "mode": "logical", "created_at": CREATED_AT, "namespaces": dict(zip(namespaces, writer.counts)),
                "keys": sum(writer.counts), "data_file": DATA_FILE_NAME, "bytes": size, "sha256": sha256}
    (directory / MANIFEST_FILE_NAME).write_text(json.dumps(manifest))
    return manifest


SAMPLE = [
    (0, [b"tts:1", b"tts:\x00\xff"], [-1, 1_790_000_000_000], [PAYLOAD_1, EMPTY_PAYLOAD]),
    (1, [b"ai:big"], [-1], [BIG_PAYLOAD]),
    (0, [b"tts:3"], [1_790_000_000_123], [PAYLOAD_3]),
]


def read_all(path: Path) -> tuple[SnapshotReader, list[tuple[int, bytes, int, bytes]]]:
    """Every record as (namespace index, key, expiry, payload)."""
    with SnapshotReader(str(path)) as reader:
        reader.read_header()
        records = [(index, key, expiry, payload) for index, keys, expiries, payloads in reader.batches(1000)
                   for key, expiry, payload in zip(keys, expiries, payloads)]
        return reader, records


def test_records_round_trip_through_writer_and_reader(tmp_path):
    manifest = write_snapshot(tmp_path, SAMPLE)
    path = tmp_path / DATA_FILE_NAME

    reader, records = read_all(path)

    assert records == [(0, b"tts:1", -1, PAYLOAD_1), (0, b"tts:\x00\xff", 1_790_000_000_000, EMPTY_PAYLOAD),
                       (1, b"ai:big", -1, BIG_PAYLOAD), (0, b"tts:3", 1_790_000_000_123, PAYLOAD_3)]
    assert reader.namespaces == ["tts:*", "ai:*"] and reader.counts == [3, 1] and reader.total == 4
    assert reader.meta == {"snapshot_id": "run1", "mode": "logical", "created_at": CREATED_AT,
                           "namespaces": ["tts:*", "ai:*"]}
    data = path.read_bytes()
    assert reader.sha256 == hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert reader.bytes == len(data) == manifest["bytes"]
    assert data.startswith(MAGIC) and stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest_read, checked = verify_snapshot(str(tmp_path))
    assert manifest_read == manifest and checked.newest_payload == (10, b"tts:1")


@pytest.mark.parametrize("victim, damage", [(b"tts:3", lambda payload: payload[:-1] + bytes([payload[-1] ^ 1])),
                                            (b"ai:big", lambda payload: payload[:99] + b"?" + payload[100:]),
                                            (b"tts:1", lambda payload: payload[:2])])
def test_verify_refuses_a_payload_that_fails_its_crc64_naming_its_key(tmp_path, victim, damage):
    batches = [(index, keys, expiries, [damage(payload) if key == victim else payload
                                        for key, payload in zip(keys, payloads)])
               for index, keys, expiries, payloads in SAMPLE]
    write_snapshot(tmp_path, batches)

    with pytest.raises(SnapshotError, match="is damaged: the payload of key %r .* fails its CRC-64 check" % victim):
        verify_snapshot(str(tmp_path))


def test_batches_hold_one_namespace_up_to_batch_size_and_count_unselected_records(tmp_path):
    write_snapshot(tmp_path, [(0, [b"a", b"b", b"c"], [-1] * 3, [b"1", b"2", b"3"]), (1, [b"x"], [5], [b"9"]),
                              (0, [b"d"], [-1], [b"4"])])

    with SnapshotReader(str(tmp_path / DATA_FILE_NAME)) as reader:
        reader.read_header()
        all_batches = list(reader.batches(2))
    with SnapshotReader(str(tmp_path / DATA_FILE_NAME)) as reader:
        reader.read_header()
        only_second = list(reader.batches(10, [False, True]))

    assert all_batches == [(0, [b"a", b"b"], [-1, -1], [b"1", b"2"]), (0, [b"c"], [-1], [b"3"]),
                           (1, [b"x"], [5], [b"9"]), (0, [b"d"], [-1], [b"4"])]
    assert only_second == [(1, [b"x"], [5], [b"9"])]
    assert reader.counts == [4, 1]


def test_layout_is_the_documented_big_endian_one(tmp_path):
    write_snapshot(tmp_path, [(1, [b"k"], [-1], [b"pay"])])
    data = (tmp_path / DATA_FILE_NAME).read_bytes()

    magic, version, meta_length = HEADER.unpack_from(data, 0)
    record_at = HEADER.size + meta_length

    assert (magic, version) == (b"CUTSNAP\x00", 1)
    assert RECORD.unpack_from(data, record_at) == (0x52, 1, 1, -1, 3)
    assert data[record_at + RECORD.size:record_at + RECORD.size + 4] == b"kpay"
    assert TRAILER.unpack_from(data, record_at + RECORD.size + 4) == (0x45, 1)
    assert len(data) == record_at + RECORD.size + 4 + TRAILER.size


def header_bytes(namespaces: list[str] = ["tts:*"], version: int = FORMAT_VERSION, magic: bytes = MAGIC) -> bytes:
    meta = json.dumps({"snapshot_id": "x", "mode": "logical", "created_at": CREATED_AT,
                       "namespaces": namespaces}).encode()
    return HEADER.pack(magic, version, len(meta)) + meta


GOOD_RECORD = RECORD.pack(0x52, 0, 3, -1, 2) + b"key" + b"pl"


@pytest.mark.parametrize("content, message", [
    (b"", "too short for a header"),
    (b"REDIS0010" + b"\x00" * 20, "not a cutover snapshot data file"),
    (header_bytes(magic=b"CUTSNAQ\x00"), "not a cutover snapshot data file"),
    (header_bytes(version=2), "data format version 2; this cutover reads versions 1"),
    (header_bytes()[:-3], "truncated or damaged inside its header"),
    (HEADER.pack(MAGIC, 1, 5) + b"nope!", "unreadable header"),
    (header_bytes(), "truncated: it ends after 0 records without a trailer"),
    (header_bytes() + GOOD_RECORD, "truncated: it ends after 1 records without a trailer"),
    (header_bytes() + GOOD_RECORD[:10], "truncated inside record 1"),
    (header_bytes() + GOOD_RECORD[:-1], "truncated inside record 1"),
    (header_bytes() + RECORD.pack(0x52, 1, 3, -1, 2) + b"keypl", "record 1 has tag 82 and namespace 1"),
    (header_bytes() + RECORD.pack(0x13, 0, 3, -1, 2) + b"keypl", "record 1 has tag 19"),
    (header_bytes() + GOOD_RECORD + TRAILER.pack(0x45, 2), "trailer counts 2 records, the file holds 1"),
    (header_bytes() + GOOD_RECORD + TRAILER.pack(0x45, 1) + b"x", "unexpected data after its trailer"),
])
def test_reader_refuses_damaged_and_foreign_files(tmp_path, content, message):
    path = tmp_path / "data"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match=message):
        read_all(path)


def test_a_well_formed_minimal_file_reads(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(header_bytes() + GOOD_RECORD + TRAILER.pack(0x45, 1))
    assert read_all(path)[1] == [(0, b"key", -1, b"pl")]


def test_check_data_file_hashes_all_of_a_damaged_file(tmp_path):
    manifest = write_snapshot(tmp_path, SAMPLE)
    path = tmp_path / DATA_FILE_NAME
    data = path.read_bytes()
    path.write_bytes(data[:-100])

    with pytest.raises(SnapshotError) as failure:
        check_data_file(str(path), manifest["sha256"], manifest["namespaces"])

    message = str(failure.value)
    assert message.startswith("checksum mismatch: sha256 of %s is %s, the manifest says %s"
                              % (path, hashlib.sha256(data[:-100]).hexdigest(), manifest["sha256"]))
    assert "truncated inside record 3" in message  # the last 100 bytes: trailer, record 4, end of record 3


@pytest.mark.parametrize("manifest_text, message", [
    ("[]", "is not a cutover snapshot manifest"),
    ("{\"format\": \"cutover-redis-snapshot\", \"format_version\": 1}", "lacks the fields: snapshot_id, mode"),
    ("\xff", "is not readable JSON"),
])
def test_manifest_problems_are_named(tmp_path, manifest_text, message):
    write_snapshot(tmp_path, SAMPLE)
    (tmp_path / MANIFEST_FILE_NAME).write_text(manifest_text)
    with pytest.raises(SnapshotError, match=message):
        verify_snapshot(str(tmp_path))


def test_manifest_must_describe_the_right_file(tmp_path):
    manifest = write_snapshot(tmp_path, SAMPLE)
    for changes, message in [({"snapshot_id": "other"}, "belongs to snapshot 'run1', not 'other'"),
                             ({"keys": 5}, "holds 4 records in"),
                             ({"namespaces": {"tts:*": 3}}, "record count mismatch")]:
        (tmp_path / MANIFEST_FILE_NAME).write_text(json.dumps(dict(manifest, **changes)))
        with pytest.raises(SnapshotError, match=message):
            verify_snapshot(str(tmp_path))


def test_staging_directory_is_private_and_never_replaces_a_snapshot(tmp_path):
    staging = SnapshotDirectory(str(tmp_path), "run1")
    assert stat.S_IMODE(os.stat(staging.temp_path).st_mode) == 0o700
    staging.write_manifest({"a": 1})
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "keep").write_text("existing")

    with pytest.raises(SnapshotError, match="appeared while this snapshot was being written"):
        staging.commit()
    staging.discard()

    assert sorted(os.listdir(tmp_path)) == ["run1"]
    assert (tmp_path / "run1" / "keep").read_text() == "existing"


@pytest.mark.parametrize("snapshot_id, valid", [("20261125T222114Z", True), ("a.b_c-1", True), (".", False),
                                                ("..", False), ("a/b", False), ("", False), ("a b", False)])
def test_snapshot_ids(snapshot_id, valid):
    assert valid_snapshot_id(snapshot_id) is valid


def test_rdb_version_and_server_clock_from_a_real_server(redis_server):
    client = redis_server.client()
    client.set("k", "v")
    assert rdb_version_of(client.dump("k")) == 10  # Redis 7.0
    clock = ServerClock(client)
    seconds, microseconds = client.time()
    assert abs(clock.now_ms() - (seconds * 1000 + microseconds // 1000)) < 50


# --- Redis glob semantics -----------------------------------------------------------------------------------

TRICKY_PATTERNS = ["*", "tts:*", "a?c", "[abc]x", "[^abc]x", "[a-c]x", "[c-a]x", "[!a]x", "\\*x", "a\\", "[",
                   "[a", "[^", "[]]x", "[\\]]x", "[a-]x", "[]", "**a**", "a*b*c", "\\[a\\]", "[\\", "?"]
TRICKY_KEYS = ["tts:1", "abc", "axc", "ax", "bx", "cx", "dx", "!x", "^x", "*x", "a\\", "a", "[", "]x", "-x",
               "[a]", "aXbYc", "b", "", "\\", "\xe9", "a]", "aa"]


def redis_matches(client, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


def test_glob_translation_matches_redis_on_tricky_patterns(redis_server):
    client = redis_server.client()
    keys = [key.encode() for key in TRICKY_KEYS if key]
    for key in keys:
        client.set(key, 1)
    for pattern in TRICKY_PATTERNS:
        regex = redis_glob_regex(pattern)
        assert {key for key in keys if regex.fullmatch(key)} == redis_matches(client, pattern), pattern


GLOB_ALPHABET = "ab-^!]\\[*?"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patterns=st.lists(st.text(GLOB_ALPHABET, min_size=1, max_size=6), min_size=1, max_size=5),
       keys=st.sets(st.text("ab-^!]\\[", min_size=1, max_size=4), min_size=1, max_size=12))
def test_glob_translation_matches_redis_scan_match(redis_server, patterns, keys):
    client = redis_server.client()
    client.flushall()
    for key in keys:
        client.set(key, 1)
    encoded = [key.encode() for key in keys]
    for pattern in patterns:
        regex = redis_glob_regex(pattern)
        assert {key for key in encoded if regex.fullmatch(key)} == redis_matches(client, pattern), pattern


def test_a_key_belongs_to_the_first_pattern_that_matches_it():
    patterns = ["tts:a*", "tts:*", "*"]
    assert [belongs_filter(patterns, index)(b"tts:a1") for index in range(3)] == [True, False, False]
    assert [belongs_filter(patterns, index)(b"tts:b1") for index in range(3)] == [True, True, False]
    assert belongs_filter(patterns, 2)(b"ai:1") is True
