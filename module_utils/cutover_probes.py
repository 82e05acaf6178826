# -*- coding: utf-8 -*-
# Probe execution for cutover_probe: http (stdlib http.client + threads), redis (redis-py), command (subprocess),
# and the component's process as /proc shows it (process_growth runs on the component's host).
# Every runner returns one Measurement and never raises for a failure of the thing it probes.
from __future__ import annotations

import base64
import http.client
import json
import math
import os
import random
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlsplit

from ansible.module_utils.cutover_judge import expand_placeholders, format_value, mask_url, values_equal
from ansible.module_utils.cutover_redis import redis_client

POLL_INTERVAL = 0.1
TAIL_CHARS = 400
MAX_TTL_SAMPLE = 1000
SHOWN_NONCES = 5


@dataclass
class Measurement:
    """What a probe measured: a value (None when there is none), an error text, and a human detail."""

    value: Any = None
    error: str | None = None
    detail: str = ""


@dataclass
class HttpOutcome:
    """One HTTP request: status None means no response (transport error in ``error``)."""

    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed_ms: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def new_token() -> str:
    return secrets.token_hex(8)


def describe_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out after %gs" % timeout
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return "%s: %s" % (type(exc).__name__, exc)


# ---------------------------------------------------------------- http

def _encode_body(body: Any, probe_nonce: str, nonce: str) -> tuple[bytes | None, dict[str, str]]:
    if body is None:
        return None, {}
    if isinstance(body, str):
        return expand_placeholders(body, probe_nonce, nonce).encode("utf-8"), {}
    text = expand_placeholders(json.dumps(body), probe_nonce, nonce)
    return text.encode("utf-8"), {"Content-Type": "application/json"}


def http_request(url: str, method: str, body: bytes | None, headers: dict[str, str], timeout: float) -> HttpOutcome:
    """One request on a fresh connection; no redirects followed, no proxies; body read completely."""
    outcome = HttpOutcome(url=mask_url(url))
    parts = urlsplit(url)
    request_headers = {name: str(value) for name, value in headers.items()}
    if parts.username is not None:
        credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
        request_headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    started = time.monotonic()
    try:
        connection.request(method, target, body=body, headers=request_headers)
        response = connection.getresponse()
        outcome.body = response.read()
        outcome.status = response.status
        outcome.headers = {name.lower(): value for name, value in response.getheaders()}
    except (OSError, http.client.HTTPException) as exc:
        outcome.error = describe_error(exc, timeout)
    finally:
        outcome.elapsed_ms = (time.monotonic() - started) * 1000.0
        connection.close()
    return outcome


def run_http_requests(urls: list[str], count: int, concurrency: int, method: str, body: Any,
                      headers: dict[str, str], timeout: float, probe_nonce: str) -> list[HttpOutcome]:
    """Send ``count`` requests cycling over ``urls``, ``concurrency`` at a time; outcomes in request order."""

    def send(index: int) -> HttpOutcome:
        nonce = new_token()
        url = expand_placeholders(urls[index % len(urls)], probe_nonce, nonce)
        data, body_headers = _encode_body(body, probe_nonce, nonce)
        return http_request(url, method, data, {**headers, **body_headers}, timeout)

    workers = max(1, min(concurrency, count))
    if workers == 1:
        return [send(index) for index in range(count)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(send, range(count)))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def describe_outcomes(outcomes: list[HttpOutcome]) -> str:
    """'10 request(s) to URL: 200 x7, 503 x3; 1 without response (first: ...)'."""
    statuses: dict[int, int] = {}
    failed = [outcome for outcome in outcomes if outcome.status is None]
    for outcome in outcomes:
        if outcome.status is not None:
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    targets = sorted({outcome.url for outcome in outcomes})
    shown = targets[0] if len(targets) == 1 else "%d URLs" % len(targets)
    text = "%d request(s) to %s" % (len(outcomes), shown)
    if statuses:
        text += ": " + ", ".join("%d x%d" % (status, n) for status, n in sorted(statuses.items()))
    if failed:
        text += "; %d without response (first: %s: %s)" % (len(failed), failed[0].url, failed[0].error)
    return text


def json_path(payload: Any, path: str) -> Any:
    """Follow a dotted path ('pool.in_use', 'items.0.id'); KeyError when it does not exist."""
    current = payload
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(path)
    return current


def response_field(outcome: HttpOutcome, path: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why it is not there)."""
    if outcome.status is None:
        return None, "no response: %s" % outcome.error
    try:
        payload = json.loads(outcome.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "HTTP %d response is not JSON" % outcome.status
    try:
        return json_path(payload, path), None
    except KeyError:
        return None, "HTTP %d response JSON has no field %s" % (outcome.status, path)


def field_equals(outcome: HttpOutcome, path: str, expected: Any) -> bool:
    value, why = response_field(outcome, path)
    return why is None and values_equal(value, expected)


def http_metric(spec: dict[str, Any], outcomes: list[HttpOutcome]) -> Measurement:
    """Turn request outcomes into the probe's metric."""
    metric = spec["metric"]
    total = len(outcomes)
    detail = describe_outcomes(outcomes)
    first_error = next((o.error for o in outcomes if o.error), None)
    if metric == "status_ok":
        return Measurement(sum(o.ok for o in outcomes) / total, first_error, detail)
    if metric == "error_rate":
        return Measurement(sum(not o.ok for o in outcomes) / total, first_error, detail)
    if metric in ("latency_p50_ms", "latency_p95_ms"):
        answered = [o.elapsed_ms for o in outcomes if o.status is not None]
        if not answered:
            return Measurement(None, "no request got a response (%s)" % first_error, detail)
        value = round(percentile(answered, 0.5 if metric == "latency_p50_ms" else 0.95), 3)
        return Measurement(value, None, detail + "; latency over the %d answered request(s)" % len(answered))
    if metric == "json_field":
        value, why = response_field(outcomes[-1], spec["field"])
        if why:
            return Measurement(None, "last response: %s" % why, detail)
        return Measurement(value, None, detail)
    if metric == "json_ratio":
        matching = sum(field_equals(o, spec["field"], spec["value"]) for o in outcomes)
        return Measurement(matching / total, first_error, detail + "; %d of %d with %s == %s"
                           % (matching, total, spec["field"], json.dumps(spec["value"])))
    header = spec["header"].lower()
    matching = sum(o.headers.get(header) == spec["value"] for o in outcomes)
    return Measurement(matching / total, first_error, detail + "; %d of %d with %s: %s"
                       % (matching, total, spec["header"], spec["value"]))


def run_http_probe(spec: dict[str, Any], headers: dict[str, str], probe_nonce: str) -> Measurement:
    outcomes = run_http_requests(spec["urls"], spec["requests"], spec["concurrency"], spec["method"],
                                 spec["body"], headers, spec["timeout"], probe_nonce)
    return http_metric(spec, outcomes)


# ---------------------------------------------------------------- redis

def count_clients(client: Any, client_name: str | None) -> int:
    """Connected clients, only those named ``client_name`` when given."""
    entries = client.client_list()
    return sum(1 for entry in entries if client_name is None or entry.get("name") == client_name)


def _triggered(spec: dict[str, Any], url_field: str, count_field: str, headers: dict[str, str],
               probe_nonce: str) -> list[HttpOutcome]:
    if not spec.get(url_field):
        return []
    return run_http_requests([spec[url_field]], spec[count_field], 1, "GET", None, headers,
                             spec["timeout"], probe_nonce)


def _entry_matches(fields: dict[bytes, bytes], expected: dict[str, str]) -> bool:
    decoded = {key.decode("utf-8", "replace"): value.decode("utf-8", "replace") for key, value in fields.items()}
    return all(decoded.get(name) == value for name, value in expected.items())


def stream_growth(client: Any, spec: dict[str, Any], headers: dict[str, str], probe_nonce: str) -> Measurement:
    """Entries matching ``match`` appended to stream ``key`` after the triggers, within ``window`` seconds."""
    key = spec["key"]
    expected = {name: expand_placeholders(value, probe_nonce, "") for name, value in spec["match"].items()}
    length_before = client.xlen(key)
    last = client.xrevrange(key, count=1)
    before_id = last[0][0] if last else b"0-0"
    triggers = _triggered(spec, "trigger_url", "trigger_requests", headers, probe_nonce)
    wanted = len(triggers) or None
    deadline = time.monotonic() + spec["window"]
    while True:
        entries = [entry for entry in client.xrange(key, min=before_id, max="+") if entry[0] != before_id]
        matching = sum(_entry_matches(fields, expected) for _, fields in entries)
        if (wanted and matching >= wanted) or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    detail = "stream %s: length %d before, %d new entr%s, %d matching %s" % (
        key, length_before, len(entries), "y" if len(entries) == 1 else "ies", matching,
        json.dumps(expected, sort_keys=True))
    if triggers:
        detail += "; trigger " + describe_outcomes(triggers)
    return Measurement(matching, None, detail)


def client_growth(client: Any, spec: dict[str, Any], headers: dict[str, str], probe_nonce: str) -> Measurement:
    """Clients (named ``client_name``) after a burst of requests minus before, after ``settle`` seconds."""
    name = spec.get("client_name")
    before = count_clients(client, name)
    burst = _triggered(spec, "burst_url", "burst_requests", headers, probe_nonce)
    time.sleep(spec["settle"])
    after = count_clients(client, name)
    who = "clients named %s" % name if name else "clients"
    return Measurement(after - before, None, "%s: %d before, %d after; burst %s"
                       % (who, before, after, describe_outcomes(burst)))


class ScanTooSlow(Exception):
    """SCAN did not finish within the probe's timeout."""


def scan_iter(client: Any, pattern: str, timeout: float) -> Iterator[bytes]:
    """The keys matching ``pattern``, by SCAN; ScanTooSlow past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for seen, key in enumerate(client.scan_iter(match=pattern, count=1000), 1):
        yield key
        if seen % 1000 == 0 and time.monotonic() > deadline:
            raise ScanTooSlow("SCAN MATCH %s did not finish within %gs (%d keys so far)" % (pattern, timeout, seen))


def scan_keys(client: Any, pattern: str, timeout: float) -> set[bytes]:
    return set(scan_iter(client, pattern, timeout))


def remaining_ttls_s(client: Any, keys: list[bytes]) -> tuple[list[float], int]:
    """(remaining TTL in seconds of each key that has one, number of keys without a TTL).

    A key that is gone by now expired after SCAN saw it: its TTL counts as 0.
    """
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.pttl(key)
    seconds, persistent = [], 0
    for milliseconds in pipeline.execute():
        if milliseconds == -1:
            persistent += 1
        else:
            seconds.append(max(milliseconds, 0) / 1000.0)
    return seconds, persistent


def new_key_ttl_s(client: Any, spec: dict[str, Any], headers: dict[str, str], probe_nonce: str) -> Measurement:
    """TTL in seconds (min or median) of the new keys matching ``pattern``: those the trigger requests made the
    service write."""
    pattern = spec["pattern"]
    before = scan_keys(client, pattern, spec["timeout"])
    triggers = _triggered(spec, "trigger_url", "trigger_requests", headers, probe_nonce)
    deadline = time.monotonic() + spec["window"]
    while True:
        new_keys = scan_keys(client, pattern, spec["timeout"]) - before
        if len(new_keys) >= spec["trigger_requests"] or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    trigger_text = "trigger " + describe_outcomes(triggers)
    if not new_keys:
        return Measurement(None, "no new key matching %s within %gs of the trigger requests (%d before); %s"
                           % (pattern, spec["window"], len(before), trigger_text))
    sampled = sorted(new_keys)[:MAX_TTL_SAMPLE]
    seconds, persistent = remaining_ttls_s(client, sampled)
    keys_text = "SCAN MATCH %s: %d key(s) before, %d new" % (pattern, len(before), len(new_keys))
    if not seconds:
        return Measurement(None, "%s, none of them with a TTL; %s" % (keys_text, trigger_text))
    value = round(min(seconds) if spec["stat"] == "min" else statistics.median(seconds), 3)
    detail = "%s; TTL of %d new key(s): min %gs, median %gs, max %gs%s; %s" % (
        keys_text, len(seconds), min(seconds), statistics.median(seconds), max(seconds),
        ", %d without TTL" % persistent if persistent else "", trigger_text)
    return Measurement(value, None, detail)


def key_count(client: Any, spec: dict[str, Any]) -> Measurement:
    count = sum(1 for _ in scan_iter(client, spec["pattern"], spec["timeout"]))
    return Measurement(count, None, "SCAN MATCH %s: %d key(s)" % (spec["pattern"], count))


def ping_ms(client: Any) -> Measurement:
    client.ping()  # connects (and authenticates) so the timed PING is one round trip
    started = time.monotonic()
    client.ping()
    value = round((time.monotonic() - started) * 1000.0, 3)
    return Measurement(value, None, "PING round trip on an open connection")


def used_memory_mb(client: Any) -> Measurement:
    info = client.info("memory")
    return Measurement(round(int(info["used_memory"]) / 1048576.0, 3), None,
                       "used_memory %s bytes" % info["used_memory"])


def probe_redis_client(redis_options: dict[str, Any], timeout: float) -> Any:
    """A client of its own for one probe: socket timeout = the probe's timeout, no retries.

    A probe reports what it sees: redis-py's default retries would hide blips and stretch the timeout.
    """
    from redis.backoff import NoBackoff  # imported here: cutover_probe requires redis-py only for redis probes
    from redis.retry import Retry

    client = redis_client(dict(redis_options, socket_timeout=timeout))
    client.set_retry(Retry(NoBackoff(), 0))
    return client


def run_redis_probe(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str],
                    probe_nonce: str) -> Measurement:
    """Run a redis probe on its own connection."""
    client = probe_redis_client(redis_options, spec["timeout"])
    metric = spec["metric"]
    try:
        if metric == "ping_ms":
            return ping_ms(client)
        if metric == "key_count":
            return key_count(client, spec)
        if metric == "stream_growth":
            return stream_growth(client, spec, headers, probe_nonce)
        if metric == "client_count":
            name = spec.get("client_name")
            count = count_clients(client, name)
            return Measurement(count, None, "%d client(s)%s" % (count, " named %s" % name if name else ""))
        if metric == "client_growth":
            return client_growth(client, spec, headers, probe_nonce)
        if metric == "new_key_ttl_s":
            return new_key_ttl_s(client, spec, headers, probe_nonce)
        return used_memory_mb(client)
    except ScanTooSlow as exc:
        return Measurement(None, str(exc))
    except Exception as exc:  # redis-py raises RedisError and OSError subclasses; any of them is a probe error
        return Measurement(None, "redis: %s" % describe_error(exc, spec["timeout"]))
    finally:
        client.close()


# ---------------------------------------------------------------- process (on the component's host)

class ProcessGone(Exception):
    """The process could not be read (gone, or /proc not readable for this user)."""


def read_pid(spec: dict[str, Any], headers: dict[str, str]) -> tuple[int | None, str | None]:
    """(pid, None) from the JSON field ``pid_field`` of ``pid_url``, or (None, why not)."""
    outcome = http_request(spec["pid_url"], "GET", None, headers, spec["timeout"])
    value, why = response_field(outcome, spec["pid_field"])
    if why:
        return None, "pid from %s: %s" % (outcome.url, why)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None, "pid from %s: field %s is %s, not a process id" % (outcome.url, spec["pid_field"],
                                                                       json.dumps(value))
    return value, None


def _proc(pid: int, what: str, read: Callable[[str], Any]) -> Any:
    path = "/proc/%d/%s" % (pid, what)
    try:
        return read(path)
    except FileNotFoundError:
        raise ProcessGone("process %d is gone (%s does not exist)" % (pid, path)) from None
    except PermissionError:
        raise ProcessGone("cannot read %s: permission denied (run the probe as the component's user or root)"
                          % path) from None


def _vm_rss_mb(path: str) -> float:
    with open(path, encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024.0, 3)
    raise ProcessGone("%s has no VmRSS line (a kernel thread or a zombie)" % path)


def resource_reader(spec: dict[str, Any], pid: int, client: Any) -> Callable[[], float | int]:
    """A function reading the probe's resource of process ``pid`` now."""
    if spec["resource"] == "rss_mb":
        return lambda: _proc(pid, "status", _vm_rss_mb)
    if spec["resource"] == "fds":
        return lambda: _proc(pid, "fd", lambda path: len(os.listdir(path)))
    return lambda: count_clients(client, spec["client_name"])


def process_growth(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str],
                   probe_nonce: str) -> Measurement:
    """How much the component's resource grew over ``window`` seconds of bursts, each followed by a settle pause.

    A leak hidden by the garbage collector shows in a short burst only sometimes; bursts repeated over a window
    (at least ``samples`` of them) make it grow, while a healthy process levels off. The value is the largest rise
    (see largest_rise), so a collection that drops the count during the window does not hide the leak.
    """
    pid, why = read_pid(spec, headers)
    if why:
        return Measurement(None, why)
    client = probe_redis_client(redis_options, spec["timeout"]) if spec["resource"] == "clients" else None
    try:
        read = resource_reader(spec, pid, client)
        time.sleep(spec["settle"])  # every reading comes settle seconds after the last request, the pid's too
        before = read()
        readings: list[float | int] = []
        bursts: list[HttpOutcome] = []
        deadline = time.monotonic() + spec["window"]
        while len(readings) < spec["samples"] or time.monotonic() < deadline:
            bursts += run_http_requests([spec["burst_url"]], spec["burst_requests"], spec["burst_concurrency"], "GET",
                                        None, headers, spec["timeout"], probe_nonce)
            time.sleep(spec["settle"])
            readings.append(read())
    finally:
        if client is not None:
            client.close()
    pid_after, why = read_pid(spec, headers)
    burst_text = "%d burst(s): %s" % (len(readings), describe_outcomes(bursts))
    if pid_after != pid:
        return Measurement(None, "the process changed during the window (pid %d, then %s): its growth cannot be "
                                 "measured; %s" % (pid, pid_after if why is None else why, burst_text))
    if not any(outcome.ok for outcome in bursts):
        return Measurement(None, "no burst request succeeded, so nothing was exercised; " + burst_text)
    growth = largest_rise([before] + readings)
    detail = "pid %d %s: %s before, after each burst and %gs settle: %s (last - before: %s); %s" % (
        pid, spec["resource"], format_value(before), spec["settle"], ", ".join(map(format_value, readings)),
        format_value(round(readings[-1] - before, 3)), burst_text)
    return Measurement(round(growth, 3) if isinstance(growth, float) else growth, None, detail)


def largest_rise(readings: list[float | int]) -> float | int:
    """The largest increase from a reading to any later one (0 when it never rises).

    The garbage collector turns a leak into a sawtooth: the last reading minus the first may land on a drop (or start
    on the peak of an earlier burst's garbage), while the rise from a low point to a later high one still shows what
    accumulates between collections. A healthy process rises once (its pool fills) and levels off.
    """
    lowest, rise = readings[0], 0
    for reading in readings[1:]:
        rise = max(rise, reading - lowest)
        lowest = min(lowest, reading)
    return rise


def run_process_probe(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str],
                      probe_nonce: str) -> Measurement:
    try:
        return process_growth(spec, redis_options, headers, probe_nonce)
    except ProcessGone as exc:
        return Measurement(None, str(exc))
    except Exception as exc:  # redis-py raises RedisError and OSError subclasses when reading the clients resource
        if spec["resource"] != "clients":
            raise
        return Measurement(None, "redis: %s" % describe_error(exc, spec["timeout"]))


# ---------------------------------------------------------------- command

def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


@dataclass
class CommandRun:
    """One run of argv: ``error`` is set when it could not be started or timed out (then returncode is None)."""

    program: str
    returncode: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration_ms: float = 0.0
    error: str | None = None

    @property
    def tails(self) -> str:
        return "stdout tail: %s; stderr tail: %s" % (_tail(self.stdout) or "(empty)", _tail(self.stderr) or "(empty)")


def run_command(argv: list[str], cwd: str | None, timeout: float, stdin: bytes | None = None) -> CommandRun:
    """Run argv without a shell in its own process group (killed whole on timeout); the environment is
    inherited and never echoed."""
    run = CommandRun(program=os.path.basename(argv[0]))
    started = time.monotonic()
    try:
        process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        run.error = "%s could not be started: %s" % (run.program, describe_error(exc, timeout))
        return run
    try:
        run.stdout, run.stderr = process.communicate(input=stdin, timeout=timeout)
        run.returncode = process.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        run.stdout, run.stderr = process.communicate()
        run.error = "%s timed out after %gs and was killed; %s" % (run.program, timeout, run.tails)
    run.duration_ms = round((time.monotonic() - started) * 1000.0, 3)
    return run


def run_command_probe(spec: dict[str, Any]) -> Measurement:
    """exit_code or duration_ms of argv."""
    run = run_command(spec["argv"], spec.get("cwd"), spec["timeout"])
    if run.error:
        return Measurement(None, run.error)
    detail = "%s exited %d after %.1f ms; %s" % (run.program, run.returncode, run.duration_ms, run.tails)
    return Measurement(run.returncode if spec["metric"] == "exit_code" else run.duration_ms, None, detail)


def reader_answers(run: CommandRun, nonces: list[str]) -> tuple[dict[str, bool] | None, str | None]:
    """({nonce: readable}, None) from the reader's JSON output, or (None, why it is unusable)."""
    if run.returncode != 0:
        return None, "reader %s exited %d; %s" % (run.program, run.returncode, run.tails)
    try:
        answers = json.loads(run.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "reader %s did not print JSON; %s" % (run.program, run.tails)
    if not isinstance(answers, dict):
        return None, "reader %s printed %s, not a JSON object {nonce: true|false}; %s" % (
            run.program, type(answers).__name__, run.tails)
    unanswered = [nonce for nonce in nonces if not isinstance(answers.get(nonce), bool)]
    if unanswered:
        return None, "reader %s gave no true/false for %d of %d nonce(s) (first: %s); %s" % (
            run.program, len(unanswered), len(nonces), unanswered[0], run.tails)
    return {nonce: answers[nonce] for nonce in nonces}, None


def sampled_keys(redis_options: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Up to sample_size keys of each pattern of sample_keys, picked at random."""
    client = probe_redis_client(redis_options, spec["timeout"])
    keys: list[str] = []
    for pattern in spec["sample_keys"]:
        found = sorted({key.decode("utf-8", "replace") for key in client.scan_iter(match=pattern, count=1000)})
        keys += random.sample(found, min(len(found), spec["sample_size"]))
    return keys


def readable_sample(spec: dict[str, Any], redis_options: dict[str, Any]) -> Measurement:
    """Fraction of a sample of the keys of ``sample_keys`` that the reader ``argv`` reads (key names on stdin)."""
    try:
        keys = sampled_keys(redis_options, spec)
    except Exception as exc:  # redis-py raises RedisError and OSError subclasses; any of them is a probe error
        return Measurement(None, "cannot sample %s: %s" % (", ".join(spec["sample_keys"]), describe_error(exc, spec["timeout"])))
    if not keys:
        return Measurement(1.0, None, "no key matches %s: nothing to read" % ", ".join(spec["sample_keys"]))
    run = run_command(spec["argv"], spec.get("cwd"), spec["timeout"], ("\n".join(keys) + "\n").encode("utf-8"))
    answers, why = (None, run.error) if run.error else reader_answers(run, keys)
    if why:
        return Measurement(None, why)
    unreadable = [key for key in keys if not answers[key]]
    detail = "reader %s read %d of %d sampled key(s) of %s%s" % (
        run.program, len(keys) - len(unreadable), len(keys), ", ".join(spec["sample_keys"]),
        " (unreadable: %s)" % ", ".join(unreadable[:SHOWN_NONCES]) if unreadable else "")
    return Measurement((len(keys) - len(unreadable)) / len(keys), None, detail)


def readable_ratio(spec: dict[str, Any], headers: dict[str, str], probe_nonce: str) -> Measurement:
    """Fraction of fresh entries, written through ``write_url`` (one per {nonce}), that the reader ``argv`` reads.

    The reader gets the nonces of the successful writes one per line on stdin and prints {nonce: true|false}.
    """
    nonces = [new_token() for _ in range(spec["write_requests"])]
    writes = [http_request(expand_placeholders(spec["write_url"], probe_nonce, nonce), "GET", None, headers,
                           spec["timeout"]) for nonce in nonces]
    written = [nonce for nonce, outcome in zip(nonces, writes) if outcome.ok]
    write_text = "write " + describe_outcomes(writes)
    if not written:
        return Measurement(None, "no write succeeded, so there is nothing to read; " + write_text)
    run = run_command(spec["argv"], spec.get("cwd"), spec["timeout"], ("\n".join(written) + "\n").encode("ascii"))
    answers, why = (None, run.error) if run.error else reader_answers(run, written)
    if why:
        return Measurement(None, "%s; %s" % (why, write_text))
    unreadable = [nonce for nonce in written if not answers[nonce]]
    detail = "%s; reader %s read %d of %d fresh entr%s%s; stderr tail: %s" % (
        write_text, run.program, len(written) - len(unreadable), len(written), "y" if len(written) == 1 else "ies",
        " (unreadable: %s)" % ", ".join(unreadable[:SHOWN_NONCES]) if unreadable else "",
        _tail(run.stderr) or "(empty)")
    return Measurement((len(written) - len(unreadable)) / len(written), None, detail)


# ---------------------------------------------------------------- dispatch

def run_probe(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str]) -> Measurement:
    """Take one measurement of a validated probe spec; a failure of the probed thing is a Measurement, never an
    exception."""
    probe_nonce = new_token()
    if spec["metric"] == "process_growth":
        return run_process_probe(spec, redis_options, headers, probe_nonce)
    if spec["metric"] == "readable_ratio":
        if "sample_keys" in spec:
            return readable_sample(spec, redis_options)
        return readable_ratio(spec, headers, probe_nonce)
    if spec["type"] == "http":
        return run_http_probe(spec, headers, probe_nonce)
    if spec["type"] == "redis":
        return run_redis_probe(spec, redis_options, headers, probe_nonce)
    return run_command_probe(spec)
