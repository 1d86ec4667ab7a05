"""Batches on the dask backend: many tomograms, and huge ones split into blocks.

:func:`segment_jobs` runs ``(tomogram, output folder)`` jobs on a client: a tomogram up to
:data:`BLOCKWISE_VOXELS` voxels is one task (the local pipeline,
:func:`synapseg.pipeline.segment_tomogram`, with its skip-finished and resume), a larger
one (or any with OME-Zarr volume outputs, or a lone tomogram) is segmented block-wise with
its blocks spread over the workers (:func:`synapseg.distributed.files.segment_file`).
Tasks whose worker dies are retried; a tomogram that fails is reported and the others go
on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.distributed.backend import DEFAULT_RETRIES

log = logging.getLogger(__name__)

__all__ = ["BLOCKWISE_VOXELS", "segment_jobs"]

BLOCKWISE_VOXELS = 2**30
"""Tomograms with more voxels than this are split into blocks (a 1024 x 1024 x 1024 volume)."""


def _whole(path: Path, out_dir: Path, options: Any) -> dict[str, Any]:
    from synapseg.pipeline import segment_tomogram

    return segment_tomogram(path, out_dir, options)


def _voxels(path: Path, options: Any) -> int:
    from synapseg.distributed.files import open_input

    return int(np.prod(open_input(path, options.voxel_size_nm).shape))


def segment_jobs(
    jobs: Sequence[tuple[Path, Path]],
    options: Any,
    *,
    client: Any = None,
    volume_format: str = "mrc",
    retries: int = DEFAULT_RETRIES,
    gpu_resource: bool = False,
    on_done: Callable[[Path], None] | None = None,
    blockwise_voxels: int = BLOCKWISE_VOXELS,
) -> tuple[list[dict[str, Any]], list[tuple[Path, BaseException]]]:
    """Segment every job; return the reports and the ``(tomogram, exception)`` failures.

    A single job's exception is raised (as the local backend does); in a batch it is
    collected and the others go on.
    """
    from synapseg.distributed.files import segment_file

    reports: list[dict[str, Any]] = []
    failed: list[tuple[Path, BaseException]] = []
    lone = len(jobs) == 1
    whole, blockwise = [], []
    for path, out_dir in jobs:
        try:
            big = _voxels(path, options) > blockwise_voxels
        except Exception as exc:  # unreadable: the batch goes on
            if lone:
                raise
            failed.append((path, exc))
            continue
        use_blocks = lone or big or volume_format == "zarr" or client is None
        (blockwise if use_blocks else whole).append((path, out_dir))
    futures = {}
    if whole:
        opts = _quiet(options)
        for path, out_dir in whole:
            fut = client.submit(_whole, path, out_dir, opts, retries=retries, pure=False)
            futures[fut] = path
    for path, out_dir in blockwise:
        try:
            reports.append(
                segment_file(
                    path,
                    out_dir,
                    options,
                    client=client,
                    volume_format=volume_format,
                    retries=retries,
                    gpu_resource=gpu_resource,
                )
            )
        except Exception as exc:
            if lone:
                raise
            log.error("%s: %s", path, exc)
            failed.append((path, exc))
        if on_done is not None:
            on_done(path)
    if futures:
        from distributed import as_completed

        for fut in as_completed(list(futures)):
            path = futures.pop(fut)
            try:
                reports.append(fut.result())
            except Exception as exc:
                failed.append((path, exc))
            if on_done is not None:
                on_done(path)
    return reports, failed


def _quiet(options: Any) -> Any:
    """The options for a worker: no progress bars."""
    from dataclasses import replace

    return replace(options, progress=False)
