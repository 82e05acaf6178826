"""Judgement rules, threshold text and probe spec validation (module_utils/cutover_judge.py), no I/O."""
from __future__ import annotations

from typing import Any

import pytest

from ansible.module_utils.cutover_judge import (failure_line, format_value, judge, mask_url, summarize,
                                                validate_baseline, validate_headers, validate_probe_specs,
                                                values_equal)


def http_probe(**fields: Any) -> dict[str, Any]:
    return {"name": "latency", "type": "http", "url": "http://127.0.0.1:8082/speak?text=hi",
            "metric": "latency_p95_ms", "expect": {"max": 1000}, **fields}


def errors_for(*probes: dict[str, Any], component: str = "tts") -> list[str]:
    return validate_probe_specs(component, list(probes))[1]


# ---------------------------------------------------------------- rules and verdicts

@pytest.mark.parametrize("expect, value, verdict", [
    ({"min": 0.99}, 0.99, "pass"),
    ({"min": 0.99}, 0.98, "fail"),
    ({"max": 100}, 100, "pass"),
    ({"max": 100}, 100.5, "fail"),
    ({"equals": "allow"}, "allow", "pass"),
    ({"equals": "allow"}, "block", "fail"),
    ({"equals": 0}, 0, "pass"),
    ({"equals": 1}, True, "fail"),
    ({"equals": True}, 1, "fail"),
    ({"equals": None}, None, "pass"),
    ({"min": 0, "max": 10}, 11, "fail"),
    ({}, 42, "pass"),
])
def test_absolute_rules(expect: dict[str, Any], value: Any, verdict: str) -> None:
    assert judge(expect, "verify", value)["verdict"] == verdict


@pytest.mark.parametrize("expect, value, baseline, verdict", [
    ({"max_ratio": 3.0}, 37.2, 12.4, "pass"),  # exactly on the bound despite 12.4 * 3.0 = 37.199999...
    ({"max_ratio": 3.0}, 37.3, 12.4, "fail"),
    ({"min_ratio": 0.9}, 90, 100, "pass"),
    ({"min_ratio": 0.9}, 89.9, 100, "fail"),
    ({"max_increase": 2}, 7, 5, "pass"),
    ({"max_increase": 2}, 8, 5, "fail"),
    ({"max_decrease": 2}, 8, 10, "pass"),
    ({"max_decrease": 2}, 7, 10, "fail"),
    ({"max_increase": 0}, 0.30000000000000004, 0.3, "pass"),
])
def test_relative_rules_against_baseline(expect: dict[str, Any], value: float, baseline: float, verdict: str) -> None:
    assert judge(expect, "verify", value, baseline)["verdict"] == verdict


def test_threshold_text_names_baseline_and_bound() -> None:
    result = judge({"max_ratio": 3.0}, "verify", 45.1, 12.4)
    assert result["threshold"] == "<= 3.0 x baseline 12.4 (37.2)"
    assert result["verdict"] == "fail"
    assert result["detail"] == "value 45.1 > 37.2 (max_ratio)"


def test_threshold_text_for_every_rule() -> None:
    expect = {"min": 0.99, "max": 2, "equals": "ok", "max_ratio": 1.5, "min_ratio": 0.5,
              "max_increase": 3, "max_decrease": 1}
    text = judge(expect, "verify", 1, 10)["threshold"]
    assert text == (">= 0.99 and <= 2 and == 'ok' and <= 1.5 x baseline 10 (15.0)"
                    " and >= 0.5 x baseline 10 (5.0) and <= baseline 10 + 3 (13) and >= baseline 10 - 1 (9)")


def test_baseline_phase_records_when_absolute_rules_hold_and_ignores_ratio_rules() -> None:
    result = judge({"min": 0.99, "max_ratio": 3.0}, "baseline", 1.0)
    assert result == {"verdict": "recorded", "threshold": ">= 0.99", "detail": ""}


def test_unhealthy_baseline_fails() -> None:
    result = judge({"min": 0.99}, "baseline", 0.5)
    assert result["verdict"] == "fail"
    assert result["detail"] == "value 0.5 < 0.99 (min)"


def test_baseline_phase_without_rules_records() -> None:
    assert judge({}, "baseline", 12.5)["verdict"] == "recorded"


def test_missing_baseline_is_an_error_not_a_pass() -> None:
    result = judge({"max_ratio": 3.0}, "verify", 10.0, None)
    assert result["verdict"] == "error"
    assert "needs a baseline value" in result["detail"]
    assert result["threshold"] == "<= 3.0 x baseline (none)"


def test_non_numeric_baseline_is_an_error() -> None:
    result = judge({"max_increase": 1}, "watch", 3, "abc")
    assert result["verdict"] == "error"
    assert "numeric baseline" in result["detail"]


def test_bool_value_is_not_a_number() -> None:
    result = judge({"min": 0}, "verify", True)
    assert result["verdict"] == "error"
    assert "needs a numeric value, got true" in result["detail"]


def test_bool_baseline_is_not_a_number() -> None:
    assert judge({"max_ratio": 2}, "verify", 1, True)["verdict"] == "error"


def test_definite_failure_outranks_missing_baseline() -> None:
    result = judge({"max": 5, "max_ratio": 2}, "verify", 9, None)
    assert result["verdict"] == "fail"
    assert "value 9 > 5 (max)" in result["detail"]
    assert "needs a baseline" in result["detail"]


def test_no_value_with_error_is_error_with_the_error_text() -> None:
    result = judge({"max": 5}, "verify", None, 1, error="redis: connection refused")
    assert result == {"verdict": "error", "threshold": "<= 5", "detail": "redis: connection refused"}


def test_value_with_error_is_judged_on_the_value() -> None:
    # error_rate 1.0 after connection refused: a failure value, judged like any other
    assert judge({"max": 0.01}, "verify", 1.0, None, error="connection refused")["verdict"] == "fail"


def test_values_equal_keeps_bools_apart() -> None:
    assert values_equal(1, 1.0)
    assert not values_equal(True, 1)
    assert not values_equal(0, False)
    assert values_equal(False, False)


def test_format_value() -> None:
    assert format_value(3.0) == "3.0"
    assert format_value(12.4 * 3.0) == "37.2"
    assert format_value(None) == "none"
    assert format_value(True) == "true"
    assert format_value("allow") == "'allow'"


# ---------------------------------------------------------------- summary

def result(probe: str, verdict: str, critical: bool = True, **extra: Any) -> dict[str, Any]:
    return {"component": "tts", "probe": probe, "verdict": verdict, "critical": critical, "value": 45.1,
            "baseline": 12.4, "threshold": "<= 3.0 x baseline 12.4 (37.2)", "detail": "", **extra}


def test_failure_line_format() -> None:
    assert failure_line(result("latency", "fail")) == \
        "tts/latency: value 45.1, baseline 12.4, threshold <= 3.0 x baseline 12.4 (37.2)"


def test_failure_line_of_error_and_non_critical() -> None:
    line = failure_line(result("ping", "error", critical=False, value=None, detail="redis: connection refused"))
    assert line == ("tts/ping: value none, baseline 12.4, threshold <= 3.0 x baseline 12.4 (37.2) (non-critical)"
                    "; error: redis: connection refused")


def test_summary_critical_failure_fails() -> None:
    summary = summarize("tts", "verify", [result("a", "pass"), result("b", "fail")])
    assert summary["passed"] is False
    assert summary["failures"] == [failure_line(result("b", "fail"))]
    assert summary["msg"].startswith("tts verify: 1 critical probe(s) failed: tts/b: value 45.1")


def test_summary_critical_error_fails() -> None:
    assert summarize("tts", "verify", [result("a", "error")])["passed"] is False


def test_summary_non_critical_failure_passes_but_is_listed() -> None:
    summary = summarize("tts", "verify", [result("a", "pass"), result("b", "fail", critical=False)])
    assert summary["passed"] is True
    assert len(summary["failures"]) == 1
    assert summary["msg"] == "tts verify: 1 of 2 probe(s) passed (1 non-critical probe(s) failed)"


def test_summary_baseline() -> None:
    summary = summarize("tts", "baseline", [result("a", "recorded"), result("b", "recorded")])
    assert summary == {"passed": True, "failures": [], "msg": "tts baseline: 2 probe(s) recorded"}


# ---------------------------------------------------------------- spec validation

def test_valid_spec_gets_defaults() -> None:
    specs, errors = validate_probe_specs("tts", [http_probe(expect={"max_ratio": 3})])
    assert errors == []
    assert specs == [{"name": "latency", "type": "http", "metric": "latency_p95_ms", "expect": {"max_ratio": 3},
                      "urls": ["http://127.0.0.1:8082/speak?text=hi"], "critical": True, "timeout": 5.0,
                      "method": "GET", "body": None, "requests": 1, "concurrency": 1,
                      "phases": ["baseline", "canary", "verify", "watch", "rollback"]}]


def test_phases_keep_a_probe_out_of_the_phases_it_does_not_run_in() -> None:
    from ansible.module_utils.cutover_probe_suite import prepare_specs  # noqa: PLC0415
    probes = [http_probe(name="slow_window", phases=["canary", "verify", "watch"]), http_probe(name="fast")]
    assert [spec["name"] for spec in prepare_specs("tts", probes, None, {}, phase="rollback")[0]] == ["fast"]
    assert [spec["name"] for spec in prepare_specs("tts", probes, None, {}, phase="verify")[0]] == ["slow_window", "fast"]
    assert errors_for(http_probe(phases=["deploy"])) == [
        "probe tts/latency: phases must be a non-empty list of baseline, canary, verify, watch, rollback, got ['deploy']"]


def test_redis_and_command_defaults() -> None:
    specs, errors = validate_probe_specs("monitoring", [
        {"name": "alerts", "type": "redis", "metric": "stream_growth", "key": "ai_service_alerts",
         "trigger_url": "http://127.0.0.1:1/alert?name={probe_nonce}", "match": {"name": "{probe_nonce}"}, "expect": {"min": 1}},
        {"name": "leak", "type": "redis", "metric": "client_growth", "burst_url": "http://127.0.0.1:1/x?{nonce}",
         "expect": {"max": 2}},
        {"name": "validate", "type": "command", "metric": "exit_code", "argv": ["validate.py", "--dry-run", 3],
         "expect": {"equals": 0}},
    ])
    assert errors == []
    alerts, leak, validate = specs
    assert (alerts["window"], alerts["trigger_requests"], alerts["match"]) == (3.0, 1, {"name": "{probe_nonce}"})
    assert (leak["burst_requests"], leak["settle"]) == (10, 0.5)
    assert validate["argv"] == ["validate.py", "--dry-run", "3"]


def test_error_names_component_probe_field_and_allowed() -> None:
    errors = errors_for({"name": "hit_ratio", "type": "http", "url": "http://h/x", "metric": "header_ratio",
                         "header": "X-Cache", "value": "hit", "expect": {"max_ratio": "abc"}})
    assert errors == ["probe tts/hit_ratio: expect.max_ratio must be a number >= 0, got 'abc'"]


def test_bool_is_not_a_number_in_specs() -> None:
    errors = errors_for(http_probe(expect={"max": True}))
    assert errors == ["probe tts/latency: expect.max must be a number, got True (a boolean)"]


@pytest.mark.parametrize("expect", [None, {}])
def test_a_probe_needs_at_least_one_rule(expect: Any) -> None:
    probe = http_probe(expect=expect or {})
    if expect is None:
        del probe["expect"]
    assert errors_for(probe) == ["probe tts/latency: expect needs at least one rule (min, max, equals, max_ratio, "
                                 "min_ratio, max_increase, max_decrease): a probe without rules could never fail"]


def test_unknown_rule_and_min_above_max() -> None:
    errors = errors_for(http_probe(expect={"below": 3, "min": 5, "max": 1}))
    assert "probe tts/latency: expect.below is not a rule; allowed: min, max, equals, max_ratio, min_ratio, " \
           "max_increase, max_decrease" in errors
    assert "probe tts/latency: expect.min (5) must not be greater than expect.max (1)" in errors


@pytest.mark.parametrize("fields, message", [
    ({"type": "grpc"}, "probe tts/latency: type must be one of http, redis, command, got 'grpc'"),
    ({"metric": "p99"}, "probe tts/latency: metric must be one of status_ok, error_rate, latency_p50_ms, "
                        "latency_p95_ms, json_field, json_ratio, header_ratio, process_growth for a http probe, "
                        "got 'p99'"),
    ({"requests": 0}, "probe tts/latency: requests must be an integer from 1 to 10000, got 0"),
    ({"concurrency": 2.5}, "probe tts/latency: concurrency must be an integer from 1 to 64, got 2.5"),
    ({"timeout": 0}, "probe tts/latency: timeout must be a number greater than 0 and at most 3600.0, got 0"),
    ({"critical": "yes"}, "probe tts/latency: critical must be true or false, got 'yes'"),
    ({"method": "FETCH"}, "probe tts/latency: method must be one of GET, HEAD, POST, PUT, PATCH, DELETE, "
                          "OPTIONS, got 'FETCH'"),
    ({"url": "ftp://h/x"}, "probe tts/latency: url must be an http:// or https:// URL with a host, got 'ftp://h/x'"),
    ({"expect": [1]}, "probe tts/latency: expect must be a dict of rules (min, max, equals, max_ratio, min_ratio, "
                      "max_increase, max_decrease), got [1]"),
    ({"field": "status"}, "probe tts/latency: field is not used by metric latency_p95_ms "
                          "(it is used by: json_field, json_ratio)"),
])
def test_field_errors(fields: dict[str, Any], message: str) -> None:
    assert errors_for(http_probe(**fields)) == [message]


def test_unknown_field_lists_allowed_fields() -> None:
    [error] = errors_for(http_probe(urll="http://x/"))
    assert error.startswith("probe tts/latency: urll is not a field of a http probe; allowed: ")
    assert "concurrency" in error and "url" in error


def test_url_and_urls_exactly_one() -> None:
    probe = http_probe()
    del probe["url"]
    assert errors_for(probe) == ["probe tts/latency: url or urls is required (exactly one of them) for an http probe"]
    assert errors_for(http_probe(urls=["http://h/"])) == \
        ["probe tts/latency: url or urls is required (exactly one of them) for an http probe"]


def test_urls_items_are_checked() -> None:
    probe = http_probe(urls=["http://h/a", "nope"])
    del probe["url"]
    assert errors_for(probe) == ["probe tts/latency: urls item 2 must be an http:// or https:// URL with a host, "
                                 "got 'nope'"]


def test_required_metric_fields() -> None:
    rule = {"expect": {"min": 0}}
    errors = errors_for({"name": "ratio", "type": "http", "url": "http://h/", "metric": "json_ratio", **rule},
                        {"name": "keys", "type": "redis", "metric": "key_count", **rule},
                        {"name": "leak", "type": "redis", "metric": "client_growth", **rule},
                        {"name": "cli", "type": "command", "metric": "exit_code", **rule})
    assert errors == ["probe tts/ratio: field is required for metric json_ratio",
                      "probe tts/ratio: value is required for metric json_ratio",
                      "probe tts/keys: pattern is required for metric key_count",
                      "probe tts/leak: burst_url is required for metric client_growth",
                      "probe tts/cli: argv is required for metric exit_code"]


def test_match_refuses_per_request_nonce_and_non_text() -> None:
    errors = errors_for({"name": "alerts", "type": "redis", "metric": "stream_growth", "key": "s",
                         "match": {"name": "{nonce}"}, "expect": {"min": 1}},
                        {"name": "alerts2", "type": "redis", "metric": "stream_growth", "key": "s",
                         "match": {"level": 1}, "expect": {"min": 1}})
    assert errors == ["probe tts/alerts: match name may use {probe_nonce} but not {nonce} "
                      "(a per-request token cannot be matched)",
                      "probe tts/alerts2: match level must be a string (stream fields are compared as text), got 1"]


def test_names_required_valid_and_unique() -> None:
    errors = errors_for({"type": "http"}, http_probe(), http_probe(), http_probe(name="a b"), "text")
    assert errors == [
        "probe tts/#1: name is required and must use only letters, digits, '_', '.' and '-', got None",
        "probe tts/latency: name must be unique per component; latency is used twice",
        "probe tts/#4: name is required and must use only letters, digits, '_', '.' and '-', got 'a b'",
        "probe tts/#5: must be a dict, got 'text'",
    ]


def test_empty_probe_list_is_refused() -> None:
    assert errors_for() == ["option probes: component tts has no probes; give at least one "
                            "(a component without probes cannot be judged)"]


def test_password_in_url_is_masked_in_errors() -> None:
    [error] = errors_for(http_probe(url="gopher://user:s3cret@h/x"))
    assert "s3cret" not in error
    assert mask_url("http://user:s3cret@h:81/x?a=1") == "http://***@h:81/x?a=1"


def test_baseline_and_headers_validation() -> None:
    assert validate_baseline({"a": 1, "b": "ok", "c": True, "d": None}) == []
    assert validate_baseline({"a": [1]}) == ["option baseline: a must be a number, string, boolean or null, got [1]"]
    assert validate_headers({"X-Cutover-Probe": "1"}) == []
    assert validate_headers({"X-A": "1\r\nX-Injected: 1"}) == \
        ["option headers: value of X-A must be single-line text, got '1\\r\\nX-Injected: 1'"]


def test_relative_probe_urls_join_the_base_url():
    from ansible.module_utils.cutover_judge import resolve_relative_urls
    probes = [{"name": "a", "url": "/healthz"}, {"name": "b", "urls": ["/x", "http://other/y"], "trigger_url": "/t"},
              {"name": "c", "burst_url": "http://h/b"}]
    resolved = resolve_relative_urls(probes, "http://127.0.0.1:8103/")
    assert resolved[0]["url"] == "http://127.0.0.1:8103/healthz"
    assert resolved[1]["urls"] == ["http://127.0.0.1:8103/x", "http://other/y"]
    assert resolved[1]["trigger_url"] == "http://127.0.0.1:8103/t"
    assert resolved[2]["burst_url"] == "http://h/b"
    assert probes[0]["url"] == "/healthz"
    assert resolve_relative_urls(probes, None) is probes


def test_placeholders_fill_only_the_names_given():
    from ansible.module_utils.cutover_judge import fill_placeholders
    probes = [{"name": "release", "url": "/healthz?n={nonce}", "expect": {"equals": "{release}"}, "requests": 3}]
    filled = fill_placeholders(probes, {"release": "migrated"})
    assert filled[0]["expect"] == {"equals": "migrated"}
    assert filled[0]["url"] == "/healthz?n={nonce}" and filled[0]["requests"] == 3
    assert probes[0]["expect"] == {"equals": "{release}"}
