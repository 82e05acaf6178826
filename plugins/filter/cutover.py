# -*- coding: utf-8 -*-
"""Controller-side filters that turn inventory data into a migration plan."""
from __future__ import annotations

import os
import re
from typing import Any

from ansible.errors import AnsibleFilterError

COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
COMPONENT_KINDS = ("service", "cli")
RESTART_MODES = ("restart", "reload")
NAMESPACE_RESTORE_POLICIES = ("missing_only", "overwrite", "replace_all", "revert")


def _normalize_component(component: Any, index: int) -> dict[str, Any]:
    if not isinstance(component, dict):
        raise AnsibleFilterError("cutover_components[%d] must be a mapping, got %s" % (index, type(component).__name__))
    name = component.get("name")
    if not isinstance(name, str) or not COMPONENT_NAME.match(name):
        raise AnsibleFilterError(
            "cutover_components[%d].name must match %s, got %r" % (index, COMPONENT_NAME.pattern, name))
    kind = component.get("kind", "service")
    if kind not in COMPONENT_KINDS:
        raise AnsibleFilterError("cutover_components[%d] (%s).kind must be one of %s, got %r"
                                 % (index, name, ", ".join(COMPONENT_KINDS), kind))
    if kind == "service" and not component.get("base_url"):
        raise AnsibleFilterError("cutover_components[%d] (%s).base_url is required for kind service "
                                 "(e.g. http://10.0.0.5:8103), or set kind: cli for a command-line component" % (index, name))
    namespaces = component.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(item, str) and item for item in namespaces):
        raise AnsibleFilterError("cutover_components[%d] (%s).namespaces must be a list of Redis glob patterns"
                                 % (index, name))
    probes = component.get("probes", [])
    if not isinstance(probes, list):
        raise AnsibleFilterError("cutover_components[%d] (%s).probes must be a list" % (index, name))
    restart = component.get("restart", "restart")
    if restart not in RESTART_MODES or (restart == "reload" and kind != "service"):
        raise AnsibleFilterError("cutover_components[%d] (%s).restart must be one of %s (reload only for kind service: "
                                 "a master that replaces its worker on SIGHUP), got %r"
                                 % (index, name, ", ".join(RESTART_MODES), restart))
    restore_policy = component.get("restore_policy")
    if restore_policy is not None and restore_policy not in NAMESPACE_RESTORE_POLICIES:
        raise AnsibleFilterError("cutover_components[%d] (%s).restore_policy must be one of %s (or unset for "
                                 "cutover_rollback_restore_policy), got %r"
                                 % (index, name, ", ".join(NAMESPACE_RESTORE_POLICIES), restore_policy))
    return {
        "name": name,
        "kind": kind,
        "service": component.get("service", "cutover-%s" % name) if kind == "service" else None,
        "base_url": component.get("base_url"),
        "health": component.get("health", "/healthz") if kind == "service" else None,
        "namespaces": namespaces,
        "hosts": component.get("hosts", "cutover_app"),
        "probes": probes,
        "restart": restart,
        "restore_policy": restore_policy,
    }


def cutover_plan(components: Any, plan: Any = None) -> list[dict[str, Any]]:
    """Return the components to migrate, in plan order, with every optional field filled in.

    ``plan`` is an optional list of component names; empty means every component in listed order.
    """
    if not isinstance(components, list) or not components:
        raise AnsibleFilterError("cutover_components must be a non-empty list of components")
    normalized = [_normalize_component(component, index) for index, component in enumerate(components)]
    by_name: dict[str, dict[str, Any]] = {}
    for component in normalized:
        if component["name"] in by_name:
            raise AnsibleFilterError("cutover_components names must be unique; %r appears twice" % component["name"])
        by_name[component["name"]] = component
    if not plan:
        return normalized
    if not isinstance(plan, list):
        raise AnsibleFilterError("cutover_plan must be a list of component names")
    unknown = [name for name in plan if name not in by_name]
    if unknown:
        raise AnsibleFilterError("cutover_plan names unknown component(s) %s; allowed: %s"
                                 % (", ".join(map(str, unknown)), ", ".join(by_name)))
    if len(set(plan)) != len(plan):
        raise AnsibleFilterError("cutover_plan lists a component twice: %s" % ", ".join(plan))
    return [by_name[name] for name in plan]


def cutover_components_named(components: Any, names: list[str]) -> list[dict[str, Any]]:
    """The normalised components with these names, in the order given (none for an empty list)."""
    by_name = {component["name"]: component for component in cutover_plan(components)}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise AnsibleFilterError("the run names component(s) %s, which cutover_components does not define; allowed: %s"
                                 % (", ".join(unknown), ", ".join(by_name)))
    return [by_name[name] for name in names]


def cutover_restore_args(components: Any, names: list[str], policy: str) -> dict[str, Any]:
    """What rollback step 4 restores for the rolled-back components ``names``: the policy of the call (``none`` when
    no namespace is owned and the policy is not whole_rdb), the namespaces, and each component's own restore_policy
    per namespace (``policies``; empty when all follow ``policy``)."""
    if policy in ("whole_rdb", "none"):
        return {"policy": policy, "namespaces": None, "policies": None}
    chosen: dict[str, str] = {}
    for component in cutover_components_named(components, list(dict.fromkeys(names))):
        for pattern in component["namespaces"]:
            own = component["restore_policy"] or policy
            if chosen.setdefault(pattern, own) != own:
                raise AnsibleFilterError("namespace %s is restored with two policies (%s, %s): set the same "
                                         "restore_policy on every component that owns it" % (pattern, chosen[pattern], own))
    if not chosen:
        return {"policy": "none", "namespaces": None, "policies": None}
    policies = {pattern: own for pattern, own in chosen.items() if own != policy}
    return {"policy": policy, "namespaces": list(chosen), "policies": policies or None}


def cutover_lock_takeover(lock: dict[str, Any] | None, run_id: str, controller: str, holder_process: str,
                          force: bool = False) -> dict[str, Any]:
    """Whether playbooks/resume.yml may take run_id's lock over: {takeover, why}. ``holder_process`` is what
    ``ps -o args= -p <the lock's pid>`` printed on this controller (empty: no such process)."""
    if not lock:
        return {"takeover": True, "why": "the lock was released"}
    if lock.get("run_id") != run_id:
        return {"takeover": False, "why": "the lock is held by run %s (%s); finish that run first, or release it with "
                                          "playbooks/unlock.yml once it is gone" % (lock.get("run_id"), lock.get("owner"))}
    owner = lock.get("owner") or {}
    where = "pid %s on %s" % (owner.get("pid", "unknown"), owner.get("controller", "an unknown controller"))
    if force:
        return {"takeover": True, "why": "cutover_lock_force=true: the operator says its ansible-playbook (%s) is gone"
                                         % where}
    if owner.get("controller") != controller or not str(owner.get("pid", "")).isdigit():
        return {"takeover": False, "why": "its ansible-playbook (%s) cannot be checked from %s; run resume.yml there, or "
                                          "set cutover_lock_force=true once you know it is gone" % (where, controller)}
    if "ansible-playbook" in holder_process:
        return {"takeover": False, "why": "its ansible-playbook (%s) is still running: %s" % (where, holder_process.strip())}
    return {"takeover": True, "why": "its ansible-playbook (%s) is gone" % where}


def cutover_plan_hosts(plan: list[dict[str, Any]], groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """Map each planned component to the inventory hosts that run it."""
    mapping: dict[str, list[str]] = {}
    for component in plan:
        selector = component["hosts"]
        names = [selector] if isinstance(selector, str) else list(selector)
        hosts: list[str] = []
        for name in names:
            hosts.extend(groups.get(name, [name] if name in groups.get("all", []) else []))
        if not hosts:
            raise AnsibleFilterError("component %s: hosts %r match no inventory host or group"
                                     % (component["name"], selector))
        mapping[component["name"]] = list(dict.fromkeys(hosts))
    return mapping


def cutover_lease_refusals(runs: list[dict[str, Any]], components: list[str]) -> list[str]:
    """Why a migrate of components is refused: one line per watched run holding a lease on any of them."""
    refusals = []
    for run in runs:
        held = [name for name in (run.get("lease") or {}).get("components", []) if name in components]
        if held:
            lease = run["lease"]
            refusals.append("run %s is watching %s until %s (watcher %s on %s): wait for the window to end, stop it "
                            "with playbooks/watch.yml -e cutover_watch_stop=true, or roll it back with "
                            "playbooks/rollback.yml" % (run["run_id"], ", ".join(held), lease["until"],
                                                        (lease.get("watcher") or {}).get("name", "not installed"),
                                                        (lease.get("watcher") or {}).get("host", "-")))
    return refusals


def cutover_watcher_needs(paths: dict[str, Any], scheduler: str) -> list[dict[str, str]]:
    """What a scheduled watcher needs on its host, as {name (the variable), path, want (file, directory, executable,
    exists)}: its ansible-playbook, the project's watch.yml, each inventory source that is a path, and the folder
    its scheduler's files go into. An inventory source with a comma is a host list, not a path."""
    needs = [{"name": "cutover_watch_ansible_playbook", "path": paths["cutover_watch_ansible_playbook"], "want": "executable"},
             {"name": "cutover_watch_project_dir", "path": "%s/playbooks/watch.yml" % paths["cutover_watch_project_dir"],
              "want": "file"}]
    needs += [{"name": "cutover_watch_inventory", "path": source, "want": "exists"}
              for source in paths["cutover_watch_inventory"] if "," not in source]
    folder = {"supervisor": "cutover_watch_supervisor_include_dir", "systemd": "cutover_watch_unit_dir"}.get(scheduler)
    if folder:
        needs.append({"name": folder, "path": paths[folder], "want": "directory"})
    return needs


def cutover_systemd_quote(word: Any) -> str:
    """One word of a systemd unit's command line or Environment=, quoted: no specifier or variable expansion."""
    text = str(word).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '"%s"' % text


def cutover_batches(hosts: list[str], canary: int = 1, batch_size: int = 0) -> list[list[str]]:
    """Split hosts into a canary batch followed by batches of ``batch_size`` (0 = all the rest at once)."""
    if not isinstance(canary, int) or not isinstance(batch_size, int) or canary < 0 or batch_size < 0:
        raise AnsibleFilterError("cutover_deploy_canary_hosts and cutover_deploy_batch_size must be whole numbers >= 0, "
                                 "got %r and %r" % (canary, batch_size))
    batches = [hosts[:canary]] if canary else []
    rest = hosts[canary:]
    size = batch_size or len(rest)
    batches.extend(rest[start:start + size] for start in range(0, len(rest), size or 1))
    return [batch for batch in batches if batch]


def cutover_batches_by_component(hosts: dict[str, list[str]], canary: int = 1, batch_size: int = 0
                                 ) -> dict[str, list[list[str]]]:
    """Each component's hosts split into batches, canary first (see cutover_batches)."""
    return {component: cutover_batches(component_hosts, canary, batch_size)
            for component, component_hosts in hosts.items()}


def cutover_missing_components(plan: list[dict[str, Any]], release_dir: str) -> list[str]:
    """Names of the planned components that have no folder in the release folder (controller side)."""
    return [component["name"] for component in plan if not os.path.isdir(os.path.join(release_dir, component["name"]))]


DEPLOY_STEPS = ("stage", "install", "switch", "restart", "verify")
ROLLBACK_STEPS = ("1", "2", "3", "4", "5", "6")
RESTORE_POLICIES_NEEDING_RDB = ("whole_rdb",)
RDB_SNAPSHOT_MODES = ("rdb", "replica")
# variable -> (lowest allowed value, what it means)
NUMBER_RULES: dict[str, tuple[int, str]] = {
    "cutover_deploy_canary_hosts": (0, "hosts in each component's first batch"),
    "cutover_deploy_batch_size": (0, "hosts per later batch, 0 for all the rest"),
    "cutover_deploy_start_timeout": (1, "seconds a restarted component gets to answer"),
    "cutover_watch_duration_s": (0, "seconds of the watch window"),
    "cutover_watch_interval_s": (1, "seconds between two watch rounds"),
    "cutover_watch_inline_max_s": (0, "longest window the migrate watches itself; a longer one is scheduled"),
    "cutover_snapshot_keep": (0, "snapshots kept, 0 keeps all"),
    "cutover_rollback_start_timeout": (1, "seconds a component gets to answer in the quick test"),
    "cutover_rollback_redis_timeout": (1, "seconds Redis gets to come back"),
}


def _hook_problems(name: str, hooks: Any, steps: tuple[str, ...]) -> list[str]:
    if not isinstance(hooks, dict):
        return ["%s must be a mapping of before_<step>/after_<step> to a task file, got %r" % (name, hooks)]
    allowed = ["%s_%s" % (when, step) for step in steps for when in ("before", "after")]
    problems = ["%s has the key %r, which is not a known hook; allowed: %s" % (name, key, ", ".join(allowed))
                for key in hooks if str(key) not in allowed]
    problems += ["%s.%s must be the path of a task file, got %r" % (name, key, value)
                 for key, value in hooks.items() if not isinstance(value, str) or not value]
    return problems


def cutover_guard_problems(values: dict[str, Any]) -> list[str]:
    """What is wrong with the stage variables beyond their types: ranges, hook keys, options that must agree."""
    problems = []
    for name, (lowest, meaning) in NUMBER_RULES.items():
        raw = values.get(name)
        try:
            number = int(str(raw))
        except ValueError:
            problems.append("%s must be a whole number >= %d (%s), got %r" % (name, lowest, meaning, raw))
            continue
        if number < lowest:
            problems.append("%s must be >= %d (%s), got %d" % (name, lowest, meaning, number))
    if values.get("cutover_rollback_restore_policy") in RESTORE_POLICIES_NEEDING_RDB and \
            values.get("cutover_snapshot_mode") not in RDB_SNAPSHOT_MODES:
        problems.append("cutover_rollback_restore_policy whole_rdb swaps in an RDB file, so cutover_snapshot_mode must "
                        "be rdb or replica (it is %s); use missing_only, overwrite or replace_all with logical"
                        % values.get("cutover_snapshot_mode"))
    problems += _hook_problems("cutover_deploy_hooks", values.get("cutover_deploy_hooks", {}), DEPLOY_STEPS)
    problems += _hook_problems("cutover_rollback_hooks", values.get("cutover_rollback_hooks", {}), ROLLBACK_STEPS)
    return problems


def cutover_probe_suites(components: list[dict[str, Any]], baselines: dict[str, Any], releases: dict[str, Any],
                         from_releases: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """cutover_probe's components option: each component's probes with its baseline, the release it must report
    ({release}) and the release it runs before the change ({from_release}, e.g. for a reader of the old release)."""
    suites = []
    for component in components:
        placeholders = {"release": (releases or {}).get(component["name"]) or ""}
        if (from_releases or {}).get(component["name"]):
            placeholders["from_release"] = from_releases[component["name"]]
        suites.append({"name": component["name"], "probes": component["probes"], "base_url": component.get("base_url"),
                       "baseline": (baselines or {}).get(component["name"]) or {}, "placeholders": placeholders})
    return suites


def cutover_releases(records: dict[str, Any], field: str) -> dict[str, Any]:
    """{component: record[field]} from the journal's per-host release records (status host_view releases)."""
    return {name: (record or {}).get(field) for name, record in (records or {}).items()}


def cutover_rollback_groups(hooks: dict[str, Any]) -> list[list[int]]:
    """The six rollback steps in groups that run in one call per host: a group ends before a step with a before hook,
    after a step with an after hook, and around step 4 (done on the Redis host by another module)."""
    groups: list[list[int]] = []
    for step in range(1, 7):
        starts_group = not groups or step in (4, 5) or "before_%d" % step in hooks \
            or "after_%d" % groups[-1][-1] in hooks
        if starts_group:
            groups.append([step])
        else:
            groups[-1].append(step)
    return groups


def _probe_names(component: dict[str, Any], critical_only: bool = False) -> str:
    names = [probe.get("name", "?") for probe in component["probes"] if probe.get("critical", True) or not critical_only]
    return "%s: %s" % (component["name"], ", ".join(names) or "none")


def cutover_dry_run_plan(status: dict[str, Any], components: list[dict[str, Any]], watch_duration_s: Any,
                         watch_interval_s: Any, snapshot_mode: str) -> list[str]:
    """The plan a dry run prints: components in order, hosts and batches, snapshot, probes of each phase, watch."""
    by_name = {component["name"]: component for component in cutover_plan(components)}
    planned = [by_name[name] for name in status["plan"]]
    lines = ["Dry run of a migrate to release %s (run %s); nothing was changed on any host."
             % (status["target_release"], status["run_id"]),
             "Components in order, hosts in batches (canary first):"]
    for position, component in enumerate(planned, start=1):
        batches = [wave["hosts"] for wave in status["waves"] if wave["component"] == component["name"]]
        lines.append("  %d. %s (%s): %s" % (position, component["name"], component["kind"],
                                            " then ".join("[%s]" % ", ".join(hosts) for hosts in batches)))
    namespaces = sorted({pattern for component in planned for pattern in component["namespaces"]})
    lines.append("Snapshot on %s, mode %s, of %s." % (status["redis_host"], snapshot_mode, ", ".join(namespaces) or
                                                       "no namespace"))
    lines.append("Probes of the baseline, canary, verify and watch phases: %s."
                 % "; ".join(_probe_names(component) for component in planned))
    lines.append("Probes of the quick test of a rollback (critical only): %s."
                 % "; ".join(_probe_names(component, critical_only=True) for component in planned))
    lines.append("Watch window: %s s, a round every %s s." % (watch_duration_s, watch_interval_s))
    return lines


def cutover_requirements(components: list[dict[str, Any]], release_dir: str) -> dict[str, str]:
    """Component -> the content of its requirements.txt in a release folder on the controller (when it has one)."""
    texts = {}
    for component in components:
        path = os.path.join(release_dir, component["name"], "requirements.txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                texts[component["name"]] = handle.read()
    return texts


def cutover_dry_run_host(preflight: dict[str, Any], snapshot: dict[str, Any] | None, release: str) -> list[str]:
    """What a dry run would do on one host: each component's release and environment, the snapshot's key counts."""
    lines = []
    for name, target in (preflight.get("targets") or {}).items():
        current = (preflight.get("releases") or {}).get(name)
        if current == release:
            lines.append("%s: already runs %s" % (name, release))
        elif target.get("installed"):
            lines.append("%s: %s -> %s, already installed (%s): switch only" % (name, current, release, target["status"]))
        else:
            lines.append("%s: %s -> %s, install with environment %s (%s)"
                         % (name, current, release, target.get("env", "?"),
                            "reused" if target.get("env_exists") else "to be built"))
    if snapshot:
        counts = ", ".join("%s %s" % (pattern, count) for pattern, count in (snapshot.get("namespaces") or {}).items())
        lines.append("snapshot %s: %s keys (%s) into %s" % (snapshot.get("mode"), snapshot.get("keys"), counts or "-",
                                                           snapshot.get("path")))
    return lines


def cutover_cli_option(item: dict[str, Any]) -> list[str]:
    """{'key': 'tts', 'value': 200} (an item of dict2items) -> ['--tts', '200']."""
    return ["--%s" % item["key"], str(item["value"])]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cutover_plan": cutover_plan,
            "cutover_plan_hosts": cutover_plan_hosts,
            "cutover_batches": cutover_batches,
            "cutover_batches_by_component": cutover_batches_by_component,
            "cutover_components_named": cutover_components_named,
            "cutover_restore_args": cutover_restore_args,
            "cutover_lock_takeover": cutover_lock_takeover,
            "cutover_lease_refusals": cutover_lease_refusals,
            "cutover_systemd_quote": cutover_systemd_quote,
            "cutover_watcher_needs": cutover_watcher_needs,
            "cutover_missing_components": cutover_missing_components,
            "cutover_guard_problems": cutover_guard_problems,
            "cutover_probe_suites": cutover_probe_suites,
            "cutover_releases": cutover_releases,
            "cutover_rollback_groups": cutover_rollback_groups,
            "cutover_dry_run_plan": cutover_dry_run_plan,
            "cutover_dry_run_host": cutover_dry_run_host,
            "cutover_requirements": cutover_requirements,
            "cutover_cli_option": cutover_cli_option,
        }
