"""cutover_validator through ansible itself: a validator that refuses the configs is a finding the module reports
(exit_code), not a failed task - Ansible fails any task whose result carries a non-zero ``rc``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).parent / "ansible"


def run_task(tmp_path: Path, script: str, controls: list[dict] | None = None) -> dict:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"listen_port": 8000, "redis": {"host": "127.0.0.1"}}))
    args = {"argv": ["/bin/sh", "-c", script, "validator"], "args": ["--config=%s" % config]}
    if controls is not None:
        args.update(control_config=str(config), negative_controls=controls)
    tree = tmp_path / "tree"
    subprocess.run([str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local", "-m", "cutover_validator",
                    "-a", json.dumps(args), "-e", "ansible_python_interpreter=%s" % sys.executable, "-t", str(tree)],
                   cwd=REPO, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")), capture_output=True,
                   timeout=120)
    return json.loads((tree / "localhost").read_text())


def test_a_validator_refusing_the_real_configs_is_reported_not_a_failed_task(tmp_path):
    result = run_task(tmp_path, 'echo "listen_port: must be an integer" >&2; exit 1')

    assert result.get("failed") is not True, result
    assert result["exit_code"] == 1 and "rc" not in result
    assert result["stderr_lines"] == ["listen_port: must be an integer"]


def test_negative_controls_report_what_the_validator_accepted(tmp_path):
    # refuses only configs whose listen_port is not 8000: wrong_port is refused, same_port is a false negative
    script = 'grep -q "\\"listen_port\\": 8000" "${1#--config=}"'
    result = run_task(tmp_path, script, [{"name": "wrong_port", "set": {"listen_port": 1}},
                                         {"name": "same_port", "set": {"redis.host": "192.0.2.1"}}])

    assert result.get("failed") is not True, result
    assert result["exit_code"] == 0
    assert [(control["name"], control["refused"]) for control in result["controls"]] == [
        ("wrong_port", True), ("same_port", False)]
