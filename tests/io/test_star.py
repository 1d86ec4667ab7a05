"""RELION particle STAR files: round trips, RELION-4 and RELION-5 conventions, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from synapseg.errors import InputError, OutputExistsError
from synapseg.io.star import read_table_star, write_table_star
from synapseg.io.tables import make_table, read_vesicles

VS = (1.5, 1.2, 1.2)  # the voxel size of conftest's `table`
SHAPE = (41, 64, 75)  # odd z and x: RELION's centre is size / 2.0, not an integer voxel


def test_star_round_trip_both_conventions(tmp_path, table, assert_tables_equal):
    path = write_table_star(
        tmp_path / "v.star", table, tomogram_name="tomo1", voxel_size_nm=VS, shape=SHAPE, binning=4
    )
    df = starfile.read(path)
    assert (df["rlnTomoName"] == "tomo1").all()
    # RELION-4: unbinned tilt-series pixels = input px * binning (x from the last axis)
    np.testing.assert_allclose(df["rlnCoordinateX"], table["center_x_px"] * 4, atol=1e-5)
    np.testing.assert_allclose(df["rlnCoordinateZ"], table["center_z_px"] * 4, atol=1e-5)
    np.testing.assert_allclose(df["synapsegRadiusAngst"], table["radius_nm"] * 10, atol=1e-5)
    back = read_table_star(path, voxel_size_nm=VS, shape=SHAPE, binning=4)
    assert_tables_equal(back, table, atol=1e-5)
    # RELION-5 only: drop the pixel columns and read from the centered Å
    df5 = df.drop(columns=["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"])
    starfile.write({"particles": df5}, tmp_path / "v5.star")
    back5 = read_table_star(tmp_path / "v5.star", voxel_size_nm=VS, shape=SHAPE)
    assert_tables_equal(back5, table, atol=1e-5)


def test_relion5_center_on_odd_and_even_sizes(tmp_path):
    # RELION: centre = size / 2.0 in pixels (float), so the middle voxel of an odd axis
    # (index 20 of 41) is 0.5 px off centre, and voxel 32 of an even 64 axis is exactly 0.
    t = make_table([[20.0, 32.0, 37.0]], [20.0], VS)
    path = write_table_star(
        tmp_path / "c.star", t, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE, binning=2
    )
    row = starfile.read(path).iloc[0]
    assert row["rlnCenteredCoordinateZAngst"] == pytest.approx((20 - 20.5) * 15.0)
    assert row["rlnCenteredCoordinateYAngst"] == pytest.approx(0.0)
    assert row["rlnCenteredCoordinateXAngst"] == pytest.approx((37 - 37.5) * 12.0)
    # independent of binning: the same physical point
    path1 = write_table_star(
        tmp_path / "c1.star", t, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE, binning=1
    )
    row1 = starfile.read(path1).iloc[0]
    assert row1["rlnCenteredCoordinateXAngst"] == pytest.approx(row["rlnCenteredCoordinateXAngst"])


def test_star_needs_voxel_size_binning_and_shape(tmp_path, table):
    kw = dict(tomogram_name="t", voxel_size_nm=VS, shape=SHAPE, binning=1.0)
    for bad, match in [
        ({"voxel_size_nm": None}, "voxel size"),
        ({"binning": 0}, "binning"),
        ({"binning": float("nan")}, "binning"),
        ({"shape": None}, "shape"),
    ]:
        with pytest.raises(InputError, match=match):
            write_table_star(tmp_path / "x.star", table, **{**kw, **bad})
    path = write_table_star(tmp_path / "v.star", table, **kw)
    with pytest.raises(InputError, match="voxel size"):
        read_vesicles(path)
    with pytest.raises(InputError, match="voxel size"):
        read_table_star(path, voxel_size_nm=None)


def test_star_several_tomograms_need_a_name(tmp_path, table):
    df = pd.DataFrame(
        {"rlnTomoName": ["a", "b"], "rlnCoordinateX": [1.0, 2.0], "rlnCoordinateY": [1.0, 2.0],
         "rlnCoordinateZ": [1.0, 2.0]}
    )  # fmt: skip
    starfile.write({"particles": df}, tmp_path / "m.star")
    with pytest.raises(InputError, match="2 tomograms"):
        read_table_star(tmp_path / "m.star", voxel_size_nm=1.0, binning=1.0)
    one = read_table_star(tmp_path / "m.star", voxel_size_nm=1.0, tomogram_name="b", binning=1)
    assert len(one) == 1 and one["center_x_px"].iloc[0] == 2.0
    assert np.isnan(one["radius_nm"].iloc[0])
    with pytest.raises(InputError, match="synapsegRadiusAngst"):
        read_vesicles(tmp_path / "m.star", voxel_size_nm=1.0, tomogram_name="a", binning=1)


def test_existing_and_unwritable_outputs(tmp_path, table):
    kw = dict(tomogram_name="t", voxel_size_nm=VS, shape=SHAPE)
    write_table_star(tmp_path / "v.star", table, **kw)
    with pytest.raises(OutputExistsError):
        write_table_star(tmp_path / "v.star", table, **kw)
    write_table_star(tmp_path / "v.star", table, overwrite=True, **kw)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create"):
        write_table_star(blocker / "v.star", table, **kw)


def test_read_vesicles_dispatches_star(tmp_path, table, assert_tables_equal):
    path = write_table_star(tmp_path / "v.star", table, tomogram_name="t", voxel_size_nm=VS,
                            shape=SHAPE, binning=2)  # fmt: skip
    assert_tables_equal(read_vesicles(path, voxel_size_nm=VS, binning=2), table, atol=1e-5)


def test_default_star_is_relion5_only(tmp_path, table, assert_tables_equal):
    # issue 13 item 9: without a known binning, rlnCoordinate* would be binned pixels
    # labelled as unbinned; the default writes only the binning-free RELION-5 columns
    path = write_table_star(
        tmp_path / "v.star", table, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE
    )
    df = starfile.read(path)
    assert not {"rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"} & set(df.columns)
    for axis in "XYZ":
        assert f"rlnCenteredCoordinate{axis}Angst" in df
    assert_tables_equal(read_vesicles(path, voxel_size_nm=VS, shape=SHAPE), table, atol=1e-5)


def test_centered_coordinates_win_over_a_wrong_binning(tmp_path, table, assert_tables_equal):
    # an old file with both conventions, read with the wrong binning: the centered Å
    # columns (binning-free) give the right centers when the shape is known
    path = write_table_star(
        tmp_path / "v.star", table, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE, binning=4
    )
    back = read_table_star(path, voxel_size_nm=VS, shape=SHAPE, binning=1)
    assert_tables_equal(back, table, atol=1e-5)
    # without the shape, the pixel columns are used with the binning given
    back4 = read_table_star(path, voxel_size_nm=VS, binning=4)
    assert_tables_equal(back4, table, atol=1e-5)


def test_relion4_only_file_needs_the_binning(tmp_path):
    df = pd.DataFrame({"rlnCoordinateX": [8.0], "rlnCoordinateY": [4.0], "rlnCoordinateZ": [4.0]})
    starfile.write({"particles": df}, tmp_path / "r4.star")
    with pytest.raises(InputError, match="star-binning"):
        read_table_star(tmp_path / "r4.star", voxel_size_nm=1.0, shape=SHAPE)
    back = read_table_star(tmp_path / "r4.star", voxel_size_nm=1.0, shape=SHAPE, binning=4)
    assert back["center_x_px"].iloc[0] == pytest.approx(2.0)
    assert np.isnan(back["score"].iloc[0])  # no score in the file: none invented


def test_star_keeps_source(tmp_path, table):
    t = table.assign(source=["auto"] * (len(table) - 1) + ["manual"])
    path = write_table_star(
        tmp_path / "v.star", t, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE
    )
    back = read_table_star(path, voxel_size_nm=VS, shape=SHAPE)
    assert back["source"].tolist() == t["source"].tolist()


def test_binning_from_tilt_series_size():
    from synapseg.io.star import binning_from_tilt_series

    assert binning_from_tilt_series((4096, 4096), (256, 1024, 1024)) == 4.0
    assert binning_from_tilt_series((4092, 5760), (200, 1440, 1023)) == 4.0  # floored sizes
    assert binning_from_tilt_series((3000, 3000), (100, 1000, 1000)) == 3.0
    with pytest.raises(InputError, match="not a binning"):
        binning_from_tilt_series((4096, 4096), (100, 512, 1024))
