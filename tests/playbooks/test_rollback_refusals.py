"""rollback.yml refuses a run it cannot roll back before anything changes: no lock, no journal entry.

A real `ansible-playbook` run of the local inventory in a run folder of its own, whose journal holds a migrate run
refused by its preflight (journaled by the real cutover_journal module); Redis and every component are on ports
nothing listens on, so no demo service needs to run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cutover_journal
from cutover_testlib import free_port, run_module

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def run(playbook: str, variables: dict) -> tuple[int, str]:
    done = subprocess.run([PLAYBOOK, "playbooks/%s.yml" % playbook, "-e", json.dumps(variables)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def journaled(run_dir: Path) -> dict[str, list[str]]:
    return {path.stem: [json.loads(line)["event"] for line in path.read_text().splitlines() if line.strip()]
            for path in sorted((run_dir / "state" / "journal").glob("*.jsonl"))}


def test_the_newest_migrate_run_switched_nothing_so_rollback_refuses_it_naming_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    variables = {"toy_run_dir": str(run_dir), "toy_reports_dir": str(tmp_path / "reports"),
                 "toy_redis_port": free_port(), "toy_port_base": free_port()}
    refused_run = "20261205T060000Z"
    run_module(cutover_journal.main, {"path": str(run_dir / "state" / "journal"), "run_id": refused_run, "entries": [
        {"event": "run.started", "data": {"playbook": "migrate", "target_release": "migrated", "controller": "c",
                                          "user": "u", "components": ["tts"], "hosts": {"tts": ["localhost"]},
                                          "redis_host": "localhost"}},
        {"event": "run.aborted", "host": "localhost", "data": {"stage": "preflight", "message": "Redis is down"}},
        {"event": "run.finished", "data": {"outcome": "failed", "message": "preflight failed on localhost"}}]})
    events = journaled(run_dir)[refused_run]

    rc, output = run("rollback", {**variables, "cutover_rollback_reason": "undo the refused run"})

    assert rc != 0, output[-2000:]
    assert ("refused, nothing changed: migrate run %s switched no component, so there is nothing to roll back "
            "(it ended failed: preflight failed on localhost)" % refused_run) in output, output[-3000:]
    assert "cutover_rollback_run_id" in output
    assert journaled(run_dir) == {refused_run: events}, "the refused rollback journaled something"
    assert not (run_dir / "state" / "lock").exists()
