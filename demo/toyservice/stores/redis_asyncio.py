"""Store adapter on redis-py's ``redis.asyncio`` (the migrated client)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from toyservice.stores.base import (
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    FieldValue,
    PoolStats,
    Store,
    StoreError,
    StreamEntry,
    encode_fields,
    parse_redis_version,
    redact,
)


class RedisAsyncioStore(Store):
    """redis.asyncio client over one ConnectionPool sized from the config's pool_size."""

    client_label = "redis.asyncio"
    # Values stay bytes: TTS audio is binary and the legacy release stored raw bytes.
    decode_responses = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool: Any = None
        self._library_errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)

    @property
    def client_version(self) -> str:
        import redis

        return redis.__version__

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a connection pool or client reaching this store's Redis."""
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        return {
            "host": self.target.host,
            "port": self.target.port,
            "db": self.target.db,
            "username": self.target.username,
            "password": self.target.password,
            "client_name": self.client_name,
            "decode_responses": self.decode_responses,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_timeout": COMMAND_TIMEOUT_S,
            # redis-py's default (10 retries, backoff up to 10 s) would turn "Redis is down" into
            # seconds of latency per request; one quick retry keeps fail-closed answers fast.
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        }

    def make_pool(self) -> Any:
        import redis.asyncio

        return redis.asyncio.ConnectionPool(max_connections=self.pool_size, **self.connection_kwargs())

    async def open(self) -> None:
        import redis.asyncio
        import redis.exceptions

        self._library_errors = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
        self.pool = self.make_pool()
        self.client = redis.asyncio.Redis(connection_pool=self.pool)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            await self.pool.disconnect()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except self._library_errors as exc:
            raise StoreError(redact("%s: %s" % (type(exc).__name__, exc), self.target.password)) from None

    def pool_stats(self) -> PoolStats:
        if self.pool is None:
            return {"max": self.pool_size, "in_use": 0, "idle": 0}
        (idle, _), (in_use, _) = self.pool.get_connection_count()
        return {"max": self.pool.max_connections, "in_use": in_use, "idle": idle}

    async def ping(self) -> None:
        with self._translate_errors():
            await self.client.ping()

    async def server_version(self) -> str:
        with self._translate_errors():
            info = await self.client.execute_command("INFO", "server")
        # redis-py parses INFO into a dict; other parsers hand back the raw text.
        if isinstance(info, dict):
            return str(info["redis_version"])
        return parse_redis_version(info)

    async def get(self, key: str) -> bytes | None:
        with self._translate_errors():
            return await self.client.get(key)

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        with self._translate_errors():
            await self.client.set(key, value, ex=ttl_s)

    async def delete(self, key: str) -> int:
        with self._translate_errors():
            return await self.client.delete(key)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        with self._translate_errors():
            return await self.client.hgetall(key)

    async def hset(self, key: str, mapping: Mapping[str, FieldValue], ttl_s: int | None = None) -> None:
        with self._translate_errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=encode_fields(mapping))
                if ttl_s is not None:
                    pipe.expire(key, ttl_s)
                await pipe.execute()

    async def incr(self, key: str, amount: int = 1, ttl_s: int | None = None) -> int:
        with self._translate_errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incrby(key, amount)
                if ttl_s is not None:
                    pipe.expire(key, ttl_s)
                results = await pipe.execute()
        return int(results[0])

    async def xadd(self, stream: str, fields: Mapping[str, FieldValue], maxlen: int) -> bytes:
        with self._translate_errors():
            return await self.client.xadd(stream, encode_fields(fields), maxlen=maxlen, approximate=True)

    async def xgroup_create(self, stream: str, group: str, start_id: str = "0") -> bool:
        try:
            with self._translate_errors():
                await self.client.xgroup_create(stream, group, id=start_id, mkstream=True)
        except StoreError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def xreadgroup(self, stream: str, group: str, consumer: str, start_id: str, count: int) -> list[StreamEntry]:
        with self._translate_errors():
            reply = await self.client.xreadgroup(group, consumer, {stream: start_id}, count=count)
        return _stream_entries(reply)

    async def xack(self, stream: str, group: str, entry_ids: list[bytes]) -> int:
        if not entry_ids:
            return 0
        with self._translate_errors():
            return await self.client.xack(stream, group, *entry_ids)


def _stream_entries(reply: Any) -> list[StreamEntry]:
    """Flatten an XREADGROUP reply of one stream: RESP3 gives {stream: [[entries]]}, RESP2 [[stream, [entries]]]."""
    if not reply:
        return []
    if isinstance(reply, dict):
        entries = [entry for batch in reply.values() for entry in batch[0]]
    else:
        entries = [entry for _, batch in reply for entry in batch]
    return [(entry_id, fields or {}) for entry_id, fields in entries]
