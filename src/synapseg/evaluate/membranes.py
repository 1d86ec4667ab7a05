"""Membrane segmentation scores: voxel Dice and symmetric surface distance (nm).

The truth is the simulator's ``membrane_labels`` (every class except 2, the synaptic
vesicles: plasma, postsynaptic and organelle membranes) or any boolean mask; the prediction
a probability map (uint8 0-255 as ``segment`` writes ``<name>_membrane_probabilities.mrc``,
or float 0-1) thresholded at 0.5, or a boolean mask. ``segment``'s membrane *segmentation*,
the class volume ``<name>_membranes.mrc`` (the map cleaned by
:mod:`synapseg.context.membrane_mask`, then classified), is scored as the mask of its
membrane classes (every nonzero class but 2, the vesicles' shells); when it lies beside the
prediction it is the score ``evaluate`` reports, with the raw map's score kept under
``raw_map`` so older numbers stay comparable.

Surface distance: the surface of a mask is its voxels with a 6-neighbour outside it. For
every surface voxel of the prediction the distance (nm, anisotropic voxels respected) to
the nearest surface voxel of the truth, and vice versa; the symmetric statistics pool both
sets (as MemBrain-seg and the Medical Segmentation Decathlon do). Distances are between
voxel centres, so they come in steps of the voxel size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "find_membrane_inputs",
    "membrane_mask",
    "score_membranes",
    "segmentation_mask",
    "surface",
    "surface_distances_nm",
]

TRUTH_NAME = "membrane_labels.mrc"
PRED_SUFFIX = "_membrane_probabilities.mrc"
SEGMENTATION_SUFFIX = "_membranes.mrc"
VESICLE_CLASS = 2  # synaptic-vesicle shells in segment's class volume, as in the truth


def segmentation_mask(classes: np.ndarray) -> np.ndarray:
    """Membrane mask of ``segment``'s class volume (``<name>_membranes.mrc``): every nonzero
    class except 2 (the vesicles' bilayer shells, not part of the truth either)."""
    a = np.asarray(classes)
    return (a != 0) & (a != VESICLE_CLASS)


def membrane_mask(prediction: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask of a prediction: a bool array as is, uint8 maps ``>= threshold × 255``
    (rounded), float maps ``>= threshold``."""
    a = np.asarray(prediction)
    if a.dtype == bool:
        return a
    if a.dtype == np.uint8:
        return a >= int(round(threshold * 255))
    return a >= threshold


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 6-neighbour outside it (volume faces count as
    inside, so a mask cut by the volume edge has no surface there)."""
    mask = np.asarray(mask, bool)
    inner = ndimage.binary_erosion(mask, border_value=1)
    return mask & ~inner


def surface_distances_nm(
    a: np.ndarray, b: np.ndarray, voxel_size_nm: float | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (nm) from each surface voxel of ``a`` to the surface of ``b``, and back.

    Empty arrays when either surface is empty.
    """
    vs = voxel_size_zyx(voxel_size_nm)
    sa, sb = surface(a), surface(b)
    if not sa.any() or not sb.any():
        return np.zeros(0), np.zeros(0)
    # Work inside the bounding box of both surfaces (plus nothing: EDT needs no margin, the
    # nearest surface voxel of the other mask lies inside the union's box).
    idx = np.argwhere(sa | sb)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = tuple(slice(int(x0), int(x1)) for x0, x1 in zip(lo, hi))
    sa, sb = sa[box], sb[box]
    to_b = ndimage.distance_transform_edt(~sb, sampling=vs)
    to_a = ndimage.distance_transform_edt(~sa, sampling=vs)
    return to_b[sa].astype(np.float64), to_a[sb].astype(np.float64)


def score_membranes(
    prediction: np.ndarray,
    truth: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    truth_is_labels: bool = True,
    threshold: float = 0.5,
    region: np.ndarray | None = None,
) -> dict[str, Any]:
    """Dice, precision, recall and symmetric surface distance of a membrane prediction.

    Parameters
    ----------
    prediction
        Probability map (uint8 0-255 or float 0-1) or boolean mask, (z, y, x).
    truth
        Membrane class labels (``truth_is_labels``: every nonzero class except 2 counts) or
        a boolean mask, same shape.
    voxel_size_nm
        Voxel size (scalar or z, y, x).
    threshold
        Probability threshold of the prediction.
    region
        Optional boolean mask: only voxels inside it are scored.

    Returns
    -------
    dict
        ``dice``, ``precision``, ``recall``, ``n_pred_voxels``, ``n_truth_voxels``,
        ``surface_distance_nm`` (``median``, ``p95``, ``mean`` of the pooled symmetric
        distances, ``pred_to_truth_median``, ``truth_to_pred_median``; ``None`` when a
        mask is empty).

    Raises
    ------
    InputError
        Shapes differ.
    """
    from synapseg.train.membrane_targets import non_vesicle_membrane

    pred = membrane_mask(prediction, threshold)
    true = non_vesicle_membrane(truth) if truth_is_labels else np.asarray(truth, bool)
    if pred.shape != true.shape:
        raise InputError(
            None,
            f"membrane prediction shape {pred.shape} differs from the truth's {true.shape}",
            "give both on the same grid (the tomogram's)",
        )
    if region is not None:
        region = np.asarray(region, bool)
        pred, true = pred & region, true & region
    n_pred, n_true = int(pred.sum()), int(true.sum())
    inter = int((pred & true).sum())
    d_pt, d_tp = surface_distances_nm(pred, true, voxel_size_nm)
    both = np.concatenate([d_pt, d_tp])

    def stat(values: np.ndarray, fn: Any) -> float | None:
        return float(fn(values)) if len(values) else None

    return {
        "dice": 1.0 if n_pred + n_true == 0 else 2 * inter / (n_pred + n_true),
        "precision": None if n_pred == 0 else inter / n_pred,
        "recall": None if n_true == 0 else inter / n_true,
        "n_pred_voxels": n_pred,
        "n_truth_voxels": n_true,
        "threshold": threshold,
        "voxel_size_nm": [float(v) for v in voxel_size_zyx(voxel_size_nm)],
        "surface_distance_nm": {
            "median": stat(both, np.median),
            "p95": stat(both, lambda v: np.percentile(v, 95)),
            "mean": stat(both, np.mean),
            "pred_to_truth_median": stat(d_pt, np.median),
            "truth_to_pred_median": stat(d_tp, np.median),
        },
    }


def find_membrane_inputs(
    gt_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    prediction: str | os.PathLike | None = None,
) -> tuple[Path, Path] | None:
    """The membrane truth and prediction files to score, given or found next to the
    vesicle inputs: ``membrane_labels.mrc`` beside the ground truth (simulate's layout) and
    ``<stem>_membrane_probabilities.mrc`` beside the prediction (segment's). ``None`` when
    neither was given and they are not both there.

    Raises
    ------
    InputError
        One was given but the other is neither given nor found, or a given file is missing.
    """
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    given = truth is not None or prediction is not None
    if truth is None:
        folder = gt_path if gt_path.is_dir() else gt_path.parent
        truth = folder / TRUTH_NAME
    if prediction is None:
        folder = pred_path if pred_path.is_dir() else pred_path.parent
        stem = pred_path.name.split(".")[0]
        for suffix in ("_vesicles", "_pyto_labels"):
            stem = stem.removesuffix(suffix)
        prediction = folder / f"{stem}{PRED_SUFFIX}"
    truth, prediction = Path(truth), Path(prediction)
    if truth.is_file() and prediction.is_file():
        return truth, prediction
    if not given:
        return None
    missing = truth if not truth.is_file() else prediction
    raise InputError(
        missing,
        "membrane file not found",
        "give --membranes-truth (simulate's membrane_labels.mrc) and --membranes-pred "
        "(segment's <name>_membrane_probabilities.mrc)",
    )


def score_membrane_files(truth: Path, prediction: Path) -> dict[str, Any]:
    """:func:`score_membranes` on two volume files on the same grid (voxel size from the
    prediction's header, else the truth's). A prediction named ``*_membranes.mrc`` is
    ``segment``'s class volume (:func:`segmentation_mask`); any other is a probability map."""
    from synapseg.io.volume import read_volume

    pred = read_volume(prediction)
    true = read_volume(truth)
    data = np.asarray(pred.data)
    is_segmentation = Path(prediction).name.endswith(SEGMENTATION_SUFFIX)
    result = score_membranes(
        segmentation_mask(data) if is_segmentation else data,
        np.asarray(true.data),
        pred.voxel_size_nm or true.voxel_size_nm,
    )
    result["scored"] = "segmentation" if is_segmentation else "probabilities at the threshold"
    result["inputs"] = {"truth": str(truth), "prediction": str(prediction)}
    return result


def segmentation_beside(pred_path: str | os.PathLike) -> Path:
    """``<stem>_membranes.mrc`` beside a vesicle prediction (segment's layout)."""
    pred_path = Path(pred_path)
    folder = pred_path if pred_path.is_dir() else pred_path.parent
    stem = pred_path.name.split(".")[0]
    for suffix in ("_vesicles", "_pyto_labels"):
        stem = stem.removesuffix(suffix)
    return folder / f"{stem}{SEGMENTATION_SUFFIX}"


TRUTH_HELP = (
    "Membrane ground truth (simulate's membrane_labels.mrc; every class but 2 = vesicles "
    "counts); found beside --gt when not given."
)
PRED_HELP = (
    "Membrane prediction (segment's <stem>_membrane_probabilities.mrc, thresholded at 0.5); "
    "found beside --pred when not given."
)


def check_membrane_options(batch: bool, truth: Path | None, prediction: Path | None) -> None:
    """Refuse explicit membrane files in batch mode (they are found beside each pair)."""
    if batch and (truth is not None or prediction is not None):
        raise InputError(
            "--membranes-truth" if truth is not None else "--membranes-pred",
            "is for one tomogram; in batch mode the membrane files are found beside each pair",
            "drop the option: membrane_labels.mrc and <stem>_membrane_probabilities.mrc are "
            "found automatically",
        )


def membrane_metrics(
    gt_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    prediction: str | os.PathLike | None = None,
) -> dict[str, Any] | None:
    """Scores of the membrane files given or found beside the vesicle inputs
    (:func:`find_membrane_inputs`), or ``None`` when there are none.

    When no prediction file is given and ``segment``'s segmentation
    (``<stem>_membranes.mrc``) lies beside the probabilities, the segmentation is scored and
    the probability map's score (at 0.5) is kept under ``raw_map``.
    """
    found = find_membrane_inputs(gt_path, pred_path, truth, prediction)
    if found is None:
        return None
    result = score_membrane_files(*found)
    seg = segmentation_beside(pred_path)
    if prediction is None and seg.is_file():
        raw = result
        result = score_membrane_files(found[0], seg)
        result["raw_map"] = raw
    return result


def membrane_summary(metrics: dict[str, Any]) -> str:
    """One line for the terminal: Dice and surface distances."""

    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    sd = metrics["surface_distance_nm"]
    name = Path(metrics.get("inputs", {}).get("prediction", "membranes")).name
    line = (
        f"membranes ({name}): Dice {metrics['dice']:.3f}, surface distance median "
        f"{fmt(sd['median'])} nm, 95th percentile {fmt(sd['p95'])} nm"
    )
    raw = metrics.get("raw_map")
    if raw is not None:
        line += (
            f" (raw map at 0.5: Dice {raw['dice']:.3f}, median "
            f"{fmt(raw['surface_distance_nm']['median'])} nm)"
        )
    return line
