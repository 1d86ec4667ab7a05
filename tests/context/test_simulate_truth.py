"""The simulator's context ground truth: membrane classes, the active zone, az_distance_nm."""

from __future__ import annotations

import numpy as np

from synapseg.simulate import MEMBRANE_CLASSES
from synapseg.simulate.context import paraboloid_nearest
from synapseg.simulate.shapes import CurvedPlane

from .conftest import phantom


def test_postsynaptic_membrane_has_its_own_class(synapse, no_cleft):
    assert MEMBRANE_CLASSES[4] == "postsynaptic membrane"
    assert (synapse.membrane_labels == 4).sum() > 1000
    assert not (no_cleft.membrane_labels == 4).any()
    assert (no_cleft.membrane_labels == 1).any()


def test_active_zone_recorded_only_with_a_cleft(synapse, no_cleft):
    assert synapse.info["active_zone"] is True
    assert no_cleft.info["active_zone"] is False
    assert synapse.truth["az_distance_nm"].notna().all()
    assert no_cleft.truth["az_distance_nm"].isna().all()
    plain = phantom(23, plasma_membrane=False)
    assert "active_zone" not in plain.info and plain.truth["az_distance_nm"].isna().all()


def test_vesicle_table_bytes_unchanged(synapse):
    """The truth columns are not in the simulator's table (vesicles.csv stays byte-identical)."""
    assert not any(c.startswith("az_") for c in synapse.vesicles.columns)


def test_true_az_distance_is_midline_to_midplane(synapse):
    t = synapse.truth
    spheres = t["elongation"].to_numpy() == 1.0
    # outer-surface gap + the two half bilayers, to the curvature's second order
    expected = t["membrane_distance_nm"] + 4.5
    np.testing.assert_allclose(t["az_distance_nm"][spheres], expected[spheres], atol=0.3)
    assert (t["az_distance_nm"] > 0).all()


def test_paraboloid_nearest_matches_brute_force():
    normal = np.array([0.1, 0.6, 0.79])
    pm = CurvedPlane(np.array([50.0, 60, 70]), normal / np.linalg.norm(normal), 1 / 800)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 200, (5, 3))
    dist, nearest = paraboloid_nearest(pm, points)
    n = pm.normal / np.linalg.norm(pm.normal)
    e1 = np.cross(n, [1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    s, t = np.meshgrid(np.linspace(-400, 400, 1601), np.linspace(-400, 400, 1601))
    surf = pm.point_nm + s[..., None] * e1 + t[..., None] * e2
    surf -= (pm.curvature_per_nm / 2 * (s**2 + t**2))[..., None] * n
    for p, d, q in zip(points, dist, nearest):
        brute = np.linalg.norm(surf - p, axis=-1).min()
        assert abs(d - brute) < 0.05
        assert abs(float(pm(*q))) < 1e-6
