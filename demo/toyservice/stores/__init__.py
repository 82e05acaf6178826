"""Redis store adapters: ``aioredis1`` (legacy) and ``redis_asyncio`` (migrated), same API (``base.Store``)."""
from __future__ import annotations
