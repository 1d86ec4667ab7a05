"""HTML tables of the evaluation report: unmatched vesicles and per-bin breakdowns.

Split from :mod:`synapseg.evaluate.report` (one job: tables; the report assembles them).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from synapseg.evaluate.matching import MatchResult, ResolvedTable


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _center_cols(table: ResolvedTable, k: int) -> list[str]:
    nm = table.centers_nm[k]
    cols = [" ".join(f"{v:.1f}" for v in nm)]
    if table.voxel_size_nm:
        cols.append(" ".join(f"{v:.1f}" for v in nm / np.asarray(table.voxel_size_nm)))
    else:
        cols.append("–")
    return cols


def _nearest(src: ResolvedTable, dst: ResolvedTable, idx: np.ndarray) -> list[tuple[Any, Any]]:
    if len(dst) == 0 or len(idx) == 0:
        return [(None, None)] * len(idx)
    d, j = cKDTree(dst.centers_nm).query(src.centers_nm[idx])
    return [(int(dst.ids[jj]), float(dd)) for dd, jj in zip(np.atleast_1d(d), np.atleast_1d(j))]


def _unmatched_html(
    title: str,
    src: ResolvedTable,
    dst: ResolvedTable,
    idx: np.ndarray,
    names: tuple[str, str],
    with_score: bool,
) -> list[str]:
    """Heading and table of the unmatched ``src`` rows ``idx``, each with its nearest ``dst``."""
    src_name, dst_name = names
    near = _nearest(src, dst, idx)
    rows = [
        [
            int(src.ids[k]),
            *_center_cols(src, k),
            float(src.radius_nm[k]),
            *([float(src.score[k])] if with_score else []),
            *n,
        ]
        for k, n in zip(idx, near)
    ]
    headers = [
        f"{src_name} id",
        "center z y x (nm)",
        "center z y x (px)",
        "radius (nm)",
        *(["score"] if with_score else []),
        f"nearest {dst_name} id",
        "distance (nm)",
    ]
    parts = [f"<h3>{title}: {len(idx)}</h3>"]
    if rows:
        parts.append(_table(headers, rows))
    return parts


def error_lists_html(match: MatchResult) -> str:
    """Tables of the missed (FN) and false (FP) vesicles with their nearest counterpart."""
    parts = _unmatched_html(
        "Missed vesicles (false negatives)",
        match.gt,
        match.pred,
        match.fn_index,
        ("GT", "pred"),
        with_score=False,
    )
    parts += _unmatched_html(
        "False detections (false positives)",
        match.pred,
        match.gt,
        match.fp_index,
        ("pred", "GT"),
        with_score=True,
    )
    return "\n".join(parts)


def breakdown_html(metrics: dict[str, Any]) -> str:
    """Per-z-slab and per-radius-bin tables."""
    z_rows = [
        [
            f"{r['z_nm'][0]:.0f}–{r['z_nm'][1]:.0f}",
            r["n_gt"],
            r["recall"],
            r["n_pred"],
            r["precision"],
            r["median_abs_z_error_nm"],
        ]
        for r in metrics["per_z_slab"]
    ]
    r_rows = [
        [r["label"], r["n_gt"], r["recall"], r["n_pred"], r["precision"]]
        for r in metrics["per_radius_bin"]
    ]
    return (
        "<h3>Per z slab</h3>"
        + _table(
            ["z (nm)", "n GT", "recall", "n pred", "precision", "median |z error| (nm)"], z_rows
        )
        + "<h3>Per radius bin (midline radius)</h3>"
        + _table(["radius (nm)", "n GT", "recall", "n pred", "precision"], r_rows)
    )
