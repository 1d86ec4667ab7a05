"""What the QC panel shows for one vesicle (pure; the Qt panel is ``qc_panel``).

:func:`vesicle_summary` collects a vesicle's geometry, confidence, network score, source,
hand corrections, QC measurements and the reasons behind its confidence (the features
furthest below a typical vesicle, :func:`synapseg.post.confidence.low_confidence_reasons`,
computed against the current table as the tomogram's population). :func:`summary_text`
formats it as lines for the panel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

QC_FIELDS = (
    ("membrane_contrast", "membrane contrast", "σ"),
    ("lumen_contrast", "lumen contrast", "σ"),
    ("profile_correlation", "profile correlation", ""),
    ("fit_residual_nm", "fit residual", "nm"),
    ("wedge_coverage", "wedge coverage", ""),
    ("shift_nm", "fit shift", "nm"),
)


def _num(row: pd.Series, key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return float("nan")


def confidence_reasons(
    table: pd.DataFrame, voxel_size_nm: Sequence[float] | float, shape: Sequence[int] | None
) -> list[str]:
    """Per row of ``table``, the reasons behind its confidence ("" where not computable)."""
    from synapseg.post.confidence import candidate_features, low_confidence_reasons

    if len(table) == 0:
        return []
    try:
        feats = candidate_features(table, voxel_size_nm, shape)
        return list(low_confidence_reasons(feats))
    except (KeyError, ValueError) as exc:  # a table without the QC columns
        log.debug("confidence reasons not computable: %s", exc)
        return [""] * len(table)


def vesicle_summary(
    table: pd.DataFrame,
    vesicle_id: int,
    voxel_size_nm: Sequence[float] | float,
    shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The QC panel's facts about vesicle ``vesicle_id`` of ``table``.

    Raises
    ------
    KeyError
        No vesicle with that id.
    """
    rows = np.flatnonzero(table["id"].to_numpy() == int(vesicle_id))
    if len(rows) == 0:
        raise KeyError(f"no vesicle with id {vesicle_id}")
    row = table.iloc[rows[0]]
    manual = str(row.get("source", "")) == "manual"
    reasons = "" if manual else confidence_reasons(table, voxel_size_nm, shape)[rows[0]]
    correction = row.get("correction", "")
    return {
        "id": int(row["id"]),
        "center_px": [float(row[f"center_{a}_px"]) for a in "zyx"],
        "radius_nm": _num(row, "radius_nm"),
        "outer_radius_nm": _num(row, "outer_radius_nm"),
        "confidence": _num(row, "confidence"),
        "score": _num(row, "score"),
        "source": str(row.get("source", "auto")),
        "correction": "" if pd.isna(correction) else str(correction),
        "qc": {key: _num(row, key) for key, _, _ in QC_FIELDS},
        "reasons": reasons,
    }


def _fmt(value: float, unit: str = "", digits: int = 2) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


def summary_text(summary: dict[str, Any]) -> str:
    """The panel's text: one fact per line."""
    z, y, x = summary["center_px"]
    lines = [
        f"vesicle {summary['id']}  ({summary['source']}"
        + (f", {summary['correction']} by hand" if summary["correction"] else "")
        + ")",
        f"center (z, y, x): {z:.1f}, {y:.1f}, {x:.1f} px",
        f"radius: {_fmt(summary['radius_nm'])} nm (outer {_fmt(summary['outer_radius_nm'])} nm)",
    ]
    if summary["source"] == "manual":
        lines.append("confidence: – (placed by hand: no score)")
    else:
        lines.append(
            f"confidence: {_fmt(summary['confidence'])}   network score: {_fmt(summary['score'])}"
        )
        if summary["reasons"]:
            lines.append(f"weakest evidence: {summary['reasons']}")
    for key, label, unit in QC_FIELDS:
        lines.append(f"{label}: {_fmt(summary['qc'][key], unit)}")
    return "\n".join(lines)
