"""Membrane training targets: soft (area-fraction) masks on the membrane model's grid.

The simulator's ``membrane_labels`` mark every voxel within half a bilayer of a membrane
midline with its class (1 presynaptic plasma membrane, 2 vesicle membrane, 3 and above other
membranes: postsynaptic membrane, mitochondria, endosomes, ER, dense-core and coated
vesicles). The membrane network learns two channels:

0. ``membrane``: every membrane that is **not** a synaptic-vesicle membrane (class ≠ 0, 2);
1. ``vesicle_membrane``: class 2 (an auxiliary channel: it makes the network tell vesicle
   membranes apart from the others, and costs one output map).

Each class mask is resampled to the (coarser) model grid with the very resampling that the
image goes through (:func:`synapseg.infer.preprocess.rescale_volume`: anti-aliasing
Gaussian, then linear interpolation), so the target is the blurred fraction of membrane in
each model voxel, in [0, 1]. Binary cross-entropy is minimised by predicting that fraction,
so the prediction interpolated back to a finer grid crosses 0.5 where the membrane surfaces
are: the coarse network keeps sub-voxel boundaries.

Signed-distance targets (:func:`membrane_sd_targets`, recipe ``v4``): channel 0 is instead
``sigmoid(-d / tau_nm)``, where ``d`` is the signed distance in nm from each voxel to the
surface of the physical bilayer (negative inside), computed on the label's own (fine) grid,
clipped to ``±clip_nm`` and resampled like the image. The network's logit then regresses
``-d / tau_nm`` (:class:`synapseg.train.membrane_trainer.MembraneTrainer`'s distance term),
so ``sigmoid(logit)`` is still a map whose 0.5 level is the bilayer surface: the stage reads
it as any membrane map, and interpolating it back to the tomogram grid places the surfaces
between model voxels.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synapseg.infer.preprocess import rescale_volume

log = logging.getLogger(__name__)

VESICLE_MEMBRANE_CLASS = 2
MEMBRANE_CHANNELS = ("membrane", "vesicle_membrane")


def non_vesicle_membrane(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of every membrane class except synaptic vesicles (class ≠ 0, 2)."""
    labels = np.asarray(labels)
    return (labels != 0) & (labels != VESICLE_MEMBRANE_CLASS)


def membrane_targets(
    labels: np.ndarray,
    source_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """Soft targets (2, z, y, x) float32 in [0, 1] on the model grid.

    Parameters
    ----------
    labels
        Membrane classes on the source grid (the simulator's ``membrane_labels``).
    source_voxel_nm, model_voxel_nm
        Voxel sizes of the labels and of the model grid.

    Returns
    -------
    numpy.ndarray
        Channel 0: non-vesicle membranes; channel 1: vesicle membranes (see module
        docstring), each resampled exactly as the image is.
    """
    labels = np.asarray(labels)
    channels = (non_vesicle_membrane(labels), labels == VESICLE_MEMBRANE_CLASS)
    out = [_area_fraction(c, source_voxel_nm, model_voxel_nm) for c in channels]
    return np.stack(out).astype(np.float32)


def _area_fraction(
    mask: np.ndarray,
    source_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
) -> np.ndarray:
    """A mask's fraction of each model voxel, resampled exactly as the image is, in [0, 1]."""
    return np.clip(rescale_volume(mask.astype(np.float32), source_voxel_nm, model_voxel_nm), 0, 1)


def signed_distance_nm(mask: np.ndarray, voxel_nm: float | Sequence[float]) -> np.ndarray:
    """Signed distance (float32, nm) from each voxel to the surface of ``mask``.

    Negative inside the mask, positive outside; the surface lies half a voxel beyond the
    outermost voxel centres (a one-voxel-thick sheet has ``-0.5`` voxel at its centre). An
    empty (or full) mask gives ``+inf`` (``-inf``) everywhere.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    vs = np.broadcast_to(np.asarray(voxel_nm, np.float64), (3,))
    half = 0.5 * float(vs.mean())
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    if mask.all():
        return np.full(mask.shape, -np.inf, np.float32)
    out = ndimage.distance_transform_edt(~mask, sampling=vs).astype(np.float32)
    inside = ndimage.distance_transform_edt(mask, sampling=vs).astype(np.float32)
    out[mask] = -inside[mask]
    out[~mask] -= half
    out[mask] += half
    return out


def membrane_sd_targets(
    labels: np.ndarray,
    source_voxel_nm: float | Sequence[float],
    model_voxel_nm: float | Sequence[float],
    tau_nm: float = 1.0,
    clip_nm: float = 6.0,
) -> np.ndarray:
    """Soft targets (2, z, y, x) float32 whose channel 0 encodes the signed distance.

    Parameters
    ----------
    labels
        Membrane classes on the source grid (the simulator's ``membrane_labels``).
    source_voxel_nm, model_voxel_nm
        Voxel sizes of the labels and of the model grid.
    tau_nm
        Scale of the logistic: channel 0 is ``sigmoid(-d / tau_nm)``, ``d`` the signed
        distance (nm) to the non-vesicle bilayers' surface, so the network's logit is
        ``-d / tau_nm``.
    clip_nm
        ``d`` is clipped to ``[-clip_nm, clip_nm]`` before resampling (the regression's
        range; the target stays in ``[sigmoid(-clip/tau), sigmoid(clip/tau)]``).

    Returns
    -------
    numpy.ndarray
        Channel 0 as above; channel 1 the vesicle-membrane area fraction of
        :func:`membrane_targets`.
    """
    labels = np.asarray(labels)
    d = np.clip(
        signed_distance_nm(non_vesicle_membrane(labels), source_voxel_nm), -clip_nm, clip_nm
    )
    d_model = rescale_volume(d, source_voxel_nm, model_voxel_nm)
    sd = 1.0 / (1.0 + np.exp(np.clip(d_model, -clip_nm, clip_nm) / tau_nm))
    ves = _area_fraction(labels == VESICLE_MEMBRANE_CLASS, source_voxel_nm, model_voxel_nm)
    return np.stack([sd, ves]).astype(np.float32)


@dataclass
class MembraneItem:
    """One simulated tomogram folder with membrane ground truth."""

    tomogram: Path
    labels: Path

    @property
    def name(self) -> str:
        return self.tomogram.parent.name


def membrane_items(root: str | os.PathLike) -> list[MembraneItem]:
    """Subfolders of ``root`` holding ``tomogram.mrc`` and ``membrane_labels.mrc``."""
    root = Path(root)
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    items = [
        MembraneItem(f / "tomogram.mrc", f / "membrane_labels.mrc")
        for f in folders
        if (f / "tomogram.mrc").is_file() and (f / "membrane_labels.mrc").is_file()
    ]
    return items
