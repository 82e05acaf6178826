# -*- coding: utf-8 -*-
# Run journal I/O shared by the cutover_journal module (and readable by tests and the report).
# Stdlib only: runs on the journal host.
from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from ansible.module_utils.cutover_events import check_event, parse_timestamp, utc_timestamp  # noqa: F401 - re-exported
from ansible.module_utils.cutover_run import run_state

RUN_ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z(-[a-z0-9]+)?$")
SECRET_KEY_PATTERN = re.compile(r"password|passwd|secret|token", re.IGNORECASE)
# scheme://userinfo@ - the userinfo of a URL carries the credentials (redis://user:pw@host).
URL_CREDENTIALS_PATTERN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s]+)@")
QUERY_SECRET_PATTERN = re.compile(r"(?P<name>(?:password|passwd|secret|token)[A-Za-z0-9_]*=)(?P<value>[^&\s#]+)",
                                  re.IGNORECASE)
MASK = "********"
JOURNAL_SUFFIX = ".jsonl"
FILE_MODE = 0o600
DIR_MODE = 0o700
TAIL_BLOCK = 64 * 1024


def redact(value: Any, secrets: set[str] | None = None) -> Any:
    """Return a copy of value with secret-named keys and URL credentials masked.

    A secret found under a secret-named key is also masked wherever else it appears in value (a password
    repeated in a message). Every masked string is added to ``secrets`` (when given) so a module can keep
    it out of its own output and logs too.
    """
    found: set[str] = set()
    masked = _mask(value, found)
    found.discard(MASK)
    found.discard("")
    if found:
        masked = _replace_secrets(masked, sorted(found, key=len, reverse=True))
    if secrets is not None:
        secrets.update(found)
    return masked


def _mask(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: _redact_item(key, item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(item, secrets) for item in value]
    if isinstance(value, str):
        return _mask_url_credentials(value, secrets)
    return value


def _replace_secrets(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {key: _replace_secrets(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_secrets(item, secrets) for item in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
    return value


def _redact_item(key: Any, item: Any, secrets: set[str]) -> Any:
    if isinstance(key, str) and SECRET_KEY_PATTERN.search(key) and item not in (None, "", {}, []):
        _collect_strings(item, secrets)
        return MASK
    return _mask(item, secrets)


def _collect_strings(value: Any, secrets: set[str]) -> None:
    if isinstance(value, str):
        secrets.add(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_strings(item, secrets)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect_strings(item, secrets)


def _mask_url_credentials(text: str, secrets: set[str]) -> str:
    def mask(match: re.Match) -> str:
        userinfo = match.group("userinfo")
        secrets.add(userinfo.partition(":")[2] or userinfo)
        return match.group("scheme") + MASK + "@"

    def mask_query(match: re.Match) -> str:
        secrets.add(match.group("value"))
        return match.group("name") + MASK
    return QUERY_SECRET_PATTERN.sub(mask_query, URL_CREDENTIALS_PATTERN.sub(mask, text))


def journal_file(directory: str, run_id: str) -> str:
    return os.path.join(directory, run_id + JOURNAL_SUFFIX)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: str) -> None:
    """Create the directory (0700) if missing, durably."""
    if os.path.isdir(directory):
        return
    os.makedirs(directory, mode=DIR_MODE)
    os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask
    fsync_dir(os.path.dirname(os.path.abspath(directory)))


@contextmanager
def locked(fd: int, exclusive: bool) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def parse_lines(raw: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse journal bytes into (entries in seq order, warnings); bad lines are skipped, never fatal."""
    entries: list[dict[str, Any]] = []
    warnings: list[str] = []
    lines = raw.split(b"\n")
    unterminated = lines.pop()  # b"" when the journal ends with a newline, as every complete append leaves it
    for number, line in enumerate(lines + [unterminated], start=1):
        entry = _parse_entry(line)
        if entry is not None:
            entries.append(entry)
        elif line.strip():
            cause = "the last write was cut short" if number > len(lines) else "a write was cut short earlier"
            warnings.append("line %d is not a complete journal entry (%s, e.g. by a crash); skipped: %r"
                            % (number, cause, line[:80].decode("utf-8", "replace")))
    entries.sort(key=lambda item: item["seq"])
    seqs = [entry["seq"] for entry in entries]
    if len(set(seqs)) != len(seqs):
        warnings.append("journal holds duplicate seq numbers (edited by hand?)")
    return entries, warnings


def _parse_entry(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int) or not isinstance(entry.get("event"), str):
        return None
    return entry


def read_journal(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a journal under a shared lock so a concurrent append is never seen half-written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with locked(fd, exclusive=False):
            raw = _read_all(fd)
    finally:
        os.close(fd)
    return parse_lines(raw)


def _read_all(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1024 * 1024)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tail_state(fd: int) -> tuple[int, bool]:
    """Return (seq of the last complete entry or 0, whether the file ends with a newline).

    Reads backwards block by block: appends are serialised, so the last entry holds the highest seq.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, True
    ends_with_newline = os.pread(fd, 1, size - 1) == b"\n"
    end = size
    carry = b""
    while end > 0:
        start = max(0, end - TAIL_BLOCK)
        block = os.pread(fd, end - start, start) + carry
        lines = block.split(b"\n")
        # The first piece may be the tail of an earlier line unless we reached the start of the file.
        carry = lines.pop(0) if start > 0 else b""
        for line in reversed(lines):
            entry = _parse_entry(line)
            if entry is not None:
                return entry["seq"], ends_with_newline
        end = start
    entry = _parse_entry(carry)
    return (entry["seq"] if entry else 0), ends_with_newline


def next_seq(path: str) -> int:
    """The seq the next append would get (read-only; used by check mode)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 1
    try:
        with locked(fd, exclusive=False):
            return tail_state(fd)[0] + 1
    finally:
        os.close(fd)


def build_entries(first_seq: int, run_id: str, events: list[dict[str, Any]],
                  moment: datetime | None = None) -> list[dict[str, Any]]:
    """Journal entries for events ({event, host, component, data, ts}), numbered from first_seq.

    ``ts`` is when the event happened (set by the module that saw it on its host); it defaults to now.
    Raises EventError (naming the event and the field) for an entry the schema does not allow.
    """
    now = utc_timestamp(moment)
    entries = []
    for offset, event in enumerate(events):
        data = event.get("data") or {}
        check_event(event["event"], data, event.get("ts"))
        entries.append({"seq": first_seq + offset, "ts": event.get("ts") or now, "run_id": run_id,
                        "event": event["event"], "host": event.get("host"), "component": event.get("component"),
                        "data": data})
    return entries


def append_entries(directory: str, run_id: str, events: list[dict[str, Any]],
                   moment: datetime | None = None) -> list[dict[str, Any]]:
    """Append events as redacted entries with contiguous seqs: one flock, one write, one fsync.

    Every entry is checked against the schema before anything is written: one bad entry appends none.
    """
    build_entries(1, run_id, events, moment)
    ensure_dir(directory)
    path = journal_file(directory, run_id)
    fd, created = _open_for_append(path)
    try:
        with locked(fd, exclusive=True):
            last_seq, ends_with_newline = tail_state(fd)
            entries = build_entries(last_seq + 1, run_id, [dict(event, data=redact(event.get("data") or {}))
                                                           for event in events], moment)
            lines = "".join(json.dumps(entry, separators=(",", ":"), default=str) + "\n" for entry in entries)
            # A torn last line stays as it is (append-only); the new entries start on a line of their own.
            _write_all(fd, (b"" if ends_with_newline else b"\n") + lines.encode("utf-8"))
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(directory)
    return entries


def _open_for_append(path: str) -> tuple[int, bool]:
    """Open for appending (and reading the tail); True when this call created the file."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, FILE_MODE), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_APPEND), False


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def list_runs(directory: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Summaries of every journal in directory, newest run first, plus read warnings."""
    runs: list[dict[str, Any]] = []
    warnings: list[str] = []
    if not os.path.isdir(directory):
        return runs, warnings
    for name in os.listdir(directory):
        run_id, suffix = name[:-len(JOURNAL_SUFFIX)], name[-len(JOURNAL_SUFFIX):]
        if suffix != JOURNAL_SUFFIX or not RUN_ID_PATTERN.match(run_id):
            continue
        entries, journal_warnings = read_journal(os.path.join(directory, name))
        warnings.extend("%s: %s" % (run_id, warning) for warning in journal_warnings)
        runs.append(summarise_run(run_id, entries))
    runs.sort(key=lambda run: run["run_id"], reverse=True)
    return runs, warnings


def summarise_run(run_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    started = next((entry for entry in entries if entry["event"] == "run.started"), None)
    finished = next((entry for entry in reversed(entries) if entry["event"] == "run.finished"), None)
    started_data = (started or {}).get("data") or {}
    return {
        "run_id": run_id,
        "playbook": started_data.get("playbook"),
        "target_release": started_data.get("target_release"),
        "started_at": started["ts"] if started else None,
        "finished": finished is not None,
        "outcome": ((finished.get("data") or {}).get("outcome")) if finished else None,
        "target_run_id": started_data.get("target_run_id"),
        "lease": run_state(entries)["lease"] if started_data.get("playbook") == "migrate" and finished is None else None,
    }
