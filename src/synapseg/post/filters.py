"""QC filters and outlier removal for fitted vesicle spheres; every removal keeps a reason.

Hard sanity limits (never learned; the first failing one is the reason): ``fit failed``,
``radius below min`` / ``radius above max``, ``fit drifted`` (see below).

Then, by default (``min_confidence`` set), one learned, calibrated cut-off replaces the absolute
thresholds: every candidate gets ``confidence`` (:mod:`synapseg.post.confidence`, features
relative to this tomogram's own vesicles) and those below ``min_confidence`` are rejected with
the reason ``"confidence 0.12 < 0.5: weak membrane, low profile correlation"`` (the features that
pulled the confidence down).

Legacy mode (``min_confidence=None``): the absolute thresholds below, tuned on our simulator.
Per-vesicle tests (in this order; the first failing one is the reason):

- ``radius below min`` / ``radius above max``: ``radius_nm`` outside [min_radius_nm, max_radius_nm]
  (big compartments, debris);
- ``fit drifted``: the center moved more than ``max_shift_fraction x radius`` from its candidate
  (the fit locked onto something else);
- ``weak membrane``: ``membrane_contrast`` (σ per voxel) below ``min_membrane_contrast``;
- ``low profile correlation``: correlation with the bilayer template below
  ``min_profile_correlation``;
- ``inconsistent membrane``: weighted RMS of the per-direction radii about the sphere above
  ``max_fit_residual_nm`` (not a sphere: tubes, irregular compartments);
- ``dark lumen``: ``lumen_contrast`` above ``max_lumen_ratio x membrane_contrast`` (dense-core
  vesicles, solid blobs: the inside is nearly as dark as the rim);
- ``no lumen (solid)``: ``inner_contrast`` below ``min_inner_fraction x membrane_contrast``: the
  "membrane" is not darker than the lumen next to it, i.e. the edge of a solid blob, not a
  bilayer (simulated vesicles: >= 0.49; a solid ball: ~0).

Overlaps (after the per-vesicle tests), in order of quality (``membrane_contrast x
profile_correlation``, best first): a vesicle whose outer surface overlaps an already kept one by
more than ``max_overlap_nm`` (default: one membrane thickness, i.e. the bilayer midlines
intersect) is removed (``overlaps a better vesicle``, typically a duplicate from an over-split
component); smaller overlaps are resolved by shrinking both ``outer_radius_nm`` by half the
overlap (never below ``radius_nm``), recorded in ``outer_shrunk_nm``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from synapseg.core.units import voxel_size_zyx
from synapseg.post.confidence import (
    FEATURES,
    candidate_features,
    load_model,
    low_confidence_reasons,
    predict_confidence,
)

log = logging.getLogger(__name__)

CENTER_COLUMNS = ["center_z_px", "center_y_px", "center_x_px"]


@dataclass(frozen=True)
class FilterParams:
    """Thresholds of :func:`qc_filter` (nm, noise σ per voxel, correlation, probability).

    ``min_confidence`` (default 0.5): reject candidates whose calibrated confidence is lower;
    the absolute thresholds ``min_membrane_contrast`` … ``min_inner_fraction`` then do not apply.
    ``min_confidence=None``: legacy mode, the absolute thresholds decide.
    ``confidence_model``: path of a confidence model JSON (default: the shipped one).
    ``max_tube_score`` (opt-in, default None): reject candidates whose ``tube_score``
    (:func:`synapseg.post.tubes.tube_scores`) exceeds it as ``tube section``; then, with
    ``min_best_score``, a tomogram whose best remaining candidate scores below it holds no
    vesicles (the vesicle-free gate, asked again without the tube sections).
    """

    min_radius_nm: float = 10.0
    max_radius_nm: float = 40.0
    min_membrane_contrast: float = 0.15
    min_profile_correlation: float = 0.5
    max_fit_residual_nm: float = 3.0
    max_lumen_ratio: float = 0.8
    min_inner_fraction: float = 0.25
    max_shift_fraction: float = 0.6
    membrane_thickness_nm: float = 4.5
    max_overlap_nm: float | None = None
    min_confidence: float | None = 0.5
    confidence_model: str | None = None
    max_tube_score: float | None = None
    min_best_score: float | None = 0.9

    def __post_init__(self) -> None:
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence must lie in [0, 1], not {self.min_confidence}")


def _reasons(fits: pd.DataFrame, p: FilterParams) -> np.ndarray:
    n = len(fits)
    reason = np.full(n, "", dtype=object)

    def flag(cond, text):
        cond = np.asarray(cond, dtype=bool) & (reason == "")
        reason[cond] = text

    r = fits["radius_nm"].to_numpy(float)
    flag(~np.isfinite(r), "fit failed")
    flag(r < p.min_radius_nm, "radius below min")
    flag(r > p.max_radius_nm, "radius above max")
    if "shift_nm" in fits:
        flag(fits["shift_nm"].to_numpy(float) > p.max_shift_fraction * r, "fit drifted")
    if p.max_tube_score is not None:
        _flag_tubes(fits, p, flag)
    if p.min_confidence is not None:
        return reason
    mc = fits["membrane_contrast"].to_numpy(float)
    flag(~(mc >= p.min_membrane_contrast), "weak membrane")
    flag(
        ~(fits["profile_correlation"].to_numpy(float) >= p.min_profile_correlation),
        "low profile correlation",
    )
    flag(
        ~(fits["fit_residual_nm"].to_numpy(float) <= p.max_fit_residual_nm), "inconsistent membrane"
    )
    if "lumen_contrast" in fits:
        flag(fits["lumen_contrast"].to_numpy(float) > p.max_lumen_ratio * mc, "dark lumen")
    if "inner_contrast" in fits:
        inner = fits["inner_contrast"].to_numpy(float)
        flag(~(inner >= p.min_inner_fraction * mc), "no lumen (solid)")
    return reason


def _flag_tubes(fits: pd.DataFrame, p: FilterParams, flag) -> None:
    """``tube section`` where ``tube_score > max_tube_score``; then the vesicle-free gate
    again on the other candidates' scores (a tube section is no confident vesicle)."""
    if "tube_score" not in fits:
        log.warning("max_tube_score is set but the fits carry no tube_score: not applied")
        return
    tube = fits["tube_score"].to_numpy(float) > p.max_tube_score
    flag(tube, "tube section")
    if p.min_best_score is not None and "score" in fits:
        best = np.max(fits["score"].to_numpy(float)[~tube], initial=0.0)
        if best < p.min_best_score:
            gate = p.min_best_score
            msg = f"no confident vesicle besides tube sections (best {best:.2f} < {gate:g})"
            flag(np.ones(len(fits), bool), msg)


def reason_category(reason: str) -> str:
    """A rejection reason without the candidate's own confidence value, for counting:
    ``"confidence 0.12 < 0.5: weak membrane"`` -> ``"confidence < 0.5: weak membrane"``."""
    return re.sub(r"^confidence [0-9.]+ <", "confidence <", str(reason))


def _vs3(voxel_size_nm: Sequence[float] | float) -> np.ndarray:
    return voxel_size_zyx(voxel_size_nm)


def _add_confidence(
    fits: pd.DataFrame,
    reason: np.ndarray,
    vs: np.ndarray,
    shape: Sequence[int] | None,
    p: FilterParams,
) -> None:
    """Add ``feat_<name>`` columns and ``confidence`` (NaN for hard rejects) in place."""
    eligible = reason == ""
    feats = candidate_features(fits, vs, shape=shape, eligible=eligible)
    conf = np.full(len(fits), np.nan)
    if eligible.any():
        conf[eligible] = predict_confidence(feats[eligible], load_model(p.confidence_model))
    for name in FEATURES:
        fits[f"feat_{name}"] = feats[name].to_numpy()
    fits["confidence"] = conf


def qc_filter(
    fits: pd.DataFrame,
    voxel_size_nm: Sequence[float] | float,
    params: FilterParams | None = None,
    shape: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split fitted spheres into kept vesicles and rejected candidates (with ``reason``).

    Parameters
    ----------
    fits
        One row per candidate with ``center_*_px``, ``radius_nm``, ``membrane_contrast``,
        ``profile_correlation``, ``fit_residual_nm`` (and optionally ``lumen_contrast``,
        ``shift_nm``, ``outer_radius_nm``, ``score``), as from
        :func:`synapseg.post.spheres.refine_spheres`.
    voxel_size_nm
        Voxel size, scalar or zyx triple (for distances in nm).
    params
        :class:`FilterParams`.
    shape
        (z, y, x) shape of the tomogram (for the distance-to-edge feature of the confidence).

    Returns
    -------
    (kept, rejected)
        ``kept``: the passing rows (original order) with ``outer_radius_nm``,
        ``outer_shrunk_nm`` and ``confidence``; ``rejected``: the others with a ``reason``
        column. Both carry the confidence features as ``feat_<name>`` columns.
    """
    p = params or FilterParams()
    t = p.membrane_thickness_nm
    max_overlap = t if p.max_overlap_nm is None else p.max_overlap_nm
    fits = fits.reset_index(drop=True).copy()
    if "outer_radius_nm" not in fits:
        fits["outer_radius_nm"] = fits["radius_nm"] + t / 2
    fits["outer_shrunk_nm"] = 0.0
    vs3 = _vs3(voxel_size_nm)
    reason = _reasons(fits, p)
    _add_confidence(fits, reason, vs3, shape, p)
    if p.min_confidence is not None:
        low = np.flatnonzero((reason == "") & ~(fits["confidence"].to_numpy() >= p.min_confidence))
        if len(low):
            model = load_model(p.confidence_model)
            why = low_confidence_reasons(
                fits.loc[low, [f"feat_{n}" for n in FEATURES]].set_axis(FEATURES, axis=1), model
            )
            for i, text in zip(low, why):
                reason[i] = (
                    f"confidence {fits.at[i, 'confidence']:.2f} < {p.min_confidence:g}: {text}"
                )
    ok = np.flatnonzero(reason == "")
    if len(ok) > 1:
        xyz = fits.loc[ok, CENTER_COLUMNS].to_numpy(float) * vs3
        outer = fits.loc[ok, "outer_radius_nm"].to_numpy(float).copy()
        quality = fits.loc[ok, "membrane_contrast"].to_numpy(float) * fits.loc[
            ok, "profile_correlation"
        ].to_numpy(float)
        tree = cKDTree(xyz)
        order = np.argsort(-quality, kind="stable")
        kept_local = np.zeros(len(ok), bool)
        for i in order:
            near = tree.query_ball_point(xyz[i], outer[i] + outer.max())
            clash = [
                j
                for j in near
                if kept_local[j]
                and outer[i] + outer[j] - np.linalg.norm(xyz[i] - xyz[j]) > max_overlap
            ]
            if clash:
                reason[ok[i]] = "overlaps a better vesicle"
            else:
                kept_local[i] = True
        kept_idx = np.flatnonzero(kept_local)
        radius = fits.loc[ok, "radius_nm"].to_numpy(float)
        for i, j in sorted(cKDTree(xyz[kept_idx]).query_pairs(2 * outer.max())):
            a, b = kept_idx[i], kept_idx[j]
            overlap = outer[a] + outer[b] - np.linalg.norm(xyz[a] - xyz[b])
            if overlap > 0:
                for k in (a, b):
                    new = max(radius[k], outer[k] - overlap / 2)
                    outer[k] = new
        shrunk = fits.loc[ok, "outer_radius_nm"].to_numpy(float) - outer
        fits.loc[ok, "outer_radius_nm"] = outer
        fits.loc[ok, "outer_shrunk_nm"] = shrunk
    keep = reason == ""
    kept = fits[keep].reset_index(drop=True)
    rejected = fits[~keep].assign(reason=reason[~keep]).reset_index(drop=True)
    if len(rejected):
        log.info("QC removed %d of %d candidates", len(rejected), len(fits))
    return kept, rejected
