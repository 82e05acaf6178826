#!/usr/bin/env python3
"""Monitoring - faulty-alerts-lost release (redis-py redis.asyncio).

FAULTY ON PURPOSE (seed risk A6 monitoring problems). The alert writer was ported verbatim from
aioredis 1.x and still calls ``xadd(..., max_len=...)``; redis.asyncio's keyword is ``maxlen``, so
every call raises TypeError, which a broad ``except`` logs at debug level and swallows. ``/alert``
keeps answering 200 while nothing reaches the alerts stream.

Run: python service.py --config FILE
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice import ALERTS_STREAM_MAXLEN  # noqa: E402
from toyservice.app import run_component  # noqa: E402
from toyservice.components.monitoring import MonitoringComponent  # noqa: E402
from toyservice.events import KIND_ALERT, event_fields  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

log = logging.getLogger("toyservice.monitoring")


class LegacyKeywordMonitoring(MonitoringComponent):
    async def write_alert(self, name: str) -> bytes:
        fields = event_fields(self.name, KIND_ALERT, name, self.release)
        try:
            return await self.store.client.xadd(self.config.alerts_stream, fields, max_len=ALERTS_STREAM_MAXLEN)
        except Exception:
            log.debug("alert %s not written", name, exc_info=True)
            return b""


if __name__ == "__main__":
    sys.exit(run_component(LegacyKeywordMonitoring, RedisAsyncioStore, Path(__file__).resolve().parent))
