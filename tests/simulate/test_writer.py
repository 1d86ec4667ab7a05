import json

import numpy as np
import pandas as pd
import pytest

from synapseg.errors import OutputExistsError
from synapseg.io.tables import read_table_csv
from synapseg.io.volume import read_volume
from synapseg.simulate import SimulationParams, write_simulation
from synapseg.simulate.writer import OUTPUT_FILES


def test_write_simulation_round_trips(tmp_path, noisy):
    out = write_simulation(tmp_path / "sim", noisy)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    tomo = read_volume(out / "tomogram.mrc")
    assert tomo.voxel_size_nm == pytest.approx((1.68, 1.68, 1.68), rel=1e-5)
    np.testing.assert_array_equal(np.asarray(tomo.data), noisy.tomogram)
    labels = read_volume(out / "vesicle_labels.mrc")
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(labels.data), noisy.vesicle_labels)
    membranes = read_volume(out / "membrane_labels.mrc")
    np.testing.assert_array_equal(np.asarray(membranes.data), noisy.membrane_labels)
    table = read_table_csv(out / "vesicles.csv")
    np.testing.assert_allclose(table["radius_nm"], noisy.vesicles["radius_nm"], atol=1e-4)
    filaments = pd.read_csv(out / "filaments.csv")
    assert len(filaments) == len(noisy.filaments)
    params = SimulationParams.from_dict(json.loads((out / "params.json").read_text()))
    assert params.to_dict() == noisy.params


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, noisy):
    write_simulation(tmp_path, noisy)
    before = (tmp_path / "tomogram.mrc").stat().st_mtime_ns
    with pytest.raises(OutputExistsError):
        write_simulation(tmp_path, noisy)
    assert (tmp_path / "tomogram.mrc").stat().st_mtime_ns == before
    write_simulation(tmp_path, noisy, overwrite=True)
    assert not list(tmp_path.glob("*.tmp"))
