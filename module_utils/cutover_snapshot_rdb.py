# -*- coding: utf-8 -*-
# Snapshot modes `rdb` and `replica`, and the whole-file restore of their snapshots.
#
# rdb: BGSAVE, then read Redis's temp file while the fork writes it (hashing, copying and parsing it as it
#      grows), so the snapshot is done moments after the BGSAVE is; needs the Redis host's filesystem.
# replica: the RDB Redis streams to a new replica (SYNC, like `redis-cli --rdb`), copied, hashed and parsed
#      as it arrives; needs only a connection. Diskless transfers wait repl-diskless-sync-delay first.
# whole-file restore: stop Redis, put the snapshot where Redis loads it from (the RDB file, or the base of
#      a fresh AOF when appendonly is on), start Redis, check what it loaded; on any failure put the
#      previous files back and start Redis again.
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from ansible.module_utils.cutover_rdb import FileChunks, GrowingFileChunks, RdbScanner, RdbSummary, Tee
from ansible.module_utils.cutover_redis import RedisError, ResponseError, redis_client
from ansible.module_utils.cutover_snapshot import (
    READ_CHUNK,
    SnapshotError,
    fsync_directory,
    open_private,
    pattern_matcher,
)
from ansible.module_utils.cutover_snapshot_logical import read_line, acquire_connection, release_connection

EOF_MARK_LENGTH = 40
DEFAULT_DATABASES = 16
READER_NICENESS = 10
POLL_S = 0.05
# RDB versions a Redis server loads, by its own version (newest first).
RDB_VERSION_BY_REDIS = (((7, 2), 11), ((7, 0), 10), ((5, 0), 9), ((4, 0), 8), ((3, 2), 7), ((2, 6), 6))


def loadable_rdb_version(version: tuple[int, ...]) -> int:
    for minimum, rdb_version in RDB_VERSION_BY_REDIS:
        if version[:2] >= minimum:
            return rdb_version
    return 5


@dataclass
class Capture:
    """What a capture produced: the RDB facts, how it was taken, and when."""

    summary: RdbSummary
    sha256: str
    bytes: int
    details: dict[str, Any]


def scan_into(source: Any, out: BinaryIO, patterns: list[str], db: int, now_ms: int) -> tuple[RdbSummary, str, int]:
    """Copy a byte source into ``out`` while hashing and parsing it: (summary, sha256, bytes)."""
    tee = Tee(source, hashlib.sha256(), out)
    summary = RdbScanner(tee, pattern_matcher(patterns), len(patterns), db, now_ms).scan()
    return summary, tee.digest.hexdigest(), tee.bytes


# ---------------------------------------------------------------------------------------------------
# rdb: BGSAVE and its file

def persistence(client: Any) -> dict[str, Any]:
    return client.info("persistence")


def config_value(client: Any, name: str) -> str:
    """One CONFIG GET value (ResponseError when the user may not read the config)."""
    values = {_text(key): _text(value) for key, value in client.config_get(name).items()}
    if name not in values:
        raise SnapshotError("Redis has no config parameter %r" % name)
    return values[name]


def rdb_location(client: Any, rdb_path: str | None) -> str:
    """The RDB file Redis writes: option rdb_path, else CONFIG GET dir + dbfilename."""
    if rdb_path:
        return rdb_path
    try:
        return os.path.join(config_value(client, "dir"), config_value(client, "dbfilename"))
    except ResponseError as exc:
        raise SnapshotError("mode rdb reads Redis's RDB file: give option rdb_path (the file Redis saves, e.g. "
                            "/var/lib/redis/dump.rdb), or let the Redis user run CONFIG GET (ACL +config|get): %s"
                            % exc)


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def wait_until(predicate: Callable[[], bool], deadline: float, what: str) -> None:
    while not predicate():
        if time.monotonic() > deadline:
            raise SnapshotError("timed out waiting for %s" % what)
        time.sleep(POLL_S)


def start_bgsave(client: Any, deadline: float) -> int:
    """Start a BGSAVE of our own (after any save or AOF rewrite already running); returns the unix time
    in seconds it started at."""
    while True:
        state = persistence(client)
        if not state.get("rdb_bgsave_in_progress") and not state.get("aof_rewrite_in_progress"):
            started = int(client.time()[0])
            try:
                client.execute_command("BGSAVE")
                return started
            except ResponseError as exc:
                if "in progress" not in str(exc) and "rewriting" not in str(exc):
                    raise SnapshotError("Redis refused BGSAVE: %s" % exc)
        if time.monotonic() > deadline:
            raise SnapshotError("timed out waiting for the save or AOF rewrite Redis was already running")
        time.sleep(POLL_S)


def bgsave_finished(client: Any, started: int) -> bool:
    """True once no BGSAVE runs; raises if ours failed."""
    state = persistence(client)
    if state.get("rdb_bgsave_in_progress"):
        return False
    if state.get("rdb_last_bgsave_status") != "ok":
        raise SnapshotError("Redis's BGSAVE failed (rdb_last_bgsave_status: %s); see the Redis log"
                            % state.get("rdb_last_bgsave_status"))
    if int(state.get("rdb_last_save_time", 0)) < started:
        raise SnapshotError("Redis's BGSAVE ended without saving (rdb_last_save_time is before it started)")
    return True


def find_temp_file(directory: str, since: float, deadline: float, finished: Callable[[], bool]) -> str | None:
    """The temp-<pid>.rdb file the BGSAVE child writes, once it appears (None if the save ended first)."""
    while time.monotonic() < deadline:
        candidates = [path for path in glob.glob(os.path.join(glob.escape(directory), "temp-*.rdb"))
                      if _mtime(path) >= since - 1]
        if candidates:
            return max(candidates, key=_mtime)
        if finished():
            return None
        time.sleep(0.005)
    return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def yielding_cpu(work: Callable[..., Any], *args: Any) -> Any:
    """Run ``work`` in a thread of lower CPU priority (Linux niceness is per thread), so reading the RDB while
    the fork writes it does not slow the fork down; the rest of the process keeps its priority."""
    def niced() -> Any:
        thread = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + READER_NICENESS)
        except OSError:
            pass  # no niceness: the same work at normal priority
        return work(*args)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(niced).result()


def capture_bgsave(client: Any, rdb_path: str, out: BinaryIO, patterns: list[str], db: int,
                   timeout_s: float) -> Capture:
    """BGSAVE, and copy/hash/parse the file as the fork writes it (or, if it was too quick to catch, after)."""
    deadline = time.monotonic() + timeout_s
    since = time.time()
    started = start_bgsave(client, deadline)
    now_ms = started * 1000
    temp_path = find_temp_file(os.path.dirname(rdb_path), since, min(deadline, time.monotonic() + 10),
                               lambda: bgsave_finished(client, started))
    handle = None
    if temp_path:
        try:
            handle = open(temp_path, "rb", buffering=0)
        except FileNotFoundError:  # renamed into place between the listing and the open
            handle = None
    if handle is not None:
        with handle:
            source = GrowingFileChunks(handle, lambda: bgsave_finished(client, started), deadline)
            summary, sha256, size = yielding_cpu(scan_into, source, out, patterns, db, now_ms)
        how = "bgsave, read while written"
    else:
        wait_until(lambda: bgsave_finished(client, started), deadline, "Redis's BGSAVE")
        try:
            with open(rdb_path, "rb", buffering=0) as handle:
                summary, sha256, size = scan_into(FileChunks(handle), out, patterns, db, now_ms)
        except OSError as exc:
            raise SnapshotError("cannot read Redis's RDB file %s: %s" % (rdb_path, exc))
        how = "bgsave, read after"
    wait_until(lambda: bgsave_finished(client, started), deadline, "Redis's BGSAVE")
    return Capture(summary, sha256, size, {"capture": how, "rdb_path": rdb_path, "saved_at": started})


# ---------------------------------------------------------------------------------------------------
# replica: the RDB of a full resynchronisation

class ReplicationChunks:
    """The RDB payload of a SYNC reply: a known length, or (diskless) everything up to a 40-byte EOF mark."""

    def __init__(self, sock: Any, pending: bytes, length: int | None, mark: bytes | None):
        self._sock = sock
        self._pending = pending
        self._left = length
        self._mark = mark
        self._held = b""
        self._done = False

    def _recv(self, size: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        data = self._sock.recv(size)
        if not data:
            raise SnapshotError("Redis closed the replication connection before the end of the RDB")
        return data

    def read_chunk(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._left is not None:
            if self._left == 0:
                self._done = True
                return b""
            data = self._recv(min(size, self._left))
            data, self._pending = data[:self._left], data[self._left:]
            self._left -= len(data)
            return data
        while True:
            window = self._held + self._recv(size)
            found = window.find(self._mark)
            if found >= 0:
                self._done = True
                return window[:found]
            self._held = window[-EOF_MARK_LENGTH:]
            if len(window) > EOF_MARK_LENGTH:
                return window[:-EOF_MARK_LENGTH]


def read_sync_header(sock: Any, deadline: float) -> tuple[int | None, bytes | None, bytes]:
    """Skip the keep-alive newlines Redis sends while it prepares the RDB, then read the bulk header:
    (length or None, EOF mark or None, bytes already received after the header)."""
    pending = b""
    while True:
        pending = pending.lstrip(b"\n")
        if pending:
            break
        if time.monotonic() > deadline:
            raise SnapshotError("timed out waiting for Redis to start sending the RDB")
        data = sock.recv(65536)
        if not data:
            raise SnapshotError("Redis closed the replication connection before sending the RDB")
        pending += data
    line, rest = read_line(sock, pending)
    if line.startswith(b"-"):
        raise SnapshotError("Redis refused SYNC: %s" % line[1:].decode("utf-8", "replace"))
    if line.startswith(b"$EOF:") and len(line) == 5 + EOF_MARK_LENGTH:
        return None, line[5:], rest
    if line.startswith(b"$") and line[1:].isdigit():
        return int(line[1:]), None, rest
    raise SnapshotError("unexpected reply to SYNC: %r" % line[:80])


class SyncDelayOverride:
    """Set repl-diskless-sync-delay for the time one SYNC waits, then put the old value back."""

    def __init__(self, client: Any, seconds: int | None):
        self._client = client
        self._seconds = seconds
        self.previous: int | None = None

    def __enter__(self) -> "SyncDelayOverride":
        if self._seconds is None:
            return self
        try:
            self.previous = int(config_value(self._client, "repl-diskless-sync-delay"))
            self._client.config_set("repl-diskless-sync-delay", self._seconds)
        except ResponseError as exc:
            raise SnapshotError("option replica_sync_delay needs CONFIG GET and CONFIG SET of "
                                "repl-diskless-sync-delay (ACL +config|get +config|set): %s" % exc)
        return self

    def restore(self) -> None:
        if self.previous is not None:
            self._client.config_set("repl-diskless-sync-delay", self.previous)
            self.previous = None

    def __exit__(self, *exc_info: Any) -> None:
        self.restore()


def diskless_delay_setting(client: Any) -> int | None:
    """The server's repl-diskless-sync-delay when this user may read it, else None."""
    try:
        return int(config_value(client, "repl-diskless-sync-delay"))
    except (ResponseError, SnapshotError, ValueError):
        return None


def capture_replica(client: Any, out: BinaryIO, patterns: list[str], db: int, timeout_s: float,
                    diskless: bool, sync_delay: int | None) -> Capture:
    """Become a replica just long enough to receive one RDB (REPLCONF rdb-only, then SYNC)."""
    deadline = time.monotonic() + timeout_s
    delay_setting = diskless_delay_setting(client)
    connection = acquire_connection(client)
    try:
        with SyncDelayOverride(client, sync_delay if diskless else None) as override:
            if diskless:
                connection.send_command("REPLCONF", "capa", "eof")
                connection.read_response()
            try:
                connection.send_command("REPLCONF", "rdb-only", "1")
                connection.read_response()
                rdb_only = True
            except ResponseError:  # Redis < 7.0: a plain replica, dropped once the RDB is in
                rdb_only = False
            now_ms = int(client.time()[0]) * 1000
            sent = time.monotonic()
            connection.send_command("SYNC")
            length, mark, rest = read_sync_header(connection._sock, deadline)
            waited_ms = int((time.monotonic() - sent) * 1000)
            override.restore()
            source = ReplicationChunks(connection._sock, rest, length, mark)
            summary, sha256, size = scan_into(source, out, patterns, db, now_ms)
    finally:
        release_connection(client, connection, clean=False)  # a replica link is never reused
    details = {
        "capture": "replication, %s" % ("diskless" if mark else "disk-based"),
        "rdb_only": rdb_only,
        "sync_wait_ms": waited_ms,
        "diskless_sync_delay_s": sync_delay if diskless and sync_delay is not None else delay_setting,
        "diskless_sync_delay_overridden": bool(diskless and sync_delay is not None),
    }
    return Capture(summary, sha256, size, details)


# ---------------------------------------------------------------------------------------------------
# Whole-file restore

@dataclass
class RedisFiles:
    """Where the target Redis loads its data from at start-up."""

    directory: str
    dbfilename: str
    aof_enabled: bool
    aof_dirname: str
    aof_filename: str

    @property
    def rdb_path(self) -> str:
        return os.path.join(self.directory, self.dbfilename)

    @property
    def aof_dir(self) -> str:
        return os.path.join(self.directory, self.aof_dirname)


def redis_files(client: Any, rdb_path: str | None) -> RedisFiles:
    """CONFIG GET (or option rdb_path plus INFO persistence) tells where Redis keeps its files."""
    aof_enabled = bool(persistence(client).get("aof_enabled"))
    try:
        config = {name: config_value(client, name) for name in ("dir", "dbfilename", "appenddirname", "appendfilename")}
    except ResponseError as exc:
        if not rdb_path:
            raise SnapshotError("a whole_rdb restore must know where Redis loads its data from: give option "
                                "rdb_path, or let the Redis user run CONFIG GET (ACL +config|get): %s" % exc)
        config = {}
    if rdb_path:
        config["dir"], config["dbfilename"] = os.path.dirname(rdb_path), os.path.basename(rdb_path)
    return RedisFiles(directory=config["dir"], dbfilename=config["dbfilename"], aof_enabled=aof_enabled,
                      aof_dirname=config.get("appenddirname", "appendonlydir"),
                      aof_filename=config.get("appendfilename", "appendonly.aof"))


def database_count_problem(client: Any, manifest: dict[str, Any]) -> str | None:
    """Why Redis would refuse to load the snapshot for lack of databases (it refuses a file with keys in a
    database beyond its ``databases`` setting), or None."""
    highest = max((int(db) for db in manifest["databases"]), default=0)
    try:
        count = int(config_value(client, "databases"))
    except ResponseError:
        if highest < DEFAULT_DATABASES:
            return None
        return ("the snapshot holds keys in database %d, and the target's databases setting cannot be read (ACL "
                "+config|get) to know whether it has that many" % highest)
    if highest < count:
        return None
    return "the snapshot holds keys in database %d and the target has databases 0-%d" % (highest, count - 1)


def unsaved_keys(client: Any, files: RedisFiles) -> int:
    """Keys the target would lose if it stopped now: all of them when AOF is off and its RDB file is missing or
    older than its data (a Redis without persistence, or one stopped without saving)."""
    state = persistence(client)
    held = sum(loaded_keys(client).values())
    if not held or state.get("aof_enabled"):
        return 0
    if not state.get("rdb_changes_since_last_save") and os.path.exists(files.rdb_path):
        return 0
    return held


def save_now(client: Any, timeout_s: float) -> None:
    """BGSAVE and wait until it is done (Redis's own RDB file then holds the data)."""
    deadline = time.monotonic() + timeout_s
    started = start_bgsave(client, deadline)
    wait_until(lambda: bgsave_finished(client, started), deadline, "Redis's BGSAVE")


def _copy_bytes(source: BinaryIO, target: BinaryIO) -> None:
    """Copy a whole file inside the kernel where it can (copy_file_range), else through a buffer."""
    size = os.fstat(source.fileno()).st_size
    offset = 0
    try:
        while offset < size:
            copied = os.copy_file_range(source.fileno(), target.fileno(), size - offset)
            if not copied:
                break
            offset += copied
        return
    except OSError:  # e.g. an old kernel or a filesystem pair that cannot: restart with plain reads
        source.seek(0)
        target.seek(0)
        target.truncate()
    shutil.copyfileobj(source, target, READ_CHUNK * 8)


def hash_file(path: str) -> str:
    # One reused buffer: a fresh multi-MiB bytes object per read costs a page fault per 4 KiB.
    digest = hashlib.sha256()
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            size = handle.readinto(buffer)
            if not size:
                return digest.hexdigest()
            digest.update(view[:size])


def copy_hashed(source_path: str, target_path: str, like: str) -> str:
    """Copy ``source_path`` to a new ``target_path`` (owner, group and mode of ``like``), fsynced; returns the
    sha256 of the source, hashed in a helper thread while the kernel copies (both release the GIL)."""
    reference = os.stat(like)
    mode = 0o600 if os.path.isdir(like) else reference.st_mode & 0o777
    fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashed = pool.submit(hash_file, source_path)
            with open(source_path, "rb", buffering=0) as source, os.fdopen(fd, "wb", buffering=0) as target:
                _copy_bytes(source, target)
                os.fsync(target.fileno())
                try:
                    os.fchown(target.fileno(), reference.st_uid, reference.st_gid)
                except PermissionError:
                    pass
                os.fchmod(target.fileno(), mode)
            sha256 = hashed.result()
        if os.path.getsize(target_path) != os.path.getsize(source_path):
            raise SnapshotError("the staged copy %s is not as long as %s" % (target_path, source_path))
    except BaseException:
        os.unlink(target_path)
        raise
    return sha256


def probe_client(options: dict[str, Any]) -> Any:
    """A client for polling a Redis that may be down: short timeout, no redis-py retries with backoff. Its
    connection is re-opened by the next command after an error, so one client serves a whole stop and start."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    client = redis_client(dict(options, socket_timeout=2.0))
    client.set_retry(Retry(NoBackoff(), 0))
    return client


def run_command(argv: list[str], timeout_s: float, what: str) -> None:
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotError("%s %s failed: %s" % (what, argv[0], exc))
    output = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0 or "ERROR" in output:
        raise SnapshotError("%s exited %d: %s" % (what, result.returncode, output[-500:]))


class FileSwap:
    """Moves the current data files aside and the staged snapshot into their place, and back."""

    def __init__(self, files: RedisFiles, staged: str, suffix: str):
        self.files = files
        self.staged = staged
        self.suffix = suffix
        self.moved: list[tuple[str, str]] = []  # (original, aside)
        self.placed: str | None = None

    def _aside(self, path: str) -> None:
        if os.path.lexists(path):
            aside = "%s.%s" % (path, self.suffix)
            os.rename(path, aside)
            self.moved.append((path, aside))

    def apply(self) -> str:
        """Put the snapshot in place; returns the path Redis will load it from."""
        files = self.files
        if not files.aof_enabled:
            self._aside(files.rdb_path)
            os.rename(self.staged, files.rdb_path)
            self.placed = files.rdb_path
            fsync_directory(files.directory)
            return files.rdb_path
        # appendonly yes: Redis loads the AOF, not the RDB - make the snapshot the base of a fresh AOF.
        self._aside(files.aof_dir)
        reference = os.stat(self.moved[-1][1]).st_mode & 0o777 if self.moved else 0o755
        os.mkdir(files.aof_dir, reference)
        self.placed = files.aof_dir
        base_name = "%s.1.base.rdb" % files.aof_filename
        os.rename(self.staged, os.path.join(files.aof_dir, base_name))
        manifest_path = os.path.join(files.aof_dir, "%s.manifest" % files.aof_filename)
        with open_private(manifest_path) as manifest:
            manifest.write(("file %s seq 1 type b\n" % base_name).encode("utf-8"))
            manifest.flush()
            os.fsync(manifest.fileno())
        self._match_owner(files.aof_dir)
        fsync_directory(files.aof_dir)
        fsync_directory(files.directory)
        return os.path.join(files.aof_dir, base_name)

    def _match_owner(self, aof_dir: str) -> None:
        reference = os.stat(self.files.directory)
        for path in [aof_dir] + [os.path.join(aof_dir, name) for name in os.listdir(aof_dir)]:
            try:
                os.chown(path, reference.st_uid, reference.st_gid)
            except PermissionError:
                pass

    def undo(self) -> None:
        """Remove what apply() put in place and move the previous files back."""
        placed = self.placed
        if placed and os.path.isdir(placed) and not os.path.islink(placed):
            shutil.rmtree(placed)
        elif placed and os.path.lexists(placed):
            os.unlink(placed)
        self.placed = None
        for original, aside in reversed(self.moved):
            os.rename(aside, original)
        self.moved = []
        fsync_directory(self.files.directory)

    @property
    def previous(self) -> list[str]:
        return [aside for _original, aside in self.moved]


def wait_for_loaded(probe: Any, deadline: float) -> Any:
    """Poll (one connection, re-opened after errors) until Redis answers and has loaded its data; returns ``probe``."""
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            if not persistence(probe).get("loading"):
                return probe
            last_error = "still loading"
        except RedisError as exc:
            last_error = str(exc)
        time.sleep(POLL_S / 5)
    raise SnapshotError("Redis did not come back with its data loaded in time (%s)" % last_error)


def process_alive(pid: int | None) -> bool:
    """Whether the Redis process ``pid`` (INFO server process_id, seen from this host) still runs."""
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return b"redis" in handle.read()
    except OSError:
        return False


def wait_for_down(probe: Any, pid: int | None, deadline: float) -> None:
    """Until Redis neither answers nor runs: a Redis still saving on shutdown would overwrite the swap."""
    while time.monotonic() < deadline:
        try:
            probe.ping()
        except RedisError:
            if not process_alive(pid):
                return
        time.sleep(POLL_S)
    raise SnapshotError("Redis still runs after stop_command; its files were not touched")


def loaded_keys(client: Any) -> dict[str, int]:
    """Keys per database as INFO keyspace reports them."""
    return {name[2:]: int(value["keys"]) for name, value in client.info("keyspace").items()
            if name.startswith("db") and isinstance(value, dict)}


def load_problem(manifest: dict[str, Any], loaded: dict[str, int]) -> str | None:
    """Compare what Redis loaded with the snapshot's per-database counts (expired keys may be dropped)."""
    expires = manifest.get("expires", {})
    for db, count in manifest["databases"].items():
        have = loaded.get(db, 0)
        if not count - int(expires.get(db, 0)) <= have <= count:
            return ("Redis loaded %d keys into db %s, the snapshot holds %d (%d of them with an expiry)"
                    % (have, db, count, int(expires.get(db, 0))))
    extra = sorted(set(loaded) - set(manifest["databases"]))
    if extra:
        return "Redis loaded keys into databases %s, which the snapshot does not have" % ", ".join(extra)
    return None
