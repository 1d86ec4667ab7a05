"""The membrane network's training volumes go through the shared training preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.writer import write_simulation
from synapseg.train.data import training_image
from synapseg.train.membrane_targets import membrane_items
from synapseg.train.membrane_trainer import prepare_membrane_item


@pytest.fixture(scope="module")
def sim_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("membranes")
    params = SimulationParams(seed=12, shape=(24, 64, 64), voxel_size_nm=1.68)
    write_simulation(root / "sim_000", simulate_tomogram(params))
    return root


def test_membrane_item_matches_the_shared_training_image(sim_folder):
    [item] = membrane_items(sim_folder)
    vol = prepare_membrane_item(item, 2.4)
    _, image, src_vs, dst_vs = training_image(item.tomogram, None, 2.4)
    np.testing.assert_array_equal(vol.image, image)
    assert dst_vs == (2.4, 2.4, 2.4) and vol.targets.shape[1:] == image.shape
    assert vol.targets.shape[0] == 2 and 0 <= vol.targets.min() <= vol.targets.max() <= 1


def test_membrane_item_refuses_non_finite_tomograms(sim_folder, tmp_path):
    import shutil

    import mrcfile

    folder = tmp_path / "sim_000"
    shutil.copytree(sim_folder / "sim_000", folder)
    with mrcfile.mmap(folder / "tomogram.mrc", mode="r+") as mrc:
        mrc.data[3, 5, 5] = np.nan
    [item] = membrane_items(tmp_path)
    with pytest.raises(InputError, match="NaN"):
        prepare_membrane_item(item, 2.4)


def test_fg_channels_centres_patches_on_the_chosen_channel_only(sim_folder, tmp_path):
    """``fg_channels=(0,)`` (recipe v3): patch centres on non-vesicle membranes only."""
    import shutil

    import mrcfile

    folder = tmp_path / "sim_000"
    shutil.copytree(sim_folder / "sim_000", folder)
    with mrcfile.mmap(folder / "membrane_labels.mrc", mode="r+") as mrc:
        block = mrc.data[8:16, 40:56, 40:56]
        block[block == 0] = 2  # a vesicle-membrane patch where there is no other membrane
    [item] = membrane_items(tmp_path)
    every = prepare_membrane_item(item, 2.4)
    chosen = prepare_membrane_item(item, 2.4, fg_channels=(0,))
    t = every.targets
    at = tuple(chosen.fg_coords.T)
    assert len(chosen.fg_coords) and np.all(t[0][at] > 0.5)
    # the default also centres patches on the vesicle membrane (channel 1)
    at = tuple(every.fg_coords.T)
    assert np.any((t[1][at] > 0.5) & (t[0][at] <= 0.5))
    assert len(every.fg_coords) > len(chosen.fg_coords)


def test_signed_distance_item_and_one_training_step_with_the_distance_term(sim_folder, tmp_path):
    """Recipe v4's path: channel 0 is the signed-distance target (same 0.5 level as the area
    fraction, up to the sub-voxel surface), and the trainer adds and logs the distance term."""
    import torch

    from synapseg.model.unet import UNetConfig, build_unet
    from synapseg.train.augment import AugmentParams
    from synapseg.train.membrane_trainer import DistanceLoss, MembraneTrainer
    from synapseg.train.trainer import TrainConfig

    [item] = membrane_items(sim_folder)
    sd = {"tau_nm": 1.0, "clip_nm": 6.0}
    area = prepare_membrane_item(item, 2.4)
    vol = prepare_membrane_item(item, 2.4, signed_distance=sd)
    np.testing.assert_array_equal(vol.image, area.image)
    np.testing.assert_allclose(vol.targets[1], area.targets[1])
    inside_sd, inside_area = vol.targets[0] > 0.5, area.targets[0] > 0.5
    assert inside_sd.any() and (inside_sd == inside_area).mean() > 0.95
    assert vol.targets[0].min() > 0 and vol.targets[0].max() < 1  # finite logits

    cfg = TrainConfig(
        steps=1,
        batch_size=1,
        patch_size=(8, 16, 16),
        val_every=100,
        augment=AugmentParams(),
        seed=1,
    )
    torch.manual_seed(0)
    net = build_unet(UNetConfig(stem=1, base_channels=2, depth=1, out_channels=2), seed=0)
    trainer = MembraneTrainer(
        net, cfg, [vol], [], (2.4,) * 3, tmp_path / "run", distance=DistanceLoss(**sd)
    )
    logs = trainer.train_step()
    assert logs["distance"] > 0
    plain = MembraneTrainer(net, cfg, [vol], [], (2.4,) * 3, tmp_path / "run2")
    assert "distance" not in plain.train_step()
