import numpy as np
import pytest

from synapseg.simulate.shapes import (
    Ellipsoid,
    Profile,
    Sphere,
    bilayer,
    random_rotation,
    render,
)


def test_profile_table_matches_its_formula():
    prof = Profile(bilayer(0.0, 4.5), [(-np.inf, 0.0, 0.25)])
    d = np.linspace(-8, 8, 4001)
    off_step = np.abs(d) > 0.02
    np.testing.assert_allclose(prof(d)[off_step], prof.exact(d)[off_step], atol=1e-3)
    assert prof(np.array([-50.0]))[0] == pytest.approx(0.25, abs=1e-4)
    assert prof(np.array([50.0]))[0] == pytest.approx(0.0, abs=1e-4)


def test_bilayer_spans_its_thickness():
    (lo, _, s), (hi, _, _) = bilayer(0.0, 4.5)
    assert hi - lo + 2 * 1.3 * s == pytest.approx(4.5, abs=0.05)


def test_ellipsoid_distance_is_exact_on_the_axes_and_sphere_like():
    rot = random_rotation(np.random.default_rng(1))
    assert np.allclose(rot @ rot.T, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1)
    e = Ellipsoid(np.zeros(3), np.array([20.0, 15.0, 10.0]), rot)
    for axis, a in zip(rot, (20.0, 15.0, 10.0)):
        for t in (a - 2, a, a + 3):
            p = axis * t
            assert float(e(*p)) == pytest.approx(t - a, abs=0.05)
    s = Ellipsoid(np.zeros(3), np.array([12.0] * 3), np.eye(3))
    pts = np.random.default_rng(0).normal(size=(50, 3)) * 10
    np.testing.assert_allclose(s(*pts.T), np.linalg.norm(pts, axis=1) - 12, atol=1e-9)


def test_supersampled_render_conserves_a_ball_volume():
    vs = 1.5
    ball = Sphere(np.array([20.3, 21.1, 19.7]), 9.0)
    out = render(ball, Profile([], [(-np.inf, 0.0, 1.0)]), (30, 30, 30), vs, oversample=4)
    assert out is not None
    _, values, _ = out
    volume_nm3 = values.sum() * vs**3
    assert volume_nm3 == pytest.approx(4 / 3 * np.pi * 9.0**3, rel=0.01)


def test_render_outside_the_volume_is_none():
    far = Sphere(np.array([500.0, 500.0, 500.0]), 5.0)
    assert render(far, Profile(bilayer()), (10, 10, 10), 1.0) is None
