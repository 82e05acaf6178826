"""Where a run stands, from its journal alone (module_utils/cutover_run.py): the answer every play starts from."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES
from ansible.module_utils.cutover_run import closing_outcome, run_state

RUN = "20261204T100000Z"
HOSTS = {"tts": ["app-1", "app-2"], "safety": ["app-2", "app-3"]}
BATCHES = {"tts": [["app-1"], ["app-2"]], "safety": [["app-2"], ["app-3"]]}


def journal(*events: tuple, run_id: str = RUN) -> list[dict[str, Any]]:
    return [{"seq": seq, "ts": "2026-12-04T10:00:%02d.000Z" % seq, "run_id": run_id, "event": event,
             "host": host, "component": component, "data": data}
            for seq, (event, component, host, data) in enumerate(events, start=1)]


def started(**extra: Any) -> tuple:
    data = {"playbook": "migrate", "target_release": "migrated", "components": ["tts", "safety"],
            "controller": "c", "user": "u", "hosts": HOSTS, "batches": BATCHES, "redis_host": "redis-1",
            "journal_host": "journal-1"}
    return ("run.started", None, None, {**data, **extra})


def preflight(host: str, **releases: str) -> tuple:
    return ("preflight.checked", None, host, {"checks": [], "releases": releases})


def deployed(component: str, host: str, state: str | None = "migrated", switched: bool = True) -> list[tuple]:
    events = [("component.deploying", component, host, {"from_release": "legacy", "to_release": "migrated"})]
    if switched:
        events.append(("component.switched", component, host, {"from_release": "legacy", "to_release": "migrated"}))
    if state:
        events.append(("component.state", component, host, {"state": state, "release": "migrated"}))
    return events


def step(number: int, host: str, status: str = "ok") -> tuple:
    return ("rollback.step", None, host, {"step": number, "name": ROLLBACK_STEP_NAMES[number], "status": status,
                                          "started_at": "a", "ended_at": "b", "detail": "d"})


PREFLIGHT = [preflight("app-1", tts="legacy"), preflight("app-2", tts="legacy", safety="legacy"),
             preflight("app-3", safety="legacy"), preflight("redis-1")]
TRIGGER = ("rollback.triggered", "tts", "app-1", {"trigger": {"component": "tts", "host": "app-1", "probe": "p",
                                                              "value": 0, "baseline": 1, "threshold": ">= 1"}})


def test_waves_are_components_in_plan_order_batches_canary_first():
    state = run_state(journal(started()))
    assert [(w["component"], w["hosts"], w["phase"]) for w in state["waves"]] == [
        ("tts", ["app-1"], "canary"), ("tts", ["app-2"], "verify"),
        ("safety", ["app-2"], "canary"), ("safety", ["app-3"], "verify")]
    assert state["stage"] == "started" and state["outcome"] is None
    assert state["host_view"]["app-2"]["components"] == ["tts", "safety"]


def test_a_fault_on_the_canary_rolls_back_only_the_canary():
    state = run_state(journal(started(), *PREFLIGHT, *deployed("tts", "app-1", state="failed"), TRIGGER))
    rollback = state["rollback"]
    assert rollback["hosts"] == {
        "app-1": {"targets": [{"name": "tts", "from_release": "legacy", "to_release": "migrated"}],
                  "steps": [1, 2, 3, 5, 6], "done": [], "failed": None, "next": 1},
        "redis-1": {"targets": [], "steps": [1, 4], "done": [], "failed": None, "next": 1}}
    assert rollback["components"] == ["tts"] and state["stage"] == "rollback"
    assert state["trigger_text"] == "probe tts/p on app-1: value 0, baseline 1, threshold >= 1"


def test_a_fault_in_the_second_batch_rolls_back_both_batches():
    events = [started(), *PREFLIGHT, *deployed("tts", "app-1"), *deployed("tts", "app-2", state="failed"), TRIGGER]
    hosts = run_state(journal(*events))["rollback"]["hosts"]
    assert sorted(hosts) == ["app-1", "app-2", "redis-1"]
    assert [t["name"] for t in hosts["app-2"]["targets"]] == ["tts"]


def test_a_deploy_cut_off_is_rolled_back_but_one_that_failed_before_its_switch_is_not():
    cut_off = journal(started(), *PREFLIGHT, *deployed("tts", "app-1", state=None, switched=False), TRIGGER)
    assert run_state(cut_off)["rollback"]["hosts"]["app-1"]["targets"][0]["name"] == "tts"
    refused = journal(started(), *PREFLIGHT, *deployed("tts", "app-1", state="failed", switched=False), TRIGGER)
    assert "app-1" not in run_state(refused)["rollback"]["hosts"]


def test_progress_per_host_and_outcome_once_every_host_is_done():
    events = [started(), *PREFLIGHT, *deployed("tts", "app-1", state="failed"), TRIGGER,
              step(1, "app-1"), step(1, "redis-1"), step(2, "app-1"), step(3, "app-1"), step(4, "redis-1")]
    state = run_state(journal(*events))
    assert state["rollback"]["hosts"]["app-1"]["next"] == 5 and state["rollback"]["hosts"]["redis-1"]["next"] is None
    assert state["rollback"]["next_step"] == 5 and state["outcome"] is None
    assert closing_outcome(state) == ("failed", "the rollback stopped before step 5 without recording why; "
                                                "check the hosts")
    done = run_state(journal(*events, step(5, "app-1"), step(6, "app-1")))
    assert done["rollback"]["complete"] and done["outcome"] == "rolled_back"
    assert done["message"].startswith("rolled back: probe tts/p on app-1")


def test_a_failed_step_fails_the_run_and_names_host_and_step():
    state = run_state(journal(started(), *PREFLIGHT, *deployed("tts", "app-1", state="failed"), TRIGGER,
                              step(1, "app-1"), step(1, "redis-1"), step(4, "redis-1", "failed")))
    assert state["rollback"]["failed"] == {"host": "redis-1", "step": 4, "name": "restart_redis_restore_data",
                                           "detail": "d"}
    assert state["outcome"] == "failed" and "rollback step 4 (restart_redis_restore_data) failed on redis-1" in \
        state["message"]


def test_migrated_only_once_every_host_migrated_and_the_watch_ended():
    events = [started(), *PREFLIGHT] + [event for component, hosts in HOSTS.items() for host in hosts
                                        for event in deployed(component, host)]
    state = run_state(journal(*events))
    assert state["rollout_complete"] and state["outcome"] is None
    watched = run_state(journal(*events, ("watch.started", None, None, {"duration_s": 0, "interval_s": 1, "rounds": 0}),
                                ("watch.finished", None, None, {"rounds": 0, "reason": "window ended"})))
    assert watched["outcome"] == "migrated" and watched["stage"] == "watch"
    assert watched["host_view"]["app-2"]["releases"]["safety"]["from_release"] == "legacy"


def test_an_aborted_run_failed_before_anything_changed():
    state = run_state(journal(started(), ("run.aborted", None, "app-3", {"stage": "preflight", "message": "down"})))
    assert state["aborted"] == {"stage": "preflight", "message": "down", "host": "app-3"}
    assert state["outcome"] == "failed" and state["message"] == "preflight failed on app-3: down"


def test_a_rollback_run_rolls_back_what_its_target_switched():
    target = journal(started(), *PREFLIGHT, *deployed("tts", "app-1"), *deployed("tts", "app-2"),
                     ("snapshot.created", None, "redis-1", {"id": RUN, "path": "/s", "keys": 1, "namespaces": {},
                                                            "sha256": "x", "verified": True, "mode": "logical"}))
    rollback = journal(("run.started", None, None, {"playbook": "rollback", "components": ["tts", "safety"],
                                                    "controller": "c", "user": "u", "target_run_id": RUN,
                                                    "hosts": HOSTS, "redis_host": "redis-1"}),
                       ("rollback.triggered", None, None, {"trigger": {"reason": "operator", "run_id": RUN}}),
                       run_id="20261204T110000Z")
    state = run_state(rollback, target)
    assert sorted(state["rollback"]["hosts"]) == ["app-1", "app-2", "redis-1"]
    assert state["snapshot"]["path"] == "/s" and state["target_run_id"] == RUN


SNAPSHOT = ("snapshot.created", None, "redis-1", {"id": RUN, "path": "/s", "keys": 1, "namespaces": {},
                                                  "sha256": "x", "verified": True, "mode": "logical"})
WATCH_STARTED = ("watch.started", None, None, {"duration_s": 60, "interval_s": 5, "rounds": 12})
EVERY_HOST_MIGRATED = [event for component, hosts in HOSTS.items() for host in hosts
                       for event in deployed(component, host)]


@pytest.mark.parametrize("events, action, why", [
    ([started(), *PREFLIGHT, SNAPSHOT], "abort", "cut off in stage snapshot before any component was switched"),
    ([started(), *PREFLIGHT, SNAPSHOT, *deployed("tts", "app-1", state=None, switched=False)], "rollback",
     "cut off in stage rollout after switching tts; rolling back"),
    ([started(), *PREFLIGHT, SNAPSHOT, *deployed("tts", "app-1"), *deployed("tts", "app-2", state=None)], "rollback",
     "after switching tts;"),
    ([started(), *PREFLIGHT, SNAPSHOT, *deployed("tts", "app-1"), TRIGGER, step(1, "app-1"), step(2, "app-1"),
      step(1, "redis-1")], "rollback", "the rollback stopped before step 3; continuing"),
    ([started(), *PREFLIGHT, SNAPSHOT, *deployed("tts", "app-1"), TRIGGER, step(1, "app-1"), step(2, "app-1", "failed")],
     "close", "rollback step 2 failed on app-1"),
    ([started(), *PREFLIGHT, SNAPSHOT, *EVERY_HOST_MIGRATED, WATCH_STARTED], "watch", "the watch was cut off"),
    ([started(), *PREFLIGHT, SNAPSHOT, *EVERY_HOST_MIGRATED, WATCH_STARTED,
      ("watch.finished", None, None, {"rounds": 12, "reason": "window ended"})], "close", "the watch window ended"),
    ([started(), ("run.aborted", None, "app-3", {"stage": "preflight", "message": "down"})], "close",
     "stopped in stage started"),
    ([started(), *PREFLIGHT, ("run.finished", None, None, {"outcome": "failed", "message": "m"})], "none",
     "is finished: failed"),
])
def test_resume_finishes_a_run_by_where_its_journal_stopped(events, action, why):
    resume = run_state(journal(*events))["resume"]
    assert resume["action"] == action and why in resume["why"], resume


def test_a_watch_halted_by_a_failed_round_rolls_back_never_migrated():
    halted = [started(), *PREFLIGHT, SNAPSHOT, *EVERY_HOST_MIGRATED, WATCH_STARTED,
              ("watch.round", None, "app-3", {"round": 2, "passed": False}),
              ("rollback.triggered", "safety", "app-3", {"trigger": {"component": "safety", "host": "app-3",
                                                                      "probe": "p", "value": 0}}),
              ("watch.finished", None, None, {"rounds": 2, "reason": "halted in round 2: the rollback trigger says why"})]
    state = run_state(journal(*halted))
    assert state["outcome"] is None and state["resume"]["action"] == "rollback"
    assert state["watch"]["finished"] and state["rollback"]["next_step"] == 1


# ---- the scheduled watch: what one call of playbooks/watch.yml does, the lease, how the window ends ----

ALL_MIGRATED = PREFLIGHT + deployed("tts", "app-1") + deployed("tts", "app-2") + deployed("safety", "app-2") \
    + deployed("safety", "app-3")
WATCH_START = datetime(2026, 12, 4, 11, 0, 0, tzinfo=timezone.utc)
SCHEDULED = [("watch.started", None, None, {"duration_s": 600, "interval_s": 60, "rounds": 10, "scheduled": True}),
             ("watch.scheduled", None, "journal-1", {"scheduler": "supervisor", "name": "cutover-watch-x",
                                                     "host": "journal-1", "ends_at": "2026-12-04T11:10:00.000Z",
                                                     "interval_s": 60})]


def watched(*more: tuple) -> list[dict[str, Any]]:
    entries = journal(started(), *ALL_MIGRATED, *SCHEDULED, *more)
    watch_started = next(entry for entry in entries if entry["event"] == "watch.started")
    watch_started["ts"] = "2026-12-04T11:00:00.000Z"
    return entries


def at(minutes: float) -> datetime:
    return WATCH_START + timedelta(minutes=minutes)


def rounds(*numbers: int) -> list[tuple]:
    return [("watch.round", None, host, {"round": number, "passed": True}) for number in numbers
            for host in ("app-1", "app-2", "app-3")]


def test_a_scheduled_watch_runs_the_next_round_when_it_is_due_and_holds_a_lease():
    state = run_state(watched(*rounds(1, 2)), now=at(2.5))
    assert state["watch"]["ends_at"] == "2026-12-04T11:10:00.000Z" and state["watch"]["rounds_done"] == 2
    assert state["watch_next"] == {"action": "round", "round": 3, "due_at": "2026-12-04T11:03:00.000Z",
                                   "wait_s": 30.0, "why": "round 3 of 10 is due at 2026-12-04T11:03:00.000Z"}
    assert state["lease"] == {"run_id": RUN, "components": ["tts", "safety"], "until": "2026-12-04T11:10:00.000Z",
                              "watcher": SCHEDULED[1][3]}
    assert state["outcome"] is None and state["resume"]["action"] == "watch"
    assert "goes on until 2026-12-04T11:10:00.000Z" in state["resume"]["why"], "resume continues the window"


def test_a_watcher_that_was_down_runs_the_missed_round_at_once_and_ends_the_window_on_time():
    assert run_state(watched(*rounds(1)), now=at(7.2))["watch_next"]["wait_s"] == 0
    late = run_state(watched(*rounds(1)), now=at(11.5))["watch_next"]
    assert late["action"] == "finish" and "ended at 2026-12-04T11:10:00.000Z after 1 rounds" in late["why"]
    assert run_state(watched(*rounds(*range(1, 11))), now=at(9.9))["watch_next"]["action"] == "finish"


@pytest.mark.parametrize("ended_by, reason, outcome, message", [
    ("window", "window ended", "migrated", "every component runs migrated"),
    ("stop", "stopped by alice: quiet night", "migrated",
     "every component runs migrated; the watch was stopped early: stopped by alice: quiet night"),
    ("rollback", "rollback run 20261204T120000Z-rollback by bob: pager", "rolled_back",
     "the watch was ended by rollback run 20261204T120000Z-rollback by bob: pager"),
])
def test_how_the_window_ended_decides_the_outcome_and_frees_the_lease(ended_by, reason, outcome, message):
    ended = ("watch.finished", None, None, {"rounds": 2, "reason": reason, "ended_by": ended_by})
    state = run_state(watched(*rounds(1, 2), ended), now=at(3))
    assert (state["outcome"], state["message"]) == (outcome, message)
    assert state["lease"] is None and state["watch_next"]["action"] == "close"
    assert not state["watch"]["retired"], "closing the run retires the watcher"


def test_a_failed_scheduled_round_rolls_back_and_the_finished_run_retires_its_watcher():
    failing = run_state(watched(*rounds(1), TRIGGER), now=at(2))
    assert failing["watch_next"]["action"] == "rollback" and failing["lease"] is None
    assert failing["rollback"]["next_step"] == 1
    closed = run_state(watched(*rounds(1), TRIGGER, ("run.finished", None, None,
                                                     {"outcome": "rolled_back", "message": "m"})), now=at(2))
    assert closed["watch_next"]["action"] == "retire"
    retired = run_state(watched(("watch.retired", None, None, {"name": "cutover-watch-x", "reason": "r"})), now=at(1))
    assert retired["watch"]["retired"]


def test_an_inline_watch_holds_no_lease_and_a_run_without_a_watch_has_nothing_to_watch():
    inline = journal(started(), *ALL_MIGRATED, ("watch.started", None, None,
                                                {"duration_s": 60, "interval_s": 10, "rounds": 6}))
    assert run_state(inline)["lease"] is None
    assert "remaining rounds run" in run_state(inline)["resume"]["why"]
    assert run_state(journal(started(), *PREFLIGHT))["watch_next"]["action"] == "none"


def test_the_rollback_settings_of_a_run_come_from_its_run_started():
    settings = {"restore_policy": "whole_rdb", "restart_redis": "if_unhealthy"}
    assert run_state(journal(started(settings=settings)))["settings"] == settings
    assert run_state(journal(started()))["settings"] == {}, "a journal from before settings were recorded"


def test_a_rollback_of_a_run_that_switched_nothing_has_no_step_to_take_and_restores_no_data():
    refused = journal(started(), ("run.aborted", None, "app-3", {"stage": "preflight", "message": "down"}),
                      ("run.finished", None, None, {"outcome": "failed", "message": "preflight failed on app-3"}))
    rollback = journal(("run.started", None, None, {"playbook": "rollback", "components": ["tts", "safety"],
                                                    "controller": "c", "user": "u", "target_run_id": RUN,
                                                    "hosts": HOSTS, "redis_host": "redis-1"}),
                       ("rollback.triggered", None, None, {"trigger": {"reason": "operator", "run_id": RUN}}),
                       run_id="20261204T110000Z")
    assert run_state(refused)["touched"] == []
    state = run_state(rollback, refused)
    # the Redis host takes steps 1 and 4 only when a component was switched: nothing to restore otherwise
    assert state["rollback"]["hosts"] == {} and state["rollback"]["next_step"] is None
    assert state["outcome"] == "rolled_back"
