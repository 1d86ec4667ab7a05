"""One call from data config to a usable model folder (what ``synapseg train`` runs)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synapseg.errors import InputError, OutputExistsError
from synapseg.train.data import DataItem, load_data_config, prepare_item, split_items
from synapseg.train.export import export_model, summarise_data
from synapseg.train.trainer import TrainConfig, Trainer, steps_per_epoch

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
DEFAULT_VOXEL_SIZE_NM = 1.8


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    steps: int
    best: dict[str, Any]
    last_logs: dict[str, Any]


def base_network(from_model: str | None, unet: dict | None, seed: int):
    """The network to train: a fresh U-Net, or a copy of a model to fine-tune.

    Returns ``(net, card_or_None)``.
    """
    from synapseg.model.unet import UNetConfig, build_unet

    if from_model is None:
        return build_unet(UNetConfig.from_dict(unet or {}), seed=seed), None
    from synapseg.model.registry import load_model

    net, card = load_model(from_model, device="cpu")
    return net, card


def train_model(
    data: str | os.PathLike | list[DataItem],
    model_dir: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    from_model: str | None = None,
    unet: dict | None = None,
    voxel_size_nm: float | None = None,
    epochs: float | None = None,
    val_fraction: float = 0.2,
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    name: str | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    extra_summary: dict | None = None,
    trainer_cls: Callable[..., Trainer] | None = None,
) -> TrainResult:
    """Train (or fine-tune) a model and write ``model_dir/model.pt`` + ``model.json``.

    Parameters
    ----------
    data
        Data folder or YAML config (see :func:`synapseg.train.data.load_data_config`), or
        a list of :class:`DataItem`.
    model_dir
        Output model folder; checkpoints go to ``model_dir/checkpoints/``.
    config
        Hyper-parameters (``steps`` is overridden by ``epochs`` when given).
    from_model
        ``"default"``, a model name or folder to fine-tune; ``None`` trains from scratch.
    unet
        ``UNetConfig`` dict for a fresh network (ignored when fine-tuning).
    voxel_size_nm
        Model voxel size for a fresh network (fine-tuning keeps the base model's).
    resume
        Continue from ``model_dir/checkpoints/checkpoint.pt`` exactly.
    overwrite
        Replace an existing model in ``model_dir``.
    trainer_cls
        Builds the trainer (default :class:`Trainer`; ``synapseg adapt`` passes one that adds
        a flip-consistency term).

    Raises
    ------
    InputError
        Bad data (see the data and targets modules), existing output, device problems.
    """
    config = config or TrainConfig()
    model_dir = Path(model_dir)
    work = model_dir / CHECKPOINT_DIR
    card_path = model_dir / "model.json"
    if card_path.exists() and not (overwrite or resume):
        raise OutputExistsError(
            model_dir, "already holds a model", "pass --overwrite, --resume or another folder"
        )
    if resume and not (work / "checkpoint.pt").exists():
        raise InputError(
            work / "checkpoint.pt", "no checkpoint to resume", "train without --resume"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device", "CUDA is not available on this machine", "use --device cpu")

    net, base_card = base_network(from_model, unet, config.seed)
    if base_card is not None:
        vs = float(base_card.voxel_size_nm)
        if voxel_size_nm is not None and abs(voxel_size_nm - vs) > 1e-6:
            log.warning("fine-tuning keeps the base model's voxel size %.3g nm", vs)
    else:
        vs = float(voxel_size_nm or DEFAULT_VOXEL_SIZE_NM)
    vs3 = (vs, vs, vs)

    items = data if isinstance(data, list) else load_data_config(data)
    train_items, val_items = split_items(items, val_fraction, config.seed)
    # fine-tuning normalises exactly as the base model's card says (inference does too)
    norm = None if base_card is None else base_card.normalisation
    train_vols = [
        prepare_item(it, vs3, boundary=config.boundary, normalisation=norm) for it in train_items
    ]
    val_vols = [
        prepare_item(it, vs3, boundary=config.boundary, normalisation=norm) for it in val_items
    ]
    if not any(v.n_vesicles for v in train_vols):
        raise InputError(
            str(data) if not isinstance(data, list) else None,
            "the training tomograms hold no annotated vesicles",
            "add annotations",
        )
    if epochs is not None:
        per = steps_per_epoch(train_vols, config.patch_size, config.batch_size)
        config.steps = max(1, int(round(epochs * per)))
    if config.boundary:
        from synapseg.model.unet import UNetConfig, build_unet

        if net.config.out_channels != 2:
            if base_card is not None:
                raise InputError(
                    "--boundary", "the base model has no boundary channel", "train from scratch"
                )
            net = build_unet(
                UNetConfig.from_dict({**net.config.to_dict(), "out_channels": 2}), seed=config.seed
            )

    if not resume:  # a fresh run must not inherit an older run's best weights or history
        for stale in ("checkpoint.pt", "best.pt", "history.jsonl"):
            (work / stale).unlink(missing_ok=True)
    trainer = (trainer_cls or Trainer)(net, config, train_vols, val_vols, vs3, work, device=device)
    if resume:
        trainer.resume()
    logs = trainer.run(callback=callback)
    best = trainer.load_best()
    summary = summarise_data(train_vols, val_vols, extra_summary)
    summary["steps"] = trainer.step
    summary["train_config"] = config.to_dict()
    if base_card is not None:
        summary["fine_tuned_from"] = {"name": base_card.name, "sha256": base_card.sha256}
    channels = ["vesicle", "boundary"] if config.boundary else ["vesicle"]
    export_model(
        model_dir,
        trainer.net,
        name=name or model_dir.name,
        voxel_size_nm=vs,
        patch_size=config.patch_size,
        training_data=summary,
        metrics={"validation": best, "validation_method": _method_note(val_vols)},
        output_channels=channels,
        normalisation=None if base_card is None else base_card.normalisation,
        tta_rot90=config.augment.rot90_z,
        overwrite=True,
        description=(
            f"Trained by synapseg train for {trainer.step} steps"
            + (f", fine-tuned from {base_card.name}" if base_card is not None else "")
        ),
    )
    return TrainResult(model_dir=model_dir, steps=trainer.step, best=best, last_logs=logs)


def _method_note(val_vols) -> str:
    if not val_vols:
        return "no validation data: the last weights were kept"
    return (
        "on the model grid, held-out tomograms; F1 = centroids of connected components of "
        "p > 0.5 matched to annotated centers (distance < 0.5 x radius); Dice on p > 0.5"
    )
