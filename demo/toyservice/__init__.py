"""Runtime of the reference toy service: HTTP server, config, release info, maintenance flag,
metrics, the two Redis store adapters and the component logic.

Nothing here imports a Redis client library at import time: each store adapter imports its own
library lazily, so a legacy environment (aioredis only) and a migrated one (redis-py only) both work.
"""
from __future__ import annotations

ALERTS_STREAM_DEFAULT = "ai_service_alerts"
ALERTS_STREAM_MAXLEN = 10000
