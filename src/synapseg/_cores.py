"""How many CPU cores this process may use (one definition for every layer)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux
