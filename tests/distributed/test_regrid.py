"""The lazy model-grid rows of the whole-volume decisions: the whole-volume rescale's values."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.distributed.regrid import ModelGridRows
from synapseg.infer.preprocess import grid_shape, rescale_factors, rescale_volume


@pytest.mark.parametrize("band_voxels", [10**9, 700])  # one band; many bands of a few rows
def test_model_grid_rows_equal_the_whole_volume_rescale(monkeypatch, band_voxels):
    import synapseg.distributed.regrid as regrid

    monkeypatch.setattr(ModelGridRows, "BAND_VOXELS", band_voxels)
    heights = []

    def recording(read, src_shape, region, factors):
        heights.append(region[1].stop - region[1].start)
        return real(read, src_shape, region, factors)

    real = regrid.resample_region
    monkeypatch.setattr(regrid, "resample_region", recording)
    rng = np.random.default_rng(2)
    vol = rng.integers(-100, 100, (19, 41, 37)).astype(np.int8)
    vs_in, vs_model = (1.8, 1.7, 2.1), 1.469
    whole = rescale_volume(vol, vs_in, vs_model)
    shape = grid_shape(vol.shape, vs_in, vs_model)
    rows = ModelGridRows(vol, rescale_factors(vs_in, vs_model), shape)
    for z in (0, 7, shape[0] - 1):
        for ys, xs in ((slice(None), slice(None)), (slice(None, None, 3), slice(1, None, 2))):
            np.testing.assert_array_equal(rows[z, ys, xs], whole[z, ys, xs])
    assert rows[3, slice(0, 0), slice(None)].shape == (0, shape[2])
    if band_voxels < 10**6:  # bounded: a few model rows at a time, not the whole row
        assert max(heights) < shape[1] // 3
