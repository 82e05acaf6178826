"""Print {component: {"keys": n, "unreadable": [...]}}: every key of each component's namespaces, read by the
release its ``current`` link points at, with that release's own reader (reader.py). A key that expired between the
scan and the read is not counted.

Usage: readable.py PORT APP_ROOT COMPONENTS_JSON  (REDIS_PASSWORD in the environment; COMPONENTS_JSON maps a
component to its namespace patterns)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import redis


def unreadable_keys(client: redis.Redis, app_root: str, component: str, keys: list[str]) -> list[str]:
    release = os.path.join(app_root, component, "current")
    done = subprocess.run([os.path.join(release, "venv", "bin", "python"), os.path.join(release, "reader.py"),
                           "--config", os.path.join(app_root, component, "config.json")],
                          input="\n".join(keys), capture_output=True, text=True, timeout=120, check=True)
    verdicts = json.loads(done.stdout)
    return sorted(key for key in keys if not verdicts.get(key) and client.exists(key))


def main(port: int, app_root: str, namespaces: dict[str, list[str]]) -> None:
    client = redis.Redis(port=port, password=os.environ["REDIS_PASSWORD"])
    found = {}
    for component, patterns in namespaces.items():
        keys = sorted({key.decode() for pattern in patterns for key in client.scan_iter(match=pattern, count=1000)})
        found[component] = {"keys": len(keys),
                            "unreadable": unreadable_keys(client, app_root, component, keys) if keys else []}
    print(json.dumps(found, sort_keys=True))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))
