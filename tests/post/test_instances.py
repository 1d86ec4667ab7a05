import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from synapseg.post.instances import auto_threshold, candidate_instances

VOXEL_NM = 1.68


def _recall(found_px, true_px, radii_nm):
    if len(found_px) == 0:
        return 0.0
    dist, idx = cKDTree(found_px).query(true_px)
    hit = dist < 0.5 * radii_nm / VOXEL_NM
    return len(set(idx[hit])) / len(true_px)


@pytest.fixture(scope="module")
def crowded(kit):
    shape = (80, 128, 128)
    outer = np.random.default_rng(0).uniform(17, 25, 60)
    centers, outer = kit.packed_centers(shape, 60, outer, seed=0)
    prob = kit.blurred_balls(shape, centers, outer, sigma_px=1.5)
    return shape, centers, outer, prob


def test_crowded_cluster_is_split_with_high_recall(crowded):
    shape, centers, outer, prob = crowded
    gaps = np.linalg.norm(centers[:, None] - centers[None], axis=2) * VOXEL_NM
    gaps -= outer[:, None] + outer[None]
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(axis=1)
    assert len(centers) >= 25
    assert np.mean((nearest >= 1.0 - 1e-6) & (nearest <= 4.0 + 1e-6)) >= 0.6
    cand = candidate_instances(prob, VOXEL_NM, min_radius_nm=10, max_radius_nm=35)
    # neighbours bridge at the threshold (fewer components than vesicles) ...
    assert cand.n_components < 0.8 * len(centers)
    assert cand.n_split > 0
    # ... and the watershed splits them again
    assert _recall(cand.centers_px, centers, outer) >= 0.95
    assert len(cand) <= len(centers) + 2
    assert np.all((cand.score > 0) & (cand.score <= 1))


def test_a_joined_cloud_is_split_on_a_coarser_grid(crowded, monkeypatch):
    """A component whose bounding box exceeds ``COARSE_BOX_VOXELS`` is split on every second
    voxel (its distance transform gets an eighth of the voxels) and still gives the same
    vesicles: the coarse candidates lie within a voxel or so of the full-resolution ones."""
    from synapseg.post import instances

    _, centers, outer, prob = crowded
    full = candidate_instances(prob, VOXEL_NM, threshold=0.5, workers=1)
    sizes = []
    edt = instances.ndimage.distance_transform_edt

    def spy(a, *args, **kwargs):
        sizes.append(a.size)
        return edt(a, *args, **kwargs)

    monkeypatch.setattr(instances.ndimage, "distance_transform_edt", spy)
    monkeypatch.setattr(instances, "COARSE_BOX_VOXELS", 20**3)
    coarse = candidate_instances(prob, VOXEL_NM, threshold=0.5, workers=1)
    biggest = max(
        np.prod([s.stop - s.start for s in sl])
        for sl in ndimage.find_objects(ndimage.label(prob >= 0.5)[0])
    )
    assert biggest > 20**3 and max(sizes) < biggest / 4  # the big ones ran coarse
    assert _recall(coarse.centers_px, centers, outer) >= 0.95
    assert abs(len(coarse) - len(full)) <= 0.05 * len(full)
    d, _ = cKDTree(full.centers_px).query(coarse.centers_px)
    assert np.median(d) < 1.0 and np.mean(d < 2.0) >= 0.9


def test_uint8_map_gives_the_same_candidates(crowded):
    _, centers, outer, prob = crowded
    a = candidate_instances(prob, VOXEL_NM, threshold=0.5)
    b = candidate_instances(np.round(prob * 255).astype(np.uint8), VOXEL_NM, threshold=0.5)
    assert len(a) == len(b)
    d, _ = cKDTree(a.centers_px).query(b.centers_px)
    assert d.max() < 0.5


def test_uint16_map_and_ambiguous_dtypes(crowded):
    _, _, _, prob = crowded
    a = candidate_instances(prob, VOXEL_NM, threshold=0.5)
    b = candidate_instances(np.round(prob * 65535).astype(np.uint16), VOXEL_NM, threshold=0.5)
    assert len(a) == len(b)
    with pytest.raises(ValueError, match="ambiguous"):
        candidate_instances(np.round(prob * 127).astype(np.int8), VOXEL_NM)


def test_auto_threshold_and_override(crowded):
    _, _, _, prob = crowded
    thr = auto_threshold(prob)
    assert 0.3 <= thr <= 0.7
    assert candidate_instances(prob, VOXEL_NM, threshold=0.42).threshold == 0.42
    assert auto_threshold(np.zeros((8, 8, 8), np.float32)) == 0.5


def test_empty_map_gives_no_candidates():
    cand = candidate_instances(np.zeros((16, 32, 32), np.float32), VOXEL_NM)
    assert len(cand) == 0 and cand.centers_px.shape == (0, 3)


def test_big_compartments_and_specks_are_rejected_with_reasons(kit):
    shape = (96, 128, 128)
    centers = np.array([[48, 64, 64], [20, 20, 20], [48, 20, 110]], float)
    outer = np.array([70.0, 3.0, 20.0])  # compartment, speck, vesicle
    prob = kit.blurred_balls(shape, centers, outer, sigma_px=1.0)
    cand = candidate_instances(prob, VOXEL_NM, min_radius_nm=10, max_radius_nm=35)
    assert len(cand) == 1
    np.testing.assert_allclose(cand.centers_px[0], centers[2], atol=0.5)
    assert cand.inscribed_radius_nm[0] == pytest.approx(20.0, abs=2.0)
    assert list(cand.rejected["reason"]) == ["too large"]
    assert cand.n_specks == 1


PYTO = Path(__file__).resolve().parents[2].parent / "shared/reference/pyto-presynaptic-example"
# Pyto's own vesicle table for that crop (vesicles_tomo_vesicles.dat): id -> (x, y, z) px, radius px
PYTO_TABLE = {
    36: (38, 37, 16, 12.1),
    48: (86, 87, 12, 10.9),
    49: (117, 41, 16, 12.1),
    50: (58, 98, 16, 12.4),
    52: (87, 25, 27, 13.4),
    58: (18, 76, 28, 12.2),
    59: (68, 125, 34, 12.4),
    60: (88, 88, 41, 12.4),
    61: (110, 49, 44, 12.6),
}


@pytest.mark.reference("pyto-presynaptic-example")
def test_candidates_on_real_pyto_vesicle_labels_match_pytos_table():
    """A real presynaptic segmentation (Pyto example, 1.684 nm/px) blurred into a map."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old-style header
        with mrcfile.open(PYTO / "viz_labels.mrc", permissive=True) as mrc:
            labels = np.asarray(mrc.data).astype(int)
    prob = ndimage.gaussian_filter((labels >= 10).astype(np.float32), 1.5)
    cand = candidate_instances(prob, 1.684, min_radius_nm=10, max_radius_nm=40)
    assert len(cand) == len(PYTO_TABLE)
    for x, y, z, r_px in PYTO_TABLE.values():
        d = np.linalg.norm(cand.centers_px - np.array([z, y, x]), axis=1)
        i = int(np.argmin(d))
        assert d[i] < 0.6  # Pyto rounds its centers to whole voxels
        assert abs(cand.inscribed_radius_nm[i] / 1.684 - r_px) < 1.0
