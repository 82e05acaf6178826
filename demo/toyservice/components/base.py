"""What every component shares: its store, config, release, routes and the alerts stream writer."""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

from toyservice import ALERTS_STREAM_MAXLEN
from toyservice.events import event_fields
from toyservice.http import Handler

if TYPE_CHECKING:
    from toyservice.config import ServiceConfig
    from toyservice.stores.base import Store


def text_digest(text: str) -> str:
    """The key suffix of a text: first 32 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Component:
    """Base of every component; subclasses set ``name`` and return their endpoints from ``routes``."""

    name: ClassVar[str]

    def __init__(self, store: Store, config: ServiceConfig, release: str):
        self.store = store
        self.config = config
        self.release = release
        self.settings: dict[str, Any] = config.settings

    def routes(self) -> dict[str, Handler]:
        raise NotImplementedError

    async def start(self) -> None:
        """Start background work (none by default)."""

    async def stop(self) -> None:
        """Stop background work (none by default)."""

    async def write_event(self, kind: str, name: str, **extra: str | int | float) -> bytes:
        """XADD one metric or alert of this component to the alerts stream; returns its id."""
        fields = event_fields(self.name, kind, name, self.release, extra)
        return await self.store.xadd(self.config.alerts_stream, fields, ALERTS_STREAM_MAXLEN)
