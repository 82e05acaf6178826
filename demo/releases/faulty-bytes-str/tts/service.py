#!/usr/bin/env python3
"""TTS cache service - faulty-bytes-str release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risk A2 loss of cached data). The port opened the client with
``decode_responses=True`` ("everything is str now"). Reading a cached legacy entry, which holds raw
audio bytes, raises UnicodeDecodeError; the new code takes that for a corrupt legacy entry, DELETES
it, synthesizes again (slow) and stores base64 text under ``tts:audio:v2:<digest>``. Every existing
entry is unreadable and then lost: hit ratio 0 on cached texts, latency ~10x.

Run: python service.py --config FILE
"""
from __future__ import annotations

import base64
import logging
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.base import text_digest  # noqa: E402
from toyservice.components.tts import TtsComponent, audio_key, audio_response  # noqa: E402
from toyservice.http import Request, Response, require_param  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

log = logging.getLogger("toyservice.tts")
V2_KEY_PREFIX = "tts:audio:v2:"


class TextModeStore(RedisAsyncioStore):
    decode_responses = True


class TextModeTts(TtsComponent):
    async def read_legacy_entry(self, key: str) -> str | None:
        try:
            return await self.store.client.get(key)
        except UnicodeDecodeError:
            log.info("corrupt legacy entry %s dropped", key)
            await self.store.client.delete(key)
            return None

    async def speak(self, request: Request) -> Response:
        text = require_param(request, "text")
        v2_key = V2_KEY_PREFIX + text_digest(text)
        encoded = await self.store.client.get(v2_key)
        if encoded is None:
            encoded = await self.read_legacy_entry(audio_key(text))
        if encoded is not None:
            return audio_response(base64.b64decode(encoded), hit=True)
        audio = await self.synthesize(text)
        await self.store.client.set(v2_key, base64.b64encode(audio).decode("ascii"), ex=self.settings["ttl_s"])
        return audio_response(audio, hit=False)


if __name__ == "__main__":
    sys.exit(run_component(TextModeTts, TextModeStore, Path(__file__).resolve().parent))
