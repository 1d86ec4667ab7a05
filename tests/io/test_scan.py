"""The streaming finiteness/range scan and the lazy block views (io.scan, io.lazy)."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.io.lazy import BlockView
from synapseg.io.scan import check_finite, scan_volume
from synapseg.io.volume import Volume


def _noise(shape=(12, 20, 24), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("chunk_voxels", [1, 500, 10_000_000])
def test_scan_counts_every_kind_and_section_across_chunks(chunk_voxels):
    data = _noise()
    data[3, 0, 0] = np.nan
    data[3, 5, 5] = np.inf
    data[9, 19, 23] = -np.inf
    data[9, 1, 1] = np.nan
    res = scan_volume(data, chunk_voxels=chunk_voxels)
    assert (res.n_nan, res.n_posinf, res.n_neginf, res.n_nonfinite) == (2, 1, 1, 4)
    assert (res.first_nonfinite_z, res.last_nonfinite_z, res.n_nonfinite_sections) == (3, 9, 2)
    finite = data[np.isfinite(data)]
    assert res.min == pytest.approx(float(finite.min()))
    assert res.max == pytest.approx(float(finite.max()))
    assert res.n_voxels == data.size


def test_scan_of_clean_and_integer_data():
    res = scan_volume(_noise())
    assert res.n_nonfinite == 0 and res.first_nonfinite_z is None
    ints = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 5
    res = scan_volume(ints, chunk_voxels=3)
    assert (res.min, res.max, res.n_nonfinite) == (-5, 18, 0)


def test_block_view_fills_and_casts_per_block_without_touching_the_source():
    data = _noise().astype(np.float16)
    data[2, 3, 4] = np.nan
    view = BlockView(data, dtype=np.float32, fill_value=7.0)
    assert view.dtype == np.float32 and view.shape == data.shape and view.ndim == 3
    block = view[1:3]
    assert block.dtype == np.float32 and block[1, 3, 4] == 7.0
    assert np.isnan(data[2, 3, 4])  # the source is unchanged
    whole = np.asarray(view)
    assert np.isfinite(whole).all()
    np.testing.assert_array_equal(whole[0], data[0].astype(np.float32))


def test_check_finite_refuses_or_fills_with_the_median():
    data = _noise()
    data[5] = np.nan
    vol = Volume(data, (1.0, 1.0, 1.0))
    n_bad = data[5].size
    with pytest.raises(InputError, match=rf"{n_bad} NaN voxel.*first at z=5.*--fill-nonfinite"):
        check_finite(vol)
    filled, facts = check_finite(vol, "median")
    assert facts["fill_nonfinite"]["n_filled"] == n_bad
    expected = float(np.median(data[np.isfinite(data)]))
    assert facts["fill_nonfinite"]["value"] == pytest.approx(expected, abs=0.05)
    assert np.isfinite(np.asarray(filled.data)).all() and facts["warnings"]
    with pytest.raises(InputError, match="unknown method"):
        check_finite(vol, "zero")


def test_all_nonfinite_volume_is_refused_even_with_fill():
    vol = Volume(np.full((3, 4, 5), np.nan, np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="every voxel is NaN or inf"):
        check_finite(vol, "median")


def test_extreme_finite_values_give_a_warning():
    data = _noise()
    data[4, 4, 4] = 3e30
    _, facts = check_finite(Volume(data, (1.0, 1.0, 1.0)))
    assert any("extreme" in w for w in facts["warnings"])
    _, facts = check_finite(Volume(_noise(), (1.0, 1.0, 1.0)))
    assert facts["warnings"] == []


def test_scan_reads_two_chunks_at_once(monkeypatch):
    """Two z-chunks are scanned at the same time (numpy's reductions release the GIL: the
    whole-volume scan takes about half the wall time on 2 cores), with the same result."""
    import threading

    import synapseg.io.scan as scan_mod

    monkeypatch.setattr(scan_mod, "available_cores", lambda: 2)
    data = np.arange(8 * 4 * 4, dtype=np.float32).reshape(8, 4, 4)
    data[5, 1, 2] = np.nan
    barrier = threading.Barrier(2, timeout=10)  # broken unless two readers meet

    class TwoReaders:
        shape, dtype = data.shape, data.dtype

        def __getitem__(self, key):
            if key.start < 4:  # the first two chunks wait for each other
                barrier.wait()
            return data[key]

    res = scan_volume(TwoReaders(), chunk_voxels=2 * 16)
    assert (res.n_nan, res.first_nonfinite_z, res.min, res.max) == (1, 5, 0.0, 127.0)
