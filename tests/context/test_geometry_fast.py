"""Context geometry helpers made fast for issue 14's time: the plasma-membrane sheet's
signed height a whole z-section at once, and block maxima; both equal their plain versions."""

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


def test_block_max_is_the_maximum_of_each_block_partial_ones_included():
    """``block_max`` (strided sub-grid maxima) against the plain definition, for factors 2
    and 3 on shapes that leave partial blocks on every axis."""
    from synapseg.context.grid import block_max

    rng = np.random.default_rng(6)
    volume = rng.integers(0, 255, (7, 11, 13), dtype=np.uint8)
    for f in (1, 2, 3):
        got = block_max(volume, f)
        shape = tuple(-(-s // f) for s in volume.shape)
        assert got.shape == shape and got.dtype == np.uint8
        for k, j, i in np.ndindex(*shape):
            block = volume[k * f : (k + 1) * f, j * f : (j + 1) * f, i * f : (i + 1) * f]
            assert got[k, j, i] == block.max()


def test_membrane_stage_resamples_numpy_targets_in_two_threads(tmp_path):
    """The membrane stage's two resamplings run RESAMPLE_WORKERS threads into numpy arrays
    and memory maps (disjoint rows), one into a zarr array."""
    import zarr

    from synapseg.context.membrane_net import _workers
    from synapseg.infer.preprocess import RESAMPLE_WORKERS

    mapped = np.lib.format.open_memmap(tmp_path / "m.npy", "w+", np.uint8, (4, 4, 4))
    assert RESAMPLE_WORKERS >= 2
    assert _workers(np.zeros((4, 4, 4))) == _workers(mapped) == RESAMPLE_WORKERS
    assert _workers(zarr.zeros((4, 4, 4), chunks=(2, 4, 4))) == 1


def test_membrane_writer_rounds_in_place_as_before():
    """The uint8 writer of the membrane map (rounded, clipped, in place) writes what the
    out-of-place conversion wrote, into numpy and zarr targets alike."""
    import zarr

    from synapseg.context.membrane_net import _writer

    rng = np.random.default_rng(0)
    block = (rng.random((3, 5, 7)) * 300 - 20).astype(np.float32)
    block[0, 0, :3] = [0.5, 1.5, 254.5]  # rounding ties: to even, as numpy's rint
    want = np.clip(np.rint(block), 0, 255).astype(np.uint8)
    for target in (np.zeros((5, 5, 7), np.uint8), zarr.zeros((5, 5, 7), dtype=np.uint8)):
        _writer(target, to_uint8=True)(1, 4, block.copy())
        np.testing.assert_array_equal(target[1:4], want)
