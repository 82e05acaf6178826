# -*- coding: utf-8 -*-
# Shared by cutover_redis_snapshot and cutover_redis_restore: the snapshot file format (streaming writer
# and reader), the manifest, verification, Redis glob matching and the server clock.
#
# Snapshot directory <dest>/<snapshot_id>/ (0700):
#   keys.cutsnap   data file (0600), big-endian:
#     header   MAGIC (8 bytes) | u16 format version | u32 meta length | meta (UTF-8 JSON:
#              snapshot_id, mode, created_at, namespaces = ordered list of glob patterns)
#     record   u8 0x52 'R' | u16 namespace index | u32 key length | i64 absolute expiry in unix ms
#              (-1: none) | u64 payload length | key | DUMP payload
#     trailer  u8 0x45 'E' | u64 record count; nothing may follow it
#   manifest.json  (0600) describes the data file; its sha256 covers every byte of the data file.
# Modes `rdb` and `replica` keep Redis's own RDB file instead (data file `dump.rdb`, same manifest with
# RDB facts added); readers dispatch on the manifest's `mode`.
from __future__ import annotations

import datetime
import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
import json
import os
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Union

from ansible.module_utils.cutover_rdb import (
    Crc64Check,
    FileChunks,
    RdbError,
    RdbScanner,
    Tee,
    namespace_classifier,
    namespace_matcher,
    payload_intact,
    read_rdb_header,
)

MAGIC = b"CUTSNAP\x00"
FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = (1,)
DATA_FILE_NAME = "keys.cutsnap"
RDB_FILE_NAME = "dump.rdb"
LOGICAL_MODES = ("logical",)
RDB_MODES = ("rdb", "replica")
MANIFEST_FILE_NAME = "manifest.json"
MANIFEST_FORMAT = "cutover-redis-snapshot"
SNAPSHOT_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")
NO_EXPIRY = -1
# (namespace index, keys, absolute expiries in unix ms or -1, DUMP payloads): parallel lists, one namespace
Batch = tuple[int, list[bytes], list[int], list[bytes]]

HEADER = struct.Struct(">8sHI")
RECORD = struct.Struct(">BHIqQ")
TRAILER = struct.Struct(">BQ")
RECORD_TAG = 0x52
TRAILER_TAG = 0x45
READ_CHUNK = 1 << 20
WRITE_BUFFER = 1 << 20
MAX_META_BYTES = 1 << 24
# Payloads larger than this are streamed between file and socket instead of being held in memory.
BIG_PAYLOAD = 8 << 20
PAYLOAD_CHECK_BATCH = 1000


class SnapshotError(Exception):
    """The snapshot is missing, damaged, foreign or does not match its manifest."""


class BackgroundDigest:
    """sha256 computed in a helper thread (hashlib lets go of the GIL), so hashing a chunk overlaps with
    parsing the previous one; at most ``ahead`` chunks wait to be hashed."""

    def __init__(self, ahead: int = 4):
        self._digest = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: deque[Future] = deque()
        self._ahead = ahead

    def update(self, chunk: bytes) -> None:
        if len(self._pending) >= self._ahead:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._digest.update, chunk))

    def hexdigest(self) -> str:
        while self._pending:
            self._pending.popleft().result()
        return self._digest.hexdigest()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def utc_now_iso() -> str:
    """Current time as UTC ISO 8601 with milliseconds and a Z suffix."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


def valid_snapshot_id(snapshot_id: str) -> bool:
    """True for ids usable as one directory name (``.`` and ``..`` are not)."""
    return bool(SNAPSHOT_ID_RE.match(snapshot_id)) and snapshot_id not in (".", "..")


def rdb_version_of(payload: bytes) -> int | None:
    """The RDB version a DUMP payload was serialized with (2 bytes LE before the 8-byte CRC64)."""
    if len(payload) < 10:
        return None
    return int.from_bytes(payload[-10:-8], "little")


# ---------------------------------------------------------------------------------------------------
# Redis glob patterns (SCAN MATCH semantics of stringmatchlen: *, ?, [...] with ^, ranges, \ escapes).
# fnmatch differs ([!...] vs [^...], no escapes), so overlap decisions use this exact translation.

def _class_members(raw: bytes, index: int) -> tuple[set[int], int]:
    """Bytes matched by the class starting after '[' at ``index``; returns (members, next index)."""
    size = len(raw)
    negate = index < size and raw[index] == 0x5E  # '^'
    if negate:
        index += 1
    members: set[int] = set()
    while True:
        remaining = size - index
        if remaining >= 2 and raw[index] == 0x5C:  # '\' escapes the next byte
            index += 1
            members.add(raw[index])
        elif remaining >= 1 and raw[index] == 0x5D:  # ']'
            break
        elif remaining == 0:  # unterminated class: Redis uses what it collected
            index -= 1
            break
        elif remaining >= 3 and raw[index + 1] == 0x2D:  # 'a-z', reversed ranges allowed
            low, high = sorted((raw[index], raw[index + 2]))
            members.update(range(low, high + 1))
            index += 2
        else:
            members.add(raw[index])
        index += 1
    if negate:
        members = set(range(256)) - members
    return members, index + 1


def _class_regex(members: set[int]) -> bytes:
    if not members:
        return b"(?!)"
    return b"[" + b"".join(re.escape(bytes([member])) for member in sorted(members)) + b"]"


def redis_glob_regex(pattern: str) -> re.Pattern[bytes]:
    """Compile a Redis glob pattern into a regex that matches keys (bytes) exactly like SCAN MATCH."""
    return re.compile(redis_glob_source(pattern), re.DOTALL)


def redis_glob_source(pattern: str) -> bytes:
    """The regex source (no capturing groups) that matches what the Redis glob ``pattern`` matches."""
    raw = pattern.encode("utf-8", "surrogateescape")
    parts: list[bytes] = []
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte == 0x2A:  # '*'
            while index + 1 < len(raw) and raw[index + 1] == 0x2A:
                index += 1
            parts.append(b".*")
        elif byte == 0x3F:  # '?'
            parts.append(b".")
        elif byte == 0x5B:  # '['
            members, index = _class_members(raw, index + 1)
            parts.append(_class_regex(members))
            continue
        elif byte == 0x5C and index + 1 < len(raw):
            index += 1
            parts.append(re.escape(raw[index:index + 1]))
        else:
            parts.append(re.escape(raw[index:index + 1]))
        index += 1
    return b"".join(parts)


def pattern_classifier(patterns: list[str]) -> Callable[[bytes], int]:
    """key -> index of the first pattern that matches it (the namespace it belongs to), or -1."""
    return namespace_classifier(patterns, redis_glob_source)


def pattern_matcher(patterns: list[str]) -> Any:
    """The RdbScanner matcher for ``patterns`` (None: every key belongs to the first pattern, ``*``)."""
    return namespace_matcher(patterns, redis_glob_source)


def belongs_filter(patterns: list[str], index: int) -> Callable[[bytes], bool]:
    """Predicate telling whether a key matched by ``patterns[index]`` belongs to that pattern.

    A key belongs to the first pattern (in list order) that matches it, so overlapping patterns never
    capture a key twice and no set of seen keys is needed.
    """
    earlier = [redis_glob_regex(pattern).fullmatch for pattern in patterns[:index]]
    return lambda key: not any(match(key) for match in earlier)


# ---------------------------------------------------------------------------------------------------
# Data file

def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_private(path: str) -> BinaryIO:
    """Create ``path`` exclusively with mode 0600 (whatever the umask) for buffered binary writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb", buffering=WRITE_BUFFER)


class SnapshotWriter:
    """Streams records into a new data file; memory holds one batch at a time."""

    def __init__(self, path: str, snapshot_id: str, mode: str, created_at: str, namespaces: list[str]):
        self.path = path
        self.namespaces = list(namespaces)
        self.counts = [0] * len(namespaces)
        self.rdb_version: int | None = None
        self._hash = BackgroundDigest()
        self._bytes = 0
        self._file = open_private(path)
        meta = json.dumps({"snapshot_id": snapshot_id, "mode": mode, "created_at": created_at,
                           "namespaces": self.namespaces}, sort_keys=True).encode("utf-8")
        self._write(HEADER.pack(MAGIC, FORMAT_VERSION, len(meta)) + meta)

    def _write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)
        self._bytes += len(chunk)

    def add_batch(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        """Append one batch of records of one namespace (the three lists are parallel)."""
        if not keys:
            return
        pack = RECORD.pack
        parts: list[bytes] = []
        append = parts.append
        for key, expiry, payload in zip(keys, expiries, payloads):
            append(pack(RECORD_TAG, namespace_index, len(key), expiry, len(payload)))
            append(key)
            append(payload)
        self._write(b"".join(parts))
        self.counts[namespace_index] += len(keys)
        if self.rdb_version is None:
            self.rdb_version = rdb_version_of(payloads[0])

    def add_big(self, namespace_index: int, key: bytes, expiry: int, length: int, chunks: Iterator[bytes]) -> None:
        """Append one record whose ``length``-byte payload arrives in chunks (never all in memory)."""
        self._write(RECORD.pack(RECORD_TAG, namespace_index, len(key), expiry, length) + key)
        written, tail = 0, b""
        for chunk in chunks:
            self._write(chunk)
            written += len(chunk)
            tail = (tail + chunk)[-10:]
        if written != length:
            raise SnapshotError("a %d-byte payload ended after %d bytes" % (length, written))
        self.counts[namespace_index] += 1
        if self.rdb_version is None:
            self.rdb_version = rdb_version_of(tail)

    def finish(self) -> tuple[int, str]:
        """Write the trailer, flush and fsync; returns (bytes, sha256 hex)."""
        self._write(TRAILER.pack(TRAILER_TAG, sum(self.counts)))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._bytes, self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._hash.close()


class PreparedBatch(NamedTuple):
    """Records of one namespace ready to send (SnapshotReader.prepared_batches)."""

    namespace_index: int
    keys: list[bytes]
    expiries: list[int]
    payloads: list[Any]
    exists_arguments: bytes
    commands: bytes
    expired: int


class BigRecord:
    """A record whose payload is streamed from the data file by ``chunks()`` (read it before the next record)."""

    def __init__(self, reader: "SnapshotReader", namespace_index: int, key: bytes, expiry: int, length: int):
        self.namespace_index = namespace_index
        self.key = key
        self.expiry = expiry
        self.length = length
        self._reader = reader
        self._left = length

    def chunks(self, size: int = READ_CHUNK) -> Iterator[bytes]:
        while self._left:
            chunk = self._reader._take(min(size, self._left))
            if not chunk:
                raise SnapshotError("%s is truncated inside the payload of key %r" % (self._reader.path, self.key[:100]))
            self._left -= len(chunk)
            yield chunk

    def drain(self) -> None:
        for _chunk in self.chunks():
            pass


class SnapshotReader:
    """Streams the records of a data file in bounded memory, hashing every byte it reads.

    ``read_header()`` first, then iterate ``batches()`` (or ``walk()`` to only check and count); after the
    trailer, ``sha256``, ``counts`` and ``total`` describe the file. Raises SnapshotError on anything that
    is not a well-formed data file; ``read_data_file`` records that error in ``damage`` instead and hashes
    the rest of the file.
    """

    def __init__(self, path: str):
        self.path = path
        self.meta: dict[str, Any] = {}
        self.namespaces: list[str] = []
        self.counts: list[int] = []
        self.bytes = 0
        self.damage: str | None = None
        # after check_payloads(): (RDB version, key) of the payload with the newest RDB version
        self.newest_payload: tuple[int, bytes] = (0, b"")
        self._hash = BackgroundDigest()
        self._file = open(path, "rb", buffering=0)
        self._buffer = b""
        self._pos = 0
        self._eof = False

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._file.close()
        self._hash.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def total(self) -> int:
        return sum(self.counts)

    def _read_file(self, size: int) -> bytes:
        chunk = self._file.read(size)
        if chunk:
            self._hash.update(chunk)
            self.bytes += len(chunk)
        else:
            self._eof = True
        return chunk

    def _fill(self, needed: int) -> bool:
        """Make ``needed`` unread bytes available; False when the file ends first."""
        available = len(self._buffer) - self._pos
        if available >= needed:
            return True
        parts = [self._buffer[self._pos:]]
        while available < needed and not self._eof:
            chunk = self._read_file(max(READ_CHUNK, needed - available))
            parts.append(chunk)
            available += len(chunk)
        self._buffer = b"".join(parts)
        self._pos = 0
        return available >= needed

    def _take(self, size: int) -> bytes:
        """Up to ``size`` bytes: what the buffer holds first, then straight from the file."""
        if self._pos < len(self._buffer):
            chunk = self._buffer[self._pos:self._pos + size]
            self._pos += len(chunk)
            return chunk
        return b"" if self._eof else self._read_file(size)

    def drain(self) -> None:
        """Hash the rest of the file (after a parse error), so ``sha256`` covers all of it."""
        while not self._eof:
            self._buffer, self._pos = b"", 0
            self._fill(READ_CHUNK)

    def read_header(self) -> dict[str, Any]:
        if not self._fill(HEADER.size):
            raise SnapshotError("%s is not a cutover snapshot data file (too short for a header)" % self.path)
        magic, version, meta_length = HEADER.unpack_from(self._buffer, self._pos)
        if magic != MAGIC:
            raise SnapshotError("%s is not a cutover snapshot data file (magic %r, expected %r)"
                                % (self.path, magic, MAGIC))
        if version not in KNOWN_FORMAT_VERSIONS:
            raise SnapshotError("%s has data format version %d; this cutover reads versions %s"
                                % (self.path, version, ", ".join(map(str, KNOWN_FORMAT_VERSIONS))))
        self._pos += HEADER.size
        if meta_length > MAX_META_BYTES or not self._fill(meta_length):
            raise SnapshotError("%s is truncated or damaged inside its header" % self.path)
        try:
            self.meta = json.loads(self._buffer[self._pos:self._pos + meta_length].decode("utf-8"))
            self.namespaces = list(self.meta["namespaces"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError("%s has an unreadable header: %s" % (self.path, exc))
        self._pos += meta_length
        self.counts = [0] * len(self.namespaces)
        return self.meta

    def _bad_record(self, tag: int, namespace_index: int) -> SnapshotError:
        return SnapshotError("%s is damaged: record %d has tag %d and namespace %d"
                             % (self.path, self.total + 1, tag, namespace_index))

    def walk(self) -> None:
        """Check every record and count it, without building keys or payloads (verification)."""
        unpack = RECORD.unpack_from
        header_size = RECORD.size
        counts = self.counts
        namespace_count = len(counts)
        while True:
            buffer, pos = self._buffer, self._pos
            buffer_end = len(buffer) - header_size
            while pos <= buffer_end:
                tag, namespace_index, key_length, _expiry, payload_length = unpack(buffer, pos)
                if tag != RECORD_TAG or namespace_index >= namespace_count:
                    if tag == TRAILER_TAG:
                        break
                    self._pos = pos
                    raise self._bad_record(tag, namespace_index)
                pos += header_size + key_length + payload_length
                counts[namespace_index] += 1
            if pos > len(buffer):  # the last record runs past the buffer: skip the rest of it from the file
                self._buffer, self._pos = b"", 0
                missing = pos - len(buffer)
                while missing:
                    chunk = self._read_file(min(missing, READ_CHUNK))
                    if not chunk:
                        raise SnapshotError("%s is truncated inside record %d" % (self.path, self.total))
                    missing -= len(chunk)
                continue
            self._pos = pos
            if pos < len(buffer) and buffer[pos] == TRAILER_TAG and self._fill(TRAILER.size):
                self._read_trailer()
                return
            if not self._fill(header_size):
                if self._fill(TRAILER.size) and self._buffer[self._pos] == TRAILER_TAG:
                    self._read_trailer()
                    return
                if len(self._buffer) - self._pos:
                    raise SnapshotError("%s is truncated inside record %d" % (self.path, self.total + 1))
                raise SnapshotError("%s is truncated: it ends after %d records without a trailer"
                                    % (self.path, self.total))

    def check_payloads(self) -> None:
        """walk() that also checks every DUMP payload as RESTORE will (length and CRC-64 trailer) and notes the
        newest RDB version among them, so a restore refuses a damaged snapshot before its first write."""
        for batch in self.batches(PAYLOAD_CHECK_BATCH, big_threshold=BIG_PAYLOAD):
            if isinstance(batch, BigRecord):
                self._check_big_payload(batch)
                continue
            _index, keys, _expiries, payloads = batch
            check = Crc64Check()
            check.update(b"".join(payloads))
            if check.residue or min(map(len, payloads)) < 10:  # then one of them fails: intact ones add up to 0
                position, key = next((position, key) for position, (key, payload) in enumerate(zip(keys, payloads))
                                     if not payload_intact(payload))
                raise self._bad_payload(key, self.total - len(keys) + position + 1)
            versions = {payload[-10:-8] for payload in payloads}
            self._note_version(max(versions, key=lambda version: int.from_bytes(version, "little")), keys, payloads)

    def _check_big_payload(self, record: BigRecord) -> None:
        check, tail = Crc64Check(), b""
        for chunk in record.chunks():
            check.update(chunk)
            tail = (tail + chunk[-10:])[-10:]
        if check.residue:
            raise self._bad_payload(record.key, self.total)
        self._note_version(tail[:2], [record.key], [tail])

    def _bad_payload(self, key: bytes, record_number: int) -> SnapshotError:
        return SnapshotError("%s is damaged: the payload of key %r (record %d) fails its CRC-64 check, so Redis "
                             "would refuse it" % (self.path, key[:200], record_number))

    def _note_version(self, version_bytes: bytes, keys: list[bytes], payloads: list[bytes]) -> None:
        version = int.from_bytes(version_bytes, "little")
        if version > self.newest_payload[0]:
            key = next(key for key, payload in zip(keys, payloads) if payload[-10:-8] == version_bytes)
            self.newest_payload = (version, key)

    def batches(self, batch_size: int, selected: list[bool] | None = None,
                big_threshold: int | None = None) -> Iterator[Union[Batch, BigRecord]]:
        """Yield (namespace index, keys, absolute expiries ms or -1, DUMP payloads) up to the trailer.

        Each batch holds at most ``batch_size`` records of one namespace, in file order. Records of
        namespaces not ``selected`` (a flag per namespace; default all) are counted but not returned.
        With ``big_threshold``, a record whose payload is larger comes alone as a BigRecord, to be streamed.
        """
        unpack = RECORD.unpack_from
        header_size = RECORD.size
        counts = self.counts
        namespace_count = len(counts)
        wanted = selected if selected is not None else [True] * namespace_count
        current = -1
        keys: list[bytes] = []
        expiries: list[int] = []
        payloads: list[bytes] = []
        buffer, pos = self._buffer, self._pos
        buffer_end = len(buffer)
        while True:
            if pos + header_size > buffer_end:
                buffer, pos, buffer_end = self._refill(pos, header_size)
                if pos + TRAILER.size > buffer_end:
                    raise SnapshotError("%s is truncated: it ends after %d records without a trailer"
                                        % (self.path, sum(counts)))
            if buffer[pos] == TRAILER_TAG:
                self._pos = pos
                self._read_trailer()
                if keys:
                    yield current, keys, expiries, payloads
                return
            if pos + header_size > buffer_end:
                raise SnapshotError("%s is truncated inside record %d" % (self.path, sum(counts) + 1))
            tag, namespace_index, key_length, expiry, payload_length = unpack(buffer, pos)
            if tag != RECORD_TAG or namespace_index >= namespace_count:
                raise SnapshotError("%s is damaged: record %d has tag %d and namespace %d"
                                    % (self.path, sum(counts) + 1, tag, namespace_index))
            if big_threshold is not None and payload_length > big_threshold:
                if keys:
                    yield current, keys, expiries, payloads
                    keys, expiries, payloads = [], [], []
                buffer, pos, buffer_end = self._refill(pos, header_size + key_length)
                if pos + header_size + key_length > buffer_end:
                    raise SnapshotError("%s is truncated inside record %d" % (self.path, sum(counts) + 1))
                key = buffer[pos + header_size:pos + header_size + key_length]
                self._pos = pos + header_size + key_length
                counts[namespace_index] += 1
                big = BigRecord(self, namespace_index, key, expiry, payload_length)
                if wanted[namespace_index]:
                    yield big
                big.drain()
                buffer, pos, buffer_end = self._buffer, self._pos, len(self._buffer)
                continue
            end = pos + header_size + key_length + payload_length
            if end > buffer_end:
                buffer, pos, buffer_end = self._refill(pos, end - pos)
                end = pos + header_size + key_length + payload_length
                if end > buffer_end:
                    raise SnapshotError("%s is truncated inside record %d" % (self.path, sum(counts) + 1))
            counts[namespace_index] += 1
            if wanted[namespace_index]:
                if namespace_index != current or len(keys) >= batch_size:
                    if keys:
                        yield current, keys, expiries, payloads
                        keys, expiries, payloads = [], [], []
                    current = namespace_index
                key_end = pos + header_size + key_length
                keys.append(buffer[pos + header_size:key_end])
                expiries.append(expiry)
                payloads.append(buffer[key_end:end])
            pos = end

    def prepared_batches(self, batch_size: int, selected: list[bool], big_threshold: int, head: bytes, tail: bytes,
                         now_ms: Callable[[], int]) -> Iterator[Union[PreparedBatch, BigRecord]]:
        """batches() for a restore: each batch also carries its records as ready RESP - ``head`` + key + ttl +
        payload + ``tail`` per record, and the keys as EXISTS arguments. Records whose expiry is at or before
        ``now_ms()`` (read once per batch) are left out and counted. A batch is first walked (offsets only),
        then built with comprehensions: the fastest shape for CPython."""
        unpack = RECORD.unpack_from
        header_size = RECORD.size
        counts = self.counts
        namespace_count = len(counts)
        while True:
            if not self._fill(header_size) and not self._fill(TRAILER.size):
                raise SnapshotError("%s is truncated: it ends after %d records without a trailer" % (self.path, self.total)
                                    if len(self._buffer) == self._pos else
                                    "%s is truncated inside record %d" % (self.path, self.total + 1))
            buffer, pos = self._buffer, self._pos
            buffer_end = len(buffer)
            if buffer[pos] == TRAILER_TAG and pos + TRAILER.size <= buffer_end:
                self._read_trailer()
                return
            if pos + header_size > buffer_end:
                raise SnapshotError("%s is truncated inside record %d" % (self.path, self.total + 1))
            now = now_ms()
            current = -1
            spans: list[tuple[int, int, int, int]] = []  # (key start, key end, expiry, payload end)
            expired = 0
            big = None
            while pos + header_size <= buffer_end:
                tag, namespace_index, key_length, expiry, payload_length = unpack(buffer, pos)
                if tag != RECORD_TAG or namespace_index >= namespace_count:
                    if tag == TRAILER_TAG:
                        break
                    self._pos = pos
                    raise self._bad_record(tag, namespace_index)
                if namespace_index != current and (spans or expired):
                    break
                if payload_length > big_threshold:
                    if spans or expired:
                        break
                    big = (namespace_index, key_length, expiry, payload_length)
                    break
                key_start = pos + header_size
                key_end = key_start + key_length
                end = key_end + payload_length
                if end > buffer_end:
                    break
                wanted = selected[namespace_index]
                if wanted and not 0 <= expiry <= now and len(spans) >= batch_size:
                    break
                counts[namespace_index] += 1
                pos = end
                if not wanted:
                    current = -1
                    continue
                current = namespace_index
                if 0 <= expiry <= now:
                    expired += 1
                else:
                    spans.append((key_start, key_end, expiry, end))
            self._pos = pos
            if spans or expired:
                yield self._prepare(buffer, current, spans, expired, head, tail)
                continue
            if big is not None:
                yield from self._big_record(*big, selected)
                continue
            if pos + TRAILER.size <= buffer_end and buffer[pos] == TRAILER_TAG:
                continue
            needed = header_size  # the next record is not wholly in the buffer: read on until it is
            if buffer_end - pos >= header_size:
                _tag, _index, key_length, _expiry, payload_length = unpack(buffer, pos)
                needed += key_length + payload_length
            if not self._fill(needed):
                raise SnapshotError("%s is truncated inside record %d" % (self.path, self.total + 1))

    @staticmethod
    def _prepare(buffer: bytes, namespace_index: int, spans: list[tuple[int, int, int, int]], expired: int,
                 head: bytes, tail: bytes) -> PreparedBatch:
        view = memoryview(buffer)
        keys = [buffer[start:end] for start, end, _expiry, _payload_end in spans]
        bulks = [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        expiries = [expiry for _start, _end, expiry, _payload_end in spans]
        payloads = [view[key_end:payload_end] for _start, key_end, _expiry, payload_end in spans]
        ttls = [b"$1\r\n0\r\n" if expiry <= 0 else b"$%d\r\n%d\r\n" % (len(b"%d" % expiry), expiry)
                for expiry in expiries]
        commands = b"".join([b"%b%b%b$%d\r\n%b\r\n%b" % (head, bulk, ttl, len(payload), payload, tail)
                             for bulk, ttl, payload in zip(bulks, ttls, payloads)])
        return PreparedBatch(namespace_index, keys, expiries, payloads, b"".join(bulks), commands, expired)

    def _big_record(self, namespace_index: int, key_length: int, expiry: int, payload_length: int,
                    selected: list[bool]) -> Iterator[BigRecord]:
        header_size = RECORD.size
        if not self._fill(header_size + key_length):
            raise SnapshotError("%s is truncated inside record %d" % (self.path, self.total + 1))
        key = self._buffer[self._pos + header_size:self._pos + header_size + key_length]
        self._pos += header_size + key_length
        self.counts[namespace_index] += 1
        big = BigRecord(self, namespace_index, key, expiry, payload_length)
        if selected[namespace_index]:
            yield big
        big.drain()

    def _refill(self, pos: int, needed: int) -> tuple[bytes, int, int]:
        self._pos = pos
        self._fill(needed)
        return self._buffer, self._pos, len(self._buffer)

    def _read_trailer(self) -> None:
        tag, record_count = TRAILER.unpack_from(self._buffer, self._pos)
        self._pos += TRAILER.size
        if record_count != self.total:
            raise SnapshotError("%s is damaged: its trailer counts %d records, the file holds %d"
                                % (self.path, record_count, self.total))
        if self._fill(1):
            raise SnapshotError("%s has unexpected data after its trailer" % self.path)


# ---------------------------------------------------------------------------------------------------
# Manifest and verification

MANIFEST_REQUIRED = ("format_version", "snapshot_id", "mode", "created_at", "namespaces", "keys",
                     "data_file", "bytes", "sha256")


def load_manifest(directory: str) -> dict[str, Any]:
    """Read and sanity-check ``<directory>/manifest.json``; SnapshotError says what is wrong."""
    path = os.path.join(directory, MANIFEST_FILE_NAME)
    try:
        with open(path, "rb") as handle:
            manifest = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise SnapshotError("%s has no %s" % (directory, MANIFEST_FILE_NAME))
    except (OSError, ValueError) as exc:
        raise SnapshotError("%s is not readable JSON: %s" % (path, exc))
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise SnapshotError("%s is not a cutover snapshot manifest (format is not %r)" % (path, MANIFEST_FORMAT))
    missing = [field for field in MANIFEST_REQUIRED if field not in manifest]
    if missing:
        raise SnapshotError("%s lacks the fields: %s" % (path, ", ".join(missing)))
    if manifest["format_version"] not in KNOWN_FORMAT_VERSIONS:
        raise SnapshotError("%s has format version %r; this cutover reads versions %s"
                            % (path, manifest["format_version"], ", ".join(map(str, KNOWN_FORMAT_VERSIONS))))
    data_file = manifest["data_file"]
    if not isinstance(data_file, str) or os.path.basename(data_file) != data_file or data_file in ("", ".", ".."):
        raise SnapshotError("%s names data file %r, which is not a plain file name" % (path, data_file))
    if not isinstance(manifest["namespaces"], dict):
        raise SnapshotError("%s: namespaces must map each pattern to its key count" % path)
    return manifest


def read_data_file(path: str, check_payloads: bool = False) -> SnapshotReader:
    """Read a whole data file; returns the exhausted reader (sha256, counts, total, meta). With
    ``check_payloads``, every DUMP payload is checked as RESTORE checks it (SnapshotReader.check_payloads)."""
    try:
        reader = SnapshotReader(path)
    except OSError as exc:
        raise SnapshotError("cannot read data file %s: %s" % (path, exc))
    with reader:
        reader.read_header()
        try:
            if check_payloads:
                reader.check_payloads()
            else:
                reader.walk()
        except SnapshotError as damage:
            reader.drain()
            reader.damage = str(damage)
    return reader


def check_data_file(path: str, sha256: str, namespaces: dict[str, int], snapshot_id: str | None = None,
                    check_payloads: bool = False) -> SnapshotReader:
    """Re-read the data file and compare its sha256 and per-namespace record counts with the expectation."""
    reader = read_data_file(path, check_payloads)
    damage = reader.damage
    if reader.sha256 != sha256:
        raise SnapshotError("checksum mismatch: sha256 of %s is %s, the manifest says %s%s"
                            % (path, reader.sha256, sha256, " (%s)" % damage if damage else ""))
    if damage:
        raise SnapshotError(damage)
    if snapshot_id is not None and reader.meta.get("snapshot_id") != snapshot_id:
        raise SnapshotError("%s belongs to snapshot %r, not %r" % (path, reader.meta.get("snapshot_id"), snapshot_id))
    found = dict(zip(reader.namespaces, reader.counts))
    if found != namespaces:
        raise SnapshotError("record count mismatch in %s: the file holds %s, the manifest says %s"
                            % (path, json.dumps(found), json.dumps(namespaces)))
    return reader


@dataclass
class RdbCheck:
    """What re-reading an RDB snapshot established (the counterpart of an exhausted SnapshotReader)."""

    namespaces: list[str]
    sha256: str
    bytes: int
    summary: Any


def rdb_manifest_problem(manifest: dict[str, Any]) -> str | None:
    missing = [name for name in ("rdb_version", "databases", "db") if name not in manifest]
    if missing:
        return "an %s snapshot manifest lacks the fields: %s" % (manifest["mode"], ", ".join(missing))
    return None


def check_rdb_file(path: str, manifest: dict[str, Any]) -> RdbCheck:
    """Re-read an RDB snapshot end to end: sha256, RDB structure, keys per database and per namespace."""
    patterns = list(manifest["namespaces"])
    digest = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            source = Tee(FileChunks(handle), digest)
            scanner = RdbScanner(source, pattern_matcher(patterns), len(patterns), int(manifest["db"]))
            try:
                summary = scanner.scan()
                damage = None
            except RdbError as exc:
                damage, summary = str(exc), None
                while source.read_chunk(READ_CHUNK * 4):
                    pass
    except OSError as exc:
        raise SnapshotError("cannot read data file %s: %s" % (path, exc))
    if digest.hexdigest() != manifest["sha256"]:
        raise SnapshotError("checksum mismatch: sha256 of %s is %s, the manifest says %s%s"
                            % (path, digest.hexdigest(), manifest["sha256"], " (%s)" % damage if damage else ""))
    if damage:
        raise SnapshotError("%s: %s" % (path, damage))
    found = dict(zip(patterns, summary.namespace_counts))
    databases = {str(db): count for db, count in sorted(summary.databases.items())}
    if found != manifest["namespaces"] or databases != manifest["databases"]:
        raise SnapshotError("key count mismatch in %s: the file holds %s in databases %s, the manifest says %s in %s"
                            % (path, json.dumps(found), json.dumps(databases), json.dumps(manifest["namespaces"]),
                               json.dumps(manifest["databases"])))
    if summary.rdb_version != manifest["rdb_version"] or source.bytes != manifest["bytes"]:
        raise SnapshotError("%s is RDB version %d in %d bytes, the manifest says %s in %s"
                            % (path, summary.rdb_version, source.bytes, manifest["rdb_version"], manifest["bytes"]))
    return RdbCheck(namespaces=patterns, sha256=digest.hexdigest(), bytes=source.bytes, summary=summary)


def verify_snapshot(directory: str, manifest: dict[str, Any] | None = None
                    ) -> tuple[dict[str, Any], Union[SnapshotReader, RdbCheck]]:
    """Check a snapshot directory end to end: manifest (read here unless given), format, sha256, structure and key
    counts, and for a logical snapshot every DUMP payload's own CRC-64 (an RDB file is checked by Redis loading it)."""
    if manifest is None:
        manifest = load_manifest(directory)
    data_path = os.path.join(directory, manifest["data_file"])
    if manifest["mode"] in RDB_MODES:
        problem = rdb_manifest_problem(manifest)
        if problem:
            raise SnapshotError("%s: %s" % (os.path.join(directory, MANIFEST_FILE_NAME), problem))
        return manifest, check_rdb_file(data_path, manifest)
    if manifest["mode"] not in LOGICAL_MODES:
        raise SnapshotError("%s has mode %r; this cutover knows the modes %s"
                            % (os.path.join(directory, MANIFEST_FILE_NAME), manifest["mode"],
                               ", ".join(LOGICAL_MODES + RDB_MODES)))
    reader = check_data_file(data_path, manifest["sha256"], manifest["namespaces"], manifest["snapshot_id"],
                             check_payloads=True)
    if reader.total != manifest["keys"] or reader.bytes != manifest["bytes"]:
        raise SnapshotError("%s holds %d records in %d bytes, the manifest says %d in %d"
                            % (data_path, reader.total, reader.bytes, manifest["keys"], manifest["bytes"]))
    return manifest, reader


def quick_check_rdb(directory: str, manifest: dict[str, Any]) -> str:
    """Cheap checks of an RDB snapshot before it is hashed while being copied: returns the data path."""
    data_path = os.path.join(directory, manifest["data_file"])
    problem = rdb_manifest_problem(manifest)
    if problem:
        raise SnapshotError(problem)
    try:
        version = read_rdb_header(data_path)
        size = os.path.getsize(data_path)
    except (RdbError, OSError) as exc:
        raise SnapshotError(str(exc))
    if version != manifest["rdb_version"] or size != manifest["bytes"]:
        raise SnapshotError("%s is RDB version %d in %d bytes, the manifest says %s in %s"
                            % (data_path, version, size, manifest["rdb_version"], manifest["bytes"]))
    return data_path


def snapshot_summary(directory: str, manifest: dict[str, Any], verified: bool) -> dict[str, Any]:
    """The ``snapshot`` value both modules return."""
    return {
        "id": manifest["snapshot_id"],
        "run_id": manifest.get("run_id"),
        "source": manifest.get("source"),
        "path": directory,
        "manifest": os.path.join(directory, MANIFEST_FILE_NAME),
        "data_file": os.path.join(directory, manifest["data_file"]),
        "mode": manifest["mode"],
        "keys": manifest["keys"],
        "namespaces": manifest["namespaces"],
        "vanished": manifest.get("vanished", 0),
        "expired": manifest.get("expired", 0),
        "bytes": manifest["bytes"],
        "sha256": manifest["sha256"],
        "verified": verified,
        "created_at": manifest["created_at"],
    }


class SnapshotDirectory:
    """A snapshot being built in a hidden temp dir beside its final place, moved there in one rename."""

    def __init__(self, dest: str, snapshot_id: str):
        self.final_path = os.path.join(dest, snapshot_id)
        self.temp_path = tempfile.mkdtemp(prefix=".%s.partial-" % snapshot_id, dir=dest)
        os.chmod(self.temp_path, 0o700)

    def file_path(self, name: str) -> str:
        return os.path.join(self.temp_path, name)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        with open_private(self.file_path(MANIFEST_FILE_NAME)) as handle:
            handle.write(json.dumps(manifest, indent=2).encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def commit(self) -> None:
        """Publish the snapshot; fails (keeping the existing one) if the final path appeared meanwhile."""
        fsync_directory(self.temp_path)
        if os.path.lexists(self.final_path):
            raise SnapshotError("%s appeared while this snapshot was being written; it was left alone"
                                % self.final_path)
        os.rename(self.temp_path, self.final_path)
        fsync_directory(os.path.dirname(self.final_path))

    def discard(self) -> None:
        shutil.rmtree(self.temp_path, ignore_errors=True)


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (and parents) if absent; a directory this call creates gets mode 0700."""
    if os.path.isdir(path):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def free_bytes(path: str) -> int:
    """Free bytes for unprivileged writers on the filesystem that holds ``path`` (or its nearest parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize


# ---------------------------------------------------------------------------------------------------
# Housekeeping: list and prune the snapshots of a dest folder

PARTIAL_RE = re.compile(r"^\.(?P<id>[A-Za-z0-9._-]+)\.partial-[A-Za-z0-9_]+$")


def list_snapshots(dest: str) -> list[dict[str, Any]]:
    """Every snapshot directory of ``dest`` (oldest first) with its manifest facts, or the reason it is not one.

    Cheap: reads manifests and stats data files; ``verify_snapshot`` is the full check.
    """
    entries = []
    try:
        names = sorted(os.listdir(dest))
    except FileNotFoundError:
        return []
    for name in names:
        path = os.path.join(dest, name)
        if name.startswith(".") or not os.path.isdir(path) or os.path.islink(path):
            continue
        entry: dict[str, Any] = {"id": name, "path": path, "state": "ok", "problem": None, "mode": None,
                                 "created_at": None, "keys": None, "bytes": None, "run_id": None}
        try:
            manifest = load_manifest(path)
            size = os.path.getsize(os.path.join(path, manifest["data_file"]))
            entry.update(mode=manifest["mode"], created_at=manifest["created_at"], keys=manifest["keys"],
                         bytes=manifest["bytes"], run_id=manifest.get("run_id"))
            if manifest["snapshot_id"] != name:
                entry.update(state="foreign", problem="its manifest names snapshot %r" % manifest["snapshot_id"])
            elif size != manifest["bytes"]:
                entry.update(state="damaged", problem="data file has %d bytes, the manifest says %d"
                             % (size, manifest["bytes"]))
        except (SnapshotError, OSError) as exc:
            entry.update(state="foreign", problem=str(exc))
        entries.append(entry)
    entries.sort(key=lambda entry: (entry["created_at"] or "", entry["id"]))
    return entries


def stale_partials(dest: str, older_than_s: float) -> list[str]:
    """Staging directories left by snapshots that died, untouched for ``older_than_s`` seconds."""
    try:
        names = os.listdir(dest)
    except FileNotFoundError:
        return []
    cutoff = time.time() - older_than_s
    return sorted(os.path.join(dest, name) for name in names
                  if PARTIAL_RE.match(name) and os.path.getmtime(os.path.join(dest, name)) < cutoff)


def prune_plan(snapshots: list[dict[str, Any]], keep: int, protect: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(snapshots to delete, why each kept one stays). Only verified-looking cutover snapshots are ever
    deleted: the ``keep`` newest stay, protected ids stay, foreign or damaged directories stay."""
    ours = [entry for entry in snapshots if entry["state"] == "ok"]
    newest = {entry["id"] for entry in ours[len(ours) - keep:]} if keep else set()
    delete, reasons = [], []
    for entry in snapshots:
        if entry["state"] != "ok":
            reasons.append("%s: %s, left for a human (%s)" % (entry["id"], entry["state"], entry["problem"]))
        elif entry["id"] in protect:
            reasons.append("%s: protected (a pending rollback may need it)" % entry["id"])
        elif entry["id"] in newest:
            reasons.append("%s: one of the %d newest" % (entry["id"], keep))
        else:
            delete.append(entry)
    return delete, reasons


def remove_snapshot(path: str) -> None:
    """Delete a snapshot directory: first renamed aside, so a crash never leaves a half-deleted snapshot
    under its own name."""
    doomed = tempfile.mkdtemp(prefix=".deleting-", dir=os.path.dirname(path))
    os.rename(path, os.path.join(doomed, "snapshot"))
    shutil.rmtree(doomed)


# ---------------------------------------------------------------------------------------------------
# Redis-side helpers shared by both modules

class ServerClock:
    """The Redis server's clock in unix ms, read once with TIME and advanced with the local monotonic clock.

    Expiries in snapshots are absolute server times, so "expired" is judged on the server's clock.
    """

    def __init__(self, client: Any):
        seconds, microseconds = client.time()
        self._base_ms = int(seconds) * 1000 + int(microseconds) // 1000
        self._started = time.monotonic()

    def now_ms(self) -> int:
        return self._base_ms + int((time.monotonic() - self._started) * 1000)


def server_version(client: Any) -> tuple[str, tuple[int, ...]]:
    """(``redis_version`` string, its numeric tuple) from INFO server."""
    text = str(client.info("server").get("redis_version", "0"))
    numbers = tuple(int(part) for part in re.findall(r"\d+", text)[:3])
    return text, numbers


def scripting_allowed(client: Any, response_error: type) -> bool:
    """Whether this connection may run Lua (ACLs such as ``-@scripting`` or renamed EVAL forbid it)."""
    try:
        return client.eval("return 1", 0) == 1
    except response_error as exc:
        text = str(exc).lower()
        if "noperm" in text or "no permissions" in text or "unknown command" in text:
            return False
        raise
