"""A tiny synthetic scene with exact filaments: two vesicles, a connector, a tether."""

from __future__ import annotations

import numpy as np
import pytest

from synapseg.io.schema import make_table

VS = 1.5
SHAPE = (40, 64, 80)
#: The scene's noise is white and weak, unlike a tomogram's: the default line decision is
#: calibrated on simulated tomograms (docs/filaments.md) and here also accepts the densest
#: noise lines beside the real tether (score about 0.6), so the tests of the plumbing on
#: this scene ask for a clear decision. The calibrated default is tested on simulated
#: synapses (test_lines.py).
CLEAR = {"line_threshold": 0.9}


def _segment_dist(grid: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((grid - a) @ ab) / (ab @ ab), 0, 1)
    return np.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)


def scene(connector: bool = True, tether: bool = True, seed: int = 0) -> dict:
    """Dark densities (-1) on noise σ 0.25: two vesicles (outer radius 12 nm), an AZ slab
    at x = 105 nm, a 3 nm thick connector between the vesicles and a tether from vesicle 2
    to the AZ (exact endpoints in the returned dict)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.indices(SHAPE), axis=-1) * VS
    img = rng.normal(0, 0.25, SHAPE).astype(np.float32)
    centers = np.array([[30.0, 48.0, 30.0], [30.0, 48.0, 70.0]])
    outer, mid = 12.0, 9.75
    for c in centers:
        r = np.linalg.norm(grid - c, axis=-1)
        img[np.abs(r - mid) <= 2.25] -= 1.0
    az = np.abs(grid[..., 2] - 107.0) <= 2.25
    img[az] -= 1.0
    fil = {}
    if connector:
        a, b = centers[0] + [0, 0, outer], centers[1] - [0, 0, outer]
        img[_segment_dist(grid, a, b) <= 1.5] -= 1.0
        fil["connector"] = (a, b)
    if tether:
        a = centers[1] + [0, 0, outer]
        b = np.array([30.0, 48.0, 104.75])
        img[_segment_dist(grid, a, b) <= 1.5] -= 1.0
        fil["tether"] = (a, b)
    table = make_table(centers / VS, [mid, mid], (VS, VS, VS))
    return {"image": img, "vesicles": table, "az": az, "filaments": fil}


def gt_table(fil: dict) -> object:
    """The simulator's polyline layout for the scene's filaments."""
    import pandas as pd

    rows = []
    for fid, (kind, (a, b)) in enumerate(fil.items(), start=1):
        to = 2 if kind == "connector" else 0
        frm = 1 if kind == "connector" else 2
        for k, p in enumerate((a, b)):
            rows.append((fid, kind, frm, to, k, *(p / VS), *p, 1.5))
    cols = ["filament_id", "kind", "from_vesicle_id", "to_vesicle_id", "point_index",
            "z_px", "y_px", "x_px", "z_nm", "y_nm", "x_nm", "radius_nm"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


@pytest.fixture(scope="session")
def tiny_scene() -> dict:
    return scene()


@pytest.fixture(scope="session")
def empty_scene() -> dict:
    return scene(connector=False, tether=False)
