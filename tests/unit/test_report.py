"""build_report / render_markdown over realistic journals of migrate and rollback runs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES as STEP_NAMES
from ansible.module_utils.cutover_report import build_report, render_markdown

RUN_ID = "20261125T222114Z"
T0 = datetime(2026, 11, 25, 22, 21, 14, 123000, tzinfo=timezone.utc)
SHA = "9f2c" * 16
TRIGGER = {"component": "tts", "probe": "tts_cached_latency_ms", "value": 412.0, "baseline": 38.5, "threshold": 3.0}


def ts(second: int) -> str:
    return (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def journal(*events: tuple) -> list[dict[str, Any]]:
    """Entries as cutover_journal writes them: (event, component, host, data), one second apart."""
    return [{"seq": seq, "ts": ts(seq), "run_id": RUN_ID, "event": event, "host": host, "component": component,
             "data": data}
            for seq, (event, component, host, data) in enumerate(events, start=1)]


def started(playbook: str = "migrate", components: list[str] | None = None, **extra: Any) -> tuple:
    components = components or ["safety", "tts"]
    return ("run.started", None, None, {"playbook": playbook, "target_release": "migrated",
                                         "components": components, "controller": "ops1", "user": "alice",
                                         "hosts": {name: ["toy1"] for name in components}, "redis_host": "toy1",
                                         **extra})


def snapshot() -> tuple:
    return ("snapshot.created", None, "redis1", {"id": RUN_ID + "-redis", "path": "/var/lib/cutover/snapshots/x",
                                                 "keys": 120, "namespaces": {"tts:*": 80, "safety:*": 40},
                                                 "sha256": SHA, "verified": True, "mode": "logical"})


def probe(component: str, name: str, phase: str, verdict: str, value: float, baseline: float | None = None,
          threshold: float | None = None) -> tuple:
    return ("probe.result", component, "toy1", {"probe": name, "phase": phase, "verdict": verdict, "value": value,
                                                "baseline": baseline, "threshold": threshold, "critical": True})


def deploy(component: str, old: str = "legacy", new: str = "migrated") -> list[tuple]:
    return [("component.deploying", component, "toy1", {"from_release": old, "to_release": new}),
            ("component.switched", component, "toy1", {"from_release": old, "to_release": new})]


def state(component: str, value: str, release: str) -> tuple:
    return ("component.state", component, "toy1", {"state": value, "release": release})


def step(number: int, status: str = "ok", detail: str = "") -> tuple:
    return ("rollback.step", None, "toy1", {"step": number, "name": STEP_NAMES[number], "status": status,
                                          "started_at": "s%d-%s" % (number, status), "ended_at": "e%d" % number,
                                          "detail": detail})


def audited(lost: int) -> tuple:
    return ("data.audited", None, "redis1", {"keys_before": 120, "keys_after": 120 - lost, "lost": lost,
                                             "namespaces": {"tts:*": 80 - lost, "safety:*": 40}})


def finished(outcome: str) -> tuple:
    return ("run.finished", None, None, {"outcome": outcome, "message": "done"})


def healthy_migrate() -> list[dict[str, Any]]:
    return journal(
        started(),
        ("preflight.checked", None, "toy1", {"checks": [{"name": "redis", "ok": True, "detail": "7.0.15"}]}),
        snapshot(),
        probe("tts", "tts_cached_latency_ms", "baseline", "recorded", 38.5),
        *deploy("safety"), probe("safety", "safety_filter", "canary", "pass", 1.0, 1.0, 0.0),
        state("safety", "migrated", "migrated"),
        *deploy("tts"), probe("tts", "tts_cached_latency_ms", "canary", "pass", 40.1, 38.5, 3.0),
        state("tts", "migrated", "migrated"),
        ("watch.started", None, None, {"duration_s": 4, "interval_s": 2, "rounds": 2}),
        probe("tts", "tts_cached_latency_ms", "watch", "pass", 39.0, 38.5, 3.0),
        ("watch.finished", None, None, {"rounds": 2, "reason": "window ended"}),
        audited(0),
        finished("migrated"),
    )


def faulty_migrate_rolled_back() -> list[dict[str, Any]]:
    return journal(
        started(),
        snapshot(),
        probe("tts", "tts_cached_latency_ms", "baseline", "recorded", 38.5),
        *deploy("safety"), state("safety", "migrated", "migrated"),
        *deploy("tts"), probe("tts", "tts_cached_latency_ms", "canary", "fail", 412.0, 38.5, 3.0),
        ("rollback.triggered", "tts", "toy1", {"trigger": dict(TRIGGER)}),
        step(1), step(2),
        # step 3 switches the code back; the row keeps the direction of the run (legacy -> migrated)
        ("component.switched", "tts", "toy1", {"from_release": "migrated", "to_release": "legacy"}),
        ("component.switched", "safety", "toy1", {"from_release": "migrated", "to_release": "legacy"}),
        step(3), step(4),
        probe("tts", "tts_cached_latency_ms", "rollback", "pass", 39.9, 38.5, 3.0),
        step(5),
        state("tts", "rolled_back", "legacy"), state("safety", "rolled_back", "legacy"),
        step(6),
        audited(0),
        finished("rolled_back"),
    )


def crashed_then_rerun_rollback(rerun_done: bool = True) -> list[dict[str, Any]]:
    events = [
        started(playbook="rollback", components=["tts"], target_release="legacy", target_run_id="20261125T200000Z"),
        ("rollback.triggered", None, None, {"trigger": {"reason": "operator: TTS answers slowly"}}),
        step(1), step(2), step(3),
        step(4, "failed", "redis did not come back in 30 s"),
        # controller crashed here; the rollback is run again from another controller
    ]
    if rerun_done:
        events += [step(1), step(2), step(3), step(4), step(5), step(6), state("tts", "rolled_back", "legacy")]
    return journal(*events)


def test_healthy_migrate_report_has_exact_fields():
    report = build_report(healthy_migrate())
    assert report == {
        "run_id": RUN_ID,
        "playbook": "migrate",
        "outcome": "migrated",
        "started_at": ts(1),
        "finished_at": ts(17),
        "target_release": "migrated",
        "target_run_id": None,
        "message": "done",
        "abort": None,
        "components": [
            {"name": "safety", "host": "toy1", "from_release": "legacy", "to_release": "migrated", "state": "migrated"},
            {"name": "tts", "host": "toy1", "from_release": "legacy", "to_release": "migrated", "state": "migrated"},
        ],
        "probes": [
            {"component": "tts", "host": "toy1", "probe": "tts_cached_latency_ms", "phase": "baseline",
             "verdict": "recorded", "value": 38.5, "baseline": None, "threshold": None},
            {"component": "safety", "host": "toy1", "probe": "safety_filter", "phase": "canary", "verdict": "pass",
             "value": 1.0, "baseline": 1.0, "threshold": 0.0},
            {"component": "tts", "host": "toy1", "probe": "tts_cached_latency_ms", "phase": "canary",
             "verdict": "pass", "value": 40.1, "baseline": 38.5, "threshold": 3.0},
            {"component": "tts", "host": "toy1", "probe": "tts_cached_latency_ms", "phase": "watch",
             "verdict": "pass", "value": 39.0, "baseline": 38.5, "threshold": 3.0},
        ],
        "rollback": None,
        "watch": {"duration_s": 4, "interval_s": 2, "rounds": 2, "started_at": ts(13), "finished_at": ts(15),
                  "reason": "window ended", "ended_by": None, "watcher": None, "round_results": []},
        "snapshot": {"id": RUN_ID + "-redis", "keys": 120, "sha256": SHA, "verified": True},
        "data": {"keys_before": 120, "keys_after": 120, "lost": 0},
        "timeline": [
            timeline_item("run", None, "started (migrate)", 1, 1),
            timeline_item("preflight", "toy1", "1 checks passed", 1, 2, "ok"),
            timeline_item("snapshot", "redis1", RUN_ID + "-redis: 120 keys, logical, verified", 2, 3, "ok"),
            timeline_item("baseline", "toy1", "1 probe results recorded", 4, 4, "ok"),
            timeline_item("deploy safety", "toy1", "legacy -> migrated, state migrated", 5, 8, "ok"),
            timeline_item("deploy tts", "toy1", "legacy -> migrated, state migrated", 9, 12, "ok"),
            timeline_item("watch", None, "2 rounds planned, every 2 s; ended: window ended", 13, 15, "ok"),
            timeline_item("data audit", "redis1", "120 keys before, 120 after, 0 lost", 16, 16, "ok"),
            timeline_item("run", None, "finished: migrated - done", 17, 17, "migrated"),
        ],
    }


def timeline_item(lane: str, host: str | None, label: str, start: int, end: int | None,
                  status: str | None = None) -> dict[str, Any]:
    return {"lane": lane, "host": host, "label": label, "started_at": ts(start),
            "ended_at": ts(end) if end is not None else None, "status": status}


def test_faulty_migrate_with_rollback():
    report = build_report(faulty_migrate_rolled_back())
    assert report["outcome"] == "rolled_back"
    assert report["components"] == [
        {"name": "safety", "host": "toy1", "from_release": "legacy", "to_release": "migrated", "state": "rolled_back"},
        {"name": "tts", "host": "toy1", "from_release": "legacy", "to_release": "migrated", "state": "rolled_back"},
    ]
    assert report["rollback"]["trigger"] == TRIGGER
    assert report["rollback"]["steps"] == [
        {"step": n, "name": STEP_NAMES[n], "status": "ok", "started_at": "s%d-ok" % n, "ended_at": "e%d" % n,
         "detail": ""} for n in range(1, 7)]
    assert [p["verdict"] for p in report["probes"]] == ["recorded", "fail", "pass"]
    assert [p["phase"] for p in report["probes"]] == ["baseline", "canary", "rollback"]


def test_recorded_outcome_wins_over_derivation():
    entries = faulty_migrate_rolled_back()
    entries[-1]["data"]["outcome"] = "failed"  # e.g. the quick test passed but the operator marked it failed
    assert build_report(entries)["outcome"] == "failed"


def test_rollback_rerun_after_crash_takes_last_attempt_of_each_step():
    report = build_report(crashed_then_rerun_rollback())
    assert report["playbook"] == "rollback"
    assert report["finished_at"] is None
    assert report["rollback"]["trigger"] == {"reason": "operator: TTS answers slowly"}
    assert [(s["step"], s["status"], s["started_at"]) for s in report["rollback"]["steps"]] == [
        (1, "ok", "s1-ok"), (2, "ok", "s2-ok"), (3, "ok", "s3-ok"), (4, "ok", "s4-ok"), (5, "ok", "s5-ok"),
        (6, "ok", "s6-ok")]
    # unfinished, but every step of the rerun succeeded
    assert report["outcome"] == "rolled_back"


def test_rollback_crashed_at_step_4_is_failed():
    report = build_report(crashed_then_rerun_rollback(rerun_done=False))
    assert report["outcome"] == "failed"
    assert [(s["step"], s["status"]) for s in report["rollback"]["steps"]] == [
        (1, "ok"), (2, "ok"), (3, "ok"), (4, "failed")]


def test_unfinished_run_is_failed_with_null_finished_at():
    entries = journal(started(), snapshot(), *deploy("safety"))
    report = build_report(entries)
    assert report["outcome"] == "failed"
    assert report["finished_at"] is None
    assert report["started_at"] == ts(1)
    assert report["components"] == [
        {"name": "safety", "host": "toy1", "from_release": "legacy", "to_release": "migrated", "state": None}]
    assert report["rollback"] is None and report["data"] is None
    assert report["snapshot"]["verified"] is True


def test_unfinished_run_with_every_planned_component_migrated_is_migrated():
    entries = healthy_migrate()[:-1]  # crashed after the data audit, before run.finished
    assert build_report(entries)["outcome"] == "migrated"
    only_first = journal(started(), *deploy("safety"), state("safety", "migrated", "migrated"))
    assert build_report(only_first)["outcome"] == "failed", "tts was planned and never migrated"


def test_deploy_without_switch_gives_releases_and_entries_order_does_not_matter():
    entries = journal(started(), ("component.deploying", "tts", "toy2", {"from_release": "r1", "to_release": "r2"}),
                      ("component.state", "tts", "toy2", {"state": "failed", "release": "r1"}))
    report = build_report(list(reversed(entries)))
    assert report["components"] == [
        {"name": "tts", "host": "toy2", "from_release": "r1", "to_release": "r2", "state": "failed"}]


def test_snapshot_and_data_take_the_last_entry():
    entries = journal(started(), snapshot(), audited(5), snapshot(), audited(3))
    entries[3]["data"]["verified"] = False
    report = build_report(entries)
    assert report["data"] == {"keys_before": 120, "keys_after": 117, "lost": 3}
    assert report["snapshot"]["verified"] is False


def test_empty_journal_uses_given_run_id():
    report = build_report([], run_id=RUN_ID)
    assert report["run_id"] == RUN_ID and report["outcome"] == "failed"
    assert report["components"] == [] and report["probes"] == []


def test_markdown_rolled_back_summary():
    text = render_markdown(build_report(faulty_migrate_rolled_back()))
    lines = text.splitlines()
    assert lines[0] == "# Cutover run %s: ROLLED BACK - the old release is serving again" % RUN_ID
    assert lines[2].startswith("**Outcome: rolled_back** (migrate to release `migrated`)")
    assert lines[4] == "done"
    assert lines[6] == "[timeline and probe plots](report.html)", "the page is linked right under the summary"
    assert "Probe `tts_cached_latency_ms` of component `tts`: value **412.0** vs baseline 38.5 (threshold 3.0)." in lines
    assert "| tts | toy1 | legacy | migrated | rolled_back |" in lines
    assert "| 4 | restart_redis_restore_data | ok | s4-ok | e4 |  |" in lines
    assert "1 of 3 probe results failed or errored:" in lines
    assert "No keys lost (120 keys before, 120 after)." in lines
    assert "`%s-redis`: 120 keys, sha256 `%s`, verified." % (RUN_ID, SHA) in lines
    # order an operator reads in: outcome, why, components, steps, data, snapshot
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Rollback trigger", "## Components", "## Rollback steps", "## Probes", "## Data",
                        "## Snapshot"]


def test_markdown_unfinished_rollback_flags_missing_steps_and_data_loss():
    entries = crashed_then_rerun_rollback(rerun_done=False) + journal(audited(7))
    entries[-1]["seq"] = 100
    text = render_markdown(build_report(entries))
    assert text.startswith("# Cutover run %s: FAILED - needs a human\n" % RUN_ID)
    assert "**the run never finished**" in text
    assert "Reason given: operator: TTS answers slowly" in text
    assert "| 4 | restart_redis_restore_data | failed | s4-failed | e4 |" in text
    assert "| 5 | - | **not recorded** | - | - |" in text
    assert "No probe results recorded." in text
    assert "**DATA LOSS: 7 keys lost** (120 keys before, 113 after)." in text
    assert "**No snapshot recorded.**" in text


def test_markdown_healthy_run_and_table_escaping():
    entries = healthy_migrate()
    entries[5]["data"]["to_release"] = "mig|rated"  # the switch of safety
    text = render_markdown(build_report(entries))
    assert text.splitlines()[0].endswith("MIGRATED - every component runs the new release")
    assert "## Rollback trigger" not in text and "## Rollback steps" not in text
    assert "4 probe results, none failed." in text
    assert "| safety | toy1 | legacy | mig\\|rated | migrated |" in text


@pytest.mark.parametrize("outcome", ["migrated", "rolled_back", "failed"])
def test_markdown_is_deterministic(outcome):
    entries = healthy_migrate()
    entries[-1]["data"]["outcome"] = outcome
    assert render_markdown(build_report(entries)) == render_markdown(build_report(list(reversed(entries))))


def test_markdown_trigger_names_the_host_when_recorded():
    entries = faulty_migrate_rolled_back()
    trigger = next(entry for entry in entries if entry["event"] == "rollback.triggered")["data"]["trigger"]
    trigger["host"] = "toy1"
    assert ("Probe `tts_cached_latency_ms` of component `tts` on toy1: value **412.0** vs baseline 38.5 "
            "(threshold 3.0).") in render_markdown(build_report(entries))
    trigger.clear()
    trigger.update(component="ai", host="toy2", reason="rollout failed: ai did not start")
    assert "Reason given (component `ai` on toy2): rollout failed: ai did not start" in render_markdown(
        build_report(entries))


def test_aborted_run_says_where_it_stopped_and_a_rollback_run_names_its_snapshot():
    aborted = journal(
        started(),
        ("run.aborted", None, "toy1", {"stage": "preflight", "message": "Redis 6.0 is older than 6.2"}),
        ("run.finished", None, None, {"outcome": "failed", "message": "preflight failed"}),
    )
    report = build_report(aborted)
    assert report["abort"] == {"stage": "preflight", "message": "Redis 6.0 is older than 6.2", "host": "toy1"}
    assert "Stopped at **preflight** on toy1 before anything was changed: Redis 6.0 is older than 6.2" in \
        render_markdown(report)
    rollback_run = journal(
        started("rollback", target_run_id="20261125T000000Z"),
        ("data.audited", None, "toy1", {"keys_before": 5, "keys_after": 6, "lost": 0,
                                        "snapshot": {"id": "20261125T000000Z", "keys": 5, "sha256": SHA,
                                                     "verified": True}}),
    )
    report = build_report(rollback_run)
    assert report["snapshot"] == {"id": "20261125T000000Z", "keys": 5, "sha256": SHA, "verified": True}
    assert "(rollback of run `20261125T000000Z`)" in render_markdown(report)


def test_a_step_failed_on_one_host_is_failed_whatever_the_other_hosts_journaled():
    entries = journal(
        started(),
        ("rollback.triggered", "tts", "toy1", {"trigger": TRIGGER}),
        ("rollback.step", None, "toy1", {"step": 5, "name": "quick_test", "status": "failed",
                                         "started_at": "a", "ended_at": "c", "detail": "tts probe failed"}),
        ("rollback.step", None, "toy2", {"step": 5, "name": "quick_test", "status": "ok",
                                         "started_at": "b", "ended_at": "d", "detail": "passed"}),
    )
    step = build_report(entries)["rollback"]["steps"][0]
    assert step == {"step": 5, "name": "quick_test", "status": "failed", "started_at": "a", "ended_at": "d",
                    "detail": "tts probe failed"}


def test_watch_rounds_carry_each_hosts_probe_values_and_verdicts():
    def watched(host: str, value: float, verdict: str) -> tuple:
        return ("probe.result", "tts", host, {"probe": "hit_ratio", "phase": "watch", "verdict": verdict,
                                              "value": value, "baseline": 1.0, "threshold": 0.95, "critical": True})

    entries = journal(started(), ("watch.started", None, None, {"duration_s": 60, "interval_s": 5, "rounds": 12}),
                      watched("toy1", 1.0, "pass"), ("watch.round", None, "toy1", {"round": 1, "passed": True}),
                      watched("toy2", 1.0, "pass"), ("watch.round", None, "toy2", {"round": 1, "passed": True}),
                      watched("toy1", 0.4, "fail"), ("watch.round", None, "toy1", {"round": 2, "passed": False}))

    report = build_report(entries)

    assert report["watch"]["round_results"] == [
        {"round": 1, "host": "toy1", "ts": ts(4), "passed": True, "probes": {"tts/hit_ratio": {"value": 1.0, "verdict": "pass"}}},
        {"round": 1, "host": "toy2", "ts": ts(6), "passed": True, "probes": {"tts/hit_ratio": {"value": 1.0, "verdict": "pass"}}},
        {"round": 2, "host": "toy1", "ts": ts(8), "passed": False, "probes": {"tts/hit_ratio": {"value": 0.4, "verdict": "fail"}}},
    ]
    assert report["watch"]["finished_at"] is None
    markdown = render_markdown(report)
    assert "## Watch" in markdown and "**not ended** (no watch.finished)" in markdown
    assert "| 2 | toy1 | %s | **failed** | tts/hit_ratio 0.4 (fail) |" % ts(8) in markdown
    assert "| 1 | toy2 | %s | passed | 1 probes passed |" % ts(6) in markdown
