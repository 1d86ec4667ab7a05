"""Rescaling between grids, streaming, and robust normalisation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage

from synapseg.errors import InputError, VoxelSizeError
from synapseg.infer.preprocess import (
    antialias_sigma,
    check_rescale,
    grid_shape,
    input_to_model_px,
    model_to_input_px,
    normalise_config,
    normalise_stats,
    resample_stream,
    rescale_factors,
    rescale_volume,
)


def _reference(data, vin, vm):
    """Whole-volume scipy reference: Gaussian pre-filter + affine (linear) resampling."""
    f = rescale_factors(vin, vm)
    sigma = antialias_sigma(f)
    if sigma.any():
        data = ndimage.gaussian_filter(data, sigma, mode="nearest")
    return ndimage.affine_transform(
        data, 1 / f, output_shape=grid_shape(data.shape, vin, vm), order=1, mode="nearest"
    )


@pytest.mark.parametrize("vin,vm", [(1.469, 2.0), (0.6, 2.0), (2.5, 1.6), ((1.2, 1.5, 1.7), 1.8)])
def test_rescale_matches_scipy_reference(vin, vm, rng):
    data = rng.normal(size=(23, 31, 29)).astype(np.float32)
    np.testing.assert_allclose(rescale_volume(data, vin, vm), _reference(data, vin, vm), atol=1e-5)


def test_stream_in_small_chunks_equals_whole(rng):
    data = rng.normal(size=(40, 20, 24)).astype(np.float32)
    vin, vm = 0.7, 1.9  # strong downsampling: wide filter, needs chunk margins
    f = rescale_factors(vin, vm)
    dst = grid_shape(data.shape, vin, vm)
    out = np.full(dst, np.nan, dtype=np.float32)
    calls = []

    def read(a, b):
        calls.append((a, b))
        return data[a:b]

    def write(a, b, block):
        out[a:b] = block

    resample_stream(read, data.shape, dst, f, write, chunk_voxels=20 * 24 * 6)
    assert len(calls) > 3 and max(b - a for a, b in calls) <= 6  # reads bounded by the chunk
    np.testing.assert_array_equal(out, rescale_volume(data, vin, vm))


def test_strong_downsampling_stays_bounded(rng):
    """Unbinned input (5x finer than the model): each step holds a bounded number of voxels."""
    data = rng.normal(size=(60, 50, 50)).astype(np.float32)
    vin, vm = 0.36, 1.8
    f = rescale_factors(vin, vm)
    dst = grid_shape(data.shape, vin, vm)
    reads, writes = [], []
    out = np.zeros(dst, np.float32)

    def write(a, b, block):
        writes.append(block.size)
        out[a:b] = block

    def read(a, b):
        reads.append((b - a) * 50 * 50)
        return data[a:b]

    resample_stream(read, data.shape, dst, f, write, chunk_voxels=50 * 50 * 4)
    assert max(reads) <= 50 * 50 * 4
    assert sum(reads) < 3 * data.size  # each section is read (and shrunk) at most ~3 times
    np.testing.assert_allclose(out, _reference(data, vin, vm), atol=1e-5)


def test_round_trip_shapes_and_coordinates():
    shape, vin, vm = (261, 1024, 1023), 1.469, 1.9
    grid = grid_shape(shape, vin, vm)
    assert grid == tuple(int(np.floor((n - 1) * vin / vm + 1e-6)) + 1 for n in shape)
    # the model grid spans the input: its last voxel is within one model voxel of the end
    for n, g in zip(shape, grid):
        assert (g - 1) * vm <= (n - 1) * vin < g * vm
    pts = np.array([[0, 0, 0], [260, 1023, 1022], [13.25, 400.5, 7.0]])
    np.testing.assert_allclose(model_to_input_px(input_to_model_px(pts, vin, vm), vin, vm), pts)
    # voxel i sits at i * voxel size nm on both grids
    np.testing.assert_allclose(input_to_model_px(pts, vin, vm) * vm, pts * vin)


def test_point_lands_at_the_mapped_coordinate():
    shape, vin, vm = (40, 60, 50), 1.0, 1.7
    data = np.zeros(shape, dtype=np.float32)
    center = np.array([17.0, 34.0, 25.5])
    zz, yy, xx = np.indices(shape)
    data[:] = np.exp(-((zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2) / 18)
    small = rescale_volume(data, vin, vm)
    found = np.array(ndimage.center_of_mass(small))
    np.testing.assert_allclose(found, input_to_model_px(center, vin, vm), atol=0.1)
    back = rescale_volume(small, vm, vin)
    np.testing.assert_allclose(ndimage.center_of_mass(back), center, atol=0.2)


def test_antialiasing_removes_aliasing():
    x = np.arange(64)
    stripes = np.broadcast_to(np.cos(np.pi * x)[None, None, :], (8, 8, 64)).astype(np.float32)
    assert np.abs(stripes[..., ::3]).max() == 1  # plain subsampling keeps them at full contrast
    down = rescale_volume(stripes, 1.0, 3.0)  # the Nyquist stripes must not survive
    assert np.abs(down[..., 2:-2]).max() < 0.05  # (away from the clamped edges)


def test_check_rescale_limits(caplog):
    with pytest.raises(VoxelSizeError, match="coarser than the model"):
        check_rescale(9.0, 2.0, "tomo.mrc")
    assert check_rescale(7.9, 2.0).max() == pytest.approx(3.95)
    logger = logging.getLogger("synapseg")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="synapseg"):
            check_rescale(0.4, 2.0, "unbinned.mrc")
    finally:
        logger.removeHandler(caplog.handler)
    assert "finer than the model" in caplog.text and "binvol" in caplog.text


def test_normalise_stats_are_robust(rng):
    data = rng.normal(5.0, 2.0, size=200_000).astype(np.float32)
    data[:50] = 1e6  # hot pixels
    data[50:60] = np.nan
    stats = normalise_stats(data)
    assert stats.hi < 20 and stats.mean == pytest.approx(5.0, abs=0.05)
    assert stats.std == pytest.approx(2.0, rel=0.05)
    norm = stats.apply(data[60:])
    assert abs(norm.mean()) < 0.01 and norm.max() < 4
    np.testing.assert_allclose(stats.apply(data[60:100], invert=True), -norm[:40])
    with pytest.raises(InputError, match="constant"):
        normalise_stats(np.ones(100))


def test_normalise_config():
    assert normalise_config({"method": "percentile_zscore", "clip_percentiles": [1, 99]}) == (1, 99)
    with pytest.raises(InputError, match="unknown normalisation"):
        normalise_config({"method": "minmax"})
