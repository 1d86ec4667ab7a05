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
    out = [
        np.clip(rescale_volume(c.astype(np.float32), source_voxel_nm, model_voxel_nm), 0, 1)
        for c in channels
    ]
    return np.stack(out).astype(np.float32)


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
