# -*- coding: utf-8 -*-
# The Redis RDB file format, read as a stream in bounded memory: used by the `rdb` and `replica` snapshot
# modes (count keys per namespace while the file arrives, refuse module types, prove the file is whole)
# and by the restore module (check a snapshot before it touches anything).
#
# Only key names are decoded; values are skipped by their length prefixes, so a value of any size costs
# the read buffer, never its own size. Grammar: Redis 7.0 rdb.c (RDB versions 1 to 11: Redis 2.x to 7.2).
from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

RDB_MAGIC = b"REDIS"
# Newest RDB version this parser understands (Redis 7.2 writes 11; Redis 7.0 writes 10).
MAX_RDB_VERSION = 11
READ_CHUNK = 1 << 20
# A key whose header, name and value header fit in this many bytes is parsed without refilling.
SLACK = 1 << 16

FIRST_OPCODE = 244  # bytes below are object types, from here on opcodes
OP_FUNCTION2 = 245
OP_FUNCTION_PRE_GA = 246
OP_MODULE_AUX = 247
OP_IDLE = 248
OP_FREQ = 249
OP_AUX = 250
OP_RESIZEDB = 251
OP_EXPIRETIME_MS = 252
OP_EXPIRETIME = 253
OP_SELECTDB = 254
OP_EOF = 255

TYPE_STRING = 0
TYPE_LIST = 1
TYPE_SET = 2
TYPE_ZSET = 3
TYPE_HASH = 4
TYPE_ZSET_2 = 5
TYPE_MODULE_PRE_GA = 6
TYPE_MODULE_2 = 7
# One length-prefixed blob each: zipmap, ziplist, intset, listpack encodings.
BLOB_TYPES = frozenset((9, 10, 11, 12, 13, 16, 17, 20))
TYPE_LIST_QUICKLIST = 14
TYPE_STREAM_LISTPACKS = 15
TYPE_LIST_QUICKLIST_2 = 18
TYPE_STREAM_LISTPACKS_2 = 19
TYPE_STREAM_LISTPACKS_3 = 21
MODULE_TYPES = (TYPE_MODULE_PRE_GA, TYPE_MODULE_2)
TYPE_NAMES = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset", 9: "hash", 10: "list", 11: "set",
    12: "zset", 13: "hash", 14: "list", 15: "stream", 16: "hash", 17: "zset", 18: "list", 19: "stream",
    20: "set", 21: "stream",
}

MODULE_OPCODE_EOF = 0
MODULE_OPCODE_SINT = 1
MODULE_OPCODE_UINT = 2
MODULE_OPCODE_FLOAT = 3
MODULE_OPCODE_DOUBLE = 4
MODULE_OPCODE_STRING = 5
MODULE_ID_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF = 0, 1, 2, 3
INT_ENCODING_SIZES = (1, 2, 4)


class RdbError(Exception):
    """The stream is not a whole, well-formed RDB file this cutover can read."""


class RdbModuleTypeError(RdbError):
    """A key holds a value of a Redis module type, which cutover does not snapshot."""


def module_type_name(module_id: int) -> str:
    """The 9-character type name a Redis module id encodes (the low 10 bits are the encoding version)."""
    return "".join(MODULE_ID_CHARSET[(module_id >> (10 + 6 * (8 - index))) & 63] for index in range(9))


def module_refusal(key: bytes, module_id: int | None) -> str:
    name = module_type_name(module_id) if module_id is not None else "unknown"
    return ("key %r holds a value of the Redis module type %r; cutover snapshots only the types Redis itself "
            "has (string, list, set, zset, hash, stream) - in mode logical leave the key out of the namespaces, "
            "or back it up with the module's own tools" % (key.decode("utf-8", "backslashreplace"), name))


def lzf_decompress(data: bytes, expected_length: int) -> bytes:
    """Decompress an LZF block (Redis compresses strings longer than 20 bytes with it)."""
    out = bytearray()
    index, size = 0, len(data)
    try:
        while index < size:
            control = data[index]
            index += 1
            if control < 32:
                out += data[index:index + control + 1]
                index += control + 1
                continue
            length = control >> 5
            if length == 7:
                length += data[index]
                index += 1
            reference = len(out) - ((control & 0x1F) << 8) - data[index] - 1
            index += 1
            if reference < 0:
                raise RdbError("corrupt LZF data: back reference before the start")
            for _ in range(length + 2):  # byte by byte: the source may overlap what is being written
                out.append(out[reference])
                reference += 1
    except IndexError:
        raise RdbError("corrupt LZF data: it ends inside a back reference")
    if len(out) != expected_length:
        raise RdbError("corrupt LZF data: %d bytes instead of %d" % (len(out), expected_length))
    return bytes(out)


# ---------------------------------------------------------------------------------------------------
# Byte sources: where the RDB comes from. Each returns chunks, b'' at the end.

class FileChunks:
    """A file read to its end."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle

    def read_chunk(self, size: int) -> bytes:
        return self._handle.read(size)


class GrowingFileChunks:
    """A file another process is still writing (Redis's BGSAVE temp file): at its current end, wait and
    retry until ``writer_finished()`` says the writer is done, then read what is left."""

    def __init__(self, handle: BinaryIO, writer_finished: Callable[[], bool], deadline: float, poll_s: float = 0.02):
        self._handle = handle
        self._writer_finished = writer_finished
        self._deadline = deadline
        self._poll_s = poll_s
        self._finished = False

    def read_chunk(self, size: int) -> bytes:
        while True:
            chunk = self._handle.read(size)
            if chunk or self._finished:
                return chunk
            self._finished = self._writer_finished()
            if not self._finished:
                if time.monotonic() > self._deadline:
                    raise RdbError("timed out waiting for Redis to finish writing the RDB file")
                time.sleep(self._poll_s)


class Tee:
    """Passes a source's chunks through a hash and an optional output file, counting bytes."""

    def __init__(self, source: Any, digest: Any, out: BinaryIO | None = None):
        self._source = source
        self.digest = digest
        self._out = out
        self.bytes = 0

    def read_chunk(self, size: int) -> bytes:
        chunk = self._source.read_chunk(size)
        if chunk:
            self.digest.update(chunk)
            if self._out is not None:
                self._out.write(chunk)
            self.bytes += len(chunk)
        return chunk


# ---------------------------------------------------------------------------------------------------
# Namespace classification (a key belongs to the first pattern that matches it)

def namespace_matcher(patterns: list[str], glob_source: Callable[[bytes], bytes]) -> Any:
    """One compiled regex whose group n+1 matches pattern n (so ``lastindex - 1`` of a fullmatch is the first
    matching pattern), or None when the first pattern is ``*`` and every key belongs to it."""
    if patterns and patterns[0] == "*":
        return None
    return re.compile(b"|".join(b"(" + glob_source(pattern) + b")" for pattern in patterns), re.DOTALL)


def namespace_classifier(patterns: list[str], glob_source: Callable[[bytes], bytes]) -> Callable[[bytes], int]:
    """A function key -> index of the first matching pattern, or -1."""
    matcher = namespace_matcher(patterns, glob_source)
    if matcher is None:
        return lambda key: 0
    fullmatch = matcher.fullmatch

    def classify(key: bytes) -> int:
        match = fullmatch(key)
        return match.lastindex - 1 if match else -1
    return classify


# ---------------------------------------------------------------------------------------------------
# The parser

@dataclass
class RdbSummary:
    """What a pass over an RDB file learned."""

    rdb_version: int = 0
    aux: dict[str, str] = field(default_factory=dict)
    databases: dict[int, int] = field(default_factory=dict)
    expires: dict[int, int] = field(default_factory=dict)
    expired: int = 0
    namespace_counts: list[int] = field(default_factory=list)
    functions: int = 0
    module_aux: list[str] = field(default_factory=list)
    checksum: str = ""
    bytes: int = 0

    @property
    def keys(self) -> int:
        return sum(self.databases.values())


class RdbScanner:
    """One pass over an RDB stream: validates its structure, counts keys per database and per namespace
    pattern (in database ``db`` only; ``matcher`` from namespace_matcher, None when all keys are in the one
    namespace), counts keys whose expiry is at or before ``now_ms`` as expired, and refuses keys of module
    types. ``on_key(namespace index, key, expiry)`` sees each counted key. Memory: one read buffer, whatever
    the size of the values."""

    def __init__(self, source: Any, matcher: Any = None, namespace_count: int = 0, db: int = 0,
                 now_ms: int | None = None, on_key: Callable[[int, bytes, int], None] | None = None):
        self._source = source
        self._on_key = on_key
        self._fullmatch = matcher.fullmatch if matcher is not None else None
        self._db = db
        self._now_ms = now_ms
        self.summary = RdbSummary(namespace_counts=[0] * namespace_count)
        self._buf = b""
        self._pos = 0
        self._consumed = 0  # bytes before self._buf[0]
        self._eof = False
        self._last_db = 0
        self._last_expiry = -1

    # -- buffer ---------------------------------------------------------------------------------------
    def _offset(self) -> int:
        return self._consumed + self._pos

    def _refill(self, needed: int) -> bool:
        """Make ``needed`` bytes available from ``_pos``; False if the stream ends first."""
        available = len(self._buf) - self._pos
        if available >= needed:
            return True
        parts = [self._buf[self._pos:]] if available else []
        self._consumed += self._pos
        while available < needed and not self._eof:
            chunk = self._source.read_chunk(max(READ_CHUNK, needed - available))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            available += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0
        return available >= needed

    def _need(self, needed: int, what: str) -> None:
        if not self._refill(needed):
            raise RdbError("the RDB stream is truncated: it ends inside %s at byte %d" % (what, self._offset()))

    def _skip(self, count: int) -> None:
        """Skip ``count`` bytes, streaming past the buffer when the value is larger than it."""
        end = len(self._buf)
        if self._pos + count <= end:
            self._pos += count
            return
        remaining = count - (end - self._pos)
        self._consumed += end
        self._buf, self._pos = b"", 0
        while remaining > 0:
            chunk = self._source.read_chunk(min(READ_CHUNK * 4, max(READ_CHUNK, remaining)))
            if not chunk:
                self._eof = True
                raise RdbError("the RDB stream is truncated: it ends inside a value at byte %d" % self._consumed)
            if len(chunk) > remaining:
                self._buf, self._pos = chunk, remaining
                return
            self._consumed += len(chunk)
            remaining -= len(chunk)

    # -- primitives ----------------------------------------------------------------------------------
    def _length(self) -> tuple[int, bool]:
        """(length, is_encoded) of an RDB length field."""
        self._need(1, "a length")
        first = self._buf[self._pos]
        kind = first >> 6
        if kind == 0:
            self._pos += 1
            return first & 0x3F, False
        if kind == 3:
            self._pos += 1
            return first & 0x3F, True
        if kind == 1:
            self._need(2, "a length")
            self._pos += 2
            return ((first & 0x3F) << 8) | self._buf[self._pos - 1], False
        size = 4 if first == 0x80 else 8 if first == 0x81 else 0
        if not size:
            raise RdbError("corrupt RDB: unknown length encoding 0x%02x at byte %d" % (first, self._offset()))
        self._need(1 + size, "a length")
        value = int.from_bytes(self._buf[self._pos + 1:self._pos + 1 + size], "big")
        self._pos += 1 + size
        return value, False

    def _plain_length(self, what: str) -> int:
        value, encoded = self._length()
        if encoded:
            raise RdbError("corrupt RDB: %s has a string encoding at byte %d" % (what, self._offset()))
        return value

    def _string(self) -> bytes:
        """Read a whole RDB string (only used for names: keys, aux fields, groups)."""
        length, encoded = self._length()
        if not encoded:
            self._need(length, "a string")
            value = self._buf[self._pos:self._pos + length]
            self._pos += length
            return value
        if length < ENC_LZF:
            size = INT_ENCODING_SIZES[length]
            self._need(size, "an integer")
            number = int.from_bytes(self._buf[self._pos:self._pos + size], "little", signed=True)
            self._pos += size
            return b"%d" % number
        if length == ENC_LZF:
            compressed = self._plain_length("an LZF length")
            original = self._plain_length("an LZF length")
            self._need(compressed, "an LZF string")
            data = self._buf[self._pos:self._pos + compressed]
            self._pos += compressed
            return lzf_decompress(data, original)
        raise RdbError("corrupt RDB: unknown string encoding %d at byte %d" % (length, self._offset()))

    def _skip_string(self) -> None:
        length, encoded = self._length()
        if not encoded:
            self._skip(length)
        elif length < ENC_LZF:
            self._skip(INT_ENCODING_SIZES[length])
        elif length == ENC_LZF:
            compressed = self._plain_length("an LZF length")
            self._plain_length("an LZF length")
            self._skip(compressed)
        else:
            raise RdbError("corrupt RDB: unknown string encoding %d at byte %d" % (length, self._offset()))

    def _skip_strings(self, count: int) -> None:
        for _ in range(count):
            self._skip_string()

    # -- values --------------------------------------------------------------------------------------
    def _skip_value(self, kind: int, key: bytes) -> None:
        if kind == TYPE_STRING or kind in BLOB_TYPES:
            self._skip_string()
        elif kind in (TYPE_SET, TYPE_LIST):
            self._skip_strings(self._plain_length("a collection size"))
        elif kind == TYPE_HASH:
            self._skip_strings(2 * self._plain_length("a hash size"))
        elif kind == TYPE_ZSET_2:
            for _ in range(self._plain_length("a sorted set size")):
                self._skip_string()
                self._skip(8)
        elif kind == TYPE_ZSET:
            for _ in range(self._plain_length("a sorted set size")):
                self._skip_string()
                self._need(1, "a score")
                score_length = self._buf[self._pos]
                self._pos += 1
                if score_length < 253:
                    self._skip(score_length)
        elif kind == TYPE_LIST_QUICKLIST:
            self._skip_strings(self._plain_length("a quicklist size"))
        elif kind == TYPE_LIST_QUICKLIST_2:
            for _ in range(self._plain_length("a quicklist size")):
                self._plain_length("a quicklist container")
                self._skip_string()
        elif kind in (TYPE_STREAM_LISTPACKS, TYPE_STREAM_LISTPACKS_2, TYPE_STREAM_LISTPACKS_3):
            self._skip_stream(kind)
        elif kind in MODULE_TYPES:
            module_id = self._plain_length("a module id") if kind == TYPE_MODULE_2 else None
            raise RdbModuleTypeError(module_refusal(key, module_id))
        else:
            raise RdbError("RDB object type %d (key %r) is unknown to this cutover (it reads RDB versions up "
                           "to %d, Redis 7.2)" % (kind, key[:200], MAX_RDB_VERSION))

    def _skip_stream(self, kind: int) -> None:
        self._skip_strings(2 * self._plain_length("a stream node count"))  # node key + listpack each
        # length, last id (ms, seq); v2+: first id (ms, seq), max deleted id (ms, seq), entries added
        for _ in range(3 if kind == TYPE_STREAM_LISTPACKS else 8):
            self._plain_length("a stream field")
        for _ in range(self._plain_length("a consumer group count")):
            self._skip_string()  # group name
            for _ in range(2 if kind == TYPE_STREAM_LISTPACKS else 3):  # last id (ms, seq)[, entries read]
                self._plain_length("a consumer group field")
            for _ in range(self._plain_length("a pending entries count")):
                self._skip(16 + 8)  # raw stream id, delivery time
                self._plain_length("a delivery count")
            for _ in range(self._plain_length("a consumer count")):
                self._skip_string()  # consumer name
                self._skip(16 if kind == TYPE_STREAM_LISTPACKS_3 else 8)  # seen time[, active time]
                self._skip(16 * self._plain_length("a consumer pending count"))

    def _skip_module_value(self) -> None:
        """Skip the opcode-tagged body of a module aux record (RDB_TYPE_MODULE_2 grammar)."""
        while True:
            opcode = self._plain_length("a module opcode")
            if opcode == MODULE_OPCODE_EOF:
                return
            if opcode in (MODULE_OPCODE_SINT, MODULE_OPCODE_UINT):
                self._plain_length("a module integer")
            elif opcode == MODULE_OPCODE_FLOAT:
                self._skip(4)
            elif opcode == MODULE_OPCODE_DOUBLE:
                self._skip(8)
            elif opcode == MODULE_OPCODE_STRING:
                self._skip_string()
            else:
                raise RdbError("corrupt RDB: unknown module opcode %d at byte %d" % (opcode, self._offset()))

    # -- the file ------------------------------------------------------------------------------------
    def _header(self) -> None:
        if not self._refill(9):
            raise RdbError("not an RDB file: %d bytes, too short for the REDIS header" % len(self._buf))
        head = self._buf[:9]
        if head[:5] != RDB_MAGIC or not head[5:].isdigit():
            raise RdbError("not an RDB file: it starts with %r, not REDIS<version>" % head)
        version = int(head[5:])
        if not 1 <= version <= MAX_RDB_VERSION:
            raise RdbError("RDB version %d is not one this cutover reads (1 to %d, up to Redis 7.2)"
                           % (version, MAX_RDB_VERSION))
        self.summary.rdb_version = version
        self._pos = 9

    def scan(self) -> RdbSummary:
        """Parse the whole stream; raises RdbError (RdbModuleTypeError for module types)."""
        try:
            return self._scan()
        except IndexError:  # a read past the buffer: only a stream that ends early gets there
            raise RdbError("the RDB stream is truncated: it ends inside a record near byte %d" % self._offset())

    def _scan(self) -> RdbSummary:
        self._header()
        summary = self.summary
        fullmatch, selected_db, now_ms, on_key = self._fullmatch, self._db, self._now_ms, self._on_key
        counts = summary.namespace_counts
        counting = bool(counts)
        db, db_keys, db_expires = 0, 0, 0
        expiry = -1
        buf, pos, end = self._buf, self._pos, len(self._buf)
        while True:
            if end - pos < SLACK:
                self._pos = pos
                self._refill(SLACK)
                buf, pos, end = self._buf, self._pos, len(self._buf)
                if pos >= end:
                    raise RdbError("the RDB stream is truncated: it ends before its end marker at byte %d"
                                   % self._offset())
            opcode = buf[pos]
            if opcode == OP_EXPIRETIME_MS:
                if pos + 9 > end:
                    raise RdbError("the RDB stream is truncated inside an expiry at byte %d" % self._offset())
                expiry = int.from_bytes(buf[pos + 1:pos + 9], "little", signed=True)
                pos += 9
                continue
            if opcode < FIRST_OPCODE:
                first = buf[pos + 1]
                value_at = pos + 2 + first
                # The commonest record inline: a string with a short key and a value of up to 16 KiB.
                if opcode == TYPE_STRING and first < 0x40 and value_at + 2 < end and buf[value_at] < 0x80:
                    key = buf[pos + 2:value_at]
                    length = buf[value_at]
                    if length < 0x40:
                        next_pos = value_at + 1 + length
                    else:
                        next_pos = value_at + 2 + (((length & 0x3F) << 8) | buf[value_at + 1])
                    parsed = (next_pos, key) if next_pos <= end else None
                else:
                    parsed = _fast_key(opcode, buf, pos + 1, end)
                if parsed is None:  # rare encodings or a value larger than the buffer: parse it the careful way
                    self._pos = pos + 1
                    key = self._string()
                    self._skip_value(opcode, key)
                    buf, pos, end = self._buf, self._pos, len(self._buf)
                else:
                    pos, key = parsed
                db_keys += 1
                if expiry != -1:
                    db_expires += 1
                    if now_ms is not None and expiry <= now_ms:
                        summary.expired += 1
                if counting and db == selected_db:
                    if fullmatch is None:
                        counts[0] += 1
                        if on_key is not None:
                            on_key(0, key, expiry)
                    else:
                        match = fullmatch(key)
                        if match:
                            counts[match.lastindex - 1] += 1
                            if on_key is not None:
                                on_key(match.lastindex - 1, key, expiry)
                expiry = -1
                continue
            self._pos = pos + 1
            if opcode == OP_EOF:
                break
            self._opcode(opcode)
            if opcode == OP_SELECTDB:
                self._count_db(db, db_keys, db_expires)
                db, db_keys, db_expires = self._last_db, 0, 0
            elif opcode == OP_EXPIRETIME:
                expiry = self._last_expiry
            buf, pos, end = self._buf, self._pos, len(self._buf)
        self._count_db(db, db_keys, db_expires)
        self._trailer()
        return summary

    def _count_db(self, db: int, keys: int, expires: int) -> None:
        if keys:
            self.summary.databases[db] = self.summary.databases.get(db, 0) + keys
        if expires:
            self.summary.expires[db] = self.summary.expires.get(db, 0) + expires

    def _opcode(self, opcode: int) -> None:
        if opcode == OP_SELECTDB:
            self._last_db = self._plain_length("a database number")
        elif opcode == OP_EXPIRETIME:
            self._need(4, "an expiry")
            self._last_expiry = int.from_bytes(self._buf[self._pos:self._pos + 4], "little", signed=True) * 1000
            self._pos += 4
        elif opcode == OP_RESIZEDB:
            self._plain_length("a database size")
            self._plain_length("an expires size")
        elif opcode == OP_AUX:
            name = self._string().decode("utf-8", "replace")
            value = self._string().decode("utf-8", "replace")
            self.summary.aux[name] = value
        elif opcode == OP_IDLE:
            self._plain_length("an idle time")
        elif opcode == OP_FREQ:
            self._skip(1)
        elif opcode in (OP_FUNCTION2, OP_FUNCTION_PRE_GA):
            if opcode == OP_FUNCTION_PRE_GA:
                raise RdbError("RDB holds functions in the Redis 7.0 release-candidate format; load and save it "
                               "with Redis 7.0 GA first")
            self._skip_string()
            self.summary.functions += 1
        elif opcode == OP_MODULE_AUX:
            module_id = self._plain_length("a module id")
            self.summary.module_aux.append(module_type_name(module_id))
            self._skip_module_value()
        else:
            raise RdbError("corrupt RDB: unknown opcode %d at byte %d" % (opcode, self._offset() - 1))

    def _trailer(self) -> None:
        version = self.summary.rdb_version
        checksum_size = 8 if version >= 5 else 0
        self._need(checksum_size, "the checksum")
        self.summary.checksum = self._buf[self._pos:self._pos + checksum_size].hex()
        self._pos += checksum_size
        if self._refill(1):
            raise RdbError("the RDB stream has %s unexpected bytes after its end marker"
                           % ("more" if len(self._buf) - self._pos >= READ_CHUNK else len(self._buf) - self._pos))
        self.summary.bytes = self._offset()


# ---------------------------------------------------------------------------------------------------
# Fast path: one key of a common encoding that lies wholly in the buffer, parsed with local variables.
# Returns (position after the value, key name) or None when the careful path must take over.

def _skip_fast(buf: bytes, p: int) -> int:
    """Position after the RDB string at ``p`` (at least 9 bytes of ``buf`` follow ``p``), or -1."""
    first = buf[p]
    kind = first >> 6
    if kind == 0:
        return p + 1 + (first & 0x3F)
    if kind == 1:
        return p + 2 + (((first & 0x3F) << 8) | buf[p + 1])
    if kind == 3:
        encoding = first & 0x3F
        if encoding < ENC_LZF:
            return p + 2 + encoding + (encoding == ENC_INT32)
        if encoding != ENC_LZF:
            return -1
        p += 1
        first = buf[p]
        kind = first >> 6
        if kind == 0:
            compressed = first & 0x3F
            p += 1
        elif kind == 1:
            compressed = ((first & 0x3F) << 8) | buf[p + 1]
            p += 2
        else:
            return -1
        kind = buf[p] >> 6
        return p + 1 + compressed if kind == 0 else p + 2 + compressed if kind == 1 else -1
    if first == 0x80:
        return p + 5 + int.from_bytes(buf[p + 1:p + 5], "big")
    return -1


def _count_fast(buf: bytes, p: int) -> tuple[int, int]:
    """(count, position after it) of a plain length of at most 32 bits, or (-1, p)."""
    first = buf[p]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, p + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | buf[p + 1], p + 2
    if first == 0x80:
        return int.from_bytes(buf[p + 1:p + 5], "big"), p + 5
    return -1, p


SINGLE_STRING_TYPES = frozenset((TYPE_STRING,)) | BLOB_TYPES
COLLECTION_TYPES = frozenset((TYPE_SET, TYPE_HASH, TYPE_LIST_QUICKLIST_2, TYPE_ZSET_2))


def _fast_key(kind: int, buf: bytes, p: int, end: int) -> tuple[int, bytes] | None:
    first = buf[p]
    if first < 0x40:
        key_end = p + 1 + first
        key = buf[p + 1:key_end]
    elif first < 0x80:
        key_end = p + 2 + (((first & 0x3F) << 8) | buf[p + 1])
        key = buf[p + 2:key_end]
    else:
        return None
    p = key_end
    if p + 9 > end:
        return None
    if kind in SINGLE_STRING_TYPES:
        first = buf[p]
        if first < 0x40:
            p += 1 + first
        elif first < 0x80:
            p += 2 + (((first & 0x3F) << 8) | buf[p + 1])
        else:
            p = _skip_fast(buf, p)
    elif kind in COLLECTION_TYPES:
        count, p = _count_fast(buf, p)
        if count < 0:
            return None
        if kind == TYPE_HASH:
            count *= 2
        quicklist, zset = kind == TYPE_LIST_QUICKLIST_2, kind == TYPE_ZSET_2
        for _ in range(count):
            if p < 0 or p + 9 > end:
                return None
            if quicklist:
                if buf[p] >= 0x40:
                    return None
                p += 1
            first = buf[p]
            if first < 0x40:
                p += 1 + first
            else:
                p = _skip_fast(buf, p)
            if zset:
                p += 8
    else:
        return None
    if p < 0 or p > end:
        return None
    return p, key


# ---------------------------------------------------------------------------------------------------
# Redis's CRC-64 (Jones polynomial, bit-reflected, init 0, no final xor): the trailer of every DUMP payload
# (over the serialized value and its 2-byte RDB version) and of RDB files.
#
# Such a CRC is linear, so a message followed by its CRC (little-endian) divides the polynomial evenly, and
# so does any concatenation of them: one pass over many payloads proves them all intact (a single damaged
# one always shows; errors in several would have to cancel exactly). The remainder is computed with Python's
# big integers as polynomials over GF(2) - bytes bit-reversed, then the high half folded onto the low half
# times x^half mod P - about 100 MB/s, where a table loop manages 6.

CRC64_JONES = (1 << 64) | 0xAD93D23594C935A9  # Redis crc64.c, as a polynomial of degree 64
CRC64_PIECE = 1 << 16  # bytes folded at a time (big integers of this size stay in the CPU caches)
BIT_REVERSED = bytes(int("{:08b}".format(value)[::-1], 2) for value in range(256))
DUMP_TRAILER = 10  # 2-byte RDB version + 8-byte CRC-64


def _multiply_mod(first: int, second: int) -> int:
    """first * second modulo CRC64_JONES, both of degree < 64."""
    product = 0
    while second:
        if second & 1:
            product ^= first
        second >>= 1
        first <<= 1
        if first >> 64:
            first ^= CRC64_JONES
    return product


@functools.lru_cache(maxsize=None)
def _x_power_terms(exponent: int) -> tuple[int, ...]:
    """The exponents of the terms of x^exponent mod CRC64_JONES (square and multiply)."""
    result, square = 1, 2
    while exponent:
        if exponent & 1:
            result = _multiply_mod(result, square)
        square = _multiply_mod(square, square)
        exponent >>= 1
    return tuple(bit for bit in range(64) if result >> bit & 1)


def _remainder(value: int, bits: int) -> int:
    """``value``, a polynomial over GF(2) with fewer than ``bits`` terms, modulo CRC64_JONES."""
    while bits > 192:
        half = bits // 2
        high = value >> half
        value &= (1 << half) - 1
        for shift in _x_power_terms(half):  # value += high * (x^half mod P)
            value ^= high << shift
        bits = max(half, bits - half + 64)
    for bit in range(value.bit_length() - 1, 63, -1):
        if value >> bit & 1:
            value ^= CRC64_JONES << (bit - 64)
    return value


class Crc64Check:
    """The CRC-64 remainder of a byte stream fed in pieces; 0 after whole intact DUMP payloads (or RDB files)."""

    def __init__(self) -> None:
        self.residue = 0

    def update(self, data: bytes) -> None:
        for start in range(0, len(data), CRC64_PIECE):
            piece = data[start:start + CRC64_PIECE]
            bits = 8 * len(piece)
            self.residue = _remainder((self.residue << bits) | int.from_bytes(piece.translate(BIT_REVERSED), "big"),
                                      bits + 64)


def payload_intact(payload: bytes) -> bool:
    """Whether a DUMP payload's CRC-64 trailer matches what precedes it, as RESTORE checks it."""
    if len(payload) < DUMP_TRAILER:
        return False
    check = Crc64Check()
    check.update(payload)
    return check.residue == 0


def read_rdb_header(path: str) -> int:
    """The RDB version in the first 9 bytes of ``path``; RdbError when it is not an RDB file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as exc:
        raise RdbError("cannot read %s: %s" % (path, exc))
    if head[:5] != RDB_MAGIC or not head[5:].isdigit():
        raise RdbError("%s is not an RDB file: it starts with %r, not REDIS<version>" % (path, head))
    return int(head[5:])
