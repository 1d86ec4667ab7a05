"""Devices, threads and batched forward passes with test-time augmentation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from synapseg.errors import InputError
from synapseg.infer.preprocess import available_cores as available_cpus
from synapseg.model.unet import prepare_for_inference

# --------------------------------------------------------------------------- devices


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` to a torch device.

    Raises
    ------
    InputError
        CUDA was asked for but is not available, or the name is unknown.
    """
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                "--device",
                f"'{device}' was requested but CUDA is not available (no NVIDIA GPU or a CPU-only "
                "PyTorch)",
                "use --device cpu or --device auto, or install a CUDA build of PyTorch",
            )
        return torch.device(name)
    raise InputError("--device", f"unknown device '{device}'", "use auto, cpu or cuda")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Temporarily set torch's intra-op thread count (default: the available cores)."""
    old = torch.get_num_threads()
    n = n or available_cpus()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- forward passes


def tta_transforms(rot90: bool = False) -> list[tuple[tuple[int, ...], int]]:
    """Test-time augmentations as (flipped spatial dims, quarter turns about z).

    All 8 combinations of flipping z, y and x (they map a single-axis missing wedge onto
    itself); with ``rot90`` also each of them turned 90° about z (swaps the tilt axis: only
    for models trained with both orientations).
    """
    flips = [
        tuple(d for d, on in zip((2, 3, 4), bits) if on)
        for bits in np.ndindex(2, 2, 2)  # type: ignore[call-overload]
    ]
    return [(f, k) for k in ((0, 1) if rot90 else (0,)) for f in flips]


def forward_batch(
    net: nn.Module,
    batch: np.ndarray,
    device: torch.device,
    channels: Sequence[int] = (0,),
    transforms: Sequence[tuple[tuple[int, ...], int]] = (((), 0),),
) -> np.ndarray:
    """Sigmoid probabilities of ``channels`` for a (B, 1, z, y, x) batch, averaged over TTA.

    Returns float32 (B, len(channels), z, y, x).
    """
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
    amp = (
        torch.autocast(device_type="cuda", dtype=torch.float16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    total = None
    with torch.inference_mode(), amp:
        for dims, k in transforms:
            xt = torch.flip(x, dims) if dims else x
            if k:
                xt = torch.rot90(xt, k, dims=(3, 4))
            y = _channels(net(xt), channels).float()
            if k:
                y = torch.rot90(y, -k, dims=(3, 4))
            if dims:
                y = torch.flip(y, dims)
            y = y.sigmoid_()  # in place: y is this pass's own tensor (or a view of it)
            total = y if total is None else total.add_(y)
        assert total is not None
        if len(transforms) > 1:
            total /= len(transforms)
        return total.cpu().numpy()


def _channels(y: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """``y[:, channels]``: a view when they are consecutive (no copy of the logits)."""
    c = list(channels)
    if c == list(range(c[0], c[0] + len(c))):
        return y[:, c[0] : c[0] + len(c)]
    return y[:, c]


def prepare_net(net: nn.Module, device: torch.device) -> nn.Module:
    """Eval-mode, inference-optimised copy of ``net`` on ``device``."""
    return prepare_for_inference(net, device)
