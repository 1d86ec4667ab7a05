"""Context files: the AZ as JSON + mask + PLY mesh + IMOD contours, read back."""

from __future__ import annotations

import numpy as np

from synapseg.context.files import (
    az_contours,
    read_active_zone,
    read_ply,
    write_active_zone,
    write_ply,
)

from .conftest import VOXEL_NM


def test_ply_round_trip(tmp_path):
    verts = np.array([[0.0, 0, 0], [0, 1, 0], [0, 0, 2], [3, 1, 1]])
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    write_ply(tmp_path / "m.ply", verts, faces)
    text = (tmp_path / "m.ply").read_text()
    assert "element vertex 4" in text and "element face 2" in text
    v, f = read_ply(tmp_path / "m.ply")
    np.testing.assert_allclose(v, verts)
    np.testing.assert_array_equal(f, faces)
    first_vertex = text.splitlines()[text.splitlines().index("end_header") + 3]
    assert first_vertex.split() == ["2.000", "0.000", "0.000"]  # x y z of (z=2, y=0, x=0)


def test_contours_follow_the_membrane():
    mask = np.zeros((5, 40, 40), bool)
    yy, xx = np.mgrid[:40, :40]
    mask[:] = np.abs(xx - (0.5 * yy + 5)) <= 1.0  # a tilted line in every section
    paths = az_contours(mask)
    assert len(paths) == 5
    for z, p in enumerate(paths):
        assert np.all(p[:, 0] == z) and len(p) > 10
        np.testing.assert_allclose(p[:, 2], 0.5 * p[:, 1] + 5, atol=0.6)


def test_active_zone_files_round_trip(synapse_context, tmp_path):
    az = synapse_context.az
    written = write_active_zone(tmp_path / "t_az.json", az, VOXEL_NM)
    assert set(written) == {"json", "mask", "mesh", "imod"}
    data = written["imod"].read_bytes()
    assert data.startswith(b"IMODV1.2") and data.count(b"CONT") == az.mask.any(axis=(1, 2)).sum()
    back = read_active_zone(tmp_path / "t_az.json", VOXEL_NM)
    np.testing.assert_array_equal(back.mask, az.mask)
    np.testing.assert_allclose(back.points_nm, az.points_nm, atol=1e-3)
    np.testing.assert_allclose(back.vertices_nm, az.vertices_nm, atol=1e-3)
    none = write_active_zone(tmp_path / "n_az.json", None, VOXEL_NM)
    assert set(none) == {"json"} and read_active_zone(none["json"]) is None
