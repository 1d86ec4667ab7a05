"""Pyto-ready outputs: an int16 labels volume with the vesicles, and the matching parameters.

Layout (as in Pyto's presynaptic example, ``viz/labels.mrc`` + ``common/tomo_info.py``):
``membrane_id`` (2) is the active-zone plasma membrane, ``cytoplasm_id`` (3) the
segmentation region (presynaptic cytoplasm), and vesicles are filled balls (to the outer
membrane surface) with ids ``first_vesicle_id`` (10), 11, ... in table order. The text
snippet lists those ids explicitly (``all_ids``, ``boundary_ids``, ``vesicle_ids``,
``segmentation_region``, ``distance_id``) together with the synapseg id of each vesicle.

Without a user's labels, ``synapseg segment`` fills 2 and 3 from the active zone and the
presynaptic compartment it found (``synapseg.context.files.context_boundaries``), so the
labels are ready for Pyto without manual input.

Merging with ``boundaries`` (a user's existing labels or the context's): vesicle voxels replace only
background (0) and ``cytoplasm_id`` voxels; the membrane and every other existing label
are kept. If the existing labels already use ids >= ``first_vesicle_id``, the new vesicle
ids start above the largest existing id so nothing is merged by accident.

Pyto requires boundaries (vesicles) not to touch the volume faces: a vesicle whose ball
reaches the first or last voxel of any axis is left out of the Pyto labels and the
parameters, with a warning naming it (it stays in every other synapseg output).

Memory: the vesicles are rendered straight into the int16 result (seen as uint16) and
merged with the boundaries one z-section at a time; :func:`write_pyto` does this inside
the output MRC's memmap, so no full-size array is held in memory.
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg import __version__
from synapseg.errors import InputError
from synapseg.geometry.render import render_labels
from synapseg.io.atomic import check_writable, write_text_atomic
from synapseg.io.volume_writer import open_volume_writer

log = logging.getLogger(__name__)

INT16_MAX = int(np.iinfo(np.int16).max)
MAX_UINT16 = int(np.iinfo(np.uint16).max)


def _output_paths(out: Path) -> tuple[Path, Path]:
    """Labels and parameter paths from a folder, a ``*_labels.mrc`` file or a prefix."""
    if out.is_dir() or str(out).endswith(os.sep):
        return out / "pyto_labels.mrc", out / "pyto_params.py"
    if out.suffix.lower() == ".mrc":
        stem = out.name[: -len(out.suffix)]
        base = stem[: -len("_labels")] if stem.endswith("_labels") else stem
        return out, out.with_name(base + "_params.py")
    return out.with_name(out.name + "_pyto_labels.mrc"), out.with_name(out.name + "_pyto_params.py")


def face_touching_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted nonzero labels present on any of the six faces of a (z, y, x) volume."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    found = np.unique(np.concatenate([np.unique(f) for f in faces]))
    return found[found != 0]


def _mark_present(seen: np.ndarray, section: np.ndarray) -> None:
    """Set ``seen[v]`` for every nonzero value ``v`` of a non-negative integer section."""
    values = section[section != 0]
    if values.size * 8 < section.size:  # sparse (vesicles only): sort the few labelled voxels
        seen[np.unique(values)] = True
    elif values.size:  # dense (boundary regions): one O(n) pass
        seen[np.flatnonzero(np.bincount(values))] = True


def _nonzero_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted distinct nonzero values of a (z, y, x) uint16 label volume, section by section."""
    seen = np.zeros(MAX_UINT16 + 1, dtype=bool)
    for section in labels:
        _mark_present(seen, np.asarray(section))
    return np.flatnonzero(seen)


def _check_boundaries(boundaries: np.ndarray, shape: tuple[int, ...]) -> int:
    """Validate the user's boundary labels; return their largest id."""
    if boundaries.shape != shape:
        raise InputError(
            "--pyto-boundaries",
            f"boundary labels have shape {boundaries.shape}, the tomogram {shape}",
            "give labels on the tomogram's grid",
        )
    if not np.issubdtype(boundaries.dtype, np.integer):
        raise InputError("--pyto-boundaries", "boundary labels are not integers", "")
    lo, hi = int(boundaries.min()), int(boundaries.max())  # reductions: no volume copy
    if lo < 0 or hi > INT16_MAX:
        raise InputError("--pyto-boundaries", "boundary ids outside 0..32767", "")
    return hi


def pyto_labels(
    table: pd.DataFrame,
    *,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    boundaries: np.ndarray | None = None,
    membrane_id: int = 2,
    cytoplasm_id: int = 3,
    first_vesicle_id: int = 10,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, int], list[int]]:
    """Build the int16 Pyto labels.

    Parameters
    ----------
    out
        Optional writable (z, y, x) int16 array of ``shape`` (e.g. the memmap of
        :func:`synapseg.io.volume_writer.open_volume_writer`) to build the labels in; otherwise a
        new array is allocated. Either way the only full-size array is the result: the
        vesicles are rendered into it, then merged with ``boundaries`` one z-section at a
        time.

    Returns
    -------
    labels
        (z, y, x) int16 volume (``out`` when given).
    id_map
        synapseg vesicle id -> Pyto id, for the vesicles written.
    excluded
        synapseg ids left out because their ball touches a volume face.
    """
    labels, id_map, excluded, _ = _fill_pyto_labels(
        table,
        shape=shape,
        voxel_size_nm=voxel_size_nm,
        boundaries=boundaries,
        membrane_id=membrane_id,
        cytoplasm_id=cytoplasm_id,
        first_vesicle_id=first_vesicle_id,
        out=out,
    )
    return labels, id_map, excluded


def _fill_pyto_labels(
    table: pd.DataFrame,
    *,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    boundaries: np.ndarray | None,
    membrane_id: int,
    cytoplasm_id: int,
    first_vesicle_id: int,
    out: np.ndarray | None,
) -> tuple[np.ndarray, dict[int, int], list[int], np.ndarray]:
    """:func:`pyto_labels`, also returning the sorted nonzero ids present in the result."""
    shape = tuple(int(s) for s in shape)
    existing_max = 0
    if boundaries is not None:
        boundaries = np.asarray(boundaries)
        existing_max = _check_boundaries(boundaries, shape) if boundaries.size else 0
    if out is None:
        out = np.zeros(shape, dtype=np.int16)
    elif tuple(out.shape) != shape or out.dtype != np.int16:
        raise ValueError(f"out must be int16 of shape {shape}, got {out.dtype} {out.shape}")
    start = first_vesicle_id
    if existing_max >= first_vesicle_id:
        start = existing_max + 1
        log.warning(
            "boundary labels already use ids up to %d: Pyto vesicle ids start at %d",
            existing_max,
            start,
        )
    # Render the synapseg ids into the output's own memory (seen as uint16), then turn
    # them into Pyto ids merged with the boundaries section by section.
    rendered = out.view(np.uint16)
    render_labels(table, shape, voxel_size_nm, radius_column="outer_radius_nm", out=rendered)
    touching = face_touching_ids(rendered)
    if len(touching):
        log.warning(
            "%d vesicle(s) touch the volume faces and are left out of the Pyto labels "
            "(Pyto needs boundaries inside the volume): ids %s",
            len(touching),
            touching.tolist(),
        )
        keep = ~np.isin(table["id"].to_numpy(), touching)
        # re-render without them: their overlaps go back to their neighbours
        render_labels(
            table[keep], shape, voxel_size_nm, radius_column="outer_radius_nm", out=rendered
        )
    present = _nonzero_ids(rendered)
    if start + len(present) - 1 > INT16_MAX:
        raise InputError(None, f"{len(present)} vesicles do not fit int16 Pyto ids", "")
    id_map = {int(v): start + i for i, v in enumerate(present)}
    lost = sorted(set(table["id"].astype(int)) - set(id_map) - {int(t) for t in touching})
    if lost:
        log.warning("vesicle(s) outside the volume, not in the Pyto labels: ids %s", lost)
    lut = np.zeros(int(present.max()) + 1 if len(present) else 1, dtype=np.int16)
    for v, p in id_map.items():
        lut[v] = p
    seen = np.zeros(INT16_MAX + 1, dtype=bool)  # ids in the result (all in 0..32767)
    for z in range(shape[0]):
        ves = np.asarray(rendered[z])
        if boundaries is None:
            section = lut[ves]  # lut[0] == 0: background stays 0
        else:
            section = np.asarray(boundaries[z]).astype(np.int16)
            paint = (ves != 0) & ((section == 0) | (section == cytoplasm_id))
            section[paint] = lut[ves[paint]]
        out[z] = section  # section is new memory, so writing over ves's bytes is safe
        _mark_present(seen, section)
    return out, id_map, [int(t) for t in touching], np.flatnonzero(seen)


def pyto_parameters(
    id_map: dict[int, int],
    labels_file_name: str,
    *,
    present_ids: Sequence[int],
    membrane_id: int = 2,
    cytoplasm_id: int = 3,
    excluded: Sequence[int] = (),
    layers_file_name: str | None = None,
) -> str:
    """Text of the Pyto parameters (``tomo_info.py`` style) matching the labels file
    (``layers_file_name``: the distance-layers labels written beside it, if any)."""
    vesicle_ids = sorted(id_map.values())
    other = [int(i) for i in present_ids if i not in vesicle_ids]
    has_membrane = membrane_id in other
    has_cytoplasm = cytoplasm_id in other
    lines = [
        f'"""Pyto parameters for {labels_file_name}, written by synapseg {__version__}.',
        "",
        "Copy these into your tomo_info.py (see Pyto's common_tomo_info.py example).",
        '"""',
        "",
        f'labels_file_name = "{labels_file_name}"',
        "labels_data_type = None",
        "",
        "# Ids of all segments in the labels file (boundaries and regions)",
        f"all_ids = {other} + {vesicle_ids}",
        "",
        "# Boundaries: the active-zone membrane and the vesicles",
        f"boundary_ids = {[membrane_id] if has_membrane else []} + {vesicle_ids}",
        "",
        "# Ids of vesicles in the labels file",
        f"vesicle_ids = {vesicle_ids}",
        "",
        "# Segmentation region (presynaptic cytoplasm) where connectors can form",
    ]
    if has_cytoplasm:
        lines.append(f"segmentation_region = {cytoplasm_id}")
    else:
        lines += [
            f"# NOTE: no region {cytoplasm_id} in the labels; add one (--pyto-boundaries or a",
            "# mask) before running Pyto connectors",
            f"segmentation_region = {cytoplasm_id}",
        ]
    lines += ["", "# Id of the segment distances are measured to (active-zone membrane)"]
    lines.append(f"distance_id = {membrane_id if has_membrane else None}")
    if layers_file_name is not None:
        lines += [
            "",
            "# Distance layers from the active zone into the region (int16 layer ids 1..n)",
            f'layers_file_name = "{layers_file_name}"',
        ]
    lines += ["", "# synapseg vesicle id -> Pyto id", f"synapseg_to_pyto_ids = {id_map}"]
    if excluded:
        lines += [
            "",
            "# synapseg vesicles left out because they touch the volume faces",
            f"synapseg_excluded_ids = {sorted(int(e) for e in excluded)}",
        ]
    return "\n".join(lines) + "\n"


def write_pyto(
    out_prefix_or_dir: str | os.PathLike,
    table: pd.DataFrame,
    *,
    shape: Sequence[int],
    voxel_size_nm: float | Sequence[float],
    boundaries: np.ndarray | None = None,
    membrane_id: int = 2,
    cytoplasm_id: int = 3,
    first_vesicle_id: int = 10,
    overwrite: bool = False,
    layers: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write the Pyto labels (int16 MRC) and the parameter snippet.

    ``layers`` (int16 layer ids on the grid, e.g. from the AZ into the compartment) are
    written beside the labels as ``<name>_layers.mrc`` and named in the parameters.

    ``out_prefix_or_dir`` is a folder (``pyto_labels.mrc`` + ``pyto_params.py`` in it), a
    ``<name>_labels.mrc`` path (parameters in ``<name>_params.py``), or a prefix
    (``<prefix>_pyto_labels.mrc`` + ``<prefix>_pyto_params.py``).

    Returns
    -------
    dict
        ``{"labels": Path, "params": Path}``.
    """
    labels_path, params_path = _output_paths(Path(out_prefix_or_dir))
    check_writable(labels_path, overwrite)
    check_writable(params_path, overwrite)
    layers_path = None
    if layers is not None:
        stem = labels_path.name[: -len(labels_path.suffix)]
        stem = stem[: -len("_labels")] if stem.endswith("_labels") else stem
        layers_path = labels_path.with_name(stem + "_layers.mrc")
        check_writable(layers_path, overwrite)
    shape = tuple(int(s) for s in shape)
    # Stream into the MRC's memmap: no full-size array in memory, however big the volume.
    with open_volume_writer(
        labels_path,
        shape,
        np.int16,
        voxel_size_nm,
        overwrite=overwrite,
        label="synapseg Pyto labels",
    ) as labels:
        _, id_map, excluded, present = _fill_pyto_labels(
            table,
            shape=shape,
            voxel_size_nm=voxel_size_nm,
            boundaries=boundaries,
            membrane_id=membrane_id,
            cytoplasm_id=cytoplasm_id,
            first_vesicle_id=first_vesicle_id,
            out=labels,
        )
        text = pyto_parameters(
            id_map,
            labels_path.name,
            present_ids=[int(i) for i in present if i != 0],
            membrane_id=membrane_id,
            cytoplasm_id=cytoplasm_id,
            excluded=excluded,
            layers_file_name=None if layers_path is None else layers_path.name,
        )
    written = {"labels": labels_path, "params": params_path}
    if layers_path is not None:
        from synapseg.io.volume_writer import write_volume

        write_volume(
            layers_path,
            np.asarray(layers, np.int16),
            voxel_size_nm,
            overwrite=overwrite,
            label="synapseg Pyto layers",
        )
        written["layers"] = layers_path
    write_text_atomic(params_path, text, overwrite=overwrite)
    return written


def pyto_vesicle_ids(path: Path) -> list[int]:
    """``vesicle_ids`` of a Pyto parameter script (e.g. common_tomo_info.py), read without
    running it: a list literal, or a sum of list literals."""
    if not path.is_file():
        raise InputError(path, "Pyto parameter file not found", "check the path")

    def value(node: ast.AST) -> list[int]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        result = ast.literal_eval(node)
        return [int(v) for v in result]

    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "vesicle_ids" for t in node.targets
            ):
                return value(node.value)
    except (SyntaxError, ValueError, TypeError) as exc:
        raise InputError(
            path, f"cannot read vesicle_ids ({exc})", "give the ids as 36,48,.."
        ) from exc
    raise InputError(path, "no vesicle_ids = [...] in this file", "give the ids as 36,48,..")
