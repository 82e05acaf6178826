"""The CI failure digest (.ci/digest.py): what failed in a make test log, printed last where a CI tail shows it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

DIGEST = Path(__file__).resolve().parents[2] / ".ci" / "digest.py"
spec = importlib.util.spec_from_file_location("ci_digest", DIGEST)
digest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(digest)

LOG = """\
\x1b[0;31mfatal: [localhost]: FAILED! => \x1b[0m
\x1b[0;31m    changed: false\x1b[0m
\x1b[0;31m    msg: 'ignored on purpose'\x1b[0m
\x1b[0;36m...ignoring\x1b[0m

TASK [Check the faults roll back] ****
  \x1b[2m\u2502\x1b[0m failed: [localhost] (item=canary_fault) =>
  \x1b[2m\u2502\x1b[0m     msg: 'canary_fault: steps {app-1: [1, 2, 3, 5]}'

PLAY RECAP ****
FAILED tests/demo/test_faulty.py::test_pool_swallow - assert 0.65 <= 0.5
"""


def test_the_digest_shows_each_failure_with_its_result_lines_and_leaves_out_ignored_ones(tmp_path, capsys) -> None:
    log = tmp_path / "make-test.log"
    log.write_text(LOG)

    assert digest.main(str(log)) == 0

    out = capsys.readouterr().out
    assert "ignored on purpose" not in out
    assert "failed: [localhost] (item=canary_fault) =>\n    msg: 'canary_fault: steps {app-1: [1, 2, 3, 5]}'" in out
    assert "FAILED tests/demo/test_faulty.py::test_pool_swallow - assert 0.65 <= 0.5" in out
    assert "TASK [Check the faults roll back]" in out and "\x1b" not in out


def test_for_a_failed_molecule_step_the_digest_shows_the_last_failure_before_it_only(tmp_path, capsys) -> None:
    expected_by_a_scenario = "fatal: [localhost]: FAILED! =>\n    msg: 'invalid probe options (expected)'\n"
    decisive = "TASK [Check resume.yml rolled back]\nfatal: [localhost]: FAILED! =>\n    msg: 'no attribute reason'\n"
    log = tmp_path / "make-test.log"
    log.write_text(expected_by_a_scenario * 30 + decisive + "ERROR    fleet \u279c verify: Executed: Failed\n")

    digest.main(str(log))

    out = capsys.readouterr().out
    assert "expected" not in out
    assert "TASK [Check resume.yml rolled back]\nfatal: [localhost]: FAILED! =>\n    msg: 'no attribute reason'" in out
    assert "verify: Executed: Failed" in out


def test_for_a_failed_playbook_command_the_digest_shows_the_failures_inside_its_output(tmp_path, capsys) -> None:
    inner_ok = "".join("        ok: [host-%d]\n" % number for number in range(20))
    inner_ignored = ("        TASK [Probe the quick test]\n        fatal: [app-1]: FAILED! =>\n"
                     "            msg: 'expected and ignored'\n        ...ignoring\n")
    inner_fatal = ("        TASK [cutover_rollback : Restore the snapshot]\n        fatal: [redis-1]: FAILED! =>\n"
                   "            changed: false\n            msg: 'restore refused: manifest mismatch'\n"
                   "        PLAY RECAP\n")
    log = tmp_path / "make-test.log"
    log.write_text("TASK [Run the playbook for step rollback]\nfatal: [localhost]: FAILED! =>\n    changed: true\n"
                   "    rc: 2\n    stdout: |-\n" + inner_ok + inner_ignored + inner_fatal
                   + "ERROR    e2e \u279c converge: Executed: Failed\n")

    digest.main(str(log))

    out = capsys.readouterr().out
    assert "    rc: 2" in out
    assert ("        TASK [cutover_rollback : Restore the snapshot]\n        fatal: [redis-1]: FAILED! =>\n"
            "            changed: false\n            msg: 'restore refused: manifest mismatch'") in out
    assert "expected and ignored" not in out
