"""Calibration of per-vesicle confidences: reliability bins and expected calibration error.

A prediction is *correct* when it is matched to a ground-truth vesicle; a calibrated
confidence ``c`` means that, of the predictions with confidence ≈ ``c``, a fraction ≈ ``c`` is
correct. ``ECE = sum_b n_b / n * |accuracy_b - mean_confidence_b|`` over 10 equal-width bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synapseg.evaluate.matching import MatchResult


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> list[dict[str, float | int | None]]:
    """Per-bin counts of a reliability diagram: ``n_bins`` equal-width confidence bins on
    [0, 1] (the last one closed), each with ``lo, hi, n, mean_confidence, accuracy``
    (``None`` for an empty bin).

    Parameters
    ----------
    confidence
        Predicted probabilities in [0, 1] (NaN entries are ignored).
    correct
        Whether each prediction is right (bool or 0/1), same length.
    n_bins
        Number of bins.
    """
    conf = np.asarray(confidence, dtype=float).reshape(-1)
    ok = np.asarray(correct, dtype=float).reshape(-1)
    if conf.shape != ok.shape:
        raise ValueError(f"confidence {conf.shape} and correct {ok.shape} differ in length")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    finite = np.isfinite(conf)
    conf, ok = np.clip(conf[finite], 0.0, 1.0), ok[finite]
    which = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    rows: list[dict[str, float | int | None]] = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        rows.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": n,
                "mean_confidence": float(conf[sel].mean()) if n else None,
                "accuracy": float(ok[sel].mean()) if n else None,
            }
        )
    return rows


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> float | None:
    """Expected calibration error: ``sum_b n_b / n * |accuracy_b - mean_confidence_b|`` over
    ``n_bins`` equal-width bins (see :func:`reliability_bins`); ``None`` when there is no
    finite confidence."""
    rows = reliability_bins(confidence, correct, n_bins)
    total = sum(int(r["n"]) for r in rows)
    if total == 0:
        return None
    return float(
        sum(
            r["n"] / total * abs(float(r["accuracy"]) - float(r["mean_confidence"]))
            for r in rows
            if r["n"]
        )
    )


def calibration_metrics(
    match: MatchResult, confidence: np.ndarray, n_bins: int = 10
) -> dict[str, Any]:
    """Calibration of the predictions' ``confidence`` against the match (correct = matched).

    Returns
    -------
    dict
        ``n`` (predictions with a finite confidence), ``ece`` and ``n_bins``, ``reliability``
        (see :func:`reliability_bins`), ``mean_confidence`` and ``accuracy`` overall.
    """
    conf = np.asarray(confidence, dtype=float).reshape(-1)
    if len(conf) != len(match.pred):
        raise ValueError(f"{len(conf)} confidences for {len(match.pred)} predictions")
    _, correct = match.matched_masks()
    finite = np.isfinite(conf)
    return {
        "n": int(finite.sum()),
        "n_bins": int(n_bins),
        "ece": expected_calibration_error(conf, correct, n_bins),
        "mean_confidence": float(conf[finite].mean()) if finite.any() else None,
        "accuracy": float(correct[finite].mean()) if finite.any() else None,
        "reliability": reliability_bins(conf, correct, n_bins),
    }
