"""Ordered maps over the independent pieces of post-processing (issue 17).

The heavy work per piece of the sphere fit (trilinear sampling, BLAS) runs in C code that
releases the GIL, so threads share the cores without copying the volume. The splitting of
touching vesicles (scipy's distance transform, scikit-image's watershed) holds the GIL, so
it runs in forked processes (``processes=True``, where the platform forks): they inherit
the volume's arrays and memory maps without copying them, and send back only their small
results. Results come back in input order, so the output is the same whatever the number
of threads or processes.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from synapseg._cores import available_cores

__all__ = ["WORKERS", "available_cores", "map_ordered"]

WORKERS = 2
"""Default threads (capped at the cores the process may use)."""

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def map_ordered(
    fn: Callable[[_In], _Out],
    items: Iterable[_In],
    workers: int | None = None,
    processes: bool = False,
) -> list[_Out]:
    """``[fn(x) for x in items]``, computed by up to ``workers`` threads (default
    :data:`WORKERS`, at most the available cores); an exception in ``fn`` is re-raised.

    ``processes=True``: forked worker processes instead of threads, for work that holds
    the GIL (``fn`` may be a closure: the children inherit it, and ``items``, by the
    fork); threads where the platform cannot fork, in a process that may not have children
    (a daemonic one, e.g. a dask worker) and outside the main thread (e.g. a dask worker
    thread)."""
    todo = list(items)
    n = min(max(1, int(workers or WORKERS)), available_cores(), len(todo))
    if n <= 1:
        return [fn(x) for x in todo]
    if processes and _can_fork():
        return _map_forked(fn, todo, n)
    with ThreadPoolExecutor(n, thread_name_prefix="synapseg-post") as pool:
        return list(pool.map(fn, todo))


def _can_fork() -> bool:
    """Forking is safe here: the platform forks, this process may have children, and this
    is the main thread (no other thread of ours is running a map, or holds a lock the
    children could need: a dask worker thread, the napari plugin's worker)."""
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
        and threading.current_thread() is threading.main_thread()
    )


_FORKED: tuple[Callable[[Any], Any], Sequence[Any]] | None = None
"""The function and items of the running :func:`_map_forked` (children inherit them)."""


def _run_forked(span: tuple[int, int]) -> list[Any]:
    assert _FORKED is not None
    fn, todo = _FORKED
    return [fn(todo[i]) for i in range(*span)]


def _map_forked(fn: Callable[[_In], _Out], todo: list[_In], n: int) -> list[_Out]:
    """:func:`map_ordered` in ``n`` forked processes, in contiguous spans of items (8 per
    process: a slow span does not leave the other process idle for long)."""
    global _FORKED
    step = max(1, -(-len(todo) // (8 * n)))
    spans = [(s, min(s + step, len(todo))) for s in range(0, len(todo), step)]
    _FORKED = (fn, todo)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(n, mp_context=context) as pool:
            return [out for part in pool.map(_run_forked, spans) for out in part]
    finally:
        _FORKED = None
