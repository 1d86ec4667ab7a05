"""predict_volume: devices, TTA, determinism, grids, outputs and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from synapseg.errors import InputError, VoxelSizeError
from synapseg.infer import predict as predict_mod
from synapseg.infer.predict import (
    choose_tiling,
    predict_volume,
    select_device,
    tta_transforms,
)
from synapseg.io.volume import Volume
from synapseg.model.unet import UNetConfig, build_unet

from .conftest import TINY, Identity, Skewed, SymmetricConv, blob_volume, card_for, randomised

SMALL_CARD = card_for(TINY, voxel_size_nm=1.6)


def test_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        pytest.skip("CUDA is available here")
    with pytest.raises(InputError, match="CUDA is not available"):
        select_device("cuda")
    assert select_device("auto").type == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        select_device("tpu")


def test_tta_transforms():
    assert len(tta_transforms()) == 8 and ((), 0) in tta_transforms()
    assert len(tta_transforms(rot90=True)) == 16


@pytest.mark.parametrize("rot90", [False, True])
def test_tta_equals_plain_for_a_symmetric_network(rot90, rng):
    vol = Volume(rng.normal(size=(20, 40, 36)).astype(np.float32), (1.6, 1.6, 1.6))
    card = card_for(TINY, voxel_size_nm=1.6, tta_rot90=rot90)
    plain = predict_volume(vol, (SymmetricConv(), card), device="cpu", tile_size=32)
    tta = predict_volume(vol, (SymmetricConv(), card), device="cpu", tile_size=32, tta=True)
    np.testing.assert_allclose(tta, plain, atol=1e-6)
    skewed = predict_volume(vol, (Skewed(), card), device="cpu", tile_size=32, tta=True)
    skewed_plain = predict_volume(vol, (Skewed(), card), device="cpu", tile_size=32)
    assert np.abs(skewed - skewed_plain).max() > 0.01  # TTA really transforms


def test_cpu_run_is_deterministic(tiny_model, rng):
    vol = Volume(rng.normal(size=(30, 50, 40)).astype(np.float32), (1.3, 1.3, 1.3))
    a = predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4)
    b = predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4)
    assert a.dtype == np.float32 and a.shape == vol.shape
    np.testing.assert_array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("vin", [0.9, 1.6, 3.1, (2.0, 1.2, 1.2)])
def test_probabilities_land_on_the_input_grid(vin, rng):
    """With a pass-through network the output is the (normalised) input: a bright ball
    must come back at its own position on the input grid, whatever the voxel size."""
    shape, center = (36, 60, 50), (17.0, 28.0, 23.0)
    vs = (vin,) * 3 if np.isscalar(vin) else vin
    vol = Volume(blob_volume(shape, center, 7, rng, noise=0.01), vs)
    prob = predict_volume(vol, (Identity(), SMALL_CARD), device="cpu", tile_size=32, specimen=False)
    assert prob.shape == shape
    found = ndimage.center_of_mass(prob > 0.9)
    np.testing.assert_allclose(found, center, atol=1.0)


def test_invert_flips_the_input(rng):
    vol = Volume(blob_volume((24, 40, 40), (12, 20, 20), 6, rng), (1.6,) * 3)
    p = predict_volume(vol, (Identity(), SMALL_CARD), device="cpu")
    q = predict_volume(vol, (Identity(), SMALL_CARD), device="cpu", invert=True)
    np.testing.assert_allclose(p + q, 1.0, atol=1e-5)


def test_out_arrays_dtypes_and_report(tmp_path, tiny_model, rng):
    vol = Volume(rng.normal(size=(20, 40, 30)).astype(np.float32), (1.5,) * 3)
    ref = predict_volume(vol, tiny_model, device="cpu")
    out16 = np.lib.format.open_memmap(tmp_path / "p.npy", "w+", np.float16, vol.shape)
    report: dict = {}
    got = predict_volume(vol, tiny_model, device="cpu", out=out16, report=report)
    assert got is out16
    np.testing.assert_allclose(out16, ref, atol=1e-3)
    out8 = np.zeros(vol.shape, np.uint8)
    predict_volume(vol, tiny_model, device="cpu", out=out8)
    np.testing.assert_allclose(out8 / 255, ref, atol=0.5 / 255 + 1e-6)
    assert set(report["timings"]) >= {"rescale_s", "network_s", "resample_back_s", "total_s"}
    assert report["device"] == "cpu" and report["model_grid_shape_zyx"][0] == 18
    assert report["throughput"]["network_model_mvoxel_per_s"] > 0
    with pytest.raises(ValueError, match="shape"):
        predict_volume(vol, tiny_model, device="cpu", out=np.zeros((3, 3, 3), np.float32))


def test_large_volumes_stream_through_scratch_files(tmp_path, tiny_model, rng, monkeypatch):
    vol = Volume(rng.normal(size=(30, 50, 40)).astype(np.float32), (1.4,) * 3)
    ref = predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4)
    monkeypatch.setattr(predict_mod, "IN_MEMORY_BYTES", 1000)
    created = []
    real = np.memmap

    def spy(*args, **kwargs):
        created.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_mod.np, "memmap", spy)
    got = predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4, scratch_dir=tmp_path)
    np.testing.assert_array_equal(got, ref)
    assert len(created) == 2
    assert not list(tmp_path.iterdir())  # scratch files are removed


def test_scratch_maps_are_released_by_a_background_thread(
    tmp_path, tiny_model, rng, monkeypatch, released
):
    """predict_volume hands the last references to its two scratch maps to
    ``release_in_background`` (unmapping an unlinked file waits for its writeback): once
    that thread is done nothing holds them, and the scratch files are gone."""
    vol = Volume(rng.normal(size=(30, 50, 40)).astype(np.float32), (1.4,) * 3)
    monkeypatch.setattr(predict_mod, "IN_MEMORY_BYTES", 1000)
    wait = released(predict_mod)
    predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4, scratch_dir=tmp_path)
    handed = wait()
    assert len(handed) == 2
    assert all(ref() is None for ref in handed)  # the thread dropped the last references
    assert not list(tmp_path.iterdir())


def test_full_disk_at_scratch_files_is_a_clear_error(tmp_path, tiny_model, rng, monkeypatch):
    """Scratch maps are reserved up front: a full disk is an InputError, not SIGBUS."""
    import errno
    import os

    vol = Volume(rng.normal(size=(30, 50, 40)).astype(np.float32), (1.4,) * 3)
    monkeypatch.setattr(predict_mod, "IN_MEMORY_BYTES", 1000)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(InputError, match="space"):
        predict_volume(vol, tiny_model, device="cpu", tile_size=32, halo=4, scratch_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # the reserved scratch file is removed too


def test_extra_channels(rng):
    cfg = UNetConfig(stem=1, base_channels=2, depth=1, convs_per_level=1, out_channels=2)
    model = (randomised(build_unet(cfg, seed=0)), card_for(cfg))
    vol = Volume(rng.normal(size=(16, 24, 24)).astype(np.float32), (1.6,) * 3)
    both = predict_volume(vol, model, device="cpu", channels=(0, 1))
    assert both.shape == (2, *vol.shape)
    np.testing.assert_allclose(both[0], predict_volume(vol, model, device="cpu"), atol=1e-6)
    with pytest.raises(InputError, match="channels"):
        predict_volume(vol, model, device="cpu", channels=(2,))


def test_bad_tile_sizes_are_clear_errors():
    cfg = UNetConfig()  # the default architecture
    with pytest.raises(InputError, match="receptive field"):
        choose_tiling(cfg, (100, 300, 300), tile_size=64)
    with pytest.raises(InputError, match="multiple of 16"):
        choose_tiling(cfg, (100, 300, 300), tile_size=250)
    plan = choose_tiling(cfg, (100, 300, 300))
    assert plan.tile_shape[0] == 112 and plan.n_tiles == 1  # fits one tile of the budget


def test_too_coarse_input_is_an_error(rng):
    vol = Volume(rng.normal(size=(8, 16, 16)).astype(np.float32), (7.0,) * 3)
    with pytest.raises(VoxelSizeError, match="coarser"):
        predict_volume(vol, (Identity(), SMALL_CARD), device="cpu")


def test_unusable_volume_is_an_error():
    vol = Volume(np.ones((8, 16, 16), np.float32), (1.6,) * 3)
    with pytest.raises(InputError, match="constant"):
        predict_volume(vol, (Identity(), SMALL_CARD), device="cpu")


def test_streams_into_zarr_with_progress(tmp_path, tiny_model, rng):
    zarr = pytest.importorskip("zarr")
    vol = Volume(rng.normal(size=(18, 32, 30)).astype(np.float32), (1.5,) * 3)
    ref = predict_volume(vol, tiny_model, device="cpu")
    out = zarr.open(
        str(tmp_path / "p.zarr"), mode="w", shape=vol.shape, chunks=(8, 16, 16), dtype="float32"
    )
    predict_volume(vol, tiny_model, device="cpu", out=out, progress=True)
    np.testing.assert_allclose(out[:], ref, atol=1e-6)


def test_statistics_come_from_the_specimen_and_vacuum_is_neutral(rng):
    """Bright flat slabs above and below: the card's default ('specimen') statistics ignore
    them and set them to 0 (the network input of the specimen is unchanged); a card that says
    'volume' gets the old whole-volume statistics."""
    spec = rng.normal(0, 1, (24, 40, 40)).astype(np.float32)
    slab = (4.0 + rng.normal(0, 0.02, (10, 40, 40))).astype(np.float32)
    padded = Volume(np.concatenate([slab, spec, slab]), (1.6,) * 3)
    alone = predict_volume(Volume(spec, (1.6,) * 3), (Identity(), SMALL_CARD), device="cpu")
    report: dict = {}
    prob = predict_volume(padded, (Identity(), SMALL_CARD), device="cpu", report=report)
    assert report["normalisation"]["inside_specimen"]
    np.testing.assert_allclose(prob[14:30], alone[4:20], atol=0.05)  # away from the surface
    np.testing.assert_allclose(prob[:5], 0.5, atol=1e-6)  # sigmoid(0): neutral vacuum
    volume_card = card_for(TINY, voxel_size_nm=1.6)
    volume_card.normalisation = {**volume_card.normalisation, "statistics": "volume"}
    old = predict_volume(padded, (Identity(), volume_card), device="cpu", report=report)
    assert not report["normalisation"]["inside_specimen"]
    assert np.abs(old[14:30] - alone[4:20]).mean() > 0.05
    bad = card_for(TINY, voxel_size_nm=1.6)
    bad.normalisation = {**bad.normalisation, "statistics": "histogram"}
    with pytest.raises(InputError, match="statistics"):
        predict_volume(padded, (Identity(), bad), device="cpu")
