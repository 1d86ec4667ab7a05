"""Pyto-compatible connector and tether files: label volumes and ``.dat`` tables.

As Pyto's ``connectors.py`` writes them (see the presynaptic example's
``connectors_tomo_new_connectors_good.{mrc,dat}`` and ``..._tethers_good.{mrc,dat}``): an
int16 label volume per kind in which each segment carries its id, and a text table with
``#``-commented header lines and one row per segment: id, threshold, density (mean, std,
min, max), volume (voxels), length (voxels), boundary distance (voxels), and the ids of
the two boundaries it contacts. Boundary ids follow the Pyto labels synapseg writes
(``io.pyto``): the AZ membrane is ``membrane_id`` (2) and each vesicle the Pyto id of
``id_map`` (synapseg id → Pyto id; by default 10, 11, ... in vesicle-table order).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from synapseg import __version__
from synapseg.core.units import voxel_size_zyx
from synapseg.io.atomic import write_text_atomic
from synapseg.io.volume_writer import write_volume

__all__ = ["default_pyto_ids", "write_pyto_filaments"]


def default_pyto_ids(vesicle_ids: Sequence[int], first_vesicle_id: int = 10) -> dict[int, int]:
    """synapseg id → Pyto id as :func:`synapseg.io.pyto.pyto_labels` numbers them without
    user boundaries (10, 11, ... in table order)."""
    return {int(v): first_vesicle_id + k for k, v in enumerate(vesicle_ids)}


def _dat(kind: str, rows: pd.DataFrame, image_stats: pd.DataFrame, vs: np.ndarray) -> str:
    head = [
        "#",
        f"# synapseg {__version__}: {kind} in Pyto's connectors table layout",
        "# Lengths and distances in voxels (x voxel size "
        f"{vs[2]:.4f} nm); density in input grey values",
        "# Contacts: Pyto boundary ids (AZ membrane 2, vesicles as in the Pyto labels)",
        "#",
        "# Id  Thresh         Density                   Volume  Length  Boundary  Distance"
        "  Contacts   synapseg",
        "#              mean     std     min     max                      distance  to AZ"
        "               ids",
    ]
    lines = []
    for (_, r), (_, s) in zip(rows.iterrows(), image_stats.iterrows()):
        contacts = f"[{int(r['pyto_a'])} {int(r['pyto_b'])}]"
        sids = f"{int(r['vesicle_a'])}-" + (
            "AZ" if pd.isna(r["vesicle_b"]) else str(int(r["vesicle_b"]))
        )
        az = r.get("az_distance_nm", np.nan)
        lines.append(
            f"{int(r['id']):5d} {float(r['threshold_first']):7.3f} {s['mean']:8.3f} {s['std']:7.3f}"
            f" {s['min']:7.3f} {s['max']:7.3f} {int(s['volume']):7d} {r['length_nm'] / vs[2]:7.1f}"
            f" {r['end_to_end_nm'] / vs[2]:8.1f} {az / vs[2]:8.1f}  {contacts:9s}  {sids}"
        )
    return "\n".join(head + lines) + "\n"


def write_pyto_filaments(
    prefix: str | os.PathLike,
    table: pd.DataFrame,
    labels: np.ndarray,
    image: np.ndarray,
    *,
    voxel_size_nm: float | Sequence[float],
    id_map: Mapping[int, int],
    membrane_id: int = 2,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``<prefix>_connectors.{mrc,dat}`` and ``<prefix>_tethers.{mrc,dat}``.

    Parameters
    ----------
    table
        Filament table (:mod:`synapseg.filaments`), ids = the values in ``labels``.
    labels
        uint16 filament labels on the tomogram grid.
    image
        The tomogram (for the density statistics of each segment).
    id_map
        synapseg vesicle id → Pyto boundary id.
    """
    prefix = Path(prefix)
    vs = voxel_size_zyx(voxel_size_nm)
    written: dict[str, Path] = {}
    lab = np.asarray(labels)
    nz = np.flatnonzero(lab)
    ids_at = lab.ravel()[nz]
    grey = np.asarray(image).ravel()[nz].astype(float) if len(nz) else np.zeros(0)
    for kind, suffix in (("connector", "connectors"), ("tether", "tethers")):
        rows = table[table["kind"] == kind].copy()
        rows["pyto_a"] = [id_map.get(int(v), -1) for v in rows["vesicle_a"]]
        rows["pyto_b"] = [
            membrane_id if pd.isna(v) else id_map.get(int(v), -1) for v in rows["vesicle_b"]
        ]
        stats = []
        out = np.zeros(lab.shape, np.int16)
        for fid in rows["id"].to_numpy(int):
            sel = ids_at == fid
            vals = grey[sel] if sel.any() else np.zeros(1)
            stats.append(
                {"mean": vals.mean(), "std": vals.std(), "min": vals.min(), "max": vals.max(),
                 "volume": int(sel.sum())}
            )  # fmt: skip
            out.ravel()[nz[sel]] = fid
        mrc = prefix.with_name(f"{prefix.name}_{suffix}.mrc")
        dat = prefix.with_name(f"{prefix.name}_{suffix}.dat")
        write_volume(mrc, out, vs, overwrite=overwrite, label=f"synapseg {suffix}")
        write_text_atomic(
            dat, _dat(suffix, rows, pd.DataFrame(stats, index=rows.index), vs), overwrite=overwrite
        )
        written[f"{suffix}_labels"] = mrc
        written[f"{suffix}_table"] = dat
    return written
