"""Blocks with a halo on the input grid: the unit of work of block-wise segmentation.

Two kinds of blocks cover a (z, y, x) volume, both as :class:`Block` (a *core* the block
owns and an *outer* region, core plus halo, that it reads):

- :func:`iter_blocks` cuts the grid into cores of a given shape, grown by a halo and
  optionally aligned (outer regions start on multiples of ``align``, e.g. the specimen
  mask's cells). Post-processing blocks use a halo of at least the largest vesicle
  diameter, so every vesicle whose center lies in a core is seen whole.
- :func:`network_blocks` groups the tiles of the network's :class:`~synapseg.infer.tiling.
  TilePlan` for the *whole* volume: a core is the input voxels whose model-grid position
  falls in the blending support of a group of tiles, and :func:`tiles_for` lists every
  tile that contributes to it. Each block then computes exactly the tiles the
  single-process run computes there, in the same order, so the probabilities agree
  bit for bit and the only extra work is at block faces (none when the input is on the
  model's voxel size).

Pure functions of shapes: no data is read here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from synapseg.infer.preprocess import antialias_sigma
from synapseg.infer.tiling import Tile, TilePlan, iter_tiles

MAX_BLOCK_MODEL_VOXELS = 8 * 256**3
"""Most tile voxels in one network block (2×2×2 tiles of 256³, the default before issue 17)."""

__all__ = [
    "Block",
    "iter_blocks",
    "model_range",
    "network_blocks",
    "resample_margin",
    "source_range",
    "tiles_for",
    "vesicle_halo_px",
]

Slices = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Block:
    """A block of the input grid.

    Attributes
    ----------
    index
        (iz, iy, ix) position in the block lattice (ids and ordering).
    core
        Slices of the voxels the block owns (the cores partition the grid).
    outer
        Slices of the voxels it reads: the core grown by the halo, clipped to the grid.
    """

    index: tuple[int, int, int]
    core: Slices
    outer: Slices

    @property
    def core_in_outer(self) -> Slices:
        """Where the core sits inside ``outer``."""
        return tuple(
            slice(c.start - o.start, c.stop - o.start) for c, o in zip(self.core, self.outer)
        )  # type: ignore[return-value]

    @property
    def offset(self) -> np.ndarray:
        """(z, y, x) position of ``outer``'s first voxel on the grid."""
        return np.array([o.start for o in self.outer], dtype=np.float64)

    @property
    def core_shape(self) -> tuple[int, int, int]:
        return tuple(c.stop - c.start for c in self.core)  # type: ignore[return-value]

    def owns(self, centers_px: np.ndarray) -> np.ndarray:
        """Whether (n, 3) grid coordinates lie in the core (a center at a face belongs to
        the block above it: ``start <= round(c) < stop``)."""
        c = np.rint(np.asarray(centers_px, dtype=np.float64).reshape(-1, 3))
        lo = np.array([s.start for s in self.core])
        hi = np.array([s.stop for s in self.core])
        return np.all((c >= lo) & (c < hi), axis=1)


def _triple(value: int | Sequence[int]) -> list[int]:
    return [int(value)] * 3 if np.isscalar(value) else [int(v) for v in value]  # type: ignore[arg-type]


def iter_blocks(
    shape: Sequence[int],
    block: int | Sequence[int],
    halo: int | Sequence[int],
    align: int | Sequence[int] = 1,
) -> Iterator[Block]:
    """Cut a (z, y, x) grid into blocks of ``block`` voxels grown by ``halo``.

    Parameters
    ----------
    shape
        Grid shape.
    block
        Core edge(s) in voxels (the last block along an axis may be smaller).
    halo
        Context voxels on each side of the core (clipped at the grid faces).
    align
        The outer region starts on a multiple of this along each axis (it grows a little
        beyond ``halo`` to get there).

    Examples
    --------
    >>> [b.core[2] for b in iter_blocks((4, 4, 10), (4, 4, 6), 2)]
    [slice(0, 6, None), slice(6, 10, None)]
    >>> [b.outer[2] for b in iter_blocks((4, 4, 10), (4, 4, 6), 2, align=4)]
    [slice(0, 8, None), slice(4, 10, None)]
    """
    shape3, blocks, halos, aligns = _triple(shape), _triple(block), _triple(halo), _triple(align)
    starts = [range(0, n, b) for n, b in zip(shape3, blocks)]
    for index in product(*(range(len(s)) for s in starts)):
        core, outer = [], []
        for axis, i in enumerate(index):
            lo = starts[axis][i]
            hi = min(lo + blocks[axis], shape3[axis])
            o_lo = max(lo - halos[axis], 0) // aligns[axis] * aligns[axis]
            core.append(slice(lo, hi))
            outer.append(slice(o_lo, min(hi + halos[axis], shape3[axis])))
        yield Block(index, tuple(core), tuple(outer))  # type: ignore[arg-type]


def vesicle_halo_px(
    max_radius_nm: float, voxel_size_nm: Sequence[float], margin_nm: float = 10.0
) -> list[int]:
    """Halo (z, y, x voxels) of a post-processing block: one largest vesicle diameter
    (outer surface) plus ``margin_nm``, so a vesicle owned by a core lies inside its outer
    region together with the rays of its sphere fit."""
    return [int(math.ceil((2 * max_radius_nm + margin_nm) / v)) for v in voxel_size_nm]


def _support(plan: TilePlan, axis: int, start: int) -> tuple[int, int]:
    """Model-grid range where a tile starting at ``start`` has non-zero blending weight."""
    n, h = plan.tile_shape[axis], plan.halo[axis]
    lo = start + h if start > 0 else start
    hi = start + n - h if start + n < plan.padded_shape[axis] else start + n
    return lo, min(hi, plan.shape[axis])


def resample_margin(factor: float) -> int:
    """Source voxels needed beyond a resampled range (linear interpolation + anti-alias
    filter, as :func:`synapseg.infer.preprocess.resample_stream`); 0 when ``factor`` is 1."""
    if factor == 1:
        return 0
    sigma = float(antialias_sigma([factor])[0])
    return (int(4.0 * sigma + 0.5) if sigma > 0 else 0) + 1


def source_range(lo: int, hi: int, factor: float, n_src: int) -> tuple[int, int]:
    """Source rows ``[a, b)`` that resampling destination rows ``[lo, hi)`` reads
    (``factor``: destination voxels per source voxel; destination voxel ``j`` is source
    coordinate ``j / factor``, as in :func:`synapseg.infer.preprocess.resample_stream`)."""
    if factor == 1:
        return lo, hi
    m = resample_margin(factor)
    a = max(int(math.floor(lo / factor)) - m, 0)
    return a, min(int(math.floor((hi - 1) / factor)) + 2 + m, n_src)


def model_range(lo: int, hi: int, factor: float, n_model: int) -> tuple[int, int]:
    """Model-grid rows that resampling back to input rows ``[lo, hi)`` reads (``factor``:
    model voxels per input voxel; the way back uses ``1 / factor``, as the single-process
    run does)."""
    return source_range(lo, hi, 1 / factor if factor != 1 else 1.0, n_model)


def network_blocks(
    plan: TilePlan,
    factors: Sequence[float],
    input_shape: Sequence[int],
    tiles_per_block: int | Sequence[int] = 2,
) -> list[Block]:
    """Blocks of the input grid made of groups of ``tiles_per_block`` network tiles.

    Along each axis the group boundaries are the starts of the blending supports of every
    ``k``-th tile; a core holds the input voxels whose model position lies in its group's
    supports. ``outer`` is the input region the block's tiles read (see :func:`tiles_for`).
    A group holds at most :data:`MAX_BLOCK_MODEL_VOXELS` tile voxels (the largest ``k`` is
    reduced first): the default tiles grow up to 32 Mi voxels (issue 17), and a worker's memory
    stays what 2×2×2 tiles of 256³ needed.
    """
    ks = list(_triple(tiles_per_block))
    tile_voxels = int(np.prod(plan.tile_shape))
    while int(np.prod(ks)) > 1 and int(np.prod(ks)) * tile_voxels > MAX_BLOCK_MODEL_VOXELS:
        ks[int(np.argmax(ks))] -= 1
    cuts = []
    for axis in range(3):
        f, n_in = float(factors[axis]), int(input_shape[axis])
        starts = plan.starts[axis]
        model_cuts = [_support(plan, axis, starts[i])[0] for i in range(0, len(starts), ks[axis])]
        edges = sorted({min(int(math.ceil(c / f - 1e-9)), n_in) for c in model_cuts[1:]})
        cuts.append([0, *[e for e in edges if 0 < e < n_in], n_in])
    out = []
    for index in product(*(range(len(c) - 1) for c in cuts)):
        core = tuple(slice(cuts[a][i], cuts[a][i + 1]) for a, i in enumerate(index))
        tiles = tiles_for(plan, core, factors)
        outer = []
        for axis in range(3):
            lo = min(t.start[axis] for t in tiles)
            hi = min(max(t.start[axis] + t.size[axis] for t in tiles), plan.shape[axis])
            a, b = source_range(lo, hi, float(factors[axis]), int(input_shape[axis]))
            outer.append(slice(min(a, core[axis].start), max(b, core[axis].stop)))
        out.append(Block(index, core, tuple(outer)))  # type: ignore[arg-type]
    return out


def tiles_for(plan: TilePlan, core: Slices, factors: Sequence[float]) -> list[Tile]:
    """The tiles of ``plan`` whose blending support meets the model rows that the input
    ``core`` is resampled from, in the plan's own order (as the single-process run adds
    them up)."""
    wanted = []
    for axis in range(3):
        a, b = model_range(
            core[axis].start, core[axis].stop, float(factors[axis]), plan.shape[axis]
        )
        wanted.append(
            {
                s
                for s in plan.starts[axis]
                if _support(plan, axis, s)[0] < b and _support(plan, axis, s)[1] > a
            }
        )
    return [t for t in iter_tiles(plan) if all(t.start[k] in wanted[k] for k in range(3))]
