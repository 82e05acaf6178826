"""Config validator: checks component configs and Redis connectivity with the release's own client.

It only reads: it loads the files, connects, sends PING and INFO server, and disconnects. It never
writes to Redis or to disk, with or without ``--dry-run`` (the flag is accepted so a deploy tool can
say what it means, and it is echoed in the output).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from toyservice.config import ConfigError, load_config
from toyservice.stores.base import Store, StoreError


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


async def validate_config(path: str, store_cls: type[Store], min_redis_version: tuple[int, int],
                          dry_run: bool) -> dict[str, Any]:
    """One result line: ``ok`` and what was checked, or the ``field`` at fault and the ``error``."""
    result: dict[str, Any] = {"config": path, "dry_run": dry_run, "redis_client": store_cls.client_label}
    try:
        config = load_config(path)
    except ConfigError as exc:
        return {**result, "ok": False, "field": exc.field, "error": exc.message}
    result["component"] = config.component
    store = store_cls(config.redis, 1, "validator")
    try:
        await store.open()
        await store.ping()
        version = await store.server_version()
    except StoreError as exc:
        return {**result, "ok": False, "field": "redis",
                "error": "Redis at %s is unreachable: %s" % (config.redis.describe(), exc)}
    finally:
        await store.close()
    if version_tuple(version) < min_redis_version:
        return {**result, "ok": False, "field": "redis", "redis_version": version,
                "error": "Redis %s is older than %s, the oldest %s supports here"
                         % (version, ".".join(map(str, min_redis_version)), store_cls.client_label)}
    return {**result, "ok": True, "redis_version": version, "redis_client_version": store.client_version,
            "config_summary": config.summary()}


def run_validator(store_cls: type[Store], min_redis_version: tuple[int, int], argv: list[str] | None = None) -> int:
    """Entry point of validate.py: one JSON line per config on stdout; exit 1 if any config fails."""
    parser = argparse.ArgumentParser(description="Validate component configs and their Redis.")
    parser.add_argument("--config", action="append", required=True, metavar="FILE",
                        help="component config file (JSON); repeat for several")
    parser.add_argument("--dry-run", action="store_true",
                        help="accepted for symmetry: the validator never writes anything")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.config:
        try:
            result = asyncio.run(validate_config(path, store_cls, min_redis_version, args.dry_run))
        except ImportError as exc:
            result = {"config": path, "ok": False, "field": "redis_client",
                      "error": "%s is not installed: %s" % (store_cls.client_label, exc)}
        print(json.dumps(result, sort_keys=True), flush=True)
        if not result["ok"]:
            failed += 1
            print("validate: %s: %s: %s" % (path, result["field"], result["error"]), file=sys.stderr)
    return 1 if failed else 0
