# -*- coding: utf-8 -*-
# A scratch redis-server on a private unix socket, and what cutover does with it:
# - `verify: full`: load a snapshot into it and compare every key's type, value and expiry with the source;
# - selective restore of an `rdb`/`replica` snapshot: load the RDB into it, then restore chosen namespaces
#   from it into the target with the logical restore engine.
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from ansible.module_utils.cutover_redis import RedisError, redis_client
from ansible.module_utils.cutover_snapshot import BIG_PAYLOAD, NO_EXPIRY, Batch, SnapshotError, pattern_classifier
from ansible.module_utils.cutover_snapshot_logical import (
    FETCH_ALONE,
    MODULE_TYPE,
    LuaCapture,
    PipelineRestorer,
    acquire_connection,
    refuse_module_type,
    release_connection,
    restore_prefix,
    restore_suffix,
)

SOCKET_NAME = "redis.sock"
DEFAULT_BINARIES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
CHECK_RDB_BINARIES = ("/usr/bin/redis-check-rdb", "/usr/local/bin/redis-check-rdb")
CHECK_RDB_ERROR_MARK = "--- RDB ERROR DETECTED ---"
LOG_TAIL = 1500
COPY_TTL_MS = 600_000

# DUMP and absolute expiry of given keys (ARGV[2..]: as KEYS, EVAL would demand write access to them);
# a payload larger than ARGV[1] comes back as its size.
FETCH_SCRIPT = """
local out = {}
local big = tonumber(ARGV[1])
for i = 2, #ARGV do
  local key = ARGV[i]
  local payload = redis.call('DUMP', key)
  if payload then
    out[#out + 1] = redis.call('PEXPIRETIME', key)
    if #payload > big then out[#out + 1] = #payload else out[#out + 1] = payload end
  else
    out[#out + 1] = -2
    out[#out + 1] = false
  end
end
return out
"""


def find_redis_server(binary: str | None) -> str:
    if binary:
        if not os.access(binary, os.X_OK):
            raise SnapshotError("redis_server_binary %s is not an executable file" % binary)
        return binary
    found = shutil.which("redis-server")
    for candidate in ((found,) if found else ()) + DEFAULT_BINARIES:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SnapshotError("this needs a scratch redis-server on the Redis host and none was found: install "
                        "redis-server there or give option redis_server_binary")


def require_memory(needed: int) -> None:
    """Refuse to start a scratch server the host has not the memory for."""
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise SnapshotError("a scratch redis-server would need about %d MiB and the host has %d MiB available"
                            % (needed >> 20, available >> 20))


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class ScratchServer:
    """A throw-away redis-server: private directory (0700), unix socket only, no persistence; optionally
    loading an RDB file (read in place through a symlink). Always stopped and removed by ``close()``."""

    def __init__(self, binary: str, parent_dir: str | None, rdb_path: str | None = None, databases: int = 16,
                 memory_needed: int = 0, timeout_s: float = 3600):
        require_memory(memory_needed)
        self.directory = tempfile.mkdtemp(prefix="cutover-scratch-", dir=parent_dir)
        os.chmod(self.directory, 0o700)
        self.socket = os.path.join(self.directory, SOCKET_NAME)
        if rdb_path:
            os.symlink(os.path.abspath(rdb_path), os.path.join(self.directory, "dump.rdb"))
        args = [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
                "--dir", self.directory, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--databases", str(max(16, databases)), "--enable-debug-command", "yes",
                "--logfile", os.path.join(self.directory, "redis.log")]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_loaded(time.monotonic() + timeout_s)
        except BaseException:
            self.close()
            raise

    def client(self, db: int = 0) -> Any:
        return redis_client({"url": "unix://%s?db=%d" % (self.socket, db), "socket_timeout": 300.0})

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log"), "rb") as log:
                return log.read()[-LOG_TAIL:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _wait_loaded(self, deadline: float) -> None:
        probe = self.client()  # one client: its connection is opened once the socket answers, then reused
        while True:
            if self._process.poll() is not None:
                raise SnapshotError("the scratch redis-server exited with %s while loading: %s"
                                    % (self._process.returncode, self._log_tail()))
            if os.path.exists(self.socket):
                try:
                    if not probe.info("persistence").get("loading"):
                        return
                except RedisError:
                    pass
            if time.monotonic() > deadline:
                raise SnapshotError("the scratch redis-server did not finish loading in time")
            time.sleep(0.05)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "ScratchServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# Whether Redis can load an RDB file (whole_rdb, before Redis is stopped)

def find_check_rdb() -> str | None:
    """redis-check-rdb (redis-tools) on PATH or in its usual places, or None."""
    found = shutil.which("redis-check-rdb")
    for candidate in ((found,) if found else ()) + CHECK_RDB_BINARIES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def check_rdb_errors(output: bytes) -> str:
    """What redis-check-rdb says is wrong (its lines after the error mark, without the [info] counts)."""
    text = output.decode("utf-8", "replace")
    lines = text.partition(CHECK_RDB_ERROR_MARK)[2].splitlines() or text.splitlines()[-3:]
    return "; ".join(line.strip() for line in lines if line.strip() and not line.startswith("[info]"))[:LOG_TAIL]


class RdbLoadCheck:
    """Whether Redis can load an RDB file. redis-check-rdb (which checks the structure and the CRC-64 as Redis
    loads it) starts at once, so it runs while the caller copies the file; without it, a scratch redis-server
    loads the file when ``problem()`` is asked (it needs memory for the dataset)."""

    def __init__(self, rdb_path: str, redis_server_binary: str | None, scratch_dir: str | None, databases: int,
                 memory_needed: int, timeout_s: float):
        self._rdb_path = rdb_path
        self._scratch = (redis_server_binary, scratch_dir, databases, memory_needed)
        self._timeout_s = timeout_s
        checker = find_check_rdb()
        self._process = None if checker is None else subprocess.Popen(
            [checker, rdb_path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def problem(self) -> str | None:
        """None when the file loads, else what is wrong with it; SnapshotError when there is nothing to check with."""
        if self._process is None:
            binary, scratch_dir, databases, memory_needed = self._scratch
            try:
                server = find_redis_server(binary)
            except SnapshotError as exc:
                raise SnapshotError("redis-check-rdb (redis-tools) is not installed, and %s" % exc)
            require_memory(memory_needed)
            try:
                with ScratchServer(server, scratch_dir, self._rdb_path, databases, memory_needed, self._timeout_s):
                    return None
            except SnapshotError as exc:
                return str(exc)
        try:
            output, _ = self._process.communicate(timeout=self._timeout_s)
        except subprocess.TimeoutExpired:
            self.cancel()
            return "redis-check-rdb did not finish within %d s" % self._timeout_s
        if self._process.returncode == 0:
            return None
        return "redis-check-rdb: %s" % check_rdb_errors(output)

    def cancel(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()


# ---------------------------------------------------------------------------------------------------
# Selective restore source: batches captured live from a (scratch) server

class StreamedRecord:
    """A big record whose payload streams from a live DUMP (the BigRecord interface)."""

    def __init__(self, namespace_index: int, key: bytes, expiry: int, length: int, chunks: Iterator[bytes]):
        self.namespace_index = namespace_index
        self.key = key
        self.expiry = expiry
        self.length = length
        self._chunks = chunks

    def chunks(self, size: int = 0) -> Iterator[bytes]:
        return self._chunks


def captured_batches(capture: LuaCapture, patterns: list[str], selected: list[str],
                     batch_size: int) -> Iterator[Union[Batch, StreamedRecord]]:
    """The keys of the selected namespaces of a server, as restore batches (a key belongs to the first
    pattern of ``patterns`` that matches it)."""
    classify = pattern_classifier(patterns)
    for pattern in selected:
        index = patterns.index(pattern)
        for keys, expiries, payloads, _vanished in capture.pages(pattern, batch_size):
            small_keys, small_expiries, small_payloads, big = [], [], [], []
            for key, expiry, payload in zip(keys, expiries, payloads):
                if classify(key) != index:
                    continue
                if expiry == MODULE_TYPE:
                    refuse_module_type(key, payload)
                if expiry >= NO_EXPIRY:
                    small_keys.append(key)
                    small_expiries.append(expiry)
                    small_payloads.append(payload)
                else:
                    big.append(key)
            if small_keys:
                yield index, small_keys, small_expiries, small_payloads
            for key in big:
                fetched = capture.big_keys.fetch(key)
                if fetched is not None:
                    expiry, length, chunks = fetched
                    yield StreamedRecord(index, key, expiry, length, chunks)


# ---------------------------------------------------------------------------------------------------
# verify: full

@dataclass
class Comparison:
    """The outcome of comparing a snapshot (loaded in a scratch server) with its source."""

    ttl_tolerance_ms: int
    compared: int = 0
    same: int = 0
    expired: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"value": 0, "ttl": 0, "missing_in_source": 0,
                                                            "extra_in_source": 0})
    sample: list[dict[str, str]] = field(default_factory=list)
    sample_size: int = 20

    def differ(self, key: bytes, reason: str) -> None:
        self.counts[reason] += 1
        if len(self.sample) < self.sample_size:
            self.sample.append({"key": key.decode("utf-8", "backslashreplace"), "reason": reason})

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "same": self.same, "expired_since": self.expired,
                "differences": self.differences, "by_reason": dict(self.counts), "differing_keys": self.sample,
                "ttl_tolerance_ms": self.ttl_tolerance_ms}


class SourceFetcher:
    """DUMP + absolute expiry of given keys on the source: one script call, or a pipeline without Lua."""

    def __init__(self, client: Any, scripting: bool, use_pexpiretime: bool, clock: Any):
        self._client = client
        self._scripting = scripting and use_pexpiretime
        self._expiry_command = "PEXPIRETIME" if use_pexpiretime else "PTTL"
        self._clock = None if use_pexpiretime else clock

    def present(self, keys: list[bytes]) -> list[bool]:
        """Whether the source holds each key now."""
        pipeline = self._client.pipeline(transaction=False)
        for key in keys:
            pipeline.execute_command(self._expiry_command, key)
        return [int(expiry) != -2 for expiry in pipeline.execute()]

    def fetch(self, keys: list[bytes]) -> list[tuple[int, Any]]:
        """(expiry or -2 when gone, payload bytes / its size when big / None) per key."""
        if self._scripting:
            reply = self._client.eval(FETCH_SCRIPT, 0, BIG_PAYLOAD, *keys)
            return [(int(expiry), payload if payload is not None else None)
                    for expiry, payload in zip(reply[0::2], reply[1::2])]
        pipeline = self._client.pipeline(transaction=False)
        for key in keys:
            pipeline.execute_command(self._expiry_command, key)
            pipeline.dump(key)
        replies = pipeline.execute()
        now_ms = self._clock.now_ms() if self._clock else 0
        fetched = []
        for expiry, payload in zip(replies[0::2], replies[1::2]):
            expiry = int(expiry)
            if payload is None:
                expiry = -2
            elif self._clock and expiry >= 0:
                expiry += now_ms
            fetched.append((expiry, payload))
        return fetched


def _stream_groups(client: Any, key: Any) -> Any:
    """The consumer-group state of a stream (DEBUG DIGEST-VALUE covers only its entries)."""
    info = client.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", 1)
    fields = dict(zip(info[0::2], info[1::2]))
    groups = []
    for group in fields.get(b"groups") or []:
        group_fields = dict(zip(group[0::2], group[1::2]))
        consumers = sorted(tuple((name, value) for name, value in zip(consumer[0::2], consumer[1::2])
                                 if name in (b"name", b"seen-time", b"pel-count"))
                           for consumer in group_fields.get(b"consumers") or [])
        groups.append((group_fields.get(b"name"), group_fields.get(b"last-delivered-id"),
                       group_fields.get(b"entries-read"), group_fields.get(b"pel-count"), tuple(consumers)))
    return (fields.get(b"last-generated-id"), fields.get(b"entries-added"), fields.get(b"max-deleted-entry-id"),
            sorted(groups))


def same_value(scratch: Any, key: bytes, other: str) -> bool:
    """Whether two keys of the scratch server hold equal values, whatever their internal encoding
    (DEBUG DIGEST-VALUE is order-independent for sets and hashes; stream groups are compared apart)."""
    kind = scratch.type(key)
    if kind != scratch.type(other):
        return False
    first, second = scratch.execute_command("DEBUG", "DIGEST-VALUE", key, other)
    if first != second:
        return False
    return kind != b"stream" or _stream_groups(scratch, key) == _stream_groups(scratch, other)


class Comparer:
    """Compares a scratch server holding a snapshot with the live source, key by key."""

    def __init__(self, source: Any, scratch: Any, source_fetcher: SourceFetcher, source_big: Any,
                 comparison: Comparison, clock: Any):
        self._source = source
        self._scratch = scratch
        self._fetcher = source_fetcher
        self._source_big = source_big
        self._result = comparison
        self._clock = clock

    def _copy_to_scratch(self, key: bytes, payload: Any, expires: bool) -> str | None:
        """Put the source's value of ``key`` into the scratch server under a fresh name; None if it vanished.

        The copy gets an expiry when the key has one: DEBUG DIGEST-VALUE mixes "has an expiry" into the digest.
        """
        name = "cutover:verify:%s" % uuid.uuid4().hex
        ttl = COPY_TTL_MS if expires else 0
        if isinstance(payload, bytes):
            self._scratch.restore(name, ttl, payload, replace=True)
            return name
        fetched = self._source_big.fetch(key)
        if fetched is None:
            return None
        _expiry, length, chunks = fetched
        connection = acquire_connection(self._scratch)
        clean = False
        try:
            expiry = int(time.time() * 1000) + ttl if ttl else 0  # restore_prefix frames RESTORE ... ABSTTL
            connection.send_packed_command([restore_prefix(name.encode(), expiry, length, True)], check_health=False)
            for chunk in chunks:
                connection.send_packed_command([chunk], check_health=False)
            connection.send_packed_command([restore_suffix(True)], check_health=False)
            connection.read_response()
            clean = True
        finally:
            release_connection(self._scratch, connection, clean)
        return name

    def _expired(self, expiry: int) -> bool:
        """Whether a snapshot expiry has passed by now (read after the source was): a key the source no longer
        holds then expired, it is no difference."""
        return 0 <= expiry <= self._clock.now_ms() + self._result.ttl_tolerance_ms

    def _value_verdict(self, key: bytes, source_payload: Any, expiry: int) -> str | None:
        """None when the source's value equals the snapshot's, else the reason ("expired" when either side's copy
        expired meanwhile)."""
        copy = self._copy_to_scratch(key, source_payload, expiry != -1)
        if copy is None:
            return "expired" if self._expired(expiry) else "missing_in_source"
        try:
            equal = same_value(self._scratch, key, copy)
        finally:
            self._scratch.delete(copy)
        if equal:
            return None
        return "value" if self._scratch.exists(key) else "expired"

    def compare_page(self, keys: list[bytes], expiries: list[int], payloads: list[Any]) -> None:
        result = self._result
        fetched = self._fetcher.fetch(keys)
        for key, expiry, payload, (source_expiry, source_payload) in zip(keys, expiries, payloads, fetched):
            result.compared += 1
            if expiry == FETCH_ALONE:  # a big value: its expiry was not read with the page
                expiry = int(self._scratch.execute_command("PEXPIRETIME", key))
            if expiry == -2:  # expired in the scratch server since the page was read
                result.expired += 1
                continue
            if source_expiry == -2:
                if self._expired(expiry):
                    result.expired += 1
                else:
                    result.differ(key, "missing_in_source")
                continue
            if not (isinstance(payload, bytes) and payload == source_payload):
                verdict = self._value_verdict(key, source_payload, expiry)
                if verdict == "expired":
                    result.expired += 1
                    continue
                if verdict:
                    result.differ(key, verdict)
                    continue
            if (expiry == -1) != (source_expiry == -1) or abs(expiry - source_expiry) > result.ttl_tolerance_ms:
                result.differ(key, "ttl")
                continue
            result.same += 1

    def count_extra(self, patterns: list[str], batch_size: int) -> None:
        """Keys the source has in the namespaces and the snapshot does not (written since)."""
        classify = pattern_classifier(patterns)
        for index, pattern in enumerate(patterns):
            cursor = 0
            while True:
                cursor, keys = self._source.scan(cursor, match=pattern, count=batch_size)
                own = [key for key in keys if classify(key) == index]
                if own:
                    pipeline = self._scratch.pipeline(transaction=False)
                    for key in own:
                        pipeline.exists(key)
                    absent = [key for key, present in zip(own, pipeline.execute()) if not present]
                    # A snapshot key that expired in the scratch server since SCAN saw it has expired in the source
                    # by now too: only keys the source still holds were written since.
                    for key, present in zip(absent, self._fetcher.present(absent) if absent else []):
                        if present:
                            self._result.differ(key, "extra_in_source")
                if int(cursor) == 0:
                    break


def compare_snapshot(source: Any, scratch: Any, patterns: list[str], snapshot_keys: int, batch_size: int,
                     comparison: Comparison, scripting: bool, use_pexpiretime: bool, clock: Any,
                     source_big: Any) -> Comparison:
    """Walk every snapshot key in the scratch server (per namespace) and compare it with the source. Of the
    ``snapshot_keys`` the snapshot holds in the namespaces, those the scratch server no longer has expired (it
    drops them on loading, or once their time comes)."""
    capture = LuaCapture(scratch, use_pexpiretime=True)
    comparer = Comparer(source, scratch, SourceFetcher(source, scripting, use_pexpiretime, clock), source_big,
                        comparison, clock)
    classify = pattern_classifier(patterns)
    try:
        for index, pattern in enumerate(patterns):
            for keys, expiries, payloads, _vanished in capture.pages(pattern, batch_size):
                own = [position for position, key in enumerate(keys) if classify(key) == index
                       and not key.startswith(b"cutover:verify:")]
                if own:
                    comparer.compare_page([keys[position] for position in own], [expiries[position] for position in own],
                                          [payloads[position] for position in own])
    finally:
        capture.close()
    comparer.count_extra(patterns, batch_size)
    comparison.expired += max(0, snapshot_keys - comparison.compared)
    return comparison


def load_logical_into(scratch: Any, batches: Iterator[Any], clock: Any) -> None:
    """Restore a logical snapshot's records into an empty scratch server (expired ones are skipped)."""
    restorer = PipelineRestorer(scratch, True, lambda *counts: None)
    try:
        for batch in batches:
            if hasattr(batch, "chunks"):
                if 0 <= batch.expiry <= clock.now_ms():
                    continue
                restorer.submit_big(batch)
                continue
            index, keys, expiries, payloads = batch
            now_ms = clock.now_ms()
            live = [position for position, expiry in enumerate(expiries) if not 0 <= expiry <= now_ms]
            if live:
                restorer.submit(index, [keys[p] for p in live], [expiries[p] for p in live], [payloads[p] for p in live])
        restorer.finish()
    finally:
        restorer.close()

