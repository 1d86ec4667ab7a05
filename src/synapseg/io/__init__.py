"""File input/output: tomograms, tables and annotation formats."""

from synapseg._lazy import lazy_getattr

__all__ = [
    "Volume",
    "open_volume_writer",
    "read_table_csv",
    "read_volume",
    "write_imod_spheres",
    "write_table_csv",
    "write_table_star",
    "write_volume",
]

_WHERE = {
    "Volume": "synapseg.io.volume",
    "read_volume": "synapseg.io.volume",
    "write_volume": "synapseg.io.volume_writer",
    "open_volume_writer": "synapseg.io.volume_writer",
    "read_table_csv": "synapseg.io.tables",
    "write_table_csv": "synapseg.io.tables",
    "write_table_star": "synapseg.io.star",
    "write_imod_spheres": "synapseg.io.imod",
}


__getattr__ = lazy_getattr(__name__, _WHERE)
