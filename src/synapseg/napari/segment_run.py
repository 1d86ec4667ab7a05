"""What the segment widget runs, without Qt: :func:`synapseg.segment` with progress and cancel.

:func:`run_segmentation` runs the registered stages (the same ``segment`` as the CLI and the
API); each stage is wrapped so that it first checks a cancel flag (raising
:class:`Cancelled`) and reports ``(k, n, name)`` to a callback. :func:`result_layers` turns
the result into layer data: the vesicle probability map and the vesicles, with the facts
and what the fits of the correction tools need (wedge, polarity) in the layer metadata.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from synapseg.napari.layers import LayerData, metadata, vesicles_layer

DEVICES = ("auto", "cpu", "cuda")


class Cancelled(Exception):
    """The user cancelled the run (raised between stages)."""


def model_choices() -> list[str]:
    """``default`` and the shipped models' names."""
    from synapseg.model.registry import available_models

    return ["default", *[m for m in available_models() if m != "default"]]


def progress_stages(
    on_stage: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    wanted: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The registered stages, each reporting to ``on_stage`` and checking ``cancel`` first."""
    from synapseg.core.stages import registered_stages, stage_order

    stages = registered_stages()
    order = [s.name for s in stage_order(stages, wanted)]
    n = len(order)

    def wrap(stage: Any) -> Any:
        k = order.index(stage.name) if stage.name in order else 0

        def run(ctx: Any) -> Any:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"cancelled before stage '{stage.name}'")
            if on_stage is not None:
                on_stage(k, n, stage.name)
            return stage.run(ctx)

        return dataclasses.replace(stage, run=run)

    return {name: wrap(st) for name, st in stages.items()}


def run_segmentation(
    volume: Any,
    *,
    model: str = "default",
    voxel_size_nm: float | Sequence[float] | None = None,
    device: str = "auto",
    tta: bool = False,
    on_stage: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | None = None,
    **params: Any,
) -> Any:
    """:func:`synapseg.segment` on ``volume`` with progress and cancel between stages.

    Raises
    ------
    Cancelled
        ``cancel`` was set; the run stopped before its next stage.
    """
    import synapseg

    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    stages = progress_stages(on_stage, cancel)
    seg = synapseg.segment(
        volume,
        model,
        voxel_size_nm=voxel_size_nm,
        stages=stages,
        device=device,
        tta=tta,
        **params,
    )
    if on_stage is not None:
        on_stage(len(stages), len(stages), "done")
    return seg


def fit_facts(seg: Any) -> dict[str, Any]:
    """Wedge and polarity of a :class:`~synapseg.core.segment.Segmentation` (for the fits)."""
    out: dict[str, Any] = {}
    wedge = seg.artifacts.get("wedge")
    if wedge is not None:
        out["tilt_range_deg"] = float(wedge.tilt_range_deg)
        out["tilt_axis"] = str(wedge.wedge_axis)
    polarity = seg.artifacts.get("polarity") or {}
    if polarity.get("invert") is not None:
        out["polarity"] = -1 if polarity["invert"] else 1
    return out


def _plain(value: Any) -> Any:
    """JSON-like copy of facts (numpy scalars/arrays to Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{value.shape}"
    return value


def result_layers(seg: Any, name: str, tomogram_path: str | None = None) -> list[LayerData]:
    """Layers of a segmentation: probabilities (0-255, additive) and the vesicles."""
    vs = tuple(float(v) for v in seg.grid.voxel_size_nm)
    layers: list[LayerData] = []
    if "probabilities" in seg:
        kwargs = {
            "name": f"{name} probabilities",
            "scale": vs,
            "contrast_limits": (0, 255),
            "colormap": "magma",
            "blending": "additive",
            "opacity": 0.5,
            "visible": False,
            "metadata": metadata("probabilities", vs),
        }
        layers.append((seg.probabilities, kwargs, "image"))
    facts = {"facts": _plain(seg.facts), "fit": fit_facts(seg), "output_name": name}
    if tomogram_path:
        facts["tomogram"] = tomogram_path
    layers.append(vesicles_layer(seg.vesicles, vs, name=f"{name} vesicles", **facts))
    return layers
