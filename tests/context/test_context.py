"""Membrane classes, active zone, compartment, distances and layers on exact membranes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synapseg.context import (
    add_az_columns,
    analyse_context,
    assign_pools,
    az_distances,
    midplane,
)

from .conftest import VOXEL_NM, truth_probabilities


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_membrane_classes_match_the_truth(synapse, synapse_context):
    truth, found = synapse.membrane_labels, synapse_context.membranes
    for cls in (1, 3, 4):
        assert _dice(truth == cls, found == cls) > 0.95, cls
    assert synapse_context.membranes.dtype == np.uint8


def test_active_zone_found_with_cleft(synapse, synapse_context):
    az = synapse_context.az
    assert az is not None and az.facts["found"]
    assert az.mask.shape == synapse.membrane_labels.shape and az.mask.dtype == bool
    # the whole plasma membrane faces the cleft, except where the partner leaves the volume
    assert _dice(az.mask, synapse.membrane_labels == 1) > 0.9
    assert abs(az.facts["cleft_width_nm_estimate"] - synapse.info["cleft_width_nm"]) < 1.0
    np.testing.assert_allclose(np.linalg.norm(az.normals, axis=1), 1.0, atol=1e-6)
    assert len(az.faces) > 0 and az.faces.max() < len(az.vertices_nm)
    # normals point into the presynaptic cytoplasm: towards the vesicles
    centers = synapse.vesicles[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
    toward = np.median(centers, axis=0) - az.points_nm
    assert np.mean(np.einsum("ij,ij->i", toward, az.normals) > 0) > 0.95


def test_no_active_zone_without_cleft(no_cleft):
    ctx = analyse_context(
        truth_probabilities(no_cleft.membrane_labels), no_cleft.vesicles, VOXEL_NM
    )
    assert ctx.az is None and ctx.facts["active_zone"]["found"] is False
    assert ctx.vesicles["az_distance_nm"].isna().all()
    assert (ctx.vesicles["pool"] == "").all()
    assert ctx.layers is None
    assert (ctx.membranes[no_cleft.membrane_labels == 1] == 1).mean() > 0.95  # still plasma


def test_az_distance_and_pools_match_the_truth(synapse, synapse_context):
    truth = synapse.truth
    found = synapse_context.vesicles
    near = truth["az_distance_nm"].to_numpy() <= 100
    err = np.abs(found["az_distance_nm"].to_numpy() - truth["az_distance_nm"].to_numpy())[near]
    assert near.sum() >= 5
    assert np.median(err) <= 1.0
    pools = assign_pools(truth["az_distance_nm"].to_numpy())
    assert np.mean(pools == found["pool"].to_numpy()) >= 0.95
    nearest = found[["az_nearest_z_nm", "az_nearest_y_nm", "az_nearest_x_nm"]].to_numpy()
    true_nearest = truth[["az_nearest_z_nm", "az_nearest_y_nm", "az_nearest_x_nm"]].to_numpy()
    # along the membrane the nearest point moves with the normal's error × distance
    assert np.median(np.linalg.norm(nearest - true_nearest, axis=1)[near]) < 4.0


def test_compartment_is_the_presynaptic_cytoplasm(synapse, synapse_context):
    comp = synapse_context.compartment
    assert comp is not None and comp.dtype == bool
    px = np.rint(synapse.vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy())
    px = px.astype(int)
    assert comp[px[:, 0], px[:, 1], px[:, 2]].mean() > 0.95  # vesicles lie inside it
    labels = synapse.membrane_labels
    assert not comp[labels == 1].any() and not comp[labels == 4].any()
    # the postsynaptic side (beyond the partner membrane along the AZ normal) is outside
    az = synapse_context.az
    n = np.median(az.normals, axis=0)
    q = az.points_nm.mean(axis=0)
    beyond = q - n * 60.0
    idx = np.clip(np.rint(beyond / VOXEL_NM).astype(int), 0, np.array(comp.shape) - 1)
    assert not comp[tuple(idx)]


def test_layers_count_every_near_vesicle(synapse_context):
    layers = synapse_context.layers
    assert list(layers.columns[:3]) == ["layer", "distance_min_nm", "distance_max_nm"]
    t = synapse_context.vesicles
    center = t["az_distance_nm"] + t["radius_nm"]
    assert layers["n_vesicles"].sum() == int((center < layers["distance_max_nm"].max()).sum())
    assert (layers["volume_um3"] > 0).all()
    assert synapse_context.facts["layers"]["n_layers"] == len(layers)


def test_midplane_of_a_tilted_slab_is_exact():
    vs = 1.0
    n = np.array([0.3, 0.5, 0.81])
    n /= np.linalg.norm(n)
    grid = np.argwhere(np.ones((40, 60, 60), bool)) * vs
    d = (grid - [20, 30, 30]) @ n
    slab = np.abs(d) <= 2.25
    points, normals, _ = midplane(grid[slab], np.ones(slab.sum()), 6.0)
    inner = np.all((points > 8) & (points < [32, 52, 52]), axis=1)
    offset = (points[inner] - [20, 30, 30]) @ n
    assert np.median(np.abs(offset)) < 0.15 and np.abs(offset).max() < 0.4  # 1 nm voxels
    assert np.min(np.abs(normals[inner] @ n)) > 0.99


def test_az_distances_of_spheres_near_a_plane():
    ys, xs = np.meshgrid(np.arange(-50, 51, 2.0), np.arange(-50, 51, 2.0))
    points = np.c_[np.zeros(ys.size), ys.ravel(), xs.ravel()]
    normals = np.tile([1.0, 0, 0], (len(points), 1))
    centers = np.array([[30.0, 1.0, 1.0], [-25.0, 3.3, -7.7], [12.0, 0.5, 0.5]])
    dist, nearest = az_distances(centers, np.array([20.0, 20.0, 10.0]), points, normals)
    np.testing.assert_allclose(dist, [10.0, 5.0, 2.0], atol=1e-9)
    np.testing.assert_allclose(nearest[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(nearest[1, 1:], [3.3, -7.7], atol=1e-9)


def test_pools_and_empty_columns():
    pools = assign_pools(np.array([0.0, 4.99, 5.0, 45.0, 45.1, np.nan]), 5.0, 45.0)
    assert pools.tolist() == ["docked", "docked", "proximal", "proximal", "distal", ""]
    table = pd.DataFrame(
        {"center_z_px": [1.0], "center_y_px": [2.0], "center_x_px": [3.0], "radius_nm": [20.0]}
    )
    out = add_az_columns(table, None, 1.0)
    assert np.isnan(out["az_distance_nm"][0]) and out["pool"][0] == ""
    assert "az_distance_nm" not in table  # a copy
