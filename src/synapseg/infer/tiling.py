"""Block + halo tiling of volumes of any size, and Gaussian blending of overlapping tiles.

A :class:`TilePlan` covers a (z, y, x) grid with tiles that

- start on multiples of the network's ``size_multiple`` (so a translation-equivariant
  U-Net sees every tile exactly as it sees that region of the whole volume),
- lie inside the grid padded up to that multiple (zero-filled beyond the data),
- overlap by at least ``2 * halo`` voxels: the outer ``halo`` voxels of a tile face that
  touch a neighbour are context only (weight 0), the rest is blended with a Gaussian
  window, so there are no seams. With ``halo >= UNetConfig.halo`` the tiled prediction
  equals the whole-volume forward pass (to float rounding).

Blending weights are separable and the tile starts form a Cartesian product, so the sum of
weights at any voxel is the product of three 1D sums (:meth:`TilePlan.normaliser`): no
weight volume is ever allocated. :func:`iter_tiles` is a pure generator of slices, the unit
of work a distributed backend can farm out. :func:`choose_tiling` picks and validates the
tile size and halo for a network. Blocks of the input grid (cores with a halo, for
block-wise post-processing and the dask backend) come from one iterator,
:func:`synapseg.distributed.blocks.iter_blocks` (this module's copy was removed, issue 17).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, product
from typing import TYPE_CHECKING

import numpy as np

from synapseg.errors import InputError

if TYPE_CHECKING:  # keep this module free of torch
    from synapseg.model.unet import UNetConfig

DEFAULT_TILE = 256
"""Tile edge that sets the default halo (``tile / 10``); the default tiles themselves are
chosen by :func:`default_tile_shape`."""
MAX_TILE_EDGE = 512
"""Largest default tile edge (model voxels)."""
MAX_TILE_VOXELS = 32 * 2**20
"""Largest default tile (model voxels): bounds the network's activations (issue 17: a
224×448×448 tile, 45 Mvoxel, took `segment` to 1.67 GB peak anonymous memory on the
reference volume, over the 1.5 GB budget; 224×320×448 tiles compute 1.30× the model grid
where 256³ tiles computed 1.58×)."""
GAUSSIAN_SIGMA_FRACTION = 1 / 8
"""Sigma of the blending window as a fraction of the tile edge (as nnU-Net)."""
_MIN_WEIGHT = 1e-3


@dataclass(frozen=True)
class Tile:
    """One tile: its position on the (padded) grid and its part inside the data.

    Attributes
    ----------
    index
        (iz, iy, ix) position in the tile lattice.
    start, size
        Tile origin and edge lengths (z, y, x) on the padded grid.
    """

    index: tuple[int, int, int]
    start: tuple[int, int, int]
    size: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Slices of the tile on the padded grid."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size))  # type: ignore[return-value]

    def data_slices(self, shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(slices into the data of ``shape``, matching slices into the tile) for the real part."""
        src, dst = [], []
        for s, n, full in zip(self.start, self.size, shape):
            e = min(s + n, int(full))
            src.append(slice(s, e))
            dst.append(slice(0, max(e - s, 0)))
        return tuple(src), tuple(dst)


def _axis_tiles(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile edge and starts along one axis of ``length`` voxels (padded to ``multiple``)."""
    padded = -(-length // multiple) * multiple
    if padded <= tile:
        return padded, [0]
    step = tile - overlap
    n = math.ceil((padded - overlap) / step)
    # spread the tiles evenly: the smallest tile (on the lattice) that still covers the axis
    even = -(-math.ceil((padded + (n - 1) * overlap) / n) // multiple) * multiple
    tile = min(tile, max(even, overlap + multiple))
    step = tile - overlap
    n = math.ceil((padded - overlap) / step)
    starts = [min(i * step, padded - tile) for i in range(n)]
    return tile, sorted(set(starts))


@dataclass(frozen=True)
class TilePlan:
    """How a grid of ``shape`` is covered by tiles.

    Build it with :func:`plan_tiles`.
    """

    shape: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    tile_shape: tuple[int, int, int]
    halo: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def n_tiles(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    @property
    def computed_voxels(self) -> int:
        """Voxels the network processes (all tiles), for throughput and overhead figures."""
        return self.n_tiles * int(np.prod(self.tile_shape))

    def profile(self, axis: int, start: int) -> np.ndarray:
        """1D blending weights of the tile starting at ``start`` along ``axis``."""
        n = self.tile_shape[axis]
        sigma = max(n * GAUSSIAN_SIGMA_FRACTION, 1e-6)
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        w = np.maximum(np.exp(-0.5 * (x / sigma) ** 2), _MIN_WEIGHT)
        h = self.halo[axis]
        if h:
            if start > 0:
                w[:h] = 0.0
            if start + n < self.padded_shape[axis]:
                w[n - h :] = 0.0
        return w

    def profiles(self, tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 1D blending profiles (z, y, x) of ``tile``: its window is their outer
        product, applied axis by axis (:func:`synapseg.infer.forward.weight_tile`) so that no
        window volume is built per tile."""
        wz, wy, wx = (self.profile(a, s).astype(np.float32) for a, s in enumerate(tile.start))
        return wz, wy, wx

    def weight(self, tile: Tile) -> np.ndarray:
        """(z, y, x) float32 blending window of ``tile`` (outer product of 1D profiles)."""
        wz, wy, wx = (self.profile(a, s) for a, s in enumerate(tile.start))
        return (wz[:, None, None] * wy[None, :, None] * wx[None, None, :]).astype(np.float32)

    def normaliser(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-axis sums of the tile profiles over the padded grid; their outer product is the
        total blending weight at every voxel (always > 0)."""
        out = []
        for axis in range(3):
            total = np.zeros(self.padded_shape[axis], dtype=np.float64)
            n = self.tile_shape[axis]
            for s in self.starts[axis]:
                total[s : s + n] += self.profile(axis, s)
            out.append(total)
        return out[0], out[1], out[2]


def plan_tiles(
    shape: Sequence[int],
    tile_shape: int | Sequence[int],
    halo: int | Sequence[int],
    multiple: int = 1,
) -> TilePlan:
    """Cover a (z, y, x) grid with lattice-aligned, overlapping tiles.

    Parameters
    ----------
    shape
        Grid shape (z, y, x).
    tile_shape
        Largest tile edge(s); each must be a multiple of ``multiple``. Along an axis that fits
        in one tile the tile shrinks to the (padded) axis; otherwise tiles shrink just enough
        to spread evenly.
    halo
        Context voxels discarded at each tile face that touches a neighbouring tile.
    multiple
        Tile sizes and starts are multiples of this (``UNetConfig.size_multiple``).

    Raises
    ------
    ValueError
        A tile edge that is not a multiple of ``multiple`` or not larger than ``2 * halo``.
    """
    shape3 = tuple(int(s) for s in shape)
    tiles = [int(tile_shape)] * 3 if np.isscalar(tile_shape) else [int(t) for t in tile_shape]  # type: ignore[arg-type]
    halos = [int(halo)] * 3 if np.isscalar(halo) else [int(h) for h in halo]  # type: ignore[arg-type]
    if len(shape3) != 3 or len(tiles) != 3 or len(halos) != 3:
        raise ValueError("shape, tile_shape and halo need 3 entries (z, y, x)")
    edges, starts, padded, used_halo = [], [], [], []
    for length, tile, h in zip(shape3, tiles, halos):
        if tile % multiple:
            raise ValueError(f"tile size {tile} is not a multiple of {multiple}")
        overlap = -(-2 * h // multiple) * multiple
        if tile <= overlap:
            raise ValueError(f"tile size {tile} leaves nothing inside a halo of {h} voxels")
        edge, st = _axis_tiles(length, tile, overlap, multiple)
        edges.append(edge)
        starts.append(tuple(st))
        padded.append(-(-length // multiple) * multiple)
        used_halo.append(h if len(st) > 1 else 0)
    return TilePlan(
        shape=shape3,  # type: ignore[arg-type]
        padded_shape=tuple(padded),  # type: ignore[arg-type]
        tile_shape=tuple(edges),  # type: ignore[arg-type]
        halo=tuple(used_halo),  # type: ignore[arg-type]
        starts=tuple(starts),  # type: ignore[arg-type]
    )


def iter_tiles(plan: TilePlan) -> Iterator[Tile]:
    """Yield every tile of ``plan`` in z, y, x order (a pure function of the plan)."""
    for index in product(*(range(len(s)) for s in plan.starts)):
        start = tuple(plan.starts[a][i] for a, i in enumerate(index))
        yield Tile(index=index, start=start, size=plan.tile_shape)  # type: ignore[arg-type]


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Group an iterable into lists of at most ``n`` items."""
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def choose_tiling(
    config: UNetConfig,
    grid: Sequence[int],
    tile_size: int | Sequence[int] | None = None,
    halo: int | None = None,
) -> TilePlan:
    """Plan the tiles for a model grid, validating a user-given tile size.

    Parameters
    ----------
    config
        The network's architecture (size multiple, receptive field, exact halo).
    grid
        Model-grid shape (z, y, x).
    tile_size
        Largest tile edge(s) in model voxels; default :data:`DEFAULT_TILE` (at least the
        receptive field).
    halo
        Context voxels discarded at inner tile faces; default ``tile / 10`` (at least half a
        size multiple, at most the exact halo). ``config.halo`` makes tiling exact.

    Raises
    ------
    InputError
        A tile size smaller than the receptive field or not a multiple of the network's
        size multiple.
    """
    m = config.size_multiple
    if tile_size is None:
        tiles = [max(DEFAULT_TILE, config.min_tile)] * 3
    else:
        tiles = [int(tile_size)] * 3 if np.isscalar(tile_size) else [int(t) for t in tile_size]  # type: ignore[arg-type]
        for t in tiles:
            if t % m:
                raise InputError(
                    "--tile-size",
                    f"tile size {t} is not a multiple of {m} (the network's deepest level "
                    f"works at 1/{m} of the model grid)",
                    f"use a multiple of {m}, e.g. {max(m, -(-t // m) * m)}",
                )
            if t < config.min_tile:
                raise InputError(
                    "--tile-size",
                    f"tile size {t} is smaller than the network's receptive field "
                    f"({config.receptive_field} model voxels)",
                    f"use --tile-size {config.min_tile} or more",
                )
    if halo is None:  # ~tile/10, rounded so that the overlap (2 * halo) is a lattice step
        step = max(m // 2, 1)
        halo = min(config.halo, max(step, round(min(tiles) / 10 / step) * step))
    elif halo < 0 or 2 * halo >= min(tiles):
        raise InputError(
            "--halo",
            f"halo {halo} must be >= 0 and leave part of a {min(tiles)}-voxel tile",
            f"use a halo below {min(tiles) // 2}",
        )
    if tile_size is None:
        tiles = list(default_tile_shape(grid, int(halo), m, config.min_tile))
    return plan_tiles(grid, tiles, int(halo), m)


def default_tile_shape(
    grid: Sequence[int],
    halo: int,
    multiple: int,
    min_tile: int,
    max_voxels: int = MAX_TILE_VOXELS,
    max_edge: int = MAX_TILE_EDGE,
) -> tuple[int, int, int]:
    """The tile shape that makes the network compute the fewest voxels for ``grid``.

    Every combination of per-axis edges (multiples of ``multiple`` from ``min_tile`` to
    ``max_edge``) whose tile holds at most ``max_voxels`` voxels is planned as
    :func:`plan_tiles` would; the one with the fewest computed voxels wins (ties: fewer
    tiles, then the smaller tile). Overlaps between tiles are recomputed voxels: on the
    reference volume's model grid (213×835×835) 224×320×448 tiles compute 1.30× the grid
    where 224×256×256 tiles computed 1.58× (issue 17).
    """
    overlap = -(-2 * halo // multiple) * multiple
    lo = max(min_tile, overlap + multiple)
    options = []
    for length in (int(n) for n in grid):
        padded = -(-length // multiple) * multiple
        seen: dict[int, tuple[int, int, int]] = {}  # edge used -> (used, tiles, edge asked)
        for edge in range(lo, max(lo, max_edge) + 1, multiple):
            used, starts = _axis_tiles(length, edge, overlap, multiple)
            seen.setdefault(used, (used, len(starts), edge))
            if used >= padded:
                break
        options.append(sorted(seen.values()))
    combos = [
        (
            int(np.prod([e * n for e, n, _ in combo])),  # computed voxels
            int(np.prod([n for _, n, _ in combo])),  # tiles
            int(np.prod([e for e, _, _ in combo])),  # tile voxels
            tuple(asked for _, _, asked in combo),  # plan_tiles shrinks them as planned here
        )
        for combo in product(*options)
    ]
    fitting = [c for c in combos if c[2] <= max_voxels]
    if not fitting:  # only when even the smallest useful tile is over the budget
        return min(combos, key=lambda c: c[2])[3]  # type: ignore[return-value]
    return min(fitting)[3]  # type: ignore[return-value]
