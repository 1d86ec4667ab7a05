"""The network's vesicle probability for one block, equal to the single-process map there.

:func:`predict_block` computes, for the core of a :class:`~synapseg.distributed.blocks.
Block`, exactly what :func:`synapseg.infer.predict.predict_volume` computes for those
voxels on the whole volume: the block's model-grid region is resampled as the whole volume
would be (:mod:`synapseg.distributed.regrid`), normalised with the whole volume's
statistics, run through the tiles of the *whole volume's* tile plan that reach the core (in
the plan's order, one tile per forward pass as on the CPU), blended with the same weights
and normaliser, mapped back and scaled to uint8.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from synapseg.distributed.blocks import Block, model_range, tiles_for
from synapseg.distributed.decisions import Decisions
from synapseg.distributed.regrid import resample_region

log = logging.getLogger(__name__)

__all__ = ["load_network", "predict_block"]


@functools.lru_cache(maxsize=2)
def load_network(model: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(prepared net, card, torch device), loaded once per worker process."""
    from synapseg.infer.forward import prepare_net, select_device
    from synapseg.model.registry import load_model

    net, card = load_model(model, device="cpu")
    dev = select_device(device)
    return prepare_net(net, dev), card, dev


def predict_block(
    data: Any,
    block: Block,
    decisions: Decisions,
    *,
    device: str = "cpu",
    tta: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """uint8 (0-255) vesicle probability of ``block.core`` on the input grid.

    Parameters
    ----------
    data
        The whole (z, y, x) input array (memmap or zarr: only the block's region is read).
    block
        From :func:`~synapseg.distributed.blocks.network_blocks` (any core works; blocks
        made from tile groups waste the least).
    decisions
        The whole volume's :class:`~synapseg.distributed.decisions.Decisions`.
    device, tta, threads
        As for :func:`synapseg.infer.predict.predict_volume`.
    """
    from synapseg.infer.forward import forward_batch, torch_threads, tta_transforms, weight_tile
    from synapseg.infer.normalise import neutral_outside
    from synapseg.infer.predict import probability_to_uint8

    d = decisions
    net, card, dev = load_network(d.model, device)
    plan, f = d.plan, d.factors
    shape = plan.shape
    tiles = tiles_for(plan, block.core, f)
    region = tuple(
        slice(
            min(t.start[k] for t in tiles),
            min(max(t.start[k] + t.size[k] for t in tiles), shape[k]),
        )
        for k in range(3)
    )
    image = resample_region(
        lambda sl: np.asarray(data[sl], dtype=np.float32), data.shape, region, f
    )
    need = [model_range(block.core[k].start, block.core[k].stop, f[k], shape[k]) for k in range(3)]
    acc = np.zeros((1, *(b - a for a, b in need)), dtype=np.float32)
    mask = d.mask_for_network
    transforms = tta_transforms(card.tta_rot90) if tta else [((), 0)]
    with torch_threads(threads):
        for tile in tiles:
            src, dst = tile.data_slices(shape)
            local = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(src, region))
            batch = np.zeros((1, 1, *plan.tile_shape), dtype=np.float32)
            values = d.stats.apply(image[local], invert=d.invert, out=batch[(0, 0, *dst)])
            neutral_outside(values, mask, src, card.voxel_size_nm)
            probs = forward_batch(net, batch, dev, (0,), transforms)
            weighted = weight_tile(probs[0], plan, tile, dst)
            lo = [max(s.start, a) for s, (a, _) in zip(src, need)]
            hi = [min(s.stop, b) for s, (_, b) in zip(src, need)]
            if any(h <= low for low, h in zip(lo, hi)):
                continue
            into = tuple(slice(low - a, h - a) for low, h, (a, _) in zip(lo, hi, need))
            part = tuple(slice(low - s.start, h - s.start) for low, h, s in zip(lo, hi, src))
            acc[(slice(None), *into)] += weighted[(slice(None), *part)]
    wz, wy, wx = (w.astype(np.float32) for w in plan.normaliser())
    (z0, z1), (y0, y1), (x0, x1) = need
    wyx = wy[y0:y1, None] * wx[None, x0:x1]
    block_probs = np.array(acc[0], dtype=np.float32)
    block_probs /= wz[z0:z1, None, None] * wyx
    back = tuple(1 / v if v != 1 else 1.0 for v in np.asarray(f, dtype=np.float64))
    out = resample_region(
        lambda sl: block_probs[
            tuple(slice(s.start - a, s.stop - a) for s, (a, _) in zip(sl, need))
        ],
        shape,
        block.core,
        back,
    )
    return probability_to_uint8(out)
