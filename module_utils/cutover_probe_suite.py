# -*- coding: utf-8 -*-
# Run the probe suites of one host: every component at once, and within a component every light probe at once;
# probes that load the component (concurrent requests) or measure what other traffic moves (connections, latency,
# memory, the process's resources) run alone afterwards, so no probe's traffic moves another's value or exhausts
# the component's pool. Each probe is judged over its measurements (count, interval, limits); judged results,
# their journal entries and the trigger of a failed suite.
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ansible.module_utils.cutover_events import new_entry, utc_timestamp
from ansible.module_utils.cutover_judge import (
    analysis_text, analysis_verdict, fill_placeholders, gate, judge, judgement_settings, paused, recorded_spec,
    representative_value, resolve_relative_urls, rollback_cause, threshold_text, validate_probe_specs,
)
from ansible.module_utils.cutover_probes import Measurement, run_probe

ISOLATED_METRICS = frozenset(("client_count", "client_growth", "latency_p50_ms", "latency_p95_ms", "used_memory_mb",
                              "process_growth"))
ENTRY_FIELDS = ("probe", "phase", "verdict", "value", "baseline", "threshold", "critical", "metric", "detail",
                "measurements", "failures", "errors", "spec")
TRIGGER_FIELDS = ("component", "host", "probe", "phase", "verdict", "value", "baseline", "threshold", "detail")


def phase_placeholders(placeholders: dict[str, Any]) -> dict[str, Any]:
    """The placeholders with {from_release} defaulting to {release}: in a phase where the component runs the release
    it came from (baseline, rollback) the caller knows only that one."""
    if "from_release" in placeholders or "release" not in placeholders:
        return placeholders
    return dict(placeholders, from_release=placeholders["release"])


def prepare_specs(component: str, probes: Any, base_url: str | None, placeholders: dict[str, Any],
                  only_critical: bool = False, phase: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Validated specs of one component with placeholders filled and relative URLs joined to base_url; with a
    phase, only the probes that run in it (their ``phases``)."""
    filled = fill_placeholders(probes, phase_placeholders(placeholders))
    specs, errors = validate_probe_specs(component, resolve_relative_urls(filled, base_url))
    return [spec for spec in specs
            if (spec["critical"] or not only_critical) and (phase is None or phase in spec["phases"])], errors


def safe_measurement(spec: dict[str, Any], redis_options: dict[str, Any], headers: dict[str, str]) -> Measurement:
    """One measurement; any unexpected exception becomes a measurement error."""
    try:
        return run_probe(spec, redis_options, headers)
    except Exception as exc:  # a probe must never crash the module: its failure is a verdict
        return Measurement(None, "probe crashed: %s: %s" % (type(exc).__name__, exc))


def measure_and_judge(spec: dict[str, Any], phase: str, baseline_value: Any, measure: Callable[[], Measurement],
                      sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Take up to count measurements (initial_delay before the first, interval between them), judge each, and stop
    as soon as the verdict is decided. Returns {verdict, value, threshold, detail, measurements, failures, errors}."""
    settings = judgement_settings(spec)
    measurements: list[dict[str, Any]] = []
    details: list[str] = []
    verdict = None
    if settings["initial_delay"]:
        sleep(settings["initial_delay"])
    while verdict is None:
        if measurements and settings["interval"]:
            sleep(settings["interval"])
        measurement = measure()
        judged = judge(spec["expect"], phase, measurement.value, baseline_value, measurement.error)
        outcome = "error" if judged["verdict"] == "error" else "fail" if judged["verdict"] == "fail" else "pass"
        measurements.append({"at": utc_timestamp(), "value": measurement.value, "verdict": outcome,
                             "detail": judged["detail"] or None})
        details.append("; ".join(part for part in (judged["detail"], measurement.detail) if part))
        verdict = analysis_verdict([entry["verdict"] for entry in measurements], settings)
    outcomes = [entry["verdict"] for entry in measurements]
    return {
        "verdict": "recorded" if verdict == "pass" and phase == "baseline" else verdict,
        "value": representative_value([entry["value"] for entry in measurements]),
        "threshold": threshold_text(judged["threshold"], settings),
        "detail": "; ".join(part for part in (analysis_text(outcomes, settings, verdict),
                                              details[telling_measurement(outcomes, verdict)]) if part),
        "measurements": measurements,
        "failures": outcomes.count("fail"),
        "errors": outcomes.count("error"),
    }


def telling_measurement(outcomes: list[str], verdict: str) -> int:
    """Index of the measurement whose detail explains the verdict: the first that failed, the last error, or the
    last measurement."""
    if verdict == "fail":
        return outcomes.index("fail")
    if verdict == "inconclusive" and "error" in outcomes:
        return len(outcomes) - 1 - outcomes[::-1].index("error")
    return len(outcomes) - 1


def probe_result(component: str, spec: dict[str, Any], phase: str, baseline: dict[str, Any],
                 redis_options: dict[str, Any], headers: dict[str, str], host: str) -> dict[str, Any]:
    """Run one probe (all its measurements) and judge it."""
    started = time.monotonic()
    baseline_value = baseline.get(spec["name"])
    judgement = measure_and_judge(spec, phase, baseline_value, lambda: safe_measurement(spec, redis_options, headers))
    return {
        "component": component,
        "host": host,
        "probe": spec["name"],
        "phase": phase,
        "type": spec["type"],
        "metric": spec["metric"],
        "baseline": baseline_value,
        "critical": spec["critical"],
        "spec": recorded_spec(spec),
        **judgement,
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
    """A critical probe that did not pass (a rollback's quick test fails on it, whatever its inconclusive policy)."""
    return result["critical"] and result["verdict"] in ("fail", "inconclusive", "error")


def journal_entries(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """probe.result entries, each stamped with the time its verdict was reached."""
    return [new_entry("probe.result", component=result["component"], host=result["host"], ts=result["at"],
                      **{field: result[field] for field in ENTRY_FIELDS if field in result})
            for result in results]


def trigger_of(results: list[dict[str, Any]], phase: str | None = None) -> dict[str, Any] | None:
    """The rollback trigger of these results (a failed critical probe first, else a critical inconclusive one
    whose policy is rollback), or None."""
    cause = rollback_cause(results, phase or (results[0]["phase"] if results else ""))
    return {field: cause.get(field) for field in TRIGGER_FIELDS} if cause else None


def pause_of(results: list[dict[str, Any]], phase: str | None = None) -> dict[str, Any] | None:
    """The result that pauses the rollout for a human (an inconclusive probe whose policy is pause), when nothing
    asks for a rollback; None otherwise."""
    phase = phase or (results[0]["phase"] if results else "")
    if not paused(results, phase):
        return None
    cause = next(result for result in results if gate(result, phase) == "pause")
    return {field: cause.get(field) for field in TRIGGER_FIELDS}


def values_by_component(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    for result in results:
        values.setdefault(result["component"], {})[result["probe"]] = result["value"]
    return values
