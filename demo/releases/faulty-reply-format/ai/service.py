#!/usr/bin/env python3
"""AI reply cache - faulty-reply-format release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risk A2 loss of cached data, and a rollback trap). The port "simplified" the cache entry:
a new reply is stored as one JSON string under ``ai:reply:<digest>`` instead of aioredis' hash of fields. It still
reads the old hashes, so every cached prompt hits and nothing looks wrong - but the old release cannot read an
entry this one wrote (WRONGTYPE on HGETALL; it then fails to write its own over it). Nothing writes a new entry
during an ordinary rollout, and after a rollback that keeps newer writes, the old release fails on them.

Run: python service.py --config FILE
"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.ai import AiComponent, reply_key, reply_record, utc_now_iso  # noqa: E402
from toyservice.http import Request, Response, json_response, require_param  # noqa: E402
from toyservice.stores.base import StoreError  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

log = logging.getLogger("toyservice.ai")


class JsonReplyAi(AiComponent):
    async def reply(self, request: Request) -> Response:
        prompt = require_param(request, "prompt")
        key = reply_key(prompt)
        try:
            kind = await self.store.client.type(key)
            if kind == b"string":
                return json_response({"reply": json.loads(await self.store.client.get(key))["reply"], "cached": True})
            cached = await self.store.hgetall(key) if kind == b"hash" else {}
        except StoreError as exc:
            log.warning("cache read failed, generating: %s", exc)
            cached = {}
        if b"reply" in cached:
            return json_response({"reply": cached[b"reply"].decode("utf-8"), "cached": True})
        await asyncio.sleep(self.settings["generation_ms"] / 1000)
        record = reply_record(prompt, utc_now_iso())
        await self.store.client.set(key, json.dumps(record), ex=self.settings["ttl_s"])
        return json_response({"reply": record["reply"], "cached": False})


if __name__ == "__main__":
    sys.exit(run_component(JsonReplyAi, RedisAsyncioStore, Path(__file__).resolve().parent))
