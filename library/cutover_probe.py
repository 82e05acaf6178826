# -*- coding: utf-8 -*-
# cutover_probe: run a component's health probes and judge them against a baseline.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: cutover_probe
short_description: Run a component's health probes and judge them against a baseline
description:
  - Runs the health probes of one component (HTTP requests, Redis measurements, commands) and judges each
    value against its C(expect) rules and the O(baseline) recorded before the change.
  - Probes are inventory data. A probe is a dict; every field is validated and a bad spec fails the module
    with a message naming the component, the probe and the field, before any probe runs.
  - "Common probe fields: C(name) (required, unique per component, letters/digits/C(_.-));
    C(type) (C(http), C(redis) or C(command)); C(metric) (see below); C(critical) (bool, default C(true));
    C(expect) (required, a dict of at least one rule; all must hold); C(timeout) (seconds, default C(5), per HTTP request,
    per Redis command, for the whole command probe); C(description) (free text)."
  - "C(expect) rules: C(min), C(max), C(equals) are absolute; C(max_ratio) (value <= baseline * r),
    C(min_ratio) (value >= baseline * r), C(max_increase) (value <= baseline + d) and
    C(max_decrease) (value >= baseline - d) need a baseline value. Limits are numbers (booleans are not);
    C(equals) takes a string, number, boolean or null and does not equate C(true) with C(1)."
  - "C(http) probes: C(url) or C(urls) (a list, cycled over the requests); C(method) (default C(GET));
    C(body) (string, or dict/list sent as JSON); C(requests) (1-10000, default 1); C(concurrency)
    (1-64, default 1). In URLs and the body, C({nonce}) becomes a fresh random token per request and
    C({probe_nonce}) one token per probe run. Each request uses a new connection; redirects are not
    followed; proxies are not used; user:password in a URL is sent as basic auth and masked in output."
  - "C(http) metrics: C(status_ok) (fraction of 2xx responses, 1.0 when all are), C(error_rate) (non-2xx
    or unanswered / total), C(latency_p50_ms) and C(latency_p95_ms) (nearest-rank percentiles over the
    requests that got a response, whatever their status; pair them with an C(error_rate) probe),
    C(json_field) (the value at the dotted path C(field) in the last response's JSON), C(json_ratio)
    (fraction of responses whose JSON C(field) equals C(value)), C(header_ratio) (fraction whose header
    C(header) equals C(value))."
  - "C(redis) metrics: C(ping_ms) (one PING round trip on an open connection); C(key_count) (keys
    matching C(pattern), by SCAN); C(stream_growth) (entries appended to stream C(key) whose fields
    equal the C(match) dict, after calling C(trigger_url) C(trigger_requests) times (default 1) with GET,
    polling up to C(window) seconds (default 3) and stopping early once C(trigger_requests) matching
    entries arrived; C(match) values may use C({probe_nonce})); C(client_count) (CLIENT LIST entries named
    C(client_name), all clients without it); C(client_growth) (that count after calling C(burst_url)
    C(burst_requests) times (default 10) and waiting C(settle) seconds (default 0.5), minus the count
    before); C(used_memory_mb)."
  - "C(command) probes: C(argv) (list, run without a shell in its own process group, killed on timeout),
    C(cwd); metrics C(exit_code) and C(duration_ms). The detail holds the program name and the tails of
    stdout and stderr, never the environment or the arguments."
  - "Verdicts: C(pass), C(fail), C(error), and in phase C(baseline) C(recorded) (only the absolute rules are
    judged then; a baseline that breaks them is C(fail), so an unhealthy service stops the migration).
    A ratio or increase rule without a baseline value is C(error), never a silent pass. A probe that could
    not reach its target gets the metric's failure value where one exists (C(error_rate) 1.0,
    C(status_ok) 0.0) and otherwise the verdict C(error) with the error text."
  - The module fails only on invalid options or probe specs. A failed verdict is reported in RV(passed),
    RV(failures) and RV(results) so the calling role can journal the results before failing the play.
version_added: "0.1.0"
author: cutover contributors
options:
  component:
    description:
      - Name of the component the probes belong to; used in results and messages.
      - Give O(component) with O(probes) (one component), or O(components) (several, probed at once).
    type: str
  host_label:
    description: Host name written into each result. Defaults to the managed host's node name.
    type: str
  phase:
    description:
      - Why the probes run. V(baseline) records values (judged on absolute rules only);
        the others judge against O(baseline).
    type: str
    required: true
    choices: [baseline, canary, verify, watch, rollback]
  probes:
    description:
      - The probe specs of O(component) (see the description for every field). At least one.
    type: list
    elements: dict
  components:
    description:
      - Several components of this host, probed at the same time. Within a component the probes run at the same
        time too, except those that load the component (C(concurrency) above 1) or measure what other traffic moves
        (C(client_count), C(client_growth), C(latency_p50_ms), C(latency_p95_ms), C(used_memory_mb)); those run
        one by one after the others.
      - Each item is C({name, probes, base_url, baseline, placeholders}) with the meaning of the single-component
        options (C(baseline) and C(placeholders) default to empty, C(base_url) to none).
    type: list
    elements: dict
  baseline:
    description:
      - Probe name to the value recorded in the baseline phase (RV(values) of that run).
      - A probe with a ratio or increase rule and no value here gets the verdict V(error).
    type: dict
    default: {}
  only_critical:
    description: Run only the probes with C(critical=true) (the rollback's quick test of critical functions).
    type: bool
    default: false
  validate_only:
    description:
      - Validate the options and probe specs and run nothing. Preflight uses it so bad probe specs are
        refused before anything changes. Also checks that redis-py is importable when a redis probe exists.
    type: bool
    default: false
  headers:
    description:
      - HTTP headers added to every request (probe requests, stream triggers and bursts).
      - Not treated as secret; do not put credentials here.
    type: dict
    default: {"X-Cutover-Probe": "1"}
  placeholders:
    description:
      - "Values put in place of C({name}) in every string of the probe specs, for each name given: with
        C({release: migrated}), an C(expect) rule C(equals) of C({release}) becomes C(migrated). Probe specs are
        inventory data templated once per run, so what changes per phase (the release a component must report)
        comes here."
      - C({nonce}) and C({probe_nonce}) are filled by the module itself per request and per probe.
    type: dict
    default: {}
  base_url:
    description:
      - Base URL of the component, e.g. C(http://10.0.0.5:8103). Probe URLs that start with C(/) (C(url),
        C(urls), C(trigger_url), C(burst_url)) are joined to it, so one probe list serves every host.
    type: str
extends_documentation_fragment:
  - cutover_redis
notes:
  - The O(redis) option is only used by C(redis) probes; they connect with the probe's C(timeout) as socket
    timeout. An unreachable Redis gives those probes the verdict V(error); the module does not fail.
  - Check mode runs the probes too (they are reads), so C(check_mode=false) is not needed on probe tasks.
    HTTP probes may make the service write its own cache entries (a TTS miss fills the cache) and
    stream_growth triggers make it append to streams; command probes run their command in check mode as
    well, so point them at read-only commands (e.g. a config validator's dry run).
  - RV(changed) is always false.
"""

EXAMPLES = r"""
- name: Record the baseline of the TTS component
  cutover_probe:
    component: tts
    phase: baseline
    host_label: "{{ inventory_hostname }}"
    probes:
      - name: health
        type: http
        url: http://127.0.0.1:8082/healthz
        metric: json_field
        field: status
        expect: {equals: ok}
      - name: latency_p95
        type: http
        url: http://127.0.0.1:8082/speak?text=hello
        requests: 20
        concurrency: 4
        metric: latency_p95_ms
        expect: {max_ratio: 3.0}
      - name: hit_ratio
        type: http
        url: http://127.0.0.1:8082/speak?text=probe-{probe_nonce}
        requests: 10
        metric: header_ratio
        header: X-Cache
        value: hit
        expect: {min: 0.8}
  register: tts_baseline

- name: Verify the migrated TTS component against that baseline
  cutover_probe:
    component: tts
    phase: verify
    probes: "{{ tts_probes }}"
    baseline: "{{ tts_baseline.values }}"
  register: tts_verify

- name: Monitoring alerts still reach the ai_service_alerts stream
  cutover_probe:
    component: monitoring
    phase: verify
    redis: "{{ cutover_redis }}"
    probes:
      - name: alerts_written
        type: redis
        metric: stream_growth
        key: ai_service_alerts
        trigger_url: http://127.0.0.1:8085/alert?name=cutover-{probe_nonce}
        trigger_requests: 3
        match: {name: "cutover-{probe_nonce}"}
        expect: {equals: 3}
      - name: connection_leak
        type: redis
        metric: client_growth
        client_name: toy-monitoring
        burst_url: http://127.0.0.1:8085/healthz?n={nonce}
        burst_requests: 50
        expect: {max: 2}

- name: Refuse bad probe specs in preflight, running nothing
  cutover_probe:
    component: safety
    phase: verify
    probes: "{{ safety_probes }}"
    validate_only: true

- name: Rollback step 5, quick test of the critical functions
  cutover_probe:
    component: safety
    phase: rollback
    probes: "{{ safety_probes }}"
    baseline: "{{ safety_baseline }}"
    only_critical: true
"""

RETURN = r"""
results:
  description: One entry per probe that ran (none with O(validate_only)).
  returned: always
  type: list
  elements: dict
  contains:
    component: {description: The component., type: str}
    host: {description: O(host_label) or the managed host's node name., type: str}
    probe: {description: Probe name., type: str}
    phase: {description: The phase., type: str}
    type: {description: Probe type (http, redis, command)., type: str}
    metric: {description: The metric measured., type: str}
    verdict: {description: "V(pass), V(fail), V(error) or (phase V(baseline)) V(recorded).", type: str}
    value: {description: The measured value; null when nothing could be measured., type: raw}
    baseline: {description: The baseline value used; null when there was none., type: raw}
    threshold: {description: "The rules in words, e.g. C(<= 3.0 x baseline 12.4 (37.2) and >= 0.99).", type: str}
    critical: {description: Whether a fail or error of this probe makes RV(passed) false., type: bool}
    detail: {description: Why it failed, and what was measured (statuses, errors, output tails)., type: str}
    duration_ms: {description: How long the probe took., type: float}
  sample:
    - component: tts
      host: toy-1
      probe: latency_p95
      phase: verify
      type: http
      metric: latency_p95_ms
      verdict: fail
      value: 45.1
      baseline: 12.4
      threshold: "<= 3.0 x baseline 12.4 (37.2)"
      critical: true
      detail: "value 45.1 > 37.2 (max_ratio); 20 request(s) to http://127.0.0.1:8082/speak?text=hello: 200 x20"
      duration_ms: 260.3
passed:
  description: False when a critical probe has the verdict V(fail) or V(error).
  returned: always
  type: bool
failures:
  description:
    - "One line per probe with verdict V(fail) or V(error):
      C(component/probe: value V, baseline B, threshold T), marked C((non-critical)) when it is,
      and followed by C(; error: text) for V(error)."
  returned: always
  type: list
  elements: str
  sample: ["tts/latency_p95: value 45.1, baseline 12.4, threshold <= 3.0 x baseline 12.4 (37.2)"]
values:
  description: Probe name to measured value; pass it as O(baseline) of a later run.
  returned: with O(component)
  type: dict
  sample: {latency_p95: 12.4, hit_ratio: 0.9}
values_by_component:
  description: Component to its RV(values).
  returned: always
  type: dict
  sample: {tts: {latency_p95: 12.4, hit_ratio: 0.9}}
journal:
  description: One C(probe.result) journal entry per result, stamped with the time of its verdict (pass them to
    cutover_journal O(entries)).
  returned: always
  type: list
  elements: dict
trigger:
  description: The first critical probe that failed or errored, as a rollback trigger
    (C({component, host, probe, phase, value, baseline, threshold, detail})); null when none did.
  returned: always
  type: dict
msg:
  description: A one-line summary naming the failed critical probes.
  returned: always
  type: str
  sample: "tts verify: 4 of 4 probe(s) passed"
"""

import platform
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_judge import PHASES, summarize, url_passwords, validate_baseline, validate_headers
from ansible.module_utils.cutover_probe_suite import (
    journal_entries, prepare_specs, run_suites, trigger_of, values_by_component,
)
from ansible.module_utils.cutover_redis import redis_connection_argument_spec, require_redis

COMPONENT_FIELDS = ("name", "probes", "base_url", "baseline", "placeholders")


def requested_components(params: dict[str, Any]) -> list[dict[str, Any]]:
    """O(components), or the one component of O(component)/O(probes), with defaults filled in."""
    if params["components"] is None:
        return [{"name": params["component"], "probes": params["probes"], "base_url": params["base_url"],
                 "baseline": params["baseline"], "placeholders": params["placeholders"]}]
    return [{"name": item.get("name"), "probes": item.get("probes"), "base_url": item.get("base_url"),
             "baseline": item.get("baseline") or {}, "placeholders": {**params["placeholders"],
                                                                        **(item.get("placeholders") or {})}}
            for item in params["components"]]


def component_problems(params: dict[str, Any]) -> list[str]:
    problems = []
    for index, item in enumerate(params["components"] or []):
        unknown = sorted(set(item) - set(COMPONENT_FIELDS))
        if unknown:
            problems.append("components[%d] has unknown field(s) %s; allowed: %s"
                            % (index, ", ".join(unknown), ", ".join(COMPONENT_FIELDS)))
    return problems


def prepare_suites(params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    suites, errors = [], component_problems(params)
    for component in requested_components(params):
        specs, spec_errors = prepare_specs(component["name"], component["probes"], component["base_url"],
                                           component["placeholders"], params["only_critical"])
        errors += spec_errors + validate_baseline(component["baseline"])
        suites.append({"component": component["name"], "specs": specs, "baseline": component["baseline"]})
    return suites, errors + validate_headers(params["headers"])


def probe_summary(params: dict[str, Any], suites: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    label = params["component"] or ", ".join(suite["component"] for suite in suites)
    result = {"changed": False, "results": results, "values_by_component": values_by_component(results),
              "journal": journal_entries(results), "trigger": trigger_of(results),
              **summarize(label, params["phase"], results)}
    if params["components"] is None:
        result["values"] = result["values_by_component"].get(params["component"], {})
    return result


def main() -> None:
    argument_spec: dict[str, Any] = dict(
        component=dict(type="str"),
        components=dict(type="list", elements="dict"),
        host_label=dict(type="str"),
        phase=dict(type="str", required=True, choices=list(PHASES)),
        probes=dict(type="list", elements="dict"),
        baseline=dict(type="dict", default={}),
        only_critical=dict(type="bool", default=False),
        validate_only=dict(type="bool", default=False),
        headers=dict(type="dict", default={"X-Cutover-Probe": "1"}),
        base_url=dict(type="str"),
        placeholders=dict(type="dict", default={}),
    )
    argument_spec.update(redis_connection_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("component", "components")],
                           mutually_exclusive=[("component", "components"), ("probes", "components")],
                           required_by={"component": "probes"})
    params = module.params
    # user:password in a probe URL is masked everywhere in the result, invocation included
    for component in requested_components(params):
        module.no_log_values.update(url_passwords(component["probes"]))

    suites, errors = prepare_suites(params)
    if errors:
        module.fail_json(msg="invalid probe options: " + "; ".join(errors), errors=errors)
    specs = [spec for suite in suites for spec in suite["specs"]]
    if any(spec["type"] == "redis" for spec in specs):
        require_redis(module)
    if params["validate_only"]:
        module.exit_json(changed=False, results=[], passed=True, failures=[], values={}, values_by_component={},
                         journal=[], trigger=None,
                         msg="%s: %d probe spec(s) valid, none run"
                             % (", ".join(suite["component"] for suite in suites), len(specs)))
    for suite in suites:
        if params["only_critical"] and not suite["specs"]:
            module.warn("component %s has no critical probes: nothing was tested" % suite["component"])
    results = run_suites([suite for suite in suites if suite["specs"]], params["phase"], params["redis"],
                         params["headers"], params["host_label"] or platform.node())
    module.exit_json(**probe_summary(params, suites, results))


if __name__ == "__main__":
    main()
