"""No decision crosses plays through facts on localhost: every play asks the journal (cutover_journal state=status).

The engine before the fleet rewrite carried the run between seven plays as facts on localhost (41 lookups of
hostvars['localhost'] and 9 delegate_facts in roles/ and playbooks/); this keeps that from coming back.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRIERS = re.compile(r"hostvars\[['\"]localhost['\"]\]|delegate_facts")


def yaml_files() -> list[Path]:
    return sorted(path for folder in ("roles", "playbooks") for path in (ROOT / folder).rglob("*.yml"))


def test_no_play_reads_or_writes_run_state_on_localhost():
    hits = ["%s:%d" % (path.relative_to(ROOT), number)
            for path in yaml_files() for number, line in enumerate(path.read_text().splitlines(), start=1)
            if CARRIERS.search(line)]
    assert hits == []


def test_every_play_after_the_guard_starts_from_the_journal():
    includes = ROOT / "playbooks" / "includes"
    for play_file in sorted(includes.glob("*.yml")):
        text = play_file.read_text()
        if play_file.name == "guard.yml":
            assert "tasks_from: guard\n" in text, "the guard entry point (and its argument specs) must be applied"
            continue
        first_task = text.split("tasks:", 1)[1]
        assert "tasks_from: status" in first_task.split("- name:", 2)[1] or "tasks_from: plan" in text, \
            "%s does not start by asking the journal" % play_file.name
