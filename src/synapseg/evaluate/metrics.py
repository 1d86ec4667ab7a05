"""Detection and geometry metrics of a vesicle segmentation against ground truth.

Conventions (also in docs/evaluation.md):

- Counts come from :func:`synapseg.evaluate.matching.match_vesicles`: a true positive is a
  matched pair, a false positive an unmatched prediction, a false negative an unmatched
  ground-truth vesicle.
- ``precision = tp / n_pred`` and ``recall = tp / n_gt``; when a denominator is 0 the value
  is 1.0 if the other table is empty too (nothing to find, nothing wrongly found) and 0.0
  otherwise. ``F_beta = (1 + b²) tp / ((1 + b²) tp + b² fn + fp)`` (1.0 when both tables are
  empty); beta = 4 weighs recall 16× over precision, as in the CZ cryo-ET object
  identification challenge.
- Errors are predicted minus true, in nm, over matched pairs; ``None`` when nothing matched.
- Per-radius-bin rows bin ground-truth vesicles (recall) by true radius and predictions
  (precision) by predicted radius; per-z-slab rows split the z range into equal slabs, where
  the missing wedge shows up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synapseg.errors import InputError
from synapseg.evaluate.calibration import (  # noqa: F401 (re-exported)
    calibration_metrics,
    expected_calibration_error,
    reliability_bins,
)
from synapseg.evaluate.matching import (
    MatchResult,
    ResolvedTable,
    assign,
    match_vesicles,
)
from synapseg.evaluate.voxels import voxel_metrics  # noqa: F401 (re-exported)

# Midline radii: synaptic vesicles ≈ 15-23 nm; the open ends catch outliers.
DEFAULT_RADIUS_BINS_NM: tuple[float, ...] = (0.0, 14.0, 17.0, 20.0, 23.0, float("inf"))


def _ratio(num: int, den: int, other_empty: bool) -> float:
    if den == 0:
        return 1.0 if other_empty else 0.0
    return num / den


def f_beta(tp: int, fp: int, fn: int, beta: float) -> float:
    """F-beta score from counts (1.0 when there is nothing to find and nothing was found)."""
    b2 = float(beta) ** 2
    den = (1 + b2) * tp + b2 * fn + fp
    return 1.0 if den == 0 else (1 + b2) * tp / den


def _stats(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"median": None, "mean": None, "p90": None, "max": None}
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "p90": float(np.percentile(values, 90)),
        "max": float(np.max(values)),
    }


def _counts(tp: int, n_gt: int, n_pred: int, betas: Sequence[float]) -> dict[str, Any]:
    fp, fn = n_pred - tp, n_gt - tp
    return {
        "n_gt": int(n_gt),
        "n_pred": int(n_pred),
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "precision": _ratio(tp, n_pred, n_gt == 0),
        "recall": _ratio(tp, n_gt, n_pred == 0),
        "f1": f_beta(tp, fp, fn, 1.0),
        "f_beta": {_beta_key(b): f_beta(tp, fp, fn, b) for b in betas},
    }


def _beta_key(beta: float) -> str:
    return f"{float(beta):g}"


def _bin_label(lo: float, hi: float) -> str:
    return f"≥ {lo:g}" if not np.isfinite(hi) else f"{lo:g}–{hi:g}"


def _bin_counts(
    in_gt: np.ndarray, in_pred: np.ndarray, matched_gt: np.ndarray, matched_pred: np.ndarray
) -> dict[str, Any]:
    """Counts, recall and precision of one bin (``None`` where the bin is empty)."""
    n_gt, n_pred = int(in_gt.sum()), int(in_pred.sum())
    tp_gt, tp_pred = int((in_gt & matched_gt).sum()), int((in_pred & matched_pred).sum())
    return {
        "n_gt": n_gt,
        "matched_gt": tp_gt,
        "recall": tp_gt / n_gt if n_gt else None,
        "n_pred": n_pred,
        "matched_pred": tp_pred,
        "precision": tp_pred / n_pred if n_pred else None,
    }


def _radius_bins(match: MatchResult, edges: Sequence[float]) -> list[dict[str, Any]]:
    edges = np.asarray(edges, dtype=float)
    if len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise InputError("radius_bins_nm", f"{list(edges)} is not increasing", "fix the bins")
    gt_r, pred_r = match.gt.radius_nm, match.pred.radius_nm
    matched_gt, matched_pred = match.matched_masks()
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_gt = (gt_r >= lo) & (gt_r < hi)
        in_pred = (pred_r >= lo) & (pred_r < hi)
        rows.append(
            {
                "radius_nm": [float(lo), None if not np.isfinite(hi) else float(hi)],
                "label": _bin_label(lo, hi),
                **_bin_counts(in_gt, in_pred, matched_gt, matched_pred),
            }
        )
    return rows


def _z_slabs(
    match: MatchResult, n_slabs: int, z_range_nm: Sequence[float] | None
) -> list[dict[str, Any]]:
    if n_slabs < 1:
        return []
    gz, pz = match.gt.centers_nm[:, 0], match.pred.centers_nm[:, 0]
    if z_range_nm is None:
        allz = np.concatenate([gz, pz])
        if len(allz) == 0:
            return []
        lo, hi = float(allz.min()), float(allz.max())
    else:
        lo, hi = (float(v) for v in z_range_nm)
    hi = max(hi, lo + 1e-9)
    edges = np.linspace(lo, hi, n_slabs + 1)
    matched_gt, matched_pred = match.matched_masks()
    # Per-pair z error, attributed to the slab of the true center.
    dz = match.center_error_nm[:, 0] if match.tp else np.zeros(0)
    gz_matched = gz[match.gt_index]
    rows = []
    for k in range(n_slabs):
        a, b = edges[k], edges[k + 1]
        last = k == n_slabs - 1
        in_gt = (gz >= a) & ((gz <= b) if last else (gz < b))
        in_pred = (pz >= a) & ((pz <= b) if last else (pz < b))
        in_pair = (gz_matched >= a) & ((gz_matched <= b) if last else (gz_matched < b))
        rows.append(
            {
                "z_nm": [float(a), float(b)],
                **_bin_counts(in_gt, in_pred, matched_gt, matched_pred),
                "median_abs_z_error_nm": (
                    float(np.median(np.abs(dz[in_pair]))) if in_pair.any() else None
                ),
            }
        )
    return rows


def metrics_from_match(
    match: MatchResult,
    *,
    betas: Sequence[float] = (1, 4),
    gt_labels: np.ndarray | None = None,
    pred_labels: np.ndarray | None = None,
    z_slabs: int = 4,
    radius_bins_nm: Sequence[float] = DEFAULT_RADIUS_BINS_NM,
    z_range_nm: Sequence[float] | None = None,
    confidence: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metrics dictionary of :func:`compute_metrics` for an existing match.

    ``confidence``: the predictions' ``confidence`` column (rows of ``match.pred``); adds
    ``calibration`` (:func:`synapseg.evaluate.calibration.calibration_metrics`).
    """
    out: dict[str, Any] = {"match_fraction": match.match_fraction}
    out.update(_counts(match.tp, len(match.gt), len(match.pred), betas))
    center_err = np.linalg.norm(match.center_error_nm, axis=1) if match.tp else np.zeros(0)
    out["center_error_nm"] = _stats(center_err)
    axis_err = np.abs(match.center_error_nm) if match.tp else np.zeros((0, 3))
    out["center_error_axis_nm"] = {
        axis: (float(np.median(axis_err[:, i])) if match.tp else None)
        for i, axis in enumerate("zyx")
    }
    rerr = match.radius_error_nm
    out["radius_error_nm"] = {
        "median_signed": float(np.median(rerr)) if match.tp else None,
        "median_abs": float(np.median(np.abs(rerr))) if match.tp else None,
        "mean_signed": float(np.mean(rerr)) if match.tp else None,
    }
    out["per_radius_bin"] = _radius_bins(match, radius_bins_nm)
    out["per_z_slab"] = _z_slabs(match, z_slabs, z_range_nm)
    if (gt_labels is None) != (pred_labels is None):
        raise InputError("labels", "only one label volume was given", "give both or neither")
    if gt_labels is not None:
        out["voxel"] = voxel_metrics(gt_labels, pred_labels, match.gt_ids, match.pred_ids)
    iou = out.get("voxel", {}).get("matched_iou")
    out["matches"] = [
        {
            "gt_id": int(g),
            "pred_id": int(p),
            "distance_nm": float(d),
            "gt_radius_nm": float(match.gt.radius_nm[gi]),
            "pred_radius_nm": float(match.pred.radius_nm[pi]),
            **({"iou": iou[k]} if iou is not None else {}),
        }
        for k, (g, p, d, gi, pi) in enumerate(
            zip(
                match.gt_ids,
                match.pred_ids,
                match.distance_nm,
                match.gt_index,
                match.pred_index,
            )
        )
    ]
    out["false_positive_ids"] = [int(v) for v in match.pred.ids[match.fp_index]]
    out["false_negative_ids"] = [int(v) for v in match.gt.ids[match.fn_index]]
    if confidence is not None:
        out["calibration"] = calibration_metrics(match, confidence)
    return out


def compute_metrics(
    gt_table: pd.DataFrame | ResolvedTable,
    pred_table: pd.DataFrame | ResolvedTable,
    match_fraction: float = 0.5,
    betas: Sequence[float] = (1, 4),
    gt_labels: np.ndarray | None = None,
    pred_labels: np.ndarray | None = None,
    z_slabs: int = 4,
    radius_bins_nm: Sequence[float] = DEFAULT_RADIUS_BINS_NM,
    *,
    z_range_nm: Sequence[float] | None = None,
    gt_voxel_size_nm: float | Sequence[float] | None = None,
    pred_voxel_size_nm: float | Sequence[float] | None = None,
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> dict[str, Any]:
    """Match the tables and compute every metric; the result is JSON-serialisable.

    Parameters
    ----------
    gt_table, pred_table
        Vesicle tables (see :func:`synapseg.evaluate.matching.match_vesicles`).
    match_fraction
        Match iff center distance < ``match_fraction`` × true midline radius.
    betas
        F-beta values to report (keys of ``f_beta`` are ``f"{beta:g}"``).
    gt_labels, pred_labels
        Optional instance label volumes on one grid, whose values are the tables' ids;
        adds ``voxel`` (foreground Dice, IoU of matched instances).
    z_slabs
        Number of equal z slabs for the per-slab breakdown.
    radius_bins_nm
        Increasing bin edges (nm) for the per-radius breakdown.
    z_range_nm
        (lo, hi) z extent for the slabs; default the span of all centers.
    gt_voxel_size_nm, pred_voxel_size_nm, gt_name, pred_name
        See :func:`synapseg.evaluate.matching.match_vesicles`.

    Returns
    -------
    dict
        ``precision, recall, f1, f_beta{beta}, n_gt, n_pred, tp, fp, fn,
        center_error_nm{median, mean, p90, max}, center_error_axis_nm{z, y, x},
        radius_error_nm{median_signed, median_abs, mean_signed}, per_radius_bin[],
        per_z_slab[], voxel{dice, mean_matched_iou, matched_iou} (labels only), matches[],
        false_positive_ids, false_negative_ids, match_fraction``, and ``calibration{ece,
        reliability[], ...}`` when ``pred_table`` is a DataFrame with a ``confidence`` column.
    """
    match = match_vesicles(
        gt_table,
        pred_table,
        match_fraction,
        gt_voxel_size_nm=gt_voxel_size_nm,
        pred_voxel_size_nm=pred_voxel_size_nm,
        gt_name=gt_name,
        pred_name=pred_name,
    )
    return metrics_from_match(
        match,
        betas=betas,
        gt_labels=gt_labels,
        pred_labels=pred_labels,
        z_slabs=z_slabs,
        radius_bins_nm=radius_bins_nm,
        z_range_nm=z_range_nm,
        confidence=(
            pred_table["confidence"].to_numpy(float)
            if isinstance(pred_table, pd.DataFrame) and "confidence" in pred_table
            else None
        ),
    )


def sweep_match_fraction(
    gt: ResolvedTable, pred: ResolvedTable, fractions: Sequence[float]
) -> dict[str, list[float]]:
    """Precision, recall and F1 at each match fraction (for the report's curve)."""
    out: dict[str, list[float]] = {"match_fraction": [], "precision": [], "recall": [], "f1": []}
    for frac in fractions:
        gi, _, _ = assign(gt.centers_nm, gt.radius_nm, pred.centers_nm, float(frac))
        c = _counts(len(gi), len(gt), len(pred), ())
        out["match_fraction"].append(float(frac))
        for key in ("precision", "recall", "f1"):
            out[key].append(c[key])
    return out


def sweep_score(
    gt: ResolvedTable, pred: ResolvedTable, match_fraction: float = 0.5, n_thresholds: int = 25
) -> dict[str, list[float]]:
    """Precision, recall and F1 when keeping predictions with score >= each threshold.

    Thresholds are quantiles of the predicted scores (at most ``n_thresholds`` distinct
    values), so the curve runs from "keep all" to "keep the most confident one".
    """
    out: dict[str, list[float]] = {"threshold": [], "precision": [], "recall": [], "f1": []}
    if len(pred) == 0:
        return out
    thresholds = np.unique(np.quantile(pred.score, np.linspace(0, 1, n_thresholds)))
    for t in thresholds:
        keep = pred.score >= t
        gi, _, _ = assign(gt.centers_nm, gt.radius_nm, pred.centers_nm[keep], match_fraction)
        c = _counts(len(gi), len(gt), int(keep.sum()), ())
        out["threshold"].append(float(t))
        for key in ("precision", "recall", "f1"):
            out[key].append(c[key])
    return out
