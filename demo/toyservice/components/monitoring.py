"""Monitoring: consumes the alerts stream in group ``monitoring``; ``/status`` and ``/alert``."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from toyservice.components.base import Component
from toyservice.events import KIND_ALERT
from toyservice.http import Handler, Request, Response, json_response, require_param
from toyservice.stores.base import StoreError, StreamEntry

log = logging.getLogger("toyservice.monitoring")

LAST_SEEN_KEY = "monitoring:last_seen"
ALERTS_TOTAL_KEY = "monitoring:alerts_total"


def entry_time(entry_id: bytes, fields: dict[bytes, bytes]) -> float:
    """When an entry was written: its ts field, else the millisecond part of its id."""
    try:
        return float(fields[b"ts"])
    except (KeyError, ValueError):
        return int(entry_id.split(b"-")[0]) / 1000


class MonitoringComponent(Component):
    name = "monitoring"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._consumer: asyncio.Task[None] | None = None

    def routes(self) -> dict[str, Handler]:
        return {"/status": self.status, "/alert": self.alert}

    async def start(self) -> None:
        self._consumer = asyncio.create_task(self.consume_forever())

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    async def consume_forever(self) -> None:
        """Read the stream as group member; first this consumer's pending entries ("0"), then new ones (">")."""
        stream, group = self.config.alerts_stream, self.settings["group"]
        group_ready = False
        start_id = "0"
        while True:
            try:
                if not group_ready:
                    # Start at "0": alerts written before monitoring first ran are counted too.
                    await self.store.xgroup_create(stream, group, "0")
                    group_ready = True
                entries = await self.store.xreadgroup(stream, group, self.settings["consumer"], start_id,
                                                      self.settings["batch"])
                if entries:
                    await self.process(entries)
                    continue
                start_id = ">"
            except StoreError as exc:
                # The group may be gone (stream deleted, data restored): create it again next time.
                log.warning("alerts consumer: %s", exc)
                group_ready = False
            await asyncio.sleep(self.settings["poll_interval_s"])

    async def process(self, entries: list[StreamEntry]) -> None:
        last_seen: dict[str, float] = {}
        alerts = 0
        for entry_id, fields in entries:
            component = fields.get(b"component", b"").decode("utf-8", "replace")
            if component:
                last_seen[component] = max(last_seen.get(component, 0.0), entry_time(entry_id, fields))
            if fields.get(b"kind") == KIND_ALERT.encode():
                alerts += 1
        if last_seen:
            await self.store.hset(LAST_SEEN_KEY, {name: "%.3f" % ts for name, ts in last_seen.items()})
        if alerts:
            await self.store.incr(ALERTS_TOTAL_KEY, alerts)
        await self.store.xack(self.config.alerts_stream, self.settings["group"], [entry_id for entry_id, _ in entries])

    async def write_alert(self, name: str) -> bytes:
        return await self.write_event(KIND_ALERT, name)

    async def status(self, request: Request) -> Response:
        last_seen = await self.store.hgetall(LAST_SEEN_KEY)
        alerts_total = await self.store.get(ALERTS_TOTAL_KEY)
        now = time.time()
        components = {name.decode(): round(max(0.0, now - float(ts)), 3) for name, ts in last_seen.items()}
        return json_response({"components": components, "alerts_total": int(alerts_total or 0)})

    async def alert(self, request: Request) -> Response:
        entry_id = await self.write_alert(require_param(request, "name"))
        return json_response({"written": True, "id": entry_id.decode()})
