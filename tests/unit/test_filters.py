"""The controller-side plan filters (plugins/filter/cutover.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
import cutover as filters  # noqa: E402

COMPONENTS = [
    {"name": "validator", "kind": "cli"},
    {"name": "tts", "base_url": "http://127.0.0.1:1", "namespaces": ["tts:*"], "probes": [{"name": "p"}]},
    {"name": "safety", "base_url": "http://127.0.0.1:2", "hosts": ["web1"]},
]


def test_plan_fills_defaults_in_listed_order():
    plan = filters.cutover_plan(COMPONENTS)
    assert [component["name"] for component in plan] == ["validator", "tts", "safety"]
    assert plan[1]["service"] == "cutover-tts" and plan[1]["kind"] == "service"
    assert plan[0]["service"] is None and plan[0]["namespaces"] == []
    assert plan[2]["hosts"] == ["web1"]


def test_plan_follows_cutover_plan_order():
    assert [c["name"] for c in filters.cutover_plan(COMPONENTS, ["safety", "tts"])] == ["safety", "tts"]


@pytest.mark.parametrize("components, plan, message", [
    (COMPONENTS, ["tts", "nope"], "cutover_plan names unknown component(s) nope; allowed: validator, tts, safety"),
    (COMPONENTS, ["tts", "tts"], "lists a component twice"),
    ([{"name": "Bad Name"}], None, "cutover_components[0].name must match"),
    ([{"name": "x", "kind": "daemon"}], None, "kind must be one of service, cli"),
    ([{"name": "x"}], None, "base_url is required"),
    ([{"name": "x", "kind": "cli", "namespaces": "tts:*"}], None, "namespaces must be a list"),
    ([{"name": "x", "kind": "cli"}, {"name": "x", "kind": "cli"}], None, "'x' appears twice"),
    ([], None, "non-empty list"),
])
def test_bad_plans_name_the_variable(components, plan, message):
    with pytest.raises(AnsibleFilterError) as failure:
        filters.cutover_plan(components, plan)
    assert message in str(failure.value)


def test_plan_hosts_resolve_groups_and_hosts():
    groups = {"all": ["web1", "web2"], "cutover_app": ["web1", "web2"]}
    mapping = filters.cutover_plan_hosts(filters.cutover_plan(COMPONENTS), groups)
    assert mapping == {"validator": ["web1", "web2"], "tts": ["web1", "web2"], "safety": ["web1"]}
    with pytest.raises(AnsibleFilterError, match="match no inventory host"):
        filters.cutover_plan_hosts(filters.cutover_plan([{"name": "x", "kind": "cli", "hosts": "db"}]), groups)


@pytest.mark.parametrize("hosts, canary, size, batches", [
    (["a", "b", "c", "d"], 1, 0, [["a"], ["b", "c", "d"]]),
    (["a", "b", "c", "d"], 1, 2, [["a"], ["b", "c"], ["d"]]),
    (["a"], 1, 0, [["a"]]),
    (["a", "b"], 0, 1, [["a"], ["b"]]),
    (["a", "b"], 0, 0, [["a", "b"]]),
])
def test_batches_put_the_canary_first(hosts, canary, size, batches):
    assert filters.cutover_batches(hosts, canary, size) == batches


def test_rollback_targets_join_the_plan_and_skip_unchanged():
    plan = filters.cutover_plan(COMPONENTS)
    switched = [
        {"name": "tts", "host": "h", "from_release": "legacy", "to_release": "migrated", "state": "failed"},
        {"name": "safety", "host": "h", "from_release": "migrated", "to_release": "migrated", "state": "migrated"},
    ]
    targets = filters.cutover_rollback_targets(switched, plan)
    assert [(t["name"], t["from_release"], t["namespaces"]) for t in targets] == [("tts", "legacy", ["tts:*"])]
    with pytest.raises(AnsibleFilterError, match="does not include"):
        filters.cutover_rollback_targets([dict(switched[0], name="gone")], plan)


def test_trigger_description_names_probe_value_and_threshold():
    text = filters.cutover_describe_trigger({"component": "tts", "probe": "seeded_hit_ratio", "host": "h",
                                             "value": 0.0, "baseline": 1.0, "threshold": ">= 0.95"})
    assert text == "probe tts/seeded_hit_ratio on h: value 0.0, baseline 1.0, threshold >= 0.95"
    assert filters.cutover_describe_trigger({"reason": "operator asked"}) == "operator asked"


def test_journal_entries_and_baselines():
    entry = filters.cutover_probe_entry({"component": "tts", "probe": "p", "phase": "baseline", "value": 3,
                                         "verdict": "recorded", "ignored": 1}, "h")
    assert entry["event"] == "probe.result" and entry["component"] == "tts" and entry["data"]["value"] == 3
    assert "ignored" not in entry["data"]
    baselines = filters.cutover_baselines([{"component": "tts", "probe": "p", "value": 1},
                                           {"component": "tts", "probe": "p", "value": 2}])
    assert baselines == {"tts": {"p": 2}}
    target = {"name": "tts", "from_release": "legacy", "to_release": "migrated"}
    assert filters.cutover_switch_entry(target, "h")["data"] == {"from_release": "migrated", "to_release": "legacy"}
    assert filters.cutover_state_entry(target, "h", "rolled_back")["data"] == {"state": "rolled_back", "release": "legacy"}
    assert filters.cutover_cli_option({"key": "tts", "value": 5}) == ["--tts", "5"]
