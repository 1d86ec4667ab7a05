"""Write a simulation to a folder: tomogram, labels, ground-truth tables and parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

from synapseg import __version__
from synapseg.errors import OutputExistsError
from synapseg.io.atomic import atomic_path, write_text_atomic
from synapseg.io.tables import write_table_csv
from synapseg.io.volume_writer import write_volume
from synapseg.simulate.simulator import SimulationResult

OUTPUT_FILES = (
    "tomogram.mrc",
    "vesicles.csv",
    "vesicle_labels.mrc",
    "membrane_labels.mrc",
    "filaments.csv",
    "info.json",
    "params.json",
)


def write_simulation(
    out_dir: str | os.PathLike, result: SimulationResult, overwrite: bool = False
) -> Path:
    """Write ``result`` into ``out_dir`` (created if needed) and return the folder.

    Files: ``tomogram.mrc`` (float32), ``vesicles.csv`` (synapseg vesicle table),
    ``vesicle_labels.mrc`` (uint16), ``membrane_labels.mrc`` (uint8: 1 plasma, 2 vesicle,
    3 other membranes), ``filaments.csv`` (polylines), ``info.json`` (what was measured
    while simulating) and ``params.json`` (every parameter incl. the seed; written last,
    so its presence marks a complete folder). Each file is written atomically; nothing
    is written when any of them exists and ``overwrite`` is false.
    """
    out = Path(out_dir)
    if not overwrite:
        for name in OUTPUT_FILES:
            if (out / name).exists():
                raise OutputExistsError(
                    out / name, "output file exists", "pass --overwrite or choose another folder"
                )
    vs = (result.voxel_size_nm,) * 3
    label = f"synapseg {__version__} simulate seed {result.params['seed']}"
    write_volume(out / "tomogram.mrc", result.tomogram, vs, overwrite=overwrite, label=label)
    write_table_csv(out / "vesicles.csv", result.vesicles, overwrite=overwrite)
    write_volume(out / "vesicle_labels.mrc", result.vesicle_labels, vs, overwrite=overwrite)
    write_volume(out / "membrane_labels.mrc", result.membrane_labels, vs, overwrite=overwrite)
    with atomic_path(out / "filaments.csv", overwrite) as tmp:
        result.filaments.to_csv(tmp, index=False, float_format="%.4f")
    write_text_atomic(
        out / "info.json", json.dumps(result.info, indent=1, default=str), overwrite=overwrite
    )
    write_text_atomic(out / "params.json", json.dumps(result.params, indent=2), overwrite=overwrite)
    return out
