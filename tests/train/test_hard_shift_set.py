"""The hard domain-shift set of ``benchmarks/bench_domain_shift.py`` (issue 11): outside both
training draws, seeds disjoint from every other set, the standard set unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.simulate import SimulationParams
from synapseg.simulate.draws import WORLD_V2, draw_world


@pytest.fixture(scope="module")
def ds(load_script):
    return load_script("benchmarks/bench_domain_shift.py")


def _training_draws(n: int = 200):
    """v1's draw (SimulationParams.random) and world v2.1's draw, ``n`` each."""
    v1 = [SimulationParams.random(np.random.default_rng([20261125, i])) for i in range(n)]
    v2 = [draw_world(np.random.default_rng([20261205, i])) for i in range(n)]
    return v1, v2


def test_standard_set_seeds_unchanged(ds):
    # the cached v3 data were made with default_rng([20261202, s, k]) in SHIFTS + NEGATIVES order
    names = list(ds.SHIFTS) + list(ds.NEGATIVES)
    for name in ("tilt40", "dense_protein", "neg_gold"):
        want = int(np.random.default_rng([20261202, names.index(name), 1]).integers(2**31 - 1))
        assert ds.case_params(name, 1, ds.DEFAULT_SIZE_NM).seed == want
        assert ds.case_params(name, 1, ds.DEFAULT_SIZE_NM, "standard").seed == want


def test_hard_sets_have_disjoint_seeds(ds):
    seeds = {}
    for set_name, (shifts, negatives, _) in ds.SETS.items():
        for name in list(shifts) + list(negatives):
            for k in range(3):
                seeds[(set_name, name, k)] = ds.case_params(
                    name, k, ds.DEFAULT_SIZE_NM, set_name
                ).seed
    assert len(set(seeds.values())) == len(seeds)
    roots = {root for _, _, root in ds.SETS.values()}
    assert len(roots) == len(ds.SETS)
    assert not roots & {20261125, 20261205}  # the two training recipes


def test_hard_shifts_lie_outside_both_training_draws(ds):
    v1, v2 = _training_draws()
    draws = v1 + v2
    size = ds.DEFAULT_SIZE_NM
    for name in ds.HARD_SHIFTS:
        p = ds.case_params(name, 0, size, "hard")
        default = SimulationParams()
        outside = []
        if p.tilt_range_deg != default.tilt_range_deg:
            outside.append(p.tilt_range_deg < min(d.tilt_range_deg for d in draws))
        if p.voxel_size_nm != default.voxel_size_nm:
            outside.append(p.voxel_size_nm > max(d.voxel_size_nm for d in draws))
        if p.snr != default.snr:
            outside.append(p.snr < min(d.snr for d in draws))
        if p.defocus_um != default.defocus_um:
            # both draws: 2 .. 3 + 1.5 x voxel size (µm), so compare at this voxel size
            outside.append(p.defocus_um > 3.0 + 1.5 * min(p.voxel_size_nm, 2.2))
        if p.radius_range_nm != default.radius_range_nm:
            outside.append(p.radius_range_nm[1] <= min(d.radius_range_nm[0] for d in draws))
        if p.lamella_thickness_nm is not None:
            thick = [d.lamella_thickness_nm for d in v2 if d.lamella_thickness_nm is not None]
            assert all(d.lamella_thickness_nm is None for d in v1) and thick
            outside.append(p.lamella_thickness_nm > WORLD_V2["lamella_thickness_nm"][1])
            outside.append(p.lamella_thickness_nm > max(thick))
        assert outside and all(outside), name


def test_cli_knows_the_sets(ds, tmp_path):
    with pytest.raises(SystemExit):
        ds.main(["generate", "--data", str(tmp_path), "--set", "hard", "--shifts", "tilt40"])
    # a hard shift in the hard set is accepted (simulate a tiny one to prove the path)
    ds.main(["generate", "--data", str(tmp_path), "--set", "hard-dev", "--shifts", "voxel3.0",
             "--n", "1", "--size-nm", "30", "60", "60"])  # fmt: skip
    params = (tmp_path / "voxel3.0" / "voxel3.0_0" / "params.json").read_text()
    assert '"voxel_size_nm": 3.0' in params
    seed = ds.case_params("voxel3.0", 0, (30.0, 60.0, 60.0), "hard-dev").seed
    assert f'"seed": {seed}' in params
