"""Named models: a weights file (``model.pt``, a state dict) plus a card (``model.json``).

A model folder holds ``model.json`` (the :class:`ModelCard`) and the weights file it names,
whose sha256 the card records. :func:`load_model` verifies the checksum before loading, so a
corrupt or swapped file gives a clear :class:`~synapseg.errors.ModelError` naming the file.

Models shipped with the package live in ``synapseg/model/weights/<name>/``; which one is the
default is a single entry in ``weights/default.json`` (``{"default": "<name>"}``). Anything
that :func:`resolve_model` accepts can be passed as ``--model``: ``"default"``, a shipped
model's name, a model folder (e.g. the output of ``synapseg train``) or a card file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from synapseg import __version__
from synapseg.errors import ModelError
from synapseg.io.atomic import atomic_path, check_writable
from synapseg.model.unet import UNet3D, UNetConfig, build_unet

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_POINTER = WEIGHTS_DIR / "default.json"
CARD_NAME = "model.json"
WEIGHTS_NAME = "model.pt"
DEFAULT_NORMALISATION = {
    "method": "percentile_zscore",
    "clip_percentiles": [0.5, 99.5],
    "statistics": "specimen",  # percentiles and moments from inside the specimen mask
}


@dataclass
class ModelCard:
    """Everything needed to use a model correctly, stored as ``model.json``.

    Attributes
    ----------
    name, version
        Identity of the model.
    architecture
        :meth:`UNetConfig.to_dict` of the network.
    voxel_size_nm
        Voxel size (nm, isotropic) the model was trained at; inputs are rescaled to it.
    normalisation
        How inputs are normalised, e.g. ``{"method": "percentile_zscore",
        "clip_percentiles": [0.5, 99.5]}``.
    patch_size
        Training patch edge lengths (z, y, x), in model voxels.
    output_channels
        Names of the output channels; channel 0 is ``"vesicle"`` (foreground incl. membrane).
    training_data
        Honest summary of the training data (text or dict).
    metrics
        Validation metrics measured after training.
    sha256
        Checksum of the weights file (filled in by :func:`save_model`).
    synapseg_version
        Version that wrote the card.
    tta_rot90
        The model was trained with both tilt-axis orientations (90° rotations about z), so
        test-time augmentation may use them.
    trained
        ``False`` for a randomly initialised stand-in (a warning is logged on loading).
    receptive_field, min_tile, halo
        Derived from the architecture (voxels), for information.
    weights_file
        File name of the weights, relative to the card.
    postprocessing
        Post-processing defaults calibrated for this network (:func:`card_post_params`),
        e.g. ``{"min_best_score": 0.8}``, the vesicle-free gate; empty: the pipeline's own.
    description, created
        Free text and ISO timestamp.
    extra
        Unknown card keys (from newer versions) and free-form additions.
    """

    name: str
    architecture: dict[str, Any]
    voxel_size_nm: float
    version: str = "0.1"
    normalisation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALISATION))
    patch_size: list[int] = field(default_factory=lambda: [64, 64, 64])
    output_channels: list[str] = field(default_factory=lambda: ["vesicle"])
    training_data: str | dict[str, Any] = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    synapseg_version: str = __version__
    tta_rot90: bool = False
    trained: bool = True
    receptive_field: int | None = None
    min_tile: int | None = None
    halo: int | None = None
    weights_file: str = WEIGHTS_NAME
    postprocessing: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> UNetConfig:
        """The architecture as a :class:`UNetConfig`."""
        return UNetConfig.from_dict(self.architecture)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from a dict; unknown keys are kept in ``extra``."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**kwargs, extra=extra)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    model_dir: str | os.PathLike,
    net: torch.nn.Module,
    card: ModelCard,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model_dir/model.pt`` (state dict) and ``model_dir/model.json`` (card with sha256).

    The card's ``architecture`` is taken from ``net.config`` when the net has one; derived
    fields (sha256, receptive field, halo, min tile, version, timestamp) are filled in. Both
    files are written atomically. ``card`` is updated in place.

    Returns
    -------
    Path
        ``model_dir``, which :func:`load_model` accepts directly.

    Raises
    ------
    OutputExistsError
        The files exist and ``overwrite`` is false.
    """
    model_dir = Path(model_dir)
    weights = model_dir / card.weights_file
    card_path = model_dir / CARD_NAME
    check_writable(weights, overwrite)
    check_writable(card_path, overwrite)
    config = getattr(net, "config", None)
    if isinstance(config, UNetConfig):
        card.architecture = config.to_dict()
    cfg = UNetConfig.from_dict(card.architecture)
    card.receptive_field, card.min_tile, card.halo = cfg.receptive_field, cfg.min_tile, cfg.halo
    if len(card.output_channels) != cfg.out_channels:
        raise ValueError(
            f"card lists {len(card.output_channels)} output channels but the network has "
            f"{cfg.out_channels}"
        )
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_path(weights, overwrite) as tmp:
        torch.save(state, tmp)
        card.sha256 = sha256_file(tmp)
    card.synapseg_version = __version__
    card.created = card.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with atomic_path(card_path, overwrite) as tmp:
        tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    log.info("saved model %r to %s", card.name, model_dir)
    return model_dir


def available_models() -> list[str]:
    """Names of the models shipped in the package."""
    return sorted(p.parent.name for p in WEIGHTS_DIR.glob(f"*/{CARD_NAME}"))


def default_model_name() -> str:
    """The name ``"default"`` stands for, read from ``weights/default.json``."""
    try:
        return str(json.loads(DEFAULT_POINTER.read_text(encoding="utf-8"))["default"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            DEFAULT_POINTER,
            f"cannot read which model is the default ({exc})",
            "reinstall synapseg or pass --model PATH",
        ) from exc


def default_model_path() -> Path:
    """Card path of the default model."""
    return resolve_model("default")


def resolve_model(name_or_path: str | os.PathLike = "default") -> Path:
    """Find a model's card file.

    Parameters
    ----------
    name_or_path
        ``"default"``, the name of a shipped model, a model folder holding ``model.json``, or
        the path of a card file.

    Raises
    ------
    ModelError
        Nothing matches; the message lists the shipped models.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        card = path / CARD_NAME
        if not card.is_file():
            raise ModelError(
                path, f"folder holds no {CARD_NAME}", "give a model folder written by synapseg"
            )
        return card
    if path.is_file():
        return path
    name = default_model_name() if text == "default" else text
    card = WEIGHTS_DIR / name / CARD_NAME
    if card.is_file():
        return card
    looks_like_path = os.sep in text or text.endswith((".json", ".pt"))
    raise ModelError(
        text,
        "no such model file or folder" if looks_like_path else "unknown model name",
        f"use a model folder or one of: default, {', '.join(available_models()) or '(none)'}",
    )


def read_card(card_path: str | os.PathLike) -> ModelCard:
    """Read and validate a ``model.json`` card.

    Raises
    ------
    ModelError
        Unreadable JSON, missing fields or an unknown architecture.
    """
    card_path = Path(card_path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
        card = ModelCard.from_dict(data)
        card.config  # noqa: B018 - validates the architecture
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ModelError(
            card_path,
            f"model card is corrupt or incomplete ({exc})",
            "restore or re-save the model",
        ) from exc
    if not card.voxel_size_nm or float(card.voxel_size_nm) <= 0:
        raise ModelError(card_path, "model card has no positive voxel_size_nm", "fix the card")
    return card


#: Post-processing parameters a card may calibrate (``ModelCard.postprocessing``).
CARD_POST_PARAMS = ("min_best_score", "threshold", "min_separation_nm")


def card_post_params(card: ModelCard | None) -> dict[str, Any]:
    """The :class:`~synapseg.post.vesicles.PostParams` values this model's card calibrates.

    Only the keys in :data:`CARD_POST_PARAMS` are taken (``min_best_score``: the
    vesicle-free gate, written by ``scripts/train_default.py gate``; ``threshold`` and
    ``min_separation_nm``: the instance step, written by ``train_default.py calibrate``);
    a card without them (e.g. ``sim-unet-v1``) gives ``{}`` and the pipeline keeps its
    defaults (gate 0.9, automatic threshold, seed separation = ``min_radius_nm``). A
    threshold given to ``segment`` wins over the card's.
    """
    post = getattr(card, "postprocessing", None) or {}
    return {k: post[k] for k in CARD_POST_PARAMS if k in post}


CONFIDENCE_NAME = "confidence_model.json"
"""A model folder may hold the vesicle-confidence model calibrated on this network's outputs."""


def confidence_model_path(name_or_path: str | os.PathLike = "default") -> Path | None:
    """``confidence_model.json`` beside the model's card (written by
    ``scripts/train_confidence.py --model NAME_OR_DIR``), or ``None`` when the folder has
    none: the pipeline then uses the one packaged with ``synapseg.post``."""
    path = resolve_model(name_or_path).parent / CONFIDENCE_NAME
    return path if path.is_file() else None


def load_model(
    name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu"
) -> tuple[UNet3D, ModelCard]:
    """Load a model after verifying its weights against the card's sha256.

    Parameters
    ----------
    name_or_path
        Anything :func:`resolve_model` accepts.
    device
        Torch device for the network.

    Returns
    -------
    (net, card)
        The network in eval mode on ``device``, and its card.

    Raises
    ------
    ModelError
        Missing/corrupt card or weights, checksum mismatch, or weights that do not fit the
        card's architecture.
    """
    card_path = resolve_model(name_or_path)
    card = read_card(card_path)
    weights = card_path.parent / card.weights_file
    if not weights.is_file():
        raise ModelError(weights, "weights file is missing", "restore the model folder")
    digest = sha256_file(weights)
    if not card.sha256:
        raise ModelError(card_path, "model card has no sha256", "re-save the model with synapseg")
    if digest != card.sha256:
        raise ModelError(
            weights,
            f"weights are corrupt or do not belong to this card (sha256 {digest[:12]}… "
            f"!= {card.sha256[:12]}… in {card_path.name})",
            "restore the original file or re-save the model",
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net = build_unet(card.config)
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # torch raises many types for bad or mismatched files
        raise ModelError(
            weights,
            f"weights do not load into the card's architecture ({exc})".replace("\n", " "),
            "check that model.json and model.pt belong together",
        ) from exc
    if not card.trained:
        log.warning(
            "model %r is randomly initialised (untrained): its predictions are meaningless; "
            "use it only for testing",
            card.name,
        )
    return net.eval().to(device), card


def create_random_model(
    model_dir: str | os.PathLike,
    name: str = "test-random",
    config: UNetConfig | None = None,
    voxel_size_nm: float = 1.8,
    seed: int = 0,
    *,
    overwrite: bool = False,
) -> Path:
    """Save a randomly initialised (untrained) model: a stand-in for tests and benchmarks.

    The card says ``trained: false``, so loading it logs a warning.
    """
    config = config or UNetConfig(stem=2, base_channels=4, depth=2)
    net = build_unet(config, seed=seed)
    card = ModelCard(
        name=name,
        architecture=config.to_dict(),
        voxel_size_nm=voxel_size_nm,
        output_channels=["vesicle"] + [f"channel{i}" for i in range(1, config.out_channels)],
        training_data=f"none: randomly initialised with torch seed {seed}",
        trained=False,
        description="Untrained stand-in model for tests; its predictions are meaningless.",
        created="",
    )
    return save_model(model_dir, net, card, overwrite=overwrite)
