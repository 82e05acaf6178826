"""The scheduled watcher's systemd service and timer, rendered by the role's own templates and variables and checked
by systemd-analyze verify (systemd is not PID 1 here, so they are rendered and linted, not started)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RUN = "20261205T010203Z"

RENDER = """
- name: Render the watcher's units
  hosts: localhost
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  tasks:
    - name: Render each unit
      ansible.builtin.template:
        src: {templates}/{{{{ item }}}}.j2
        dest: {out}/cutover-watch-{run_lower}.{{{{ item | split('.') | last }}}}
        mode: "0644"
      loop: [watcher.service, watcher.timer]
"""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_watchers_units_render_and_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    out = tmp_path / "units"
    out.mkdir()
    playbook = tmp_path / "render.yml"
    playbook.write_text(RENDER.format(defaults=ROOT / "roles/cutover/defaults/main.yml",
                                      vars=ROOT / "roles/cutover_watch/vars/main.yml",
                                      templates=ROOT / "roles/cutover_watch/templates", out=out,
                                      run_lower=RUN.lower()))
    variables = {"ansible_python_interpreter": sys.executable, "cutover_run_id": RUN,
                 "cutover_journal_host": "localhost", "cutover_redis": {"host": "127.0.0.1"},
                 "cutover_watch_project_dir": str(ROOT), "cutover_state_dir": str(tmp_path / "state"),
                 "cutover_watch_environment": {"HOME": "/var/lib/cutover", "NOTE": "100% $HOME \"quoted\""},
                 "__cutover_run": {"status": {"watch": {"interval_s": 300, "ends_at": "2026-12-06T01:02:03.000Z"}}}}
    done = subprocess.run([PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps(variables)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    service = (out / ("cutover-watch-%s.service" % RUN.lower())).read_text()
    timer = (out / ("cutover-watch-%s.timer" % RUN.lower())).read_text()
    assert 'ExecStart="%s" "--inventory=localhost,"' % PLAYBOOK in service
    assert '"%s/playbooks/watch.yml" "--extra-vars=cutover_watch_run_id=%s"' % (ROOT, RUN) in service
    assert 'Environment="NOTE=100%% $$HOME \\"quoted\\""' in service, "no specifier or variable expansion"
    assert "OnUnitInactiveSec=300s" in timer and "Unit=cutover-watch-%s.service" % RUN.lower() in timer
    verified = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(out.iterdir()))],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
