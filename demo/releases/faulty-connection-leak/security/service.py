#!/usr/bin/env python3
"""Security anomaly detection - faulty-connection-leak release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risk A4 connection pool problems). The port replaced aioredis'
per-child ``create_redis(...)`` helper with a new ``redis.asyncio.Redis`` per child id, cached in a
dict and never closed. Each client has its own pool, so every new child leaves one more open
connection named toy-security until Redis hits maxclients or the host runs out of memory.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.security import SecurityComponent, rate_key  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402


class PerChildClientSecurity(SecurityComponent):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.clients_by_child: dict[str, Any] = {}

    def client_for(self, child: str) -> Any:
        import redis.asyncio

        assert isinstance(self.store, RedisAsyncioStore)
        if child not in self.clients_by_child:
            self.clients_by_child[child] = redis.asyncio.Redis(**self.store.connection_kwargs())
        return self.clients_by_child[child]

    async def count_request(self, child: str, minute: int) -> int:
        async with self.client_for(child).pipeline(transaction=True) as pipe:
            pipe.incr(rate_key(child, minute))
            pipe.expire(rate_key(child, minute), self.settings["window_ttl_s"])
            count, _ = await pipe.execute()
        return int(count)


if __name__ == "__main__":
    sys.exit(run_component(PerChildClientSecurity, RedisAsyncioStore, Path(__file__).resolve().parent))
