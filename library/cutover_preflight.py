#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_preflight
short_description: Judge whether a host is ready for a migration, from what it runs and what the other checks saw
description:
  - Step 1 of a cutover run on one host; changes nothing. For every planned component of the host it reads the
    release registry - the current release is what a rollback returns to, so a component without one is refused -
    checks the target release is not one an earlier rollback marked failed (unless O(allow_failed_release)), says
    which Python environment its install would use (reused or built), and asks the process manager that the
    component's service exists.
  - It also judges the results of the read-only checks run before it on this host - Redis as the host sees it
    (cutover_redis_info), the snapshot estimate (cutover_redis_snapshot in check mode, on the Redis host) and the
    dry run of the target release's config validator - so every check of the host is reported at once.
  - Returns the C(preflight.checked) journal entry (checks and the current release of each component) and whether
    every check passed; the module itself fails only on invalid options.
version_added: "1.1.0"
author: cutover maintainers
options:
  components:
    description: The planned components of this host (C(cutover_components) normalised by the C(cutover_plan) filter).
    type: list
    elements: dict
    default: []
  app_root:
    description: Host folder of C(<component>/releases) and C(current).
    type: path
    required: true
  target_release:
    description: The release the run deploys.
    type: str
    required: true
  allow_failed_release:
    description: Accept a target release an earlier rollback marked failed.
    type: bool
    default: false
  requirements:
    description: Component to the content of the target release's requirements file, to tell whether its environment
      exists already.
    type: dict
    default: {}
  python:
    description: Interpreter that builds the environments (as cutover_release O(python)).
    type: path
  pip_args:
    description: Extra pip arguments (as cutover_release O(pip_args)).
    type: list
    elements: str
    default: []
  env_root:
    description: Folder of the shared environments.
    type: path
  redis_info:
    description: The registered result of cutover_redis_info on this host.
    type: dict
  min_memory_headroom_mb:
    description: Refuse when Redis has a maxmemory and less than this many MiB are free under it.
    type: float
    default: 64
  snapshot:
    description: On the Redis host, the registered result of cutover_redis_snapshot in check mode.
    type: dict
  validator:
    description: On the validator's host, the registered result of cutover_validator (C(exit_code), C(stdout_lines),
      C(stderr_lines), C(controls)); each negative control the validator accepted is a failed
      C(validator_negative/<name>) check.
    type: dict
  watcher:
    description:
      - On one host of the run, the registered loop results of M(ansible.builtin.stat) on the scheduled watcher's
        host, one per item of the C(cutover_watcher_needs) filter (C({name, path, want, host})). Each is a
        C(watcher/<name>) check - the path exists and is a file, a folder or an executable as C(want) says - so a
        scheduled watch that could not run is refused before anything changes.
    type: list
    elements: dict
    default: []
  host_label:
    description: Host name written into the journal entry.
    type: str
extends_documentation_fragment:
  - cutover_service_manager
"""

EXAMPLES = r"""
- name: Judge this host's readiness
  cutover_preflight:
    components: "{{ cutover_components | cutover_components_named(['tts', 'safety']) }}"
    app_root: /opt/toy
    target_release: migrated
    manager: supervisor
    supervisor_config: /etc/supervisor/supervisord.conf
    redis_info: "{{ redis_info }}"
    host_label: "{{ inventory_hostname }}"
  register: preflight
"""

RETURN = r"""
checks:
  description: Every check of this host, C({name, ok, detail}).
  returned: always
  type: list
  elements: dict
  sample: [{name: release/tts, ok: true, detail: "current release legacy; it is what a rollback returns to"}]
releases:
  description: Component to the release it runs now (null when none is recorded).
  returned: always
  type: dict
targets:
  description: Component to what deploying the target release would do (C({installed, status, env, env_exists})).
  returned: always
  type: dict
passed:
  description: Whether every check passed.
  returned: always
  type: bool
msg:
  description: One line; when a check failed, every failed check with its detail.
  returned: always
  type: str
journal:
  description: The C(preflight.checked) entry for cutover_journal O(entries).
  returned: always
  type: list
  elements: dict
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import new_entry
from ansible.module_utils.cutover_release import (
    ReleaseError, env_is_complete, env_spec, inspect_component, probe_interpreter,
)
from ansible.module_utils.cutover_services import (
    SERVICE_MANAGER_REQUIRED_IF, ServiceError, manager, service_manager_argument_spec,
)

Check = dict[str, Any]


def check(name: str, ok: bool, detail: str) -> Check:
    return {"name": name, "ok": bool(ok), "detail": detail}


def redis_check(result: dict[str, Any] | None, min_headroom_mb: float) -> list[Check]:
    if result is None:
        return []
    if result.get("version") is None:
        return [check("redis", False, result.get("msg") or "Redis did not answer")]
    problems = list(result.get("problems") or [])
    headroom = result.get("headroom_mb")
    if headroom is not None and headroom < min_headroom_mb:
        problems.append("only %s MiB free under maxmemory, cutover_preflight_min_memory_headroom_mb is %s"
                        % (headroom, min_headroom_mb))
    return [check("redis", not problems, "; ".join(problems) or "Redis %s answers, %s keys, %s MiB used"
                  % (result["version"], result.get("keys"), result.get("used_memory_mb")))]


def snapshot_check(result: dict[str, Any] | None) -> list[Check]:
    if result is None:
        return []
    snapshot = result.get("snapshot")
    if not snapshot:
        return [check("snapshot_disk", False, result.get("msg") or "the snapshot estimate did not run")]
    return [check("snapshot_disk", True, "would snapshot %s keys into %s" % (snapshot.get("keys"),
                                                                               os.path.dirname(snapshot.get("path", ""))))]


def validator_check(result: dict[str, Any] | None, release: str) -> list[Check]:
    """The validator must accept the real configs (dry run) and refuse each config broken on purpose."""
    if result is None:
        return []
    if result.get("exit_code") == 0:
        checks = [check("validator/%s" % release, True, "config validator of %s passed (dry run)" % release)]
    else:
        tail = (result.get("stdout_lines") or [])[-3:] + (result.get("stderr_lines") or [])[-3:]
        checks = [check("validator/%s" % release, False, "config validator of %s failed (rc %s): %s"
                        % (release, result.get("exit_code"), " / ".join(tail) or result.get("msg", "")))]
    for control in result.get("controls") or []:
        checks.append(check("validator_negative/%s" % control["name"], control["refused"],
                            "the validator of %s refused the config broken by %s" % (release, control["name"])
                            if control["refused"] else
                            "FALSE NEGATIVE: the validator of %s accepted a config broken by %s (rc %s: %s)"
                            % (release, control["name"], control["rc"], " / ".join(control["output"]))))
    return checks


def release_checks(params: dict[str, Any], component: dict[str, Any]) -> tuple[list[Check], str | None, dict]:
    """The previous-release and target-release checks of one component, its current release and target plan."""
    name, root, release = component["name"], os.path.join(params["app_root"], component["name"]), params["target_release"]
    try:
        view = inspect_component(root, name)
    except ReleaseError as exc:
        return [check("release/%s" % name, False, str(exc))], None, {}
    current = view.registry.get("current") if view.stored_registry is not None else view.link_release
    checks = [check("release/%s" % name, current is not None,
                    "current release %s; it is what a rollback returns to" % current if current else
                    "component %s has no current release under %s, so there is nothing to roll back to"
                    % (name, params["app_root"]))]
    entry = view.registry["releases"].get(release) or {}
    failed = entry.get("status") == "failed" and not params["allow_failed_release"]
    checks.append(check("target/%s" % name, not failed,
                        "release %s of %s is marked failed (%s); set cutover_allow_failed_release=true to deploy it "
                        "again" % (release, name, entry.get("failed_reason")) if failed
                        else "release %s may be deployed" % release))
    try:
        plan = target_plan(params, view, name)
    except ReleaseError as exc:  # the build interpreter could not be asked its version
        checks.append(check("env/%s" % name, False, str(exc)))
        plan = {}
    return checks, current, plan


def target_plan(params: dict[str, Any], view: Any, name: str) -> dict[str, Any]:
    plan = {"installed": params["target_release"] in view.installed,
            "status": (view.registry["releases"].get(params["target_release"]) or {}).get("status")}
    if name in params["requirements"] and params["python"] and params["env_root"]:
        spec = env_spec(params["env_root"], "requirements.txt", params["requirements"][name].encode("utf-8"),
                        probe_interpreter(params["python"], 60), params["pip_args"])
        plan.update(env=spec.path, env_exists=env_is_complete(spec.path))
    return plan


WANTS = {
    "file": ("a file", lambda stat: stat.get("isreg", False)),
    "directory": ("a folder", lambda stat: stat.get("isdir", False)),
    "executable": ("an executable file", lambda stat: stat.get("isreg", False) and stat.get("executable", False)),
    "exists": ("there", lambda stat: True),
}


def watcher_checks(found: list[dict[str, Any]]) -> list[Check]:
    """One check per path the scheduled watcher needs on its host (stat results looped over cutover_watcher_needs)."""
    checks = []
    for result in found:
        need, stat = result["item"], result.get("stat") or {}
        wanted, matches = WANTS[need["want"]]
        where = "%s %s on %s" % (need["name"], need["path"], need["host"])
        if result.get("unreachable") or result.get("failed"):
            checks.append(check("watcher/%s" % need["name"], False, "%s could not be looked at: %s"
                                % (where, result.get("msg", "unreachable"))))
        elif not stat.get("exists"):
            checks.append(check("watcher/%s" % need["name"], False, "%s does not exist; the scheduled watcher needs it "
                                "(%s)" % (where, wanted)))
        else:
            checks.append(check("watcher/%s" % need["name"], matches(stat), "%s is %s" % (where, wanted) if matches(stat)
                                else "%s is not %s" % (where, wanted)))
    return checks


def process_manager_check(params: dict[str, Any], components: list[dict[str, Any]]) -> list[Check]:
    services = [component.get("service") or "cutover-%s" % component["name"] for component in components
                if component.get("kind", "service") == "service"]
    if not services:
        return []
    try:
        handle = manager(params["manager"], params["supervisor_config"])
        missing = []
        for service in services:
            try:
                handle.pids([service])
            except ServiceError:
                missing.append(service)
    except ServiceError as exc:
        return [check("process_manager", False, str(exc))]
    return [check("process_manager", not missing, "%s has no service(s) %s" % (params["manager"], ", ".join(missing))
                  if missing else "%s knows every component" % params["manager"])]


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            components=dict(type="list", elements="dict", default=[]),
            app_root=dict(type="path", required=True),
            target_release=dict(type="str", required=True),
            allow_failed_release=dict(type="bool", default=False),
            requirements=dict(type="dict", default={}),
            python=dict(type="path"),
            pip_args=dict(type="list", elements="str", default=[]),
            env_root=dict(type="path"),
            redis_info=dict(type="dict"),
            min_memory_headroom_mb=dict(type="float", default=64.0),
            snapshot=dict(type="dict"),
            validator=dict(type="dict"),
            watcher=dict(type="list", elements="dict", default=[]),
            host_label=dict(type="str"),
            **service_manager_argument_spec(),
        ),
        required_if=SERVICE_MANAGER_REQUIRED_IF,
        supports_check_mode=True,
    )
    params = module.params
    checks = redis_check(params["redis_info"], params["min_memory_headroom_mb"]) + snapshot_check(params["snapshot"])
    releases, targets = {}, {}
    for component in params["components"]:
        component_checks, releases[component["name"]], targets[component["name"]] = release_checks(params, component)
        checks += component_checks
    checks += process_manager_check(params, params["components"])
    checks += validator_check(params["validator"], params["target_release"])
    checks += watcher_checks(params["watcher"])
    failed = [item for item in checks if not item["ok"]]
    host = params["host_label"]
    msg = ("preflight refused the run on %s, nothing was changed: %s"
           % (host, " | ".join("%s: %s" % (item["name"], item["detail"]) for item in failed)) if failed
           else "preflight passed on %s (%d checks)" % (host, len(checks)))
    module.exit_json(changed=False, checks=checks, releases=releases, targets=targets, passed=not failed, msg=msg,
                     journal=[new_entry("preflight.checked", host=host, checks=checks, releases=releases)])


if __name__ == "__main__":
    main()
