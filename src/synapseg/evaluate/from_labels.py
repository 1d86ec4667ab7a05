"""Vesicle tables from instance-label volumes (centers and radii of filled balls).

Label volumes (synapseg's ``*_vesicles.mrc``, Pyto labels, hand annotations) fill each
vesicle to its *outer* membrane surface. Two conventions are offered:

``"synapseg"`` (default)
    center = centroid of the voxels (sub-voxel, zero-based px, voxel centers at integers);
    outer radius = volume-equivalent radius ``(3 V / 4π)^(1/3)`` with ``V`` the segment
    volume in nm³. For a ball rasterised by "voxel center inside the sphere" (as
    :func:`synapseg.post.render.render_labels` does) this recovers the sphere's radius.
``"pyto"``
    Pyto's ``Morphology.getCenter`` / ``getRadius`` (pyto/segmentation/morphology.py):
    center = centroid rounded to the nearest voxel; radius = mean distance from that
    center to the segment's *surface voxels*, the voxels with a face neighbour in the
    background (``Segment.makeSurfaces(size=1)``: Euclidean distance to background <= 1;
    other vesicles are not background). Measured between voxel centers, this radius is
    about half a voxel smaller than the outer surface. On Pyto's own presynaptic example
    it reproduces ``vesicles_tomo_vesicles.dat`` exactly (see tests).

In both, ``radius_nm`` (bilayer midline) = outer radius − ``membrane_thickness_nm`` / 2,
and both radii are reported. QC columns: ``n_voxels``, ``touches_border`` (a vesicle cut by
the volume face has biased center and radius), ``volume_radius_nm`` and
``pyto_radius_nm`` / ``pyto_radius_std_nm`` (whatever the convention).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from synapseg.core.units import voxel_size_zyx
from synapseg.errors import InputError
from synapseg.io.tables import DEFAULT_MEMBRANE_THICKNESS_NM, make_table

log = logging.getLogger(__name__)

Convention = Literal["synapseg", "pyto"]
# A "vesicle" segment with a volume-equivalent radius above this is almost surely a
# compartment (cytoplasm, membrane) of a Pyto-style label file.
_IMPLAUSIBLE_RADIUS_NM = 60.0
_FACE_NEIGHBOURS = ndi.generate_binary_structure(3, 1)


def _segment_geometry(
    crop: np.ndarray,
    fg_crop: np.ndarray,
    offset: np.ndarray,
    vs: np.ndarray,
) -> tuple[np.ndarray, float, float, float, np.ndarray]:
    """Centroid (px), volume radius (nm), Pyto radius mean/std (nm), rounded center (px)."""
    pts = np.argwhere(crop)
    centroid = pts.mean(axis=0) + offset
    volume_nm3 = len(pts) * float(np.prod(vs))
    volume_radius = (3.0 * volume_nm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    # Surface voxels: in the segment, with a face neighbour that is background (not any
    # other kept segment), as Pyto's makeSurfaces(size=1). Outside the array is not
    # background (distance_transform_edt semantics), hence border_value=1.
    interior = ndi.binary_erosion(fg_crop, _FACE_NEIGHBOURS, border_value=1)
    surface = np.argwhere(crop & ~interior)
    rounded = np.rint(centroid)
    if len(surface) == 0:  # a segment with no background neighbour at all
        return centroid, volume_radius, float("nan"), float("nan"), rounded
    dist = np.linalg.norm((surface + offset - rounded) * vs, axis=1)
    return centroid, volume_radius, float(dist.mean()), float(dist.std()), rounded


def _present_labels(labels: np.ndarray, chunk_voxels: int = 1 << 24) -> np.ndarray:
    """Sorted non-zero label values, read in z slabs (no full-size sorted copy)."""
    per_slab = max(1, chunk_voxels // max(1, labels.shape[1] * labels.shape[2]))
    found: set[int] = set()
    for z in range(0, labels.shape[0], per_slab):
        found.update(np.unique(np.asarray(labels[z : z + per_slab])).tolist())
    found.discard(0)
    return np.array(sorted(found), dtype=np.int64)


def _boxes(labels: np.ndarray, ids: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of each id (``None`` when absent), without a full-size copy when the
    label values are small enough for ``scipy.ndimage.find_objects`` to index them."""
    if len(ids) == 0:
        return []
    if int(ids.max()) <= 1 << 24:
        found = ndi.find_objects(labels, max_label=int(ids.max()))
        return [found[i - 1] for i in ids.tolist()]
    compact = np.zeros(labels.shape, dtype=np.int32)
    keep = np.isin(labels, ids)
    compact[keep] = np.searchsorted(ids, labels[keep]) + 1
    return list(ndi.find_objects(compact, max_label=len(ids)))


def table_from_labels(
    labels: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    membrane_thickness_nm: float = DEFAULT_MEMBRANE_THICKNESS_NM,
    ids: Sequence[int] | None = None,
    convention: Convention = "synapseg",
    name: str = "labels",
) -> pd.DataFrame:
    """Derive a vesicle table from an instance-label volume filled to the outer membrane.

    Parameters
    ----------
    labels
        (z, y, x) integer labels; 0 is background, each vesicle one id.
    voxel_size_nm
        Voxel size in nm, scalar or (z, y, x).
    membrane_thickness_nm
        Bilayer thickness: ``radius_nm = outer_radius_nm - membrane_thickness_nm / 2``.
    ids
        Label values that are vesicles (e.g. Pyto's ``vesicle_ids``); default every
        non-zero value. Other labels count as background.
    convention
        ``"synapseg"`` (centroid, volume-equivalent outer radius) or ``"pyto"`` (rounded
        centroid, mean center-to-surface-voxel distance); see the module docstring.
    name
        How error messages name the volume (its file path).

    Returns
    -------
    pandas.DataFrame
        :func:`synapseg.io.tables.make_table` layout (``id`` = label value, ``score`` 1)
        plus QC columns ``n_voxels, touches_border, volume_radius_nm, pyto_radius_nm,
        pyto_radius_std_nm``.

    Raises
    ------
    InputError
        Non-integer or non-3D labels, a requested id that is absent, or a bad convention.
    """
    if convention not in ("synapseg", "pyto"):
        raise InputError(name, f"unknown radius convention {convention!r}", "use synapseg or pyto")
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(name, f"labels must be 3D (z, y, x), got shape {labels.shape}", "")
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise InputError(name, "label volume holds non-integer values", "give instance labels")
        labels = rounded.astype(np.int64)
    vs = voxel_size_zyx(voxel_size_nm)
    if ids is None:
        ids_arr = _present_labels(labels)
    else:
        ids_arr = np.unique(np.asarray(list(ids), dtype=np.int64))
        present = _present_labels(labels)
        missing = np.setdiff1d(ids_arr, present)
        if len(missing):
            raise InputError(
                name,
                f"vesicle ids {missing.tolist()} are not in the label volume",
                "check the ids (label values present: " + f"{present.tolist()[:20]})",
            )
    if np.any(ids_arr < 0):
        raise InputError(name, "negative vesicle ids", "use positive label values")
    shape = np.asarray(labels.shape)
    rows = []
    for label, box in zip(ids_arr.tolist(), _boxes(labels, ids_arr)):
        if box is None:
            continue
        lo = np.array([max(s.start - 1, 0) for s in box])
        hi = np.minimum(np.array([s.stop + 1 for s in box]), shape)
        sub = np.asarray(labels[tuple(slice(a, b) for a, b in zip(lo, hi))])
        crop = sub == label
        fg = np.isin(sub, ids_arr)  # other vesicles are not background (Pyto)
        centroid, vrad, prad, pstd, rounded = _segment_geometry(crop, fg, lo, vs)
        touches = bool(
            any(s.start == 0 for s in box) or any(s.stop == n for s, n in zip(box, shape))
        )
        rows.append((label, centroid, rounded, vrad, prad, pstd, int(crop.sum()), touches))
    if not rows:
        return make_table(
            np.zeros((0, 3)),
            np.zeros(0),
            vs,
            n_voxels=np.zeros(0, int),
            touches_border=np.zeros(0, bool),
            volume_radius_nm=np.zeros(0),
            pyto_radius_nm=np.zeros(0),
            pyto_radius_std_nm=np.zeros(0),
        )
    out_ids = np.array([r[0] for r in rows])
    centroids = np.array([r[1] for r in rows])
    rounded_c = np.array([r[2] for r in rows])
    vrad = np.array([r[3] for r in rows])
    prad = np.array([r[4] for r in rows])
    if convention == "pyto":
        centers, outer = rounded_c, prad
    else:
        centers, outer = centroids, vrad
    big = out_ids[vrad > _IMPLAUSIBLE_RADIUS_NM]
    if len(big) and ids is None:
        log.warning(
            "%s: segments %s are far too large for vesicles (radius > %g nm); pass the "
            "vesicle ids explicitly (e.g. --gt-ids)",
            name,
            big.tolist(),
            _IMPLAUSIBLE_RADIUS_NM,
        )
    touching = out_ids[np.array([r[7] for r in rows])]
    if len(touching):
        log.info("%s: vesicles %s touch the volume face", name, touching.tolist())
    return make_table(
        centers,
        outer - membrane_thickness_nm / 2,
        vs,
        outer_radius_nm=outer,
        membrane_thickness_nm=membrane_thickness_nm,
        ids=out_ids,
        n_voxels=np.array([r[6] for r in rows]),
        touches_border=np.array([r[7] for r in rows]),
        volume_radius_nm=vrad,
        pyto_radius_nm=prad,
        pyto_radius_std_nm=np.array([r[5] for r in rows]),
    )
