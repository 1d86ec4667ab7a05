"""The evaluation report: ``metrics.json``, PNG figures and a self-contained ``report.html``.

The HTML embeds its figures (base64 PNG), so it can be mailed or archived as one file; the
PNGs are also written beside it. Everything renders headless (matplotlib's Agg backend).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from synapseg import __version__
from synapseg.evaluate.matching import MatchResult
from synapseg.evaluate.report_tables import (  # noqa: F401 (re-exported)
    _fmt,
    _table,
    breakdown_html,
    error_lists_html,
)
from synapseg.io.atomic import atomic_path, check_writable, write_text_atomic
from synapseg.io.volume import Volume

log = logging.getLogger(__name__)

FIGURES = ("slices", "precision_recall", "errors", "breakdown", "reliability")
"""Every figure a report may hold; ``reliability`` only when the predictions carry
``confidence`` (``metrics["calibration"]``)."""
_MAX_IMAGE_PX = 2048  # slices larger than this are shown subsampled


def report_targets(
    out_dir: str | os.PathLike, slices: bool = True, reliability: bool = False
) -> list[Path]:
    """The files :func:`write_report` writes into ``out_dir``."""
    out = Path(out_dir)
    names = [
        f for f in FIGURES if (slices or f != "slices") and (reliability or f != "reliability")
    ]
    return [out / "metrics.json", out / "report.html"] + [out / f"{f}.png" for f in names]


def _slices(
    match: MatchResult, tomogram: Volume | None
) -> tuple[np.ndarray | None, np.ndarray | None, float, float, tuple, tuple | None]:
    """Pick the xy and xz planes cutting the most vesicles; read them from the tomogram."""
    from synapseg.evaluate import plots  # matplotlib: imported only when a report is drawn

    centers = np.concatenate([match.gt.centers_nm, match.pred.centers_nm])
    radii = np.concatenate([match.gt.radius_nm, match.pred.radius_nm])
    if tomogram is not None:
        vs = np.asarray(tomogram.voxel_size_nm, float)
        shape = np.asarray(tomogram.shape)
        extent = tuple(shape * vs)
    else:
        vs = None
        pad = float(radii.max()) * 1.3 if len(radii) else 10.0
        top = centers.max(axis=0) + pad if len(centers) else np.full(3, 100.0)
        extent = tuple(np.maximum(top, 1.0))
    gt_c, gt_r = match.gt.centers_nm, match.gt.radius_nm
    use_c, use_r = (gt_c, gt_r) if len(gt_c) else (centers, radii)
    z_nm = plots.best_slice_nm(use_c, use_r, 0, 0.0, extent[0])
    y_nm = plots.best_slice_nm(use_c, use_r, 1, 0.0, extent[1])
    img_xy = img_xz = None
    if tomogram is not None:
        k = int(np.clip(round(z_nm / vs[0]), 0, shape[0] - 1))
        j = int(np.clip(round(y_nm / vs[1]), 0, shape[1] - 1))
        z_nm, y_nm = k * vs[0], j * vs[1]
        step = max(1, int(math.ceil(max(shape[1], shape[2]) / _MAX_IMAGE_PX)))
        # A slab of 3 planes, Gaussian-smoothed (σ = 1 voxel) for display: single voxels of a
        # tomogram are mostly noise (membranes ≈ 0.5 σ), a light low-pass shows them.
        slab_xy = np.asarray(tomogram.data[max(k - 1, 0) : k + 2], dtype=np.float32)
        slab_xz = np.asarray(tomogram.data[:, max(j - 1, 0) : j + 2], dtype=np.float32)
        img_xy = ndi.gaussian_filter(slab_xy, 1.0)[min(k, 1)][::step, ::step]
        img_xz = ndi.gaussian_filter(slab_xz, 1.0)[:, min(j, 1)][::step, ::step]
        if step > 1:
            vs = vs * step
    return img_xy, img_xz, z_nm, y_nm, extent, None if vs is None else tuple(vs)


def render_figures(
    match: MatchResult,
    metrics: dict[str, Any],
    tomogram: Volume | None = None,
    *,
    slices: bool = True,
) -> dict[str, bytes]:
    """PNG bytes of each report figure, keyed by name (see :data:`FIGURES`)."""
    import io

    import matplotlib.pyplot as plt

    from synapseg.evaluate import plots  # matplotlib: imported only when a report is drawn

    figs = {}
    if slices:
        img_xy, img_xz, z_nm, y_nm, extent, vs = _slices(match, tomogram)
        figs["slices"] = plots.slices_figure(match, img_xy, img_xz, z_nm, y_nm, extent, vs)
    figs["precision_recall"] = plots.pr_figure(match)
    figs["errors"] = plots.error_figure(match)
    figs["breakdown"] = plots.breakdown_figure(metrics)
    if metrics.get("calibration"):
        figs["reliability"] = plots.reliability_figure(metrics["calibration"])
    out = {}
    for name, fig in figs.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def summary_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs of the headline numbers, shared by the HTML and the CLI table."""
    ce, re = metrics["center_error_nm"], metrics["radius_error_nm"]
    rows = [
        ("ground truth / predicted", f"{metrics['n_gt']} / {metrics['n_pred']}"),
        ("TP / FP / FN", f"{metrics['tp']} / {metrics['fp']} / {metrics['fn']}"),
        ("precision", f"{metrics['precision']:.3f}"),
        ("recall", f"{metrics['recall']:.3f}"),
        ("F1", f"{metrics['f1']:.3f}"),
    ]
    for beta, value in metrics["f_beta"].items():
        if beta != "1":
            rows.append((f"F-beta (β={beta})", f"{value:.3f}"))
    if ce["median"] is not None:
        rows.append(
            (
                "center error median / mean / p90",
                f"{ce['median']:.2f} / {ce['mean']:.2f} / {ce['p90']:.2f} nm",
            )
        )
        axis = metrics.get("center_error_axis_nm") or {}
        if all(axis.get(a) is not None for a in "zyx"):
            rows.append(
                (
                    "center error median |z| / |y| / |x|",
                    f"{axis['z']:.2f} / {axis['y']:.2f} / {axis['x']:.2f} nm",
                )
            )
        rows.append(
            (
                "radius error median signed / abs",
                f"{re['median_signed']:+.2f} / {re['median_abs']:.2f} nm",
            )
        )
    voxel = metrics.get("voxel")
    if voxel:
        iou = voxel["mean_matched_iou"]
        rows.append(("voxel Dice (foreground)", f"{voxel['dice']:.3f}"))
        rows.append(("mean IoU of matched instances", "–" if iou is None else f"{iou:.3f}"))
    from synapseg.evaluate.context import context_rows

    rows += context_rows(metrics)
    cal = metrics.get("calibration")
    if cal and cal.get("ece") is not None:
        rows.append(
            (
                "confidence calibration (ECE, 10 bins)",
                f"{cal['ece']:.3f} (mean confidence {cal['mean_confidence']:.3f}, "
                f"fraction matched {cal['accuracy']:.3f}, n = {cal['n']})",
            )
        )
    return rows


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1150px;color:#222;line-height:1.4;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em} .meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:8em;background:#fafafa}
.card b{display:block;font-size:1.4em} .card span{color:#666;font-size:.85em}
img{max-width:100%;border:1px solid #eee;margin:.4em 0} figcaption{color:#555;font-size:.9em}
"""


def _cards(metrics: dict[str, Any]) -> str:
    items = [
        ("F1", f"{metrics['f1']:.3f}"),
        ("precision", f"{metrics['precision']:.3f}"),
        ("recall", f"{metrics['recall']:.3f}"),
    ]
    items += [(f"F-beta β={b}", f"{v:.3f}") for b, v in metrics["f_beta"].items() if b != "1"]
    ce = metrics["center_error_nm"]["median"]
    re = metrics["radius_error_nm"]["median_signed"]
    items.append(("median center error", "–" if ce is None else f"{ce:.2f} nm"))
    items.append(("median radius bias", "–" if re is None else f"{re:+.2f} nm"))
    return (
        '<div class="cards">'
        + "".join(
            f"<div class='card'><b>{v}</b><span>{html.escape(k)}</span></div>" for k, v in items
        )
        + "</div>"
    )


CAPTIONS = {
    "slices": "True (solid; green found, orange missed) and predicted (dashed; blue matched, "
    "red false) vesicles drawn as their bilayer-midline cross-section on the plane shown; "
    "missed and false ones carry their id. The planes are those cutting the most vesicles; "
    "the tomogram is shown Gaussian-smoothed (σ = 1 voxel) for display.",
    "precision_recall": "Left: detection scores as the matching tolerance varies (dotted line:"
    " the tolerance used). Right: precision against recall when only predictions above a "
    "score threshold are kept.",
    "errors": "Left: center error of matched vesicles (3D, in-plane and along z, where the "
    "missing wedge blurs). Right: predicted vs true midline radius.",
    "breakdown": "Recall and precision per z slab and per radius bin; the numbers above the "
    "bars are ground-truth / predicted counts.",
    "reliability": "Reliability of the predictions' confidence: per confidence bin (0.1 wide),"
    " the fraction of predictions matched to a true vesicle against their mean confidence; "
    "points on the diagonal are calibrated. ECE = count-weighted mean gap over the bins. "
    "Below: predictions per bin (rejected candidates are not in the table, so low bins "
    "are sparse).",
}


def report_html(
    metrics: dict[str, Any],
    match: MatchResult,
    figures: dict[str, bytes],
    *,
    title: str,
    inputs: dict[str, Any],
    extra_html: str = "",
    vesicle_lists: bool = True,
) -> str:
    """The report page (figures embedded as base64 PNG)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    inputs_rows = [[k, v] for k, v in inputs.items() if v is not None]
    figs = "".join(
        f"<figure><img alt='{name}' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'><figcaption>{CAPTIONS.get(name, '')}</figcaption>"
        "</figure>"
        for name, png in figures.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">synapseg {__version__} · {when} · a match is a one-to-one pair whose centers are
closer than {metrics["match_fraction"]:g} × the true radius</p>
{_cards(metrics)}
<h2>Summary</h2>
{_table(["metric", "value"], summary_rows(metrics))}
{_table(["input", "value"], inputs_rows)}
{extra_html}
<h2>Figures</h2>
{figs}
<h2>Breakdown</h2>
{breakdown_html(metrics)}
{"<h2>Errors by vesicle</h2>" + error_lists_html(match) if vesicle_lists else ""}
</body></html>
"""


def write_report(
    out_dir: str | os.PathLike,
    metrics: dict[str, Any],
    match: MatchResult,
    *,
    tomogram: Volume | None = None,
    title: str = "synapseg evaluation",
    inputs: dict[str, Any] | None = None,
    overwrite: bool = False,
    slices: bool = True,
    vesicle_lists: bool = True,
    extra_html: str = "",
) -> Path:
    """Write ``metrics.json``, the figure PNGs and ``report.html`` into ``out_dir``.

    Parameters
    ----------
    out_dir
        Report folder (created if needed).
    metrics
        From :func:`synapseg.evaluate.metrics.compute_metrics` (or ``metrics_from_match``).
    match
        The match the metrics came from (drawn in the figures and lists).
    tomogram
        Optional tomogram: the slices are drawn on its grey values.
    title, inputs
        Page title and the input facts listed in the report (paths, voxel sizes...).
    overwrite
        Replace existing report files; otherwise an existing one raises
        :class:`~synapseg.errors.OutputExistsError` before anything is written.
    slices, vesicle_lists, extra_html
        For pooled (multi-tomogram) reports: leave out the slice figure and the FP/FN
        lists, and add a section (e.g. the per-tomogram table).

    Returns
    -------
    pathlib.Path
        The ``report.html`` path.
    """
    out = Path(out_dir)
    for target in report_targets(out, slices, bool(metrics.get("calibration"))):
        check_writable(target, overwrite)
    figures = render_figures(match, metrics, tomogram, slices=slices)
    for name, png in figures.items():
        with atomic_path(out / f"{name}.png", overwrite) as tmp:
            tmp.write_bytes(png)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2), overwrite)
    page = report_html(
        metrics,
        match,
        figures,
        title=title,
        inputs=inputs or {},
        extra_html=extra_html,
        vesicle_lists=vesicle_lists,
    )
    return write_text_atomic(out / "report.html", page, overwrite)
