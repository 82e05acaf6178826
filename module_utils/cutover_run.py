# -*- coding: utf-8 -*-
# Where a run stands, computed once from its journal: the plan and its waves, per host the components, releases,
# baselines and rollback progress, the trigger, the outcome. Every play asks for it (cutover_journal state=status)
# instead of carrying facts between plays; the report is built on it. Pure functions, stdlib only.
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from ansible.module_utils.cutover_events import OUTCOMES, ROLLBACK_STEP_NAMES, parse_timestamp, utc_timestamp

Entry = dict[str, Any]

APP_STEPS = (1, 2, 3, 5, 6)
REDIS_STEPS = (1, 4)
STAGES = ("started", "preflight", "snapshot", "baseline", "rollout", "watch", "rollback", "finished")
STAGE_EVENTS = {"preflight.checked": "preflight", "snapshot.created": "snapshot", "component.deploying": "rollout",
                "watch.started": "watch", "rollback.triggered": "rollback", "run.finished": "finished"}


def _data(entry: Entry | None) -> dict[str, Any]:
    return (entry or {}).get("data") or {}


def first(entries: Iterable[Entry], event: str) -> Entry | None:
    return next((entry for entry in entries if entry["event"] == event), None)


def last(entries: list[Entry], event: str) -> Entry | None:
    return first(reversed(entries), event)


def describe_trigger(trigger: dict[str, Any] | None) -> str:
    """One line saying why a rollback happens: the failing probe and its value, or the stated reason."""
    trigger = trigger or {}
    if trigger.get("probe"):
        return "probe %s/%s on %s: value %s, baseline %s, threshold %s" % (
            trigger.get("component"), trigger["probe"], trigger.get("host", "?"), trigger.get("value"),
            trigger.get("baseline"), trigger.get("threshold"))
    return str(trigger.get("reason") or "no reason given")


def waves(plan: list[str], batches: dict[str, list[list[str]]]) -> list[dict[str, Any]]:
    """The rollout in order: per component of the plan, its batches; the first of several is the canary."""
    result = []
    for component in plan:
        component_batches = batches.get(component) or []
        for index, hosts in enumerate(component_batches):
            phase = "canary" if index == 0 and len(component_batches) > 1 else "verify"
            result.append({"index": len(result), "component": component, "batch": index, "hosts": hosts,
                           "phase": phase})
    return result


def stage_of(entries: list[Entry]) -> str:
    reached = [STAGE_EVENTS[entry["event"]] for entry in entries if entry["event"] in STAGE_EVENTS]
    if any(entry["event"] == "probe.result" and _data(entry).get("phase") == "baseline" for entry in entries):
        reached.append("baseline")
    return max(reached, key=STAGES.index, default="started")


def component_records(entries: list[Entry], target_release: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """host -> component -> {from_release, to_release, current, state, deploying, switched} of a migrate run."""
    records: dict[str, dict[str, dict[str, Any]]] = {}

    def record(host: str, component: str) -> dict[str, Any]:
        return records.setdefault(host, {}).setdefault(component, {
            "from_release": None, "to_release": target_release, "current": None, "state": None,
            "deploying": False, "switched": False})

    for entry in entries:
        event, host, data = entry["event"], entry.get("host"), _data(entry)
        if event == "preflight.checked":
            for component, release in (data.get("releases") or {}).items():
                record(host, component).update(from_release=release, current=release)
            continue
        component = entry.get("component")
        if not host or not component:
            continue
        if event == "component.deploying":
            row = record(host, component)
            row.update(deploying=True, state=None, from_release=row["from_release"] or data.get("from_release"))
        elif event == "component.switched":
            row = record(host, component)
            row["current"] = data.get("to_release")
            if data.get("to_release") == target_release:
                row["switched"] = True
        elif event == "component.state":
            record(host, component)["state"] = data.get("state")
    return records


def rollback_targets(records: dict[str, dict[str, dict[str, Any]]], plan: list[str]) -> dict[str, list[dict[str, Any]]]:
    """host -> components to roll back: switched to the target, or cut off mid-deploy (the link may have moved)."""
    targets: dict[str, list[dict[str, Any]]] = {}
    for host, components in records.items():
        for name in plan:
            row = components.get(name)
            if row is None or not row["from_release"] or row["from_release"] == row["to_release"]:
                continue
            if row["switched"] or (row["deploying"] and row["state"] is None):
                targets.setdefault(host, []).append(
                    {"name": name, "from_release": row["from_release"], "to_release": row["to_release"]})
    return targets


def baselines(entries: list[Entry]) -> dict[str, dict[str, dict[str, Any]]]:
    """host -> component -> probe -> baseline value (the last recorded wins)."""
    values: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in entries:
        data = _data(entry)
        if entry["event"] == "probe.result" and data.get("phase") == "baseline":
            values.setdefault(entry.get("host"), {}).setdefault(entry.get("component"), {})[data["probe"]] = data["value"]
    return values


def step_attempts(entries: list[Entry]) -> dict[str, dict[int, dict[str, Any]]]:
    """host -> step -> data of that host's last attempt of the step."""
    attempts: dict[str, dict[int, dict[str, Any]]] = {}
    for entry in entries:
        if entry["event"] == "rollback.step":
            data = _data(entry)
            attempts.setdefault(entry.get("host"), {})[int(data["step"])] = data
    return attempts


def rollback_progress(targets: dict[str, list[dict[str, Any]]], redis_host: str | None,
                      attempts: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Which host does which step, what is done, what failed, and the next step to run. The Redis host takes part
    only when a component was switched: a run that switched nothing has no data of a new release to undo."""
    hosts: dict[str, dict[str, Any]] = {}
    participants = dict.fromkeys(list(targets) + ([redis_host] if redis_host and targets else []))
    for host in participants:
        steps = sorted(set(APP_STEPS if targets.get(host) else ()) | set(REDIS_STEPS if host == redis_host else ()))
        tried = attempts.get(host, {})
        done = [step for step in steps if tried.get(step, {}).get("status") == "ok"]
        failed = next((step for step in steps if tried.get(step, {}).get("status") == "failed"), None)
        pending = [step for step in steps if step not in done]
        hosts[host] = {"targets": targets.get(host, []), "steps": steps, "done": done, "failed": failed,
                       "next": pending[0] if pending and failed is None else None}
    # a failed step journaled by any host fails the rollback, also one of a host the journal no longer gives steps
    failed_steps = [(host, view["failed"]) for host, view in hosts.items() if view["failed"] is not None] + [
        (host, step) for host, tried in attempts.items() if host not in hosts
        for step, data in sorted(tried.items()) if data.get("status") == "failed"]
    failure = next(({"host": host, "step": step, "name": ROLLBACK_STEP_NAMES[step],
                     "detail": attempts[host][step].get("detail")} for host, step in failed_steps), None)
    pending_steps = [view["next"] for view in hosts.values() if view["next"] is not None]
    return {"hosts": hosts, "failed": failure, "complete": not pending_steps and failure is None,
            "next_step": min(pending_steps, default=None), "step_names": ROLLBACK_STEP_NAMES,
            "components": [target["name"] for host_targets in targets.values() for target in host_targets]}


def rollout_complete(records: dict[str, dict[str, dict[str, Any]]], hosts: dict[str, list[str]]) -> bool:
    return bool(hosts) and all(records.get(host, {}).get(component, {}).get("state") == "migrated"
                               for component, component_hosts in hosts.items() for host in component_hosts)


def watch_view(ordered: list[Entry]) -> dict[str, Any] | None:
    """The run's watch window: its plan, when it ends, its scheduled watcher, rounds done, how it ended."""
    started = last(ordered, "watch.started")
    if started is None:
        return None
    data = _data(started)
    ends_at = utc_timestamp(parse_timestamp(started["ts"]) + timedelta(seconds=data["duration_s"]))
    scheduled, retired = last(ordered, "watch.scheduled"), last(ordered, "watch.retired")
    finished = last(ordered, "watch.finished")
    return {**data, "started_at": started["ts"], "ends_at": ends_at,
            "watcher": _data(scheduled) or None,
            "retired": retired is not None and retired["seq"] > (scheduled or {}).get("seq", 0),
            "finished": finished is not None, "ended_by": _data(finished).get("ended_by"),
            "finish_reason": _data(finished).get("reason"),
            "rounds_done": max([_data(entry)["round"] for entry in ordered if entry["event"] == "watch.round"],
                               default=0)}


def watch_next(state: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What one call of playbooks/watch.yml does now: {action, round, due_at, wait_s, why}.

    retire (the run is finished: remove its watcher), rollback (a trigger is journaled: the six steps, then close),
    close (the window ended or the run paused, the run is not closed yet), finish (the window's time is up: journal
    watch.finished, then close), round (run round N once due_at is reached), none (no watch window to keep)."""
    def act(action: str, why: str, **more: Any) -> dict[str, Any]:
        return {"action": action, "round": None, "due_at": None, "wait_s": 0, "why": why, **more}

    watch = state["watch"]
    if state["finished"]:
        return act("retire", "run %s is finished: %s" % (state["run_id"], state["outcome"]))
    if state["trigger"] is not None:
        return act("rollback", "rollback triggered: %s" % state["trigger_text"])
    if watch is None or not state["rollout_complete"]:
        return act("none", "run %s has no watch window (stage %s)" % (state["run_id"], state["stage"]))
    if watch["finished"] or state["paused"]:
        return act("close", "the watch ended (%s); the run is not closed yet"
                   % (watch["finish_reason"] or state["paused"]["reason"]))
    started_at, interval = parse_timestamp(watch["started_at"]), timedelta(seconds=watch["interval_s"])
    # a watcher that was down past the window's end does not owe the rounds it missed
    if watch["rounds_done"] >= watch["rounds"] or now >= parse_timestamp(watch["ends_at"]) + interval:
        return act("finish", "the watch window ended at %s after %s rounds" % (watch["ends_at"], watch["rounds_done"]))
    number = watch["rounds_done"] + 1
    due = started_at + number * interval
    return act("round", "round %s of %s is due at %s" % (number, watch["rounds"], utc_timestamp(due)),
               round=number, due_at=utc_timestamp(due), wait_s=round(max(0.0, (due - now).total_seconds()), 3))


def lease(state: dict[str, Any]) -> dict[str, Any] | None:
    """The components a run keeps to itself while its scheduled watch is open (a migrate of them is refused)."""
    watch = state["watch"]
    if (state["finished"] or state["playbook"] != "migrate" or state["trigger"] is not None or not watch
            or not watch.get("scheduled") or watch["finished"]):
        return None
    return {"run_id": state["run_id"], "components": state["plan"], "until": watch["ends_at"],
            "watcher": watch["watcher"]}


def run_state(entries: list[Entry], target_entries: list[Entry] | None = None,
              now: datetime | None = None) -> dict[str, Any]:
    """Everything a play needs to know about a run, from its journal (and for a rollback run, its target's)."""
    ordered = sorted(entries, key=lambda entry: entry["seq"])
    started = _data(first(ordered, "run.started"))
    playbook = started.get("playbook")
    source = sorted(target_entries or [], key=lambda entry: entry["seq"]) if playbook == "rollback" else ordered
    source_started = _data(first(source, "run.started"))
    plan = list(started.get("components") or [])
    component_hosts = started.get("hosts") or source_started.get("hosts") or {}
    records = component_records(source, source_started.get("target_release"))
    trigger_entry = first(ordered, "rollback.triggered")
    aborted = first(ordered, "run.aborted")
    paused = first(ordered, "run.paused")
    needs_rollback = trigger_entry is not None or playbook == "rollback"
    redis_host = started.get("redis_host") or source_started.get("redis_host")
    targets = rollback_targets(records, plan)
    rollback = rollback_progress(targets, redis_host, step_attempts(ordered)) if needs_rollback else None
    state = {
        "run_id": next((entry["run_id"] for entry in ordered if entry.get("run_id")), None),
        "exists": bool(ordered),
        "playbook": playbook,
        "target_release": started.get("target_release"),
        "target_run_id": started.get("target_run_id"),
        "settings": started.get("settings") or {},
        "started_at": (first(ordered, "run.started") or {}).get("ts"),
        "stage": stage_of(ordered),
        "plan": plan,
        "hosts": component_hosts,
        "waves": waves(plan, started.get("batches") or {}),
        "redis_host": redis_host,
        "journal_host": started.get("journal_host"),
        "aborted": {**_data(aborted), "host": aborted.get("host")} if aborted else None,
        "paused": {**_data(paused), "host": paused.get("host")} if paused else None,
        "trigger": _data(trigger_entry).get("trigger") if trigger_entry else None,
        "trigger_text": describe_trigger(_data(trigger_entry).get("trigger")) if trigger_entry else None,
        "snapshot": _data(last(source, "snapshot.created")) or None,
        "rollout_complete": rollout_complete(records, component_hosts),
        "touched": [name for name in plan if any(target["name"] == name for host_targets in targets.values()
                                                  for target in host_targets)],
        "watch": watch_view(ordered),
        "rollback": rollback,
        "host_view": host_views(component_hosts, plan, records, baselines(source), rollback),
    }
    finished = last(ordered, "run.finished")
    state["finished"] = finished is not None
    if finished is not None and _data(finished).get("outcome") in OUTCOMES:
        state["outcome"], state["message"] = _data(finished)["outcome"], _data(finished).get("message")
    else:
        state["outcome"], state["message"] = outcome(state)
    state["resume"] = resume_action(state)
    state["lease"] = lease(state)
    state["watch_next"] = watch_next(state, now or datetime.now(timezone.utc))
    return state


def resume_action(state: dict[str, Any]) -> dict[str, str]:
    """What playbooks/resume.yml does to finish a run whose controller stopped: {action, why}.

    none (nothing to do, or a human must decide), close (the journal already proves the outcome), abort (cut off
    before any component switched: nothing to undo), rollback (start or continue the six steps), watch (the
    rollout completed: watch again, then close)."""
    def act(action: str, why: str) -> dict[str, str]:
        return {"action": action, "why": why}

    if state["finished"]:
        return act("none", "run %s is finished: %s" % (state["run_id"], state["outcome"]))
    if not state["exists"]:
        return act("none", "run %s has no journal" % state["run_id"])
    rollback = state["rollback"]
    if rollback is not None:
        if rollback["failed"]:
            return act("close", "rollback step %s failed on %s; the state is kept for a human"
                       % (rollback["failed"]["step"], rollback["failed"]["host"]))
        if rollback["complete"]:
            return act("close", "the rollback is complete; the run was not closed")
        return act("rollback", "the rollback stopped before step %s; continuing from there" % rollback["next_step"])
    if state["aborted"] or state["paused"]:
        return act("close", "the run stopped in stage %s; the journal says why" % state["stage"])
    if not state["touched"]:
        return act("abort", "the run was cut off in stage %s before any component was switched" % state["stage"])
    if state["rollout_complete"]:
        if (state["watch"] or {}).get("finished"):
            return act("close", "the watch window ended; the run was not closed")
        watch = state["watch"] or {}
        if watch.get("scheduled"):
            return act("watch", "every component was migrated and verified; the watch window goes on until %s, its "
                                "watcher is installed again" % watch["ends_at"])
        return act("watch", "every component was migrated and verified; the watch was cut off, its remaining rounds run")
    return act("rollback", "the run was cut off in stage %s after switching %s; rolling back what was switched"
               % (state["stage"], ", ".join(state["touched"])))


def host_views(component_hosts: dict[str, list[str]], plan: list[str], records: dict[str, dict[str, dict[str, Any]]],
               baseline_values: dict[str, dict[str, dict[str, Any]]], rollback: dict[str, Any] | None
               ) -> dict[str, dict[str, Any]]:
    """Per host: its planned components in order, their releases and baselines, its part of the rollback."""
    views: dict[str, dict[str, Any]] = {}
    for name in plan:
        for host in component_hosts.get(name, []):
            view = views.setdefault(host, {"components": [], "releases": {}, "baselines": {}, "rollback": None})
            view["components"].append(name)
            view["releases"][name] = records.get(host, {}).get(name)
            view["baselines"][name] = baseline_values.get(host, {}).get(name, {})
    for host, part in ((rollback or {}).get("hosts") or {}).items():
        views.setdefault(host, {"components": [], "releases": {}, "baselines": {}, "rollback": None})["rollback"] = part
    return views


def outcome(state: dict[str, Any]) -> tuple[str | None, str | None]:
    """(outcome, message) the journal proves so far; (None, None) while the run can still go either way."""
    if state["aborted"]:
        aborted = state["aborted"]
        if aborted.get("host") is None:  # journaled for the whole run (resume.yml), not by a failing host
            return "failed", "the run stopped in stage %s: %s" % (aborted.get("stage"), aborted.get("message"))
        return "failed", "%s failed on %s: %s" % (aborted.get("stage"), aborted.get("host"), aborted.get("message"))
    rollback = state["rollback"]
    if rollback is not None:
        if rollback["failed"]:
            failed = rollback["failed"]
            return "failed", ("rollback step %s (%s) failed on %s: %s. Nothing more was tried; the state is kept as it "
                              "is for a human (components stay in maintenance mode)."
                              % (failed["step"], failed["name"], failed["host"], failed["detail"]))
        if rollback["complete"]:
            if state["playbook"] == "rollback":
                return "rolled_back", "rolled back run %s" % state["target_run_id"]
            return "rolled_back", "rolled back: %s" % describe_trigger(state["trigger"])
        return None, None
    if state["paused"]:
        return "paused", ("rollout paused for a human on %s: %s. Components stay as they are: roll back with "
                          "playbooks/rollback.yml, or migrate again to go on" % (state["paused"]["host"],
                                                                               state["paused"]["reason"]))
    watch = state["watch"] or {}
    if state["rollout_complete"] and watch.get("ended_by") == "rollback":
        return "rolled_back", "the watch was ended by %s" % watch["finish_reason"]
    if state["rollout_complete"] and watch.get("finished"):
        return "migrated", "every component runs %s%s" % (
            state["target_release"], "; the watch was stopped early: %s" % watch["finish_reason"]
            if watch.get("ended_by") == "stop" else "")
    return None, None


def closing_outcome(state: dict[str, Any]) -> tuple[str, str]:
    """The outcome to journal when the run closes: what the journal proves, or failed naming where it stopped."""
    decided, message = outcome(state)
    if decided is not None:
        return decided, message or ""
    if state["rollback"] is not None:
        return "failed", ("the rollback stopped before step %s without recording why; check the hosts"
                          % state["rollback"]["next_step"])
    return "failed", "the run stopped during stage %s without recording why; check the hosts" % state["stage"]
