"""Where a membrane map's errors lie: a diagnostic beside
:func:`synapseg.evaluate.membranes.score_membranes` (same truth, same threshold, same
surface definition), used by ``benchmarks/bench_membranes.py --budget``.

Wedge-facing membrane: the truth sheet's normal within ``wedge_deg`` of z (the beam axis),
the membrane patches a single-axis tilt series' missing wedge erases. The split is
approximate: the lost normals lie near the plane of z and the axis perpendicular to the
tilt axis, a cone about z is the usual shorthand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.evaluate.membranes import membrane_mask, surface

__all__ = ["membrane_error_budget", "sheet_normals"]


def sheet_normals(
    mask: np.ndarray, where: np.ndarray, voxel_size_nm: float | Sequence[float], sigma_nm: float
) -> np.ndarray:
    """Unit normals (N, 3; z, y, x) of a sheet-like ``mask`` at the voxels ``where``: the
    eigenvector of the most negative eigenvalue of the Hessian (in nm) of the mask smoothed
    by a Gaussian of ``sigma_nm`` (about half the sheet's thickness or more, so that every
    voxel of the slab lies on the concave side of its profile)."""
    vs = voxel_size_zyx(voxel_size_nm)
    f = np.asarray(mask, np.float32)
    sigma = [sigma_nm / v for v in vs]
    idx = np.nonzero(where)
    hess = np.empty((len(idx[0]), 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            order = [0, 0, 0]
            order[i] += 1
            order[j] += 1
            d = ndimage.gaussian_filter(f, sigma, order=order)[idx] / (vs[i] * vs[j])
            hess[:, i, j] = hess[:, j, i] = d
    return np.linalg.eigh(hess)[1][:, :, 0]


def membrane_error_budget(
    prediction: np.ndarray,
    labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    threshold: float = 0.5,
    wedge_deg: float = 30.0,
    sigma_nm: float = 3.0,
) -> dict[str, Any]:
    """Where a membrane map's voxel errors lie (a diagnostic beside :func:`score_membranes`).

    False negatives (truth voxels missed) are split into *wedge-facing* (the truth sheet's
    normal within ``wedge_deg`` of z), *near* (within one voxel, 26-neighbourhood, of a
    predicted voxel: thickness or offset) and *missed* (farther: membrane not found). False
    positives are split into *near* (within one voxel of the truth: thickness or offset),
    *vesicle* (within one voxel of a synaptic-vesicle membrane, class 2) and *far* (other
    structures, noise). Each category comes with its voxel count and the Dice the map would
    have without it. The surface distances (pooled both ways, as in ``score_membranes``)
    come as the fraction at 0, 1, 2-3 and more than 3 voxels, and the median from
    wedge-facing and other truth surface voxels.

    Parameters
    ----------
    prediction
        Probability map (uint8 0-255 or float) or boolean mask, (z, y, x).
    labels
        The simulator's ``membrane_labels`` (classes; every class but 0 and 2 is truth).
    voxel_size_nm
        Voxel size (scalar or z, y, x).
    threshold
        Probability threshold of the prediction.
    wedge_deg
        Largest angle between a wedge-facing sheet normal and z.
    sigma_nm
        Smoothing of the truth for its normals (:func:`sheet_normals`).

    Returns
    -------
    dict
        ``dice``, ``n_truth``, ``n_pred``, ``wedge_fraction`` (of truth voxels),
        ``categories`` ({name: {"voxels", "dice_without"}}) and ``surface``.
    """
    from synapseg.train.membrane_targets import VESICLE_MEMBRANE_CLASS, non_vesicle_membrane

    vs = voxel_size_zyx(voxel_size_nm)
    pred = membrane_mask(prediction, threshold)
    labels = np.asarray(labels)
    true = non_vesicle_membrane(labels)
    ves = labels == VESICLE_MEMBRANE_CLASS
    wedge = np.zeros(true.shape, bool)
    if true.any():
        n = sheet_normals(true, true, vs, sigma_nm)
        wedge[true] = np.abs(n[:, 0]) >= np.cos(np.radians(wedge_deg))
    cube = np.ones((3, 3, 3), bool)
    near_pred = ndimage.binary_dilation(pred, cube)
    near_true = ndimage.binary_dilation(true, cube)
    near_ves = ndimage.binary_dilation(ves, cube)
    fn, fp = true & ~pred, pred & ~true
    cats = {
        "fn_wedge_facing": fn & wedge,
        "fn_near_prediction": fn & ~wedge & near_pred,
        "fn_missed": fn & ~wedge & ~near_pred,
        "fp_near_truth": fp & near_true,
        "fp_vesicle_membrane": fp & ~near_true & near_ves,
        "fp_far": fp & ~near_true & ~near_ves,
    }
    tp = int((pred & true).sum())
    denom = 2 * tp + int(fn.sum()) + int(fp.sum())
    out: dict[str, Any] = {
        "dice": 1.0 if denom == 0 else 2 * tp / denom,
        "n_truth": int(true.sum()),
        "n_pred": int(pred.sum()),
        "wedge_fraction": float(wedge.sum() / max(1, true.sum())),
        "categories": {},
    }
    for name, m in cats.items():
        k = int(m.sum())
        out["categories"][name] = {
            "voxels": k,
            "dice_without": 1.0 if denom - k == 0 else 2 * tp / (denom - k),
        }
    s_pred, s_true = surface(pred), surface(true)
    if s_pred.any() and s_true.any():
        to_true = ndimage.distance_transform_edt(~s_true, sampling=vs)[s_pred]
        to_pred = ndimage.distance_transform_edt(~s_pred, sampling=vs)[s_true]
        both = np.concatenate([to_true, to_pred]) / float(np.min(vs))
        wedge_s = wedge[s_true]
        out["surface"] = {
            "fraction_at_voxels": {
                "0": float(np.mean(both < 0.5)),
                "1": float(np.mean((both >= 0.5) & (both < 1.5))),
                "2-3": float(np.mean((both >= 1.5) & (both < 3.5))),
                ">3": float(np.mean(both >= 3.5)),
            },
            "median_nm": float(np.median(both) * np.min(vs)),
            "truth_to_pred_median_nm_wedge_facing": (
                float(np.median(to_pred[wedge_s])) if wedge_s.any() else None
            ),
            "truth_to_pred_median_nm_other": (
                float(np.median(to_pred[~wedge_s])) if (~wedge_s).any() else None
            ),
        }
    return out
