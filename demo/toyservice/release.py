"""The release a running component belongs to, as written by the deploy module."""
from __future__ import annotations

import json
from pathlib import Path

UNKNOWN_RELEASE = "unknown"


def read_release(release_dir: Path) -> str:
    """Return ``release`` from ``<release_dir>/.cutover/release.json``, or "unknown" when absent or unreadable."""
    try:
        with open(release_dir / ".cutover" / "release.json", encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return UNKNOWN_RELEASE
    release = info.get("release") if isinstance(info, dict) else None
    return release if isinstance(release, str) and release else UNKNOWN_RELEASE
