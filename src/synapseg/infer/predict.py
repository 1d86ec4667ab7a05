"""Tiled, batched, blended network inference on volumes of any size and voxel size.

:func:`predict_volume` runs three streaming stages, each bounded in memory by a chunk or a
tile rather than the volume:

1. **rescale**: the input is resampled (anti-aliased) to the model's voxel size, z-chunk by
   z-chunk, into a model-grid array (in memory when small, else a temporary memory-mapped
   file: file pages are not the process's anonymous memory);
2. **network**: lattice-aligned tiles (see :mod:`synapseg.infer.tiling`) are normalised with
   statistics from a sample of the model grid, run through the network in batches (optional
   flip TTA), and their sigmoid probabilities are Gaussian-blended into a model-grid
   accumulator;
3. **resample back**: the blended probabilities are mapped back to the input grid, z-chunk by
   z-chunk, and written into ``out`` (e.g. the memory-mapped output file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synapseg.errors import InputError
from synapseg.infer.forward import (
    prepare_net,
    run_tiles,
    select_device,
    torch_threads,
    tta_transforms,
)
from synapseg.infer.preprocess import (
    RESAMPLE_WORKERS,
    NormStats,
    check_rescale,
    grid_shape,
    neutral_outside,
    normalise_config,
    normalise_statistics,
    normalise_stats,
    resample_stream,
    stats_sample,
)
from synapseg.infer.progress import Progress as _Progress
from synapseg.infer.tiling import choose_tiling
from synapseg.io.atomic import preallocate
from synapseg.io.scratch import release_in_background
from synapseg.io.volume import Volume
from synapseg.model.registry import ModelCard, load_model
from synapseg.specimen.mask import SpecimenMask, specimen_mask

log = logging.getLogger(__name__)

IN_MEMORY_BYTES = 256 * 2**20
"""Model-grid arrays larger than this live in a temporary memory-mapped file."""
CHUNK_VOXELS = 8 * 2**20
"""Source voxels per z-chunk when resampling between grids (bounds their memory)."""

ModelSpec = str | os.PathLike | tuple[nn.Module, ModelCard]


def _scratch_array(
    shape: Sequence[int], scratch: Path | None, name: str, stack: contextlib.ExitStack
) -> np.ndarray:
    """A zeroed float32 array: in memory when small, else a temporary memory-mapped file."""
    nbytes = int(np.prod(shape)) * 4
    if nbytes <= IN_MEMORY_BYTES or scratch is None:
        return np.zeros(shape, dtype=np.float32)
    fd, path = tempfile.mkstemp(prefix=f"synapseg-{name}-", suffix=".f32", dir=scratch)
    os.close(fd)
    # unlinked on exit; the pages are freed when the last view of the map goes away
    stack.callback(lambda: Path(path).unlink(missing_ok=True))
    # reserve the disk now: a sparse map that hits a full disk dies by SIGBUS mid-write
    preallocate(path, nbytes)
    return np.memmap(path, dtype=np.float32, mode="w+", shape=tuple(shape))


def probability_to_uint8(block: np.ndarray) -> np.ndarray:
    """Probabilities (0-1) as the uint8 0-255 maps the pipeline writes (rounded)."""
    return np.rint(np.clip(block, 0, 1) * 255).astype(np.uint8)


def _store(out: Any, target: Any, block: np.ndarray) -> None:
    """``out[target] =`` the 0-1 probabilities ``block`` in ``out``'s dtype (uint8: as
    :func:`probability_to_uint8`, rounded). ``block`` is scratch, converted in place: on the
    reference volume's 274 M voxels the temporaries of the out-of-place version cost
    ≈ 0.7 CPU-s (issue 17)."""
    np.clip(block, 0, 1, out=block)
    if np.dtype(out.dtype) == np.uint8:
        block *= 255
        np.rint(block, out=block)  # whole numbers 0-255: the cast on assignment is exact
    # numpy/memmap cast on assignment; other array types (zarr) get their dtype
    out[target] = block if isinstance(out, np.ndarray) else block.astype(out.dtype)


def _load(model: ModelSpec) -> tuple[nn.Module, ModelCard]:
    if isinstance(model, tuple):
        return model
    return load_model(model)


# --------------------------------------------------------------------------- public API


def predict_array(
    image: np.ndarray,
    model: ModelSpec = "default",
    *,
    device: str | torch.device = "auto",
    tta: bool = False,
    tile_size: int | Sequence[int] | None = None,
    halo: int | None = None,
    batch_size: int | None = None,
    channels: Sequence[int] = (0,),
    threads: int | None = None,
) -> np.ndarray:
    """Probabilities for an already rescaled and normalised model-grid array (in memory).

    The building block of :func:`predict_volume`, and what training uses for validation.

    Returns
    -------
    numpy.ndarray
        float32 (len(channels), z, y, x) probabilities on the same grid.
    """
    net, card = _load(model)
    plan = choose_tiling(card.config, image.shape, tile_size, halo)
    acc = np.zeros((len(channels), *image.shape), dtype=np.float32)
    dev = select_device(device)
    with torch_threads(threads):

        def read(sl: tuple[slice, ...], out: np.ndarray) -> None:
            out[...] = image[sl]

        run_tiles(
            read,
            acc,
            plan,
            prepare_net(net, dev),
            dev,
            channels,
            tta_transforms(card.tta_rot90) if tta else [((), 0)],
            batch_size or 1,
        )
    wz, wy, wx = plan.normaliser()
    nz, ny, nx = image.shape
    acc /= (wz[:nz, None, None] * wy[None, :ny, None] * wx[None, None, :nx]).astype(np.float32)
    return acc


def predict_volume(
    volume: Volume,
    model: ModelSpec = "default",
    device: str | torch.device = "auto",
    tta: bool = False,
    tile_size: int | Sequence[int] | None = None,
    batch_size: int | None = None,
    out: Any = None,
    progress: bool = False,
    *,
    invert: bool = False,
    channels: Sequence[int] = (0,),
    halo: int | None = None,
    threads: int | None = None,
    scratch_dir: str | os.PathLike | None = None,
    report: dict[str, Any] | None = None,
    specimen: SpecimenMask | bool = True,
    stats: NormStats | None = None,
) -> np.ndarray:
    """Vesicle probability map of a tomogram, on the input grid.

    Parameters
    ----------
    volume
        The tomogram (its ``data`` may be memory-mapped or zarr; it is read in z-chunks).
    model
        ``"default"``, a model name, folder or card path, or a loaded ``(net, card)`` pair.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    tta
        Average over the 8 flips of z, y, x (and 90° turns about z when the card's
        ``tta_rot90`` says the model was trained with both tilt-axis orientations): 8-16x time.
    tile_size
        Largest tile edge in model voxels (multiple of the network's size multiple, at least
        its receptive field); default ``synapseg.infer.tiling.DEFAULT_TILE`` (256).
    batch_size
        Tiles per forward pass (default 1 on CPU, 2 on GPU).
    out
        Writable (z, y, x) array to write into (e.g. a memory-mapped MRC from
        ``open_volume_writer`` or a zarr array): float32, float16 or uint8 (0-255 scaled).
        For several ``channels`` it is (C, z, y, x). Default: a new float32 array.
    progress
        Show rich progress bars (stderr).
    invert
        Multiply the normalised input by -1 (for data with bright densities).
    channels
        Output channels to return (0 = vesicle).
    halo
        Context voxels discarded at inner tile faces (default ``tile / 10``; the
        architecture's ``halo`` makes tiling exact).
    threads
        Torch CPU threads (default: the available cores).
    scratch_dir
        Folder for temporary model-grid files of large volumes (default: the system's
        temporary folder).
    report
        Dict to fill with timings, throughput, device and tiling facts.
    specimen
        Where the specimen is (:func:`synapseg.specimen.mask.specimen_mask`): the
        normalisation statistics come only from inside it. ``True`` (default) computes the
        mask from ``volume``; ``False`` uses the whole volume (as does a card whose
        ``normalisation`` says ``"statistics": "volume"``).
    stats
        Normalisation statistics to use instead of measuring them (e.g. those of the whole
        tomogram when predicting a crop of it).

    Returns
    -------
    numpy.ndarray
        ``out``, or a new float32 array of ``volume.shape`` (``(C, *shape)`` for several
        channels), holding probabilities in [0, 1].

    Raises
    ------
    InputError
        Unusable volume, bad tile size, input much coarser than the model, missing CUDA,
        corrupt model.
    """
    from synapseg.summary import check_usable

    t_start = time.perf_counter()
    channels = [int(c) for c in channels]
    net, card = _load(model)
    config = card.config
    if any(c < 0 or c >= config.out_channels for c in channels):
        raise InputError(
            None,
            f"channels {channels} requested but the model has {config.out_channels}",
            f"use channels among 0..{config.out_channels - 1}",
        )
    dev = select_device(device)
    source = volume.path or "volume"
    check_usable(volume)
    if normalise_statistics(card.normalisation) == "volume":
        specimen = False  # the card says: whole-volume statistics
    if specimen is True:
        specimen = specimen_mask(volume.data, volume.voxel_size_nm)
    factors = check_rescale(volume.voxel_size_nm, card.voxel_size_nm, source)
    in_shape = volume.shape
    grid = grid_shape(in_shape, volume.voxel_size_nm, card.voxel_size_nm)
    plan = choose_tiling(config, grid, tile_size, halo)
    clip = normalise_config(card.normalisation)
    batch_size = batch_size or (2 if dev.type == "cuda" else 1)
    out_shape = tuple(in_shape) if len(channels) == 1 else (len(channels), *in_shape)
    if out is None:
        out = np.empty(out_shape, dtype=np.float32)
    elif tuple(out.shape) != out_shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {out_shape}")
    scratch = Path(scratch_dir) if scratch_dir else Path(tempfile.gettempdir())
    timings: dict[str, float] = {}
    transforms = tta_transforms(card.tta_rot90) if tta else [((), 0)]

    with contextlib.ExitStack() as stack, torch_threads(threads) as n_threads:
        bar = stack.enter_context(_Progress(progress))
        # 1. rescale to the model grid -----------------------------------------------------
        t0 = time.perf_counter()
        image = _scratch_array(grid, scratch, "image", stack)
        scratch_maps = [image]

        def read_input(i0: int, i1: int) -> np.ndarray:
            return np.asarray(volume.data[i0:i1], dtype=np.float32)

        def write_image(j0: int, j1: int, block: np.ndarray) -> None:
            image[j0:j1] = block

        task = bar.add("rescale to model grid", grid[0])
        resample_stream(
            read_input,
            in_shape,
            grid,
            factors,
            write_image,
            chunk_voxels=2 * CHUNK_VOXELS,
            progress=bar.advancer(task),
            workers=RESAMPLE_WORKERS,  # writes into a numpy array or memmap
        )
        if stats is None:
            mask = specimen if isinstance(specimen, SpecimenMask) else None
            stats = normalise_stats(
                stats_sample(image, specimen=mask, voxel_size_nm=card.voxel_size_nm), clip
            )
        timings["rescale_s"] = time.perf_counter() - t0

        # 2. network over blended tiles ----------------------------------------------------
        t0 = time.perf_counter()
        acc = _scratch_array((len(channels), *grid), scratch, "probabilities", stack)
        scratch_maps.append(acc)
        task = bar.add(f"network ({dev.type}, {plan.n_tiles} tiles)", plan.n_tiles)
        mask = specimen if isinstance(specimen, SpecimenMask) else None

        def read_tile(sl: tuple[slice, ...], out: np.ndarray) -> None:
            stats.apply(image[sl], invert=invert, out=out)
            neutral_outside(out, mask, sl, card.voxel_size_nm)

        run_tiles(
            read_tile,
            acc,
            plan,
            prepare_net(net, dev),
            dev,
            channels,
            transforms,
            batch_size,
            progress=bar.advancer(task),
        )
        timings["network_s"] = time.perf_counter() - t0

        # 3. back to the input grid --------------------------------------------------------
        t0 = time.perf_counter()
        wz, wy, wx = (w.astype(np.float32) for w in plan.normaliser())
        ny_m, nx_m = grid[1], grid[2]
        wyx = wy[:ny_m, None] * wx[None, :nx_m]

        def read_probs(j0: int, j1: int) -> np.ndarray:
            block = np.array(acc[:, j0:j1], dtype=np.float32)
            block /= wz[j0:j1, None, None] * wyx
            return block

        def write_out(i0: int, i1: int, block: np.ndarray) -> None:
            block = block if len(channels) > 1 else block[0]
            target = (slice(None), slice(i0, i1)) if len(channels) > 1 else slice(i0, i1)
            _store(out, target, block)

        task = bar.add("map back to input grid", in_shape[0])
        resample_stream(
            read_probs,
            grid,
            in_shape,
            1 / factors,
            write_out,
            chunk_voxels=max(CHUNK_VOXELS // len(channels), 2**20),
            progress=bar.advancer(task),
            # concurrent writes of disjoint rows are safe into numpy/memmap, not into zarr
            workers=RESAMPLE_WORKERS if isinstance(out, np.ndarray) else 1,
        )
        timings["resample_back_s"] = time.perf_counter() - t0
    # the scratch files are unlinked now; unmapping them waits for the kernel's writeback
    # of their pages (≈ 1.6 s on the reference volume): a daemon thread waits instead
    image = acc = None  # this frame's and its closures' references go
    release_in_background(scratch_maps)
    timings["total_s"] = time.perf_counter() - t_start

    if report is not None:
        n_in, n_grid = int(np.prod(in_shape)), int(np.prod(grid))
        report.update(
            {
                "timings": {k: round(v, 3) for k, v in timings.items()},
                "throughput": {
                    "input_mvoxel_per_s": round(n_in / timings["total_s"] / 1e6, 3),
                    "network_model_mvoxel_per_s": round(n_grid / timings["network_s"] / 1e6, 3),
                    "network_computed_mvoxel_per_s": round(
                        plan.computed_voxels / timings["network_s"] / 1e6, 3
                    ),
                },
                "device": str(dev),
                "torch_threads": n_threads,
                "input_shape_zyx": list(in_shape),
                "input_voxel_size_nm_zyx": [float(v) for v in volume.voxel_size_nm],
                "model_grid_shape_zyx": list(grid),
                "model_voxel_size_nm": float(card.voxel_size_nm),
                "tiles": {
                    "n": plan.n_tiles,
                    "shape_zyx": list(plan.tile_shape),
                    "halo_zyx": list(plan.halo),
                    "batch_size": batch_size,
                    "computed_over_grid_voxels": round(plan.computed_voxels / n_grid, 3),
                },
                "tta": len(transforms),
                "invert": invert,
                "normalisation": {
                    "clip_percentiles": list(clip),
                    **stats.to_dict(),
                    "inside_specimen": isinstance(specimen, SpecimenMask)
                    and bool(specimen.facts.get("trusted")),
                },
                "channels": [card.output_channels[c] for c in channels],
            }
        )
    return out
