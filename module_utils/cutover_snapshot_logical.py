# -*- coding: utf-8 -*-
# The Redis side of logical snapshots: capture (SCAN + DUMP + absolute expiry) and restore (RESTORE ...
# ABSTTL by policy). Shared by cutover_redis_snapshot (mode logical, verify full) and cutover_redis_restore
# (logical snapshots, and rdb snapshots restored selectively through a scratch server).
#
# Both directions keep the server busy while this side works: the next SCAN page is requested before the
# current one is written, and the next RESTORE batch is sent before the previous one's replies are read.
# Payloads larger than BIG_PAYLOAD are streamed between socket and file, never held whole in memory.
from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Callable, Iterator, Union

from ansible.module_utils.cutover_rdb import MODULE_TYPES, module_refusal
from ansible.module_utils.cutover_snapshot import (
    BIG_PAYLOAD,
    NO_EXPIRY,
    Batch,
    BigRecord,
    PreparedBatch,
    ServerClock,
    SnapshotError,
    SnapshotWriter,
    belongs_filter,
    pattern_classifier,
)

# Stop DUMPing inside one script call once its payloads reach this many bytes; the rest of the page is
# fetched key by key (a page of big keys must not become one huge reply).
PAGE_BUDGET = 32 << 20
STREAM_CHUNK = 1 << 20

# One SCAN page, then DUMP and absolute expiry of each key, atomically in one round trip.
# ARGV: cursor, pattern, count, '1' to use PEXPIRETIME (else PTTL + TIME), big payload size, page budget.
# Reply: cursor, vanished count, then key, expiry (unix ms or -1), payload for each key dumped. Keys this
# side must look at get a negative marker instead of an expiry, so a normal page is recognised by
# min(expiries) >= -1 alone: FETCH_ALONE (payload: its size, or -1) for a payload larger than the big size or
# one past the budget, fetched on its own; MODULE_TYPE (payload: its first 10 bytes) for a module type.
CAPTURE_SCRIPT = """
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local use_pexpiretime = ARGV[4] == '1'
local big = tonumber(ARGV[5])
local budget = tonumber(ARGV[6])
local now_ms = 0
if not use_pexpiretime then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local out = {page[1], 0}
local n, vanished, used = 2, 0, 0
for _, key in ipairs(page[2]) do
  if used > budget then
    out[n + 1], out[n + 2], out[n + 3] = key, -3, -1
    n = n + 3
  else
    local payload = redis.call('DUMP', key)
    local expiry = -2
    if payload then
      if use_pexpiretime then
        expiry = redis.call('PEXPIRETIME', key)
      else
        local ttl = redis.call('PTTL', key)
        expiry = ttl
        if ttl >= 0 then expiry = now_ms + ttl end
      end
    end
    if expiry == -2 then
      vanished = vanished + 1
    else
      local size, kind = #payload, string.byte(payload, 1)
      if kind == 6 or kind == 7 then
        out[n + 1], out[n + 2], out[n + 3] = key, -4, string.sub(payload, 1, 10)
      elseif size > big then
        out[n + 1], out[n + 2], out[n + 3] = key, -3, size
      else
        out[n + 1], out[n + 2], out[n + 3] = key, expiry, payload
        used = used + size
      end
      n = n + 3
    end
  end
end
out[2] = vanished
return out
"""
FETCH_ALONE = -3
MODULE_TYPE = -4

# (keys, absolute expiries, payloads, vanished) of one SCAN page; a payload may be an int: fetch it alone
Page = tuple[list[bytes], list[int], list[Any], int]


def acquire_connection(client: Any) -> Any:
    pool = client.connection_pool
    try:
        return pool.get_connection()
    except TypeError:  # redis-py < 5.3 requires a command name
        return pool.get_connection("PING")


def release_connection(client: Any, connection: Any, clean: bool) -> None:
    """Give a connection back; one that may hold unread replies is closed first, never reused dirty."""
    if not clean:
        connection.disconnect()
    client.connection_pool.release(connection)


def refuse_module_type(key: bytes, payload_head: bytes) -> None:
    """A DUMP payload starts with the RDB type byte: a module type cannot be restored without the module."""
    module_id = None
    if payload_head[:1] == bytes((MODULE_TYPES[1],)) and len(payload_head) >= 10 and payload_head[1] == 0x81:
        module_id = int.from_bytes(payload_head[2:10], "big")
    raise SnapshotError(module_refusal(key, module_id))


# ---------------------------------------------------------------------------------------------------
# Streaming one big reply straight off the socket

def read_line(sock: Any, pending: bytes) -> tuple[bytes, bytes]:
    """(first CRLF-terminated line without CRLF, bytes after it) reading from ``sock`` as needed."""
    while b"\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise SnapshotError("Redis closed the connection in the middle of a reply")
        pending += chunk
    line, _, rest = pending.partition(b"\r\n")
    return line, rest


def stream_bulk_reply(connection: Any, what: str) -> tuple[int, Iterator[bytes]] | None:
    """Read a bulk-string reply from the raw socket: (length, chunks), or None for a nil reply.

    Only valid when no other reply is pending on ``connection`` (redis-py has nothing buffered).
    """
    sock = connection._sock  # redis-py keeps the socket here; its parser holds no unread bytes now
    line, rest = read_line(sock, b"")
    if line.startswith(b"-"):
        raise SnapshotError("Redis refused %s: %s" % (what, line[1:].decode("utf-8", "replace")))
    if not line.startswith(b"$"):
        raise SnapshotError("unexpected reply to %s: %r" % (what, line[:80]))
    length = int(line[1:])
    if length < 0:
        return None

    def chunks() -> Iterator[bytes]:
        pending, left = rest, length
        while left:
            if not pending:
                pending = sock.recv(min(STREAM_CHUNK, left + 2))
                if not pending:
                    raise SnapshotError("Redis closed the connection while sending %s" % what)
            piece, pending = pending[:left], pending[left:]
            left -= len(piece)
            yield piece
        while len(pending) < 2:
            more = sock.recv(2 - len(pending))
            if not more:
                raise SnapshotError("Redis closed the connection while sending %s" % what)
            pending += more
        if pending != b"\r\n":
            raise SnapshotError("unexpected bytes after the payload of %s" % what)
    return length, chunks()


class BigKeyFetcher:
    """DUMP one key at a time on its own connection, streaming the payload (for keys too big for a page)."""

    def __init__(self, client: Any, use_pexpiretime: bool, clock: ServerClock | None):
        self._client = client
        self._expiry_command = "PEXPIRETIME" if use_pexpiretime else "PTTL"
        self._clock = clock
        self._connection = None

    def fetch(self, key: bytes) -> tuple[int, int, Iterator[bytes]] | None:
        """(absolute expiry, payload length, payload chunks) or None when the key is gone."""
        if self._connection is None:
            self._connection = acquire_connection(self._client)
        connection = self._connection
        connection.send_command(self._expiry_command, key)
        expiry = int(connection.read_response())
        if expiry == -2:
            return None
        if self._clock and expiry >= 0:
            expiry += self._clock.now_ms()
        connection.send_command("DUMP", key)
        reply = stream_bulk_reply(connection, "DUMP of key %r" % key[:100])
        if reply is None:
            return None
        length, chunks = reply
        return expiry, length, chunks

    def close(self, clean: bool = True) -> None:
        if self._connection is not None:
            release_connection(self._client, self._connection, clean)
            self._connection = None


# ---------------------------------------------------------------------------------------------------
# Capture

def scan_page(client: Any, cursor: int, pattern: str, count: int) -> tuple[int, list[bytes]]:
    """One SCAN MATCH page: (next cursor, keys)."""
    next_cursor, keys = client.scan(cursor, match=pattern, count=count)
    return int(next_cursor), keys


class LuaCapture:
    """SCAN + DUMP + expiry of a page in one atomic script call: nothing can vanish inside a page. The
    next page is requested before the current one is handed out, so Redis works while this side writes."""

    name = "lua"

    def __init__(self, client: Any, use_pexpiretime: bool, big_payload: int = BIG_PAYLOAD,
                 page_budget: int = PAGE_BUDGET):
        self._client = client
        self._flag = "1" if use_pexpiretime else "0"
        self._big = big_payload
        self._budget = page_budget
        self._connection = acquire_connection(client)
        self._in_flight = False
        self.big_keys = BigKeyFetcher(client, use_pexpiretime, None if use_pexpiretime else ServerClock(client))

    def _request(self, cursor: Any, pattern: str, count: int) -> None:
        self._connection.send_command("EVAL", CAPTURE_SCRIPT, 0, cursor, pattern, count, self._flag,
                                      self._big, self._budget)
        self._in_flight = True

    def pages(self, pattern: str, count: int) -> Iterator[Page]:
        self._request(b"0", pattern, count)
        while True:
            reply = self._connection.read_response()
            self._in_flight = False
            cursor = reply[0]
            done = cursor in (b"0", 0)
            if not done:
                self._request(cursor, pattern, count)
            yield reply[2::3], reply[3::3], reply[4::3], int(reply[1])
            if done:
                return

    def close(self) -> None:
        release_connection(self._client, self._connection, clean=not self._in_flight)
        self.big_keys.close()


class PipelineCapture:
    """SCAN, then one pipeline of DUMP + expiry per page, for Redis users that may not run scripts."""

    name = "pipeline"

    def __init__(self, client: Any, use_pexpiretime: bool):
        self._client = client
        self._expiry_command = "PEXPIRETIME" if use_pexpiretime else "PTTL"
        self._clock = None if use_pexpiretime else ServerClock(client)
        self.big_keys = BigKeyFetcher(client, use_pexpiretime, self._clock)

    def pages(self, pattern: str, count: int) -> Iterator[Page]:
        cursor = 0
        while True:
            cursor, keys = scan_page(self._client, cursor, pattern, count)
            if keys:
                yield self._dump(keys)
            if cursor == 0:
                return

    def _dump(self, keys: list[bytes]) -> Page:
        pipeline = self._client.pipeline(transaction=False)
        for key in keys:
            pipeline.dump(key)
            pipeline.execute_command(self._expiry_command, key)
        replies = pipeline.execute()
        now_ms = self._clock.now_ms() if self._clock else 0
        kept_keys, expiries, payloads = [], [], []
        for key, payload, expiry in zip(keys, replies[0::2], replies[1::2]):
            if payload is None or expiry == -2:
                continue
            if self._clock and expiry >= 0:
                expiry += now_ms
            if payload[0] in MODULE_TYPES:
                expiry, payload = MODULE_TYPE, payload[:10]
            kept_keys.append(key)
            expiries.append(int(expiry))
            payloads.append(payload)
        return kept_keys, expiries, payloads, len(keys) - len(kept_keys)

    def close(self) -> None:
        self.big_keys.close()


def keep_own_keys(page: Page, belongs: Callable[[bytes], bool]) -> Page:
    keys, expiries, payloads, vanished = page
    mask = [belongs(key) for key in keys]
    if all(mask):
        return page
    return (list(itertools.compress(keys, mask)), list(itertools.compress(expiries, mask)),
            list(itertools.compress(payloads, mask)), vanished)


def write_records(writer: SnapshotWriter, capture: Any, patterns: list[str], batch_size: int) -> int:
    """Stream every namespace into the writer; returns the number of vanished keys."""
    vanished = 0
    for index, pattern in enumerate(patterns):
        belongs = belongs_filter(patterns, index) if index else None
        for page in capture.pages(pattern, batch_size):
            if belongs:
                page = keep_own_keys(page, belongs)
            keys, expiries, payloads, page_vanished = page
            vanished += page_vanished
            if not keys:
                continue
            if min(expiries) >= NO_EXPIRY:
                writer.add_batch(index, keys, expiries, payloads)
                continue
            normal = [expiry >= NO_EXPIRY for expiry in expiries]
            for key, expiry, payload in zip(keys, expiries, payloads):
                if expiry == MODULE_TYPE:
                    refuse_module_type(key, payload)
            writer.add_batch(index, list(itertools.compress(keys, normal)), list(itertools.compress(expiries, normal)),
                             list(itertools.compress(payloads, normal)))
            for key, is_normal in zip(keys, normal):
                if not is_normal:
                    vanished += write_big_key(writer, capture.big_keys, index, key)
    return vanished


def write_big_key(writer: SnapshotWriter, fetcher: BigKeyFetcher, index: int, key: bytes) -> int:
    """Stream one key's payload into the writer; returns 1 if it vanished meanwhile, else 0."""
    fetched = fetcher.fetch(key)
    if fetched is None:
        return 1
    expiry, length, chunks = fetched
    first = next(chunks, b"")
    if first[:1] and first[0] in MODULE_TYPES:
        refuse_module_type(key, first[:10])
    writer.add_big(index, key, expiry, length, itertools.chain((first,), chunks))
    return 0


def count_keys(client: Any, patterns: list[str], batch_size: int) -> dict[str, int]:
    """What a snapshot would hold per pattern, by SCAN only (check mode)."""
    counts = {}
    for index, pattern in enumerate(patterns):
        belongs = belongs_filter(patterns, index)
        cursor, total = 0, 0
        while True:
            cursor, keys = scan_page(client, cursor, pattern, batch_size)
            total += sum(1 for key in keys if belongs(key))
            if cursor == 0:
                break
        counts[pattern] = total
    return counts


# ---------------------------------------------------------------------------------------------------
# Restore

COUNT_NAMES = ("restored", "kept_existing", "expired", "deleted", "missing_before", "kept_streams")


class RestoreFailed(Exception):
    """Redis refused a RESTORE; counts so far stay in the tally."""


class Tally:
    """Counts per namespace pattern."""

    def __init__(self, patterns: list[str]):
        self.by_pattern = {pattern: dict.fromkeys(COUNT_NAMES, 0) for pattern in patterns}

    def add(self, pattern: str, **counts: int) -> None:
        for name, value in counts.items():
            self.by_pattern[pattern][name] += value

    def totals(self) -> dict[str, int]:
        return {name: sum(counts[name] for counts in self.by_pattern.values()) for name in COUNT_NAMES}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def exists_command(keys: list[bytes]) -> bytes:
    return b"*%d\r\n$6\r\nEXISTS\r\n" % (len(keys) + 1) + b"".join(b"$%d\r\n%b\r\n" % (len(key), key) for key in keys)


def restore_prefix(key: bytes, expiry: int, payload_length: int, replace: bool) -> bytes:
    """RESP of RESTORE <key> <ttl> up to the payload's length line."""
    ttl = b"%d" % (expiry if expiry > 0 else 0)
    return b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n" % (
        6 if replace else 5, len(key), key, len(ttl), ttl, payload_length)


def restore_suffix(replace: bool) -> bytes:
    return b"\r\n$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n" if replace else b"\r\n$6\r\nABSTTL\r\n"


def restore_heads(replace: bool) -> tuple[bytes, bytes]:
    """What comes before the key and after the payload in each RESTORE ... ABSTTL command."""
    return b"*%d\r\n$7\r\nRESTORE\r\n" % (6 if replace else 5), restore_suffix(replace)[2:]


def restore_commands(keys: list[bytes], expiries: list[int], payloads: list[bytes], replace: bool) -> bytes:
    """RESP of one RESTORE ... ABSTTL per record, built in one pass."""
    head = b"*%d\r\n$7\r\nRESTORE\r\n" % (6 if replace else 5)
    tail = restore_suffix(replace)[2:]
    parts = []
    append = parts.append
    for key, expiry, payload in zip(keys, expiries, payloads):
        ttl = b"%d" % expiry if expiry > 0 else b"0"
        append(b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (head, len(key), key, len(ttl), ttl, len(payload),
                                                               payload, tail))
    return b"".join(parts)


class ReplyLines:
    """Replies read straight off a connection's socket, a known number of lines at a time.

    Every reply this restorer asks for is one line (+OK, -ERR..., :n), so a batch of N commands is N lines:
    one recv loop and one bytes split instead of N calls into redis-py. Only valid on a connection whose
    replies are all read here (redis-py's parser then holds nothing).
    """

    def __init__(self, connection: Any):
        connection.connect()
        self._sock = connection._sock
        self._buffer = b""

    def take(self, count: int) -> list[bytes]:
        while self._buffer.count(b"\r\n") < count:
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise SnapshotError("Redis closed the connection in the middle of a restore")
            self._buffer += chunk
        lines = self._buffer.split(b"\r\n", count)
        self._buffer = lines.pop()
        return lines


def _restore_outcome(lines: list[bytes]) -> tuple[int, int, str | None]:
    """(restored, kept, first error) from RESTORE reply lines; BUSYKEY means the key exists and was kept."""
    restored = lines.count(b"+OK")
    if restored == len(lines):
        return restored, 0, None
    kept = sum(1 for line in lines if line.startswith(b"-BUSYKEY"))
    failure = next((line[1:].decode("utf-8", "replace") for line in lines
                    if line.startswith(b"-") and not line.startswith(b"-BUSYKEY")), None)
    return restored, kept, failure


class PipelineRestorer:
    """RESTORE ... ABSTTL (REPLACE unless missing_only), pipelined with one batch in flight while the next is
    built, replies read as raw lines. An EXISTS before each batch counts the keys that were missing (for
    missing_only the BUSYKEY replies tell it). Stops at the first RESTORE Redis refuses."""

    def __init__(self, client: Any, replace: bool, on_done: Callable[..., None]):
        self._client = client
        self._replace = replace
        self._on_done = on_done
        self._connection = acquire_connection(client)
        self._replies = ReplyLines(self._connection)
        self._in_flight: deque[tuple[int, int]] = deque()  # (namespace index, keys)
        self._clean = True

    def _send(self, data: bytes) -> None:
        self._clean = False
        self._connection.send_packed_command([data], check_health=False)

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        self._submit(namespace_index, len(keys), exists_command(keys) if self._replace else b"",
                     restore_commands(keys, expiries, payloads, self._replace))

    def submit_prepared(self, batch: PreparedBatch) -> None:
        """A batch whose RESP the reader built while reading it (restore_heads(replace) framing)."""
        exists = b"*%d\r\n$6\r\nEXISTS\r\n" % (len(batch.keys) + 1) + batch.exists_arguments if self._replace else b""
        self._submit(batch.namespace_index, len(batch.keys), exists, batch.commands)

    def _submit(self, namespace_index: int, count: int, exists: bytes, restores: bytes) -> None:
        self._send(exists + restores)
        self._in_flight.append((namespace_index, count))
        self._collect(keep=1)

    def submit_big(self, record: Any) -> None:
        """One record whose payload is streamed from its source to the socket."""
        self._collect(keep=0)
        key = record.key
        self._send(exists_command([key]) + restore_prefix(key, record.expiry, record.length, self._replace))
        for chunk in record.chunks(STREAM_CHUNK):
            self._connection.send_packed_command([chunk], check_health=False)
        self._connection.send_packed_command([restore_suffix(self._replace)], check_health=False)
        exists_line, restore_line = self._replies.take(2)
        self._clean = True
        restored, kept, failure = _restore_outcome([restore_line])
        self._on_done(record.namespace_index, restored, kept, 1 - int(exists_line[1:]), 0)
        if failure:
            raise RestoreFailed(failure)

    def finish(self) -> None:
        self._collect(keep=0)

    def _collect(self, keep: int) -> None:
        failure = None
        while len(self._in_flight) > (0 if failure else keep):
            namespace_index, count = self._in_flight.popleft()
            lines = self._replies.take(count + (1 if self._replace else 0))
            if self._replace:
                missing = count - int(lines[0][1:])
                lines = lines[1:]
            restored, kept, error = _restore_outcome(lines)
            if not self._replace:
                missing = restored
            self._on_done(namespace_index, restored, kept, missing, 0)
            failure = failure or error
        self._clean = not self._in_flight
        if failure:
            raise RestoreFailed(failure)

    def close(self) -> None:
        release_connection(self._client, self._connection, clean=self._clean and not self._in_flight)


class ExistenceCounter:
    """Check mode: the counts a restore would produce, from EXISTS alone."""

    def __init__(self, client: Any, replace: bool, on_done: Callable[..., None]):
        self._client = client
        self._replace = replace
        self._on_done = on_done

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[bytes]) -> None:
        present = int(self._client.exists(*keys))
        missing = len(keys) - present
        if self._replace:
            self._on_done(namespace_index, len(keys), 0, missing, 0)
        else:
            self._on_done(namespace_index, missing, present, missing, 0)

    def submit_big(self, record: BigRecord) -> None:
        self.submit(record.namespace_index, [record.key], [record.expiry], [b""])

    def finish(self) -> None:
        return None

    def close(self) -> None:
        return None


def stream_flags(client: Any, keys: list[bytes]) -> list[bool]:
    """Whether each key holds a stream now (TYPE, pipelined)."""
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.type(key)
    return [kind == b"stream" for kind in pipeline.execute()]


class StreamKeeper:
    """Policy revert in front of a restorer: a key that holds a stream now keeps what was appended since the
    snapshot (append-only shared data, e.g. an alerts stream), so its record is not restored but counted by
    ``on_kept``; every other record goes on to ``restorer`` (RESTORE ... REPLACE, or the check-mode counter)."""

    def __init__(self, client: Any, restorer: Any, on_kept: Callable[[int, int], None]):
        self._client = client
        self._restorer = restorer
        self._on_kept = on_kept

    def submit(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[Any]) -> None:
        self._submit_others(namespace_index, keys, expiries, payloads, stream_flags(self._client, keys))

    def submit_prepared(self, batch: PreparedBatch) -> None:
        streams = stream_flags(self._client, batch.keys)
        if any(streams):
            self._submit_others(batch.namespace_index, batch.keys, batch.expiries, batch.payloads, streams)
        else:
            self._restorer.submit_prepared(batch)

    def _submit_others(self, namespace_index: int, keys: list[bytes], expiries: list[int], payloads: list[Any],
                       streams: list[bool]) -> None:
        if any(streams):
            self._on_kept(namespace_index, sum(streams))
            rest = [not stream for stream in streams]
            keys, expiries, payloads = (list(itertools.compress(keys, rest)), list(itertools.compress(expiries, rest)),
                                        list(itertools.compress(payloads, rest)))
        if keys:
            self._restorer.submit(namespace_index, keys, expiries, payloads)

    def submit_big(self, record: Any) -> None:
        if stream_flags(self._client, [record.key])[0]:
            self._on_kept(record.namespace_index, 1)
            for _chunk in record.chunks():  # read to its end: it may be streaming off a socket
                pass
            return
        self._restorer.submit_big(record)

    def finish(self) -> None:
        self._restorer.finish()

    def close(self) -> None:
        self._restorer.close()


def drop_expired(batch: Batch, now_ms: int) -> tuple[Batch, int]:
    """The batch without records whose absolute expiry is at or before ``now_ms``, and how many those were."""
    index, keys, expiries, payloads = batch
    if not any(0 <= expiry <= now_ms for expiry in expiries):
        return batch, 0
    live = [expiry == NO_EXPIRY or expiry > now_ms for expiry in expiries]
    kept = (index, list(itertools.compress(keys, live)), list(itertools.compress(expiries, live)),
            list(itertools.compress(payloads, live)))
    return kept, len(keys) - len(kept[1])


def restore_batches(restorer: Any, batches: Iterator[Union[Batch, PreparedBatch, BigRecord]], clock: ServerClock,
                    patterns: list[str], tally: Tally, fingerprints: set[int] | None) -> None:
    """Feed batches (and big records) into a restorer, skipping expired records; collects fingerprints of
    the live keys when ``fingerprints`` is a set (replace_all)."""
    for batch in batches:
        if isinstance(batch, PreparedBatch):
            if batch.expired:
                tally.add(patterns[batch.namespace_index], expired=batch.expired)
            if batch.keys:
                restorer.submit_prepared(batch)
                if fingerprints is not None:
                    fingerprints.update(map(hash, batch.keys))
            continue
        if not isinstance(batch, tuple):  # a big record, streamed
            if 0 <= batch.expiry <= clock.now_ms():
                tally.add(patterns[batch.namespace_index], expired=1)
                for _chunk in batch.chunks():  # read to its end: it may be streaming off a socket
                    pass
                continue
            if fingerprints is not None:
                fingerprints.add(hash(batch.key))
            restorer.submit_big(batch)
            continue
        (index, keys, expiries, payloads), expired = drop_expired(batch, clock.now_ms())
        if expired:
            tally.add(patterns[index], expired=expired)
        if keys:
            restorer.submit(index, keys, expiries, payloads)
        if fingerprints is not None:
            fingerprints.update(map(hash, keys))
    restorer.finish()


def delete_extra_keys(client: Any, patterns: list[str], selected: list[str], fingerprints: set[int],
                      batch_size: int, check_mode: bool, tally: Tally, spare_streams: bool = False) -> None:
    """replace_all and revert: delete keys of the selected namespaces that the snapshot does not hold; with
    ``spare_streams`` (revert) a stream is kept and counted instead.

    ``fingerprints`` are Python hashes of the restored keys: a collision only spares a key, never deletes one.
    """
    classify = pattern_classifier(patterns)
    for pattern in selected:
        index = patterns.index(pattern)
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor, match=pattern, count=batch_size)
            extra = [key for key in keys if hash(key) not in fingerprints and classify(key) == index]
            if extra and spare_streams:
                streams = stream_flags(client, extra)
                tally.add(pattern, kept_streams=sum(streams))
                extra = [key for key, stream in zip(extra, streams) if not stream]
            if extra:
                tally.add(pattern, deleted=len(extra) if check_mode else int(client.unlink(*extra)))
            if int(cursor) == 0:
                break
