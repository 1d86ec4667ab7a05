"""Voxel metrics of two instance label volumes: foreground Dice and matched-pair IoU.

Counted over z slabs, so memory stays bounded for large (memory-mapped) volumes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synapseg.errors import InputError

_SLAB_VOXELS = 1 << 24  # voxel-metric counting reads this many voxels at a time


def voxel_metrics(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
) -> dict[str, Any]:
    """Foreground Dice and the IoU of each matched instance pair.

    Parameters
    ----------
    gt_labels, pred_labels
        Instance label volumes (z, y, x) of equal shape; 0 is background.
    gt_ids, pred_ids
        Label values of the matched pairs (same length).

    Returns
    -------
    dict
        ``dice`` (foreground), ``mean_matched_iou`` (None when no pairs), ``matched_iou``
        (one value per pair, in the given order) and ``voxels`` (foreground voxel counts of
        each side and of their intersection, for pooling).
    """
    if tuple(gt_labels.shape) != tuple(pred_labels.shape):
        raise InputError(
            "labels",
            f"ground-truth labels {gt_labels.shape} and predicted labels {pred_labels.shape} "
            "have different shapes",
            "give label volumes on the same grid",
        )
    # Counts are accumulated over z slabs, so memory stays bounded for large (memmapped)
    # volumes: voxels per label on each side, and voxels per (gt, pred) label pair.
    n_gt = n_pred = n_inter = 0
    g_size: dict[int, int] = {}
    p_size: dict[int, int] = {}
    inter: dict[tuple[int, int], int] = {}
    shape = gt_labels.shape
    per_slab = max(1, _SLAB_VOXELS // max(1, int(shape[1]) * int(shape[2])))
    for z in range(0, int(shape[0]), per_slab):
        g = np.asarray(gt_labels[z : z + per_slab]).astype(np.int64, copy=False)
        p = np.asarray(pred_labels[z : z + per_slab]).astype(np.int64, copy=False)
        gfg, pfg = g != 0, p != 0
        n_gt += int(gfg.sum())
        n_pred += int(pfg.sum())
        both = gfg & pfg
        n_inter += int(both.sum())
        _add_counts(g_size, *np.unique(g[gfg], return_counts=True))
        _add_counts(p_size, *np.unique(p[pfg], return_counts=True))
        pairs, counts = np.unique(np.stack([g[both], p[both]]), axis=1, return_counts=True)
        for (a, b), c in zip(pairs.T.tolist(), counts.tolist()):
            inter[(a, b)] = inter.get((a, b), 0) + c
    total = n_gt + n_pred
    dice = 1.0 if total == 0 else 2.0 * n_inter / total
    ious: list[float] = []
    for a, b in zip(np.asarray(gt_ids).tolist(), np.asarray(pred_ids).tolist()):
        i = inter.get((int(a), int(b)), 0)
        u = g_size.get(int(a), 0) + p_size.get(int(b), 0) - i
        ious.append(i / u if u else 0.0)
    return {
        "dice": float(dice),
        "mean_matched_iou": float(np.mean(ious)) if ious else None,
        "matched_iou": [float(v) for v in ious],
        "voxels": {"gt": n_gt, "pred": n_pred, "intersection": n_inter},
    }


def _add_counts(acc: dict[int, int], values: np.ndarray, counts: np.ndarray) -> None:
    for v, c in zip(values.tolist(), counts.tolist()):
        acc[v] = acc.get(v, 0) + c
