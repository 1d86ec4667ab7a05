"""Cell statistics: exact against numpy per cell, non-finite voxels ignored."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.specimen.mask import cell_statistics


def expected(vol: np.ndarray, cell: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    cz, cy, cx = cell
    sz = 2 if cz >= 4 else 1
    shape = [-(-n // c) for n, c in zip(vol.shape, cell)]
    mean, std = np.full(shape, np.nan), np.zeros(shape)
    for k in range(shape[0]):
        for j in range(shape[1]):
            for i in range(shape[2]):
                block = vol[
                    k * cz : (k + 1) * cz : sz, j * cy : (j + 1) * cy, i * cx : (i + 1) * cx
                ]
                v = block[np.isfinite(block)].astype(np.float64)
                if v.size:
                    mean[k, j, i], std[k, j, i] = v.mean(), v.std()
    return mean, std


@pytest.mark.parametrize("cell", [(3, 5, 6), (4, 4, 7)])
def test_cell_statistics_ignore_nan_and_inf(cell):
    rng = np.random.default_rng(3)
    vol = (rng.normal(0, 2, (13, 17, 19)) + 50).astype(np.float32)
    vol[1, 2, 3] = np.nan
    vol[8, 16, 18] = np.inf  # a partial edge cell
    vol[3:9, :5, :7] = -np.inf  # whole cells non-finite: mean NaN, std 0
    mean, std = cell_statistics(vol, cell)
    want_mean, want_std = expected(vol, cell)
    np.testing.assert_array_equal(np.isnan(mean), np.isnan(want_mean))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(std, want_std, rtol=1e-6, atol=1e-9)


def test_cell_statistics_reduce_two_layers_at_a_time(monkeypatch):
    """Two cell layers are reduced at the same time (numpy releases the GIL: the specimen
    mask of the reference volume takes about half the wall time), with the same result."""
    import threading

    rng = np.random.default_rng(4)
    vol = rng.normal(0, 1, (12, 16, 16)).astype(np.float32)
    barrier = threading.Barrier(2, timeout=10)  # broken unless two layers meet
    calls = []
    real = np.add.reduceat

    class Waiting:
        def __getattr__(self, name):
            return getattr(np.add, name)

        def reduceat(self, *a, **k):
            if threading.current_thread() is not threading.main_thread() and len(calls) < 2:
                calls.append(1)
                barrier.wait()
            return real(*a, **k)

    want = cell_statistics(vol, (3, 8, 8))
    monkeypatch.setattr(np, "add", Waiting())
    got = cell_statistics(vol, (3, 8, 8))
    assert len(calls) == 2
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_cell_statistics_read_one_section_at_a_time_when_sections_are_large(monkeypatch):
    """A section larger than the read budget is read alone (a 4096×4096 store's cells were
    computed on 11-section float32 blocks plus their float64 squares: ~1.5 GB)."""
    import synapseg.specimen.mask as module

    rng = np.random.default_rng(5)
    vol = rng.normal(0, 1, (23, 16, 16)).astype(np.float32)
    want = cell_statistics(vol, (5, 4, 4))
    sizes = []

    class Recording:
        shape, dtype = vol.shape, vol.dtype

        def __getitem__(self, key):
            got = vol[key]
            sizes.append(got.shape[0])
            return got

    monkeypatch.setattr(module, "_READ_VOXELS", 100)  # less than a 16×16 section
    got = cell_statistics(Recording(), (5, 4, 4))
    assert max(sizes) == 1 and sum(sizes) == 3 * 4 + 2  # sections 0, 2, 4 of each layer
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9)
