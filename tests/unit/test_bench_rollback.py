"""make bench-rollback's figures from hand-built journals (bench/bench_rollback.py; the run itself is `make
bench-rollback`): which events each figure comes from, several hosts, a rerun step 6, and the error naming
the event when one is missing."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from cutover_testlib import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench_rollback as bench  # noqa: E402

RUN_ID = "20261204T190000Z"


class Journal:
    """Entries appended in seq order, the way cutover_journal writes them."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def add(self, event: str, ts: str, host: str = "app-1", component: str | None = None, **data: Any) -> None:
        self.entries.append({"seq": len(self.entries) + 1, "ts": "2026-12-04T19:00:%sZ" % ts, "run_id": RUN_ID,
                             "event": event, "host": host, "component": component, "data": data})

    def probe(self, ts: str, component: str, verdict: str, phase: str = "canary", host: str = "app-1",
              critical: bool = True, probe: str = "unsafe_blocked_ratio") -> None:
        self.add("probe.result", ts, host, component, probe=probe, phase=phase, verdict=verdict, critical=critical)

    def stopped(self, ts: str, component: str, host: str = "app-1") -> None:
        self.add("component.stopped", ts, host, component)

    def step(self, ts: str, step: int, status: str, started: str, ended: str, host: str = "app-1") -> None:
        self.add("rollback.step", ts, host, None, step=step, name="step %d" % step, status=status,
                 started_at="2026-12-04T19:00:%sZ" % started, ended_at="2026-12-04T19:00:%sZ" % ended)


def rolled_back_run() -> Journal:
    """One host: tts deployed (stopped for its switch) and passes, safety deployed and fails its canary, rollback."""
    journal = Journal()
    journal.add("run.started", "00.000", playbook="migrate")
    journal.stopped("01.000", "tts")
    journal.probe("02.000", "tts", "pass")
    journal.stopped("03.000", "safety")
    journal.probe("04.000", "safety", "pass", probe="redis_reachable")
    journal.probe("04.500", "safety", "fail")
    journal.add("rollback.triggered", "04.600", component="safety")
    journal.stopped("05.250", "safety")
    journal.stopped("05.400", "tts")
    for step in range(1, 7):
        journal.step("%02d.000" % (5 + step), step, "ok", "%02d.000" % (4 + step), "%02d.000" % (5 + step))
    return journal


def test_figures_come_from_the_verdict_the_stops_after_it_and_step_6():
    # the rollout's stops of tts (01.000) and safety (03.000) precede the verdict: no part of the rollback
    figures = bench.rollback_figures(rolled_back_run().entries)
    assert figures == pytest.approx({"mttr_s": 11.0 - 4.5, "exposure_s": 5.25 - 4.5, "outage_s": 11.0 - 5.25})


def test_stops_before_the_verdict_and_of_other_components_are_not_the_failing_process_going():
    journal = rolled_back_run()
    # safety's rollback stop now comes after tts's (05.400): exposure still follows safety's own stop, and
    # safety's deploy stop (03.000) is before the verdict
    journal.entries[7]["ts"] = "2026-12-04T19:00:05.900Z"
    figures = bench.rollback_figures(journal.entries)
    assert (figures["exposure_s"], figures["outage_s"]) == pytest.approx((5.9 - 4.5, 11.0 - 5.4))


def test_only_a_critical_failing_canary_or_verify_verdict_counts():
    journal = Journal()
    journal.probe("01.000", "tts", "fail", phase="baseline")
    journal.probe("02.000", "tts", "fail", phase="watch")
    journal.probe("03.000", "ai", "fail", critical=False, probe="latency_p95_ms")
    journal.probe("04.000", "safety", "pass")
    journal.probe("05.000", "safety", "error", phase="verify")
    journal.stopped("06.000", "safety")
    journal.step("08.000", 6, "ok", "07.000", "08.000")
    verdict = bench.failing_verdict(journal.entries)
    assert (verdict["component"], verdict["data"]["verdict"], verdict["seq"]) == ("safety", "error", 5)
    assert bench.rollback_figures(journal.entries) == pytest.approx({"mttr_s": 3.0, "exposure_s": 1.0,
                                                                     "outage_s": 2.0})


def test_the_watch_run_counts_from_the_first_failing_watch_verdict_only():
    journal = Journal()
    journal.probe("01.000", "safety", "fail", phase="verify", critical=False, probe="latency_p95_ms")
    journal.probe("02.000", "safety", "pass", phase="watch")
    journal.probe("30.000", "safety", "fail", phase="watch")
    journal.stopped("30.400", "safety")
    journal.step("36.000", 6, "ok", "35.000", "36.000")
    assert bench.failing_verdict(journal.entries, ("watch",))["seq"] == 3
    assert bench.rollback_figures(journal.entries, ("watch",)) == pytest.approx(
        {"mttr_s": 6.0, "exposure_s": 0.4, "outage_s": 5.6})
    with pytest.raises(bench.JournalFigureError, match=r"data.phase in \(canary, verify\)"):
        bench.failing_verdict(journal.entries)


def test_several_hosts_take_the_earliest_verdict_its_own_host_stop_and_the_last_step_6():
    journal = Journal()
    journal.stopped("00.500", "safety", host="app-2")  # the rollout's restart on app-2
    # app-2's failing verdict is journaled first but happened later than app-1's
    journal.probe("02.000", "safety", "fail", host="app-2")
    journal.probe("01.000", "safety", "fail", host="app-1")
    journal.stopped("03.000", "safety", host="app-2")
    journal.stopped("03.500", "safety", host="app-1")
    journal.step("09.000", 6, "ok", "07.000", "09.000", host="app-2")
    journal.step("08.000", 6, "ok", "07.000", "08.000", host="app-1")
    verdict = bench.failing_verdict(journal.entries)
    assert (verdict["host"], verdict["seq"]) == ("app-1", 3)
    assert bench.rollback_figures(journal.entries) == pytest.approx(
        {"mttr_s": 9.0 - 1.0, "exposure_s": 3.5 - 1.0, "outage_s": 9.0 - 3.0})


def test_a_rerun_step_6_counts_its_last_ok_end():
    journal = rolled_back_run()
    journal.step("12.000", 6, "failed", "11.000", "12.000")
    journal.step("14.000", 6, "ok", "13.000", "14.000")
    journal.step("15.000", 5, "ok", "14.000", "15.000")
    assert bench.rollback_figures(journal.entries)["mttr_s"] == pytest.approx(14.0 - 4.5)


def test_a_failed_step_6_after_the_last_ok_one_does_not_count():
    journal = rolled_back_run()
    journal.step("20.000", 6, "failed", "19.000", "20.000")
    assert bench.rollback_figures(journal.entries)["mttr_s"] == pytest.approx(11.0 - 4.5)


def without(journal: Journal, event: str, **match: Any) -> list[dict[str, Any]]:
    return [entry for entry in journal.entries if not (entry["event"] == event and all(
        entry.get(key, entry["data"].get(key)) == value for key, value in match.items()))]


@pytest.mark.parametrize(("entries", "message"), [
    (without(rolled_back_run(), "probe.result", verdict="fail"),
     "no failing verdict: no probe.result entry with data.verdict in (fail, error), data.critical true and "
     "data.phase in (canary, verify)"),
    (without(rolled_back_run(), "component.stopped"),
     "no component.stopped entry at or after the failing verdict (2026-12-04T19:00:04.500Z)"),
    (without(rolled_back_run(), "component.stopped", component="safety"),
     "no component.stopped entry of safety on app-1 at or after its failing verdict (2026-12-04T19:00:04.500Z)"),
    (without(rolled_back_run(), "rollback.step", step=6),
     "no rollback.step entry with data.step 6 and data.status ok"),
    ([], "no failing verdict"),
])
def test_a_missing_event_is_named(entries: list[dict[str, Any]], message: str):
    with pytest.raises(bench.JournalFigureError, match="^" + re.escape(message)):
        bench.rollback_figures(entries)


def test_only_a_stop_before_the_verdict_is_no_process_gone():
    journal = rolled_back_run()
    entries = [entry for entry in journal.entries if not (entry["event"] == "component.stopped"
                                                          and entry["component"] == "safety" and entry["seq"] > 5)]
    with pytest.raises(bench.JournalFigureError, match="no component.stopped entry of safety on app-1"):
        bench.rollback_figures(entries)
    rollout_stops_only = [entry for entry in journal.entries if not (entry["event"] == "component.stopped"
                                                                     and entry["seq"] > 5)]
    with pytest.raises(bench.JournalFigureError, match="no component.stopped entry at or after the failing verdict"):
        bench.rollback_figures(rollout_stops_only)


def test_bad_times_are_named():
    journal = rolled_back_run()
    journal.entries[5]["ts"] = "2026-12-04T19:00:04.500"
    with pytest.raises(bench.JournalFigureError, match="ts of probe.result seq 6 has no time zone"):
        bench.rollback_figures(journal.entries)
    journal = rolled_back_run()
    journal.entries[-1]["data"]["ended_at"] = None
    with pytest.raises(bench.JournalFigureError, match="data.ended_at of rollback.step 6 seq 15 is not an ISO 8601"):
        bench.rollback_figures(journal.entries)


def test_a_verdict_without_component_is_named():
    journal = rolled_back_run()
    journal.entries[5]["component"] = None
    with pytest.raises(bench.JournalFigureError, match="failing verdict .probe.result seq 6. names no component"):
        bench.rollback_figures(journal.entries)


def test_read_journal_names_a_garbled_line(tmp_path: Path):
    path = tmp_path / ("%s.jsonl" % RUN_ID)
    path.write_text('{"seq": 1, "event": "run.started"}\n\n{"seq": 2,\n')
    with pytest.raises(bench.JournalFigureError, match="line 3 is not JSON"):
        bench.read_journal(path)
    path.write_text('{"seq": 1, "event": "run.started"}\n')
    assert bench.read_journal(path) == [{"seq": 1, "event": "run.started"}]


def test_summary_takes_medians_and_divides_them():
    runs = [{"mttr_s": 6.0, "exposure_s": 1.0, "outage_s": 5.0, "floor_s": 3.0},
            {"mttr_s": 9.0, "exposure_s": 3.0, "outage_s": 7.0, "floor_s": 2.5},
            {"mttr_s": 7.0, "exposure_s": 0.5, "outage_s": 4.0, "floor_s": 2.0}]
    summary = bench.summarize(runs)
    assert summary == pytest.approx({"mttr_s": 7.0, "exposure_s": 1.0, "outage_s": 5.0, "floor_s": 2.5,
                                     "mttr_vs_floor": 2.8})
    # the last line keeps the format; watch_mttr_s has a line of its own
    assert bench.result_line(dict(summary, watch_mttr_s=9.5)) == (
        "RESULT mttr_s=7.00 exposure_s=1.00 outage_s=5.00 floor_s=2.50 mttr_vs_floor=2.80")
    assert bench.goal_lines(dict(summary, watch_mttr_s=9.5, healthy_migrate_s=61.0)) == [
        "goal mttr_s <= 8: met (7.00)", "goal exposure_s <= 2: met (1.00)", "goal outage_s <= 6: met (5.00)",
        "goal mttr_vs_floor <= 3: met (2.80)", "goal healthy_migrate_s <= 60: MISSED (61.00)"]
    assert bench.summarize(runs[:2])["mttr_s"] == pytest.approx(7.5)
    with pytest.raises(ValueError, match="no runs"):
        bench.summarize([])


def test_the_demo_of_the_bench_gets_free_ports_of_its_own_and_its_vars(tmp_path: Path):
    demo = bench.Demo(tmp_path)
    variables = json.loads(demo.vars_file.read_text())
    assert variables["toy_port_base"] == demo.port_base and variables["toy_redis_port"] == demo.redis_port
    assert len(set(demo.ports)) == len(bench.PLAN) + 1 and demo.redis_port not in range(demo.port_base + 1,
                                                                                         demo.port_base + 7)
    assert variables["cutover_plan"] == bench.PLAN and (tmp_path / "logs").is_dir()


def test_the_last_line_is_the_result_and_the_watch_figure_has_a_line_of_its_own(capsys):
    runs = [{"mttr_s": 6.0, "exposure_s": 1.0, "outage_s": 5.0, "floor_s": 3.0}]
    bench.print_result(runs, {"watch_mttr_s": 9.5, "healthy_migrate_s": 40.0})
    lines = capsys.readouterr().out.splitlines()
    assert "watch_mttr_s: 9.50 (a late fault caught by a watch round; one run, no goal)" in lines
    assert lines[-1] == "RESULT mttr_s=6.00 exposure_s=1.00 outage_s=5.00 floor_s=3.00 mttr_vs_floor=2.00"
