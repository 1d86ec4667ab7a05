"""The reader: tomograms (lazy, physical scale, robust contrast) and synapseg outputs."""

from __future__ import annotations

import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from synapseg.napari import reader as reader_mod
from synapseg.napari.layers import ROLE, contrast_limits
from synapseg.napari.reader import get_reader, read_outputs, read_path

VOXEL_NM = 1.68


class CountingArray:
    """A (z, y, x) array-like that counts the elements read through it."""

    def __init__(self, data):
        self.data = data
        self.read = 0

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.read += out.size
        return out


def test_get_reader_dispatches_by_file(segmented, tmp_path):
    out = segmented["out"]
    assert get_reader(str(segmented["tomogram"])) is read_path
    assert get_reader(str(out / "tomo_vesicles.csv")) is read_outputs
    assert get_reader([str(out / "tomo_vesicles.star")]) is read_outputs
    other = tmp_path / "numbers.csv"
    pd.DataFrame({"a": [1, 2]}).to_csv(other, index=False)
    assert get_reader(str(other)) is None  # not a vesicle table: another plugin's file
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_tomogram_layer_has_scale_and_robust_contrast(segmented):
    [(data, kwargs, kind)] = read_path(str(segmented["tomogram"]))
    assert kind == "image"
    assert isinstance(data, np.memmap)  # lazy: the file is mapped, not loaded
    np.testing.assert_allclose(kwargs["scale"], (VOXEL_NM,) * 3, rtol=1e-4)
    assert kwargs["metadata"][ROLE] == "tomogram"
    lo, hi = kwargs["contrast_limits"]
    sample = np.asarray(data[16:32])
    p1, p99 = np.percentile(sample, [1, 99])
    assert abs(lo - p1) < 0.25 * (p99 - p1) and abs(hi - p99) < 0.25 * (p99 - p1)


def test_contrast_ignores_gold_and_vacuum_slabs():
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 1, (60, 64, 64)).astype(np.float32)
    vol[:15] = 40.0  # a flat vacuum slab at the top
    vol[30:34, 10:14, 10:14] = -500.0  # a gold bead
    lo, hi = contrast_limits(vol)
    assert -3.5 < lo < -1.5 and 1.5 < hi < 3.5


def test_a_1gib_tomogram_opens_without_reading_it(tmp_path, monkeypatch):
    import mrcfile

    path = tmp_path / "big.mrc"
    with mrcfile.new_mmap(path, shape=(256, 1024, 1024), mrc_mode=2, fill=None) as mrc:
        mrc.voxel_size = 16.8  # Å; the data stays a sparse file: nothing is written
    assert path.stat().st_size >= 2**30
    counted = {}

    def counting_read_volume(p, *args, **kwargs):
        vol = reader_mod.__dict__["_real_read_volume"](p, *args, **kwargs)
        vol.data = counted.setdefault("data", CountingArray(vol.data))
        return vol

    monkeypatch.setitem(reader_mod.__dict__, "_real_read_volume", reader_mod.read_volume)
    monkeypatch.setattr(reader_mod, "read_volume", counting_read_volume)
    tracemalloc.start()
    [(data, kwargs, _)] = read_path(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = 256 * 1024 * 1024
    assert data is counted["data"]  # the layer gets the lazy array itself
    assert counted["data"].read < 0.01 * n  # a ~1 M voxel sample, not the volume
    assert peak < 64 * 2**20  # far below the 1 GiB of the file
    np.testing.assert_allclose(kwargs["scale"], (1.68,) * 3, rtol=1e-4)


def test_vesicle_table_opens_as_points_with_outputs(segmented):
    out = segmented["out"]
    table = pd.read_csv(out / "tomo_vesicles.csv")
    layers = read_outputs(str(out / "tomo_vesicles.csv"))
    kinds = {kw["metadata"][ROLE]: (data, kw, kind) for data, kw, kind in layers}
    data, kw, kind = kinds["vesicles"]
    assert kind == "points"
    np.testing.assert_array_equal(kw["features"]["id"], table["id"])
    np.testing.assert_allclose(
        data, table[["center_z_px", "center_y_px", "center_x_px"]], atol=1e-3
    )
    np.testing.assert_allclose(kw["size"], 2 * table["outer_radius_nm"] / VOXEL_NM, rtol=1e-3)
    assert "confidence" in kw["features"] and "membrane_contrast" in kw["features"]
    assert kw["metadata"]["report"]["n_vesicles"] == len(table)
    assert kw["metadata"]["provenance"]["tool"] == "synapseg"
    assert kinds["vesicles"][1]["scale"] == pytest.approx((VOXEL_NM,) * 3, rel=1e-4)
    labels = {kw["metadata"][ROLE]: data for data, kw, kind in layers if kind == "labels"}
    assert labels["vesicle_labels"].shape == segmented["sim"].tomogram.shape
    # segment's other volumes beside the table (membranes, compartment, ...) come along
    assert all(data.shape == segmented["sim"].tomogram.shape for data in labels.values())


def test_membranes_az_and_filaments_are_read_when_present(segmented, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(segmented["out"], out)
    shutil.copy(out / "tomo_vesicles.mrc", out / "tomo_membranes.mrc")
    shutil.copy(out / "tomo_vesicles.mrc", out / "tomo_az.mrc")
    segmented["sim"].filaments.to_csv(out / "tomo_filaments.csv", index=False)
    layers = read_outputs(str(out / "tomo_vesicles.csv"))
    roles = [kw["metadata"][ROLE] for _, kw, _ in layers]
    assert {"vesicles", "membranes", "az", "filaments"} <= set(roles)
    paths, kw, kind = next(layer for layer in layers if layer[1]["metadata"][ROLE] == "filaments")
    assert kind == "shapes"
    n_fil = segmented["sim"].filaments["filament_id"].nunique()
    assert 0 < len(paths) <= n_fil and all(p.shape[1] == 3 for p in paths)
    [(lab, lkw, lkind)] = read_path(str(out / "tomo_az.mrc"))
    assert lkind == "labels" and lkw["metadata"][ROLE] == "az"


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_tiff_and_ome_zarr_open_lazily_with_their_scale(sim, tmp_path, suffix):
    from synapseg.io.volume_writer import write_volume

    path = tmp_path / f"tomo{suffix}"
    write_volume(path, sim.tomogram[:16], (2.0, VOXEL_NM, VOXEL_NM))
    assert get_reader(str(path)) is read_path
    [(data, kwargs, kind)] = read_path(str(path))
    assert kind == "image" and data.shape == (16, *sim.tomogram.shape[1:])
    assert type(data) is not np.ndarray  # memmap (TIFF) or zarr array: not loaded
    np.testing.assert_allclose(kwargs["scale"], (2.0, VOXEL_NM, VOXEL_NM), rtol=1e-3)
