import numpy as np

from synapseg.simulate.reconstruct import (
    backprojection_matrix,
    project,
    projection_matrix,
    weighted_backprojection,
)


def test_zero_tilt_projection_is_the_sum_over_z():
    rng = np.random.default_rng(0)
    vol = rng.random((8, 5, 12)).astype(np.float32)
    proj = project(vol, np.array([0.0]))
    np.testing.assert_allclose(proj[0], vol.sum(axis=0), rtol=1e-5)


def test_projection_preserves_mass_inside_the_field_of_view():
    z, x = np.mgrid[:24, :40]
    blob = np.exp(-((z - 12.3) ** 2 + (x - 19.6) ** 2) / (2 * 2.0**2)).astype(np.float32)
    vol = np.repeat(blob[:, None, :], 3, axis=1)
    proj = project(vol, np.array([-40.0, 0.0, 30.0, 60.0]))
    np.testing.assert_allclose(proj.sum(axis=2)[:, 0], blob.sum(), rtol=0.01)


def test_matrices_have_the_expected_shapes():
    a = np.arange(-60, 61, 20.0)
    assert projection_matrix(10, 20, a).shape == (len(a) * 20, 200)
    assert backprojection_matrix(10, 20, a).shape == (200, len(a) * 20)


def test_wbp_puts_a_point_back_where_it_was():
    vol = np.zeros((24, 2, 40), np.float32)
    vol[9, :, 27] = 1.0
    angles = np.arange(-60, 61, 2.0)
    rec = weighted_backprojection(project(vol, angles), angles, 24)
    assert np.unravel_index(np.argmax(rec[:, 0]), rec[:, 0].shape) == (9, 27)


def test_limited_tilt_range_elongates_a_point_along_z():
    vol = np.zeros((48, 1, 48), np.float32)
    vol[24, 0, 24] = 1.0
    angles = np.arange(-50, 51, 2.0)
    rec = weighted_backprojection(project(vol, angles), angles, 48)[:, 0]
    half = rec[24, 24] / 2
    width_z = np.sum(rec[:, 24] > half)
    width_x = np.sum(rec[24, :] > half)
    assert width_z > width_x
