"""Vesicle candidates from a probability map: threshold, components, watershed splitting.

1. Threshold: given, or automatic (:func:`auto_threshold`): Otsu's threshold of the map values
   above 0.05 (the vesicle/background modes of the map), clipped to [0.3, 0.7] so that a map
   with few vesicles cannot drive it to an extreme; 0.5 when the map holds no such values.
   A ``uint8`` map is read as 0..255 = 0..1 (any unsigned integer type: 0..its maximum) and
   compared without a float copy; signed integer maps are refused as ambiguous.
2. Connected components (6-connectivity, ``cc3d``); components whose equivalent-sphere radius
   is below ``0.5 x min_radius_nm`` are noise specks: dropped and counted (``n_specks``), not
   listed among the rejected candidates.
3. Splitting of touching vesicles, per component on its bounding-box crop: Euclidean distance
   transform in nm, seeds = its local maxima at least ``min_separation_nm`` apart (default the
   minimum vesicle radius: two touching vesicles have centers >= 2 minimum radii apart) and
   deeper than ``0.5 x min_radius_nm`` (no seeds in the thin bridges a threshold leaves between
   neighbours), then a marker watershed of the negated distance transform.
   Compact components (bounding box no longer than 1.1 x the diameter of a ball of the same
   volume, plus one voxel) are single vesicles and skip this step (speed).
4. Each piece gives a candidate: center = its centroid (voxels), ``inscribed_radius_nm`` = its
   distance-transform maximum, or the equivalent-sphere radius for a compact component (both
   ≈ the outer membrane surface for a map that fills vesicles), ``score`` = mean probability.
   Pieces whose inscribed radius exceeds ``max_radius_nm`` plus
   the membrane are rejected ("too large": compartments, not vesicles).

A component whose bounding box holds more than :data:`COARSE_BOX_VOXELS` voxels (a whole
crowded vesicle cloud joined at the threshold) is split on every second voxel along each
axis: its distance transform and watershed would otherwise take minutes in one worker
(44 M voxels in a 261 x 1024 x 858 box: 57 s and 43 s). The candidates are starting points of
the sphere fit, which works on the full-resolution tomogram.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import cc3d
import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from synapseg.core.units import voxel_size_zyx
from synapseg.io.scratch import release_in_background
from synapseg.post.parallel import map_ordered

log = logging.getLogger(__name__)

LABELS_IN_MEMORY_BYTES = 256 * 2**20
"""Component labels larger than this live in a temporary memory-mapped file."""
REJECT_COLUMNS = ["center_z_px", "center_y_px", "center_x_px", "radius_nm", "score", "reason"]
COARSE_BOX_VOXELS = 32 * 2**20
"""Components with a larger bounding box are split on a grid of every second voxel."""


@dataclass
class Candidates:
    """Vesicle candidates found in a probability map.

    Attributes
    ----------
    centers_px
        (n, 3) zyx centers in input voxels.
    inscribed_radius_nm
        (n,) radius of the largest ball inside each piece (nm) ~ outer vesicle radius.
    score
        (n,) mean probability inside each piece.
    threshold
        The threshold used, on the 0..1 scale.
    n_components
        Connected components above the threshold (before size filters and splitting).
    n_split
        Components split into two or more candidates.
    n_specks
        Components dropped as noise (equivalent radius < 0.5 x min radius); not listed in
        ``rejected`` (a noisy map can hold tens of thousands).
    rejected
        DataFrame of dropped pieces (``REJECT_COLUMNS``; ``radius_nm`` = inscribed radius).
    """

    centers_px: np.ndarray
    inscribed_radius_nm: np.ndarray
    score: np.ndarray
    threshold: float
    n_components: int = 0
    n_split: int = 0
    n_specks: int = 0
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))

    def __len__(self) -> int:
        return len(self.centers_px)


def _scale(probability: np.ndarray) -> float:
    """Value of probability 1 in the map's dtype: 1 for floats/bool, the maximum for unsigned."""
    dtype = np.dtype(probability.dtype)
    if dtype.kind in "fb":
        return 1.0
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    raise ValueError(
        f"probability map of dtype {dtype} is ambiguous: give floats in [0, 1] or unsigned "
        "integers scaled to their full range (uint8 0..255)"
    )


def auto_threshold(probability: np.ndarray, max_samples: int = 4_000_000) -> float:
    """Automatic threshold (0..1 scale) of a probability map; see the module docstring."""
    scale = _scale(probability)
    size = float(np.prod(probability.shape))
    stride = max(1, int(np.ceil((size / max_samples) ** (1 / 3))))
    values = np.asarray(probability[::stride, ::stride, ::stride], dtype=np.float32) / scale
    values = values[values > 0.05]
    if values.size < 100 or np.ptp(values) < 1e-3:
        return 0.5
    return float(np.clip(threshold_otsu(values), 0.3, 0.7))


def _ball_volume(radius: np.ndarray | float) -> np.ndarray | float:
    return 4.0 / 3.0 * np.pi * np.asarray(radius) ** 3


def _piece_stats(pieces: np.ndarray, n: int, edt: np.ndarray, prob: np.ndarray):
    """Centroid (crop voxels), maximum distance and mean probability of pieces 1..n."""
    flat = pieces.ravel()
    sel = flat > 0
    lab = flat[sel]
    counts = np.bincount(lab, minlength=n + 1)[1:].astype(float)
    coords = np.unravel_index(np.flatnonzero(sel), pieces.shape)
    cen = (
        np.stack([np.bincount(lab, weights=c, minlength=n + 1)[1:] for c in coords], axis=1)
        / counts[:, None]
    )
    ins = np.zeros(n + 1)
    np.maximum.at(ins, lab, edt.ravel()[sel])
    sc = np.bincount(lab, weights=prob.ravel()[sel], minlength=n + 1)[1:] / counts
    return cen, ins[1:], sc


def _connected_components(mask: np.ndarray) -> np.ndarray:
    """6-connected component labels of ``mask`` (``cc3d``); above
    :data:`LABELS_IN_MEMORY_BYTES` they go into an unlinked temporary file (a memory map:
    page cache, not the process's anonymous memory; 1.1 GB for the reference volume)."""
    if mask.size * 4 <= LABELS_IN_MEMORY_BYTES:
        return cc3d.connected_components(mask, connectivity=6)
    fd, path = tempfile.mkstemp(prefix="synapseg-labels-", suffix=".u32")
    os.close(fd)
    try:
        return cc3d.connected_components(mask, connectivity=6, out_file=path)
    finally:
        with contextlib.suppress(OSError):  # the map keeps its pages; the disk space goes with it
            os.unlink(path)


def candidate_instances(
    probability: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    threshold: float | None = None,
    min_radius_nm: float = 10.0,
    max_radius_nm: float = 40.0,
    min_separation_nm: float | None = None,
    membrane_thickness_nm: float = 4.5,
    block_z: int = 32,
    workers: int | None = None,
) -> Candidates:
    """Find vesicle candidates (one per vesicle, touching vesicles split) in a probability map.

    Parameters
    ----------
    probability
        (z, y, x) map, float in [0, 1] or uint8 0..255; may be a read-only memmap (thresholded
        in z-blocks of ``block_z`` sections; the only full-size arrays are a boolean mask and
        the component labels).
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    threshold
        Threshold on the 0..1 scale; ``None`` = :func:`auto_threshold`.
    min_radius_nm, max_radius_nm
        Expected bilayer-midline radius range of vesicles (nm).
    min_separation_nm
        Minimum distance between watershed seeds; default ``min_radius_nm``.
    membrane_thickness_nm
        Bilayer thickness; the inscribed-radius limit is ``max_radius_nm + thickness``.
    workers
        Forked processes splitting components (default
        :data:`synapseg.post.parallel.WORKERS`, at most the available cores; threads where
        the platform cannot fork); the result does not depend on it.

    Returns
    -------
    Candidates
    """
    vs = voxel_size_zyx(voxel_size_nm)
    thr = auto_threshold(probability) if threshold is None else float(threshold)
    scale = _scale(probability)
    raw_thr = thr * scale
    mask = np.empty(probability.shape, dtype=bool)
    for z0 in range(0, probability.shape[0], block_z):
        z1 = min(probability.shape[0], z0 + block_z)
        np.greater_equal(probability[z0:z1], raw_thr, out=mask[z0:z1])
    labels = _connected_components(mask)
    del mask
    n_comp = int(labels.max())
    voxel_nm3 = float(np.prod(vs))
    min_sep = min_radius_nm if min_separation_nm is None else min_separation_nm
    min_sep_px = max(1, int(np.floor(min_sep / vs.max())))
    seed_depth_nm = 0.5 * min_radius_nm
    max_inscribed = max_radius_nm + membrane_thickness_nm
    single_extent = 1.1  # bounding box <= 1.1 x the diameter of a ball of equal volume
    centers, radii, scores, rejected = [], [], [], []
    n_split = 0
    if n_comp == 0:
        return Candidates(np.zeros((0, 3)), np.zeros(0), np.zeros(0), thr, 0, 0, 0)
    slices = ndimage.find_objects(labels)
    min_volume = _ball_volume(0.5 * min_radius_nm) / voxel_nm3
    box_volume = np.array(
        [0 if sl is None else np.prod([s.stop - s.start for s in sl]) for sl in slices]
    )
    n_specks = int(np.sum(box_volume < min_volume))  # noise: counted, not listed

    def component(lab: int) -> tuple[str, list[tuple]]:
        """("speck" | "one" | "split", [(z, y, x, radius_nm, score, reason or None), ...])."""
        sl = slices[lab - 1]
        step = 2 if box_volume[lab - 1] > COARSE_BOX_VOXELS else 1
        if step > 1:  # a joined cloud: split on every second voxel (see the module docstring)
            sl = tuple(slice(s.start, s.stop, step) for s in sl)
        comp = labels[sl] == lab
        count = int(comp.sum()) * step**3
        if count < min_volume:
            return "speck", []
        offset = np.array([s.start for s in sl], dtype=float)
        prob = np.asarray(probability[sl], dtype=np.float32) / scale
        r_eq = (3 * count * voxel_nm3 / (4 * np.pi)) ** (1 / 3)
        extent_nm = np.array([s.stop - s.start for s in sl]) * vs
        if extent_nm.max() <= single_extent * 2 * r_eq + vs.max() and r_eq <= max_inscribed:
            # a compact blob no longer than one ball of its volume: one vesicle, no EDT needed
            zyx = np.nonzero(comp)
            center = np.array([c.mean() for c in zyx]) * step + offset
            return "one", [(*center, r_eq, float(prob[zyx].mean()), None)]
        padded = np.pad(comp, 1)
        edt = ndimage.distance_transform_edt(padded, sampling=vs * step)[1:-1, 1:-1, 1:-1]
        # no ``labels=comp``: edt is 0 outside comp, below threshold_abs, so the peaks are the
        # same (checked on the reference volume) without skimage's per-label pass
        peaks = peak_local_max(
            edt,
            min_distance=max(1, min_sep_px // step),
            threshold_abs=seed_depth_nm,
            exclude_border=False,
        )
        if len(peaks) <= 1:
            pieces = comp.astype(np.int32)
            n_pieces = 1
        else:
            markers = np.zeros(comp.shape, np.int32)
            markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
            pieces = watershed(-edt, markers, mask=comp)
            n_pieces = len(peaks)
        cen, ins, sc = _piece_stats(pieces, n_pieces, edt, prob)
        cen = cen * step + offset
        out = []
        for c, r, sco in zip(cen, ins, sc):
            if r > max_inscribed:
                out.append((*c, r, sco, "too large"))
            elif r < seed_depth_nm:
                out.append((*c, r, sco, "too small"))
            else:
                out.append((*c, r, sco, None))
        return ("split" if n_pieces > 1 else "one"), out

    todo = [int(lab) for lab in np.flatnonzero(box_volume >= min_volume) + 1]
    results = map_ordered(component, todo, workers, processes=True)  # EDT holds the GIL
    for kind, pieces_found in results:  # in label order, whatever the workers
        n_specks += kind == "speck"
        n_split += kind == "split"
        for *c, r, sco, reason in pieces_found:
            if reason is None:
                centers.append(np.array(c))
                radii.append(r)
                scores.append(sco)
            else:
                rejected.append((*c, r, sco, reason))
    # the labels' map (an unlinked file above LABELS_IN_MEMORY_BYTES) is unmapped by a
    # daemon thread: the unmapping waits for the kernel's writeback of its pages
    maps, labels = [labels], None
    release_in_background(maps)
    rej = pd.DataFrame(rejected, columns=REJECT_COLUMNS)
    log.info(
        "threshold %.3f: %d components (%d specks), %d split, %d candidates, %d rejected",
        thr,
        n_comp,
        n_specks,
        n_split,
        len(centers),
        len(rej),
    )
    return Candidates(
        np.asarray(centers, dtype=float).reshape(-1, 3),
        np.asarray(radii, dtype=float),
        np.asarray(scores, dtype=float),
        thr,
        n_comp,
        n_split,
        n_specks,
        rej,
    )
