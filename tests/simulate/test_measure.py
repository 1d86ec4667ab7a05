import numpy as np
import pytest

from synapseg.io.tables import make_table
from synapseg.simulate.measure import vesicle_contrast


def test_contrast_of_a_synthetic_shell_in_units_of_background_sigma():
    rng = np.random.default_rng(0)
    vol = rng.normal(0.0, 1.0, (40, 40, 40)).astype(np.float32)
    zz, yy, xx = np.mgrid[:40, :40, :40]
    r = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2)
    vol[np.abs(r - 10) <= 1] -= 0.5  # membrane 0.5 σ darker
    vol[r < 9] -= 0.2  # lumen 0.2 σ darker
    labels = (r <= 11).astype(np.uint16)
    table = make_table([[20, 20, 20]], [10.0], (1.0, 1.0, 1.0))
    m = vesicle_contrast(vol, table, 1.0, labels)
    assert m["membrane_sigma"] == pytest.approx(0.5, abs=0.06)
    assert m["lumen_sigma"] == pytest.approx(0.2, abs=0.06)
    assert m["background_std"] == pytest.approx(1.0, abs=0.02)
