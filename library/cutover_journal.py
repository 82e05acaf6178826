#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_journal
short_description: Append to, read, or list cutover run journals
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
      - Required unless O(state=list).
    type: str
  state:
    description:
      - V(append) adds one entry; V(read) returns the run's entries; V(list) summarises every run in O(path).
    type: str
    choices: [append, read, list]
    default: append
  event:
    description:
      - Dotted lower-case event name, e.g. V(run.started), V(component.switched), V(rollback.step).
      - The events the report understands are listed in C(docs/ARCHITECTURE.md).
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
        description: Dotted lower-case event name.
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
notes:
  - Check mode is supported. With O(state=append) it reports C(changed=true) and the entry it would write, and writes
    nothing.
  - O(state=read) and O(state=list) never change anything.
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
      - {event: probe.result, component: tts, data: {probe: tts_cached_latency_ms, phase: canary, verdict: pass}}
      - {event: probe.result, component: tts, data: {probe: tts_health, phase: canary, verdict: pass}}
  delegate_to: "{{ cutover_journal_host }}"

- name: Read the journal for the report
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    state: read
  register: cutover_journal_read
  delegate_to: "{{ cutover_journal_host }}"

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
  sample:
    - {run_id: 20261125T222114Z, playbook: migrate, target_release: migrated, started_at: "2026-11-25T22:21:14.123Z",
       finished: true, outcome: rolled_back, target_run_id: null}
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
from ansible.module_utils.cutover_report import build_report
from ansible.module_utils.cutover_journal import (
    EVENT_PATTERN, RUN_ID_PATTERN, append_entries, build_entries, journal_file, list_runs, next_seq, read_journal,
    redact,
)


def requested_events(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The events to append: the one given by event/data, or each item of entries (host/component defaulted)."""
    if params["entries"] is None:
        return [{"event": params["event"], "host": params["host"], "component": params["component"],
                 "data": params["data"]}]
    return [{"event": item["event"], "host": item["host"] or params["host"],
             "component": item["component"] or params["component"], "data": item["data"]}
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


def read(module: AnsibleModule, directory: str, run_id: str) -> dict[str, Any]:
    path = journal_file(directory, run_id)
    if not os.path.exists(path):
        return {"changed": False, "path": path, "exists": False, "entries": [], "report": None}
    entries, warnings = read_journal(path)
    for warning in warnings:
        module.warn("journal %s: %s" % (path, warning))
    return {"changed": False, "path": path, "exists": True, "entries": entries,
            "report": build_report(entries) if entries else None}


def list_all(module: AnsibleModule, directory: str) -> dict[str, Any]:
    runs, warnings = list_runs(directory)
    for warning in warnings:
        module.warn("journal %s" % warning)
    return {"changed": False, "path": directory, "runs": runs}


def event_names(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(option name, event) pairs to validate, e.g. ('entries[2].event', 'probe.result')."""
    if params["entries"] is None:
        return [("event", params["event"])]
    return [("entries[%d].event" % index, item["event"]) for index, item in enumerate(params["entries"])]


def validate(module: AnsibleModule) -> None:
    params = module.params
    if params["run_id"] is not None and not RUN_ID_PATTERN.match(params["run_id"]):
        module.fail_json(msg="run_id %r is not a run id: expected a UTC timestamp like 20261125T222114Z, optionally "
                             "followed by -<lower-case letters/digits>" % params["run_id"])
    if params["state"] == "append":
        for name, event in event_names(params):
            if not EVENT_PATTERN.match(event):
                module.fail_json(msg="%s %r is not a dotted lower-case event name like 'run.started' or "
                                     "'rollback.step'" % (name, event))
    if os.path.exists(params["path"]) and not os.path.isdir(params["path"]):
        module.fail_json(msg="path %s exists and is not a directory: it must be the journal directory" % params["path"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "run_id": {"type": "str"},
            "state": {"type": "str", "choices": ["append", "read", "list"], "default": "append"},
            "event": {"type": "str"},
            "component": {"type": "str"},
            "host": {"type": "str"},
            "data": {"type": "dict", "default": {}},
            "entries": {"type": "list", "elements": "dict", "options": {
                "event": {"type": "str", "required": True},
                "component": {"type": "str"},
                "host": {"type": "str"},
                "data": {"type": "dict", "default": {}},
            }},
        },
        required_if=[("state", "append", ["run_id"]), ("state", "append", ["event", "entries"], True),
                     ("state", "read", ["run_id"])],
        mutually_exclusive=[("event", "entries")],
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
        else:
            result = list_all(module, directory)
    except OSError as exc:
        module.fail_json(msg="journal %s: %s" % (directory, exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
