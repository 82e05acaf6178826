"""Kill the controller of the running migrate with SIGKILL once its journal holds an event, as a crash would.

Usage: kill_at.py STATE_DIR EVENT [TIMEOUT_S]. The run and its controller's ansible-playbook pid come from the run
lock (owner.pid); the run's journal is STATE_DIR/journal/<run>.jsonl. Prints {"run_id", "pid", "event"} once the
process is gone; exits 1 when the event or the lock did not show within the timeout."""
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


def journaled(state_dir: str, run_id: str, event: str) -> bool:
    try:
        with open(os.path.join(state_dir, "journal", run_id + ".jsonl"), encoding="utf-8") as handle:
            return any(json.loads(line).get("event") == event for line in handle if line.strip())
    except (OSError, ValueError):
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def main(state_dir: str, event: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lock = holder(state_dir)
        if lock and str(lock.get("owner", {}).get("pid", "")).isdigit() and journaled(state_dir, lock["run_id"], event):
            pid = int(lock["owner"]["pid"])
            os.kill(pid, signal.SIGKILL)
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            print(json.dumps({"run_id": lock["run_id"], "pid": pid, "event": event}))
            return 0
        time.sleep(POLL_S)
    print("no run journaled %s within %g s (lock: %s)" % (event, timeout_s, holder(state_dir)), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 300))
