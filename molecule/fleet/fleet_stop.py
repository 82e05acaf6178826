"""Stop every process of the fleet scenario by pid, wait for them and for their ports; print what was stopped.

    fleet_stop.py STATE_FILE

In order: the SSH master connections (ssh -O exit on each control socket, so no 'sshd: <user>@notty' session
outlives its sshd), each host's supervisord (from its pid file; it stops its programs first), each host's sshd (from its
pid file), then whatever still runs as a fleet user or is an sshd session of one (an orphaned redis-server or
component, a module left by a killed run): TERM, then KILL after a grace period. A pid is only signalled when
its command line is what the pid file says it should be. Ends once every fleet port refuses connections;
exits 1 naming what is left otherwise. Safe to run again: what is gone is skipped."""
from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from typing import Any

GRACE_S = 30.0


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, and not a zombie (PID 1 here reaps orphans late)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def owner(pid: int) -> int | None:
    try:
        return os.stat("/proc/%d" % pid).st_uid
    except OSError:
        return None


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if alive(pid)]
    return left


def stop(pids: list[int]) -> list[int]:
    """TERM, then KILL what outlives the grace period; returns what is still alive after both."""
    signal_all(pids, signal.SIGTERM)
    left = wait_gone(pids, GRACE_S)
    signal_all(left, signal.SIGKILL)
    return wait_gone(left, 5.0)


def from_pid_files(paths: list[str], expected: str) -> list[int]:
    pids = [read_pid(path) for path in paths]
    return [pid for pid in pids if pid is not None and alive(pid) and expected in cmdline(pid)]


def fleet_uids(state: dict[str, Any]) -> set[int]:
    uids = set()
    for host in state["hosts"].values():
        try:
            uids.add(pwd.getpwnam(host["user"]).pw_uid)
        except KeyError:
            pass
    return uids


def leftovers(state: dict[str, Any]) -> list[int]:
    """Processes of the fleet's users, and the root monitors of their sshd sessions ('sshd: <user> [priv]')."""
    uids = fleet_uids(state)
    sessions = tuple("sshd: %s" % host["user"] for host in state["hosts"].values())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or not alive(int(entry)):
            continue
        pid = int(entry)
        if owner(pid) in uids or cmdline(pid).startswith(sessions):
            pids.append(pid)
    return pids


def open_ports(state: dict[str, Any]) -> list[str]:
    endpoints = [(host["address"], host["ssh_port"]) for host in state["hosts"].values()]
    endpoints += [(host["address"], port) for host in state["hosts"].values() for port in state["ports"].values()]
    found = []
    for address, port in endpoints:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((address, port)) == 0:
                found.append("%s:%d" % (address, port))
    return found


def close_masters(control_dir: str) -> list[str]:
    """Ask each SSH master to exit; returns the sockets that were closed."""
    try:
        sockets = sorted(os.path.join(control_dir, name) for name in os.listdir(control_dir))
    except FileNotFoundError:
        return []
    closed = []
    for path in sockets:
        try:
            result = subprocess.run(["ssh", "-O", "exit", "-o", "ControlPath=" + path, "fleet"],
                                    capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            continue  # its session processes are stopped with the fleet users' other leftovers
        if result.returncode == 0:
            closed.append(os.path.basename(path))
    return closed


def main(state_file: str) -> int:
    with open(state_file, encoding="utf-8") as handle:
        state = json.load(handle)
    hosts = state["hosts"]
    masters = close_masters(state["control_dir"])
    supervisords = from_pid_files([host["home"] + "/supervisor/supervisord.pid" for host in hosts.values()], "supervisord")
    stuck = stop(supervisords)
    sshds = from_pid_files(["%s/%s.pid" % (state["sshd_dir"], name) for name in hosts], "sshd")
    stuck += stop(sshds)
    others = leftovers(state)
    stuck += stop(others)
    deadline = time.monotonic() + GRACE_S
    ports = open_ports(state)
    while ports and time.monotonic() < deadline:
        time.sleep(0.2)
        ports = open_ports(state)
    print(json.dumps({"ssh_masters": masters, "supervisord": supervisords, "sshd": sshds, "leftovers": others, "stuck": stuck,
                      "open_ports": ports}))
    return 1 if stuck or ports else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
