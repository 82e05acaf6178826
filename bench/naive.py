"""The baseline a developer would write by hand with redis-py: SCAN COUNT 1000 + pipelined DUMP/PTTL into a
file, and pipelined RESTORE back from it. Prints {"seconds": s, "keys": n} (time from process start).

Usage: naive.py dump <port> <file> | naive.py restore <port> <file>
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402

import redis  # noqa: E402

RECORD = struct.Struct(">IqI")  # key length, ttl ms (-1: none), payload length


def dump(client: redis.Redis, path: str) -> int:
    written = 0
    with open(path, "wb") as out:
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor, count=1000)
            if keys:
                pipeline = client.pipeline(transaction=False)
                for key in keys:
                    pipeline.dump(key)
                    pipeline.pttl(key)
                replies = pipeline.execute()
                for key, payload, ttl in zip(keys, replies[0::2], replies[1::2]):
                    if payload is None:
                        continue
                    out.write(RECORD.pack(len(key), ttl, len(payload)) + key + payload)
                    written += 1
            if cursor == 0:
                return written


def restore(client: redis.Redis, path: str) -> int:
    restored = 0
    with open(path, "rb") as source:
        pipeline = client.pipeline(transaction=False)
        while True:
            header = source.read(RECORD.size)
            if not header:
                break
            key_length, ttl, payload_length = RECORD.unpack(header)
            key = source.read(key_length)
            payload = source.read(payload_length)
            pipeline.restore(key, ttl if ttl > 0 else 0, payload, replace=True)
            restored += 1
            if restored % 1000 == 0:
                pipeline.execute()
        pipeline.execute()
    return restored


def main(action: str, port: int, path: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    keys = dump(client, path) if action == "dump" else restore(client, path)
    print(json.dumps({"seconds": time.perf_counter() - STARTED, "keys": keys}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
