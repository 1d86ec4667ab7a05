"""synapseg: segmentation of synaptic vesicles in cryo-electron tomograms.

The Python API (imported lazily, so ``import synapseg`` stays fast):

- :func:`segment` -- vesicles of a tomogram held in memory: a :class:`Segmentation`;
- :class:`Grid` -- shape, voxel size (z, y, x, nm), origin and missing wedge;
- :func:`read_volume` -- read an MRC/REC, TIFF or OME-Zarr tomogram lazily;
- :func:`simulate` -- a synthetic synapse tomogram with exact ground truth (the
  :mod:`synapseg.simulate` package, callable as its ``simulate_tomogram``).

See docs/api.md for a walkthrough.
"""

from __future__ import annotations

import importlib  # no typing import: `import synapseg` stays ~2 ms

__version__ = "0.1.0"

__all__ = ["Grid", "Segmentation", "__version__", "read_volume", "segment", "simulate"]

_WHERE = {
    "segment": ("synapseg.core.segment", "segment"),
    "Segmentation": ("synapseg.core.segment", "Segmentation"),
    "Grid": ("synapseg.core.grid", "Grid"),
    "read_volume": ("synapseg.io.volume", "read_volume"),
    "simulate": ("synapseg.simulate", None),  # the package, callable as simulate_tomogram
}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        module, attr = _WHERE[name]
        found = importlib.import_module(module)
        return found if attr is None else getattr(found, attr)
    raise AttributeError(f"module 'synapseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
