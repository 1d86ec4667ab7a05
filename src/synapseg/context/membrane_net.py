"""The ``membrane_net`` stage: probability of "membrane, not a synaptic vesicle" on the input grid.

A second, compact network (``sim-membrane-v1``: the vesicle model's U-Net design at 2.4 nm
model voxels, two output channels: ``membrane`` = every membrane but synaptic vesicles,
``vesicle_membrane``) runs through the very inference engine of the vesicle network
(:func:`synapseg.infer.predict.predict_volume`: the same specimen-aware normalisation,
tiling and resampling back to the input grid), with the tomogram's one polarity decision.

Telling a vesicle membrane from another membrane is what the small network does worst, and
what the vesicle network does best, so the map combines them: the probability of *any*
membrane, ``1 - (1 - p_membrane) (1 - p_vesicle_membrane)``, times ``1 - v``, where ``v`` is
the vesicle network's probability (vesicles filled to their outer surface) spread by a
maximum filter of ``VESICLE_MARGIN_NM`` (the blur of the membrane map around a vesicle).
It is written, as uint8 0-255 on the input grid, into the artifact
``membrane_probabilities`` (streamed into a sink, z-chunk by z-chunk; the file runner keeps
it as ``<name>_membrane_probabilities.mrc``). The ``context`` stage reads it.

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
DEFAULT_MEMBRANE_MODEL = "sim-membrane-v1"
MEMBRANE_CHANNEL = "membrane"
VESICLE_MEMBRANE_CHANNEL = "vesicle_membrane"
VESICLE_MARGIN_NM = 1.5
CHUNK_Z = 16
IN_MEMORY_VOXELS = 64_000_000  # larger channel maps go to a memory-mapped scratch file

__all__ = [
    "ARTIFACT",
    "DEFAULT_MEMBRANE_MODEL",
    "MEMBRANE_STAGE",
    "combine_membranes",
    "default_membrane_model",
    "run_membrane_net",
]


def default_membrane_model() -> Path | None:
    """Card path of the shipped membrane model, or ``None`` when it is not installed."""
    from synapseg.model.registry import CARD_NAME, WEIGHTS_DIR

    card = WEIGHTS_DIR / DEFAULT_MEMBRANE_MODEL / CARD_NAME
    return card if card.is_file() else None


def combine_membranes(
    channels: np.ndarray,
    vesicle_probability: np.ndarray | None,
    voxel_size_nm: float | tuple[float, float, float],
    out: np.ndarray,
    margin_nm: float = VESICLE_MARGIN_NM,
    chunk: int = CHUNK_Z,
) -> np.ndarray:
    """Non-vesicle membrane probability (uint8) from the network's channels and the vesicles.

    Parameters
    ----------
    channels
        (C, z, y, x) uint8 maps: ``membrane`` and, when C == 2, ``vesicle_membrane``.
    vesicle_probability
        (z, y, x) uint8 vesicle probability of the vesicle network, or ``None``.
    voxel_size_nm
        Voxel size, for the margin.
    out
        (z, y, x) uint8 array written z-chunk by z-chunk (a sink).
    """
    from scipy import ndimage

    from synapseg.core.units import voxel_size_zyx

    vs = np.asarray(voxel_size_zyx(voxel_size_nm))
    size = tuple(int(2 * np.ceil(margin_nm / v - 1e-9) + 1) for v in vs)
    halo = size[0] // 2
    nz = out.shape[0]
    for z0 in range(0, nz, chunk):
        z1 = min(nz, z0 + chunk)
        p = np.asarray(channels[:, z0:z1], dtype=np.float32) / 255.0
        any_membrane = 1.0 - np.prod(1.0 - p, axis=0)
        if vesicle_probability is not None:
            a, b = max(0, z0 - halo), min(nz, z1 + halo)
            v = ndimage.maximum_filter(np.asarray(vesicle_probability[a:b]), size=size)
            any_membrane *= 1.0 - v[z0 - a : z0 - a + (z1 - z0)].astype(np.float32) / 255.0
        out[z0:z1] = np.rint(any_membrane * 255.0).astype(np.uint8)
    return out


def _skip(ctx: StageContext, reason: str) -> dict[str, Any]:
    ctx.facts.update({"skipped": True, "reason": reason})
    log.info("membrane network skipped: %s", reason)
    return {ARTIFACT: None}


def run_membrane_net(ctx: StageContext) -> dict[str, Any]:
    """Membrane probability (uint8 0-255, input grid) streamed into the sink."""
    from synapseg.core.builtin import as_volume
    from synapseg.errors import ModelError
    from synapseg.infer.predict import predict_volume
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
    out = ctx.sink(ARTIFACT, grid.shape, np.uint8)
    details: dict[str, Any] = {}
    channels = [names.index(MEMBRANE_CHANNEL)]
    if VESICLE_MEMBRANE_CHANNEL in names:
        channels.append(names.index(VESICLE_MEMBRANE_CHANNEL))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=p.get("scratch_dir"), prefix="synapseg-mem-") as tmp:
        shape = (len(channels), *grid.shape)
        maps = (
            np.lib.format.open_memmap(Path(tmp) / "maps.npy", "w+", np.uint8, shape)
            if np.prod(shape) > IN_MEMORY_VOXELS
            else np.zeros(shape, np.uint8)
        )
        predict_volume(
            as_volume(ctx),
            model=(net, card),
            device=p.get("device", "auto"),
            out=maps if len(channels) > 1 else maps[0],
            progress=p.get("progress", False),
            invert=bool(polarity.get("invert", False)),
            channels=tuple(channels),
            report=details,
            specimen=ctx["specimen"],
            scratch_dir=p.get("scratch_dir"),
        )
        t1 = time.perf_counter()
        combine_membranes(maps, ctx["probabilities"], grid.voxel_size_nm, out)
        del maps
    seconds = time.perf_counter() - t0
    details["combine_s"] = time.perf_counter() - t1
    ctx.facts.update(
        {
            "seconds": seconds,
            "mvoxel_per_s": float(np.prod(grid.shape)) / 1e6 / max(seconds, 1e-9),
            "model": {
                "name": card.name,
                "sha256": card.sha256,
                "voxel_size_nm": card.voxel_size_nm,
            },
            "channel": MEMBRANE_CHANNEL,
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
