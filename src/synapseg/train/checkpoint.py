"""Training checkpoints that resume exactly: model, optimiser, step and every RNG state."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synapseg.errors import InputError
from synapseg.io.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    rng: np.random.Generator,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (replacing an older one at ``path``).

    Holds the model and optimiser state dicts, the step, the numpy ``Generator`` state
    driving patch sampling and augmentation, and torch's and Python's RNG states.
    """
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": int(step),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "extra": extra or {},
    }
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint into ``model`` (and ``optimizer``, ``rng``, torch/Python RNG).

    Returns the checkpoint dict (``step``, ``extra`` ...).

    Raises
    ------
    InputError
        Missing or unreadable checkpoint, or one made for another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found", "train without --resume first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise InputError(path, f"unreadable checkpoint ({exc})", "delete it and retrain") from exc
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise InputError(
            path,
            "checkpoint does not fit this network (different architecture)",
            "resume with the same options it was made with",
        ) from exc
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if rng is not None:
        rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return state
