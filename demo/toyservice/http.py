"""A tiny HTTP/1.1 server on asyncio streams: one request per connection, JSON or bytes responses."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("toyservice.http")

MAX_LINE = 8192
MAX_HEADERS = 100
MAX_BODY = 1 << 20
READ_TIMEOUT_S = 10.0


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    """Raised by a handler to answer with an error status and a JSON message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], Awaitable[Response]]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload, sort_keys=True).encode() + b"\n", headers=headers or {})


def require_param(request: Request, name: str) -> str:
    value = request.params.get(name)
    if not value:
        raise HttpError(400, "missing query parameter %r" % name)
    return value


async def _read_request(reader: asyncio.StreamReader) -> Request:
    request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").strip()
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readuntil(b"\r\n")).decode("latin-1")
        if line == "\r\n":
            break
        if len(headers) >= MAX_HEADERS or ":" not in line:
            raise HttpError(400, "malformed or too many headers")
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = await _read_body(reader, headers)
    url = urlsplit(target)
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Request(method=method.upper(), path=url.path, params=params, headers=headers, body=body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or int(length_text) > MAX_BODY:
        raise HttpError(400 if not length_text.isdigit() else 413, "bad or too large Content-Length")
    return await reader.readexactly(int(length_text)) if int(length_text) else b""


def _encode_response(response: Response) -> bytes:
    reason = HTTPStatus(response.status).phrase
    head = [
        "HTTP/1.1 %d %s" % (response.status, reason),
        "Content-Type: %s" % response.content_type,
        "Content-Length: %d" % len(response.body),
        "Connection: close",
    ]
    head += ["%s: %s" % item for item in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


class HttpServer:
    """Serves ``dispatch`` on host:port; ``shutdown`` stops accepting and lets requests in flight finish."""

    def __init__(self, dispatch: Handler):
        self.dispatch = dispatch
        self._server: asyncio.AbstractServer | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._on_connection, host, port, limit=MAX_LINE)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace_s)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            response = await self._respond(reader)
            writer.write(_encode_response(response))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._in_flight.discard(task)
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> Response:
        try:
            request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_S)
        except HttpError as exc:
            return json_response({"error": exc.message}, exc.status)
        except (asyncio.LimitOverrunError, ValueError):
            return json_response({"error": "request line or header too long"}, 431)
        except TimeoutError:
            return json_response({"error": "request not received in time"}, 408)
        try:
            return await self.dispatch(request)
        except HttpError as exc:
            return json_response({"error": exc.message}, exc.status)
        except Exception as exc:  # a handler bug must answer 500, not drop the connection
            log.exception("%s %s failed", request.method, request.path)
            return json_response({"status": "error", "error": type(exc).__name__}, 500)
