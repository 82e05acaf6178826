#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_report
short_description: Write the report of a cutover run from its journal
description:
  - Builds the report of one run from its journal entries (as returned by M(cutover_journal) with C(state=read)) and
    writes C(<dest>/<run_id>/report.json), the human summary C(<dest>/<run_id>/report.md) beside it, and
    C(<dest>/<run_id>/report.html), linked from report.md.
  - report.html is one self-contained page (inline CSS and SVG, no script, no external resource) with the run's
    timeline (stages, each wave's deploy per host, watch rounds, the trigger, each rollback step per host, the
    outcome) and one plot per probe of its values across the phases baseline, canary, verify, watch and rollback, per
    host, with the threshold where it is a number. Every journal value is escaped.
  - Then points C(<dest>/latest) at C(<run_id>) (a relative symlink).
  - Every file and the symlink are replaced atomically (temporary file or link in the same directory, C(fsync),
    rename), so a reader sees the old report or the new one, never half of one. The same content is not rewritten.
  - The report's fields are listed in C(docs/ARCHITECTURE.md). Secret-looking values that reached the journal are
    masked again before anything is written, the page included.
  - Runs on the controller (C(delegate_to=localhost)).
version_added: "1.0.0"
author: cutover maintainers
options:
  entries:
    description: The run's journal entries, e.g. C(cutover_journal_read.entries). Every entry must belong to O(run_id).
    type: list
    elements: dict
    required: true
  dest:
    description: Reports directory, e.g. C({{ playbook_dir }}/../reports). Created if missing.
    type: path
    required: true
  run_id:
    description: The run the report is about, e.g. C(20261125T222114Z).
    type: str
    required: true
notes:
  - Check mode is supported; it reports whether the report or C(latest) would change and writes nothing.
"""

EXAMPLES = r"""
- name: Read the run journal
  cutover_journal:
    path: "{{ cutover_state_dir }}/journal"
    run_id: "{{ cutover_run_id }}"
    state: read
  register: cutover_journal_read
  delegate_to: "{{ cutover_journal_host }}"

- name: Write the run report
  cutover_report:
    entries: "{{ cutover_journal_read.entries }}"
    dest: "{{ playbook_dir }}/../reports"
    run_id: "{{ cutover_run_id }}"
  delegate_to: localhost
  register: cutover_report_result

- name: Tell the operator
  ansible.builtin.debug:
    msg: "{{ cutover_report_result.report.outcome }}: see {{ cutover_report_result.html_path }}"
"""

RETURN = r"""
report:
  description: The report (the content of report.json).
  returned: success
  type: dict
  sample:
    run_id: 20261125T222114Z
    playbook: migrate
    outcome: rolled_back
    started_at: "2026-11-25T22:21:14.123Z"
    finished_at: "2026-11-25T22:24:02.811Z"
    target_release: migrated
    components:
      - {name: tts, host: toy1, from_release: legacy, to_release: migrated, state: rolled_back}
    probes:
      - {component: tts, host: toy1, probe: tts_cached_latency_ms, phase: canary, verdict: fail, value: 412.0,
         baseline: 38.5, threshold: 3.0}
    rollback:
      trigger: {component: tts, probe: tts_cached_latency_ms, value: 412.0, baseline: 38.5, threshold: 3.0}
      steps:
        - {step: 1, name: detect, status: ok, started_at: "2026-11-25T22:23:01.002Z",
           ended_at: "2026-11-25T22:23:01.010Z"}
    snapshot: {id: 20261125T222114Z-redis, keys: 1200, sha256: 9f2c..., verified: true}
    data: {keys_before: 1200, keys_after: 1200, lost: 0}
    timeline:
      - {lane: deploy tts, host: toy1, label: "wave 1 (canary): legacy -> migrated, state failed",
         started_at: "2026-11-25T22:22:40.120Z", ended_at: "2026-11-25T22:23:00.950Z", status: failed}
path:
  description: The report.json file.
  returned: success
  type: str
  sample: /srv/cutover/reports/20261125T222114Z/report.json
markdown_path:
  description: The report.md file.
  returned: success
  type: str
  sample: /srv/cutover/reports/20261125T222114Z/report.md
html_path:
  description: The report.html file (timeline and probe plots).
  returned: success
  type: str
  sample: /srv/cutover/reports/20261125T222114Z/report.html
latest:
  description: The C(latest) symlink.
  returned: success
  type: str
  sample: /srv/cutover/reports/latest
"""

import json
import os
import secrets
import tempfile
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_journal import RUN_ID_PATTERN, fsync_dir, redact
from ansible.module_utils.cutover_report import build_report, render_markdown
from ansible.module_utils.cutover_report_html import render_html

FILE_MODE = 0o640
DIR_MODE = 0o750
LATEST = "latest"


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    fd, temp_path = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
    except BaseException:
        os.unlink(temp_path)
        raise
    fsync_dir(directory)


def point_latest(dest: str, run_id: str) -> None:
    """Swap <dest>/latest to the run dir: a new relative symlink renamed over the old one."""
    temp_link = os.path.join(dest, ".%s.%s" % (LATEST, secrets.token_hex(6)))
    os.symlink(run_id, temp_link)
    try:
        os.replace(temp_link, os.path.join(dest, LATEST))
    except BaseException:
        os.unlink(temp_link)
        raise
    fsync_dir(dest)


def ensure_dir(path: str) -> None:
    if not os.path.isdir(path):
        os.makedirs(path, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # makedirs' mode is filtered by the umask


def publish(dest: str, run_id: str, files: dict[str, str], check_mode: bool) -> dict[str, Any]:
    """Write the files that differ and move latest; return {changed, diff}."""
    run_dir = os.path.join(dest, run_id)
    stale = {path: text for path, text in files.items() if read_text(path) != text}
    latest = os.path.join(dest, LATEST)
    previous_target = os.readlink(latest) if os.path.islink(latest) else None
    changed = bool(stale) or previous_target != run_id
    diff = {"before": {"latest": previous_target, "files_changed": sorted(stale)},
            "after": {"latest": run_id, "files_changed": sorted(stale)}}
    if check_mode or not changed:
        return {"changed": changed, "diff": diff}
    ensure_dir(dest)
    ensure_dir(run_dir)
    for path, text in stale.items():
        write_atomic(path, text)
    if previous_target != run_id:
        point_latest(dest, run_id)
    return {"changed": True, "diff": diff}


def validate(module: AnsibleModule) -> None:
    params = module.params
    run_id = params["run_id"]
    if not RUN_ID_PATTERN.match(run_id):
        module.fail_json(msg="run_id %r is not a run id: expected a UTC timestamp like 20261125T222114Z, optionally "
                             "followed by -<lower-case letters/digits>" % run_id)
    if not params["entries"]:
        module.fail_json(msg="entries is empty: the journal of run %s holds nothing to report (was it read from the "
                             "journal host, with cutover_journal state=read?)" % run_id)
    for index, entry in enumerate(params["entries"]):
        if not isinstance(entry.get("seq"), int) or not isinstance(entry.get("event"), str):
            module.fail_json(msg="entries[%d] is not a journal entry: it needs an integer 'seq' and a string 'event'"
                                 % index)
        if entry.get("run_id") not in (None, run_id):
            module.fail_json(msg="entries[%d] belongs to run %s, not to run_id %s: pass the entries of one run"
                                 % (index, entry["run_id"], run_id))
    latest = os.path.join(params["dest"], LATEST)
    if os.path.lexists(latest) and not os.path.islink(latest):
        module.fail_json(msg="%s exists and is not a symlink; move it away so the report can point it at the latest "
                             "run" % latest)
    if os.path.exists(params["dest"]) and not os.path.isdir(params["dest"]):
        module.fail_json(msg="dest %s exists and is not a directory" % params["dest"])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "entries": {"type": "list", "elements": "dict", "required": True},
            "dest": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    validate(module)
    dest, run_id = module.params["dest"], module.params["run_id"]
    found_secrets: set[str] = set()
    entries = redact(module.params["entries"], found_secrets)
    report = build_report(entries, run_id=run_id)
    # Keep secrets found in the entries out of the echoed module arguments as well.
    module.no_log_values.update(found_secrets)
    json_path = os.path.join(dest, run_id, "report.json")
    markdown_path = os.path.join(dest, run_id, "report.md")
    html_path = os.path.join(dest, run_id, "report.html")
    files = {json_path: json.dumps(report, indent=2, ensure_ascii=False) + "\n",
             markdown_path: render_markdown(report),
             html_path: render_html(report, entries)}
    try:
        result = publish(dest, run_id, files, module.check_mode)
    except OSError as exc:
        module.fail_json(msg="writing the report of run %s under %s: %s" % (run_id, dest, exc),
                         exception=traceback.format_exc())
    module.exit_json(report=report, path=json_path, markdown_path=markdown_path, html_path=html_path,
                     latest=os.path.join(dest, LATEST), **result)


if __name__ == "__main__":
    main()
