#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_rollback
short_description: Do rollback steps on a host, for all of that host's components at once
description:
  - Carries out steps of cutover's six-step rollback on the managed host, in order, for every component of that host
    the journal says must go back (O(targets)), and returns the journal entries of what it did, with one
    C(rollback.step) entry per step (start, end, status and a detail computed on this host).
  - Step V(1) (detect) reads each target's release registry on this host and checks the release it goes back to is
    installed; on the Redis host it checks the run's snapshot is there (O(snapshot)). Nothing is changed.
  - Step V(2) (stop the application) puts the targets in maintenance mode (C(<app_root>/<component>/MAINTENANCE))
    and stops their services at once, returning when every old process is gone. A target that is back already -
    its C(current) is its previous release and its process started after that link last moved (a second
    rollback of the same run) - keeps serving, neither stopped nor put in maintenance.
  - Step V(3) (restore the old code) switches each target's C(current) back to its previous release and marks the
    release it leaves failed (kept, outside the keep-N count).
  - Step V(5) (quick test) starts the targets' services at once (still in maintenance mode), waits until each answers
    its health check, and runs every target's critical probes at once against the baseline.
  - Step V(6) (resume service) takes the targets out of maintenance mode and records them rolled back.
  - Step 4 (restart Redis, restore data) runs on the Redis host with cutover_redis_restore.
  - Every step is idempotent, so a rollback cut off in the middle can run the step again.
  - A step that fails fails the module and no later step runs; the result still carries RV(journal) with the
    entries of the steps done and the failed C(rollback.step) entry.
version_added: "1.1.0"
author: cutover maintainers
options:
  steps:
    description: The rollback steps to do on this host, in this order (the role groups steps that no hook separates).
    type: list
    elements: int
    required: true
  targets:
    description:
      - What this host rolls back, from the journal (C(status.host_view[host].rollback.targets)) - each
        C({name, from_release, to_release}).
    type: list
    elements: dict
    default: []
  components:
    description:
      - The component specs of the plan (C(cutover_components) normalised by the C(cutover_plan) filter), from which
        the targets take their kind, service, base URL and probes. A target the plan does not know is refused.
    type: list
    elements: dict
    default: []
  app_root:
    description: Host folder of C(<component>/releases), C(current) and C(MAINTENANCE).
    type: path
    required: true
  env_root:
    description: Folder of the shared Python environments (as for cutover_release).
    type: path
  start_timeout:
    description: Seconds each started component has to answer its health check (step 5).
    type: float
    default: 60
  stop_timeout:
    description: Seconds the stopped processes have to be gone (step 2).
    type: float
    default: 30
  baselines:
    description: Component to C({probe, value}) measured before the change, for the quick test (step 5).
    type: dict
    default: {}
  run_id:
    description: The run doing the rollback (written into the maintenance flags).
    type: str
    required: true
  target_run_id:
    description: The migrate run being rolled back (defaults to O(run_id)).
    type: str
  reason:
    description: Why the rollback happens, in one line (the failed probe or the operator's reason).
    type: str
    default: no reason given
  snapshot:
    description:
      - The run's snapshot as journaled (C({id, path, keys, mode})), checked in step 1 on the Redis host.
    type: dict
  restore_policy:
    description: The restore policy step 4 will apply, named in step 1's detail on the Redis host.
    type: str
  keep:
    description: Successful releases kept per component when step 3 switches back (as cutover_release O(keep)).
    type: int
    default: 5
  keep_failed:
    description: Failed releases kept per component (as cutover_release O(keep_failed)).
    type: int
    default: 3
  host_label:
    description: Host name written into the journal entries (usually C(inventory_hostname)).
    type: str
extends_documentation_fragment:
  - cutover_service_manager
  - cutover_redis
notes:
  - Check mode reports what the step would do and changes nothing (step 5 starts nothing and runs no probe).
"""

EXAMPLES = r"""
- name: Detect, stop the application and restore the old code (rollback steps 1-3)
  cutover_rollback:
    steps: [1, 2, 3]
    targets: "{{ cutover_status.host_view[inventory_hostname].rollback.targets }}"
    components: "{{ cutover_components | cutover_plan }}"
    app_root: "{{ cutover_app_root }}"
    manager: supervisor
    supervisor_config: "{{ cutover_supervisor_config }}"
    run_id: "{{ cutover_run_id }}"
    host_label: "{{ inventory_hostname }}"
  register: steps
"""

RETURN = r"""
detail:
  description: What the steps did on this host, one line per step (also the C(detail) of their C(rollback.step)
    entries).
  returned: always
  type: list
  elements: str
  sample: ["stopped tts (pid 4242), safety (pid 4250)"]
journal:
  description: The step's entries for cutover_journal O(entries) - C(component.stopped), C(component.switched),
    C(component.started), C(probe.result), C(component.state) as they happened, then the C(rollback.step) entry.
  returned: always
  type: list
  elements: dict
"""

import os
import platform
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import new_entry, step_entry, utc_timestamp
from ansible.module_utils.cutover_probe_suite import failed_critically, journal_entries, prepare_specs, run_suites
from ansible.module_utils.cutover_redis import redis_connection_argument_spec
from ansible.module_utils.cutover_release import ReleaseError, ReleaseRequest, inspect_component, run_request
from ansible.module_utils.cutover_services import (
    SERVICE_MANAGER_REQUIRED_IF, ServiceError, maintenance_path, manager, service_manager_argument_spec,
    process_age_s, set_maintenance, start_services, stop_services,
)
from ansible.module_utils.cutover_judge import summarize


class StepFailed(Exception):
    """The step could not be done; the message says why, on this host."""


class Step:
    """One rollback step on this host: its targets joined with their plan entries, and the entries it journals."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.host = self.params["host_label"] or platform.node()
        self.targets = self._join_targets()
        self.entries: list[dict[str, Any]] = []
        self.changed = False

    def _join_targets(self) -> list[dict[str, Any]]:
        plan = {component["name"]: component for component in self.params["components"]}
        joined = []
        for target in self.params["targets"]:
            if target.get("name") not in plan:
                self.module.fail_json(msg="target %r is not a component of this run's plan (cutover_components, "
                                          "narrowed by cutover_plan); put it back in the plan to roll it back"
                                          % target.get("name"))
            joined.append({**plan[target["name"]], **target})
        return joined

    @property
    def targets_by_name(self) -> dict[str, dict[str, Any]]:
        return {target["name"]: target for target in self.targets}

    @property
    def services(self) -> list[dict[str, Any]]:
        return [target for target in self.targets if target.get("kind", "service") == "service"]

    def service_name(self, target: dict[str, Any]) -> str:
        return target.get("service") or "cutover-%s" % target["name"]

    def manager(self) -> Any:
        return manager(self.params["manager"], self.params["supervisor_config"])

    def root(self, name: str) -> str:
        return os.path.join(self.params["app_root"], name)

    def maintenance(self, name: str, on: bool, note: str = "") -> bool:
        """Set the component's maintenance flag (check mode: say whether it would change)."""
        if self.module.check_mode:
            return on != os.path.exists(maintenance_path(self.params["app_root"], name))
        return set_maintenance(self.params["app_root"], name, on, note)

    def add(self, event: str, component: str | None = None, **data: Any) -> None:
        self.entries.append(new_entry(event, component=component, host=self.host, **data))

    # ---- step 1
    def detect(self) -> str:
        parts = []
        for target in self.targets:
            view = inspect_component(self.root(target["name"]), target["name"])
            if target["from_release"] not in view.installed:
                raise StepFailed("release %s of %s, which the journal records as its previous one, is not installed "
                                 "under %s: there is nothing to return to" % (target["from_release"], target["name"],
                                                                              self.root(target["name"])))
            parts.append("%s runs %s, goes back to %s" % (target["name"], view.link_release or "nothing",
                                                         target["from_release"]))
        snapshot = self.params["snapshot"]
        if snapshot:
            manifest = os.path.join(snapshot.get("path") or "", "manifest.json")
            if not os.path.isfile(manifest):
                raise StepFailed("the run's snapshot %s is not on this host (%s is missing): no data can be restored"
                                 % (snapshot.get("id"), manifest))
            parts.append("snapshot %s (%s keys, %s) is here for %s" % (
                snapshot.get("id"), snapshot.get("keys"), snapshot.get("mode"), self.params["restore_policy"]))
        run = self.params["target_run_id"] or self.params["run_id"]
        return "rolling back run %s on %s (%s): %s" % (run, self.host, self.params["reason"],
                                                       "; ".join(parts) or "nothing here")

    # ---- step 2
    def back_already(self, handle: Any) -> dict[str, str]:
        """Targets that run their previous release already: component -> since when (the process started after
        `current` last moved to that release, so it loaded it)."""
        pids = handle.pids([self.service_name(target) for target in self.services])
        back = {}
        for target in self.services:
            age_s = process_age_s(pids[self.service_name(target)])
            if age_s is None or inspect_component(self.root(target["name"]), target["name"]).link_release \
                    != target["from_release"]:
                continue
            link_age_s = time.time() - os.lstat(os.path.join(self.root(target["name"]), "current")).st_mtime
            if age_s < link_age_s:
                back[target["name"]] = utc_timestamp(datetime.now(timezone.utc) - timedelta(seconds=age_s))
        return back

    def stop(self) -> str:
        note = "rollback of run %s by run %s" % (self.params["target_run_id"] or self.params["run_id"],
                                                 self.params["run_id"])
        if not self.services:
            return "no service to stop on %s" % self.host
        handle = self.manager()
        back = self.back_already(handle)
        to_stop = [target for target in self.services if target["name"] not in back]
        for target in to_stop:
            self.changed |= self.maintenance(target["name"], True, note)
        kept = ["%s (runs %s since %s: kept serving)" % (name, self.targets_by_name[name]["from_release"], since)
                for name, since in back.items()]
        if self.module.check_mode:
            return "would stop %s" % ", ".join([target["name"] for target in to_stop] + kept)
        stopped = (stop_services(handle, [self.service_name(target) for target in to_stop], self.params["stop_timeout"])
                   if to_stop else {})
        parts = []
        for target in to_stop:
            done = stopped[self.service_name(target)]
            if done["was_running"]:
                self.changed = True
                self.entries.append(new_entry("component.stopped", component=target["name"], host=self.host,
                                              ts=done["stopped_at"], service=self.service_name(target),
                                              pid=done["pid"], reason="rollback step 2"))
                parts.append("%s (pid %s)" % (target["name"], done["pid"]))
            else:
                parts.append("%s (was not running)" % target["name"])
        return ("stopped %s" % ", ".join(parts) if parts else "stopped nothing") + ("; " + ", ".join(kept) if kept else "")

    # ---- step 3
    def release_request(self, target: dict[str, Any], release: str, state: str, reason: str | None = None
                        ) -> ReleaseRequest:
        return ReleaseRequest(root=self.root(target["name"]), component=target["name"], release=release, state=state,
                              src=None, env_root=self.params["env_root"] or os.path.join(self.params["app_root"],
                                                                                           "venvs"),
                              python=sys.executable, requirements="requirements.txt", pip_args=[],
                              keep=self.params["keep"], keep_failed=self.params["keep_failed"], reason=reason,
                              force=False, timeout=300)

    def restore_code(self) -> str:
        moved, already = [], []
        for target in self.targets:
            plan = run_request(self.release_request(target, target["from_release"], "current"), self.module.check_mode)
            if plan.link_switch:
                self.changed = True
                moved.append("%s %s -> %s" % (target["name"], plan.switch_from, target["from_release"]))
                self.add("component.switched", target["name"], from_release=plan.switch_from,
                         to_release=target["from_release"])
            else:
                already.append(target["name"])
            if target["to_release"] in inspect_component(self.root(target["name"]), target["name"]).installed:
                reason = "rolled back by run %s: %s" % (self.params["run_id"], self.params["reason"])
                marked = run_request(self.release_request(target, target["to_release"], "failed", reason),
                                     self.module.check_mode)
                self.changed |= marked.changed
        if not self.targets:
            return "no code to restore on %s" % self.host
        text = ", ".join(moved) or "no link moved"
        return text + ("; already on their previous release: %s" % ", ".join(already) if already else "")

    # ---- step 5
    def quick_test(self) -> str:
        if self.module.check_mode:
            return "would start %s and run their critical probes" % ", ".join(t["name"] for t in self.targets)
        urls = {self.service_name(target): (target["base_url"].rstrip("/") + (target.get("health") or "/healthz"))
                if target.get("base_url") else None for target in self.services}
        handle = self.manager() if urls else None
        before = handle.pids(list(urls)) if urls else {}
        started = start_services(handle, urls, self.params["start_timeout"]) if urls else {}
        for target in self.services:
            done = started[self.service_name(target)]
            if done["pid"] != before[self.service_name(target)]:
                self.changed = True
                self.add("component.started", target["name"], service=self.service_name(target), pid=done["pid"],
                         ready_s=done["ready_s"])
        results = run_suites(self.critical_suites(), "rollback", self.params["redis"], {"X-Cutover-Probe": "1"},
                             self.host)
        self.entries += journal_entries(results)
        failed = [result for result in results if failed_critically(result)]
        if failed:
            raise StepFailed(summarize(", ".join(t["name"] for t in self.targets), "rollback", results)["msg"])
        return "critical probes passed for %s (%d results)" % (
            ", ".join(target["name"] for target in self.targets) or "no component", len(results))

    def critical_suites(self) -> list[dict[str, Any]]:
        suites = []
        for target in self.targets:
            specs, errors = prepare_specs(target["name"], target.get("probes") or [], target.get("base_url"),
                                          {"release": target["from_release"]}, only_critical=True, phase="rollback")
            if errors:
                raise StepFailed("invalid probe specs: %s" % "; ".join(errors))
            if specs:
                suites.append({"component": target["name"], "specs": specs,
                               "baseline": self.params["baselines"].get(target["name"]) or {}})
            else:
                self.module.warn("component %s has no critical probes: its quick test tested nothing" % target["name"])
        return suites

    # ---- step 6
    def resume(self) -> str:
        for target in self.services:
            self.changed |= self.maintenance(target["name"], False)
        for target in self.targets:
            self.add("component.state", target["name"], state="rolled_back", release=target["from_release"])
        return "serving again: %s" % (", ".join(target["name"] for target in self.targets) or "nothing on this host")


ACTIONS = {1: Step.detect, 2: Step.stop, 3: Step.restore_code, 5: Step.quick_test, 6: Step.resume}


def main() -> None:
    argument_spec: dict[str, Any] = dict(
        steps=dict(type="list", elements="int", required=True),
        targets=dict(type="list", elements="dict", default=[]),
        components=dict(type="list", elements="dict", default=[]),
        app_root=dict(type="path", required=True),
        env_root=dict(type="path"),
        start_timeout=dict(type="float", default=60.0),
        stop_timeout=dict(type="float", default=30.0),
        baselines=dict(type="dict", default={}),
        run_id=dict(type="str", required=True),
        target_run_id=dict(type="str"),
        reason=dict(type="str", default="no reason given"),
        snapshot=dict(type="dict"),
        restore_policy=dict(type="str"),
        keep=dict(type="int", default=5),
        keep_failed=dict(type="int", default=3),
        host_label=dict(type="str"),
    )
    argument_spec.update(redis_connection_argument_spec())
    argument_spec.update(service_manager_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=SERVICE_MANAGER_REQUIRED_IF)
    unknown = [step for step in module.params["steps"] if step not in ACTIONS]
    if unknown or not module.params["steps"]:
        module.fail_json(msg="steps must be a non-empty list of %s (step 4 is cutover_redis_restore's), got %s"
                             % (", ".join(map(str, ACTIONS)), module.params["steps"]))
    for index, target in enumerate(module.params["targets"]):
        missing = [field for field in ("name", "from_release", "to_release") if not target.get(field)]
        if missing:
            module.fail_json(msg="targets[%d] needs %s (from the journal's rollback targets)" % (index, ", ".join(missing)))
    step = Step(module)
    details = []
    for number in module.params["steps"]:
        started_at = utc_timestamp()
        try:
            detail = ACTIONS[number](step)
        except (StepFailed, ServiceError, ReleaseError, OSError) as exc:
            step.entries.append(step_entry(number, started_at, "failed", str(exc), step.host))
            module.fail_json(msg="rollback step %d failed on %s: %s" % (number, step.host, exc), detail=details + [str(exc)],
                             journal=step.entries, changed=step.changed, exception=traceback.format_exc())
        step.entries.append(step_entry(number, started_at, "ok", detail, step.host))
        details.append(detail)
    module.exit_json(changed=step.changed, detail=details, journal=step.entries)


if __name__ == "__main__":
    main()
