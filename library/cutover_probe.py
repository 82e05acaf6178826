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
    per Redis command, for the whole command probe); C(description) (free text); C(phases) (the phases the probe
    runs in, default all: V(baseline), V(canary), V(verify), V(watch), V(rollback) - e.g. a slow growth window or a
    reader of the old release kept out of the rollback's quick test)."
  - "Judgement fields (like an Argo Rollouts analysis; the defaults take one measurement, as a probe always did):
    C(count) (measurements per judgement, 1-1000, default C(1)); C(interval) (seconds between measurements, default
    C(0)); C(initial_delay) (seconds before the first, default C(0)); C(failure_limit) (measurements that may break
    the rules, default C(0); the probe fails when more do; less than C(count)); C(consecutive_error_limit)
    (measurement errors in a row tolerated, default C(0); one more makes the probe C(inconclusive); less than
    C(count)); C(inconclusive) (C(rollback) or C(pause): what an inconclusive verdict asks for; default C(rollback)
    for a critical probe, C(pause) otherwise; C(rollback) needs C(critical=true)).
    C(initial_delay) + C(interval) x (C(count) - 1) is at most 3600 seconds. Measuring stops as soon as the verdict
    is decided."
  - "A measurement error is a measurement without a value (nothing answered, the command could not run, Redis
    unreachable) or one whose rules cannot be evaluated (a ratio rule without a baseline value). A target that
    cannot be reached but whose metric has a failure value (C(error_rate) 1.0, C(status_ok) 0.0) is a measured
    value, judged like any other: that probe fails."
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
    C(header) equals C(value)); C(process_growth) (see below)."
  - "C(process_growth) (an C(http) probe sending no request of the request fields above): the component's process
    - its pid is the integer at the dotted path C(pid_field) (default C(pid)) of the JSON answer of C(pid_url)
    (default C(/healthz) under O(base_url); required without one) - is read before the first burst, then bursts
    of C(burst_requests) (default C(10)) GET requests to C(burst_url) (C(burst_concurrency) at a time, default
    C(1)), each followed by C(settle) seconds (default C(0.5)) and a reading, are repeated for C(window) seconds
    (default C(3)) and at least C(samples) times (default C(3)); the reading before the first burst comes
    C(settle) seconds after the pid was read. The value is the largest rise from a reading to a later one: a leak
    hidden by the garbage collector is a sawtooth, whose last reading minus the first may land on a collection,
    while a healthy process rises once (its pool fills) and levels off; the detail also gives the last minus the
    first. C(resource) (required): C(rss_mb) (VmRSS of /proc/<pid>/status, MiB), C(fds) (entries of
    /proc/<pid>/fd), C(clients) (CLIENT LIST entries named C(client_name), required then; uses O(redis)). The probe
    reads /proc of the host the module runs on, so it must run on the component's host as its user or root.
    A pid that changes during the window, or bursts of which none succeeded, are measurement errors."
  - "C(redis) metrics: C(ping_ms) (one PING round trip on an open connection); C(key_count) (keys
    matching C(pattern), by SCAN); C(stream_growth) (entries appended to stream C(key) whose fields
    equal the C(match) dict, after calling C(trigger_url) C(trigger_requests) times (default 1) with GET,
    polling up to C(window) seconds (default 3) and stopping early once C(trigger_requests) matching
    entries arrived; C(match) values may use C({probe_nonce})); C(client_count) (CLIENT LIST entries named
    C(client_name), all clients without it); C(client_growth) (that count after calling C(burst_url)
    C(burst_requests) times (default 10) and waiting C(settle) seconds (default 0.5), minus the count
    before); C(used_memory_mb); C(new_key_ttl_s) (the keys matching C(pattern) are listed by SCAN, C(trigger_url) is
    called C(trigger_requests) times (default 1, each with a fresh C({nonce})), and the keys matching C(pattern)
    that are new - polled up to C(window) seconds, default 3, until C(trigger_requests) of them appeared - give
    their remaining TTL in seconds (PTTL / 1000; a key gone by then counts 0, keys without TTL are left out and
    counted in the detail); the value is their C(stat), C(min) (default) or C(median); no new key, or none with
    a TTL, is a measurement error naming the pattern; catches TTLs written in milliseconds where seconds were
    meant)."
  - "C(command) probes: C(argv) (list, run without a shell in its own process group, killed on timeout),
    C(cwd); metrics C(exit_code), C(duration_ms) and C(readable_ratio). The detail holds the program name and the
    tails of stdout and stderr, never the environment or the arguments; the recorded spec masks the value of an
    argument whose option name says it is a secret (C(--password=***), C(--token ***))."
  - "C(readable_ratio): C(write_url) (it must contain C({nonce})) is called C(write_requests) times (default 5),
    each with a fresh C({nonce}), so the component writes fresh entries through its normal API; then C(argv) - a
    reader of the release the component came from, e.g. that release's own code, using C({from_release}) - gets
    the nonces of the writes that succeeded on stdin, one per line, and must print a JSON object
    C({nonce: true|false}) (readable by it or not).
    The value is the fraction readable. No successful write, a reader that cannot start, times out, exits non-zero,
    prints no JSON object or leaves a nonce without true/false is a measurement error with the output tails."
  - "Verdicts: C(pass), C(fail), C(inconclusive), and in phase C(baseline) C(recorded) instead of C(pass) (only the
    absolute rules are judged then; a baseline that breaks them is C(fail), so an unhealthy service stops the
    migration). Each measurement passes, fails (a rule does not hold) or errs. The probe is C(fail) as soon as more
    than C(failure_limit) measurements failed, C(inconclusive) as soon as more than C(consecutive_error_limit)
    errors came in a row, and after C(count) measurements C(pass) when at least one passed (C(inconclusive) when
    none did). A ratio rule without a baseline value is therefore C(inconclusive), never a silent pass. The value
    of the probe is the median of its measured values when they are numbers (one measurement: its value), else
    the last one."
  - "What a verdict asks of the rollout: a critical C(fail) rolls back (RV(trigger)); a non-critical one is only
    listed in RV(failures). An C(inconclusive) probe does what its C(inconclusive) policy says: C(rollback) (a
    trigger) or C(pause) (RV(paused), no trigger: the rollout stops and waits for a human). In phase C(rollback) a
    rollback cannot pause, so a critical inconclusive probe counts as failed and a non-critical one is listed."
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
        (C(client_count), C(client_growth), C(latency_p50_ms), C(latency_p95_ms), C(used_memory_mb),
        C(process_growth)); those run one by one after the others, each with all its measurements.
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
      - "The roles pass C(release) (the release the component must report in this phase) and C(from_release) (the
        release it came from: the reader of a C(readable_ratio) probe). C(from_release) defaults to C(release), which
        is right in phases C(baseline) and C(rollback); in C(canary), C(verify) and C(watch) a probe using
        C({from_release}) without it is refused (unless O(validate_only))."
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
    HTTP probes may make the service write its own cache entries (a TTS miss fills the cache),
    stream_growth triggers make it append to streams, and new_key_ttl_s triggers and readable_ratio writes make
    it write fresh entries; command probes run their command in check mode as well, so point them at read-only
    commands (e.g. a config validator's dry run, a reader that only reads).
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

- name: Judge the canary of the AI cache over several measurements, and check the old release reads its writes
  cutover_probe:
    component: ai
    phase: canary
    base_url: http://127.0.0.1:8102
    redis: "{{ cutover_redis }}"
    baseline: "{{ ai_baseline.values }}"
    placeholders: {release: migrated, from_release: legacy}
    probes:
      - name: error_rate
        type: http
        url: /reply?prompt=probe-{nonce}
        requests: 20
        metric: error_rate
        count: 5
        interval: 2
        initial_delay: 1
        failure_limit: 1
        consecutive_error_limit: 1
        expect: {max: 0.05}
      - name: new_reply_ttl
        type: redis
        metric: new_key_ttl_s
        pattern: "ai:reply:*"
        trigger_url: /reply?prompt=ttl-{nonce}
        trigger_requests: 3
        expect: {min_ratio: 0.5, min: 60}
      - name: old_release_reads_new_replies
        type: command
        metric: readable_ratio
        write_url: /reply?prompt=cutover-{nonce}
        write_requests: 5
        argv:
          - "/opt/toy/ai/releases/{from_release}/venv/bin/python"
          - "/opt/toy/ai/releases/{from_release}/read_replies.py"
        expect: {min: 1.0}
      - name: memory_growth
        type: http
        metric: process_growth
        resource: rss_mb
        burst_url: /reply?prompt=burst-{nonce}
        burst_requests: 50
        burst_concurrency: 5
        window: 10
        settle: 1
        samples: 5
        critical: false
        expect: {max_increase: 20}

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
    verdict: {description: "V(pass), V(fail), V(inconclusive) or (phase V(baseline)) V(recorded).", type: str}
    value: {description: "The measured value (the median of several numeric measurements, else the last); null when
      nothing could be measured.", type: raw}
    baseline: {description: The baseline value used; null when there was none., type: raw}
    threshold: {description: "The rules in words, e.g. C(<= 3.0 x baseline 12.4 (37.2) and >= 0.99); with several
      measurements followed by C(; at most F of N measurement(s) may break it).", type: str}
    critical: {description: "Whether a fail of this probe rolls back (a non-critical one is only listed); it also
      sets the default C(inconclusive) policy.", type: bool}
    detail: {description: Why it failed, and what was measured (statuses, errors, output tails)., type: str}
    duration_ms: {description: How long the probe took (all its measurements)., type: float}
    measurements:
      description: "Every measurement in order: C({at, value, verdict, detail}), C(verdict) being V(pass), V(fail)
        or V(error) and C(detail) why it did not pass."
      type: list
      elements: dict
    failures: {description: Measurements that broke the rules., type: int}
    errors: {description: Measurements that could not be taken or judged., type: int}
    spec:
      description: "The probe as run: placeholders filled, relative URLs joined, defaults and the judgement settings
        (C(count), C(interval), C(initial_delay), C(failure_limit), C(consecutive_error_limit), C(inconclusive)) in;
        passwords in URLs and secret-looking arguments masked."
      type: dict
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
      measurements:
        - {at: "2026-11-25T22:21:14.123Z", value: 45.1, verdict: fail, detail: "value 45.1 > 37.2 (max_ratio)"}
      failures: 1
      errors: 0
      spec: {name: latency_p95, type: http, metric: latency_p95_ms, urls: ["http://127.0.0.1:8082/speak?text=hello"],
             requests: 20, concurrency: 4, expect: {max_ratio: 3.0}, critical: true, count: 1, interval: 0,
             initial_delay: 0, failure_limit: 0, consecutive_error_limit: 0, inconclusive: rollback}
passed:
  description:
    - "True when the rollout may go on: no result asks for a rollback (RV(trigger)) or a pause (RV(paused))."
    - A non-critical probe that fails never makes it false.
  returned: always
  type: bool
paused:
  description: True when an inconclusive probe with policy C(pause) asks to stop the rollout and wait for a human,
    and no result asks for a rollback (RV(trigger) is then null).
  returned: always
  type: bool
pause:
  description: With RV(paused), the first result that asks for the pause
    (C({component, host, probe, phase, value, baseline, threshold, detail})); null otherwise.
  returned: always
  type: dict
failures:
  description:
    - "One line per probe with verdict V(fail) or V(inconclusive):
      C(component/probe: value V, baseline B, threshold T), marked C((non-critical)) when it is,
      and followed by C(; inconclusive: why) for V(inconclusive)."
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
  description: The rollback trigger, null when nothing asks for a rollback - the first critical probe that failed,
    else the first inconclusive one whose policy is C(rollback)
    (C({component, host, probe, phase, verdict, value, baseline, threshold, detail})).
  returned: always
  type: dict
msg:
  description: A one-line summary naming the probes that stop the rollout (roll back or pause).
  returned: always
  type: str
  sample: "tts verify: 4 of 4 probe(s) passed"
"""

import platform
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.cutover_judge import (
    PHASES, argv_secrets, paused, summarize, url_passwords, uses_placeholder, validate_baseline, validate_headers,
)
from ansible.module_utils.cutover_probe_suite import (
    journal_entries, pause_of, prepare_specs, run_suites, trigger_of, values_by_component,
)
from ansible.module_utils.cutover_redis import redis_connection_argument_spec, require_redis

COMPONENT_FIELDS = ("name", "probes", "base_url", "baseline", "placeholders")
# Phases in which the component runs another release than the one it came from: {from_release} must be given.
MOVED_PHASES = ("canary", "verify", "watch")


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


def placeholder_problems(params: dict[str, Any], component: dict[str, Any]) -> list[str]:
    """{from_release} defaults to {release}, which is right only while the component runs the release it came from."""
    if params["phase"] not in MOVED_PHASES or params["validate_only"] or "from_release" in component["placeholders"] \
            or not uses_placeholder(component["probes"], "from_release"):
        return []
    return ["component %s: its probes use {from_release}, so phase %s needs placeholders.from_release (the release "
            "the component moved from)" % (component["name"], params["phase"])]


def prepare_suites(params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    suites, errors = [], component_problems(params)
    for component in requested_components(params):
        errors += placeholder_problems(params, component)
        specs, spec_errors = prepare_specs(component["name"], component["probes"], component["base_url"],
                                           component["placeholders"], params["only_critical"],
                                           None if params["validate_only"] else params["phase"])
        errors += spec_errors + validate_baseline(component["baseline"])
        suites.append({"component": component["name"], "specs": specs, "baseline": component["baseline"]})
    return suites, errors + validate_headers(params["headers"])


def probe_summary(params: dict[str, Any], suites: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    label = params["component"] or ", ".join(suite["component"] for suite in suites)
    result = {"changed": False, "results": results, "values_by_component": values_by_component(results),
              "journal": journal_entries(results), "trigger": trigger_of(results, params["phase"]),
              "paused": paused(results, params["phase"]), "pause": pause_of(results, params["phase"]), **summarize(label, params["phase"], results)}
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
    # user:password in a probe URL and secret-looking command arguments are masked everywhere in the result,
    # invocation included
    for component in requested_components(params):
        module.no_log_values.update(url_passwords(component["probes"]) | argv_secrets(component["probes"]))

    suites, errors = prepare_suites(params)
    if errors:
        module.fail_json(msg="invalid probe options: " + "; ".join(errors), errors=errors)
    specs = [spec for suite in suites for spec in suite["specs"]]
    if any(spec["type"] == "redis" or spec.get("resource") == "clients" for spec in specs):
        require_redis(module)
    if params["validate_only"]:
        module.exit_json(changed=False, results=[], passed=True, paused=False, pause=None, failures=[], values={},
                         values_by_component={}, journal=[], trigger=None,
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
