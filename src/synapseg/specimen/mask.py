"""Where the specimen is: a coarse mask that excludes vacuum/ice slabs, lamella edges, gold.

A lamella tomogram holds empty slabs (vacuum or ice) above and below the specimen, often
with an intensity offset and little texture; gold fiducials are compact, extremely dark
(or bright, for inverted contrast) blobs; saturated or empty regions are flat. Statistics
over the whole volume (the network's normalisation, the contrast decision, the QC
background) are dragged by them, so synapseg computes them only inside the specimen.

The model is deliberately cheap. The volume is read z-chunk by z-chunk (memory-mapped or
zarr data is never copied whole) into a coarse grid of cells of about :data:`CELL_NM`;
each cell gets its mean and standard deviation. The *reference* is the robust centre of
the cells in the middle third of z (the specimen is in the middle of any sensible
tomogram). A cell is excluded when it is

* ``flat``: its standard deviation is below ``FLAT_RATIO`` x the reference (vacuum,
  saturated or empty regions);
* ``textured``: above ``TEXTURED_RATIO`` x the reference (gold beads and their edges);
* ``bright`` / ``dark``: its mean is offset from the reference by more than
  ``OFFSET_SPREADS`` robust spreads of the reference cells' means *and* by more than
  ``OFFSET_MIN_SIGMA`` voxel sigmas (vacuum/ice offset, gold cores).

Isolated decisions are smoothed by a 3x3x3 majority vote, then the specimen's z-range is
the longest run of cell layers of which at least half is specimen; layers outside it are
excluded as ``slab``. Compact extreme cells (gold) are excluded with a one-cell margin.
Pure numpy/scipy; no I/O beyond indexing the array it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx

log = logging.getLogger(__name__)

CELL_NM = 8.0
"""Edge of a coarse cell in nm (at least 2 voxels)."""
MAX_CELLS = 4_000_000
"""Cells are enlarged until the coarse grid holds at most this many."""
FLAT_RATIO = 0.35
TEXTURED_RATIO = 3.0
OFFSET_SPREADS = 6.0
OFFSET_MIN_SIGMA = 0.5
GOLD_SIGMA = 2.5
"""A cell whose mean is this many voxel sigmas from the reference is gold-like (compact)."""
MIN_SPECIMEN_FRACTION = 0.1
"""Below this fraction of specimen cells the mask is not trusted: the whole volume is used."""
_READ_VOXELS = 8 * 2**20
REASONS = ("flat", "textured", "bright", "dark", "gold", "slab")


@dataclass(frozen=True)
class SpecimenMask:
    """A coarse boolean specimen mask over a (z, y, x) volume.

    Attributes
    ----------
    coarse
        Boolean (gz, gy, gx) grid: True where a cell is specimen.
    cell_px
        Input voxels per cell along (z, y, x); cell ``k`` covers voxels
        ``[k * cell_px, (k + 1) * cell_px)``.
    shape
        The input volume's (z, y, x) shape.
    voxel_size_nm
        The input volume's (z, y, x) voxel size.
    facts
        Summary (JSON-ready): specimen z-range (voxels and nm), fraction excluded, fraction per
        reason, the reference statistics and whether the mask was trusted.
    """

    coarse: np.ndarray
    cell_px: tuple[int, int, int]
    shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def everywhere(
        cls, shape: Sequence[int], voxel_size_nm: float | Sequence[float]
    ) -> SpecimenMask:
        """A mask that keeps the whole volume (no exclusion)."""
        shape3 = tuple(int(s) for s in shape)
        vs = _triple(voxel_size_nm)
        facts = {
            "specimen_z_range_px": [0, shape3[0]],
            "specimen_z_range_nm": [0.0, round(shape3[0] * vs[0], 3)],
            "fraction_excluded": 0.0,
            "excluded_by_reason": {},
            "trusted": False,
            "note": "no specimen mask: the whole volume is used",
        }
        return cls(np.ones((1, 1, 1), bool), shape3, shape3, vs, facts)  # type: ignore[arg-type]

    @property
    def fraction(self) -> float:
        """Fraction of the volume (cells) that is specimen."""
        return float(self.coarse.mean())

    def cell_index(self, coords_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coarse cell indices (clipped to the grid) of (..., 3) input voxel coordinates."""
        c = np.asarray(coords_px, dtype=np.float64)
        idx = np.floor(c / np.asarray(self.cell_px, dtype=np.float64)).astype(np.intp)
        idx = np.clip(idx, 0, np.asarray(self.coarse.shape) - 1)
        return idx[..., 0], idx[..., 1], idx[..., 2]

    def contains_px(self, coords_px: np.ndarray, margin_cells: int = 0) -> np.ndarray:
        """Whether (..., 3) input voxel coordinates lie in the specimen.

        ``margin_cells`` grows the specimen by that many cells first (a lenient test near
        its surface, e.g. for centers of vesicles cut by the lamella surface).
        """
        grid = self.coarse
        if margin_cells > 0 and not grid.all():
            grid = ndimage.binary_dilation(grid, iterations=int(margin_cells))
        return grid[self.cell_index(coords_px)]

    def at(
        self, shape: Sequence[int], voxel_size_nm: float | Sequence[float] | None = None
    ) -> np.ndarray:
        """The mask on another grid covering the same volume (e.g. the model grid).

        Voxel ``j`` of a grid with voxel size ``d`` sits at ``j * d`` nm, i.e. at input
        voxel ``j * d / s``. Returns a boolean array of ``shape`` (one byte per voxel: use
        :meth:`contains_px` on samples for huge grids).
        """
        return self.sample_grid([np.arange(int(n)) for n in shape], voxel_size_nm)

    def sample_grid(
        self,
        indices: Sequence[np.ndarray],
        voxel_size_nm: float | Sequence[float] | None = None,
    ) -> np.ndarray:
        """The mask at the outer product of per-axis voxel ``indices`` (z, y, x) of a grid with
        voxel size ``voxel_size_nm`` (default: the input's), e.g. a strided sample."""
        d = self.voxel_size_nm if voxel_size_nm is None else _triple(voxel_size_nm)
        axes = []
        for k in range(3):
            pos = np.asarray(indices[k], dtype=np.float64) * d[k] / self.voxel_size_nm[k]
            idx = np.floor(pos / self.cell_px[k] + 1e-9).astype(np.intp)
            axes.append(np.clip(idx, 0, self.coarse.shape[k] - 1))
        return self.coarse[np.ix_(*axes)]

    def rows(self, z0: int, z1: int) -> np.ndarray:
        """The mask for input rows ``[z0, z1)`` at full (y, x) resolution, (z1 - z0, ny, nx)."""
        zi = np.clip(np.arange(z0, z1) // self.cell_px[0], 0, self.coarse.shape[0] - 1)
        yi = np.clip(np.arange(self.shape[1]) // self.cell_px[1], 0, self.coarse.shape[1] - 1)
        xi = np.clip(np.arange(self.shape[2]) // self.cell_px[2], 0, self.coarse.shape[2] - 1)
        return self.coarse[np.ix_(zi, yi, xi)]


def _triple(voxel_size_nm: float | Sequence[float]) -> tuple[float, float, float]:
    v = voxel_size_zyx(voxel_size_nm)
    return tuple(float(x) for x in v)  # type: ignore[return-value]


def cell_size_px(
    shape: Sequence[int], voxel_size_nm: float | Sequence[float], cell_nm: float = CELL_NM
) -> tuple[int, int, int]:
    """Voxels per coarse cell along (z, y, x): about ``cell_nm``, at least 2, grown until
    the grid holds at most :data:`MAX_CELLS` cells."""
    vs = np.asarray(_triple(voxel_size_nm))
    cell = np.maximum(2, np.rint(cell_nm / vs)).astype(int)
    n = np.asarray(shape, dtype=np.int64)
    while np.prod(-(-n // cell)) > MAX_CELLS:
        cell = cell + np.maximum(1, cell // 4)
    return tuple(int(c) for c in cell)  # type: ignore[return-value]


def cell_statistics(data: Any, cell_px: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean and standard deviation of a (z, y, x) array-like, read in z-chunks.

    Cells at least 4 sections thick use every other section (rows 0, 2, 4, ... of each cell
    layer: half the reading and arithmetic). Only finite values count; a cell without any
    gets mean NaN and std 0. Memory is bounded by two reads of at most :data:`_READ_VOXELS`
    voxels (one section where a section is larger: a 4096×4096 section, not a 64-deep
    slab of them) plus the coarse grid.

    Sums and sums of squares are taken in float64, over x-blocks first (``reduceat``: partial
    edge cells need no padding), then over the sections and the y-blocks. A read is checked
    for NaN/inf through its sums of squares (a float64 square of a float32 cannot overflow,
    so they are finite exactly when every voxel is); only a read with non-finite voxels
    takes the slower masked path.
    """
    nz, ny, nx = (int(s) for s in data.shape)
    cz, cy, cx = (int(c) for c in cell_px)
    sz = 2 if cz >= 4 else 1
    gz, gy, gx = -(-nz // cz), -(-ny // cy), -(-nx // cx)
    ys, xs = np.arange(0, ny, cy), np.arange(0, nx, cx)
    per_cell = np.outer(np.diff(np.append(ys, ny)), np.diff(np.append(xs, nx))).astype(float)
    total = np.zeros((gz, gy, gx))
    total_sq = np.zeros_like(total)
    count = np.zeros_like(total)

    def xsums(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.add.reduceat(a, xs, axis=2, dtype=np.float64).sum(axis=0)
        s2 = np.add.reduceat(np.square(a, dtype=np.float64), xs, axis=2).sum(axis=0)
        return s, s2

    def read_stats(sections: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, s2 = xsums(sections)
        if np.isfinite(s2).all():
            n = len(sections) * per_cell
        else:
            finite = np.isfinite(sections)
            s, s2 = xsums(np.where(finite, sections, np.float32(0)))
            n = np.add.reduceat(finite.sum(axis=0, dtype=np.float64), xs, axis=1)
            n = np.add.reduceat(n, ys, axis=0)
        return np.add.reduceat(s, ys, axis=0), np.add.reduceat(s2, ys, axis=0), n

    # each read: a run of one layer's used sections, at most _READ_VOXELS voxels (>= 1 section)
    per_read = max(1, _READ_VOXELS // max(ny * nx, 1)) * sz
    reads = [
        (k, z0, min(z0 + per_read, (k + 1) * cz, nz))
        for k in range(gz)
        for z0 in range(k * cz, min((k + 1) * cz, nz), per_read)
    ]
    # two reads at a time: numpy's reductions release the GIL; the reading stays in this
    # thread (a slab cache over a zarr store is not thread-safe)
    with ThreadPoolExecutor(2) as pool:
        for i in range(0, len(reads), 2):
            pair = reads[i : i + 2]
            # a float32 memmap is viewed, not copied: only the sections used are read
            blocks = [np.asarray(data[z0:z1:sz], dtype=np.float32) for _, z0, z1 in pair]
            for (k, _, _), (t, t2, n) in zip(pair, pool.map(read_stats, blocks)):
                total[k] += t
                total_sq[k] += t2
                count[k] += n
            del blocks
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        var = total_sq / count - mean * mean
    std = np.sqrt(np.clip(np.nan_to_num(var, nan=0.0), 0.0, None))
    return mean, std


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True in a 1-D array ((0, 0) when none)."""
    best, start = (0, 0), None
    for i, f in enumerate(np.append(flags, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def specimen_mask(
    data: Any,
    voxel_size_nm: float | Sequence[float],
    *,
    cell_nm: float = CELL_NM,
) -> SpecimenMask:
    """Find the specimen in a (z, y, x) tomogram (see the module docstring for the model).

    Parameters
    ----------
    data
        (z, y, x) array-like: numpy array, memmap or zarr array (read in z-chunks).
    voxel_size_nm
        Voxel size, scalar or (z, y, x) triple.
    cell_nm
        Edge of a coarse cell in nm.

    Returns
    -------
    SpecimenMask
        The coarse mask and its facts. When less than :data:`MIN_SPECIMEN_FRACTION` of the
        volume looks like specimen the model is not trusted and the mask keeps everything
        (``facts["trusted"]`` is False and ``facts["note"]`` says why).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tomo = rng.normal(0, 1, (48, 32, 32)).astype(np.float32)
    >>> tomo[:12] = 5.0  # a flat, bright vacuum slab on top
    >>> mask = specimen_mask(tomo, 1.0, cell_nm=4)
    >>> mask.facts["specimen_z_range_px"]
    [12, 48]
    """
    shape = tuple(int(s) for s in data.shape)
    vs = _triple(voxel_size_nm)
    cell = cell_size_px(shape, vs, cell_nm)
    mean, std = cell_statistics(data, cell)
    gz = mean.shape[0]
    core = slice(gz // 3, max(gz // 3 + 1, (2 * gz) // 3))
    core_mean, core_std = mean[core], std[core]
    ok = np.isfinite(core_mean) & (core_std > 0)
    if not ok.any():
        return _untrusted(shape, vs, "the middle of the volume is constant or not finite")
    s_ref = float(np.median(core_std[ok]))
    m_ref = float(np.median(core_mean[ok]))
    m_spread = float(1.4826 * np.median(np.abs(core_mean[ok] - m_ref)))
    offset_limit = max(OFFSET_SPREADS * m_spread, OFFSET_MIN_SIGMA * s_ref)
    finite = np.isfinite(mean)
    delta = np.where(finite, mean - m_ref, 0.0)
    reason = np.zeros(mean.shape, np.uint8)  # 0: specimen-like, else 1 + index in REASONS
    flat = (std < FLAT_RATIO * s_ref) | ~finite
    textured = std > TEXTURED_RATIO * s_ref
    bright = delta > offset_limit
    dark = delta < -offset_limit
    extreme = (np.abs(delta) > GOLD_SIGMA * s_ref) | textured
    # compact extreme blobs (at most a few cells across) are gold beads, not slabs
    labels, n = ndimage.label(extreme & ~flat)
    gold = np.zeros_like(extreme)
    if n:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, np.arange(1, n + 1))
        small = np.zeros(n + 1, bool)
        small[1:] = sizes <= 27
        # ... and surrounded by specimen: extreme cells at a slab's surface are not gold
        near_slab = ndimage.binary_dilation(((bright | dark) & ~extreme) | flat, iterations=1)
        touching = np.zeros(n + 1, bool)
        touching[np.unique(labels[near_slab & (labels > 0)])] = True
        gold = (small & ~touching)[labels]
    for name, sel in (("dark", dark), ("bright", bright), ("textured", textured), ("flat", flat)):
        reason[sel] = 1 + REASONS.index(name)
    reason[gold] = 1 + REASONS.index("gold")
    like = reason == 0
    # 3x3x3 majority vote (separable: sums of 3 along each axis, at least 14 of 27)
    votes = like.astype(np.uint8)
    for axis in range(3):
        votes = ndimage.uniform_filter1d(votes * np.uint8(3), 3, axis=axis, mode="nearest")
    like = votes >= 14
    like &= ~ndimage.binary_dilation(gold, iterations=1)
    layer_fraction = like.mean(axis=(1, 2))
    z0, z1 = _longest_run(layer_fraction >= 0.5)
    coarse = like.copy()
    coarse[:z0] = False
    coarse[z1:] = False
    if coarse.mean() < MIN_SPECIMEN_FRACTION:
        return _untrusted(
            shape,
            vs,
            f"only {coarse.mean():.0%} of the volume looks like specimen (vacuum or ice only?)",
        )
    slab = np.zeros(mean.shape, bool)
    slab[:z0] = True
    slab[z1:] = True
    reason[slab & (reason == 0)] = 1 + REASONS.index("slab")
    excluded = ~coarse
    counts = np.bincount(reason[excluded], minlength=len(REASONS) + 1) / reason.size
    by_reason = {r: round(float(counts[1 + i]), 4) for i, r in enumerate(REASONS) if counts[1 + i]}
    if counts[0] > 0:
        by_reason["isolated"] = round(float(counts[0]), 4)
    zr = [min(shape[0], z0 * cell[0]), min(shape[0], z1 * cell[0])]
    facts = {
        "specimen_z_range_px": zr,
        "specimen_z_range_nm": [round(zr[0] * vs[0], 3), round(zr[1] * vs[0], 3)],
        "fraction_excluded": round(float(excluded.mean()), 4),
        "excluded_by_reason": by_reason,
        "cell_px_zyx": list(cell),
        "reference": {"mean": m_ref, "cell_std": s_ref, "mean_spread": m_spread},
        "trusted": True,
    }
    if excluded.any():
        log.info(
            "specimen mask: z %d-%d px of %d, %.0f%% excluded (%s)",
            zr[0],
            zr[1],
            shape[0],
            100 * excluded.mean(),
            ", ".join(f"{k} {v:.0%}" for k, v in by_reason.items()),
        )
    return SpecimenMask(coarse, cell, shape, vs, facts)  # type: ignore[arg-type]


def _untrusted(shape: tuple[int, ...], vs: tuple[float, float, float], why: str) -> SpecimenMask:
    log.warning("specimen mask not used: %s; statistics use the whole volume", why)
    mask = SpecimenMask.everywhere(shape, vs)
    mask.facts["note"] = f"specimen mask not used: {why}"
    return mask
