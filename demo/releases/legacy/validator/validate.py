#!/usr/bin/env python3
"""Config validator - legacy release (aioredis 1.3.1).

Run: python validate.py --config FILE [--config FILE ...] [--dry-run]
Checks each component config and Redis (PING, version >= 5.0) with this release's client.
It never writes anything, to Redis or to disk, with or without --dry-run.
"""
from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # it writes nothing, not even __pycache__

from toyservice.stores.aioredis1 import Aioredis1Store  # noqa: E402
from toyservice.validator import run_validator  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_validator(Aioredis1Store, (5, 0)))
