"""The journal schema (module_utils/cutover_events.py): enforced where entries are written, documented from itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible.module_utils.cutover_events import EVENTS, EventError, check_event, new_entry, render_markdown_table
from ansible.module_utils.cutover_journal import append_entries, read_journal

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_event_unknown_field_missing_field_and_wrong_type_are_named():
    with pytest.raises(EventError, match="unknown event 'component.exploded'"):
        check_event("component.exploded", {})
    with pytest.raises(EventError, match="event run.finished: unknown field 'outcom'"):
        check_event("run.finished", {"outcom": "migrated", "message": "m"})
    with pytest.raises(EventError, match="event run.finished: missing field 'message'"):
        check_event("run.finished", {"outcome": "migrated"})
    with pytest.raises(EventError, match="event rollback.step: field 'step' must be integer, got str '4'"):
        check_event("rollback.step", {"step": "4", "name": "detect", "status": "ok", "started_at": "a",
                                      "ended_at": "b", "detail": ""})
    with pytest.raises(EventError, match="field .outcome. must be one of migrated, rolled_back, failed, paused, got .done."):
        check_event("run.finished", {"outcome": "done", "message": "m"})
    with pytest.raises(EventError, match="field 'critical' must be boolean, got int 1"):
        new_entry("probe.result", probe="p", phase="watch", verdict="pass", value=1, baseline=None, threshold=None,
                  critical=1)


def test_a_bad_entry_in_a_batch_appends_nothing(tmp_path: Path):
    good = {"event": "run.finished", "data": {"outcome": "failed", "message": "m"}}
    bad = {"event": "run.finished", "data": {"outcome": "failed"}}
    with pytest.raises(EventError, match="missing field 'message'"):
        append_entries(str(tmp_path), "20261204T100000Z", [good, bad])
    assert not (tmp_path / "20261204T100000Z.jsonl").exists()
    append_entries(str(tmp_path), "20261204T100000Z", [dict(good, ts="2026-12-04T10:00:00.5Z")])
    entries, _ = read_journal(str(tmp_path / "20261204T100000Z.jsonl"))
    assert entries[0]["ts"] == "2026-12-04T10:00:00.5Z", "the time the host saw the event is kept"


def test_architecture_doc_holds_the_table_rendered_from_the_schema():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = re.search(r"<!-- events:begin -->\n(.*?)\n<!-- events:end -->", doc, re.S)
    assert table is not None, "docs/ARCHITECTURE.md lacks the generated event table (make docs)"
    assert table.group(1) == render_markdown_table(), "the event table is stale: run make docs"
    assert set(EVENTS) <= set(re.findall(r"`([a-z]+\.[a-z_]+)`", table.group(1)))
