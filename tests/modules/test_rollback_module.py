"""cutover_rollback on a real app root (releases installed by cutover_release) with its components run by a real
supervisord: steps [1, 2, 3] then [5, 6], as roles/cutover_rollback/tasks/host.yml drives them on an app host."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import cutover_release
import cutover_rollback
from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES, TIMESTAMP_PATTERN
from cutover_testlib import ModuleFailed, free_port, run_module
from test_service import (
    Program, Supervisord, assert_entries_fit, assert_reaped, health, new_marker, running, running_supervisord,
    supervisor_dir, write_service,
)

COMPONENTS = ("tts", "safety")
MIGRATE_RUN = "20261204T100000Z"
ROLLBACK_RUN = "20261204T101500Z-rollback"
REASON = "probe tts/latency_p95_ms on app-1: value 1840, baseline 190, threshold <= baseline x 3"
HOST = "app-1"

# Critical probes of the quick test (step 5): the component is healthy and serves the release it went back to
# ({release} is the release the target returns to). The non-critical one must not run in step 5.
PROBES = [
    {"name": "healthy", "type": "http", "url": "/healthz", "metric": "json_field", "field": "status",
     "expect": {"equals": "ok"}},
    {"name": "serves_release", "type": "http", "url": "/healthz", "metric": "json_field", "field": "release",
     "expect": {"equals": "{release}"}},
    {"name": "status_ok", "type": "http", "url": "/healthz", "metric": "status_ok", "critical": False,
     "expect": {"min": 1}},
]


@dataclass
class App:
    """An app root whose components run `migrated` (and have `legacy` installed), run by a real supervisord."""

    root: Path
    supervisor: Supervisord
    specs: list[dict[str, Any]]

    def component_dir(self, name: str) -> Path:
        return self.root / name

    def flag(self, name: str) -> Path:
        return self.root / name / "MAINTENANCE"

    def link(self, name: str) -> str:
        return os.readlink(self.root / name / "current")

    def registry(self, name: str) -> dict[str, Any]:
        return json.loads((self.root / name / "releases.json").read_text())

    def url(self, name: str) -> str:
        return self.supervisor.base_url("cutover-%s" % name) + "/healthz"

    def pids(self) -> dict[str, int | None]:
        return {name: self.supervisor.pid("cutover-%s" % name) for name in COMPONENTS}

    def state(self) -> dict[str, Any]:
        """Everything a rollback step may change on this host."""
        return {"pids": self.pids(), "flags": {name: self.flag(name).exists() for name in COMPONENTS},
                "links": {name: self.link(name) for name in COMPONENTS},
                "registries": {name: (self.root / name / "releases.json").read_bytes() for name in COMPONENTS}}


def install(root: Path, component: str, release: str, sources: Path) -> None:
    """Install a release whose service.py is the test service reporting that release, and switch to it."""
    source = sources / component / release
    write_service(source / "service.py", release=release)
    run_module(cutover_release.main, {"root": str(root / component), "component": component, "release": release,
                                      "src": str(source), "state": "current"})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    root = tmp_path / "app"
    for component in COMPONENTS:
        for release in ("legacy", "migrated"):
            install(root, component, release, tmp_path / "src")
    marker = new_marker()
    programs = [Program("cutover-%s" % name, root / name / "current" / "service.py", free_port(),
                        extra=["--config", str(root / name / "config.json"),
                               "--maintenance", str(root / name / "MAINTENANCE")])
                for name in COMPONENTS]
    with running_supervisord(supervisor_dir(tmp_path, marker), programs, marker) as supervisor:
        specs = [{"name": program.name.replace("cutover-", ""), "kind": "service", "service": program.name,
                  "base_url": program.base_url, "health": "/healthz", "probes": PROBES} for program in programs]
        app = App(root, supervisor, specs)
        for name in COMPONENTS:
            assert health(app.url(name), probe=False)[1]["release"] == "migrated"
        yield app


def targets(from_release: str = "legacy") -> list[dict[str, str]]:
    return [{"name": name, "from_release": from_release, "to_release": "migrated"} for name in COMPONENTS]


def rollback(app: App, steps: list[int], check_mode: bool = False, **options: Any) -> dict[str, Any]:
    args = {"steps": steps, "targets": targets(), "components": app.specs, "app_root": str(app.root),
            "manager": "supervisor", "supervisor_config": str(app.supervisor.config), "start_timeout": 10,
            "stop_timeout": 10, "run_id": ROLLBACK_RUN, "target_run_id": MIGRATE_RUN, "reason": REASON,
            "host_label": HOST, **options}
    return run_module(cutover_rollback.main, {key: value for key, value in args.items() if value is not None},
                      check_mode=check_mode)


def assert_journal(entries: list[dict[str, Any]]) -> None:
    """Every entry fits the schema and is about this host."""
    assert_entries_fit(entries)
    assert {entry["host"] for entry in entries} == {HOST}


def step_entries(entries: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(entry["data"]["step"], entry["data"]["name"], entry["data"]["status"])
            for entry in entries if entry["event"] == "rollback.step"]


def events(entries: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(entry["event"], entry["component"]) for entry in entries]


def data_by_component(entries: list[dict[str, Any]], event: str) -> dict[str, dict[str, Any]]:
    return {entry["component"]: entry["data"] for entry in entries if entry["event"] == event}


def ok_steps(*numbers: int) -> list[tuple[int, str, str]]:
    return [(number, ROLLBACK_STEP_NAMES[number], "ok") for number in numbers]


def roll_code_back(app: App) -> dict[str, Any]:
    """Steps 1-3 as the role runs them, asserted only as far as the later steps need."""
    result = rollback(app, [1, 2, 3])
    assert step_entries(result["journal"]) == ok_steps(1, 2, 3)
    return result


# -------------------------------------------------------------------------------------------------------- tests

def test_step_1_fails_when_the_release_to_return_to_is_not_installed(app):
    before = app.state()
    bad = [{"name": "tts", "from_release": "ancient", "to_release": "migrated"}, targets()[1]]
    with pytest.raises(ModuleFailed) as failure:
        rollback(app, [1, 2, 3], targets=bad)
    result = failure.value.result
    why = ("release ancient of tts, which the journal records as its previous one, is not installed under %s: "
           "there is nothing to return to" % app.component_dir("tts"))
    assert result["msg"] == "rollback step 1 failed on %s: %s" % (HOST, why)
    assert result["changed"] is False and result["detail"] == [why]
    assert events(result["journal"]) == [("rollback.step", None)]
    step = result["journal"][0]["data"]
    assert (step["step"], step["name"], step["status"], step["detail"]) == (1, "detect", "failed", why)
    assert TIMESTAMP_PATTERN.match(step["started_at"]) and step["started_at"] <= step["ended_at"]
    assert_journal(result["journal"])
    assert app.state() == before, "step 1 changes nothing, and no later step ran"


def test_steps_1_to_3_stop_the_processes_and_switch_the_code_back_once(app):
    before = app.pids()
    assert all(before.values())

    result = rollback(app, [1, 2, 3])

    note = "rollback of run %s by run %s\n" % (MIGRATE_RUN, ROLLBACK_RUN)
    for name in COMPONENTS:
        assert app.flag(name).read_text() == note
        assert_reaped(before[name])
        assert app.supervisor.statename("cutover-%s" % name) == "STOPPED"
        assert health(app.url(name)) == (None, {})
        assert app.link(name) == "releases/legacy"
        registry = app.registry(name)
        assert (registry["current"], registry["previous"]) == ("legacy", "migrated")
        migrated = registry["releases"]["migrated"]
        assert migrated["status"] == "failed"
        assert migrated["failed_reason"] == "rolled back by run %s: %s" % (ROLLBACK_RUN, REASON)
        assert (app.component_dir(name) / "releases" / "migrated" / "service.py").exists(), "the release is kept"
    assert result["changed"] is True
    assert events(result["journal"]) == [
        ("rollback.step", None),
        ("component.stopped", "tts"), ("component.stopped", "safety"), ("rollback.step", None),
        ("component.switched", "tts"), ("component.switched", "safety"), ("rollback.step", None)]
    assert step_entries(result["journal"]) == ok_steps(1, 2, 3)
    stopped = data_by_component(result["journal"], "component.stopped")
    assert stopped == {name: {"service": "cutover-%s" % name, "pid": before[name], "reason": "rollback step 2"}
                       for name in COMPONENTS}
    switched = [entry["data"] for entry in result["journal"] if entry["event"] == "component.switched"]
    assert switched == [{"from_release": "migrated", "to_release": "legacy"}] * 2
    assert result["detail"] == [
        "rolling back run %s on %s (%s): tts runs migrated, goes back to legacy; safety runs migrated, goes back to "
        "legacy" % (MIGRATE_RUN, HOST, REASON),
        "stopped tts (pid %d), safety (pid %d)" % (before["tts"], before["safety"]),
        "tts migrated -> legacy, safety migrated -> legacy"]
    assert [entry["data"]["detail"] for entry in result["journal"] if entry["event"] == "rollback.step"] == \
        result["detail"]
    assert_journal(result["journal"])

    # A rollback cut off after step 3 runs steps 1-3 again: they find everything done and change nothing.
    before = app.state()
    registry_stats = {name: os.stat(app.component_dir(name) / "releases.json") for name in COMPONENTS}
    again = rollback(app, [1, 2, 3])
    assert again["changed"] is False
    assert events(again["journal"]) == [("rollback.step", None)] * 3
    assert step_entries(again["journal"]) == ok_steps(1, 2, 3)
    assert "tts runs legacy, goes back to legacy" in again["detail"][0]
    assert again["detail"][1:] == ["stopped tts (was not running), safety (was not running)",
                                   "no link moved; already on their previous release: tts, safety"]
    assert app.state() == before
    for name in COMPONENTS:
        after = os.stat(app.component_dir(name) / "releases.json")
        assert (after.st_ino, after.st_mtime_ns) == (registry_stats[name].st_ino, registry_stats[name].st_mtime_ns)
    assert_journal(again["journal"])


def test_steps_5_and_6_start_the_old_code_test_it_and_resume_service(app):
    stopped = roll_code_back(app)
    baselines = {name: {"healthy": "ok", "serves_release": "legacy"} for name in COMPONENTS}

    result = rollback(app, [5, 6], baselines=baselines)

    pids = app.pids()
    for name in COMPONENTS:
        assert pids[name] and running(pids[name])
        assert not app.flag(name).exists()
        # serving normal traffic again (no probe header), from the release it went back to
        assert health(app.url(name), probe=False) == (200, {"status": "ok", "release": "legacy", "pid": pids[name]})
    assert result["changed"] is True
    assert events(result["journal"]) == [
        ("component.started", "tts"), ("component.started", "safety"),
        ("probe.result", "tts"), ("probe.result", "tts"), ("probe.result", "safety"), ("probe.result", "safety"),
        ("rollback.step", None),
        ("component.state", "tts"), ("component.state", "safety"), ("rollback.step", None)]
    assert step_entries(result["journal"]) == ok_steps(5, 6)
    started = data_by_component(result["journal"], "component.started")
    for name in COMPONENTS:
        assert (started[name]["service"], started[name]["pid"]) == ("cutover-%s" % name, pids[name])
        assert 0 <= started[name]["ready_s"] < 10
    old_pids = {entry["data"]["pid"] for entry in stopped["journal"] if entry["event"] == "component.stopped"}
    assert not old_pids & set(pids.values()), "new processes serve"
    probes = [(entry["component"], entry["data"]["probe"], entry["data"]["phase"], entry["data"]["verdict"],
               entry["data"]["value"], entry["data"]["baseline"], entry["data"]["critical"])
              for entry in result["journal"] if entry["event"] == "probe.result"]
    assert probes == [(name, probe, "rollback", "pass", value, value, True) for name in COMPONENTS
                      for probe, value in (("healthy", "ok"), ("serves_release", "legacy"))]
    states = [entry["data"] for entry in result["journal"] if entry["event"] == "component.state"]
    assert states == [{"state": "rolled_back", "release": "legacy"}] * 2
    assert result["detail"] == ["critical probes passed for tts, safety (4 results)", "serving again: tts, safety"]
    assert_journal(result["journal"])


def test_a_failing_critical_probe_fails_step_5_and_keeps_the_flags(app):
    roll_code_back(app)
    (app.component_dir("tts") / "config.json").write_text(json.dumps({"status": "degraded"}))

    with pytest.raises(ModuleFailed) as failure:
        rollback(app, [5, 6])

    result = failure.value.result
    assert result["msg"].startswith("rollback step 5 failed on %s: " % HOST)
    assert "healthy" in result["msg"] and "degraded" in result["msg"]
    last = result["journal"][-1]
    assert (last["event"], last["data"]["step"], last["data"]["name"], last["data"]["status"]) == (
        "rollback.step", 5, "quick_test", "failed")
    assert last["data"]["detail"] in result["msg"]
    assert step_entries(result["journal"]) == [(5, "quick_test", "failed")], "step 6 did not run"
    assert not [entry for entry in result["journal"] if entry["event"] == "component.state"]
    verdicts = {(entry["component"], entry["data"]["probe"]): entry["data"]["verdict"]
                for entry in result["journal"] if entry["event"] == "probe.result"}
    assert verdicts == {("tts", "healthy"): "fail", ("tts", "serves_release"): "pass",
                        ("safety", "healthy"): "pass", ("safety", "serves_release"): "pass"}
    assert_journal(result["journal"])
    for name in COMPONENTS:
        assert app.flag(name).exists(), "the components stay in maintenance mode for a human"
        assert health(app.url(name), probe=False)[0] == 503, "no user traffic is served"
        assert health(app.url(name))[0] == 200, "probe traffic is"
        assert app.link(name) == "releases/legacy"


def test_check_mode_changes_nothing(app):
    before = app.state()
    result = rollback(app, [1, 2, 3], check_mode=True)
    assert result["changed"] is True
    assert step_entries(result["journal"]) == ok_steps(1, 2, 3)
    assert [entry["data"] for entry in result["journal"] if entry["event"] == "component.switched"] == \
        [{"from_release": "migrated", "to_release": "legacy"}] * 2
    assert result["detail"][1] == "would stop tts, safety"
    assert_journal(result["journal"])
    assert app.state() == before

    roll_code_back(app)
    before = app.state()
    result = rollback(app, [5, 6], check_mode=True)
    assert step_entries(result["journal"]) == ok_steps(5, 6)
    assert result["detail"][0] == "would start tts, safety and run their critical probes"
    assert app.state() == before


def test_check_mode_of_steps_already_done_predicts_no_change(app):
    roll_code_back(app)
    assert rollback(app, [1, 2, 3])["changed"] is False
    assert rollback(app, [1, 2, 3], check_mode=True)["changed"] is False


def test_steps_5_and_6_again_start_nothing(app):
    roll_code_back(app)
    rollback(app, [5, 6])
    pids = app.pids()
    again = rollback(app, [5, 6])
    assert app.pids() == pids
    assert [entry for entry in again["journal"] if entry["event"] == "component.started"] == []
    assert again["changed"] is False


def test_a_second_rollback_keeps_what_runs_its_previous_release_serving(app):
    roll_code_back(app)
    rollback(app, [5, 6])
    after_first = app.state()
    assert after_first["flags"] == {"tts": False, "safety": False}

    again = rollback(app, [1, 2, 3]) | {"more": rollback(app, [5, 6])}

    assert app.state() == after_first, "no process restarted, no flag set, no link or registry changed"
    assert again["changed"] is False and again["more"]["changed"] is False
    entries = again["journal"] + again["more"]["journal"]
    assert [event for event in events(entries) if event[0] in ("component.stopped", "component.started",
                                                                "component.switched")] == []
    assert step_entries(entries) == ok_steps(1, 2, 3, 5, 6)
    assert_journal(entries)
    stop_detail = again["detail"][1]
    assert stop_detail.startswith("stopped nothing; tts (runs legacy since ")
    assert stop_detail.endswith(": kept serving)") and "safety (runs legacy since " in stop_detail
    for name in COMPONENTS:
        assert health(app.url(name), probe=False)[1]["release"] == "legacy"


def test_a_link_moved_back_by_hand_under_a_running_process_still_stops_it(app):
    # current -> legacy by hand, but the processes started before that, on migrated: they are not back
    for name in COMPONENTS:
        run_module(cutover_release.main, {"root": str(app.component_dir(name)), "component": name,
                                          "release": "legacy", "state": "current"})
        assert health(app.url(name), probe=False)[1]["release"] == "migrated"
    pids = app.pids()

    result = rollback(app, [1, 2, 3])

    assert data_by_component(result["journal"], "component.stopped").keys() == set(COMPONENTS)
    assert {name: data["pid"] for name, data in data_by_component(result["journal"], "component.stopped").items()} == pids
    assert result["detail"][1] == "stopped tts (pid %s), safety (pid %s)" % (pids["tts"], pids["safety"])
    assert app.pids() == {"tts": None, "safety": None}


BAD_INPUT = [
    ({"steps": [4]}, "steps must be a non-empty list of 1, 2, 3, 5, 6 (step 4 is cutover_redis_restore's), got [4]"),
    ({"steps": []}, "steps must be a non-empty list of 1, 2, 3, 5, 6"),
    ({"targets": [{"name": "ai", "from_release": "legacy", "to_release": "migrated"}]},
     "target 'ai' is not a component of this run's plan"),
    ({"targets": [{"name": "tts", "from_release": "legacy"}]},
     "targets[0] needs to_release (from the journal's rollback targets)"),
    ({"supervisor_config": None}, "manager is supervisor but all of the following are missing: supervisor_config"),
]


def test_bad_input_is_refused_naming_the_option_before_anything_changes(app):
    before = app.state()
    for options, message in BAD_INPUT:
        args = {"steps": [1, 2, 3], **options}
        with pytest.raises(ModuleFailed) as failure:
            rollback(app, **args)
        assert message in failure.value.result["msg"]
        assert app.state() == before
