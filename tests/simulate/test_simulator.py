import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from synapseg.io.tables import CENTER_NM, CENTER_PX, CORE_COLUMNS
from synapseg.simulate import MEMBRANE_CLASSES, simulate_tomogram, vesicle_contrast

VESICLES_ONLY = dict(
    plasma_membrane=False,
    cleft=False,
    distractors=False,
    filaments=False,
    protein_crowding=0.0,
)


def test_outputs_have_the_documented_types(noisy, small_params):
    assert noisy.tomogram.shape == small_params.shape and noisy.tomogram.dtype == np.float32
    assert abs(float(noisy.tomogram.mean())) < 1e-3
    assert noisy.tomogram.std() == pytest.approx(1.0, rel=1e-3)
    assert noisy.vesicle_labels.dtype == np.uint16
    assert noisy.membrane_labels.dtype == np.uint8
    assert set(np.unique(noisy.membrane_labels)) <= {0, *MEMBRANE_CLASSES}
    assert list(noisy.vesicles.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    assert len(noisy.vesicles) >= 10
    assert noisy.params["seed"] == small_params.seed
    kinds = set(noisy.filaments["kind"])
    assert kinds <= {"connector", "tether", "actin"} and "connector" in kinds


def test_same_seed_gives_identical_results(noisy, small_params):
    again = simulate_tomogram(small_params)
    np.testing.assert_array_equal(again.tomogram, noisy.tomogram)
    np.testing.assert_array_equal(again.vesicle_labels, noisy.vesicle_labels)
    np.testing.assert_array_equal(again.membrane_labels, noisy.membrane_labels)
    pd.testing.assert_frame_equal(again.vesicles, noisy.vesicles)
    pd.testing.assert_frame_equal(again.filaments, noisy.filaments)
    other = simulate_tomogram(small_params, seed=small_params.seed + 1)
    assert not np.array_equal(other.tomogram, noisy.tomogram)


def test_imaging_settings_do_not_move_the_objects(noisy, noise_free):
    pd.testing.assert_frame_equal(noisy.vesicles, noise_free.vesicles)
    np.testing.assert_array_equal(noisy.phantom, noise_free.phantom)


def test_vesicles_do_not_overlap_and_crowd(noisy):
    t = noisy.vesicles
    assert (t["min_gap_nm"] >= 1.0 - 1e-6).all()
    sph = t[t["elongation"] == 1.0]
    c = sph[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
    r = sph["outer_radius_nm"].to_numpy()
    d = np.linalg.norm(c[:, None] - c[None], axis=2) - r[:, None] - r[None]
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 1.0 - 1e-6
    assert (t["min_gap_nm"] <= 4.0).mean() > 0.5  # most have a neighbour within 4 nm
    assert np.allclose(t["outer_radius_nm"] - t["radius_nm"], 2.25)
    assert (t["membrane_distance_nm"] >= 1.0 - 1e-6).all()  # clear of the plasma membrane
    assert t["outer_radius_nm"].between(15, 30).all()


def test_labels_match_the_table(noisy):
    t = noisy.vesicles.set_index("id")
    labels = noisy.vesicle_labels
    ids = np.unique(labels[labels > 0])
    assert sorted(ids) == sorted(t.index)
    vs = noisy.voxel_size_nm
    centroids = ndimage.center_of_mass(labels > 0, labels, ids)
    counts = ndimage.sum_labels(np.ones_like(labels), labels, ids)
    for i, centroid, count in zip(ids, centroids, counts):
        row = t.loc[i]
        np.testing.assert_allclose(centroid, row[CENTER_PX].to_numpy(float), atol=0.5)
        expected = 4 / 3 * np.pi * (row["outer_radius_nm"] / vs) ** 3
        assert count == pytest.approx(expected, rel=0.1)
        # the vesicle membrane class covers its outer surface
        assert np.any(noisy.membrane_labels[labels == i] == 2)


def _radial_profile_peak(phantom, center_px, r_px, exclude):
    lo = np.maximum(np.floor(center_px - r_px - 4).astype(int), 0)
    hi = np.minimum(np.ceil(center_px + r_px + 5).astype(int), phantom.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    zz, yy, xx = np.ogrid[box]
    r = np.sqrt((zz - center_px[0]) ** 2 + (yy - center_px[1]) ** 2 + (xx - center_px[2]) ** 2)
    sel = (np.abs(r - r_px) < 3.0) & ~exclude[box]
    w = phantom[box][sel]
    return float(np.sum(w * r[sel]) / np.sum(w))


def test_bilayer_lies_where_the_table_says_in_the_noiseless_phantom():
    res = simulate_tomogram(
        shape=(48, 112, 112), seed=11, lumen_density=0.0, snr=None, **VESICLES_ONLY
    )
    t = res.vesicles
    vs = res.voxel_size_nm
    assert len(t) >= 8
    errors = []
    for row in t[t["elongation"] == 1.0].itertuples():
        c = np.array([getattr(row, k) for k in CENTER_PX])
        exclude = (res.vesicle_labels > 0) & (res.vesicle_labels != row.id)
        exclude = ndimage.binary_dilation(exclude, iterations=2)
        errors.append(
            _radial_profile_peak(res.phantom, c, row.radius_nm / vs, exclude) - row.radius_px
        )
    assert np.max(np.abs(errors)) < 0.5


def _profile_contrast(rec, center, r_px, axis):
    s = np.arange(-r_px - 5, r_px + 5.01, 0.25)
    pts = np.repeat(center[:, None], len(s), axis=1)
    pts[axis] += s
    p = ndimage.map_coordinates(rec, pts, order=1, mode="nearest")
    outside = p[(np.abs(s) > r_px + 2.5) & (np.abs(s) < r_px + 4.5)].mean()
    membrane = p[np.abs(np.abs(s) - r_px) < 1.0].min()
    return outside - membrane


def test_missing_wedge_fades_the_poles_of_vesicles():
    res = simulate_tomogram(shape=(64, 128, 128), seed=5, snr=None, **VESICLES_ONLY)
    rec = res.tomogram
    poles, equators = [], []
    for row in res.vesicles[res.vesicles["elongation"] == 1.0].itertuples():
        c = np.array([getattr(row, k) for k in CENTER_PX])
        poles.append(_profile_contrast(rec, c, row.radius_px, axis=0))  # along z (beam)
        equators.append(_profile_contrast(rec, c, row.radius_px, axis=2))  # along x
    assert len(poles) >= 8
    assert np.mean(poles) < 0.5 * np.mean(equators)
    assert np.mean(equators) > 0  # membranes are dark


def test_default_noise_matches_the_real_calibration(noisy):
    m = vesicle_contrast(
        noisy.tomogram,
        noisy.vesicles[noisy.vesicles["elongation"] == 1.0],
        noisy.voxel_size_nm,
        noisy.vesicle_labels,
        noisy.membrane_labels == 0,
    )
    # real synapse (Pyto, 1.684 nm/px): membrane 0.51 σ, lumen 0.16 σ darker than cytoplasm
    assert 0.35 <= m["membrane_sigma"] <= 0.7
    assert 0.05 <= m["lumen_sigma"] <= 0.3


def test_snr_knob_changes_measured_contrast_monotonically(small_params):
    measured = []
    for snr in (0.03, 0.2, 1.5):
        res = simulate_tomogram(small_params, snr=snr, keep_phantom=False)
        m = vesicle_contrast(
            res.tomogram,
            res.vesicles,
            res.voxel_size_nm,
            res.vesicle_labels,
            res.membrane_labels == 0,
        )
        measured.append(m["membrane_sigma"])
    assert measured[0] < measured[1] < measured[2]


def test_invert_contrast_flips_the_sign(noise_free, small_params):
    inv = simulate_tomogram(small_params, snr=None, invert_contrast=True)
    np.testing.assert_allclose(inv.tomogram, -noise_free.tomogram, atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"phase_flip": True, "defocus_um": 6.0},
        {"recon_filter": "sirt"},
        {"jitter_shift_px": 0.5, "jitter_angle_deg": 0.3, "tilt_scheme": "bidirectional"},
        {"tilt_range_deg": 45, "tilt_step_deg": 3},
    ],
)
def test_imaging_options_keep_membranes_dark(options):
    res = simulate_tomogram(
        shape=(48, 96, 96), seed=2, snr=None, keep_phantom=False, **VESICLES_ONLY, **options
    )
    assert np.isfinite(res.tomogram).all()
    m = vesicle_contrast(res.tomogram, res.vesicles, res.voxel_size_nm, res.vesicle_labels)
    assert m["membrane_sigma"] > 0.3
    assert res.info["imaging"]["acquisition_order_deg"][0] == 0.0


def test_vesicles_lie_inside_the_volume(noisy, small_params):
    t = noisy.vesicles
    c = t[CENTER_PX].to_numpy()
    r_px = (t["outer_radius_nm"] * t["elongation"] ** (2 / 3)).to_numpy()[:, None] / 1.68
    assert np.all(c - r_px >= 0) and np.all(c + r_px <= np.array(small_params.shape) - 1)


def test_filament_ends_touch_their_vesicles_and_the_membrane(noisy):
    from synapseg.simulate.shapes import CurvedPlane

    t = noisy.vesicles.set_index("id")
    info = noisy.info
    pm = CurvedPlane(
        np.array(info["plasma_membrane_point_nm"]),
        np.array(info["plasma_membrane_normal_zyx"]),
        info["plasma_membrane_curvature_per_nm"],
    )
    xyz = ["z_nm", "y_nm", "x_nm"]
    kinds = noisy.filaments.groupby("filament_id")
    n_checked = 0
    for _, f in kinds:
        kind = f["kind"].iloc[0]
        pts = f.sort_values("point_index")[xyz].to_numpy()
        if kind == "actin":
            continue
        v = t.loc[f["from_vesicle_id"].iloc[0]]
        assert np.linalg.norm(pts[0] - v[CENTER_NM].to_numpy(float)) == pytest.approx(
            v["outer_radius_nm"], abs=1e-3
        )
        if kind == "connector":
            w = t.loc[f["to_vesicle_id"].iloc[0]]
            end = np.linalg.norm(pts[-1] - w[CENTER_NM].to_numpy(float))
            assert end == pytest.approx(w["outer_radius_nm"], abs=1e-3)
        else:  # tether: ends on the outer surface of the plasma membrane
            assert float(pm(*pts[-1])) == pytest.approx(-2.25, abs=0.5)
        length = np.linalg.norm(pts[-1] - pts[0])
        assert 1.0 <= length <= 45.0
        n_checked += 1
    assert n_checked >= 3


def test_non_cubic_volumes_keep_their_axes():
    res = simulate_tomogram(shape=(40, 72, 112), seed=4, voxel_size_nm=1.4, snr=None)
    assert res.tomogram.shape == res.vesicle_labels.shape == res.phantom.shape == (40, 72, 112)
    ids = np.unique(res.vesicle_labels[res.vesicle_labels > 0])
    assert len(ids) == len(res.vesicles) > 0
    centroids = ndimage.center_of_mass(res.vesicle_labels > 0, res.vesicle_labels, ids)
    table = res.vesicles.set_index("id")
    for i, c in zip(ids, centroids):
        np.testing.assert_allclose(c, table.loc[i, CENTER_PX].to_numpy(float), atol=0.5)
