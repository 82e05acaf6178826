"""The legacy (aioredis) and migrated (redis.asyncio) releases as real processes on a real Redis."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from .harness import (
    DEMO,
    PROJECT_PYTHON,
    Launcher,
    RedisServer,
    Service,
    audio_key,
    client_count,
    free_port,
    generate_reply,
    reply_key,
    run_python,
    run_seed,
    service_config,
    synthesize_audio,
    verdict_key,
)

RELEASE_CLIENTS = {"legacy": ("aioredis", "1.3.1"), "migrated": ("redis.asyncio", "8.1.0")}
INTEROP = [(release, component) for release in RELEASE_CLIENTS for component in ("tts", "safety", "ai")]
DAY_S = 86400


@pytest.fixture(scope="module")
def interop(module_launcher: Launcher, redis_session_server) -> dict[tuple[str, str], Service]:
    """tts, safety and ai of both releases, running side by side on the session's Redis."""
    services = module_launcher.start_many(INTEROP, redis_session_server.port)
    return {(service.release, service.component): service for service in services}


@pytest.mark.parametrize("release,component", INTEROP)
def test_healthz_names_release_and_client(interop, redis_server, release: str, component: str) -> None:
    service = interop[release, component]
    reply = service.get("/healthz")
    health = reply.json()
    assert reply.status == 200
    assert (health["status"], health["component"], health["release"]) == ("ok", component, release)
    assert (health["redis_client"], health["redis_client_version"]) == RELEASE_CLIENTS[release]
    assert health["redis"] == "ok"
    assert health["pool"]["max"] == 20 and health["pool"]["in_use"] + health["pool"]["idle"] >= 1
    assert health["master_pid"] == service.process.pid and health["pid"] != service.process.pid
    assert health["uptime_s"] > 0


def _speak(service: Service, text: str) -> tuple[str, bytes]:
    reply = service.get("/speak", text=text)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/octet-stream"
    return reply.headers["x-cache"], reply.body


def _check(service: Service, text: str) -> tuple[str, str]:
    reply = service.get("/check", text=text)
    assert reply.status == 200, reply.body
    verdict = reply.json()
    return verdict["verdict"], verdict["source"]


def _reply(service: Service, prompt: str) -> tuple[str, bool]:
    reply = service.get("/reply", prompt=prompt)
    assert reply.status == 200, reply.body
    answer = reply.json()
    return answer["reply"], answer["cached"]


def test_migrated_reads_what_legacy_and_seed_wrote(interop, redis_server) -> None:
    client = redis_server.client()
    run_seed(redis_server.port, "--tts", "5", "--safety", "10", "--unsafe", "4", "--ai", "5", "--security", "0",
             "--alerts", "0")
    legacy = {component: interop["legacy", component] for component in ("tts", "safety", "ai")}
    migrated = {component: interop["migrated", component] for component in ("tts", "safety", "ai")}

    assert _speak(legacy["tts"], "written by legacy")[0] == "miss"
    assert _check(legacy["safety"], "a legacy bedtime story") == ("allow", "classifier")
    assert _check(legacy["safety"], "a legacy story about violence") == ("block", "classifier")
    assert _reply(legacy["ai"], "legacy prompt")[1] is False
    assert client.get(audio_key("written by legacy")) == synthesize_audio("written by legacy")

    for text in ["written by legacy"] + ["seed-tts-%d" % i for i in range(5)]:
        assert _speak(migrated["tts"], text) == ("hit", synthesize_audio(text))
    expected_verdicts = {"a legacy bedtime story": "allow", "a legacy story about violence": "block"}
    expected_verdicts.update({"seed-safe-%d" % i: "allow" for i in range(6)})
    expected_verdicts.update({"seed-unsafe-%d weapon" % i: "block" for i in range(4)})
    for text, verdict in expected_verdicts.items():
        assert client.exists(verdict_key(text)), text
        assert _check(migrated["safety"], text) == (verdict, "cache"), text
    for prompt in ["legacy prompt"] + ["seed-prompt-%d" % i for i in range(5)]:
        assert _reply(migrated["ai"], prompt) == (generate_reply(prompt), True)


def test_legacy_reads_what_migrated_wrote(interop, redis_server) -> None:
    client = redis_server.client()
    migrated = {component: interop["migrated", component] for component in ("tts", "safety", "ai")}
    legacy = {component: interop["legacy", component] for component in ("tts", "safety", "ai")}

    assert _speak(migrated["tts"], "written by migrated") == ("miss", synthesize_audio("written by migrated"))
    assert _check(migrated["safety"], "a migrated picnic") == ("allow", "classifier")
    assert _check(migrated["safety"], "find a weapon") == ("block", "classifier")
    assert _reply(migrated["ai"], "tell me about owls \u2728") == (generate_reply("tell me about owls \u2728"), False)

    assert client.get(audio_key("written by migrated")) == synthesize_audio("written by migrated")
    assert 7 * DAY_S - 60 < client.ttl(audio_key("written by migrated")) <= 7 * DAY_S
    assert client.get(verdict_key("find a weapon")) == b"block"
    assert 30 * DAY_S - 60 < client.ttl(verdict_key("find a weapon")) <= 30 * DAY_S
    stored_reply = client.hgetall(reply_key("tell me about owls \u2728"))
    assert stored_reply[b"reply"] == generate_reply("tell me about owls \u2728").encode("utf-8")
    assert stored_reply[b"model"] == b"toy-llm-1" and stored_reply[b"created_at"].endswith(b"Z")
    assert DAY_S - 60 < client.ttl(reply_key("tell me about owls \u2728")) <= DAY_S

    assert _speak(legacy["tts"], "written by migrated") == ("hit", synthesize_audio("written by migrated"))
    assert _check(legacy["safety"], "a migrated picnic") == ("allow", "cache")
    assert _check(legacy["safety"], "find a weapon") == ("block", "cache")
    assert _reply(legacy["ai"], "tell me about owls \u2728") == (generate_reply("tell me about owls \u2728"), True)


def test_undecidable_and_corrupt_verdicts_block(interop, redis_server) -> None:
    client = redis_server.client()
    safety = interop["migrated", "safety"]
    assert _check(safety, "is this ok??") == ("block", "classifier")
    assert _check(safety, "x" * 501) == ("block", "classifier")
    assert not client.exists(verdict_key("is this ok??")), "an undecided verdict must not be cached"
    client.set(verdict_key("a garbled entry"), b"\xffmaybe")
    assert _check(safety, "a garbled entry") == ("allow", "classifier")
    assert client.get(verdict_key("a garbled entry")) == b"allow"


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_maintenance_flag_serves_only_probes(interop, redis_server, release: str) -> None:
    service = interop[release, "tts"]
    service.maintenance_file.write_text("cutover run 20260101T000000Z\n")
    try:
        blocked = service.get("/speak", text="during maintenance")
        assert (blocked.status, blocked.json()) == (503, {"status": "maintenance"})
        probe = service.get("/speak", text="during maintenance", headers={"X-Cutover-Probe": "1"})
        assert probe.status == 200 and probe.body == synthesize_audio("during maintenance")
        health = service.get("/healthz")
        assert (health.status, health.json()["status"]) == (200, "maintenance")
    finally:
        service.maintenance_file.unlink()
    assert service.get("/speak", text="during maintenance").headers["x-cache"] == "hit"
    assert service.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_safety_fails_closed_when_redis_is_down(launcher: Launcher, private_redis: RedisServer, release: str) -> None:
    safety = launcher.start(release, "safety", private_redis.port, password=private_redis.password)
    assert _check(safety, "a story about kittens") == ("allow", "classifier")
    assert _check(safety, "a story about kittens") == ("allow", "cache")

    private_redis.stop()
    assert _check(safety, "a story about kittens") == ("block", "fail_closed")
    assert _check(safety, "never seen before") == ("block", "fail_closed")
    health = safety.get("/healthz")
    assert health.status == 503
    assert health.json()["status"] == "degraded" and health.json()["redis"] != "ok"
    assert safety.stop() == 0
    assert private_redis.password not in health.body.decode() + safety.log()


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_sigterm_closes_the_pool_and_exits_zero(launcher: Launcher, redis_server, release: str) -> None:
    client = redis_server.client()
    others = client_count(client, "toy-tts")  # the interop services of this module may be running
    tts = launcher.start(release, "tts", redis_server.port, pool_size=7)
    assert tts.get("/healthz").json()["pool"]["max"] == 7
    _speak(tts, "hello")
    assert client_count(client, "toy-tts") > others
    assert tts.stop() == 0
    deadline = time.monotonic() + 3
    while client_count(client, "toy-tts") > others and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client_count(client, "toy-tts") == others


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_security_counts_requests_and_flags_an_anomaly(launcher: Launcher, redis_server, release: str) -> None:
    client = redis_server.client()
    security = launcher.start(release, "security", redis_server.port, settings={"rate_limit": 3})
    for child in ("kid-7", "kid-8"):  # a second child only if the minute turned over mid-test
        minute = int(time.time() // 60)
        answers = [security.get("/request", child=child).json() for _ in range(5)]
        if int(time.time() // 60) == minute:
            break
    assert [(a["count"], a["anomaly"]) for a in answers] == [(1, False), (2, False), (3, False), (4, True), (5, True)]
    rate_key = "security:rate:%s:%d" % (child, minute)
    assert client.get(rate_key) == b"5" and 0 < client.ttl(rate_key) <= 120
    record = json.loads(client.get("security:anomaly:%s" % child))
    assert (record["child"], record["count"], record["release"]) == (child, 4, release)
    assert DAY_S - 60 < client.ttl("security:anomaly:%s" % child) <= DAY_S
    alerts = [f for _, f in client.xrange("ai_service_alerts") if f[b"kind"] == b"alert" and f[b"name"] == b"anomaly"]
    assert [(a[b"child"], a[b"component"]) for a in alerts] == [(child.encode(), b"security")]
    assert security.get("/request", child="no spaces allowed").status == 400


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_monitoring_consumes_heartbeats_and_alerts(launcher: Launcher, redis_server, release: str) -> None:
    client = redis_server.client()
    monitoring, _ = launcher.start_many([(release, "monitoring"), (release, "ai")], redis_server.port,
                                        metrics_interval_s=0.2)
    written = monitoring.get("/alert", name="door-left-open")
    assert written.status == 200 and written.json()["written"] is True
    [(entry_id, fields)] = client.xrange("ai_service_alerts", written.json()["id"], written.json()["id"])
    assert (fields[b"name"], fields[b"kind"], fields[b"component"]) == (b"door-left-open", b"alert", b"monitoring")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = monitoring.get("/status").json()
        if {"ai", "monitoring"} <= set(status["components"]) and status["alerts_total"] >= 1:
            break
        time.sleep(0.1)
    assert {"ai", "monitoring"} <= set(status["components"]), status
    assert status["alerts_total"] == 1
    assert all(0 <= age < 5 for age in status["components"].values()), status
    [group] = client.xinfo_groups("ai_service_alerts")
    assert group["name"] == b"monitoring"
    heartbeats = [f for _, f in client.xrange("ai_service_alerts") if f[b"component"] == b"ai"]
    assert heartbeats and {(f[b"kind"], f[b"name"], f[b"release"]) for f in heartbeats} == {
        (b"metric", b"heartbeat", release.encode())}
    assert all(f[b"value"].isdigit() and float(f[b"ts"]) > time.time() - 60 for f in heartbeats)


@pytest.mark.parametrize("release", RELEASE_CLIENTS)
def test_bad_config_exits_naming_the_field(launcher: Launcher, tmp_path: Path, release: str) -> None:
    python = launcher.python_for(release, "tts")
    service = DEMO / "releases" / release / "tts" / "service.py"
    cases = {
        "pool_size": {"pool_size": "20"},
        "component": {"component": "speech"},
        "settings.synthesis_ms": {"settings": {"synthesis_ms": -1}},
        "redis.port": {"redis": {"host": "127.0.0.1", "port": True}},
    }
    for field, override in cases.items():
        config = tmp_path / ("%s.json" % field)
        data = service_config("tts", free_port(), 6379, tmp_path / "M")
        data.update(override)
        config.write_text(json.dumps(data))
        result = run_python(python, service, "--config", str(config))
        assert result.returncode == 2, (field, result.stderr)
        assert ": %s: " % field in result.stderr and str(config) in result.stderr, result.stderr


def test_source_tree_release_is_unknown(launcher: Launcher, redis_server) -> None:
    """Run straight from demo/releases (no .cutover/release.json), through a faulty release's symlinked dir."""
    service = launcher.start("faulty-bytes-str", "ai", redis_server.port, from_source=True)
    health = service.get("/healthz").json()
    assert (health["release"], health["component"], health["redis_client"]) == ("unknown", "ai", "redis.asyncio")
    assert _reply(service, "from the source tree") == (generate_reply("from the source tree"), False)


def test_missing_client_library_exits_3(tmp_path: Path, redis_server) -> None:
    """The project venv has redis-py but not aioredis: the legacy release must say so and stop."""
    config = tmp_path / "tts.json"
    config.write_text(json.dumps(service_config("tts", free_port(), redis_server.port, tmp_path / "M")))
    result = run_python(PROJECT_PYTHON, DEMO / "releases" / "legacy" / "tts" / "service.py", "--config", str(config))
    assert result.returncode == 3, result.stderr
    assert "Redis client library aioredis is not installed" in result.stderr


def test_http_errors_and_post_form(interop, redis_server) -> None:
    ai = interop["migrated", "ai"]
    missing = ai.get("/nowhere")
    assert (missing.status, missing.json()["error"]) == (404, "no endpoint /nowhere; endpoints: /healthz, /reply")
    no_param = ai.get("/reply")
    assert (no_param.status, no_param.json()["error"]) == (400, "missing query parameter 'prompt'")
    conn = http.client.HTTPConnection("127.0.0.1", ai.port, timeout=10)
    try:
        conn.request("POST", "/reply", body="prompt=posted+prompt",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (
            200, {"reply": generate_reply("posted prompt"), "cached": False})
    finally:
        conn.close()
