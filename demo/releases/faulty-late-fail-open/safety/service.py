#!/usr/bin/env python3
"""Child-safety filter - faulty-late-fail-open release (redis-py redis.asyncio).

FAULTY ON PURPOSE, LATE (seed risk A5 child-safety cache problems, after the rollout). For its first
TURNS_BAD_AFTER_S seconds it reads cached verdicts right, so the canary and verify probes pass; then it
falls into the faulty-safety-fail-open mistake (cached bytes compared with str: every cached verdict reads
as allow). Only a watch round after that moment can catch it. TOY_TURNS_BAD_AFTER_S overrides the delay.

Run: python service.py --config FILE
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.safety import ALLOW, BLOCK, SafetyComponent  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

TURNS_BAD_AFTER_S = float(os.environ.get("TOY_TURNS_BAD_AFTER_S", "60"))
STARTED = time.monotonic()


class LateFailOpenSafety(SafetyComponent):
    @staticmethod
    def decode_cached_verdict(raw: bytes) -> str | None:
        if time.monotonic() - STARTED < TURNS_BAD_AFTER_S:
            return SafetyComponent.decode_cached_verdict(raw)
        return BLOCK if raw == "block" else ALLOW


if __name__ == "__main__":
    sys.exit(run_component(LateFailOpenSafety, RedisAsyncioStore, Path(__file__).resolve().parent))
