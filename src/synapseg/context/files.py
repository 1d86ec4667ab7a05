"""Files of the ``context`` stage: how the file runner keeps its outputs, and the AZ mesh.

``<name>_membranes.mrc`` (uint8 classes), ``<name>_compartment.mrc`` (uint8 0/1),
``<name>_az.json`` (always: found or not, facts, midplane points + normals in nm),
``<name>_az.mrc`` (uint8 0/1 mask), ``<name>_az.ply`` (ASCII PLY mesh, vertices in nm
x y z) and ``<name>_az.mod`` (IMOD model: the AZ traced as one open contour per z-section)
when an AZ was found, ``<name>_layers.csv``; the vesicle table with the AZ columns
goes to ``<name>_vesicles.csv``. All writes are atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from synapseg import __version__
from synapseg.context.az import ActiveZone
from synapseg.io.atomic import atomic_path, write_text_atomic

__all__ = [
    "az_contours",
    "context_boundaries",
    "read_active_zone",
    "register_context_stores",
    "write_active_zone",
    "write_context_pyto",
    "write_ply",
]


def write_ply(
    path: str | os.PathLike,
    vertices_nm: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """ASCII PLY triangle mesh; vertices given (z, y, x) nm are written x y z nm."""
    v = np.asarray(vertices_nm, float)[:, ::-1]
    f = np.asarray(faces, np.int64)
    props = ["property float x", "property float y", "property float z"]
    cols = [v]
    if normals is not None:
        props += ["property float nx", "property float ny", "property float nz"]
        cols.append(np.asarray(normals, float)[:, ::-1])
    header = [
        "ply",
        "format ascii 1.0",
        f"comment synapseg {__version__} active-zone midplane, units nm",
        f"element vertex {len(v)}",
        *props,
        f"element face {len(f)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="ascii") as fh:
        fh.write("\n".join(header) + "\n")
        np.savetxt(fh, np.hstack(cols), fmt="%.3f")
        if len(f):
            np.savetxt(fh, np.c_[np.full(len(f), 3), f], fmt="%d")
    return Path(path)


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (z, y, x nm) and faces of a PLY written by :func:`write_ply`."""
    lines = Path(path).read_text(encoding="ascii").splitlines()
    end = lines.index("end_header")
    n_v = next(int(x.split()[-1]) for x in lines if x.startswith("element vertex"))
    n_f = next(int(x.split()[-1]) for x in lines if x.startswith("element face"))
    verts = np.loadtxt(lines[end + 1 : end + 1 + n_v], ndmin=2)[:, :3][:, ::-1]
    faces = np.loadtxt(lines[end + 1 + n_v : end + 1 + n_v + n_f], ndmin=2, dtype=np.int64)
    return verts, faces[:, 1:4] if n_f else np.zeros((0, 3), np.int64)


def az_contours(mask: np.ndarray, step_px: float = 2.0) -> list[np.ndarray]:
    """The AZ membrane traced in each z-section: one open contour (zyx voxel coordinates)
    per section, the section's AZ pixels averaged in ``step_px`` bins along their main
    direction (the membrane is a curve over that direction within a section)."""
    paths = []
    for z in range(mask.shape[0]):
        yx = np.argwhere(np.asarray(mask[z])).astype(float)
        if len(yx) < 3:
            continue
        center = yx.mean(axis=0)
        _, _, vt = np.linalg.svd(yx - center, full_matrices=False)
        t = (yx - center) @ vt[0]
        bins = np.floor((t - t.min()) / step_px).astype(int)
        counts = np.bincount(bins)
        used = counts > 0
        pts = np.stack([np.bincount(bins, yx[:, i])[used] / counts[used] for i in range(2)], 1)
        if len(pts) >= 2:
            paths.append(np.c_[np.full(len(pts), float(z)), pts])
    return paths


def write_active_zone(
    json_path: str | os.PathLike,
    az: ActiveZone | None,
    voxel_size_nm: Any,
    origin_nm: Any = (0.0, 0.0, 0.0),
    overwrite: bool = False,
) -> dict[str, Path]:
    """``<name>_az.json`` (+ ``_az.mrc`` and ``_az.ply`` when ``az`` is not ``None``)."""
    from synapseg.io.volume_writer import write_volume

    json_path = Path(json_path)
    stem = str(json_path)[: -len(".json")]
    written = {"json": json_path}
    doc: dict[str, Any] = {"format": "synapseg-active-zone", "version": 1, "found": az is not None}
    if az is not None:
        mask_path, mesh_path = Path(stem + ".mrc"), Path(stem + ".ply")
        write_volume(
            mask_path,
            az.mask.astype(np.uint8),
            voxel_size_nm,
            origin_nm,
            overwrite=overwrite,
            label=f"synapseg {__version__} active-zone membrane",
        )
        write_ply(mesh_path, az.vertices_nm, az.faces, overwrite=overwrite)
        from synapseg.io.imod_contours import write_imod_contours

        paths = az_contours(az.mask)
        mod_path = write_imod_contours(
            Path(stem + ".mod"),
            [("active zone", (1.0, 0.2, 0.2), paths, [str(i + 1) for i in range(len(paths))])],
            voxel_size_nm=voxel_size_nm,
            shape=az.mask.shape,
            overwrite=overwrite,
        )
        written.update(mask=mask_path, mesh=mesh_path, imod=mod_path)
        doc.update(
            facts=az.facts,
            mask=mask_path.name,
            mesh=mesh_path.name,
            imod=mod_path.name,
            units="nm, (z, y, x), voxel i at i * voxel size",
            points_nm=np.round(az.points_nm, 3).tolist(),
            normals=np.round(az.normals, 5).tolist(),
        )
    write_text_atomic(json_path, json.dumps(doc, default=str), overwrite=overwrite)
    return written


def read_active_zone(json_path: str | os.PathLike, voxel_size_nm: Any = None) -> ActiveZone | None:
    """The :class:`ActiveZone` written by :func:`write_active_zone` (``None``: none found)."""
    from synapseg.io.volume import read_volume

    json_path = Path(json_path)
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    if not doc.get("found"):
        return None
    mask = np.asarray(read_volume(json_path.parent / doc["mask"], voxel_size_nm).data) != 0
    verts, faces = read_ply(json_path.parent / doc["mesh"])
    return ActiveZone(
        mask,
        np.asarray(doc["points_nm"], float).reshape(-1, 3),
        np.asarray(doc["normals"], float).reshape(-1, 3),
        verts,
        faces,
        doc.get("facts", {}),
    )


def context_boundaries(
    az_mask: np.ndarray | None,
    compartment: np.ndarray | None,
    *,
    membrane_id: int = 2,
    cytoplasm_id: int = 3,
) -> np.ndarray | None:
    """Pyto boundary labels from a found active zone and presynaptic compartment: int16,
    ``cytoplasm_id`` where the compartment is, ``membrane_id`` on the AZ membrane (which
    wins where both are set); ``None`` when neither exists."""
    if az_mask is None and compartment is None:
        return None
    shape = (az_mask if az_mask is not None else compartment).shape
    out = np.zeros(shape, np.int16)
    for z in range(shape[0]):
        if compartment is not None:
            out[z][np.asarray(compartment[z]) != 0] = cytoplasm_id
        if az_mask is not None:
            out[z][np.asarray(az_mask[z]) != 0] = membrane_id
    return out


def write_context_pyto(
    target: str | os.PathLike,
    table: Any,
    folder: str | os.PathLike,
    name: str,
    *,
    shape: Any,
    voxel_size_nm: Any,
    layer_nm: float = 10.0,
    overwrite: bool = False,
) -> dict[str, Any] | None:
    """Pyto labels with 2 = AZ membrane and 3 = presynaptic cytoplasm filled from the
    ``context`` outputs in ``folder`` (``<name>_az.json``, ``<name>_compartment.mrc``), plus
    ``<name>_pyto_layers.mrc``; ``None`` when the context found neither."""
    from synapseg.context.distances import layer_labels
    from synapseg.core.units import voxel_size_zyx
    from synapseg.io.pyto import write_pyto
    from synapseg.io.volume import read_volume

    folder = Path(folder)
    az_json, comp_path = folder / f"{name}_az.json", folder / f"{name}_compartment.mrc"
    az = read_active_zone(az_json, voxel_size_nm) if az_json.is_file() else None
    comp = None
    if comp_path.is_file():
        comp = np.asarray(read_volume(comp_path, voxel_size_nm).data) != 0
    boundaries = context_boundaries(None if az is None else az.mask, comp)
    if boundaries is None:
        return None
    layers = None
    if az is not None and comp is not None:
        factor = max(1, int(round(layer_nm / 2 / min(voxel_size_zyx(voxel_size_nm)))))
        layers = layer_labels(az.mask, comp, voxel_size_nm, layer_nm=layer_nm, factor=factor)
    return write_pyto(
        target,
        table,
        shape=shape,
        voxel_size_nm=voxel_size_nm,
        boundaries=boundaries,
        overwrite=overwrite,
        layers=layers,
    )


def register_context_stores() -> None:
    """Tell the file runner how to keep the ``context`` stage's outputs."""
    from synapseg.core.runner import Store, register_store

    def save_volume(label: str, dtype: Any):
        def save(path: Path, value: np.ndarray, runner: Any) -> None:
            from synapseg.io.volume_writer import write_volume

            write_volume(
                path,
                np.asarray(value).astype(dtype),
                runner.grid.voxel_size_nm,
                runner.grid.origin_nm,
                overwrite=True,
                label=f"synapseg {__version__} {label}",
            )

        return save

    def load_volume(path: Path, runner: Any) -> np.ndarray:
        from synapseg.io.volume import read_volume

        return np.asarray(read_volume(path, runner.grid.voxel_size_nm).data)

    def load_mask(path: Path, runner: Any) -> np.ndarray:
        return load_volume(path, runner) != 0

    def save_az(path: Path, value: ActiveZone | None, runner: Any) -> None:
        write_active_zone(path, value, runner.grid.voxel_size_nm, runner.grid.origin_nm, True)

    def load_az(path: Path, runner: Any) -> ActiveZone | None:
        return read_active_zone(path, runner.grid.voxel_size_nm)

    def save_table(path: Path, value: Any, runner: Any) -> None:
        from synapseg.io.tables import write_table_csv

        write_table_csv(path, value, provenance=runner.provenance, overwrite=True)

    def load_table(path: Path, runner: Any) -> Any:
        from synapseg.io.tables import read_table_csv

        table = read_table_csv(path)
        if "pool" in table:
            table["pool"] = table["pool"].fillna("").astype(object)
        return table

    register_store(
        "membranes", Store("_membranes.mrc", load_volume, save_volume("membrane classes", np.uint8))
    )
    register_store(
        "compartment",
        Store("_compartment.mrc", load_mask, save_volume("presynaptic compartment", np.uint8)),
    )
    register_store("az", Store("_az.json", load_az, save_az))
    register_store("vesicles_in_context", Store("_vesicles.csv", load_table, save_table))
