"""The guard refuses a wrong value of every stage before anything changes - no lock, no journal, no release.

Each case runs the real `ansible-playbook playbooks/migrate.yml` (local inventory, a run folder of its own); the guard
fails before any host is touched, so no demo service needs to run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
BAD_PROBE = [{"name": "tts", "base_url": "http://127.0.0.1:9", "namespaces": ["tts:*"],
              "probes": [{"name": "hit", "type": "http", "url": "/", "metric": "status_ok",
                          "expect": {"max_ratio": "abc"}}]}]

CASES = {
    "service manager": ({"cutover_service_manager": "upstart"},
                        ["cutover_service_manager", "supervisor, systemd", "upstart"]),
    "watch": ({"cutover_watch_duration_s": "abc"}, ["cutover_watch_duration_s", "int"]),
    "watch interval": ({"cutover_watch_interval_s": 0}, ["cutover_watch_interval_s must be >= 1"]),
    "watch inline max": ({"cutover_watch_inline_max_s": -5}, ["cutover_watch_inline_max_s must be >= 0"]),
    "watch scheduler": ({"cutover_watch_scheduler": "cron"}, ["cutover_watch_scheduler", "supervisor, systemd", "cron"]),
    "deploy canary": ({"cutover_deploy_canary_hosts": -1}, ["cutover_deploy_canary_hosts must be >= 0"]),
    "deploy start timeout": ({"cutover_deploy_start_timeout": "soon"}, ["cutover_deploy_start_timeout", "int"]),
    "snapshot mode": ({"cutover_snapshot_mode": "zip"}, ["cutover_snapshot_mode", "logical, rdb, replica", "zip"]),
    "snapshot keep": ({"cutover_snapshot_keep": "many"}, ["cutover_snapshot_keep", "int"]),
    "rollback policy": ({"cutover_rollback_restore_policy": "missing-only"},
                        ["cutover_rollback_restore_policy", "missing_only, overwrite, replace_all", "missing-only"]),
    "rollback needs rdb": ({"cutover_rollback_restore_policy": "whole_rdb"},
                           ["cutover_rollback_restore_policy whole_rdb", "cutover_snapshot_mode must be rdb or replica"]),
    "deploy hook": ({"cutover_deploy_hooks": {"after_verfy": "x.yml"}},
                    ["cutover_deploy_hooks has the key 'after_verfy'", "allowed: before_stage, after_stage"]),
    "rollback hook": ({"cutover_rollback_hooks": {"before_7": "x.yml"}},
                      ["cutover_rollback_hooks has the key 'before_7'", "before_1, after_1"]),
    "probe": ({"cutover_components": BAD_PROBE}, ["probe tts/hit: expect.max_ratio must be a number"]),
    "plan": ({"cutover_plan": ["tts", "nope"]}, ["cutover_plan names unknown component(s) nope; allowed:"]),
    "run id": ({"cutover_run_id": "today"}, ["cutover_run_id must be a UTC timestamp", "got 'today'"]),
    "rollback run id": ({"cutover_rollback_run_id": "last-one"},
                        ["cutover_rollback_run_id must be a UTC timestamp", "got 'last-one'"]),
    "release": ({"cutover_target_release": "no-such-release"},
                ["cutover_target_release 'no-such-release' has no folder", "allowed releases:", "migrated"]),
}


@pytest.mark.parametrize("extra, expected", CASES.values(), ids=list(CASES))
def test_guard_refuses_before_anything_changes(tmp_path: Path, extra: dict, expected: list[str]) -> None:
    run_dir = tmp_path / "run"
    variables = {"toy_run_dir": str(run_dir), "toy_reports_dir": str(tmp_path / "reports"), **extra}
    done = subprocess.run([PLAYBOOK, "playbooks/migrate.yml", "-e", json.dumps(variables)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0, output[-2000:]
    for fragment in expected:
        assert fragment in output, "%r not in the refusal: %s" % (fragment, output[-3000:])
    assert "PLAY [Guard the run" in output and "PLAY [Preflight" not in output, "refused by the guard, not later"
    changed = sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*")) if run_dir.exists() else []
    assert [path for path in changed if not path.startswith("secrets")] == [], "the guard changed %s" % changed
    assert not (tmp_path / "reports").exists()
