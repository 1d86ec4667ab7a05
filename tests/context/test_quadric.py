"""The plasma-membrane sheet's signed height: a whole z-section at once equals the
point-list version (the compartment's coarse loop uses the former, issue 14's time)."""

from __future__ import annotations

import numpy as np

from synapseg.context.classify import quadric_side, quadric_side_section


def test_section_heights_equal_the_point_list_version():
    rng = np.random.default_rng(4)
    frame = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    fit = {
        "center": np.array([50.0, 55.0, 70.0]),
        "frame": frame,
        "coef": rng.normal(size=6) * 1e-3,
    }
    y = np.arange(37) * 2.9 + 1.4
    x = np.arange(53) * 2.9 - 3.0
    got = quadric_side_section(fit, 50.0, y, x)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    want = quadric_side(fit, np.c_[np.full(yy.size, 50.0), yy.ravel(), xx.ravel()])
    assert got.shape == (37, 53)
    np.testing.assert_allclose(got, want.reshape(37, 53), rtol=0, atol=1e-9)
    assert (got > 0).any() and (got < 0).any()  # the sheet crosses this section
