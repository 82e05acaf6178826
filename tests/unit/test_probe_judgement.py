"""Judgement over several measurements (count, interval, initial_delay, failure_limit, consecutive_error_limit,
inconclusive) and what the verdicts ask of the rollout; measurements are scripted and sleeps recorded, no I/O."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from ansible.module_utils.cutover_judge import (
    analysis_verdict, argv_secrets, gate, judgement_settings, mask_argv, paused, recorded_spec,
    resolve_relative_urls, rollback_cause, summarize, validate_probe_specs,
)
from ansible.module_utils.cutover_probe_suite import (
    failed_critically, journal_entries, measure_and_judge, phase_placeholders, prepare_specs, trigger_of,
)
from ansible.module_utils.cutover_probes import Measurement, largest_rise


def settings(**fields: Any) -> dict[str, Any]:
    return judgement_settings({"critical": True, **fields})


def spec(**fields: Any) -> dict[str, Any]:
    return {"name": "errors", "type": "http", "metric": "error_rate", "urls": ["http://h/x"], "critical": True,
            "expect": {"max": 0.05}, **fields}


def scripted(*measurements: Measurement) -> Callable[[], Measurement]:
    queue = list(measurements)
    return lambda: queue.pop(0)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


OK, BAD = Measurement(0.0, None, "ok"), Measurement(0.5, None, "half failed")
DOWN = Measurement(None, "connection refused", "")


# ---------------------------------------------------------------- the analysis

@pytest.mark.parametrize("outcomes, fields, verdict", [
    (["pass"], {}, "pass"),
    (["recorded"], {}, "pass"),
    (["fail"], {}, "fail"),
    (["error"], {}, "inconclusive"),
    (["pass", "fail"], {"count": 5, "failure_limit": 1}, None),
    (["pass", "fail", "pass", "fail"], {"count": 5, "failure_limit": 1}, "fail"),
    (["pass", "fail", "pass", "pass", "pass"], {"count": 5, "failure_limit": 1}, "pass"),
    (["error", "pass", "error", "pass"], {"count": 4, "consecutive_error_limit": 1}, "pass"),
    (["pass", "error", "error"], {"count": 4, "consecutive_error_limit": 1}, "inconclusive"),
    (["error", "fail"], {"count": 3, "consecutive_error_limit": 1}, "fail"),
    (["fail", "error"], {"count": 2, "failure_limit": 1, "consecutive_error_limit": 1}, "inconclusive"),
])
def test_analysis_verdict(outcomes: list[str], fields: dict[str, Any], verdict: str | None) -> None:
    assert analysis_verdict(outcomes, settings(**fields)) == verdict


def test_judgement_defaults_take_one_measurement_and_follow_criticality() -> None:
    assert settings() == {"count": 1, "interval": 0, "initial_delay": 0, "failure_limit": 0,
                          "consecutive_error_limit": 0, "inconclusive": "rollback"}
    assert judgement_settings({"critical": False})["inconclusive"] == "pause"
    assert judgement_settings({"critical": True, "inconclusive": "pause"})["inconclusive"] == "pause"


# ---------------------------------------------------------------- measuring and judging

def test_measurements_are_spaced_and_judged_one_by_one() -> None:
    sleeps = Sleeps()
    judged = measure_and_judge(spec(count=4, interval=3, initial_delay=2, failure_limit=1), "verify", None,
                               scripted(OK, BAD, Measurement(0.01, None, "ok"), OK), sleeps)
    assert sleeps == [2, 3, 3, 3]
    assert [(m["value"], m["verdict"]) for m in judged["measurements"]] == [(0.0, "pass"), (0.5, "fail"),
                                                                            (0.01, "pass"), (0.0, "pass")]
    assert judged["measurements"][1]["detail"] == "value 0.5 > 0.05 (max)"
    assert (judged["verdict"], judged["value"], judged["failures"], judged["errors"]) == ("pass", 0.005, 1, 0)
    assert judged["threshold"] == "<= 0.05; at most 1 of 4 measurement(s) may break it"
    assert judged["detail"] == ("4 of 4 measurement(s): 3 passed, 1 failed (failure_limit 1), 0 error(s) "
                                "(consecutive_error_limit 0); ok")


def test_measuring_stops_once_the_verdict_is_decided() -> None:
    sleeps = Sleeps()
    judged = measure_and_judge(spec(count=10, interval=1, failure_limit=1), "canary", None,
                               scripted(BAD, OK, BAD), sleeps)
    assert (judged["verdict"], len(judged["measurements"]), sleeps) == ("fail", 3, [1, 1])
    # the first failed measurement says why
    assert judged["detail"].endswith("; value 0.5 > 0.05 (max); half failed")


def test_one_measurement_keeps_the_texts_of_a_single_probe() -> None:
    judged = measure_and_judge(spec(), "verify", None, scripted(BAD), Sleeps())
    assert (judged["verdict"], judged["value"], judged["threshold"]) == ("fail", 0.5, "<= 0.05")
    assert judged["detail"] == "value 0.5 > 0.05 (max); half failed"


def test_an_unreachable_target_with_a_failure_value_still_fails() -> None:
    refused = Measurement(1.0, "connection refused", "2 request(s): 2 without response")
    judged = measure_and_judge(spec(), "verify", None, scripted(refused), Sleeps())
    assert (judged["verdict"], judged["value"], judged["errors"]) == ("fail", 1.0, 0)


def test_an_unreachable_target_without_a_value_is_inconclusive_and_tolerated_errors_are_not() -> None:
    assert measure_and_judge(spec(), "verify", None, scripted(DOWN), Sleeps())["verdict"] == "inconclusive"
    recovered = measure_and_judge(spec(count=3, consecutive_error_limit=1), "verify", None,
                                  scripted(DOWN, OK, OK), Sleeps())
    assert (recovered["verdict"], recovered["errors"], recovered["value"]) == ("pass", 1, 0.0)
    assert recovered["measurements"][0] == {"at": recovered["measurements"][0]["at"], "value": None,
                                            "verdict": "error", "detail": "connection refused"}


def test_a_missing_baseline_is_inconclusive_in_every_measurement() -> None:
    judged = measure_and_judge(spec(expect={"max_ratio": 2}, count=2, consecutive_error_limit=1), "watch", None,
                               scripted(OK, OK), Sleeps())
    assert (judged["verdict"], judged["errors"]) == ("inconclusive", 2)
    assert "; more errors in a row than consecutive_error_limit; rule max_ratio" in judged["detail"]
    never_passed = measure_and_judge(spec(count=2, failure_limit=1, consecutive_error_limit=1), "watch", None,
                                     scripted(BAD, DOWN), Sleeps())
    assert never_passed["verdict"] == "inconclusive"
    assert "; no measurement passed; connection refused" in never_passed["detail"]
    assert "rule max_ratio needs a baseline value" in judged["detail"]


def test_baseline_records_the_median() -> None:
    values = [Measurement(value, None, "") for value in (10.0, 30.0, 20.0)]
    judged = measure_and_judge(spec(expect={"max_ratio": 2}, count=3), "baseline", None, scripted(*values), Sleeps())
    assert (judged["verdict"], judged["value"]) == ("recorded", 20.0)
    assert [m["verdict"] for m in judged["measurements"]] == ["pass"] * 3


# ---------------------------------------------------------------- what the verdicts ask of the rollout

def result(probe: str, verdict: str, critical: bool = True, policy: str | None = None) -> dict[str, Any]:
    probe_spec = {"inconclusive": policy} if policy else {}
    return {"component": "ai", "host": "toy1", "probe": probe, "phase": "verify", "verdict": verdict,
            "critical": critical, "value": None, "baseline": None, "threshold": "<= 1", "detail": "why",
            "spec": probe_spec}


@pytest.mark.parametrize("verdict, critical, policy, phase, action", [
    ("pass", True, None, "verify", "go"),
    ("recorded", True, None, "baseline", "go"),
    ("fail", True, None, "verify", "rollback"),
    ("fail", False, None, "verify", "note"),
    ("inconclusive", True, None, "verify", "rollback"),
    ("inconclusive", True, "pause", "canary", "pause"),
    ("inconclusive", False, None, "watch", "pause"),
    ("inconclusive", True, "pause", "rollback", "rollback"),
    ("inconclusive", False, None, "rollback", "note"),
    ("error", True, None, "verify", "rollback"),
])
def test_gate(verdict: str, critical: bool, policy: str | None, phase: str, action: str) -> None:
    assert gate(result("p", verdict, critical, policy), phase) == action


def test_a_failure_triggers_before_an_earlier_inconclusive_probe() -> None:
    results = [result("unreadable", "inconclusive"), result("ttl", "fail")]
    assert rollback_cause(results, "verify")["probe"] == "ttl"
    assert trigger_of(results, "verify") == {"component": "ai", "host": "toy1", "probe": "ttl", "phase": "verify",
                                             "verdict": "fail", "value": None, "baseline": None, "threshold": "<= 1",
                                             "detail": "why"}
    summary = summarize("ai", "verify", results)
    assert summary["passed"] is False
    assert summary["msg"].startswith("ai verify: 1 critical probe(s) failed, 1 critical probe(s) inconclusive: "
                                     "ai/unreadable: value none, baseline none, threshold <= 1; inconclusive: why")
    assert not paused(results, "verify")


def test_pause_only_without_a_rollback() -> None:
    waiting = [result("ok", "pass"), result("growth", "inconclusive", critical=False)]
    assert paused(waiting, "verify") and trigger_of(waiting, "verify") is None
    assert summarize("ai", "verify", waiting) == {
        "passed": False, "failures": ["ai/growth: value none, baseline none, threshold <= 1 (non-critical); "
                                      "inconclusive: why"],
        "msg": "ai verify: paused for a human, 1 probe(s) inconclusive: ai/growth: value none, baseline none, "
               "threshold <= 1 (non-critical); inconclusive: why"}
    assert not paused(waiting + [result("ttl", "fail")], "verify")
    # a rollback's quick test cannot pause: the non-critical probe is only listed
    assert summarize("ai", "rollback", waiting)["passed"] is True
    assert failed_critically(result("readable", "inconclusive", policy="pause"))


def test_journal_entries_carry_measurements_and_the_spec() -> None:
    judged = measure_and_judge(spec(count=2, failure_limit=1), "canary", None, scripted(BAD, OK), Sleeps())
    probe_result = {"component": "tts", "host": "toy1", "probe": "errors", "phase": "canary", "critical": True,
                    "metric": "error_rate", "baseline": None, "spec": recorded_spec(spec(count=2, failure_limit=1)),
                    "at": "2026-11-25T22:21:14.123Z", **judged}
    [entry] = journal_entries([probe_result])
    assert entry["data"]["failures"] == 1 and len(entry["data"]["measurements"]) == 2
    assert entry["data"]["spec"]["failure_limit"] == 1 and entry["data"]["spec"]["inconclusive"] == "rollback"


# ---------------------------------------------------------------- specs of the new metrics

def errors_for(*probes: dict[str, Any]) -> list[str]:
    return validate_probe_specs("tts", list(probes))[1]


def test_new_metric_defaults() -> None:
    specs, errors = validate_probe_specs("tts", [
        {"name": "ttl", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:*",
         "trigger_url": "http://h/speak?text={nonce}", "expect": {"min": 60}},
        {"name": "rss", "type": "http", "metric": "process_growth", "resource": "rss_mb",
         "pid_url": "http://h/healthz", "burst_url": "http://h/speak?text={nonce}", "expect": {"max": 20}},
        {"name": "readable", "type": "command", "metric": "readable_ratio", "argv": ["reader"],
         "write_url": "http://h/reply?prompt={nonce}", "critical": False, "expect": {"min": 1}},
    ])
    assert errors == []
    ttl, rss, readable = specs
    assert (ttl["stat"], ttl["trigger_requests"], ttl["window"]) == ("min", 1, 3.0)
    assert {key: rss[key] for key in ("pid_field", "burst_requests", "burst_concurrency", "window", "settle",
                                      "samples")} == {"pid_field": "pid", "burst_requests": 10,
                                                      "burst_concurrency": 1, "window": 3.0, "settle": 0.5,
                                                      "samples": 3}
    assert "urls" not in rss and "requests" not in rss
    assert readable["write_requests"] == 5
    assert recorded_spec(readable)["inconclusive"] == "pause"


@pytest.mark.parametrize("probe, message", [
    ({"name": "ttl", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:*", "expect": {"min": 1}},
     "probe tts/ttl: trigger_url is required for metric new_key_ttl_s"),
    ({"name": "ttl", "type": "redis", "metric": "new_key_ttl_s", "pattern": "tts:*", "trigger_url": "http://h/",
      "stat": "p95", "expect": {"min": 1}},
     "probe tts/ttl: stat must be one of min, median, got 'p95'"),
    ({"name": "rss", "type": "http", "metric": "process_growth", "resource": "heap", "pid_url": "http://h/",
      "burst_url": "http://h/", "expect": {"max": 1}},
     "probe tts/rss: resource must be one of rss_mb, fds, clients, got 'heap'"),
    ({"name": "rss", "type": "http", "metric": "process_growth", "resource": "rss_mb", "pid_url": "http://h/",
      "burst_url": "http://h/", "client_name": "toy-ai", "expect": {"max": 1}},
     "probe tts/rss: client_name is only used with resource clients, not rss_mb"),
    ({"name": "read", "type": "command", "metric": "readable_ratio", "argv": ["r"], "expect": {"min": 1}},
     "probe tts/read: give either write_url (fresh entries written through the new release) or sample_keys (a "
     "sample of the keys of these patterns), not both or neither"),
    ({"name": "read", "type": "command", "metric": "readable_ratio", "argv": ["r"], "write_url": "/reply?{nonce}",
      "expect": {"min": 1}},
     "probe tts/read: write_url must be an http:// or https:// URL with a host (one starting with / needs the "
     "component's base_url), got '/reply?{nonce}'"),
    ({"name": "read", "type": "command", "metric": "readable_ratio", "argv": ["r"], "write_url": "http://h/reply",
      "expect": {"min": 1}},
     "probe tts/read: write_url must contain {nonce}: each write makes a fresh entry, and the reader is given the "
     "nonces to find them"),
    ({"name": "ok", "type": "http", "metric": "status_ok", "url": "http://h/", "count": 0, "expect": {"min": 1}},
     "probe tts/ok: count must be an integer from 1 to 1000, got 0"),
    ({"name": "ok", "type": "http", "metric": "status_ok", "url": "http://h/", "interval": -1, "expect": {"min": 1}},
     "probe tts/ok: interval must be a number from 0 to 3600.0, got -1"),
])
def test_new_field_errors(probe: dict[str, Any], message: str) -> None:
    assert errors_for(probe) == [message]


def test_process_growth_pid_url_defaults_to_the_base_urls_healthz() -> None:
    probes = [{"name": "rss", "metric": "process_growth", "burst_url": "/x"},
              {"name": "own", "metric": "process_growth", "pid_url": "/pid"}]
    resolved = resolve_relative_urls(probes, "http://127.0.0.1:8101")
    assert resolved[0]["pid_url"] == "http://127.0.0.1:8101/healthz"
    assert resolved[1]["pid_url"] == "http://127.0.0.1:8101/pid"
    assert "pid_url" not in probes[0]


def test_from_release_defaults_to_release_and_fills_argv() -> None:
    assert phase_placeholders({"release": "legacy"}) == {"release": "legacy", "from_release": "legacy"}
    assert phase_placeholders({"release": "b", "from_release": "a"}) == {"release": "b", "from_release": "a"}
    assert phase_placeholders({}) == {}
    probes = [{"name": "read", "type": "command", "metric": "readable_ratio", "write_url": "/reply?p={nonce}",
               "argv": ["/opt/{from_release}/bin/python", "/opt/{from_release}/read.py", "--expect={release}"],
               "expect": {"min": 1}}]
    [prepared], errors = prepare_specs("ai", probes, "http://127.0.0.1:8102", {"release": "legacy"})
    assert errors == []
    assert prepared["argv"] == ["/opt/legacy/bin/python", "/opt/legacy/read.py", "--expect=legacy"]
    assert prepared["write_url"] == "http://127.0.0.1:8102/reply?p={nonce}"


def test_recorded_spec_masks_secrets() -> None:
    argv = ["reader", "--password=s3cret", "--token", "t0ken", "--api-key=k3y", "--keys=tts:*", "plain"]
    assert mask_argv(argv) == ["reader", "--password=***", "--token", "***", "--api-key=***", "--keys=tts:*", "plain"]
    assert argv_secrets([{"argv": argv}]) == {"s3cret", "t0ken", "k3y"}
    recorded = recorded_spec(spec(urls=["http://u:pw@h/x"], trigger_url="http://u:pw@h/t", argv=argv))
    assert recorded["urls"] == ["http://***@h/x"] and recorded["trigger_url"] == "http://***@h/t"
    assert "s3cret" not in str(recorded) and "pw@" not in str(recorded)


@pytest.mark.parametrize("readings, rise", [
    ([4, 7, 7, 7], 3),                         # a pool that fills once, then levels off
    ([8, 16, 29, 47, 21, 33, 53, 30, 39], 45),  # a leak the garbage collector turns into a sawtooth
    ([39, 51, 31, 44, 55, 12, 24, 31, 18], 24),  # ... starting on the garbage of an earlier burst
    ([10.5, 10.25, 10.0], 0),
])
def test_largest_rise(readings: list[float], rise: float) -> None:
    assert largest_rise(readings) == rise
