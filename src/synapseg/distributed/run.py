"""Block-wise segmentation of one tomogram: :func:`segment_blocks`.

1. **Decisions** on the whole volume, once (:func:`~synapseg.distributed.decisions.decide`).
2. **Probabilities**: one task per group of network tiles
   (:func:`~synapseg.distributed.blocks.network_blocks`,
   :func:`~synapseg.distributed.block_predict.predict_block`); the cores are written into
   the probability sink (an MRC memmap or OME-Zarr array) as they come back.
3. **Threshold** from the map (unless given).
4. **Vesicles**: one task per block with a halo of one vesicle diameter
   (:func:`~synapseg.distributed.blocks.iter_blocks`,
   :func:`~synapseg.distributed.block_post.fit_block`), then the merge
   (:func:`~synapseg.distributed.block_post.merge_fits`).

Memory on a worker is bounded by its block; the driver holds the decisions, one block's
probabilities at a time and the vesicle table. With a dask client the tasks run on its
workers (retried when a worker dies); without one they run here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synapseg.distributed.backend import DEFAULT_RETRIES, run_tasks, scatter, worker_threads
from synapseg.distributed.block_post import fit_block, measure_thickness, merge_fits
from synapseg.distributed.block_predict import predict_block
from synapseg.distributed.blocks import iter_blocks, network_blocks, tiles_for, vesicle_halo_px
from synapseg.distributed.decisions import Decisions, decide

log = logging.getLogger(__name__)

__all__ = [
    "BlockResult",
    "DEFAULT_POST_BLOCK",
    "predict_blocks",
    "segment_blocks",
    "vesicles_blocks",
]

DEFAULT_POST_BLOCK = (128, 512, 512)
"""Core of a post-processing block (input voxels, z y x)."""


@dataclass
class BlockResult:
    """What :func:`segment_blocks` returns.

    Attributes
    ----------
    vesicles, rejected
        The vesicle table and the rejected candidates (as ``synapseg.segment``).
    probabilities
        The probability sink (uint8, input grid).
    decisions
        The whole-volume decisions (with the threshold used).
    facts
        Report entries: timings, blocks, counts, the decisions' facts.
    """

    vesicles: pd.DataFrame
    rejected: pd.DataFrame
    probabilities: Any
    decisions: Decisions
    facts: dict[str, Any] = field(default_factory=dict)


def _source(volume: Any) -> Any:
    """What tasks read the tomogram from: a memory-mapped file travels as its path
    (:class:`~synapseg.distributed.backend.FileArray`), a zarr array as itself (it pickles
    as its store), an in-memory array as its data."""
    from synapseg.distributed.backend import FileArray

    data = volume.data
    if isinstance(data, np.memmap) and getattr(volume, "path", None) is not None:
        return FileArray(volume.path, volume.voxel_size_nm)
    return data


def predict_blocks(
    volume: Any,
    decisions: Decisions,
    probabilities: Any,
    *,
    client: Any = None,
    tiles_per_block: int | Sequence[int] = 2,
    device: str = "cpu",
    tta: bool = False,
    retries: int = DEFAULT_RETRIES,
    gpu_resource: bool = False,
) -> dict[str, Any]:
    """Fill the uint8 ``probabilities`` sink (input grid) block by block; return facts."""
    t0 = time.perf_counter()
    shape = tuple(volume.shape)
    source = _source(volume) if client is not None else volume.data
    blocks = network_blocks(decisions.plan, decisions.factors, shape, tiles_per_block)
    src_f, d_f = scatter(client, [source, decisions]) if client is not None else (source, decisions)
    for i, core in run_tasks(
        client,
        _predict_task,
        blocks,
        src_f,
        d_f,
        name="synapseg-predict",
        retries=retries,
        resources={"GPU": 1} if gpu_resource else None,
        device=device,
        tta=tta,
        threads=worker_threads(client),
    ):
        probabilities[blocks[i].core] = core
    if hasattr(probabilities, "flush"):
        probabilities.flush()
    computed = sum(len(tiles_for(decisions.plan, b.core, decisions.factors)) for b in blocks)
    return {
        "seconds": time.perf_counter() - t0,
        "blocks": len(blocks),
        "tiles_per_block": tiles_per_block,
        "tiles": decisions.plan.n_tiles,
        "tiles_computed": computed,
    }


def vesicles_blocks(
    volume: Any,
    decisions: Decisions,
    probability: Any,
    *,
    client: Any = None,
    post_block: int | Sequence[int] = DEFAULT_POST_BLOCK,
    retries: int = DEFAULT_RETRIES,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The vesicle table from the finished probability map (``probability``: an array or a
    ``FileArray`` workers can open); ``decisions`` must hold the threshold."""
    t0 = time.perf_counter()
    shape = tuple(volume.shape)
    source = _source(volume) if client is not None else volume.data
    d = decisions
    max_r = d.params.get("max_radius_nm") or _default_max_radius()
    align = (1, 1, 1) if d.specimen.coarse.all() else d.specimen.cell_px
    blocks = list(
        iter_blocks(shape, post_block, vesicle_halo_px(max_r, d.grid.voxel_size_nm), align)
    )
    args = (
        scatter(client, [source, probability, d])
        if client is not None
        else [source, probability, d]
    )
    parts = _fit_all(client, blocks, *args, retries, None)
    thickness = measure_thickness(volume.data, parts, d)
    if thickness[1].get("source") == "estimated":  # refit every candidate, as one process does
        parts = _fit_all(client, blocks, *args, retries, thickness[0])
    table, rejected, info = merge_fits(parts, d, thickness, volume.data)
    info["seconds"] = time.perf_counter() - t0
    info["n_vesicles"] = int(len(table))
    info["blocks"] = {"n": len(blocks), "core": list(np.broadcast_to(post_block, 3).tolist())}
    return table, rejected, info


def segment_blocks(
    volume: Any,
    model: str = "default",
    *,
    client: Any = None,
    probabilities: Any = None,
    tiles_per_block: int | Sequence[int] = 2,
    post_block: int | Sequence[int] = DEFAULT_POST_BLOCK,
    tile_size: int | None = None,
    device: str = "cpu",
    tta: bool = False,
    retries: int = DEFAULT_RETRIES,
    gpu_resource: bool = False,
    **params: Any,
) -> BlockResult:
    """Segment the vesicles of one tomogram block by block.

    Parameters
    ----------
    volume
        A :class:`~synapseg.io.volume.Volume` (a file-backed one travels to workers by
        path).
    model
        Model name or folder.
    client
        A ``distributed.Client`` (:func:`~synapseg.distributed.backend.make_client`), or
        ``None`` to run the blocks here.
    probabilities
        Writable uint8 (z, y, x) sink on the input grid that workers can also read (an
        in-memory array, or a zarr array); default a new in-memory array.
    tiles_per_block
        Network tiles per block along (z, y, x) (bigger blocks waste less at their faces
        and need more memory).
    post_block
        Core of a post-processing block (input voxels).
    tile_size
        Network tile edge (model voxels); default the network's.
    device, tta
        As for ``synapseg segment``.
    retries
        Resubmissions of a task whose worker died.
    gpu_resource
        Run the network tasks only on workers started with ``--resources GPU=1``.
    **params
        Stage parameters (``invert``, ``threshold``, ``tilt_range_deg``, ``tilt_axis``,
        ``min_radius_nm``, ``max_radius_nm``, ``min_confidence``).
    """
    t0 = time.perf_counter()
    d = decide(volume, model, {**params, "device": device}, tile_size=tile_size)
    facts: dict[str, Any] = {"decisions_s": time.perf_counter() - t0}
    if probabilities is None:
        probabilities = np.zeros(tuple(volume.shape), np.uint8)
    facts["predict"] = predict_blocks(
        volume,
        d,
        probabilities,
        client=client,
        tiles_per_block=tiles_per_block,
        device=device,
        tta=tta,
        retries=retries,
        gpu_resource=gpu_resource,
    )
    d = d.with_threshold(probabilities)
    table, rejected, info = vesicles_blocks(
        volume, d, probabilities, client=client, post_block=post_block, retries=retries
    )
    facts["vesicles"] = info
    return BlockResult(table, rejected, probabilities, d, facts)


def _default_max_radius() -> float:
    from synapseg.post.vesicles import PostParams

    return float(PostParams.max_radius_nm)


def _predict_task(block: Any, source: Any, decisions: Decisions, **kw: Any) -> np.ndarray:
    return predict_block(source, block, decisions, **kw)


def _fit_task(
    block: Any, source: Any, probability: Any, decisions: Decisions, thickness_nm: float | None
) -> dict[str, Any]:
    return fit_block(source, probability, block, decisions, thickness_nm)


def _fit_all(
    client: Any,
    blocks: list[Any],
    source: Any,
    probability: Any,
    decisions: Any,
    retries: int,
    thickness_nm: float | None,
) -> list[dict[str, Any]]:
    parts: list[Any] = [None] * len(blocks)
    for i, part in run_tasks(
        client,
        _fit_task,
        blocks,
        source,
        probability,
        decisions,
        thickness_nm,
        name="synapseg-vesicles",
        retries=retries,
    ):
        parts[i] = part
    return parts
