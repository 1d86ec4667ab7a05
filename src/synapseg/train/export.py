"""Turn a training run into a model folder (``model.pt`` + ``model.json`` with sha256)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synapseg.train.data import PreparedVolume

log = logging.getLogger(__name__)


def summarise_data(
    train: Sequence[PreparedVolume], val: Sequence[PreparedVolume], extra: dict | None = None
) -> dict[str, Any]:
    """Honest, JSON-serialisable summary of the training data for the model card."""

    def one(vols: Sequence[PreparedVolume]) -> dict[str, Any]:
        vs = [v.source_voxel_size_nm[2] for v in vols]
        return {
            "n_tomograms": len(vols),
            "n_vesicles": int(sum(v.n_vesicles for v in vols)),
            "source_voxel_size_nm_range": [float(min(vs)), float(max(vs))] if vs else None,
            "model_grid_voxels": int(sum(v.image.size for v in vols)),
            "names": [v.name for v in vols],
        }

    return {"train": one(train), "validation": one(val), **(extra or {})}


def export_model(
    model_dir: str | os.PathLike,
    net: torch.nn.Module,
    *,
    name: str,
    voxel_size_nm: float,
    patch_size: Sequence[int],
    training_data: dict[str, Any] | str,
    metrics: dict[str, Any],
    output_channels: Sequence[str] = ("vesicle",),
    normalisation: dict[str, Any] | None = None,
    description: str = "",
    tta_rot90: bool = True,
    overwrite: bool = False,
    postprocessing: dict[str, Any] | None = None,
) -> Path:
    """Save ``net`` with a model card via ``synapseg.model.registry.save_model``.

    The folder is usable directly as ``--model MODEL_DIR``. ``postprocessing`` goes into the
    card as calibrated for this network (``ModelCard.postprocessing``).
    """
    from synapseg.model.registry import DEFAULT_NORMALISATION, ModelCard, save_model

    net = net.cpu().eval()
    card = ModelCard(
        name=name,
        architecture=net.config.to_dict(),  # type: ignore[union-attr]
        voxel_size_nm=float(voxel_size_nm),
        normalisation=dict(normalisation or DEFAULT_NORMALISATION),
        patch_size=[int(p) for p in patch_size],
        output_channels=list(output_channels),
        training_data=training_data,
        metrics=_jsonable(metrics),
        tta_rot90=tta_rot90,
        trained=True,
        description=description,
        postprocessing=dict(postprocessing or {}),
    )
    return save_model(model_dir, net, card, overwrite=overwrite)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
