"""Filters the fleet scenario's verify reads journals with (test code, not part of cutover)."""
from __future__ import annotations

from typing import Any


def fleet_steps(host: str, steps: list[dict[str, Any]]) -> list[int]:
    """The rollback steps a host journaled, in order, each once."""
    return sorted({entry["data"]["step"] for entry in steps if entry["host"] == host})


def fleet_details(host: str, steps: list[dict[str, Any]]) -> dict[int, str]:
    """step -> the detail of the host's last attempt of it."""
    return {entry["data"]["step"]: entry["data"]["detail"] for entry in steps if entry["host"] == host}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_steps": fleet_steps, "fleet_details": fleet_details}
