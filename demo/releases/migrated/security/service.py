#!/usr/bin/env python3
"""Security anomaly detection - migrated release (redis-py redis.asyncio).

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.security import SecurityComponent  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_component(SecurityComponent, RedisAsyncioStore, Path(__file__).resolve().parent))
