"""Component logic, client-agnostic: each component talks to Redis only through a ``Store``."""
from __future__ import annotations
