"""Annotations -> training targets: every format gives the same targets; bad input is clear."""

from __future__ import annotations

import imodmodel
import numpy as np
import pytest

from synapseg.errors import InputError, VoxelSizeError
from synapseg.io.imod import write_imod_spheres
from synapseg.io.star import write_table_star
from synapseg.io.tables import make_table, write_table_csv, write_table_json
from synapseg.io.volume_writer import write_volume
from synapseg.post.render import render_labels
from synapseg.train.targets import (
    boundary_target,
    centers_from_instances,
    instance_targets,
    load_annotation,
)

from .conftest import SHAPE, VOXEL_NM, toy_table

VS3 = (VOXEL_NM,) * 3


@pytest.fixture
def annotated(tmp_path):
    """The same vesicles as label MRC, CSV, JSON, STAR and IMOD .mod."""
    table = toy_table(seed=3)
    paths = {
        "labels": write_volume(
            tmp_path / "labels.mrc", render_labels(table, SHAPE, VOXEL_NM), VOXEL_NM
        ),
        "csv": write_table_csv(tmp_path / "v.csv", table),
        "json": write_table_json(tmp_path / "v.json", table),
        "star": write_table_star(
            tmp_path / "v.star", table, tomogram_name="t", voxel_size_nm=VOXEL_NM, shape=SHAPE
        ),
        "mod": write_imod_spheres(tmp_path / "v.mod", table, voxel_size_nm=VOXEL_NM, shape=SHAPE),
    }
    return table, paths


@pytest.mark.parametrize("model_voxel_nm", [VOXEL_NM, 3.0])
def test_every_format_gives_identical_targets(annotated, model_voxel_nm):
    table, paths = annotated
    dst = (model_voxel_nm,) * 3
    from synapseg.train.targets import grid_shape

    dst_shape = grid_shape(SHAPE, VS3, dst)
    targets = {}
    for fmt, path in paths.items():
        ann = load_annotation(path, shape=SHAPE, voxel_size_nm=VOXEL_NM)
        assert ann.n_vesicles == len(table), fmt
        targets[fmt] = instance_targets(ann, VS3, dst, dst_shape) != 0
    assert targets["csv"].sum() > 1000
    for fmt in ("json", "star", "mod"):  # tables: rendered exactly on the model grid
        np.testing.assert_array_equal(targets[fmt], targets["csv"], err_msg=fmt)
    if model_voxel_nm == VOXEL_NM:
        np.testing.assert_array_equal(targets["labels"], targets["csv"])
    else:  # label volumes are resampled (nearest): equal up to a thin boundary shell
        assert (targets["labels"] != targets["csv"]).mean() < 0.01


def test_binary_label_mask_becomes_instances(tmp_path):
    table = toy_table(seed=1)
    binary = (render_labels(table, SHAPE, VOXEL_NM) != 0).astype(np.uint8)
    path = write_volume(tmp_path / "bin.mrc", binary, VOXEL_NM)
    ann = load_annotation(path, shape=SHAPE, voxel_size_nm=VOXEL_NM)
    inst = instance_targets(ann, VS3, VS3, SHAPE)
    assert len(np.unique(inst)) - 1 == len(table)
    found = centers_from_instances(inst, VS3)
    d = np.linalg.norm(
        found[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()[:, None]
        - table[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()[None],
        axis=2,
    )
    assert d.min(axis=0).max() < 1.0  # every vesicle found within 1 nm


def test_boundary_channel_marks_surfaces_only():
    inst = np.zeros((10, 10, 10), np.uint16)
    inst[2:8, 2:8, 2:8] = 1
    b = boundary_target(inst)
    assert b[2, 5, 5] == 1 and b[5, 5, 5] == 0 and b[0, 0, 0] == 0


def test_shape_mismatch_is_an_input_error(tmp_path):
    path = write_volume(tmp_path / "l.mrc", np.ones((8, 8, 8), np.uint8), VOXEL_NM)
    with pytest.raises(InputError, match="does not match the tomogram"):
        load_annotation(path, shape=SHAPE, voxel_size_nm=VOXEL_NM)


def test_voxel_size_mismatch_is_an_input_error(tmp_path):
    labels = render_labels(toy_table(), SHAPE, VOXEL_NM)
    path = write_volume(tmp_path / "l.mrc", labels, 1.5)
    with pytest.raises(VoxelSizeError, match="voxel size"):
        load_annotation(path, shape=SHAPE, voxel_size_nm=VOXEL_NM)


def test_mod_without_sphere_sizes_is_an_input_error(tmp_path):
    df = toy_table()[["center_x_px", "center_y_px", "center_z_px"]]
    df = df.rename(columns={"center_x_px": "x", "center_y_px": "y", "center_z_px": "z"})
    df["object_id"], df["contour_id"] = 0, 0
    imodmodel.write(df[["object_id", "contour_id", "x", "y", "z"]], tmp_path / "p.mod")
    with pytest.raises(InputError, match="sphere size"):
        load_annotation(tmp_path / "p.mod", shape=SHAPE, voxel_size_nm=VOXEL_NM)


def test_empty_annotation_is_an_input_error(tmp_path):
    empty = make_table(np.zeros((0, 3)), np.zeros(0), VS3)
    csv = write_table_csv(tmp_path / "e.csv", empty)
    labels = write_volume(tmp_path / "e.mrc", np.zeros(SHAPE, np.uint8), VOXEL_NM)
    for path in (csv, labels):
        with pytest.raises(InputError, match="no vesicles"):
            load_annotation(path, shape=SHAPE, voxel_size_nm=VOXEL_NM)
    assert (
        load_annotation(labels, shape=SHAPE, voxel_size_nm=VOXEL_NM, allow_empty=True).n_vesicles
        == 0
    )


def test_missing_annotation_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_annotation(tmp_path / "nope.csv", shape=SHAPE, voxel_size_nm=VOXEL_NM)
