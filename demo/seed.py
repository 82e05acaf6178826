#!/usr/bin/env python3
"""Seed Redis with the data the toy service would have written, so a migration has something to lose.

Every entry is built with the components' own functions (synthesis, classifier, reply generator,
key names, stream fields) and gets the component's default TTL, so it is byte-for-byte what a
component would have cached. Idempotent: only missing keys and missing seed alerts are written.

    REDIS_PASSWORD=... .venv/bin/python demo/seed.py --host 127.0.0.1 --port 16379
    .venv/bin/python demo/seed.py --redis-url redis://127.0.0.1:16379/0 --tts 200 --alerts 50

Texts: seed-tts-<i>, seed-safe-<i>, "seed-unsafe-<i> weapon", seed-prompt-<i>; children seed-child-<i>;
alerts seed-alert-<i>. Prints one JSON summary: keys per namespace after seeding, and what this run
wrote (``written`` in total, ``written_by_namespace``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

sys.dont_write_bytecode = True  # keep demo/toyservice free of __pycache__ (release copies include it)

import redis  # noqa: E402
from redis.backoff import ExponentialBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402
from toyservice import ALERTS_STREAM_DEFAULT, ALERTS_STREAM_MAXLEN  # noqa: E402
from toyservice.components.ai import reply_key, reply_record, utc_now_iso  # noqa: E402
from toyservice.components.safety import classify_text, verdict_key  # noqa: E402
from toyservice.components.security import anomaly_key, anomaly_record, epoch_minute, rate_key  # noqa: E402
from toyservice.components.tts import audio_key, synthesize_audio  # noqa: E402
from toyservice.config import default_settings  # noqa: E402
from toyservice.events import KIND_ALERT, event_fields  # noqa: E402
from toyservice.stores.base import redact  # noqa: E402

SEED_RELEASE = "seed"
SEED_UNSAFE_WORD = "weapon"  # on the classifier's blocklist
NAMESPACES = ("tts:audio:*", "safety:verdict:*", "ai:reply:*", "security:rate:*", "security:anomaly:*")


def tts_texts(count: int) -> list[str]:
    return ["seed-tts-%d" % i for i in range(count)]


def safety_texts(count: int, unsafe: int) -> list[str]:
    """``count`` texts of which the last ``unsafe`` carry a blocklisted word."""
    safe = ["seed-safe-%d" % i for i in range(count - unsafe)]
    return safe + ["seed-unsafe-%d %s" % (i, SEED_UNSAFE_WORD) for i in range(unsafe)]


def ai_prompts(count: int) -> list[str]:
    return ["seed-prompt-%d" % i for i in range(count)]


def security_children(count: int) -> list[str]:
    return ["seed-child-%d" % i for i in range(count)]


def alert_names(count: int) -> list[str]:
    return ["seed-alert-%d" % i for i in range(count)]


def missing_keys(client: redis.Redis, keys: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [key for key, exists in zip(keys, pipe.execute(), strict=True) if not exists]


def seed_strings(client: redis.Redis, values: dict[str, bytes], ttl_s: int) -> int:
    missing = missing_keys(client, list(values))
    pipe = client.pipeline(transaction=False)
    for key in missing:
        pipe.set(key, values[key], ex=ttl_s, nx=True)
    return sum(bool(done) for done in pipe.execute())


def seed_ai(client: redis.Redis, prompts: list[str], ttl_s: int) -> int:
    by_key = {reply_key(prompt): prompt for prompt in prompts}
    missing = missing_keys(client, list(by_key))
    pipe = client.pipeline(transaction=True)
    created_at = utc_now_iso()
    for key in missing:
        pipe.hset(key, mapping=reply_record(by_key[key], created_at))
        pipe.expire(key, ttl_s)
    pipe.execute()
    return len(missing)


def seed_security(client: redis.Redis, children: list[str]) -> int:
    """Each seeded child crossed the rate limit this minute: its counter and its anomaly record."""
    settings = default_settings("security")
    minute = epoch_minute()
    count = settings["rate_limit"] + 1
    written = seed_strings(client, {rate_key(child, minute): str(count).encode() for child in children},
                           settings["window_ttl_s"])
    records = {anomaly_key(child): anomaly_record(child, count, minute, SEED_RELEASE) for child in children}
    return written + seed_strings(client, records, settings["anomaly_ttl_s"])


def seed_alerts(client: redis.Redis, stream: str, names: list[str]) -> int:
    """XADD the seed alerts that are not in the stream yet, as monitoring's /alert writes them."""
    present = {fields.get(b"name") for _, fields in client.xrange(stream)} if client.exists(stream) else set()
    written = 0
    for name in names:
        if name.encode() not in present:
            fields = event_fields("monitoring", KIND_ALERT, name, SEED_RELEASE)
            client.xadd(stream, fields, maxlen=ALERTS_STREAM_MAXLEN, approximate=True)
            written += 1
    return written


def count_namespaces(client: redis.Redis) -> dict[str, int]:
    return {pattern: sum(1 for _ in client.scan_iter(match=pattern, count=1000)) for pattern in NAMESPACES}


def seed(client: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    texts = tts_texts(args.tts)
    verdict_texts = safety_texts(args.safety, args.unsafe)
    # A component never caches an undecided verdict, so neither does the seed.
    verdicts = {verdict_key(text): verdict for text in verdict_texts if (verdict := classify_text(text))}
    written = {
        "tts:audio": seed_strings(client, {audio_key(text): synthesize_audio(text) for text in texts},
                                  default_settings("tts")["ttl_s"]),
        "safety:verdict": seed_strings(client, {key: verdict.encode() for key, verdict in verdicts.items()},
                                       default_settings("safety")["ttl_s"]),
        "ai:reply": seed_ai(client, ai_prompts(args.ai), default_settings("ai")["ttl_s"]),
        "security": seed_security(client, security_children(args.security)),
        args.alerts_stream: seed_alerts(client, args.alerts_stream, alert_names(args.alerts)),
    }
    return {
        "written": sum(written.values()),
        "written_by_namespace": written,
        "keys": count_namespaces(client),
        "streams": {args.alerts_stream: client.xlen(args.alerts_stream)},
        "blocked_texts": sum(verdict == "block" for verdict in verdicts.values()),
    }


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %d" % value)
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_argument_group("Redis (a URL, or host/port/...)")
    target.add_argument("--redis-url", help="redis://[user:password@]host:port/db")
    target.add_argument("--host", default="127.0.0.1")
    target.add_argument("--port", type=int, default=6379)
    target.add_argument("--db", type=non_negative, default=0)
    target.add_argument("--username")
    target.add_argument("--password", help="visible in ps; prefer --password-env")
    target.add_argument("--password-env", metavar="VAR", default="REDIS_PASSWORD",
                        help="environment variable holding the password, unless --password is given "
                             "(default REDIS_PASSWORD; empty or unset means no password)")
    parser.add_argument("--tts", type=non_negative, default=200, help="TTS audio entries (default 200)")
    parser.add_argument("--safety", type=non_negative, default=100, help="safety verdicts (default 100)")
    parser.add_argument("--unsafe", type=non_negative, help="how many of --safety are unsafe (default 20%%)")
    parser.add_argument("--ai", type=non_negative, default=100, help="AI replies (default 100)")
    parser.add_argument("--security", type=non_negative, default=20, help="children over the rate limit (default 20)")
    parser.add_argument("--alerts", type=non_negative, default=50, help="alerts in the stream (default 50)")
    parser.add_argument("--alerts-stream", default=ALERTS_STREAM_DEFAULT)
    args = parser.parse_args(argv)
    if args.unsafe is None:
        args.unsafe = args.safety // 5
    if args.unsafe > args.safety:
        parser.error("--unsafe (%d) must not exceed --safety (%d)" % (args.unsafe, args.safety))
    return args


def connect(args: argparse.Namespace) -> tuple[redis.Redis, str | None]:
    password = args.password or os.environ.get(args.password_env) or None
    # Two quick retries instead of redis-py's default ten with backoff: a wrong password fails at once.
    common: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "client_name": "toy-seed",
                              "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 2)}
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url, **common)
        return client, client.connection_pool.connection_kwargs.get("password")
    return redis.Redis(host=args.host, port=args.port, db=args.db, username=args.username, password=password,
                       **common), password


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client, password = connect(args)
    try:
        summary = seed(client, args)
    except redis.RedisError as exc:
        print("seed: Redis error: %s" % redact(str(exc), password), file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
