import numpy as np
import pytest
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


def test_uint8_map_gives_the_same_candidates(crowded):
    _, centers, outer, prob = crowded
    a = candidate_instances(prob, VOXEL_NM, threshold=0.5)
    b = candidate_instances(np.round(prob * 255).astype(np.uint8), VOXEL_NM, threshold=0.5)
    assert len(a) == len(b)
    d, _ = cKDTree(a.centers_px).query(b.centers_px)
    assert d.max() < 0.5


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
