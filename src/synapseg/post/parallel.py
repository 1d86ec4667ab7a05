"""Ordered thread maps over the independent pieces of post-processing (issue 17).

The heavy work per piece (distance transforms, watershed, trilinear sampling, BLAS) runs in
C code that releases the GIL, so threads share the cores without copying the volume; the
results come back in input order, so the output is the same whatever the thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["WORKERS", "available_cores", "map_ordered"]

WORKERS = 2
"""Default threads (capped at the cores the process may use)."""

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux


def map_ordered(
    fn: Callable[[_In], _Out], items: Iterable[_In], workers: int | None = None
) -> list[_Out]:
    """``[fn(x) for x in items]``, computed by up to ``workers`` threads (default
    :data:`WORKERS`, at most the available cores); an exception in ``fn`` is re-raised."""
    todo = list(items)
    n = min(max(1, int(workers or WORKERS)), available_cores(), len(todo))
    if n <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(n, thread_name_prefix="synapseg-post") as pool:
        return list(pool.map(fn, todo))
