#!/usr/bin/env python3
"""Which cache entries can the migrated release read? (toyservice/reader.py, with this release's redis.asyncio store)"""
from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # it writes nothing, not even __pycache__

from toyservice.reader import run_reader  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_reader(RedisAsyncioStore))
