"""Security anomaly detection: ``GET /request?child=ID`` counts a child's requests per minute."""
from __future__ import annotations

import json
import logging
import re
import time

from toyservice.components.base import Component
from toyservice.events import KIND_ALERT
from toyservice.http import Handler, HttpError, Request, Response, json_response, require_param
from toyservice.stores.base import StoreError

log = logging.getLogger("toyservice.security")

CHILD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def epoch_minute(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // 60)


def rate_key(child: str, minute: int) -> str:
    return "security:rate:%s:%d" % (child, minute)


def anomaly_key(child: str) -> str:
    return "security:anomaly:%s" % child


def anomaly_record(child: str, count: int, minute: int, release: str) -> bytes:
    """The value of ``security:anomaly:<child>``."""
    return json.dumps({"child": child, "count": count, "minute": minute, "release": release}, sort_keys=True).encode()


class SecurityComponent(Component):
    name = "security"

    def routes(self) -> dict[str, Handler]:
        return {"/request": self.request}

    async def count_request(self, child: str, minute: int) -> int:
        """INCR the child's counter of this minute (EXPIRE window_ttl_s); returns the count."""
        return await self.store.incr(rate_key(child, minute), 1, self.settings["window_ttl_s"])

    async def report_anomaly(self, child: str, count: int, minute: int) -> None:
        try:
            await self.store.set(anomaly_key(child), anomaly_record(child, count, minute, self.release),
                                 self.settings["anomaly_ttl_s"])
            await self.write_event(KIND_ALERT, "anomaly", child=child, count=count)
        except StoreError as exc:
            log.error("anomaly of child %s not recorded: %s", child, exc)

    async def request(self, request: Request) -> Response:
        child = require_param(request, "child")
        if not CHILD_ID.match(child):
            raise HttpError(400, "child must be 1-64 characters of A-Z a-z 0-9 _ . -")
        minute = epoch_minute()
        count = await self.count_request(child, minute)
        anomaly = count > self.settings["rate_limit"]
        # Alert once per child and minute: on the request that crosses the limit.
        if count == self.settings["rate_limit"] + 1:
            await self.report_anomaly(child, count, minute)
        return json_response({"child": child, "count": count, "anomaly": anomaly})
