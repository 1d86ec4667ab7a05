"""The wider simulated world: lamella and vacuum, gold, microtubules, ribosomes, denoised
look, dual-axis tilt series and vesicle-free tomograms."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from synapseg.errors import InputError
from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.simulate.world import GOLD_DENSITY, MICROTUBULE_RADIUS_NM, slab_distance

SHAPE = (40, 96, 96)


def _sim(**kw):
    """One simulation per distinct setting per session (the results are only read)."""
    return _cached(tuple(sorted(kw.items())))


@functools.cache
def _cached(items: tuple):
    return simulate_tomogram(SimulationParams(shape=SHAPE, seed=11, **dict(items)))


def _grid_distance(params: SimulationParams) -> np.ndarray:
    vs = params.voxel_size_nm
    z = np.arange(params.shape[0])[:, None, None] * vs
    y = np.arange(params.shape[1])[None, :, None] * vs
    x = np.arange(params.shape[2])[None, None, :] * vs
    return slab_distance(params, np.asarray(params.shape) * vs, z, y, x)


def test_lamella_vacuum_above_and_below():
    r = simulate_tomogram(
        SimulationParams(
            shape=(56, 96, 96), seed=11, lamella_thickness_nm=60.0, vacuum_density=-2.0
        )
    )
    params = SimulationParams.from_dict(r.params)
    d = _grid_distance(params)
    outside, inside = d > params.voxel_size_nm, d < -params.voxel_size_nm
    assert np.allclose(r.phantom[outside], -2.0)
    assert not r.vesicle_labels[outside].any() and not r.membrane_labels[outside].any()
    # vacuum is less dense than the specimen: brighter in the reconstruction
    assert r.tomogram[outside].mean() > r.tomogram[inside].mean() + 0.5
    # without cuts allowed, every vesicle lies wholly inside the slab
    assert len(r.vesicles) > 0 and not r.vesicles["cut_by_surface"].any()


def test_lamella_cuts_vesicles_and_keeps_them_in_the_truth():
    r = _sim(lamella_thickness_nm=36.0, lamella_cuts_vesicles=True, lamella_tilt_deg=10.0)
    params = SimulationParams.from_dict(r.params)
    t = r.vesicles
    assert t["cut_by_surface"].any()
    c = t[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
    extent = np.asarray(params.shape) * params.voxel_size_nm
    d = slab_distance(params, extent, c[:, 0], c[:, 1], c[:, 2])
    assert np.all(d < 0)  # centres in the specimen
    cut = t["cut_by_surface"].to_numpy()
    assert np.all(d[cut] > -t["outer_radius_nm"].to_numpy()[cut] - 1.0)
    # a cut vesicle keeps its full radius in the table but only part of its labels
    vid = int(t["id"][cut].iloc[0])
    assert (r.vesicle_labels == vid).any()


def test_gold_beads_are_dense_and_on_the_surfaces():
    r = _sim(n_gold=4, gold_radius_nm=5.0)
    beads = np.asarray(r.info["gold_beads_px"])
    assert len(beads) == 4
    vs = r.voxel_size_nm
    z_nm = beads[:, 0] * vs
    assert np.all((z_nm < 10) | (z_nm > SHAPE[0] * vs - 10))
    for b in np.round(beads).astype(int):
        assert r.phantom[tuple(b)] > 0.8 * GOLD_DENSITY
        # gold is far darker than anything else (the CTF leaves a ring, hence a window)
        window = tuple(slice(max(v - 2, 0), v + 3) for v in b)
        assert r.tomogram[window].min() < -5.0


def test_microtubules_are_hollow_tubes():
    r = _sim(n_vesicles=0, n_microtubules=1, distractors=False, filaments=False)
    assert len(r.vesicles) == 0
    (mt,) = r.info["microtubules"]
    p, d = np.asarray(mt["point_px"]), np.asarray(mt["direction"])
    vs = r.voxel_size_nm
    perp = np.cross(d, [1.0, 0.0, 0.0])
    perp /= np.linalg.norm(perp)
    axis = np.round(p).astype(int)
    wall = np.round(p + perp * MICROTUBULE_RADIUS_NM / vs).astype(int)
    assert r.phantom[tuple(wall)] > 0.3
    assert abs(r.phantom[tuple(axis)]) < 0.05  # empty lumen: no cytosolic proteins


def test_ribosomes_add_dense_particles_outside_vesicles():
    base = _sim()
    r = _sim(ribosome_density_per_um3=40000.0)
    assert r.info["n_ribosomes"] > 5
    assert (r.phantom > 0.6).sum() > 1.3 * (base.phantom > 0.6).sum()
    pd_testing = __import__("pandas").testing
    pd_testing.assert_frame_equal(r.vesicles, base.vesicles)  # the truth is unchanged


def test_denoised_look_is_smoother():
    raw, den = _sim(), _sim(denoise_sigma_nm=2.0)
    rough = float(np.abs(np.diff(raw.tomogram, axis=2)).mean())
    smooth = float(np.abs(np.diff(den.tomogram, axis=2)).mean())
    assert smooth < 0.7 * rough
    assert den.tomogram.std() == pytest.approx(1.0, rel=1e-3)


def _wedge_power_ratio(tomogram: np.ndarray) -> float:
    """Power where a tilt-about-y series has no views (k near z in the kx-kz plane) over
    power where a tilt-about-x series has none (k near z in the ky-kz plane)."""
    power = np.abs(np.fft.fftn(tomogram)) ** 2
    kz, ky, kx = np.meshgrid(*(np.fft.fftfreq(n) for n in tomogram.shape), indexing="ij")
    az, ay, ax = np.abs(kz), np.abs(ky), np.abs(kx)
    lost_y = (ax < 0.4 * az) & (ay > 0.8 * az) & (az > 0.05)
    lost_x = (ay < 0.4 * az) & (ax > 0.8 * az) & (az > 0.05)
    return float(power[lost_y].mean() / power[lost_x].mean())


def test_dual_axis_fills_the_first_wedge():
    single = _sim(snr=None)
    dual = _sim(snr=None, dual_axis=True)
    assert set(dual.info["imaging"]) == {"axis_y", "axis_x"}
    assert _wedge_power_ratio(single.tomogram) < 0.3
    assert _wedge_power_ratio(dual.tomogram) > 0.6


def test_negative_tomogram_has_no_vesicles():
    r = _sim(n_vesicles=0, plasma_membrane=False, distractors=False, filaments=False)
    assert len(r.vesicles) == 0
    assert not r.vesicle_labels.any() and not r.membrane_labels.any()


@pytest.mark.parametrize(
    "bad",
    [
        {"lamella_thickness_nm": 1.0},
        {"lamella_tilt_deg": 60.0},
        {"n_gold": -1},
        {"denoise_sigma_nm": -1.0},
        {"n_vesicles": -2},
    ],
)
def test_world_params_are_validated(bad):
    with pytest.raises(InputError):
        SimulationParams(shape=SHAPE, **bad)


def test_new_params_round_trip_through_dict():
    p = SimulationParams(shape=SHAPE, lamella_thickness_nm=50.0, n_gold=3, dual_axis=True)
    assert SimulationParams.from_dict(p.to_dict()) == p


def test_defocus_gradient_changes_the_ctf_across_a_tilted_image():
    from synapseg.simulate.imaging import ctf, defocus_gradient_image

    params = SimulationParams(shape=SHAPE, voxel_size_nm=2.0, defocus_gradient=True)
    rng = np.random.default_rng(0)
    ny, nu = 16, 512
    spectrum = np.fft.rfft2(rng.normal(size=(ny, nu)))
    ky = np.fft.fftfreq(ny)[:, None] / 2.0
    ku = np.fft.rfftfreq(nu)[None, :] / 2.0
    k = np.sqrt(ky**2 + ku**2)

    def uniform(d: float) -> np.ndarray:
        return np.fft.irfft2(spectrum * ctf(k, d), s=(ny, nu))

    tilted = defocus_gradient_image(spectrum, np.ones_like(k), k, 4.0, 60.0, params)
    flat = defocus_gradient_image(spectrum, np.ones_like(k), k, 4.0, 0.0, params)
    np.testing.assert_allclose(flat, uniform(4.0), atol=1e-5)
    # the edges sit ±(nu - 1)/2 · 2 nm · tan 60° ≈ ±0.88 µm away from the nominal defocus
    half = (nu - 1) / 2 * 2.0 * np.tan(np.radians(60.0)) / 1e3
    np.testing.assert_allclose(tilted[:, 0], uniform(4.0 - half)[:, 0], atol=1e-5)
    np.testing.assert_allclose(tilted[:, -1], uniform(4.0 + half)[:, -1], atol=1e-5)
    nominal = uniform(4.0)[:, 0]
    assert np.abs(tilted[:, 0] - nominal).max() > 0.1 * np.abs(nominal).max()
    # and the simulator uses it
    a = simulate_tomogram(SimulationParams(shape=(24, 64, 64), seed=2, snr=None))
    b = simulate_tomogram(
        SimulationParams(shape=(24, 64, 64), seed=2, snr=None, defocus_gradient=True)
    )
    assert not np.array_equal(a.tomogram, b.tomogram)


def test_wedge_fill_restores_the_missing_wedge():
    plain = _sim(snr=None)
    filled = _sim(snr=None, wedge_fill=True)
    assert _wedge_power_ratio(plain.tomogram) < 0.1
    assert _wedge_power_ratio(filled.tomogram) > 0.3


def test_er_tubules_are_membrane_tubes_that_vesicles_avoid():
    r = _sim(n_er_tubules=1, distractors=False)
    (tube,) = r.info["er_tubules"]
    p, d = np.asarray(tube["point_px"]), np.asarray(tube["direction"])
    vs = r.voxel_size_nm
    perp = np.cross(d, [0.0, 1.0, 0.0])
    perp /= np.linalg.norm(perp)
    wall = np.round(p + perp * tube["radius_nm"] / vs).astype(int)
    if np.all((wall >= 0) & (wall < SHAPE)):
        assert r.membrane_labels[tuple(wall)] == 3
    assert (r.membrane_labels == 3).sum() > (_sim(distractors=False).membrane_labels == 3).sum()
    c = r.vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    rel = (c - p) * vs
    dist = np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)
    assert np.all(dist > tube["radius_nm"] + r.vesicles["outer_radius_nm"].to_numpy())


def test_coated_vesicles_are_distractors_with_a_coat():
    r = simulate_tomogram(
        SimulationParams(shape=(56, 96, 96), seed=11, n_coated_vesicles=1, distractors=False)
    )
    (ccv,) = r.info["coated_vesicles"]
    c, radius = np.asarray(ccv["center_px"]), ccv["radius_nm"]
    vs = r.voxel_size_nm
    coat = np.round(c + np.array([0.0, 0.0, 1.0]) * (radius + 13.0 + 2.25) / vs).astype(int)
    assert r.phantom[tuple(coat)] > 0.3  # the outer coat shell
    assert r.membrane_labels[tuple(np.round(c + [0, 0, radius / vs]).astype(int))] == 3
    # not a synaptic vesicle: no table row or label at its centre
    assert r.vesicle_labels[tuple(np.round(c).astype(int))] == 0
    t = r.vesicles[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    assert np.all(np.linalg.norm((t - c) * vs, axis=1) > radius + 16.0)


def test_multivesicular_bodies_hold_intraluminal_vesicles():
    params = SimulationParams(shape=(64, 160, 160), seed=2, snr=None)
    plain = simulate_tomogram(params, keep_phantom=False)
    mvb = simulate_tomogram(params, keep_phantom=False, mvb_fraction=1.0)
    assert "intraluminal_vesicles" not in plain.info["distractors"]
    assert mvb.info["distractors"]["intraluminal_vesicles"] > 0
    # the endosomes and everything placed before them are unchanged; the extra vesicles
    # are "other" membranes, never synaptic-vesicle labels
    extra = (mvb.membrane_labels == 3) & (plain.membrane_labels != 3)
    assert extra.sum() > 0 and not mvb.vesicle_labels[extra].any()


def test_ice_contamination_sits_on_the_surfaces():
    from synapseg.simulate.world import ICE_DENSITY

    r = _sim(n_ice_blobs=2, lamella_thickness_nm=40.0, n_vesicles=0)
    params = SimulationParams.from_dict(r.params)
    blobs = np.asarray(r.info["ice_blobs_px"])
    assert len(blobs) == 2
    c = blobs * r.voxel_size_nm
    d = slab_distance(params, np.asarray(SHAPE) * r.voxel_size_nm, c[:, 0], c[:, 1], c[:, 2])
    np.testing.assert_allclose(d, 0.0, atol=0.01)  # centred on a lamella surface
    for b in np.round(blobs).astype(int):
        assert r.phantom[tuple(b)] == pytest.approx(ICE_DENSITY, abs=1e-3)


def test_random_draws_leave_the_new_world_switched_off():
    new = ["lamella_thickness_nm", "n_gold", "n_microtubules", "n_er_tubules",
           "n_coated_vesicles", "mvb_fraction", "n_ice_blobs", "ribosome_density_per_um3",
           "denoise_sigma_nm", "dual_axis", "defocus_gradient", "wedge_fill"]  # fmt: skip
    default = SimulationParams()
    for i in range(5):
        drawn = SimulationParams.random(np.random.default_rng([20261125, i]))
        assert all(getattr(drawn, name) == getattr(default, name) for name in new)
