"""IMOD .mod spheres: IMOD's coordinate conventions, round trips, independent reader, bad files."""

from __future__ import annotations

import struct

import imodmodel
import numpy as np
import pytest
from imodmodel.models import ImodModel

from synapseg.errors import InputError, OutputExistsError
from synapseg.io.imod import imod_to_table, read_imod_spheres, write_imod_spheres
from synapseg.io.tables import make_table, read_vesicles

VS = (1.68, 1.4, 1.4)
SHAPE = (60, 90, 110)


@pytest.fixture
def table():
    centers = np.array([[20.37, 41.62, 55.08], [31.0, 12.25, 80.9], [7.5, 70.0, 9.99]])
    return make_table(centers, [19.0, 22.4, 17.3], VS, ids=[3, 10, 42])


def test_known_vesicle_round_trip(tmp_path, table):
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    centers, radius_px, meta = read_imod_spheres(path)
    np.testing.assert_allclose(centers, table[["center_z_px", "center_y_px", "center_x_px"]],
                               atol=0.1)  # fmt: skip
    np.testing.assert_allclose(radius_px, table["radius_nm"] / VS[2], atol=1e-4)
    assert meta["shape"] == SHAPE and meta["units"] == -9
    assert meta["pixel_size_nm"] == pytest.approx(1.4) and meta["zscale"] == pytest.approx(1.2)
    assert meta["labels"] == ["3", "10", "42"]
    back = read_vesicles(path)  # voxel size from the header
    np.testing.assert_array_equal(back["id"], [3, 10, 42])
    np.testing.assert_allclose(back["radius_nm"], table["radius_nm"], atol=1e-4)
    np.testing.assert_allclose(back["center_z_nm"], table["center_z_nm"], atol=1e-3)


def test_imod_pixel_conventions_in_the_file(tmp_path, table):
    """x, y: pixel centers at i + 0.5; z: section centers at integers (binspec)."""
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    df = imodmodel.read(path)  # independent reader
    assert len(df) == 3
    np.testing.assert_allclose(df["x"], table["center_x_px"] + 0.5, atol=1e-4)
    np.testing.assert_allclose(df["y"], table["center_y_px"] + 0.5, atol=1e-4)
    np.testing.assert_allclose(df["z"], table["center_z_px"], atol=1e-4)
    model = ImodModel.from_file(path)
    assert model.header.xmax == 110 and model.header.zmax == 60
    assert model.header.flags.z_coordinates_start_from_negative_half
    obj = model.objects[0]
    assert obj.header.flags.scattered and obj.header.name == "vesicles"
    sizes = np.concatenate([c.point_sizes for c in obj.contours])
    np.testing.assert_allclose(sizes, table["radius_nm"] / VS[2], atol=1e-4)


def test_flipped_yz_models_are_read_in_image_axes(tmp_path, table):
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    raw = bytearray(path.read_bytes())
    # model flags live after 8-byte id, 128-byte name and xmax, ymax, zmax, objsize
    off = 8 + 128 + 16
    (flags,) = struct.unpack(">I", raw[off : off + 4])
    raw[off : off + 4] = struct.pack(">I", flags | (1 << 16))
    # swap stored y and z of every point to mimic a flipped model
    pts_at = [i + 4 + 16 for i in range(len(raw)) if raw[i : i + 4] == b"CONT"]
    for p in pts_at:
        x, y, z = struct.unpack(">3f", raw[p : p + 12])
        raw[p : p + 12] = struct.pack(">3f", x, z, y)
    flipped = tmp_path / "f.mod"
    flipped.write_bytes(bytes(raw))
    centers, _, _ = read_imod_spheres(flipped)
    np.testing.assert_allclose(centers[:, 0], table["center_z_px"], atol=1e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imodmodel's writer uses pydantic v1 API
def test_model_without_sizes(tmp_path, table):
    df = table[["center_x_px", "center_y_px", "center_z_px"]].rename(
        columns={"center_x_px": "x", "center_y_px": "y", "center_z_px": "z"}
    )
    df["object_id"], df["contour_id"] = 0, 0
    imodmodel.write(df[["object_id", "contour_id", "x", "y", "z"]], tmp_path / "p.mod")
    with pytest.raises(InputError, match="3 of 3 points have no sphere size"):
        read_imod_spheres(tmp_path / "p.mod")
    _, radius, _ = read_imod_spheres(tmp_path / "p.mod", allow_missing_sizes=True)
    assert np.isnan(radius).all()
    t = read_vesicles(tmp_path / "p.mod", voxel_size_nm=VS, allow_missing_radius=True)
    assert len(t) == 3 and t["radius_nm"].isna().all()
    np.testing.assert_array_equal(t["id"], [1, 2, 3])  # no labels: ids in file order


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"NOTAMODEL" * 40, "not an IMOD binary model"),
        (b"IMODV1.2" + b"\0" * 100, "truncated"),
    ],
)
def test_malformed_models(tmp_path, content, match):
    path = tmp_path / "bad.mod"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_imod_spheres(path)


def test_truncated_after_header_and_empty(tmp_path, table):
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    data = path.read_bytes()
    (tmp_path / "cut.mod").write_bytes(data[: len(data) - 60])
    with pytest.raises(InputError, match="truncated"):
        read_imod_spheres(tmp_path / "cut.mod")
    empty = write_imod_spheres(tmp_path / "e.mod", table.iloc[:0], voxel_size_nm=VS, shape=SHAPE)
    with pytest.raises(InputError, match="no points"):
        read_imod_spheres(empty)


def test_overwrite_and_pixel_units(tmp_path, table):
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    with pytest.raises(OutputExistsError):
        write_imod_spheres(path, table, voxel_size_nm=VS, shape=SHAPE)
    raw = bytearray(path.read_bytes())
    units_at = 8 + 128 + 4 * 9 + 4 * 6 + 4 * 5 + 4  # after pixsize
    raw[units_at : units_at + 4] = struct.pack(">i", 0)  # units = pixels
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="no pixel size in nm"):
        imod_to_table(path)
    assert len(imod_to_table(path, voxel_size_nm=VS)) == 3


def test_model_from_another_image_warns(tmp_path, table, caplog):
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    read_vesicles(path, voxel_size_nm=VS, shape=SHAPE)
    assert "check that it belongs" not in caplog.text
    t = read_vesicles(path, voxel_size_nm=(3.36, 2.8, 2.8), shape=(30, 45, 55))
    assert "check that it belongs" in caplog.text and "differs from the tomogram" in caplog.text
    assert t["radius_nm"].iloc[0] == pytest.approx(2 * table["radius_nm"].iloc[0], rel=1e-4)


def test_unwritable_output(tmp_path, table):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the output folder"):
        write_imod_spheres(blocker / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)


def test_model_read_back_invents_no_score(tmp_path, table):
    # a .mod file carries no detection score: reading it must not make up 1.0 (issue 16)
    path = write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VS, shape=SHAPE)
    back = imod_to_table(path, voxel_size_nm=VS, shape=SHAPE)
    assert back["score"].isna().all()
    assert back["id"].tolist() == table["id"].tolist()
