"""The pipeline core: stage registry, :func:`segment`, :class:`Grid` and the file runner.

Imports are lazy, so ``import synapseg.core`` is cheap; ``synapseg.core.units`` depends on
numpy only and may be imported from any layer.
"""

from __future__ import annotations

from synapseg._lazy import lazy_getattr

__all__ = [
    "Grid",
    "Segmentation",
    "Stage",
    "StageContext",
    "register_stage",
    "registered_stages",
    "segment",
    "unregister_stage",
    "voxel_size_zyx",
]

_WHERE = {
    "Grid": "synapseg.core.grid",
    "Segmentation": "synapseg.core.segment",
    "segment": "synapseg.core.segment",
    "Stage": "synapseg.core.stages",
    "StageContext": "synapseg.core.stages",
    "register_stage": "synapseg.core.stages",
    "registered_stages": "synapseg.core.stages",
    "unregister_stage": "synapseg.core.stages",
    "voxel_size_zyx": "synapseg.core.units",
}


__getattr__ = lazy_getattr(__name__, _WHERE)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
