#!/usr/bin/env python3
"""AI reply cache - faulty-pool-swallow release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risks A1 cache service outage, A4 connection pool problems). The port "bounded" the
connections with a BlockingConnectionPool of 2 that never waits, and the component treats every store error as a
cache miss. Under concurrent requests most callers cannot get a connection: no request fails, but cached replies
are generated again (slow) and nothing new is cached - the hit ratio of cached prompts and the latency under load
break, while a request at a time looks perfect.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.ai import AiComponent  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402


class TinyBlockingPoolStore(RedisAsyncioStore):
    def make_pool(self) -> Any:
        import redis.asyncio

        return redis.asyncio.BlockingConnectionPool(max_connections=2, timeout=0, **self.connection_kwargs())


if __name__ == "__main__":
    sys.exit(run_component(AiComponent, TinyBlockingPoolStore, Path(__file__).resolve().parent))
