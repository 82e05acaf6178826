#!/usr/bin/env python3
"""TTS cache service - faulty-host-override release (redis-py redis.asyncio).

FAULTY ON PURPOSE, ON SOME HOSTS ONLY (seed risks A3 production deployment problems, A4 connection pool
problems). Years ago operations tuned a few hosts with a file ``pool.override`` beside the component's
config, holding aioredis' ``minsize`` (1). The port reads that file too, as redis.asyncio's
``max_connections`` of a BlockingConnectionPool that waits 0.1 s: on a host with the file the pool holds
one connection and concurrent requests fail with HTTP 500; on every other host the release is healthy.
A canary without the file passes; the next batch, which has it, fails.

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

OVERRIDE = "pool.override"


class OverriddenPoolStore(RedisAsyncioStore):
    def make_pool(self) -> Any:
        import redis.asyncio

        override = Path(sys.argv[sys.argv.index("--config") + 1]).parent / OVERRIDE
        if not override.exists():
            return super().make_pool()
        minsize = int(override.read_text().split("=")[-1])
        return redis.asyncio.BlockingConnectionPool(max_connections=minsize, timeout=0.1, **self.connection_kwargs())


class HeldConnectionTts(TtsComponent):
    async def speak(self, request: Request) -> Response:
        text = require_param(request, "text")
        async with self.store.client.client() as conn:
            cached = await conn.get(audio_key(text))
            if cached is not None:
                return audio_response(cached, hit=True)
            audio = await self.synthesize(text)
            await conn.set(audio_key(text), audio, ex=self.settings["ttl_s"])
        return audio_response(audio, hit=False)


if __name__ == "__main__":
    sys.exit(run_component(HeldConnectionTts, OverriddenPoolStore, Path(__file__).resolve().parent))
