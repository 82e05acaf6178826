#!/usr/bin/env python3
"""TTS cache service - faulty-pool-exhaustion release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risks A1 cache service outage, A4 connection pool problems). The port kept
aioredis' ``with await pool as conn:`` idiom: every request holds one dedicated connection for its
whole duration, slow synthesis included, and the pool was "tuned" to a BlockingConnectionPool of
2 connections that waits 0.1 s. Under concurrent cache misses most requests get
"No connection available" and answer HTTP 500.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.tts import TtsComponent, audio_key, audio_response  # noqa: E402
from toyservice.http import Request, Response, require_param  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402


class TwoConnectionStore(RedisAsyncioStore):
    def make_pool(self) -> Any:
        import redis.asyncio

        return redis.asyncio.BlockingConnectionPool(max_connections=2, timeout=0.1, **self.connection_kwargs())


class DedicatedConnectionTts(TtsComponent):
    async def speak(self, request: Request) -> Response:
        text = require_param(request, "text")
        key = audio_key(text)
        async with self.store.client.client() as conn:
            cached = await conn.get(key)
            if cached is not None:
                return audio_response(cached, hit=True)
            audio = await self.synthesize(text)
            await conn.set(key, audio, ex=self.settings["ttl_s"])
        return audio_response(audio, hit=False)


if __name__ == "__main__":
    sys.exit(run_component(DedicatedConnectionTts, TwoConnectionStore, Path(__file__).resolve().parent))
