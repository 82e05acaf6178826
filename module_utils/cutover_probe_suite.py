# -*- coding: utf-8 -*-
# Run the probe suites of one host: every component at once, and within a component every light probe at once;
# probes that load the component (concurrent requests) or measure what other traffic moves (connections, latency,
# memory) run alone afterwards, so no probe's traffic moves another's value or exhausts the component's pool.
# Judged results, their journal entries and the trigger of a failed suite.
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.cutover_events import new_entry, utc_timestamp
from ansible.module_utils.cutover_judge import fill_placeholders, judge, resolve_relative_urls, validate_probe_specs
from ansible.module_utils.cutover_probes import Measurement, run_probe

ISOLATED_METRICS = frozenset(("client_count", "client_growth", "latency_p50_ms", "latency_p95_ms", "used_memory_mb"))
ENTRY_FIELDS = ("probe", "phase", "verdict", "value", "baseline", "threshold", "critical", "metric", "detail")
TRIGGER_FIELDS = ("component", "host", "probe", "phase", "value", "baseline", "threshold", "detail")


def prepare_specs(component: str, probes: Any, base_url: str | None, placeholders: dict[str, Any],
                  only_critical: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Validated specs of one component with placeholders filled and relative URLs joined to base_url."""
    specs, errors = validate_probe_specs(component, resolve_relative_urls(fill_placeholders(probes, placeholders),
                                                                          base_url))
    return [spec for spec in specs if spec["critical"] or not only_critical], errors


def probe_result(component: str, spec: dict[str, Any], phase: str, baseline: dict[str, Any],
                 redis_options: dict[str, Any], headers: dict[str, str], host: str) -> dict[str, Any]:
    """Run one probe and judge it; any unexpected exception becomes the verdict error."""
    started = time.monotonic()
    try:
        measurement = run_probe(spec, redis_options, headers)
    except Exception as exc:  # a probe must never crash the module: its failure is a verdict
        measurement = Measurement(None, "probe crashed: %s: %s" % (type(exc).__name__, exc))
    baseline_value = baseline.get(spec["name"])
    judgement = judge(spec["expect"], phase, measurement.value, baseline_value, measurement.error)
    return {
        "component": component,
        "host": host,
        "probe": spec["name"],
        "phase": phase,
        "type": spec["type"],
        "metric": spec["metric"],
        "verdict": judgement["verdict"],
        "value": measurement.value,
        "baseline": baseline_value,
        "threshold": judgement["threshold"],
        "critical": spec["critical"],
        "detail": "; ".join(part for part in (judgement["detail"], measurement.detail) if part),
        "duration_ms": round((time.monotonic() - started) * 1000.0, 1),
        "at": utc_timestamp(),
    }


def isolated(spec: dict[str, Any]) -> bool:
    return spec["metric"] in ISOLATED_METRICS or spec.get("concurrency", 1) > 1


def run_suite(component: str, specs: list[dict[str, Any]], phase: str, baseline: dict[str, Any],
              redis_options: dict[str, Any], headers: dict[str, str], host: str) -> list[dict[str, Any]]:
    """One component's probes, in spec order in the result: shared ones at once, isolated ones one by one."""
    def run(spec: dict[str, Any]) -> dict[str, Any]:
        return probe_result(component, spec, phase, baseline, redis_options, headers, host)

    shared = [spec for spec in specs if not isolated(spec)]
    by_name: dict[str, dict[str, Any]] = {}
    if shared:
        with ThreadPoolExecutor(max_workers=len(shared)) as pool:
            by_name.update((result["probe"], result) for result in pool.map(run, shared))
    by_name.update((spec["name"], run(spec)) for spec in specs if isolated(spec))
    return [by_name[spec["name"]] for spec in specs]


def run_suites(suites: list[dict[str, Any]], phase: str, redis_options: dict[str, Any], headers: dict[str, str],
               host: str) -> list[dict[str, Any]]:
    """Every suite ({component, specs, baseline}) at once; results in suite order."""
    if not suites:
        return []

    def run(suite: dict[str, Any]) -> list[dict[str, Any]]:
        return run_suite(suite["component"], suite["specs"], phase, suite["baseline"], redis_options, headers, host)

    with ThreadPoolExecutor(max_workers=len(suites)) as pool:
        return [result for results in pool.map(run, suites) for result in results]


def failed_critically(result: dict[str, Any]) -> bool:
    return result["critical"] and result["verdict"] in ("fail", "error")


def journal_entries(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """probe.result entries, each stamped with the time its verdict was reached."""
    return [new_entry("probe.result", component=result["component"], host=result["host"], ts=result["at"],
                      **{field: result.get(field) for field in ENTRY_FIELDS})
            for result in results]


def trigger_of(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first failed critical probe as a rollback trigger, or None."""
    failed = next((result for result in results if failed_critically(result)), None)
    return {field: failed.get(field) for field in TRIGGER_FIELDS} if failed else None


def values_by_component(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    for result in results:
        values.setdefault(result["component"], {})[result["probe"]] = result["value"]
    return values
