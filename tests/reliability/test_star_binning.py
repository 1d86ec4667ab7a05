"""RELION-4-only STAR annotations are never silently read as unbinned (issue 13 item 9)."""

from __future__ import annotations

import numpy as np
import pytest
import starfile

from synapseg.errors import InputError
from synapseg.io.schema import make_table
from synapseg.io.star import write_table_star
from synapseg.train.targets import load_annotation

SHAPE = (40, 80, 80)
VS = (2.0, 2.0, 2.0)


@pytest.fixture()
def relion4_only(tmp_path):
    table = make_table(
        np.array([[20.0, 40.0, 40.0], [20.0, 40.0, 60.0]]), np.array([12.0, 12.0]), VS
    )
    path = tmp_path / "gt.star"
    write_table_star(path, table, tomogram_name="t", voxel_size_nm=VS, shape=SHAPE, binning=4)
    star = starfile.read(path, always_dict=True)
    key = next(k for k, df in star.items() if "rlnCoordinateX" in df)
    star[key] = star[key].drop(columns=[c for c in star[key] if c.startswith("rlnCentered")])
    starfile.write(star, path, overwrite=True)
    return path


def test_training_annotation_needs_the_binning(relion4_only):
    with pytest.raises(InputError, match="binning"):
        load_annotation(relion4_only, shape=SHAPE, voxel_size_nm=VS)
    ann = load_annotation(relion4_only, shape=SHAPE, voxel_size_nm=VS, binning=4)
    centers = np.sort(ann.table[["center_x_px"]].to_numpy().ravel())
    np.testing.assert_allclose(centers, [40.0, 60.0], atol=1e-3)
