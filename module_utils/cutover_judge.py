# -*- coding: utf-8 -*-
# Probe spec validation and judgement of probe values against a baseline.
# Pure functions only (no I/O): cutover_probe validates and judges with them, the unit tests drive them directly.
from __future__ import annotations

import math
import re
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

PHASES = ("baseline", "canary", "verify", "watch", "rollback")
PROBE_TYPES = ("http", "redis", "command")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ABSOLUTE_RULES = ("min", "max", "equals")
RELATIVE_RULES = ("max_ratio", "min_ratio", "max_increase", "max_decrease")
RULES = ABSOLUTE_RULES + RELATIVE_RULES

MAX_REQUESTS = 10000
MAX_CONCURRENCY = 64
MAX_SECONDS = 3600.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

COMMON_FIELDS = ("name", "type", "metric", "critical", "expect", "timeout", "description")

# (type, metric) -> {field: required}. A type's field not listed for a metric is refused for that metric.
METRIC_FIELDS: dict[str, dict[str, dict[str, bool]]] = {
    "http": {
        "status_ok": {},
        "error_rate": {},
        "latency_p50_ms": {},
        "latency_p95_ms": {},
        "json_field": {"field": True},
        "json_ratio": {"field": True, "value": True},
        "header_ratio": {"header": True, "value": True},
    },
    "redis": {
        "ping_ms": {},
        "key_count": {"pattern": True},
        "stream_growth": {"key": True, "trigger_url": False, "trigger_requests": False, "window": False, "match": False},
        "client_count": {"client_name": False},
        "client_growth": {"client_name": False, "burst_url": True, "burst_requests": False, "settle": False},
        "used_memory_mb": {},
    },
    "command": {
        "exit_code": {},
        "duration_ms": {},
    },
}

# Fields every metric of a type uses (http request shape, command line).
TYPE_FIELDS: dict[str, dict[str, bool]] = {
    "http": {"url": False, "urls": False, "method": False, "body": False, "requests": False, "concurrency": False},
    "redis": {},
    "command": {"argv": True, "cwd": False},
}

DEFAULTS: dict[str, Any] = {
    "critical": True,
    "timeout": 5.0,
    "method": "GET",
    "body": None,
    "requests": 1,
    "concurrency": 1,
    "trigger_requests": 1,
    "window": 3.0,
    "match": {},
    "burst_requests": 10,
    "settle": 0.5,
}


class ProbeSpecError(ValueError):
    """Raised by a field check; the message is completed with the probe and field names."""


# ---------------------------------------------------------------- value helpers

def is_number(value: Any) -> bool:
    """True for finite ints and floats; bools are not numbers here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def values_equal(left: Any, right: Any) -> bool:
    """Equality that keeps bools apart from numbers (true is not 1)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return left == right


def format_value(value: Any) -> str:
    """Human text for a value in thresholds, details and failure lines."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def _shown(value: Any) -> str:
    text = repr(value)
    if isinstance(value, bool):
        text += " (a boolean)"
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- field checks

def _check_number(value: Any, minimum: float | None = None, maximum: float | None = None,
                  integer: bool = False, exclusive_minimum: bool = False) -> float | int:
    kind = "an integer" if integer else "a number"
    if integer:
        valid = isinstance(value, int) and not isinstance(value, bool)
    else:
        valid = is_number(value)
    bounds = ""
    if minimum is not None and maximum is not None:
        bounds = " from %s to %s" % (format_value(minimum), format_value(maximum))
        if exclusive_minimum:
            bounds = " greater than %s and at most %s" % (format_value(minimum), format_value(maximum))
    elif minimum is not None:
        bounds = " %s %s" % (">" if exclusive_minimum else ">=", format_value(minimum))
    if not valid:
        raise ProbeSpecError("must be %s%s, got %s" % (kind, bounds, _shown(value)))
    too_small = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    too_big = maximum is not None and value > maximum
    if too_small or too_big:
        raise ProbeSpecError("must be %s%s, got %s" % (kind, bounds, _shown(value)))
    return value


def _check_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProbeSpecError("must be a non-empty string, got %s" % _shown(value))
    return value


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProbeSpecError("must be true or false, got %s" % _shown(value))
    return value


def _check_scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, bool)) and not is_number(value):
        raise ProbeSpecError("must be a string, number, boolean or null, got %s" % _shown(value))
    return value


def check_url(value: Any) -> str:
    """An http(s) URL with a host; {nonce} and {probe_nonce} placeholders are allowed anywhere."""
    _check_text(value)
    parts = urlsplit(expand_placeholders(value, "x", "x"))
    try:
        parts.port
    except ValueError:
        raise ProbeSpecError("must be an http:// or https:// URL with a valid port, got %s" % _shown(mask_url(value)))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeSpecError("must be an http:// or https:// URL with a host, got %s" % _shown(mask_url(value)))
    return value


def _check_urls(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ProbeSpecError("must be a non-empty list of http(s) URLs, got %s" % _shown(value))
    for index, url in enumerate(value):
        try:
            check_url(url)
        except ProbeSpecError as exc:
            raise ProbeSpecError("item %d %s" % (index + 1, exc)) from None
    return list(value)


def _check_method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in HTTP_METHODS:
        raise ProbeSpecError("must be one of %s, got %s" % (", ".join(HTTP_METHODS), _shown(value)))
    return value.upper()


def _check_body(value: Any) -> Any:
    if value is not None and not isinstance(value, (str, dict, list)):
        raise ProbeSpecError("must be a string (sent as is) or a dict/list (sent as JSON), got %s" % _shown(value))
    return value


def _check_argv(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ProbeSpecError("must be a non-empty list of strings (the command and its arguments), got %s" % _shown(value))
    argv = []
    for index, item in enumerate(value):
        if isinstance(item, str) or is_number(item):
            argv.append(str(item))
        else:
            raise ProbeSpecError("item %d must be a string, got %s" % (index + 1, _shown(item)))
    if not argv[0].strip():
        raise ProbeSpecError("item 1 (the command) must not be empty")
    return argv


def _check_match(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ProbeSpecError("must be a dict of stream field -> text, got %s" % _shown(value))
    for field, expected in value.items():
        if not isinstance(expected, str):
            raise ProbeSpecError("%s must be a string (stream fields are compared as text), got %s"
                                 % (field, _shown(expected)))
        if "{nonce}" in expected:
            raise ProbeSpecError("%s may use {probe_nonce} but not {nonce} (a per-request token cannot be matched)"
                                 % field)
    return {str(field): expected for field, expected in value.items()}


def _check_header_name(value: Any) -> str:
    _check_text(value)
    if not HEADER_NAME_PATTERN.match(value):
        raise ProbeSpecError("must be an HTTP header name, got %s" % _shown(value))
    return value


def _check_field_path(value: Any) -> str:
    _check_text(value)
    if any(not part for part in value.split(".")):
        raise ProbeSpecError("must be a dotted path like 'pool.in_use', got %s" % _shown(value))
    return value


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "critical": _check_bool,
    "timeout": lambda v: _check_number(v, 0, MAX_SECONDS, exclusive_minimum=True),
    "description": _check_text,
    "url": check_url,
    "urls": _check_urls,
    "method": _check_method,
    "body": _check_body,
    "requests": lambda v: _check_number(v, 1, MAX_REQUESTS, integer=True),
    "concurrency": lambda v: _check_number(v, 1, MAX_CONCURRENCY, integer=True),
    "field": _check_field_path,
    "value": _check_scalar,
    "header": _check_header_name,
    "pattern": _check_text,
    "key": _check_text,
    "trigger_url": check_url,
    "trigger_requests": lambda v: _check_number(v, 1, MAX_REQUESTS, integer=True),
    "window": lambda v: _check_number(v, 0, MAX_SECONDS, exclusive_minimum=True),
    "match": _check_match,
    "client_name": _check_text,
    "burst_url": check_url,
    "burst_requests": lambda v: _check_number(v, 1, MAX_REQUESTS, integer=True),
    "settle": lambda v: _check_number(v, 0, MAX_SECONDS),
    "argv": _check_argv,
    "cwd": _check_text,
}


# ---------------------------------------------------------------- spec validation

def _check_expect(expect: Any) -> tuple[dict[str, Any], list[str]]:
    """Return (rules, problems); each problem is 'expect.<rule> ...' text."""
    if not isinstance(expect, dict):
        return {}, ["expect must be a dict of rules (%s), got %s" % (", ".join(RULES), _shown(expect))]
    problems: list[str] = []
    rules: dict[str, Any] = {}
    for rule, limit in expect.items():
        if rule not in RULES:
            problems.append("expect.%s is not a rule; allowed: %s" % (rule, ", ".join(RULES)))
            continue
        try:
            if rule == "equals":
                rules[rule] = _check_scalar(limit)
            elif rule in ("min", "max"):
                rules[rule] = _check_number(limit)
            else:
                rules[rule] = _check_number(limit, 0)
        except ProbeSpecError as exc:
            problems.append("expect.%s %s" % (rule, exc))
    if "min" in rules and "max" in rules and rules["min"] > rules["max"]:
        problems.append("expect.min (%s) must not be greater than expect.max (%s)"
                        % (format_value(rules["min"]), format_value(rules["max"])))
    return rules, problems


def _fields_used(probe_type: str, metric: str) -> dict[str, bool]:
    return {**TYPE_FIELDS[probe_type], **METRIC_FIELDS[probe_type][metric]}


def _metrics_using(probe_type: str, field: str) -> list[str]:
    return [metric for metric, fields in METRIC_FIELDS[probe_type].items() if field in fields]


def _validate_one(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate one probe dict whose name is already known good; return (normalized spec, problems)."""
    problems: list[str] = []
    probe_type = raw.get("type")
    if probe_type not in PROBE_TYPES:
        return {}, ["type must be one of %s, got %s" % (", ".join(PROBE_TYPES), _shown(probe_type))]
    metrics = METRIC_FIELDS[probe_type]
    metric = raw.get("metric")
    if metric not in metrics:
        return {}, ["metric must be one of %s for a %s probe, got %s"
                    % (", ".join(metrics), probe_type, _shown(metric))]

    used = _fields_used(probe_type, metric)
    all_type_fields = set(TYPE_FIELDS[probe_type]).union(*METRIC_FIELDS[probe_type].values())
    spec: dict[str, Any] = {"name": raw["name"], "type": probe_type, "metric": metric}
    for field, value in raw.items():
        if field in ("name", "type", "metric"):
            continue
        if field not in COMMON_FIELDS and field not in all_type_fields:
            allowed = sorted(set(COMMON_FIELDS) | all_type_fields)
            problems.append("%s is not a field of a %s probe; allowed: %s" % (field, probe_type, ", ".join(allowed)))
            continue
        if field not in COMMON_FIELDS and field not in used:
            problems.append("%s is not used by metric %s (it is used by: %s)"
                            % (field, metric, ", ".join(_metrics_using(probe_type, field)) or "no metric"))
            continue
        if field == "expect":
            spec["expect"], expect_problems = _check_expect(value)
            problems.extend(expect_problems)
            continue
        try:
            spec[field] = FIELD_CHECKS[field](value)
        except ProbeSpecError as exc:
            problems.append("%s %s" % (field, exc))

    if "expect" not in raw or raw["expect"] == {}:
        problems.append("expect needs at least one rule (%s): a probe without rules could never fail"
                        % ", ".join(RULES))
    for field, required in used.items():
        if required and field not in raw:
            problems.append("%s is required for metric %s" % (field, metric))
    if probe_type == "http" and ("url" in raw) == ("urls" in raw):
        problems.append("url or urls is required (exactly one of them) for an http probe")
    if metric == "header_ratio" and "value" in spec and not isinstance(spec["value"], str):
        problems.append("value must be a string for metric header_ratio (header values are text), got %s"
                        % _shown(spec["value"]))

    if problems:
        return {}, problems
    for field, default in DEFAULTS.items():
        if field in COMMON_FIELDS or field in used:
            spec.setdefault(field, default.copy() if isinstance(default, dict) else default)
    if probe_type == "http" and "url" in spec:
        spec["urls"] = [spec.pop("url")]
    return spec, problems


def fill_placeholders(value: Any, mapping: dict[str, str]) -> Any:
    """Replace ``{name}`` in every string inside ``value`` for each name of ``mapping`` (other braces stay)."""
    if isinstance(value, str):
        for name, replacement in mapping.items():
            value = value.replace("{%s}" % name, str(replacement))
        return value
    if isinstance(value, dict):
        return {key: fill_placeholders(item, mapping) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_placeholders(item, mapping) for item in value]
    return value


URL_FIELDS = ("url", "trigger_url", "burst_url")


def resolve_relative_urls(probes: Any, base_url: str | None) -> Any:
    """Join probe URLs that start with '/' (url, urls, trigger_url, burst_url) to the component's base_url.

    Without a base_url they are left alone, so validation reports them as not being http(s) URLs.
    """
    if not base_url or not isinstance(probes, list):
        return probes
    base = base_url.rstrip("/")

    def join(url: Any) -> Any:
        return base + url if isinstance(url, str) and url.startswith("/") else url

    resolved = []
    for probe in probes:
        if isinstance(probe, dict):
            probe = dict(probe, **{field: join(probe[field]) for field in URL_FIELDS if field in probe})
            if isinstance(probe.get("urls"), list):
                probe["urls"] = [join(url) for url in probe["urls"]]
        resolved.append(probe)
    return resolved


def validate_probe_specs(component: Any, probes: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate a component's probe list.

    Returns (normalized specs with defaults filled in, errors). Each error names the component,
    the probe and the field, and says what is allowed, e.g.
    "probe tts/hit_ratio: expect.max_ratio must be a number, got 'abc'".
    """
    if not isinstance(component, str) or not component.strip():
        return [], ["option component must be a non-empty string, got %s" % _shown(component)]
    if not isinstance(probes, list) or not probes:
        return [], ["option probes: component %s has no probes; give at least one "
                    "(a component without probes cannot be judged)" % component]
    specs: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(probes):
        label = "%s/#%d" % (component, index + 1)
        if not isinstance(raw, dict):
            errors.append("probe %s: must be a dict, got %s" % (label, _shown(raw)))
            continue
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            errors.append("probe %s: name is required and must use only letters, digits, '_', '.' and '-', got %s"
                          % (label, _shown(name)))
            continue
        label = "%s/%s" % (component, name)
        if name in seen:
            errors.append("probe %s: name must be unique per component; %s is used twice" % (label, name))
            continue
        seen.add(name)
        spec, problems = _validate_one(raw)
        errors.extend("probe %s: %s" % (label, problem) for problem in problems)
        if not problems:
            specs.append(spec)
    return specs, errors


def validate_baseline(baseline: Any) -> list[str]:
    """The baseline option maps probe names to the values recorded earlier (number, string, bool or null)."""
    if not isinstance(baseline, dict):
        return ["option baseline must be a dict of probe name -> recorded value, got %s" % _shown(baseline)]
    errors = []
    for name, value in baseline.items():
        if value is not None and not isinstance(value, (str, bool)) and not is_number(value):
            errors.append("option baseline: %s must be a number, string, boolean or null, got %s"
                          % (name, _shown(value)))
    return errors


def validate_headers(headers: Any) -> list[str]:
    """Extra HTTP headers: names are header tokens, values are single-line text."""
    if not isinstance(headers, dict):
        return ["option headers must be a dict of header name -> value, got %s" % _shown(headers)]
    errors = []
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME_PATTERN.match(name):
            errors.append("option headers: %s is not a valid HTTP header name" % _shown(name))
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or any(c in str(value) for c in "\r\n"):
            errors.append("option headers: value of %s must be single-line text, got %s" % (name, _shown(value)))
    return errors


# ---------------------------------------------------------------- placeholders and secrets

def expand_placeholders(text: str, probe_nonce: str, nonce: str) -> str:
    """Replace {probe_nonce} (one token per probe run) and {nonce} (one token per request)."""
    return text.replace("{probe_nonce}", probe_nonce).replace("{nonce}", nonce)


def mask_url(url: Any) -> Any:
    """The URL without its user:password part, for messages."""
    if not isinstance(url, str) or "@" not in url:
        return url
    parts = urlsplit(url)
    if not parts.username and not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc="***@" + host).geturl()


def url_passwords(probes: Any) -> set[str]:
    """Passwords found in the URLs of raw probe dicts (as written and percent-decoded), to mask in output."""
    found: set[str] = set()
    for probe in probes if isinstance(probes, list) else []:
        if not isinstance(probe, dict):
            continue
        urls = probe.get("urls") if isinstance(probe.get("urls"), list) else []
        for url in urls + [probe.get(name) for name in ("url", "trigger_url", "burst_url")]:
            if isinstance(url, str) and "@" in url:
                password = urlsplit(url).password
                if password:
                    found.update({password, unquote(password)})
    return found


# ---------------------------------------------------------------- judgement

def _rule_outcome(rule: str, limit: Any, value: Any, baseline: Any) -> tuple[str, str, str]:
    """Evaluate one rule; return (threshold text, status pass/fail/error, explanation when not pass)."""
    if rule == "equals":
        text = "== %s" % format_value(limit)
        if values_equal(value, limit):
            return text, "pass", ""
        return text, "fail", "value %s is not %s" % (format_value(value), format_value(limit))

    if rule in ("min", "max"):
        bound, text = limit, "%s %s" % (">=" if rule == "min" else "<=", format_value(limit))
    else:
        shown = format_value(limit)
        if baseline is None:
            text = {"max_ratio": "<= %s x baseline (none)", "min_ratio": ">= %s x baseline (none)",
                    "max_increase": "<= baseline (none) + %s", "max_decrease": ">= baseline (none) - %s"}[rule] % shown
            return text, "error", "rule %s needs a baseline value and none was recorded for this probe" % rule
        if not is_number(baseline):
            return "%s (baseline %s)" % (rule, format_value(baseline)), "error", \
                "rule %s needs a numeric baseline, got %s" % (rule, format_value(baseline))
        base = format_value(baseline)
        if rule == "max_ratio":
            bound = baseline * limit
            text = "<= %s x baseline %s (%s)" % (shown, base, format_value(float(bound)))
        elif rule == "min_ratio":
            bound = baseline * limit
            text = ">= %s x baseline %s (%s)" % (shown, base, format_value(float(bound)))
        elif rule == "max_increase":
            bound = baseline + limit
            text = "<= baseline %s + %s (%s)" % (base, shown, format_value(bound))
        else:
            bound = baseline - limit
            text = ">= baseline %s - %s (%s)" % (base, shown, format_value(bound))

    if not is_number(value):
        return text, "error", "rule %s needs a numeric value, got %s" % (rule, format_value(value))
    upper = rule in ("max", "max_ratio", "max_increase")
    close = math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)
    holds = close or (value <= bound if upper else value >= bound)
    if holds:
        return text, "pass", ""
    return text, "fail", "value %s %s %s (%s)" % (format_value(value), ">" if upper else "<",
                                                 format_value(bound), rule)


def applicable_rules(expect: dict[str, Any], phase: str) -> list[tuple[str, Any]]:
    """The rules judged in a phase: a baseline run is judged on absolute rules only."""
    names = ABSOLUTE_RULES if phase == "baseline" else RULES
    return [(rule, expect[rule]) for rule in names if rule in expect]


def judge(expect: dict[str, Any], phase: str, value: Any, baseline: Any = None,
          error: str | None = None) -> dict[str, str]:
    """Judge one probe value.

    Returns {verdict, threshold, detail}. Verdicts: ``recorded`` (baseline phase, absolute rules hold),
    ``pass``, ``fail`` (a rule does not hold), ``error`` (no value, or a rule could not be evaluated,
    e.g. a ratio rule without a baseline). A definite failure outranks an evaluation error.
    """
    outcomes = [_rule_outcome(rule, limit, value, baseline) for rule, limit in applicable_rules(expect, phase)]
    threshold = " and ".join(text for text, _, _ in outcomes)
    if value is None and error:
        return {"verdict": "error", "threshold": threshold, "detail": error}
    failed = [why for _, status, why in outcomes if status == "fail"]
    unevaluated = [why for _, status, why in outcomes if status == "error"]
    if failed:
        verdict = "fail"
    elif unevaluated:
        verdict = "error"
    else:
        verdict = "recorded" if phase == "baseline" else "pass"
    return {"verdict": verdict, "threshold": threshold, "detail": "; ".join(failed + unevaluated)}


def failure_line(result: dict[str, Any]) -> str:
    """'component/probe: value V, baseline B, threshold T' (errors add their detail)."""
    line = "%s/%s: value %s, baseline %s, threshold %s" % (
        result["component"], result["probe"], format_value(result["value"]),
        format_value(result["baseline"]), result["threshold"] or "(none)")
    if not result["critical"]:
        line += " (non-critical)"
    if result["verdict"] == "error" and result.get("detail"):
        line += "; error: %s" % result["detail"]
    return line


def summarize(component: str, phase: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Return {passed, failures, msg}: passed is false when a critical probe failed or errored."""
    bad = [result for result in results if result["verdict"] in ("fail", "error")]
    critical_bad = [result for result in bad if result["critical"]]
    failures = [failure_line(result) for result in bad]
    if critical_bad:
        msg = "%s %s: %d critical probe(s) failed: %s" % (
            component, phase, len(critical_bad), "; ".join(failure_line(r) for r in critical_bad))
    elif phase == "baseline":
        msg = "%s baseline: %d probe(s) recorded" % (component, len(results) - len(bad))
    else:
        msg = "%s %s: %d of %d probe(s) passed" % (component, phase, len(results) - len(bad), len(results))
    if bad and not critical_bad:
        msg += " (%d non-critical probe(s) failed)" % len(bad)
    return {"passed": not critical_bad, "failures": failures, "msg": msg}
