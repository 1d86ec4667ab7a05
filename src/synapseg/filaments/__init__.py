"""Connectors (vesicle–vesicle) and tethers (vesicle–active zone): detection, tables,
summaries and files. See docs/filaments.md.

The core is :func:`detect_filaments` on plain arrays (image, voxel size, vesicle table,
AZ mask); the ``filaments`` stage (:mod:`synapseg.filaments.stage`) runs it inside
``synapseg segment`` and ``synapseg filaments`` on existing results.
"""

from synapseg._lazy import lazy_getattr

__all__ = [
    "FilamentParams",
    "TABLE_COLUMNS",
    "add_counts",
    "detect_filaments",
    "filament_summary",
    "write_filament_outputs",
]

_WHERE = {
    "FilamentParams": "synapseg.filaments.detect",
    "TABLE_COLUMNS": "synapseg.filaments.measure",
    "add_counts": "synapseg.filaments.summary",
    "detect_filaments": "synapseg.filaments.find",
    "filament_summary": "synapseg.filaments.summary",
    "write_filament_outputs": "synapseg.filaments.files",
}
__getattr__ = lazy_getattr(__name__, _WHERE)
