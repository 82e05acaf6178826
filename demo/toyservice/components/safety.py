"""Child-safety filter: ``GET /check?text=T`` answers allow/block; vetted verdicts are cached; it fails closed."""
from __future__ import annotations

import asyncio
import logging

from toyservice.components.base import Component, text_digest
from toyservice.http import Handler, Request, Response, json_response, require_param
from toyservice.stores.base import StoreError

log = logging.getLogger("toyservice.safety")

VERDICT_KEY_PREFIX = "safety:verdict:"
ALLOW = "allow"
BLOCK = "block"
VERDICTS = (ALLOW, BLOCK)
BLOCKLIST = ("weapon", "violence", "stranger-meet", "home-address", "dare-challenge")
UNDECIDABLE_MARKER = "??"
MAX_DECIDABLE_CHARS = 500


def verdict_key(text: str) -> str:
    return VERDICT_KEY_PREFIX + text_digest(text)


def classify_text(text: str) -> str | None:
    """The classifier's verdict, or None when it cannot decide."""
    lowered = text.lower()
    if any(word in lowered for word in BLOCKLIST):
        return BLOCK
    if UNDECIDABLE_MARKER in text or len(text) > MAX_DECIDABLE_CHARS:
        return None
    return ALLOW


class SafetyComponent(Component):
    name = "safety"

    def routes(self) -> dict[str, Handler]:
        return {"/check": self.check}

    @staticmethod
    def decode_cached_verdict(raw: bytes) -> str | None:
        """A cached verdict, or None for a value that is neither allow nor block (classify again)."""
        verdict = raw.decode("ascii", "replace")
        return verdict if verdict in VERDICTS else None

    async def classify(self, text: str) -> str | None:
        await asyncio.sleep(self.settings["classifier_ms"] / 1000)
        return classify_text(text)

    async def verdict_for(self, text: str) -> tuple[str, str]:
        """(verdict, source); any Redis error blocks: unvetted content never reaches a child."""
        key = verdict_key(text)
        try:
            raw = await self.store.get(key)
            cached = None if raw is None else self.decode_cached_verdict(raw)
            if cached is not None:
                return cached, "cache"
            verdict = await self.classify(text)
            if verdict is None:
                # Undecided blocks but is not cached, so a better classifier can decide it later.
                return BLOCK, "classifier"
            await self.store.set(key, verdict.encode("ascii"), self.settings["ttl_s"])
            return verdict, "classifier"
        except StoreError as exc:
            log.warning("failing closed: %s", exc)
            return BLOCK, "fail_closed"

    async def check(self, request: Request) -> Response:
        verdict, source = await self.verdict_for(require_param(request, "text"))
        return json_response({"verdict": verdict, "source": source})
