"""Calibrated confidence of vesicle candidates from features relative to their own tomogram.

Absolute QC thresholds (membrane contrast in noise σ, profile correlation) move with the
reconstruction, the tilt range and the noise; a vesicle's contrast *relative to the other
vesicles of the same tomogram* moves much less. :func:`candidate_features` turns the sphere
fit's QC columns into such features (the reference population is the top-scoring half of the
candidates that pass the hard sanity limits), :func:`predict_confidence` evaluates the shipped
model (``confidence_model.json``: logistic regression on standardised features and their
squares, then a Platt or isotonic calibration map; numpy only) and :func:`low_confidence_reasons`
names the features that pulled a candidate's confidence down.

The model is trained by ``scripts/train_confidence.py`` (see docs/postprocessing.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from synapseg.core.units import voxel_size_zyx

MODEL_PATH = Path(__file__).with_name("confidence_model.json")

CENTER_COLUMNS = ["center_z_px", "center_y_px", "center_x_px"]

FEATURES = [
    "score",
    "contrast_rel",
    "corr",
    "corr_z",
    "radius_z",
    "radius_absz",
    "radius_nm",
    "inner_frac",
    "lumen_ratio",
    "residual_rel",
    "shift_rel",
    "wedge_coverage",
    "gap_rel",
    "edge_rel",
]
"""Feature names, in model order (see :func:`candidate_features`)."""

PER_CANDIDATE = frozenset(
    ["score", "corr", "radius_nm", "inner_frac", "lumen_ratio", "residual_rel", "shift_rel",
     "wedge_coverage", "edge_rel"]
)  # fmt: skip
"""Features that depend on the candidate's own row only (not on the tomogram's population)."""

REASONS = {
    "score": "low network score",
    "contrast_rel": "weak membrane",
    "corr": "low profile correlation",
    "corr_z": "low profile correlation",
    "radius_z": "unusual radius",
    "radius_absz": "unusual radius",
    "radius_nm": "unusual radius",
    "inner_frac": "no lumen (solid)",
    "lumen_ratio": "dark lumen",
    "residual_rel": "inconsistent membrane",
    "shift_rel": "fit drifted",
    "wedge_coverage": "poor wedge coverage",
    "gap_rel": "overlaps a neighbour",
    "edge_rel": "at the volume edge",
}
"""Human-readable reason for a low value of each feature's contribution."""

MIN_REFERENCE = 5


def _col(fits: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name in fits:
        return fits[name].to_numpy(float)
    return np.full(len(fits), default)


def _robust(values: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (1.4826 MAD, at least 5 % of |median| and 1e-3) of ``ref``."""
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        ref = values[np.isfinite(values)]
    if len(ref) == 0:
        return 0.0, 1.0
    med = float(np.median(ref))
    mad = 1.4826 * float(np.median(np.abs(ref - med)))
    return med, max(mad, 0.05 * abs(med), 1e-3)


def reference_mask(fits: pd.DataFrame, eligible: np.ndarray | None = None) -> np.ndarray:
    """The tomogram's confident population: the top-scoring half of the eligible candidates
    (at least ``MIN_REFERENCE``, or all when fewer)."""
    n = len(fits)
    eligible = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return eligible.copy()
    score = _col(fits, "score", 0.5)[idx]
    k = min(len(idx), max(MIN_REFERENCE, int(np.ceil(len(idx) / 2))))
    top = idx[np.argsort(-np.nan_to_num(score, nan=-1.0), kind="stable")[:k]]
    ref = np.zeros(n, bool)
    ref[top] = True
    return ref


def candidate_features(
    fits: pd.DataFrame,
    voxel_size_nm: Sequence[float] | float,
    shape: Sequence[int] | None = None,
    eligible: np.ndarray | None = None,
) -> pd.DataFrame:
    """Features of every candidate, relative to this tomogram's confident population.

    Parameters
    ----------
    fits
        One row per candidate as from :func:`synapseg.post.spheres.refine_spheres` plus
        ``score`` (mean network probability inside the candidate).
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    shape
        (z, y, x) shape of the tomogram (for ``edge_rel``); ``None``: no edge feature (3).
    eligible
        Candidates that may form the reference population and count as neighbours (those
        passing the hard sanity limits); default all.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, columns :data:`FEATURES`:
        ``score``; ``contrast_rel`` = membrane contrast ÷ reference median;
        ``corr`` = profile correlation and ``corr_z`` its robust z-score against the reference;
        ``radius_z`` / ``radius_absz`` = robust z-score of the radius (signed / absolute);
        ``radius_nm`` = the radius itself (vesicle size is biology, not imaging);
        ``inner_frac`` = inner contrast ÷ membrane contrast; ``lumen_ratio`` = lumen contrast ÷
        membrane contrast; ``residual_rel`` / ``shift_rel`` = fit residual / center shift ÷
        radius; ``wedge_coverage``; ``gap_rel`` = outer-surface gap to the nearest other
        eligible candidate ÷ radius; ``edge_rel`` = distance of the center to the nearest volume
        face ÷ radius. All clipped to fixed ranges; missing values become NaN.
    """
    n = len(fits)
    vs = voxel_size_zyx(voxel_size_nm)
    eligible = np.ones(n, bool) if eligible is None else np.asarray(eligible, bool)
    ref = reference_mask(fits, eligible)
    r = _col(fits, "radius_nm")
    r_safe = np.where(np.isfinite(r) & (r > 0), r, np.nan)
    mc = _col(fits, "membrane_contrast")
    corr = _col(fits, "profile_correlation")
    mc_med, _ = _robust(mc, mc[ref])
    corr_med, corr_sd = _robust(corr, corr[ref])
    r_med, r_sd = _robust(r, r[ref])
    den = np.maximum(mc, 0.02)
    f: dict[str, np.ndarray] = {
        "score": _col(fits, "score", 0.5),
        "contrast_rel": np.clip(mc / max(mc_med, 1e-3), -2, 5),
        "corr": corr,
        "corr_z": np.clip((corr - corr_med) / corr_sd, -10, 5),
        "radius_z": np.clip((r - r_med) / r_sd, -10, 10),
        "inner_frac": np.clip(_col(fits, "inner_contrast") / den, -3, 3),
        "lumen_ratio": np.clip(_col(fits, "lumen_contrast") / den, -3, 3),
        "residual_rel": np.clip(_col(fits, "fit_residual_nm") / r_safe, 0, 1),
        "shift_rel": np.clip(_col(fits, "shift_nm", 0.0) / r_safe, 0, 1),
        "wedge_coverage": _col(fits, "wedge_coverage", 1.0),
    }
    f["radius_absz"] = np.abs(f["radius_z"])
    f["radius_nm"] = np.clip(r, 5, 50)  # absolute: vesicle size is biology, not imaging
    centers_nm = fits[CENTER_COLUMNS].to_numpy(float) * vs if n else np.zeros((0, 3))
    outer = _col(fits, "outer_radius_nm")
    outer = np.where(np.isfinite(outer), outer, r_safe)
    gap = np.full(n, np.inf)
    idx = np.flatnonzero(eligible & np.isfinite(centers_nm).all(axis=1) & np.isfinite(outer))
    if len(idx) > 1:
        tree = cKDTree(centers_nm[idx])
        k = min(len(idx), 9)
        valid = np.isfinite(centers_nm).all(axis=1)
        d, j = tree.query(np.where(valid[:, None], centers_nm, 0.0), k=k)
        other = idx[j]
        g = d - outer[:, None] - outer[other]
        g[other == np.arange(n)[:, None]] = np.inf
        gap = np.where(valid, g.min(axis=1), np.inf)
    f["gap_rel"] = np.clip(gap / r_safe, -1, 3)
    if shape is not None and n:
        extent_nm = np.asarray(shape, float) * vs
        edge = np.minimum(centers_nm + 0.5 * vs, extent_nm - centers_nm - 0.5 * vs).min(axis=1)
        f["edge_rel"] = np.clip(edge / r_safe, 0, 3)
    else:
        f["edge_rel"] = np.full(n, 3.0)
    out = pd.DataFrame({name: np.asarray(f[name], float) for name in FEATURES}, index=fits.index)
    return out.where(np.isfinite(out), np.nan)


@lru_cache(maxsize=4)
def _load_cached(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_model(path: str | Path | None = None) -> dict[str, Any]:
    """The confidence model (a JSON dict); default: the one shipped with the package."""
    return _load_cached(str(Path(path) if path is not None else MODEL_PATH))


def _design(features: pd.DataFrame, model: dict[str, Any]) -> np.ndarray:
    names = model["features"]
    x = features[names].to_numpy(float)
    mean = np.asarray(model["mean"], float)
    scale = np.asarray(model["scale"], float)
    x = np.where(np.isfinite(x), x, mean)  # missing -> the training mean (neutral)
    z = (x - mean) / scale
    if "z_clip" in model:  # no extrapolation beyond the range of the training data
        z = np.clip(z, np.asarray(model["z_clip"][0], float), np.asarray(model["z_clip"][1], float))
    return z


def _terms(z: np.ndarray, model: dict[str, Any]) -> np.ndarray:
    """Per-feature logit contributions (linear + quadratic), shape (n, n_features)."""
    w = np.asarray(model["coef_linear"], float)
    v = np.asarray(model.get("coef_square", np.zeros_like(w)), float)
    return z * w + z**2 * v


def raw_logit(features: pd.DataFrame, model: dict[str, Any] | None = None) -> np.ndarray:
    """Uncalibrated logit of the logistic model."""
    model = model or load_model()
    return float(model["intercept"]) + _terms(_design(features, model), model).sum(axis=1)


def predict_confidence(features: pd.DataFrame, model: dict[str, Any] | None = None) -> np.ndarray:
    """Calibrated probability that each candidate is a vesicle (0..1).

    Parameters
    ----------
    features
        Output of :func:`candidate_features`.
    model
        A model dict (see :func:`load_model`); default: the shipped one.

    Returns
    -------
    numpy.ndarray
        float64 (n,) probabilities: the logistic model's logit mapped through the model's
        calibration: Platt (``sigmoid(a * logit + b)``) or isotonic (piecewise linear between
        its knots).
    """
    model = model or load_model()
    if len(features) == 0:
        return np.zeros(0)
    logit = raw_logit(features, model)
    cal = model.get("calibration") or {}
    if cal.get("method") == "platt":
        logit = float(cal["a"]) * logit + float(cal["b"])
    p = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
    if cal.get("method") == "isotonic":
        p = np.interp(p, np.asarray(cal["x"], float), np.asarray(cal["y"], float))
    return np.clip(p, 0.0, 1.0)


def low_confidence_reasons(
    features: pd.DataFrame, model: dict[str, Any] | None = None, top: int = 2
) -> list[str]:
    """For each candidate, the reasons behind its confidence: the features whose logit
    contribution lies furthest below that of a typical true vesicle (the model's
    ``positive_mean``), as in ``"weak membrane, low profile correlation"``."""
    model = model or load_model()
    if len(features) == 0:
        return []
    names = model["features"]
    terms = _terms(_design(features, model), model)
    typical = np.asarray(model["positive_mean"], float).reshape(1, -1)
    zt = (typical - np.asarray(model["mean"], float)) / np.asarray(model["scale"], float)
    delta = terms - _terms(zt, model)
    out = []
    for row in delta:
        order = np.argsort(row, kind="stable")
        labels: list[str] = []
        for i in order:
            if row[i] >= 0 or len(labels) >= top:
                break
            text = REASONS.get(names[i], names[i])
            if text not in labels:
                labels.append(text)
        out.append(", ".join(labels) if labels else "low overall evidence")
    return out
