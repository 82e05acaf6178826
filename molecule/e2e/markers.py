"""Print {marker: {"ai": whether the ai cache holds its reply, "alert": whether the alerts stream holds its alert}}
for every marker in the markers file."""
from __future__ import annotations

import hashlib
import json
import os
import sys

import redis


def main(port: int, markers_file: str) -> None:
    client = redis.Redis(port=port, password=os.environ["REDIS_PASSWORD"])
    with open(markers_file, encoding="utf-8") as handle:
        markers = [line.split()[1] for line in handle if line.strip()]
    alerts = {fields.get(b"name", b"").decode() for _id, fields in client.xrange("ai_service_alerts")}
    found = {marker: {"ai": bool(client.exists("ai:reply:" + hashlib.sha256(marker.encode()).hexdigest()[:32])),
                      "alert": marker in alerts}
             for marker in markers}
    print(json.dumps(found))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
