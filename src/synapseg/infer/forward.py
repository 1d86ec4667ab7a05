"""Devices, threads, batched forward passes with test-time augmentation, and the tile loop
(:func:`run_tiles`) that blends them into a model-grid accumulator."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from synapseg.errors import InputError
from synapseg.infer.preprocess import available_cores as available_cpus
from synapseg.infer.tiling import Tile, TilePlan, batched, iter_tiles
from synapseg.model.fast import prepare_for_inference

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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Sigmoid probabilities of ``channels`` for a (B, 1, z, y, x) batch, averaged over TTA.

    Returns float32 (B, len(channels), z, y, x): ``out`` when given (filled in place, so
    that no tensor of this pass outlives it), else a new array.
    """
    # non_blocking: a DMA copy from run_tiles' page-locked buffer on CUDA (a no-op on CPU);
    # the copy of the result back to the host below waits for it.
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(
        device, non_blocking=True
    )
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
        if out is None:
            return total.cpu().numpy()
        torch.from_numpy(out).copy_(total)
        return out


def _channels(y: torch.Tensor, channels: Sequence[int]) -> torch.Tensor:
    """``y[:, channels]``: a view when they are consecutive (no copy of the logits)."""
    c = list(channels)
    if c == list(range(c[0], c[0] + len(c))):
        return y[:, c[0] : c[0] + len(c)]
    return y[:, c]


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prepare_net(net: nn.Module, device: torch.device) -> nn.Module:
    """Eval-mode, inference-optimised copy of ``net`` on ``device``.

    Remembered for the same ``net`` and device while its weights stay as they are (the
    polarity decision and the prediction of one run share it: ≈ 0.3 s each). The weights
    are fingerprinted by value, not by tensor version counters, which in-place updates
    through ``.data`` (e.g. a mean teacher's average) do not advance.
    """
    key = (str(torch.device(device)), _weights_fingerprint(net))
    hit = _PREPARED.get(net)
    if hit is not None and hit[0] == key:
        return hit[1]
    fast = prepare_for_inference(net, device)
    _PREPARED[net] = (key, fast)
    return fast


def _weights_fingerprint(net: nn.Module) -> tuple:
    tensors = [*net.parameters(), *net.buffers()]
    with torch.no_grad():
        floats = [t.detach().double() for t in tensors if t.is_floating_point()]
        sums = [t.sum() for t in floats] + [t.abs().sum() for t in floats]
        values = torch.stack(sums).tolist() if sums else []
    return (tuple(id(t) for t in tensors), tuple(values))


def weight_tile(
    probs: np.ndarray, plan: TilePlan, tile: Tile, dst: tuple[slice, ...]
) -> np.ndarray:
    """The real part (``dst``) of one tile's (C, z, y, x) probabilities times its blending
    window, in place (a view of ``probs``).

    The window is applied as its three 1D profiles, one in-place multiplication each (torch,
    so it uses every thread), instead of building a float64 window volume per tile: the
    same weights to float32 rounding. The single-process and block-wise paths both call this,
    so their maps stay voxel-identical.
    """
    part = probs[(slice(None), *dst)]
    view = torch.from_numpy(part)
    for axis, profile in enumerate(plan.profiles(tile)):
        shape = [1, 1, 1, 1]
        shape[axis + 1] = -1
        view.mul_(torch.from_numpy(np.ascontiguousarray(profile[dst[axis]])).view(shape))
    return part


def host_buffer(shape: tuple[int, ...], device: torch.device) -> np.ndarray:
    """A zeroed float32 host array for tiles going to or coming from ``device``.

    Page-locked (pinned) when the device is a GPU, so that uploads and downloads are DMA
    copies that need no staging copy; plain memory on the CPU.
    """
    if device.type == "cuda":
        return torch.zeros(shape, dtype=torch.float32, pin_memory=True).numpy()
    return np.zeros(shape, dtype=np.float32)


def run_tiles(
    read,
    acc: np.ndarray,
    plan: TilePlan,
    net: nn.Module,
    device: torch.device,
    channels: Sequence[int],
    transforms: Sequence[tuple[tuple[int, ...], int]],
    batch_size: int,
    progress=None,
) -> None:
    """Run every tile of ``plan``; blend weighted probabilities into ``acc`` (C, z, y, x).

    ``read(src, out)`` writes the network input of the model-grid region ``src`` into the
    (z, y, x) array ``out``.
    """
    # One input and one output buffer for every tile: no tile's arrays outlive its pass, and
    # no 128 MB blocks are mapped and zeroed again per tile.
    batch_size = max(1, min(batch_size, plan.n_tiles))
    batch = host_buffer((batch_size, 1, *plan.tile_shape), device)
    probs = host_buffer((batch_size, len(channels), *plan.tile_shape), device)
    full = tuple(slice(0, t) for t in plan.tile_shape)
    for tiles in batched(iter_tiles(plan), batch_size):
        n = len(tiles)
        parts = [tile.data_slices(plan.shape) for tile in tiles]
        for b, (src, dst) in enumerate(parts):
            if dst != full:
                batch[b].fill(0)  # padding outside the volume
            read(src, batch[(b, 0, *dst)])
        forward_batch(net, batch[:n], device, channels, transforms, out=probs[:n])
        for b, (tile, (src, dst)) in enumerate(zip(tiles, parts)):
            weighted = weight_tile(probs[b], plan, tile, dst)
            torch.from_numpy(acc[(slice(None), *src)]).add_(torch.from_numpy(weighted))
        if progress is not None:
            progress(n)
