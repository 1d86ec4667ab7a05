"""The simulator's filament ground truth: the published model and the negative control."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.evaluate.filaments import gt_filaments
from synapseg.simulate.params import SimulationParams
from synapseg.simulate.phantom import build_phantom


def _phantom(model: str, seed: int = 4):
    params = SimulationParams(shape=(48, 160, 160), seed=seed, filament_model=model)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    return build_phantom(params, rng)


@pytest.fixture(scope="module")
def phantoms():
    return {m: _phantom(m) for m in ("legacy", "published", "none")}


def test_published_ground_truth(phantoms):
    ph = phantoms["published"]
    gt = gt_filaments(ph.filaments)
    assert set(gt["kind"]) == {"connector", "tether"}
    assert gt["radius_nm"].between(1.0, 3.0).all()  # 2-6 nm thick
    ves = ph.vesicles.set_index("id")
    outer = ves["outer_radius_nm"]
    centers = ves[["center_z_nm", "center_y_nm", "center_x_nm"]]
    for _, f in gt.iterrows():  # endpoints on the outer surfaces
        d = np.linalg.norm(f["a_nm"] - centers.loc[f["vesicle_a"]].to_numpy())
        assert abs(d - outer.loc[f["vesicle_a"]]) < 1e-6
        if f["kind"] == "connector":
            d = np.linalg.norm(f["b_nm"] - centers.loc[f["vesicle_b"]].to_numpy())
            assert abs(d - outer.loc[f["vesicle_b"]]) < 1e-6
    assert gt["length_nm"].between(3.0, 60.0).all()
    per = 2 * (gt["kind"] == "connector").sum() / len(ves)  # connector ends per vesicle
    assert 0 < per < 4


def test_none_is_the_same_phantom_without_filaments(phantoms):
    pub, none = phantoms["published"], phantoms["none"]
    assert set(none.filaments["kind"]) <= {"actin"}
    assert np.array_equal(pub.vesicle_labels, none.vesicle_labels)
    diff = np.abs(pub.density - none.density) > 1e-4
    # only around the filaments: a small fraction of the volume
    assert 0 < diff.mean() < 0.02


def test_legacy_keeps_its_filaments(phantoms):
    legacy = gt_filaments(phantoms["legacy"].filaments)
    assert (legacy["radius_nm"] == 1.75).all()
    assert np.array_equal(phantoms["legacy"].vesicle_labels, phantoms["none"].vesicle_labels)


def test_unknown_model_is_refused():
    from synapseg.errors import InputError

    with pytest.raises(InputError, match="filament"):
        SimulationParams(filament_model="nope")


def test_amplitude_scale_multiplies_the_filaments_only(phantoms):
    """filament_amplitude_scale (the real-data calibration): the filaments' density
    (published minus none) scales by it; everything else, and scale 1, keep their bytes."""
    params = SimulationParams(
        shape=(48, 160, 160), seed=4, filament_model="published", filament_amplitude_scale=2.5
    )
    rng = np.random.default_rng(np.random.SeedSequence(4).spawn(2)[0])
    scaled = build_phantom(params, rng)
    one = _phantom("published")  # scale 1.0 explicitly equals the default
    assert np.array_equal(one.density, phantoms["published"].density)
    pub, none = phantoms["published"], phantoms["none"]
    assert scaled.filaments.equals(pub.filaments)
    base = pub.density - none.density
    mask = np.abs(base) > 1e-3
    ratio = (scaled.density - none.density)[mask].sum() / base[mask].sum()
    assert ratio == pytest.approx(2.5, rel=0.02)
    from synapseg.errors import InputError

    with pytest.raises(InputError, match="must be positive"):
        SimulationParams(filament_amplitude_scale=0.0)
