"""Small vesicle tables for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synapseg.io.tables import make_table

VOXEL_NM = (1.5, 1.0, 1.0)


def grid_table(n_side: int = 3, spacing_px: float = 60.0, radius_nm: float = 20.0) -> pd.DataFrame:
    """n_side³ vesicles on a regular grid, far apart (60 px), radius 20 nm."""
    axis = np.arange(n_side) * spacing_px + 40.0
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    centers = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
    radii = radius_nm + np.arange(len(centers)) % 5  # 20..24 nm
    return make_table(centers, radii, VOXEL_NM, score=np.linspace(1.0, 0.5, len(centers)))


@pytest.fixture
def gt_table() -> pd.DataFrame:
    return grid_table()


@pytest.fixture
def make_grid():
    """The :func:`grid_table` factory."""
    return grid_table
