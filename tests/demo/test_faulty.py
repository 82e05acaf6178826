"""Each faulty release really shows the seed risk it carries: measured on Redis state and HTTP answers,
next to the correct migrated release doing the same work."""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .harness import (
    Launcher,
    Reply,
    Service,
    audio_key,
    client_count,
    reply_key,
    run_seed,
    synthesize_audio,
    verdict_key,
)

STREAM = "ai_service_alerts"
ONLY = {"tts": "0", "safety": "0", "ai": "0", "security": "0", "alerts": "0"}


def seed_only(redis_port: int, **counts: int) -> None:
    wanted = dict(ONLY, **{name: str(count) for name, count in counts.items()})
    run_seed(redis_port, *[arg for name, count in wanted.items() for arg in ("--" + name, count)])


def concurrent_speak(service: Service, texts: list[str]) -> list[Reply]:
    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(lambda text: service.get("/speak", text=text, timeout=30), texts))


def test_pool_exhaustion_fails_most_concurrent_cache_misses(launcher: Launcher, redis_server) -> None:
    migrated, faulty = launcher.start_many([("migrated", "tts"), ("faulty-pool-exhaustion", "tts")],
                                           redis_server.port, settings={"synthesis_ms": 300})
    assert faulty.get("/healthz").json()["pool"]["max"] == 2

    migrated_replies = concurrent_speak(migrated, ["miss-migrated-%d" % i for i in range(20)])
    faulty_replies = concurrent_speak(faulty, ["miss-faulty-%d" % i for i in range(20)])

    assert [reply.status for reply in migrated_replies] == [200] * 20
    failed = [reply for reply in faulty_replies if reply.status != 200]
    assert len(failed) >= 11, "only %d of 20 failed" % len(failed)
    assert {reply.status for reply in failed} <= {500, 503}
    assert "No connection available" in faulty.log()


def test_host_override_breaks_only_the_hosts_that_carry_the_old_pool_file(launcher: Launcher, redis_server) -> None:
    clean_host = launcher.start("faulty-host-override", "tts", redis_server.port, settings={"synthesis_ms": 300})
    (launcher.work_dir / "pool.override").write_text("minsize=1\n")  # the aioredis-era tuning of some hosts
    tuned_host = launcher.start("faulty-host-override", "tts", redis_server.port, settings={"synthesis_ms": 300})
    assert clean_host.get("/healthz").json()["pool"]["max"] > 1
    assert tuned_host.get("/healthz").json()["pool"]["max"] == 1

    clean_replies = concurrent_speak(clean_host, ["miss-clean-%d" % i for i in range(20)])
    tuned_replies = concurrent_speak(tuned_host, ["miss-tuned-%d" % i for i in range(20)])

    assert [reply.status for reply in clean_replies] == [200] * 20
    assert len([reply for reply in tuned_replies if reply.status != 200]) >= 11
    assert "No connection available" in tuned_host.log()


def test_bytes_str_loses_cached_audio_and_is_slow(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    seed_only(redis_server.port, tts=10)
    texts = ["seed-tts-%d" % i for i in range(10)]

    migrated = launcher.start("migrated", "tts", redis_server.port, settings={"synthesis_ms": 150})
    migrated_replies = [migrated.get("/speak", text=text) for text in texts]
    assert [reply.headers["x-cache"] for reply in migrated_replies] == ["hit"] * 10
    assert migrated.stop() == 0

    faulty = launcher.start("faulty-bytes-str", "tts", redis_server.port, settings={"synthesis_ms": 150})
    faulty_replies = [faulty.get("/speak", text=text) for text in texts]
    assert [reply.headers["x-cache"] for reply in faulty_replies] == ["miss"] * 10, "hit ratio must be 0"
    assert [reply.body for reply in faulty_replies] == [synthesize_audio(text) for text in texts]
    for text in texts:
        assert not client.exists(audio_key(text)), "seeded entry of %r should be deleted" % text
        assert client.exists(audio_key(text).replace("tts:audio:", "tts:audio:v2:"))
    assert list(client.scan_iter(match="tts:audio:[0-9a-f]*")) == []

    migrated_latency = statistics.median(reply.elapsed_s for reply in migrated_replies)
    faulty_latency = statistics.median(reply.elapsed_s for reply in faulty_replies)
    assert faulty_latency >= 0.15 and faulty_latency > 5 * migrated_latency, (migrated_latency, faulty_latency)


def test_safety_fail_open_allows_cached_unsafe_texts(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    seed_only(redis_server.port, safety=10, unsafe=5)
    migrated, faulty = launcher.start_many([("migrated", "safety"), ("faulty-safety-fail-open", "safety")],
                                           redis_server.port)
    for text in ["seed-unsafe-%d weapon" % i for i in range(5)]:
        assert client.get(verdict_key(text)) == b"block"
        assert migrated.get("/check", text=text).json() == {"verdict": "block", "source": "cache"}
        assert faulty.get("/check", text=text).json() == {"verdict": "allow", "source": "cache"}

    fresh = "let us find a weapon"
    assert faulty.get("/check", text=fresh).json() == {"verdict": "block", "source": "classifier"}
    assert faulty.get("/check", text=fresh).json() == {"verdict": "allow", "source": "cache"}
    assert client.get(verdict_key(fresh)) == b"block", "the data is right, reading it is wrong"


def test_late_fail_open_reads_verdicts_right_then_allows_cached_unsafe_texts(launcher: Launcher, redis_server,
                                                                             monkeypatch) -> None:
    seed_only(redis_server.port, safety=10, unsafe=5)
    monkeypatch.setenv("TOY_TURNS_BAD_AFTER_S", "3")
    late = launcher.start("faulty-late-fail-open", "safety", redis_server.port)
    unsafe = "seed-unsafe-0 weapon"
    assert late.get("/check", text=unsafe).json() == {"verdict": "block", "source": "cache"}, "right at first"
    deadline = time.monotonic() + 10
    while late.get("/check", text=unsafe).json()["verdict"] == "block":
        assert time.monotonic() < deadline, "still right 10 s after start: the fault never appeared"
        time.sleep(0.2)
    assert late.get("/check", text=unsafe).json() == {"verdict": "allow", "source": "cache"}


def test_alerts_lost_answers_200_but_writes_nothing(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    migrated, faulty = launcher.start_many([("migrated", "monitoring"), ("faulty-alerts-lost", "monitoring")],
                                           redis_server.port)
    before = client.xlen(STREAM)
    lost = faulty.get("/alert", name="lost-alert")
    assert lost.status == 200 and lost.json()["written"] is True
    assert client.xlen(STREAM) == before
    assert [f for _, f in client.xrange(STREAM) if f[b"name"] == b"lost-alert"] == []

    kept = migrated.get("/alert", name="kept-alert")
    assert kept.status == 200 and kept.json()["id"]
    assert client.xlen(STREAM) == before + 1
    assert [f[b"kind"] for _, f in client.xrange(STREAM) if f[b"name"] == b"kept-alert"] == [b"alert"]


def test_connection_leak_grows_with_every_new_child(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()

    def growth(service: Service, prefix: str) -> int:
        before = client_count(client, "toy-security")
        for i in range(30):
            assert service.get("/request", child="%s-%d" % (prefix, i)).status == 200
        return client_count(client, "toy-security") - before

    migrated = launcher.start("migrated", "security", redis_server.port)
    migrated_growth = growth(migrated, "calm")
    assert migrated.stop() == 0
    faulty = launcher.start("faulty-connection-leak", "security", redis_server.port)
    faulty_growth = growth(faulty, "leak")
    assert migrated_growth <= 2, migrated_growth
    assert faulty_growth >= 20, faulty_growth


def test_ttl_px_writes_entries_that_expire_a_thousand_times_sooner(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    migrated, faulty = launcher.start_many([("migrated", "tts"), ("faulty-ttl-px", "tts")], redis_server.port,
                                           settings={"synthesis_ms": 10, "ttl_s": 86400})
    assert migrated.get("/speak", text="ttl-migrated").status == 200
    assert faulty.get("/speak", text="ttl-faulty").status == 200
    assert client.ttl(audio_key("ttl-migrated")) > 86000
    assert 0 < client.pttl(audio_key("ttl-faulty")) <= 86400, "86400 ms, not s"


def test_pool_swallow_turns_concurrent_cache_hits_into_slow_misses_without_errors(launcher: Launcher,
                                                                                   redis_server) -> None:
    seed_only(redis_server.port, ai=20)
    migrated, faulty = launcher.start_many([("migrated", "ai"), ("faulty-pool-swallow", "ai")], redis_server.port,
                                           settings={"generation_ms": 200})

    def cached_ratio(service: Service) -> tuple[float, list[int]]:
        together = threading.Barrier(20)  # all 20 requests at once, however slowly the client threads start

        def ask(index: int) -> Reply:
            together.wait()
            return service.get("/reply", prompt="seed-prompt-%d" % index, timeout=30)

        # Redis holds every command for 1.2 s (below the 2 s command timeout), so the 20 requests overlap however
        # busy the machine is: a pool that never waits runs dry at once, one that waits serves every request.
        redis_server.client().client_pause(1200, all=True)
        with ThreadPoolExecutor(20) as pool:
            replies = list(pool.map(ask, range(20)))
        return sum(reply.json()["cached"] for reply in replies) / 20, [reply.status for reply in replies]

    migrated_ratio, migrated_statuses = cached_ratio(migrated)
    faulty_ratio, faulty_statuses = cached_ratio(faulty)
    assert migrated_ratio == 1.0 and migrated_statuses == [200] * 20
    assert faulty_statuses == [200] * 20, "no request fails"
    assert faulty_ratio <= 0.5, faulty_ratio
    assert faulty.get("/reply", prompt="seed-prompt-0").json()["cached"] is True, "one at a time looks perfect"


def test_client_per_request_leaves_a_connection_per_alert(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    faulty = launcher.start("faulty-client-per-request", "monitoring", redis_server.port)
    before = client_count(client, "toy-monitoring")
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda i: faulty.get("/alert", name="leak-%d" % i).status, range(150)))
    assert statuses == [200] * 150
    time.sleep(1.0)  # the collector frees part of them; the rest stay open
    assert client_count(client, "toy-monitoring") - before >= 10


def test_reply_format_writes_replies_the_legacy_reader_cannot_read(launcher: Launcher, redis_server) -> None:
    client = redis_server.client()
    seed_only(redis_server.port, ai=5)
    faulty = launcher.start("faulty-reply-format", "ai", redis_server.port, settings={"generation_ms": 10})
    assert faulty.get("/reply", prompt="seed-prompt-0").json()["cached"] is True, "old entries still read"
    assert faulty.get("/reply", prompt="fresh-prompt").json()["cached"] is False
    assert client.type(reply_key("fresh-prompt")) == b"string"
    assert client.type(reply_key("seed-prompt-0")) == b"hash"
