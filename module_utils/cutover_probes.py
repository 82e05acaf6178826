# -*- coding: utf-8 -*-
# Probe execution for cutover_probe: http (stdlib http.client + threads), redis (redis-py), command (subprocess).
# Every runner returns a Measurement and never raises for a failure of the thing it probes.
from __future__ import annotations

import base64
import http.client
import json
import math
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ansible.module_utils.cutover_judge import expand_placeholders, mask_url, values_equal
from ansible.module_utils.cutover_redis import redis_client

POLL_INTERVAL = 0.1
TAIL_CHARS = 400


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


def key_count(client: Any, spec: dict[str, Any]) -> Measurement:
    deadline = time.monotonic() + spec["timeout"]
    count = 0
    for _ in client.scan_iter(match=spec["pattern"], count=1000):
        count += 1
        if count % 1000 == 0 and time.monotonic() > deadline:
            return Measurement(None, "SCAN MATCH %s did not finish within %gs (%d keys so far)"
                               % (spec["pattern"], spec["timeout"], count))
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


def run_redis_probe(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str],
                    probe_nonce: str) -> Measurement:
    """Run a redis probe on its own connection: socket timeout = the probe's timeout, no retries.

    A probe reports what it sees: redis-py's default retries would hide blips and stretch the timeout.
    """
    from redis.backoff import NoBackoff  # imported here: cutover_probe requires redis-py only for redis probes
    from redis.retry import Retry

    client = redis_client(dict(redis_options, socket_timeout=spec["timeout"]))
    client.set_retry(Retry(NoBackoff(), 0))
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
        return used_memory_mb(client)
    except Exception as exc:  # redis-py raises RedisError and OSError subclasses; any of them is a probe error
        return Measurement(None, "redis: %s" % describe_error(exc, spec["timeout"]))
    finally:
        client.close()


# ---------------------------------------------------------------- command

def _tail(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


def run_command_probe(spec: dict[str, Any]) -> Measurement:
    """Run argv (its own process group, killed whole on timeout); the environment is inherited, never echoed."""
    argv, timeout = spec["argv"], spec["timeout"]
    program = os.path.basename(argv[0])
    started = time.monotonic()
    try:
        process = subprocess.Popen(argv, cwd=spec.get("cwd"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return Measurement(None, "%s could not be started: %s" % (program, describe_error(exc, timeout)))
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = process.communicate()
        return Measurement(None, "%s timed out after %gs and was killed; stdout tail: %s; stderr tail: %s"
                           % (program, timeout, _tail(stdout), _tail(stderr)))
    duration = round((time.monotonic() - started) * 1000.0, 3)
    detail = "%s exited %d after %.1f ms; stdout tail: %s; stderr tail: %s" % (
        program, process.returncode, duration, _tail(stdout) or "(empty)", _tail(stderr) or "(empty)")
    value = process.returncode if spec["metric"] == "exit_code" else duration
    return Measurement(value, None, detail)


# ---------------------------------------------------------------- dispatch

def run_probe(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str]) -> Measurement:
    """Execute one validated probe spec; a failure of the probed thing is a Measurement, never an exception."""
    probe_nonce = new_token()
    if spec["type"] == "http":
        return run_http_probe(spec, headers, probe_nonce)
    if spec["type"] == "redis":
        return run_redis_probe(spec, redis_options, headers, probe_nonce)
    return run_command_probe(spec)
