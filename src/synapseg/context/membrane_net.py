"""The ``membrane_net`` stage: probability of "membrane, not a synaptic vesicle" on the input grid.

A second, compact network (``sim-membrane-v1``, the default: a stem-2 3D U-Net at 2.4 nm
model voxels; ``sim-membrane-v2``, a plain stem-1 one, draws better maps at three times the
CPU; two output channels:
``membrane`` = every membrane but synaptic vesicles, ``vesicle_membrane``) runs through the
very inference engine of the vesicle network (:func:`synapseg.infer.predict.predict_volume`:
the same specimen-aware normalisation and tiling), with the tomogram's one polarity
decision, on the model grid: the stage rescales the tomogram to it once and the engine's
own rescaling is then the identity.

Telling a vesicle membrane from another membrane is what the small network does worst, and
what the vesicle network does best, so the map combines them on the model grid: the
probability of *any* membrane, ``1 - (1 - p_membrane) (1 - w p_vesicle_membrane)``, times
``1 - v``, where ``v`` is the vesicle network's probability (vesicles filled to their outer
surface) sampled at the model voxels and spread by a maximum filter over
``VESICLE_MARGIN_NM`` plus half a model voxel. ``w`` is the card's
``postprocessing.vesicle_membrane_weight`` (default 1; ``sim-membrane-v3`` has 0: its own
``membrane`` channel finds the organelles, and the other channel only adds false membrane on
the recipe's training draws), and with ``w = 0`` only the ``membrane`` channel is computed.
``sim-membrane-v4`` (v3's network, weight 0) learned its ``membrane`` logit as the signed
distance to the bilayer surface, ``-d / 1 nm`` (:func:`synapseg.train.membrane_targets.
membrane_sd_targets`): its sigmoid is read like any map, 0.5 on the surface, and the linear
resampling to the input grid places the surfaces between model voxels.
Only that one map is resampled to the input grid and written, as uint8 0-255, into the
artifact ``membrane_probabilities`` (streamed into a sink, z-chunk by z-chunk; the file
runner keeps it as ``<name>_membrane_probabilities.mrc``). The ``context`` stage reads it.

Parameters (``synapseg.segment(..., membrane_model=..., context=...)``):

``membrane_model``
    ``"default"`` (the shipped ``sim-membrane-v1`` when its weights are installed), a model
    name, a model folder, or ``None`` / ``"none"`` to skip the stage.
``context``
    ``False`` skips it too (the whole synapse context is off).

A skipped stage returns ``None`` (no array) and says why in its facts.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from synapseg.core.stages import Stage, StageContext, register_stage

log = logging.getLogger(__name__)

ARTIFACT = "membrane_probabilities"
DEFAULT_MEMBRANE_MODEL = "sim-membrane-v1"  # same AZ/pools as v2 at a third of its CPU
MEMBRANE_CHANNEL = "membrane"
VESICLE_MEMBRANE_CHANNEL = "vesicle_membrane"
VESICLE_MARGIN_NM = 1.5
WEIGHT_KEY = "vesicle_membrane_weight"  # card postprocessing: weight of channel 1 in the map
CHUNK_Z = 16
IN_MEMORY_VOXELS = 64_000_000  # larger channel maps go to a memory-mapped scratch file

__all__ = [
    "ARTIFACT",
    "DEFAULT_MEMBRANE_MODEL",
    "MEMBRANE_STAGE",
    "combine_on_model_grid",
    "default_membrane_model",
    "run_membrane_net",
    "sample_vesicles",
]


def default_membrane_model() -> Path | None:
    """Card path of the shipped membrane model, or ``None`` when it is not installed."""
    from synapseg.model.registry import CARD_NAME, WEIGHTS_DIR

    card = WEIGHTS_DIR / DEFAULT_MEMBRANE_MODEL / CARD_NAME
    return card if card.is_file() else None


def _skip(ctx: StageContext, reason: str) -> dict[str, Any]:
    ctx.facts.update({"skipped": True, "reason": reason})
    log.info("membrane network skipped: %s", reason)
    return {ARTIFACT: None}


def _scratch(shape: tuple[int, ...], dtype: Any, folder: str, name: str) -> np.ndarray:
    """A zeroed array in memory, or memory-mapped in ``folder`` when it is large."""
    if np.prod(shape) * np.dtype(dtype).itemsize > IN_MEMORY_VOXELS:
        return np.lib.format.open_memmap(Path(folder) / f"{name}.npy", "w+", dtype, shape)
    return np.zeros(shape, dtype)


def _workers(target: Any) -> int:
    """Threads for a resampling into ``target``: disjoint rows may be written concurrently
    into a numpy array or memory map (the filters and interpolation release the GIL: about
    half the wall time on 2 cores), not into a zarr array whose chunks span several rows."""
    from synapseg.infer.preprocess import RESAMPLE_WORKERS

    return RESAMPLE_WORKERS if isinstance(target, np.ndarray) else 1


def _writer(target: Any, to_uint8: bool = False) -> Any:
    """``write_rows`` for :func:`~synapseg.infer.preprocess.resample_stream` into ``target``."""

    def write(z0: int, z1: int, block: np.ndarray) -> None:
        if to_uint8:  # in place (block is the resampler's own): no temporaries per chunk
            np.rint(block, out=block)
            np.clip(block, 0, 255, out=block)
            if not isinstance(target, np.ndarray):
                block = block.astype(np.uint8)
        target[z0:z1] = block  # numpy casts the whole numbers 0-255 exactly

    return write


def sample_vesicles(
    vesicle_probability: np.ndarray,
    input_voxel_nm: Any,
    model_voxel_nm: Any,
    model_shape: tuple[int, int, int],
    margin_nm: float = VESICLE_MARGIN_NM,
) -> np.ndarray:
    """The vesicle probability (uint8) on the model grid: nearest input voxel of each model
    voxel, spread by a maximum filter over ``margin_nm`` plus half a model voxel."""
    from scipy import ndimage

    from synapseg.infer.preprocess import rescale_factors, voxel_triple

    f = rescale_factors(input_voxel_nm, model_voxel_nm)
    src = vesicle_probability.shape
    idx = [
        np.minimum(np.rint(np.arange(m) / fk).astype(np.intp), n - 1)
        for m, fk, n in zip(model_shape, f, src)
    ]
    out = np.empty(model_shape, np.uint8)
    for j0 in range(0, model_shape[0], CHUNK_Z):
        j1 = min(model_shape[0], j0 + CHUNK_Z)
        rows = np.asarray(vesicle_probability[idx[0][j0:j1]])
        out[j0:j1] = rows[:, idx[1]][:, :, idx[2]]
    reach = (margin_nm + voxel_triple(model_voxel_nm) / 2) / voxel_triple(model_voxel_nm)
    size = tuple(int(2 * np.floor(r) + 1) for r in reach)
    return ndimage.maximum_filter(out, size=size) if max(size) > 1 else out


def combine_on_model_grid(
    maps: np.ndarray,
    vesicles: np.ndarray | None,
    chunk: int = CHUNK_Z,
    weights: tuple[float, ...] | None = None,
) -> np.ndarray:
    """In place into ``maps[0]``: ``1 - prod(1 - w_c p_c)`` over the channels (``weights``
    default all 1), times ``1 - v`` (uint8 maps on the model grid). Returns ``maps[0]``."""
    w = np.ones(maps.shape[0], np.float32) if weights is None else np.asarray(weights, np.float32)
    w = w.reshape(-1, 1, 1, 1)
    for j0 in range(0, maps.shape[1], chunk):
        j1 = min(maps.shape[1], j0 + chunk)
        p = np.asarray(maps[:, j0:j1], dtype=np.float32) / 255.0
        m = 1.0 - np.prod(1.0 - w * p, axis=0)
        if vesicles is not None:
            m *= 1.0 - vesicles[j0:j1].astype(np.float32) / 255.0
        maps[0, j0:j1] = np.rint(m * 255.0).astype(np.uint8)
    return maps[0]


def run_membrane_net(ctx: StageContext) -> dict[str, Any]:
    """Membrane probability (uint8 0-255, input grid) streamed into the sink.

    The network runs on the model grid and its channels are combined there; only the
    combined map is resampled to the input grid (z-chunk by z-chunk into the sink).
    """
    from synapseg.errors import ModelError
    from synapseg.infer.predict import predict_volume
    from synapseg.infer.preprocess import check_rescale, grid_shape, resample_stream, voxel_triple
    from synapseg.io.volume import Volume
    from synapseg.model.registry import load_model

    p = ctx.params
    spec = p.get("membrane_model", "default")
    if not p.get("context", True):
        return _skip(ctx, "context off")
    if spec is None or str(spec).lower() == "none":
        return _skip(ctx, "membrane_model is none")
    if spec == "default":
        spec = default_membrane_model()
        if spec is None:
            return _skip(
                ctx, f"the default membrane model {DEFAULT_MEMBRANE_MODEL} is not installed"
            )
    net, card = load_model(spec, device="cpu")
    names = list(card.output_channels or [])
    if MEMBRANE_CHANNEL not in names:
        raise ModelError(
            spec,
            f"model {card.name!r} has no '{MEMBRANE_CHANNEL}' output channel (it has {names})",
            f"give a membrane model (e.g. {DEFAULT_MEMBRANE_MODEL}) as membrane_model",
        )
    grid = ctx["grid"]
    polarity = ctx["polarity"] or {}
    image = ctx["image"]
    out = ctx.sink(ARTIFACT, grid.shape, np.uint8)
    details: dict[str, Any] = {}
    timings: dict[str, float] = {}
    channels = [names.index(MEMBRANE_CHANNEL)]
    weight = float((card.postprocessing or {}).get(WEIGHT_KEY, 1.0))
    if VESICLE_MEMBRANE_CHANNEL in names and weight > 0:
        channels.append(names.index(VESICLE_MEMBRANE_CHANNEL))
    vs_in, vs_m = grid.voxel_size_nm, card.voxel_size_nm
    factors = check_rescale(vs_in, vs_m, p.get("path"))
    mshape = tuple(int(v) for v in grid_shape(grid.shape, vs_in, vs_m))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=p.get("scratch_dir"), prefix="synapseg-mem-") as tmp:
        # 1. the input on the model grid (the only volume-sized float32 array)
        model_image = _scratch(mshape, np.float32, tmp, "image")

        resample_stream(
            lambda a, b: np.asarray(image[a:b], dtype=np.float32),
            grid.shape,
            mshape,
            factors,
            _writer(model_image),
            workers=_workers(model_image),
        )
        timings["rescale_s"] = time.perf_counter() - t0
        # 2. the network on the model grid (its own rescaling is then the identity)
        t1 = time.perf_counter()
        maps = _scratch((len(channels), *mshape), np.uint8, tmp, "maps")
        predict_volume(
            Volume(model_image, tuple(float(v) for v in voxel_triple(vs_m))),
            model=(net, card),
            device=p.get("device", "auto"),
            out=maps if len(channels) > 1 else maps[0],
            progress=p.get("progress", False),
            invert=bool(polarity.get("invert", False)),
            channels=tuple(channels),
            report=details,
            specimen=ctx["specimen"],
            scratch_dir=tmp,
        )
        model_image = None  # free it before the combination
        timings["network_s"] = time.perf_counter() - t1
        # 3. channels and vesicles combined on the model grid
        t1 = time.perf_counter()
        ves = ctx["probabilities"]
        ves_m = None if ves is None else sample_vesicles(ves, vs_in, vs_m, mshape)
        combined = combine_on_model_grid(maps, ves_m, weights=(1.0, weight)[: len(channels)])
        del ves_m
        timings["combine_s"] = time.perf_counter() - t1
        # 4. one channel back to the input grid, uint8, z-chunk by z-chunk
        t1 = time.perf_counter()

        resample_stream(
            lambda a, b: np.asarray(combined[a:b], dtype=np.float32),
            mshape,
            grid.shape,
            1 / factors,
            _writer(out, to_uint8=True),
            workers=_workers(out),
        )
        timings["to_input_grid_s"] = time.perf_counter() - t1
        maps = combined = None
    seconds = time.perf_counter() - t0
    details["stage_timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    ctx.facts.update(
        {
            "seconds": seconds,
            "mvoxel_per_s": float(np.prod(grid.shape)) / 1e6 / max(seconds, 1e-9),
            "model": {
                "name": card.name,
                "sha256": card.sha256,
                "voxel_size_nm": card.voxel_size_nm,
            },
            "model_grid_shape_zyx": list(mshape),
            "channel": MEMBRANE_CHANNEL,
            WEIGHT_KEY: weight if VESICLE_MEMBRANE_CHANNEL in names else None,
            "details": details,
        }
    )
    return {ARTIFACT: out}


MEMBRANE_STAGE = Stage(
    "membrane_net",
    ("image", "grid", "specimen", "polarity", "probabilities"),
    (ARTIFACT,),
    run_membrane_net,
    {"membrane_model": "default", "context": True},
    persist=(ARTIFACT,),
)
register_stage(MEMBRANE_STAGE, replace=True)


def _register_store() -> None:
    """The file runner keeps the map as ``<name>_membrane_probabilities.mrc`` (uint8)."""
    from synapseg import __version__
    from synapseg.core.runner import Store, register_store

    def load(path: Path, runner: Any) -> Any:
        from synapseg.io.volume import read_volume

        return read_volume(path, runner.grid.voxel_size_nm).data

    register_store(
        ARTIFACT,
        Store(
            f"_{ARTIFACT}.mrc",
            load,
            sink_dtype=np.uint8,
            label=f"synapseg {__version__} membrane probability x255",
        ),
    )


_register_store()
