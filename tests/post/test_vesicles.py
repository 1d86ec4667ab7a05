import numpy as np
import pytest
from scipy.spatial import cKDTree

from synapseg.io.tables import CORE_COLUMNS
from synapseg.post.vesicles import QC_COLUMNS, PostParams, find_vesicles

VOXEL_NM = 1.68


@pytest.fixture(scope="module")
def scene(kit):
    """A crowded cluster (x < 128) plus a solid dark blob and a big compartment (x > 140)."""
    shape = (80, 128, 224)
    outer = np.random.default_rng(1).uniform(17, 25, 40)
    centers, outer = kit.packed_centers((80, 128, 128), 40, outer, seed=1)
    blob = np.array([40.0, 22.0, 196.0])
    compartment = np.array([40.0, 80.0, 178.0])
    all_c = np.vstack([centers, blob, compartment])
    mid = np.concatenate([outer - 2.25, [18.0, 45.0]])
    is_blob = np.zeros(len(all_c), bool)
    is_blob[-2] = True
    tomo = kit.make_phantom(shape, all_c, mid, seed=7, blob=is_blob)
    # the 'network' also fires on the outliers
    prob = kit.blurred_balls(shape, all_c, mid + 2.25, sigma_px=1.5)
    return tomo, prob, centers, outer - 2.25, blob, compartment


def _match(table, centers):
    got = table[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    dist, idx = cKDTree(got).query(centers)
    return dist, idx


def test_find_vesicles_on_a_crowded_scene_with_outliers(scene):
    tomo, prob, centers, radii, blob, compartment = scene
    table, rejected, info = find_vesicles(tomo, prob, VOXEL_NM)
    assert list(table.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    assert set(QC_COLUMNS) <= set(table.columns)
    assert list(table["id"]) == list(range(1, len(table) + 1))
    dist, idx = _match(table, centers)
    hit = dist < 2.0
    assert hit.mean() >= 0.95
    assert len(table) == hit.sum()  # nothing else survived: outliers removed
    assert np.median(dist[hit]) < 0.5
    assert np.median(np.abs(table["radius_nm"].to_numpy()[idx[hit]] - radii[hit])) < 0.5 * VOXEL_NM
    np.testing.assert_allclose(table["radius_px"], table["radius_nm"] / VOXEL_NM)
    # the outliers are in `rejected`, each with a reason
    rej_c = rejected[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    for outlier in (blob, compartment):
        d = np.linalg.norm(rej_c - outlier, axis=1)
        assert d.min() < 3, rejected
        assert rejected["reason"].iloc[int(np.argmin(d))] != ""
    assert info["polarity"]["sign"] == 1
    assert info["counts"]["vesicles"] == len(table)
    assert info["counts"]["candidates"] >= len(table)
    assert {"instances", "spheres", "filters", "total"} <= set(info["timings_s"])


def test_inverted_tomogram_gives_the_same_vesicles(scene, caplog):
    tomo, prob, *_ = scene
    ref, _, _ = find_vesicles(tomo, prob, VOXEL_NM)
    with caplog.at_level("WARNING"):
        inv, _, info = find_vesicles(-tomo, prob, VOXEL_NM)
    assert info["polarity"]["sign"] == -1 and info["polarity"]["confidence"] > 0.9
    assert any("inverted" in w for w in info["warnings"])
    assert "inverted contrast" in caplog.text
    assert len(inv) == len(ref)
    cols = ["center_z_px", "center_y_px", "center_x_px", "radius_nm"]
    np.testing.assert_allclose(inv[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-3)
    # forcing the polarity works too; forcing the wrong one loses the vesicles
    forced, _, info = find_vesicles(-tomo, prob, VOXEL_NM, PostParams(invert="yes"))
    assert info["polarity"] == {"mode": "yes", "sign": -1, "confidence": None}
    np.testing.assert_allclose(forced[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-3)
    wrong, _, _ = find_vesicles(-tomo, prob, VOXEL_NM, PostParams(invert="no"))
    assert len(wrong) < 0.5 * len(ref)


def test_empty_probability_map_is_a_valid_result(scene):
    tomo, prob, *_ = scene
    table, rejected, info = find_vesicles(tomo, np.zeros(prob.shape, np.uint8), VOXEL_NM)
    assert len(table) == 0 and list(table.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    assert len(rejected) == 0 and "reason" in rejected
    assert info["counts"]["vesicles"] == 0 and info["warnings"]


def test_bad_arguments(scene):
    tomo, prob, *_ = scene
    with pytest.raises(ValueError, match="share one grid"):
        find_vesicles(tomo, prob[:-1], VOXEL_NM)
    with pytest.raises(ValueError):
        PostParams(invert="maybe")
    with pytest.raises(ValueError):
        PostParams(min_radius_nm=30, max_radius_nm=20)


def test_stage_params_take_every_shared_field_from_post_params():
    from dataclasses import fields

    from synapseg.post.filters import FilterParams
    from synapseg.post.spheres import SphereParams
    from synapseg.post.vesicles import _stage_params

    # every shared field set to a non-default value must reach the stage's parameters
    p = PostParams(
        min_radius_nm=11.0,
        max_radius_nm=33.0,
        tilt_range_deg=45.0,
        tilt_axis="x",
        membrane_thickness_nm=5.0,
        min_membrane_contrast=0.2,
        min_profile_correlation=0.6,
        max_fit_residual_nm=2.5,
        max_lumen_ratio=0.7,
        min_inner_fraction=0.3,
        max_shift_fraction=0.5,
        max_overlap_nm=3.0,
        min_confidence=0.4,
        confidence_model="my_confidence_model.json",
        n_directions=100,
        n_iter=3,
        max_tube_score=0.8,
        min_best_score=0.85,
    )
    for cls in (SphereParams, FilterParams):
        stage = _stage_params(cls, p)
        shared = [f.name for f in fields(cls) if hasattr(p, f.name)]
        assert shared, cls
        for name in shared:
            assert getattr(stage, name) == getattr(p, name) != getattr(cls(), name), name
        # defaults agree: PostParams() drives each stage with that stage's own defaults
        assert _stage_params(cls, PostParams()) == cls()
    assert len([f for f in fields(FilterParams) if hasattr(p, f.name)]) == len(fields(FilterParams))


class _CountingArray:
    """A non-numpy array-like (as a zarr array) that records the largest block read."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim
        self.largest_read = 0

    def __getitem__(self, key):
        out = np.array(self._data[key])
        self.largest_read = max(self.largest_read, out.size)
        return out


def test_lazy_array_inputs_give_the_same_vesicles_with_bounded_reads(scene):
    tomo, prob, *_ = scene
    ref, _, _ = find_vesicles(tomo, prob, VOXEL_NM)
    lazy_tomo, lazy_prob = _CountingArray(tomo), _CountingArray(prob)
    got, _, _ = find_vesicles(lazy_tomo, lazy_prob, VOXEL_NM)
    cols = ["center_z_px", "center_y_px", "center_x_px", "radius_nm"]
    np.testing.assert_allclose(got[cols].to_numpy(), ref[cols].to_numpy(), atol=1e-4)
    assert lazy_tomo.largest_read < tomo.size
