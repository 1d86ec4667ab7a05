from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.evaluate.from_labels import table_from_labels
from synapseg.evaluate.metrics import compute_metrics
from synapseg.io.tables import CENTER_NM, CENTER_PX, CORE_COLUMNS, make_table
from synapseg.post.render import render_labels

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PYTO_EXAMPLE = SHARED / "reference" / "pyto-presynaptic-example"


def _spheres(voxel_size_nm, seed=0):
    """Four well separated vesicles with sub-voxel centers, rendered as labels."""
    rng = np.random.default_rng(seed)
    vs = np.asarray(voxel_size_nm, float)
    centers_nm = np.array([[28, 28, 28], [28, 28, 84], [28, 84, 28], [30, 84, 84]], float)
    centers_px = centers_nm / vs + rng.uniform(-0.5, 0.5, (4, 3))
    table = make_table(centers_px, rng.uniform(15, 22, 4), vs, ids=np.array([3, 7, 8, 20]))
    shape = np.ceil(np.array([60, 115, 115]) / vs).astype(int)
    return table, render_labels(table, shape, vs)


@pytest.mark.parametrize("voxel_size_nm", [(1.0, 1.0, 1.0), (1.5, 1.2, 1.2), (2.0, 2.0, 2.0)])
def test_labels_derived_centers_and_radii_equal_table_for_rendered_spheres(voxel_size_nm):
    table, labels = _spheres(voxel_size_nm)
    derived = table_from_labels(labels, voxel_size_nm, membrane_thickness_nm=4.5)
    assert list(derived.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    assert derived["id"].tolist() == [3, 7, 8, 20]
    np.testing.assert_allclose(derived[CENTER_PX], table[CENTER_PX], atol=0.05)
    np.testing.assert_allclose(derived[CENTER_NM], table[CENTER_NM], atol=0.06)
    # Labels are filled to the outer surface; the midline lies half a membrane inside.
    np.testing.assert_allclose(derived["outer_radius_nm"], table["outer_radius_nm"], atol=0.05)
    np.testing.assert_allclose(derived["radius_nm"], table["radius_nm"], atol=0.05)
    np.testing.assert_allclose(derived["radius_nm"], derived["outer_radius_nm"] - 2.25)
    assert not derived["touches_border"].any()
    m = compute_metrics(table, derived)
    assert m["f1"] == 1.0 and m["center_error_nm"]["max"] < 0.1


def test_membrane_thickness_sets_midline_radius():
    table, labels = _spheres((1.0, 1.0, 1.0))
    thin = table_from_labels(labels, 1.0, membrane_thickness_nm=2.0)
    thick = table_from_labels(labels, 1.0, membrane_thickness_nm=6.0)
    np.testing.assert_allclose(thin["radius_nm"] - thick["radius_nm"], 2.0)
    np.testing.assert_allclose(thin["outer_radius_nm"], thick["outer_radius_nm"])


def test_pyto_convention_rounds_center_and_measures_to_surface_voxels():
    table, labels = _spheres((1.0, 1.0, 1.0))
    pyto = table_from_labels(labels, 1.0, convention="pyto")
    np.testing.assert_array_equal(pyto[CENTER_PX], np.rint(pyto[CENTER_PX]))
    assert np.all(np.abs(pyto[CENTER_PX].to_numpy() - table[CENTER_PX].to_numpy()) <= 0.5 + 0.05)
    # Surface-voxel centers lie ≈ half a voxel inside the outer surface.
    gap = table["outer_radius_nm"] - pyto["outer_radius_nm"]
    assert np.all((gap > 0.2) & (gap < 0.7))
    np.testing.assert_allclose(pyto["outer_radius_nm"], pyto["pyto_radius_nm"])


def test_ids_select_vesicles_and_missing_ids_are_reported():
    _, labels = _spheres((1.0, 1.0, 1.0))
    labels[0, 0, :5] = 2  # a membrane-like segment that is not a vesicle
    sub = table_from_labels(labels, 1.0, ids=[7, 20])
    assert sub["id"].tolist() == [7, 20]
    assert 2 in table_from_labels(labels, 1.0)["id"].tolist()
    with pytest.raises(InputError, match=r"vesicle ids \[99\] are not in the label volume"):
        table_from_labels(labels, 1.0, ids=[7, 99])


def test_vesicle_cut_by_the_volume_face_is_flagged():
    table, labels = _spheres((1.0, 1.0, 1.0))
    derived = table_from_labels(labels[:, :, :75], 1.0)
    assert derived.set_index("id")["touches_border"].to_dict() == {
        3: False,
        7: True,
        8: False,
        20: True,
    }


def test_empty_and_bad_label_volumes():
    empty = table_from_labels(np.zeros((4, 5, 6), np.uint16), 1.0)
    assert len(empty) == 0 and "radius_nm" in empty.columns
    with pytest.raises(InputError, match="3D"):
        table_from_labels(np.zeros((5, 6), np.uint16), 1.0)
    with pytest.raises(InputError, match="non-integer"):
        table_from_labels(np.full((2, 2, 2), 0.5), 1.0)
    with pytest.raises(InputError, match="convention"):
        table_from_labels(np.zeros((2, 2, 2), np.uint8), 1.0, convention="imod")


def _read_pyto_vesicle_table(path: Path) -> dict[int, dict[str, float]]:
    """Pyto's vesicles .dat: id, 12 density stats, volumes, distances, center x y z, radius
    mean std min max (the last eleven columns are used)."""
    rows = {}
    for line in path.read_text().splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        v = [float(t) for t in tokens]
        rows[int(v[0])] = {
            "n_voxels": v[-11],
            "x": v[-7],
            "y": v[-6],
            "z": v[-5],
            "radius_mean": v[-4],
            "radius_std": v[-3],
        }
    return rows


@pytest.mark.reference("pyto-presynaptic-example")
def test_real_pyto_labels_reproduce_pyto_centers_and_radii():
    from synapseg.io.volume import read_volume

    info = (PYTO_EXAMPLE / "common_tomo_info.py").read_text()
    vesicle_ids = next(
        ast.literal_eval(line.split("=", 1)[1].strip())
        for line in info.splitlines()
        if line.startswith("vesicle_ids")
    )
    pyto = _read_pyto_vesicle_table(PYTO_EXAMPLE / "vesicles_tomo_vesicles.dat")
    assert sorted(pyto) == sorted(vesicle_ids)
    volume = read_volume(PYTO_EXAMPLE / "viz_labels.mrc")
    labels = np.asarray(volume.data)
    vs = volume.voxel_size_nm
    for convention in ("synapseg", "pyto"):
        table = table_from_labels(labels, vs, ids=vesicle_ids, convention=convention)
        assert sorted(table["id"]) == sorted(vesicle_ids)
        for row in table.itertuples():
            ref = pyto[row.id]
            # Pyto's .dat centers are zero-based array indices (x, y, z) = our (x, y, z) px:
            # one-based coordinates would be off by exactly one voxel on every axis.
            assert abs(row.center_x_px - ref["x"]) <= 0.5
            assert abs(row.center_y_px - ref["y"]) <= 0.5
            assert abs(row.center_z_px - ref["z"]) <= 0.5
            assert row.n_voxels == ref["n_voxels"]
            # Pyto's radius (mean center-to-surface-voxel distance), in px, within 0.3 px
            # (the .dat rounds to 0.1 px; we reproduce it to that rounding).
            assert abs(row.pyto_radius_nm / vs[2] - ref["radius_mean"]) <= 0.06
            assert abs(row.pyto_radius_std_nm / vs[2] - ref["radius_std"]) <= 0.006
            if convention == "pyto":
                assert abs(row.outer_radius_nm / vs[2] - ref["radius_mean"]) <= 0.3
            else:
                # Volume-equivalent outer radius: about half a voxel beyond surface voxels.
                assert 0.2 < row.outer_radius_nm / vs[2] - ref["radius_mean"] < 0.6
