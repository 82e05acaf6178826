"""The master process of a component: it binds the listening socket once and runs the component in a worker
process that inherits it, so a worker can be replaced without a moment in which the port refuses connections.

- SIGHUP: start a new worker from the command the master was started with - ``<dir>/current/venv/bin/python
  <dir>/current/service.py`` resolves ``current`` again, so after a switch the new worker runs the new release
  with its own venv - wait until it reports serving, then stop the old one gracefully. Connections queue in the
  shared listen backlog meanwhile. A new worker that exits or stays silent is stopped; the old one keeps serving.
- SIGTERM/SIGINT: stop the worker gracefully, then exit with its exit status (0 after a clean stop).
- The first worker failing to start ends the master with that worker's exit code (2 config, 3 client library).
- The serving worker exiting unasked ends the master with a non-zero code, for the process manager to restart.

Each worker gets the listening socket (``--listen-fd``) and one end of a socket pair (``--control-fd``): it writes
``serving <pid>`` there once it accepts, and stops by itself when the master's end closes (master killed).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

log = logging.getLogger("toyservice.master")

# Connections wait in this queue while one worker hands over to the next.
LISTEN_BACKLOG = 1024
WORKER_START_TIMEOUT_S = 30.0
WORKER_STOP_TIMEOUT_S = 10.0
READY_WORD = b"serving"
EXIT_LISTEN = 4
EXIT_NO_WORKER = 1


class ListenError(Exception):
    """The HTTP port could not be bound."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (the first address host resolves to)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenError("cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc)) from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise ListenError("cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc)) from None
    return listener


def worker_command(config_path: str) -> list[str]:
    """How the master starts each worker: its own interpreter and script paths as it was started with them, so a
    ``current`` symlink in them is resolved anew for every worker (os.path.abspath resolves no symlink)."""
    return [sys.executable, os.path.abspath(sys.argv[0]), "--config", os.path.abspath(config_path), "--worker"]


def exit_status(returncode: int) -> int:
    """A child's return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    control: socket.socket  # the master's end of the socket pair
    exited: asyncio.Future[int]

    @property
    def pid(self) -> int:
        return self.process.pid


class Master:
    """Runs one worker at a time (two while one hands over to the next) on a shared listening socket."""

    def __init__(self, worker_argv: list[str], listener: socket.socket):
        self.worker_argv = worker_argv
        self.listener = listener
        self.workers: list[Worker] = []
        self.retiring: set[asyncio.Task[int]] = set()
        self.stop_requested = asyncio.Event()
        self.reload_requested = asyncio.Event()

    def spawn(self) -> Worker:
        master_end, worker_end = socket.socketpair()
        try:
            fds = (self.listener.fileno(), worker_end.fileno())
            process = subprocess.Popen(self.worker_argv + ["--listen-fd", str(fds[0]), "--control-fd", str(fds[1])],
                                       pass_fds=fds)
        except OSError:
            master_end.close()
            raise
        finally:
            worker_end.close()
        master_end.setblocking(False)
        worker = Worker(process, master_end, asyncio.get_running_loop().create_future())
        self.workers.append(worker)
        return worker

    def reap(self) -> None:
        """SIGCHLD: collect every worker that exited."""
        for worker in list(self.workers):
            returncode = worker.process.poll()
            if returncode is not None:
                self.workers.remove(worker)
                worker.control.close()
                worker.exited.set_result(returncode)

    async def wait_serving(self, worker: Worker) -> str | None:
        """None once the worker reports serving; otherwise why it does not."""
        loop = asyncio.get_running_loop()
        report = asyncio.ensure_future(self._read_report(loop, worker.control))
        stop = asyncio.ensure_future(self.stop_requested.wait())
        try:
            await asyncio.wait({report, stop, worker.exited}, timeout=WORKER_START_TIMEOUT_S,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (report, stop):
                waiter.cancel()
        if report.done() and not report.cancelled() and report.exception() is None \
                and report.result().startswith(READY_WORD):
            return None
        if report.done() or worker.exited.done():  # its end of the pair closed: it exited
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(worker.exited), WORKER_STOP_TIMEOUT_S)
            if worker.exited.done():
                return "exited with code %d before serving" % exit_status(worker.exited.result())
            return "closed its control socket before serving"
        if self.stop_requested.is_set():
            return "was stopped before serving: the master was asked to stop"
        return "did not report serving within %.0f s" % WORKER_START_TIMEOUT_S

    @staticmethod
    async def _read_report(loop: asyncio.AbstractEventLoop, control: socket.socket) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            chunk = await loop.sock_recv(control, 64)
            if not chunk:
                break
            line += chunk
        return line

    async def retire(self, worker: Worker) -> int:
        """Stop a worker gracefully (SIGTERM; SIGKILL after WORKER_STOP_TIMEOUT_S); its exit status."""
        if not worker.exited.done():
            worker.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(worker.exited), WORKER_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("worker %d still runs %.0f s after SIGTERM: killing it", worker.pid, WORKER_STOP_TIMEOUT_S)
                worker.process.kill()
                await worker.exited
        return exit_status(worker.exited.result())

    async def reload(self, serving: Worker) -> Worker:
        """Start a new worker; once it serves, stop ``serving`` and return the new one (else ``serving``)."""
        try:
            new = self.spawn()
        except OSError as exc:
            log.error("reload failed: cannot start a worker (%s): %s; worker %d keeps serving",
                      " ".join(self.worker_argv[:2]), exc, serving.pid)
            return serving
        problem = await self.wait_serving(new)
        if problem:
            await self.retire(new)
            log.error("reload failed: new worker %d %s; worker %d keeps serving", new.pid, problem, serving.pid)
            return serving
        log.info("reload: worker %d serves; stopping worker %d gracefully", new.pid, serving.pid)
        task = asyncio.create_task(self.retire(serving))
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)
        return new

    async def next_request(self, serving: Worker) -> None:
        """Wait for a stop or reload request, or for the serving worker to exit."""
        waiters = [asyncio.ensure_future(self.stop_requested.wait()),
                   asyncio.ensure_future(self.reload_requested.wait())]
        try:
            await asyncio.wait(waiters + [serving.exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        try:
            serving = self.spawn()
        except OSError as exc:
            log.error("cannot start a worker (%s): %s", " ".join(self.worker_argv[:2]), exc)
            return EXIT_NO_WORKER
        problem = await self.wait_serving(serving)
        if problem:
            status = await self.retire(serving)
            log.error("worker %d %s", serving.pid, problem)
            return status if status or self.stop_requested.is_set() else EXIT_NO_WORKER
        log.info("master %d: worker %d serves", os.getpid(), serving.pid)
        while True:
            await self.next_request(serving)
            if self.stop_requested.is_set():
                break
            if serving.exited.done():
                status = exit_status(serving.exited.result())
                log.error("worker %d exited unasked with code %d: the master exits too", serving.pid, status)
                await self.stop_all()
                return status or EXIT_NO_WORKER
            self.reload_requested.clear()
            serving = await self.reload(serving)
        log.info("signal received: stopping worker %d", serving.pid)
        status = await self.retire(serving)
        await self.stop_all()
        return status

    async def stop_all(self) -> None:
        """Stop every other worker still running and wait for those being retired."""
        await asyncio.gather(*(self.retire(worker) for worker in list(self.workers)), *self.retiring)


def run_master(worker_argv: list[str], host: str, port: int) -> int:
    """Bind host:port, serve it through workers started with worker_argv until SIGTERM; the exit code."""
    listener = bind_listener(host, port)
    log.info("master %d listening on %s:%d", os.getpid(), host, port)
    try:
        return asyncio.run(Master(worker_argv, listener).run())
    finally:
        listener.close()
