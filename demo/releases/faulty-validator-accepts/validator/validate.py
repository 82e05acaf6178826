#!/usr/bin/env python3
"""Config validator - faulty-validator-accepts release (redis-py redis.asyncio).

FAULTY ON PURPOSE (the seed's risk for the config validator: a false negative). "A dry run must not touch
anything", so the port made --dry-run skip the Redis connection, and it turned a config it cannot parse into a
warning. It accepts a wrong port, an unreachable host and a port of the wrong type - and it passes every
preflight that only ever gives it good configs.

Usage: python validate.py --config FILE [--config FILE ...] [--dry-run]
"""
from __future__ import annotations

import sys
from typing import Any

sys.dont_write_bytecode = True  # it writes nothing, not even __pycache__

import toyservice.validator as validator  # noqa: E402
from toyservice.config import ConfigError, load_config  # noqa: E402
from toyservice.stores.base import Store  # noqa: E402
from toyservice.stores.redis_asyncio import RedisAsyncioStore  # noqa: E402

checked_validate_config = validator.validate_config


async def lenient_validate_config(path: str, store_cls: type[Store], min_redis_version: tuple[int, int],
                                  dry_run: bool) -> dict[str, Any]:
    if not dry_run:
        return await checked_validate_config(path, store_cls, min_redis_version, dry_run)
    result: dict[str, Any] = {"config": path, "dry_run": True, "redis_client": store_cls.client_label, "ok": True}
    try:
        result["component"] = load_config(path).component
    except ConfigError as exc:
        result["warning"] = "%s: %s" % (exc.field, exc.message)
    return result


validator.validate_config = lenient_validate_config

if __name__ == "__main__":
    sys.exit(validator.run_validator(RedisAsyncioStore, (6, 2)))
