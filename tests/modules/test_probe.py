"""cutover_probe against a real HTTP server (stdlib, in a thread) and the real redis-server fixture."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import redis

import cutover_probe
from cutover_testlib import ModuleFailed, RedisServer, free_port, run_module

STREAM = "ai_service_alerts"


class ToyService(ThreadingHTTPServer):
    """Endpoints standing in for the service's components, with counters the tests assert on."""

    daemon_threads = True

    def __init__(self, redis_server: RedisServer):
        super().__init__(("127.0.0.1", 0), ToyHandler)
        self.redis_server = redis_server
        self.lock = threading.Lock()
        self.hits = 0
        self.requests_seen: list[dict[str, Any]] = []
        self.cached_texts: set[str] = set()
        self.alerts = redis_server.client()
        self.pooled = redis_server.client(client_name="toy-pooled")
        self.pooled.ping()
        self.leaked: list[redis.Redis] = []
        self.calls: Counter[str] = Counter()
        self.written_nonces: list[str] = []

    def count_call(self, name: str) -> int:
        with self.lock:
            self.calls[name] += 1
            return self.calls[name]

    @property
    def base(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        for client in self.leaked + [self.alerts, self.pooled]:
            client.close()


class ToyHandler(BaseHTTPRequestHandler):
    server: ToyService

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, payload: Any, status: int = 200) -> None:
        self.reply(status, json.dumps(payload).encode())

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        with self.server.lock:
            self.server.hits += 1
            self.server.requests_seen.append({"method": self.command, "path": self.path,
                                              "headers": dict(self.headers), "body": self.rfile.read(length)})
        route = parts.path
        if route == "/ok":
            self.reply(200, b"ok", "text/plain")
        elif route == "/fail":
            self.reply(503, b"unavailable", "text/plain")
        elif route == "/slow":
            time.sleep(int(query["ms"]) / 1000.0)
            self.reply(200, b"slow", "text/plain")
        elif route == "/healthz":
            self.reply_json({"status": "ok", "release": "migrated", "redis_client": "redis.asyncio",
                             "pool": {"max": 10, "in_use": 1, "idle": 9}})
        elif route == "/notjson":
            self.reply(200, b"<html>", "text/html")
        elif route == "/check":
            self.reply_json({"verdict": "block" if "bad" in query.get("text", "") else "allow"})
        elif route == "/speak":
            text = query.get("text", "")
            with self.server.lock:
                hit = text in self.server.cached_texts
                self.server.cached_texts.add(text)
            self.reply(200, b"\x00audio" * 16, "audio/wav", {"X-Cache": "hit" if hit else "miss"})
        elif route == "/alert":
            self.server.alerts.xadd(STREAM, {"name": "request_served", "source": "toy"})
            self.server.alerts.xadd(STREAM, {"name": query["name"], "source": "toy"})
            self.reply_json({"queued": True})
        elif route == "/alert-lost":
            self.reply_json({"queued": True})  # the monitoring risk: says yes, writes nothing
        elif route == "/leak":
            client = self.server.redis_server.client(client_name="toy-leaky")
            client.ping()
            with self.server.lock:
                self.server.leaked.append(client)
            self.reply_json({"ok": True})
        elif route == "/pooled":
            self.server.pooled.ping()
            self.reply_json({"ok": True})
        elif route in RELEASE_ROUTES:
            RELEASE_ROUTES[route](self, query)
        else:
            self.reply(404, b"not found", "text/plain")

    # ---- what a release writes, and how a judgement over several measurements sees the service

    def cache_with_ttl(self, query: dict[str, str]) -> None:
        """/tts-speak writes tts:<text> with a TTL of ttl seconds; unit=ms is the px= porting mistake."""
        ttl = int(query["ttl"])
        key = "tts:" + query["text"]
        if query.get("unit") == "ms":
            self.server.alerts.set(key, b"audio", px=ttl)
        else:
            self.server.alerts.set(key, b"audio", ex=ttl)
        self.reply_json({"cached": False})

    def write_reply(self, query: dict[str, str]) -> None:
        """/reply-write stores ai:reply:<nonce> as the old release does (a hash) or, format=new, as a JSON string
        the old release cannot read; format=mixed alternates old, new, old, ... per call."""
        nonce, kind = query["nonce"], query.get("format", "old")
        if kind == "mixed":
            kind = "old" if self.server.count_call("mixed") % 2 else "new"
        key = "ai:reply:" + nonce
        if kind == "new":
            self.server.alerts.set(key, json.dumps({"reply": "hi"}))
        else:
            self.server.alerts.hset(key, mapping={"reply": "hi"})
        with self.server.lock:
            self.server.written_nonces.append(nonce)
        self.reply_json({"reply": "hi", "cached": False})

    def flaky(self, query: dict[str, str]) -> None:
        """/flaky?key=K&fail=2,3: 503 on those calls of key K (counted from 1), 200 otherwise."""
        call = self.server.count_call("flaky:" + query["key"])
        failing = {int(number) for number in query.get("fail", "").split(",") if number}
        self.reply(503 if call in failing else 200, b"flaky", "text/plain")

    def warming(self, query: dict[str, str]) -> None:
        """/warming?key=K&cold=2: not JSON for the first `cold` calls of key K, then {"status": "ok"}."""
        if self.server.count_call("warming:" + query["key"]) <= int(query["cold"]):
            self.reply(200, b"<warming up>", "text/html")
        else:
            self.reply_json({"status": "ok"})

    def changing_pid(self, query: dict[str, str]) -> None:
        """/changing-pid: this process's pid first, then pid 1's - a component restarted in between."""
        first = self.server.count_call("changing-pid") == 1
        self.reply_json({"pid": os.getpid() if first else 1})


RELEASE_ROUTES = {"/tts-speak": ToyHandler.cache_with_ttl, "/reply-write": ToyHandler.write_reply,
                  "/flaky": ToyHandler.flaky, "/warming": ToyHandler.warming, "/changing-pid": ToyHandler.changing_pid}


@pytest.fixture
def toy(redis_server: RedisServer) -> Iterator[ToyService]:
    service = ToyService(redis_server)
    thread = threading.Thread(target=service.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.close()
        thread.join(timeout=5)


def probe(component: str = "tts", phase: str = "verify", probes: list[dict[str, Any]] | None = None,
          check_mode: bool = False, **options: Any) -> dict[str, Any]:
    return run_module(cutover_probe.main, dict(component=component, phase=phase, probes=probes or [], **options),
                      check_mode=check_mode)


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["probe"]: entry for entry in result["results"]}


# ---------------------------------------------------------------- http

def test_status_ok_and_error_rate_are_exact_over_cycled_urls(toy: ToyService) -> None:
    urls = [toy.base + "/ok", toy.base + "/ok", toy.base + "/fail"]
    result = probe(probes=[
        {"name": "errors", "type": "http", "urls": urls, "requests": 9, "concurrency": 3, "metric": "error_rate",
         "expect": {"max": 0.01}},
        {"name": "ok", "type": "http", "urls": urls, "requests": 9, "concurrency": 3, "metric": "status_ok",
         "expect": {"min": 0.5}, "critical": False},
    ])
    results = by_name(result)
    assert results["errors"]["value"] == 3 / 9
    assert results["errors"]["verdict"] == "fail"
    assert results["ok"]["value"] == 6 / 9
    assert results["ok"]["verdict"] == "pass"
    assert "200 x6, 503 x3" in results["errors"]["detail"]
    assert toy.hits == 18
    assert sum(seen["path"] == "/fail" for seen in toy.requests_seen) == 6
    assert result["passed"] is False
    assert result["changed"] is False
    assert result["values"] == {"errors": 3 / 9, "ok": 6 / 9}


def test_every_request_carries_the_probe_header(toy: ToyService) -> None:
    probe(probes=[{"name": "up", "type": "http", "url": toy.base + "/ok", "requests": 3, "metric": "status_ok", "expect": {"min": 1}}])
    probe(probes=[{"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}}],
          headers={"X-Run": "r1"})
    assert [seen["headers"].get("X-Cutover-Probe") for seen in toy.requests_seen] == ["1", "1", "1", None]
    assert toy.requests_seen[3]["headers"]["X-Run"] == "r1"


def test_post_body_as_json_with_probe_nonce(toy: ToyService) -> None:
    result = probe(probes=[{"name": "post", "type": "http", "url": toy.base + "/ok", "method": "post",
                            "body": {"text": "hello {probe_nonce}"}, "requests": 2, "metric": "status_ok", "expect": {"min": 1}}])
    assert result["results"][0]["value"] == 1.0
    first, second = toy.requests_seen
    assert first["method"] == second["method"] == "POST"
    assert first["headers"]["Content-Type"] == "application/json"
    body = json.loads(first["body"])
    assert body["text"].startswith("hello ") and "{probe_nonce}" not in body["text"]
    assert first["body"] == second["body"]


def test_latency_baseline_then_slower_release_fails_against_it(toy: ToyService) -> None:
    spec = {"name": "latency_p50", "type": "http", "requests": 4, "concurrency": 2, "metric": "latency_p50_ms",
            "expect": {"max_ratio": 3.0, "max": 5000}}
    baseline = probe(phase="baseline", probes=[dict(spec, url=toy.base + "/slow?ms=0")])
    recorded = baseline["results"][0]
    assert recorded["verdict"] == "recorded"
    assert recorded["threshold"] == "<= 5000"
    assert 0 < recorded["value"] < 100
    assert baseline["values"] == {"latency_p50": recorded["value"]}

    slower = probe(phase="verify", probes=[dict(spec, url=toy.base + "/slow?ms=150")], baseline=baseline["values"])
    judged = slower["results"][0]
    assert 150 <= judged["value"] < 1500
    assert judged["verdict"] == "fail"
    assert judged["baseline"] == recorded["value"]
    assert judged["threshold"].startswith("<= 5000 and <= 3.0 x baseline %s (" % recorded["value"])
    assert slower["passed"] is False
    assert slower["failures"] == ["tts/latency_p50: value %s, baseline %s, threshold %s"
                                  % (judged["value"], recorded["value"], judged["threshold"])]


def test_latency_p95_sees_the_slow_tail(toy: ToyService) -> None:
    urls = [toy.base + "/slow?ms=0"] * 9 + [toy.base + "/slow?ms=200"]
    result = probe(probes=[
        {"name": "p50", "type": "http", "urls": urls, "requests": 10, "metric": "latency_p50_ms", "expect": {"max": 5000}},
        {"name": "p95", "type": "http", "urls": urls, "requests": 10, "metric": "latency_p95_ms", "expect": {"max": 5000}},
    ])
    results = by_name(result)
    assert results["p50"]["value"] < 100
    assert 200 <= results["p95"]["value"] < 2000


def test_timeout_gives_error_rate_one_and_is_bounded(toy: ToyService) -> None:
    started = time.monotonic()
    result = probe(probes=[{"name": "errors", "type": "http", "url": toy.base + "/slow?ms=1500", "timeout": 0.2,
                            "metric": "error_rate", "expect": {"max": 0.1}}])
    assert time.monotonic() - started < 1.2
    entry = result["results"][0]
    assert entry["value"] == 1.0
    assert entry["verdict"] == "fail"
    assert "timed out after 0.2s" in entry["detail"]


def test_connection_refused_gives_failure_values_or_inconclusive_and_never_crashes() -> None:
    url = "http://127.0.0.1:%d/healthz" % free_port()
    result = probe(probes=[
        {"name": "errors", "type": "http", "url": url, "requests": 2, "metric": "error_rate", "expect": {"max": 0}},
        {"name": "ok", "type": "http", "url": url, "metric": "status_ok", "expect": {"min": 1}},
        {"name": "latency", "type": "http", "url": url, "metric": "latency_p95_ms", "expect": {"max": 100}},
        {"name": "status", "type": "http", "url": url, "metric": "json_field", "field": "status",
         "expect": {"equals": "ok"}},
    ])
    results = by_name(result)
    assert (results["errors"]["value"], results["errors"]["verdict"]) == (1.0, "fail")
    assert (results["ok"]["value"], results["ok"]["verdict"]) == (0.0, "fail")
    assert (results["latency"]["value"], results["latency"]["verdict"]) == (None, "inconclusive")
    assert "no request got a response (connection refused)" in results["latency"]["detail"]
    assert (results["status"]["value"], results["status"]["verdict"]) == (None, "inconclusive")
    assert "connection refused" in results["status"]["detail"]
    assert result["passed"] is False
    assert "tts/latency: value none, baseline none, threshold <= 100; inconclusive: no request got a response" \
        in " ".join(result["failures"])
    # a failure value outranks an inconclusive probe as the trigger
    assert (result["trigger"]["probe"], result["trigger"]["verdict"]) == ("errors", "fail")
    assert result["paused"] is False


def test_json_field_reads_a_dotted_path_of_the_last_response(toy: ToyService) -> None:
    result = probe(phase="canary", probes=[
        {"name": "status", "type": "http", "url": toy.base + "/healthz", "metric": "json_field", "field": "status",
         "expect": {"equals": "ok"}},
        {"name": "in_use", "type": "http", "url": toy.base + "/healthz", "metric": "json_field",
         "field": "pool.in_use", "expect": {"max_increase": 2}},
        {"name": "missing", "type": "http", "url": toy.base + "/healthz", "metric": "json_field",
         "field": "pool.waiting", "critical": False, "expect": {"min": 0}},
        {"name": "html", "type": "http", "url": toy.base + "/notjson", "metric": "json_field",
         "field": "status", "critical": False, "expect": {"equals": "ok"}},
    ], baseline={"in_use": 0})
    results = by_name(result)
    assert (results["status"]["value"], results["status"]["verdict"]) == ("ok", "pass")
    assert (results["in_use"]["value"], results["in_use"]["verdict"]) == (1, "pass")
    assert results["in_use"]["threshold"] == "<= baseline 0 + 2 (2)"
    assert results["missing"]["verdict"] == "inconclusive"
    assert "response JSON has no field pool.waiting" in results["missing"]["detail"]
    assert results["html"]["verdict"] == "inconclusive"
    assert "HTTP 200 response is not JSON" in results["html"]["detail"]
    # non-critical probes that could not be judged wait for a human (their default inconclusive policy: pause)
    assert (result["passed"], result["paused"], result["trigger"]) == (False, True, None)
    assert result["msg"].startswith("tts canary: paused for a human, 2 probe(s) inconclusive: tts/missing")
    assert len(result["failures"]) == 2


def test_json_ratio_counts_matching_responses(toy: ToyService) -> None:
    result = probe(component="safety", probes=[
        {"name": "allow_ratio", "type": "http", "requests": 4,
         "urls": [toy.base + "/check?text=hello", toy.base + "/check?text=bad+words"],
         "metric": "json_ratio", "field": "verdict", "value": "allow", "expect": {"min": 0.99}},
    ])
    entry = result["results"][0]
    assert entry["value"] == 0.5
    assert entry["verdict"] == "fail"
    assert result["failures"] == ["safety/allow_ratio: value 0.5, baseline none, threshold >= 0.99"]


def test_header_ratio_with_probe_nonce_and_nonce(toy: ToyService) -> None:
    result = probe(probes=[
        {"name": "warm", "type": "http", "url": toy.base + "/speak?text=probe-{probe_nonce}", "requests": 5,
         "metric": "header_ratio", "header": "x-cache", "value": "hit", "expect": {"min": 0.8}},
        {"name": "cold", "type": "http", "url": toy.base + "/speak?text=probe-{nonce}", "requests": 5,
         "metric": "header_ratio", "header": "X-Cache", "value": "hit", "critical": False, "expect": {"min": 0.8}},
    ])
    results = by_name(result)
    assert (results["warm"]["value"], results["warm"]["verdict"]) == (0.8, "pass")
    assert (results["cold"]["value"], results["cold"]["verdict"]) == (0.0, "fail")
    # the two probes run at the same time: one path seen five times (warm), five paths seen once (cold)
    seen_counts = sorted(Counter(seen["path"] for seen in toy.requests_seen).values())
    assert seen_counts == [1, 1, 1, 1, 1, 5]
    assert not any("{" in seen["path"] for seen in toy.requests_seen)
    assert result["passed"] is True


def test_password_in_url_is_sent_as_basic_auth_and_never_output(toy: ToyService) -> None:
    secret_url = toy.base.replace("http://", "http://probe:s3cretpw@") + "/fail"
    refused = "http://probe:s3cretpw@127.0.0.1:%d/x" % free_port()
    result = probe(probes=[
        {"name": "authed", "type": "http", "url": secret_url, "metric": "status_ok", "expect": {"min": 1}},
        {"name": "refused", "type": "http", "url": refused, "metric": "error_rate", "expect": {"max": 0}},
    ])
    assert toy.requests_seen[0]["headers"]["Authorization"] == "Basic cHJvYmU6czNjcmV0cHc="
    assert "s3cretpw" not in json.dumps(result)
    assert "***@127.0.0.1" in result["results"][0]["detail"]


# ---------------------------------------------------------------- redis

def test_stream_growth_counts_matching_alerts(toy: ToyService, redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.xadd(STREAM, {"name": "older-alert", "source": "toy"})
    result = probe(component="monitoring", redis=redis_server.options, probes=[
        {"name": "alerts", "type": "redis", "metric": "stream_growth", "key": STREAM,
         "trigger_url": toy.base + "/alert?name=cutover-{probe_nonce}", "trigger_requests": 3,
         "match": {"name": "cutover-{probe_nonce}", "source": "toy"}, "expect": {"equals": 3}},
    ])
    entry = result["results"][0]
    assert (entry["value"], entry["verdict"]) == (3, "pass")
    assert client.xlen(STREAM) == 7
    names = [fields[b"name"] for _, fields in client.xrange(STREAM)]
    assert names[0] == b"older-alert" and names[1::2] == [b"request_served"] * 3
    assert len(set(names[2::2])) == 1 and names[2].startswith(b"cutover-")
    assert "length 1 before, 6 new entries, 3 matching" in entry["detail"]
    assert result["passed"] is True


def test_stream_growth_detects_lost_alerts_after_the_window(toy: ToyService, redis_server: RedisServer) -> None:
    started = time.monotonic()
    result = probe(component="monitoring", redis=redis_server.options, probes=[
        {"name": "alerts", "type": "redis", "metric": "stream_growth", "key": STREAM, "window": 0.5,
         "trigger_url": toy.base + "/alert-lost?name=x", "match": {"name": "x"}, "expect": {"min": 1}},
    ])
    assert time.monotonic() - started >= 0.5
    entry = result["results"][0]
    assert (entry["value"], entry["verdict"]) == (0, "fail")
    assert toy.hits == 1
    assert redis_server.client().exists(STREAM) == 0


def test_client_growth_catches_a_connection_leak(toy: ToyService, redis_server: RedisServer) -> None:
    result = probe(component="ai", redis=redis_server.options, probes=[
        {"name": "leaky", "type": "redis", "metric": "client_growth", "client_name": "toy-leaky",
         "burst_url": toy.base + "/leak?n={nonce}", "burst_requests": 6, "settle": 0.2, "expect": {"max": 2}},
        {"name": "pooled", "type": "redis", "metric": "client_growth", "client_name": "toy-pooled",
         "burst_url": toy.base + "/pooled?n={nonce}", "burst_requests": 6, "settle": 0.2, "expect": {"max": 2}},
    ])
    results = by_name(result)
    assert results["leaky"]["value"] >= 6
    assert results["leaky"]["verdict"] == "fail"
    assert (results["pooled"]["value"], results["pooled"]["verdict"]) == (0, "pass")
    assert len(toy.leaked) == 6
    assert len({seen["path"] for seen in toy.requests_seen if seen["path"].startswith("/leak")}) == 6
    assert result["passed"] is False


def test_key_count_client_count_ping_and_memory(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.mset({"tts:a": 1, "tts:b": 2, "tts:c": 3, "safety:a": 4})
    named = [redis_server.client(client_name="toy-tts") for _ in range(2)]
    for connection in named:
        connection.ping()
    try:
        result = probe(redis=redis_server.options, probes=[
            {"name": "tts_keys", "type": "redis", "metric": "key_count", "pattern": "tts:*",
             "expect": {"min_ratio": 0.9}},
            {"name": "clients", "type": "redis", "metric": "client_count", "client_name": "toy-tts",
             "expect": {"equals": 2}},
            {"name": "ping", "type": "redis", "metric": "ping_ms", "expect": {"max": 100}},
            {"name": "memory", "type": "redis", "metric": "used_memory_mb", "expect": {"max_increase": 50}},
        ], baseline={"tts_keys": 3, "memory": 1.0})
    finally:
        for connection in named:
            connection.close()
    results = by_name(result)
    assert (results["tts_keys"]["value"], results["tts_keys"]["verdict"]) == (3, "pass")
    assert results["tts_keys"]["threshold"] == ">= 0.9 x baseline 3 (2.7)"
    assert results["clients"]["value"] == 2
    assert 0 < results["ping"]["value"] < 100
    used_mb = int(client.info("memory")["used_memory"]) / 1048576.0
    assert abs(results["memory"]["value"] - used_mb) < 5
    assert result["passed"] is True


def test_unreachable_redis_is_an_inconclusive_verdict_not_a_crash() -> None:
    started = time.monotonic()
    result = probe(redis={"host": "127.0.0.1", "port": free_port()}, probes=[
        {"name": "ping", "type": "redis", "metric": "ping_ms", "timeout": 1, "expect": {"max": 50}},
    ])
    entry = result["results"][0]
    assert (entry["value"], entry["verdict"]) == (None, "inconclusive")
    assert entry["detail"].startswith("redis: ")
    assert "refused" in entry["detail"].lower()
    assert time.monotonic() - started < 1.0  # no hidden retries
    # a critical probe that cannot measure rolls back by default, as an error did before
    assert result["passed"] is False
    assert (result["trigger"]["probe"], result["trigger"]["verdict"]) == ("ping", "inconclusive")


# ---------------------------------------------------------------- command

def test_command_exit_code_and_output_tail(tmp_path) -> None:
    script = "import sys; print('checked 3 files'); sys.stderr.write('config invalid: pool.max\\n'); sys.exit(3)"
    result = probe(component="validator", probes=[
        {"name": "dry_run", "type": "command", "metric": "exit_code", "cwd": str(tmp_path),
         "argv": [sys.executable, "-c", script, "--token=s3cret"], "expect": {"equals": 0}},
        {"name": "ok", "type": "command", "metric": "exit_code", "argv": [sys.executable, "-c", "pass"],
         "expect": {"equals": 0}},
    ])
    results = by_name(result)
    assert (results["dry_run"]["value"], results["dry_run"]["verdict"]) == (3, "fail")
    assert "stdout tail: checked 3 files" in results["dry_run"]["detail"]
    assert "stderr tail: config invalid: pool.max" in results["dry_run"]["detail"]
    assert "s3cret" not in results["dry_run"]["detail"]
    assert results["dry_run"]["spec"]["argv"] == [sys.executable, "-c", script, "--token=***"]
    assert "s3cret" not in json.dumps(result)
    assert (results["ok"]["value"], results["ok"]["verdict"]) == (0, "pass")
    assert result["failures"] == ["validator/dry_run: value 3, baseline none, threshold == 0"]


def test_command_duration_timeout_and_missing_program(tmp_path) -> None:
    started = time.monotonic()
    result = probe(component="validator", probes=[
        {"name": "duration", "type": "command", "metric": "duration_ms",
         "argv": [sys.executable, "-c", "import time; time.sleep(0.2)"], "expect": {"max": 5000}},
        {"name": "hangs", "type": "command", "metric": "exit_code", "timeout": 0.5,
         "argv": ["/bin/sh", "-c", "sleep 30 & sleep 30"], "expect": {"equals": 0}},
        {"name": "missing", "type": "command", "metric": "exit_code", "argv": [str(tmp_path / "nope")],
         "expect": {"equals": 0}},
    ])
    assert time.monotonic() - started < 5
    results = by_name(result)
    assert 200 <= results["duration"]["value"] < 5000
    assert results["duration"]["verdict"] == "pass"
    assert (results["hangs"]["value"], results["hangs"]["verdict"]) == (None, "inconclusive")
    assert "sh timed out after 0.5s and was killed" in results["hangs"]["detail"]
    assert (results["missing"]["value"], results["missing"]["verdict"]) == (None, "inconclusive")
    assert "nope could not be started" in results["missing"]["detail"]


# ---------------------------------------------------------------- options, phases, criticality

def test_missing_baseline_for_ratio_rule_is_inconclusive(toy: ToyService) -> None:
    result = probe(probes=[{"name": "latency", "type": "http", "url": toy.base + "/ok",
                            "metric": "latency_p95_ms", "expect": {"max_ratio": 3}}], baseline={"other": 1})
    entry = result["results"][0]
    assert entry["verdict"] == "inconclusive"
    assert entry["value"] is not None
    assert "rule max_ratio needs a baseline value" in entry["detail"]
    assert result["passed"] is False


def test_unhealthy_baseline_fails(toy: ToyService) -> None:
    result = probe(phase="baseline", probes=[{"name": "up", "type": "http", "url": toy.base + "/fail",
                                              "metric": "status_ok", "expect": {"min": 0.99, "max_ratio": 2}}])
    entry = result["results"][0]
    assert (entry["value"], entry["verdict"], entry["threshold"]) == (0.0, "fail", ">= 0.99")
    assert result["passed"] is False


def test_only_critical_runs_only_critical_probes(toy: ToyService) -> None:
    result = probe(phase="rollback", only_critical=True, host_label="toy-1", probes=[
        {"name": "critical", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}},
        {"name": "extra", "type": "http", "url": toy.base + "/fail", "metric": "status_ok", "critical": False,
         "expect": {"min": 1}},
    ])
    assert [entry["probe"] for entry in result["results"]] == ["critical"]
    entry = result["results"][0]
    assert {key: entry[key] for key in ("component", "host", "phase", "type", "metric", "verdict", "critical")} == {
        "component": "tts", "host": "toy-1", "phase": "rollback", "type": "http", "metric": "status_ok",
        "verdict": "pass", "critical": True}
    assert entry["duration_ms"] >= 0
    assert [seen["path"] for seen in toy.requests_seen] == ["/ok"]
    assert result["msg"] == "tts rollback: 1 of 1 probe(s) passed"


def test_validate_only_runs_nothing(toy: ToyService, redis_server: RedisServer) -> None:
    result = probe(validate_only=True, redis=redis_server.options, probes=[
        {"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}},
        {"name": "alerts", "type": "redis", "metric": "stream_growth", "key": STREAM,
         "trigger_url": toy.base + "/alert?name=x", "match": {"name": "x"},
         "expect": {"min": 1}},
        {"name": "cli", "type": "command", "metric": "exit_code", "argv": ["/bin/touch", str(redis_server.directory / "touched")],
         "expect": {"equals": 0}},
    ])
    assert result["results"] == [] and result["values"] == {}
    assert result["msg"] == "tts: 3 probe spec(s) valid, none run"
    assert toy.hits == 0
    assert redis_server.client().exists(STREAM) == 0
    assert not (redis_server.directory / "touched").exists()


def test_bad_spec_is_refused_before_any_probe_runs(toy: ToyService) -> None:
    with pytest.raises(ModuleFailed) as failure:
        probe(probes=[
            {"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}},
            {"name": "hit_ratio", "type": "http", "url": toy.base + "/speak", "metric": "header_ratio",
             "header": "X-Cache", "value": "hit", "expect": {"max_ratio": "abc"}},
        ])
    assert "probe tts/hit_ratio: expect.max_ratio must be a number >= 0, got 'abc'" in failure.value.result["msg"]
    assert toy.hits == 0


def test_bad_options_are_refused(toy: ToyService) -> None:
    with pytest.raises(ModuleFailed) as failure:
        probe(probes=[{"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}}],
              baseline={"up": [1]}, headers={"X-Bad": "a\nb"})
    assert failure.value.result["errors"] == [
        "option baseline: up must be a number, string, boolean or null, got [1]",
        "option headers: value of X-Bad must be single-line text, got 'a\\nb'"]
    with pytest.raises(ModuleFailed) as failure:
        probe(phase="later", probes=[{"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}}])
    assert "phase" in failure.value.result["msg"]
    assert toy.hits == 0


def test_check_mode_still_probes(toy: ToyService) -> None:
    result = probe(check_mode=True, probes=[
        {"name": "up", "type": "http", "url": toy.base + "/ok", "requests": 2, "metric": "status_ok",
         "expect": {"min": 1}}])
    assert result["changed"] is False
    assert result["results"][0]["value"] == 1.0
    assert toy.hits == 2


# ---------------------------------------------------------------- judgement over several measurements

def test_failure_limit_tolerates_one_failed_measurement_and_stops_at_the_second(toy: ToyService) -> None:
    spec = {"type": "http", "metric": "error_rate", "count": 4, "interval": 0.05, "failure_limit": 1,
            "expect": {"max": 0}}
    result = probe(probes=[dict(spec, name="one_blip", url=toy.base + "/flaky?key=a&fail=2"),
                           dict(spec, name="two_blips", url=toy.base + "/flaky?key=b&fail=2,3")])
    results = by_name(result)
    blip, broken = results["one_blip"], results["two_blips"]
    assert [m["verdict"] for m in blip["measurements"]] == ["pass", "fail", "pass", "pass"]
    assert [m["value"] for m in blip["measurements"]] == [0.0, 1.0, 0.0, 0.0]
    assert (blip["verdict"], blip["failures"], blip["errors"], blip["value"]) == ("pass", 1, 0, 0.0)
    assert blip["threshold"] == "<= 0; at most 1 of 4 measurement(s) may break it"
    # the verdict is decided at the second failure: no fourth request
    assert [m["verdict"] for m in broken["measurements"]] == ["pass", "fail", "fail"]
    assert (broken["verdict"], broken["failures"]) == ("fail", 2)
    assert toy.calls["flaky:a"] == 4 and toy.calls["flaky:b"] == 3
    assert broken["detail"].startswith("3 of 4 measurement(s): 1 passed, 2 failed (failure_limit 1)")
    assert result["trigger"]["probe"] == "two_blips"
    entry = next(e for e in result["journal"] if e["data"]["probe"] == "two_blips")["data"]
    assert (entry["failures"], entry["errors"], len(entry["measurements"])) == (2, 0, 3)
    assert {key: entry["spec"][key] for key in ("count", "interval", "initial_delay", "failure_limit",
                                                "consecutive_error_limit", "inconclusive")} == {
        "count": 4, "interval": 0.05, "initial_delay": 0, "failure_limit": 1, "consecutive_error_limit": 0,
        "inconclusive": "rollback"}
    assert entry["spec"]["urls"] == [toy.base + "/flaky?key=b&fail=2,3"]


def test_consecutive_error_limit_waits_out_a_warm_up_and_initial_delay_waits(toy: ToyService) -> None:
    spec = {"type": "http", "metric": "json_field", "field": "status", "count": 3, "interval": 0.05,
            "expect": {"equals": "ok"}}
    started = time.monotonic()
    result = probe(probes=[
        dict(spec, name="tolerant", url=toy.base + "/warming?key=a&cold=1", consecutive_error_limit=1,
             initial_delay=0.3),
        dict(spec, name="strict", url=toy.base + "/warming?key=b&cold=1"),
        dict(spec, name="too_cold", url=toy.base + "/warming?key=c&cold=2", consecutive_error_limit=1),
    ])
    results = by_name(result)
    assert time.monotonic() - started >= 0.3
    assert [m["verdict"] for m in results["tolerant"]["measurements"]] == ["error", "pass", "pass"]
    assert (results["tolerant"]["verdict"], results["tolerant"]["value"]) == ("pass", "ok")
    assert (results["strict"]["verdict"], len(results["strict"]["measurements"])) == ("inconclusive", 1)
    assert "response is not JSON" in results["strict"]["detail"]
    assert [m["verdict"] for m in results["too_cold"]["measurements"]] == ["error", "error"]
    assert results["too_cold"]["verdict"] == "inconclusive"
    assert "2 error(s) (consecutive_error_limit 1)" in results["too_cold"]["detail"]
    assert (toy.calls["warming:a"], toy.calls["warming:b"], toy.calls["warming:c"]) == (3, 1, 2)
    assert result["trigger"]["probe"] == "strict"
    assert result["passed"] is False and result["paused"] is False


def test_an_inconclusive_probe_with_policy_pause_stops_without_a_trigger(toy: ToyService) -> None:
    result = probe(probes=[
        {"name": "up", "type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}},
        {"name": "status", "type": "http", "url": toy.base + "/notjson", "metric": "json_field", "field": "status",
         "inconclusive": "pause", "expect": {"equals": "ok"}},
    ])
    assert [entry["verdict"] for entry in result["results"]] == ["pass", "inconclusive"]
    assert (result["passed"], result["paused"], result["trigger"]) == (False, True, None)
    assert result["journal"][1]["data"]["spec"]["inconclusive"] == "pause"
    assert result["msg"] == ("tts verify: paused for a human, 1 probe(s) inconclusive: tts/status: value none, "
                             "baseline none, threshold == 'ok'; inconclusive: last response: HTTP 200 response is "
                             "not JSON; 1 request(s) to %s/notjson: 200 x1" % toy.base)


def test_judgement_fields_are_validated_together(toy: ToyService) -> None:
    base = {"type": "http", "url": toy.base + "/ok", "metric": "status_ok", "expect": {"min": 1}}
    with pytest.raises(ModuleFailed) as failure:
        probe(probes=[dict(base, name="a", count=3, failure_limit=3),
                      dict(base, name="b", consecutive_error_limit=1),
                      dict(base, name="c", critical=False, inconclusive="rollback"),
                      dict(base, name="d", count=100, interval=60),
                      dict(base, name="e", inconclusive="wait")])
    assert failure.value.result["errors"] == [
        "probe tts/a: failure_limit (3) must be less than count (3): the probe fails when more than failure_limit "
        "of its count measurements fail, so it could never fail",
        "probe tts/b: consecutive_error_limit (1) must be less than count (1): 1 measurement(s) cannot have more "
        "errors in a row than that",
        "probe tts/c: inconclusive rollback needs critical true (a non-critical probe never rolls back; use pause)",
        "probe tts/d: initial_delay + interval x (count - 1) must be at most 3600.0 seconds, got 5940.0",
        "probe tts/e: inconclusive must be one of rollback, pause, got 'wait'"]
    assert toy.hits == 0


# ---------------------------------------------------------------- new_key_ttl_s

def test_new_key_ttl_catches_milliseconds_written_where_seconds_were_meant(toy: ToyService,
                                                                           redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("tts:seeded-short", b"old", ex=10)  # an older key: not written by the probe, never counted
    client.set("tts:seeded-forever", b"old")
    spec = {"name": "new_tts_ttl", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:*",
            "trigger_requests": 3, "expect": {"min_ratio": 0.5, "min": 60}}
    baseline = probe(phase="baseline", redis=redis_server.options, probes=[
        dict(spec, trigger_url=toy.base + "/tts-speak?text=probe-{nonce}&ttl=86400")])
    recorded = baseline["results"][0]
    assert recorded["verdict"] == "recorded"
    assert 86390 <= recorded["value"] <= 86400
    assert "4 key(s)" not in recorded["detail"] and "2 key(s) before, 3 new" in recorded["detail"]

    faulty = probe(phase="canary", redis=redis_server.options, baseline=baseline["values"], probes=[
        dict(spec, trigger_url=toy.base + "/tts-speak?text=probe-{nonce}&ttl=86400&unit=ms")])
    judged = faulty["results"][0]
    assert 80 <= judged["value"] <= 86.4
    assert judged["verdict"] == "fail"
    assert faulty["trigger"]["probe"] == "new_tts_ttl"
    new_keys = [key for key in client.scan_iter(match="tts:probe-*")]
    assert len(new_keys) == 6
    assert sorted(client.ttl(key) > 3600 for key in new_keys) == [False] * 3 + [True] * 3
    assert client.ttl("tts:seeded-forever") == -1 and client.exists("tts:seeded-short") == 1


def test_new_key_ttl_median_and_no_new_key_is_inconclusive_naming_the_pattern(toy: ToyService,
                                                                               redis_server: RedisServer) -> None:
    result = probe(redis=redis_server.options, probes=[
        {"name": "median", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:median-*", "stat": "median",
         "trigger_url": toy.base + "/tts-speak?text=median-{nonce}&ttl=100", "trigger_requests": 2,
         "expect": {"min": 50}},
        {"name": "nothing_written", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:never-*",
         "trigger_url": toy.base + "/ok?n={nonce}", "window": 0.3, "expect": {"min": 50}},
    ])
    results = by_name(result)
    assert 99 <= results["median"]["value"] <= 100 and results["median"]["verdict"] == "pass"
    nothing = results["nothing_written"]
    assert (nothing["value"], nothing["verdict"]) == (None, "inconclusive")
    assert "no new key matching tts:never-* within 0.3s" in nothing["detail"]
    assert "trigger 1 request(s)" in nothing["detail"]
    assert len([seen for seen in toy.requests_seen if seen["path"].startswith("/ok?n=")]) == 1


# ---------------------------------------------------------------- readable_ratio

READER = textwrap.dedent('''
    """A reader of the old release: a reply is readable when ai:reply:<nonce> is a hash with a reply field."""
    import json, sys
    import redis
    port, log, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    nonces = [line.strip() for line in sys.stdin if line.strip()]
    open(log, "w").write("\\n".join(nonces))
    if mode == "crash":
        sys.stderr.write("Traceback: ImportError: no module named aioredis\\n")
        sys.exit(2)
    if mode == "garbage":
        print("reading replies...")
        sys.exit(0)
    client = redis.Redis(port=port)
    answers = {}
    for nonce in nonces:
        try:
            answers[nonce] = b"reply" in client.hgetall("ai:reply:" + nonce)
        except redis.ResponseError:  # WRONGTYPE: the new release stored a string
            answers[nonce] = False
    if mode == "partial":
        answers.pop(nonces[-1])
    print(json.dumps(answers))
''')


@pytest.fixture
def reader(tmp_path, redis_server: RedisServer) -> Any:
    """The reader installed as the old release's code: <tmp>/releases/legacy/read_replies.py."""
    release_dir = tmp_path / "releases" / "legacy"
    release_dir.mkdir(parents=True)
    (release_dir / "read_replies.py").write_text(READER)

    def argv(mode: str, log_name: str) -> list[str]:
        return [sys.executable, str(tmp_path / "releases" / "{from_release}" / "read_replies.py"),
                str(redis_server.port), str(tmp_path / log_name), mode]
    argv.root = tmp_path  # type: ignore[attr-defined]
    return argv


def test_readable_ratio_counts_what_the_old_release_reads(toy: ToyService, redis_server: RedisServer,
                                                         reader: Any) -> None:
    spec = {"type": "command", "metric": "readable_ratio", "write_requests": 5, "expect": {"min": 1.0}}
    result = probe(component="ai", placeholders={"release": "migrated", "from_release": "legacy"}, probes=[
        dict(spec, name="old_format", write_url=toy.base + "/reply-write?nonce={nonce}&format=old",
             argv=reader("ok", "old.log")),
        dict(spec, name="new_format", write_url=toy.base + "/reply-write?nonce={nonce}&format=new",
             argv=reader("ok", "new.log")),
        dict(spec, name="mixed", write_url=toy.base + "/reply-write?nonce={nonce}&format=mixed",
             argv=reader("ok", "mixed.log")),
    ])
    results = by_name(result)
    assert (results["old_format"]["value"], results["old_format"]["verdict"]) == (1.0, "pass")
    assert (results["new_format"]["value"], results["new_format"]["verdict"]) == (0.0, "fail")
    assert (results["mixed"]["value"], results["mixed"]["verdict"]) == (0.6, "fail")
    assert "reader python" in results["mixed"]["detail"] and "read 3 of 5 fresh entries" in results["mixed"]["detail"]
    # the reader got exactly the nonces the service wrote, one per line, and those entries are in Redis
    given = [nonce for name in ("old", "new", "mixed")
             for nonce in (reader.root / ("%s.log" % name)).read_text().split("\n")]
    assert sorted(given) == sorted(toy.written_nonces) and len(set(given)) == 15
    client = redis_server.client()
    assert sorted(client.type("ai:reply:" + nonce) for nonce in given).count(b"hash") == 5 + 3
    # {from_release} was filled in argv, and the recorded spec shows it
    assert results["mixed"]["spec"]["argv"][1] == str(reader.root / "releases" / "legacy" / "read_replies.py")
    assert result["trigger"]["probe"] == "new_format"


def test_readable_ratio_of_a_sample_of_the_keys_of_a_namespace(redis_server: RedisServer, tmp_path) -> None:
    """After a rollback: the old release's reader gets a sample of every key of the namespace, by name."""
    client = redis_server.client()
    for index in range(8):
        client.hset("ai:reply:old-%d" % index, mapping={"reply": "hi"})
    client.set("ai:reply:new-0", "{}")  # written by a release the old one cannot read
    reader_script = tmp_path / "read_keys.py"
    reader_script.write_text(textwrap.dedent('''
        import json, sys
        import redis
        client = redis.Redis(port=int(sys.argv[1]))
        keys = [line.strip() for line in sys.stdin if line.strip()]
        answers = {}
        for key in keys:
            try:
                answers[key] = b"reply" in client.hgetall(key)
            except redis.ResponseError:
                answers[key] = False
        print(json.dumps(answers))
    '''))
    spec = {"type": "command", "metric": "readable_ratio", "argv": [sys.executable, str(reader_script),
                                                                   str(redis_server.port)], "expect": {"min": 1.0}}
    result = probe(component="ai", phase="rollback", placeholders={"release": "legacy"}, redis=redis_server.options,
                   probes=[dict(spec, name="all", sample_keys=["ai:reply:*"], sample_size=50),
                           dict(spec, name="few", sample_keys=["ai:reply:old-*"], sample_size=3),
                           dict(spec, name="none", sample_keys=["tts:*"])])
    results = by_name(result)
    assert (results["all"]["value"], results["all"]["verdict"]) == (8 / 9, "fail")
    assert "read 8 of 9 sampled key(s) of ai:reply:*" in results["all"]["detail"]
    assert "unreadable: ai:reply:new-0" in results["all"]["detail"]
    assert (results["few"]["value"], results["few"]["verdict"]) == (1.0, "pass")
    assert "read 3 of 3 sampled key(s)" in results["few"]["detail"]
    assert (results["none"]["value"], results["none"]["verdict"]) == (1.0, "pass")


def test_readable_ratio_reader_failures_are_inconclusive_with_their_output(toy: ToyService, reader: Any) -> None:
    spec = {"type": "command", "metric": "readable_ratio", "write_requests": 2, "expect": {"min": 1.0},
            "write_url": toy.base + "/reply-write?nonce={nonce}"}
    result = probe(component="ai", phase="baseline", placeholders={"release": "legacy"}, probes=[
        dict(spec, name="crash", argv=reader("crash", "crash.log")),
        dict(spec, name="garbage", argv=reader("garbage", "garbage.log")),
        dict(spec, name="partial", argv=reader("partial", "partial.log")),
        dict(spec, name="nothing_written", argv=reader("ok", "none.log"),
             write_url=toy.base + "/fail?n={nonce}"),
    ])
    results = by_name(result)
    assert {name: entry["verdict"] for name, entry in results.items()} == dict.fromkeys(results, "inconclusive")
    assert "reader python exited 2" in results["crash"]["detail"]
    assert "ImportError: no module named aioredis" in results["crash"]["detail"]
    assert "did not print JSON" in results["garbage"]["detail"] and "reading replies..." in results["garbage"]["detail"]
    assert "gave no true/false for 1 of 2 nonce(s)" in results["partial"]["detail"]
    assert "no write succeeded, so there is nothing to read; write 2 request(s)" in results["nothing_written"]["detail"]
    assert "503 x2" in results["nothing_written"]["detail"]
    assert not (reader.root / "none.log").exists()  # the reader never ran
    # baseline phase: {from_release} defaults to {release}
    assert results["crash"]["spec"]["argv"][1] == str(reader.root / "releases" / "legacy" / "read_replies.py")


def test_from_release_is_required_once_the_component_moved(toy: ToyService, reader: Any) -> None:
    probes = [{"name": "readable", "type": "command", "metric": "readable_ratio", "argv": reader("ok", "x.log"),
               "write_url": toy.base + "/reply-write?nonce={nonce}", "expect": {"min": 1.0}}]
    with pytest.raises(ModuleFailed) as failure:
        probe(component="ai", phase="verify", placeholders={"release": "migrated"}, probes=probes)
    assert failure.value.result["errors"] == [
        "component ai: its probes use {from_release}, so phase verify needs placeholders.from_release (the release "
        "the component moved from)"]
    assert probe(component="ai", phase="verify", placeholders={"release": "migrated"}, probes=probes,
                 validate_only=True)["msg"] == "ai: 1 probe spec(s) valid, none run"
    assert toy.hits == 0
    result = run_module(cutover_probe.main, dict(phase="canary", components=[
        {"name": "ai", "probes": probes, "placeholders": {"release": "migrated", "from_release": "legacy"}}]))
    assert (result["results"][0]["value"], result["passed"]) == (1.0, True)


# ---------------------------------------------------------------- process_growth

PROCESS_TARGET = textwrap.dedent('''
    """A component whose process leaks per request on some routes (fds, memory, Redis clients) and not on others."""
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import redis

    REDIS_PORT = int(sys.argv[1])
    KEPT = []
    COLLECTED = []  # what a garbage collector frees now and then: closed and dropped every 15 requests
    POOLED = redis.Redis(port=REDIS_PORT, client_name="target-pooled")
    POOLED.ping()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            route = self.path.split("?")[0]
            if route == "/healthz":
                body = {"status": "ok", "pid": os.getpid()}
            elif route == "/leak-fd":
                KEPT.append(open(os.devnull, "rb"))
                body = {"ok": True}
            elif route == "/leak-fd-collected":
                COLLECTED.append(open(os.devnull, "rb"))
                if len(COLLECTED) >= 15:
                    for leaked in COLLECTED:
                        leaked.close()
                    COLLECTED.clear()
                body = {"ok": True}
            elif route == "/leak-memory":
                KEPT.append(b"x" * (1 << 20))
                body = {"ok": True}
            elif route == "/leak-client":
                client = redis.Redis(port=REDIS_PORT, client_name="target-leaky")
                client.ping()
                KEPT.append(client)
                body = {"ok": True}
            elif route == "/work":
                with open(os.devnull, "rb"):
                    scratch = b"x" * (1 << 20)
                POOLED.ping()
                body = {"ok": True, "bytes": len(scratch)}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
''')


@pytest.fixture
def target(tmp_path, redis_server: RedisServer) -> Iterator[dict[str, Any]]:
    """The leaky component as a process of its own: {base, pid}."""
    script = tmp_path / "target.py"
    script.write_text(PROCESS_TARGET)
    process = subprocess.Popen([sys.executable, str(script), str(redis_server.port)], stdout=subprocess.PIPE,
                               text=True)
    try:
        port = int(process.stdout.readline())
        yield {"base": "http://127.0.0.1:%d" % port, "pid": process.pid}
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def growth_probe(name: str, resource: str, route: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "http", "metric": "process_growth", "resource": resource,
            "burst_url": route + "?n={nonce}", "burst_requests": 10, "burst_concurrency": 2, "window": 0.5,
            "settle": 0.2, "samples": 3, **fields}


def test_process_growth_sees_leaked_fds_memory_and_clients(target: dict[str, Any], redis_server: RedisServer) -> None:
    result = probe(component="monitoring", base_url=target["base"], redis=redis_server.options, probes=[
        growth_probe("fds_healthy", "fds", "/work", expect={"max": 2}),
        growth_probe("fds_leaky", "fds", "/leak-fd", expect={"max": 2}),
        growth_probe("rss_healthy", "rss_mb", "/work", expect={"max": 8}),
        growth_probe("rss_leaky", "rss_mb", "/leak-memory", expect={"max": 8}),
        growth_probe("clients_healthy", "clients", "/work", client_name="target-pooled", expect={"max": 0}),
        growth_probe("clients_leaky", "clients", "/leak-client", client_name="target-leaky", expect={"max": 0}),
        growth_probe("fds_sawtooth", "fds", "/leak-fd-collected", burst_concurrency=1, window=0.01,
                     expect={"max": 2}),
    ])
    results = by_name(result)
    # 10 fds after the first burst, 5 after the second (15 collected), 0 after the third: the last reading is back
    # where it started, the rise in between is the leak
    sawtooth = results.pop("fds_sawtooth")
    assert (sawtooth["value"], sawtooth["verdict"]) == (10, "fail")
    before = int(re.search(r"fds: (\d+) before", sawtooth["detail"]).group(1))
    assert ": %d before, after each burst and 0.2s settle: %d, %d, %d (last - before: 0); 3 burst(s)" % (
        before, before + 10, before + 5, before) in sawtooth["detail"]
    bursts = {name: int(entry["detail"].split(" burst(s)")[0].rsplit(" ", 1)[-1]) for name, entry in results.items()}
    assert all(count >= 3 for count in bursts.values()), bursts
    for resource in ("fds", "rss", "clients"):
        assert results["%s_healthy" % resource]["verdict"] == "pass", results["%s_healthy" % resource]
        assert results["%s_leaky" % resource]["verdict"] == "fail", results["%s_leaky" % resource]
    assert results["fds_leaky"]["value"] >= 10 * bursts["fds_leaky"]
    assert results["rss_leaky"]["value"] >= 0.8 * bursts["rss_leaky"] * 10
    assert results["clients_leaky"]["value"] == 10 * bursts["clients_leaky"]
    assert results["clients_healthy"]["value"] == 0
    assert "pid %d fds: " % target["pid"] in results["fds_leaky"]["detail"]
    # the leaked connections are really open on the server
    leaky = [entry for entry in redis_server.client().client_list() if entry.get("name") == "target-leaky"]
    assert len(leaky) == results["clients_leaky"]["value"]
    # pid_url defaulted to the component's /healthz
    assert results["fds_leaky"]["spec"]["pid_url"] == target["base"] + "/healthz"


def test_process_growth_refuses_to_judge_a_changed_or_unknown_process(toy: ToyService) -> None:
    result = probe(base_url=toy.base, probes=[
        growth_probe("restarted", "fds", "/ok", pid_url="/changing-pid", window=0.1, samples=1,
                     expect={"max": 2}),
        growth_probe("no_pid", "fds", "/ok", pid_url="/check?text=x", pid_field="pid", expect={"max": 2}),
    ])
    results = by_name(result)
    assert results["restarted"]["verdict"] == "inconclusive"
    assert "the process changed during the window (pid %d, then 1)" % os.getpid() in results["restarted"]["detail"]
    assert results["no_pid"]["verdict"] == "inconclusive"
    assert "pid from %s/check?text=x: HTTP 200 response JSON has no field pid" % toy.base in results["no_pid"]["detail"]
    assert toy.calls["changing-pid"] == 2


def test_process_growth_spec_errors() -> None:
    with pytest.raises(ModuleFailed) as failure:
        probe(probes=[growth_probe("no_base", "fds", "http://127.0.0.1:1/x", expect={"max": 1}),
                      growth_probe("clients", "clients", "http://127.0.0.1:1/x", pid_url="http://127.0.0.1:1/h",
                                   expect={"max": 1}),
                      growth_probe("url", "rss_mb", "http://127.0.0.1:1/x", pid_url="http://127.0.0.1:1/h",
                                   url="http://127.0.0.1:1/y", expect={"max": 1})])
    assert failure.value.result["errors"] == [
        "probe tts/no_base: pid_url is required for metric process_growth (without the component's base_url; with "
        "one it defaults to /healthz)",
        "probe tts/clients: client_name is required for resource clients (the CLIENT LIST name of the component's "
        "connections)",
        "probe tts/url: url is not used by metric process_growth (it is used by: status_ok, error_rate, "
        "latency_p50_ms, latency_p95_ms, json_field, json_ratio, header_ratio)"]
