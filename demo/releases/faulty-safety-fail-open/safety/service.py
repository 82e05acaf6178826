#!/usr/bin/env python3
"""Child-safety filter - faulty-safety-fail-open release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risk A5 child-safety cache problems). The verdict check was ported from
aioredis ``get(key, encoding="utf-8")``, where the cached value was a str. redis.asyncio returns
bytes, so ``raw == "block"`` is never true and every cached verdict reads as allow: vetted unsafe
content is let through.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.safety import ALLOW, BLOCK, SafetyComponent  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402


class StrComparingSafety(SafetyComponent):
    @staticmethod
    def decode_cached_verdict(raw: bytes) -> str | None:
        return BLOCK if raw == "block" else ALLOW


if __name__ == "__main__":
    sys.exit(run_component(StrComparingSafety, RedisAsyncioStore, Path(__file__).resolve().parent))
