"""Write {"redis": port, "base": port} to the given file: a free port for Redis and a base whose
next six ports (base+1 .. base+6) are free, all on 127.0.0.1.

Ports come from below the kernel's ephemeral range: make test runs pytest beside the scenarios, and its
servers (bound to port 0) and client connections take ephemeral ports, which a port picked here and
bound a moment later must not be.

A port another live scenario picked is never picked again, even while its service is down for a moment (a deploy
restarts it): the ports.json of every scenario beside this one (the sibling ephemeral folders) are read under a
lock, so two scenarios created at the same time cannot pick the same ports either."""
from __future__ import annotations

import fcntl
import json
import random
import socket
import sys
from pathlib import Path

LOWEST = 20000
SPAN = 6


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def claimed(ephemeral_parent: Path) -> set[int]:
    """Ports the scenarios beside this one picked: Redis and base+1 .. base+6 of each ports.json."""
    ports: set[int] = set()
    for path in ephemeral_parent.glob("*/ports.json"):
        try:
            picked = json.loads(path.read_text(encoding="utf-8"))
            ports.add(int(picked["redis"]))
            ports.update(int(picked["base"]) + offset for offset in range(1, SPAN + 1))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a scenario being destroyed or a file half written: its ports are bound or free again
    return ports


def pick(span: int, taken: set[int] | frozenset[int] = frozenset()) -> int:
    highest = max(LOWEST + 1000, ephemeral_start() - span - 1)
    for _ in range(500):
        base = random.randrange(LOWEST, highest)
        ports = range(base + 1, base + span + 1)
        if not taken.intersection(ports) and all(is_free(port) for port in ports):
            return base
    raise SystemExit("no run of %d free ports found between %d and %d" % (span, LOWEST, highest + span))


def main(path: str) -> None:
    target = Path(path)
    with open(target.parent.parent / ".cutover-ports.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = claimed(target.parent.parent)
        base = pick(SPAN, taken)
        redis_port = pick(1, taken | set(range(base + 1, base + SPAN + 1))) + 1
        target.write_text(json.dumps({"redis": redis_port, "base": base}), encoding="utf-8")
    print(json.dumps({"redis": redis_port, "base": base}))


if __name__ == "__main__":
    main(sys.argv[1])
