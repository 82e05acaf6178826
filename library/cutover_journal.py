#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_journal
short_description: Append to, read, list cutover run journals, and say where a run stands
description:
  - Keeps the run journal of a cutover run as append-only JSON lines in C(<path>/<run_id>.jsonl), one line per event
    (C({"seq", "ts", "run_id", "event", "host", "component", "data"})).
  - Runs on the journal host. Several hosts and forks may append to one journal at the same time; each append takes an
    exclusive C(flock) on the journal, numbers the entry one past the last one, writes a single line and C(fsync)s it.
  - The journal is never rewritten or truncated. A line cut short by a crash is reported in RV(warnings) on read and
    skipped; the next append starts on a new line, so no earlier entry is lost.
  - Before an entry is written, the values of keys whose name contains C(password), C(passwd), C(secret) or C(token)
    are replaced by C(********), and so are credentials inside URLs (C(redis://user:pw@host) becomes
    C(redis://********@host)). Masked values are also kept out of the module's own output and logs.
  - The journal directory is created with mode C(0700), journal files with mode C(0600).
  - Every entry must fit the journal schema (C(module_utils/cutover_events.py), rendered in C(docs/ARCHITECTURE.md));
    an unknown event, an unknown or missing field, or a field of the wrong type is refused, naming the event and the
    field, and nothing is appended.
  - O(state=status) computes, from the journal alone, where a run stands (C(module_utils/cutover_run.py)) - its stage,
    plan, rollout waves, per host the components, releases, baselines and rollback progress, the trigger and the
    outcome. Every play of cutover starts from it. O(state=finished) closes a run with the outcome its journal proves.
version_added: "1.0.0"
author: cutover maintainers
options:
  path:
    description: Directory holding the journals, normally C(<cutover_state_dir>/journal).
    type: path
    required: true
  run_id:
    description:
      - The run whose journal to use, a UTC timestamp C(%Y%m%dT%H%M%SZ) with an optional lower-case suffix
        (C(20261125T222114Z) or C(20261125T222114Z-rollback)).
      - Required unless O(state=list), or O(state=status) with O(select).
    type: str
  state:
    description:
      - V(append) adds one entry; V(read) returns the run's entries; V(list) summarises every run in O(path).
      - V(status) returns where the run stands (RV(status)); V(finished) appends C(run.finished) with the outcome
        the journal proves (unless the run already finished) and returns RV(status).
    type: str
    choices: [append, read, list, status, finished]
    default: append
  select:
    description:
      - With O(state=status) and no O(run_id), which run to describe. V(newest_migrate) is the newest migrate run
        (what C(rollback.yml) rolls back by default); V(newest_unfinished) the newest run without C(run.finished);
        V(newest_watching) the newest run whose scheduled watch is open (it holds a lease, see RV(runs)).
      - The status of a run that does not exist fails, naming the runs that do.
    type: str
    choices: [newest_migrate, newest_unfinished, newest_watching]
  planned:
    description:
      - Check mode only - the C(run.started) data the guard would have journaled. A dry run journals nothing, so
        O(state=status) describes the run as if that entry had been written.
    type: dict
  event:
    description:
      - An event of the journal schema, e.g. V(run.started), V(component.switched), V(rollback.step); every event
        and its fields are listed in C(docs/ARCHITECTURE.md) (rendered from C(module_utils/cutover_events.py)).
      - With O(state=append), give either O(event) or O(entries).
    type: str
  component:
    description:
      - Component the event is about; omit for run-wide events.
      - With O(entries), the default for items that name no component.
    type: str
  host:
    description:
      - Inventory host the event is about (usually C(inventory_hostname)); omit for run-wide events.
      - With O(entries), the default for items that name no host.
    type: str
  data:
    description: Event payload. Secret-looking values are masked before anything is written.
    type: dict
    default: {}
  entries:
    description:
      - Several events to append at once, instead of O(event), O(data). They get contiguous seq numbers and are
        written with one write and one C(fsync), so no other append lands between them.
      - An empty list appends nothing (C(changed=false)).
    type: list
    elements: dict
    suboptions:
      event:
        description: An event of the journal schema.
        type: str
        required: true
      component:
        description: Component the event is about.
        type: str
      host:
        description: Inventory host the event is about.
        type: str
      data:
        description: Event payload, masked like O(data).
        type: dict
        default: {}
      ts:
        description:
          - When the event happened (UTC, C(2026-11-25T22:21:14.123Z)), as the module that saw it on its host
            recorded it. Defaults to the time of the append.
        type: str
notes:
  - Check mode is supported. With O(state=append) it reports C(changed=true) and the entry it would write, and writes
    nothing.
  - O(state=read), O(state=list) and O(state=status) never change anything.
  - Appends are serialised with C(flock), which needs a local file system (not NFS without lock support).
"""

EXAMPLES = r"""
- name: Open the run journal
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    event: run.started
    data:
      playbook: migrate
      target_release: migrated
      components: [monitoring, safety, security, ai, tts, validator]
      controller: "{{ lookup('pipe', 'hostname') }}"
      user: "{{ lookup('env', 'USER') }}"
  delegate_to: "{{ cutover_journal_host }}"

- name: Record that a component switched release
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    event: component.switched
    component: tts
    host: "{{ inventory_hostname }}"
    data: {from_release: legacy, to_release: migrated}
  delegate_to: "{{ cutover_journal_host }}"

- name: Journal every probe result of this host in one append
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    host: "{{ inventory_hostname }}"
    entries:
      - {event: probe.result, component: tts, data: {probe: hit_ratio, phase: canary, verdict: pass, value: 1.0,
                                                      baseline: 1.0, threshold: ">= 0.95", critical: true}}
      - {event: component.state, component: tts, data: {state: migrated, release: migrated}}
  delegate_to: "{{ cutover_journal_host }}"

- name: Read the journal for the report
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    state: read
  register: cutover_journal_read
  delegate_to: "{{ cutover_journal_host }}"

- name: Ask the journal where the run stands
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    state: status
  register: cutover_status
  delegate_to: "{{ cutover_journal_host }}"
  run_once: true

- name: List earlier runs (newest first), e.g. to pick the run to roll back
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    state: list
  register: cutover_runs
"""

RETURN = r"""
path:
  description: The journal file (V(append), V(read)) or the journal directory (V(list)).
  returned: always
  type: str
  sample: /var/lib/cutover/journal/20261125T222114Z.jsonl
entry:
  description: The entry appended (in check mode, the entry that would have been appended), after masking.
  returned: state=append
  type: dict
  sample:
    seq: 7
    ts: "2026-11-25T22:21:14.123Z"
    run_id: 20261125T222114Z
    event: component.switched
    host: toy1
    component: tts
    data: {from_release: legacy, to_release: migrated}
appended:
  description: The entries appended with O(entries) (in check mode, the entries that would have been appended).
  returned: state=append with entries
  type: list
  elements: dict
exists:
  description: Whether the run's journal file exists.
  returned: state=read
  type: bool
entries:
  description: The run's entries in seq order; lines that are not complete entries are skipped and reported in warnings.
  returned: state=read
  type: list
  elements: dict
report:
  description:
    - The run summarised from its entries alone, as in C(reports/<run-id>/report.json) (see cutover_report);
      null when the journal is missing or empty. The rollback reads what to restore from RV(report.components).
  returned: state=read
  type: dict
runs:
  description: One summary per journal in O(path), newest run first.
  returned: state=list
  type: list
  elements: dict
  contains:
    run_id: {description: The run id., type: str}
    playbook: {description: V(migrate) or V(rollback), from C(run.started); null if the run never started., type: str}
    target_release: {description: Release the run moved to, from C(run.started)., type: str}
    started_at: {description: Time of C(run.started)., type: str}
    finished: {description: Whether the journal holds C(run.finished)., type: bool}
    outcome: {description: Outcome from C(run.finished); null while unfinished., type: str}
    target_run_id: {description: For a rollback run, the run it rolled back., type: str}
    lease:
      description:
        - "While a migrate run's scheduled watch is open: C({run_id, components, until, watcher}); a migrate of any of
          those components is refused until the window ends (C(until)) or the watch is stopped. Null otherwise."
      type: dict
  sample:
    - {run_id: 20261125T222114Z, playbook: migrate, target_release: migrated, started_at: "2026-11-25T22:21:14.123Z",
       finished: true, outcome: rolled_back, target_run_id: null, lease: null}
status:
  description:
    - Where the run stands, computed from its journal (for a rollback run, also from the journal of the run it rolls
      back). Keys C(run_id), C(exists), C(playbook), C(target_release), C(target_run_id), C(started_at), C(stage)
      (V(started), V(preflight), V(snapshot), V(baseline), V(rollout), V(watch), V(rollback), V(finished)),
      C(plan) (component names), C(hosts) (component to hosts), C(waves) (C({index, component, batch, hosts, phase})
      in rollout order, canary first), C(redis_host), C(journal_host), C(aborted), C(trigger), C(snapshot),
      C(rollout_complete), C(watch), C(rollback) (C({hosts, failed, complete, next_step, components}) or null),
      C(host_view) (per host C({components, releases, baselines, rollback})), C(touched) (components a rollback would
      switch back, in plan order), C(finished), C(outcome) (null while undecided), C(message), C(resume)
      (C({action, why}) - what C(playbooks/resume.yml) does to finish the run - V(none), V(close), V(abort),
      V(rollback) or V(watch)), C(lease) (as in RV(runs)) and C(watch_next).
    - "C(watch) is null before the watch window, else C({duration_s, interval_s, rounds, scheduled, started_at,
      ends_at, watcher, retired, finished, ended_by, finish_reason, rounds_done}); C(watch_next) is what one call of
      C(playbooks/watch.yml) does now: C({action, round, due_at, wait_s, why}) with action V(round), V(finish),
      V(close), V(rollback), V(retire) or V(none)."
  returned: state=status or state=finished
  type: dict
warnings:
  description: Torn or unreadable journal lines found while reading (as Ansible warnings).
  returned: when there are any
  type: list
  elements: str
"""

import os
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import EventError, event_problems
from ansible.module_utils.cutover_report import build_report
from ansible.module_utils.cutover_journal import (
    RUN_ID_PATTERN, append_entries, build_entries, journal_file, list_runs, next_seq, read_journal, redact,
)
from ansible.module_utils.cutover_run import closing_outcome, run_state


def requested_events(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The events to append: the one given by event/data, or each item of entries (host/component defaulted)."""
    if params["entries"] is None:
        return [{"event": params["event"], "host": params["host"], "component": params["component"],
                 "data": params["data"]}]
    return [{"event": item["event"], "host": item["host"] or params["host"],
             "component": item["component"] or params["component"], "data": item["data"], "ts": item["ts"]}
            for item in params["entries"]]


def append(module: AnsibleModule, directory: str, run_id: str) -> dict[str, Any]:
    secrets: set[str] = set()
    events = [dict(event, data=redact(event["data"], secrets)) for event in requested_events(module.params)]
    # A secret handed in by mistake must not reappear in this module's result or its syslog line either.
    module.no_log_values.update(secrets)
    path = journal_file(directory, run_id)
    if not events:
        appended: list[dict[str, Any]] = []
    elif module.check_mode:
        appended = build_entries(next_seq(path), run_id, events)
    else:
        appended = append_entries(directory, run_id, events)
    if module.params["entries"] is None:
        return {"changed": True, "path": path, "entry": appended[0]}
    return {"changed": bool(appended), "path": path, "appended": appended}


def read_entries(module: AnsibleModule, directory: str, run_id: str | None) -> list[dict[str, Any]]:
    """The run's entries ([] when it has no journal), warning about torn lines."""
    path = journal_file(directory, run_id) if run_id else None
    if path is None or not os.path.exists(path):
        return []
    entries, warnings = read_journal(path)
    for warning in warnings:
        module.warn("journal %s: %s" % (path, warning))
    return entries


def target_entries(module: AnsibleModule, directory: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a rollback run, the journal of the run it rolls back."""
    started = next((entry for entry in entries if entry["event"] == "run.started"), None)
    target = ((started or {}).get("data") or {}).get("target_run_id")
    return read_entries(module, directory, target) if target else []


def read(module: AnsibleModule, directory: str, run_id: str) -> dict[str, Any]:
    path = journal_file(directory, run_id)
    entries = read_entries(module, directory, run_id)
    report = build_report(entries, target_entries=target_entries(module, directory, entries)) if entries else None
    return {"changed": False, "path": path, "exists": os.path.exists(path), "entries": entries, "report": report}


SELECTED = {"newest_migrate": "migrate", "newest_unfinished": "unfinished",
            "newest_watching": "watched (unfinished, with a scheduled watch open)"}


def selected_run(module: AnsibleModule, directory: str) -> str:
    """The run O(run_id) names, or the newest one O(select) asks for; fails naming the runs there are."""
    run_id, select = module.params["run_id"], module.params["select"]
    runs, _warnings = list_runs(directory)
    if run_id:
        return run_id
    wanted = [run for run in runs
              if (select == "newest_migrate" and run["playbook"] == "migrate")
              or (select == "newest_unfinished" and not run["finished"])
              or (select == "newest_watching" and run["lease"])]
    if not wanted:
        module.fail_json(msg="no %s run in the journal %s; runs there, newest first: %s" % (
            SELECTED[select], directory,
            ", ".join("%s (%s, %s)" % (run["run_id"], run["playbook"], run["outcome"] or "unfinished")
                      for run in runs) or "none"))
    return wanted[0]["run_id"]


def status(module: AnsibleModule, directory: str) -> dict[str, Any]:
    run_id = selected_run(module, directory)
    entries = read_entries(module, directory, run_id)
    if not entries and module.params["planned"] and module.check_mode:
        entries = build_entries(1, run_id, [{"event": "run.started", "data": module.params["planned"]}])
    if not entries:
        module.fail_json(msg="run %s has no journal in %s (a run id from an earlier run's refusal, or a typo?); "
                             "runs there: %s" % (run_id, directory,
                                                 ", ".join(run["run_id"] for run in list_runs(directory)[0]) or "none"))
    state = run_state(entries, target_entries(module, directory, entries))
    state["run_id"] = run_id
    return {"changed": False, "path": journal_file(directory, run_id), "status": state}


def finish(module: AnsibleModule, directory: str) -> dict[str, Any]:
    """Append run.finished with the outcome the journal proves (once) and return the closed run's status."""
    result = status(module, directory)
    state = result["status"]
    if state["finished"]:
        return result
    outcome, message = closing_outcome(state)
    event = {"event": "run.finished", "data": {"outcome": outcome, "message": message}}
    if not module.check_mode:
        append_entries(directory, state["run_id"], [event])
    state.update(finished=True, outcome=outcome, message=message, stage="finished")
    return dict(result, changed=True)


def list_all(module: AnsibleModule, directory: str) -> dict[str, Any]:
    runs, warnings = list_runs(directory)
    for warning in warnings:
        module.warn("journal %s" % warning)
    return {"changed": False, "path": directory, "runs": runs}


def validate(module: AnsibleModule) -> None:
    params = module.params
    if params["run_id"] is not None and not RUN_ID_PATTERN.match(params["run_id"]):
        module.fail_json(msg="run_id %r is not a run id: expected a UTC timestamp like 20261125T222114Z, optionally "
                             "followed by -<lower-case letters/digits>" % params["run_id"])
    if params["state"] in ("status", "finished") and not (params["run_id"] or params["select"]):
        module.fail_json(msg="state=%s needs run_id or select" % params["state"])
    if params["state"] == "append":
        problems = [problem for event in requested_events(params)
                    for problem in event_problems(event["event"], event["data"])]
        if problems:
            module.fail_json(msg="refused, nothing appended: " + "; ".join(problems))
    if os.path.exists(params["path"]) and not os.path.isdir(params["path"]):
        module.fail_json(msg="path %s exists and is not a directory: it must be the journal directory" % params["path"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "run_id": {"type": "str"},
            "state": {"type": "str", "choices": ["append", "read", "list", "status", "finished"], "default": "append"},
            "select": {"type": "str", "choices": list(SELECTED)},
            "planned": {"type": "dict"},
            "event": {"type": "str"},
            "component": {"type": "str"},
            "host": {"type": "str"},
            "data": {"type": "dict", "default": {}},
            "entries": {"type": "list", "elements": "dict", "options": {
                "event": {"type": "str", "required": True},
                "component": {"type": "str"},
                "host": {"type": "str"},
                "data": {"type": "dict", "default": {}},
                "ts": {"type": "str"},
            }},
        },
        required_if=[("state", "append", ["run_id"]), ("state", "append", ["event", "entries"], True),
                     ("state", "read", ["run_id"])],
        mutually_exclusive=[("event", "entries"), ("run_id", "select")],
        supports_check_mode=True,
    )
    validate(module)
    directory = module.params["path"]
    state = module.params["state"]
    try:
        if state == "append":
            result = append(module, directory, module.params["run_id"])
        elif state == "read":
            result = read(module, directory, module.params["run_id"])
        elif state == "status":
            result = status(module, directory)
        elif state == "finished":
            result = finish(module, directory)
        else:
            result = list_all(module, directory)
    except EventError as exc:
        module.fail_json(msg="refused, nothing appended: %s" % exc)
    except OSError as exc:
        module.fail_json(msg="journal %s: %s" % (directory, exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
