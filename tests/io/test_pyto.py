"""Pyto export: int16 labels in the layout of Pyto's real presynaptic example, and parameters."""

from __future__ import annotations

import ast
import logging
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy import ndimage

from synapseg.errors import InputError, OutputExistsError
from synapseg.io.pyto import face_touching_ids, pyto_labels, write_pyto
from synapseg.io.tables import make_table

EXAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
EXAMPLE = EXAMPLE / "pyto-presynaptic-example"
needs_example = pytest.mark.reference("pyto-presynaptic-example")  # tests/conftest.py
VS_NM = 1.684


def _read_mrc(path: Path) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # old-style header of the example
        with mrcfile.open(path, permissive=True) as m:
            return np.asarray(m.data).copy(), float(m.voxel_size.x)


def _params(path: Path) -> dict:
    """Evaluate the simple assignments of the parameter snippet (lists, ints, dicts)."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            out[node.targets[0].id] = eval(compile(ast.Expression(node.value), "p", "eval"))
    return out


@pytest.fixture(scope="module")
def example():
    labels, vs_a = _read_mrc(EXAMPLE / "viz_labels.mrc")
    info = _params(EXAMPLE / "common_tomo_info.py")
    return labels, vs_a, info


def _table_from_labels(labels: np.ndarray, ids: list[int]) -> tuple:
    """Vesicle table (center, equivalent-volume outer radius) from labelled balls."""
    centers = np.array(ndimage.center_of_mass(labels > 0, labels, ids))
    counts = ndimage.sum(np.ones_like(labels), labels, ids)
    outer = (3 * counts * VS_NM**3 / (4 * np.pi)) ** (1 / 3)
    return make_table(centers, outer - 2.25, VS_NM, outer_radius_nm=outer, ids=np.arange(1, 10))


@needs_example
def test_merge_into_real_pyto_boundaries(tmp_path, example):
    ref, vs_a, info = example
    assert vs_a == pytest.approx(16.84)
    ves = info["vesicle_ids"]
    boundaries = np.where(ref >= 10, 3, ref).astype(np.int8)  # AZ membrane + cytoplasm only
    table = _table_from_labels(ref, ves)
    paths = write_pyto(
        tmp_path / "tomo", table, shape=ref.shape, voxel_size_nm=VS_NM, boundaries=boundaries
    )
    assert paths["labels"].name == "tomo_pyto_labels.mrc"
    out, out_vs = _read_mrc(paths["labels"])
    assert out.dtype == np.int16 and out.shape == ref.shape
    assert out_vs == pytest.approx(16.84, abs=1e-3)
    # AZ membrane kept voxel for voxel; cytoplasm only replaced by vesicles
    np.testing.assert_array_equal(out == info["distance_id"], ref == info["distance_id"])
    assert set(np.unique(out[ref == 3])) <= {3} | set(range(10, 19))
    assert set(np.unique(out)) == {0, 2, 3} | set(range(10, 19))
    # each vesicle lands on the real one it came from
    for new_id, ref_id in zip(range(10, 19), ves):
        a, b = out == new_id, ref == ref_id
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.8, (ref_id, dice)
    assert not set(face_touching_ids(out).tolist()) & set(range(10, 19))  # none on a face
    params = _params(paths["params"])
    assert params["vesicle_ids"] == list(range(10, 19))
    assert params["segmentation_region"] == info["segmentation_region"] == 3
    assert params["distance_id"] == info["distance_id"] == 2
    assert params["boundary_ids"] == [2] + list(range(10, 19))
    assert params["all_ids"] == [2, 3] + list(range(10, 19))
    assert params["synapseg_to_pyto_ids"] == {i: 9 + i for i in range(1, 10)}


@needs_example
def test_existing_vesicle_ids_are_not_reused(example, caplog):
    ref, _, _ = example
    table = make_table([[30.0, 80.0, 60.0]], [10.0], VS_NM)
    labels, id_map, _ = pyto_labels(table, shape=ref.shape, voxel_size_nm=VS_NM, boundaries=ref)
    assert id_map == {1: 75} and "start at 75" in caplog.text
    for old in (36, 48, 61, 74):  # the example's own vesicles stay
        assert (labels == old).sum() == (ref == old).sum() - ((labels == 75) & (ref == old)).sum()


def test_face_touching_vesicles_left_out_with_warning(tmp_path, caplog):
    table = make_table(
        [[10.0, 20.0, 20.0], [2.0, 30.0, 30.0], [15.0, 40.0, 58.5], [15.0, 30.0, 40.0]],
        [6.0, 6.0, 6.0, 6.0],
        VS_NM,
        ids=[4, 5, 6, 7],
    )
    with caplog.at_level(logging.WARNING):
        paths = write_pyto(tmp_path, table, shape=(30, 60, 60), voxel_size_nm=VS_NM)
    assert "ids [5, 6]" in caplog.text
    assert paths["labels"] == tmp_path / "pyto_labels.mrc"
    out, _ = _read_mrc(paths["labels"])
    assert set(np.unique(out)) == {0, 10, 11}
    assert len(face_touching_ids(out)) == 0
    params = _params(paths["params"])
    assert params["synapseg_to_pyto_ids"] == {4: 10, 7: 11}
    assert params["synapseg_excluded_ids"] == [5, 6]
    assert params["distance_id"] is None  # no membrane without boundaries
    assert "NOTE" in paths["params"].read_text()


def test_membrane_is_never_overwritten():
    boundaries = np.full((20, 30, 30), 3, np.int16)
    boundaries[:, :, 14:16] = 2  # a membrane slab through the vesicle
    table = make_table([[10.0, 15.0, 15.0]], [5.0], 1.0)
    labels, _, _ = pyto_labels(table, shape=(20, 30, 30), voxel_size_nm=1.0, boundaries=boundaries)
    np.testing.assert_array_equal(labels[:, :, 14:16], 2)
    ball = (labels == 10).sum()
    assert ball > 0.7 * 4 / 3 * np.pi * 7.25**3 and np.all(boundaries[labels == 10] == 3)


def test_bad_boundaries_and_existing_outputs(tmp_path):
    table = make_table([[10.0, 15.0, 15.0]], [4.0], 1.0)
    with pytest.raises(InputError, match="shape"):
        write_pyto(tmp_path / "a", table, shape=(20, 30, 30), voxel_size_nm=1.0,
                   boundaries=np.zeros((20, 30, 31), np.int16))  # fmt: skip
    with pytest.raises(InputError, match="not integers"):
        write_pyto(tmp_path / "a", table, shape=(20, 30, 30), voxel_size_nm=1.0,
                   boundaries=np.zeros((20, 30, 30), np.float32))  # fmt: skip
    paths = write_pyto(tmp_path / "a_pyto_labels.mrc", table, shape=(20, 30, 30), voxel_size_nm=1.0)
    assert paths["params"] == tmp_path / "a_pyto_params.py"
    with pytest.raises(OutputExistsError):
        write_pyto(tmp_path / "a_pyto_labels.mrc", table, shape=(20, 30, 30), voxel_size_nm=1.0)
    write_pyto(
        tmp_path / "a_pyto_labels.mrc", table, shape=(20, 30, 30), voxel_size_nm=1.0, overwrite=True
    )


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    table = make_table([[10.0, 15.0, 15.0]], [4.0], 1.0)
    with pytest.raises(InputError, match="cannot create the output folder"):
        write_pyto(blocker / "t", table, shape=(20, 30, 30), voxel_size_nm=1.0)
    assert not list(tmp_path.glob("**/*.mrc"))


def _memory_case() -> tuple:
    rng = np.random.default_rng(0)
    shape = (64, 256, 256)
    n = 40
    centers = rng.uniform([16, 16, 16], [48, 240, 240], (n, 3))  # balls off the faces
    table = make_table(centers, rng.uniform(8, 12, n), 1.0)
    boundaries = np.zeros(shape, np.int16)
    boundaries[:, :, 100:] = 3
    boundaries[:, :, 98:100] = 2
    return table, shape, boundaries, int(np.prod(shape)) * 2  # int16 output bytes


def test_write_pyto_streams_big_volumes_in_bounded_memory(tmp_path):
    import tracemalloc

    table, shape, boundaries, out_bytes = _memory_case()
    tracemalloc.start()
    try:
        paths = write_pyto(tmp_path, table, shape=shape, voxel_size_nm=1.0, boundaries=boundaries)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # rendered straight into the MRC's memmap and merged section by section: no full-size
    # array in memory (it used to hold two uint16 renders plus the int16 result, 3.5x)
    assert peak < 0.5 * out_bytes, peak / out_bytes
    out, _ = _read_mrc(paths["labels"])
    expected, _, _ = pyto_labels(table, shape=shape, voxel_size_nm=1.0, boundaries=boundaries)
    np.testing.assert_array_equal(out, expected)
    assert set(np.unique(out)) == {0, 2, 3} | set(range(10, 10 + len(table)))


def test_pyto_labels_in_memory_allocates_only_the_result():
    import tracemalloc

    table, shape, boundaries, out_bytes = _memory_case()
    tracemalloc.start()
    try:
        labels, _, _ = pyto_labels(table, shape=shape, voxel_size_nm=1.0, boundaries=boundaries)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels.nbytes == out_bytes and peak < 1.5 * out_bytes, peak / out_bytes
    out = np.full(shape, 7, np.int16)
    again, _, _ = pyto_labels(table, shape=shape, voxel_size_nm=1.0, out=out)
    assert again is out and set(np.unique(out)) == {0} | set(range(10, 10 + len(table)))
    with pytest.raises(ValueError, match="int16"):
        pyto_labels(table, shape=shape, voxel_size_nm=1.0, out=np.zeros(shape, np.uint16))
