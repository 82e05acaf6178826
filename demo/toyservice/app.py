"""The runtime around one component: routing, /healthz, maintenance flag, heartbeats, graceful shutdown.

``service.py --config FILE`` runs the master (toyservice.master), which binds the port and starts
``service.py --config FILE --worker --listen-fd N --control-fd M``: the worker serves the component.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from toyservice.components.base import Component
from toyservice.config import ConfigError, ServiceConfig, load_config
from toyservice.events import KIND_METRIC
from toyservice.http import HttpError, HttpServer, Request, Response, json_response
from toyservice.master import EXIT_LISTEN, ListenError, run_master, worker_command
from toyservice.release import read_release
from toyservice.stores.base import Store, StoreError

log = logging.getLogger("toyservice")

PROBE_HEADER = "x-cutover-probe"
HEALTH_PING_TIMEOUT_S = 2.0
EXIT_CONFIG = 2
EXIT_CLIENT_MISSING = 3


class Service:
    """One running component: its HTTP endpoints, its store and its heartbeat."""

    def __init__(self, config: ServiceConfig, component_cls: type[Component], store: Store, release: str):
        self.config = config
        self.store = store
        self.release = release
        self.component = component_cls(store, config, release)
        self.routes = self.component.routes()
        self.started = time.monotonic()
        self.requests_total = 0
        self.master_pid = os.getppid()

    def in_maintenance(self) -> bool:
        return self.config.maintenance_file.exists()

    async def dispatch(self, request: Request) -> Response:
        if request.path == "/healthz":
            return await self.healthz()
        handler = self.routes.get(request.path)
        if handler is None:
            raise HttpError(404, "no endpoint %s; endpoints: /healthz, %s" % (request.path, ", ".join(self.routes)))
        if request.method not in ("GET", "POST"):
            raise HttpError(405, "method %s not allowed; use GET or POST" % request.method)
        if self.in_maintenance() and request.headers.get(PROBE_HEADER) != "1":
            return json_response({"status": "maintenance"}, 503)
        self.requests_total += 1
        try:
            return await handler(request)
        except StoreError as exc:
            log.warning("%s failed: %s", request.path, exc)
            return json_response({"status": "error", "error": "redis unavailable"}, 503)

    async def healthz(self) -> Response:
        redis_state = "ok"
        try:
            await asyncio.wait_for(self.store.ping(), HEALTH_PING_TIMEOUT_S)
        except StoreError as exc:
            redis_state = str(exc)
        except TimeoutError:
            redis_state = "PING timed out after %.0fs" % HEALTH_PING_TIMEOUT_S
        if self.in_maintenance():
            status = "maintenance"
        else:
            status = "ok" if redis_state == "ok" else "degraded"
        body = {
            "status": status,
            "component": self.config.component,
            "release": self.release,
            "redis_client": self.store.client_label,
            "redis_client_version": self.store.client_version,
            "redis": redis_state,
            "pool": self.store.pool_stats(),
            "pid": os.getpid(),
            "master_pid": self.master_pid,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return json_response(body, 503 if status == "degraded" else 200)

    async def heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.metrics_interval_s)
            try:
                await self.component.write_event(KIND_METRIC, "heartbeat", value=self.requests_total)
            except StoreError as exc:
                log.warning("heartbeat not written: %s", exc)

    async def run(self, listener: socket.socket, control: socket.socket) -> None:
        """Serve on the master's listener until SIGTERM/SIGINT or until the master is gone, then stop accepting,
        finish requests in flight and close the pool. Reports ``serving <pid>`` on ``control`` once it accepts."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        control.setblocking(False)
        loop.add_reader(control.fileno(), self.watch_master, control, stop)
        server = HttpServer(self.dispatch)
        await self.store.open()
        try:
            await self.component.start()
            server.start(listener)
            heartbeat = asyncio.create_task(self.heartbeat_forever())
            log.info("%s release %s on %s:%d (worker %d of master %d), %s %s, config %s", self.config.component,
                     self.release, self.config.listen_host, self.config.listen_port, os.getpid(), self.master_pid,
                     self.store.client_label, self.store.client_version, self.config.summary())
            await loop.sock_sendall(control, b"serving %d\n" % os.getpid())
            await stop.wait()
            log.info("signal received, shutting down")
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await server.shutdown()
            await self.component.stop()
        finally:
            await self.store.close()

    @staticmethod
    def watch_master(control: socket.socket, stop: asyncio.Event) -> None:
        """The master's end of the control pair closed: it is gone (killed), so stop as on SIGTERM."""
        try:
            if control.recv(64):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        asyncio.get_running_loop().remove_reader(control.fileno())
        if not stop.is_set():
            log.warning("the master is gone: shutting down")
            stop.set()


def run_component(component_cls: type[Component], store_cls: type[Store], release_dir: Path,
                  argv: list[str] | None = None) -> int:
    """Entry point of every service.py: runs the master, or with --worker the component; the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(process)d %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description="Run the %s component." % component_cls.name)
    parser.add_argument("--config", required=True, help="component config file (JSON)")
    parser.add_argument("--worker", action="store_true",
                        help="run the component itself on the master's socket (the master starts workers)")
    parser.add_argument("--listen-fd", type=int, help="worker: the listening socket inherited from the master")
    parser.add_argument("--control-fd", type=int, help="worker: its end of the socket pair shared with the master")
    args = parser.parse_args(argv)
    if args.worker != (args.listen_fd is not None) or args.worker != (args.control_fd is not None):
        parser.error("--worker, --listen-fd and --control-fd go together (the master passes them to its workers)")
    try:
        config = load_config(args.config)
        if config.component != component_cls.name:
            raise ConfigError(config.path, "component", "this service runs %r, the config names %r"
                              % (component_cls.name, config.component))
    except ConfigError as exc:
        print("%s: config error: %s" % (component_cls.name, exc), file=sys.stderr)
        return EXIT_CONFIG
    if not args.worker:
        try:
            return run_master(worker_command(args.config), config.listen_host, config.listen_port)
        except ListenError as exc:
            print("%s: %s" % (component_cls.name, exc), file=sys.stderr)
            return EXIT_LISTEN
    # Reloading is the master's business: a HUP sent to the pid /healthz shows must not end the worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    listener = socket.socket(fileno=args.listen_fd)
    control = socket.socket(fileno=args.control_fd)
    store = store_cls(config.redis, config.pool_size, config.component)
    try:
        asyncio.run(Service(config, component_cls, store, read_release(release_dir)).run(listener, control))
    except ImportError as exc:
        print("%s: Redis client library %s is not installed: %s" % (component_cls.name, store.client_label, exc),
              file=sys.stderr)
        return EXIT_CLIENT_MISSING
    return 0
