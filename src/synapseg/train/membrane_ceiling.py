"""What a membrane segmentation could at best score: ceilings of the issue-14 metric.

Two diagnostics beside :func:`synapseg.evaluate.membranes.score_membranes` (same truth, same
surface distance), used by ``benchmarks/bench_membranes.py --ceiling``:

:func:`truth_ceiling`
    The ground truth itself after a perturbation the pipeline could cause: (a) the round
    trip through a coarser network grid and back (the soft target of
    :func:`synapseg.train.membrane_targets.membrane_targets`, resampled back to the input
    grid as the ``membrane_net`` stage resamples its map, thresholded at 0.5); (b) a shift
    by one voxel along each axis; (c) a dilation or an erosion by one voxel (6-connected).
    It tells whether the grid, the position or the thickness convention limits the score.
:func:`oracle_ceiling`
    A prediction with oracles that know the truth: every predicted voxel farther than
    ``far_nm`` from true membrane removed (``no_far``), every predicted 26-connected piece
    with no voxel within ``far_nm`` removed (``no_far_pieces``), and the score *local* to the
    voxels within ``far_nm`` of both prediction and truth (no far false positive, no missed
    membrane: what the map's position and thickness alone allow), with optional other
    thresholds of a probability map in that local region; and the thickness ratio, predicted
    voxels near the truth over true voxels near the prediction (1: the prediction is as thick
    as the truth where both exist).

A voxel step is the metric's resolution: the surface distance comes in steps of the voxel
size, so with voxels above 1 nm a median ≤ 1 nm needs more than half of all surface voxels
exactly on the other surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx

__all__ = ["grid_round_trip", "oracle_ceiling", "score", "truth_ceiling"]


def score(
    prediction: np.ndarray,
    truth: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    region: np.ndarray | None = None,
) -> dict[str, Any]:
    """Dice, precision, recall and the surface-distance median and 95th percentile (nm) of a
    boolean ``prediction`` against a boolean ``truth`` (optionally inside ``region``), as
    :func:`synapseg.evaluate.membranes.score_membranes` computes them."""
    from synapseg.evaluate.membranes import score_membranes

    s = score_membranes(
        np.asarray(prediction, bool),
        np.asarray(truth, bool),
        voxel_size_nm,
        truth_is_labels=False,
        region=region,
    )
    sd = s["surface_distance_nm"]
    return {
        "dice": s["dice"],
        "precision": s["precision"],
        "recall": s["recall"],
        "sd_median_nm": sd["median"],
        "sd_p95_nm": sd["p95"],
    }


def grid_round_trip(
    truth: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    model_voxel_nm: float,
) -> np.ndarray:
    """``truth`` (bool) as a network on ``model_voxel_nm`` voxels could at best give it back:
    its soft target on the model grid (area fraction, anti-aliased linear resampling), the
    stage's resampling back to the input grid (uint8 0-255), then ``>= 128``."""
    from synapseg.infer.predict import probability_to_uint8
    from synapseg.infer.preprocess import resample_stream, rescale_factors, rescale_volume

    t = np.asarray(truth, bool)
    soft = np.clip(rescale_volume(t.astype(np.float32), voxel_size_nm, model_voxel_nm), 0, 1)
    out = np.zeros(t.shape, np.uint8)

    def write(z0: int, z1: int, block: np.ndarray) -> None:
        out[z0:z1] = probability_to_uint8(block)

    f = rescale_factors(voxel_size_nm, model_voxel_nm)
    resample_stream(lambda a, b: soft[a:b], soft.shape, t.shape, 1 / f, write)
    return out >= 128


def truth_ceiling(
    truth: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    model_voxel_nm: Sequence[float] = (2.4, 4.8),
) -> dict[str, dict[str, Any]]:
    """Scores of the truth after each perturbation (see the module docstring).

    Parameters
    ----------
    truth
        Boolean membrane mask (every membrane but the synaptic vesicles), (z, y, x).
    voxel_size_nm
        Voxel size of the mask, nm.
    model_voxel_nm
        Network grids to round-trip through, nm (2.4: the membrane models' grid; 4.8: the
        first level of a stem-2 network).

    Returns
    -------
    dict
        ``{name: score}`` with names ``grid_<nm>``, ``shift_<axis><±1>``, ``dilate_1``,
        ``erode_1`` (each :func:`score`).
    """
    t = np.asarray(truth, bool)
    out: dict[str, dict[str, Any]] = {}
    for vm in model_voxel_nm:
        out[f"grid_{vm:g}"] = score(grid_round_trip(t, voxel_size_nm, vm), t, voxel_size_nm)
    for axis, name in enumerate("zyx"):
        for step in (1, -1):
            shifted = np.zeros_like(t)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            src[axis] = slice(0, -1) if step > 0 else slice(1, None)
            dst[axis] = slice(1, None) if step > 0 else slice(0, -1)
            shifted[tuple(dst)] = t[tuple(src)]
            out[f"shift_{name}{step:+d}"] = score(shifted, t, voxel_size_nm)
    out["dilate_1"] = score(ndimage.binary_dilation(t), t, voxel_size_nm)
    out["erode_1"] = score(ndimage.binary_erosion(t, border_value=1), t, voxel_size_nm)
    return out


def oracle_ceiling(
    prediction: np.ndarray,
    truth: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    far_nm: float = 5.0,
    thresholds: Sequence[float] = (),
) -> dict[str, Any]:
    """Scores of ``prediction`` with the oracles of the module docstring.

    Parameters
    ----------
    prediction
        Boolean mask, or a probability map (uint8 0-255 or float 0-1, read at 0.5).
    truth
        Boolean membrane mask, same shape.
    voxel_size_nm
        Voxel size, nm.
    far_nm
        Distance from true membrane (nm) beyond which a predicted voxel is *far*.
    thresholds
        Other thresholds (0-1) of a probability map, scored in the local region.

    Returns
    -------
    dict
        ``as_is``, ``no_far``, ``no_far_pieces``, ``local`` (each :func:`score`),
        ``local_at`` ({threshold: score}), ``thickness_ratio``.
    """
    from synapseg.evaluate.membranes import membrane_mask

    vs = voxel_size_zyx(voxel_size_nm)
    t = np.asarray(truth, bool)
    pred = membrane_mask(prediction)
    near_truth, near_pred = (
        ndimage.distance_transform_edt(~m, sampling=vs) <= far_nm if m.any() else np.zeros_like(m)
        for m in (t, pred)
    )
    pieces, n = ndimage.label(pred, structure=np.ones((3, 3, 3), bool))
    touches = np.zeros(n + 1, bool)
    touches[np.unique(pieces[pred & near_truth])] = True
    touches[0] = False
    local = near_truth & near_pred
    a, b = int((pred & near_truth).sum()), int((t & near_pred).sum())
    out: dict[str, Any] = {
        "as_is": score(pred, t, vs),
        "no_far": score(pred & near_truth, t, vs),
        "no_far_pieces": score(touches[pieces], t, vs),
        # undefined (None) where nothing was predicted near the truth: an empty region would
        # score Dice 1.0 and count a segmentation that found nothing as perfect
        "local": score(pred, t, vs, region=local) if local.any() else None,
        "local_at": {},
        "thickness_ratio": a / b if b else None,
    }
    if np.asarray(prediction).dtype != bool and local.any():
        for thr in thresholds:
            out["local_at"][f"{thr:g}"] = score(membrane_mask(prediction, thr), t, vs, local)
    return out
