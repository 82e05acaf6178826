"""Write {"redis": port, "base": port} to the given file: a free port for Redis and a base whose
next six ports (base+1 .. base+6) are free, all on 127.0.0.1.

Ports come from below the kernel's ephemeral range: make test runs pytest beside the scenarios, and its
servers (bound to port 0) and client connections take ephemeral ports, which a port picked here and
bound a moment later must not be."""
from __future__ import annotations

import json
import random
import socket
import sys


def is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


LOWEST = 20000


def ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick(span: int) -> int:
    highest = max(LOWEST + 1000, ephemeral_start() - span - 1)
    for _ in range(500):
        base = random.randrange(LOWEST, highest)
        if all(is_free(base + offset) for offset in range(1, span + 1)):
            return base
    raise SystemExit("no run of %d free ports found between %d and %d" % (span, LOWEST, highest + span))


def main(path: str) -> None:
    base = pick(6)
    redis_port = pick(1) + 1
    while base < redis_port <= base + 6:
        redis_port = pick(1) + 1
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"redis": redis_port, "base": base}, handle)
    print(json.dumps({"redis": redis_port, "base": base}))


if __name__ == "__main__":
    main(sys.argv[1])
