"""Data config (folder / YAML), preparation on the model grid, masks, sampling, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synapseg.errors import InputError
from synapseg.infer.preprocess import prepare_image, rescale_volume
from synapseg.io.volume_writer import write_volume
from synapseg.train.data import (
    PatchSampler,
    PreparedVolume,
    load_data_config,
    prepare_item,
    split_items,
)
from synapseg.train.losses import masked_dice_bce

from .conftest import SHAPE, VOXEL_NM, write_item


def test_simulate_folder_layout_is_training_data(toy_data):
    items = load_data_config(toy_data)
    assert [it.tomogram.parent.name for it in items] == ["sim_000", "sim_001", "sim_002"]
    assert all(it.annotation.name == "vesicle_labels.mrc" for it in items)
    train, val = split_items(items, 0.2, seed=0)
    assert len(val) == 1 and len(train) == 2 and not set(map(id, train)) & set(map(id, val))


def test_yaml_config_with_relative_paths_and_split(tmp_path):
    write_item(tmp_path / "a", seed=0, labels=False)
    write_item(tmp_path / "b", seed=1, labels=False)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(
        "items:\n"
        "  - {tomogram: a/tomogram.mrc, annotation: a/vesicles.csv, split: train}\n"
        "  - {tomogram: b/tomogram.mrc, annotation: b/vesicles.csv, split: val,"
        " voxel_size_nm: 2.0}\n"
    )
    items = load_data_config(cfg)
    assert items[0].annotation == tmp_path / "a" / "vesicles.csv"
    train, val = split_items(items, 0.5, seed=0)
    assert [it.split for it in train] == ["train"] and [it.split for it in val] == ["val"]


def test_bad_configs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_data_config(tmp_path / "missing")
    with pytest.raises(InputError, match="no training tomograms"):
        load_data_config(tmp_path)
    (tmp_path / "bad.yaml").write_text("items:\n  - {annotation: x.csv}\n")
    with pytest.raises(InputError, match="no `tomogram:`"):
        load_data_config(tmp_path / "bad.yaml")
    folder = tmp_path / "lonely"
    folder.mkdir()
    write_volume(
        folder / "tomogram.mrc", np.random.default_rng(0).random((8, 8, 8), np.float32), 2.0
    )
    with pytest.raises(InputError, match="no annotation"):
        load_data_config(tmp_path)


def test_prepare_rescales_to_the_model_grid(toy_data):
    item = load_data_config(toy_data)[0]
    vol = prepare_item(item, (3.0, 3.0, 3.0))
    assert vol.image.shape == vol.instances.shape == (21, 43, 43)
    assert abs(float(vol.image.mean())) < 0.1 and 0.8 < float(vol.image.std()) < 1.2
    assert vol.n_vesicles == 6 and len(vol.fg_coords) > 0


def test_rescale_keeps_physical_positions():
    img = np.zeros((20, 40, 40), np.float32)
    img[10, 20, 30] = 1
    out = rescale_volume(img, (1.0,) * 3, (0.5,) * 3)  # upsample 2x: voxel i -> 2i
    assert np.unravel_index(out.argmax(), out.shape) == (20, 40, 60)


def test_training_uses_the_inference_preprocessing(toy_data):
    """One implementation: prepare_item's image is exactly prepare_image's (and train/data.py
    no longer has its own resampling or normalisation)."""
    import synapseg.train.data as data
    from synapseg.io.volume import read_volume

    assert not hasattr(data, "rescale_image") and not hasattr(data, "normalise")
    item = load_data_config(toy_data)[0]
    prepared = prepare_item(item, (3.0, 3.0, 3.0))
    raw = read_volume(item.tomogram)
    image, _ = prepare_image(np.asarray(raw.data), raw.voxel_size_nm, (3.0, 3.0, 3.0))
    np.testing.assert_array_equal(prepared.image, image)


def test_training_statistics_ignore_vacuum_slabs(tmp_path):
    """A training tomogram with bright vacuum slabs is normalised like the specimen alone."""
    from synapseg.io.volume import read_volume

    folder = write_item(tmp_path / "v", seed=3, labels=False)
    raw = np.asarray(read_volume(folder / "tomogram.mrc").data, dtype=np.float32)
    plain = prepare_item(load_data_config(folder)[0], (VOXEL_NM,) * 3).image
    pad = raw.shape[0] // 3
    rng = np.random.default_rng(0)
    slab = np.median(raw) + 3 * raw.std() + rng.normal(0, 0.05, (pad, *raw.shape[1:]))
    padded = np.concatenate([slab, raw, slab]).astype(np.float32)
    write_volume(folder / "tomogram.mrc", padded, VOXEL_NM, overwrite=True)
    image = prepare_item(load_data_config(folder)[0], (VOXEL_NM,) * 3).image
    inner = image[pad + 4 : pad + raw.shape[0] - 4]
    np.testing.assert_allclose(inner.std(), plain[4:-4].std(), rtol=0.1)
    assert abs(float(inner.mean() - plain[4:-4].mean())) < 0.1
    assert np.all(image[: pad - 4] == 0)  # vacuum is neutral, as in inference


def test_mask_excludes_unlabelled_regions_from_the_loss(tmp_path):
    folder = write_item(tmp_path / "m", seed=2)
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, :, : SHAPE[2] // 2] = 1
    write_volume(folder / "mask.mrc", mask, VOXEL_NM)
    item = load_data_config(folder)[0]
    assert item.mask is not None
    vol = prepare_item(item, (VOXEL_NM,) * 3)
    assert vol.weight[:, :, SHAPE[2] // 2 :].sum() == 0 and vol.weight[:, :, :10].all()
    assert (vol.fg_coords[:, 2] < SHAPE[2] // 2).all()  # rich patches sampled inside only
    # the loss ignores whatever the network says outside the mask
    sampler = PatchSampler([vol], SHAPE)
    _, target, weight = sampler.patch(0, (0, 0, 0))
    logits = torch.randn(1, 1, *SHAPE)
    t, w = torch.from_numpy(target[None]), torch.from_numpy(weight[None, None])
    loss_a, _ = masked_dice_bce(logits, t, w)
    changed = logits.clone()
    changed[..., SHAPE[2] // 2 :] = 50.0  # wild predictions in the unlabelled half
    loss_b, _ = masked_dice_bce(changed, t, w)
    assert torch.isclose(loss_a, loss_b)
    loss_c, _ = masked_dice_bce(changed, t, torch.ones_like(w))
    assert not torch.isclose(loss_a, loss_c)


def test_data_smaller_than_a_patch_is_an_input_error(toy_data):
    vol = prepare_item(load_data_config(toy_data)[0], (VOXEL_NM,) * 3)
    with pytest.raises(InputError, match="smaller than a training patch"):
        PatchSampler([vol], (64, 64, 64))


def test_sampler_balances_vesicle_rich_and_random_patches():
    shape = (32, 96, 96)
    inst = np.zeros(shape, np.uint16)
    inst[10:18, 70:78, 70:78] = 1  # one small vesicle in a corner
    vol = PreparedVolume(
        name="t",
        image=np.zeros(shape, np.float32),
        instances=inst,
        weight=np.ones(shape, np.uint8),
        source_voxel_size_nm=(2.0,) * 3,
        source_shape=shape,
        fg_coords=np.argwhere(inst != 0),
    )
    rng = np.random.default_rng(0)
    rich = PatchSampler([vol], (16, 32, 32), fg_fraction=1.0)
    rand = PatchSampler([vol], (16, 32, 32), fg_fraction=0.0)
    half = PatchSampler([vol], (16, 32, 32), fg_fraction=0.5)
    has_fg = lambda s: np.mean([s.sample(rng, 1)[1].any() for _ in range(60)])  # noqa: E731
    assert has_fg(rich) == 1.0 and has_fg(rand) < 0.3 and 0.3 < has_fg(half) < 0.8
    images, targets, weights = rich.sample(rng, 3)
    assert images.shape == (3, 1, 16, 32, 32) and targets.shape == (3, 1, 16, 32, 32)
    assert weights.shape == images.shape and images.dtype == np.float32


def test_sampler_volume_probabilities_replace_the_size_weights():
    """set_volume_probabilities decides which volume patches come from (rehearsal shares)."""
    vols = []
    for k in range(2):
        shape = (32, 64, 64)
        vols.append(
            PreparedVolume(
                name=f"v{k}",
                image=np.zeros(shape, np.float32),
                instances=np.zeros(shape, np.int32),
                weight=np.ones(shape, np.uint8),
                source_voxel_size_nm=(2.0,) * 3,
                source_shape=shape,
                fg_coords=np.zeros((0, 3), int),
            )
        )
    sampler = PatchSampler(vols, (16, 32, 32))
    rng = np.random.default_rng(0)
    assert 0 < np.mean([sampler.corner(rng)[0] for _ in range(200)]) < 1
    sampler.set_volume_probabilities([0.0, 1.0])
    assert all(sampler.corner(rng)[0] == 1 for _ in range(50))
    with pytest.raises(ValueError, match="summing to 1"):
        sampler.set_volume_probabilities([0.5, 0.6])
    with pytest.raises(ValueError, match="2 non-negative"):
        sampler.set_volume_probabilities([1.0])
