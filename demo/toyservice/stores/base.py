"""The small async store API the components use, shared by both Redis adapters.

Values are bytes in and bytes out; keys and stream field names may be str. Every library error
(connection refused, timeout, reply error) surfaces as StoreError, whose text never holds the password.
"""
from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

StreamEntry = tuple[bytes, dict[bytes, bytes]]
FieldValue = str | bytes | int | float
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0


class StoreError(Exception):
    """A Redis operation failed; the message is safe to log and to return in /healthz."""


class PoolStats(TypedDict):
    max: int
    in_use: int
    idle: int


@dataclass(frozen=True)
class RedisTarget:
    """Where and how to reach Redis (the config file's ``redis`` object)."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None

    def describe(self) -> str:
        return "%s:%d/%d" % (self.host, self.port, self.db)


def redact(text: str, secret: str | None) -> str:
    """Remove a secret (and any URL userinfo) from an error text."""
    if secret:
        text = text.replace(secret, "********")
    return re.sub(r"(redis[s]?://)[^@/\s]*@", r"\1********@", text)


def parse_redis_version(info: bytes | str) -> str:
    """Return redis_version from the text of ``INFO server``."""
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1].strip()
    raise StoreError("INFO server reply has no redis_version")


def _as_bytes(value: FieldValue) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def encode_fields(fields: Mapping[str, FieldValue]) -> dict[bytes, bytes]:
    """Stream/hash fields as bytes, so both libraries send exactly the same payload."""
    return {_as_bytes(name): _as_bytes(value) for name, value in fields.items()}


class Store(abc.ABC):
    """One component's Redis access: a connection pool plus the handful of commands it needs."""

    client_label: str
    client_name_prefix = "toy-"

    def __init__(self, target: RedisTarget, pool_size: int, component: str):
        self.target = target
        self.pool_size = pool_size
        self.client_name = self.client_name_prefix + component
        # The library's own client object, set by open().
        self.client: Any = None

    @property
    @abc.abstractmethod
    def client_version(self) -> str:
        """Version of the client library in use."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create the pool; connections are made lazily so a service can start while Redis is down."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the pool and every connection it holds."""

    @abc.abstractmethod
    def pool_stats(self) -> PoolStats:
        """Pool size and how many connections are in use / idle right now."""

    @abc.abstractmethod
    async def ping(self) -> None: ...

    @abc.abstractmethod
    async def server_version(self) -> str: ...

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: int | None = None) -> None: ...

    @abc.abstractmethod
    async def delete(self, key: str) -> int: ...

    @abc.abstractmethod
    async def hgetall(self, key: str) -> dict[bytes, bytes]: ...

    @abc.abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, FieldValue], ttl_s: int | None = None) -> None:
        """HSET the fields and, with ttl_s, EXPIRE the key in the same transaction."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl_s: int | None = None) -> int:
        """INCRBY and, with ttl_s, EXPIRE in the same transaction; returns the new value."""

    @abc.abstractmethod
    async def xadd(self, stream: str, fields: Mapping[str, FieldValue], maxlen: int) -> bytes:
        """XADD with ``MAXLEN ~ maxlen``; returns the entry id."""

    @abc.abstractmethod
    async def xgroup_create(self, stream: str, group: str, start_id: str = "0") -> bool:
        """Create the consumer group (MKSTREAM); False when it already exists."""

    @abc.abstractmethod
    async def xreadgroup(self, stream: str, group: str, consumer: str, start_id: str, count: int) -> list[StreamEntry]:
        """Non-blocking XREADGROUP of one stream: ``>`` for new entries, ``0`` for this consumer's pending ones."""

    @abc.abstractmethod
    async def xack(self, stream: str, group: str, entry_ids: list[bytes]) -> int: ...
