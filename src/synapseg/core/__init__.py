"""The pipeline core: stage registry, :func:`segment`, :class:`Grid` and the file runner.

Imports are lazy, so ``import synapseg.core`` is cheap; ``synapseg.core.units`` depends on
numpy only and may be imported from any layer.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'synapseg.core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
