"""Score detected connectors and tethers against ground truth.

A predicted filament matches a true one of the same kind when it links the same two
boundaries (the same vesicle pair; the same vesicle and the active zone), or when both of
its contact points lie within ``endpoint_tol_nm`` (3 nm) of the true endpoints. When
several predictions qualify for several true filaments (two tethers of one vesicle, say),
the Hungarian algorithm pairs them on endpoint distance. Reported per kind: precision,
recall, F1, and the error of the path length of the matched pairs.

Ground truth is the simulator's ``filaments.csv`` (one row per polyline point:
``filament_id, kind, from_vesicle_id, to_vesicle_id, point_index, z/y/x_nm, radius_nm``)
or a table in synapseg's filament layout (``id, kind, vesicle_a, vesicle_b, contact_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

KINDS = ("connector", "tether")
_BIG = 1e6

__all__ = ["KINDS", "gt_filaments", "match_filaments", "score_filaments"]


def gt_filaments(table: pd.DataFrame) -> pd.DataFrame:
    """One row per true connector/tether: ``kind, vesicle_a, vesicle_b`` (``<NA>`` for
    the AZ), contact points ``a_nm``/``b_nm`` ((3,) arrays), ``length_nm``, ``radius_nm``.

    Accepts the simulator's polyline table or a synapseg filament table.
    """
    rows = []
    if "filament_id" in table:
        for _, g in table.groupby("filament_id", sort=True):
            kind = str(g["kind"].iloc[0])
            if kind not in KINDS:
                continue
            g = g.sort_values("point_index")
            pts = g[["z_nm", "y_nm", "x_nm"]].to_numpy(float)
            a, b = int(g["from_vesicle_id"].iloc[0]), int(g["to_vesicle_id"].iloc[0])
            rows.append(
                {
                    "kind": kind,
                    "vesicle_a": a,
                    "vesicle_b": b if kind == "connector" else None,
                    "a_nm": pts[0],
                    "b_nm": pts[-1],
                    "length_nm": float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()),
                    "radius_nm": float(g["radius_nm"].iloc[0]) if "radius_nm" in g else np.nan,
                }
            )
    else:
        rows = [_pred_row(r) for _, r in table.iterrows()]
    out = pd.DataFrame(
        rows, columns=["kind", "vesicle_a", "vesicle_b", "a_nm", "b_nm", "length_nm", "radius_nm"]
    )
    out["vesicle_b"] = out["vesicle_b"].astype("Int64")
    return out


def _pred_row(r: pd.Series) -> dict[str, Any]:
    vb = r.get("vesicle_b")
    return {
        "kind": str(r["kind"]),
        "vesicle_a": int(r["vesicle_a"]),
        "vesicle_b": None if pd.isna(vb) else int(vb),
        "a_nm": np.array([r[f"contact_a_{ax}_nm"] for ax in "zyx"], float),
        "b_nm": np.array([r[f"contact_b_{ax}_nm"] for ax in "zyx"], float),
        "length_nm": float(r["length_nm"]),
        "radius_nm": np.nan,
    }


def _pair(kind: str, a: int, b: Any) -> tuple:
    if kind == "tether" or pd.isna(b):
        return (int(a), "az")
    return tuple(sorted((int(a), int(b))))


def _end_distance(g: pd.Series, p: pd.Series) -> float:
    """Larger endpoint distance of the better of the two orientations (nm)."""
    same = max(np.linalg.norm(g["a_nm"] - p["a_nm"]), np.linalg.norm(g["b_nm"] - p["b_nm"]))
    swap = max(np.linalg.norm(g["a_nm"] - p["b_nm"]), np.linalg.norm(g["b_nm"] - p["a_nm"]))
    return float(min(same, swap))


def match_filaments(
    gt: pd.DataFrame,
    pred: pd.DataFrame,
    endpoint_tol_nm: float = 3.0,
    id_map: Mapping[int, int] | None = None,
) -> list[tuple[int, int]]:
    """Matched (gt row, pred row) pairs (see the module docstring).

    ``id_map`` maps predicted vesicle ids to ground-truth ids (from vesicle matching);
    without it the ids are taken as the same.
    """
    pairs: list[tuple[int, int]] = []
    for kind in KINDS:
        gi = np.nonzero(gt["kind"].to_numpy() == kind)[0]
        pi = np.nonzero(pred["kind"].to_numpy() == kind)[0]
        if len(gi) == 0 or len(pi) == 0:
            continue
        cost = np.full((len(gi), len(pi)), _BIG)
        gkeys = [_pair(kind, gt["vesicle_a"].iloc[i], gt["vesicle_b"].iloc[i]) for i in gi]
        for c, j in enumerate(pi):
            a, b = pred["vesicle_a"].iloc[j], pred["vesicle_b"].iloc[j]
            if id_map is not None:
                a = id_map.get(int(a), -int(a) - 1)
                b = b if pd.isna(b) else id_map.get(int(b), -int(b) - 1)
            pkey = _pair(kind, a, b)
            for r, i in enumerate(gi):
                d = _end_distance(gt.iloc[i], pred.iloc[j])
                if gkeys[r] == pkey or d <= endpoint_tol_nm:
                    cost[r, c] = d
        rows, cols = linear_sum_assignment(cost)
        pairs += [(int(gi[r]), int(pi[c])) for r, c in zip(rows, cols) if cost[r, c] < _BIG]
    return pairs


def score_filaments(
    gt_table: pd.DataFrame,
    pred_table: pd.DataFrame,
    endpoint_tol_nm: float = 3.0,
    id_map: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """Precision, recall, F1 and length error per kind (and pooled).

    Returns
    -------
    dict
        ``{kind: {n_true, n_predicted, tp, fp, fn, precision, recall, f1,
        length_error_median_nm, length_error_mean_nm, length_bias_nm,
        endpoint_error_median_nm}}`` for ``connector``, ``tether`` and ``all``, plus
        ``endpoint_tol_nm``. ``endpoint_error_median_nm`` is the median over matched pairs of
        the larger of the two endpoint distances (nm): it says whether a match found the
        filament where it is, or only the right pair of boundaries.
    """
    gt = gt_filaments(gt_table)
    pred = gt_filaments(pred_table)
    pairs = match_filaments(gt, pred, endpoint_tol_nm, id_map)
    out: dict[str, Any] = {"endpoint_tol_nm": endpoint_tol_nm}
    for kind in (*KINDS, "all"):
        sel_g = gt["kind"] == kind if kind != "all" else np.ones(len(gt), bool)
        sel_p = pred["kind"] == kind if kind != "all" else np.ones(len(pred), bool)
        mine = [(g, p) for g, p in pairs if kind == "all" or gt["kind"].iloc[g] == kind]
        tp, n_g, n_p = len(mine), int(np.sum(sel_g)), int(np.sum(sel_p))
        prec = tp / n_p if n_p else (1.0 if n_g == 0 else 0.0)
        rec = tp / n_g if n_g else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        err = np.array([pred["length_nm"].iloc[p] - gt["length_nm"].iloc[g] for g, p in mine])
        ends = [_end_distance(gt.iloc[g], pred.iloc[p]) for g, p in mine]
        out[kind] = {
            "n_true": n_g,
            "n_predicted": n_p,
            "tp": tp,
            "fp": n_p - tp,
            "fn": n_g - tp,
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "f1": round(f1, 4),
            "length_error_median_nm": round(float(np.median(np.abs(err))), 3) if tp else None,
            "length_error_mean_nm": round(float(np.mean(np.abs(err))), 3) if tp else None,
            "length_bias_nm": round(float(np.median(err)), 3) if tp else None,
            "endpoint_error_median_nm": round(float(np.median(ends)), 3) if tp else None,
        }
    return out


TRUTH_HELP = "Ground-truth filaments (simulator filaments.csv or a *_filaments.csv): scores them."
PRED_HELP = "Predicted filaments (*_filaments.csv) to score against --filaments-truth."


def check_filament_options(truth: Any, pred: Any) -> None:
    """Both ``--filaments-truth`` and ``--filaments-pred`` or neither."""
    from synapseg.errors import InputError

    if (truth is None) != (pred is None):
        raise InputError(
            "--filaments-truth" if truth is None else "--filaments-pred",
            "filament scoring needs both --filaments-truth and --filaments-pred",
            "give both files (or neither)",
        )


def filament_metrics(truth: Any, pred: Any, match: Any = None) -> dict[str, Any] | None:
    """Scores of ``pred`` against ``truth`` (files), vesicle ids mapped through ``match``
    (the vesicle :class:`~synapseg.evaluate.matching.MatchResult`); ``None`` without files."""
    if truth is None or pred is None:
        return None
    from synapseg.filaments.files import read_filament_table

    id_map = None
    if match is not None:
        id_map = {int(p): int(g) for p, g in zip(match.pred_ids, match.gt_ids)}
    out = score_filaments(read_filament_table(truth), read_filament_table(pred), id_map=id_map)
    out["inputs"] = {"truth": str(truth), "prediction": str(pred)}
    return out


def filament_summary_line(m: dict[str, Any]) -> str:
    """One line for the terminal."""
    c, t = m["connector"], m["tether"]
    return (
        f"filaments: connector P {c['precision']:.2f} R {c['recall']:.2f} F1 {c['f1']:.2f}; "
        f"tether P {t['precision']:.2f} R {t['recall']:.2f} F1 {t['f1']:.2f}; median length "
        f"error {c['length_error_median_nm']} / {t['length_error_median_nm']} nm"
    )
