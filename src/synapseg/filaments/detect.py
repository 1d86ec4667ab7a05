"""Connectors and tethers by Pyto-style hierarchical thresholding between boundaries.

Method (after Lučić et al.'s Pyto connectivity segmentation; docs/filaments.md):

1. Only boxes around the straight line between two candidate boundaries (vesicle pairs
   whose outer surfaces are ``min_gap_nm``-``max_gap_nm`` apart; vesicles within
   ``max_tether_gap_nm`` of the AZ) are read, ``pad_nm`` wide: a band near the boundaries.
   The grey values are smoothed with a Gaussian of the filament's scale (the
   filament-enhancing filter), turned into densities (dense = high) and normalised to the
   noise of the free region (median 0, robust σ 1, measured once per tomogram).
2. For thresholds from strict to loose (``thresholds``, in noise σ), the free region's
   voxels denser than the threshold form face-connected segments. A segment that touches
   exactly these two boundaries (two vesicles, or a vesicle and the active zone), with
   ``min_contact`` voxels on each and a volume within ``volume_nm3``, is a candidate
   connection between them.
3. Candidates are tracked across thresholds: a candidate that contains the seed of a
   connection found at a stricter threshold extends that connection's persistence;
   otherwise it starts a new one (a second tether of the same vesicle, say). A connection
   is kept when it persists over ``min_levels`` thresholds; its voxels are those of the
   strictest threshold at which it appeared (its core).

Each pair of boundaries has its own box, so nothing is found twice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.filaments.boundaries import AZ_LABEL, Boundaries, az_nearest

log = logging.getLogger(__name__)

_FACES = ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1))


@dataclass(frozen=True)
class FilamentParams:
    """Settings of :func:`detect_filaments` (defaults tuned on simulated synapses).

    Attributes
    ----------
    invert
        True when densities are bright (inverted contrast).
    smooth_nm
        σ (nm) of the Gaussian filament-enhancing filter (0: none).
    margin_nm
        Boundaries reach this far beyond the outer membrane surface (and the AZ mask).
    membrane_thickness_nm
        Used when the table has no ``outer_radius_nm``.
    min_gap_nm, max_gap_nm
        Vesicle pairs closer than ``min_gap_nm`` (touching at tomogram resolution) or
        farther than ``max_gap_nm`` (outer surfaces) are not searched for connectors.
    max_tether_gap_nm
        Vesicles farther than this from the AZ are not searched for tethers.
    thresholds
        Density thresholds in noise σ, strict (high) to loose.
    min_levels
        Thresholds over which a connection must persist.
    min_first
        A connection must appear at a threshold at least this strict (noise σ).
    volume_nm3
        (min, max) volume of a segment at a threshold.
    min_contact
        Contact voxels needed on each boundary.
    pad_nm
        Lateral reach of the box searched around the straight line between two boundaries.
    along_nm
        Hierarchical thresholding: σ (nm) of the oriented filter along the pair's axis (0:
        an isotropic Gaussian of ``smooth_nm``).
    lines_for
        Kinds found by the straight-line scan (:mod:`synapseg.filaments.lines`); the
        others by hierarchical thresholding (this module).
    line_smooth_nm
        σ (nm) of the Gaussian applied before the line scan.
    line_reach_nm
        Lines are scanned up to this lateral offset from the pair's axis.
    line_step_nm
        Spacing of the scanned lines (nm, on a square grid across the axis).
    line_trim_nm
        Length left out at each end of a line (the membranes' blur) when averaging.
    line_exclude_nm
        Two lines kept for the same pair are at least this far apart.
    max_lines
        Lines (filaments) kept per pair at most.
    line_threshold
        Decision score (0-1) a line needs to be reported.
    line_threshold_extra
        Decision score a pair's second or third line (tethers of one vesicle) needs as
        well: most extra lines on a tethered vesicle are noise beside the real tether.
    """

    invert: bool = False
    smooth_nm: float = 1.2
    margin_nm: float = 1.0
    membrane_thickness_nm: float = 4.5
    min_gap_nm: float = 4.0
    max_gap_nm: float = 25.0
    max_tether_gap_nm: float = 50.0
    thresholds: tuple[float, ...] = field(
        default_factory=lambda: tuple(np.round(np.arange(4.0, 0.49, -0.25), 2).tolist())
    )
    min_levels: int = 2
    min_first: float = 2.25
    volume_nm3: tuple[float, float] = (5.0, 3000.0)
    min_contact: int = 1
    pad_nm: float = 10.0
    along_nm: float = 3.0
    lines_for: tuple[str, ...] = ("connector", "tether")
    line_smooth_nm: float = 1.0
    line_reach_nm: float = 12.0
    line_step_nm: float = 1.0
    line_trim_nm: float = 1.5
    line_exclude_nm: float = 4.0
    max_lines: int = 3
    line_threshold: float = 0.5
    line_threshold_extra: float = 0.75

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["thresholds"] = list(self.thresholds)
        out["volume_nm3"] = list(self.volume_nm3)
        out["lines_for"] = list(self.lines_for)
        return out


@dataclass
class Connection:
    """One connection found in a box (internal; measured by :mod:`.measure`)."""

    vesicle_a: int  # row index into Boundaries
    vesicle_b: int  # row index, or -1 for the AZ
    box: tuple[slice, ...]
    voxels: np.ndarray  # flat indices (in the box) of its core
    seed: int  # flat index (in the box) of its densest core voxel
    t_first: float
    t_last: float
    levels: int = 1
    alive: bool = True
    stats: dict[str, float] = field(default_factory=dict)


def shell_pairs(bnd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face contacts between free voxels and boundaries, once per box: (flat index of the
    free voxel, boundary label) for every free–boundary face."""
    flat = np.arange(bnd.size).reshape(bnd.shape)
    idx, lab = [], []
    for axis, step in _FACES:
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        if step > 0:
            a[axis], b[axis] = slice(0, -1), slice(1, None)
        else:
            a[axis], b[axis] = slice(1, None), slice(0, -1)
        s, t = bnd[tuple(a)], bnd[tuple(b)]
        hit = (s == 0) & (t > 0)
        idx.append(flat[tuple(a)][hit])
        lab.append(t[hit].astype(np.int64))
    return np.concatenate(idx), np.concatenate(lab)


def _contacts(seg_flat: np.ndarray, shell: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(segment, boundary, count) of face contacts between segments and boundaries."""
    idx, lab = shell
    s = seg_flat[idx].astype(np.int64)
    hit = s > 0
    if not hit.any():
        return np.zeros((0, 3), np.int64)
    key = s[hit] * 65536 + lab[hit]
    uniq, counts = np.unique(key, return_counts=True)
    return np.stack([uniq // 65536, uniq % 65536, counts], axis=1)


def noise_stats(
    image: np.ndarray, bounds: Boundaries, p: FilamentParams, n_boxes: int = 24
) -> tuple[float, float]:
    """Median and robust σ of the smoothed density (dense = high) outside the boundaries,
    from up to ``n_boxes`` boxes around vesicles (deterministic)."""
    vals = []
    rows = np.linspace(0, len(bounds.ids) - 1, min(n_boxes, len(bounds.ids))).astype(int)
    for i in np.unique(rows):
        box = bounds.box(int(i), 15.0)
        bnd = bounds.render(box, p.margin_nm, bounds.near(box, p.margin_nm))
        dens = smoothed_density(image[box], p, bounds.voxel_size_nm)
        vals.append(dens[bnd == 0])
    if not vals or sum(v.size for v in vals) < 100:
        dens = smoothed_density(np.asarray(image), p, bounds.voxel_size_nm)
        vals = [dens.ravel()]
    allv = np.concatenate(vals)
    med = float(np.median(allv))
    sigma = float(1.4826 * np.median(np.abs(allv - med))) or float(allv.std()) or 1.0
    return med, sigma


def smoothed_density(crop: np.ndarray, p: FilamentParams, voxel_size_nm: np.ndarray) -> np.ndarray:
    """The filament-enhancing filter: Gaussian of ``smooth_nm``; dense = high."""
    img = np.asarray(crop, np.float32)
    if p.smooth_nm > 0:
        img = ndimage.gaussian_filter(img, p.smooth_nm / voxel_size_nm, mode="nearest")
    return img if p.invert else -img


def oriented_kernel(
    direction: np.ndarray, sigma_along_nm: float, sigma_across_nm: float, vs: np.ndarray
) -> np.ndarray:
    """A Gaussian elongated along ``direction`` (zyx, nm): a matched filter for a filament
    running between two boundaries."""
    u = np.asarray(direction, float)
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    half = np.ceil(3 * sigma_along_nm / vs).astype(int)
    g = np.stack(
        np.meshgrid(*[np.arange(-h, h + 1) * v for h, v in zip(half, vs)], indexing="ij"), -1
    )
    along = g @ u
    across2 = (g**2).sum(-1) - along**2
    k = np.exp(-0.5 * (along**2 / sigma_along_nm**2 + across2 / sigma_across_nm**2))
    return (k / k.sum()).astype(np.float32)


def oriented_density(
    crop: np.ndarray, direction: np.ndarray, p: FilamentParams, vs: np.ndarray
) -> np.ndarray:
    """Density (dense = high) filtered with :func:`oriented_kernel` along ``direction``."""
    from scipy.signal import fftconvolve

    k = oriented_kernel(direction, p.along_nm, p.smooth_nm, vs)
    half = [n // 2 for n in k.shape]
    img = np.pad(np.asarray(crop, np.float32), [(h, h) for h in half], mode="edge")
    out = fftconvolve(img, k, mode="valid").astype(np.float32)
    return out if p.invert else -out


def find_between(
    image: np.ndarray,
    bounds: Boundaries,
    i: int,
    j: int,
    p: FilamentParams,
    stats: tuple[float, float],
    az_point_px: np.ndarray | None = None,
) -> list[Connection]:
    """Connections between vesicle row ``i`` and vesicle row ``j`` (``j = -1``: the AZ,
    whose nearest voxel to vesicle ``i`` is ``az_point_px``) by hierarchical thresholding
    in the box around the straight line between them."""
    vs = bounds.voxel_size_nm
    other_px = bounds.centers_px[j] if j >= 0 else np.asarray(az_point_px, float)
    box, inner = bounds.pair_box(i, other_px, j, p.pad_nm, 3 * p.smooth_nm)
    members = bounds.near(box, p.margin_nm)
    bnd_full = bounds.render(box, p.margin_nm, members)
    bnd = bnd_full[inner]
    if p.along_nm > 0:
        ci = bounds.centers_px[i] * vs
        u = other_px * vs - ci
        dens_full = oriented_density(image[box], u, p, vs)
        dens = dens_full[inner]
        vals = dens[bnd == 0]
        med = float(np.median(vals)) if vals.size else 0.0
        sig = float(1.4826 * np.median(np.abs(vals - med))) if vals.size else 1.0
        dens = (dens - med) / (sig or 1.0)
    else:
        dens_full = smoothed_density(image[box], p, vs)
        dens = (dens_full[inner] - stats[0]) / stats[1]
    box = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, inner))
    free = bnd == 0
    a_id = int(bounds.ids[i])
    b_id = int(bounds.ids[j]) if j >= 0 else AZ_LABEL
    vox_nm3 = float(np.prod(vs))
    vmin, vmax = p.volume_nm3[0] / vox_nm3, p.volume_nm3[1] / vox_nm3
    found: list[Connection] = []
    flat_dens = dens.ravel()
    shell = shell_pairs(bnd)
    if not (np.any(shell[1] == a_id) and np.any(shell[1] == b_id)):
        return []
    for t in p.thresholds:
        seg, n = ndimage.label(free & (dens >= t))
        extended: set[int] = set()
        con = _contacts(seg.ravel(), shell) if n else np.zeros((0, 3), np.int64)
        if len(con):
            size = np.bincount(seg.ravel(), minlength=n + 1)
            nb = np.bincount(con[:, 0], minlength=n + 1)
            ok_a = con[(con[:, 1] == a_id) & (con[:, 2] >= p.min_contact), 0]
            ok_b = con[(con[:, 1] == b_id) & (con[:, 2] >= p.min_contact), 0]
            flat_seg = seg.ravel()
            for s in np.intersect1d(ok_a, ok_b):
                if nb[s] != 2 or not vmin <= size[s] <= vmax:
                    continue
                mine = [c for c in found if c.alive and flat_seg[c.seed] == s]
                if not mine:
                    vox = np.flatnonzero(flat_seg == s)
                    seed = int(vox[np.argmax(flat_dens[vox])])
                    mine = [Connection(i, j, box, vox, seed, float(t), float(t), levels=0)]
                    found.extend(mine)
                for c in mine:
                    c.levels += 1
                    c.t_last = float(t)
                    extended.add(id(c))
        for c in found:
            if id(c) not in extended:
                c.alive = False
    kept = [c for c in found if c.levels >= p.min_levels and c.t_first >= p.min_first]
    for c in kept:
        c.stats = {"density_sigma": float(flat_dens[c.voxels].mean())}
    return kept


def candidate_pairs(
    bounds: Boundaries, p: FilamentParams
) -> tuple[list[tuple[int, int]], np.ndarray | None]:
    """Vesicle row pairs (i < j) searched for connectors, then (i, -1) for tethers; and
    the nearest AZ voxel (px) to each vesicle (``None`` without an AZ)."""
    pairs: list[tuple[int, int]] = []
    if len(bounds.ids) > 1:
        gaps = bounds.gaps_nm()
        ok = np.triu((gaps >= p.min_gap_nm) & (gaps <= p.max_gap_nm), 1)
        pairs += [(int(a), int(b)) for a, b in np.argwhere(ok)]
    near = None
    if bounds.az_mask is not None and np.any(bounds.az_mask):
        d, near = az_nearest(bounds.az_mask, bounds.centers_px, bounds.voxel_size_nm)
        gap = d - bounds.outer_nm
        pairs += [
            (int(a), -1)
            for a in np.nonzero((gap >= p.min_gap_nm) & (gap <= p.max_tether_gap_nm))[0]
        ]
    return pairs, near
