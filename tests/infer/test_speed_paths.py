"""The issue-17 speed paths give the results of the plain paths they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synapseg.infer.forward import weight_tile
from synapseg.infer.preprocess import resample_block, resample_stream
from synapseg.infer.tiling import MAX_TILE_VOXELS, default_tile_shape, iter_tiles, plan_tiles
from synapseg.model.unet import UNetConfig


def _computed(grid, tiles, halo, multiple):
    return plan_tiles(grid, tiles, halo, multiple).computed_voxels


def test_default_tiles_compute_fewest_voxels_within_the_budget():
    cfg = UNetConfig(stem=2, base_channels=8, depth=3)  # sim-unet-v1's architecture
    grid, m, halo = (213, 835, 835), cfg.size_multiple, 24  # the reference volume at 1.8 nm
    tiles = default_tile_shape(grid, halo, m, cfg.min_tile)
    plan = plan_tiles(grid, tiles, halo, m)
    assert int(np.prod(plan.tile_shape)) <= MAX_TILE_VOXELS
    assert plan.computed_voxels / np.prod(grid) < 1.31  # 256³ tiles computed 1.58x
    old = _computed(grid, 256, halo, m)
    assert plan.computed_voxels < 0.85 * old
    # no other tile shape within the budget computes fewer voxels
    for edge in range(cfg.min_tile, 513, m):
        for other in ((224, edge, edge), (224, 448, edge), (224, edge, 448)):
            p = plan_tiles(grid, other, halo, m)
            if int(np.prod(p.tile_shape)) <= MAX_TILE_VOXELS:
                assert p.computed_voxels >= plan.computed_voxels


def test_default_tiles_respect_a_small_budget():
    tiles = default_tile_shape((300, 900, 900), 24, 16, 208, max_voxels=300 * 2**10 * 80)
    assert int(np.prod(plan_tiles((300, 900, 900), tiles, 24, 16).tile_shape)) <= 300 * 2**10 * 80


def test_weight_tile_equals_the_window_volume(rng):
    plan = plan_tiles((40, 70, 90), (16, 32, 32), 4, 4)
    for tile in iter_tiles(plan):
        src, dst = tile.data_slices(plan.shape)
        probs = rng.random((1, *plan.tile_shape)).astype(np.float32)
        expected = probs[(slice(None), *dst)] * plan.weight(tile)[dst]
        got = weight_tile(probs.copy(), plan, tile, dst)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)  # float32 rounding


@pytest.mark.parametrize("workers", [2, 3])
def test_threaded_resampling_is_identical(rng, workers):
    src = rng.normal(size=(53, 61, 47)).astype(np.float32)
    f = np.array([0.8, 0.7, 1.3])
    dst = tuple(int(np.floor((n - 1) * fi + 1e-6)) + 1 for n, fi in zip(src.shape, f))
    outs = []
    for w in (1, workers):
        out = np.full(dst, np.nan, np.float32)

        def write(a, b, block, out=out):
            out[a:b] = block

        resample_stream(
            lambda a, b: src[a:b], src.shape, dst, f, write, chunk_voxels=2000, workers=w
        )
        outs.append(out)
    assert np.isfinite(outs[0]).all()
    assert np.array_equal(outs[0], outs[1])


def test_a_zero_radius_antialias_filter_is_skipped_exactly(rng):
    # 1.469 -> 1.8 nm: sigma 0.11 voxels, truncated to radius 0: scipy's kernel is [1.0]
    block = rng.normal(size=(6, 20, 20)).astype(np.float32)
    sigma = (0.1125, 0.1125, 0.1125)
    coords = (None, np.arange(16) / 0.816, np.arange(16) / 0.816)
    got = resample_block(block, coords, sigma)
    filtered = ndimage.gaussian_filter1d(block, sigma[1], axis=1, mode="nearest", truncate=4.0)
    filtered = ndimage.gaussian_filter1d(filtered, sigma[2], axis=2, mode="nearest", truncate=4.0)
    assert np.array_equal(filtered, block)  # the filter it skips is the identity
    assert np.array_equal(got, resample_block(filtered, coords, (0, 0, 0)))


def test_the_tile_loop_reuses_one_input_and_one_output_buffer(monkeypatch):
    """run_tiles makes its batch and probability buffers once and every forward pass fills
    the same output in place (issue 17: no tile's arrays outlive its pass)."""
    import torch

    import synapseg.infer.forward as fwd

    plan = plan_tiles((32, 64, 64), (32, 32, 32), 4, 16)
    assert plan.n_tiles > 2
    inputs, outputs = set(), set()

    def fake_forward(net, batch, device, channels, transforms, out=None):
        inputs.add(batch.__array_interface__["data"][0])
        outputs.add(out.__array_interface__["data"][0])
        out[:] = batch  # identity "network"
        return out

    monkeypatch.setattr(fwd, "forward_batch", fake_forward)
    acc = np.zeros((1, 32, 64, 64), np.float32)
    fwd.run_tiles(
        lambda src, out: out.fill(1.0), acc, plan, None, torch.device("cpu"), (0,), [((), 0)], 1
    )
    assert len(inputs) == 1 and len(outputs) == 1
    assert acc.min() > 0  # every voxel blended


def test_tile_buffers_are_page_locked_for_cuda_only(monkeypatch):
    """On a GPU the tile loop's host buffers are pinned (DMA uploads, issue 17's CUDA path);
    on the CPU they are plain zeroed arrays. The CUDA branch is checked by spying on
    torch.zeros, since this machine has no GPU."""
    import torch

    import synapseg.infer.forward as fwd

    cpu = fwd.host_buffer((2, 1, 4, 4, 4), torch.device("cpu"))
    assert cpu.dtype == np.float32 and cpu.shape == (2, 1, 4, 4, 4) and not cpu.any()
    calls = []
    real_zeros = torch.zeros

    def spy(*shape, **kw):
        calls.append(kw)
        return real_zeros(*shape, **{k: v for k, v in kw.items() if k != "pin_memory"})

    monkeypatch.setattr(fwd.torch, "zeros", spy)
    gpu = fwd.host_buffer((2, 1, 4, 4, 4), torch.device("cuda"))
    assert calls == [{"dtype": torch.float32, "pin_memory": True}]
    assert gpu.dtype == np.float32 and gpu.shape == (2, 1, 4, 4, 4) and not gpu.any()


def test_forward_batch_fills_out_in_place():
    import torch

    from synapseg.infer.forward import forward_batch

    net = torch.nn.Conv3d(1, 2, 3, padding=1).eval()
    batch = np.random.default_rng(0).normal(size=(2, 1, 8, 8, 8)).astype(np.float32)
    out = np.empty((2, 1, 8, 8, 8), np.float32)
    tta = [((), 0), ((2,), 0)]
    got = forward_batch(net, batch, torch.device("cpu"), (1,), tta, out=out)
    assert got is out
    np.testing.assert_array_equal(out, forward_batch(net, batch, torch.device("cpu"), (1,), tta))


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_probabilities_stored_in_place_as_the_plain_conversion(dtype):
    """``predict._store`` converts the scratch block in place (no temporaries) and writes
    what the plain conversion writes: ``probability_to_uint8`` for uint8, clipped values
    otherwise; a non-numpy target (zarr) gets its own dtype."""
    import zarr

    from synapseg.infer.predict import _store, probability_to_uint8

    rng = np.random.default_rng(5)
    block = (rng.random((3, 7, 9), dtype=np.float32) * 1.4 - 0.2).astype(np.float32)
    block[0, 0, :3] = [0.5 / 255, 1.5 / 255, 254.5 / 255]  # rounding ties
    if dtype == np.uint8:
        want = probability_to_uint8(block)
    else:
        want = np.clip(block, 0, 1).astype(dtype)
    out = np.zeros((5, 7, 9), dtype)
    _store(out, slice(1, 4), block.copy())
    np.testing.assert_array_equal(out[1:4], want)
    z = zarr.zeros((5, 7, 9), dtype=dtype, chunks=(2, 7, 9))
    _store(z, slice(1, 4), block.copy())
    np.testing.assert_array_equal(z[1:4], want)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float16])
@pytest.mark.parametrize(("shape", "axis"), [((12, 300, 300), 0), ((2, 12, 300, 300), 1)])
def test_row_by_row_interpolation_equals_the_gather(monkeypatch, dtype, shape, axis):
    """Along z (large rows) ``resample_axis`` interpolates plane by plane: bit-identical to
    the two-gather version, coordinates clamped at both ends."""
    from synapseg.infer import preprocess

    rng = np.random.default_rng(2)
    data = (rng.normal(size=shape) * 50).astype(dtype)
    coords = np.linspace(-1.0, shape[axis] + 0.5, 17)
    rows = preprocess.resample_axis(data, axis, coords)
    monkeypatch.setattr(preprocess, "_ROW_LOOP_VOXELS", 10**12)  # force the gather
    gather = preprocess.resample_axis(data, axis, coords)
    assert rows.dtype == gather.dtype == np.float32
    np.testing.assert_array_equal(rows, gather)


def test_prepared_network_is_reused_until_its_weights_change():
    """``prepare_net`` gives the same prepared copy for the same network and device (the
    polarity decision and the prediction share it), and a new one once a weight changed,
    even through ``.data`` (which leaves torch's version counters alone)."""
    import torch

    from synapseg.infer.forward import prepare_net
    from synapseg.model.unet import build_unet

    net = build_unet(UNetConfig(stem=2, base_channels=4, depth=2), seed=0)
    cpu = torch.device("cpu")
    first = prepare_net(net, cpu)
    assert prepare_net(net, cpu) is first
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        before = first(x)
        next(net.parameters()).data.mul_(1.5)
    second = prepare_net(net, cpu)
    assert second is not first
    with torch.no_grad():
        assert not torch.allclose(second(x), before)
        torch.testing.assert_close(second(x), net.eval()(x), rtol=1e-4, atol=1e-5)
