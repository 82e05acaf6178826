"""cutover_lock against a real file system and two real competing processes."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import cutover_lock
from ansible.module_utils.cutover_journal import utc_timestamp
from cutover_testlib import ModuleFailed, run_module

RUN_A = "20261125T222114Z"
RUN_B = "20261125T230000Z-rollback"
OWNER_A = {"controller": "ops1", "user": "alice", "playbook": "migrate"}
OWNER_B = {"controller": "ops2", "user": "bob", "playbook": "rollback"}
ROUNDS = 25


def lock(path: Path, run_id: str = RUN_A, check_mode: bool = False, **extra) -> dict:
    return run_module(cutover_lock.main, {"path": str(path), "run_id": run_id, **extra}, check_mode=check_mode)


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text())


def write_lock(path: Path, run_id: str, owner: dict, age: timedelta) -> dict:
    content = {"run_id": run_id, "owner": owner, "pid": 1,
               "started_at": utc_timestamp(datetime.now(timezone.utc) - age)}
    path.write_text(json.dumps(content))
    return content


def race_for_lock(path: str, run_id: str, owner: dict, start: multiprocessing.Barrier, results) -> None:
    start.wait(timeout=30)
    try:
        run_module(cutover_lock.main, {"path": path, "run_id": run_id, "owner": owner})
        results.put((run_id, "took", None))
    except ModuleFailed as failure:
        results.put((run_id, "refused", failure.result["holder"]["run_id"]))


@pytest.mark.timeout(120)
def test_only_one_of_two_racing_processes_gets_the_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    for round_number in range(ROUNDS):
        path = tmp_path / ("lock-%d" % round_number)
        start = context.Barrier(2)
        racers = [context.Process(target=race_for_lock, args=(str(path), run_id, owner, start, results))
                  for run_id, owner in ((RUN_A, OWNER_A), (RUN_B, OWNER_B))]
        for process in racers:
            process.start()
        try:
            outcomes = sorted(results.get(timeout=30) for _ in racers)
        finally:
            for process in racers:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join()
        winners = [run_id for run_id, verdict, _ in outcomes if verdict == "took"]
        losers = [(run_id, holder) for run_id, verdict, holder in outcomes if verdict == "refused"]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert losers[0][1] == winners[0], "the refused run is told who holds the lock"
        assert on_disk(path)["run_id"] == winners[0]
        assert [name for name in os.listdir(tmp_path) if name.startswith(".lock-")] == [], "no temp files left"


def test_take_writes_the_lock_and_reentry_is_idempotent(tmp_path):
    path = tmp_path / "state" / "lock"
    first = lock(path, owner=OWNER_A)
    content = on_disk(path)
    assert first["changed"] is True and first["lock"] == content
    assert content["run_id"] == RUN_A and content["owner"] == OWNER_A and content["pid"] == os.getpid()
    assert content["started_at"].endswith("Z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = lock(path, owner=OWNER_A)
    assert again["changed"] is False and again["lock"] == content
    assert on_disk(path) == content, "re-entry must not rewrite the lock (started_at stays)"


def test_refusal_names_the_holder_and_the_way_out(tmp_path):
    path = tmp_path / "lock"
    holder = lock(path, owner=OWNER_A)["lock"]
    with pytest.raises(ModuleFailed) as failure:
        lock(path, RUN_B, owner=OWNER_B)
    assert failure.value.result["msg"] == (
        "another cutover run holds the lock: run %s started %s by alice@ops1 (playbook migrate); wait for it, or if "
        "it died run playbooks/unlock.yml -e cutover_unlock_run_id=%s" % (RUN_A, holder["started_at"], RUN_A))
    assert failure.value.result["holder"] == holder
    assert on_disk(path) == holder


def test_release_by_the_owner_and_of_a_missing_lock(tmp_path):
    path = tmp_path / "lock"
    lock(path, owner=OWNER_A)
    released = lock(path, state="absent")
    assert released["changed"] is True and released["lock"] is None
    assert not path.exists()
    assert lock(path, state="absent")["changed"] is False


def test_another_run_cannot_release_without_force_but_force_does(tmp_path):
    path = tmp_path / "lock"
    holder = lock(path, owner=OWNER_A)["lock"]
    with pytest.raises(ModuleFailed) as failure:
        lock(path, RUN_B, state="absent")
    assert "run %s started %s by alice@ops1 (playbook migrate)" % (RUN_A, holder["started_at"]) \
        in failure.value.result["msg"]
    assert on_disk(path) == holder
    forced = lock(path, RUN_B, state="absent", force=True)
    assert forced["changed"] is True and forced["holder"] == holder
    assert not path.exists()


def test_force_respects_stale_after(tmp_path):
    path = tmp_path / "lock"
    fresh = write_lock(path, RUN_A, OWNER_A, timedelta(minutes=5))
    with pytest.raises(ModuleFailed) as failure:
        lock(path, RUN_B, owner=OWNER_B, force=True, stale_after=3600)
    assert "refusing to break the lock of run %s" % RUN_A in failure.value.result["msg"]
    assert "stale_after is 3600 s" in failure.value.result["msg"]
    assert on_disk(path) == fresh

    old = write_lock(path, RUN_A, OWNER_A, timedelta(hours=2))
    taken = lock(path, RUN_B, owner=OWNER_B, force=True, stale_after=3600)
    assert taken["changed"] is True and taken["holder"] == old
    assert on_disk(path)["run_id"] == RUN_B and on_disk(path)["owner"] == OWNER_B


def test_unreadable_lock_is_refused_and_can_be_forced_away(tmp_path):
    path = tmp_path / "lock"
    path.write_text('{"run_id": "2026')  # e.g. a disk filled up while it was written by hand
    with pytest.raises(ModuleFailed) as failure:
        lock(path, owner=OWNER_A)
    assert "an unreadable lock file" in failure.value.result["msg"]
    assert failure.value.result["holder"]["unreadable"] is True
    assert lock(path, state="absent", force=True)["changed"] is True
    assert not path.exists()


def test_check_mode_touches_nothing(tmp_path):
    path = tmp_path / "state" / "lock"
    would_take = lock(path, owner=OWNER_A, check_mode=True)
    assert would_take["changed"] is True and would_take["lock"]["run_id"] == RUN_A
    assert not path.parent.exists()

    holder = lock(path, owner=OWNER_A)["lock"]
    assert lock(path, state="absent", check_mode=True)["changed"] is True
    assert lock(path, RUN_B, state="absent", force=True, check_mode=True)["holder"] == holder
    assert lock(path, RUN_B, owner=OWNER_B, force=True, check_mode=True)["lock"]["run_id"] == RUN_B
    with pytest.raises(ModuleFailed):
        lock(path, RUN_B, owner=OWNER_B, check_mode=True)
    assert on_disk(path) == holder


def test_owner_secrets_are_masked(tmp_path):
    path = tmp_path / "lock"
    lock(path, owner={**OWNER_A, "redis_url": "redis://svc:pw-123456@r1:6379/0"})
    assert "pw-123456" not in path.read_text()
    assert on_disk(path)["owner"]["redis_url"] == "redis://********@r1:6379/0"


@pytest.mark.parametrize("args, message", [
    ({"run_id": "latest"}, "run_id 'latest' is not a run id"),
    ({"owner": {"user": {"name": "alice"}}}, "owner.user must be a string, number or boolean, got dict"),
    ({"stale_after": -1}, "stale_after must be a number of seconds >= 0"),
    ({"state": "locked"}, "value of state must be one of: present, absent"),
])
def test_bad_input_is_refused_before_anything_changes(tmp_path, args, message):
    path = tmp_path / "state" / "lock"
    with pytest.raises(ModuleFailed) as failure:
        run_module(cutover_lock.main, {"path": str(path), "run_id": RUN_A, **args})
    assert message in failure.value.result["msg"]
    assert not path.parent.exists()


def test_path_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(ModuleFailed) as failure:
        lock(tmp_path)
    assert "is a directory: it must be the lock file" in failure.value.result["msg"]


def test_read_returns_the_lock_as_it_is_and_changes_nothing(tmp_path):
    path = tmp_path / "lock"
    missing = lock(path, state="read")
    assert (missing["changed"], missing["lock"], path.exists()) == (False, None, False)
    written = write_lock(path, RUN_B, {**OWNER_B, "pid": 4242}, timedelta(minutes=5))
    before = path.stat().st_mtime_ns

    result = lock(path, state="read")

    assert result["lock"] == written and result["changed"] is False
    assert path.stat().st_mtime_ns == before and on_disk(path) == written
