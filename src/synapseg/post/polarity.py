"""Contrast polarity: are densities dark (+1, the usual) or bright (-1, inverted)?

Around each confident candidate the wedge-weighted, spherically averaged radial profile is
sampled from ``0.4 R`` to ``1.6 R`` (``R`` the candidate's radius). With dark densities the
membrane is a dip: ``median - min`` over the band ``0.7 R .. 1.3 R`` exceeds ``max - median``.
The per-candidate statistic ``dip - peak`` changes sign exactly when the contrast is inverted
(the profiles are normalised by the median and the MAD, both of which flip with ``-t``), and
is symmetric about zero for pure noise. The polarity is the sign of its mean; the confidence
is the fraction of candidates that agree (0.5 = undecided, 1 = unanimous).

This is the fallback for library calls without a network (``find_vesicles(invert="auto")``
on a given probability map); a segmentation run decides once, before the prediction, with
:func:`synapseg.infer.polarity.decide_polarity`. Like that decision it is stable on
tomograms without vesicles: with fewer than :data:`MIN_CANDIDATES` candidates, or when less
than :data:`MIN_FLIP_AGREEMENT` of them say "inverted", the usual dark densities are kept
(confidence 0.0 = no usable evidence).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from synapseg.core.units import voxel_size_zyx
from synapseg.post.profiles import (
    estimate_background,
    fibonacci_directions,
    sample_profiles,
    wedge_weights,
)
from synapseg.specimen.mask import SpecimenMask

log = logging.getLogger(__name__)

MIN_CANDIDATES = 5
"""Fewer judging candidates than this are no evidence (a vesicle-free tomogram's few
spurious candidates must not flip the contrast)."""
MIN_FLIP_AGREEMENT = 0.7
"""Fraction of candidates that must agree before the contrast is declared inverted."""


def detect_polarity(
    tomogram: np.ndarray,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    *,
    tilt_range_deg: float | None = 60.0,
    tilt_axis: str = "y",
    background: tuple[float, float] | None = None,
    max_candidates: int = 300,
    n_directions: int = 160,
    specimen: SpecimenMask | None = None,
) -> tuple[int, float]:
    """Detect the contrast polarity of a tomogram from the membranes of vesicle candidates.

    Parameters
    ----------
    tomogram
        (z, y, x) array (memmap fine).
    centers_px, radius_nm
        (n, 3) candidate centers (input voxels) and (n,) bilayer radii (nm), most confident
        first; at most ``max_candidates`` are used.
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    tilt_range_deg, tilt_axis
        Missing-wedge geometry (directions are weighted as in :mod:`synapseg.post.spheres`).
    background
        (median, sigma) of the tomogram, estimated (inside ``specimen``) if None.
    specimen
        Specimen mask: ray samples outside it are ignored.

    Returns
    -------
    (sign, confidence)
        ``+1`` for dark densities, ``-1`` for inverted contrast; ``confidence`` in [0.5, 1]
        (0.0 when there is no usable evidence: fewer than :data:`MIN_CANDIDATES`
        candidates, or a weak majority for "inverted"; then ``sign = +1``).
    """
    centers_px = np.asarray(centers_px, dtype=float).reshape(-1, 3)[:max_candidates]
    radius_nm = np.asarray(radius_nm, dtype=float).reshape(-1)[:max_candidates]
    if len(centers_px) == 0:
        return 1, 0.0
    if background is None:
        background = estimate_background(tomogram, specimen=specimen)
    vs = voxel_size_zyx(voxel_size_nm)
    dirs = fibonacci_directions(n_directions)
    w = wedge_weights(dirs, tilt_range_deg, tilt_axis)
    lin = np.linspace(0.4, 1.6, 49)
    r_nm = radius_nm[:, None] * lin[None, :]
    # z-ordered chunks keep each read local (a lazy/zarr tomogram is read per chunk box)
    order = np.argsort(centers_px[:, 0], kind="stable")
    prof = np.concatenate(
        [
            sample_profiles(
                tomogram, centers_px[idx], r_nm[idx], dirs, vs, (*background, 1.0), specimen
            )
            for idx in np.array_split(order, max(1, int(np.ceil(len(order) / 64))))
        ]
    )
    valid = np.isfinite(prof)
    wsum = np.einsum("d,mdr->mr", w, valid.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        sph = np.einsum("d,mdr->mr", w, np.where(valid, prof, 0.0)) / wsum
    band = (lin >= 0.7) & (lin <= 1.3)
    med = np.nanmedian(sph, axis=1)
    dip = med - np.nanmin(sph[:, band], axis=1)
    peak = np.nanmax(sph[:, band], axis=1) - med
    stat = dip - peak
    stat = stat[np.isfinite(stat)]
    if stat.size < MIN_CANDIDATES:
        return 1, 0.0
    sign = 1 if stat.mean() >= 0 else -1
    confidence = float(np.mean(np.sign(stat) == sign))
    if sign < 0 and confidence < MIN_FLIP_AGREEMENT:
        log.info(
            "contrast polarity unclear (%.0f%% of %d candidates look inverted); assuming dark "
            "densities",
            100 * confidence,
            stat.size,
        )
        return 1, 0.0
    if sign < 0:
        log.warning(
            "inverted contrast detected (membranes brighter than cytoplasm around %d of %d "
            "candidates); processing the tomogram as inverted",
            int(round(confidence * stat.size)),
            stat.size,
        )
    return sign, confidence
