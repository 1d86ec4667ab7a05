"""The v2 world draw: deterministic, covering its documented ranges, reproducible bytes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from synapseg.simulate import SimulationParams, simulate_tomogram, write_simulation
from synapseg.simulate.draws import SIMULATOR_VERSION, WORLD_V2, data_sha256, draw_world

N_DRAWS = 400


@pytest.fixture(scope="module")
def draws() -> list[SimulationParams]:
    return [draw_world(np.random.default_rng([20261205, i])) for i in range(N_DRAWS)]


def test_draw_is_deterministic_and_seed_dependent():
    a = draw_world(np.random.default_rng([20261205, 3]))
    b = draw_world(np.random.default_rng([20261205, 3]))
    c = draw_world(np.random.default_rng([20261205, 4]))
    assert a == b
    assert a.to_dict() != c.to_dict()
    assert isinstance(SIMULATOR_VERSION, str) and SIMULATOR_VERSION


@pytest.mark.parametrize(
    "key",
    [
        "voxel_size_nm",
        "membrane_thickness_nm",
        "radius_mean_nm",
        "crowding",
        "protein_crowding",
        "radial_cutoff",
        "dose_e_per_A2",
    ],
)
def test_continuous_fields_cover_their_documented_range(draws, key):
    lo, hi = WORLD_V2[key]
    values = np.array([getattr(p, key) for p in draws], dtype=float)
    assert values.min() >= lo and values.max() <= hi
    # covers the range: the extremes of 400 uniform draws lie within 3 % of the ends
    span = hi - lo
    assert values.min() < lo + 0.03 * span and values.max() > hi - 0.03 * span


def test_snr_is_log_uniform_over_the_documented_factor(draws):
    from synapseg.simulate import DEFAULT_SNR

    lo, hi = WORLD_V2["snr_x_default"]
    factor = np.array([p.snr for p in draws]) / DEFAULT_SNR
    assert factor.min() >= lo * 0.999 and factor.max() <= hi * 1.001
    # log-uniform: the median factor is near the geometric mean of the ends
    assert abs(np.log(np.median(factor)) - np.log(np.sqrt(lo * hi))) < 0.25


@pytest.mark.parametrize(
    ("prob", "test"),
    [
        ("p_lamella", lambda p: p.lamella_thickness_nm is not None),
        ("p_gold", lambda p: p.n_gold > 0),
        ("p_microtubules", lambda p: p.n_microtubules > 0),
        ("p_er_tubules", lambda p: p.n_er_tubules > 0),
        ("p_coated_vesicles", lambda p: p.n_coated_vesicles > 0),
        ("p_ribosomes", lambda p: p.ribosome_density_per_um3 > 0),
        ("p_denoised", lambda p: p.denoise_sigma_nm > 0),
        ("p_wedge_fill", lambda p: p.wedge_fill),
        ("p_dual_axis", lambda p: p.dual_axis),
        ("p_defocus_gradient", lambda p: p.defocus_gradient),
        ("p_distractors", lambda p: p.distractors),
    ],
)
def test_feature_probabilities_match_the_documentation(draws, prob, test):
    p = WORLD_V2[prob]
    observed = np.mean([bool(test(d)) for d in draws])
    # binomial standard error at n=400 is at most 0.025: allow 4 of them
    assert abs(observed - p) < 4 * np.sqrt(p * (1 - p) / N_DRAWS) + 1e-9


def test_draws_stay_outside_the_domain_shift_benchmark(draws):
    """The benchmark's out-of-distribution shifts must stay outside the v2 draws."""
    assert max(p.membrane_thickness_nm for p in draws) < 6.8  # thick_membrane
    assert max(p.voxel_size_nm for p in draws) < 2.4  # voxel2.4
    assert max(p.protein_crowding for p in draws) < 3.0  # dense_protein
    assert max(p.ribosome_density_per_um3 for p in draws) < 30000.0
    assert max(p.denoise_sigma_nm for p in draws) < 2.0  # denoised
    sirt = [p for p in draws if p.recon_filter == "sirt"]
    assert sirt and min(p.sirt_iterations for p in sirt) > 4  # sirt_filtered
    assert min(p.radial_cutoff for p in draws) > 0.2
    lamellae = [p for p in draws if p.lamella_thickness_nm is not None]
    assert lamellae and min(p.lamella_thickness_nm for p in lamellae) > 90.0  # vacuum30
    assert max(abs(p.lamella_tilt_deg) for p in lamellae) < 10.0  # lamella_cut
    # the slab fills at least 55 % of z (vacuum30: 40 %)
    fill = [p.lamella_thickness_nm / (p.shape[0] * p.voxel_size_nm) for p in lamellae]
    assert min(fill) > 0.5
    tilts = {p.tilt_range_deg for p in draws}
    assert min(tilts) == 40.0 and max(tilts) == 70.0  # the benchmark's edges


def test_shape_follows_the_physical_extent(draws):
    for p in draws[:50]:
        extent_xy = p.shape[2] * p.voxel_size_nm
        assert abs(extent_xy - 300.0) <= 2 * p.voxel_size_nm
        assert all(s % 2 == 0 for s in p.shape)


def test_a_drawn_tomogram_is_byte_identical_when_simulated_twice(tmp_path):
    params = draw_world(np.random.default_rng([20261205, 7]), 60.0, (24.0, 30.0))
    params = params.replace(voxel_size_nm=2.0, shape=(16, 32, 32))
    names = ("tomogram.mrc", "vesicle_labels.mrc", "vesicles.csv")
    hashes = []
    for k in range(2):
        if k:
            time.sleep(1.1)  # a new second in mrcfile's creation stamp
        folder = write_simulation(tmp_path / str(k), simulate_tomogram(params, keep_phantom=False))
        hashes.append({n: data_sha256(folder / n) for n in names})
    assert hashes[0] == hashes[1]
    # the hash is not blind to the data: one changed voxel changes it
    raw = bytearray((tmp_path / "1" / "tomogram.mrc").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "1" / "tomogram.mrc").write_bytes(bytes(raw))
    assert data_sha256(tmp_path / "1" / "tomogram.mrc") != hashes[0]["tomogram.mrc"]


def test_data_sha256_ignores_only_the_mrcfile_time_stamp(tmp_path):
    head = bytearray(1024)
    head[224:304] = b"Created by mrcfile.py".ljust(60) + b"2026-12-02 07:00:58".ljust(20)
    a = tmp_path / "a.mrc"
    a.write_bytes(bytes(head) + b"data")
    head[284:304] = b"2027-01-01 00:00:00".ljust(20)
    b = tmp_path / "b.mrc"
    b.write_bytes(bytes(head) + b"data")
    assert data_sha256(a) == data_sha256(b)
    head[305] = 1  # the second label counts
    b.write_bytes(bytes(head) + b"data")
    assert data_sha256(a) != data_sha256(b)


def test_world_v2_1_widens_the_lamella_share_and_ice_stays_on_lamellae(draws):
    """v2.1: half of the draws are lamellae, most of them cut vesicles, and only lamellae
    (which have surfaces) carry ice blobs; the draw's later additions leave the fields drawn
    before them unchanged (the ice count is drawn last)."""
    lamellae = [p for p in draws if p.lamella_thickness_nm is not None]
    assert abs(len(lamellae) / N_DRAWS - WORLD_V2["p_lamella"]) < 0.1
    cuts = np.mean([p.lamella_cuts_vesicles for p in lamellae])
    assert abs(cuts - WORLD_V2["p_lamella_cuts_vesicles"]) < 0.1
    assert all(p.n_ice_blobs == 0 for p in draws if p.lamella_thickness_nm is None)
    lo, hi = WORLD_V2["n_ice_blobs"]
    ice = {p.n_ice_blobs for p in lamellae}
    assert ice == set(range(lo, hi + 1))
    vacuum = [1 - p.lamella_thickness_nm / (p.shape[0] * p.voxel_size_nm) for p in lamellae]
    assert max(vacuum) > 0.35  # v2 drew at most 30 % vacuum
