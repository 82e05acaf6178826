"""TTS cache: ``GET /speak?text=T`` answers audio bytes, from ``tts:audio:<digest>`` or freshly synthesized."""
from __future__ import annotations

import asyncio
import hashlib
import logging

from toyservice.components.base import Component, text_digest
from toyservice.http import Handler, Request, Response, require_param
from toyservice.stores.base import StoreError

log = logging.getLogger("toyservice.tts")

AUDIO_KEY_PREFIX = "tts:audio:"
# 0xFF never occurs in UTF-8, so audio can never be mistaken for (or decoded as) text.
AUDIO_HEADER = b"TOYPCM1\x00\xff\xfe"
AUDIO_BLOCKS = 256


def audio_key(text: str) -> str:
    return AUDIO_KEY_PREFIX + text_digest(text)


def synthesize_audio(text: str) -> bytes:
    """The audio of a text: deterministic, 8 KiB of a SHA-256 chain behind a binary header."""
    block = hashlib.sha256(b"toy-tts-v1\x00" + text.encode("utf-8")).digest()
    blocks = [AUDIO_HEADER]
    for _ in range(AUDIO_BLOCKS):
        blocks.append(block)
        block = hashlib.sha256(block).digest()
    return b"".join(blocks)


def audio_response(audio: bytes, hit: bool) -> Response:
    return Response(200, audio, "application/octet-stream", {"X-Cache": "hit" if hit else "miss"})


class TtsComponent(Component):
    name = "tts"

    def routes(self) -> dict[str, Handler]:
        return {"/speak": self.speak}

    async def synthesize(self, text: str) -> bytes:
        """The expensive path a lost cache falls back to."""
        await asyncio.sleep(self.settings["synthesis_ms"] / 1000)
        return synthesize_audio(text)

    async def speak(self, request: Request) -> Response:
        text = require_param(request, "text")
        key = audio_key(text)
        try:
            cached = await self.store.get(key)
        except StoreError as exc:
            log.warning("cache read failed, synthesizing: %s", exc)
            cached = None
        if cached is not None:
            return audio_response(cached, hit=True)
        audio = await self.synthesize(text)
        try:
            await self.store.set(key, audio, self.settings["ttl_s"])
        except StoreError as exc:
            log.warning("audio not cached: %s", exc)
        return audio_response(audio, hit=False)
