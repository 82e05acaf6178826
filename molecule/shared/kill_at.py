"""Kill the controller of the running migrate with SIGKILL once its journal holds an event, as a crash would.

Usage: kill_at.py STATE_DIR POINT [TIMEOUT_S [DELAY_S]]. The run and its controller's ansible-playbook pid come from the run
lock (owner.pid); the run's journal is STATE_DIR/journal/<run>.jsonl. POINT is an event (`snapshot.created`), a
rollback step that ended (`rollback.step=2`: the kill lands during step 3), or a release link that moved
(`link:<path>=<text>`: once the link's target contains text, e.g. a canary switched and about to be probed).
Points joined by ` then ` are reached in that order (`rollback.triggered then link:.../ai/current=legacy`: the
rollback switched ai back, so it is in step 3).
DELAY_S waits that long after the point before the kill (e.g. into the probe that follows a switch).
Prints {"run_id", "pid", "event"} once the process is gone; exits 1 when the point or the lock did not show
within the timeout."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

POLL_S = 0.05


def holder(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(state_dir, "lock"), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def matches(entry: dict, point: str) -> bool:
    event, _, step = point.partition("=")
    return entry.get("event") == event and (not step or str((entry.get("data") or {}).get("step")) == step)


def reached(state_dir: str, run_id: str, point: str) -> bool:
    if point.startswith("link:"):
        path, _, text = point[len("link:"):].partition("=")
        return os.path.islink(path) and text in os.readlink(path)
    try:
        with open(os.path.join(state_dir, "journal", run_id + ".jsonl"), encoding="utf-8") as handle:
            return any(matches(json.loads(line), point) for line in handle if line.strip())
    except (OSError, ValueError):
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def main(state_dir: str, point: str, timeout_s: float, delay_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    pending = point.split(" then ")
    while time.monotonic() < deadline:
        lock = holder(state_dir) or {}
        pid = str((lock.get("owner") or {}).get("pid", ""))
        while pid.isdigit() and pending and reached(state_dir, lock["run_id"], pending[0]):
            pending.pop(0)
        if not pending:
            time.sleep(delay_s)
            os.kill(int(pid), signal.SIGKILL)
            while alive(int(pid)) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            print(json.dumps({"run_id": lock["run_id"], "pid": int(pid), "event": point}))
            return 0
        time.sleep(POLL_S)
    print("no run reached %s within %g s (lock: %s)" % (" then ".join(pending), timeout_s, holder(state_dir)),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 300,
                  float(sys.argv[4]) if len(sys.argv) > 4 else 0))
