#!/usr/bin/env python3
"""Monitoring - faulty-client-per-request release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risks A4 connection pool problems, A6 monitoring problems). aioredis'
``await aioredis.create_redis(url)`` per alert was ported to a new ``redis.asyncio.Redis`` per request that is
never closed. The request keeps it in a small context object that refers to itself, so only the cycle collector
frees it - and by then the object has aged into the oldest generation, which is collected rarely. Each alert
leaves an open connection (named toy-monitoring) and memory behind; a short burst followed by an idle pause
sometimes shows nothing, a steady stream always grows.

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice import ALERTS_STREAM_MAXLEN  # noqa: E402
from toyservice.app import run_component  # noqa: E402
from toyservice.components.monitoring import MonitoringComponent  # noqa: E402
from toyservice.events import KIND_ALERT, event_fields  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore, encode_fields  # noqa: E402


class RequestContext:
    """What one request carries; it points at itself (the bug that hides the leak from reference counting)."""

    def __init__(self, client: Any):
        self.client = client
        self.context = self


class ClientPerRequestMonitoring(MonitoringComponent):
    async def write_alert(self, name: str) -> bytes:
        import redis.asyncio

        assert isinstance(self.store, RedisAsyncioStore)
        context = RequestContext(redis.asyncio.Redis(**self.store.connection_kwargs()))
        fields = event_fields(self.name, KIND_ALERT, name, self.release, {})
        return await context.client.xadd(self.config.alerts_stream, encode_fields(fields),
                                         maxlen=ALERTS_STREAM_MAXLEN, approximate=True)


if __name__ == "__main__":
    sys.exit(run_component(ClientPerRequestMonitoring, RedisAsyncioStore, Path(__file__).resolve().parent))
