"""A tiny HTTP/1.1 server on asyncio streams: one request per connection, JSON or bytes responses."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
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
ACCEPT_RETRY_S = 0.5


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
    """Serves ``dispatch`` on a listening socket that other processes may share (the master and the next worker);
    ``shutdown`` stops accepting and lets requests in flight finish.

    It accepts by itself rather than through asyncio.start_server: a connection is in flight from the moment
    accept() returns it, so none is dropped at shutdown. (Python 3.11's Server.close() resets connections accepted
    but not yet wrapped in a transport - harmless when the port closes anyway, not when another worker serves on.)
    """

    def __init__(self, dispatch: Handler):
        self.dispatch = dispatch
        self._listener: socket.socket | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    def start(self, listener: socket.socket) -> None:
        """Accept on an already bound and listening socket."""
        listener.setblocking(False)
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()  # this process's descriptor: other holders keep listening
            self._listener = None
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)

    def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # drained, or another process took the connection
            except OSError as exc:  # out of descriptors or memory: pause rather than spin on a readable socket
                log.warning("accept failed: %s; accepting again in %.1f s", exc, ACCEPT_RETRY_S)
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_RETRY_S, self._resume, listener)
                return
            task = loop.create_task(self._on_connection(connection))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _resume(self, listener: socket.socket) -> None:
        if self._listener is listener:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    async def _on_connection(self, connection: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=connection, limit=MAX_LINE)
        except OSError:
            connection.close()
            return
        try:
            response = await self._respond(reader)
            writer.write(_encode_response(response))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

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
