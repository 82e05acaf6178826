#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: cutover_service
short_description: Stop, start, restart or reload several components of a host at once and wait until they serve
description:
  - Drives the services of several components through the host's process manager in one call - supervisord (over
    the XML-RPC socket supervisorctl uses) or systemd (C(systemctl --no-block)) - and waits for the outcome of all
    of them at once.
  - V(stopped) stops every running service at once and returns when each old process is gone (a zombie counts as
    gone); V(started) starts the stopped ones at once and returns when each answers its health URL with HTTP 200;
    V(restarted) does both.
  - V(reloaded) reloads, without a moment in which nothing serves, the running services whose spec says
    C(restart) V(reload) - a master process that keeps the listening socket and replaces its worker on SIGHUP, the
    way gunicorn and uwsgi do. It reads the serving worker's pid from the health URL (JSON field C(pid)), sends the
    manager's reload signal (supervisord C(signalProcess HUP), C(systemctl reload)), and returns when the health
    URL answers HTTP 200 from another worker pid and the old worker is gone. The other services are restarted as
    with V(restarted); one that is not running is started.
  - Returns one journal entry per service that stopped (C(component.stopped), stamped with the time its process was
    gone; not for the stop half of V(restarted)) or started (C(component.started), with the seconds it took to
    answer; for a reload, also the new worker's pid (C(worker_pid)) and the seconds until it answered - no
    C(component.stopped), nothing stopped serving).
version_added: "1.1.0"
author: cutover maintainers
options:
  services:
    description:
      - The components to drive, each C({name, service, base_url, health, restart}). C(name) is the component,
        C(service) the supervisor program or systemd unit (default C(cutover-<name>)), C(base_url) where it answers
        and C(health) the path of its health check (default C(/healthz)). Without C(base_url) a started service
        counts as serving once the manager runs it.
      - C(restart) is how V(reloaded) renews the service - C(restart) (the default, stop then start) or C(reload)
        (reload signal; needs C(base_url), whose health answer tells the worker pid). For a systemd unit, C(reload)
        needs an C(ExecReload) such as C(/bin/kill -HUP $MAINPID).
    type: list
    elements: dict
    required: true
  state:
    description: What the services must be.
    type: str
    choices: [stopped, started, restarted, reloaded]
    required: true
  timeout:
    description: Seconds to wait for the processes to be gone (stop), for the health checks to pass (start), and for
      a new worker to answer and the old one to be gone (reload).
    type: float
    default: 30
  reason:
    description: Why the services stop, recorded in their C(component.stopped) entries.
    type: str
    default: stopped by cutover
  host_label:
    description: Host name written into the journal entries (usually C(inventory_hostname)).
    type: str
extends_documentation_fragment:
  - cutover_service_manager
notes:
  - Check mode reads the process manager (and, for V(reloaded), the worker pids from the health URLs) and reports
    what would change and how; it stops, starts and signals nothing.
  - A reload whose new worker cannot start leaves the old worker serving; the module fails once O(timeout) passed,
    naming the service and the last lines of its log (where the master says why).
"""

EXAMPLES = r"""
- name: Stop the failing component at once
  cutover_service:
    services: [{name: safety, service: cutover-safety, base_url: "http://10.0.0.5:18105"}]
    state: stopped
    manager: supervisor
    supervisor_config: /etc/supervisor/supervisord.conf
    reason: "probe safety/unsafe_blocked_ratio failed"
    host_label: "{{ inventory_hostname }}"
  register: stopped

- name: Start every component of this host and wait until each answers /healthz
  cutover_service:
    services: "{{ my_components }}"
    state: started
    manager: systemd
    timeout: 60

- name: Put tts on the release current points at now, without refusing a request
  cutover_service:
    services: [{name: tts, service: cutover-tts, base_url: "http://127.0.0.1:18103", restart: reload}]
    state: reloaded
    manager: supervisor
    supervisor_config: /etc/supervisor/supervisord.conf
    host_label: "{{ inventory_hostname }}"
"""

RETURN = r"""
services:
  description:
    - Per component, what happened to its service.
    - C(pid_before) and C(pid) are always the process manager's process (a reload keeps it: the master).
    - With V(reloaded) also C(action), how the service was renewed - V(reload) (with C(worker_pid_before) and
      C(worker_pid), the workers' pids read from the health URL), V(restart) or V(start).
  returned: always
  type: dict
  sample:
    safety: {service: cutover-safety, pid_before: 4242, pid: null, stopped_at: "2026-12-04T19:00:01.123Z"}
    tts: {service: cutover-tts, pid_before: null, pid: 4300, ready_s: 0.42}
    ai: {service: cutover-ai, action: reload, pid_before: 5100, pid: 5100, worker_pid_before: 5120, worker_pid: 5377,
         ready_s: 0.61}
journal:
  description: C(component.stopped) and C(component.started) entries for cutover_journal O(entries).
  returned: always
  type: list
  elements: dict
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_events import new_entry
from ansible.module_utils.cutover_services import (
    SERVICE_MANAGER_REQUIRED_IF, ServiceError, manager, reload_services, service_manager_argument_spec, start_services,
    stop_services, worker_pids,
)

SERVICE_FIELDS = ("name", "service", "base_url", "health", "restart")
RESTART_MODES = ("restart", "reload")


def normalized(services: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    result, problems = [], []
    for index, item in enumerate(services):
        unknown = sorted(set(item) - set(SERVICE_FIELDS) - {"kind", "namespaces", "probes", "hosts", "restore_policy"})
        if unknown:
            problems.append("services[%d] has unknown field(s) %s; allowed: %s"
                            % (index, ", ".join(unknown), ", ".join(SERVICE_FIELDS)))
        if not isinstance(item.get("name"), str) or not item.get("name"):
            problems.append("services[%d].name must be the component name" % index)
            continue
        restart = item.get("restart") or "restart"
        if restart not in RESTART_MODES:
            problems.append("services[%d] (%s).restart must be one of %s, got %r"
                            % (index, item["name"], ", ".join(RESTART_MODES), restart))
        base_url = (item.get("base_url") or "").rstrip("/")
        if restart == "reload" and not base_url:
            problems.append("services[%d] (%s) has restart: reload but no base_url; the worker pid is read from its "
                            "health URL" % (index, item["name"]))
        result.append({"name": item["name"], "service": item.get("service") or "cutover-%s" % item["name"],
                       "health_url": base_url + (item.get("health") or "/healthz") if base_url else None,
                       "restart": restart})
    return result, problems


def stop(handle: Any, services: list[dict[str, Any]], params: dict[str, Any]) -> tuple[dict, list]:
    """Stop the services; journal each stop, except the stop half of a restart (its start is journaled)."""
    stopped = stop_services(handle, [item["service"] for item in services], params["timeout"])
    report, entries = {}, []
    for item in services:
        done = stopped[item["service"]]
        report[item["name"]] = {"service": item["service"], "pid_before": done["pid"], "pid": None,
                                "stopped_at": done["stopped_at"]}
        if done["was_running"] and params["state"] == "stopped":
            entries.append(new_entry("component.stopped", component=item["name"], host=params["host_label"],
                                     ts=done["stopped_at"], service=item["service"], pid=done["pid"],
                                     reason=params["reason"]))
    return report, entries


def start(handle: Any, services: list[dict[str, Any]], params: dict[str, Any], before: dict[str, Any]
          ) -> tuple[dict, list]:
    started = start_services(handle, {item["service"]: item["health_url"] for item in services}, params["timeout"])
    report, entries = {}, []
    for item in services:
        done = started[item["service"]]
        report[item["name"]] = {"service": item["service"], "pid_before": before[item["service"]],
                                "pid": done["pid"], "ready_s": done["ready_s"]}
        if done["pid"] != before[item["service"]]:
            entries.append(new_entry("component.started", component=item["name"], host=params["host_label"],
                                     service=item["service"], pid=done["pid"], ready_s=done["ready_s"]))
    return report, entries


def reload(handle: Any, services: list[dict[str, Any]], params: dict[str, Any], before: dict[str, Any]
           ) -> tuple[dict, list]:
    """Reload the services (all running, restart: reload); journal each new worker as started. ``pid`` stays the
    manager's process (the master), as for every other state; the workers' pids are worker_pid*."""
    reloaded = reload_services(handle, {item["service"]: item["health_url"] for item in services}, params["timeout"])
    report, entries = {}, []
    for item in services:
        done, pid = reloaded[item["service"]], before[item["service"]]
        report[item["name"]] = {"service": item["service"], "action": "reload", "pid_before": pid, "pid": pid,
                                "worker_pid_before": done["pid_before"], "worker_pid": done["pid"],
                                "ready_s": done["ready_s"]}
        entries.append(new_entry("component.started", component=item["name"], host=params["host_label"],
                                 service=item["service"], pid=pid, worker_pid=done["pid"], ready_s=done["ready_s"]))
    return report, entries


def reload_plan(services: list[dict[str, Any]], pids: dict[str, Any]) -> dict[str, str]:
    """name -> how state reloaded renews each service: reload (running, restart: reload), restart or start."""
    return {item["name"]: "reload" if item["restart"] == "reload" and pids[item["service"]]
            else "restart" if pids[item["service"]] else "start" for item in services}


def renew(handle: Any, services: list[dict[str, Any]], params: dict[str, Any], before: dict[str, Any]
          ) -> tuple[dict, list]:
    """State reloaded: reload what can be reloaded, restart or start the rest."""
    plan = reload_plan(services, before)
    report: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    reloadable = [item for item in services if plan[item["name"]] == "reload"]
    if reloadable:
        report, entries = reload(handle, reloadable, params, before)
    others = [item for item in services if plan[item["name"]] != "reload"]
    if others:
        stopped_report, _ = stop(handle, others, params)
        started_report, started_entries = start(handle, others, params, before)
        report.update({name: {"action": plan[name], **stopped_report[name], **row}
                       for name, row in started_report.items()})
        entries += started_entries
    return report, entries


def check_report(handle: Any, services: list[dict[str, Any]], state: str, before: dict[str, Any]) -> dict:
    """What check mode reports per service: pid_before, and with reloaded how it would be renewed."""
    report = {item["name"]: {"service": item["service"], "pid_before": before[item["service"]]} for item in services}
    if state == "reloaded":
        plan = reload_plan(services, before)
        reloadable = {item["service"]: item["health_url"] for item in services if plan[item["name"]] == "reload"}
        workers = worker_pids(reloadable) if reloadable else {}
        for item in services:
            report[item["name"]]["action"] = plan[item["name"]]
            if item["service"] in workers:
                report[item["name"]]["worker_pid_before"] = workers[item["service"]]
    return report


def would_change(state: str, pids: dict[str, Any]) -> bool:
    running = [pid for pid in pids.values() if pid]
    return {"stopped": bool(running), "started": len(running) < len(pids), "restarted": bool(pids),
            "reloaded": bool(pids)}[state]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "list", "elements": "dict", "required": True},
            "state": {"type": "str", "choices": ["stopped", "started", "restarted", "reloaded"], "required": True},
            "timeout": {"type": "float", "default": 30.0},
            "reason": {"type": "str", "default": "stopped by cutover"},
            "host_label": {"type": "str"},
            **service_manager_argument_spec(),
        },
        required_if=SERVICE_MANAGER_REQUIRED_IF,
        supports_check_mode=True,
    )
    params = module.params
    services, problems = normalized(params["services"])
    if params["timeout"] <= 0:
        problems.append("timeout must be > 0, got %s" % params["timeout"])
    if problems:
        module.fail_json(msg="; ".join(problems))
    try:
        handle = manager(params["manager"], params["supervisor_config"])
        names = [item["service"] for item in services]
        before = handle.pids(names) if names else {}
        if module.check_mode or not services:
            module.exit_json(changed=would_change(params["state"], before) if services else False,
                             services=check_report(handle, services, params["state"], before), journal=[])
        report: dict[str, Any] = {}
        entries: list[dict[str, Any]] = []
        if params["state"] == "reloaded":
            report, entries = renew(handle, services, params, before)
        if params["state"] in ("stopped", "restarted"):
            report, entries = stop(handle, services, params)
        if params["state"] in ("started", "restarted"):
            started_report, started_entries = start(handle, services, params, before)
            for name, row in started_report.items():
                report[name] = {**report.get(name, {}), **row}
            entries += started_entries
    except ServiceError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(changed=bool(entries) or params["state"] in ("restarted", "reloaded"), services=report,
                     journal=entries)


if __name__ == "__main__":
    main()
