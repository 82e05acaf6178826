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
# The record layout does not depend on the capture mode: a future `rdb` or `replica` mode writes its own
# data file named in the manifest (`data_file`) and its own `mode`; readers dispatch on `mode`.
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import time
from typing import Any, BinaryIO, Callable, Iterator

MAGIC = b"CUTSNAP\x00"
FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = (1,)
DATA_FILE_NAME = "keys.cutsnap"
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


class SnapshotError(Exception):
    """The snapshot is missing, damaged, foreign or does not match its manifest."""


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
    return re.compile(b"".join(parts), re.DOTALL)


def belongs_filter(patterns: list[str], index: int) -> Callable[[bytes], bool]:
    """Predicate telling whether a key matched by ``patterns[index]`` belongs to that pattern.

    A key belongs to the first pattern (in list order) that matches it, so overlapping patterns never
    capture a key twice and no set of seen keys is needed.
    """
    earlier = [redis_glob_regex(pattern).fullmatch for pattern in patterns[:index]]
    return lambda key: not any(match(key) for match in earlier)


# ---------------------------------------------------------------------------------------------------
# Data file

def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_private(path: str) -> BinaryIO:
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
        self._hash = hashlib.sha256()
        self._bytes = 0
        self._file = _open_private(path)
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


class SnapshotReader:
    """Streams the records of a data file in bounded memory, hashing every byte it reads.

    ``read_header()`` first, then iterate ``batches()``; after the trailer, ``sha256``, ``counts`` and
    ``total`` describe the file. Raises SnapshotError on anything that is not a well-formed data file;
    ``read_data_file`` records that error in ``damage`` instead and hashes the rest of the file.
    """

    def __init__(self, path: str):
        self.path = path
        self.meta: dict[str, Any] = {}
        self.namespaces: list[str] = []
        self.counts: list[int] = []
        self.bytes = 0
        self.damage: str | None = None
        self._hash = hashlib.sha256()
        self._file = open(path, "rb", buffering=0)
        self._buffer = b""
        self._pos = 0
        self._eof = False

    def __enter__(self) -> "SnapshotReader":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._file.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    @property
    def total(self) -> int:
        return sum(self.counts)

    def _fill(self, needed: int) -> bool:
        """Make ``needed`` unread bytes available; False when the file ends first."""
        available = len(self._buffer) - self._pos
        if available >= needed:
            return True
        parts = [self._buffer[self._pos:]]
        while available < needed and not self._eof:
            chunk = self._file.read(max(READ_CHUNK, needed - available))
            if not chunk:
                self._eof = True
                break
            self._hash.update(chunk)
            self.bytes += len(chunk)
            parts.append(chunk)
            available += len(chunk)
        self._buffer = b"".join(parts)
        self._pos = 0
        return available >= needed

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

    def batches(self, batch_size: int, selected: list[bool] | None = None) -> Iterator[Batch]:
        """Yield (namespace index, keys, absolute expiries ms or -1, DUMP payloads) up to the trailer.

        Each batch holds at most ``batch_size`` records of one namespace, in file order. Records of
        namespaces not ``selected`` (a flag per namespace; default all) are counted but not returned,
        so verification walks the file with ``selected`` all false.
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


def read_data_file(path: str) -> SnapshotReader:
    """Read a whole data file; returns the exhausted reader (sha256, counts, total, meta)."""
    try:
        reader = SnapshotReader(path)
    except OSError as exc:
        raise SnapshotError("cannot read data file %s: %s" % (path, exc))
    with reader:
        reader.read_header()
        try:
            for _batch in reader.batches(1, [False] * len(reader.namespaces)):
                pass
        except SnapshotError as damage:
            reader.drain()
            reader.damage = str(damage)
    return reader


def check_data_file(path: str, sha256: str, namespaces: dict[str, int], snapshot_id: str | None = None) -> SnapshotReader:
    """Re-read the data file and compare its sha256 and per-namespace record counts with the expectation."""
    reader = read_data_file(path)
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


def verify_snapshot(directory: str) -> tuple[dict[str, Any], SnapshotReader]:
    """Check a snapshot directory end to end: manifest, magic, version, sha256, counts, trailer."""
    manifest = load_manifest(directory)
    data_path = os.path.join(directory, manifest["data_file"])
    reader = check_data_file(data_path, manifest["sha256"], manifest["namespaces"], manifest["snapshot_id"])
    if reader.total != manifest["keys"] or reader.bytes != manifest["bytes"]:
        raise SnapshotError("%s holds %d records in %d bytes, the manifest says %d in %d"
                            % (data_path, reader.total, reader.bytes, manifest["keys"], manifest["bytes"]))
    return manifest, reader


def snapshot_summary(directory: str, manifest: dict[str, Any], verified: bool) -> dict[str, Any]:
    """The ``snapshot`` value both modules return."""
    return {
        "id": manifest["snapshot_id"],
        "path": directory,
        "manifest": os.path.join(directory, MANIFEST_FILE_NAME),
        "data_file": os.path.join(directory, manifest["data_file"]),
        "mode": manifest["mode"],
        "keys": manifest["keys"],
        "namespaces": manifest["namespaces"],
        "vanished": manifest.get("vanished", 0),
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
        with _open_private(self.file_path(MANIFEST_FILE_NAME)) as handle:
            handle.write(json.dumps(manifest, indent=2).encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def commit(self) -> None:
        """Publish the snapshot; fails (keeping the existing one) if the final path appeared meanwhile."""
        _fsync_directory(self.temp_path)
        if os.path.lexists(self.final_path):
            raise SnapshotError("%s appeared while this snapshot was being written; it was left alone"
                                % self.final_path)
        os.rename(self.temp_path, self.final_path)
        _fsync_directory(os.path.dirname(self.final_path))

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
