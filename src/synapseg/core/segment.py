"""``synapseg.segment``: the registered stages on arrays, in dependency order.

No files are written here: outputs are arrays and tables in a :class:`Segmentation`, or go
into the array sinks the caller passes (a memmap or zarr array, so large maps stream).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synapseg.core.grid import Grid
from synapseg.core.stages import Stage, StageContext, registered_stages, stage_order

__all__ = ["Segmentation", "segment", "stage_params", "run_stages"]

# Stages that enrich the vesicle table publish it under a new name; the last one wins.
FINAL_TABLES = ("vesicles_with_filaments", "vesicles_in_context", "vesicles")
RUN_KEYS = ("path",)  # run-level context every stage may read (not part of any digest)


@dataclass
class Segmentation:
    """What :func:`segment` returns: the artifacts of every stage that ran, and their facts.

    Attributes
    ----------
    grid
        The input's :class:`~synapseg.core.grid.Grid`, with the missing wedge once the
        ``acquisition`` stage ran.
    artifacts
        Artifact name → value (``probabilities``, ``vesicles``, ``specimen``, ``wedge``,
        ``polarity``, and whatever registered stages add).
    facts
        Stage name → the facts it reported (timings, counts, decisions, warnings).
    """

    grid: Grid
    artifacts: dict[str, Any]
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.artifacts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.artifacts

    @property
    def vesicles(self) -> Any:
        """The vesicle table (``pandas.DataFrame``; columns in docs/formats.md): the most
        complete one a stage produced (with the synapse context's ``az_distance_nm``/``pool``
        and the filament counts when those stages ran), as written to ``<name>_vesicles.csv``."""
        for name in FINAL_TABLES:
            if self.artifacts.get(name) is not None:
                return self.artifacts[name]
        return self.artifacts["vesicles"]

    @property
    def probabilities(self) -> Any:
        """Vesicle probability on the input grid, uint8 0-255 (the sink when one was given)."""
        return self.artifacts["probabilities"]

    def labels(self, out: Any = None) -> np.ndarray:
        """Instance labels (uint16, id per vesicle) rendered from the table on the grid."""
        from synapseg.geometry import render_labels

        return render_labels(self.vesicles, self.grid.shape, self.grid.voxel_size_nm, out=out)


def stage_params(stages: Mapping[str, Stage]) -> dict[str, Any]:
    """Every parameter the stages declare, with its default (first declaration wins)."""
    out: dict[str, Any] = {}
    for stage in stages.values():
        for key, value in stage.params.items():
            out.setdefault(key, value)
    return out


def run_stages(
    order: Iterable[Stage],
    artifacts: dict[str, Any],
    params: Mapping[str, Any],
    sinks: Mapping[str, Any] | None = None,
    before: Callable[[Stage], None] | None = None,
    after: Callable[[Stage, dict[str, Any], dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``order`` on ``artifacts`` (updated in place); return stage name → facts.

    ``before(stage)`` is called before a stage runs, ``after(stage, outputs, facts)`` after.
    """
    facts: dict[str, dict[str, Any]] = {}
    for stage in order:
        if before is not None:
            before(stage)
        ctx = StageContext(stage.name, {k: artifacts[k] for k in stage.inputs}, params, sinks or {})
        outputs = dict(stage.run(ctx))
        missing = [k for k in stage.outputs if k not in outputs]
        if missing:
            raise RuntimeError(f"stage '{stage.name}' did not return {missing}")
        artifacts.update({k: outputs[k] for k in stage.outputs})
        facts[stage.name] = ctx.facts
        if after is not None:
            after(stage, outputs, ctx.facts)
    return facts


def segment(
    volume: Any,
    model: str | os.PathLike = "default",
    *,
    voxel_size_nm: float | tuple[float, float, float] | None = None,
    outputs: Iterable[str] | None = None,
    sinks: Mapping[str, Any] | None = None,
    stages: Mapping[str, Stage] | None = None,
    **params: Any,
) -> Segmentation:
    """Segment the synaptic vesicles of a tomogram held in memory (or memory-mapped).

    Parameters
    ----------
    volume
        A :class:`~synapseg.io.volume.Volume`, a (z, y, x) array (then ``voxel_size_nm`` is
        required) or a file path (read with :func:`synapseg.io.volume.read_volume`).
    model
        ``"default"``, a registered model name, or a model folder / card path.
    voxel_size_nm
        Voxel size in nm (scalar or z, y, x); overrides a ``Volume``'s.
    outputs
        Artifacts wanted (default: every registered stage's); only the stages they need run.
    sinks
        Artifact name → writable array to fill (e.g. ``{"probabilities": memmap}``, uint8
        on the input grid), so large outputs stream instead of living in memory.
    stages
        Stage name → :class:`~synapseg.core.stages.Stage` (default: the registry).
    **params
        Stage parameters: ``device``, ``tta``, ``tile_size``, ``invert`` (auto/yes/no),
        ``threshold``, ``min_radius_nm``, ``max_radius_nm``, ``min_confidence``,
        ``tilt_range_deg``, ``tilt_axis``, ``mask`` (array on the grid), and those of
        registered stages.

    Returns
    -------
    Segmentation

    Raises
    ------
    TypeError
        An unknown parameter.

    Examples
    --------
    A stage-free run (``outputs=[]``) only checks the input and builds the grid:

    >>> seg = segment(np.zeros((8, 16, 16), np.float32), voxel_size_nm=1.5, outputs=[])
    >>> seg.grid.shape, seg.grid.voxel_size_nm
    ((8, 16, 16), (1.5, 1.5, 1.5))

    Everything (see docs/api.md): ``seg = segment(volume); seg.vesicles``.
    """
    if isinstance(volume, (str, os.PathLike)):
        from synapseg.io.volume import read_volume

        volume = read_volume(volume, voxel_size_nm)
    grid = Grid.of(volume, voxel_size_nm)
    image = volume.data if hasattr(volume, "voxel_size_nm") else volume  # a Volume, or an array
    stages = registered_stages() if stages is None else dict(stages)
    defaults = stage_params(stages)
    unknown = sorted(set(params) - set(defaults) - set(RUN_KEYS))
    if unknown:
        raise TypeError(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}"
        )
    merged = {**defaults, "model": model, **params}
    merged.setdefault("path", getattr(volume, "path", None))
    artifacts: dict[str, Any] = {"image": image, "grid": grid}
    facts = run_stages(stage_order(stages, outputs), artifacts, merged, sinks)
    if artifacts.get("wedge") is not None:
        grid = grid.with_wedge(artifacts["wedge"])
    return Segmentation(grid, artifacts, facts)
