"""Label rendering from a vesicle table: each label is the sphere the table describes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synapseg.geometry.render import render_labels
from synapseg.io.tables import make_table


def _ball_volume_vox(radius_nm: float, vs: np.ndarray) -> float:
    return 4 / 3 * np.pi * radius_nm**3 / float(np.prod(vs))


def test_labels_match_table_centroid_and_volume():
    vs = np.array([1.6, 1.2, 1.2])
    centers = np.array([[12.3, 20.6, 18.2], [14.0, 45.4, 50.7], [30.5, 22.0, 60.1]])
    radii = np.array([9.0, 12.0, 14.5])
    table = make_table(centers, radii - 2.25, vs, ids=[4, 7, 11])
    labels = render_labels(table, (48, 70, 80), vs)
    assert labels.dtype == np.uint16 and labels.shape == (48, 70, 80)
    assert set(np.unique(labels)) == {0, 4, 7, 11}
    ids = [4, 7, 11]
    got_c = np.array(ndimage.center_of_mass(labels > 0, labels, ids))
    counts = ndimage.sum(np.ones_like(labels), labels, ids)
    np.testing.assert_allclose(got_c, centers, atol=0.1)
    for count, r in zip(counts, radii):
        assert count == pytest.approx(_ball_volume_vox(r, vs), rel=0.03)


def test_anisotropic_voxels_give_physical_sphere():
    vs = np.array([2.0, 1.0, 1.0])
    table = make_table([[10.0, 20.0, 20.0]], [8.0], vs, outer_radius_nm=[8.0])
    labels = render_labels(table, (21, 41, 41), vs)
    zz, yy, xx = np.nonzero(labels)
    assert (zz.max() - zz.min()) == 8  # ±4 sections of 2 nm
    assert (xx.max() - xx.min()) == 16  # ±8 columns of 1 nm


def test_overlap_goes_to_radical_plane_independent_of_order():
    vs = (1.0, 1.0, 1.0)
    # big ball at x=20 (r=10), small at x=31 (r=4): they overlap around x=28..30
    centers = [[16.0, 16.0, 20.0], [16.0, 16.0, 31.0]]
    table = make_table(centers, [0, 0], vs, outer_radius_nm=[10.0, 4.0], ids=[1, 2])
    a = render_labels(table, (32, 32, 40), vs)
    b = render_labels(table.iloc[::-1].reset_index(drop=True), (32, 32, 40), vs)
    np.testing.assert_array_equal(a, b)
    # radical plane: x where (x-20)^2 - 100 = (x-31)^2 - 16  ->  x = 29.32
    row = a[16, 16]
    assert row[29] == 1 and row[30] == 2
    # the small ball keeps its own center and most of itself
    assert row[31] == 2 and (a == 2).sum() > 0.7 * 4 / 3 * np.pi * 4**3


def test_clipped_at_faces_and_rows_skipped(caplog):
    vs = (1.0, 1.0, 1.0)
    table = make_table(
        [[0.0, 0.0, 0.0], [50.0, 50.0, 50.0], [5.0, 5.0, 5.0]],
        [0, 0, np.nan],
        vs,
        outer_radius_nm=[3.0, 3.0, np.nan],
    )
    labels = render_labels(table, (10, 10, 10), vs)
    assert labels[0, 0, 0] == 1 and (labels == 2).sum() == 0 and (labels == 3).sum() == 0
    assert "skipping 1 vesicle" in caplog.text


def test_renders_into_memmap_and_clears_it(tmp_path):
    vs = (1.0, 1.0, 1.0)
    out = np.lib.format.open_memmap(tmp_path / "l.npy", "w+", np.uint16, (12, 12, 12))
    out[:] = 9
    table = make_table([[6.0, 6.0, 6.0]], [0], vs, outer_radius_nm=[3.0])
    result = render_labels(table, (12, 12, 12), vs, out=out)
    assert result is out
    assert set(np.unique(out)) == {0, 1} and out[6, 6, 6] == 1


def test_bad_ids_and_out_rejected():
    vs = (1.0, 1.0, 1.0)
    table = make_table([[5.0, 5.0, 5.0], [2.0, 2.0, 2.0]], [2, 2], vs, ids=[1, 1])
    with pytest.raises(ValueError, match="unique"):
        render_labels(table, (10, 10, 10), vs)
    table = make_table([[5.0, 5.0, 5.0]], [2], vs, ids=[70000])
    with pytest.raises(ValueError, match="1..65535"):
        render_labels(table, (10, 10, 10), vs)
    with pytest.raises(ValueError, match="uint16"):
        render_labels(table, (10, 10, 10), vs, out=np.zeros((10, 10, 10), np.int32))


def test_empty_table_gives_zeros():
    table = make_table(np.zeros((0, 3)), [], (1.0, 1.0, 1.0))
    assert not render_labels(table, (4, 5, 6), 1.0).any()


def test_a_new_writer_file_is_zero_and_is_not_cleared_again(tmp_path):
    """``open_volume_writer`` yields zeros, so ``out_is_zero=True`` paints the vesicles
    without clearing (touching) the rest of the map: same labels; and the flag really skips
    the clearing (a voxel set beforehand stays)."""
    from synapseg.io.volume import read_volume
    from synapseg.io.volume_writer import open_volume_writer

    vs = (1.0, 1.0, 1.0)
    table = make_table([[6.0, 6.0, 6.0], [6.0, 6.0, 14.0]], [0, 0], vs, outer_radius_nm=[3.0, 2.5])
    want = render_labels(table, (12, 14, 20), vs)
    with open_volume_writer(tmp_path / "l.mrc", (12, 14, 20), np.uint16, 1.0) as out:
        assert not np.any(out)  # a new file: zeros
        render_labels(table, (12, 14, 20), vs, out=out, out_is_zero=True)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "l.mrc").data), want)
    marked = np.zeros((12, 14, 20), np.uint16)
    marked[0, 0, 0] = 2  # far from both spheres
    render_labels(table, (12, 14, 20), vs, out=marked, out_is_zero=True)
    assert marked[0, 0, 0] == 2 and marked[6, 6, 6] == 1
    render_labels(table, (12, 14, 20), vs, out=marked)  # the default clears
    np.testing.assert_array_equal(marked, want)
