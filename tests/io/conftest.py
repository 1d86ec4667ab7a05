"""Shared fixtures of the table tests (test_tables, test_star)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from synapseg.io.tables import CORE_COLUMNS, make_table

TABLE_VOXEL_NM = (1.5, 1.2, 1.2)  # the voxel size (VS) of test_tables and test_star


@pytest.fixture
def table() -> pd.DataFrame:
    """Six vesicles with edited (gapped) ids, scores and one QC column, voxel size 1.5/1.2/1.2."""
    rng = np.random.default_rng(3)
    centers = rng.uniform([5, 5, 5], [35, 58, 70], (6, 3))
    return make_table(
        centers,
        rng.uniform(15, 25, 6),
        TABLE_VOXEL_NM,
        score=rng.uniform(0.5, 1, 6),
        ids=[1, 2, 5, 8, 9, 12],
        membrane_contrast=rng.normal(size=6),
    )


def _assert_tables_equal(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-4) -> None:
    assert list(a.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    np.testing.assert_array_equal(a["id"].to_numpy(), b["id"].to_numpy())
    for col in CORE_COLUMNS[1:]:
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), atol=atol)


@pytest.fixture
def assert_tables_equal() -> Callable[..., None]:
    """``assert_tables_equal(a, b, atol=1e-4)``: same core columns, ids and values.

    A fixture because test modules cannot import conftest under ``--import-mode=importlib``.
    """
    return _assert_tables_equal
