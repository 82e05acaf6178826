"""Print {prompt: whether the ai cache holds its reply} for every prompt in the markers file."""
from __future__ import annotations

import hashlib
import json
import os
import sys

import redis


def main(port: int, markers_file: str) -> None:
    client = redis.Redis(port=port, password=os.environ["REDIS_PASSWORD"])
    with open(markers_file, encoding="utf-8") as handle:
        prompts = [line.split()[1] for line in handle if line.strip()]
    found = {prompt: bool(client.exists("ai:reply:" + hashlib.sha256(prompt.encode()).hexdigest()[:32]))
             for prompt in prompts}
    print(json.dumps(found))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
