"""make healthy-runs (bench/healthy_runs.py; the series itself is `make healthy-runs`): what it reads from each
migrate's report, the lines it prints, the HEALTHY line and when the series counts as healthy."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cutover_testlib import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import healthy_runs  # noqa: E402
from bench_rollback import PlaybookRun  # noqa: E402

RUN = PlaybookRun("migrate-1", 0, 41.234, Path("/nonexistent/migrate-1.log"))
TRIGGER = {"component": "safety", "host": "localhost", "probe": "unsafe_blocked_ratio", "phase": "verify",
           "value": 0.0, "baseline": 1.0, "threshold": ">= 1.0", "detail": "value 0.0 < 1.0 (min)"}


def report(outcome: str = "migrated", lost: Any = 0, rollback: Any = None, probes: list | None = None,
           run_id: str = "20261204T210000Z") -> dict[str, Any]:
    return {"run_id": run_id, "playbook": "migrate", "outcome": outcome, "rollback": rollback,
            "data": None if lost is None else {"keys_before": 900, "keys_after": 950, "lost": lost},
            "probes": probes if probes is not None else [
                {"component": "tts", "probe": "seeded_hit_ratio", "phase": "canary", "verdict": "pass", "value": 1.0,
                 "baseline": 1.0, "threshold": ">= 0.95"},
                {"component": "ai", "probe": "latency_p95_ms", "phase": "watch", "verdict": "recorded",
                 "value": 12.0, "baseline": 11.0, "threshold": None}]}


def test_a_healthy_migrate_prints_its_figures_on_one_line():
    result = healthy_runs.migrate_result(3, RUN, report())
    assert result.healthy
    assert healthy_runs.migrate_lines(result, 10) == [
        "migrate 3/10 run 20261204T210000Z rc=0 outcome=migrated rollback_triggered=no wall_s=41.23 lost_keys=0"]


def test_an_automatic_rollback_prints_the_trigger_and_every_failing_probe():
    probes = report()["probes"] + [
        {"component": "safety", "probe": "unsafe_blocked_ratio", "phase": "verify", "verdict": "fail", "value": 0.0,
         "baseline": 1.0, "threshold": ">= 1.0"},
        {"component": "tts", "probe": "load_error_rate", "phase": "canary", "verdict": "error", "value": None,
         "baseline": 0.0, "threshold": "<= 0.02"}]
    run = PlaybookRun("migrate-2", 2, 50.0, Path("/nonexistent/migrate-2.log"))
    result = healthy_runs.migrate_result(2, run, report("rolled_back", rollback={"trigger": TRIGGER, "steps": []},
                                                        probes=probes))
    assert not result.healthy
    assert healthy_runs.migrate_lines(result, 10) == [
        "migrate 2/10 run 20261204T210000Z rc=2 outcome=rolled_back rollback_triggered=yes wall_s=50.00 lost_keys=0",
        "  trigger: safety/unsafe_blocked_ratio on localhost phase verify value=0.0 baseline=1.0 threshold=>= 1.0: "
        "value 0.0 < 1.0 (min)",
        "  probe safety/unsafe_blocked_ratio phase verify verdict fail value=0.0 baseline=1.0 threshold=>= 1.0",
        "  probe tts/load_error_rate phase canary verdict error value=null baseline=0.0 threshold=<= 0.02"]


def test_lost_keys_or_a_report_without_data_make_a_migrate_unhealthy():
    assert not healthy_runs.migrate_result(1, RUN, report(lost=3)).healthy
    unknown = healthy_runs.migrate_result(1, RUN, report(lost=None))
    assert unknown.lost_keys is None and not unknown.healthy
    assert healthy_runs.migrate_lines(unknown, 1)[0].endswith("lost_keys=?")


def test_the_healthy_line_sums_the_series():
    results = [healthy_runs.migrate_result(number, RUN, report()) for number in range(1, 9)]
    results.append(healthy_runs.migrate_result(9, RUN, report("rolled_back", lost=2,
                                                              rollback={"trigger": TRIGGER})))
    results.append(healthy_runs.migrate_result(10, RUN, report()))
    assert healthy_runs.healthy_line(results, 4) == \
        "HEALTHY runs=10 migrated=9 auto_rollbacks=1 lost_keys=2 load_failed_requests=4"
    results.append(healthy_runs.migrate_result(11, RUN, report(lost=None)))
    assert healthy_runs.healthy_line(results, None) == \
        "HEALTHY runs=11 migrated=10 auto_rollbacks=1 lost_keys=2+? load_failed_requests=?"


def test_the_series_is_healthy_only_when_every_run_migrated_lost_nothing_and_the_load_saw_no_failure():
    healthy = [healthy_runs.migrate_result(number, RUN, report()) for number in range(1, 11)]
    assert healthy_runs.all_healthy(healthy, 10, 0)
    assert not healthy_runs.all_healthy(healthy, 10, 1)            # one failed request under load
    assert not healthy_runs.all_healthy(healthy, 10, None)         # the load did not run
    assert not healthy_runs.all_healthy(healthy[:9], 10, 0)        # a migrate missing
    failed_rc = healthy_runs.migrate_result(10, PlaybookRun("m", 2, 1.0, RUN.log), report())
    assert not healthy_runs.all_healthy(healthy[:9] + [failed_rc], 10, 0)
