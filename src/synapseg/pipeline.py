"""The segmentation pipeline: tomogram → probabilities → vesicle table → exports.

Stages, each writing its artifact atomically into the output folder:

``predict``
    ``<name>_probabilities.mrc``: vesicle probability on the input grid (uint8, 0–255).
``vesicles``
    ``<name>_vesicles.csv`` (+ ``.provenance.json``): instances, sphere fit, QC filters.
``export``
    label volume, JSON, STAR, IMOD model, Pyto labels, as requested by ``formats``.

``<name>_report.json`` is rewritten after every stage and records what is done, so an
interrupted run resumes at the first unfinished stage. A finished tomogram is skipped
unless ``overwrite``; ``from_stage`` recomputes from that stage on.

The work is done by :mod:`synapseg.core` (stages on arrays, registered in one place, and
the runner that owns files, resume and the report); this module keeps the names the CLI,
the benchmarks and the tests use. ``stage_predict``, ``stage_vesicles`` and
``stage_export`` are looked up here when they run, so a test may replace them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synapseg.core.file_stages import (
    resolve_acquisition,
    stage_export,
    stage_predict,
    stage_vesicles,
)
from synapseg.core.options import (
    ALL_FORMATS,
    DEFAULT_FORMATS,
    STAGES,
    OutputPaths,
    SegmentOptions,
    list_tomograms,
    provenance,
)
from synapseg.core.tomogram import segment_tomogram as _segment_tomogram

__all__ = [
    "ALL_FORMATS",
    "DEFAULT_FORMATS",
    "STAGES",
    "OutputPaths",
    "SegmentOptions",
    "list_tomograms",
    "provenance",
    "resolve_acquisition",
    "segment_tomogram",
    "stage_export",
    "stage_predict",
    "stage_vesicles",
]


def segment_tomogram(
    tomogram: str | Path,
    out_dir: str | Path,
    options: SegmentOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the whole pipeline on one tomogram; return the report dict.

    See :func:`synapseg.core.tomogram.segment_tomogram`; the stage functions are looked up
    here, so tests can swap ``synapseg.pipeline.stage_*``.
    """
    return _segment_tomogram(tomogram, out_dir, options, on_stage, hooks=sys.modules[__name__])
