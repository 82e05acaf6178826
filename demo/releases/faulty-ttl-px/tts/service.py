#!/usr/bin/env python3
"""TTS cache service - faulty-ttl-px release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risks A1 cache service outage, A2 loss of cached data). aioredis' ``set(key, value,
expire=seconds)`` was ported to redis-py's ``set(key, value, px=...)`` with the same number: every new TTS
entry now expires 1000x sooner (a 24 h entry lives 86 s). Nothing fails and the cached texts the probes ask for
still hit - they were written by the old release - but every entry written from now on disappears within
minutes, and the cache quietly empties.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.tts import TtsComponent  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402


class MillisecondTtlStore(RedisAsyncioStore):
    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        with self._translate_errors():
            await self.client.set(key, value, px=ttl_s)


if __name__ == "__main__":
    sys.exit(run_component(TtsComponent, MillisecondTtlStore, Path(__file__).resolve().parent))
