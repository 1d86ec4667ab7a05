"""The specimen mask: vacuum slabs, gold, flat regions, mapping to other grids, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.specimen.mask import SpecimenMask, cell_statistics, specimen_mask

VOXEL_NM = 1.68


def textured(shape, seed=0):
    """Gaussian noise with some smooth structure: a stand-in for a specimen."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, shape).astype(np.float32)
    return noise + 2 * ndimage.gaussian_filter(rng.normal(0, 1, shape), 3).astype(np.float32)


def with_slabs(specimen, pad, value, noise=0.05, seed=1):
    rng = np.random.default_rng(seed)
    sd = float(specimen.std())
    med = float(np.median(specimen))
    shape = (pad, *specimen.shape[1:])
    slab = lambda: (med + value * sd + rng.normal(0, noise * sd, shape)).astype(np.float32)  # noqa: E731
    return np.concatenate([slab(), specimen, slab()])


@pytest.mark.parametrize("value", [3.0, -3.0, 0.0])
def test_vacuum_slabs_are_excluded(value):
    spec = textured((40, 64, 64))
    pad = 15
    vol = with_slabs(spec, pad, value)
    mask = specimen_mask(vol, VOXEL_NM)
    z0, z1 = mask.facts["specimen_z_range_px"]
    cell = mask.cell_px[0]
    assert abs(z0 - pad) <= cell and abs(z1 - (pad + len(spec))) <= cell
    full = mask.at(vol.shape)
    # nearly all of the specimen kept, nearly all of the vacuum excluded
    assert full[pad + cell : pad + len(spec) - cell].mean() > 0.97
    assert full[: pad - cell].mean() < 0.02 and full[pad + len(spec) + cell :].mean() < 0.02
    assert 0.3 < mask.facts["fraction_excluded"] < 0.5
    expected = "flat" if value == 0 else ("bright" if value > 0 else "dark")
    assert (
        expected in mask.facts["excluded_by_reason"] or "flat" in mask.facts["excluded_by_reason"]
    )
    nm = mask.facts["specimen_z_range_nm"]
    assert nm == pytest.approx([z0 * VOXEL_NM, z1 * VOXEL_NM], abs=1e-3)


def test_noisy_offset_vacuum_is_excluded_as_offset():
    spec = textured((40, 64, 64))
    vol = with_slabs(spec, 15, 2.0, noise=0.8)  # as textured as the specimen, but offset
    mask = specimen_mask(vol, VOXEL_NM)
    assert "bright" in mask.facts["excluded_by_reason"]
    assert mask.at(vol.shape)[:10].mean() < 0.05


def test_plain_specimen_keeps_everything():
    vol = textured((40, 64, 64))
    mask = specimen_mask(vol, VOXEL_NM)
    assert mask.facts["fraction_excluded"] < 0.01
    assert mask.facts["trusted"]


def test_gold_bead_is_excluded_with_margin():
    vol = textured((48, 96, 96))
    zz, yy, xx = np.ogrid[:48, :96, :96]
    bead = (zz - 24) ** 2 + (yy - 40) ** 2 + (xx - 60) ** 2 <= 4**2  # ~13 nm bead
    vol[bead] = -15.0
    mask = specimen_mask(vol, VOXEL_NM)
    assert not mask.contains_px(np.array([24.0, 40.0, 60.0]))
    assert "gold" in mask.facts["excluded_by_reason"]
    assert mask.fraction > 0.95  # only around the bead
    assert mask.contains_px(np.array([24.0, 40.0, 10.0]))


def test_empty_volume_is_not_trusted():
    vol = np.zeros((24, 32, 32), np.float32)
    mask = specimen_mask(vol, 1.0)
    assert not mask.facts["trusted"] and "not used" in mask.facts["note"]
    assert mask.at(vol.shape).all()


def test_mapping_to_another_grid_and_margin():
    spec = textured((40, 64, 64))
    vol = with_slabs(spec, 15, 3.0)
    mask = specimen_mask(vol, VOXEL_NM)
    coarse = mask.at((35, 32, 32), 2 * VOXEL_NM)  # half-resolution grid, same extent
    fine = mask.at(vol.shape)
    assert coarse.shape == (35, 32, 32)
    np.testing.assert_array_equal(coarse, fine[::2, ::2, ::2])
    z_edge = mask.facts["specimen_z_range_px"][0] - 1  # just outside the specimen
    point = np.array([z_edge, 30.0, 30.0])
    assert not mask.contains_px(point)
    assert mask.contains_px(point, margin_cells=1)
    np.testing.assert_array_equal(mask.rows(10, 20), fine[10:20])


def test_cell_statistics_stream_like_whole_volume(monkeypatch):
    import synapseg.specimen.mask as module

    vol = textured((30, 37, 41))
    mean, std = cell_statistics(vol, (4, 5, 6))
    monkeypatch.setattr(module, "_READ_VOXELS", 37 * 41 * 3)  # 3 rows per read
    mean2, std2 = cell_statistics(np.lib.stride_tricks.as_strided(vol), (4, 5, 6))
    np.testing.assert_allclose(mean, mean2, rtol=1e-10)
    np.testing.assert_allclose(std, std2, rtol=1e-8)
    # cells thinner than 4 sections use every voxel: exact, including a partial edge cell
    mean3, std3 = cell_statistics(vol, (3, 5, 6))
    block = vol[3:6, 5:10, 36:41]  # a partial cell at the x edge
    assert mean3[1, 1, 6] == pytest.approx(block.mean(), rel=1e-5)
    assert std3[1, 1, 6] == pytest.approx(block.std(), rel=1e-4)
    # thicker cells use every other section
    sub = vol[4:8:2, 5:10, 36:41]
    assert mean[1, 1, 6] == pytest.approx(sub.mean(), rel=1e-5)
    assert std[1, 1, 6] == pytest.approx(sub.std(), rel=1e-4)


def test_everywhere_keeps_all():
    mask = SpecimenMask.everywhere((10, 20, 30), 1.5)
    assert mask.at((10, 20, 30)).all()
    assert mask.contains_px(np.array([[9.0, 19.0, 29.0], [0.0, 0.0, 0.0]])).all()
