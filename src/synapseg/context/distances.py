"""Each vesicle's distance to the active-zone membrane, its pool, and Pyto-style layers.

``az_distance_nm`` is the shortest distance from the vesicle's bilayer-midline sphere
(center, ``radius_nm``) to the AZ midplane: ``|c - q| - radius_nm`` measured along the
AZ normal at the nearest midplane point ``q`` (the tangent plane; the Euclidean distance
to ``q`` where the vesicle lies beyond the AZ's edge). It is the membrane-to-membrane
(midline-to-midline) distance biologists plot; the gap between the outer surfaces is
``az_distance_nm - membrane thickness`` (≈ 4.5 nm less). Negative values mean the fitted
sphere crosses the AZ midplane. ``az_nearest_{z,y,x}_nm`` is ``q``.

Pools: ``docked`` (``az_distance_nm < docked_nm``, default 5 nm: the bilayers touch),
``proximal`` (≤ ``proximal_nm``, default 45 nm), ``distal`` (further); empty when there
is no AZ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from synapseg.context.az import ActiveZone
from synapseg.context.grid import block_max
from synapseg.core.units import voxel_size_zyx

__all__ = [
    "AZ_COLUMNS",
    "add_az_columns",
    "assign_pools",
    "az_distances",
    "distance_layers",
    "layer_labels",
]

AZ_COLUMNS = ["az_distance_nm", "az_nearest_z_nm", "az_nearest_y_nm", "az_nearest_x_nm", "pool"]
CENTER_PX = ["center_z_px", "center_y_px", "center_x_px"]


def az_distances(
    centers_nm: np.ndarray, radii_nm: np.ndarray, points_nm: np.ndarray, normals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Midline-sphere to AZ-midplane distance (nm) and the nearest midplane points."""
    centers = np.asarray(centers_nm, float).reshape(-1, 3)
    if not len(centers):
        return np.zeros(0), np.zeros((0, 3))
    tree = cKDTree(points_nm)
    spacing = float(np.median(tree.query(points_nm, k=2)[0][:, 1])) if len(points_nm) > 1 else 0
    _, idx = tree.query(centers)
    q, n = points_nm[idx], normals[idx]
    delta = centers - q
    along = np.einsum("ij,ij->i", delta, n)
    lateral = np.linalg.norm(delta - along[:, None] * n, axis=1)
    dist = np.where(lateral <= 1.5 * spacing, np.abs(along), np.linalg.norm(delta, axis=1))
    nearest = q + np.where(lateral[:, None] <= 1.5 * spacing, delta - along[:, None] * n, 0)
    return dist - np.asarray(radii_nm, float), nearest


def assign_pools(az_distance_nm: np.ndarray, docked_nm: float = 5.0, proximal_nm: float = 45.0):
    """``docked`` / ``proximal`` / ``distal`` per distance ('' where the distance is NaN)."""
    d = np.asarray(az_distance_nm, float)
    out = np.where(d < docked_nm, "docked", np.where(d <= proximal_nm, "proximal", "distal"))
    return np.where(np.isfinite(d), out, "").astype(object)


def add_az_columns(
    table: pd.DataFrame,
    az: ActiveZone | None,
    voxel_size_nm: float | Sequence[float],
    docked_nm: float = 5.0,
    proximal_nm: float = 45.0,
) -> pd.DataFrame:
    """A copy of the vesicle table with :data:`AZ_COLUMNS` (NaN / '' without an AZ)."""
    out = table.copy()
    n = len(out)
    if az is None or not n:
        for col in AZ_COLUMNS[:-1]:
            out[col] = np.full(n, np.nan)
        out["pool"] = np.full(n, "", dtype=object)
        return out
    vs = np.asarray(voxel_size_zyx(voxel_size_nm), float)
    centers = out[CENTER_PX].to_numpy(float) * vs
    dist, nearest = az_distances(
        centers, out["radius_nm"].to_numpy(float), az.points_nm, az.normals
    )
    out["az_distance_nm"] = dist
    for i, axis in enumerate("zyx"):
        out[f"az_nearest_{axis}_nm"] = nearest[:, i]
    out["pool"] = assign_pools(dist, docked_nm, proximal_nm)
    return out


def distance_layers(
    az: ActiveZone | None,
    compartment: np.ndarray | None,
    table: pd.DataFrame,
    voxel_size_nm: float | Sequence[float],
    *,
    layer_nm: float = 10.0,
    max_nm: float = 250.0,
    factor: int = 1,
    membrane_thickness_nm: float = 4.5,
) -> pd.DataFrame | None:
    """Vesicle density per distance layer from the AZ into the compartment (like Pyto's
    layers): one row per layer ``[distance_min_nm, distance_max_nm)`` with the layer's
    compartment volume, the vesicles whose *center* lies in it (``az_distance_nm +
    radius_nm`` in the layer), their density per µm³ and the vesicle volume fraction
    (outer spheres, counted by center). ``None`` without an AZ or a compartment.

    The layer volumes are measured on the grid binned by ``factor`` (distance from the AZ
    voxels by a Euclidean distance transform in nm).
    """
    if az is None or compartment is None:
        return None
    vs = np.asarray(voxel_size_zyx(voxel_size_nm), float)
    comp = block_max(compartment.view(np.uint8), factor) > 0
    azc = block_max(az.mask.view(np.uint8), factor) > 0
    # distance to the AZ midplane ≈ distance to its voxels + half a bilayer
    dist = ndimage.distance_transform_edt(~azc, sampling=vs * factor) + membrane_thickness_nm / 2
    edges = np.arange(0.0, max_nm + layer_nm / 2, layer_nm)
    counts, _ = np.histogram(dist[comp], bins=edges)
    volume_nm3 = counts * float(np.prod(vs * factor))
    center_d = np.asarray(table.get("az_distance_nm", np.nan), float) + np.asarray(
        table.get("radius_nm", np.nan), float
    )
    n_ves, _ = np.histogram(center_d[np.isfinite(center_d)], bins=edges)
    outer = np.asarray(table.get("outer_radius_nm", table.get("radius_nm", np.nan)), float)
    ves_vol = 4 / 3 * np.pi * outer**3
    vol_in, _ = np.histogram(
        center_d[np.isfinite(center_d)], bins=edges, weights=ves_vol[np.isfinite(center_d)]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(volume_nm3 > 0, n_ves / (volume_nm3 * 1e-9), np.nan)
        fraction = np.where(volume_nm3 > 0, vol_in / volume_nm3, np.nan)
    return pd.DataFrame(
        {
            "layer": np.arange(1, len(edges)),
            "distance_min_nm": edges[:-1],
            "distance_max_nm": edges[1:],
            "volume_um3": volume_nm3 * 1e-9,
            "n_vesicles": n_ves,
            "density_per_um3": density,
            "volume_fraction": fraction,
        }
    )


def layer_labels(
    az_mask: np.ndarray,
    compartment: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    *,
    layer_nm: float = 10.0,
    max_nm: float = 250.0,
    factor: int = 1,
    membrane_thickness_nm: float = 4.5,
) -> np.ndarray:
    """int16 layer ids (1, 2, ... from the AZ, ``layer_nm`` thick, up to ``max_nm``) on the
    compartment's voxels, like Pyto's layers volume; distances measured on the grid binned
    by ``factor`` (as in :func:`distance_layers`), then spread back to the input grid."""
    from synapseg.context.grid import upsample

    vs = np.asarray(voxel_size_zyx(voxel_size_nm), float)
    azc = block_max(np.asarray(az_mask).view(np.uint8), factor) > 0
    dist = ndimage.distance_transform_edt(~azc, sampling=vs * factor) + membrane_thickness_nm / 2
    ids = np.floor(dist / layer_nm).astype(np.int32) + 1
    ids[dist >= max_nm] = 0
    out = upsample(ids.astype(np.int16), factor, az_mask.shape)
    for z in range(out.shape[0]):
        out[z][~np.asarray(compartment[z], bool)] = 0
    return out


def layer_facts(layers: pd.DataFrame | None) -> dict[str, Any]:
    """The report's summary of the layers (first 100 nm)."""
    if layers is None:
        return {}
    near = layers[layers["distance_max_nm"] <= 100.0]
    return {
        "layer_nm": float(layers["distance_max_nm"].iloc[0]),
        "n_layers": int(len(layers)),
        "vesicles_within_100nm": int(near["n_vesicles"].sum()),
        "density_per_um3_within_100nm": round(
            float(near["n_vesicles"].sum() / max(near["volume_um3"].sum(), 1e-12)), 1
        ),
    }
