"""make load (bench/load.py): what it sends, which base URLs it refuses, how it counts requests, failures and
latency per component and second and groups failures into windows (on records stamped by a clock the test
drives, no sleeping), how it reads the base URLs from the inventory (real ansible), and - against a real
HTTP server on loopback - that it keeps its rate, counts 503s and refused connections as failures and stops
on SIGTERM with its summary written."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from cutover_testlib import ROOT, free_port

sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402

LOAD_PY = ROOT / "bench" / "load.py"
T0 = 1796418000.0  # 2026-12-04T21:00:00Z


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def request(counter: load.LoadCounter, clock: Clock, label: str, latency_s: float, failure: str | None = None,
            then: float = 0.1) -> None:
    """One request sent now, answered latency_s later; the clock then moves on by ``then``."""
    counter.record(label, clock(), latency_s, failure)
    clock.advance(then)


# ---- what it sends --------------------------------------------------------------------------------------

@pytest.mark.parametrize("component,cached,new", [
    ("tts", "/speak?text=seed-tts-", "/speak?text=load-n0nce-"),
    ("ai", "/reply?prompt=seed-prompt-", "/reply?prompt=load-n0nce-"),
    ("safety", "/check?text=seed-", "/check?text=load-n0nce-"),
    ("security", "/request?child=seed-child-", "/request?child=load-n0nce-"),
    ("monitoring", "/status", "/alert?name=load-n0nce-"),
])
def test_half_the_requests_are_for_seeded_entries_half_for_new_ones(component, cached, new):
    paths = [load.user_path(component, index, "n0nce") for index in range(400)]
    assert all(path.startswith(cached) for path in paths[0::2])
    assert all(path.startswith(new) for path in paths[1::2])
    assert len(set(paths[1::2])) == 200  # every new entry is new


def test_seeded_entries_stay_within_what_the_demo_seeds():
    tts = {load.user_path("tts", index, "x") for index in range(0, 2000, 2)}
    assert tts == {"/speak?text=seed-tts-%d" % i for i in range(200)}
    safety = {load.user_path("safety", index, "x") for index in range(0, 2000, 2)}
    assert safety == ({"/check?text=seed-safe-%d" % i for i in range(80)}
                      | {"/check?text=seed-unsafe-%d%%20weapon" % i for i in range(20)})
    assert {load.user_path("security", index, "x") for index in range(0, 200, 2)} == \
        {"/request?child=seed-child-%d" % i for i in range(20)}


def test_a_component_without_known_user_traffic_is_refused_naming_the_known_ones():
    with pytest.raises(load.TargetError, match=r"'validator'; known: monitoring, ai, tts, security, safety"):
        load.build_targets([("validator", "http://127.0.0.1:1")])


# ---- loopback only --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:18103", "http://127.8.9.10:80/", "http://[::1]:18103",
                                 "http://localhost:18103", "https://127.0.0.1"])
def test_loopback_base_urls_are_accepted(url):
    assert load.build_targets([("tts", url)]) == [load.Target("tts", "tts", url.rstrip("/"))]


@pytest.mark.parametrize("url,shown", [
    ("http://10.0.0.5:18103", "http://10.0.0.5:18103"),
    ("http://0.0.0.0:18103", "http://0.0.0.0:18103"),
    ("http://192.168.1.2", "http://192.168.1.2"),
    ("http://example.com:80", "http://example.com:80"),
    ("http://[::ffff:10.0.0.1]:80", "http://[::ffff:10.0.0.1]:80"),
    ("http://user:hunter2@10.0.0.5:80", "http://***@10.0.0.5:80"),
])
def test_a_base_url_off_loopback_is_refused_naming_it_and_never_its_password(url, shown):
    with pytest.raises(load.TargetError) as refused:
        load.build_targets([("ai", "http://127.0.0.1:1"), ("tts", url)])
    assert str(refused.value) == ("base URL of tts is not on loopback: %s (allowed: 127.0.0.0/8, ::1, localhost)"
                                  % shown)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:18103", "http://127.0.0.1:http/"])
def test_a_base_url_that_is_not_http_on_a_port_is_refused(url):
    with pytest.raises(load.TargetError, match="base URL of tts"):
        load.build_targets([("tts", url)])


def test_the_command_refuses_an_off_loopback_url_before_sending_anything(tmp_path):
    out = tmp_path / "load.json"
    done = subprocess.run([sys.executable, str(LOAD_PY), "--base-url", "tts=http://127.0.0.1:1",
                           "--base-url", "ai=http://10.1.2.3:18102", "--out", str(out)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "cannot run: base URL of ai is not on loopback: http://10.1.2.3:18102" in done.stderr
    assert load.STARTED_MARK not in done.stdout and not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--rate", "0"], "argument --rate: must be from 0.1 to 1000.0, got 0"),
    (["--concurrency", "1.5"], "argument --concurrency: must be a whole number from 1 to 200, got '1.5'"),
    (["--duration", "-1"], "argument --duration: must be from 0.1 to 86400.0, got -1"),
    (["--base-url", "tts=http://127.0.0.1:1", "-e", "toy_port_base=1"], "give either --base-url or -i/-e"),
])
def test_bad_options_are_refused_naming_the_option_and_what_is_allowed(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        load.parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


# ---- counting and windows (a clock the test moves) ------------------------------------------------------

def test_requests_failures_and_latency_are_counted_per_component_and_second():
    counter, clock = load.LoadCounter(), Clock()
    targets = [load.Target("tts", "tts", "http://127.0.0.1:1"), load.Target("ai", "ai", "http://127.0.0.1:2")]
    for latency in (0.010, 0.020, 0.030, 0.040):
        request(counter, clock, "tts", latency, then=0.2)           # 21:00:00.0 - 00.6
    request(counter, clock, "ai", 0.5, "HTTP 503", then=0.3)        # 00.8
    request(counter, clock, "ai", 5.0, "TimeoutError", then=0.0)    # 01.1
    request(counter, clock, "tts", 0.1, "HTTP 503")                 # 01.1
    summary = counter.summary(targets, gap_s=1.0)
    assert summary["totals"] == {"requests": 7, "failed": 3, "failures_by_reason": {"HTTP 503": 2, "TimeoutError": 1},
                                 "latency_ms": {"p50": 40.0, "p95": 5000.0, "max": 5000.0}}
    assert summary["components"]["tts"] == {"requests": 5, "failed": 1, "failures_by_reason": {"HTTP 503": 1},
                                            "latency_ms": {"p50": 30.0, "p95": 100.0, "max": 100.0}}
    assert summary["components"]["ai"]["failed"] == 2
    assert summary["per_second"]["tts"] == [
        {"second": "2026-12-04T21:00:00.000Z", "requests": 4, "failed": 0, "failures_by_reason": {},
         "latency_ms": {"p50": 20.0, "p95": 40.0, "max": 40.0}},
        {"second": "2026-12-04T21:00:01.000Z", "requests": 1, "failed": 1, "failures_by_reason": {"HTTP 503": 1},
         "latency_ms": {"p50": 100.0, "p95": 100.0, "max": 100.0}}]
    assert [second["second"] for second in summary["per_second"]["ai"]] == ["2026-12-04T21:00:00.000Z",
                                                                            "2026-12-04T21:00:01.000Z"]


def test_a_component_that_got_no_request_is_still_listed():
    summary = load.LoadCounter().summary([load.Target("safety", "safety", "http://127.0.0.1:1")], gap_s=1.0)
    assert summary["components"] == {"safety": {"requests": 0, "failed": 0, "failures_by_reason": {},
                                                "latency_ms": None}}
    assert summary["failed_windows"] == [] and summary["totals"]["requests"] == 0


def test_failures_close_together_form_one_window_from_first_sent_to_last_answered():
    counter, clock = load.LoadCounter(), Clock()
    request(counter, clock, "tts", 0.01, then=1.0)                            # 00.000 ok
    request(counter, clock, "tts", 0.002, "ConnectionRefusedError", then=0.5)  # 01.000 first failure
    request(counter, clock, "ai", 0.01, then=0.5)                              # 01.500 ok, inside the window
    request(counter, clock, "ai", 2.0, "HTTP 503", then=2.9)                   # 02.000 - 04.000
    request(counter, clock, "safety", 0.004, "HTTP 503", then=3.0)            # 04.900: within 1 s of 04.000
    request(counter, clock, "tts", 0.01, then=0.1)                             # 07.900 ok
    request(counter, clock, "tts", 0.25, "HTTP 503")                           # 08.000: 4 s later, a new window
    windows = load.failure_windows(counter.records(), gap_s=1.0)
    assert windows == [
        {"start": "2026-12-04T21:00:01.000Z", "end": "2026-12-04T21:00:04.904Z", "seconds": 3.904, "requests": 4,
         "failed": 3, "by_component": {"tts": 1, "ai": 1, "safety": 1},
         "by_reason": {"ConnectionRefusedError": 1, "HTTP 503": 2}},
        {"start": "2026-12-04T21:00:08.000Z", "end": "2026-12-04T21:00:08.250Z", "seconds": 0.25, "requests": 1,
         "failed": 1, "by_component": {"tts": 1}, "by_reason": {"HTTP 503": 1}}]
    # with a 0.5 s gap, 01.002 -> 02.000 and 04.000 -> 04.900 are too far apart: every failure stands alone
    assert [window["failed"] for window in load.failure_windows(counter.records(), gap_s=0.5)] == [1, 1, 1, 1]
    # with 0.95 s only 01.002 -> 02.000 is too far apart
    assert [window["failed"] for window in load.failure_windows(counter.records(), gap_s=0.95)] == [1, 2, 1]


def test_the_load_line_names_the_totals_and_each_window():
    counter, clock = load.LoadCounter(), Clock()
    request(counter, clock, "tts", 0.01, then=10.0)
    request(counter, clock, "tts", 0.5, "HTTP 503")
    summary = counter.summary([load.Target("tts", "tts", "http://127.0.0.1:1")], gap_s=1.0)
    assert load.load_line(summary) == ("LOAD requests=2 failed=1 "
                                       "failed_windows=[2026-12-04T21:00:10.000Z/2026-12-04T21:00:10.500Z]")
    summary = load.LoadCounter().summary([load.Target("tts", "tts", "http://127.0.0.1:1")], gap_s=1.0)
    assert load.load_line(summary) == "LOAD requests=0 failed=0 failed_windows=[]"


def test_the_schedule_hands_out_requests_at_the_rate_until_the_end():
    schedule = load.Schedule(rate=4.0, start=100.0, end=102.0)
    tickets = []
    while (ticket := schedule.take()) is not None:
        tickets.append(ticket)
    assert tickets == [(index, 100.0 + index / 4.0) for index in range(8)]


# ---- base URLs from the inventory ----------------------------------------------------------------------

MINIMAL_OUTPUT = """\
app-1 | SUCCESS => {
    "msg": {"components": [{"base_url": "http://127.0.0.21:8101", "name": "monitoring"},
                           {"base_url": "http://127.0.0.21:8103", "name": "tts"}],
            "hosts": {"monitoring": ["app-1"], "tts": ["app-1", "app-2"], "validator": ["app-1"]}}
}
app-2 | SUCCESS => {
    "msg": {"components": [{"base_url": "http://127.0.0.22:8101", "name": "monitoring"},
                           {"base_url": "http://127.0.0.22:8103", "name": "tts"}],
            "hosts": {"monitoring": ["app-1"], "tts": ["app-1", "app-2"], "validator": ["app-1"]}}
}
"""


def test_inventory_output_gives_each_component_on_each_of_its_hosts_in_plan_order():
    assert load.parse_inventory_output(MINIMAL_OUTPUT) == [
        ("monitoring", "http://127.0.0.21:8101"), ("tts@app-1", "http://127.0.0.21:8103"),
        ("tts@app-2", "http://127.0.0.22:8103")]


def test_a_host_whose_variables_do_not_template_is_named():
    output = 'app-1 | FAILED! => {\n    "changed": false,\n    "msg": "toy_port_base is undefined"\n}\n'
    with pytest.raises(load.TargetError, match="the inventory could not be read on app-1: toy_port_base is undefined"):
        load.parse_inventory_output(output)


def test_the_local_inventory_gives_the_five_services_with_the_ports_of_the_extra_vars(tmp_path):
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"toy_port_base": 23400}))
    assert load.inventory_targets(None, ["@%s" % vars_file, "toy_host=127.0.0.9"]) == [
        ("monitoring", "http://127.0.0.9:23401"), ("ai", "http://127.0.0.9:23402"), ("tts", "http://127.0.0.9:23403"),
        ("security", "http://127.0.0.9:23404"), ("safety", "http://127.0.0.9:23405")]


# ---- against a real HTTP server ------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    """200 for every path, 503 ({"status": "maintenance"}) for /check, as a component in maintenance."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        status = 503 if urlsplit(self.path).path == "/check" else 200
        body = b'{"status": "maintenance"}' if status == 503 else b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_run_keeps_its_rate_and_counts_503_and_refused_as_failures(http_server):
    base = "http://127.0.0.1:%d" % http_server.server_address[1]
    closed = "http://127.0.0.1:%d" % free_port()
    targets = load.build_targets([("tts", base), ("safety", base), ("ai", closed)])
    run = load.LoadRun(targets, rate=30.0, duration_s=1.0, concurrency=4, timeout_s=2.0, nonce="t3st")
    threads_before = threading.active_count()
    ran_s = run.run()
    summary = run.counter.summary(targets, gap_s=1.0)
    assert threading.active_count() == threads_before  # every worker joined
    assert 0.9 <= ran_s < 3.0
    assert summary["totals"]["requests"] == 30 and summary["components"]["tts"]["requests"] == 10
    assert summary["components"]["tts"]["failed"] == 0
    assert summary["components"]["safety"]["failures_by_reason"] == {"HTTP 503": 10}
    assert summary["components"]["ai"]["failures_by_reason"] == {"ConnectionRefusedError": 10}
    assert len(summary["failed_windows"]) == 1 and summary["failed_windows"][0]["failed"] == 20
    speak = [path for path in http_server.paths if path.startswith("/speak")]
    assert len(speak) == 10 and speak[0] == "/speak?text=seed-tts-0" and speak[1] == "/speak?text=load-t3st-1"
    assert all("X-Cutover-Probe" not in path for path in http_server.paths)


def test_sigterm_stops_the_command_early_with_its_summary_written(http_server, tmp_path):
    base = "http://127.0.0.1:%d" % http_server.server_address[1]
    out = tmp_path / "load.json"
    process = subprocess.Popen([sys.executable, str(LOAD_PY), "--base-url", "tts=%s" % base,
                                "--base-url", "safety=%s" % base, "--rate", "20", "--duration", "120",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(http_server.paths) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    summary = json.loads(out.read_text())
    assert summary["stopped_by"] == "SIGTERM" and summary["ran_s"] < 20
    assert summary["components"]["safety"]["failed"] == summary["components"]["safety"]["requests"] > 0
    assert summary["components"]["tts"]["failed"] == 0
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("LOAD requests=%d failed=%d failed_windows=[" % (summary["totals"]["requests"],
                                                                          summary["totals"]["failed"]))
    assert Path(out).stat().st_size > 0
