"""make load: steady user traffic at every demo component, counted per component and per second.

Sends what users send - /speak?text=, /reply?prompt=, /check?text=, /request?child=, /alert?name= and
/status - half of it for entries the demo seeds (cached: seed-tts-<i>, seed-prompt-<i>, seed-safe-<i>,
"seed-unsafe-<i> weapon", seed-child-<i>, with the seed counts of cutover_demo_stack_seed_counts' defaults), half
for entries new to this run (load-<nonce>-<n>). Requests carry no X-Cutover-Probe header: a component in
maintenance answers them 503, the outage users see during a rollback.

The components' base URLs come from the inventory the way the playbooks template them (cutover_components with
cutover_plan and cutover_plan_hosts, per host, through `ansible -m debug`; -i and -e as for ansible-playbook),
or from --base-url name=url (then no inventory is read). Every base URL must be on loopback (127.0.0.0/8, ::1 or
localhost); any other is refused, naming it, before a request is sent.

Bounded: --rate requests/s in total, spread over the components in turn, at most --concurrency at once, each
given --timeout s; it stops by itself after --duration s, or on SIGINT/SIGTERM/SIGHUP, letting requests in
flight end (at most --timeout s), and joins every thread it started before it exits.

A failure is an answer other than 2xx, or no answer (refused, reset, timed out). Failures less than
--window-gap s apart form one failure window. The JSON summary (--out, default reports/load-<UTC time>.json)
holds totals, per component requests, failures by reason and latency, per component and second the same, and
the failure windows (UTC ISO like the journal's). The last line printed is
LOAD requests=N failed=M failed_windows=[<start>/<end>, ...]
It exits 0 whenever it ran (a load tool reports, it does not judge); 2 when it could not run (bad option,
a base URL not on loopback, the inventory could not be read), 1 when the summary could not be written.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))
from ansible.module_utils.cutover_events import utc_timestamp  # noqa: E402

ANSIBLE = str(Path(sys.executable).parent / "ansible")
# Seeded entries per namespace: cutover_demo_stack_seed_counts' defaults (safety: 80 safe + 20 unsafe texts).
SEEDED = {"tts": 200, "ai": 100, "safe": 80, "unsafe": 20, "children": 20}
LIMITS = {"rate": (0.1, 1000.0), "duration": (0.1, 86400.0), "concurrency": (1, 200), "timeout": (0.1, 60.0),
          "window_gap": (0.0, 3600.0)}
STARTED_MARK = "LOAD started"
KNOWN_COMPONENTS = ("monitoring", "ai", "tts", "security", "safety")
USER_AGENT = "cutover-load"


# ---- what users send ------------------------------------------------------------------------------------

def user_path(component: str, index: int, nonce: str) -> str:
    """The index-th request of a component: even ones for a seeded (cached) entry, odd ones for a new one."""
    turn, new = divmod(index, 2)
    fresh = "load-%s-%d" % (nonce, index)
    if component == "tts":
        return "/speak?text=" + quote(fresh if new else "seed-tts-%d" % (turn % SEEDED["tts"]))
    if component == "ai":
        return "/reply?prompt=" + quote(fresh if new else "seed-prompt-%d" % (turn % SEEDED["ai"]))
    if component == "safety":
        if new:
            return "/check?text=" + quote(fresh)
        seeded = ("seed-safe-%d" % (turn // 2 % SEEDED["safe"]) if turn % 2 == 0
                  else "seed-unsafe-%d weapon" % (turn // 2 % SEEDED["unsafe"]))
        return "/check?text=" + quote(seeded)
    if component == "security":
        return "/request?child=" + quote(fresh if new else "seed-child-%d" % (turn % SEEDED["children"]))
    if component == "monitoring":
        return "/alert?name=" + quote(fresh) if new else "/status"
    raise ValueError("no user traffic known for component %r; known: %s" % (component, ", ".join(KNOWN_COMPONENTS)))


# ---- targets --------------------------------------------------------------------------------------------

class TargetError(ValueError):
    """A base URL or component the load cannot be sent to; the message names it."""


@dataclass(frozen=True)
class Target:
    label: str          # the component, or component@host when it runs on several hosts
    component: str
    base_url: str


def shown_url(url: str) -> str:
    """The URL without any user:password part (never printed or written)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_loopback(name: str, url: str) -> None:
    """Refuse a base URL that is not http(s) on 127.0.0.0/8 or ::1 (localhost counts when it resolves only there)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError("base URL of %s must be http(s)://<loopback address>[:port], got %r" % (name, shown_url(url)))
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host != "localhost":
            raise TargetError("base URL of %s is not on loopback: %s (allowed: 127.0.0.0/8, ::1, localhost)"
                              % (name, shown_url(url))) from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0])
                     for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    if not addresses or not all(address.is_loopback for address in addresses):
        raise TargetError("base URL of %s is not on loopback: %s (allowed: 127.0.0.0/8, ::1, localhost)"
                          % (name, shown_url(url)))
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise TargetError("base URL of %s has a port that is not a number: %s" % (name, shown_url(url))) from None


def build_targets(pairs: list[tuple[str, str]]) -> list[Target]:
    """Targets from (label, base_url) pairs; the component is the label up to any @host. Checked, in order."""
    targets = []
    for label, url in pairs:
        component = label.split("@", 1)[0]
        if component not in KNOWN_COMPONENTS:
            raise TargetError("no user traffic known for component %r; known: %s"
                              % (component, ", ".join(KNOWN_COMPONENTS)))
        check_loopback(label, url)
        targets.append(Target(label, component, url.rstrip("/")))
    if not targets:
        raise TargetError("no service component to send load to")
    if len({target.label for target in targets}) != len(targets):
        raise TargetError("a component is named twice: %s" % ", ".join(target.label for target in targets))
    return targets


def parse_base_url_option(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url:
            raise TargetError("--base-url must be name=url (e.g. tts=http://127.0.0.1:18103), got %r"
                              % shown_url(value))
        pairs.append((name, url))
    return pairs


INVENTORY_EXPRESSION = (
    "{{ {'components': cutover_components | cutover_plan | selectattr('kind', 'equalto', 'service')"
    " | map('dict2items') | map('selectattr', 'key', 'in', ['name', 'base_url']) | map('items2dict') | list,"
    " 'hosts': cutover_components | cutover_plan | cutover_plan_hosts(groups)} }}")
RESULT_HEADER = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z]+!?)(?: \| rc=-?\d+)? => ", re.MULTILINE)


def parse_inventory_output(output: str) -> list[tuple[str, str]]:
    """(label, base_url) per service component and host from `ansible -m debug` (minimal callback, JSON results),
    in the order of cutover_components; labelled component@host when a component runs on several hosts."""
    decoder = json.JSONDecoder()
    per_host: dict[str, dict[str, Any]] = {}
    for match in RESULT_HEADER.finditer(output):
        result, _ = decoder.raw_decode(output, match.end())
        if match.group("status") != "SUCCESS" or "msg" not in result:
            raise TargetError("the inventory could not be read on %s: %s" % (match.group("host"),
                                                                           result.get("msg", result)))
        per_host[match.group("host")] = result["msg"]
    if not per_host:
        raise TargetError("ansible printed no host result; output:\n%s" % output[-2000:])
    pairs = []
    any_view = next(iter(per_host.values()))
    for component in any_view["components"]:
        hosts = [host for host in any_view["hosts"].get(component["name"], []) if host in per_host]
        for host in hosts:
            url = next(item["base_url"] for item in per_host[host]["components"] if item["name"] == component["name"])
            pairs.append((component["name"] if len(hosts) == 1 else "%s@%s" % (component["name"], host), url))
    return pairs


def inventory_targets(inventory: str | None, extra_vars: list[str]) -> list[tuple[str, str]]:
    """The service components' base URLs, templated per host by ansible as the playbooks do."""
    argv = [ANSIBLE, "all", "-m", "ansible.builtin.debug", "-a", "msg=" + INVENTORY_EXPRESSION]
    if inventory:
        argv += ["-i", str(Path(inventory).resolve())]
    for extra in extra_vars:
        argv += ["-e", "@" + str(Path(extra[1:]).resolve()) if extra.startswith("@") else extra]
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ.get("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg")),
               ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_DEPRECATION_WARNINGS="0")
    done = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0 and not RESULT_HEADER.search(done.stdout):
        raise TargetError("ansible could not read the inventory (exit code %d): %s"
                          % (done.returncode, (done.stderr or done.stdout).strip()[-2000:]))
    return parse_inventory_output(done.stdout)


# ---- counting (pure) ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    label: str
    sent_at: float          # wall clock, seconds since the epoch
    latency_s: float
    failure: str | None     # None, "HTTP <status>" or the exception's class name


def iso(seconds: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(seconds, timezone.utc))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency_ms(records: list[Record]) -> dict[str, float] | None:
    if not records:
        return None
    values = [record.latency_s * 1000 for record in records]
    return {"p50": round(percentile(values, 0.5), 2), "p95": round(percentile(values, 0.95), 2),
            "max": round(max(values), 2)}


def counts(records: list[Record]) -> dict[str, Any]:
    failed = [record for record in records if record.failure]
    return {"requests": len(records), "failed": len(failed),
            "failures_by_reason": dict(Counter(record.failure for record in failed)), "latency_ms": latency_ms(records)}


def per_second(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    """Per label, per whole second the requests were sent in: requests, failures and latency."""
    buckets: dict[str, dict[int, list[Record]]] = {}
    for record in records:
        buckets.setdefault(record.label, {}).setdefault(int(record.sent_at), []).append(record)
    return {label: [dict(counts(second_records), second=iso(second))
                    for second, second_records in sorted(seconds.items())]
            for label, seconds in buckets.items()}


def failure_windows(records: list[Record], gap_s: float) -> list[dict[str, Any]]:
    """Failures no more than gap_s apart (one's answer or timeout to the next one's sending) form one window,
    from the first failed request's sending to the last one's end; with the requests sent in it."""
    failures = sorted((record for record in records if record.failure), key=lambda record: record.sent_at)
    spans: list[tuple[list[Record], float]] = []   # (failures, end of the latest of them)
    for record in failures:
        record_end = record.sent_at + record.latency_s
        if spans and record.sent_at <= spans[-1][1] + gap_s:
            spans[-1][0].append(record)
            spans[-1] = (spans[-1][0], max(spans[-1][1], record_end))
        else:
            spans.append(([record], record_end))
    windows = []
    for span, end in spans:
        start = span[0].sent_at
        windows.append({"start": iso(start), "end": iso(end), "seconds": round(end - start, 3),
                        "requests": sum(1 for record in records if start <= record.sent_at <= end),
                        "failed": len(span), "by_component": dict(Counter(record.label for record in span)),
                        "by_reason": dict(Counter(record.failure for record in span))})
    return windows


class LoadCounter:
    """Every request's outcome, recorded from the worker threads; summaries computed from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []

    def record(self, label: str, sent_at: float, latency_s: float, failure: str | None) -> None:
        with self._lock:
            self._records.append(Record(label, sent_at, latency_s, failure))

    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def summary(self, targets: list[Target], gap_s: float) -> dict[str, Any]:
        records = self.records()
        by_label = {target.label: [record for record in records if record.label == target.label]
                    for target in targets}
        return {"totals": counts(records),
                "components": {label: counts(label_records) for label, label_records in by_label.items()},
                "failed_windows": failure_windows(records, gap_s),
                "per_second": per_second(records)}


def load_line(summary: dict[str, Any]) -> str:
    windows = ", ".join("%s/%s" % (window["start"], window["end"]) for window in summary["failed_windows"])
    return "LOAD requests=%d failed=%d failed_windows=[%s]" % (summary["totals"]["requests"],
                                                               summary["totals"]["failed"], windows)


# ---- sending --------------------------------------------------------------------------------------------

def send_request(url: str, timeout_s: float) -> str | None:
    """GET url as a user would; None on a 2xx answer, else the failure ("HTTP 503", "ConnectionRefusedError")."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request("GET", urlunsplit(("", "", parts.path or "/", parts.query, "")),
                           headers={"User-Agent": USER_AGENT})
        response = connection.getresponse()
        response.read()
        return None if 200 <= response.status < 300 else "HTTP %d" % response.status
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()


class Schedule:
    """Request n is due at start + n / rate; none is handed out at or after the end."""

    def __init__(self, rate: float, start: float, end: float):
        self.rate, self.start, self.end = rate, start, end
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[int, float] | None:
        with self._lock:
            due = self.start + self._next / self.rate
            if due >= self.end:
                return None
            index, self._next = self._next, self._next + 1
            return index, due


@dataclass
class LoadRun:
    targets: list[Target]
    rate: float
    duration_s: float
    concurrency: int
    timeout_s: float
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    stop: threading.Event = field(default_factory=threading.Event)
    counter: LoadCounter = field(default_factory=LoadCounter)
    send: Callable[[str, float], str | None] = send_request
    clock: Callable[[], float] = time.time

    def worker(self, schedule: Schedule) -> None:
        while not self.stop.is_set():
            ticket = schedule.take()
            if ticket is None:
                return
            index, due = ticket
            if self.stop.wait(max(0.0, due - time.monotonic())):
                return
            target = self.targets[index % len(self.targets)]
            url = target.base_url + user_path(target.component, index // len(self.targets), self.nonce)
            sent_at, started = self.clock(), time.monotonic()
            failure = self.send(url, self.timeout_s)
            self.counter.record(target.label, sent_at, time.monotonic() - started, failure)

    def run(self) -> float:
        """Send until the duration ends or stop is set; join every worker; returns the seconds it ran."""
        started = time.monotonic()
        schedule = Schedule(self.rate, started, started + self.duration_s)
        workers = [threading.Thread(target=self.worker, args=(schedule,), name="load-worker-%d" % number)
                   for number in range(self.concurrency)]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                # Short joins: the main thread stays free to run the signal handlers that set stop.
                while worker.is_alive():
                    worker.join(0.2)
        finally:
            self.stop.set()
            for worker in workers:
                worker.join()
        return time.monotonic() - started


# ---- command line ---------------------------------------------------------------------------------------

def bounded(name: str, kind: type) -> Callable[[str], Any]:
    low, high = LIMITS[name]

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be a %s from %s to %s, got %r"
                                             % ("whole number" if kind is int else "number", low, high, text)) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be from %s to %s, got %s" % (low, high, text))
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--rate", type=bounded("rate", float), default=40.0,
                        help="requests per second in total, over all components (default 40)")
    parser.add_argument("--duration", type=bounded("duration", float), default=120.0,
                        help="seconds of load (default 120)")
    parser.add_argument("--concurrency", type=bounded("concurrency", int), default=20,
                        help="requests in flight at most (default 20)")
    parser.add_argument("--timeout", type=bounded("timeout", float), default=5.0,
                        help="seconds a request may take before it counts as no answer (default 5)")
    parser.add_argument("--window-gap", type=bounded("window_gap", float), default=1.0,
                        help="failures at most this many seconds apart form one failure window (default 1)")
    parser.add_argument("--base-url", action="append", default=[], metavar="NAME=URL",
                        help="a component and its base URL (repeat; replaces the inventory), e.g. "
                             "tts=http://127.0.0.1:18103")
    parser.add_argument("-i", "--inventory", help="inventory to read the base URLs from (default: ansible.cfg's)")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                        help="extra variables for the inventory, as ansible-playbook -e (repeat)")
    parser.add_argument("--out", type=Path,
                        help="JSON summary (default reports/load-<UTC time>.json in the checkout)")
    args = parser.parse_args(argv)
    if args.base_url and (args.inventory or args.extra_vars):
        parser.error("--base-url replaces the inventory: give either --base-url or -i/-e, not both")
    return args


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pairs = (parse_base_url_option(args.base_url) if args.base_url
                 else inventory_targets(args.inventory, args.extra_vars))
        targets = build_targets(pairs)
    except (TargetError, subprocess.TimeoutExpired, OSError) as error:
        print("load: cannot run: %s" % error, file=sys.stderr, flush=True)
        return 2
    out = args.out or ROOT / "reports" / ("load-%s.json" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    load = LoadRun(targets, args.rate, args.duration, args.concurrency, args.timeout)
    stopped_by: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopped_by.append(signal.Signals(signum).name)
        load.stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    started_at = time.time()
    print("%s at %s: %s; %.4g requests/s for %.4g s, at most %d at once" % (
        STARTED_MARK, iso(started_at), ", ".join("%s %s" % (target.label, shown_url(target.base_url))
                                                 for target in targets),
        args.rate, args.duration, args.concurrency), flush=True)
    try:
        ran_s = load.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    summary = dict({"started_at": iso(started_at), "ended_at": iso(time.time()), "ran_s": round(ran_s, 3),
                    "stopped_by": stopped_by[0] if stopped_by else "duration",
                    "options": {"rate": args.rate, "duration_s": args.duration, "concurrency": args.concurrency,
                                "timeout_s": args.timeout, "window_gap_s": args.window_gap},
                    "targets": {target.label: shown_url(target.base_url) for target in targets}},
                   **load.counter.summary(targets, args.window_gap))
    summary["totals"]["achieved_rate"] = round(summary["totals"]["requests"] / ran_s, 2) if ran_s else 0.0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    except OSError as error:
        print("load: cannot write the summary to %s: %s" % (out, error), file=sys.stderr, flush=True)
        return 1
    print("summary: %s (stopped by %s after %.1f s)" % (out, summary["stopped_by"], ran_s))
    for label, component_counts in summary["components"].items():
        print("  %-12s requests=%d failed=%d %s latency_ms=%s" % (
            label, component_counts["requests"], component_counts["failed"],
            component_counts["failures_by_reason"] or "", component_counts["latency_ms"]))
    print(load_line(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
