"""report.html and the report's timeline: built from real run journals (tests/fixtures) and from synthetic ones.

The page is well-formed XML as well as HTML, so every test parses it strictly with ElementTree.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ansible.module_utils.cutover_report import build_report
from ansible.module_utils.cutover_report_html import (
    PLOT_BOTTOM, PLOT_H, render_html, threshold_bounds,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROLLED_BACK = "journal-migrate-safety-fail-open-rolled-back.jsonl"  # faulty-safety-fail-open, rolled back
HEALTHY = "journal-migrate-healthy-watch.jsonl"  # legacy -> migrated with a 4 s watch
SVG = "{http://www.w3.org/2000/svg}"
RUN_ID = "20261125T222114Z"
T0 = datetime(2026, 11, 25, 22, 21, 14, tzinfo=timezone.utc)
INJECTION = '</title></circle></svg><script>alert("x")</script><img src=x onerror="alert(1)">&amp; \' ]]>'


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def render(entries: list[dict[str, Any]]) -> tuple[dict[str, Any], str, ET.Element]:
    report = build_report(entries)
    text = render_html(report, entries)
    return report, text, ET.fromstring(text)


def has_class(element: ET.Element, name: str) -> bool:
    return name in (element.get("class") or "").split()


def elements(root: ET.Element, tag: str, class_name: str | None = None) -> list[ET.Element]:
    return [element for element in root.iter(tag) if class_name is None or has_class(element, class_name)]


def section(root: ET.Element, section_id: str) -> ET.Element:
    return next(element for element in root.iter("section") if element.get("id") == section_id)


def plots(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(figure.get("data-component"), figure.get("data-probe")): figure
            for figure in elements(root, "figure", "probe-plot")}


def phase_labels(figure: ET.Element) -> list[str]:
    return [text.text for text in elements(figure, SVG + "text", "phase-label")]


def points(figure: ET.Element) -> list[ET.Element]:
    return elements(figure, SVG + "circle", "point")


def probe_pairs(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((entry["component"], entry["data"]["probe"]) for entry in entries
                              if entry["event"] == "probe.result"))


def ts(second: float) -> str:
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def journal(*events: tuple) -> list[dict[str, Any]]:
    """(event, component, host, data) entries, one second apart, as cutover_journal writes them."""
    return [{"seq": seq, "ts": ts(seq), "run_id": RUN_ID, "event": event, "host": host, "component": component,
             "data": data} for seq, (event, component, host, data) in enumerate(events, start=1)]


def probe(component: str, host: str, name: str, phase: str, verdict: str, value: Any, threshold: Any = None,
          detail: str | None = None) -> tuple:
    return ("probe.result", component, host, {"probe": name, "phase": phase, "verdict": verdict, "value": value,
                                              "baseline": None, "threshold": threshold, "critical": True,
                                              "detail": detail})


def fleet_run() -> list[dict[str, Any]]:
    """tts on three hosts, canary toy1 then toy2+toy3: toy2 fails, toy3 never finishes; the Redis host's step 4
    fails and is rerun."""
    def step(number: int, name: str, host: str, start: int, end: int, status: str = "ok") -> tuple:
        return ("rollback.step", None, host, {"step": number, "name": name, "status": status, "started_at": ts(start),
                                              "ended_at": ts(end), "detail": "step %d on %s" % (number, host)})
    return journal(
        ("run.started", None, None, {"playbook": "migrate", "target_release": "migrated", "components": ["tts"],
                                     "controller": "ops1", "user": "alice",
                                     "hosts": {"tts": ["toy1", "toy2", "toy3"]},
                                     "batches": {"tts": [["toy1"], ["toy2", "toy3"]]}, "redis_host": "redis1"}),
        probe("tts", "toy1", "latency_ms", "baseline", "recorded", 38.5),
        ("component.deploying", "tts", "toy1", {"from_release": "legacy", "to_release": "migrated"}),
        ("component.state", "tts", "toy1", {"state": "migrated", "release": "migrated"}),
        ("component.deploying", "tts", "toy2", {"from_release": "legacy", "to_release": "migrated"}),
        ("component.deploying", "tts", "toy3", {"from_release": "legacy", "to_release": "migrated"}),
        ("component.state", "tts", "toy2", {"state": "failed", "release": "migrated"}),
        ("rollback.triggered", "tts", "toy2", {"trigger": {"component": "tts", "host": "toy2", "probe": "latency_ms",
                                                           "value": 412.0, "baseline": 38.5, "threshold": 3.0}}),
        step(1, "detect", "toy1", 9, 9),
        step(1, "detect", "redis1", 9, 10),
        step(4, "restart_redis_restore_data", "redis1", 10, 12, "failed"),
        step(2, "stop_application", "toy1", 10, 11),
        step(4, "restart_redis_restore_data", "redis1", 20, 22),
    )


# ---- the timeline section of report.json ---------------------------------------------------------------------

def test_timeline_names_waves_keeps_every_step_attempt_and_leaves_unfinished_spans_open():
    timeline = build_report(fleet_run())["timeline"]
    deploys = [(item["host"], item["label"], item["ended_at"], item["status"]) for item in timeline
               if item["lane"] == "deploy tts"]
    assert deploys == [
        ("toy1", "wave 1 (canary): legacy -> migrated, state migrated", ts(4), "ok"),
        ("toy2", "wave 2 (verify): legacy -> migrated, state failed", ts(7), "failed"),
        ("toy3", "wave 2 (verify): legacy -> migrated, never finished", None, None),
    ]
    trigger = next(item for item in timeline if item["lane"] == "rollback triggered")
    assert (trigger["host"], trigger["started_at"], trigger["ended_at"]) == ("toy2", ts(8), ts(8))
    assert trigger["label"] == "probe tts/latency_ms on toy2: value 412.0, baseline 38.5, threshold 3.0"
    steps = [(item["lane"], item["host"], item["status"], item["started_at"]) for item in timeline
             if item["lane"].startswith("rollback step")]
    assert steps == [
        ("rollback step 1 detect", "toy1", "ok", ts(9)),
        ("rollback step 1 detect", "redis1", "ok", ts(9)),
        ("rollback step 2 stop_application", "toy1", "ok", ts(10)),
        ("rollback step 4 restart_redis_restore_data", "redis1", "failed", ts(10)),
        ("rollback step 4 restart_redis_restore_data", "redis1", "ok", ts(20)),
    ]
    assert [item["lane"] for item in timeline][:2] == ["run", "baseline"]
    assert not any(item["lane"] == "run" and item["label"].startswith("finished") for item in timeline)


def test_timeline_of_a_real_healthy_run_has_its_watch_rounds_back_to_back():
    entries = load(HEALTHY)
    timeline = build_report(entries)["timeline"]
    watch = next(item for item in timeline if item["lane"] == "watch")
    rounds = [item for item in timeline if item["lane"] == "watch rounds"]
    round_stamps = [entry["ts"] for entry in entries if entry["event"] == "watch.round"]
    assert watch["status"] == "ok" and watch["label"] == "2 rounds planned, every 2 s; ended: window ended"
    assert [(item["label"], item["started_at"], item["ended_at"]) for item in rounds] == [
        ("round 1 passed", watch["started_at"], round_stamps[0]), ("round 2 passed", round_stamps[0], round_stamps[1])]
    assert [item["lane"] for item in timeline] == [
        "run", "preflight", "snapshot", "baseline", "deploy validator", "deploy monitoring", "deploy ai", "deploy tts",
        "deploy security", "deploy safety", "watch", "watch rounds", "watch rounds", "data audit", "run"]
    assert timeline[-1]["status"] == "migrated"


# ---- the page ----------------------------------------------------------------------------------------------

def test_rolled_back_run_page_has_outcome_timeline_rows_and_trigger():
    entries = load(ROLLED_BACK)
    report, _, root = render(entries)
    assert root.tag == "html" and root.find("head/title").text == "Cutover run 20261204T210232Z: rolled_back"
    outcome = next(element for element in root.iter("p") if has_class(element, "outcome"))
    assert has_class(outcome, "outcome-rolled_back")
    assert outcome.text == "ROLLED BACK - the old release is serving again"
    timeline = section(root, "timeline")
    assert len(elements(timeline, SVG + "svg", "timeline")) == 1
    rows = elements(timeline, SVG + "g", "timeline-row")
    assert [(row.get("data-lane"), row.get("data-host")) for row in rows] == [
        ("run", "-"), ("preflight", "localhost"), ("snapshot", "localhost"), ("baseline", "localhost"),
        *[("deploy " + name, "localhost") for name in ("validator", "monitoring", "ai", "tts", "security", "safety")],
        ("rollback triggered", "localhost"),
        *[("rollback step %d %s" % (number, name), "localhost") for number, name in (
            (1, "detect"), (2, "stop_application"), (3, "restore_code"), (4, "restart_redis_restore_data"),
            (5, "quick_test"), (6, "resume_service"))],
        ("data audit", "localhost")]
    marks = {row.get("data-lane"): [mark for mark in row if mark.tag in (SVG + "rect", SVG + "path")] for row in rows}
    assert [mark.get("class") for mark in marks["run"]] == ["marker status-none", "marker status-rolled_back"]
    assert marks["deploy safety"][0].get("class") == "bar status-failed"
    assert all(marks["deploy " + name][0].get("class") == "bar status-ok" for name in ("validator", "tts"))
    assert len(elements(timeline, SVG + "line", "trigger-line")) == 1
    items_table = next(element for element in timeline.iter("table"))
    assert len(items_table.findall("tr")) == len(report["timeline"]) + 1


@pytest.mark.parametrize("fixture, phases", [
    (ROLLED_BACK, ["baseline", "verify", "rollback"]),
    (HEALTHY, ["baseline", "verify", "watch"]),
])
def test_one_plot_per_probe_with_its_values_in_phase_order(fixture, phases):
    entries = load(fixture)
    _, _, root = render(entries)
    figures = plots(root)
    assert list(figures) == probe_pairs(entries), "one plot per (component, probe), in the order they were probed"
    for (component, probe_name), figure in figures.items():
        results = [entry for entry in entries if entry["event"] == "probe.result"
                   and (entry["component"], entry["data"]["probe"]) == (component, probe_name)]
        assert phase_labels(figure) == phases
        circles = points(figure)
        assert [circle.get("data-phase") for circle in circles] == [entry["data"]["phase"] for entry in results]
        xs = [float(circle.get("cx")) for circle in circles]
        assert xs == sorted(xs), "values run left to right through the phases"
        assert len(elements(figure, SVG + "svg", "plot")) == 1


def test_the_failed_probe_is_marked_below_its_threshold():
    _, _, root = render(load(ROLLED_BACK))
    figure = plots(root)[("safety", "unsafe_blocked_ratio")]
    assert has_class(figure, "has-failure")
    baseline, verify, rollback = points(figure)
    assert (verify.get("data-phase"), verify.get("data-value"), verify.get("class")) == (
        "verify", "0.0", "point verdict-fail")
    assert baseline.get("class") == "point verdict-recorded" and rollback.get("class") == "point verdict-pass"
    [threshold] = elements(figure, SVG + "line", "threshold")
    assert threshold.get("data-bound") == "1.0"
    assert float(verify.get("cy")) > float(threshold.get("y1")) == float(baseline.get("cy")), "0.0 sits below 1.0"
    assert "value 0.0 &lt; 1.0 (min)" in ET.tostring(verify.find(SVG + "title"), encoding="unicode")
    assert [figure_id for figure_id, element in plots(root).items() if has_class(element, "has-failure")] == [
        ("safety", "unsafe_blocked_ratio")]


def test_phases_follow_the_run_order_whatever_the_journal_order_and_hosts_share_the_slots():
    entries = journal(
        probe("tts", "toy1", "latency_ms", "baseline", "recorded", 40.0),
        probe("tts", "toy2", "latency_ms", "baseline", "recorded", 42.0),
        probe("tts", "toy1", "latency_ms", "canary", "pass", 41.0, "<= 100"),
        probe("tts", "toy2", "latency_ms", "verify", "pass", 43.0, "<= 100"),
        probe("tts", "toy1", "latency_ms", "watch", "pass", 39.0, "<= 100"),
        probe("tts", "toy2", "latency_ms", "watch", "pass", 44.0, "<= 100"),
        probe("tts", "toy1", "latency_ms", "watch", "fail", 140.0, "<= 100"),
        probe("tts", "toy2", "latency_ms", "watch", "pass", 45.0, "<= 100"),
        probe("tts", "toy1", "latency_ms", "rollback", "pass", 40.5, "<= 100"),
        probe("tts", "toy1", "latency_ms", "soak", "pass", 40.0, "<= 100"),
    )
    _, _, root = render(list(reversed(entries)))
    figure = plots(root)[("tts", "latency_ms")]
    assert phase_labels(figure) == ["baseline", "canary", "verify", "watch", "rollback", "soak"], "run order"
    by_host: dict[str, list[tuple[str, float]]] = {}
    for circle in points(figure):
        by_host.setdefault(circle.get("data-host"), []).append((circle.get("data-phase"), float(circle.get("cx"))))
    assert [phase for phase, _ in by_host["toy1"]] == ["baseline", "canary", "watch", "watch", "rollback", "soak"]
    watch_xs = {host: [x for phase, x in values if phase == "watch"] for host, values in by_host.items()}
    assert watch_xs["toy1"] == watch_xs["toy2"], "round n of every host at the same x"
    assert {line.get("data-host") for line in elements(figure, SVG + "polyline", "series")} == {"toy1", "toy2"}
    assert [line.get("data-bound") for line in elements(figure, SVG + "line", "threshold")] == ["100.0"]


def test_values_that_are_not_numbers_get_a_category_axis_and_errors_sit_on_the_x_axis():
    entries = journal(
        probe("ai", "toy1", "release", "baseline", "recorded", "legacy", "== 'migrated'"),
        probe("ai", "toy1", "release", "verify", "pass", "migrated", "== 'migrated'"),
        probe("ai", "toy1", "hit_ratio", "baseline", "recorded", 0.98, ">= 0.95"),
        probe("ai", "toy1", "hit_ratio", "verify", "error", None, ">= 0.95", "connection refused"),
    )
    _, _, root = render(entries)
    release, hit_ratio = plots(root)[("ai", "release")], plots(root)[("ai", "hit_ratio")]
    assert [text.text for text in elements(release, SVG + "text", "y-tick")] == ["legacy", "migrated"]
    assert elements(release, SVG + "line", "threshold") == []
    errored = points(hit_ratio)[1]
    assert errored.get("class") == "point verdict-error" and float(errored.get("cy")) == PLOT_H - PLOT_BOTTOM
    assert "connection refused" in errored.find(SVG + "title").text


def test_an_inconclusive_probe_is_marked_with_its_measurement_counts():
    entries = journal(probe("tts", "toy1", "hit_ratio", "canary", "inconclusive", 0.9, ">= 0.95"))
    entries[0]["data"].update(measurements=[{"at": ts(0), "value": 0.9, "verdict": "fail", "detail": None}] * 3,
                              failures=1, errors=0)
    _, _, root = render(entries)
    figure = plots(root)[("tts", "hit_ratio")]
    [point] = points(figure)
    assert has_class(figure, "has-failure") and point.get("class") == "point verdict-inconclusive"
    assert point.find(SVG + "title").text.endswith("(3 measurements, 1 failed, 0 errors)")


@pytest.mark.parametrize("threshold, bounds", [
    (3.0, [3.0]), (0, [0.0]), (">= 1.0", [1.0]), ("== 0", [0.0]), ("<= 250", [250.0]),
    ("<= baseline 5.664 + 30 (35.664)", [35.664]), (">= 0.95 and >= baseline 1.0 - 0.05 (0.95)", [0.95, 0.95]),
    ("<= 3 x baseline 38.5 (115.5)", [115.5]), (">= 1.0; at most 1 of 3 measurement(s) may break it", [1.0]),
    ("<= 3 x baseline (none)", []), ("max_ratio (baseline 'ok')", []),
    ("== 'ok'", []), ("", []), (None, []), (True, []), ({"max": 3}, []), ("<= nan", []), ("about 5", []),
])
def test_threshold_bounds_are_the_numbers_it_compares_with(threshold, bounds):
    assert threshold_bounds(threshold) == bounds


def test_untrusted_text_is_escaped_everywhere_it_appears():
    entries = load(ROLLED_BACK)
    failed = next(entry for entry in entries if entry["event"] == "probe.result" and entry["data"]["verdict"] == "fail")
    failed["data"]["detail"] = INJECTION
    released = next(entry for entry in entries
                    if entry["event"] == "probe.result" and entry["data"]["probe"] == "release")
    released["data"]["value"] = INJECTION
    released["host"] = INJECTION
    trigger = next(entry for entry in entries if entry["event"] == "rollback.triggered")["data"]["trigger"]
    trigger["detail"] = INJECTION
    next(entry for entry in entries if entry["event"] == "rollback.step")["data"]["detail"] = INJECTION
    entries[-1]["data"]["message"] = INJECTION
    _, text, root = render(entries)  # parses: the markup is intact
    assert [element.tag for element in root.iter() if element.tag.split("}")[-1] in ("script", "img", "iframe")] == []
    assert "<script" not in text and "<img" not in text and "&lt;script&gt;alert(&quot;x&quot;)" in text
    tooltip = next(circle for circle in root.iter(SVG + "circle") if circle.get("class") == "point verdict-fail")
    assert tooltip.find(SVG + "title").text.endswith("; " + INJECTION), "shown as text, exactly"
    assert any(element.get("data-host") == INJECTION for element in root.iter(SVG + "circle"))
    assert [element.text for element in root.iter("dd")].count(INJECTION) == 2, "message and trigger detail"
    assert "ok: " + INJECTION in [cell.text for cell in root.iter("td")], "the rollback step's detail"


def test_page_is_self_contained_and_forbids_scripts():
    _, text, root = render(load(ROLLED_BACK))
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert needle not in text, needle
    assert [element.attrib for element in root.iter() if {"src", "action", "{http://www.w3.org/1999/xlink}href"}
            & set(element.attrib)] == []
    csp = next(meta for meta in root.iter("meta") if meta.get("http-equiv") == "Content-Security-Policy")
    assert csp.get("content").startswith("default-src 'none'; style-src 'unsafe-inline'")
    assert [anchor.get("href") for anchor in root.iter("a")] == ["report.md", "report.json"]


def test_page_of_an_empty_journal_says_there_is_nothing_to_show():
    report = build_report([], run_id=RUN_ID)
    root = ET.fromstring(render_html(report, []))
    texts = " ".join(element.text or "" for element in root.iter("p"))
    assert "No timed events in the journal." in texts and "No probe results recorded." in texts


def test_items_without_a_time_are_listed_but_not_drawn():
    entries = journal(("rollback.step", None, "toy1", {"step": 1, "name": "detect", "status": "ok",
                                                      "started_at": "s1", "ended_at": "e1", "detail": "x"}),
                      ("run.finished", None, None, {"outcome": "failed", "message": "m"}))
    report, _, root = render(entries)
    timeline = section(root, "timeline")
    assert [row.get("data-lane") for row in elements(timeline, SVG + "g", "timeline-row")] == ["run"]
    assert len(next(timeline.iter("table")).findall("tr")) == len(report["timeline"]) + 1 == 3


def test_open_span_reaches_the_end_of_the_axis():
    _, _, root = render(fleet_run())
    row = next(row for row in root.iter(SVG + "g") if row.get("data-lane") == "deploy tts"
               and row.get("data-host") == "toy3")
    [bar] = list(row.iter(SVG + "rect"))
    assert bar.get("class") == "bar status-none open"
    axis_end = max(float(mark.get("x")) + float(mark.get("width")) for mark in root.iter(SVG + "rect")
                   if has_class(mark, "bar"))
    assert float(bar.get("x")) + float(bar.get("width")) == axis_end


def test_page_is_deterministic():
    entries = load(HEALTHY)
    assert render(entries)[1] == render(list(reversed(entries)))[1]
