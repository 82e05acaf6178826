# -*- coding: utf-8 -*-
# Pure functions: run journal entries -> report dict -> markdown. No I/O, so the report is reproducible
# from a journal on any machine. The fields are the contract in docs/ARCHITECTURE.md ("Report").
from __future__ import annotations

from typing import Any, Iterable

from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES
from ansible.module_utils.cutover_run import closing_outcome, describe_trigger, run_state

ROLLBACK_STEPS = tuple(ROLLBACK_STEP_NAMES)
COMPONENT_EVENTS = ("component.deploying", "component.switched", "component.state")
PROBE_FIELDS = ("probe", "phase", "verdict", "value", "baseline", "threshold")
STEP_FIELDS = ("name", "status", "started_at", "ended_at", "detail")
ABORT_FIELDS = ("stage", "message")
SNAPSHOT_FIELDS = ("id", "keys", "sha256", "verified")
DATA_FIELDS = ("keys_before", "keys_after", "lost")
PASSING_VERDICTS = ("pass", "recorded")
DEPLOY_STATUSES = {"migrated": "ok", "unchanged": "ok", "failed": "failed"}
HTML_LINK = "[timeline and probe plots](report.html)"

Entry = dict[str, Any]


def _data(entry: Entry | None) -> dict[str, Any]:
    return (entry or {}).get("data") or {}


def _first(entries: list[Entry], event: str) -> Entry | None:
    return next((entry for entry in entries if entry["event"] == event), None)


def _last(entries: list[Entry], event: str) -> Entry | None:
    return next((entry for entry in reversed(entries) if entry["event"] == event), None)


def _pick(source: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    return {field: source.get(field) for field in fields}


def build_report(entries: list[Entry], run_id: str | None = None,
                 target_entries: list[Entry] | None = None) -> dict[str, Any]:
    """Build the report of one run from its journal entries (any order; sorted by seq here).

    ``run_id`` is used only when no entry names its run; ``target_entries`` is the journal of the run a rollback
    run rolls back (the outcome of a rollback run is judged against it).
    """
    ordered = sorted(entries, key=lambda entry: entry["seq"])
    started = _first(ordered, "run.started")
    finished = _last(ordered, "run.finished")
    components = component_rows(ordered)
    rollback = rollback_section(ordered)
    state = run_state(ordered, target_entries)
    return {
        "run_id": next((entry["run_id"] for entry in ordered if entry.get("run_id")), run_id),
        "playbook": _data(started).get("playbook"),
        "outcome": state["outcome"] or closing_outcome(state)[0],
        "started_at": started["ts"] if started else (ordered[0].get("ts") if ordered else None),
        "finished_at": finished["ts"] if finished else None,
        "target_release": _data(started).get("target_release"),
        "target_run_id": _data(started).get("target_run_id"),
        "message": _data(finished).get("message"),
        "abort": abort_section(_first(ordered, "run.aborted")),
        "components": components,
        "probes": [probe_row(entry) for entry in ordered if entry["event"] == "probe.result"],
        "rollback": rollback,
        "watch": watch_section(ordered),
        "snapshot": snapshot_section(ordered),
        "data": _section(_last(ordered, "data.audited"), DATA_FIELDS),
        "timeline": timeline_section(ordered, state["waves"]),
    }


def _section(entry: Entry | None, fields: Iterable[str]) -> dict[str, Any] | None:
    return _pick(_data(entry), fields) if entry else None


def abort_section(aborted: Entry | None) -> dict[str, Any] | None:
    """Where a run stopped before changing anything (stage, host, message), from its first run.aborted."""
    if aborted is None:
        return None
    return {**_pick(_data(aborted), ABORT_FIELDS), "host": aborted.get("host")}


def watch_section(entries: list[Entry]) -> dict[str, Any] | None:
    """The watch window and each host's rounds: time, whether it passed, and the value and verdict of every probe
    (the watch-phase probe.result entries a host journaled since its previous round)."""
    started = _first(entries, "watch.started")
    if started is None:
        return None
    finished = _last(entries, "watch.finished")
    rounds: list[dict[str, Any]] = []
    pending: dict[Any, dict[str, Any]] = {}
    for entry in entries:
        data = _data(entry)
        if entry["event"] == "probe.result" and data.get("phase") == "watch":
            pending.setdefault(entry.get("host"), {})["%s/%s" % (entry.get("component"), data.get("probe"))] = {
                "value": data.get("value"), "verdict": data.get("verdict")}
        elif entry["event"] == "watch.round":
            rounds.append({"round": data.get("round"), "host": entry.get("host"), "ts": entry["ts"],
                           "passed": data.get("passed"), "probes": pending.pop(entry.get("host"), {})})
    scheduled = _last(entries, "watch.scheduled")
    return {**_pick(_data(started), ("duration_s", "interval_s", "rounds")), "started_at": started["ts"],
            "finished_at": finished["ts"] if finished else None,
            "reason": _data(finished).get("reason") if finished else None,
            "ended_by": _data(finished).get("ended_by") if finished else None,
            "watcher": _pick(_data(scheduled), ("scheduler", "name", "host")) if scheduled else None,
            "round_results": rounds}


def snapshot_section(entries: list[Entry]) -> dict[str, Any] | None:
    """The run's own snapshot, or for a rollback run the snapshot its data audit compared with."""
    created = _last(entries, "snapshot.created")
    if created is not None:
        return _section(created, SNAPSHOT_FIELDS)
    audited = _data(_last(entries, "data.audited")).get("snapshot")
    return _pick(audited, SNAPSHOT_FIELDS) if audited else None


def component_rows(entries: list[Entry]) -> list[dict[str, Any]]:
    """One row per (component, host) in order of first appearance.

    from/to come from the FIRST switch of the run (the direction the run moved the component; a rollback
    in the same run switches back and shows in ``state``), falling back to the first deploy.
    """
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    release_sources: dict[tuple[str, str | None], str] = {}
    for entry in entries:
        if entry["event"] not in COMPONENT_EVENTS or not entry.get("component"):
            continue
        key = (entry["component"], entry.get("host"))
        row = rows.setdefault(key, {"name": key[0], "host": key[1], "from_release": None, "to_release": None,
                                    "state": None})
        data = _data(entry)
        if entry["event"] == "component.state":
            row["state"] = data.get("state")
        elif _takes_releases(release_sources.get(key), entry["event"]):
            row.update(from_release=data.get("from_release"), to_release=data.get("to_release"))
            release_sources[key] = entry["event"]
    return list(rows.values())


def _takes_releases(current_source: str | None, event: str) -> bool:
    """A first switch beats any deploy; otherwise the first event that names releases wins."""
    return current_source is None or (current_source == "component.deploying" and event == "component.switched")


def probe_row(entry: Entry) -> dict[str, Any]:
    return {"component": entry.get("component"), "host": entry.get("host"), **_pick(_data(entry), PROBE_FIELDS)}


def rollback_section(entries: list[Entry]) -> dict[str, Any] | None:
    """Trigger of the first rollback.triggered; per step, the hosts' LAST attempts merged.

    Every host journals each step it ran; a step is failed when any host's last attempt failed (a rerun after
    a crash overrides that host's earlier attempt), and spans the earliest start to the latest end.
    """
    triggered = _first(entries, "rollback.triggered")
    attempts: dict[int, dict[Any, Entry]] = {}
    for entry in entries:
        if entry["event"] == "rollback.step":
            step = _step_number(_data(entry).get("step"))
            if step is not None:
                attempts.setdefault(step, {})[entry.get("host")] = entry
    if triggered is None and not attempts:
        return None
    steps = [merge_step(step, [_data(entry) for entry in attempts[step].values()]) for step in sorted(attempts)]
    by_host: dict[Any, list[dict[str, Any]]] = {}
    for step in sorted(attempts):
        for host, entry in attempts[step].items():
            by_host.setdefault(host, []).append({"step": step, **_pick(_data(entry), STEP_FIELDS)})
    return {"trigger": _data(triggered).get("trigger") if triggered else None, "steps": steps, "hosts": by_host}


def merge_step(step: int, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [attempt for attempt in attempts if attempt.get("status") != "ok"]
    details = list(dict.fromkeys(attempt.get("detail") for attempt in (failed or attempts) if attempt.get("detail")))
    starts = [attempt["started_at"] for attempt in attempts if attempt.get("started_at")]
    ends = [attempt["ended_at"] for attempt in attempts if attempt.get("ended_at")]
    return {
        "step": step,
        "name": attempts[0].get("name"),
        "status": failed[0].get("status") if failed else "ok",
        "started_at": min(starts) if starts else None,
        "ended_at": max(ends) if ends else None,
        "detail": "; ".join(details) if details else (attempts[0].get("detail") if attempts else None),
    }


def _step_number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- timeline -------------------------------------------------------------------------------------------

def _moment(lane: str, host: str | None, label: str, at: str | None, status: str | None = None) -> dict[str, Any]:
    return _span(lane, host, label, at, at, status)


def _span(lane: str, host: str | None, label: str, started_at: str | None, ended_at: str | None,
          status: str | None = None) -> dict[str, Any]:
    return {"lane": lane, "host": host, "label": label, "started_at": started_at, "ended_at": ended_at,
            "status": status}


def _events(entries: list[Entry], event: str) -> list[Entry]:
    return [entry for entry in entries if entry["event"] == event]


def timeline_section(entries: list[Entry], run_waves: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What happened when, in the order of the stages: one item per stage and host, wave deploy, watch round,
    rollback step attempt, plus the run's start, abort and end (a moment: ``started_at == ended_at``).

    ``ended_at`` is null while a span never ended; ``status`` is ``ok``, ``failed``, the outcome (run end) or null.
    Spans the journal has no start for (preflight, snapshot) start where the step before them ended.
    """
    started = _first(entries, "run.started")
    return (_run_items(entries, started) + _preflight_items(entries, started) + _snapshot_items(entries, started)
            + _baseline_items(entries) + _deploy_items(entries, run_waves or []) + _watch_items(entries)
            + _trigger_items(entries) + _rollback_step_items(entries) + _audit_items(entries)
            + _finished_items(entries))


def _run_items(entries: list[Entry], started: Entry | None) -> list[dict[str, Any]]:
    items = [_moment("run", None, "started (%s)" % _data(started).get("playbook"), started["ts"])] if started else []
    for aborted in _events(entries, "run.aborted"):
        items.append(_moment("run", None, "aborted in %s on %s: %s" % (
            _data(aborted).get("stage"), aborted.get("host"), _data(aborted).get("message")), aborted["ts"], "failed"))
    return items


def _finished_items(entries: list[Entry]) -> list[dict[str, Any]]:
    finished = _last(entries, "run.finished")
    if finished is None:
        return []
    outcome = _data(finished).get("outcome")
    return [_moment("run", None, "finished: %s - %s" % (outcome, _data(finished).get("message")), finished["ts"],
                    outcome)]


def _preflight_items(entries: list[Entry], started: Entry | None) -> list[dict[str, Any]]:
    items = []
    for checked in _events(entries, "preflight.checked"):
        checks = _data(checked).get("checks") or []
        failed = [check.get("name") for check in checks if isinstance(check, dict) and not check.get("ok")]
        label = "%d checks, failed: %s" % (len(checks), ", ".join(map(str, failed))) if failed else (
            "%d checks passed" % len(checks))
        items.append(_span("preflight", checked.get("host"), label, started["ts"] if started else checked["ts"],
                           checked["ts"], "failed" if failed else "ok"))
    return items


def _snapshot_items(entries: list[Entry], started: Entry | None) -> list[dict[str, Any]]:
    items = []
    for created in _events(entries, "snapshot.created"):
        data = _data(created)
        before = [entry["ts"] for entry in entries if entry["seq"] < created["seq"]
                  and entry["event"] in ("preflight.checked", "run.started")]
        label = "%s: %s keys, %s, %s" % (data.get("id"), data.get("keys"), data.get("mode"),
                                         "verified" if data.get("verified") else "NOT verified")
        items.append(_span("snapshot", created.get("host"), label, before[-1] if before else created["ts"],
                           created["ts"], "ok" if data.get("verified") else "failed"))
    return items


def _baseline_items(entries: list[Entry]) -> list[dict[str, Any]]:
    by_host: dict[Any, list[Entry]] = {}
    for entry in _events(entries, "probe.result"):
        if _data(entry).get("phase") == "baseline":
            by_host.setdefault(entry.get("host"), []).append(entry)
    items = []
    for host, results in by_host.items():
        missed = sum(1 for entry in results if _data(entry).get("verdict") not in PASSING_VERDICTS)
        stamps = sorted(entry["ts"] for entry in results)
        label = ("%d probe results, %d not recorded" % (len(results), missed) if missed
                 else "%d probe results recorded" % len(results))
        items.append(_span("baseline", host, label, stamps[0], stamps[-1], "failed" if missed else "ok"))
    return items


def _deploy_items(entries: list[Entry], run_waves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per deploy of a component on a host: from component.deploying to the component's next state."""
    items = []
    for deploying in _events(entries, "component.deploying"):
        component, host = deploying.get("component"), deploying.get("host")
        state = next((entry for entry in entries if entry["seq"] > deploying["seq"] and entry["event"] ==
                      "component.state" and entry.get("component") == component and entry.get("host") == host), None)
        wave = next((wave for wave in run_waves if wave["component"] == component and host in wave["hosts"]), None)
        state_name = _data(state).get("state") if state else None
        label = "%s%s -> %s, %s" % ("wave %d (%s): " % (wave["index"] + 1, wave["phase"]) if wave else "",
                                     _data(deploying).get("from_release"), _data(deploying).get("to_release"),
                                     "state %s" % state_name if state_name else "never finished")
        items.append(_span("deploy %s" % component, host, label, deploying["ts"], state["ts"] if state else None,
                           DEPLOY_STATUSES.get(state_name)))
    return items


def _watch_items(entries: list[Entry]) -> list[dict[str, Any]]:
    started, finished = _first(entries, "watch.started"), _last(entries, "watch.finished")
    if started is None:
        return []
    reason = _data(finished).get("reason") if finished else None
    label = "%s rounds planned, every %s s; %s" % (_data(started).get("rounds"), _data(started).get("interval_s"),
                                                  "ended: %s" % reason if finished else "never finished")
    items = [_span("watch", None, label, started["ts"], finished["ts"] if finished else None,
                   ("ok" if reason == "window ended" else "failed") if finished else None)]
    round_starts: dict[Any, str] = {}
    for done in _events(entries, "watch.round"):
        host, passed = done.get("host"), _data(done).get("passed")
        items.append(_span("watch rounds", host, "round %s %s" % (_data(done).get("round"),
                                                                  "passed" if passed else "failed"),
                           round_starts.get(host, started["ts"]), done["ts"], "ok" if passed else "failed"))
        round_starts[host] = done["ts"]
    return items


def _trigger_items(entries: list[Entry]) -> list[dict[str, Any]]:
    triggered = _first(entries, "rollback.triggered")
    if triggered is None:
        return []
    trigger = _data(triggered).get("trigger") or {}
    return [_moment("rollback triggered", trigger.get("host") or triggered.get("host"), describe_trigger(trigger),
                    triggered["ts"], "failed")]


def _rollback_step_items(entries: list[Entry]) -> list[dict[str, Any]]:
    """Every attempt of every step on every host (a rerun after a crash shows beside the failed attempt)."""
    attempts = sorted(_events(entries, "rollback.step"), key=lambda entry: _step_number(_data(entry).get("step")) or 0)
    return [_span("rollback step %s %s" % (_data(entry).get("step"), _data(entry).get("name")), entry.get("host"),
                  "%s: %s" % (_data(entry).get("status"), _data(entry).get("detail")), _data(entry).get("started_at"),
                  _data(entry).get("ended_at"), "ok" if _data(entry).get("status") == "ok" else "failed")
            for entry in attempts]


def _audit_items(entries: list[Entry]) -> list[dict[str, Any]]:
    return [_moment("data audit", entry.get("host"), "%s keys before, %s after, %s lost" % (
        _data(entry).get("keys_before"), _data(entry).get("keys_after"), _data(entry).get("lost")), entry["ts"],
        "failed" if _data(entry).get("lost") else "ok") for entry in _events(entries, "data.audited")]


# ---- markdown -------------------------------------------------------------------------------------------

OUTCOME_HEADLINES = {
    "migrated": "MIGRATED - every component runs the new release",
    "rolled_back": "ROLLED BACK - the old release is serving again",
    "failed": "FAILED - needs a human",
    "paused": "PAUSED - a probe could not decide; a human rolls back or goes on",
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """A short summary for the operator on call: outcome first, then why, what, and whether data survived."""
    lines = ["# Cutover run %s: %s" % (report["run_id"], OUTCOME_HEADLINES.get(report["outcome"], report["outcome"])),
             ""]
    lines += _summary_lines(report) + ["", HTML_LINK, ""]
    lines += _trigger_lines(report["rollback"])
    lines += ["## Components", ""]
    lines += _table(["component", "host", "from", "to", "state"],
                    [[row["name"], row["host"], row["from_release"], row["to_release"], row["state"]]
                     for row in report["components"]]) if report["components"] else ["No component was touched."]
    lines += [""] + _rollback_lines(report["rollback"]) + _watch_lines(report.get("watch"))
    lines += _probe_lines(report["probes"])
    lines += ["## Data", "", _data_line(report["data"]), "", "## Snapshot", "", _snapshot_line(report["snapshot"]), ""]
    return "\n".join(lines)


def _summary_lines(report: dict[str, Any]) -> list[str]:
    if report.get("target_run_id"):
        what = "rollback of run `%s`" % report["target_run_id"]
    else:
        what = "%s to release `%s`" % (report["playbook"] or "unknown playbook", report["target_release"] or "?")
    if report["finished_at"] is None:
        return ["**Outcome: %s** (%s). Started %s; **the run never finished** (no run.finished in the journal): "
                "check the hosts before anything else." % (report["outcome"], what, _cell(report["started_at"]))]
    lines = ["**Outcome: %s** (%s). Started %s, finished %s."
             % (report["outcome"], what, _cell(report["started_at"]), report["finished_at"])]
    if report.get("abort"):
        abort = report["abort"]
        lines += ["", "Stopped at **%s** on %s before anything was changed: %s"
                  % (_cell(abort["stage"]), _cell(abort["host"]), _cell(abort["message"]))]
    elif report.get("message"):
        lines += ["", _cell(report["message"])]
    return lines


def _trigger_lines(rollback: dict[str, Any] | None) -> list[str]:
    if rollback is None:
        return []
    trigger = rollback["trigger"] or {}
    where = " on %s" % _cell(trigger["host"]) if trigger.get("host") else ""
    if trigger.get("probe"):
        text = "Probe `%s` of component `%s`%s: value **%s** vs baseline %s (threshold %s)." % (
            _cell(trigger["probe"]), _cell(trigger.get("component")), where, _cell(trigger.get("value")),
            _cell(trigger.get("baseline")), _cell(trigger.get("threshold")))
    elif trigger.get("reason"):
        about = " (component `%s`%s)" % (_cell(trigger["component"]), where) if trigger.get("component") else where
        text = "Reason given%s: %s" % (about, _cell(trigger["reason"]))
    else:
        text = "No trigger recorded."
    return ["## Rollback trigger", "", text, ""]


def _rollback_lines(rollback: dict[str, Any] | None) -> list[str]:
    if rollback is None:
        return []
    by_step = {step["step"]: step for step in rollback["steps"]}
    rows = [[number] + [by_step[number].get(field) for field in STEP_FIELDS] if number in by_step
            else [number, "-", "**not recorded**", None, None, None]
            for number in sorted(set(ROLLBACK_STEPS) | set(by_step))]
    return ["## Rollback steps", ""] + _table(["step", "name", "status", "started", "ended", "detail"], rows) + [""]


def _watch_lines(watch: dict[str, Any] | None) -> list[str]:
    if watch is None:
        return []
    ended = ("ended %s (%s)" % (watch["finished_at"], _cell(watch["reason"])) if watch["finished_at"]
             else "**not ended** (no watch.finished)")
    watcher = watch.get("watcher")
    by = (" Rounds run by the scheduled watcher %s (%s on %s), not by the migrate."
          % (watcher["name"], watcher["scheduler"], watcher["host"]) if watcher else "")
    head = ["## Watch", "", "Window of %s s, a round every %s s (%s planned); started %s, %s.%s"
            % (_cell(watch.get("duration_s")), _cell(watch.get("interval_s")), _cell(watch.get("rounds")),
               watch["started_at"], ended, by), ""]
    if not watch["round_results"]:
        return head + ["No round recorded.", ""]
    rows = [[result["round"], result["host"], result["ts"], "passed" if result["passed"] else "**failed**",
             ", ".join("%s %s (%s)" % (name, _cell(probe["value"]), probe["verdict"])
                       for name, probe in sorted(result["probes"].items())
                       if probe["verdict"] not in PASSING_VERDICTS or not result["passed"])
             or "%d probes passed" % len(result["probes"])]
            for result in watch["round_results"]]
    return head + _table(["round", "host", "time", "result", "probes"], rows) + [""]


def _probe_lines(probes: list[dict[str, Any]]) -> list[str]:
    bad = [probe for probe in probes if probe["verdict"] not in PASSING_VERDICTS]
    if not probes:
        return ["## Probes", "", "No probe results recorded.", ""]
    if not bad:
        return ["## Probes", "", "%d probe results, none failed." % len(probes), ""]
    rows = [[probe["component"], probe["host"], probe["probe"], probe["phase"], probe["verdict"], probe["value"],
             probe["baseline"], probe["threshold"]] for probe in bad]
    return (["## Probes", "", "%d of %d probe results failed or errored:" % (len(bad), len(probes)), ""]
            + _table(["component", "host", "probe", "phase", "verdict", "value", "baseline", "threshold"], rows) + [""])


def _data_line(data: dict[str, Any] | None) -> str:
    if data is None:
        return "No data audit recorded: compare key counts against the snapshot before trusting the cache."
    if data["lost"]:
        return "**DATA LOSS: %s keys lost** (%s keys before, %s after)." % (
            _cell(data["lost"]), _cell(data["keys_before"]), _cell(data["keys_after"]))
    return "No keys lost (%s keys before, %s after)." % (_cell(data["keys_before"]), _cell(data["keys_after"]))


def _snapshot_line(snapshot: dict[str, Any] | None) -> str:
    if snapshot is None:
        return "**No snapshot recorded.**"
    verified = "verified" if snapshot["verified"] else "**NOT verified**"
    return "`%s`: %s keys, sha256 `%s`, %s." % (_cell(snapshot["id"]), _cell(snapshot["keys"]),
                                                _cell(snapshot["sha256"]), verified)
