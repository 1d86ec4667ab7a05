"""scripts/filament_ceiling.py: the path-known detectability ceiling (issue 15, seventh
round): statistics along a known path, null paths drawn as the simulator draws filaments,
and the recall at a false rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synapseg.filaments.boundaries import Boundaries


def _bounds(sc: dict) -> Boundaries:
    return Boundaries.from_table(sc["vesicles"], sc["image"].shape, 1.5, sc["az"])


def test_known_path_stands_out_against_null_paths(load_script, tiny_scene, empty_scene):
    mod = load_script("scripts/filament_ceiling.py")
    a, b = tiny_scene["filaments"]["connector"]
    path = np.stack([a, (a + b) / 2, b])
    true = mod.Sampler(tiny_scene["image"], 1.5, _bounds(tiny_scene)).stats(path)
    neg = mod.Sampler(empty_scene["image"], 1.5, _bounds(empty_scene))
    assert true is not None and abs(true["length_nm"] - np.linalg.norm(b - a)) < 0.1
    rng = np.random.default_rng(0)
    nulls = []
    for _ in range(20):
        pts = mod.null_path(_bounds(empty_scene), 0, 1, None, empty_scene["az"], rng)
        if pts is not None:
            nulls.append(neg.stats(pts))
    assert len(nulls) >= 10
    for s in ("line_1.0", "xs_1.5"):
        null = np.array([n[s] for n in nulls])
        assert (true[s] - null.mean()) / null.std() > 5


def test_null_path_ends_on_the_boundaries(load_script, empty_scene):
    mod = load_script("scripts/filament_ceiling.py")
    bounds = _bounds(empty_scene)
    rng = np.random.default_rng(1)
    pts = mod.null_path(bounds, 0, 1, None, empty_scene["az"], rng)
    c = bounds.centers_nm
    assert abs(np.linalg.norm(pts[0] - c[0]) - bounds.outer_nm[0]) < 1e-6
    assert abs(np.linalg.norm(pts[-1] - c[1]) - bounds.outer_nm[1]) < 1e-6
    # a tether: from vesicle 2 towards the AZ slab (x = 104.75-109.25 nm) until it is met
    az_px = np.array([20.0, 32.0, 70.0])
    tether = mod.null_path(bounds, 1, -1, az_px, empty_scene["az"], rng)
    assert abs(np.linalg.norm(tether[0] - c[1]) - bounds.outer_nm[1]) < 1e-6
    assert 104.0 <= tether[-1][2] <= 106.0


def test_ceiling_recall_at_a_false_rate(load_script):
    mod = load_script("scripts/filament_ceiling.py")
    rng = np.random.default_rng(0)
    zs = {f"z_{s}": rng.normal(size=1000) for s in mod.STATS}
    null = pd.DataFrame({"kind": "connector", **zs})
    # true filaments: 2 nm ones at z 0 (never above the 5 % threshold of ~1.64),
    # 5 nm ones at z 4 (always)
    true = pd.DataFrame(
        {
            "kind": "connector",
            "diameter_nm": [2.1] * 10 + [5.0] * 10,
            "length_nm": 10.0,
            **{f"z_{s}": [0.0] * 10 + [4.0] * 10 for s in mod.STATS},
        }
    )
    c = mod.ceiling(true, null, 0.05)["connector"]
    assert c["true_radius"] == 0.5 and c["best"] == 0.5
    assert c["by_diameter"]["[2.0, 2.5)"]["true_radius"] == 0.0
    assert c["by_diameter"]["[4.5, 6.01)"]["true_radius"] == 1.0
    assert mod.true_radius_stat(2.0) == "z_xs_1.5" and mod.true_radius_stat(6.0) == "z_xs_3.0"


def test_benchmark_seeds_are_refused(load_script):
    mod = load_script("scripts/filament_ceiling.py")
    with pytest.raises(SystemExit):
        mod.main(["--seeds", "3", "101"])
