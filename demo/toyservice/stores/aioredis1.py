"""Store adapter on aioredis 1.3.1 (the legacy client)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import Any

from toyservice.stores.base import (
    CONNECT_TIMEOUT_S,
    FieldValue,
    PoolStats,
    RedisTarget,
    Store,
    StoreError,
    StreamEntry,
    encode_fields,
    parse_redis_version,
    redact,
)


@functools.cache
def _named_pool_class() -> type:
    """A ConnectionsPool that names (and, with an ACL user, authenticates) each connection it opens.

    aioredis 1.3.1 has neither a client-name nor a username option, so both are done here, right
    after the connection is made and before the pool hands it out.
    """
    from aioredis.connection import create_connection
    from aioredis.pool import ConnectionsPool

    class NamedConnectionsPool(ConnectionsPool):
        client_name = b""
        target: RedisTarget | None = None

        async def _create_new_connection(self, address: Any) -> Any:
            conn = await create_connection(
                address,
                db=None,
                parser=self._parser_class,
                timeout=self._create_connection_timeout,
            )
            try:
                if self.target is not None and self.target.password is not None:
                    credentials = [self.target.username] if self.target.username else []
                    await conn.execute(b"AUTH", *credentials, self.target.password)
                if self._db:
                    await conn.select(self._db)
                await conn.execute(b"CLIENT", b"SETNAME", self.client_name)
            except Exception:
                conn.close()
                await conn.wait_closed()
                raise
            return conn

    return NamedConnectionsPool


class Aioredis1Store(Store):
    """aioredis 1.3.1 ``Redis`` over a ConnectionsPool with maxsize=pool_size."""

    client_label = "aioredis"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._library_errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)

    @property
    def client_version(self) -> str:
        import aioredis

        return aioredis.__version__

    async def open(self) -> None:
        import aioredis

        self._library_errors = (aioredis.RedisError, OSError, asyncio.TimeoutError)
        # minsize=0: no connection is made here, so the service starts (degraded) while Redis is down.
        pool = await aioredis.create_pool(
            (self.target.host, self.target.port),
            db=self.target.db,
            minsize=0,
            maxsize=self.pool_size,
            create_connection_timeout=CONNECT_TIMEOUT_S,
            pool_cls=_named_pool_class(),
        )
        pool.client_name = self.client_name.encode()
        pool.target = self.target
        self.client = aioredis.Redis(pool)

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            await self.client.wait_closed()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except self._library_errors as exc:
            raise StoreError(redact("%s: %s" % (type(exc).__name__, exc), self.target.password)) from None

    def pool_stats(self) -> PoolStats:
        if self.client is None:
            return {"max": self.pool_size, "in_use": 0, "idle": 0}
        pool = self.client.connection
        return {"max": pool.maxsize, "in_use": pool.size - pool.freesize, "idle": pool.freesize}

    async def ping(self) -> None:
        with self._translate_errors():
            await self.client.ping()

    async def server_version(self) -> str:
        with self._translate_errors():
            info = await self.client.execute(b"INFO", b"server")
        return parse_redis_version(info)

    async def get(self, key: str) -> bytes | None:
        with self._translate_errors():
            return await self.client.get(key)

    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None:
        with self._translate_errors():
            await self.client.set(key, value, expire=ttl_s or 0)

    async def delete(self, key: str) -> int:
        with self._translate_errors():
            return await self.client.delete(key)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        with self._translate_errors():
            return await self.client.hgetall(key)

    async def hset(self, key: str, mapping: Mapping[str, FieldValue], ttl_s: int | None = None) -> None:
        with self._translate_errors():
            transaction = self.client.multi_exec()
            transaction.hmset_dict(key, encode_fields(mapping))
            if ttl_s is not None:
                transaction.expire(key, ttl_s)
            await transaction.execute()

    async def incr(self, key: str, amount: int = 1, ttl_s: int | None = None) -> int:
        with self._translate_errors():
            transaction = self.client.multi_exec()
            new_value = transaction.incrby(key, amount)
            if ttl_s is not None:
                transaction.expire(key, ttl_s)
            await transaction.execute()
            return int(await new_value)

    async def xadd(self, stream: str, fields: Mapping[str, FieldValue], maxlen: int) -> bytes:
        with self._translate_errors():
            return await self.client.xadd(stream, encode_fields(fields), max_len=maxlen)

    async def xgroup_create(self, stream: str, group: str, start_id: str = "0") -> bool:
        try:
            with self._translate_errors():
                await self.client.xgroup_create(stream, group, latest_id=start_id, mkstream=True)
        except StoreError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        return True

    async def xreadgroup(self, stream: str, group: str, consumer: str, start_id: str, count: int) -> list[StreamEntry]:
        # timeout=None sends no BLOCK: aioredis 1.x multiplexes commands on shared pool connections,
        # so a blocking read would stall every other command queued behind it.
        with self._translate_errors():
            reply = await self.client.xread_group(
                group, consumer, [stream], timeout=None, count=count, latest_ids=[start_id]
            )
        return [(entry_id, dict(fields)) for _, entry_id, fields in reply]

    async def xack(self, stream: str, group: str, entry_ids: list[bytes]) -> int:
        if not entry_ids:
            return 0
        with self._translate_errors():
            return await self.client.xack(stream, group, *entry_ids)
