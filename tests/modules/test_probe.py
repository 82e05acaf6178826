"""cutover_probe against a real HTTP server (stdlib, in a thread) and the real redis-server fixture."""
from __future__ import annotations

import json
import sys
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
        else:
            self.reply(404, b"not found", "text/plain")


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


def test_connection_refused_gives_failure_values_or_error_and_never_crashes() -> None:
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
    assert (results["latency"]["value"], results["latency"]["verdict"]) == (None, "error")
    assert "no request got a response (connection refused)" in results["latency"]["detail"]
    assert (results["status"]["value"], results["status"]["verdict"]) == (None, "error")
    assert "connection refused" in results["status"]["detail"]
    assert result["passed"] is False
    assert "tts/latency: value none, baseline none, threshold <= 100; error: no request got a response" \
        in " ".join(result["failures"])


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
    assert results["missing"]["verdict"] == "error"
    assert "response JSON has no field pool.waiting" in results["missing"]["detail"]
    assert results["html"]["verdict"] == "error"
    assert "HTTP 200 response is not JSON" in results["html"]["detail"]
    assert result["passed"] is True
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


def test_unreachable_redis_is_an_error_verdict_not_a_crash() -> None:
    started = time.monotonic()
    result = probe(redis={"host": "127.0.0.1", "port": free_port()}, probes=[
        {"name": "ping", "type": "redis", "metric": "ping_ms", "timeout": 1, "expect": {"max": 50}},
    ])
    entry = result["results"][0]
    assert (entry["value"], entry["verdict"]) == (None, "error")
    assert entry["detail"].startswith("redis: ")
    assert "refused" in entry["detail"].lower()
    assert time.monotonic() - started < 1.0  # no hidden retries
    assert result["passed"] is False


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
    assert (results["hangs"]["value"], results["hangs"]["verdict"]) == (None, "error")
    assert "sh timed out after 0.5s and was killed" in results["hangs"]["detail"]
    assert (results["missing"]["value"], results["missing"]["verdict"]) == (None, "error")
    assert "nope could not be started" in results["missing"]["detail"]


# ---------------------------------------------------------------- options, phases, criticality

def test_missing_baseline_for_ratio_rule_is_an_error(toy: ToyService) -> None:
    result = probe(probes=[{"name": "latency", "type": "http", "url": toy.base + "/ok",
                            "metric": "latency_p95_ms", "expect": {"max_ratio": 3}}], baseline={"other": 1})
    entry = result["results"][0]
    assert entry["verdict"] == "error"
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
