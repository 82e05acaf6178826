"""Entries of the alerts stream (``ai_service_alerts``): metrics (kind=metric) and alerts (kind=alert)."""
from __future__ import annotations

import time
from collections.abc import Mapping

KIND_METRIC = "metric"
KIND_ALERT = "alert"


def event_fields(component: str, kind: str, name: str, release: str,
                 extra: Mapping[str, str | int | float] | None = None) -> dict[str, str]:
    """The fields of one stream entry, exactly as every component (and seed.py) writes them."""
    fields = {
        "component": component,
        "kind": kind,
        "name": name,
        "release": release,
        "ts": "%.3f" % time.time(),
    }
    fields.update({key: str(value) for key, value in (extra or {}).items()})
    return fields
