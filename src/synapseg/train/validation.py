"""Validation during training: whole-volume prediction on the model grid, Dice and F1.

F1 on vesicle centers uses ``synapseg.post.vesicles.find_vesicles`` when
``use_post=True`` and it is importable (with the pipeline's default vesicle-free gate, or
without it when ``gate=False``: the 0.9 gate empties a whole validation tomogram whose
network's best candidate scores 0.87-0.90, which made the best-checkpoint choice of a less
confident network swing by ±0.1); otherwise (the default, fast) the probability
map is thresholded, split into connected components (cc3d) and each component's
centroid is a detection. Matching and F1 come from ``synapseg.evaluate.metrics``
(Hungarian on centers, a match when the distance is below half the GT radius).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from synapseg.core.units import voxel_size_zyx
from synapseg.train.data import PreparedVolume
from synapseg.train.targets import centers_from_instances

log = logging.getLogger(__name__)


def predict_prepared(
    net: torch.nn.Module, image: np.ndarray, size_multiple: int, device: str = "cpu"
) -> np.ndarray:
    """Sigmoid probabilities (C, z, y, x) for a whole (small) normalised volume.

    The volume is padded (reflect) to a multiple of ``size_multiple`` and cropped back.
    """
    shape = image.shape
    pad = [(0, (-n) % size_multiple) for n in shape]
    padded = np.pad(image, pad, mode="reflect") if any(p[1] for p in pad) else image
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None, None]
        prob = torch.sigmoid(net(x.to(device))).float().cpu().numpy()[0]
    net.train(was_training)
    return prob[(slice(None),) + tuple(slice(0, n) for n in shape)]


def _component_table(prob: np.ndarray, voxel_size_nm: Sequence[float], threshold: float):
    import cc3d

    labels = cc3d.connected_components(prob > threshold, connectivity=6)
    vs = voxel_size_zyx(voxel_size_nm)
    min_voxels = max(4, int((4 / 3) * np.pi * 6.0**3 / np.prod(vs)))  # r >= 6 nm
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < min_voxels) & (ids != 0)]
    if len(small):
        labels[np.isin(labels, small)] = 0
    return centers_from_instances(labels, vs)


def validate(
    net: torch.nn.Module,
    volumes: list[PreparedVolume],
    voxel_size_nm: Sequence[float],
    size_multiple: int,
    *,
    device: str = "cpu",
    threshold: float = 0.5,
    use_post: bool = False,
    gate: bool = True,
) -> dict:
    """Mean voxel Dice and detection metrics over the validation volumes.

    Returns a dict with ``dice``, ``f1``, ``precision``, ``recall``,
    ``center_error_nm_median`` and per-volume entries. Voxels outside a volume's
    annotation mask are ignored (for Dice, and detections there are dropped). ``gate=False``
    runs ``find_vesicles`` without the vesicle-free gate (``min_best_score=None``).
    """
    from synapseg.evaluate.metrics import compute_metrics

    per = []
    method = "components"
    tp = fp = fn = 0
    center_errors = []
    for vol in volumes:
        prob = predict_prepared(net, vol.image, size_multiple, device)[0]
        w = vol.weight.astype(bool)
        pred = (prob > threshold) & w
        gt = (vol.instances != 0) & w
        denom = pred.sum() + gt.sum()
        dice = float(2 * (pred & gt).sum() / denom) if denom else 1.0
        pred_table = None
        if use_post:
            try:
                from synapseg.post.vesicles import PostParams, find_vesicles

                params = PostParams() if gate else PostParams(min_best_score=None)
                pred_table, _rej, _info = find_vesicles(vol.image, prob, voxel_size_nm, params)
                method = "find_vesicles"
            except ImportError:
                pred_table = None
        if pred_table is None:
            pred_table = _component_table(prob * w, voxel_size_nm, threshold)
        gt_table = vol.gt_table(voxel_size_nm)
        if len(gt_table) and len(pred_table):
            # Only centers matter for detection F1; keep wild radii of an untrained net from
            # tripping the evaluator's unit check.
            med = float(gt_table["radius_nm"].median())
            for col in ("radius_nm", "outer_radius_nm"):
                pred_table[col] = pred_table[col].clip(0.5 * med, 2.0 * med)
        m = compute_metrics(gt_table, pred_table, match_fraction=0.5)
        tp += int(m["tp"])
        fp += int(m["fp"])
        fn += int(m["fn"])
        err = _median_center_error(m)
        if err is not None:
            center_errors.append(err)
        per.append(
            {
                "name": vol.name,
                "dice": dice,
                "f1": float(m["f1"]),
                "n_gt": int(m["n_gt"]),
                "n_pred": int(m["n_pred"]),
            }
        )
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "dice": float(np.mean([p["dice"] for p in per])) if per else 0.0,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "center_error_nm_median": float(np.median(center_errors)) if center_errors else None,
        "method": method,
        "volumes": per,
    }


def _median_center_error(metrics: dict) -> float | None:
    for key in ("center_error_nm", "center_error"):
        value = metrics.get(key)
        if isinstance(value, dict) and value.get("median") is not None:
            return float(value["median"])
    value = metrics.get("center_error_nm_median")
    return None if value is None else float(value)
