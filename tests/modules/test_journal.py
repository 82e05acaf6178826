"""cutover_journal against a real file system and real concurrent processes, with schema-valid entries only."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import cutover_journal
from ansible.module_utils.cutover_events import ROLLBACK_STEP_NAMES, check_event
from ansible.module_utils.cutover_journal import read_journal
from ansible.module_utils.cutover_run import closing_outcome, run_state
from cutover_testlib import ModuleFailed, run_module

RUN_ID = "20261125T222114Z"
WRITERS = 8
APPENDS_PER_WRITER = 200

STARTED = {"playbook": "migrate", "target_release": "migrated", "components": ["tts"], "controller": "ops1",
           "user": "alice"}
FINISHED = {"outcome": "migrated", "message": "every component runs migrated"}
SWITCHED = {"from_release": "legacy", "to_release": "migrated"}


def probe_data(**overrides: Any) -> dict[str, Any]:
    """A complete probe.result payload."""
    return {"probe": "tts_cached_latency_ms", "phase": "canary", "verdict": "pass", "value": 38.0, "baseline": 38.5,
            "threshold": "<= baseline x 3", "critical": True, **overrides}


def append(directory: Path, event: str = "watch.round", run_id: str = RUN_ID, check_mode: bool = False, **extra):
    return run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "event": event, **extra},
                      check_mode=check_mode)


def append_round(directory: Path, number: int, **extra) -> dict:
    return append(directory, "watch.round", data={"round": number, "passed": True}, **extra)


def read(directory: Path, run_id: str = RUN_ID) -> dict:
    return run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "state": "read"})


def warning_texts(result: dict) -> list[str]:
    return [warning["event"]["msg"] for warning in result.get("warnings", [])]


def journal_lines(directory: Path, run_id: str = RUN_ID) -> list[bytes]:
    return (directory / (run_id + ".jsonl")).read_bytes().split(b"\n")


def append_many(directory: str, writer: int, start: multiprocessing.Barrier) -> None:
    start.wait(timeout=30)
    for index in range(APPENDS_PER_WRITER):
        run_module(cutover_journal.main, {"path": directory, "run_id": RUN_ID, "event": "watch.round",
                                          "host": "toy%d" % writer, "data": {"round": index, "passed": True}})


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
    assert {(entry["host"], entry["data"]["round"]) for entry in entries} == {
        ("toy%d" % writer, index) for writer in range(WRITERS) for index in range(APPENDS_PER_WRITER)}
    for writer in range(WRITERS):  # each writer's own appends keep their order
        indexes = [entry["data"]["round"] for entry in entries if entry["host"] == "toy%d" % writer]
        assert indexes == list(range(APPENDS_PER_WRITER))
    assert read(directory)["entries"] == entries


def test_append_writes_one_entry_line_with_the_contract_fields(tmp_path):
    result = append(tmp_path, "component.switched", component="tts", host="toy1", data=SWITCHED)
    line = json.loads(journal_lines(tmp_path)[0])
    assert list(line) == ["seq", "ts", "run_id", "event", "host", "component", "data"]
    assert line == result["entry"]
    assert line["seq"] == 1 and line["run_id"] == RUN_ID and line["event"] == "component.switched"
    assert line["host"] == "toy1" and line["component"] == "tts"
    assert line["data"] == SWITCHED
    assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-11-25T22:21:14.123Z")
    second = append(tmp_path, "run.finished", data=FINISHED)
    assert second["entry"]["seq"] == 2 and second["entry"]["component"] is None
    assert [entry["seq"] for entry in read(tmp_path)["entries"]] == [1, 2]


def test_journal_file_and_dir_modes(tmp_path):
    directory = tmp_path / "state" / "journal"
    old_umask = os.umask(0)
    try:
        append(directory, "run.started", data=STARTED)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / (RUN_ID + ".jsonl")).stat().st_mode) == 0o600


def test_torn_last_line_is_reported_and_next_append_keeps_everything(tmp_path):
    for index in range(3):
        append_round(tmp_path, index)
    path = tmp_path / (RUN_ID + ".jsonl")
    torn = b'{"seq": 4, "ts": "2026-11-25T22:2'  # the process died in the middle of write()
    with open(path, "ab") as handle:
        handle.write(torn)
    before = path.read_bytes()

    result = read(tmp_path)
    assert [entry["data"]["round"] for entry in result["entries"]] == [0, 1, 2]
    assert result["exists"] is True
    assert warning_texts(result) == [
        "journal %s: line 4 is not a complete journal entry (the last write was cut short, e.g. by a crash); "
        "skipped: %r" % (path, torn.decode())]

    entry = append_round(tmp_path, 3)["entry"]
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
    append_round(tmp_path, 0)
    path = tmp_path / (RUN_ID + ".jsonl")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # cut exactly before the newline
    result = read(tmp_path)
    assert [entry["seq"] for entry in result["entries"]] == [1] and warning_texts(result) == []
    assert append_round(tmp_path, 1)["entry"]["seq"] == 2
    assert [json.loads(line)["seq"] for line in journal_lines(tmp_path)[:-1]] == [1, 2]


def test_secrets_never_reach_the_file_or_the_result(tmp_path):
    password = "hunter2-Secret-Pw"
    token = "tok-8f7e6d5c"
    result = append(tmp_path, "preflight.checked", data={
        "checks": [{"name": "redis", "ok": True, "detail": "reached redis://svc:%s@redis.internal:6380/0" % password,
                    "password": password},
                   {"name": "auth", "ok": True, "detail": "logged in with %s" % password},
                   {"name": "api", "ok": True, "auth_token": token},
                   {"name": "links", "ok": True,
                    "detail": "see rediss://:%s@10.0.0.5:6379?x=1 and https://h/cb?token=%s" % (password, token)}],
        "releases": {"tts": "legacy"},
    })
    written = (tmp_path / (RUN_ID + ".jsonl")).read_text()
    for secret in (password, token):
        assert secret not in written
        assert secret not in json.dumps(result)
    checks = json.loads(written)["data"]["checks"]
    assert checks[0] == {"name": "redis", "ok": True, "detail": "reached redis://********@redis.internal:6380/0",
                         "password": "********"}
    assert checks[1]["detail"] == "logged in with ********"
    assert checks[2]["auth_token"] == "********"
    assert checks[3]["detail"] == "see rediss://********@10.0.0.5:6379?x=1 and https://h/cb?token=********"
    assert json.loads(written)["data"]["releases"] == {"tts": "legacy"}


def test_check_mode_append_writes_nothing(tmp_path):
    directory = tmp_path / "journal"
    result = append(directory, "run.started", check_mode=True, data=STARTED)
    assert result["changed"] is True and result["entry"]["seq"] == 1 and result["entry"]["data"] == STARTED
    assert not directory.exists()
    append(directory, "run.started", data=STARTED)
    result = append(directory, "run.finished", check_mode=True, data=FINISHED)
    assert result["entry"]["seq"] == 2
    assert len(journal_lines(directory)) == 2  # one entry + the final empty piece


def test_read_of_missing_journal(tmp_path):
    result = read(tmp_path)
    assert result == {**result, "changed": False, "exists": False, "entries": []}


def test_list_runs_newest_first(tmp_path):
    append(tmp_path, "run.started", run_id="20261124T100000Z", data=STARTED)
    append(tmp_path, "run.finished", run_id="20261124T100000Z",
           data={"outcome": "rolled_back", "message": "rolled back"})
    append(tmp_path, "run.started", run_id="20261125T090000Z-rollback",
           data={**STARTED, "playbook": "rollback", "target_release": "legacy", "target_run_id": "20261124T100000Z"})
    (tmp_path / "notes.txt").write_text("not a journal")
    runs = run_module(cutover_journal.main, {"path": str(tmp_path), "state": "list"})["runs"]
    started = [json.loads(journal_lines(tmp_path, run)[0])["ts"] for run in ("20261125T090000Z-rollback",
                                                                             "20261124T100000Z")]
    assert runs == [
        {"run_id": "20261125T090000Z-rollback", "playbook": "rollback", "target_release": "legacy",
         "started_at": started[0], "finished": False, "outcome": None, "target_run_id": "20261124T100000Z",
         "lease": None},
        {"run_id": "20261124T100000Z", "playbook": "migrate", "target_release": "migrated",
         "started_at": started[1], "finished": True, "outcome": "rolled_back", "target_run_id": None,
         "lease": None},
    ]
    assert run_module(cutover_journal.main, {"path": str(tmp_path / "none"), "state": "list"})["runs"] == []


def test_a_run_whose_scheduled_watch_is_open_holds_a_lease_and_is_the_newest_watching(tmp_path):
    watched = "20261124T100000Z"
    append(tmp_path, "run.started", run_id=watched, data={**STARTED, "hosts": {"tts": ["app-1"]}})
    append(tmp_path, "preflight.checked", run_id=watched, host="app-1", data={"checks": [], "releases": {"tts": "legacy"}})
    for event, data in [("component.deploying", {"from_release": "legacy", "to_release": "migrated"}),
                        ("component.switched", {"from_release": "legacy", "to_release": "migrated"}),
                        ("component.state", {"state": "migrated", "release": "migrated"})]:
        append(tmp_path, event, run_id=watched, host="app-1", component="tts", data=data)
    append(tmp_path, "watch.started", run_id=watched, data={"duration_s": 86400, "interval_s": 300, "rounds": 288,
                                                           "scheduled": True})
    watcher = {"scheduler": "systemd", "name": "cutover-watch-x", "host": "journal-1",
               "ends_at": "2026-11-25T10:00:00.000Z", "interval_s": 300}
    append(tmp_path, "watch.scheduled", run_id=watched, data=watcher)
    append(tmp_path, "run.started", run_id="20261125T090000Z", data=STARTED)
    runs = {run["run_id"]: run for run in run_module(cutover_journal.main, {"path": str(tmp_path), "state": "list"})["runs"]}
    assert runs[watched]["lease"]["components"] == ["tts"] and runs[watched]["lease"]["watcher"] == watcher
    assert runs["20261125T090000Z"]["lease"] is None, "a newer run without a watch holds none"
    status = run_module(cutover_journal.main, {"path": str(tmp_path), "state": "status", "select": "newest_watching"})
    assert status["status"]["run_id"] == watched
    append(tmp_path, "watch.finished", run_id=watched, data={"rounds": 3, "reason": "stopped by a: b", "ended_by": "stop"})
    with pytest.raises(ModuleFailed, match="no watched .unfinished, with a scheduled watch open. run"):
        run_module(cutover_journal.main, {"path": str(tmp_path), "state": "status", "select": "newest_watching"})


@pytest.mark.parametrize("args, message", [
    ({"run_id": "2026-11-25", "event": "run.started"}, "run_id '2026-11-25' is not a run id"),
    ({"run_id": "20261125T222114Z-Bad", "event": "run.started"}, "is not a run id"),
    ({"event": "run.started"}, "state is append but all of the following are missing: run_id"),
    ({"run_id": RUN_ID, "state": "read", "event": None}, None),
    ({"state": "read"}, "state is read but all of the following are missing: run_id"),
    ({"state": "status"}, "state=status needs run_id or select"),
    ({"state": "finished"}, "state=finished needs run_id or select"),
    ({"state": "status", "run_id": RUN_ID, "select": "newest_migrate"},
     "parameters are mutually exclusive: run_id|select"),
    ({"state": "status", "select": "newest"}, "value of select must be one of: newest_migrate, newest_unfinished"),
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


KNOWN_EVENTS = ("run.started, run.aborted, preflight.checked, snapshot.created, component.deploying, "
                "component.switched, component.state, component.stopped, component.started, probe.result, "
                "watch.started, watch.scheduled, watch.round, watch.finished, watch.retired, rollback.triggered, rollback.step, data.audited, "
                "run.finished, run.unlocked, run.paused")


@pytest.mark.parametrize("event, data, message", [
    ("run.begun", STARTED,
     "event 'run.begun'; known events: " + ", ".join(sorted(KNOWN_EVENTS.split(", ")))),
    ("RunStarted", STARTED, "unknown event 'RunStarted'"),
    ("component.switched", {**SWITCHED, "redis_url": "redis://h"},
     "event component.switched: unknown field 'redis_url' (fields: from_release, to_release, changed)"),
    ("run.finished", {"outcome": "migrated"}, "event run.finished: missing field 'message' (one line for the person "
                                              "on call)"),
    ("watch.round", {"round": "3", "passed": True}, "event watch.round: field 'round' must be integer, got str '3'"),
    ("watch.round", {"round": 3, "passed": 1}, "event watch.round: field 'passed' must be boolean, got int 1"),
    ("watch.started", {"duration_s": True, "interval_s": 1, "rounds": 1},
     "event watch.started: field 'duration_s' must be integer, got bool True"),
    ("component.state", {"state": "done", "release": "migrated"},
     "event component.state: field 'state' must be one of migrated, failed, rolled_back, unchanged, got 'done'"),
    ("component.stopped", {"service": "cutover-tts", "reason": "probe failed"},
     "event component.stopped: missing field 'pid'"),
])
def test_an_entry_the_schema_refuses_names_event_and_field_and_appends_nothing(tmp_path, event, data, message):
    directory = tmp_path / "journal"
    with pytest.raises(ModuleFailed) as failure:
        append(directory, event, data=data)
    assert failure.value.result["msg"].startswith("refused, nothing appended: ")
    assert message in failure.value.result["msg"]
    assert not directory.exists()

    append(directory, "run.started", data=STARTED)
    before = (directory / (RUN_ID + ".jsonl")).read_bytes()
    for check_mode in (False, True):
        with pytest.raises(ModuleFailed) as failure:
            append(directory, event, data=data, check_mode=check_mode)
        assert message in failure.value.result["msg"]
    assert (directory / (RUN_ID + ".jsonl")).read_bytes() == before


def test_every_problem_of_an_entry_is_named_at_once(tmp_path):
    with pytest.raises(ModuleFailed) as failure:
        append(tmp_path, "component.started", data={"service": 7, "ready_s": "fast", "pid_before": 1})
    message = failure.value.result["msg"]
    for problem in ("event component.started: unknown field 'pid_before'", "missing field 'pid'",
                    "field 'service' must be string, got int 7", "field 'ready_s' must be integer or number"):
        assert problem in message
    assert os.listdir(tmp_path) == []


def test_batch_append_gets_contiguous_seqs_in_one_write(tmp_path):
    append(tmp_path, "run.started", data=STARTED)
    batch = [{"event": "probe.result", "component": "tts", "data": probe_data()},
             {"event": "probe.result", "component": "safety", "host": "toy2",
              "data": probe_data(probe="unsafe_blocked_ratio", value=1.0, baseline=1.0, threshold=">= 0.99")},
             {"event": "component.state",
              "data": {"state": "failed", "release": "migrated", "step": "verify",
                       "reason": "redis://svc:t-0123456789@redis1:6379/0 refused the connection"}}]
    args = {"path": str(tmp_path), "run_id": RUN_ID, "host": "toy1", "component": "ai", "entries": batch}
    would = run_module(cutover_journal.main, args, check_mode=True)
    assert [entry["seq"] for entry in would["appended"]] == [2, 3, 4]
    assert len(journal_lines(tmp_path)) == 2, "check mode wrote nothing"

    result = run_module(cutover_journal.main, args)
    written = [json.loads(line) for line in journal_lines(tmp_path)[1:-1]]
    assert written == result["appended"]
    assert [(e["seq"], e["event"], e["host"], e["component"]) for e in written] == [
        (2, "probe.result", "toy1", "tts"), (3, "probe.result", "toy2", "safety"), (4, "component.state", "toy1", "ai")]
    assert written[0]["data"] == probe_data()
    assert written[2]["data"] == {"state": "failed", "release": "migrated", "step": "verify",
                                  "reason": "redis://********@redis1:6379/0 refused the connection"}
    assert "t-0123456789" not in (tmp_path / (RUN_ID + ".jsonl")).read_text()
    assert "t-0123456789" not in json.dumps(result)
    assert len({entry["ts"] for entry in written}) == 1

    empty = run_module(cutover_journal.main, {"path": str(tmp_path), "run_id": RUN_ID, "entries": []})
    assert empty["changed"] is False and empty["appended"] == []
    assert len(journal_lines(tmp_path)) == 5


def test_batch_entries_keep_the_time_their_host_saw_them(tmp_path):
    seen = ["2026-11-25T22:21:14.123Z", "2026-11-25T22:21:15Z"]
    batch = [{"event": "watch.round", "ts": seen[0], "data": {"round": 1, "passed": True}},
             {"event": "watch.round", "ts": seen[1], "data": {"round": 2, "passed": False}},
             {"event": "watch.finished", "data": {"rounds": 2, "reason": "round 2 failed"}}]
    result = run_module(cutover_journal.main, {"path": str(tmp_path), "run_id": RUN_ID, "entries": batch})
    entries, warnings = read_journal(str(tmp_path / (RUN_ID + ".jsonl")))
    assert warnings == [] and entries == result["appended"]
    assert [entry["ts"] for entry in entries[:2]] == seen
    assert entries[2]["ts"] > seen[1], "an entry without ts gets the time of the append"

    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_journal.main, {"path": str(tmp_path), "run_id": RUN_ID, "entries": [
            {"event": "watch.round", "data": {"round": 3, "passed": True}},
            {"event": "watch.round", "ts": "2026-11-25 22:21:16", "data": {"round": 4, "passed": True}}]})
    assert failure.value.result["msg"] == (
        "refused, nothing appended: event watch.round: ts must be a UTC time like 2026-11-25T22:21:14.123Z, "
        "got '2026-11-25 22:21:16'")
    assert read_journal(str(tmp_path / (RUN_ID + ".jsonl")))[0] == entries


@pytest.mark.parametrize("args, message", [
    ({"entries": [{"event": "watch.round", "data": {"round": 1, "passed": True}},
                  {"event": "watch.round", "data": {"round": 2}}]},
     "refused, nothing appended: event watch.round: missing field 'passed'"),
    ({"entries": [{"event": "watch.round", "data": {"round": 1, "passed": True}}, {"event": "Probe"}]},
     "refused, nothing appended: unknown event 'Probe'"),
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
    append(directory, "run.started", data=STARTED)
    append(directory, "component.switched", host="h1", component="tts", data=SWITCHED)
    append(directory, "component.state", host="h1", component="tts", data={"state": "failed", "release": "migrated"})
    report = read(directory)["report"]
    assert report["run_id"] == RUN_ID and report["playbook"] == "migrate"
    assert report["components"] == [{"name": "tts", "host": "h1", "from_release": "legacy",
                                     "to_release": "migrated", "state": "failed"}]
    assert read(tmp_path / "empty")["report"] is None


# ------------------------------------------------------------------------------------- state=status / finished

MIGRATE_RUN = "20261204T100000Z"
HOSTS = {"tts": ["app-1", "app-2"]}


def journal_run(directory: Path, run_id: str, events: list[tuple]) -> None:
    """Append (event, component, host, data) tuples through the module, in one batch."""
    run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "entries": [
        {"event": event, "component": component, "host": host, "data": data}
        for event, component, host, data in events]})


def migrate_started(**extra: Any) -> tuple:
    return ("run.started", None, None, {**STARTED, "hosts": HOSTS, "batches": {"tts": [["app-1"], ["app-2"]]},
                                        "redis_host": "redis-1", "journal_host": "journal-1", **extra})


def step(number: int, host: str, status: str = "ok") -> tuple:
    return ("rollback.step", None, host, {"step": number, "name": ROLLBACK_STEP_NAMES[number], "status": status,
                                          "started_at": "2026-12-04T10:01:00.000Z",
                                          "ended_at": "2026-12-04T10:01:01.000Z", "detail": "step %d" % number})


CANARY_FAILED = [
    ("preflight.checked", None, "app-1", {"checks": [], "releases": {"tts": "legacy"}}),
    ("preflight.checked", None, "app-2", {"checks": [], "releases": {"tts": "legacy"}}),
    ("component.deploying", "tts", "app-1", SWITCHED),
    ("component.switched", "tts", "app-1", SWITCHED),
    ("component.state", "tts", "app-1", {"state": "failed", "release": "migrated", "reason": "probe failed"}),
    ("rollback.triggered", "tts", "app-1", {"trigger": {"component": "tts", "host": "app-1", "probe": "latency",
                                                        "value": 412.0, "baseline": 38.5, "threshold": "<= x3"}}),
]
ROLLED_BACK = [step(1, "app-1"), step(1, "redis-1"), step(2, "app-1"), step(3, "app-1"), step(4, "redis-1"),
               step(5, "app-1"), step(6, "app-1")]


def status(directory: Path, check_mode: bool = False, **args: Any) -> dict:
    return run_module(cutover_journal.main, {"path": str(directory), "state": "status", **args},
                      check_mode=check_mode)


def finish(directory: Path, run_id: str, check_mode: bool = False) -> dict:
    return run_module(cutover_journal.main, {"path": str(directory), "run_id": run_id, "state": "finished"},
                      check_mode=check_mode)


def test_status_is_the_run_state_of_the_journal(tmp_path):
    journal_run(tmp_path, MIGRATE_RUN, [migrate_started(), *CANARY_FAILED, step(1, "app-1")])
    before = journal_lines(tmp_path, MIGRATE_RUN)
    result = status(tmp_path, run_id=MIGRATE_RUN)
    entries, _ = read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))
    assert result["changed"] is False and result["path"] == str(tmp_path / (MIGRATE_RUN + ".jsonl"))
    # compared through JSON, as the module's result travels (step_names' int keys become strings)
    assert result["status"] == json.loads(json.dumps({**run_state(entries), "run_id": MIGRATE_RUN}))
    state = result["status"]
    assert state["stage"] == "rollback" and state["outcome"] is None and state["finished"] is False
    assert [(wave["hosts"], wave["phase"]) for wave in state["waves"]] == [(["app-1"], "canary"), (["app-2"], "verify")]
    assert state["rollback"]["hosts"]["app-1"]["targets"] == [
        {"name": "tts", "from_release": "legacy", "to_release": "migrated"}]
    assert state["rollback"]["hosts"]["app-1"]["done"] == [1] and state["rollback"]["hosts"]["app-1"]["next"] == 2
    assert state["rollback"]["hosts"]["redis-1"]["next"] == 1 and state["rollback"]["next_step"] == 1
    assert journal_lines(tmp_path, MIGRATE_RUN) == before, "status writes nothing"


def test_status_selects_the_newest_migrate_or_unfinished_run(tmp_path):
    older, newer, rollback = "20261201T080000Z", "20261203T080000Z", "20261204T090000Z-rollback"
    journal_run(tmp_path, older, [migrate_started(target_release="older")])
    journal_run(tmp_path, newer, [migrate_started(target_release="newer"),
                                  ("run.finished", None, None, {"outcome": "failed", "message": "stopped"})])
    journal_run(tmp_path, rollback, [("run.started", None, None, {**STARTED, "playbook": "rollback",
                                                                  "target_run_id": newer}),
                                     ("run.finished", None, None, {"outcome": "failed", "message": "stopped"})])
    newest_migrate = status(tmp_path, select="newest_migrate")["status"]
    assert (newest_migrate["run_id"], newest_migrate["target_release"]) == (newer, "newer")
    assert newest_migrate["finished"] is True and newest_migrate["outcome"] == "failed"
    unfinished = status(tmp_path, select="newest_unfinished")["status"]
    assert (unfinished["run_id"], unfinished["target_release"], unfinished["finished"]) == (older, "older", False)

    finish(tmp_path, older)
    with pytest.raises(ModuleFailed) as failure:
        status(tmp_path, select="newest_unfinished")
    assert failure.value.result["msg"] == (
        "no unfinished run in the journal %s; runs there, newest first: %s (rollback, failed), %s (migrate, failed), "
        "%s (migrate, failed)" % (tmp_path, rollback, newer, older))


def test_status_of_a_rollback_run_reads_the_run_it_rolls_back(tmp_path):
    rollback_run = "20261204T110000Z-rollback"
    journal_run(tmp_path, MIGRATE_RUN, [migrate_started(), *CANARY_FAILED])
    journal_run(tmp_path, rollback_run, [
        ("run.started", None, None, {**STARTED, "playbook": "rollback", "target_run_id": MIGRATE_RUN, "hosts": HOSTS}),
        ("rollback.triggered", None, None, {"trigger": {"reason": "manual rollback", "run_id": MIGRATE_RUN}})])
    state = status(tmp_path, run_id=rollback_run)["status"]
    assert state["playbook"] == "rollback" and state["target_run_id"] == MIGRATE_RUN
    assert state["rollback"]["hosts"]["app-1"]["targets"] == [
        {"name": "tts", "from_release": "legacy", "to_release": "migrated"}]
    assert state["trigger_text"] == "manual rollback"


def test_status_of_a_run_without_journal_fails_naming_the_runs_there(tmp_path):
    with pytest.raises(ModuleFailed) as failure:
        status(tmp_path, run_id=MIGRATE_RUN)
    assert "run %s has no journal in %s" % (MIGRATE_RUN, tmp_path) in failure.value.result["msg"]
    assert failure.value.result["msg"].endswith("runs there: none")
    with pytest.raises(ModuleFailed) as failure:
        status(tmp_path, select="newest_migrate")
    assert failure.value.result["msg"] == "no migrate run in the journal %s; runs there, newest first: none" % tmp_path

    journal_run(tmp_path, "20261201T080000Z", [migrate_started()])
    journal_run(tmp_path, "20261202T080000Z-rollback", [("run.started", None, None, {**STARTED,
                                                                                     "playbook": "rollback"})])
    with pytest.raises(ModuleFailed) as failure:
        status(tmp_path, run_id="20261203T080000Z")
    assert failure.value.result["msg"].endswith("runs there: 20261202T080000Z-rollback, 20261201T080000Z")
    assert sorted(os.listdir(tmp_path)) == ["20261201T080000Z.jsonl", "20261202T080000Z-rollback.jsonl"]


def test_planned_describes_an_unjournaled_run_only_in_check_mode(tmp_path):
    planned = migrate_started()[3]
    dry = status(tmp_path, check_mode=True, run_id=MIGRATE_RUN, planned=planned)["status"]
    assert dry["run_id"] == MIGRATE_RUN and dry["exists"] is True and dry["playbook"] == "migrate"
    assert dry["plan"] == ["tts"] and dry["hosts"] == HOSTS and dry["stage"] == "started"
    assert [wave["hosts"] for wave in dry["waves"]] == [["app-1"], ["app-2"]]
    assert os.listdir(tmp_path) == [], "a dry run journals nothing"

    with pytest.raises(ModuleFailed) as failure:  # a real run must have journaled run.started
        status(tmp_path, run_id=MIGRATE_RUN, planned=planned)
    assert "run %s has no journal" % MIGRATE_RUN in failure.value.result["msg"]
    assert os.listdir(tmp_path) == []

    with pytest.raises(ModuleFailed) as failure:  # planned must be what run.started may hold
        status(tmp_path, check_mode=True, run_id=MIGRATE_RUN, planned={**planned, "pid": "1234"})
    assert failure.value.result["msg"] == ("refused, nothing appended: event run.started: field 'pid' must be "
                                           "integer, got str '1234'")

    journal_run(tmp_path, MIGRATE_RUN, [migrate_started(target_release="journaled")])
    state = status(tmp_path, check_mode=True, run_id=MIGRATE_RUN, planned=planned)["status"]
    assert state["target_release"] == "journaled", "the journal wins over planned"


def test_finished_appends_the_outcome_the_journal_proves_once(tmp_path):
    journal_run(tmp_path, MIGRATE_RUN, [migrate_started(), *CANARY_FAILED, *ROLLED_BACK])
    entries, _ = read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))
    expected = closing_outcome(run_state(entries))
    assert expected[0] == "rolled_back" and expected[1].startswith("rolled back: probe tts/latency on app-1")

    dry = finish(tmp_path, MIGRATE_RUN, check_mode=True)
    assert dry["changed"] is True and (dry["status"]["outcome"], dry["status"]["message"]) == expected
    assert read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))[0] == entries, "check mode appends nothing"

    result = finish(tmp_path, MIGRATE_RUN)
    after, _ = read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))
    assert after[:-1] == entries and len(after) == len(entries) + 1
    closing = after[-1]
    assert (closing["seq"], closing["event"], closing["host"], closing["component"]) == (
        len(entries) + 1, "run.finished", None, None)
    assert closing["data"] == {"outcome": expected[0], "message": expected[1]}
    check_event(closing["event"], closing["data"], closing["ts"])
    assert result["changed"] is True and result["status"]["finished"] is True
    assert (result["status"]["outcome"], result["status"]["stage"]) == ("rolled_back", "finished")

    again = finish(tmp_path, MIGRATE_RUN)
    assert again["changed"] is False and again["status"]["outcome"] == "rolled_back"
    assert read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))[0] == after, "a second call appends nothing"
    assert status(tmp_path, run_id=MIGRATE_RUN)["status"]["message"] == expected[1]


def test_finished_closes_a_run_cut_off_as_failed_naming_where_it_stopped(tmp_path):
    journal_run(tmp_path, MIGRATE_RUN, [migrate_started(), *CANARY_FAILED, step(1, "app-1"), step(1, "redis-1"),
                                        step(2, "app-1")])
    result = finish(tmp_path, MIGRATE_RUN)
    closing = read_journal(str(tmp_path / (MIGRATE_RUN + ".jsonl")))[0][-1]
    assert closing["event"] == "run.finished" and closing["data"] == {
        "outcome": "failed", "message": "the rollback stopped before step 3 without recording why; check the hosts"}
    assert result["status"]["outcome"] == "failed"

    failed_run = "20261205T100000Z"
    journal_run(tmp_path, failed_run, [migrate_started(), *CANARY_FAILED, step(1, "app-1"),
                                       step(1, "redis-1", "failed")])
    finish(tmp_path, failed_run)
    closing = read_journal(str(tmp_path / (failed_run + ".jsonl")))[0][-1]
    assert closing["data"]["outcome"] == "failed"
    assert closing["data"]["message"].startswith("rollback step 1 (detect) failed on redis-1: step 1.")


def test_finished_of_a_run_without_journal_appends_nothing(tmp_path):
    with pytest.raises(ModuleFailed) as failure:
        finish(tmp_path, MIGRATE_RUN)
    assert "run %s has no journal" % MIGRATE_RUN in failure.value.result["msg"]
    assert os.listdir(tmp_path) == []
