"""Grid: one geometry object (shape, voxel size, origin, missing wedge)."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.core.grid import Grid
from synapseg.core.units import voxel_size_zyx
from synapseg.io.volume import Volume
from synapseg.specimen.wedge import WedgeEstimate


def test_voxel_size_zyx_broadcasts_and_copies():
    vs = voxel_size_zyx(np.array([1.2]))
    assert vs.tolist() == [1.2, 1.2, 1.2] and vs.flags.writeable
    given = np.array([3.0, 2.0, 1.0])
    out = voxel_size_zyx(given)
    out[0] = 9.0
    assert given[0] == 3.0  # a copy, never a view of the caller's array
    with pytest.raises(ValueError, match="1 or 3"):
        voxel_size_zyx((1.0, 2.0))


def test_grid_converts_px_and_nm_with_origin_and_anisotropy():
    grid = Grid((10, 20, 30), (2.0, 1.0, 0.5), origin_nm=(100.0, 0.0, -5.0))
    px = np.array([[1.0, 2.0, 3.0], [0.0, 19.5, 29.0]])
    nm = grid.to_nm(px)
    np.testing.assert_allclose(nm[0], [102.0, 2.0, -3.5])
    np.testing.assert_allclose(grid.to_px(nm), px)
    np.testing.assert_allclose(grid.lengths_px(4.0), [2.0, 4.0, 8.0])
    assert grid.extent_nm == (20.0, 20.0, 15.0)


def test_grid_carries_the_wedge_and_survives_json():
    wedge = WedgeEstimate("x", 55.0, dual_axis=False, quality=0.8, source="estimated")
    grid = Grid.of(Volume(np.zeros((4, 5, 6), np.float32), (1.5, 1.5, 1.5)))
    assert grid.tilt_range_deg is None and grid.tilt_axis is None
    with_wedge = grid.with_wedge(wedge)
    assert with_wedge.tilt_axis == "x" and with_wedge.tilt_range_deg == 55.0
    assert Grid.from_json(with_wedge.to_json()) == with_wedge
    assert grid.wedge is None  # frozen: with_wedge made a copy
    with pytest.raises(AttributeError):
        grid.shape = (1, 1, 1)  # type: ignore[misc]


def test_grid_rejects_bad_geometry():
    with pytest.raises(ValueError, match="positive"):
        Grid((4, 4, 4), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3 positive sizes"):
        Grid((4, 4), 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="voxel_size_nm"):
        Grid.of(np.zeros((2, 2, 2)))
