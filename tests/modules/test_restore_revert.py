"""Restore policy `revert` against real redis-servers: what the run wrote is undone per namespace - snapshot keys get
their value and absolute expiry back, keys created since are removed - while streams (append-only shared data such
as ai_service_alerts) keep what was appended: a stream is restored only where it is missing, never truncated."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from cutover_testlib import ModuleFailed, run_module
from test_redis_snapshot import LONG_TTL_MS, logical_state
from test_restore_rdb import source, take  # noqa: F401 - source is a fixture

import cutover_redis_restore

NAMESPACES = ["ai:*", "tts:*", "ai_service_alerts"]
COUNTS = ("restored", "kept_existing", "expired", "deleted", "missing_before", "kept_streams")
CONNECT = "+ping +info +client|setname"
WRITE = "~ai:* ~tts:* ~ai_service_alerts"
READ = "%R~ai:* %R~tts:* %R~ai_service_alerts"
REVERT_ACL = CONNECT + " +time +exists +type +restore +scan +unlink " + WRITE
REVERT_CHECK_ACL = CONNECT + " +time +exists +type +scan " + READ


def before_the_run(client: redis.Redis) -> None:
    client.set("ai:reply:1", "old format 1")
    client.set("ai:reply:2", "old format 2", px=LONG_TTL_MS)
    client.hset("ai:hash", mapping={"f": "old"})
    client.set("ai:gone", "deleted during the run")
    client.set("ai:short", "expires before the rollback", px=300)
    for n in range(2):
        client.xadd("ai:stream-in-ns", {"n": n})
        client.xadd("ai:stream-deleted", {"n": n})
    client.set("tts:audio:1", "audio", px=LONG_TTL_MS)
    for n in range(3):
        client.xadd("ai_service_alerts", {"level": "info", "n": n})
    client.xgroup_create("ai_service_alerts", "monitor", id="0")
    client.xreadgroup("monitor", "m1", {"ai_service_alerts": ">"}, count=2)
    client.set("other:key", "outside every namespace")


def during_the_run(client: redis.Redis) -> None:
    client.set("ai:reply:1", "NEW FORMAT the old release cannot read")
    client.set("ai:reply:2", "NEW FORMAT 2")  # also drops its expiry
    client.hset("ai:hash", mapping={"f": "new", "g": "added"})
    client.delete("ai:gone", "ai:stream-deleted")
    client.set("ai:new:1", "created by the new release")
    client.set("ai:new:2", "created by the new release", px=LONG_TTL_MS)
    client.hset("ai:newhash", mapping={"x": "1"})
    client.xadd("ai:newstream", {"created": "during the run"})
    client.xadd("ai:stream-in-ns", {"n": "appended"})
    client.set("tts:audio:2", "created")
    for n in range(2):
        client.xadd("ai_service_alerts", {"level": "warn", "n": "appended %d" % n})
    time.sleep(0.35)
    client.set("ai:short", "rewritten after its snapshot value expired")
    client.set("other:key", "changed, but not in a reverted namespace")


EXPECTED = {
    "ai:*": {"restored": 5, "kept_existing": 0, "expired": 1, "deleted": 4, "missing_before": 2, "kept_streams": 2},
    "tts:*": {"restored": 1, "kept_existing": 0, "expired": 0, "deleted": 1, "missing_before": 0, "kept_streams": 0},
    "ai_service_alerts": {"restored": 0, "kept_existing": 0, "expired": 0, "deleted": 0, "missing_before": 0,
                          "kept_streams": 1},
}


def revert(options: dict[str, Any], src: Path, check_mode: bool = False, **extra: Any) -> dict[str, Any]:
    return run_module(cutover_redis_restore.main, dict(dict(redis=options, src=str(src), policy="revert"), **extra),
                      check_mode=check_mode)


@pytest.mark.parametrize("mode", ["logical", "rdb"])
def test_revert_undoes_the_runs_writes_and_keeps_what_streams_appended(source, tmp_path, mode):
    client = source.client()
    before_the_run(client)
    snapshot_state = logical_state(client)
    src = take(source, tmp_path / "snaps", mode=mode, namespaces=NAMESPACES)
    during_the_run(client)
    alerts_now = client.xrange("ai_service_alerts")
    appended_now = client.xrange("ai:stream-in-ns")
    new_stream = client.xrange("ai:newstream")
    after_the_run = logical_state(client)

    planned = revert(source.options, src, check_mode=True, batch_size=2)
    assert logical_state(client) == after_the_run, "check mode must not write"
    result = revert(source.options, src, batch_size=2)

    assert result["namespaces"] == EXPECTED == planned["namespaces"]
    assert {name: result[name] for name in COUNTS} == {"restored": 6, "kept_existing": 0, "expired": 1, "deleted": 5,
                                                       "missing_before": 2, "kept_streams": 3}
    assert result["changed"] is True and planned["changed"] is True and result["policy"] == "revert"
    now = logical_state(client)
    for key in (b"ai:reply:1", b"ai:reply:2", b"ai:hash", b"ai:gone", b"ai:stream-deleted", b"tts:audio:1"):
        assert now[key] == snapshot_state[key], key  # value, type and absolute expiry
    for key in (b"ai:new:1", b"ai:new:2", b"ai:newhash", b"ai:short", b"tts:audio:2"):
        assert key not in now, key
    assert client.xrange("ai_service_alerts") == alerts_now and len(alerts_now) == 5
    assert [group["name"] for group in client.xinfo_groups("ai_service_alerts")] == [b"monitor"]
    assert client.xrange("ai:stream-in-ns") == appended_now and len(appended_now) == 3
    assert client.xrange("ai:newstream") == new_stream
    assert client.get("other:key") == b"changed, but not in a reverted namespace"
    assert "2 streams kept" not in result["detail"] and "3 streams kept" in result["detail"]


def test_revert_of_one_namespace_leaves_the_others_alone(source, tmp_path):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)
    untouched = logical_state(client, "ai*")

    result = revert(source.options, src, namespaces=["tts:*"])

    assert result["namespaces"] == {"tts:*": EXPECTED["tts:*"]}
    assert logical_state(client, "ai*") == untouched
    assert client.exists("tts:audio:2") == 0 and client.get("tts:audio:1") == b"audio"


def test_a_second_revert_finds_nothing_left_to_undo_but_the_streams(source, tmp_path):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)
    revert(source.options, src)
    state = logical_state(client)

    second = revert(source.options, src)

    # the stream the first revert brought back is one of the streams now
    assert (second["deleted"], second["missing_before"], second["kept_streams"]) == (0, 0, 4)
    assert logical_state(client) == state


@pytest.mark.parametrize("mode", ["logical", "rdb"])
def test_revert_streams_big_records_and_keeps_a_big_stream(source, tmp_path, mode):
    client = source.client()
    client.set("ai:big", b"s" * (9 << 20))
    for n in range(10):
        client.xadd("ai_service_alerts", {"blob": bytes([65 + n]) * (1 << 20)})
    src = take(source, tmp_path / "snaps", mode=mode, namespaces=NAMESPACES)
    client.set("ai:big", "replaced during the run")
    client.xadd("ai_service_alerts", {"blob": "appended"})
    client.set("ai:after", "created")

    result = revert(source.options, src)

    assert (result["restored"], result["kept_streams"], result["deleted"]) == (1, 1, 1)
    assert client.strlen("ai:big") == 9 << 20 and client.xlen("ai_service_alerts") == 11
    assert client.exists("ai:after") == 0


@pytest.mark.parametrize("check_mode, rules", [(False, REVERT_ACL), (True, REVERT_CHECK_ACL)])
def test_revert_works_with_its_least_privilege_user(source, tmp_path, check_mode, rules):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)
    client.execute_command("ACL", "SETUSER", "reverter", "reset", "on", ">pw", "resetchannels", "-@all", *rules.split())
    options = dict(source.options, user="reverter", password="pw")

    result = revert(options, src, check_mode=check_mode)

    assert result["namespaces"] == EXPECTED
    assert (client.exists("ai:new:1") == 0) is not check_mode


def test_revert_without_type_permission_fails_before_writing(source, tmp_path):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)
    after_the_run = logical_state(client)
    rules = REVERT_ACL.replace(" +type", "")
    client.execute_command("ACL", "SETUSER", "weak", "reset", "on", ">pw", "resetchannels", "-@all", *rules.split())

    with pytest.raises(ModuleFailed, match="restore into .* stopped: .*(NOPERM|permission).*type"):
        revert(dict(source.options, user="weak", password="pw"), src)

    assert logical_state(client) == after_the_run


def test_policies_revert_one_namespace_and_keep_newer_keys_of_another(source, tmp_path):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)

    planned = revert(source.options, src, check_mode=True, policy="missing_only", policies={"ai:*": "revert"})
    result = revert(source.options, src, policy="missing_only", policies={"ai:*": "revert"})

    assert result["policies"] == planned["policies"] == {"ai:*": "revert", "tts:*": "missing_only",
                                                           "ai_service_alerts": "missing_only"}
    assert result["namespaces"]["ai:*"] == EXPECTED["ai:*"] == planned["namespaces"]["ai:*"]
    assert result["namespaces"]["tts:*"]["deleted"] == 0 and result["deleted"] == EXPECTED["ai:*"]["deleted"]
    assert result["policy"] == "missing_only" and "ai:* revert" in result["detail"]
    assert client.exists("ai:new:1") == 0 and client.get("ai:reply:1") == b"old format 1"
    assert client.get("tts:audio:2") == b"created", "missing_only keeps what the run created"


@pytest.mark.parametrize("extra, message", [
    ({"policies": {"tts:*": "revrt"}}, r"policies\['tts:\*'\] must be one of missing_only, overwrite, replace_all, "
                                       r"revert, got 'revrt'"),
    ({"policies": {"safety:*": "revert"}, "namespaces": ["tts:*"]},
     r"policies names 'safety:\*', which this restore does not restore \(restored: 'tts:\*'\)"),
])
def test_policies_refuse_a_wrong_entry_before_writing(source, tmp_path, extra, message):
    client = source.client()
    before_the_run(client)
    src = take(source, tmp_path / "snaps", mode="logical", namespaces=NAMESPACES)
    during_the_run(client)
    after_the_run = logical_state(client)

    with pytest.raises(ModuleFailed, match=message):
        revert(source.options, src, **extra)

    assert logical_state(client) == after_the_run
