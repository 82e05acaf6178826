"""AI reply cache: ``GET /reply?prompt=P`` answers from hash ``ai:reply:<digest>`` or generates a reply."""
from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime

from toyservice.components.base import Component, text_digest
from toyservice.http import Handler, Request, Response, json_response, require_param
from toyservice.stores.base import StoreError

log = logging.getLogger("toyservice.ai")

REPLY_KEY_PREFIX = "ai:reply:"
MODEL = "toy-llm-1"
OPENERS = ("What a fun question", "Ooh, let me think", "Great idea", "I love that")


def reply_key(prompt: str) -> str:
    return REPLY_KEY_PREFIX + text_digest(prompt)


def generate_reply(prompt: str) -> str:
    """The model's reply: deterministic, with non-ASCII characters so encoding mistakes show."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    opener = OPENERS[digest[0] % len(OPENERS)]
    return "%s! You asked about \u201c%s\u201d. \u2728 Let's explore it together, step %d." % (
        opener, prompt, digest[1] % 9 + 1)


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def reply_record(prompt: str, created_at: str) -> dict[str, str]:
    """The fields of ``ai:reply:<digest>``."""
    return {"reply": generate_reply(prompt), "model": MODEL, "created_at": created_at}


class AiComponent(Component):
    name = "ai"

    def routes(self) -> dict[str, Handler]:
        return {"/reply": self.reply}

    async def reply(self, request: Request) -> Response:
        prompt = require_param(request, "prompt")
        key = reply_key(prompt)
        try:
            cached = await self.store.hgetall(key)
        except StoreError as exc:
            log.warning("cache read failed, generating: %s", exc)
            cached = {}
        if b"reply" in cached:
            return json_response({"reply": cached[b"reply"].decode("utf-8"), "cached": True})
        await asyncio.sleep(self.settings["generation_ms"] / 1000)
        record = reply_record(prompt, utc_now_iso())
        try:
            await self.store.hset(key, record, self.settings["ttl_s"])
        except StoreError as exc:
            log.warning("reply not cached: %s", exc)
        return json_response({"reply": record["reply"], "cached": False})
