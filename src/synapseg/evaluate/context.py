"""Scores of the synapse context against ground truth: the active zone found or not, each
matched vesicle's ``az_distance_nm`` and its pool.

The ground-truth table holds ``az_distance_nm`` when the tomogram has an active zone (for
a simulator folder the columns are computed from its ``info.json``, see
:func:`synapseg.simulate.context.active_zone_truth`); a prediction holds it (non-empty)
when ``segment`` found one. Distances are scored over matched vesicles whose true
distance is at most ``within_nm`` (100 nm); pools over every matched vesicle with a true
distance, the true pool recomputed from the true distance with the same thresholds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "add_context",
    "add_pooled_context",
    "simulated_truth",
    "context_metrics",
    "context_rows",
    "pooled_context",
]

POOLS = ("docked", "proximal", "distal")


def _pools(d: np.ndarray, docked_nm: float, proximal_nm: float) -> np.ndarray:
    return np.where(d < docked_nm, "docked", np.where(d <= proximal_nm, "proximal", "distal"))


def _has_az(table: pd.DataFrame | None) -> bool:
    return (
        table is not None
        and "az_distance_nm" in table
        and bool(pd.to_numeric(table["az_distance_nm"], errors="coerce").notna().any())
    )


def context_metrics(
    gt: pd.DataFrame | None,
    pred: pd.DataFrame | None,
    gt_index: np.ndarray,
    pred_index: np.ndarray,
    *,
    within_nm: float = 100.0,
    docked_nm: float = 5.0,
    proximal_nm: float = 45.0,
) -> dict[str, Any] | None:
    """Context scores of one tomogram (``None`` when neither table has AZ columns).

    Parameters
    ----------
    gt, pred
        The raw ground-truth and predicted tables (rows in the matcher's order).
    gt_index, pred_index
        Matched row pairs (:class:`~synapseg.evaluate.matching.MatchResult`).
    """
    if not any(t is not None and "az_distance_nm" in t for t in (gt, pred)):
        return None
    truth, found = _has_az(gt), _has_az(pred)
    outcome = {(True, True): "tp", (True, False): "fn", (False, True): "fp"}
    out: dict[str, Any] = {
        "az_in_truth": truth,
        "az_found": found,
        "az_outcome": outcome.get((truth, found), "tn"),
    }
    if not (truth and found) or not len(gt_index):
        return out
    g = pd.to_numeric(gt["az_distance_nm"], errors="coerce").to_numpy(float)[gt_index]
    p = pd.to_numeric(pred["az_distance_nm"], errors="coerce").to_numpy(float)[pred_index]
    both = np.isfinite(g) & np.isfinite(p)
    near = both & (g <= within_nm)
    err = np.abs(p - g)[near]
    out["az_distance"] = {
        "within_nm": within_nm,
        "n": int(near.sum()),
        "median_abs_error_nm": float(np.median(err)) if len(err) else None,
        "mean_abs_error_nm": float(np.mean(err)) if len(err) else None,
        "p90_abs_error_nm": float(np.percentile(err, 90)) if len(err) else None,
        "median_signed_error_nm": float(np.median((p - g)[near])) if len(err) else None,
    }
    true_pool = _pools(g[both], docked_nm, proximal_nm)
    if "pool" in pred:
        pred_pool = pred["pool"].fillna("").astype(str).to_numpy()[pred_index][both]
    else:
        pred_pool = _pools(p[both], docked_nm, proximal_nm)
    confusion = {
        t: {q: int(np.sum((true_pool == t) & (pred_pool == q))) for q in POOLS} for t in POOLS
    }
    out["pool"] = {
        "n": int(both.sum()),
        "accuracy": float(np.mean(true_pool == pred_pool)) if both.any() else None,
        "thresholds_nm": {"docked": docked_nm, "proximal": proximal_nm},
        "confusion_true_by_predicted": confusion,
    }
    return out


def pooled_context(per_tomogram: Iterable[dict[str, Any] | None]) -> dict[str, Any] | None:
    """AZ detection over tomograms and distance/pool scores pooled over their vesicles
    (medians of per-tomogram medians are not pooled: counts are summed, errors
    n-weighted for the mean)."""
    items = [m for m in per_tomogram if m]
    if not items:
        return None
    with_az = [m for m in items if m["az_in_truth"]]
    without = [m for m in items if not m["az_in_truth"]]
    out: dict[str, Any] = {
        "tomograms_with_az": len(with_az),
        "az_found_rate": (sum(m["az_found"] for m in with_az) / len(with_az)) if with_az else None,
        "tomograms_without_az": len(without),
        "az_claimed_without": sum(m["az_found"] for m in without),
    }
    dist = [m["az_distance"] for m in items if m.get("az_distance", {}).get("n")]
    if dist:
        n = sum(d["n"] for d in dist)
        out["az_distance_mean_abs_error_nm"] = (
            sum(d["mean_abs_error_nm"] * d["n"] for d in dist) / n
        )
        out["az_distance_n"] = n
    pools = [m["pool"] for m in items if m.get("pool", {}).get("n")]
    if pools:
        n = sum(p["n"] for p in pools)
        out["pool_accuracy"] = sum(p["accuracy"] * p["n"] for p in pools) / n
        out["pool_n"] = n
    return out


def simulated_truth(gt: pd.DataFrame, gt_path: Any) -> pd.DataFrame:
    """The ground truth with the AZ columns: as given, or, for a simulator folder
    (``info.json`` beside the table, written by ``synapseg simulate``), computed from it."""
    import json
    from pathlib import Path

    from synapseg.simulate.context import active_zone_truth

    info_path = Path(gt_path).parent / "info.json" if gt_path is not None else None
    if "az_distance_nm" in gt or info_path is None or not info_path.is_file():
        return gt
    if not all(c in gt for c in ("center_z_nm", "center_y_nm", "center_x_nm", "radius_nm")):
        return gt
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if "active_zone" not in info:  # not a simulator folder of issue 14 or later
        return gt
    return active_zone_truth(gt, info)


def add_context(
    metrics: dict[str, Any], gt: Any, pred: Any, match: Any, gt_path: Any = None
) -> None:
    """``metrics["context"]`` from the raw tables and a match (nothing without AZ columns);
    a simulator folder's truth gets its AZ columns from ``info.json``."""
    if gt is None or pred is None:
        return
    gt = simulated_truth(gt, gt_path)
    scores = context_metrics(gt, pred, match.gt_index, match.pred_index)
    if scores is not None:
        metrics["context"] = scores


def add_pooled_context(pooled: dict[str, Any], per: dict[str, dict[str, Any]]) -> None:
    """``pooled["context_pooled"]`` from the per-tomogram context scores, when any."""
    scores = pooled_context(m.get("context") for m in per.values())
    if scores is not None:
        pooled["context_pooled"] = scores


def context_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Summary rows (label, value) for the report and the CLI table."""
    pooled = metrics.get("context_pooled")
    if pooled:
        rate = pooled["az_found_rate"]
        rows = [
            (
                "active zone found (tomograms with one)",
                f"{'–' if rate is None else f'{rate:.3f}'} of {pooled['tomograms_with_az']}",
            ),
            (
                "active zone claimed (tomograms without)",
                f"{pooled['az_claimed_without']} of {pooled['tomograms_without_az']}",
            ),
        ]
        if pooled.get("pool_n"):
            rows.append(
                (f"pool accuracy (n = {pooled['pool_n']})", f"{pooled['pool_accuracy']:.3f}")
            )
        return rows
    ctx = metrics.get("context")
    if not ctx:
        return []
    rows = [("active zone (truth / found)", f"{ctx['az_in_truth']} / {ctx['az_found']}")]
    dist = ctx.get("az_distance")
    if dist and dist["n"]:
        rows.append(
            (
                f"az_distance abs error median / p90 (≤ {dist['within_nm']:g} nm, n = {dist['n']})",
                f"{dist['median_abs_error_nm']:.2f} / {dist['p90_abs_error_nm']:.2f} nm",
            )
        )
    pool = ctx.get("pool")
    if pool and pool["n"]:
        rows.append((f"pool accuracy (n = {pool['n']})", f"{pool['accuracy']:.3f}"))
    return rows
