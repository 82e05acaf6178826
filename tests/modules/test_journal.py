"""cutover_journal against a real file system and real concurrent processes."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

import cutover_journal
from cutover_testlib import ModuleFailed, run_module

RUN_ID = "20261125T222114Z"
WRITERS = 8
APPENDS_PER_WRITER = 200


def append(directory: Path, event: str = "probe.result", run_id: str = RUN_ID, check_mode: bool = False, **extra):
    return run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "event": event, **extra},
                      check_mode=check_mode)


def read(directory: Path, run_id: str = RUN_ID) -> dict:
    return run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "state": "read"})


def warning_texts(result: dict) -> list[str]:
    return [warning["event"]["msg"] for warning in result.get("warnings", [])]


def journal_lines(directory: Path, run_id: str = RUN_ID) -> list[bytes]:
    return (directory / (run_id + ".jsonl")).read_bytes().split(b"\n")


def append_many(directory: str, writer: int, start: multiprocessing.Barrier) -> None:
    start.wait(timeout=30)
    for index in range(APPENDS_PER_WRITER):
        run_module(cutover_journal.main, {"path": directory, "run_id": RUN_ID, "event": "probe.result",
                                          "host": "toy%d" % writer, "data": {"writer": writer, "index": index}})


@pytest.mark.timeout(120)
def test_concurrent_appends_from_many_processes_keep_every_entry(tmp_path):
    directory = tmp_path / "journal"
    context = multiprocessing.get_context("fork")
    start = context.Barrier(WRITERS)
    writers = [context.Process(target=append_many, args=(str(directory), writer, start)) for writer in range(WRITERS)]
    for process in writers:
        process.start()
    try:
        for process in writers:
            process.join(timeout=100)
        assert [process.exitcode for process in writers] == [0] * WRITERS
    finally:
        for process in writers:
            if process.is_alive():
                process.kill()
                process.join()

    lines = journal_lines(directory)
    assert lines[-1] == b"", "journal must end with a newline"
    entries = [json.loads(line) for line in lines[:-1]]  # every line is valid JSON
    assert len(entries) == WRITERS * APPENDS_PER_WRITER
    assert [entry["seq"] for entry in entries] == list(range(1, WRITERS * APPENDS_PER_WRITER + 1))
    assert {(entry["data"]["writer"], entry["data"]["index"]) for entry in entries} == {
        (writer, index) for writer in range(WRITERS) for index in range(APPENDS_PER_WRITER)}
    for writer in range(WRITERS):  # each writer's own appends keep their order
        indexes = [entry["data"]["index"] for entry in entries if entry["data"]["writer"] == writer]
        assert indexes == list(range(APPENDS_PER_WRITER))
    assert read(directory)["entries"] == entries


def test_append_writes_one_entry_line_with_the_contract_fields(tmp_path):
    result = append(tmp_path, "component.switched", component="tts", host="toy1",
                    data={"from_release": "legacy", "to_release": "migrated"})
    line = json.loads(journal_lines(tmp_path)[0])
    assert list(line) == ["seq", "ts", "run_id", "event", "host", "component", "data"]
    assert line == result["entry"]
    assert line["seq"] == 1 and line["run_id"] == RUN_ID and line["event"] == "component.switched"
    assert line["host"] == "toy1" and line["component"] == "tts"
    assert line["data"] == {"from_release": "legacy", "to_release": "migrated"}
    assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-11-25T22:21:14.123Z")
    second = append(tmp_path, "run.finished", data={"outcome": "migrated"})
    assert second["entry"]["seq"] == 2 and second["entry"]["component"] is None
    assert [entry["seq"] for entry in read(tmp_path)["entries"]] == [1, 2]


def test_journal_file_and_dir_modes(tmp_path):
    directory = tmp_path / "state" / "journal"
    old_umask = os.umask(0)
    try:
        append(directory, "run.started")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / (RUN_ID + ".jsonl")).stat().st_mode) == 0o600


def test_torn_last_line_is_reported_and_next_append_keeps_everything(tmp_path):
    for index in range(3):
        append(tmp_path, data={"index": index})
    path = tmp_path / (RUN_ID + ".jsonl")
    torn = b'{"seq": 4, "ts": "2026-11-25T22:2'  # the process died in the middle of write()
    with open(path, "ab") as handle:
        handle.write(torn)
    before = path.read_bytes()

    result = read(tmp_path)
    assert [entry["data"]["index"] for entry in result["entries"]] == [0, 1, 2]
    assert result["exists"] is True
    assert warning_texts(result) == [
        "journal %s: line 4 is not a complete journal entry (the last write was cut short, e.g. by a crash); "
        "skipped: %r" % (path, torn.decode())]

    entry = append(tmp_path, data={"index": 3})["entry"]
    after = path.read_bytes()
    assert after.startswith(before), "append-only: earlier bytes, torn line included, stay as they were"
    assert entry["seq"] == 4
    assert after.split(b"\n")[3] == torn and json.loads(after.split(b"\n")[4]) == entry

    result = read(tmp_path)
    assert [entry["seq"] for entry in result["entries"]] == [1, 2, 3, 4]
    assert warning_texts(result) == [
        "journal %s: line 4 is not a complete journal entry (a write was cut short earlier, e.g. by a crash); "
        "skipped: %r" % (path, torn.decode())]


def test_complete_entry_without_final_newline_still_counts(tmp_path):
    append(tmp_path, data={"index": 0})
    path = tmp_path / (RUN_ID + ".jsonl")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # cut exactly before the newline
    result = read(tmp_path)
    assert [entry["seq"] for entry in result["entries"]] == [1] and warning_texts(result) == []
    assert append(tmp_path, data={"index": 1})["entry"]["seq"] == 2
    assert [json.loads(line)["seq"] for line in journal_lines(tmp_path)[:-1]] == [1, 2]


def test_secrets_never_reach_the_file_or_the_result(tmp_path):
    password = "hunter2-Secret-Pw"
    token = "tok-8f7e6d5c"
    result = append(tmp_path, "preflight.checked", data={
        "redis": {"url": "redis://svc:%s@redis.internal:6380/0" % password, "password": password},
        "checks": [{"name": "auth", "ok": True, "detail": "logged in with %s" % password},
                   {"name": "api", "ok": True, "auth_token": token}],
        "note": "see rediss://:%s@10.0.0.5:6379?x=1 and https://h/cb?token=%s" % (password, token),
    })
    written = (tmp_path / (RUN_ID + ".jsonl")).read_text()
    for secret in (password, token):
        assert secret not in written
        assert secret not in json.dumps(result)
    data = json.loads(written)["data"]
    assert data["redis"] == {"url": "redis://********@redis.internal:6380/0", "password": "********"}
    assert data["checks"][0]["detail"] == "logged in with ********"
    assert data["checks"][1]["auth_token"] == "********"
    assert data["note"] == "see rediss://********@10.0.0.5:6379?x=1 and https://h/cb?token=********"


def test_check_mode_append_writes_nothing(tmp_path):
    directory = tmp_path / "journal"
    result = append(directory, "run.started", check_mode=True)
    assert result["changed"] is True and result["entry"]["seq"] == 1
    assert not directory.exists()
    append(directory, "run.started")
    result = append(directory, "run.finished", check_mode=True, data={"outcome": "migrated"})
    assert result["entry"]["seq"] == 2
    assert len(journal_lines(directory)) == 2  # one entry + the final empty piece


def test_read_of_missing_journal(tmp_path):
    result = read(tmp_path)
    assert result == {**result, "changed": False, "exists": False, "entries": []}


def test_list_runs_newest_first(tmp_path):
    append(tmp_path, "run.started", run_id="20261124T100000Z",
           data={"playbook": "migrate", "target_release": "migrated", "components": ["tts"]})
    append(tmp_path, "run.finished", run_id="20261124T100000Z", data={"outcome": "rolled_back"})
    append(tmp_path, "run.started", run_id="20261125T090000Z-rollback",
           data={"playbook": "rollback", "target_release": "legacy", "target_run_id": "20261124T100000Z"})
    (tmp_path / "notes.txt").write_text("not a journal")
    runs = run_module(cutover_journal.main, {"path": str(tmp_path), "state": "list"})["runs"]
    started = [json.loads(journal_lines(tmp_path, run)[0])["ts"] for run in ("20261125T090000Z-rollback",
                                                                             "20261124T100000Z")]
    assert runs == [
        {"run_id": "20261125T090000Z-rollback", "playbook": "rollback", "target_release": "legacy",
         "started_at": started[0], "finished": False, "outcome": None, "target_run_id": "20261124T100000Z"},
        {"run_id": "20261124T100000Z", "playbook": "migrate", "target_release": "migrated",
         "started_at": started[1], "finished": True, "outcome": "rolled_back", "target_run_id": None},
    ]
    assert run_module(cutover_journal.main, {"path": str(tmp_path / "none"), "state": "list"})["runs"] == []


@pytest.mark.parametrize("args, message", [
    ({"run_id": "2026-11-25", "event": "run.started"}, "run_id '2026-11-25' is not a run id"),
    ({"run_id": "20261125T222114Z-Bad", "event": "run.started"}, "is not a run id"),
    ({"run_id": RUN_ID, "event": "RunStarted"}, "event 'RunStarted' is not a dotted lower-case event name"),
    ({"run_id": RUN_ID, "event": "started"}, "is not a dotted lower-case event name"),
    ({"event": "run.started"}, "state is append but all of the following are missing: run_id"),
    ({"run_id": RUN_ID, "state": "read", "event": None}, None),
    ({"state": "read"}, "state is read but all of the following are missing: run_id"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, message):
    directory = tmp_path / "journal"
    if message is None:
        assert run_module(cutover_journal.main, {"path": str(directory), **args})["exists"] is False
    else:
        with pytest.raises(ModuleFailed) as failure:
            run_module(cutover_journal.main, {"path": str(directory), **args})
        assert message in failure.value.result["msg"]
    assert not directory.exists()


def test_batch_append_gets_contiguous_seqs_in_one_write(tmp_path):
    append(tmp_path, "run.started")
    batch = [{"event": "probe.result", "component": "tts", "data": {"probe": "latency", "verdict": "pass"}},
             {"event": "probe.result", "component": "safety", "host": "toy2", "data": {"probe": "filter"}},
             {"event": "component.state", "data": {"state": "migrated", "token": "t-0123456789"}}]
    args = {"path": str(tmp_path), "run_id": RUN_ID, "host": "toy1", "component": "ai", "entries": batch}
    would = run_module(cutover_journal.main, args, check_mode=True)
    assert [entry["seq"] for entry in would["appended"]] == [2, 3, 4]
    assert len(journal_lines(tmp_path)) == 2, "check mode wrote nothing"

    result = run_module(cutover_journal.main, args)
    written = [json.loads(line) for line in journal_lines(tmp_path)[1:-1]]
    assert written == result["appended"]
    assert [(e["seq"], e["event"], e["host"], e["component"]) for e in written] == [
        (2, "probe.result", "toy1", "tts"), (3, "probe.result", "toy2", "safety"), (4, "component.state", "toy1", "ai")]
    assert written[2]["data"] == {"state": "migrated", "token": "********"}
    assert "t-0123456789" not in (tmp_path / (RUN_ID + ".jsonl")).read_text()
    assert len({entry["ts"] for entry in written}) == 1

    empty = run_module(cutover_journal.main, {"path": str(tmp_path), "run_id": RUN_ID, "entries": []})
    assert empty["changed"] is False and empty["appended"] == []
    assert len(journal_lines(tmp_path)) == 5


@pytest.mark.parametrize("args, message", [
    ({"entries": [{"event": "probe.result"}, {"event": "Probe"}]}, "entries[1].event 'Probe' is not a dotted"),
    ({"entries": [{"data": {}}]}, "missing required arguments: event found in entries"),
    ({"entries": [], "event": "run.started"}, "parameters are mutually exclusive: event|entries"),
    ({}, "state is append but any of the following are missing: event, entries"),
])
def test_bad_batch_is_refused_before_anything_is_written(tmp_path, args, message):
    directory = tmp_path / "journal"
    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_journal.main, {"path": str(directory), "run_id": RUN_ID, **args})
    assert message in failure.value.result["msg"]
    assert not directory.exists()


def test_read_summarises_the_run_for_the_rollback(tmp_path):
    directory = tmp_path / "journal"
    append(directory, "run.started", data={"playbook": "migrate", "target_release": "migrated", "components": ["tts"]})
    append(directory, "component.switched", host="h1", component="tts",
           data={"from_release": "legacy", "to_release": "migrated"})
    append(directory, "component.state", host="h1", component="tts", data={"state": "failed", "release": "migrated"})
    report = read(directory)["report"]
    assert report["run_id"] == RUN_ID and report["playbook"] == "migrate"
    assert report["components"] == [{"name": "tts", "host": "h1", "from_release": "legacy",
                                     "to_release": "migrated", "state": "failed"}]
    assert read(tmp_path / "empty")["report"] is None
