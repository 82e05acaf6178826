"""Plan the fleet scenario: a fleet id, its folders and users, and free ports; write them as JSON.

    fleet_plan.py STATE_FILE REQUEST_JSON

REQUEST_JSON: {"addresses": {host: address}, "services": {name: [address, ...]}, "base_prefix": "/var/tmp/x-",
"python": path, "station_python": path, "wheels": path}. STATE_FILE gets {"id", "base", "sshd_dir", "control_dir",
"python", "station_python", "wheels", "hosts": {host: {"address", "ssh_port", "user", "home"}}, "ports": {name: port}}:
each ssh port is free on its host's address, each service port on every address that serves it, no two ports are equal.

Ports come from below the kernel's ephemeral range, like molecule/shared/free_ports.py: the servers and
clients of tests running beside the scenario take ephemeral ports, which a port picked here must not be."""
from __future__ import annotations

import json
import os
import random
import secrets
import socket
import sys
from typing import Any

LOWEST = 20000


def is_free(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def pick(addresses: list[str], taken: set[int]) -> int:
    highest = max(LOWEST + 1000, ephemeral_start() - 1)
    for _ in range(500):
        port = random.randrange(LOWEST, highest)
        if port not in taken and all(is_free(address, port) for address in addresses):
            taken.add(port)
            return port
    raise SystemExit("no port between %d and %d is free on %s" % (LOWEST, highest, ", ".join(addresses)))


def plan(request: dict[str, Any]) -> dict[str, Any]:
    fleet_id = secrets.token_hex(3)
    base = request["base_prefix"] + fleet_id
    taken: set[int] = set()
    hosts = {
        host: {"address": address, "ssh_port": pick([address], taken),
               "user": "cf%s-%s" % (fleet_id, host), "home": "%s/hosts/%s" % (base, host)}
        for host, address in request["addresses"].items()
    }
    return {
        "id": fleet_id,
        "base": base,
        "sshd_dir": base + "/sshd",
        "control_dir": base + "/cp",
        "python": request["python"],
        "station_python": request["station_python"],
        "wheels": request["wheels"],
        "hosts": hosts,
        "ports": {name: pick(addresses, taken) for name, addresses in request["services"].items()},
    }


def main(state_file: str, request_json: str) -> None:
    state = plan(json.loads(request_json))
    tmp = state_file + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2)
    os.replace(tmp, state_file)
    print(json.dumps({"id": state["id"], "base": state["base"]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
