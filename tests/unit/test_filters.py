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
    ([{"name": "x", "kind": "cli", "restart": "reload"}], None, "restart must be one of restart, reload (reload only"),
    ([{"name": "x", "kind": "cli", "restart": "graceful"}], None, "restart must be one of restart, reload"),
    ([{"name": "x", "kind": "cli", "restore_policy": "revrt"}], None,
     "(x).restore_policy must be one of missing_only, overwrite, replace_all, revert"),
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


def test_components_named_keeps_the_order_given_and_refuses_unknown_names():
    assert [c["name"] for c in filters.cutover_components_named(COMPONENTS, ["tts", "validator"])] == ["tts", "validator"]
    assert filters.cutover_components_named(COMPONENTS, []) == []
    with pytest.raises(AnsibleFilterError, match="does not define; allowed: validator, tts"):
        filters.cutover_components_named(COMPONENTS, ["gone"])


def test_guard_problems_name_the_variable_and_what_is_allowed():
    values = {name: lowest for name, (lowest, _meaning) in filters.NUMBER_RULES.items()}
    values.update(cutover_rollback_restore_policy="missing_only", cutover_snapshot_mode="logical",
                  cutover_deploy_hooks={"after_verify": "x.yml"}, cutover_rollback_hooks={"before_4": "y.yml"})
    assert filters.cutover_guard_problems(values) == []
    bad = dict(values, cutover_deploy_canary_hosts=-1, cutover_watch_duration_s="abc",
               cutover_rollback_restore_policy="whole_rdb", cutover_deploy_hooks={"after_verfy": "x.yml"},
               cutover_rollback_hooks={"before_7": "y.yml"})
    problems = filters.cutover_guard_problems(bad)
    assert "cutover_deploy_canary_hosts must be >= 0 (hosts in each component's first batch), got -1" in problems
    assert any(p.startswith("cutover_watch_duration_s must be a whole number >= 0") for p in problems)
    assert any(p.startswith("cutover_rollback_restore_policy whole_rdb swaps in an RDB file") for p in problems)
    assert any("cutover_deploy_hooks has the key 'after_verfy', which is not a known hook; allowed: before_stage"
               in p for p in problems)
    assert any("cutover_rollback_hooks has the key 'before_7'" in p for p in problems)


def test_batches_refuse_negative_sizes_with_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="must be whole numbers >= 0, got -1 and 0"):
        filters.cutover_batches(["a", "b"], -1, 0)
    assert filters.cutover_batches_by_component({"tts": ["a", "b", "c"]}, 1, 1) == {"tts": [["a"], ["b"], ["c"]]}


def test_rollback_groups_split_where_a_hook_runs():
    assert filters.cutover_rollback_groups({}) == [[1, 2, 3], [4], [5, 6]]
    assert filters.cutover_rollback_groups({"before_2": "a", "after_5": "b"}) == [[1], [2, 3], [4], [5], [6]]
    assert filters.cutover_rollback_groups({"after_1": "a"}) == [[1], [2, 3], [4], [5, 6]]


def test_probe_suites_carry_baseline_and_release():
    suites = filters.cutover_probe_suites(filters.cutover_plan(COMPONENTS)[1:2], {"tts": {"p": 1.0}}, {"tts": "legacy"})
    assert suites == [{"name": "tts", "probes": [{"name": "p"}], "base_url": "http://127.0.0.1:1",
                       "baseline": {"p": 1.0}, "placeholders": {"release": "legacy"}}]


def test_cli_option():
    assert filters.cutover_cli_option({"key": "tts", "value": 5}) == ["--tts", "5"]


RESTORING = [
    {"name": "ai", "base_url": "http://h:1", "namespaces": ["ai:*"], "restore_policy": "revert"},
    {"name": "monitoring", "base_url": "http://h:2", "namespaces": ["monitoring:*", "alerts"]},
    {"name": "validator", "kind": "cli"},
]


@pytest.mark.parametrize("names, policy, expected", [
    (["ai", "monitoring", "ai"], "missing_only",
     {"policy": "missing_only", "namespaces": ["ai:*", "monitoring:*", "alerts"], "policies": {"ai:*": "revert"}}),
    (["monitoring"], "overwrite", {"policy": "overwrite", "namespaces": ["monitoring:*", "alerts"], "policies": None}),
    (["ai"], "revert", {"policy": "revert", "namespaces": ["ai:*"], "policies": None}),
    (["validator"], "missing_only", {"policy": "none", "namespaces": None, "policies": None}),
    (["ai"], "whole_rdb", {"policy": "whole_rdb", "namespaces": None, "policies": None}),
])
def test_restore_args_give_each_namespace_its_components_policy(names, policy, expected):
    assert filters.cutover_restore_args(RESTORING, names, policy) == expected


def test_restore_args_refuse_a_namespace_shared_with_two_policies():
    shared = RESTORING + [{"name": "ai2", "base_url": "http://h:3", "namespaces": ["ai:*"]}]
    with pytest.raises(AnsibleFilterError, match=r"namespace ai:\* is restored with two policies \(revert, missing_only\)"):
        filters.cutover_restore_args(shared, ["ai", "ai2"], "missing_only")


LOCK = {"run_id": "R1", "owner": {"controller": "ops1", "user": "u", "playbook": "migrate", "pid": "4242"}}


@pytest.mark.parametrize("lock, controller, process, force, takeover, why", [
    (None, "ops1", "", False, True, "the lock was released"),
    (dict(LOCK, run_id="R2"), "ops1", "", False, False, "the lock is held by run R2"),
    (LOCK, "ops1", "", False, True, "its ansible-playbook (pid 4242 on ops1) is gone"),
    (LOCK, "ops1", "/usr/bin/python3 /usr/bin/ansible-playbook migrate.yml", False, False, "is still running"),
    (LOCK, "ops2", "", False, False, "cannot be checked from ops2; run resume.yml there, or set cutover_lock_force"),
    (LOCK, "ops2", "", True, True, "cutover_lock_force=true"),
    ({"run_id": "R1", "owner": {"controller": "ops1"}}, "ops1", "", False, False, "cannot be checked"),
])
def test_lock_takeover_only_when_the_holder_is_known_to_be_gone(lock, controller, process, force, takeover, why):
    verdict = filters.cutover_lock_takeover(lock, "R1", controller, process, force)
    assert verdict["takeover"] is takeover and why in verdict["why"], verdict


def test_lease_refusals_name_the_watched_run_its_components_and_window_end():
    watcher = {"scheduler": "supervisor", "name": "cutover-watch-x", "host": "journal-1"}
    runs = [{"run_id": "20261205T010000Z", "lease": {"components": ["tts", "safety"], "until": "2026-12-06T01:00:00Z",
                                                    "watcher": watcher}},
            {"run_id": "20261204T010000Z", "lease": None}]
    assert filters.cutover_lease_refusals(runs, ["ai", "monitoring"]) == []
    refusal, = filters.cutover_lease_refusals(runs, ["safety", "ai"])
    assert refusal.startswith("run 20261205T010000Z is watching safety until 2026-12-06T01:00:00Z "
                              "(watcher cutover-watch-x on journal-1)")
    assert "cutover_watch_stop=true" in refusal and "rollback.yml" in refusal



def test_watcher_needs_names_each_variable_and_the_folder_of_its_scheduler() -> None:
    paths = {"cutover_watch_ansible_playbook": "/opt/venv/bin/ansible-playbook", "cutover_watch_project_dir": "/srv/cutover",
             "cutover_watch_inventory": ["/srv/inv/hosts.yml", "web1,web2,"],
             "cutover_watch_supervisor_include_dir": "/etc/supervisor/conf.d", "cutover_watch_unit_dir": "/etc/systemd/system"}
    needs = filters.cutover_watcher_needs(paths, "supervisor")
    assert [(need["name"], need["path"], need["want"]) for need in needs] == [
        ("cutover_watch_ansible_playbook", "/opt/venv/bin/ansible-playbook", "executable"),
        ("cutover_watch_project_dir", "/srv/cutover/playbooks/watch.yml", "file"),
        ("cutover_watch_inventory", "/srv/inv/hosts.yml", "exists"),
        ("cutover_watch_supervisor_include_dir", "/etc/supervisor/conf.d", "directory")]
    assert filters.cutover_watcher_needs(paths, "systemd")[-1]["name"] == "cutover_watch_unit_dir"
    assert [need["name"] for need in filters.cutover_watcher_needs(paths, "none")][-1] == "cutover_watch_inventory"

def test_systemd_quote_keeps_every_word_literal():
    assert filters.cutover_systemd_quote("/usr/bin/ansible-playbook") == '"/usr/bin/ansible-playbook"'
    assert filters.cutover_systemd_quote('50% of $HOME "x" \\') == '"50%% of $$HOME \\"x\\" \\\\"'
