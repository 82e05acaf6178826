# -*- coding: utf-8 -*-
"""Controller-side filters that turn inventory data into a migration plan."""
from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
COMPONENT_KINDS = ("service", "cli")


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
    return {
        "name": name,
        "kind": kind,
        "service": component.get("service", "cutover-%s" % name) if kind == "service" else None,
        "base_url": component.get("base_url"),
        "namespaces": namespaces,
        "hosts": component.get("hosts", "cutover_app"),
        "probes": probes,
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


def cutover_batches(hosts: list[str], canary: int = 1, batch_size: int = 0) -> list[list[str]]:
    """Split hosts into a canary batch followed by batches of ``batch_size`` (0 = all the rest at once)."""
    if canary < 0 or batch_size < 0:
        raise AnsibleFilterError("cutover_deploy_canary_hosts and cutover_deploy_batch_size must be >= 0")
    batches = [hosts[:canary]] if canary else []
    rest = hosts[canary:]
    size = batch_size or len(rest)
    batches.extend(rest[start:start + size] for start in range(0, len(rest), size or 1))
    return [batch for batch in batches if batch]


def cutover_rollback_targets(components: list[dict[str, Any]], plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join the report's switched components with their plan entries (service, probes, namespaces).

    A component the plan no longer knows is refused: rolling it back blind would guess.
    """
    by_name = {component["name"]: component for component in plan}
    targets = []
    for switched in components:
        if switched["name"] not in by_name:
            raise AnsibleFilterError("the journal names component %r, which this run's plan (cutover_components, "
                                     "narrowed by cutover_plan) does not include; put it back in the plan to roll it "
                                     "back" % switched["name"])
        if switched["from_release"] == switched["to_release"]:
            continue
        targets.append(dict(by_name[switched["name"]], from_release=switched["from_release"],
                            to_release=switched["to_release"], host=switched.get("host")))
    return targets


def cutover_baselines(probes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Baseline values per component from report probes: {component: {probe: value}} (the last value wins)."""
    baselines: dict[str, dict[str, Any]] = {}
    for probe in probes:
        baselines.setdefault(probe["component"], {})[probe["probe"]] = probe["value"]
    return baselines


def cutover_describe_trigger(trigger: dict[str, Any]) -> str:
    """One line saying why a rollback happens: the failing probe and its value, or the stated reason."""
    if trigger.get("probe"):
        return "probe %s/%s on %s: value %s, baseline %s, threshold %s" % (
            trigger.get("component"), trigger["probe"], trigger.get("host", "?"), trigger.get("value"),
            trigger.get("baseline"), trigger.get("threshold"))
    return str(trigger.get("reason", "no reason given"))


def _entry(event: str, host: str, component: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "host": host, "component": component, "data": data}


def cutover_probe_entry(result: dict[str, Any], host: str) -> dict[str, Any]:
    """A probe result as a probe.result journal entry."""
    fields = ("probe", "phase", "verdict", "value", "baseline", "threshold", "critical", "metric", "detail")
    return _entry("probe.result", host, result["component"], {name: result.get(name) for name in fields})


def cutover_switch_entry(target: dict[str, Any], host: str, event: str = "component.switched") -> dict[str, Any]:
    """A rollback switch (to_release back to from_release) as a journal entry."""
    return _entry(event, host, target["name"], {"from_release": target["to_release"], "to_release": target["from_release"]})


def cutover_state_entry(target: dict[str, Any], host: str, state: str) -> dict[str, Any]:
    """A component.state journal entry for a component of the plan."""
    release = target.get("from_release") if state == "rolled_back" else target.get("to_release")
    return _entry("component.state", host, target["name"], {"state": state, "release": release})


def cutover_cli_option(item: dict[str, Any]) -> list[str]:
    """{'key': 'tts', 'value': 200} (an item of dict2items) -> ['--tts', '200']."""
    return ["--%s" % item["key"], str(item["value"])]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cutover_plan": cutover_plan,
            "cutover_plan_hosts": cutover_plan_hosts,
            "cutover_batches": cutover_batches,
            "cutover_rollback_targets": cutover_rollback_targets,
            "cutover_baselines": cutover_baselines,
            "cutover_describe_trigger": cutover_describe_trigger,
            "cutover_probe_entry": cutover_probe_entry,
            "cutover_switch_entry": cutover_switch_entry,
            "cutover_state_entry": cutover_state_entry,
            "cutover_cli_option": cutover_cli_option,
        }
