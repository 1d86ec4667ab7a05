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
