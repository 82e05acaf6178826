# -*- coding: utf-8 -*-
# Probe spec validation and judgement of probe values against a baseline.
# Pure functions only (no I/O): cutover_probe validates and judges with them, the unit tests drive them directly.
from __future__ import annotations

import math
import re
import statistics
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

PHASES = ("baseline", "canary", "verify", "watch", "rollback")
PROBE_TYPES = ("http", "redis", "command")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ABSOLUTE_RULES = ("min", "max", "equals")
RELATIVE_RULES = ("max_ratio", "min_ratio", "max_increase", "max_decrease")
RULES = ABSOLUTE_RULES + RELATIVE_RULES
INCONCLUSIVE_POLICIES = ("rollback", "pause")
RESOURCES = ("rss_mb", "fds", "clients")
TTL_STATS = ("min", "median")

MAX_REQUESTS = 10000
MAX_CONCURRENCY = 64
MAX_COUNT = 1000
MAX_SECONDS = 3600.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
SECRET_OPTION = re.compile(r"password|passwd|secret|token|api[-_]?key|credential", re.I)

# How a probe is judged (Argo Rollouts' analysis fields): measurements, their spacing and the failures tolerated.
JUDGEMENT_DEFAULTS: dict[str, Any] = {"count": 1, "interval": 0, "initial_delay": 0, "failure_limit": 0,
                                      "consecutive_error_limit": 0}
JUDGEMENT_FIELDS = tuple(JUDGEMENT_DEFAULTS) + ("inconclusive",)
COMMON_FIELDS = ("name", "type", "metric", "critical", "expect", "timeout", "description", "phases") + JUDGEMENT_FIELDS

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
        "process_growth": {"resource": True, "burst_url": True, "burst_requests": False, "burst_concurrency": False,
                           "pid_url": True, "pid_field": False, "window": False, "settle": False, "samples": False,
                           "client_name": False},
    },
    "redis": {
        "ping_ms": {},
        "key_count": {"pattern": True},
        "stream_growth": {"key": True, "trigger_url": False, "trigger_requests": False, "window": False, "match": False},
        "client_count": {"client_name": False},
        "client_growth": {"client_name": False, "burst_url": True, "burst_requests": False, "settle": False},
        "used_memory_mb": {},
        "new_key_ttl_s": {"pattern": True, "trigger_url": True, "trigger_requests": False, "window": False,
                          "stat": False},
    },
    "command": {
        "exit_code": {},
        "duration_ms": {},
        "readable_ratio": {"write_url": False, "write_requests": False, "sample_keys": False, "sample_size": False},
    },
}

# Fields every metric of a type uses (http request shape, command line).
TYPE_FIELDS: dict[str, dict[str, bool]] = {
    "http": {"url": False, "urls": False, "method": False, "body": False, "requests": False, "concurrency": False},
    "redis": {},
    "command": {"argv": True, "cwd": False},
}
# Metrics that send no request of the probe's own shape: their type's fields (url, requests, ...) do not apply.
WITHOUT_TYPE_FIELDS = frozenset({("http", "process_growth")})

DEFAULTS: dict[str, Any] = {
    "critical": True,
    "phases": list(PHASES),
    "timeout": 5.0,
    "method": "GET",
    "body": None,
    "requests": 1,
    "concurrency": 1,
    "trigger_requests": 1,
    "window": 3.0,
    "match": {},
    "burst_requests": 10,
    "burst_concurrency": 1,
    "settle": 0.5,
    "samples": 3,
    "pid_field": "pid",
    "stat": "min",
    "write_requests": 5,
    "sample_size": 50,
}
DEFAULT_PID_PATH = "/healthz"


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


def _check_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ProbeSpecError("must be one of %s, got %s" % (", ".join(choices), _shown(value)))
        return value
    return check


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
        relative = " (one starting with / needs the component's base_url)" if value.startswith("/") else ""
        raise ProbeSpecError("must be an http:// or https:// URL with a host%s, got %s"
                             % (relative, _shown(mask_url(value))))
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


def _check_patterns(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item for item in value):
        raise ProbeSpecError("must be a non-empty list of Redis glob patterns, got %s" % _shown(value))
    return list(value)


def _check_phases(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or any(phase not in PHASES for phase in value):
        raise ProbeSpecError("must be a non-empty list of %s, got %s" % (", ".join(PHASES), _shown(value)))
    return list(value)


def _check_field_path(value: Any) -> str:
    _check_text(value)
    if any(not part for part in value.split(".")):
        raise ProbeSpecError("must be a dotted path like 'pool.in_use', got %s" % _shown(value))
    return value


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "critical": _check_bool,
    "phases": _check_phases,
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
    "count": lambda v: _check_number(v, 1, MAX_COUNT, integer=True),
    "interval": lambda v: _check_number(v, 0, MAX_SECONDS),
    "initial_delay": lambda v: _check_number(v, 0, MAX_SECONDS),
    "failure_limit": lambda v: _check_number(v, 0, MAX_COUNT, integer=True),
    "consecutive_error_limit": lambda v: _check_number(v, 0, MAX_COUNT, integer=True),
    "inconclusive": _check_choice(INCONCLUSIVE_POLICIES),
    "resource": _check_choice(RESOURCES),
    "burst_concurrency": lambda v: _check_number(v, 1, MAX_CONCURRENCY, integer=True),
    "pid_url": check_url,
    "pid_field": _check_field_path,
    "samples": lambda v: _check_number(v, 1, MAX_COUNT, integer=True),
    "stat": _check_choice(TTL_STATS),
    "write_url": check_url,
    "write_requests": lambda v: _check_number(v, 1, MAX_COUNT, integer=True),
    "sample_keys": _check_patterns,
    "sample_size": lambda v: _check_number(v, 1, MAX_COUNT, integer=True),
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
    if (probe_type, metric) in WITHOUT_TYPE_FIELDS:
        return dict(METRIC_FIELDS[probe_type][metric])
    return {**TYPE_FIELDS[probe_type], **METRIC_FIELDS[probe_type][metric]}


def _metrics_using(probe_type: str, field: str) -> list[str]:
    return [metric for metric in METRIC_FIELDS[probe_type] if field in _fields_used(probe_type, metric)]


def _judgement_problems(spec: dict[str, Any]) -> list[str]:
    """Judgement fields that contradict each other (each one is valid on its own)."""
    settings = judgement_settings(spec)
    count = settings["count"]
    problems = []
    if settings["failure_limit"] >= count:
        problems.append("failure_limit (%d) must be less than count (%d): the probe fails when more than "
                        "failure_limit of its count measurements fail, so it could never fail"
                        % (settings["failure_limit"], count))
    if settings["consecutive_error_limit"] >= count:
        problems.append("consecutive_error_limit (%d) must be less than count (%d): %d measurement(s) cannot have "
                        "more errors in a row than that" % (settings["consecutive_error_limit"], count, count))
    if spec.get("inconclusive") == "rollback" and not spec["critical"]:
        problems.append("inconclusive rollback needs critical true (a non-critical probe never rolls back; "
                        "use pause)")
    planned = settings["initial_delay"] + settings["interval"] * (count - 1)
    if planned > MAX_SECONDS:
        problems.append("initial_delay + interval x (count - 1) must be at most %s seconds, got %s"
                        % (format_value(MAX_SECONDS), format_value(float(planned))))
    return problems


def _metric_problems(spec: dict[str, Any]) -> list[str]:
    """Fields of process_growth and readable_ratio that only make sense together."""
    if spec["metric"] == "readable_ratio":
        if ("write_url" in spec) == ("sample_keys" in spec):
            return ["give either write_url (fresh entries written through the new release) or sample_keys (a sample "
                    "of the keys of these patterns), not both or neither"]
        if "write_url" in spec and "{nonce}" not in spec["write_url"]:
            return ["write_url must contain {nonce}: each write makes a fresh entry, and the reader is given the "
                    "nonces to find them"]
        return []
    if spec["metric"] != "process_growth":
        return []
    if spec["resource"] == "clients" and "client_name" not in spec:
        return ["client_name is required for resource clients (the CLIENT LIST name of the component's connections)"]
    if spec["resource"] != "clients" and "client_name" in spec:
        return ["client_name is only used with resource clients, not %s" % spec["resource"]]
    return []


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
            problems.append("%s is required for metric %s%s" % (
                field, metric, " (without the component's base_url; with one it defaults to %s)" % DEFAULT_PID_PATH
                if field == "pid_url" else ""))
    if "url" in used and ("url" in raw) == ("urls" in raw):
        problems.append("url or urls is required (exactly one of them) for an http probe")
    if metric == "header_ratio" and "value" in spec and not isinstance(spec["value"], str):
        problems.append("value must be a string for metric header_ratio (header values are text), got %s"
                        % _shown(spec["value"]))

    if problems:
        return {}, problems
    for field, default in DEFAULTS.items():
        if field in COMMON_FIELDS or field in used:
            spec.setdefault(field, default.copy() if isinstance(default, dict) else default)
    problems = _judgement_problems(spec) + _metric_problems(spec)
    if problems:
        return {}, problems
    if "url" in spec:
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


def uses_placeholder(value: Any, name: str) -> bool:
    """True when a string inside ``value`` holds ``{name}``."""
    if isinstance(value, str):
        return "{%s}" % name in value
    if isinstance(value, dict):
        return any(uses_placeholder(item, name) for item in value.values())
    if isinstance(value, list):
        return any(uses_placeholder(item, name) for item in value)
    return False


URL_FIELDS = ("url", "trigger_url", "burst_url", "pid_url", "write_url")


def resolve_relative_urls(probes: Any, base_url: str | None) -> Any:
    """Join probe URLs that start with '/' (url, urls, trigger_url, burst_url, pid_url, write_url) to the
    component's base_url; a process_growth probe without pid_url gets the base_url's /healthz.

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
            if probe.get("metric") == "process_growth" and "pid_url" not in probe:
                probe = dict(probe, pid_url=DEFAULT_PID_PATH)
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
        for url in urls + [probe.get(name) for name in URL_FIELDS]:
            if isinstance(url, str) and "@" in url:
                password = urlsplit(url).password
                if password:
                    found.update({password, unquote(password)})
    return found


def argv_secrets(probes: Any) -> set[str]:
    """The values mask_argv hides in the argv of raw probe dicts, to mask everywhere in output."""
    found: set[str] = set()
    for probe in probes if isinstance(probes, list) else []:
        argv = probe.get("argv") if isinstance(probe, dict) else None
        if isinstance(argv, list) and all(isinstance(item, str) for item in argv):
            found.update(secret for secret, shown in zip(argv, mask_argv(argv)) if shown != secret)
    return {secret.partition("=")[2] if secret.startswith("-") else secret for secret in found} - {""}


def mask_argv(argv: list[str]) -> list[str]:
    """argv as recorded: the value of --password=VALUE (or the item after a bare --password) becomes ***, for
    every option whose name says it holds a secret (password, secret, token, api key, credential)."""
    masked: list[str] = []
    hide_next = False
    for item in argv:
        name, equals, _ = item.partition("=")
        if hide_next:
            masked.append("***")
            hide_next = False
        elif name.startswith("-") and SECRET_OPTION.search(name):
            masked.append(name + "=***" if equals else item)
            hide_next = not equals
        else:
            masked.append(item)
    return masked


def recorded_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The resolved probe as a verdict records it: placeholders filled, defaults and judgement settings in,
    passwords in URLs and secret-looking arguments masked."""
    recorded = {**spec, **judgement_settings(spec)}
    for field in URL_FIELDS:
        if field in recorded:
            recorded[field] = mask_url(recorded[field])
    if "urls" in recorded:
        recorded["urls"] = [mask_url(url) for url in recorded["urls"]]
    if "argv" in recorded:
        recorded["argv"] = mask_argv(recorded["argv"])
    return recorded


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
    """Judge one measured value.

    Returns {verdict, threshold, detail}. Verdicts: ``recorded`` (baseline phase, absolute rules hold),
    ``pass``, ``fail`` (a rule does not hold), ``error`` (no value, or a rule could not be evaluated,
    e.g. a ratio rule without a baseline). A definite failure outranks an evaluation error.
    A probe's verdict comes from the outcomes of all its measurements (analysis_verdict).
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


# ---------------------------------------------------------------- judgement over several measurements

def judgement_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """count, interval, initial_delay, failure_limit, consecutive_error_limit and inconclusive, defaults filled."""
    settings = {field: spec.get(field, default) for field, default in JUDGEMENT_DEFAULTS.items()}
    settings["inconclusive"] = spec.get("inconclusive") or ("rollback" if spec.get("critical", True) else "pause")
    return settings


def analysis_verdict(outcomes: list[str], settings: dict[str, Any]) -> str | None:
    """The verdict the measurement outcomes so far decide, or None while more measurements are due.

    ``outcomes`` are judge() verdicts in measurement order (``pass``/``recorded``, ``fail``, ``error``). Like an
    Argo Rollouts analysis: more than failure_limit failed measurements fail the probe, more than
    consecutive_error_limit errors in a row make it inconclusive (whichever happens first), and after count
    measurements it passes when at least one measurement passed (inconclusive when none did).
    """
    failures = errors_in_row = 0
    for outcome in outcomes:
        failures += outcome == "fail"
        errors_in_row = errors_in_row + 1 if outcome == "error" else 0
        if failures > settings["failure_limit"]:
            return "fail"
        if errors_in_row > settings["consecutive_error_limit"]:
            return "inconclusive"
    if len(outcomes) < settings["count"]:
        return None
    return "pass" if any(outcome in ("pass", "recorded") for outcome in outcomes) else "inconclusive"


def is_single(settings: dict[str, Any]) -> bool:
    """True for one measurement (the default), whose threshold and detail texts stay as they always were."""
    return settings["count"] == 1


def analysis_text(outcomes: list[str], settings: dict[str, Any], verdict: str) -> str:
    """'5 of 5 measurement(s): 4 passed, 1 failed (failure_limit 1), 0 error(s) ...', empty for one measurement."""
    if is_single(settings):
        return ""
    passed = sum(outcome in ("pass", "recorded") for outcome in outcomes)
    text = "%d of %d measurement(s): %d passed, %d failed (failure_limit %d), %d error(s) " \
        "(consecutive_error_limit %d)" % (len(outcomes), settings["count"], passed, outcomes.count("fail"),
                                          settings["failure_limit"], outcomes.count("error"),
                                          settings["consecutive_error_limit"])
    if verdict == "inconclusive":
        text += "; %s" % ("more errors in a row than consecutive_error_limit"
                          if longest_error_run(outcomes) > settings["consecutive_error_limit"]
                          else "no measurement passed")
    return text


def longest_error_run(outcomes: list[str]) -> int:
    longest = run = 0
    for outcome in outcomes:
        run = run + 1 if outcome == "error" else 0
        longest = max(longest, run)
    return longest


def threshold_text(rules_text: str, settings: dict[str, Any]) -> str:
    """The rules, and with several measurements how many of them may break the rules."""
    if is_single(settings):
        return rules_text
    return "%s; at most %d of %d measurement(s) may break it" % (rules_text or "(none)", settings["failure_limit"],
                                                                   settings["count"])


def representative_value(values: list[Any]) -> Any:
    """The probe's value: the median of what was measured when it is all numbers, else the last value measured.

    One measurement gives its own value; None when nothing was measured.
    """
    measured = [value for value in values if value is not None]
    if not measured:
        return None
    if all(is_number(value) for value in measured):
        return statistics.median(measured)
    return measured[-1]


# ---------------------------------------------------------------- what the verdicts ask of the rollout

def inconclusive_policy(result: dict[str, Any]) -> str:
    """rollback or pause: the probe's own choice, by default rollback for a critical probe and pause otherwise."""
    chosen = (result.get("spec") or {}).get("inconclusive")
    return chosen or ("rollback" if result["critical"] else "pause")


def gate(result: dict[str, Any], phase: str) -> str:
    """What one result asks of the rollout: ``go``, ``rollback``, ``pause`` (wait for a human) or ``note``
    (a non-critical failure: listed, nothing stops). A rollback cannot pause, so in phase rollback an
    inconclusive probe counts like a failed one."""
    verdict = result["verdict"]
    if verdict in ("pass", "recorded"):
        return "go"
    if verdict == "inconclusive" and phase != "rollback":
        return inconclusive_policy(result)
    return "rollback" if result["critical"] else "note"


def rollback_cause(results: list[dict[str, Any]], phase: str) -> dict[str, Any] | None:
    """The result that triggers the rollback: the first critical probe that failed, else the first that was
    inconclusive with policy rollback; None when no result asks for a rollback."""
    stopping = [result for result in results if gate(result, phase) == "rollback"]
    return next((result for result in stopping if result["verdict"] == "fail"), stopping[0] if stopping else None)


def paused(results: list[dict[str, Any]], phase: str) -> bool:
    """True when an inconclusive probe asks to wait for a human and nothing asks for a rollback."""
    gates = [gate(result, phase) for result in results]
    return "pause" in gates and "rollback" not in gates


def failure_line(result: dict[str, Any]) -> str:
    """'component/probe: value V, baseline B, threshold T' (errors and inconclusive verdicts add their detail)."""
    line = "%s/%s: value %s, baseline %s, threshold %s" % (
        result["component"], result["probe"], format_value(result["value"]),
        format_value(result["baseline"]), result["threshold"] or "(none)")
    if not result["critical"]:
        line += " (non-critical)"
    if result["verdict"] in ("error", "inconclusive") and result.get("detail"):
        line += "; %s: %s" % (result["verdict"], result["detail"])
    return line


def _stopping_counts(stopping: list[dict[str, Any]]) -> str:
    failed = sum(result["verdict"] != "inconclusive" for result in stopping)
    inconclusive = len(stopping) - failed
    parts = (["%d critical probe(s) failed" % failed] if failed else []) + \
        (["%d critical probe(s) inconclusive" % inconclusive] if inconclusive else [])
    return ", ".join(parts)


def summarize(component: str, phase: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Return {passed, failures, msg}: passed is false when a result asks for a rollback or a pause."""
    gates = [(result, gate(result, phase)) for result in results]
    bad = [result for result, action in gates if action != "go"]
    stopping = [result for result, action in gates if action == "rollback"]
    pausing = [result for result, action in gates if action == "pause"]
    failures = [failure_line(result) for result in bad]
    if stopping:
        msg = "%s %s: %s: %s" % (component, phase, _stopping_counts(stopping),
                                 "; ".join(failure_line(result) for result in stopping))
    elif pausing:
        msg = "%s %s: paused for a human, %d probe(s) inconclusive: %s" % (
            component, phase, len(pausing), "; ".join(failure_line(result) for result in pausing))
    elif phase == "baseline":
        msg = "%s baseline: %d probe(s) recorded" % (component, len(results) - len(bad))
    else:
        msg = "%s %s: %d of %d probe(s) passed" % (component, phase, len(results) - len(bad), len(results))
    if bad and not stopping and not pausing:
        msg += " (%d non-critical probe(s) failed)" % len(bad)
    return {"passed": not stopping and not pausing, "failures": failures, "msg": msg}
