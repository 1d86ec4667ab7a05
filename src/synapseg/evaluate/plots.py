"""The figures of the evaluation report (matplotlib, headless).

Each function takes a :class:`~synapseg.evaluate.matching.MatchResult` (plus what it needs)
and returns a :class:`matplotlib.figure.Figure`; :mod:`synapseg.evaluate.report` saves them.
Colours: ground truth found = green, ground truth missed (FN) = orange, predictions
matched = blue (dashed), predictions wrong (FP) = red (dashed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports render on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from synapseg.evaluate.matching import MatchResult  # noqa: E402
from synapseg.evaluate.metrics import sweep_match_fraction, sweep_score  # noqa: E402

GT_FOUND, GT_MISSED, PRED_OK, PRED_FP = "#2ca02c", "#ff7f0e", "#1f77b4", "#d62728"


def pr_figure(match: MatchResult) -> Figure:
    """Left: precision, recall, F1 vs match fraction. Right: precision-recall over score
    thresholds (when the predictions carry distinct scores)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    fractions = np.round(np.linspace(0.05, 1.0, 20), 3)
    s = sweep_match_fraction(match.gt, match.pred, fractions)
    for key, style in (("precision", "-o"), ("recall", "-s"), ("f1", "-^")):
        a.plot(s["match_fraction"], s[key], style, ms=3, label=key)
    a.axvline(match.match_fraction, color="0.5", ls=":", label="used")
    a.set(
        xlabel="match fraction (max center distance / true radius)",
        ylabel="score",
        ylim=(-0.02, 1.02),
        title="Detection vs matching tolerance",
    )
    a.legend(loc="lower right", fontsize=8)
    a.grid(alpha=0.3)
    scores = match.pred.score
    if len(scores) and np.ptp(scores) > 0:
        ps = sweep_score(match.gt, match.pred, match.match_fraction)
        sc = b.scatter(ps["recall"], ps["precision"], c=ps["threshold"], cmap="viridis", s=18)
        b.plot(ps["recall"], ps["precision"], color="0.6", lw=1, zorder=0)
        fig.colorbar(sc, ax=b, label="score threshold")
        best = int(np.argmax(ps["f1"]))
        bx, by = ps["recall"][best], ps["precision"][best]
        b.annotate(
            f"best F1 {ps['f1'][best]:.3f}\nat score ≥ {ps['threshold'][best]:.3g}",
            (bx, by),
            xytext=(-100 if bx > 0.5 else 20, -45 if by > 0.5 else 30),
            textcoords="offset points",
            arrowprops={"arrowstyle": "->", "color": "0.4"},
            fontsize=8,
        )
        b.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    else:
        b.text(0.5, 0.5, "predictions carry no distinct scores", ha="center", va="center")
        b.set(xticks=[], yticks=[])
    b.set(xlabel="recall", ylabel="precision", title="Precision-recall over score threshold")
    b.grid(alpha=0.3)
    return fig


def error_figure(match: MatchResult) -> Figure:
    """Left: histogram of center errors (3D, in-plane, along z). Right: predicted vs true
    midline radius with the identity line."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    if match.tp:
        err = match.center_error_nm
        total = np.linalg.norm(err, axis=1)
        inplane = np.linalg.norm(err[:, 1:], axis=1)
        top = max(float(total.max()), 1e-3)
        bins = np.linspace(0, top * 1.05, 25)
        a.hist(total, bins=bins, color="0.7", label="3D distance")
        a.hist(inplane, bins=bins, histtype="step", lw=1.5, color=PRED_OK, label="in-plane (xy)")
        a.hist(np.abs(err[:, 0]), bins=bins, histtype="step", lw=1.5, color=PRED_FP, label="|z|")
        med = float(np.median(total))
        a.axvline(med, color="k", ls="--", lw=1, label=f"median {med:.2f} nm")
        a.legend(fontsize=8)
        gr, pr = match.gt.radius_nm[match.gt_index], match.pred.radius_nm[match.pred_index]
        lo, hi = float(min(gr.min(), pr.min())) - 1, float(max(gr.max(), pr.max())) + 1
        sc = b.scatter(gr, pr, c=total, cmap="magma_r", s=16, vmin=0, edgecolors="0.3", lw=0.3)
        fig.colorbar(sc, ax=b, label="center error (nm)")
        b.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="predicted = true")
        bias = float(np.median(pr - gr))
        b.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
        b.legend(title=f"median bias {bias:+.2f} nm", fontsize=8, loc="upper left")
    else:
        for ax in (a, b):
            ax.text(0.5, 0.5, "no matched vesicles", ha="center", va="center")
    a.set(xlabel="center error (nm)", ylabel="matched vesicles", title="Center error")
    b.set(
        xlabel="true radius (nm, bilayer midline)",
        ylabel="predicted radius (nm)",
        title="Radius: predicted vs true",
    )
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return fig


def breakdown_figure(metrics: dict[str, Any]) -> Figure:
    """Recall and precision per z slab (missing-wedge effects) and per radius bin."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for ax, rows, labels, title in (
        (
            a,
            metrics["per_z_slab"],
            [f"{r['z_nm'][0]:.0f}–{r['z_nm'][1]:.0f}" for r in metrics["per_z_slab"]],
            "Per z slab (nm)",
        ),
        (
            b,
            metrics["per_radius_bin"],
            [r["label"] for r in metrics["per_radius_bin"]],
            "Per radius bin (nm, bilayer midline)",
        ),
    ):
        keep = [i for i, r in enumerate(rows) if r["n_gt"] or r["n_pred"]]
        rows, labels = [rows[i] for i in keep], [labels[i] for i in keep]
        x = np.arange(len(rows))
        rec = [np.nan if r["recall"] is None else r["recall"] for r in rows]
        prec = [np.nan if r["precision"] is None else r["precision"] for r in rows]
        bars = (
            ax.bar(x - 0.2, rec, 0.4, color=GT_FOUND),
            ax.bar(x + 0.2, prec, 0.4, color=PRED_OK),
        )
        for i, r in enumerate(rows):
            ax.text(i, 1.03, f"{r['n_gt']}/{r['n_pred']}", ha="center", fontsize=7)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set(ylim=(0, 1.12), title=title, ylabel="score")
        ax.grid(alpha=0.3, axis="y")
    fig.legend(
        handles=bars,
        labels=[
            "recall (true vesicles, binned by true value)",
            "precision (predictions, binned by predicted value)",
        ],
        loc="outside lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
        title="numbers above the bars: true / predicted vesicles",
        title_fontsize=8,
    )
    return fig


def reliability_figure(calibration: dict[str, Any]) -> Figure:
    """Reliability diagram: fraction of predictions that are correct (matched) against their
    mean confidence per bin, with the bin counts below; the diagonal is perfect calibration."""
    fig, (a, b) = plt.subplots(
        2, 1, figsize=(5.5, 5.5), layout="constrained", height_ratios=(3, 1), sharex=True
    )
    rows = [r for r in calibration["reliability"] if r["n"]]
    width = 1.0 / max(len(calibration["reliability"]), 1)
    a.plot([0, 1], [0, 1], color="0.5", ls=":", label="perfect calibration")
    if rows:
        lo = np.array([r["lo"] for r in rows])
        acc = np.array([r["accuracy"] for r in rows])
        conf = np.array([r["mean_confidence"] for r in rows])
        a.bar(lo, acc, width * 0.9, align="edge", color=PRED_OK, alpha=0.6, label="accuracy")
        a.plot(conf, acc, "o-", color=PRED_OK, ms=4, label="(mean confidence, accuracy)")
        b.bar(lo, [r["n"] for r in rows], width * 0.9, align="edge", color="0.6")
    ece = calibration.get("ece")
    a.set(
        ylim=(0, 1.02),
        ylabel="fraction matched",
        title="Reliability"
        + ("" if ece is None else f" (ECE {ece:.3f}, {calibration['n']} predictions)"),
    )
    a.legend(loc="upper left", fontsize=8)
    a.grid(alpha=0.3)
    b.set(xlim=(0, 1), xlabel="confidence", ylabel="predictions")
    b.grid(alpha=0.3, axis="y")
    return fig


def _circle_radius(center: np.ndarray, radius: np.ndarray, axis: int, pos: float) -> np.ndarray:
    """Radius of each sphere's cross-section with the plane ``coord[axis] == pos`` (nm)."""
    d = np.abs(center[:, axis] - pos)
    out = np.full(len(d), np.nan)
    inside = d < radius
    out[inside] = np.sqrt(radius[inside] ** 2 - d[inside] ** 2)
    return out


def best_slice_nm(centers_nm: np.ndarray, radius_nm: np.ndarray, axis: int, lo: float, hi: float):
    """The plane position (nm) along ``axis`` that cuts the most spheres (the middle of the
    range when there are none)."""
    if len(centers_nm) == 0:
        return 0.5 * (lo + hi)
    candidates = np.clip(centers_nm[:, axis], lo, hi)
    counts = [np.sum(np.abs(centers_nm[:, axis] - c) < 0.7 * radius_nm) for c in candidates]
    return float(candidates[int(np.argmax(counts))])


def slices_figure(
    match: MatchResult,
    image_xy: np.ndarray | None,
    image_xz: np.ndarray | None,
    z_nm: float,
    y_nm: float,
    extent_nm: Sequence[float],
    voxel_size_nm: Sequence[float] | None,
) -> Figure:
    """An xy slice at ``z_nm`` and an xz slice at ``y_nm`` with true and predicted vesicles
    drawn as their cross-section circles (bilayer midline) on that plane.

    ``extent_nm`` is the (z, y, x) size of the volume in nm; images may be ``None`` (then the
    circles are drawn on a blank canvas).
    """
    ez, ey, ex = extent_nm
    width = 9.0
    height = min(width * (ey + max(ez, 0.15 * ey)) / ex + 1.3, 16.0)
    fig = plt.figure(figsize=(width, height), layout="constrained")
    ratio = [ey, max(ez, 0.15 * ey)]
    a, b = fig.subplots(2, 1, height_ratios=ratio)
    matched_gt, matched_pred = match.matched_masks()
    vs = voxel_size_nm if voxel_size_nm is not None else (0, 0, 0)
    for ax, img, axis, pos, plane, (h_axis, v_axis), height in (
        (a, image_xy, 0, z_nm, f"xy slice at z = {z_nm:.1f} nm", (2, 1), ey),
        (b, image_xz, 1, y_nm, f"xz slice at y = {y_nm:.1f} nm", (2, 0), ez),
    ):
        if img is not None:
            lo, hi = np.percentile(img, [1, 99])
            ext = (-vs[2] / 2, ex - vs[2] / 2, height - vs[v_axis] / 2, -vs[v_axis] / 2)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=ext, interpolation="nearest")
        else:
            ax.set_facecolor("0.93")
        x0, y0 = -vs[2] / 2, -vs[v_axis] / 2
        ax.set(xlim=(x0, x0 + ex), ylim=(y0 + height, y0), aspect="equal", title=plane)
        ax.set_xlabel("x (nm)")
        ax.set_ylabel(("y" if axis == 0 else "z") + " (nm)")
        for table, ok, c_ok, c_bad, ls in (
            (match.gt, matched_gt, GT_FOUND, GT_MISSED, "-"),
            (match.pred, matched_pred, PRED_OK, PRED_FP, "--"),
        ):
            r = _circle_radius(table.centers_nm, table.radius_nm, axis, pos)
            for k in np.flatnonzero(np.isfinite(r)):
                bad = not ok[k]
                ax.add_patch(
                    Circle(
                        (table.centers_nm[k, h_axis], table.centers_nm[k, v_axis]),
                        r[k],
                        fill=False,
                        lw=2.0 if bad else 1.4,
                        ls=ls,
                        color=c_bad if bad else c_ok,
                    )
                )
                if bad:
                    ax.annotate(
                        str(table.ids[k]),
                        (
                            table.centers_nm[k, h_axis] + 0.72 * r[k],
                            table.centers_nm[k, v_axis] - 0.72 * r[k],
                        ),
                        color=c_bad,
                        fontsize=9,
                        ha="left",
                        va="bottom",
                        weight="bold",
                        path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
                    )
    handles = [
        plt.Line2D([], [], color=GT_FOUND, label="true, found"),
        plt.Line2D([], [], color=GT_MISSED, lw=2, label="true, missed (FN, id)"),
        plt.Line2D([], [], color=PRED_OK, ls="--", label="predicted, matched"),
        plt.Line2D([], [], color=PRED_FP, ls="--", lw=2, label="predicted, false (FP, id)"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncol=4, fontsize=8, frameon=False)
    return fig
