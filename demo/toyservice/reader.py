"""Can this release read these cache entries? The old release's own code, run against keys a newer one wrote.

``reader.py --config FILE [--template 'readable-{nonce}']`` reads one line per entry on stdin: a key name, or with
``--template`` a nonce, whose key is the component's key of the text the template makes. It prints one JSON
object, ``{line: true|false}``: whether this release reads that entry the way its component does. A missing key is
not readable. Nothing is written.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Awaitable, Callable

from toyservice.components.ai import reply_key
from toyservice.components.safety import SafetyComponent, verdict_key
from toyservice.components.tts import AUDIO_HEADER, audio_key
from toyservice.config import load_config
from toyservice.stores.base import Store

Check = Callable[[Store, str], Awaitable[bool]]
KEY_OF_TEXT = {"ai": reply_key, "tts": audio_key, "safety": verdict_key}


async def reads_reply(store: Store, key: str) -> bool:
    record = await store.hgetall(key)
    return b"reply" in record and bool(record[b"reply"].decode("utf-8"))


async def reads_audio(store: Store, key: str) -> bool:
    audio = await store.get(key)
    return audio is not None and audio.startswith(AUDIO_HEADER)


async def reads_verdict(store: Store, key: str) -> bool:
    raw = await store.get(key)
    return raw is not None and SafetyComponent.decode_cached_verdict(raw) is not None


async def reads_number(store: Store, key: str) -> bool:
    raw = await store.get(key)
    return raw is not None and raw.decode("ascii").lstrip("-").isdigit()


async def reads_json(store: Store, key: str) -> bool:
    raw = await store.get(key)
    return raw is not None and isinstance(json.loads(raw), dict)


async def reads_hash(store: Store, key: str) -> bool:
    return bool(await store.hgetall(key))


async def reads_alerts(store: Store, key: str) -> bool:
    """The alerts stream, read the way monitoring consumes it (entries with component and kind fields)."""
    entries = await store.client.xrange(key, count=10)  # aioredis and redis.asyncio both name it xrange
    return all(b"component" in fields and b"kind" in fields for _entry_id, fields in entries)


CHECKS: list[tuple[str, Check]] = [
    ("ai:reply:", reads_reply), ("tts:audio:", reads_audio), ("safety:verdict:", reads_verdict),
    ("security:rate:", reads_number), ("security:anomaly:", reads_json), ("monitoring:alerts_total", reads_number),
    ("monitoring:last_seen", reads_hash), ("ai_service_alerts", reads_alerts),
]


async def readable(store: Store, key: str) -> bool:
    check = next((check for prefix, check in CHECKS if key.startswith(prefix)), None)
    if check is None:
        return False
    try:
        return await check(store, key)
    except Exception:  # noqa: BLE001 - any failure of the old code to read an entry means: not readable
        return False


async def read_all(store: Store, keys: dict[str, str]) -> dict[str, bool]:
    await store.open()
    try:
        return {line: await readable(store, key) for line, key in keys.items()}
    finally:
        await store.close()


def run_reader(store_cls: type[Store], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tell which cache entries this release can read.")
    parser.add_argument("--config", required=True, help="the component's config file (JSON)")
    parser.add_argument("--template", help="lines are nonces; each entry is the key of this text, e.g. readable-{nonce}")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    lines = [line.strip() for line in sys.stdin if line.strip()]
    if args.template:
        key_of = KEY_OF_TEXT.get(config.component)
        if key_of is None:
            parser.error("--template: component %s has no key of a text" % config.component)
        keys = {line: key_of(args.template.replace("{nonce}", line)) for line in lines}
    else:
        keys = {line: line for line in lines}
    store = store_cls(config.redis, 1, config.component)
    print(json.dumps(asyncio.run(read_all(store, keys)), sort_keys=True))
    return 0
