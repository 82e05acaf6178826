#!/usr/bin/env python3
"""AI reply cache - legacy release (aioredis 1.3.1).

Run: python service.py --config FILE
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # a deployed release is an immutable copy: keep __pycache__ out of it

from toyservice.app import run_component  # noqa: E402
from toyservice.components.ai import AiComponent  # noqa: E402
from toyservice.stores.aioredis1 import Aioredis1Store  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_component(AiComponent, Aioredis1Store, Path(__file__).resolve().parent))
