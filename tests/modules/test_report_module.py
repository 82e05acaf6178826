"""cutover_report fed from a real journal written and read by cutover_journal."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import cutover_journal
import cutover_report
from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES, check_event
from ansible.module_utils.cutover_report import build_report, render_markdown
from ansible.module_utils.cutover_report_html import render_html
from cutover_testlib import ModuleFailed, run_module

RUN_ID = "20261125T222114Z"
NEXT_RUN_ID = "20261126T080000Z"
PASSWORD = "s3cret-redis-pw"


def record(journal: Path, run_id: str, event: str, component: str | None = None, host: str | None = None,
           **data) -> None:
    """Append one schema-valid entry through cutover_journal (a component's entries are about host toy1)."""
    args = {"path": str(journal), "run_id": run_id, "event": event, "data": data}
    if component:
        args.update(component=component, host=host or "toy1")
    elif host:
        args.update(host=host)
    run_module(cutover_journal.main, args)


def rolled_back_run(journal: Path, run_id: str = RUN_ID) -> list[dict]:
    """A faulty migrate of tts that rolled back, journaled through the real module; returns the read entries.

    Secrets sit where a careless caller could put them in schema-valid fields (a trigger's detail, a step's
    detail): the journal masks them before they are written.
    """
    record(journal, run_id, "run.started", playbook="migrate", target_release="migrated", components=["tts"],
           controller="ops1", user="alice", hosts={"tts": ["toy1"]}, batches={"tts": [["toy1"]]},
           redis_host="toy1", journal_host="toy1")
    record(journal, run_id, "preflight.checked", host="toy1", checks=[{"name": "redis", "ok": True, "detail": "ok"}],
           releases={"tts": "legacy"})
    record(journal, run_id, "snapshot.created", id=run_id + "-redis", path="/x", keys=42, namespaces={"tts:*": 42},
           sha256="ab" * 32, verified=True, mode="logical")
    record(journal, run_id, "component.deploying", "tts", from_release="legacy", to_release="migrated")
    record(journal, run_id, "component.switched", "tts", from_release="legacy", to_release="migrated")
    record(journal, run_id, "probe.result", "tts", probe="tts_cached_latency_ms", phase="canary", verdict="fail",
           value=412.0, baseline=38.5, threshold=3.0, critical=True)
    record(journal, run_id, "component.state", "tts", state="failed", release="migrated", step="canary",
           reason="probe tts_cached_latency_ms failed")
    record(journal, run_id, "rollback.triggered", "tts", trigger={
        "component": "tts", "host": "toy1", "probe": "tts_cached_latency_ms", "phase": "canary", "value": 412.0,
        "baseline": 38.5, "threshold": 3.0, "detail": "slow against redis://svc:%s@redis1:6379/0" % PASSWORD})
    for step, name in ROLLBACK_STEP_NAMES.items():
        record(journal, run_id, "rollback.step", host="toy1", step=step, name=name, status="ok",
               started_at="2026-11-25T22:30:%02d.000Z" % (2 * step), ended_at="2026-11-25T22:30:%02d.500Z" % (2 * step),
               detail="password=%s" % PASSWORD)
    record(journal, run_id, "component.state", "tts", state="rolled_back", release="legacy")
    record(journal, run_id, "data.audited", snapshot_id=run_id + "-redis", keys_before=42, keys_after=42, lost=0,
           namespaces={"tts:*": 42})
    record(journal, run_id, "run.finished", outcome="rolled_back", message="tts rolled back")
    entries = run_module(cutover_journal.main, {"path": str(journal), "run_id": run_id, "state": "read"})["entries"]
    assert PASSWORD not in json.dumps(entries), "the journal masked the secrets"
    return entries


def report(dest: Path, entries: list[dict], run_id: str = RUN_ID, check_mode: bool = False) -> dict:
    return run_module(cutover_report.main, {"entries": entries, "dest": str(dest), "run_id": run_id},
                      check_mode=check_mode)


def files_state(dest: Path) -> dict[str, tuple]:
    """(inode, mtime, content) of every file plus the latest link target: proves nothing was rewritten."""
    state: dict[str, tuple] = {}
    for root, _, names in os.walk(dest):
        for name in names:
            path = Path(root) / name
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path))
            else:
                info = path.stat()
                state[str(path)] = (info.st_ino, info.st_mtime_ns, path.read_bytes())
    return state


def test_report_files_and_latest_link_are_written(tmp_path):
    entries = rolled_back_run(tmp_path / "journal")
    dest = tmp_path / "reports"
    result = report(dest, entries)
    json_path, md_path = dest / RUN_ID / "report.json", dest / RUN_ID / "report.md"
    html_path = dest / RUN_ID / "report.html"
    assert result["changed"] is True
    assert result["path"] == str(json_path) and result["markdown_path"] == str(md_path)
    assert result["html_path"] == str(html_path)
    written = json.loads(json_path.read_text())
    assert written == result["report"] == build_report(entries)
    assert md_path.read_text() == render_markdown(written)
    assert "[timeline and probe plots](report.html)" in md_path.read_text().splitlines()
    assert html_path.read_text() == render_html(written, entries)
    assert [(item["lane"], item["status"]) for item in written["timeline"]][-3:] == [
        ("rollback step 6 resume_service", "ok"), ("data audit", "ok"), ("run", "rolled_back")]
    assert written["outcome"] == "rolled_back"
    assert written["components"] == [{"name": "tts", "host": "toy1", "from_release": "legacy",
                                      "to_release": "migrated", "state": "rolled_back"}]
    assert [(step["step"], step["name"], step["status"]) for step in written["rollback"]["steps"]] == [
        (step, name, "ok") for step, name in ROLLBACK_STEP_NAMES.items()]
    assert written["rollback"]["steps"][0]["started_at"] == "2026-11-25T22:30:02.000Z"
    assert written["rollback"]["steps"][0]["detail"] == "password=********"
    assert written["rollback"]["trigger"]["detail"] == "slow against redis://********@redis1:6379/0"
    assert written["snapshot"] == {"id": RUN_ID + "-redis", "keys": 42, "sha256": "ab" * 32, "verified": True}
    assert written["data"] == {"keys_before": 42, "keys_after": 42, "lost": 0}
    assert written["message"] == "tts rolled back" and written["finished_at"] == entries[-1]["ts"]
    assert os.readlink(dest / "latest") == RUN_ID, "latest is a relative link to the run dir"
    assert (dest / "latest" / "report.json").read_text() == json_path.read_text()
    assert stat.S_IMODE(json_path.stat().st_mode) == stat.S_IMODE(html_path.stat().st_mode) == 0o640
    assert sorted(os.listdir(dest)) == ["20261125T222114Z", "latest"], "no temp files or links left"
    assert sorted(os.listdir(dest / RUN_ID)) == ["report.html", "report.json", "report.md"]


def test_the_journaled_run_fits_the_schema(tmp_path):
    entries = rolled_back_run(tmp_path / "journal")
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))
    for entry in entries:
        check_event(entry["event"], entry["data"], entry["ts"])


def test_no_secret_reaches_the_report(tmp_path):
    entries = rolled_back_run(tmp_path / "journal")
    # a journal written by an older tool: the secret sits in the entries the report is given
    entries[0]["data"]["password"] = PASSWORD
    entries[-1]["data"]["message"] = "rolled back, redis://svc:%s@redis1:6379/0 is fine" % PASSWORD
    dest = tmp_path / "reports"
    result = report(dest, entries)
    for name in ("report.json", "report.md", "report.html"):
        assert PASSWORD not in (dest / RUN_ID / name).read_text(), name
    assert "redis://********@redis1:6379/0" in (dest / RUN_ID / "report.html").read_text(), "the masked form is shown"
    assert PASSWORD not in json.dumps(result)


def test_second_run_with_same_entries_changes_nothing(tmp_path):
    entries = rolled_back_run(tmp_path / "journal")
    dest = tmp_path / "reports"
    report(dest, entries)
    before = files_state(dest)
    again = report(dest, entries)
    assert again["changed"] is False
    assert files_state(dest) == before


def test_latest_moves_to_the_newer_run_and_old_reports_stay(tmp_path):
    journal, dest = tmp_path / "journal", tmp_path / "reports"
    report(dest, rolled_back_run(journal))
    first_report = (dest / RUN_ID / "report.json").read_bytes()
    record(journal, NEXT_RUN_ID, "run.started", playbook="migrate", target_release="migrated", components=["tts"],
           controller="ops1", user="alice")
    record(journal, NEXT_RUN_ID, "component.switched", "tts", from_release="legacy", to_release="migrated")
    record(journal, NEXT_RUN_ID, "component.state", "tts", state="migrated", release="migrated")
    record(journal, NEXT_RUN_ID, "run.finished", outcome="migrated", message="ok")
    entries = run_module(cutover_journal.main, {"path": str(journal), "run_id": NEXT_RUN_ID, "state": "read"})["entries"]
    result = report(dest, entries, NEXT_RUN_ID)
    assert result["changed"] is True and result["report"]["outcome"] == "migrated"
    assert os.readlink(dest / "latest") == NEXT_RUN_ID
    assert (dest / RUN_ID / "report.json").read_bytes() == first_report
    assert json.loads((dest / "latest" / "report.json").read_text())["run_id"] == NEXT_RUN_ID


def test_report_updates_when_the_journal_grew(tmp_path):
    journal, dest = tmp_path / "journal", tmp_path / "reports"
    entries = rolled_back_run(journal)
    report(dest, entries[:-1])  # written before run.finished was journaled
    assert json.loads((dest / RUN_ID / "report.json").read_text())["finished_at"] is None
    result = report(dest, entries)
    assert result["changed"] is True
    assert json.loads((dest / RUN_ID / "report.json").read_text())["finished_at"] == entries[-1]["ts"]


def test_a_change_only_the_page_shows_rewrites_only_the_page(tmp_path):
    """A probe's detail is in report.html only: report.json and report.md stay as they are."""
    journal, dest = tmp_path / "journal", tmp_path / "reports"
    entries = rolled_back_run(journal)
    report(dest, entries)
    before = files_state(dest)
    probe_result = next(entry for entry in entries if entry["event"] == "probe.result")
    probe_result["data"]["detail"] = "412 ms over 20 requests"
    result = report(dest, entries)
    assert result["changed"] is True
    assert result["diff"]["after"]["files_changed"] == [str(dest / RUN_ID / "report.html")]
    after = files_state(dest)
    assert [path for path in before if before[path] != after[path]] == [str(dest / RUN_ID / "report.html")]
    assert "412 ms over 20 requests" in (dest / RUN_ID / "report.html").read_text()


def test_check_mode_writes_nothing(tmp_path):
    journal, dest = tmp_path / "journal", tmp_path / "reports"
    entries = rolled_back_run(journal)
    result = report(dest, entries, check_mode=True)
    assert result["changed"] is True and result["report"]["outcome"] == "rolled_back"
    assert not dest.exists()

    report(dest, entries[:-1])
    before = files_state(dest)
    assert report(dest, entries, check_mode=True)["changed"] is True
    assert files_state(dest) == before
    report(dest, entries)
    assert report(dest, entries, check_mode=True)["changed"] is False


def test_latest_pointing_elsewhere_counts_as_a_change(tmp_path):
    journal, dest = tmp_path / "journal", tmp_path / "reports"
    entries = rolled_back_run(journal)
    report(dest, entries)
    os.remove(dest / "latest")
    os.symlink(NEXT_RUN_ID, dest / "latest")
    assert report(dest, entries)["changed"] is True
    assert os.readlink(dest / "latest") == RUN_ID


@pytest.mark.parametrize("mutate, message", [
    (lambda entries: entries.clear(), "entries is empty"),
    (lambda entries: entries[2].update(run_id=NEXT_RUN_ID), "entries[2] belongs to run %s, not to run_id %s"
     % (NEXT_RUN_ID, RUN_ID)),
    (lambda entries: entries[1].pop("seq"), "entries[1] is not a journal entry"),
])
def test_bad_entries_are_refused_before_anything_is_written(tmp_path, mutate, message):
    entries = rolled_back_run(tmp_path / "journal")
    mutate(entries)
    dest = tmp_path / "reports"
    with pytest.raises(ModuleFailed) as failure:
        report(dest, entries)
    assert message in failure.value.result["msg"]
    assert not dest.exists()


def test_latest_that_is_not_a_symlink_is_refused(tmp_path):
    entries = rolled_back_run(tmp_path / "journal")
    dest = tmp_path / "reports"
    (dest / "latest").mkdir(parents=True)
    with pytest.raises(ModuleFailed) as failure:
        report(dest, entries)
    assert "latest exists and is not a symlink" in failure.value.result["msg"]
    assert os.listdir(dest) == ["latest"]
